//! `AppError`, the one error type of the HTTP boundary.
//!
//! Handlers return `Result<_, AppError>` and use `?` on database and other failures. The response
//! carries an [`ErrorPage`] marker that `web::render::error_pages` turns into a page in the site
//! layout; internal causes go to the log and never to the browser.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("too large: {0}")]
    PayloadTooLarge(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// Not signed in (or the session ended): send the browser to this sign-in URL.
    #[error("sign-in required")]
    SignInRequired(String),
    /// An old address of a page that moved (person-scoped pages now live under
    /// `/people/{person}/`): 303 for reads, 307 for forms so the method and body are kept.
    #[error("moved to {to}")]
    Moved { to: String, keep_method: bool },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Internal(anyhow::Error::new(e).context("database query"))
    }
}

impl From<minijinja::Error> for AppError {
    fn from(e: minijinja::Error) -> Self {
        AppError::Internal(anyhow::Error::new(e).context("template rendering"))
    }
}

/// Attached to error responses so the error-page layer can render them in the layout.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub status: StatusCode,
    pub message: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            AppError::NotFound => (
                StatusCode::NOT_FOUND,
                "There is nothing at this address.".to_string(),
            ),
            AppError::Forbidden(why) => (StatusCode::FORBIDDEN, why.to_string()),
            AppError::BadRequest(why) => (StatusCode::BAD_REQUEST, why.clone()),
            AppError::PayloadTooLarge(why) => (StatusCode::PAYLOAD_TOO_LARGE, why.clone()),
            AppError::Conflict(why) => (StatusCode::CONFLICT, why.clone()),
            AppError::SignInRequired(to) => return redirect_to_sign_in(to),
            AppError::Moved { to, keep_method } => {
                let status = if *keep_method {
                    StatusCode::TEMPORARY_REDIRECT
                } else {
                    StatusCode::SEE_OTHER
                };
                let location = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/"));
                return (status, [(header::LOCATION, location)]).into_response();
            }
            AppError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on the server. Your records are safe; please try again, \
                     and if it keeps happening ask whoever runs this Fasten to check its log."
                        .to_string(),
                )
            }
        };
        let mut response = (status, message.clone()).into_response();
        response
            .extensions_mut()
            .insert(ErrorPage { status, message });
        response
    }
}

fn redirect_to_sign_in(to: &str) -> Response {
    let location = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/login"));
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, location.clone());
    // htmx follows redirects inside the swapped fragment; HX-Redirect makes it load a full page.
    response.headers_mut().insert("HX-Redirect", location);
    response
}
