//! Medical history: the user's encounters (visits) newest first, each with the records that belong
//! to it, and a page per condition with the visits it came up in.
//!
//! A record belongs to a visit when it references the encounter (`encounter`, `context`: the
//! `ref` token `Encounter/<id>`) or when the encounter references it (`reasonReference`,
//! `diagnosis`). A page costs a fixed number of queries whatever its size: one for the encounters,
//! one batched over the ref tokens for what points at them, one for what they point at. Billing
//! records (Claim, ExplanationOfBenefit) also point at every encounter but repeat what the clinical
//! records say, so they are left out. Every query filters by the user: another user's ids are
//! simply not found.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use crate::fhir::{self, read};

/// Encounters per page of the history; Synthea patients reach ~130 encounters in all.
pub const PAGE_SIZE: i64 = 20;

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

/// A record as one line of a list: what it is, when, and its value or status.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub resource_type: String,
    pub id: String,
    pub title: String,
    /// "1 Oct 2020", for reading.
    pub date: Option<String>,
    /// "2020-10-01", for `<time datetime>`.
    pub iso_date: Option<String>,
    pub status: Option<String>,
    pub value: Option<String>,
    /// Other records this line stands for ("Type/id"): a vaccine's earlier doses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<String>,
}

impl Item {
    /// Builds the line from the stored columns and the resource JSON.
    pub fn new(
        resource_type: &str,
        id: &str,
        sort_date: Option<&str>,
        sort_title: Option<&str>,
        resource: &Value,
    ) -> Item {
        Item {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            title: sort_title
                .map(read::name)
                .unwrap_or_else(|| resource_type.to_string()),
            date: sort_date.map(read::date),
            iso_date: sort_date.map(|d| d.chars().take(10).collect()),
            status: read::status(resource),
            value: read::value_text(resource),
            earlier: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Group {
    pub label: &'static str,
    pub items: Vec<Item>,
}

/// A named thing an encounter refers to, linked when it is among the user's records.
#[derive(Debug, Serialize)]
pub struct Named {
    pub name: String,
    /// Where the name leads, below the base path, when the record is stored: a condition's page,
    /// else the record in Explore.
    pub href: Option<String>,
}

/// The page of a stored record: conditions have their own, everything else is shown by Explore.
pub fn record_href(reference: &str) -> String {
    match reference.strip_prefix("Condition/") {
        Some(id) => format!("/conditions/{id}"),
        None => format!("/explore/{reference}"),
    }
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

/// What the history page can be narrowed by.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    pub year: Option<String>,
    pub encounter_type: Option<String>,
    pub condition: Option<String>,
}

impl Filters {
    /// The filters as a query string ("year=2020&type=..."), for links that keep them.
    pub fn query_string(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(year) = &self.year {
            query.append_pair("year", year);
        }
        if let Some(kind) = &self.encounter_type {
            query.append_pair("type", kind);
        }
        if let Some(condition) = &self.condition {
            query.append_pair("condition", condition);
        }
        query.finish()
    }

    pub fn is_empty(&self) -> bool {
        self.year.is_none() && self.encounter_type.is_none() && self.condition.is_none()
    }
}

/// An option of a filter's select: the value sent and the text shown.
#[derive(Debug, Serialize)]
pub struct Choice {
    pub value: String,
    pub label: String,
}

#[derive(Debug, Serialize)]
pub struct HistoryPage {
    pub encounters: Vec<Encounter>,
    /// Encounters matching the filters, over all pages.
    pub total: i64,
    pub page: i64,
    pub pages: i64,
    /// Whether the user has any encounter at all (to tell "none yet" from "none match").
    pub any: bool,
    pub years: Vec<String>,
    pub types: Vec<Choice>,
    pub conditions: Vec<Choice>,
}

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
    fn item(&self) -> Item {
        let json: Value = serde_json::from_str(&self.json).unwrap_or(Value::Null);
        Item::new(
            &self.resource_type,
            &self.resource_id,
            self.sort_date.as_deref(),
            self.sort_title.as_deref(),
            &json,
        )
    }
}

const ROW_COLUMNS: &str = "r.resource_type, r.resource_id, r.sort_date, r.sort_title, \
     r.json, s.display_name AS source_name FROM resources r JOIN sources s ON s.id = r.source_id";

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

fn push_encounter_filters(qb: &mut QueryBuilder<'_, Sqlite>, person_id: i64, filters: &Filters) {
    qb.push(" WHERE r.person_id = ")
        .push_bind(person_id)
        .push(" AND r.resource_type = 'Encounter'");
    // A visit that came from two sources (the portal and a downloaded export of it) is one visit:
    // the copy from the oldest source is listed, and links reach it from both.
    qb.push(
        " AND NOT EXISTS (SELECT 1 FROM resources twin WHERE twin.person_id = r.person_id
          AND twin.resource_type = 'Encounter' AND twin.resource_id = r.resource_id
          AND twin.source_id < r.source_id)",
    );
    if let Some(year) = &filters.year {
        qb.push(" AND substr(r.sort_date, 1, 4) = ")
            .push_bind(year.clone());
    }
    if let Some(kind) = &filters.encounter_type {
        qb.push(" AND r.sort_title = ").push_bind(kind.clone());
    }
    if let Some(condition) = &filters.condition {
        qb.push(" AND r.resource_id IN (");
        push_condition_encounters(qb, person_id, condition);
        qb.push(")");
    }
}

/// One page of the user's history, newest first, with the filter choices.
pub async fn history(
    db: &SqlitePool,
    person_id: i64,
    filters: &Filters,
    page: i64,
) -> Result<HistoryPage, sqlx::Error> {
    let page = page.max(1);
    let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM resources r");
    push_encounter_filters(&mut count, person_id, filters);
    let total: i64 = count.build_query_scalar().fetch_one(db).await?;

    let mut select = QueryBuilder::<Sqlite>::new("SELECT ");
    select.push(ROW_COLUMNS);
    push_encounter_filters(&mut select, person_id, filters);
    select
        .push(" ORDER BY r.sort_date DESC, r.resource_id LIMIT ")
        .push_bind(PAGE_SIZE)
        .push(" OFFSET ")
        .push_bind((page - 1) * PAGE_SIZE);
    let rows: Vec<Row> = select.build_query_as().fetch_all(db).await?;
    let encounters = with_linked(db, person_id, rows).await?;

    let years: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT substr(sort_date, 1, 4) FROM resources
         WHERE person_id = ? AND resource_type = 'Encounter' AND sort_date IS NOT NULL
         ORDER BY 1 DESC",
    )
    .bind(person_id)
    .fetch_all(db)
    .await?;
    let type_titles: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT sort_title FROM resources
         WHERE person_id = ? AND resource_type = 'Encounter' AND sort_title IS NOT NULL",
    )
    .bind(person_id)
    .fetch_all(db)
    .await?;
    let mut types: Vec<Choice> = type_titles
        .into_iter()
        .map(|t| Choice {
            label: read::name(&t),
            value: t,
        })
        .collect();
    types.sort_by_key(|c| c.label.to_lowercase());
    let condition_rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT resource_id, sort_title, sort_date FROM resources
         WHERE person_id = ? AND resource_type = 'Condition'",
    )
    .bind(person_id)
    .fetch_all(db)
    .await?;
    let mut conditions: Vec<Choice> = condition_rows
        .into_iter()
        .map(|(id, title, date)| {
            let name = title
                .as_deref()
                .map(read::name)
                .unwrap_or_else(|| id.clone());
            let label = match date.as_deref().and_then(|d| d.get(..4)) {
                Some(year) => format!("{name} ({year})"),
                None => name,
            };
            Choice { value: id, label }
        })
        .collect();
    conditions.sort_by_key(|c| c.label.to_lowercase());
    Ok(HistoryPage {
        encounters,
        total,
        page,
        pages: (total + PAGE_SIZE - 1) / PAGE_SIZE,
        any: !years.is_empty() || total > 0,
        years,
        types,
        conditions,
    })
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
async fn with_linked(
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
    let mut incoming = QueryBuilder::<Sqlite>::new(
        "SELECT t.value AS link, r.resource_type, r.resource_id, r.sort_date, r.sort_title, r.json
         FROM resource_tokens t JOIN resources r ON r.source_id = t.source_id
         AND r.resource_type = t.resource_type AND r.resource_id = t.resource_id
         WHERE t.person_id = ",
    );
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

    let mut by_encounter: HashMap<String, Vec<Item>> = HashMap::new();
    for row in &linked {
        let encounter_id = row.link.trim_start_matches("Encounter/").to_string();
        by_encounter
            .entry(encounter_id)
            .or_default()
            .push(row.item());
    }

    let encounters = parsed
        .into_iter()
        .map(|(row, json)| {
            let mut items = by_encounter.remove(&row.resource_id).unwrap_or_default();
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
                            .and_then(|j| own_name(&j))
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
                    items.push(Item::new(
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
            let groups = group_items(items);
            let linked_count = groups.iter().map(|g| g.items.len()).sum();
            let date = json.pointer("/period/start").and_then(Value::as_str);
            Encounter {
                date: date.or(row.sort_date.as_deref()).map(read::date),
                iso_date: row
                    .sort_date
                    .as_deref()
                    .map(|d| d.chars().take(10).collect()),
                end_date: json
                    .pointer("/period/end")
                    .and_then(Value::as_str)
                    .map(read::date),
                type_text: row
                    .sort_title
                    .as_deref()
                    .map(read::name)
                    .unwrap_or_else(|| "Visit".to_string()),
                class: class_label(json.get("class")),
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

fn push_type_list(qb: &mut QueryBuilder<'_, Sqlite>) {
    // The names are this module's constants, so they are written into the SQL as literals.
    let list: Vec<String> = shown_types().map(|t| format!("'{t}'")).collect();
    qb.push(list.join(", "));
}

/// Sorts items into the display groups, dropping duplicates (a record both referencing the
/// encounter and referenced by it) and types the history does not show.
fn group_items(items: Vec<Item>) -> Vec<Group> {
    let mut groups: Vec<Group> = GROUPS
        .iter()
        .map(|(label, _)| Group {
            label,
            items: Vec::new(),
        })
        .collect();
    let mut seen = HashSet::new();
    for item in items {
        let Some(index) = group_of(&item.resource_type) else {
            continue;
        };
        if seen.insert((item.resource_type.clone(), item.id.clone())) {
            groups[index].items.push(item);
        }
    }
    groups.retain(|g| !g.items.is_empty());
    groups
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Reason,
    Record,
    Place,
    Person,
}

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
    for reason in array(encounter, "reasonReference") {
        add(Some(reason), Role::Reason);
    }
    for diagnosis in array(encounter, "diagnosis") {
        add(diagnosis.get("condition"), Role::Record);
    }
    add(encounter.get("serviceProvider"), Role::Place);
    for location in array(encounter, "location") {
        add(location.get("location"), Role::Place);
    }
    for participant in array(encounter, "participant") {
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

/// The name of an organisation, place or person. Their stored title can be their type
/// ("Healthcare Provider"), which says nothing about where the visit was.
fn own_name(resource: &Value) -> Option<String> {
    match resource.get("name")? {
        Value::String(name) => Some(name.clone()),
        Value::Array(names) => names.iter().find_map(|name| {
            if let Some(text) = name.get("text").and_then(Value::as_str) {
                return Some(text.to_string());
            }
            let mut parts: Vec<&str> = array(name, "given")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            parts.extend(name.get("family").and_then(Value::as_str));
            (!parts.is_empty()).then(|| parts.join(" "))
        }),
        _ => None,
    }
}

fn array<'a>(value: &'a Value, field: &str) -> &'a [Value] {
    value
        .get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The texts of a field holding CodeableConcepts, as unlinked names.
fn concepts(value: &Value, field: &str) -> Vec<Named> {
    array(value, field)
        .iter()
        .filter_map(fhir::concept_text)
        .map(|text| Named {
            name: read::name(&text),
            href: None,
        })
        .collect()
}

/// A condition with the visits it came up in.
#[derive(Debug, Serialize)]
pub struct ConditionPage {
    pub item: Item,
    pub clinical_status: Option<String>,
    pub verification: Option<String>,
    pub onset: Option<String>,
    pub abatement: Option<String>,
    pub recorded: Option<String>,
    pub note: Vec<String>,
    pub source_name: String,
    pub encounters: Vec<EncounterLine>,
    /// Other records that name this condition (a procedure done for it, a prescription...).
    pub related: Vec<Group>,
}

/// An encounter as one line: date, type, and where.
#[derive(Debug, Serialize)]
pub struct EncounterLine {
    pub id: String,
    pub date: Option<String>,
    pub iso_date: Option<String>,
    pub type_text: String,
    pub class: Option<String>,
}

/// The condition page, or None when the user has no such condition.
pub async fn condition(
    db: &SqlitePool,
    person_id: i64,
    id: &str,
) -> Result<Option<ConditionPage>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {ROW_COLUMNS} WHERE r.person_id = ? AND r.resource_type = 'Condition'
         AND r.resource_id = ? ORDER BY r.source_id LIMIT 1"
    ))
    .bind(person_id)
    .bind(id)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let json: Value = serde_json::from_str(&row.json).unwrap_or(Value::Null);

    let mut query = QueryBuilder::<Sqlite>::new(
        "SELECT r.resource_id, r.sort_date, r.sort_title, r.json FROM resources r
         WHERE r.person_id = ",
    );
    query
        .push_bind(person_id)
        .push(" AND r.resource_type = 'Encounter' AND r.resource_id IN (");
    push_condition_encounters(&mut query, person_id, id);
    query.push(") ORDER BY r.sort_date DESC, r.resource_id");
    let rows: Vec<(String, Option<String>, Option<String>, String)> =
        query.build_query_as().fetch_all(db).await?;
    let mut seen = HashSet::new();
    let encounters = rows
        .into_iter()
        .filter(|(id, ..)| seen.insert(id.clone()))
        .map(|(id, date, title, json)| {
            let json: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
            EncounterLine {
                date: date.as_deref().map(read::date),
                iso_date: date.as_deref().map(|d| d.chars().take(10).collect()),
                type_text: title
                    .as_deref()
                    .map(read::name)
                    .unwrap_or_else(|| "Visit".into()),
                class: class_label(json.get("class")),
                id,
            }
        })
        .collect();

    let mut related = QueryBuilder::<Sqlite>::new(
        "SELECT t.value AS link, r.resource_type, r.resource_id, r.sort_date, r.sort_title, r.json
         FROM resource_tokens t JOIN resources r ON r.source_id = t.source_id
         AND r.resource_type = t.resource_type AND r.resource_id = t.resource_id
         WHERE t.person_id = ",
    );
    related
        .push_bind(person_id)
        .push(" AND t.kind = 'ref' AND t.value = ")
        .push_bind(format!("Condition/{id}"))
        .push(" AND t.resource_type IN (");
    push_type_list(&mut related);
    related.push(") ORDER BY r.sort_date DESC");
    let related: Vec<LinkedRow> = related.build_query_as().fetch_all(db).await?;
    let related = group_items(related.iter().map(LinkedRow::item).collect());

    let text = |pointer: &str| json.pointer(pointer).and_then(Value::as_str);
    Ok(Some(ConditionPage {
        clinical_status: json.get("clinicalStatus").and_then(read::status_word),
        verification: json.get("verificationStatus").and_then(read::status_word),
        onset: text("/onsetDateTime")
            .or(text("/onsetPeriod/start"))
            .map(read::date)
            .or(text("/onsetString").map(str::to_owned)),
        abatement: text("/abatementDateTime")
            .or(text("/abatementPeriod/start"))
            .map(read::date)
            .or(text("/abatementString").map(str::to_owned)),
        recorded: text("/recordedDate").map(read::date),
        note: array(&json, "note")
            .iter()
            .filter_map(|n| n.get("text").and_then(Value::as_str).map(str::to_owned))
            .collect(),
        item: Item::new(
            &row.resource_type,
            &row.resource_id,
            row.sort_date.as_deref(),
            row.sort_title.as_deref(),
            &json,
        ),
        source_name: row.source_name,
        encounters,
        related,
    }))
}

/// An encounter's class in words; HL7's v3 ActCode codes are terse.
fn class_label(class: Option<&Value>) -> Option<String> {
    let class = class?;
    if let Some(display) = class.get("display").and_then(Value::as_str) {
        return Some(display.to_string());
    }
    let code = class.get("code").and_then(Value::as_str)?;
    let label = match code {
        "AMB" => "Outpatient",
        "EMER" => "Emergency",
        "IMP" => "Hospital stay",
        "ACUTE" => "Hospital stay (acute)",
        "NONAC" => "Hospital stay (non-acute)",
        "OBSENC" => "Observation stay",
        "PRENC" => "Pre-admission",
        "SS" => "Short stay",
        "VR" => "Virtual visit",
        "HH" => "Home health",
        "FLD" => "Field visit",
        other => other,
    };
    Some(label.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn items_are_grouped_once_and_billing_is_left_out() {
        let item = |kind: &str, id: &str| Item::new(kind, id, None, Some(kind), &Value::Null);
        let groups = group_items(vec![
            item("Observation", "o1"),
            item("Condition", "c1"),
            item("Claim", "x"),
            item("Condition", "c1"),
        ]);
        let labels: Vec<&str> = groups.iter().map(|g| g.label).collect();
        assert_eq!(labels, ["Conditions", "Results"]);
        assert_eq!(groups[0].items.len(), 1);
    }

    #[test]
    fn filters_keep_themselves_in_links() {
        let filters = Filters {
            year: Some("2020".into()),
            encounter_type: Some("Check up (procedure)".into()),
            condition: None,
        };
        assert_eq!(
            filters.query_string(),
            "year=2020&type=Check+up+%28procedure%29"
        );
        assert!(Filters::default().is_empty());
    }

    #[test]
    fn encounter_classes_are_words() {
        assert_eq!(
            class_label(Some(&json!({"code": "EMER"}))).as_deref(),
            Some("Emergency")
        );
        assert_eq!(
            class_label(Some(&json!({"code": "AMB", "display": "ambulatory"}))).as_deref(),
            Some("ambulatory")
        );
        assert_eq!(class_label(None), None);
    }
}
