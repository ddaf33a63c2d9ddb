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
use crate::store::people::{self, Visible};
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
    // An ISO date as people read it, with its precision: the read model's one date format.
    env.add_filter("date", |iso: Option<String>| {
        iso.map_or_else(String::new, |iso| crate::fhir::read::date(&iso))
    });
}

/// Unix seconds as "2026-11-23 09:30 UTC", as the pages show times (also in the CLI's messages).
pub fn datetime_filter(secs: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// What every page needs besides its own data: who is signed in, whose records the page is about
/// and whom else the account may see (the header's switcher), the CSRF token for its forms, the
/// URL prefix, and the current path for the navigation.
pub struct Page {
    pub user: Option<User>,
    /// The person of a `/people/{person}/…` page the account may see.
    pub person: Option<Visible>,
    people: Vec<Visible>,
    csrf_token: Option<String>,
    path: String,
}

impl FromRequestParts<AppState> for Page {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let MaybeUser(user) = MaybeUser::from_request_parts(parts, state).await?;
        let (person, people) = match &user {
            Some(user) => (
                crate::auth::person::resolve(parts, state, user).await?,
                people::visible_to(&state.db, user.id).await?,
            ),
            None => (None, Vec::new()),
        };
        Ok(Page {
            user,
            person,
            people,
            csrf_token: parts.extensions.get::<CsrfToken>().map(|t| t.0.clone()),
            path: parts.uri.path().to_string(),
        })
    }
}

impl Page {
    /// The same page about `person` (a page outside `/people/{person}/`, such as the OAuth
    /// callback, that shows one person's records).
    pub async fn about(
        mut self,
        state: &AppState,
        user: &User,
        person: &people::Person,
    ) -> Result<Page, AppError> {
        self.person = people::access(&state.db, user.id, &person.slug).await?;
        self.path = "/sources".to_string();
        Ok(self)
    }

    pub fn render(
        &self,
        state: &AppState,
        template: &str,
        ctx: Value,
    ) -> Result<Html<String>, AppError> {
        Ok(Html(render_with_layout(
            state,
            Layout {
                user: self.user.as_ref(),
                person: self.person.as_ref(),
                people: &self.people,
                csrf_token: self.csrf_token.as_deref(),
                path: &self.path,
            },
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

/// What the site layout shows around every page.
struct Layout<'a> {
    user: Option<&'a User>,
    person: Option<&'a Visible>,
    people: &'a [Visible],
    csrf_token: Option<&'a str>,
    path: &'a str,
}

fn render_with_layout(
    state: &AppState,
    layout: Layout<'_>,
    template: &str,
    ctx: Value,
) -> Result<String, minijinja::Error> {
    // Links to a person's pages start with `p`: the page's person, else the account's own (a
    // page outside any person, like Users, still links to "my" dashboard).
    let own = layout.people.iter().find(|v| v.own);
    let shown = layout.person.or(own);
    let p = shown.map(|v| crate::auth::person::person_url(state, &v.person.slug));
    // Switching person keeps the section (Labs stays Labs); a record's page has no twin.
    let section = layout
        .path
        .split('/')
        .nth(1)
        .filter(|s| {
            layout.person.is_some()
                && [
                    "labs", "history", "profile", "explore", "sources", "jobs", "export", "person",
                ]
                .contains(s)
        })
        .unwrap_or("");
    let switch: Vec<Value> = layout
        .people
        .iter()
        .map(|v| {
            context! {
                name => v.person.name,
                slug => v.person.slug,
                own => v.own,
                current => shown.is_some_and(|s| s.person.id == v.person.id),
                home => Value::from_safe_string(crate::auth::person::person_url(state, &v.person.slug)),
                url => Value::from_safe_string(format!(
                    "{}/{section}",
                    crate::auth::person::person_url(state, &v.person.slug)
                )),
            }
        })
        .collect();
    let full = context! {
        // Validated at load to [A-Za-z0-9._/-], so it needs no escaping (which would turn / into &#x2f;).
        base => Value::from_safe_string(state.config.base_path.clone()),
        // The slug is percent-encoded to letters, digits, ._-@% by person_url.
        p => p.map(Value::from_safe_string),
        person => shown.map(Value::from_serialize),
        // "Leo's", for headings: every page says whose records it shows.
        whose => shown.map(|v| format!("{}'s", v.person.name)),
        // The person whose records a person-scoped page shows; none on account-wide pages.
        scoped => layout.person.is_some(),
        can_manage => shown.is_some_and(|v| v.level == people::Level::Manage),
        switch => switch,
        user => layout.user.map(Value::from_serialize),
        csrf_token => layout.csrf_token,
        path => layout.path,
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
    let people = match &user {
        Some(user) => people::visible_to(&state.db, user.id)
            .await
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let csrf_token = read_cookie(&headers, CSRF_COOKIE).map(|c| token_for(&state.csrf_key, c));
    let ctx = context! {
        status => error.status.as_u16(),
        reason => error.status.canonical_reason().unwrap_or("Error"),
        message => error.message,
    };
    let layout = Layout {
        user: user.as_ref(),
        person: None,
        people: &people,
        csrf_token: csrf_token.as_deref(),
        path: &path,
    };
    let html = match render_with_layout(&state, layout, "error.html", ctx) {
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
