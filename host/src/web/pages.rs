//! The signed-in user's own pages. Later issues fill Sources, Explore, Labs, History and Jobs;
//! until then each says what it will hold.

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use minijinja::context;

use super::render::Page;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::state::AppState;
use crate::store;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/labs", get(labs))
        .route("/history", get(history))
        .route("/jobs", get(jobs))
}

async fn dashboard(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    page: Page,
) -> Result<Html<String>, AppError> {
    let records = store::resources::count_for_user(&state.db, user.id).await?;
    page.render(&state, "dashboard.html", context! { records => records })
}

/// A page whose content arrives with a later feature.
fn coming(
    state: &AppState,
    page: &Page,
    title: &str,
    text: &str,
) -> Result<Html<String>, AppError> {
    page.render(
        state,
        "coming.html",
        context! { title => title, text => text },
    )
}

async fn labs(
    State(state): State<AppState>,
    _: CurrentUser,
    page: Page,
) -> Result<Html<String>, AppError> {
    coming(
        &state,
        &page,
        "Labs",
        "Your lab results, grouped by test with their trends over time, will appear here.",
    )
}

async fn history(
    State(state): State<AppState>,
    _: CurrentUser,
    page: Page,
) -> Result<Html<String>, AppError> {
    coming(
        &state,
        &page,
        "History",
        "Your visits, with the conditions, procedures and results of each, will appear here.",
    )
}

async fn jobs(
    State(state): State<AppState>,
    _: CurrentUser,
    page: Page,
) -> Result<Html<String>, AppError> {
    coming(
        &state,
        &page,
        "Jobs",
        "Imports and syncs running in the background, and how they ended, will be listed here.",
    )
}
