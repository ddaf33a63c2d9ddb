//! The dashboard: a set of widgets, each loaded on its own (htmx) so a slow one never holds up
//! the page, and a per-user layout saying which widgets show and in what order.
//!
//! Widgets read only what they show: vitals and recent labs go through the token index
//! (`resource_tokens`, by code or category) with a LIMIT rather than reading every Observation.

use serde::Serialize;
use serde_json::Value;
use sqlx::SqlitePool;
use time::Date;

use super::chart::{self, Size};
use super::observations::{self, Observation};
use super::profile;
use crate::fhir::read::{self, Line};

/// Every widget: (id, title). The default layout shows them all in this order.
pub const WIDGETS: &[(&str, &str)] = &[
    ("summary", "About"),
    ("vitals", "Latest vitals"),
    ("labs", "Recent lab results"),
    ("encounters", "Recent visits"),
    ("conditions", "Active conditions"),
    ("medications", "Current medications"),
    ("allergies", "Allergies"),
    ("immunizations", "Immunizations"),
    ("types", "Records by type"),
];

pub fn title_of(id: &str) -> Option<&'static str> {
    WIDGETS.iter().find(|(w, _)| *w == id).map(|(_, t)| *t)
}

/// The widgets a user shows, in order (the default when they never chose).
pub async fn layout(db: &SqlitePool, person_id: i64) -> sqlx::Result<Vec<&'static str>> {
    let saved: Option<String> =
        sqlx::query_scalar("SELECT widgets FROM dashboard_layouts WHERE person_id = ?")
            .bind(person_id)
            .fetch_optional(db)
            .await?;
    Ok(match saved {
        Some(json) => {
            let ids: Vec<String> = serde_json::from_str(&json).unwrap_or_default();
            // Unknown ids (a widget removed in a later version) are dropped.
            ids.iter()
                .filter_map(|id| WIDGETS.iter().find(|(w, _)| w == id).map(|(w, _)| *w))
                .collect()
        }
        None => WIDGETS.iter().map(|(w, _)| *w).collect(),
    })
}

/// Saves the widgets to show, in order; unknown ids are ignored.
pub async fn save_layout(db: &SqlitePool, person_id: i64, widgets: &[String]) -> sqlx::Result<()> {
    let known: Vec<&str> = widgets
        .iter()
        .filter_map(|id| title_of(id).map(|_| id.as_str()))
        .collect();
    sqlx::query(
        "INSERT INTO dashboard_layouts (person_id, widgets, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (person_id) DO UPDATE SET widgets = excluded.widgets,
           updated_at = excluded.updated_at",
    )
    .bind(person_id)
    .bind(serde_json::to_string(&known).expect("strings serialise"))
    .bind(crate::store::unix_now())
    .execute(db)
    .await?;
    Ok(())
}

/// The vital signs the dashboard follows: (LOINC code, name). Blood pressure is a panel whose
/// systolic and diastolic components are shown together.
const VITALS: &[(&str, &str)] = &[
    ("29463-7", "Weight"),
    ("8302-2", "Height"),
    ("39156-5", "BMI"),
    ("85354-9", "Blood pressure"),
    ("8867-4", "Heart rate"),
];
const SYSTOLIC: &str = "8480-6";
const DIASTOLIC: &str = "8462-4";
/// How many past values a vital's trend shows.
const TREND_POINTS: i64 = 12;

/// One vital sign: its latest value and a small trend chart (SVG, already escaped).
#[derive(Debug, Serialize)]
pub struct Vital {
    pub name: String,
    pub value: String,
    pub date: Option<String>,
    pub key: String,
    pub chart: Option<String>,
}

/// The newest observations of this LOINC code (as code or a panel's component), newest first,
/// through `observation_keys`: the index holds them in date order, so only `limit` rows are read.
async fn by_loinc(
    db: &SqlitePool,
    person_id: i64,
    code: &str,
    limit: i64,
) -> sqlx::Result<Vec<Value>> {
    let rows: Vec<String> = sqlx::query_scalar(
        "WITH newest AS (
           SELECT source_id, resource_type, resource_id, sort_date FROM observation_keys
           WHERE person_id = ? AND key = ? ORDER BY sort_date DESC LIMIT ?)
         SELECT r.json FROM newest n
         JOIN resources r ON r.source_id = n.source_id AND r.resource_type = n.resource_type
                          AND r.resource_id = n.resource_id
         ORDER BY n.sort_date DESC",
    )
    .bind(person_id)
    .bind(code)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .iter()
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect())
}

fn points(observations: &[Observation]) -> Vec<(Date, f64)> {
    observations
        .iter()
        .filter_map(|o| Some((super::labs::parse_date(o.date.as_deref()?)?, o.value?)))
        .collect()
}

pub async fn vitals(db: &SqlitePool, person_id: i64) -> sqlx::Result<Vec<Vital>> {
    let mut out = Vec::new();
    for (code, name) in VITALS {
        let resources = by_loinc(db, person_id, code, TREND_POINTS).await?;
        let Some(latest) = resources.first() else {
            continue;
        };
        let date = observations::read(latest).and_then(|o| o.date);
        if *code == "85354-9" {
            let parts = observations::read_all(latest);
            let part = |c: &str| parts.iter().find(|o| o.key == c).and_then(|o| o.value);
            let (Some(sys), Some(dia)) = (part(SYSTOLIC), part(DIASTOLIC)) else {
                continue;
            };
            let systolic: Vec<Observation> = resources
                .iter()
                .flat_map(observations::read_all)
                .filter(|o| o.key == SYSTOLIC)
                .collect();
            out.push(Vital {
                name: name.to_string(),
                value: format!("{}/{} mmHg", sys.round(), dia.round()),
                date: date.as_deref().map(read::date),
                key: SYSTOLIC.to_string(),
                chart: trend_chart("Systolic blood pressure", "mmHg", &systolic),
            });
            continue;
        }
        let readings: Vec<Observation> = resources.iter().filter_map(observations::read).collect();
        let Some(value) = readings.first().and_then(Observation::value_display) else {
            continue;
        };
        let unit = readings
            .first()
            .and_then(|o| o.unit.clone())
            .unwrap_or_default();
        out.push(Vital {
            name: name.to_string(),
            value,
            date: date.as_deref().map(read::date),
            key: code.to_string(),
            chart: trend_chart(name, &unit, &readings),
        });
    }
    Ok(out)
}

/// A small trend when there are at least two values to draw.
fn trend_chart(name: &str, unit: &str, readings: &[Observation]) -> Option<String> {
    let points = points(readings);
    (points.len() >= 2).then(|| {
        chart::line_chart(
            &format!("{name} over time"),
            &super::units::pretty(unit),
            &points,
            None,
            Size::SMALL,
        )
    })
}

/// A recent lab result with its flag.
#[derive(Debug, Serialize)]
pub struct RecentLab {
    pub name: String,
    pub key: String,
    pub value: String,
    pub flag: Option<String>,
    pub date: Option<String>,
}

/// How many recent lab results the dashboard shows.
const RECENT_LABS: usize = 10;

/// The newest result of each of the most recently done laboratory tests, abnormal ones flagged.
pub async fn recent_labs(db: &SqlitePool, person_id: i64) -> sqlx::Result<Vec<RecentLab>> {
    // A panel has a row per component: read a few more rows than results are shown.
    let rows: Vec<String> = sqlx::query_scalar(
        "WITH newest AS (
           SELECT DISTINCT source_id, resource_type, resource_id, sort_date FROM (
             SELECT source_id, resource_type, resource_id, sort_date FROM observation_keys
             WHERE person_id = ? AND is_lab = 1 ORDER BY sort_date DESC LIMIT ?))
         SELECT r.json FROM newest n
         JOIN resources r ON r.source_id = n.source_id AND r.resource_type = n.resource_type
                          AND r.resource_id = n.resource_id
         ORDER BY n.sort_date DESC, n.resource_id DESC",
    )
    .bind(person_id)
    .bind((RECENT_LABS * 4) as i64)
    .fetch_all(db)
    .await?;
    // Labs often send one test twice on a day (in two panels): each test is listed once.
    let mut tests = std::collections::HashSet::new();
    Ok(rows
        .iter()
        .filter_map(|j| serde_json::from_str::<Value>(j).ok())
        .filter_map(|r| observations::read(&r))
        .filter(super::labs::is_lab)
        .filter(|o| tests.insert(super::units::group_key(&o.key).to_string()))
        .filter_map(|o| {
            Some(RecentLab {
                value: o.value_display()?,
                flag: o.flag.map(|f| f.label().to_string()),
                date: o.date.as_deref().map(read::date),
                name: o.name,
                key: super::units::group_key(&o.key).to_string(),
            })
        })
        .take(RECENT_LABS)
        .collect())
}

/// The header widget: who, how old, how many records from how many sources, last sync.
#[derive(Debug, Serialize)]
pub struct About {
    pub name: Option<String>,
    pub birth_date: Option<String>,
    /// Not shown for someone who has died; their date of death is.
    pub age: Option<i32>,
    pub died: Option<String>,
    pub records: i64,
    pub sources: i64,
    pub last_sync: Option<i64>,
}

pub async fn about(db: &SqlitePool, person_id: i64, today: Date) -> sqlx::Result<About> {
    let patient: Option<String> = sqlx::query_scalar(
        "SELECT json FROM resources WHERE person_id = ? AND resource_type = 'Patient'
         ORDER BY updated_at DESC LIMIT 1",
    )
    .bind(person_id)
    .fetch_optional(db)
    .await?;
    let patient: Option<Value> = patient.and_then(|j| serde_json::from_str(&j).ok());
    let date_of = |field: &str| {
        patient
            .as_ref()
            .and_then(|p| p.get(field)?.as_str().map(String::from))
    };
    let (birth_date, died) = (date_of("birthDate"), date_of("deceasedDateTime"));
    let (records, sources, last_sync): (i64, i64, Option<i64>) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM resources WHERE person_id = ?1),
                (SELECT COUNT(*) FROM sources WHERE person_id = ?1),
                (SELECT MAX(c.last_sync_at) FROM connections c
                   JOIN sources s ON s.id = c.source_id WHERE s.person_id = ?1)",
    )
    .bind(person_id)
    .fetch_one(db)
    .await?;
    Ok(About {
        name: patient.as_ref().and_then(crate::fhir::title),
        age: birth_date
            .as_deref()
            .filter(|_| died.is_none())
            .and_then(|b| profile::age(b, today)),
        birth_date: birth_date.as_deref().map(read::date),
        died: died.as_deref().map(read::date),
        records,
        sources,
        last_sync,
    })
}

/// The newest encounters (5).
pub async fn recent_encounters(db: &SqlitePool, person_id: i64) -> sqlx::Result<Vec<Line>> {
    let rows: Vec<(String, Option<String>, Option<String>, String)> = sqlx::query_as(
        "SELECT resource_id, sort_date, sort_title, json FROM resources
         WHERE person_id = ? AND resource_type = 'Encounter'
         ORDER BY sort_date DESC LIMIT 5",
    )
    .bind(person_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .iter()
        .map(|(id, date, title, json)| {
            let resource: Value = serde_json::from_str(json).unwrap_or(Value::Null);
            Line::new(
                "Encounter",
                id,
                date.as_deref(),
                title.as_deref(),
                &resource,
            )
        })
        .collect())
}

/// Record counts by type, most first.
pub async fn type_counts(db: &SqlitePool, person_id: i64) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT resource_type, COUNT(*) FROM resources WHERE person_id = ?
         GROUP BY resource_type ORDER BY 2 DESC, 1",
    )
    .bind(person_id)
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_widget_has_a_unique_id_and_a_title() {
        let mut ids: Vec<&str> = WIDGETS.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), WIDGETS.len());
        assert_eq!(title_of("vitals"), Some("Latest vitals"));
        assert_eq!(title_of("nope"), None);
    }
}
