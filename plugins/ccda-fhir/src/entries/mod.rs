//! Section entries as FHIR resources: the section driver, which accounts for every entry, and
//! one module per kind of clinical statement.
//!
//! Each mapping is `fn(&mut Ctx, statement, ...) -> Result<(), String>`: `Ok` when it added at
//! least one resource for the entry (or found it already added), `Err(reason)` when it added
//! none. The reason is one short phrase a person can read ("it has no problem code or text");
//! the driver turns it into a warning that names the section and the entry.

mod allergies;
mod encounters;
mod equipment;
mod family;
mod immunizations;
mod medications;
mod plans;
mod problems;
mod procedures;
mod results;
mod social;

use roxmltree::Node;
use serde_json::{Value, json};

use crate::narrative::narrative_text;
use crate::sections::{self, Kind};
use crate::xml::El;
use crate::{Ctx, SectionReport};

/// What an entry mapping returns.
pub(crate) type Mapped = Result<(), String>;

/// Converts one section's entries, and its narrative when it has no entries.
pub(crate) fn convert_section(ctx: &mut Ctx, section: Node) -> SectionReport {
    let kind = sections::kind_of(section);
    let title = sections::title_of(section);
    ctx.section = title.clone();
    let entries = section.children_named("entry");
    let mut report = SectionReport {
        title,
        kind,
        entries: entries.len(),
        converted: 0,
        warned: 0,
        note: false,
    };
    for (index, entry) in entries.iter().enumerate() {
        let outcome = match statement(*entry) {
            Some(statement) => convert_entry(ctx, kind, statement),
            None => Err("it holds no clinical statement".into()),
        };
        match outcome {
            Ok(()) => report.converted += 1,
            Err(reason) => {
                report.warned += 1;
                ctx.warn(format!("entry {} was not converted: {reason}", index + 1));
            }
        }
    }
    if entries.is_empty() && !section.is_null() {
        report.note = section_note(ctx, section);
    }
    report
}

/// The clinical statement an `entry` holds (`act`, `observation`, `organizer`...).
fn statement<'a, 'i>(entry: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    entry.elements().into_iter().find(|c| {
        !matches!(
            c.tag_name().name(),
            "templateId" | "realmCode" | "typeId" | "sequenceNumber"
        )
    })
}

/// Template roots of clinical statements, for entries in sections of another kind.
mod template {
    pub(crate) const PROBLEM_CONCERN: &str = "2.16.840.1.113883.10.20.22.4.3";
    pub(crate) const PROBLEM_OBSERVATION: &str = "2.16.840.1.113883.10.20.22.4.4";
    pub(crate) const HEALTH_CONCERN: &str = "2.16.840.1.113883.10.20.22.4.132";
    pub(crate) const ADMISSION_DIAGNOSIS: &str = "2.16.840.1.113883.10.20.22.4.34";
    pub(crate) const DISCHARGE_DIAGNOSIS: &str = "2.16.840.1.113883.10.20.22.4.33";
    pub(crate) const ENCOUNTER_DIAGNOSIS: &str = "2.16.840.1.113883.10.20.22.4.80";
    pub(crate) const ALLERGY_CONCERN: &str = "2.16.840.1.113883.10.20.22.4.30";
    pub(crate) const MEDICATION_ACTIVITY: &str = "2.16.840.1.113883.10.20.22.4.16";
    pub(crate) const DISCHARGE_MEDICATION: &str = "2.16.840.1.113883.10.20.22.4.35";
    pub(crate) const IMMUNIZATION_ACTIVITY: &str = "2.16.840.1.113883.10.20.22.4.52";
    pub(crate) const RESULT_ORGANIZER: &str = "2.16.840.1.113883.10.20.22.4.1";
    pub(crate) const RESULT_OBSERVATION: &str = "2.16.840.1.113883.10.20.22.4.2";
    pub(crate) const VITAL_SIGNS_ORGANIZER: &str = "2.16.840.1.113883.10.20.22.4.26";
    pub(crate) const PROCEDURE_ACTIVITY: &[&str] = &[
        "2.16.840.1.113883.10.20.22.4.14",
        "2.16.840.1.113883.10.20.22.4.13",
        "2.16.840.1.113883.10.20.22.4.12",
    ];
    pub(crate) const ENCOUNTER_ACTIVITY: &str = "2.16.840.1.113883.10.20.22.4.49";
    pub(crate) const GOAL: &str = "2.16.840.1.113883.10.20.22.4.121";
    pub(crate) const SMOKING_STATUS: &[&str] = &[
        "2.16.840.1.113883.10.20.22.4.78",
        "2.16.840.1.113883.10.20.22.4.85",
    ];
    /// Social History Observation, Birth Sex, Pregnancy Observation.
    pub(crate) const SOCIAL: &[&str] = &[
        "2.16.840.1.113883.10.20.22.4.38",
        "2.16.840.1.113883.10.20.22.4.200",
        "2.16.840.1.113883.10.20.15.3.8",
    ];
    pub(crate) const OUTCOME_OBSERVATION: &str = "2.16.840.1.113883.10.20.22.4.144";
    /// Handoff Communication, Planned Intervention, Patient Referral, Instruction, Nutrition
    /// Recommendation, the Planned Act/Encounter/Procedure/Medication/Supply/Observation, and
    /// Planned Immunization.
    pub(crate) const PLANNED: &[&str] = &[
        "2.16.840.1.113883.10.20.22.4.141",
        "2.16.840.1.113883.10.20.22.4.146",
        "2.16.840.1.113883.10.20.22.4.140",
        "2.16.840.1.113883.10.20.22.4.20",
        "2.16.840.1.113883.10.20.22.4.130",
        "2.16.840.1.113883.10.20.22.4.39",
        "2.16.840.1.113883.10.20.22.4.40",
        "2.16.840.1.113883.10.20.22.4.41",
        "2.16.840.1.113883.10.20.22.4.42",
        "2.16.840.1.113883.10.20.22.4.43",
        "2.16.840.1.113883.10.20.22.4.44",
        "2.16.840.1.113883.10.20.22.4.120",
    ];
    pub(crate) const INTERVENTION_ACT: &str = "2.16.840.1.113883.10.20.22.4.131";
    /// Non-Medicinal Supply Activity, Medical Equipment Organizer.
    pub(crate) const EQUIPMENT: &[&str] = &[
        "2.16.840.1.113883.10.20.22.4.50",
        "2.16.840.1.113883.10.20.22.4.135",
    ];
    /// Coverage Activity, Policy Activity.
    pub(crate) const COVERAGE: &[&str] = &[
        "2.16.840.1.113883.10.20.22.4.60",
        "2.16.840.1.113883.10.20.22.4.61",
    ];
    pub(crate) const CARE_TEAM: &str = "2.16.840.1.113883.10.20.22.4.500";
    pub(crate) const INDICATION: &str = "2.16.840.1.113883.10.20.22.4.19";
    pub(crate) const ASSESSMENT_SCALE: &str = "2.16.840.1.113883.10.20.22.4.69";
    /// Preoperative Diagnosis, Postprocedure Diagnosis: acts holding Problem Observations.
    pub(crate) const SURGICAL_DIAGNOSIS: &[&str] = &[
        "2.16.840.1.113883.10.20.22.4.65",
        "2.16.840.1.113883.10.20.22.4.51",
    ];
}

fn convert_entry(ctx: &mut Ctx, kind: Kind, statement: Node) -> Mapped {
    use problems::Category;
    match kind {
        Kind::Problems => problems::convert(ctx, statement, Category::ProblemList),
        Kind::Diagnoses => problems::convert(ctx, statement, Category::EncounterDiagnosis),
        Kind::HealthConcerns => problems::convert(ctx, statement, Category::HealthConcern),
        Kind::Allergies => allergies::convert(ctx, statement),
        Kind::Medications | Kind::OtherMedications => medications::convert(ctx, statement),
        Kind::Immunizations => immunizations::convert(ctx, statement),
        Kind::Results => results::convert_result(ctx, statement),
        Kind::VitalSigns => results::convert_vitals(ctx, statement),
        Kind::Procedures | Kind::Interventions => procedures::convert(ctx, statement),
        Kind::Encounters => encounters::convert(ctx, statement),
        Kind::SocialHistory => social::convert(ctx, statement),
        Kind::FunctionalStatus | Kind::MentalStatus => social::convert_status(ctx, statement, kind),
        Kind::FamilyHistory => family::convert(ctx, statement),
        Kind::Goals => plans::convert_goal(ctx, statement),
        Kind::PlanOfTreatment => plans::convert_planned(ctx, statement),
        Kind::MedicalEquipment => equipment::convert_device(ctx, statement),
        Kind::Payers => equipment::convert_coverage(ctx, statement),
        Kind::CareTeam => equipment::convert_care_team(ctx, statement),
        Kind::Other => by_template(ctx, statement),
    }
}

/// An entry of a section Fasten has no mapping for (a Reason for Referral, an Assessment):
/// mapped by its own template when it is one of the statements above.
fn by_template(ctx: &mut Ctx, statement: Node) -> Mapped {
    use problems::Category;
    use template::*;
    let t = |root: &str| statement.has_template(&[root]);
    if t(PROBLEM_CONCERN) || t(PROBLEM_OBSERVATION) {
        problems::convert(ctx, statement, Category::ProblemList)
    } else if t(HEALTH_CONCERN) {
        problems::convert(ctx, statement, Category::HealthConcern)
    } else if t(ADMISSION_DIAGNOSIS) || t(DISCHARGE_DIAGNOSIS) || t(ENCOUNTER_DIAGNOSIS) {
        problems::convert(ctx, statement, Category::EncounterDiagnosis)
    } else if t(ALLERGY_CONCERN) {
        allergies::convert(ctx, statement)
    } else if t(MEDICATION_ACTIVITY) || t(DISCHARGE_MEDICATION) {
        medications::convert(ctx, statement)
    } else if t(IMMUNIZATION_ACTIVITY) {
        immunizations::convert(ctx, statement)
    } else if t(RESULT_ORGANIZER) || t(RESULT_OBSERVATION) {
        results::convert_result(ctx, statement)
    } else if t(VITAL_SIGNS_ORGANIZER) {
        results::convert_vitals(ctx, statement)
    } else if statement.has_template(PROCEDURE_ACTIVITY) {
        procedures::convert(ctx, statement)
    } else if t(ENCOUNTER_ACTIVITY) {
        encounters::convert(ctx, statement)
    } else if t(GOAL) {
        plans::convert_goal(ctx, statement)
    } else if t(OUTCOME_OBSERVATION) {
        plans::convert_outcome(ctx, statement)
    } else if statement.has_template(PLANNED) {
        plans::convert_planned(ctx, statement)
    } else if t(INTERVENTION_ACT) {
        procedures::convert(ctx, statement)
    } else if statement.has_template(EQUIPMENT) {
        equipment::convert_device(ctx, statement)
    } else if statement.has_template(COVERAGE) {
        equipment::convert_coverage(ctx, statement)
    } else if t(CARE_TEAM) {
        equipment::convert_care_team(ctx, statement)
    } else if t(INDICATION) {
        // Why a procedure was done: a finding or condition of the patient.
        problems::convert(ctx, statement, Category::EncounterDiagnosis)
    } else if t(ASSESSMENT_SCALE) {
        social::convert_status(ctx, statement, Kind::MentalStatus)
    } else if statement.has_template(SMOKING_STATUS) || statement.has_template(SOCIAL) {
        social::convert(ctx, statement)
    } else if statement.has_template(SURGICAL_DIAGNOSIS) {
        problems::convert(ctx, statement, Category::EncounterDiagnosis)
    } else if matches!(
        statement.attr("moodCode"),
        Some("INT" | "RQO" | "PRMS" | "PRP" | "ARQ" | "APT")
    ) {
        // Planned items (an Instruction, a Planned Procedure) in a plan-like section.
        plans::convert_planned(ctx, statement)
    } else if statement.tag_name().name() == "observation" {
        // A finding of another kind (a nutrition assessment, a skin finding, an imaging finding).
        plain_observation(ctx, statement)
    } else if statement.tag_name().name() == "organizer" {
        // An organizer of findings (advance directives, say): each of them.
        let members: Vec<Node> = statement
            .children_named("component")
            .into_iter()
            .filter_map(statement_of)
            .filter(|m| m.tag_name().name() == "observation")
            .collect();
        let converted = members
            .iter()
            .filter(|m| plain_observation(ctx, **m).is_ok())
            .count();
        if converted == 0 {
            return Err("the organizer holds no observation Fasten can read".into());
        }
        Ok(())
    } else {
        let template = statement
            .template_ids()
            .first()
            .map(|t| format!(", template {t}"))
            .unwrap_or_default();
        Err(format!(
            "Fasten does not convert this kind of entry (an <{}>{template})",
            statement.tag_name().name()
        ))
    }
}

/// An observation of no kind Fasten knows better, as an Observation (category "exam"): its code
/// (or narrative), value, time, interpretation and author, so a finding is never lost.
fn plain_observation(ctx: &mut Ctx, statement: Node) -> Mapped {
    let mut resource = observation_resource(ctx, statement, ("exam", "Exam"))?;
    let (author, _) = first_author(ctx, statement);
    let performer = only_types(
        author,
        &[
            "Practitioner",
            "PractitionerRole",
            "Organization",
            "Patient",
            "RelatedPerson",
        ],
    );
    crate::datatypes::put(&mut resource, "performer", performer.map(|a| json!([a])));
    if let Some(encounter) = &ctx.encounter {
        resource.insert("encounter".into(), json!({ "reference": encounter }));
    }
    ctx.add(Value::Object(resource));
    Ok(())
}

/// The parts every Observation made from an `observation` statement has: its id, status (a
/// negated one is cancelled), `category` (code, display), code (or narrative), time, value (or
/// why there is none: not performed, unknown) and interpretation. Callers add what their
/// template says beyond that.
pub(crate) fn observation_resource(
    ctx: &Ctx,
    statement: Node,
    (category, category_display): (&str, &str),
) -> Result<serde_json::Map<String, Value>, String> {
    use crate::datatypes::{When, fhir_concept, observation_value, put};
    let code = concept_or_text(ctx, usable_code(statement), statement)
        .ok_or("the observation has no code and no text")?;
    let mut resource = serde_json::Map::new();
    resource.insert("resourceType".into(), "Observation".into());
    resource.insert("id".into(), ctx.id_for("Observation", statement).into());
    put_identifiers(&mut resource, statement);
    let status = if negated(statement) {
        "cancelled"
    } else {
        match statement.child("statusCode").and_then(|s| s.attr("code")) {
            Some("active" | "new") => "preliminary",
            Some("aborted" | "cancelled") => "cancelled",
            Some("nullified") => "entered-in-error",
            _ => "final",
        }
    };
    resource.insert("status".into(), status.into());
    resource.insert(
        "category".into(),
        json!([fhir_concept(
            "http://terminology.hl7.org/CodeSystem/observation-category",
            category,
            category_display
        )]),
    );
    resource.insert("code".into(), code);
    resource.insert("subject".into(), ctx.subject());
    When::of(statement.child("effectiveTime")).set_choice(&mut resource, "effective");
    let value = statement
        .child("value")
        .and_then(|v| observation_value(v, &ctx.narrative));
    match value {
        Some((key, value)) if !negated(statement) => {
            resource.insert(key.into(), value);
        }
        _ => {
            let (code, display) = if negated(statement) {
                ("not-performed", "Not Performed")
            } else {
                ("unknown", "Unknown")
            };
            resource.insert(
                "dataAbsentReason".into(),
                fhir_concept(
                    "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    code,
                    display,
                ),
            );
        }
    }
    put(
        &mut resource,
        "interpretation",
        statement
            .child("interpretationCode")
            .and_then(|i| crate::datatypes::concept(i, &ctx.narrative))
            .map(|i| json!([i])),
    );
    Ok(resource)
}

/// A section with narrative and no entries (an assessment, hospital course, instructions) as a
/// note: a DocumentReference holding its text, so it can be searched and read on its own.
/// Returns false when the section has no text.
fn section_note(ctx: &mut Ctx, section: Node) -> bool {
    use base64::Engine;
    let Some(text) = section
        .child("text")
        .map(narrative_text)
        .filter(|t| !t.is_empty())
    else {
        return false;
    };
    let title = sections::title_of(section);
    let key = section
        .child("code")
        .and_then(|c| c.attr("code"))
        .map(|code| format!("section:{code}:{title}"))
        .unwrap_or_else(|| format!("section:{title}"));
    let mut note = json!({
        "resourceType": "DocumentReference",
        "id": ctx.id_in_document("DocumentReference", &key),
        "status": "current",
        "docStatus": "final",
        "category": [{ "coding": [{
            "system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
            "code": "clinical-note",
            "display": "Clinical Note"
        }] }],
        "subject": ctx.subject(),
        "description": title,
        "content": [{ "attachment": {
            "contentType": "text/plain; charset=utf-8",
            "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
            "title": title,
        } }],
        "context": { "related": [{ "reference": ctx.document }] },
    });
    if let Some(code) = section
        .child("code")
        .and_then(|c| crate::datatypes::concept(c, &ctx.narrative))
    {
        note["type"] = code;
    }
    if let Some(time) = ctx.document_time.as_ref().filter(|t| t.len() > 10) {
        note["date"] = Value::from(time.clone());
    }
    if let Some(encounter) = &ctx.encounter {
        note["context"]["encounter"] = json!([{ "reference": encounter }]);
    }
    ctx.add(note);
    true
}

/// What a statement is about: its coded concept (`code`, or the `value` of an observation when
/// the caller passes that), else the words of its narrative (`text`, or `originalText` through a
/// reference). None when it has neither.
pub(crate) fn concept_or_text(ctx: &Ctx, coded: Option<Node>, statement: Node) -> Option<Value> {
    coded
        .and_then(|c| crate::datatypes::concept(c, &ctx.narrative))
        .or_else(|| {
            statement
                .child("text")
                .and_then(|t| ctx.narrative.text_of(t))
                .map(crate::datatypes::text_concept)
        })
}

/// The `code` of a statement when it says something (a code, or original text, or
/// translations), not only a nullFlavor.
pub(crate) fn usable_code<'a, 'i>(statement: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    statement.child("code").filter(|c| {
        !c.is_null() || c.child("originalText").is_some() || c.child("translation").is_some()
    })
}

/// What an entity (a substance, an allergen, a drug vehicle) is: its code (with translations and
/// original text), else its name. None when the document names nothing (`nullFlavor="NA"`).
pub(crate) fn entity_concept(ctx: &Ctx, entity: Node) -> Option<Value> {
    entity
        .child("code")
        .and_then(|c| crate::datatypes::concept(c, &ctx.narrative))
        .or_else(|| {
            entity
                .child("name")
                .map(|n| n.text_content())
                .filter(|n| !n.is_empty())
                .map(crate::datatypes::text_concept)
        })
}

/// The first `author` of a statement that names a person or organisation, as a reference,
/// with the time it gives.
pub(crate) fn first_author(ctx: &mut Ctx, statement: Node) -> (Option<Value>, Option<String>) {
    let mut time = None;
    for author in statement.children_named("author") {
        time = time.or_else(|| author.child("time").and_then(crate::datatypes::time_of));
        if let Some(reference) = crate::header::author(ctx, author) {
            return (Some(json!({ "reference": reference })), time);
        }
    }
    (None, time)
}

/// The practitioners of a statement's `performer`s, as references.
pub(crate) fn performers(ctx: &mut Ctx, statement: Node) -> Vec<String> {
    statement
        .children_named("performer")
        .into_iter()
        .filter_map(|p| {
            let assigned = p.child("assignedEntity")?;
            // A lab named only by its organisation is that organisation, not a nameless
            // practitioner with an id.
            let organization = assigned.child("representedOrganization");
            if assigned.child("assignedPerson").is_none()
                && let Some(reference) =
                    organization.and_then(|o| crate::header::organization(ctx, o))
            {
                return Some(reference);
            }
            crate::header::practitioner(ctx, assigned)
                .or_else(|| organization.and_then(|o| crate::header::organization(ctx, o)))
        })
        .collect()
}

/// The statements under a statement's `entryRelationship`s (any type code, or only `type_code`).
pub(crate) fn related<'a, 'i>(
    statement: Node<'a, 'i>,
    type_code: Option<&str>,
) -> Vec<Node<'a, 'i>> {
    statement
        .children_named("entryRelationship")
        .into_iter()
        .filter(|r| type_code.is_none() || r.attr("typeCode") == type_code)
        .filter_map(statement_of)
        .collect()
}

/// The clinical statement inside an `entryRelationship` or `component`.
pub(crate) fn statement_of<'a, 'i>(holder: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    statement(holder)
}

/// True for `negationInd="true"`: the statement says the thing did not happen or is absent.
pub(crate) fn negated(statement: Node) -> bool {
    statement.attr("negationInd") == Some("true")
}

/// The statement's own ids as the resource's identifiers.
pub(crate) fn put_identifiers(resource: &mut serde_json::Map<String, Value>, statement: Node) {
    crate::datatypes::put_list(
        resource,
        "identifier",
        crate::datatypes::identifiers(statement),
    );
}

/// Who may have recorded a clinical record (`recorder`, `asserter`): a person, never a device or
/// an organisation.
pub(crate) const PEOPLE: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Patient",
    "RelatedPerson",
];

/// A reference kept only when it points to one of `types` (an author may be a Device, which
/// most "recorder" fields do not accept).
pub(crate) fn only_types(reference: Option<Value>, types: &[&str]) -> Option<Value> {
    reference.filter(|r| {
        r["reference"]
            .as_str()
            .and_then(|r| r.split_once('/'))
            .is_some_and(|(t, _)| types.contains(&t))
    })
}
