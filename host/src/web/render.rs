//! Page rendering: the minijinja environment, the per-request page context, and the layer that
//! renders error responses inside the site layout.
//!
//! Templates are embedded in the binary (so `fasten` runs from any folder); under
//! `serve --dev` they are read from `templates/` and reloaded when a file changes.

use std::path::PathBuf;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value, context};
use minijinja_autoreload::AutoReloader;

use crate::auth::csrf::{CSRF_COOKIE, CsrfToken, token_for};
use crate::auth::extract::user_from_headers;
use crate::auth::{MaybeUser, read_cookie};
use crate::error::{AppError, ErrorPage};
use crate::state::AppState;
use crate::store::users::User;

pub enum Templates {
    Embedded(Environment<'static>),
    Reloading(AutoReloader),
}

/// The templates folder of this checkout, used by `serve --dev`.
pub fn source_templates_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../templates"))
}

impl Templates {
    pub fn embedded() -> Templates {
        let mut env = Environment::new();
        configure(&mut env);
        minijinja_embed::load_templates!(&mut env);
        Templates::Embedded(env)
    }

    pub fn reloading(dir: PathBuf) -> Templates {
        Templates::Reloading(AutoReloader::new(move |notifier| {
            let mut env = Environment::new();
            configure(&mut env);
            env.set_loader(minijinja::path_loader(&dir));
            notifier.watch_path(&dir, true);
            Ok(env)
        }))
    }

    pub fn render(&self, name: &str, ctx: Value) -> Result<String, minijinja::Error> {
        match self {
            Templates::Embedded(env) => env.get_template(name)?.render(ctx),
            Templates::Reloading(reloader) => {
                let env = reloader.acquire_env()?;
                env.get_template(name)?.render(ctx)
            }
        }
    }
}

fn configure(env: &mut Environment<'static>) {
    // Auto-escaping applies to `.html` templates by default; keep it so, explicitly.
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env.add_filter("datetime", datetime_filter);
}

/// Unix seconds as "2026-11-23 09:30 UTC".
fn datetime_filter(secs: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// What every page needs besides its own data: who is signed in, the CSRF token for its forms,
/// the URL prefix, and the current path for the navigation.
pub struct Page {
    pub user: Option<User>,
    csrf_token: Option<String>,
    path: String,
}

impl FromRequestParts<AppState> for Page {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let MaybeUser(user) = MaybeUser::from_request_parts(parts, state).await?;
        Ok(Page {
            user,
            csrf_token: parts.extensions.get::<CsrfToken>().map(|t| t.0.clone()),
            path: parts.uri.path().to_string(),
        })
    }
}

impl Page {
    pub fn render(
        &self,
        state: &AppState,
        template: &str,
        ctx: Value,
    ) -> Result<Html<String>, AppError> {
        Ok(Html(render_with_layout(
            state,
            self.user.as_ref(),
            self.csrf_token.as_deref(),
            &self.path,
            template,
            ctx,
        )?))
    }

    /// Renders with a status other than 200, e.g. a form shown again with an error.
    pub fn render_status(
        &self,
        state: &AppState,
        status: StatusCode,
        template: &str,
        ctx: Value,
    ) -> Result<Response, AppError> {
        Ok((status, self.render(state, template, ctx)?).into_response())
    }
}

fn render_with_layout(
    state: &AppState,
    user: Option<&User>,
    csrf_token: Option<&str>,
    path: &str,
    template: &str,
    ctx: Value,
) -> Result<String, minijinja::Error> {
    let full = context! {
        // Validated at load to [A-Za-z0-9._/-], so it needs no escaping (which would turn / into &#x2f;).
        base => Value::from_safe_string(state.config.base_path.clone()),
        user => user.map(Value::from_serialize),
        csrf_token => csrf_token,
        path => path,
        version => env!("CARGO_PKG_VERSION"),
        ..ctx
    };
    state.templates.render(template, full)
}

/// Turns responses that carry an [`ErrorPage`] into a page in the site layout, keeping their
/// status and headers (a new CSRF cookie, say).
pub async fn error_pages(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let Some(error) = response.extensions().get::<ErrorPage>().cloned() else {
        return response;
    };
    // Best effort: an error page must render even when the database is what failed.
    let user = user_from_headers(&headers, &state).await.ok().flatten();
    let csrf_token = read_cookie(&headers, CSRF_COOKIE).map(|c| token_for(&state.csrf_key, c));
    let ctx = context! {
        status => error.status.as_u16(),
        reason => error.status.canonical_reason().unwrap_or("Error"),
        message => error.message,
    };
    let html = match render_with_layout(
        &state,
        user.as_ref(),
        csrf_token.as_deref(),
        &path,
        "error.html",
        ctx,
    ) {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "cannot render the error page");
            return response;
        }
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, html.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_escapes_user_data() {
        let Templates::Embedded(env) = Templates::embedded() else {
            unreachable!()
        };
        for (name, _) in env.templates() {
            env.get_template(name).unwrap();
        }
        let html = env
            .get_template("error.html")
            .unwrap()
            .render(context! { base => "", status => 404, reason => "Not Found",
            message => "<script>alert(1)</script>" })
            .unwrap();
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>alert"));
    }

    #[test]
    fn dates_are_shown_in_utc() {
        assert_eq!(datetime_filter(0), "1970-01-01 00:00 UTC");
    }
}
