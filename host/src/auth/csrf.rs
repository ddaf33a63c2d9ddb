//! CSRF protection for every state-changing request.
//!
//! Each browser gets a random `fasten_csrf` cookie; the expected token is
//! HMAC-SHA256(instance key, cookie), so a page can embed it but no other site can compute it,
//! and a cookie planted by a neighbouring subdomain is useless without the key. Forms send the
//! token in a hidden `csrf_token` field; htmx requests send it in the `X-CSRF-Token` header,
//! which the layout sets once with `hx-headers`. A POST (or PUT, PATCH, DELETE) without a
//! matching token is refused with 403 before any handler runs, so nothing changes.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{cookie_header, is_https, read_cookie};
use crate::error::AppError;
use crate::state::AppState;

pub const CSRF_COOKIE: &str = "fasten_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const CSRF_FIELD: &str = "csrf_token";

/// The token for this request's browser, for templates to embed.
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

pub fn token_for(key: &[u8; 32], cookie_value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key size");
    mac.update(cookie_value.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

pub async fn protect(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let existing = read_cookie(request.headers(), CSRF_COOKIE)
        .filter(|v| URL_SAFE_NO_PAD.decode(v).is_ok_and(|b| b.len() == 32))
        .map(str::to_owned);
    let is_new = existing.is_none();
    let cookie_value = existing.unwrap_or_else(|| {
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        URL_SAFE_NO_PAD.encode(raw)
    });
    let expected = token_for(&state.csrf_key, &cookie_value);
    let secure = is_https(request.headers());

    let (mut parts, body) = request.into_parts();
    let body = if is_state_changing(&parts.method) {
        let header_token = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (submitted, body) = match header_token {
            Some(token) => (Some(token), body),
            None if is_urlencoded_form(&parts.headers) => {
                // Buffer the (small, size-limited) form to read the field, then hand the same
                // bytes on to the handler.
                let limit = state.config.limits.form_body_bytes;
                let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
                    return AppError::PayloadTooLarge(format!(
                        "The form was larger than the {limit} bytes this server accepts."
                    ))
                    .into_response();
                };
                let submitted = form_urlencoded::parse(&bytes)
                    .find(|(k, _)| k == CSRF_FIELD)
                    .map(|(_, v)| v.into_owned());
                (submitted, Body::from(bytes))
            }
            None => (None, body),
        };
        let matches =
            submitted.is_some_and(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())));
        if is_new || !matches {
            tracing::warn!(method = %parts.method, path = %parts.uri.path(), "refused a request without a valid CSRF token");
            return AppError::Forbidden(
                "This form was out of date or did not come from this site, so nothing was \
                 changed. Go back, reload the page and try again.",
            )
            .into_response();
        }
        body
    } else {
        body
    };
    parts.extensions.insert(CsrfToken(expected));
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if is_new {
        let cookie = cookie_header(
            CSRF_COOKIE,
            &cookie_value,
            &state.config.base_path,
            secure,
            None,
        );
        if let Ok(value) = cookie.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

fn is_urlencoded_form(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}
