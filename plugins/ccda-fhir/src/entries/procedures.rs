//! Procedures and interventions (C-CDA on FHIR "Procedures" mapping).
//!
//! - A Procedure Activity Procedure or Procedure Activity Act is a Procedure: its code with
//!   every translation (SNOMED CT, CPT, ICD-10-PCS), when it was performed, where on the body,
//!   who did it, why (Indications), what device it implanted (`focalDevice`). A negated one
//!   (`negationInd="true"`) is a Procedure with status `not-done` and the reason as
//!   `statusReason`; an unsuccessful one keeps its `outcome`.
//! - A Procedure Activity Observation (a procedure that yields information, such as an ECG)
//!   is an Observation of category `procedure` with its finding as the value.
//! - An Intervention Act groups the interventions done; each is converted on its own.
//! - An entry in a planned mood (INT, RQO...) is a plan: see [`super::plans`].

use roxmltree::Node;
use serde_json::{Map, Value, json};

use super::plans::reasons;
use super::{
    Mapped, concept_or_text, first_author, negated, performers, put_identifiers, related,
    usable_code,
};
use crate::Ctx;
use crate::datatypes::{When, concept, put, put_list};
use crate::xml::El;

const ENTRY_REFERENCE: &str = "2.16.840.1.113883.10.20.22.4.122";
const COMMENT: &str = "2.16.840.1.113883.10.20.22.4.64";
/// The QRDA Reason template (why something was or was not done).
const REASON: &str = "2.16.840.1.113883.10.20.24.3.88";
/// "Failed attempted procedure": the C-CDA companion guide's mark of an unsuccessful procedure.
const FAILED_ATTEMPT: &str = "103709008";

/// True for a statement in a planned mood (intent, order, proposal, promise, appointment).
pub(super) fn is_planned(statement: Node) -> bool {
    matches!(
        statement.attr("moodCode"),
        Some("INT" | "RQO" | "PRMS" | "PRP" | "ARQ" | "APT" | "GOL")
    )
}

/// An entry of the Procedures or Interventions section (or a procedure elsewhere).
pub(crate) fn convert(ctx: &mut Ctx, statement: Node) -> Mapped {
    if is_planned(statement) {
        return super::plans::convert_planned(ctx, statement);
    }
    if statement.has_template(&[super::template::INTERVENTION_ACT]) {
        if let Some(outcome) = convert_members(ctx, statement) {
            return outcome;
        }
        return procedure(ctx, statement).map(|_| ());
    }
    if !statement.has_template(super::template::PROCEDURE_ACTIVITY)
        && let Some(outcome) = super::plans::by_template(ctx, statement)
    {
        return outcome;
    }
    match statement.tag_name().name() {
        "observation" => observation(ctx, statement),
        "procedure" | "act" => procedure(ctx, statement).map(|_| ()),
        other => Err(format!(
            "a <{other}> is not a procedure (Fasten converts procedures, acts and observations here)"
        )),
    }
}

/// The statements an intervention act groups (`entryRelationship`s other than references to
/// entries elsewhere), each converted as a procedure or a plan. None when it groups nothing.
pub(super) fn convert_members(ctx: &mut Ctx, statement: Node) -> Option<Mapped> {
    let members: Vec<Node> = statement
        .children_named("entryRelationship")
        .into_iter()
        .filter(|r| matches!(r.attr("typeCode"), Some("REFR" | "COMP") | None))
        .filter_map(super::statement_of)
        .filter(|s| !s.has_template(&[ENTRY_REFERENCE]))
        .collect();
    if members.is_empty() {
        return None;
    }
    let mut reasons = Vec::new();
    let mut added = 0;
    for member in members {
        match convert(ctx, member) {
            Ok(()) => added += 1,
            Err(reason) => reasons.push(reason),
        }
    }
    Some(if added == 0 {
        Err(reasons.join("; "))
    } else {
        for reason in reasons {
            ctx.warn(format!(
                "part of an intervention was not converted: {reason}"
            ));
        }
        Ok(())
    })
}

/// A Procedure Activity Procedure or Act as a Procedure.
fn procedure(ctx: &mut Ctx, statement: Node) -> Result<String, String> {
    let code = concept_or_text(ctx, usable_code(statement), statement);
    // A UDI Organizer under the procedure details its one implant (brand, lot, serial...).
    let roles = super::equipment::devices_of(statement);
    let details = if roles.len() == 1 {
        super::equipment::udi_details(ctx, statement)
    } else {
        Vec::new()
    };
    let devices: Vec<String> = roles
        .into_iter()
        .filter_map(|role| super::equipment::device(ctx, role, &details))
        .collect();
    if code.is_none() && devices.is_empty() {
        return Err("the procedure has no code and no text".into());
    }
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Procedure".into());
    // A procedure that implanted several devices may come as one entry per device, each with
    // the procedure's id: they are one procedure with every device.
    let id = if devices.is_empty() {
        ctx.id_for("Procedure", statement)
    } else {
        ctx.id_by_identifier("Procedure", statement)
    };
    resource.insert("id".into(), id.into());
    put_identifiers(&mut resource, statement);

    let found = reasons(ctx, statement);
    // A QRDA Reason under REFR also says why (C-CDA examples of refused procedures use it).
    let refr_reasons: Vec<Value> = related(statement, Some("REFR"))
        .into_iter()
        .filter(|s| s.has_template(&[REASON]))
        .filter_map(|s| concept_or_text(ctx, s.child("value").filter(|v| !v.is_null()), s))
        .collect();
    if negated(statement) {
        resource.insert("status".into(), "not-done".into());
        let why = refr_reasons
            .first()
            .cloned()
            .or_else(|| found.codes.first().cloned());
        put(&mut resource, "statusReason", why);
    } else {
        resource.insert("status".into(), status(statement).into());
        let mut codes = found.codes.clone();
        codes.extend(refr_reasons);
        put_list(&mut resource, "reasonCode", codes);
        put_list(&mut resource, "reasonReference", found.references.clone());
    }
    put(&mut resource, "code", code);
    resource.insert("subject".into(), ctx.subject());
    // One example carries the time in <time>, which C-CDA does not define here; read it too.
    let when = When::of(
        statement
            .child("effectiveTime")
            .or_else(|| statement.child("time")),
    );
    when.set_choice(&mut resource, "performed");
    let (author, _) = first_author(ctx, statement);
    put(
        &mut resource,
        "recorder",
        super::only_types(author, super::PEOPLE),
    );
    let performed_by: Vec<Value> = performers(ctx, statement)
        .into_iter()
        .map(|r| json!({ "actor": { "reference": r } }))
        .collect();
    put_list(&mut resource, "performer", performed_by);
    put_list(
        &mut resource,
        "bodySite",
        statement
            .children_named("targetSiteCode")
            .into_iter()
            .filter_map(|s| concept(s, &ctx.narrative))
            .collect(),
    );
    put(&mut resource, "outcome", outcome(ctx, statement));
    put_list(&mut resource, "note", notes(ctx, statement));
    put_list(
        &mut resource,
        "focalDevice",
        devices
            .iter()
            .map(|d| json!({ "manipulated": { "reference": d } }))
            .collect(),
    );
    Ok(ctx.add_merging(Value::Object(resource), &["focalDevice"]))
}

/// The Procedure status from the C-CDA statusCode.
fn status(statement: Node) -> &'static str {
    match statement.child("statusCode").and_then(|s| s.attr("code")) {
        Some("completed") => "completed",
        Some("active") => "in-progress",
        Some("aborted") => "stopped",
        Some("cancelled") => "not-done",
        Some("new") => "preparation",
        Some("held" | "suspended") => "on-hold",
        Some("nullified") => "entered-in-error",
        _ => "unknown",
    }
}

/// An unsuccessful procedure's outcome: the "Failed attempted procedure" act the companion
/// guide puts under it, with why it failed as the text.
fn outcome(ctx: &Ctx, statement: Node) -> Option<Value> {
    let failed = related(statement, None)
        .into_iter()
        .find(|s| s.child("code").and_then(|c| c.attr("code")) == Some(FAILED_ATTEMPT))?;
    let mut outcome = concept(failed.child("code")?, &ctx.narrative)?;
    if let Some(why) = failed.child("text").and_then(|t| ctx.narrative.text_of(t)) {
        outcome["text"] = Value::from(format!("Unsuccessful: {why}"));
    }
    Some(outcome)
}

/// The statement's Comment Activities as notes.
pub(super) fn notes(ctx: &Ctx, statement: Node) -> Vec<Value> {
    related(statement, None)
        .into_iter()
        .filter(|s| s.has_template(&[COMMENT]))
        .filter_map(|s| s.child("text").and_then(|t| ctx.narrative.text_of(t)))
        .map(|text| json!({ "text": text }))
        .collect()
}

/// A Procedure Activity Observation as an Observation of category `procedure`, with who did it,
/// where on the body and how.
fn observation(ctx: &mut Ctx, statement: Node) -> Mapped {
    let mut resource = super::observation_resource(ctx, statement, ("procedure", "Procedure"))
        .map_err(|_| "the procedure observation has no code and no text")?;
    let performed_by: Vec<Value> = performers(ctx, statement)
        .into_iter()
        .map(|r| json!({ "reference": r }))
        .collect();
    put_list(&mut resource, "performer", performed_by);
    put(
        &mut resource,
        "bodySite",
        statement
            .child("targetSiteCode")
            .and_then(|s| concept(s, &ctx.narrative)),
    );
    put(
        &mut resource,
        "method",
        statement
            .child("methodCode")
            .and_then(|s| concept(s, &ctx.narrative)),
    );
    put_list(&mut resource, "note", notes(ctx, statement));
    ctx.add(Value::Object(resource));
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::tests::{convert_example, of_type};
    use serde_json::Value;

    fn systems(concept: &Value) -> Vec<String> {
        concept["coding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}|{}",
                    c["system"].as_str().unwrap(),
                    c["code"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn a_procedure_keeps_its_codes_times_and_site() {
        let c = convert_example("Procedures/Procedures_Section_Procedure(C-CDA2.1).xml");
        let p = of_type(&c, "Procedure")[0];
        assert_eq!(p["status"], "completed");
        assert_eq!(
            systems(&p["code"]),
            [
                "http://snomed.info/sct|6025007",
                "http://www.ama-assn.org/go/cpt|44970",
                "urn:oid:2.16.840.1.113883.6.4|0DTJ4ZZ",
                "http://hl7.org/fhir/sid/icd-9-cm|47.01",
            ]
        );
        // originalText resolved through the narrative.
        assert_eq!(p["code"]["text"], "Laparoscopic appendectomy");
        assert_eq!(p["performedPeriod"]["start"], "2014-02-03T09:22:05-07:00");
        assert_eq!(p["performedPeriod"]["end"], "2014-02-03T11:15:14-07:00");
        assert_eq!(p["bodySite"][0]["coding"][0]["code"], "181255000");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn a_refused_procedure_is_not_done_with_its_reason() {
        let c = convert_example(
            "Procedures/Procedures_Section_Procedure_Procedure_Refused(C-CDA2.1).xml",
        );
        let p = of_type(&c, "Procedure")[0];
        assert_eq!(p["status"], "not-done");
        assert_eq!(p["statusReason"]["coding"][0]["code"], "105480006");
        assert!(p.get("reasonCode").is_none());
        assert_eq!(p["note"][0]["text"], "Not Done");
        assert_eq!(p["performedDateTime"], "2014-02-03T09:22:05-05:00");
    }

    #[test]
    fn an_unsuccessful_procedure_keeps_its_outcome() {
        let c = convert_example(
            "Procedures/Procedures_Section_Procedure_Procedure_Unsuccessful(C-CDA2.1).xml",
        );
        let p = of_type(&c, "Procedure")[0];
        assert_eq!(p["status"], "completed");
        assert_eq!(p["outcome"]["coding"][0]["code"], "103709008");
        assert_eq!(p["outcome"]["text"], "Unsuccessful: Image unreadable");
    }

    #[test]
    fn a_procedure_act_and_a_procedure_observation() {
        let c = convert_example("Procedures/Procedures_Section_Act(C-CDA2.1).xml");
        let p = of_type(&c, "Procedure")[0];
        assert_eq!(
            p["code"]["text"],
            "Individual Counseling For Medical Nutrition"
        );
        assert_eq!(p["code"]["coding"].as_array().unwrap().len(), 5);
        assert_eq!(p["performedDateTime"], "2014-03-29T10:45:13-05:00");

        let c = convert_example("Procedures/Procedures_Section_Observation(C-CDA2.1).xml");
        assert!(of_type(&c, "Procedure").is_empty());
        let o = of_type(&c, "Observation")[0];
        assert_eq!(o["status"], "final");
        assert_eq!(o["category"][0]["coding"][0]["code"], "procedure");
        assert_eq!(o["code"]["coding"][0]["code"], "268400002");
        assert_eq!(o["code"]["text"], "Electrocardiogram (12-Lead)");
        assert_eq!(o["valueCodeableConcept"]["coding"][0]["code"], "251135002");
        assert_eq!(o["effectiveDateTime"], "2014-03-29T09:15:22-05:00");
    }

    #[test]
    fn an_intervention_act_is_its_interventions() {
        let c = convert_example(
            "Interventions/Intervention_Counseling_Procedure_Activity_Act(C-CDR2.1).xml",
        );
        let procedures = of_type(&c, "Procedure");
        assert_eq!(procedures.len(), 1);
        assert_eq!(procedures[0]["code"]["coding"][0]["code"], "61310001");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }
}
