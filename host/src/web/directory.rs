//! The provider directory's pages: Admin → Provider directory (what is downloaded, from where,
//! how each refresh ended, and the button that starts one), and the members' search as they type
//! on the Sources page, whose results connect through `/sources/connect`.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::context;
use serde::Deserialize;

use super::people::PersonRouter;
use super::render::Page;
use super::sources::FormAsks;
use crate::auth::AdminUser;
use crate::auth::person::ManagePerson;
use crate::directory::{self, refresh};
use crate::error::AppError;
use crate::state::AppState;

/// Refreshes listed on the admin page.
const HISTORY: i64 = 50;

pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/admin/directory", get(admin_page))
        .route("/admin/directory/refresh", post(start_refresh))
}

pub fn router(r: PersonRouter) -> PersonRouter {
    r.route("/sources/directory", get(search))
}

#[derive(Deserialize)]
struct AdminQuery {
    started: Option<String>,
}

async fn admin_page(
    State(state): State<AppState>,
    _: AdminUser,
    Query(query): Query<AdminQuery>,
    page: Page,
) -> Result<Response, AppError> {
    let sources = directory::standing(&state.db, &state.directory.sources).await?;
    let refresh_every = state.config.directory.refresh;
    let notice = match query.started.as_deref() {
        Some("yes") => Some(
            "The download started. It runs in the background; reload this page to see how it \
             ended.",
        ),
        Some("busy") => Some("A download is already running; reload this page to see how it ends."),
        _ => None,
    };
    Ok(page
        .render(
            &state,
            "admin_directory.html",
            context! {
                sources => sources,
                refreshes => refresh::recent(&state.db, HISTORY).await?,
                running => state.directory.try_start().is_none(),
                every => (!refresh_every.is_zero())
                    .then(|| crate::sources::smart::in_words(refresh_every.as_secs() as i64)),
                max_mib => state.config.directory.max_bytes >> 20,
                notice => notice,
            },
        )?
        .into_response())
}

async fn start_refresh(State(state): State<AppState>, _: AdminUser) -> Response {
    let started = refresh::start(&state, refresh::Trigger::Admin);
    Redirect::to(&state.url(&format!(
        "/admin/directory?started={}",
        if started { "yes" } else { "busy" }
    )))
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// The live search's results (htmx swaps them into the Sources page).
async fn search(
    State(state): State<AppState>,
    _: ManagePerson,
    Query(query): Query<SearchQuery>,
    page: Page,
) -> Result<Html<String>, AppError> {
    let empty = directory::is_empty(&state.db).await?;
    let choices = if empty {
        Vec::new()
    } else {
        directory::search(&state.db, &query.q, directory::SEARCH_LIMIT).await?
    };
    let registered = crate::sources::registrations::registered(&state.db).await?;
    let results: Vec<minijinja::Value> = choices
        .iter()
        .map(|c| {
            let platform = state.catalog.platform(&c.platform);
            let asks = state
                .catalog
                .organisation_entry(&c.platform)
                .map(|e| FormAsks::for_entry(e, &registered));
            context! {
                id => c.id,
                name => c.name,
                matched => (c.matched != c.name).then_some(&c.matched),
                town => [c.city.as_deref(), c.state.as_deref()]
                    .into_iter().flatten().collect::<Vec<_>>().join(", "),
                platform => platform.map_or(c.platform.as_str(), |p| p.name.as_str()),
                needs_client_id => asks.as_ref().is_some_and(|a| a.client_id),
                confidential => asks.as_ref().is_some_and(|a| a.client_secret),
            }
        })
        .collect();
    page.render(
        &state,
        "sources_directory.html",
        context! {
            empty => empty,
            results => results,
            query => query.q.trim(),
        },
    )
}
