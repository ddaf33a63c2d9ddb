//! The web layer: one router per area, merged here, with the middleware every request passes
//! through (outermost first): request tracing, security headers, error pages, CSRF, first-run
//! redirect.

pub mod account;
pub mod admin;
pub mod assets;
pub mod pages;
pub mod render;

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
    let routes = Router::new()
        .merge(assets::router())
        .merge(account::router())
        .merge(pages::router())
        .merge(admin::router())
        .fallback(|| async { AppError::NotFound });

    let mut layered = routes
        .layer(middleware::from_fn_with_state(state.clone(), first_run_redirect))
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

    let base = state.config.base_path.clone();
    if base.is_empty() {
        layered
    } else {
        let root_redirect = format!("{base}/");
        Router::new()
            .nest(&base, layered)
            .route("/", axum::routing::get(move || async move { Redirect::to(&root_redirect) }))
    }
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
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("same-origin")),
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
    let exempt = path == "/setup" || path == "/healthz" || path.starts_with("/static/");
    if !exempt {
        match state.is_first_run().await {
            Ok(true) => return Redirect::to(&state.url("/setup")).into_response(),
            Ok(false) => {}
            Err(e) => return AppError::from(e).into_response(),
        }
    }
    next.run(request).await
}
