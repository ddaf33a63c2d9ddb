//! Accounts and sign-in: password hashing, server-side sessions, CSRF protection, login
//! throttling, and the extractors handlers use to require a signed-in user or an admin.

pub mod accounts;
pub mod csrf;
pub mod extract;
pub mod password;
pub mod person;
pub mod session;
pub mod throttle;

pub use extract::{AdminUser, ClientAddr, CurrentUser, MaybeUser};

use axum::http::HeaderMap;

/// Whether the browser reached us over https (directly, or through a proxy that says so).
/// Cookies get the `Secure` attribute only then, since a plain-http LAN setup must still work.
pub fn is_https(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get("forwarded")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("proto=https"));
    forwarded_proto || forwarded
}

/// A `Set-Cookie` value with the attributes every Fasten cookie shares.
pub fn cookie_header(
    name: &str,
    value: &str,
    path: &str,
    secure: bool,
    max_age: Option<time::Duration>,
) -> String {
    let mut cookie = cookie::Cookie::build((name, value))
        .path(if path.is_empty() { "/" } else { path })
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .secure(secure);
    if let Some(age) = max_age {
        cookie = cookie.max_age(age);
    }
    cookie.build().to_string()
}

/// The value of cookie `name` in the request, if any.
pub fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
