//! The web layer: one router per area, merged here, with the middleware every request passes
//! through (outermost first): request tracing, security headers, error pages, CSRF, first-run
//! redirect.

pub mod account;
pub mod admin;
pub mod assets;
pub mod dashboard;
pub mod directory;
pub mod explore;
pub mod export;
pub mod history;
pub mod jobs;
pub mod labs;
pub mod manual;
pub mod notice;
pub mod people;
pub mod plugins;
pub mod profile;
pub mod provider_apps;
pub mod render;
pub mod search;
pub mod sources;
pub mod upload;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::error::AppError;
use crate::state::AppState;

pub fn build_app(state: AppState) -> Router {
    // Pages about one person live under /people/{person}/ (see `people`); the rest are the
    // account's or the site's.
    let routes = Router::new()
        .merge(assets::router())
        .merge(account::router())
        .merge(admin::router())
        .merge(provider_apps::router())
        .merge(provider_apps::public_router())
        .merge(directory::admin_router())
        .merge(plugins::router())
        .merge(sources::global_router())
        .merge(search::global_router())
        .merge(people::router())
        .fallback(|| async { AppError::NotFound });

    let mut layered = routes
        .layer(middleware::from_fn_with_state(
            state.clone(),
            first_run_redirect,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::csrf::protect,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            render::error_pages,
        ));
    for (name, value) in security_headers() {
        layered = layered.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    let layered = layered
        .layer(DefaultBodyLimit::max(state.config.limits.form_body_bytes))
        .layer(
            // Spans carry method and path only: query strings may hold one-time codes.
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
            }),
        )
        .with_state(state.clone());

    // `/people/{person}/…` is routed to the person-scoped pages before routing proper.
    let layered = tower::ServiceBuilder::new()
        .map_request(people::strip_person)
        .service(layered);
    let base = state.config.base_path.clone();
    if base.is_empty() {
        return Router::new().fallback_service(layered);
    }
    // Under a reverse-proxy prefix, strip it before routing so the routes stay the same; `/fasten`
    // and `/fasten/` are both the dashboard. Paths outside the prefix get the 404 page.
    let root_redirect = format!("{base}/");
    let inner = tower::ServiceBuilder::new()
        .map_request(move |mut request: Request| {
            let path = request.uri().path();
            let inside = match path.strip_prefix(base.as_str()) {
                Some("") => Some("/".to_string()),
                Some(rest) if rest.starts_with('/') => Some(rest.to_string()),
                _ => None,
            };
            let new_path = inside.unwrap_or_else(|| "/.outside-base-path".to_string());
            let new_uri = match request.uri().query() {
                Some(query) => format!("{new_path}?{query}"),
                None => new_path,
            };
            if let Ok(uri) = new_uri.parse() {
                *request.uri_mut() = uri;
            }
            request
        })
        .service(layered);
    Router::new()
        .route(
            "/",
            axum::routing::get(move || async move { Redirect::to(&root_redirect) }),
        )
        .fallback_service(inner)
}

/// Headers every response carries unless a handler set its own.
fn security_headers() -> [(HeaderName, HeaderValue); 4] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; script-src 'self'; \
                 style-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'",
            ),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
        (
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ),
    ]
}

/// Until the first account exists every page leads to the first-run wizard.
async fn first_run_redirect(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let exempt = path == "/setup"
        || path == "/healthz"
        || path == "/favicon.ico"
        || path == "/.well-known/jwks.json"
        || path.starts_with("/static/");
    if !exempt {
        match state.is_first_run().await {
            Ok(true) => return Redirect::to(&state.url("/setup")).into_response(),
            Ok(false) => {}
            Err(e) => return AppError::from(e).into_response(),
        }
    }
    next.run(request).await
}
