//! Immunizations as Immunization (C-CDA on FHIR "Immunizations" mapping).
//!
//! An Immunization Activity in mood EVN is one Immunization: the vaccine from
//! `consumable/manufacturedProduct/manufacturedMaterial/code` (CVX, keeping NDC and other
//! translations), given on its `effectiveTime`, with lot, manufacturer, route, site, dose and
//! performers. A negated activity was not given: status not-done, with the reason from its
//! Immunization Refusal Reason. An immunization the patient reported (an informant who is the
//! patient or a relative, or a narrative that says so) is not from a primary source.
//!
//! A planned immunization (mood INT and the like) is a plan, not an Immunization, and goes to
//! the planned-item mapping. An activity whose `nullFlavor` says there is no information is a
//! warning that says so, not a record.

use roxmltree::Node;
use serde_json::{Map, Value, json};

use super::medications::comment_notes;
use super::{Mapped, concept_or_text, negated, performers, put_identifiers, related};
use crate::Ctx;
use crate::datatypes::{When, concept, fhir_concept, put, put_list, quantity};
use crate::xml::{El, path};

/// The Immunization Refusal Reason (4.53), and its code system (ActReason).
const REFUSAL_REASON: &[&str] = &["2.16.840.1.113883.10.20.22.4.53"];
const ACT_REASON_OID: &str = "2.16.840.1.113883.5.8";
const REACTION: &[&str] = &["2.16.840.1.113883.10.20.22.4.9"];
const INSTRUCTION: &[&str] = &["2.16.840.1.113883.10.20.22.4.20"];
const ORIGIN: &str = "http://terminology.hl7.org/CodeSystem/immunization-origin";

pub(crate) fn convert(ctx: &mut Ctx, statement: Node) -> Mapped {
    if statement.tag_name().name() != "substanceAdministration" {
        // An organizer or act around activities: each activity in it.
        let inner: Vec<Node> = related(statement, None)
            .into_iter()
            .chain(
                statement
                    .children_named("component")
                    .into_iter()
                    .filter_map(super::statement_of),
            )
            .filter(|s| s.tag_name().name() == "substanceAdministration")
            .collect();
        if inner.is_empty() {
            return Err(format!(
                "a <{}> that holds no immunization activity",
                statement.tag_name().name()
            ));
        }
        let outcomes: Vec<Mapped> = inner.into_iter().map(|s| convert(ctx, s)).collect();
        if outcomes.iter().any(Result::is_ok) {
            return Ok(());
        }
        return Err(outcomes
            .into_iter()
            .filter_map(Result::err)
            .collect::<Vec<_>>()
            .join("; "));
    }
    if !matches!(statement.attr("moodCode"), Some("EVN") | None) {
        // A planned immunization is a plan of care, not a record of one given.
        return super::plans::convert_planned(ctx, statement);
    }
    if statement.is_null() {
        return Err(format!(
            "the document says there is no information about immunizations here (nullFlavor {}){}",
            statement.attr("nullFlavor").unwrap_or("NI"),
            statement
                .child("text")
                .and_then(|t| ctx.narrative.text_of(t))
                .map(|t| format!(": \"{}\"", t.replace('\n', " ")))
                .unwrap_or_default()
        ));
    }
    immunization(ctx, statement)
}

fn immunization(ctx: &mut Ctx, statement: Node) -> Mapped {
    let material = path(
        statement,
        &["consumable", "manufacturedProduct", "manufacturedMaterial"],
    );
    let code = material.and_then(|m| m.child("code")).filter(|c| {
        !c.is_null() || c.child("originalText").is_some() || c.child("translation").is_some()
    });
    let vaccine =
        concept_or_text(ctx, code, statement).ok_or("it names no vaccine: no code and no text")?;

    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Immunization".into());
    resource.insert("id".into(), ctx.id_for("Immunization", statement).into());
    put_identifiers(&mut resource, statement);

    let negation = negated(statement);
    let status_code = statement.child("statusCode").and_then(|s| s.attr("code"));
    let status = if status_code == Some("nullified") {
        "entered-in-error"
    } else if negation || matches!(status_code, Some("aborted" | "cancelled")) {
        "not-done"
    } else {
        "completed"
    };
    resource.insert("status".into(), status.into());

    // The reasons: a refusal reason explains "not done"; an indication why it was given.
    let mut refusal = None;
    let mut indications = Vec::new();
    for reason in related(statement, Some("RSON"))
        .into_iter()
        .filter(|s| s.tag_name().name() == "observation")
    {
        let code = reason.child("code");
        let is_refusal = reason.has_template(REFUSAL_REASON)
            || code.and_then(|c| c.attr("codeSystem")) == Some(ACT_REASON_OID);
        if is_refusal {
            refusal = refusal.or_else(|| code.and_then(|c| concept(c, &ctx.narrative)));
        } else if let Some(indication) =
            concept_or_text(ctx, reason.child("value").filter(|v| !v.is_null()), reason)
        {
            indications.push(indication);
        }
    }
    if status == "not-done" {
        put(&mut resource, "statusReason", refusal);
    }
    resource.insert("vaccineCode".into(), vaccine);
    resource.insert("patient".into(), ctx.subject());

    let when = When::of(statement.child("effectiveTime"));
    match when.first() {
        Some(at) => resource.insert("occurrenceDateTime".into(), at.into()),
        None => resource.insert("occurrenceString".into(), "unknown".into()),
    };
    // Immunization has no recorder: only the author's time is kept, as when it was recorded.
    let recorded = statement
        .children_named("author")
        .into_iter()
        .find_map(|a| a.child("time").and_then(crate::datatypes::time_of));
    put(&mut resource, "recorded", recorded.map(Value::from));

    match reported(ctx, statement) {
        Some(true) => {
            resource.insert("primarySource".into(), false.into());
            resource.insert(
                "reportOrigin".into(),
                fhir_concept(ORIGIN, "recall", "Parent/Guardian/Patient Recall"),
            );
        }
        Some(false) => {
            resource.insert("primarySource".into(), true.into());
        }
        None => {
            resource.insert(
                "_primarySource".into(),
                json!({ "extension": [{
                    "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                    "valueCode": "unknown",
                }] }),
            );
        }
    }

    let product = path(statement, &["consumable", "manufacturedProduct"]);
    put(
        &mut resource,
        "manufacturer",
        product
            .and_then(|p| p.child("manufacturerOrganization"))
            .and_then(|o| crate::header::organization(ctx, o))
            .map(|r| json!({ "reference": r })),
    );
    put(
        &mut resource,
        "lotNumber",
        material
            .and_then(|m| m.child("lotNumberText"))
            .map(|l| l.text_content())
            .filter(|l| !l.is_empty())
            .map(Value::from),
    );
    put(
        &mut resource,
        "site",
        statement
            .child("approachSiteCode")
            .and_then(|s| concept(s, &ctx.narrative)),
    );
    put(
        &mut resource,
        "route",
        statement
            .child("routeCode")
            .and_then(|r| concept(r, &ctx.narrative)),
    );
    put(
        &mut resource,
        "doseQuantity",
        statement.child("doseQuantity").and_then(quantity),
    );
    let actors: Vec<Value> = performers(ctx, statement)
        .into_iter()
        .map(|reference| {
            json!({
                "function": fhir_concept(
                    "http://terminology.hl7.org/CodeSystem/v2-0443",
                    "AP",
                    "Administering Provider",
                ),
                "actor": { "reference": reference },
            })
        })
        .collect();
    put_list(&mut resource, "performer", actors);

    let mut notes = comment_notes(ctx, statement);
    notes.extend(
        related(statement, Some("SUBJ"))
            .into_iter()
            .filter(|s| {
                s.tag_name().name() == "act"
                    && (s.has_template(INSTRUCTION) || s.attr("moodCode") == Some("INT"))
            })
            .filter_map(|s| s.child("text").and_then(|t| ctx.narrative.text_of(t)))
            .map(|text| json!({ "text": text })),
    );
    put_list(&mut resource, "note", notes);
    put_list(&mut resource, "reasonCode", indications);
    if let Some(dose) = statement
        .child("repeatNumber")
        .and_then(|r| r.attr("value"))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|n| *n >= 1)
    {
        resource.insert(
            "protocolApplied".into(),
            json!([{ "doseNumberPositiveInt": dose }]),
        );
    }
    let reactions = reactions(ctx, statement);
    put_list(&mut resource, "reaction", reactions);
    ctx.add(Value::Object(resource));
    Ok(())
}

/// Whether the patient or a relative reported the immunization (Some(true)), a provider gave
/// or recorded it (Some(false)), or the document does not say (None).
fn reported(ctx: &Ctx, statement: Node) -> Option<bool> {
    let informants = statement.children_named("informant");
    if informants
        .iter()
        .any(|i| i.child("relatedEntity").is_some())
    {
        return Some(true);
    }
    // An informant who is the patient: one of the patient's own ids.
    let root = statement.document().root_element();
    let patient_ids: Vec<(Option<&str>, Option<&str>)> =
        path(root, &["recordTarget", "patientRole"])
            .map(|r| {
                r.children_named("id")
                    .into_iter()
                    .filter(|i| !i.is_null())
                    .map(|i| (i.attr("root"), i.attr("extension")))
                    .collect()
            })
            .unwrap_or_default();
    let informant_is_patient = informants.iter().any(|i| {
        i.child("assignedEntity").is_some_and(|e| {
            e.children_named("id")
                .into_iter()
                .any(|id| patient_ids.contains(&(id.attr("root"), id.attr("extension"))))
        })
    });
    // The narrative the entry points to says so ("Source: Patient Reported").
    let says_reported = statement
        .child("text")
        .and_then(|t| ctx.narrative.text_of(t))
        .map(|t| t.to_lowercase())
        .is_some_and(|t| {
            t.contains("patient reported")
                || t.contains("patient-reported")
                || t.contains("reported by patient")
                || t.contains("per patient")
        });
    if informant_is_patient || says_reported {
        return Some(true);
    }
    if !statement.children_named("performer").is_empty() && informants.is_empty() {
        return Some(false);
    }
    None
}

/// Each Reaction Observation as an Observation the Immunization's reaction points to.
fn reactions(ctx: &mut Ctx, statement: Node) -> Vec<Value> {
    let mut found = Vec::new();
    for reaction in related(statement, None).into_iter().filter(|s| {
        s.tag_name().name() == "observation"
            && (s.has_template(REACTION)
                || s.parent()
                    .and_then(|p| p.attr("typeCode"))
                    .is_some_and(|t| matches!(t, "MFST" | "CAUS")))
    }) {
        let value = reaction.child("value").filter(|v| !v.is_null());
        let Some(code) = concept_or_text(ctx, value, reaction) else {
            ctx.warn("a reaction to an immunization was left out: it names no reaction (no code and no text)");
            continue;
        };
        let when = When::of(reaction.child("effectiveTime"));
        let mut observation = Map::new();
        observation.insert("resourceType".into(), "Observation".into());
        observation.insert("id".into(), ctx.id_for("Observation", reaction).into());
        put_identifiers(&mut observation, reaction);
        observation.insert("status".into(), "final".into());
        observation.insert("code".into(), code);
        observation.insert("subject".into(), ctx.subject());
        when.set_choice(&mut observation, "effective");
        let reference = ctx.add(Value::Object(observation));
        let mut entry = Map::new();
        put(&mut entry, "date", when.first().map(Value::from));
        entry.insert("detail".into(), json!({ "reference": reference }));
        found.push(Value::Object(entry));
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::tests::convert_example;

    fn example(name: &str) -> (Vec<Value>, Vec<String>) {
        let conversion = convert_example(&format!("Immunizations/{name}"));
        (conversion.resources, conversion.warnings)
    }

    fn immunization(name: &str) -> Value {
        let (resources, warnings) = example(name);
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        let found: Vec<Value> = resources
            .into_iter()
            .filter(|r| r["resourceType"] == "Immunization")
            .collect();
        assert_eq!(found.len(), 1, "{name}");
        found.into_iter().next().unwrap()
    }

    #[test]
    fn a_given_vaccine_with_lot_and_performer() {
        let i = immunization("Influenza_Vaccination(C-CDA2.1).xml");
        assert_eq!(i["status"], "completed");
        assert_eq!(
            i["vaccineCode"]["coding"][0]["system"],
            "http://hl7.org/fhir/sid/cvx"
        );
        assert_eq!(i["vaccineCode"]["coding"][0]["code"], "88");
        assert_eq!(i["occurrenceDateTime"], "2010-08-15");
        assert_eq!(i["lotNumber"], "1");
        assert_eq!(i["recorded"], "2010-08-15");
        assert_eq!(i["performer"][0]["function"]["coding"][0]["code"], "AP");
        assert!(
            i["performer"][0]["actor"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Practitioner/")
        );
        assert_eq!(i["primarySource"], true);
        assert!(
            i["patient"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Patient/")
        );
    }

    #[test]
    fn ndc_translation_is_kept_beside_cvx() {
        let i = immunization("Influenza_Vaccination_with_NDC(C-CDA2.1).xml");
        let codings = i["vaccineCode"]["coding"].as_array().unwrap();
        assert_eq!(codings[0]["code"], "141");
        assert_eq!(codings[1]["system"], "http://hl7.org/fhir/sid/ndc");
        assert_eq!(codings[1]["code"], "49281-0394-15");
    }

    #[test]
    fn a_patient_reported_vaccine_is_not_from_a_primary_source() {
        let i = immunization("Influenza_Vaccination_Patient_Reported(C-CDA2.1).xml");
        assert_eq!(i["primarySource"], false);
        assert_eq!(i["reportOrigin"]["coding"][0]["code"], "recall");
    }

    #[test]
    fn a_refused_vaccine_is_not_done_with_its_reason() {
        let i = immunization("Immunization_not_given_Patient_refused(C-CDA2.1).xml");
        assert_eq!(i["status"], "not-done");
        assert_eq!(i["statusReason"]["coding"][0]["code"], "PATOBJ");
        assert_eq!(
            i["statusReason"]["coding"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/v3-ActReason"
        );
        assert_eq!(i["vaccineCode"]["coding"][0]["code"], "166");
        assert_eq!(
            i["vaccineCode"]["text"],
            "influenza, intradermal, quadrivalent"
        );
        assert_eq!(i["occurrenceDateTime"], "2015-11-15");
        assert!(i.get("performer").is_none());
    }

    #[test]
    fn unknown_immunization_status_is_a_warning_not_a_vaccine() {
        let (resources, warnings) = example("Unknown_Immunization_Status(C-CDA2.1).xml");
        assert!(
            !resources
                .iter()
                .any(|r| r["resourceType"] == "Immunization")
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("no information about immunizations"),
            "{warnings:?}"
        );
    }

    #[test]
    fn no_information_section_is_a_note() {
        let (resources, warnings) = example("No_Information_Immunizations(C-CDA2.1).xml");
        assert!(warnings.is_empty());
        assert!(
            !resources
                .iter()
                .any(|r| r["resourceType"] == "Immunization")
        );
    }

    #[test]
    fn entries_sharing_one_id_each_keep_their_immunization() {
        let conversion = crate::tests::convert_document("CCD-1.xml");
        let immunizations: Vec<&Value> = conversion
            .resources
            .iter()
            .filter(|r| r["resourceType"] == "Immunization")
            .collect();
        assert_eq!(immunizations.len(), 5, "{immunizations:#?}");
        let not_done = immunizations
            .iter()
            .filter(|i| i["status"] == "not-done")
            .count();
        assert_eq!(not_done, 2);
        let first = immunizations[0];
        assert_eq!(first["doseQuantity"]["value"], 50);
        assert_eq!(first["doseQuantity"]["code"], "ug");
        assert_eq!(first["occurrenceDateTime"], "1999-11");
        assert!(
            first["manufacturer"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Organization/")
        );
        assert_eq!(first["route"]["coding"][0]["code"], "C28161");
        assert!(
            first["note"][0]["text"]
                .as_str()
                .unwrap()
                .contains("flu-like")
        );
    }
}
