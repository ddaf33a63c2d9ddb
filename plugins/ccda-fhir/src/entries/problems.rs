//! Problems, diagnoses and health concerns as Conditions (C-CDA on FHIR "Problems" mapping).
//!
//! A Problem Concern Act wraps one or more Problem Observations; each observation is one
//! Condition. Its code is the observation's `value`, its onset and abatement the observation's
//! `effectiveTime` low and high, and its clinical status the Problem Status observation when
//! there is one, else whether it has ended, else the concern's own status.

use roxmltree::Node;
use serde_json::{Map, Value, json};

use super::{Mapped, concept_or_text, first_author, negated, put_identifiers, related};
use crate::Ctx;
use crate::datatypes::{When, fhir_concept, put};
use crate::xml::El;

const CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
const SNOMED_OID: &str = "2.16.840.1.113883.6.96";
/// The Problem Status observation (R2.1 and R1.1).
const PROBLEM_STATUS: &[&str] = &[
    "2.16.840.1.113883.10.20.22.4.6",
    "2.16.840.1.113883.10.20.22.4.6.2",
];

/// Where the Condition was listed.
#[derive(Clone, Copy)]
pub(crate) enum Category {
    ProblemList,
    EncounterDiagnosis,
    HealthConcern,
}

impl Category {
    fn concept(self) -> Value {
        match self {
            Category::ProblemList => {
                fhir_concept(CATEGORY, "problem-list-item", "Problem List Item")
            }
            Category::EncounterDiagnosis => {
                fhir_concept(CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")
            }
            Category::HealthConcern => fhir_concept(
                "http://hl7.org/fhir/us/core/CodeSystem/condition-category",
                "health-concern",
                "Health Concern",
            ),
        }
    }
}

/// A concern act (problem, admission/discharge diagnosis, health concern) or a bare problem
/// observation, as one Condition per problem observation in it.
pub(crate) fn convert(ctx: &mut Ctx, statement: Node, category: Category) -> Mapped {
    if statement.tag_name().name() == "observation" {
        return condition(ctx, statement, None, category).map(|_| ());
    }
    let observations: Vec<Node> = related(statement, None)
        .into_iter()
        .filter(|s| s.tag_name().name() == "observation")
        .collect();
    if observations.is_empty() {
        // A concern with no observation still names the concern in its own code or text.
        return Err("the concern holds no problem observation".into());
    }
    let mut reasons = Vec::new();
    let mut added = 0;
    for observation in observations {
        // A discharge diagnosis act nests another concern act: follow it.
        if observation.tag_name().name() == "act" {
            match convert(ctx, observation, category) {
                Ok(()) => added += 1,
                Err(reason) => reasons.push(reason),
            }
            continue;
        }
        match condition(ctx, observation, Some(statement), category) {
            Ok(_) => added += 1,
            Err(reason) => reasons.push(reason),
        }
    }
    if added == 0 {
        return Err(reasons.join("; "));
    }
    Ok(())
}

/// One Problem Observation as a Condition; `concern` is the act around it, if any.
fn condition(
    ctx: &mut Ctx,
    observation: Node,
    concern: Option<Node>,
    category: Category,
) -> Result<String, String> {
    let value = observation.child("value");
    let no_known = negated(observation)
        && value.is_some_and(|v| {
            v.attr("code") == Some("55607006") && v.attr("codeSystem") == Some(SNOMED_OID)
        });
    let code = if no_known {
        // "Problem" negated means the patient has no known problems (not a problem named
        // "Problem").
        Some(fhir_concept_snomed(
            "160245001",
            "No current problems or disability",
        ))
    } else {
        concept_or_text(
            ctx,
            value.filter(|v| {
                !v.is_null()
                    || v.child("originalText").is_some()
                    || v.child("translation").is_some()
            }),
            observation,
        )
    }
    .ok_or("the problem has no code and no text")?;

    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Condition".into());
    resource.insert("id".into(), ctx.id_for("Condition", observation).into());
    put_identifiers(&mut resource, observation);

    let when = When::of(observation.child("effectiveTime"));
    let status = if negated(observation) && !no_known {
        None
    } else {
        clinical_status(observation, concern, &when)
    };
    put(
        &mut resource,
        "clinicalStatus",
        status.map(|(code, display)| fhir_concept(CLINICAL, code, display)),
    );
    let (verification, display) = if negated(observation) && !no_known {
        ("refuted", "Refuted")
    } else {
        ("confirmed", "Confirmed")
    };
    resource.insert(
        "verificationStatus".into(),
        fhir_concept(VERIFICATION, verification, display),
    );
    resource.insert("category".into(), json!([category.concept()]));
    resource.insert("code".into(), code);
    resource.insert("subject".into(), ctx.subject());
    if let Some(encounter) = &ctx.encounter
        && matches!(category, Category::EncounterDiagnosis)
    {
        resource.insert("encounter".into(), json!({ "reference": encounter }));
    }
    if let Some(start) = when.first() {
        resource.insert("onsetDateTime".into(), start.into());
    }
    if let Some(end) = &when.end {
        resource.insert("abatementDateTime".into(), end.clone().into());
    }
    put(
        &mut resource,
        "bodySite",
        observation
            .child("targetSiteCode")
            .and_then(|s| crate::datatypes::concept(s, &ctx.narrative))
            .map(|s| json!([s])),
    );
    let (author, time) = first_author(ctx, observation);
    let (author, time) = match (author, time, concern) {
        (None, None, Some(concern)) => first_author(ctx, concern),
        other => (other.0, other.1),
    };
    // Condition.recorder names a person, never a device or an organisation.
    put(
        &mut resource,
        "recorder",
        super::only_types(author, super::PEOPLE),
    );
    let recorded =
        time.or_else(|| concern.and_then(|c| When::of(c.child("effectiveTime")).first()));
    put(&mut resource, "recordedDate", recorded.map(Value::from));
    Ok(ctx.add(Value::Object(resource)))
}

/// The clinical status: the Problem Status observation's value, else resolved when the problem
/// has ended, else the concern's status (active, or completed = resolved).
fn clinical_status(
    observation: Node,
    concern: Option<Node>,
    when: &When,
) -> Option<(&'static str, &'static str)> {
    let from_status = related(observation, Some("REFR"))
        .into_iter()
        .filter(|s| s.has_template(PROBLEM_STATUS))
        .find_map(|s| s.child("value").and_then(|v| v.attr("code")))
        .and_then(|code| match code {
            "55561003" => Some(("active", "Active")),
            "73425007" => Some(("inactive", "Inactive")),
            "413322009" => Some(("resolved", "Resolved")),
            "246455001" => Some(("recurrence", "Recurrence")),
            "277022003" => Some(("remission", "Remission")),
            _ => None,
        });
    if from_status.is_some() {
        return from_status;
    }
    if when.end.is_some() {
        return Some(("resolved", "Resolved"));
    }
    let concern_status = concern
        .and_then(|c| c.child("statusCode"))
        .and_then(|s| s.attr("code"));
    match concern_status {
        Some("completed") => Some(("resolved", "Resolved")),
        Some("suspended") => Some(("inactive", "Inactive")),
        Some("aborted") => Some(("inactive", "Inactive")),
        _ => Some(("active", "Active")),
    }
}

fn fhir_concept_snomed(code: &str, display: &str) -> Value {
    fhir_concept("http://snomed.info/sct", code, display)
}
