//! One line per person on the family page: who, how old (or when they died), how many records,
//! when they last changed, and anything that needs someone's attention.

use serde::Serialize;
use serde_json::Value;
use sqlx::SqlitePool;
use time::Date;

use super::dashboard;
use super::observations::{self, Flag};
use crate::fhir::read;
use crate::store::people::Person;

/// How far back abnormal results count as news.
const RECENT_DAYS: i64 = 30;

#[derive(Debug, Serialize)]
pub struct Line {
    /// The name the family gave; the records' Patient name when they name someone else is shown
    /// on the person's pages.
    pub name: String,
    pub age: Option<i32>,
    pub birth_date: Option<String>,
    pub died: Option<String>,
    pub records: i64,
    /// Unix seconds of the last import or sync that stored something.
    pub last_update: Option<i64>,
    /// Sentences, each about one thing to look at.
    pub attention: Vec<String>,
}

pub async fn line(db: &SqlitePool, person: &Person, today: Date) -> sqlx::Result<Line> {
    let about = dashboard::about(db, person.id, today).await?;
    // The family's own birth date speaks when no record has one.
    let (age, birth_date) = match (&about.birth_date, &person.birth_date) {
        (Some(_), _) => (about.age, about.birth_date.clone()),
        (None, Some(own)) => (
            super::profile::age(own, today).filter(|_| about.died.is_none()),
            Some(read::date(own)),
        ),
        (None, None) => (None, None),
    };
    let last_update: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(finished_at) FROM jobs WHERE person_id = ?
         AND status IN ('succeeded', 'warnings') AND (added > 0 OR updated > 0)",
    )
    .bind(person.id)
    .fetch_one(db)
    .await?;
    let mut attention = Vec::new();
    let reconnect: Vec<String> = sqlx::query_scalar(
        "SELECT s.display_name FROM connections c JOIN sources s ON s.id = c.source_id
         WHERE s.person_id = ? AND c.status = 'needs_reconnect' ORDER BY s.display_name",
    )
    .bind(person.id)
    .fetch_all(db)
    .await?;
    for name in reconnect {
        attention.push(format!("{name} needs to be connected again."));
    }
    // The newest job of each source that still exists, when it failed.
    let failed: Vec<String> = sqlx::query_scalar(
        "SELECT j.source_name FROM jobs j JOIN sources s ON s.id = j.source_id
         WHERE j.person_id = ?1 AND j.status = 'failed'
           AND j.id = (SELECT MAX(id) FROM jobs WHERE source_id = j.source_id)
         ORDER BY j.source_name",
    )
    .bind(person.id)
    .fetch_all(db)
    .await?;
    for name in failed {
        attention.push(format!("The last update from {name} failed."));
    }
    let abnormal =
        abnormal_results_since(db, person.id, today - time::Duration::days(RECENT_DAYS)).await?;
    if abnormal > 0 {
        attention.push(format!(
            "{abnormal} result{} outside the normal range in the last {RECENT_DAYS} days.",
            if abnormal == 1 { "" } else { "s" }
        ));
    }
    Ok(Line {
        name: person.name.clone(),
        age,
        birth_date,
        died: about.died,
        records: about.records,
        last_update,
        attention,
    })
}

/// Lab results dated on or after `since` that the lab (or their range) flags as high, low or
/// abnormal. Read through the observation index, so only recent results are opened.
async fn abnormal_results_since(db: &SqlitePool, person_id: i64, since: Date) -> sqlx::Result<i64> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT r.json FROM (SELECT DISTINCT source_id, resource_type, resource_id
                             FROM observation_keys
                             WHERE person_id = ? AND is_lab = 1 AND sort_date >= ?) k
         JOIN resources r ON r.source_id = k.source_id AND r.resource_type = k.resource_type
                          AND r.resource_id = k.resource_id",
    )
    .bind(person_id)
    .bind(since.to_string())
    .fetch_all(db)
    .await?;
    Ok(rows
        .iter()
        .filter_map(|j| serde_json::from_str::<Value>(j).ok())
        .filter_map(|r| observations::read(&r))
        .filter(|o| matches!(o.flag, Some(Flag::High | Flag::Low | Flag::Abnormal)))
        .count() as i64)
}
