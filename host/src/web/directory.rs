//! The provider directory's pages: Admin → Provider directory (what is downloaded, from where,
//! how each refresh ended, and the button that starts one), and the members' search as they type
//! on the Sources page, whose results connect through `/sources/connect`.

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::context;
use serde::Deserialize;

use super::people::PersonRouter;
use super::render::Page;
use super::sources::FormAsks;
use crate::audit::{self, Action, Actor};
use crate::auth::person::ManagePerson;
use crate::auth::{AdminUser, ClientAddr};
use crate::directory::added::{self, AddError, AddForm};
use crate::directory::{self, refresh};
use crate::error::AppError;
use crate::state::AppState;

/// Refreshes listed on the admin page.
const HISTORY: i64 = 50;

pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/admin/directory", get(admin_page))
        .route("/admin/directory/refresh", post(start_refresh))
        .route("/admin/directory/lists", post(add_list))
        .route("/admin/directory/lists/{id}/delete", post(remove_list))
}

pub fn router(r: PersonRouter) -> PersonRouter {
    r.route("/sources/directory", get(search))
}

#[derive(Deserialize)]
struct AdminQuery {
    started: Option<String>,
    notice: Option<String>,
}

async fn admin_page(
    State(state): State<AppState>,
    _: AdminUser,
    Query(query): Query<AdminQuery>,
    page: Page,
) -> Result<Response, AppError> {
    let notice = match (query.started.as_deref(), query.notice.as_deref()) {
        (Some("yes"), _) => Some(
            "The download started. It runs in the background; reload this page to see how it \
             ended.",
        ),
        (Some("busy"), _) => {
            Some("A download is already running; reload this page to see how it ends.")
        }
        (_, Some("added")) => Some(
            "The list was added. It is downloaded with the others: press the button to download \
             it now.",
        ),
        (_, Some("removed")) => {
            Some("The list was removed, with its organisations in the directory.")
        }
        _ => None,
    };
    render_admin(&state, &page, StatusCode::OK, notice, None, None).await
}

async fn render_admin(
    state: &AppState,
    page: &Page,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<String>,
    typed: Option<&AddForm>,
) -> Result<Response, AppError> {
    let all = state.directory.all_sources(&state.db).await?;
    let sources = directory::standing(&state.db, &all).await?;
    let refresh_every = state.config.directory.refresh;
    let platforms: Vec<minijinja::Value> = added::platforms(&state.catalog)
        .into_iter()
        .map(|(id, name)| context! { id => id, name => name })
        .collect();
    page.render_status(
        state,
        status,
        "admin_directory.html",
        context! {
            sources => sources,
            refreshes => refresh::recent(&state.db, HISTORY).await?,
            running => state.directory.try_start().is_none(),
            every => (!refresh_every.is_zero())
                .then(|| crate::sources::smart::in_words(refresh_every.as_secs() as i64)),
            max_mib => state.config.directory.max_bytes >> 20,
            notice => notice,
            error => error,
            platforms => platforms,
            form => typed.cloned().unwrap_or_default(),
        },
    )
}

async fn add_list(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ClientAddr(address): ClientAddr,
    page: Page,
    Form(form): Form<AddForm>,
) -> Result<Response, AppError> {
    let known = state.directory.all_sources(&state.db).await?;
    match added::add(
        &state.db,
        &state.catalog,
        &known,
        state.config.plugins.allow_http_loopback,
        &form,
    )
    .await
    {
        Ok(source) => {
            tracing::info!(by = %admin.username, id = %source.id, url = %source.url, "directory list added");
            let subject = format!("{} ({})", source.name, source.url);
            audit::record(
                &state.db,
                &Actor::user(&admin, address),
                Action::DirectoryListAdded,
                &subject,
            )
            .await;
            Ok(Redirect::to(&state.url("/admin/directory?notice=added")).into_response())
        }
        Err(AddError::Invalid(message)) => {
            render_admin(
                &state,
                &page,
                StatusCode::BAD_REQUEST,
                None,
                Some(message),
                Some(&form),
            )
            .await
        }
        Err(AddError::Db(e)) => Err(e.into()),
    }
}

async fn remove_list(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ClientAddr(address): ClientAddr,
    page: Page,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    // Held while removing, so no download puts the list's organisations back.
    let Some(_guard) = state.directory.try_start() else {
        return render_admin(
            &state,
            &page,
            StatusCode::CONFLICT,
            None,
            Some("A download is running; remove the list once it has ended.".into()),
            None,
        )
        .await;
    };
    if !added::remove(&state.db, &id).await? {
        return Err(AppError::NotFound);
    }
    tracing::info!(by = %admin.username, %id, "directory list removed");
    audit::record(
        &state.db,
        &Actor::user(&admin, address),
        Action::DirectoryListRemoved,
        &id,
    )
    .await;
    Ok(Redirect::to(&state.url("/admin/directory?notice=removed")).into_response())
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
