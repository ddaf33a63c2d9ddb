//! The history list (`/people/{p}/history`): one page of the user's visits, newest first, each
//! with its records, narrowed by year, visit type or condition, and the choices the filter form
//! offers.

use serde::Serialize;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::encounter::{Encounter, with_linked};
use super::{ROW_COLUMNS, Row, push_condition_encounters};
use crate::fhir::read;

/// Encounters per page of the history; Synthea patients reach ~130 encounters in all.
pub const PAGE_SIZE: i64 = 20;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
