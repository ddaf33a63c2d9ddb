//! Extractors that make a handler's access rule visible in its signature:
//! `CurrentUser` (signed in), `AdminUser` (signed-in administrator), `MaybeUser` (either).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, OriginalUri};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::read_cookie;
use super::session::{SESSION_COOKIE, id_hash};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{self, users::User};

/// Sessions are marked as used at most this often, to spare a write on every page view.
const TOUCH_INTERVAL_SECS: i64 = 60;

pub struct MaybeUser(pub Option<User>);
pub struct CurrentUser(pub User);
pub struct AdminUser(pub User);

/// Cached in the request so several extractors in one request hit the database once.
#[derive(Clone)]
struct ResolvedUser(Option<User>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if let Some(ResolvedUser(user)) = parts.extensions.get::<ResolvedUser>() {
            return Ok(MaybeUser(user.clone()));
        }
        let user = user_from_headers(&parts.headers, state).await?;
        parts.extensions.insert(ResolvedUser(user.clone()));
        Ok(MaybeUser(user))
    }
}

/// The signed-in user for a request with these headers, if the session is live and the account
/// enabled.
pub async fn user_from_headers(
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Option<User>, AppError> {
    let Some(hash) = read_cookie(headers, SESSION_COOKIE).and_then(id_hash) else {
        return Ok(None);
    };
    let idle_secs = state.config.session.idle_timeout.as_secs() as i64;
    let Some((user_id, last_seen)) =
        store::sessions::live_user_id(&state.db, &hash, idle_secs).await?
    else {
        return Ok(None);
    };
    let Some(user) = store::users::by_id(&state.db, user_id).await? else {
        return Ok(None);
    };
    if user.disabled {
        return Ok(None);
    }
    if store::unix_now() - last_seen >= TOUCH_INTERVAL_SECS {
        store::sessions::touch(&state.db, &hash).await?;
    }
    Ok(Some(user))
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match MaybeUser::from_request_parts(parts, state).await? {
            MaybeUser(Some(user)) => Ok(CurrentUser(user)),
            MaybeUser(None) => Err(AppError::SignInRequired(sign_in_url(parts, state))),
        }
    }
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        if !user.is_admin() {
            return Err(AppError::Forbidden(
                "This page is for administrators of this Fasten.",
            ));
        }
        Ok(AdminUser(user))
    }
}

/// `/login?next=<this page>`, so signing in returns the user to where they were. Only the path
/// is kept: query strings may carry one-time codes that should not travel further.
fn sign_in_url(parts: &Parts, state: &AppState) -> String {
    let base = &state.config.base_path;
    let path = parts
        .extensions
        .get::<OriginalUri>()
        .map(|u| u.path().to_string())
        .unwrap_or_else(|| format!("{base}{}", parts.uri.path()));
    let next: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
    if parts.method == axum::http::Method::GET && path != format!("{base}/") {
        format!("{base}/login?next={next}")
    } else {
        format!("{base}/login")
    }
}

/// The client's IP address as seen on the socket, for login throttling. Behind a reverse proxy
/// this is the proxy's address, which still throttles per username.
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(ClientAddr(addr))
    }
}
