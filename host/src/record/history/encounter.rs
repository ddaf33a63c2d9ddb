//! One visit (`/history/encounter/{id}`), and every visit of the history list: an encounter with
//! its reasons, places and people (linked when they are among the user's records) and the records
//! that belong to it, sorted into the display groups. [`with_linked`] reads any number of
//! encounters' links in two batched queries.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::{
    Group, LINKED_SELECT, LinkedRow, ROW_COLUMNS, Row, group_lines, push_type_list, record_href,
};
use crate::fhir::{self, read, read::Line};

/// A named thing an encounter refers to, linked when it is among the user's records.
#[derive(Debug, Serialize)]
pub struct Named {
    pub name: String,
    /// Where the name leads, below the base path, when the record is stored: a condition's page,
    /// else the record in Explore.
    pub href: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Encounter {
    pub id: String,
    pub date: Option<String>,
    pub iso_date: Option<String>,
    pub end_date: Option<String>,
    pub type_text: String,
    pub class: Option<String>,
    pub status: Option<String>,
    pub reasons: Vec<Named>,
    /// The organisation or place where it happened.
    pub places: Vec<Named>,
    pub people: Vec<Named>,
    pub groups: Vec<Group>,
    pub linked_count: usize,
    pub source_name: String,
}

/// One encounter with everything linked to it, or None when the user has no such encounter.
pub async fn encounter(
    db: &SqlitePool,
    person_id: i64,
    id: &str,
) -> Result<Option<Encounter>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {ROW_COLUMNS} WHERE r.person_id = ? AND r.resource_type = 'Encounter'
         AND r.resource_id = ? ORDER BY r.source_id LIMIT 1"
    ))
    .bind(person_id)
    .bind(id)
    .fetch_all(db)
    .await?;
    Ok(with_linked(db, person_id, rows).await?.pop())
}

/// Turns encounter rows into encounters with their linked records, in two batched queries.
pub(super) async fn with_linked(
    db: &SqlitePool,
    person_id: i64,
    rows: Vec<Row>,
) -> Result<Vec<Encounter>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let parsed: Vec<(Row, Value)> = rows
        .into_iter()
        .map(|row| {
            let json = serde_json::from_str(&row.json).unwrap_or(Value::Null);
            (row, json)
        })
        .collect();

    // What points at these encounters, found through the ref token index.
    let mut incoming = QueryBuilder::<Sqlite>::new(LINKED_SELECT);
    incoming
        .push_bind(person_id)
        .push(" AND t.kind = 'ref' AND t.resource_type IN (");
    push_type_list(&mut incoming);
    incoming.push(") AND t.value IN (");
    let mut values = incoming.separated(", ");
    for (row, _) in &parsed {
        values.push_bind(format!("Encounter/{}", row.resource_id));
    }
    incoming.push(") ORDER BY r.sort_date, r.sort_title");
    let linked: Vec<LinkedRow> = incoming.build_query_as().fetch_all(db).await?;
    // What these encounters point at: reasons, diagnoses, people and places.
    let mut wanted: HashSet<String> = HashSet::new();
    for (_, json) in &parsed {
        for reference in outgoing(json) {
            wanted.insert(reference.reference);
        }
    }
    let mut targets: HashMap<String, (Option<String>, Option<String>, String)> = HashMap::new();
    if !wanted.is_empty() {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT resource_type || '/' || resource_id, sort_date, sort_title, json
             FROM resources WHERE person_id = ",
        );
        // The type list lets SQLite use the (person_id, resource_type, ...) index.
        let types: HashSet<&str> = wanted
            .iter()
            .filter_map(|r| r.split_once('/').map(|(t, _)| t))
            .collect();
        query.push_bind(person_id).push(" AND resource_type IN (");
        let mut values = query.separated(", ");
        for kind in types {
            values.push_bind(kind.to_string());
        }
        query.push(") AND resource_type || '/' || resource_id IN (");
        let mut values = query.separated(", ");
        for reference in &wanted {
            values.push_bind(reference.clone());
        }
        // The first source's copy wins when two sources hold the same record.
        query.push(") ORDER BY source_id");
        let found: Vec<(String, Option<String>, Option<String>, String)> =
            query.build_query_as().fetch_all(db).await?;
        for (reference, date, title, json) in found {
            targets.entry(reference).or_insert((date, title, json));
        }
    }

    let mut by_encounter: HashMap<String, Vec<Line>> = HashMap::new();
    for row in &linked {
        let encounter_id = row.link.trim_start_matches("Encounter/").to_string();
        by_encounter
            .entry(encounter_id)
            .or_default()
            .push(row.line());
    }

    let encounters = parsed
        .into_iter()
        .map(|(row, json)| {
            let mut lines = by_encounter.remove(&row.resource_id).unwrap_or_default();
            let mut reasons = concepts(&json, "reasonCode");
            let mut places = Vec::new();
            let mut people = Vec::new();
            for reference in outgoing(&json) {
                let target = targets.get(&reference.reference);
                let name = reference
                    .display
                    .clone()
                    .or_else(|| {
                        let (_, title, json) = target?;
                        serde_json::from_str::<Value>(json)
                            .ok()
                            .and_then(|j| read::own_name(&j))
                            .or_else(|| title.clone())
                    })
                    .map(|n| read::name(&n));
                let (resource_type, id) = reference
                    .reference
                    .split_once('/')
                    .expect("outgoing references are Type/id");
                if reference.role == Role::Record
                    && let Some((date, title, json)) = target
                {
                    let json: Value = serde_json::from_str(json).unwrap_or(Value::Null);
                    lines.push(Line::new(
                        resource_type,
                        id,
                        date.as_deref(),
                        title.as_deref(),
                        &json,
                    ));
                }
                let Some(name) = name else { continue };
                let named = Named {
                    name,
                    href: target.map(|_| record_href(&reference.reference)),
                };
                let list = match reference.role {
                    Role::Reason => &mut reasons,
                    Role::Place => &mut places,
                    Role::Person => &mut people,
                    Role::Record => continue,
                };
                if !list.iter().any(|n| n.name == named.name) {
                    list.push(named);
                }
            }
            let groups = group_lines(lines);
            let linked_count = groups.iter().map(|g| g.items.len()).sum();
            let date = json.pointer("/period/start").and_then(Value::as_str);
            Encounter {
                date: date.or(row.sort_date.as_deref()).map(read::date),
                iso_date: row.sort_date.as_deref().map(read::iso_date),
                end_date: json
                    .pointer("/period/end")
                    .and_then(Value::as_str)
                    .map(read::date),
                type_text: row
                    .sort_title
                    .as_deref()
                    .map(read::name)
                    .unwrap_or_else(|| "Visit".to_string()),
                class: json.get("class").and_then(read::encounter_class),
                status: json
                    .get("status")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                reasons,
                places,
                people,
                groups,
                linked_count,
                source_name: row.source_name,
                id: row.resource_id,
            }
        })
        .collect();
    Ok(encounters)
}

/// What an encounter's reference says about the visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Reason,
    Record,
    Place,
    Person,
}

/// A reference of an encounter's, with the name it gives its target.
#[derive(Debug)]
struct Outgoing {
    reference: String,
    display: Option<String>,
    role: Role,
}

/// The `Type/id` references of an encounter that the pages show, with their role.
fn outgoing(encounter: &Value) -> Vec<Outgoing> {
    let mut out = Vec::new();
    let mut add = |reference: Option<&Value>, role: Role| {
        let Some(reference) = reference else { return };
        let Some(target) = reference.get("reference").and_then(Value::as_str) else {
            return;
        };
        let Some((kind, id)) = target.split_once('/') else {
            return;
        };
        if !fhir::is_resource_type(kind) || id.is_empty() || id.contains('/') {
            return;
        }
        let role = match (role, kind) {
            (Role::Reason, "Condition" | "Procedure" | "Observation") => Role::Reason,
            (Role::Reason, _) => return,
            (other, _) => other,
        };
        out.push(Outgoing {
            reference: target.to_string(),
            display: reference
                .get("display")
                .and_then(Value::as_str)
                .map(str::to_owned),
            role,
        });
    };
    for reason in read::list(encounter, "reasonReference") {
        add(Some(reason), Role::Reason);
    }
    for diagnosis in read::list(encounter, "diagnosis") {
        add(diagnosis.get("condition"), Role::Record);
    }
    add(encounter.get("serviceProvider"), Role::Place);
    for location in read::list(encounter, "location") {
        add(location.get("location"), Role::Place);
    }
    for participant in read::list(encounter, "participant") {
        add(participant.get("individual"), Role::Person);
    }
    // A reason is also one of the visit's records.
    let reasons: Vec<Outgoing> = out
        .iter()
        .filter(|o| o.role == Role::Reason)
        .map(|o| Outgoing {
            reference: o.reference.clone(),
            display: o.display.clone(),
            role: Role::Record,
        })
        .collect();
    out.extend(reasons);
    out
}

/// The texts of a field holding CodeableConcepts, as unlinked names.
fn concepts(value: &Value, field: &str) -> Vec<Named> {
    read::list(value, field)
        .iter()
        .filter_map(read::concept)
        .map(|name| Named { name, href: None })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn encounter_references_are_sorted_by_role() {
        let encounter = json!({
            "reasonReference": [{"reference": "Condition/c1", "display": "Asthma"},
                                {"reference": "Patient/p1"}],
            "diagnosis": [{"condition": {"reference": "Condition/c2"}}],
            "serviceProvider": {"reference": "Organization/o1"},
            "participant": [{"individual": {"reference": "Practitioner/d1", "display": "Dr. Who"}},
                            {"individual": {"reference": "urn:uuid:123"}}],
        });
        let found: Vec<(String, Role)> = outgoing(&encounter)
            .into_iter()
            .map(|o| (o.reference, o.role))
            .collect();
        assert!(found.contains(&("Condition/c1".into(), Role::Reason)));
        assert!(found.contains(&("Condition/c1".into(), Role::Record)));
        assert!(found.contains(&("Condition/c2".into(), Role::Record)));
        assert!(found.contains(&("Organization/o1".into(), Role::Place)));
        assert!(found.contains(&("Practitioner/d1".into(), Role::Person)));
        assert!(!found.iter().any(|(r, _)| r == "Patient/p1"));
        assert_eq!(found.len(), 5);
    }
}
