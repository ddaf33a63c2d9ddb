//! The administrators' Plugins page: every plugin, its version, what it may do, whether it
//! loaded and why not; approval of dropped-in plugins.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use minijinja::context;

use super::render::Page;
use crate::audit::{self, Action, Actor};
use crate::auth::{AdminUser, ClientAddr};
use crate::error::AppError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/plugins", get(list))
        .route("/admin/plugins/{id}/enable", post(enable))
        .route("/admin/plugins/{id}/disable", post(disable))
}

async fn list(
    State(state): State<AppState>,
    _: AdminUser,
    page: Page,
) -> Result<Html<String>, AppError> {
    page.render(
        &state,
        "admin_plugins.html",
        context! { plugins => state.plugins.list() },
    )
}

async fn decide(
    state: AppState,
    actor: Actor,
    admin: i64,
    id: &str,
    enable: bool,
) -> Result<Redirect, AppError> {
    if !state.plugins.list().iter().any(|p| p.id == id) {
        return Err(AppError::NotFound);
    }
    state
        .plugins
        .decide(&state.db, id, enable, Some(admin))
        .await
        .map_err(|e| AppError::Conflict(format!("{e:#}")))?;
    tracing::info!(plugin = id, enable, by = admin, "plugin decision");
    let action = if enable {
        Action::PluginApproved
    } else {
        Action::PluginRevoked
    };
    audit::record(&state.db, &actor, action, id).await;
    Ok(Redirect::to(&state.url("/admin/plugins")))
}

async fn enable(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ClientAddr(address): ClientAddr,
    Path(id): Path<String>,
) -> Result<Redirect, AppError> {
    decide(state, Actor::user(&admin, address), admin.id, &id, true).await
}

async fn disable(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ClientAddr(address): ClientAddr,
    Path(id): Path<String>,
) -> Result<Redirect, AppError> {
    decide(state, Actor::user(&admin, address), admin.id, &id, false).await
}
