//! Signing in and out, the first-run wizard, and self sign-up (when the operator allows it).

use axum::Form;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use minijinja::context;
use serde::Deserialize;

use super::render::Page;
use crate::audit::{self, Action, Actor};
use crate::auth::accounts::{self, AccountError, NewAccount};
use crate::auth::session::{self, SESSION_COOKIE};
use crate::auth::{ClientAddr, cookie_header, is_https, password, read_cookie};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{self, users::Role};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/setup", get(setup_form).post(setup_submit))
        .route("/login", get(login_form).post(login_submit))
        .route("/logout", axum::routing::post(logout))
        .route("/signup", get(signup_form).post(signup_submit))
}

/// The one message for every wrong credential, so the page never tells whether a username exists.
const WRONG_CREDENTIALS: &str = "Wrong username or password.";

#[derive(Deserialize)]
struct NewAccountForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirmation: String,
}

impl NewAccountForm {
    fn as_new_account(&self, role: Role) -> NewAccount<'_> {
        NewAccount {
            username: &self.username,
            display_name: &self.display_name,
            password: &self.password,
            password_confirmation: &self.password_confirmation,
            role,
            person: None,
        }
    }
}

async fn setup_form(State(state): State<AppState>, page: Page) -> Result<Response, AppError> {
    if !state.is_first_run().await? {
        return Err(AppError::NotFound);
    }
    Ok(page
        .render(&state, "setup.html", context! {})?
        .into_response())
}

async fn setup_submit(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    page: Page,
    Form(form): Form<NewAccountForm>,
) -> Result<Response, AppError> {
    if !state.is_first_run().await? {
        return Err(AppError::NotFound);
    }
    match accounts::create_first_admin(&state.db, form.as_new_account(Role::Admin)).await {
        Ok(Some(user)) => {
            tracing::info!(username = %user.username, "first administrator created");
            let subject = format!("{} (administrator, the first account)", user.username);
            audit::record(
                &state.db,
                &Actor::user(&user, address),
                Action::AccountCreated,
                &subject,
            )
            .await;
            signed_in_redirect(&state, &headers, user.id, &state.url("/")).await
        }
        // Someone else finished the wizard a moment earlier.
        Ok(None) => Err(AppError::NotFound),
        Err(AccountError::Invalid(message)) => page.render_status(
            &state,
            StatusCode::BAD_REQUEST,
            "setup.html",
            context! { error => message, form => context! {
            username => form.username, display_name => form.display_name } },
        ),
        Err(e) => Err(anyhow::Error::new(e).into()),
    }
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_form(
    State(state): State<AppState>,
    page: Page,
    Query(query): Query<NextQuery>,
) -> Result<Response, AppError> {
    if page.user.is_some() {
        return Ok(Redirect::to(&state.url("/")).into_response());
    }
    Ok(page
        .render(
            &state,
            "login.html",
            context! { next => query.next, allow_signup => state.config.allow_signup },
        )?
        .into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

async fn login_submit(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    page: Page,
    Form(form): Form<LoginForm>,
) -> Result<Response, AppError> {
    let username = form.username.trim();
    let show_error = |status: StatusCode, message: String| {
        page.render_status(
            &state,
            status,
            "login.html",
            context! { error => message, username => username, next => form.next,
            allow_signup => state.config.allow_signup },
        )
    };
    if let Err(wait) = state.throttle.check(username, address) {
        return show_error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed sign-ins. Please wait {} and try again.",
                describe_wait(wait)
            ),
        );
    }
    let user = if form.password.chars().count() > password::MAX_PASSWORD_CHARS {
        None
    } else {
        store::users::by_username(&state.db, username).await?
    };
    let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
    let password_ok = password::verify(form.password.clone(), stored_hash).await;
    match user {
        Some(user) if password_ok && !user.disabled => {
            state.throttle.record_success(username);
            tracing::info!(username = %user.username, "signed in");
            audit::record(
                &state.db,
                &Actor::user(&user, address),
                Action::SignedIn,
                "",
            )
            .await;
            let target = safe_next(&state, form.next.as_deref());
            signed_in_redirect(&state, &headers, user.id, &target).await
        }
        _ => {
            state.throttle.record_failure(username, address);
            tracing::info!(%address, "failed sign-in");
            let reason = match &user {
                Some(user) if user.disabled => "the account is disabled",
                Some(_) => "wrong password",
                None => "no such account",
            };
            // What was typed is kept only when it names an account: a password typed into the
            // username field by mistake must not end up in the log.
            let tried = user
                .as_ref()
                .map_or("(unknown name)", |u| u.username.as_str());
            audit::record(
                &state.db,
                &Actor::anonymous(tried, address),
                Action::SignInFailed,
                reason,
            )
            .await;
            show_error(StatusCode::UNAUTHORIZED, WRONG_CREDENTIALS.to_string())
        }
    }
}

fn describe_wait(wait: std::time::Duration) -> String {
    let secs = wait.as_secs().max(1);
    if secs < 90 {
        format!("{secs} seconds")
    } else {
        format!("{} minutes", secs.div_ceil(60))
    }
}

/// Only paths inside this Fasten are followed after sign-in, never another site.
fn safe_next(state: &AppState, next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with(&format!("{}/", state.config.base_path))
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.contains("://") =>
        {
            path.to_string()
        }
        _ => state.url("/"),
    }
}

async fn signed_in_redirect(
    state: &AppState,
    headers: &HeaderMap,
    user_id: i64,
    target: &str,
) -> Result<Response, AppError> {
    let cookie_value = session::start(&state.db, user_id, &state.config.session).await?;
    let max_age = time::Duration::seconds(state.config.session.absolute_timeout.as_secs() as i64);
    let cookie = cookie_header(
        SESSION_COOKIE,
        &cookie_value,
        &state.config.base_path,
        is_https(headers),
        Some(max_age),
    );
    let mut response = Redirect::to(target).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(anyhow::Error::new)?,
    );
    Ok(response)
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    if let Some(hash) = read_cookie(&headers, SESSION_COOKIE).and_then(session::id_hash) {
        store::sessions::delete(&state.db, &hash).await?;
    }
    let cleared = cookie_header(
        SESSION_COOKIE,
        "",
        &state.config.base_path,
        is_https(&headers),
        Some(time::Duration::ZERO),
    );
    let mut response = Redirect::to(&state.url("/login")).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cleared).map_err(anyhow::Error::new)?,
    );
    Ok(response)
}

async fn signup_form(State(state): State<AppState>, page: Page) -> Result<Response, AppError> {
    if !state.config.allow_signup {
        return Err(AppError::NotFound);
    }
    Ok(page
        .render(&state, "signup.html", context! {})?
        .into_response())
}

async fn signup_submit(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    page: Page,
    Form(form): Form<NewAccountForm>,
) -> Result<Response, AppError> {
    if !state.config.allow_signup {
        return Err(AppError::NotFound);
    }
    match accounts::create(&state.db, form.as_new_account(Role::Member)).await {
        Ok(user) => {
            let subject = format!("{} (member, signed up)", user.username);
            audit::record(
                &state.db,
                &Actor::user(&user, address),
                Action::AccountCreated,
                &subject,
            )
            .await;
            signed_in_redirect(&state, &headers, user.id, &state.url("/")).await
        }
        Err(AccountError::Invalid(message)) => page.render_status(
            &state,
            StatusCode::BAD_REQUEST,
            "signup.html",
            context! { error => message, form => context! {
            username => form.username, display_name => form.display_name } },
        ),
        Err(AccountError::Refused(e)) => page.render_status(
            &state,
            StatusCode::CONFLICT,
            "signup.html",
            context! { error => e.to_string(), form => context! {
            username => form.username, display_name => form.display_name } },
        ),
        Err(e) => Err(anyhow::Error::new(e).into()),
    }
}
