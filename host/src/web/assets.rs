//! Static files (embedded in the binary) and the health check.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::error::AppError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/static/{*file}", get(static_file))
        // Browsers ask for it whatever the page says; the same icon, so the log has no 404.
        .route(
            "/favicon.ico",
            get(|| async { static_file(Path("favicon.svg".to_string())).await }),
        )
}

/// `{"status":"ok","first_run":<bool>,"version":"…"}`; 503 if the database does not answer.
async fn healthz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    let first_run = state.is_first_run().await?;
    Ok(Json(json!({
        "status": "ok",
        "first_run": first_run,
        "version": env!("CARGO_PKG_VERSION"),
    })))
}

/// Files under `static/`, compiled in. Vendored libraries keep their licence files beside them.
const STATIC_FILES: &[(&str, &str, &[u8])] = &[
    (
        "vendor/htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../static/vendor/htmx.min.js"),
    ),
    (
        "vendor/htmx.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../../static/vendor/htmx.LICENSE"),
    ),
    (
        "vendor/simple.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../static/vendor/simple.min.css"),
    ),
    (
        "vendor/simple.css.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../../static/vendor/simple.css.LICENSE"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../../static/favicon.svg"),
    ),
    (
        "fasten.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../static/fasten.css"),
    ),
];

async fn static_file(Path(file): Path<String>) -> Result<Response, AppError> {
    let &(_, content_type, bytes) = STATIC_FILES
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or(AppError::NotFound)?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(response)
}
