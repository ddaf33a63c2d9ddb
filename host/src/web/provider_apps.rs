//! Admin → Provider apps: the app registration for each EHR platform (client id, client
//! authentication, scopes), with the vendor's registration steps, and the instance's keys for
//! `private_key_jwt`. The public half of those keys is served to everyone at
//! `/.well-known/jwks.json`, where the vendors' servers fetch it.

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::{Value, context};
use serde::Deserialize;

use super::render::Page;
use super::sources::public_url;
use crate::audit::{self, Action, Actor};
use crate::auth::{AdminUser, ClientAddr};
use crate::catalog;
use crate::error::AppError;
use crate::sources::client_keys::{self, KeyAlg, RotateError};
use crate::sources::registrations::{self, PLATFORMS, RegistrationForm, SaveError};
use crate::sources::smart;
use crate::state::AppState;
use crate::store::unix_now;

/// The JWK Set is public: a vendor's server fetches it with no session.
pub fn public_router() -> Router<AppState> {
    Router::new().route("/.well-known/jwks.json", get(jwks))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/provider-apps", get(list))
        .route("/admin/provider-apps/keys", post(add_key))
        .route("/admin/provider-apps/jwks.json", get(download_jwks))
        .route("/admin/provider-apps/{platform}", get(show).post(save))
        .route("/admin/provider-apps/{platform}/delete", post(remove))
}

fn grace(state: &AppState) -> i64 {
    state.config.provider_apps.key_grace.as_secs() as i64
}

/// How long a vendor's server may cache the JWK Set: a quarter of the grace period, so a new key
/// is fetched well before it signs, and at most an hour.
fn cache_seconds(grace: i64) -> i64 {
    (grace / 4).clamp(0, 3600)
}

async fn jwk_set_json(state: &AppState) -> Result<String, AppError> {
    let set = client_keys::jwk_set(&state.db, &state.vault, grace(state)).await?;
    Ok(serde_json::to_string_pretty(&set).expect("a JWK Set serialises"))
}

async fn jwks(State(state): State<AppState>) -> Result<Response, AppError> {
    let body = jwk_set_json(&state).await?;
    let cache = format!("public, max-age={}", cache_seconds(grace(&state)));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_str(&cache).expect("a number is a header value"),
            ),
        ],
        body,
    )
        .into_response())
}

/// The same JWK Set as a file, for a hospital that cannot fetch a URL and asks for an upload.
async fn download_jwks(State(state): State<AppState>, _: AdminUser) -> Result<Response, AppError> {
    let body = jwk_set_json(&state).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"fasten-jwks.json\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// The addresses a vendor's registration form asks for.
fn addresses(state: &AppState, headers: &HeaderMap) -> Value {
    let public = public_url(state, headers);
    context! {
        redirect_uri => smart::redirect_uri(&public),
        jwks_url => format!("{public}/.well-known/jwks.json"),
        public_url => public,
    }
}

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "saved" => "The app registration was saved. Members now connect with it.",
        "removed" => "The app registration was removed.",
        "key" => {
            "A new key was added and published. Fasten signs with it once the grace period \
                  has passed."
        }
        _ => return None,
    })
}

async fn list(
    State(state): State<AppState>,
    _: AdminUser,
    page: Page,
    headers: HeaderMap,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, AppError> {
    render_list(
        &state,
        &page,
        &headers,
        StatusCode::OK,
        query.notice.as_deref().and_then(notice_text),
        None,
    )
    .await
}

async fn render_list(
    state: &AppState,
    page: &Page,
    headers: &HeaderMap,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<String>,
) -> Result<Response, AppError> {
    client_keys::ensure(&state.db, &state.vault).await?;
    let saved = registrations::all(&state.db, &state.vault).await?;
    let platforms: Vec<Value> = PLATFORMS
        .iter()
        .map(|(id, name)| {
            context! {
                id => id, name => name,
                registration => saved.iter().find(|r| r.platform == *id),
            }
        })
        .collect();
    let keys = client_keys::keys(&state.db, unix_now(), grace(state)).await?;
    let waiting = keys
        .iter()
        .any(|k| k.phase == Some(client_keys::Phase::Waiting));
    Ok(page
        .render_status(
            state,
            status,
            "admin_provider_apps.html",
            context! {
                platforms => platforms,
                keys => keys,
                waiting => waiting,
                grace => smart::in_words(grace(state)),
                addresses => addresses(state, headers),
                notice => notice,
                error => error,
            },
        )?
        .into_response())
}

async fn add_key(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ClientAddr(address): ClientAddr,
    page: Page,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    match client_keys::rotate(&state.db, &state.vault, grace(&state)).await {
        Ok(()) => {
            tracing::info!(by = %admin.username, "new client signing keys added");
            let actor = Actor::user(&admin, address);
            audit::record(
                &state.db,
                &actor,
                Action::SigningKeysAdded,
                "ES384 and RS384",
            )
            .await;
            Ok(Redirect::to(&state.url("/admin/provider-apps?notice=key")).into_response())
        }
        Err(RotateError::AlreadyWaiting) => {
            render_list(
                &state,
                &page,
                &headers,
                StatusCode::CONFLICT,
                None,
                Some(RotateError::AlreadyWaiting.to_string()),
            )
            .await
        }
        Err(RotateError::Other(e)) => Err(e.into()),
    }
}

fn known(platform: &str) -> Result<&'static str, AppError> {
    registrations::platform_name(platform).ok_or(AppError::NotFound)
}

async fn show(
    State(state): State<AppState>,
    _: AdminUser,
    page: Page,
    headers: HeaderMap,
    Path(platform): Path<String>,
) -> Result<Response, AppError> {
    known(&platform)?;
    render_platform(
        &state,
        &page,
        &headers,
        &platform,
        StatusCode::OK,
        None,
        None,
    )
    .await
}

async fn render_platform(
    state: &AppState,
    page: &Page,
    headers: &HeaderMap,
    platform: &str,
    status: StatusCode,
    error: Option<String>,
    typed: Option<&RegistrationForm>,
) -> Result<Response, AppError> {
    let name = known(platform)?;
    let saved = registrations::get(&state.db, &state.vault, platform).await?;
    // What the form shows: what was typed when saving failed, else what is stored. Never the
    // secret: only whether one is stored.
    let form = match (typed, &saved) {
        (Some(f), _) => context! {
            client_id => f.client_id, client_auth => f.client_auth,
            signing_alg => f.signing_alg, scopes => f.scopes,
        },
        (None, Some(r)) => context! {
            client_id => r.client_id, client_auth => r.auth,
            signing_alg => r.signing_alg, scopes => r.scopes,
        },
        (None, None) => context! {
            client_auth => "private_key_jwt", signing_alg => KeyAlg::Es384,
        },
    };
    Ok(page
        .render_status(
            state,
            status,
            "admin_provider_app.html",
            context! {
                platform => context! { id => platform, name => name },
                registered => saved.is_some(),
                has_secret => saved.as_ref().is_some_and(|r| r.client_secret.is_some()),
                form => form,
                error => error,
                addresses => addresses(state, headers),
                default_scopes => catalog::DEFAULT_SCOPES_V1,
                default_scopes_v2 => catalog::DEFAULT_SCOPES_V2,
            },
        )?
        .into_response())
}

async fn save(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ClientAddr(address): ClientAddr,
    page: Page,
    headers: HeaderMap,
    Path(platform): Path<String>,
    Form(form): Form<RegistrationForm>,
) -> Result<Response, AppError> {
    known(&platform)?;
    match registrations::save(&state.db, &state.vault, &platform, &form).await {
        Ok(()) => {
            tracing::info!(by = %admin.username, %platform, auth = %form.client_auth, "app registration saved");
            let subject = format!("{platform} ({})", form.client_auth);
            audit::record(
                &state.db,
                &Actor::user(&admin, address),
                Action::ProviderAppSaved,
                &subject,
            )
            .await;
            Ok(Redirect::to(&state.url("/admin/provider-apps?notice=saved")).into_response())
        }
        Err(SaveError::Invalid(message)) => {
            render_platform(
                &state,
                &page,
                &headers,
                &platform,
                StatusCode::BAD_REQUEST,
                Some(message),
                Some(&form),
            )
            .await
        }
        Err(SaveError::Other(e)) => Err(e.into()),
    }
}

async fn remove(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ClientAddr(address): ClientAddr,
    Path(platform): Path<String>,
) -> Result<Response, AppError> {
    known(&platform)?;
    registrations::remove(&state.db, &platform).await?;
    tracing::info!(by = %admin.username, %platform, "app registration removed");
    let actor = Actor::user(&admin, address);
    audit::record(&state.db, &actor, Action::ProviderAppRemoved, &platform).await;
    Ok(Redirect::to(&state.url("/admin/provider-apps?notice=removed")).into_response())
}

#[cfg(test)]
mod tests {
    use super::cache_seconds;

    #[test]
    fn the_key_set_is_cached_for_a_quarter_of_the_grace_period_and_at_most_an_hour() {
        assert_eq!(cache_seconds(7 * 86400), 3600);
        assert_eq!(cache_seconds(120), 30);
        assert_eq!(cache_seconds(0), 0);
    }
}
