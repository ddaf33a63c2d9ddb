//! Medical history: the user's encounters (visits) newest first, each with the records that belong
//! to it ([`list`]), one visit with everything linked to it ([`encounter`]), and a page per
//! condition with the visits it came up in ([`condition`]). This module is what those pages
//! share: the groups a visit's records are sorted into, where a record's link leads, and the SQL
//! that reads encounters and what links to them. Words come from the read model
//! ([`crate::fhir::read`]); each record is one [`Line`].
//!
//! A record belongs to a visit when it references the encounter (`encounter`, `context`: the
//! `ref` token `Encounter/<id>`) or when the encounter references it (`reasonReference`,
//! `diagnosis`). A page costs a fixed number of queries whatever its size: one for the encounters,
//! one batched over the ref tokens for what points at them, one for what they point at. Billing
//! records (Claim, ExplanationOfBenefit) also point at every encounter but repeat what the clinical
//! records say, so they are left out. Every query filters by the user: another user's ids are
//! simply not found.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::Value;
use sqlx::{QueryBuilder, Sqlite};

use crate::fhir::read::Line;

mod condition;
mod encounter;
mod list;

pub use condition::{ConditionPage, EncounterLine, condition};
pub use encounter::{Encounter, Named, encounter};
pub use list::{Choice, Filters, HistoryPage, PAGE_SIZE, history};

/// How linked records are grouped on the pages, in display order: (heading, resource types).
const GROUPS: &[(&str, &[&str])] = &[
    ("Conditions", &["Condition"]),
    ("Procedures", &["Procedure"]),
    ("Results", &["Observation"]),
    (
        "Medications",
        &[
            "MedicationAdministration",
            "MedicationDispense",
            "MedicationRequest",
            "MedicationStatement",
        ],
    ),
    ("Immunizations", &["Immunization"]),
    (
        "Reports and documents",
        &[
            "DiagnosticReport",
            "DocumentReference",
            "ImagingStudy",
            "Media",
        ],
    ),
    (
        "Other records",
        &[
            "AllergyIntolerance",
            "CarePlan",
            "CareTeam",
            "Device",
            "DeviceRequest",
            "FamilyMemberHistory",
            "Goal",
            "NutritionOrder",
            "RiskAssessment",
            "ServiceRequest",
        ],
    ),
];

/// The group index of a resource type, or None for types the history does not show.
fn group_of(resource_type: &str) -> Option<usize> {
    GROUPS
        .iter()
        .position(|(_, types)| types.contains(&resource_type))
}

/// Every resource type shown as linked to a visit, for the queries' `IN (...)` lists.
fn shown_types() -> impl Iterator<Item = &'static str> {
    GROUPS.iter().flat_map(|(_, types)| types.iter().copied())
}

/// The records of one group on a visit's or a condition's page.
#[derive(Debug, Serialize)]
pub struct Group {
    pub label: &'static str,
    pub items: Vec<Line>,
}

/// The page of a stored record: conditions have their own, everything else is shown by Explore.
pub fn record_href(reference: &str) -> String {
    match reference.strip_prefix("Condition/") {
        Some(id) => format!("/conditions/{id}"),
        None => format!("/explore/{reference}"),
    }
}

/// A stored record with the name of its source: an encounter or a condition.
#[derive(sqlx::FromRow)]
struct Row {
    resource_type: String,
    resource_id: String,
    sort_date: Option<String>,
    sort_title: Option<String>,
    json: String,
    source_name: String,
}

/// A record found through one of its ref tokens (`link`, "Encounter/<id>").
#[derive(sqlx::FromRow)]
struct LinkedRow {
    link: String,
    resource_type: String,
    resource_id: String,
    sort_date: Option<String>,
    sort_title: Option<String>,
    json: String,
}

impl LinkedRow {
    fn line(&self) -> Line {
        let json: Value = serde_json::from_str(&self.json).unwrap_or(Value::Null);
        Line::new(
            &self.resource_type,
            &self.resource_id,
            self.sort_date.as_deref(),
            self.sort_title.as_deref(),
            &json,
        )
    }
}

/// The columns of a [`Row`], with the `FROM` they need.
const ROW_COLUMNS: &str = "r.resource_type, r.resource_id, r.sort_date, r.sort_title, \
     r.json, s.display_name AS source_name FROM resources r JOIN sources s ON s.id = r.source_id";

/// The `SELECT` of [`LinkedRow`]s: records through their ref tokens (`t`), to be narrowed by
/// the caller from the `WHERE t.person_id = ` it ends with.
const LINKED_SELECT: &str = "SELECT t.value AS link, r.resource_type, r.resource_id, \
     r.sort_date, r.sort_title, r.json
     FROM resource_tokens t JOIN resources r ON r.source_id = t.source_id
     AND r.resource_type = t.resource_type AND r.resource_id = t.resource_id
     WHERE t.person_id = ";

/// Appends the SQL selecting the ids of encounters linked to a condition: the condition's own
/// encounter, encounters that reference it (reasonReference, diagnosis), and encounters of the
/// records that reference it (a procedure done for it, say).
fn push_condition_encounters(qb: &mut QueryBuilder<'_, Sqlite>, person_id: i64, condition: &str) {
    qb.push("SELECT substr(value, 11) FROM resource_tokens WHERE person_id = ")
        .push_bind(person_id)
        .push(" AND resource_type = 'Condition' AND resource_id = ")
        .push_bind(condition.to_string())
        .push(" AND kind = 'ref' AND value LIKE 'Encounter/%'");
    qb.push(" UNION SELECT resource_id FROM resource_tokens WHERE person_id = ")
        .push_bind(person_id)
        .push(" AND kind = 'ref' AND value = ")
        .push_bind(format!("Condition/{condition}"))
        .push(" AND resource_type = 'Encounter'");
    qb.push(
        " UNION SELECT substr(e.value, 11) FROM resource_tokens c JOIN resource_tokens e
         ON e.source_id = c.source_id AND e.resource_type = c.resource_type
         AND e.resource_id = c.resource_id WHERE c.person_id = ",
    )
    .push_bind(person_id)
    .push(" AND c.kind = 'ref' AND c.value = ")
    .push_bind(format!("Condition/{condition}"))
    .push(" AND e.kind = 'ref' AND e.value LIKE 'Encounter/%'");
}

/// Appends the [`shown_types`] as an SQL list.
fn push_type_list(qb: &mut QueryBuilder<'_, Sqlite>) {
    // The names are this module's constants, so they are written into the SQL as literals.
    let list: Vec<String> = shown_types().map(|t| format!("'{t}'")).collect();
    qb.push(list.join(", "));
}

/// Sorts lines into the display groups, dropping duplicates (a record both referencing the
/// encounter and referenced by it) and types the history does not show.
fn group_lines(lines: Vec<Line>) -> Vec<Group> {
    let mut groups: Vec<Group> = GROUPS
        .iter()
        .map(|(label, _)| Group {
            label,
            items: Vec::new(),
        })
        .collect();
    let mut seen = HashSet::new();
    for line in lines {
        let Some(index) = group_of(&line.resource_type) else {
            continue;
        };
        if seen.insert((line.resource_type.clone(), line.id.clone())) {
            groups[index].items.push(line);
        }
    }
    groups.retain(|g| !g.items.is_empty());
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_grouped_once_and_billing_is_left_out() {
        let line = |kind: &str, id: &str| Line::new(kind, id, None, Some(kind), &Value::Null);
        let groups = group_lines(vec![
            line("Observation", "o1"),
            line("Condition", "c1"),
            line("Claim", "x"),
            line("Condition", "c1"),
        ]);
        let labels: Vec<&str> = groups.iter().map(|g| g.label).collect();
        assert_eq!(labels, ["Conditions", "Results"]);
        assert_eq!(groups[0].items.len(), 1);
        assert_eq!(record_href("Condition/c1"), "/conditions/c1");
        assert_eq!(record_href("Organization/o1"), "/explore/Organization/o1");
    }
}
