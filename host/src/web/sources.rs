//! The Sources page: a person's sources with their connection state, connecting a provider
//! (catalog search or a custom SMART endpoint), the OAuth callback, Sync now / Reconnect /
//! Delete. Uploading a file is in [`super::upload`].

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::context;
use serde::Deserialize;

use super::people::PersonRouter;
use super::render::Page;
use crate::audit::{self, Action, Actor};
use crate::auth::person::{ManagePerson, ViewPerson, person_url};
use crate::auth::session::{SESSION_COOKIE, id_hash};
use crate::auth::{ClientAddr, CurrentUser, is_https, read_cookie};
use crate::error::AppError;
use crate::jobs::{self, Trigger};
use crate::sources::registrations;
use crate::sources::smart::{self, SmartError};
use crate::sources::{self, CallbackParams, ConnectForm};
use crate::state::AppState;
use crate::web::notice::Notice;

/// The OAuth callback is one fixed address registered with providers, so it is not under a
/// person: the pending sign-in it completes says whose connection it is.
pub fn global_router() -> Router<AppState> {
    Router::new().route("/sources/callback", get(callback))
}

pub fn router(r: PersonRouter) -> PersonRouter {
    r.route("/sources", get(list))
        .route("/sources/catalog", get(catalog_search))
        .route("/sources/connect", post(connect))
        .route("/sources/{id}/sync", post(sync_now))
        .route("/sources/{id}/reconnect", post(reconnect))
        .route("/sources/{id}/delete", get(confirm_delete).post(delete))
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    connected: Option<i64>,
    renewed: Option<i64>,
    synced: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    access: ViewPerson,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
    page: Page,
) -> Result<Response, AppError> {
    let notice = if query.renewed.is_some() {
        Some(
            "You were already connected to this provider; the connection was renewed. A sync \
             is running in the background; its progress is shown below."
                .to_string(),
        )
    } else if query.connected.is_some() {
        Some(
            "Connected. The first sync is running in the background; its progress is shown below."
                .to_string(),
        )
    } else if query.synced.is_some() {
        Some("Sync queued. Its progress is shown below.".to_string())
    } else {
        None
    };
    // A sign-in that failed at the callback left its message here.
    let error = session_hash(&headers)
        .ok()
        .and_then(|session| state.notices.take(&session));
    sources_page(
        &state,
        &page,
        &headers,
        &access.person.person,
        StatusCode::OK,
        notice,
        error,
        &ConnectForm::default(),
    )
    .await
}

/// The Sources page, with an optional notice or error (a failed connect shows its form again).
#[allow(clippy::too_many_arguments)]
async fn sources_page(
    state: &AppState,
    page: &Page,
    headers: &HeaderMap,
    person: &crate::store::people::Person,
    status: StatusCode,
    notice: Option<String>,
    error: Option<Notice>,
    form: &ConnectForm,
) -> Result<Response, AppError> {
    let sources = sources::list(&state.db, person.id).await?;
    let accepts: Vec<String> = state
        .plugins
        .file_importers()
        .iter()
        .flat_map(|p| {
            p.info
                .file_types
                .iter()
                .flat_map(|t| t.extensions.iter().map(|x| format!(".{x}")))
        })
        .collect();
    let registered = registrations::registered(&state.db).await?;
    page.render_status(
        state,
        status,
        "sources.html",
        context! {
            sources => sources,
            accepts => accepts.join(","),
            max_upload_mib => state.config.limits.upload_bytes / (1024 * 1024),
            inbox_folder => state.config.inbox.enabled.then(|| {
                crate::inbox::root(state).join(&person.slug).display().to_string()
            }),
            notice => notice,
            error => error.as_ref().map(|e| &e.message),
            error_detail => error.as_ref().and_then(|e| e.detail.as_ref()),
            form => context! { fhir_base => form.fhir_base, client_id => form.client_id,
                               display_name => form.display_name, catalog_id => form.catalog_id },
            providers => catalog_entries(state, "", &registered),
            other_app => registered.iter().any(|p| p == registrations::OTHER),
            directory_empty => crate::directory::is_empty(&state.db).await?,
            redirect_uri => smart::redirect_uri(&public_url(state, headers)),
        },
    )
}

/// Catalog entries matching `query`, with what the connect form must ask for each. An entry
/// whose platform has an app registration (`registered`) asks for no client id or secret: the
/// registration supplies them.
fn catalog_entries(state: &AppState, query: &str, registered: &[String]) -> Vec<minijinja::Value> {
    state
        .catalog
        .search(query)
        .into_iter()
        .map(|e| {
            let asks = FormAsks::for_entry(e, registered);
            context! {
                id => e.id, name => e.name, aliases => e.aliases,
                platform => state.catalog.platform_of(e).name,
                sandbox => e.sandbox, needs_fhir_base => e.needs_fhir_base(),
                needs_client_id => asks.client_id,
                confidential => asks.client_secret,
            }
        })
        .collect()
}

/// What a member's connect form asks for besides the provider: the client id and secret of an
/// app registration, unless the catalog entry carries its own or its platform has one under
/// Admin → Provider apps (`registered`), which members never see.
pub(super) struct FormAsks {
    pub client_id: bool,
    pub client_secret: bool,
}

impl FormAsks {
    pub(super) fn for_entry(entry: &crate::catalog::Entry, registered: &[String]) -> FormAsks {
        let registration = registrations::for_catalog_platform(&entry.platform);
        let by_registration =
            entry.needs_client_id() && registered.iter().any(|p| p == registration);
        FormAsks {
            client_id: entry.needs_client_id() && !by_registration,
            client_secret: entry.confidential && !by_registration,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct CatalogQuery {
    #[serde(default)]
    q: String,
}

/// The live search's results (htmx swaps them into the page).
async fn catalog_search(
    State(state): State<AppState>,
    _: ManagePerson,
    Query(query): Query<CatalogQuery>,
    page: Page,
) -> Result<Html<String>, AppError> {
    let registered = registrations::registered(&state.db).await?;
    page.render(
        &state,
        "sources_catalog.html",
        context! {
            providers => catalog_entries(&state, &query.q, &registered),
            query => query.q,
        },
    )
}

/// Where providers send the browser back: `public_url` when configured, else this request's.
pub(super) fn public_url(state: &AppState, headers: &HeaderMap) -> String {
    if !state.config.public_url.is_empty() {
        return state.config.public_url.trim_end_matches('/').to_string();
    }
    let scheme = if is_https(headers) { "https" } else { "http" };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("{scheme}://{host}{}", state.config.base_path)
}

/// The browser session the sign-in is bound to.
fn session_hash(headers: &HeaderMap) -> Result<[u8; 32], AppError> {
    read_cookie(headers, SESSION_COOKIE)
        .and_then(id_hash)
        .ok_or(AppError::Forbidden("no session"))
}

fn ctx(state: &AppState) -> sources::Ctx<'_> {
    sources::Ctx {
        db: &state.db,
        vault: &state.vault,
        plugins: &state.plugins,
        catalog: &state.catalog,
    }
}

/// Sends the browser to the provider. A page rather than a redirect: the form's CSP
/// (`form-action 'self'`) would stop a redirect to another site, while a meta refresh (with a
/// link for browsers that ignore it) is a plain navigation.
fn to_provider(state: &AppState, page: &Page, url: &str) -> Result<Response, AppError> {
    Ok(page
        .render(state, "sources_redirect.html", context! { url => url })?
        .into_response())
}

async fn connect(
    State(state): State<AppState>,
    access: ManagePerson,
    headers: HeaderMap,
    page: Page,
    Form(form): Form<ConnectForm>,
) -> Result<Response, AppError> {
    let session = session_hash(&headers)?;
    let redirect_uri = smart::redirect_uri(&public_url(&state, &headers));
    let begun = sources::begin_connect(
        &ctx(&state),
        access.user.id,
        access.id(),
        &session,
        &form,
        &redirect_uri,
    )
    .await;
    match begun {
        Ok(url) => to_provider(&state, &page, &url),
        Err(e) => {
            connect_failed(
                &state,
                &page,
                &headers,
                &access.person.person,
                StatusCode::UNPROCESSABLE_ENTITY,
                &e,
                &form,
            )
            .await
        }
    }
}

/// The Sources page again, saying why connecting failed (and keeping what was typed).
async fn connect_failed(
    state: &AppState,
    page: &Page,
    headers: &HeaderMap,
    person: &crate::store::people::Person,
    status: StatusCode,
    error: &SmartError,
    form: &ConnectForm,
) -> Result<Response, AppError> {
    tracing::info!(reason = %error, "connecting a provider failed");
    sources_page(
        state,
        page,
        headers,
        person,
        status,
        None,
        Some(notice_of(error)),
        form,
    )
    .await
}

async fn callback(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Result<Response, AppError> {
    let session = session_hash(&headers)?;
    // Whose connection this was, to show their Sources page if it fails (the sign-in itself is
    // used up by trying).
    let pending_person = match params.state.as_deref() {
        Some(state_param) => sources::pending_person(&state.db, state_param).await?,
        None => None,
    };
    match sources::finish_connect(&ctx(&state), user.id, &session, &params).await {
        Ok(connected) => {
            state.jobs.wake();
            let person = crate::store::people::by_id(&state.db, connected.person_id)
                .await?
                .ok_or(AppError::NotFound)?;
            let (_, source_name) =
                owned_source(&state, connected.person_id, connected.source_id).await?;
            let subject = format!(
                "{source_name} for {}{}",
                person.slug,
                if connected.renewed {
                    " (reconnected)"
                } else {
                    ""
                }
            );
            audit::record(
                &state.db,
                &Actor::user(&user, address),
                Action::SourceConnected,
                &subject,
            )
            .await;
            Ok(Redirect::to(&format!(
                "{}/sources?{}={}",
                person_url(&state, &person.slug),
                if connected.renewed {
                    "renewed"
                } else {
                    "connected"
                },
                connected.source_id
            ))
            .into_response())
        }
        Err(e) => {
            tracing::info!(user_id = user.id, reason = %e, "sign-in callback refused");
            // Back to the Sources page of the person the sign-in was for (or the account's own),
            // so the authorization code leaves the address bar; the page says what happened.
            let mut shown = None;
            if let Some(person_id) = pending_person
                && let Some(person) = crate::store::people::by_id(&state.db, person_id).await?
                && crate::store::people::access(&state.db, user.id, &person.slug)
                    .await?
                    .is_some()
            {
                shown = Some(person);
            }
            let person = match shown {
                Some(person) => person,
                None => crate::store::people::by_id(&state.db, user.person_id)
                    .await?
                    .ok_or(AppError::NotFound)?,
            };
            state.notices.put(session, notice_of(&e));
            Ok(
                Redirect::to(&format!("{}/sources", person_url(&state, &person.slug)))
                    .into_response(),
            )
        }
    }
}

/// What the Sources page says about a failed connection.
fn notice_of(error: &SmartError) -> Notice {
    Notice {
        message: error.message(),
        detail: error.detail(),
    }
}

/// The person's source `id`, or 404 (another person's source is not even acknowledged).
async fn owned_source(
    state: &AppState,
    person_id: i64,
    id: i64,
) -> Result<(i64, String), AppError> {
    sqlx::query_as("SELECT id, display_name FROM sources WHERE id = ? AND person_id = ?")
        .bind(id)
        .bind(person_id)
        .fetch_optional(&state.db)
        .await?
        .ok_or(AppError::NotFound)
}

async fn sync_now(
    State(state): State<AppState>,
    access: ManagePerson,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    owned_source(&state, access.id(), id).await?;
    let has_connection: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM connections WHERE source_id = ?)")
            .bind(id)
            .fetch_one(&state.db)
            .await?;
    if !has_connection {
        return Err(AppError::BadRequest(
            "This source has no provider connection to sync.".into(),
        ));
    }
    jobs::enqueue(&state.db, &state.jobs, access.id(), id, Trigger::Manual).await?;
    Ok(Redirect::to(&access.url(&state, &format!("/sources?synced={id}"))).into_response())
}

async fn reconnect(
    State(state): State<AppState>,
    access: ManagePerson,
    headers: HeaderMap,
    Path(id): Path<i64>,
    page: Page,
) -> Result<Response, AppError> {
    owned_source(&state, access.id(), id).await?;
    let session = session_hash(&headers)?;
    let redirect_uri = smart::redirect_uri(&public_url(&state, &headers));
    let begun = sources::begin_reconnect(
        &ctx(&state),
        access.user.id,
        access.id(),
        &session,
        id,
        &redirect_uri,
    )
    .await;
    match begun {
        Ok(Some(url)) => to_provider(&state, &page, &url),
        Ok(None) => Err(AppError::NotFound),
        Err(e) => {
            connect_failed(
                &state,
                &page,
                &headers,
                &access.person.person,
                StatusCode::UNPROCESSABLE_ENTITY,
                &e,
                &ConnectForm::default(),
            )
            .await
        }
    }
}

async fn confirm_delete(
    State(state): State<AppState>,
    access: ManagePerson,
    Path(id): Path<i64>,
    page: Page,
) -> Result<Html<String>, AppError> {
    let (id, name) = owned_source(&state, access.id(), id).await?;
    let records: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM resources WHERE source_id = ?")
        .bind(id)
        .fetch_one(&state.db)
        .await?;
    page.render(
        &state,
        "source_delete.html",
        context! { id => id, name => name, records => records },
    )
}

#[derive(Debug, Deserialize)]
struct DeleteForm {
    #[serde(default)]
    confirm: String,
}

async fn delete(
    State(state): State<AppState>,
    access: ManagePerson,
    ClientAddr(address): ClientAddr,
    Path(id): Path<i64>,
    Form(form): Form<DeleteForm>,
) -> Result<Response, AppError> {
    let (_, source_name) = owned_source(&state, access.id(), id).await?;
    if form.confirm != "yes" {
        return Err(AppError::BadRequest(
            "Tick the box to confirm the deletion.".into(),
        ));
    }
    if !sources::delete(&state.db, &state.jobs, access.id(), id).await? {
        return Err(AppError::NotFound);
    }
    let subject = format!(
        "{source_name} of {} and its records",
        access.person.person.slug
    );
    audit::record(
        &state.db,
        &Actor::user(&access.user, address),
        Action::SourceDeleted,
        &subject,
    )
    .await;
    Ok(Redirect::to(&access.url(&state, "/sources")).into_response())
}
