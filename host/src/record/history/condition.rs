//! One condition (`/conditions/{id}`): what the record says about it (statuses, onset,
//! abatement, notes), the visits it came up in, and the other records that name it (a procedure
//! done for it, a prescription), in the history's display groups.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::Value;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::{
    Group, LINKED_SELECT, LinkedRow, ROW_COLUMNS, Row, group_lines, push_condition_encounters,
    push_type_list,
};
use crate::fhir::read::{self, Line};

/// A condition with the visits it came up in.
#[derive(Debug, Serialize)]
pub struct ConditionPage {
    pub item: Line,
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
                iso_date: date.as_deref().map(read::iso_date),
                type_text: title
                    .as_deref()
                    .map(read::name)
                    .unwrap_or_else(|| "Visit".into()),
                class: json.get("class").and_then(read::encounter_class),
                id,
            }
        })
        .collect();

    let mut related = QueryBuilder::<Sqlite>::new(LINKED_SELECT);
    related
        .push_bind(person_id)
        .push(" AND t.kind = 'ref' AND t.value = ")
        .push_bind(format!("Condition/{id}"))
        .push(" AND t.resource_type IN (");
    push_type_list(&mut related);
    related.push(") ORDER BY r.sort_date DESC");
    let related: Vec<LinkedRow> = related.build_query_as().fetch_all(db).await?;
    let related = group_lines(related.iter().map(LinkedRow::line).collect());

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
        note: read::list(&json, "note")
            .iter()
            .filter_map(|n| n.get("text").and_then(Value::as_str).map(str::to_owned))
            .collect(),
        item: Line::new(
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
