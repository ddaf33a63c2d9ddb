//! Goals and plans (C-CDA on FHIR "Goals" mapping, and the Plan of Treatment's planned items).
//!
//! - A Goal Observation is a Goal: what is aimed at (its value when that is a concept, else its
//!   code or narrative), a target measure (its code) with the value aimed at (a quantity, a range
//!   such as "≥ 92 %"), since when and by when, who expressed it (the patient or a
//!   practitioner), and the concerns it addresses.
//! - A planned item (Planned Observation, Procedure, Act, Encounter, Supply, an Instruction, a
//!   Nutrition Recommendation, a Patient Referral) is a ServiceRequest whose intent follows the
//!   mood: INT → plan, RQO → order, PRP/PRMS → proposal. A Planned Medication or Planned
//!   Immunization is a MedicationRequest of the same intent.
//! - A Handoff Communication is a Communication; an Outcome Observation (Care Plan's health
//!   status evaluations) is an Observation; a Planned Intervention Act is its members.

use roxmltree::Node;
use serde_json::{Map, Value, json};

use super::procedures::{convert_members, notes};
use super::usable_code;
use super::{
    Mapped, concept_or_text, first_author, negated, performers, put_identifiers, related,
    statement_of,
};
use crate::Ctx;
use crate::datatypes::{
    When, concept, fhir_concept, human_name, identifiers, observation_value, put, put_contacts,
    put_list, quantity,
};
use crate::xml::{El, path};

const GOAL: &str = "2.16.840.1.113883.10.20.22.4.121";
const OUTCOME: &str = "2.16.840.1.113883.10.20.22.4.144";
const HANDOFF: &str = "2.16.840.1.113883.10.20.22.4.141";
const REFERRAL: &str = "2.16.840.1.113883.10.20.22.4.140";
const INSTRUCTION: &str = "2.16.840.1.113883.10.20.22.4.20";
const PLANNED_INTERVENTION: &str = "2.16.840.1.113883.10.20.22.4.146";
const PLANNED_IMMUNIZATION: &str = "2.16.840.1.113883.10.20.22.4.120";
const ENTRY_REFERENCE: &str = "2.16.840.1.113883.10.20.22.4.122";
const PRIORITY_PREFERENCE: &str = "2.16.840.1.113883.10.20.22.4.143";
/// Codes that only say "this is a reason / an indication / a problem", not which one.
const GENERIC_REASON_CODES: &[&str] = &[
    "404684003",
    "282291009",
    "29308-4",
    "75321-0",
    "77301-0",
    "55607006",
    "75326-9",
    "409586006",
    "64572001",
    "418799008",
    "248536006",
    "75315-2",
];
const SNOMED: &str = "http://snomed.info/sct";

/// Statements of these templates, wherever they appear, and what they become. None for any
/// other statement.
pub(super) fn by_template(ctx: &mut Ctx, statement: Node) -> Option<Mapped> {
    if statement.has_template(&[GOAL]) || statement.attr("moodCode") == Some("GOL") {
        Some(convert_goal(ctx, statement))
    } else if statement.has_template(&[OUTCOME]) {
        Some(convert_outcome(ctx, statement))
    } else if statement.has_template(&[HANDOFF]) {
        Some(communication(ctx, statement))
    } else {
        None
    }
}

/// Why a statement was done or planned: its RSON entries, as references to the resources
/// already made from them (a Condition, an Observation) or else as codes (an Indication's
/// value).
pub(super) struct Reasons {
    pub(super) codes: Vec<Value>,
    pub(super) references: Vec<Value>,
}

pub(super) fn reasons(ctx: &Ctx, statement: Node) -> Reasons {
    let mut found = Reasons {
        codes: Vec::new(),
        references: Vec::new(),
    };
    for reason in statement
        .children_named("entryRelationship")
        .into_iter()
        // inversionInd="true" turns the relation round: the statement is the other's reason.
        .filter(|r| r.attr("typeCode") == Some("RSON") && r.attr("inversionInd") != Some("true"))
        .filter_map(statement_of)
    {
        if reason.has_template(&[ENTRY_REFERENCE]) {
            found.references.extend(
                referenced(ctx, reason, &["Condition", "Observation"])
                    .into_iter()
                    .map(|r| json!({ "reference": r })),
            );
            continue;
        }
        if reason.has_template(&[PRIORITY_PREFERENCE]) {
            continue;
        }
        if let Some(existing) = ["Condition", "Observation"]
            .iter()
            .map(|t| format!("{t}/{}", ctx.id_for(t, reason)))
            .find(|r| ctx.has(r))
        {
            found.references.push(json!({ "reference": existing }));
            continue;
        }
        let value = reason.child("value").filter(|v| {
            !v.is_null() || v.child("originalText").is_some() || v.child("translation").is_some()
        });
        let code = usable_code(reason).filter(|c| {
            reason.child("value").is_none()
                && !c
                    .attr("code")
                    .is_some_and(|code| GENERIC_REASON_CODES.contains(&code))
        });
        if let Some(c) = concept_or_text(ctx, value.or(code), reason) {
            found.codes.push(c);
        }
    }
    found
}

/// The resources already made from the statement an Entry Reference points to (by its id), or
/// from the observations that statement groups (a concern's problems), among `types`.
pub(super) fn referenced(ctx: &Ctx, reference: Node, types: &[&str]) -> Vec<String> {
    let Some(id) = reference
        .children_named("id")
        .into_iter()
        .find(|i| !i.is_null() && i.attr("root").is_some())
    else {
        return Vec::new();
    };
    let same = |n: Node| {
        n.children_named("id").into_iter().any(|i| {
            i.attr("root") == id.attr("root") && i.attr("extension") == id.attr("extension")
        })
    };
    let Some(target) = reference.document().descendants().find(|n| {
        n.is_element()
            && *n != reference
            && !n.has_template(&[ENTRY_REFERENCE])
            && !n.template_ids().is_empty()
            && same(*n)
    }) else {
        return Vec::new();
    };
    let mut nodes = vec![target];
    nodes.extend(
        related(target, None)
            .into_iter()
            .filter(|s| s.tag_name().name() == "observation"),
    );
    let mut found: Vec<String> = Vec::new();
    for node in nodes {
        for t in types {
            let candidate = format!("{t}/{}", ctx.id_for(t, node));
            if ctx.has(&candidate) && !found.contains(&candidate) {
                found.push(candidate);
            }
        }
    }
    found
}

/// A Goal Observation as a Goal.
pub(crate) fn convert_goal(ctx: &mut Ctx, statement: Node) -> Mapped {
    if statement.tag_name().name() != "observation" {
        return Err(format!(
            "a <{}> is not a goal observation",
            statement.tag_name().name()
        ));
    }
    let value = statement.child("value").filter(|v| {
        !v.is_null() || v.child("originalText").is_some() || v.child("translation").is_some()
    });
    let coded_value = value.filter(|v| {
        matches!(v.xsi_type(), Some("CD" | "CE" | "CV" | "CO")) || v.attr("code").is_some()
    });
    let code = usable_code(statement).and_then(|c| concept(c, &ctx.narrative));
    // What is aimed at: a coded value ("Housing adequate"), else the code ("Pulse oximetry"),
    // else the narrative.
    let description = coded_value
        .and_then(|v| concept(v, &ctx.narrative))
        .or_else(|| code.clone())
        .or_else(|| concept_or_text(ctx, None, statement))
        .ok_or("the goal has no code, value or text")?;

    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Goal".into());
    resource.insert("id".into(), ctx.id_for("Goal", statement).into());
    put_identifiers(&mut resource, statement);
    let lifecycle = if negated(statement) {
        "rejected"
    } else {
        match statement.child("statusCode").and_then(|s| s.attr("code")) {
            Some("completed") => "completed",
            Some("cancelled" | "aborted") => "cancelled",
            Some("suspended" | "held") => "on-hold",
            Some("new") => "proposed",
            Some("nullified") => "entered-in-error",
            _ => "active",
        }
    };
    resource.insert("lifecycleStatus".into(), lifecycle.into());
    put(
        &mut resource,
        "priority",
        related(statement, None)
            .into_iter()
            .find(|s| s.has_template(&[PRIORITY_PREFERENCE]))
            .and_then(|s| s.child("value"))
            .and_then(|v| concept(v, &ctx.narrative)),
    );
    resource.insert("description".into(), description);
    resource.insert("subject".into(), ctx.subject());

    let when = When::of(statement.child("effectiveTime"));
    let date = |t: &String| Value::from(t.chars().take(10).collect::<String>());
    put(&mut resource, "startDate", when.first().as_ref().map(date));
    let mut target = Map::new();
    if coded_value.is_none()
        && let Some(code) = code
        && let Some((key, detail)) = value.and_then(|v| observation_value(v, &ctx.narrative))
    {
        let key = match key {
            "valueQuantity" => Some("detailQuantity"),
            "valueRange" => Some("detailRange"),
            "valueCodeableConcept" => Some("detailCodeableConcept"),
            "valueString" => Some("detailString"),
            "valueBoolean" => Some("detailBoolean"),
            "valueInteger" => Some("detailInteger"),
            "valueRatio" => Some("detailRatio"),
            _ => None,
        };
        if let Some(key) = key {
            target.insert("measure".into(), code);
            target.insert(key.into(), detail);
        }
    }
    put(&mut target, "dueDate", when.end.as_ref().map(date));
    if !target.is_empty() {
        resource.insert("target".into(), json!([target]));
    }
    put(&mut resource, "expressedBy", expressed_by(ctx, statement));
    let mut addresses: Vec<Value> = Vec::new();
    for related_statement in statement
        .children_named("entryRelationship")
        .into_iter()
        .filter(|r| r.attr("inversionInd") != Some("true"))
        .filter_map(statement_of)
    {
        let found = if related_statement.has_template(&[ENTRY_REFERENCE]) {
            referenced(ctx, related_statement, &["Condition", "Observation"])
        } else {
            ["Condition", "Observation"]
                .iter()
                .map(|t| format!("{t}/{}", ctx.id_for(t, related_statement)))
                .filter(|r| ctx.has(r))
                .collect()
        };
        for reference in found {
            let reference = json!({ "reference": reference });
            if !addresses.contains(&reference) {
                addresses.push(reference);
            }
        }
    }
    put_list(&mut resource, "addresses", addresses);
    // Reasons named only by a code (an ICD-10 "Inadequate housing") have no field of their own.
    let mut goal_notes = notes(ctx, statement);
    goal_notes.extend(
        reasons(ctx, statement)
            .codes
            .into_iter()
            .filter_map(|c| c["text"].as_str().map(str::to_string))
            .map(|t| json!({ "text": format!("Addresses: {t}") })),
    );
    put_list(&mut resource, "note", goal_notes);
    ctx.add(Value::Object(resource));
    Ok(())
}

/// Who set the goal: the patient when the author is the patient, else the practitioner.
fn expressed_by(ctx: &mut Ctx, statement: Node) -> Option<Value> {
    let patient_ids: Vec<(Option<&str>, Option<&str>)> = path(
        statement.document().root_element(),
        &["recordTarget", "patientRole"],
    )
    .map(|role| {
        role.children_named("id")
            .into_iter()
            .map(|i| (i.attr("root"), i.attr("extension")))
            .collect()
    })
    .unwrap_or_default();
    for author in statement.children_named("author") {
        let Some(assigned) = author.child("assignedAuthor") else {
            continue;
        };
        let is_patient = assigned.child("code").and_then(|c| c.attr("code")) == Some("ONESELF")
            || assigned.children_named("id").into_iter().any(|i| {
                !i.is_null() && patient_ids.contains(&(i.attr("root"), i.attr("extension")))
            });
        if is_patient {
            return Some(ctx.subject());
        }
        if let Some(reference) = crate::header::author(ctx, author)
            .filter(|r| r.starts_with("Practitioner/") || r.starts_with("PractitionerRole/"))
        {
            return Some(json!({ "reference": reference }));
        }
    }
    None
}

/// An entry of the Plan of Treatment section (or a planned item elsewhere).
pub(crate) fn convert_planned(ctx: &mut Ctx, statement: Node) -> Mapped {
    if let Some(outcome) = by_template(ctx, statement) {
        return outcome;
    }
    if statement.has_template(&[PLANNED_INTERVENTION])
        && let Some(outcome) = convert_members(ctx, statement)
    {
        return outcome;
    }
    if !super::procedures::is_planned(statement) {
        // Something done, recorded in a plan (education given during the visit, say).
        if statement.has_template(super::template::PROCEDURE_ACTIVITY)
            || statement.has_template(&[super::template::INTERVENTION_ACT])
        {
            return super::procedures::convert(ctx, statement);
        }
        return Err(format!(
            "a <{}> in mood {} is not a planned item",
            statement.tag_name().name(),
            statement.attr("moodCode").unwrap_or("EVN")
        ));
    }
    if negated(statement) && usable_code(statement).is_none_or(|c| c.is_null()) {
        let what = statement
            .child("text")
            .and_then(|t| ctx.narrative.text_of(t))
            .map(|t| format!(" (\u{201c}{t}\u{201d})"))
            .unwrap_or_default();
        return Err(format!(
            "it states that nothing of this kind is planned{what}, which is not a request"
        ));
    }
    match statement.tag_name().name() {
        "substanceAdministration" => medication_request(ctx, statement),
        _ => service_request(ctx, statement),
    }
}

/// The request intent of a mood.
fn intent(statement: Node) -> &'static str {
    match statement.attr("moodCode") {
        Some("RQO") => "order",
        Some("PRP" | "PRMS") => "proposal",
        _ => "plan",
    }
}

/// A request's status (ServiceRequest and MedicationRequest share these codes, but a
/// MedicationRequest says `cancelled` where a ServiceRequest says `revoked`).
fn request_status(statement: Node, cancelled: &'static str) -> &'static str {
    match statement.child("statusCode").and_then(|s| s.attr("code")) {
        Some("completed") => "completed",
        Some("cancelled" | "aborted" | "obsolete") => cancelled,
        Some("held" | "suspended") => "on-hold",
        Some("nullified") => "entered-in-error",
        Some("active" | "new") => "active",
        _ => "active",
    }
}

/// The requester: the first author.
fn put_requester(ctx: &mut Ctx, resource: &mut Map<String, Value>, statement: Node) {
    let (author, time) = first_author(ctx, statement);
    put(resource, "requester", author);
    put(resource, "authoredOn", time.map(Value::from));
}

/// A planned observation, procedure, act, encounter, supply, instruction, nutrition
/// recommendation or referral as a ServiceRequest.
fn service_request(ctx: &mut Ctx, statement: Node) -> Mapped {
    let mut code = concept_or_text(ctx, usable_code(statement), statement);
    if code.is_none() && statement.tag_name().name() == "supply" {
        // A planned supply names what is supplied in its product.
        code = super::equipment::devices_of(statement)
            .into_iter()
            .chain(
                statement
                    .children_named("participant")
                    .into_iter()
                    .filter_map(|p| p.child("participantRole")),
            )
            .find_map(|r| path(r, &["playingDevice", "code"]))
            .or_else(|| {
                path(
                    statement,
                    &[
                        "product",
                        "manufacturedProduct",
                        "manufacturedMaterial",
                        "code",
                    ],
                )
            })
            .and_then(|c| concept(c, &ctx.narrative));
    }
    let code = code.ok_or("the planned item has no code and no text")?;
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "ServiceRequest".into());
    resource.insert("id".into(), ctx.id_for("ServiceRequest", statement).into());
    put_identifiers(&mut resource, statement);
    resource.insert("status".into(), request_status(statement, "revoked").into());
    resource.insert("intent".into(), intent(statement).into());
    let category = if statement.has_template(&[REFERRAL]) {
        Some(fhir_concept(SNOMED, "3457005", "Patient referral"))
    } else if statement.has_template(&[INSTRUCTION]) {
        Some(fhir_concept(SNOMED, "409073007", "Education"))
    } else {
        None
    };
    put(&mut resource, "category", category.map(|c| json!([c])));
    put(
        &mut resource,
        "priority",
        statement
            .child("priorityCode")
            .and_then(|p| p.attr("code"))
            .and_then(|p| match p {
                "S" | "EM" => Some("stat"),
                "A" | "CR" => Some("asap"),
                "UR" | "UD" => Some("urgent"),
                "R" | "EL" | "RR" => Some("routine"),
                _ => None,
            })
            .map(Value::from),
    );
    if negated(statement) {
        resource.insert("doNotPerform".into(), true.into());
    }
    resource.insert("code".into(), code);
    resource.insert("subject".into(), ctx.subject());
    When::of(statement.child("effectiveTime")).set_choice(&mut resource, "occurrence");
    put_requester(ctx, &mut resource, statement);
    let mut performed_by: Vec<Value> = performers(ctx, statement)
        .into_iter()
        .map(|r| json!({ "reference": r }))
        .collect();
    // A referral names whom the patient is referred to as a participant.
    for role in statement
        .children_named("participant")
        .into_iter()
        .filter(|p| matches!(p.attr("typeCode"), Some("REFT" | "PRF")))
        .filter_map(|p| p.child("participantRole"))
    {
        if let Some(reference) = role_practitioner(ctx, role) {
            performed_by.push(json!({ "reference": reference }));
        }
    }
    put_list(&mut resource, "performer", performed_by);
    put_list(
        &mut resource,
        "locationReference",
        statement
            .children_named("participant")
            .into_iter()
            .filter(|p| p.attr("typeCode") == Some("LOC"))
            .filter_map(|p| p.child("participantRole"))
            .filter_map(|r| super::encounters::location(ctx, r))
            .map(|r| json!({ "reference": r }))
            .collect(),
    );
    let found = reasons(ctx, statement);
    put_list(&mut resource, "reasonCode", found.codes);
    put_list(&mut resource, "reasonReference", found.references);
    put_list(
        &mut resource,
        "bodySite",
        statement
            .children_named("targetSiteCode")
            .into_iter()
            .filter_map(|s| concept(s, &ctx.narrative))
            .collect(),
    );
    let mut request_notes = notes(ctx, statement);
    // An Instruction's words are the point of it; nested instructions are notes as well.
    let mut instructions: Vec<Node> = related(statement, None)
        .into_iter()
        .filter(|s| s.has_template(&[INSTRUCTION]))
        .collect();
    if statement.has_template(&[INSTRUCTION]) {
        instructions.push(statement);
    }
    for instruction in instructions {
        if let Some(text) = instruction
            .child("text")
            .and_then(|t| ctx.narrative.text_of(t))
        {
            request_notes.push(json!({ "text": text }));
        }
    }
    // Alternatives to a planned procedure (an organizer of proposals) are kept as notes.
    for organizer in related(statement, Some("REFR"))
        .into_iter()
        .filter(|s| s.tag_name().name() == "organizer")
    {
        for alternative in organizer
            .children_named("component")
            .into_iter()
            .filter_map(statement_of)
        {
            if let Some(text) = usable_code(alternative).and_then(|c| {
                let display = c.attr("displayName")?;
                Some(match c.attr("code") {
                    Some(code) => format!("Alternative: {display} ({code})"),
                    None => format!("Alternative: {display}"),
                })
            }) {
                request_notes.push(json!({ "text": text }));
            }
        }
    }
    put_list(&mut resource, "note", request_notes);
    ctx.add(Value::Object(resource));
    Ok(())
}

/// A Planned Medication Activity or Planned Immunization Activity as a MedicationRequest.
fn medication_request(ctx: &mut Ctx, statement: Node) -> Mapped {
    let product = path(
        statement,
        &["consumable", "manufacturedProduct", "manufacturedMaterial"],
    );
    let medication = product
        .and_then(|m| m.child("code"))
        .filter(|c| {
            !c.is_null() || c.child("originalText").is_some() || c.child("translation").is_some()
        })
        .and_then(|c| concept(c, &ctx.narrative))
        .or_else(|| {
            product
                .and_then(|m| m.child("name"))
                .map(|n| n.text_content())
                .filter(|n| !n.is_empty())
                .map(crate::datatypes::text_concept)
        })
        .ok_or("the planned medication names no medication")?;
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "MedicationRequest".into());
    resource.insert(
        "id".into(),
        ctx.id_for("MedicationRequest", statement).into(),
    );
    put_identifiers(&mut resource, statement);
    resource.insert(
        "status".into(),
        request_status(statement, "cancelled").into(),
    );
    resource.insert("intent".into(), intent(statement).into());
    if statement.has_template(&[PLANNED_IMMUNIZATION]) {
        resource.insert("category".into(), json!([{ "text": "Immunization" }]));
    }
    if negated(statement) {
        resource.insert("doNotPerform".into(), true.into());
    }
    resource.insert("medicationCodeableConcept".into(), medication);
    resource.insert("subject".into(), ctx.subject());
    put_requester(ctx, &mut resource, statement);
    let found = reasons(ctx, statement);
    put_list(&mut resource, "reasonCode", found.codes);
    put_list(&mut resource, "reasonReference", found.references);
    put_list(&mut resource, "note", notes(ctx, statement));
    let mut dosage = Map::new();
    let when = statement
        .children_named("effectiveTime")
        .into_iter()
        .find(|t| t.xsi_type().is_none_or(|x| x == "IVL_TS" || x == "TS"))
        .map(|t| When::of(Some(t)))
        .unwrap_or_default();
    if let Some(period) = when.period() {
        dosage.insert(
            "timing".into(),
            json!({ "repeat": { "boundsPeriod": period } }),
        );
    }
    put(
        &mut dosage,
        "route",
        statement
            .child("routeCode")
            .and_then(|r| concept(r, &ctx.narrative)),
    );
    if let Some(dose) = statement.child("doseQuantity").and_then(quantity) {
        dosage.insert("doseAndRate".into(), json!([{ "doseQuantity": dose }]));
    }
    if !dosage.is_empty() {
        resource.insert("dosageInstruction".into(), json!([dosage]));
    }
    ctx.add(Value::Object(resource));
    Ok(())
}

/// A Handoff Communication as a Communication from its author to its recipients.
fn communication(ctx: &mut Ctx, statement: Node) -> Mapped {
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Communication".into());
    resource.insert("id".into(), ctx.id_for("Communication", statement).into());
    put_identifiers(&mut resource, statement);
    let status = if negated(statement) {
        "not-done"
    } else if super::procedures::is_planned(statement) {
        "preparation"
    } else {
        "completed"
    };
    resource.insert("status".into(), status.into());
    resource.insert("subject".into(), ctx.subject());
    put(
        &mut resource,
        "topic",
        concept_or_text(ctx, usable_code(statement), statement),
    );
    put(
        &mut resource,
        "sent",
        When::of(statement.child("effectiveTime"))
            .first()
            .map(Value::from),
    );
    let (author, _) = first_author(ctx, statement);
    put(&mut resource, "sender", author);
    let recipients: Vec<Value> = statement
        .children_named("participant")
        .into_iter()
        .filter(|p| matches!(p.attr("typeCode"), Some("IRCP" | "PRCP") | None))
        .filter_map(|p| p.child("participantRole"))
        .filter_map(|r| role_practitioner(ctx, r))
        .map(|r| json!({ "reference": r }))
        .collect();
    if recipients.is_empty() && resource.get("topic").is_none() {
        return Err("the handoff communication names no recipient and no topic".into());
    }
    put_list(&mut resource, "recipient", recipients);
    ctx.add(Value::Object(resource));
    Ok(())
}

/// A `participantRole` naming a person (`playingEntity/name`) as a Practitioner.
fn role_practitioner(ctx: &mut Ctx, role: Node) -> Option<String> {
    let names: Vec<Value> = role
        .child("playingEntity")
        .map(|p| {
            p.children_named("name")
                .into_iter()
                .filter_map(human_name)
                .collect()
        })
        .unwrap_or_default();
    let ids = identifiers(role);
    if names.is_empty() {
        return None;
    }
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Practitioner".into());
    resource.insert("id".into(), ctx.id_for("Practitioner", role).into());
    put_list(&mut resource, "identifier", ids);
    put_list(&mut resource, "name", names);
    put_contacts(&mut resource, role);
    Some(ctx.add(Value::Object(resource)))
}

/// An Outcome Observation (how the patient is doing against a goal) as an Observation.
pub(crate) fn convert_outcome(ctx: &mut Ctx, statement: Node) -> Mapped {
    let code = concept_or_text(ctx, usable_code(statement), statement)
        .ok_or("the outcome has no code and no text")?;
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Observation".into());
    resource.insert("id".into(), ctx.id_for("Observation", statement).into());
    put_identifiers(&mut resource, statement);
    let status = match statement.child("statusCode").and_then(|s| s.attr("code")) {
        Some("active" | "new") => "preliminary",
        Some("cancelled" | "aborted") => "cancelled",
        Some("nullified") => "entered-in-error",
        _ => "final",
    };
    resource.insert("status".into(), status.into());
    resource.insert("code".into(), code);
    resource.insert("subject".into(), ctx.subject());
    When::of(statement.child("effectiveTime")).set_choice(&mut resource, "effective");
    let (author, _) = first_author(ctx, statement);
    put(&mut resource, "performer", author.map(|a| json!([a])));
    if let Some((key, value)) = statement
        .child("value")
        .and_then(|v| observation_value(v, &ctx.narrative))
    {
        resource.insert(key.into(), value);
    }
    // Progress toward the goal ("Goal achieved") is an interpretation of the outcome.
    put_list(
        &mut resource,
        "interpretation",
        related(statement, None)
            .into_iter()
            .filter(|s| s.has_template(&["2.16.840.1.113883.10.20.22.4.110"]))
            .filter_map(|s| s.child("value"))
            .filter_map(|v| concept(v, &ctx.narrative))
            .collect(),
    );
    put_list(&mut resource, "note", notes(ctx, statement));
    ctx.add(Value::Object(resource));
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::tests::{convert_document as document, convert_example, of_type};

    #[test]
    fn a_goal_from_its_value_with_the_author_who_set_it() {
        let c = convert_example("Goals/SDOH_Goal(C-CDA2.1).xml");
        let goal = of_type(&c, "Goal")[0];
        assert_eq!(goal["lifecycleStatus"], "active");
        assert_eq!(goal["description"]["coding"][0]["code"], "161036002");
        assert_eq!(goal["description"]["text"], "Housing adequate");
        assert_eq!(goal["startDate"], "2022-08-13");
        // high is nullFlavor: no due date.
        assert!(goal.get("target").is_none());
        assert!(
            goal["expressedBy"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Practitioner/")
        );
        assert_eq!(goal["note"][0]["text"], "Addresses: Inadequate Housing");
    }

    #[test]
    fn a_goal_coded_only_in_narrative() {
        let c = convert_example("Goals/Goals_Narrative_Only(C-CDA2.1).xml");
        let goal = of_type(&c, "Goal")[0];
        assert_eq!(
            goal["description"]["text"],
            "Patient is targeting a pulse oximetry of 92% and a weight of 195 lbs"
        );
        assert!(goal["description"].get("coding").is_none());
    }

    #[test]
    fn a_goal_with_a_target_range_addresses_its_concern() {
        let c = document("Care_Plan.xml");
        let goal = of_type(&c, "Goal")[0];
        assert_eq!(goal["description"]["coding"][0]["code"], "44616-1");
        let target = &goal["target"][0];
        assert_eq!(target["measure"]["coding"][0]["code"], "44616-1");
        assert_eq!(target["detailQuantity"]["value"], 92);
        assert_eq!(target["detailQuantity"]["comparator"], ">=");
        assert_eq!(target["detailQuantity"]["unit"], "%");
        assert_eq!(goal["priority"]["coding"][0]["code"], "394849002");
        // The Entry Reference points to the Health Concern act: its Conditions.
        let addresses = goal["addresses"].as_array().unwrap();
        assert!(!addresses.is_empty());
        for a in addresses {
            assert!(a["reference"].as_str().unwrap().starts_with("Condition/"));
        }
        let handoff = of_type(&c, "Communication")[0];
        assert_eq!(handoff["status"], "completed");
        assert!(
            handoff["recipient"][0]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Practitioner/")
        );
    }

    #[test]
    fn planned_items_are_requests_with_the_intent_of_their_mood() {
        let c = convert_example("Plan_of_Treatment/Planned_EKG(C-CDAR2.1).xml");
        let request = of_type(&c, "ServiceRequest")[0];
        assert_eq!(request["status"], "active");
        assert_eq!(request["intent"], "plan");
        assert_eq!(request["code"]["coding"][0]["code"], "34534-8");
        assert_eq!(request["code"]["text"], "EKG 12 channel panel");
        assert_eq!(request["occurrenceDateTime"], "2015-06-23");

        let c = convert_example("Plan_of_Treatment/No_Planned_Tests(C-CDAR2.1).xml");
        let requests = of_type(&c, "ServiceRequest");
        assert_eq!(requests.len(), 1, "'No planned tests' is not a request");
        assert_eq!(requests[0]["intent"], "order");
        assert_eq!(requests[0]["bodySite"][0]["coding"][0]["code"], "181255000");
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].contains("No Planned Tests"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn a_planned_encounter_keeps_its_performer_place_and_reason() {
        let c = convert_example(
            "Plan_of_Treatment/Planned_Encounter_-_Reason_for_Referral(C-CDAR2.1).xml",
        );
        let request = of_type(&c, "ServiceRequest")[0];
        assert_eq!(request["code"]["coding"][0]["code"], "11429006");
        assert_eq!(request["occurrencePeriod"]["start"], "2012-08-17");
        assert_eq!(request["reasonCode"][0]["coding"][0]["code"], "64109004");
        assert!(
            request["performer"][0]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Practitioner/")
        );
        let location = of_type(&c, "Location")[0];
        assert_eq!(location["name"], "Dr. Penny Puffer Office");
    }

    #[test]
    fn a_planned_procedure_keeps_its_alternatives() {
        let c = convert_example("Procedures/Procedure_Alternatives(C-CDA2.1).xml");
        let request = of_type(&c, "ServiceRequest")[0];
        assert_eq!(request["code"]["coding"][1]["code"], "80146002");
        assert_eq!(request["reasonCode"][0]["coding"][0]["code"], "74400008");
        assert_eq!(request["reasonCode"][0]["coding"][1]["code"], "K37");
        let notes: Vec<&str> = request["note"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["text"].as_str().unwrap())
            .collect();
        assert_eq!(notes.len(), 2);
        assert!(notes[1].contains("44970"));
    }

    #[test]
    fn goals_and_education_in_a_plan_section() {
        let c =
            convert_example("Plan_of_Treatment/Care_Plan_Goals_and_Instructions(C-CDAR2.1).xml");
        assert_eq!(of_type(&c, "Goal").len(), 1);
        let request = of_type(&c, "ServiceRequest")[0];
        assert_eq!(request["code"]["text"], "Asthma management");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn a_referral_is_a_referral_request() {
        // In the Reason for Referral section, a section of no kind of its own.
        let c = document("Referral_Note.xml");
        let request = of_type(&c, "ServiceRequest")
            .into_iter()
            .find(|r| r["code"]["coding"][0]["code"] == "44383000")
            .unwrap();
        assert_eq!(request["category"][0]["coding"][0]["code"], "3457005");
        assert_eq!(request["priority"], "asap");
        assert_eq!(request["intent"], "plan");
        assert_eq!(request["occurrenceDateTime"], "2013-03-11");
        assert!(
            request["requester"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Practitioner/")
        );
    }

    #[test]
    fn an_outcome_is_an_observation_with_its_progress() {
        let section = r##"<section><templateId root="2.16.840.1.113883.10.20.22.2.10"/>
            <code code="18776-5" codeSystem="2.16.840.1.113883.6.1"/><title>Plan</title>
            <entry><observation classCode="OBS" moodCode="EVN">
              <templateId root="2.16.840.1.113883.10.20.22.4.144"/>
              <id root="0aaaa123-24e2-46b3-9d49-6b753c712dec"/>
              <code code="44616-1" codeSystem="2.16.840.1.113883.6.1" displayName="Pulse oximetry panel"/>
              <statusCode code="completed"/><effectiveTime value="20130806"/>
              <value xsi:type="PQ" value="95.0" unit="%"/>
              <entryRelationship typeCode="SPRT" inversionInd="true">
                <observation classCode="OBS" moodCode="EVN">
                  <templateId root="2.16.840.1.113883.10.20.22.4.110"/>
                  <code code="ASSERTION" codeSystem="2.16.840.1.113883.5.4"/>
                  <value xsi:type="CD" code="390802008" codeSystem="2.16.840.1.113883.6.96" displayName="Goal achieved"/>
                </observation>
              </entryRelationship>
            </observation></entry></section>"##;
        let c = crate::convert(crate::tests::wrap_example(section).as_bytes()).unwrap();
        let outcome = of_type(&c, "Observation")[0];
        assert_eq!(outcome["status"], "final");
        assert_eq!(outcome["valueQuantity"]["value"].to_string(), "95.0");
        assert_eq!(outcome["effectiveDateTime"], "2013-08-06");
        assert_eq!(
            outcome["interpretation"][0]["coding"][0]["code"],
            "390802008"
        );
    }
}
