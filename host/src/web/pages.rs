//! The signed-in user's own pages. Later issues fill Sources, Explore, Labs, History and Jobs;
//! until then each says what it will hold.

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use minijinja::context;

use super::render::Page;
use crate::auth::{AdminUser, CurrentUser};
use crate::error::AppError;
use crate::state::AppState;
use crate::store;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/sources", get(sources))
        .route("/explore", get(explore))
        .route("/labs", get(labs))
        .route("/history", get(history))
        .route("/jobs", get(jobs))
        .route("/admin/plugins", get(admin_plugins))
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

async fn sources(
    State(state): State<AppState>,
    _: CurrentUser,
    page: Page,
) -> Result<Html<String>, AppError> {
    coming(
        &state,
        &page,
        "Sources",
        "Hospitals, clinics, labs, devices and uploaded files you collect records from will be listed here.",
    )
}

async fn explore(
    State(state): State<AppState>,
    _: CurrentUser,
    page: Page,
) -> Result<Html<String>, AppError> {
    coming(
        &state,
        &page,
        "Explore",
        "Every record you have imported, by type and by source, will be browsable here.",
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

async fn admin_plugins(
    State(state): State<AppState>,
    _: AdminUser,
    page: Page,
) -> Result<Html<String>, AppError> {
    coming(
        &state,
        &page,
        "Plugins",
        "The connector plugins this Fasten has, what each may do and whether it loaded, will be listed here.",
    )
}
