//! Administration of the family's accounts (`/admin/users`). Every handler takes `AdminUser`, so
//! members get 403. The last-administrator rule lives in `store::users`, where it is enforced
//! atomically; here it only becomes a message.

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::{Value, context};
use serde::Deserialize;

use super::render::Page;
use crate::audit::{self, Action, Actor};
use crate::auth::accounts::{self, AccountError, NewAccount};
use crate::auth::{AdminUser, ClientAddr};
use crate::backup;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::users::{self, Role, UserChangeError};
use crate::store::{self};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(|State(state): State<AppState>| async move {
            Redirect::to(&state.url("/admin/users"))
        }))
        .route("/admin/users", get(list).post(create))
        .route("/admin/users/{id}/password", post(reset_password))
        .route("/admin/users/{id}/status", post(set_status))
        .route("/admin/users/{id}/role", post(set_role))
        .route("/admin/users/{id}/delete", get(confirm_delete).post(delete))
        .route("/admin/backups", get(backups))
        .route("/admin/activity", get(activity))
}

/// Events per page of Admin → Activity.
const ACTIVITY_PAGE: i64 = 100;

#[derive(Deserialize)]
struct ActivityQuery {
    before: Option<i64>,
}

/// Admin → Activity: the audit log, newest first.
async fn activity(
    State(state): State<AppState>,
    _: AdminUser,
    page: Page,
    Query(query): Query<ActivityQuery>,
) -> Result<Response, AppError> {
    let events = audit::list(&state.db, ACTIVITY_PAGE, query.before).await?;
    let older = (events.len() as i64 == ACTIVITY_PAGE)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    let keep = state.config.audit.keep;
    Ok(page
        .render(
            &state,
            "admin_activity.html",
            context! {
                events => events,
                older => older,
                newest_page => query.before.is_none(),
                keep => (!keep.is_zero())
                    .then(|| crate::sources::smart::in_words(keep.as_secs() as i64)),
            },
        )?
        .into_response())
}

/// Admin → Backups: how old the newest backup is, the schedule, and the backups made.
async fn backups(
    State(state): State<AppState>,
    _: AdminUser,
    page: Page,
) -> Result<Response, AppError> {
    let newest = backup::newest(&state.db).await?;
    let config = &state.config;
    Ok(page
        .render(
            &state,
            "admin_backups.html",
            context! {
                standing => backup::standing(config, newest, store::unix_now()),
                backups => backup::recent(&state.db, 30).await?,
                every => (!config.backup.every.is_zero())
                    .then(|| crate::sources::smart::in_words(config.backup.every.as_secs() as i64)),
                keep => config.backup.keep,
                dir => config.backup_dir().display().to_string(),
                key_file => config.data_dir.join(crate::secrets::KEY_FILE).display().to_string(),
                data_dir => config.data_dir.display().to_string(),
            },
        )?
        .into_response())
}

/// Outcomes shown after a redirect, keyed so the URL never carries free text.
fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "created" => "The account was created.",
        "password" => "The password was changed and the user was signed out everywhere.",
        "disabled" => "The account was disabled and signed out everywhere.",
        "enabled" => "The account was enabled.",
        "role" => "The role was changed.",
        "deleted" => "The account and all of its records were deleted.",
        _ => return None,
    })
}

fn done(state: &AppState, code: &str) -> Response {
    Redirect::to(&state.url(&format!("/admin/users?notice={code}"))).into_response()
}

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    _: AdminUser,
    page: Page,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, AppError> {
    let notice = query.notice.as_deref().and_then(notice_text);
    render_list(&state, &page, StatusCode::OK, context! { notice => notice }).await
}

async fn render_list(
    state: &AppState,
    page: &Page,
    status: StatusCode,
    extra: Value,
) -> Result<Response, AppError> {
    let all = users::list(&state.db).await?;
    let newest = backup::newest(&state.db).await?;
    let backups = backup::standing(&state.config, newest, store::unix_now());
    page.render_status(
        state,
        status,
        "admin_users.html",
        context! { users => all, backups => backups, ..extra },
    )
}

/// Renders the list again with an error message for the admin.
async fn refused(state: &AppState, page: &Page, error: AccountError) -> Result<Response, AppError> {
    let status = match &error {
        AccountError::Invalid(_) => StatusCode::BAD_REQUEST,
        AccountError::Refused(UserChangeError::NotFound) => return Err(AppError::NotFound),
        AccountError::Refused(_) => StatusCode::CONFLICT,
        AccountError::Database(_) => return Err(anyhow::Error::new(error).into()),
    };
    render_list(state, page, status, context! { error => error.to_string() }).await
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirmation: String,
    #[serde(default)]
    role: Option<String>,
    /// An existing person's short name, to give them this account.
    #[serde(default)]
    person: String,
}

fn role_word(role: Role) -> &'static str {
    match role {
        Role::Admin => "administrator",
        Role::Member => "member",
    }
}

/// An account's username for the audit log, by id.
async fn username_of(state: &AppState, id: i64) -> String {
    match users::by_id(&state.db, id).await {
        Ok(Some(user)) => user.username,
        _ => format!("account #{id}"),
    }
}

fn parse_role(raw: Option<&str>) -> Result<Role, AppError> {
    match raw {
        Some("admin") => Ok(Role::Admin),
        Some("member") | None => Ok(Role::Member),
        Some(_) => Err(AppError::BadRequest("Unknown role.".into())),
    }
}

async fn create(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ClientAddr(address): ClientAddr,
    page: Page,
    Form(form): Form<CreateForm>,
) -> Result<Response, AppError> {
    let role = parse_role(form.role.as_deref())?;
    let new = NewAccount {
        username: &form.username,
        display_name: &form.display_name,
        password: &form.password,
        password_confirmation: &form.password_confirmation,
        role,
        person: Some(form.person.as_str()),
    };
    match accounts::create(&state.db, new).await {
        Ok(user) => {
            tracing::info!(by = %admin.username, username = %user.username, ?role, "account created");
            let subject = format!("{} ({})", user.username, role_word(role));
            audit::record(
                &state.db,
                &Actor::user(&admin, address),
                Action::AccountCreated,
                &subject,
            )
            .await;
            Ok(done(&state, "created"))
        }
        Err(e) => refused(&state, &page, e).await,
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirmation: String,
}

async fn reset_password(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ClientAddr(address): ClientAddr,
    page: Page,
    Path(id): Path<i64>,
    Form(form): Form<PasswordForm>,
) -> Result<Response, AppError> {
    match accounts::reset_password(&state.db, id, &form.password, &form.password_confirmation).await
    {
        Ok(()) => {
            tracing::info!(by = %admin.username, user_id = id, "password reset");
            let subject = format!("{}: password reset", username_of(&state, id).await);
            audit::record(
                &state.db,
                &Actor::user(&admin, address),
                Action::AccountChanged,
                &subject,
            )
            .await;
            Ok(done(&state, "password"))
        }
        Err(e) => refused(&state, &page, e).await,
    }
}

#[derive(Deserialize)]
struct StatusForm {
    disabled: bool,
}

async fn set_status(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ClientAddr(address): ClientAddr,
    page: Page,
    Path(id): Path<i64>,
    Form(form): Form<StatusForm>,
) -> Result<Response, AppError> {
    match users::set_disabled(&state.db, id, form.disabled).await {
        Ok(()) => {
            if form.disabled {
                store::sessions::delete_for_user(&state.db, id).await?;
            }
            tracing::info!(by = %admin.username, user_id = id, disabled = form.disabled, "account status changed");
            let subject = format!(
                "{}: {}",
                username_of(&state, id).await,
                if form.disabled { "disabled" } else { "enabled" }
            );
            audit::record(
                &state.db,
                &Actor::user(&admin, address),
                Action::AccountChanged,
                &subject,
            )
            .await;
            Ok(done(
                &state,
                if form.disabled { "disabled" } else { "enabled" },
            ))
        }
        Err(e) => refused(&state, &page, e.into()).await,
    }
}

#[derive(Deserialize)]
struct RoleForm {
    role: String,
}

async fn set_role(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ClientAddr(address): ClientAddr,
    page: Page,
    Path(id): Path<i64>,
    Form(form): Form<RoleForm>,
) -> Result<Response, AppError> {
    let role = parse_role(Some(&form.role))?;
    match users::set_role(&state.db, id, role).await {
        Ok(()) => {
            tracing::info!(by = %admin.username, user_id = id, ?role, "role changed");
            let subject = format!(
                "{}: made {}",
                username_of(&state, id).await,
                role_word(role)
            );
            audit::record(
                &state.db,
                &Actor::user(&admin, address),
                Action::AccountChanged,
                &subject,
            )
            .await;
            Ok(done(&state, "role"))
        }
        Err(e) => refused(&state, &page, e.into()).await,
    }
}

async fn confirm_delete(
    State(state): State<AppState>,
    _: AdminUser,
    page: Page,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    render_confirm_delete(&state, &page, id, StatusCode::OK, None).await
}

async fn render_confirm_delete(
    state: &AppState,
    page: &Page,
    id: i64,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, AppError> {
    let target = users::by_id(&state.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let records = store::resources::count_for_person(&state.db, target.person_id).await?;
    page.render_status(
        state,
        status,
        "admin_user_delete.html",
        context! { target => target, records => records, error => error },
    )
}

#[derive(Deserialize)]
struct DeleteForm {
    #[serde(default)]
    confirm_username: String,
}

async fn delete(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ClientAddr(address): ClientAddr,
    page: Page,
    Path(id): Path<i64>,
    Form(form): Form<DeleteForm>,
) -> Result<Response, AppError> {
    let target = users::by_id(&state.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    if !form
        .confirm_username
        .trim()
        .eq_ignore_ascii_case(&target.username)
    {
        return render_confirm_delete(
            &state,
            &page,
            id,
            StatusCode::BAD_REQUEST,
            Some("Type the username exactly to confirm. Nothing was deleted.".into()),
        )
        .await;
    }
    let own_person = crate::store::people::by_id(&state.db, target.person_id).await?;
    match users::delete(&state.db, id).await {
        Ok(()) => {
            if let Some(person) = own_person {
                super::people::remove_files(&state, &person);
            }
            tracing::info!(by = %admin.username, username = %target.username, "account deleted with all its records");
            let subject = format!("{} and their records", target.username);
            audit::record(
                &state.db,
                &Actor::user(&admin, address),
                Action::AccountDeleted,
                &subject,
            )
            .await;
            Ok(done(&state, "deleted"))
        }
        Err(UserChangeError::LastAdmin) => {
            render_confirm_delete(
                &state,
                &page,
                id,
                StatusCode::CONFLICT,
                Some(UserChangeError::LastAdmin.to_string()),
            )
            .await
        }
        Err(e) => refused(&state, &page, e.into()).await,
    }
}
