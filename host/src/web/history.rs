//! History: the signed-in user's visits newest first with what each produced, one visit with
//! everything linked to it, and a page per condition. The work is in `record::history`; these
//! handlers read the query, call it, and render.

use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::routing::get;
use minijinja::context;
use serde::Deserialize;

use super::people::PersonRouter;
use super::render::Page;
use crate::auth::person::ViewPerson;
use crate::error::AppError;
use crate::record::history::{self, Filters};
use crate::state::AppState;

pub fn router(r: PersonRouter) -> PersonRouter {
    r.route("/history", get(list))
        .route("/history/encounter/{id}", get(encounter))
        .route("/conditions/{id}", get(condition))
}

/// The history's query string; the filter form sends empty values for "All".
#[derive(Deserialize)]
struct HistoryQuery {
    year: Option<String>,
    #[serde(rename = "type")]
    encounter_type: Option<String>,
    condition: Option<String>,
    page: Option<String>,
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

async fn list(
    State(state): State<AppState>,
    access: ViewPerson,
    page: Page,
    Query(query): Query<HistoryQuery>,
) -> Result<Html<String>, AppError> {
    let filters = Filters {
        year: non_empty(query.year),
        encounter_type: non_empty(query.encounter_type),
        condition: non_empty(query.condition),
    };
    // A mistyped page number shows the first page rather than an error.
    let number = query
        .page
        .and_then(|p| p.parse::<i64>().ok())
        .unwrap_or(1)
        .max(1);
    let history = history::history(&state.db, access.id(), &filters, number).await?;
    let filter_query = filters.query_string();
    page.render(
        &state,
        "history.html",
        context! {
            history => history,
            year => filters.year,
            encounter_type => filters.encounter_type,
            condition => filters.condition,
            filtered => !filters.is_empty(),
            // Pagination links keep the filters: "?year=2020&" + "page=2".
            page_prefix => if filter_query.is_empty() { "?".to_string() } else { format!("?{filter_query}&") },
        },
    )
}

async fn encounter(
    State(state): State<AppState>,
    access: ViewPerson,
    page: Page,
    Path(id): Path<String>,
) -> Result<Html<String>, AppError> {
    let encounter = history::encounter(&state.db, access.id(), &id)
        .await?
        .ok_or(AppError::NotFound)?;
    page.render(
        &state,
        "history_encounter.html",
        context! { encounter => encounter },
    )
}

async fn condition(
    State(state): State<AppState>,
    access: ViewPerson,
    page: Page,
    Path(id): Path<String>,
) -> Result<Html<String>, AppError> {
    let condition = history::condition(&state.db, access.id(), &id)
        .await?
        .ok_or(AppError::NotFound)?;
    page.render(
        &state,
        "condition.html",
        context! { condition => condition, id => id },
    )
}
