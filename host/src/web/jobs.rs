//! The Jobs page: a person's background work (imports and syncs) and how it ended. A job that is still queued or running polls its own row (htmx) for live progress.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::context;

use super::people::PersonRouter;
use super::render::Page;
use crate::auth::person::{ManagePerson, ViewPerson};
use crate::error::AppError;
use crate::jobs::{self, JobFilter, JobView};
use crate::state::AppState;

/// How many jobs the page lists.
const PAGE_SIZE: i64 = 100;

pub fn router(r: PersonRouter) -> PersonRouter {
    r.route("/jobs", get(list))
        .route("/jobs/{id}/progress", get(progress))
        .route("/jobs/{id}/cancel", post(cancel))
}

/// A job with what the templates show beside its row.
fn view(job: &JobView) -> minijinja::Value {
    context! {
        active => job.is_active(),
        warning_list => job.warning_list(),
        ..minijinja::Value::from_serialize(job)
    }
}

async fn list(
    State(state): State<AppState>,
    access: ViewPerson,
    Query(filter): Query<JobFilter>,
    page: Page,
) -> Result<Html<String>, AppError> {
    let jobs = jobs::list(&state.db, access.id(), &filter, PAGE_SIZE).await?;
    let sources: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, display_name FROM sources WHERE person_id = ? ORDER BY display_name",
    )
    .bind(access.id())
    .fetch_all(&state.db)
    .await?;
    page.render(
        &state,
        "jobs.html",
        context! {
            jobs => jobs.iter().map(view).collect::<Vec<_>>(),
            sources => sources,
            filter_status => filter.status,
            filter_source => filter.source,
        },
    )
}

/// One job's progress cell; it keeps polling while the job is active. When a job watched from
/// the Sources page ends, that page reloads so its record counts and status are current.
async fn progress(
    State(state): State<AppState>,
    access: ViewPerson,
    Path(id): Path<i64>,
    headers: HeaderMap,
    page: Page,
) -> Result<Response, AppError> {
    let job = jobs::get(&state.db, id, access.id())
        .await?
        .ok_or(AppError::NotFound)?;
    let from_sources = headers
        .get("hx-current-url")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| url::Url::parse(v).ok())
        .is_some_and(|u| u.path().ends_with("/sources"));
    if from_sources && !job.is_active() {
        let sources = access.url(&state, "/sources");
        return Ok(([("HX-Redirect", sources)], Html(String::new())).into_response());
    }
    Ok(page
        .render(&state, "job_progress.html", context! { job => view(&job) })?
        .into_response())
}

async fn cancel(
    State(state): State<AppState>,
    access: ManagePerson,
    Path(id): Path<i64>,
    headers: HeaderMap,
    page: Page,
) -> Result<Response, AppError> {
    if !state.jobs.cancel(&state.db, id, access.id()).await? {
        // Someone else's job, or one that already ended: either way nothing to cancel here.
        jobs::get(&state.db, id, access.id())
            .await?
            .ok_or(AppError::NotFound)?;
    }
    if headers.contains_key("hx-request") {
        let job = jobs::get(&state.db, id, access.id())
            .await?
            .ok_or(AppError::NotFound)?;
        return Ok(page
            .render(&state, "job_progress.html", context! { job => view(&job) })?
            .into_response());
    }
    Ok(Redirect::to(&access.url(&state, "/jobs")).into_response())
}
