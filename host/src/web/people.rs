//! People: the family page (`/people`), adding a person, and each person's own page
//! (`/people/{person}/person`: name, birth date, sharing, deleting).
//!
//! Also the routing of every person-scoped page: [`PersonRouter`] collects them (the tests walk
//! its list of paths to prove isolation on every route), and [`scoped`] serves them under
//! `/people/{person}/` by stripping the prefix and leaving the slug for the extractors in
//! `auth::person`, which make every access check.

use axum::Form;
use axum::Router;
use axum::extract::{OriginalUri, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get, post};
use minijinja::{Value, context};
use serde::Deserialize;

use super::render::Page;
use crate::audit::{self, Action, Actor};
use crate::auth::person::{ManagePerson, PersonSlug, ViewPerson, person_url};
use crate::auth::{ClientAddr, CurrentUser};
use crate::error::AppError;
use crate::record::family;
use crate::state::AppState;
use crate::store::people::{self, Level, PersonError};
use crate::store::users;

/// The person-scoped routes, at the tails they have under `/people/{person}`. Adding a route
/// here is the only way to add a person-scoped page, so [`PersonRouter::paths`] is the full list.
#[derive(Default)]
pub struct PersonRouter {
    router: Router<AppState>,
    paths: Vec<&'static str>,
}

impl PersonRouter {
    pub fn route(mut self, path: &'static str, method_router: MethodRouter<AppState>) -> Self {
        self.paths.push(path);
        self.router = self.router.route(path, method_router);
        self
    }

    /// Every person-scoped path pattern (`/labs/{key}`), for tests that try them all.
    pub fn paths(&self) -> &[&'static str] {
        &self.paths
    }
}

/// Every person-scoped page.
pub fn person_routes() -> PersonRouter {
    let r = PersonRouter::default()
        .route("/person", get(show).post(edit))
        .route("/person/share", post(share))
        .route("/person/unshare", post(unshare))
        .route("/person/delete", get(confirm_delete).post(delete));
    let r = super::dashboard::router(r);
    let r = super::sources::router(r);
    let r = super::directory::router(r);
    let r = super::upload::router(r);
    let r = super::explore::router(r);
    let r = super::jobs::router(r);
    let r = super::labs::router(r);
    let r = super::history::router(r);
    let r = super::profile::router(r);
    let r = super::search::router(r);
    let r = super::export::router(r);
    super::manual::router(r)
}

/// Where the person-scoped pages are mounted inside the router. A request for
/// `/people/{slug}/tail` is rewritten to `{SCOPED}/tail` before routing ([`strip_person`]), with
/// the slug left in the request, so the routes' own path parameters stay their own.
const SCOPED: &str = "/_person";

/// The family page and adding a person, plus every person-scoped page twice: under
/// `/people/{person}/` (reached through [`strip_person`]) and at its old address, which moves
/// to the account's own person.
pub fn router() -> Router<AppState> {
    let scoped = person_routes().router;
    Router::new()
        .route("/people", get(family_page).post(add))
        .nest(SCOPED, scoped.clone())
        .merge(scoped)
}

/// Rewrites `/people/{slug}[/tail]` to the mounted person routes, keeping the address the
/// browser asked for as `OriginalUri` (sign-in's `next=`) and the slug for `auth::person`.
/// Runs before routing; every other path passes unchanged.
pub fn strip_person(mut request: Request) -> Request {
    let path = request.uri().path();
    let Some(rest) = path.strip_prefix("/people/") else {
        return request;
    };
    let (slug, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if slug.is_empty() {
        return request;
    }
    let slug = percent_encoding::percent_decode_str(slug)
        .decode_utf8_lossy()
        .into_owned();
    let tail = if tail == "/" { "" } else { tail };
    let new_uri = match request.uri().query() {
        Some(query) => format!("{SCOPED}{tail}?{query}"),
        None => format!("{SCOPED}{tail}"),
    };
    let Ok(uri) = new_uri.parse() else {
        return request;
    };
    if request.extensions().get::<OriginalUri>().is_none() {
        let original = OriginalUri(request.uri().clone());
        request.extensions_mut().insert(original);
    }
    *request.uri_mut() = uri;
    request.extensions_mut().insert(PersonSlug(slug));
    request
}

fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// Outcomes shown after a redirect, keyed so the URL never carries free text.
fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "saved" => "The changes were saved.",
        "shared" => "Sharing was updated.",
        "unshared" => "That account can no longer see these records.",
        "deleted" => "The person and all of their records were deleted.",
        "left" => "You no longer have access to that person's records.",
        _ => return None,
    })
}

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn family_page(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    page: Page,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, AppError> {
    let notice = query.notice.as_deref().and_then(notice_text);
    render_family(
        &state,
        &page,
        user.id,
        StatusCode::OK,
        context! { notice => notice },
    )
    .await
}

async fn render_family(
    state: &AppState,
    page: &Page,
    user_id: i64,
    status: StatusCode,
    extra: Value,
) -> Result<Response, AppError> {
    let visible = people::visible_to(&state.db, user_id).await?;
    let mut lines = Vec::with_capacity(visible.len());
    for person in &visible {
        lines.push(context! {
            url => person_url(state, &person.person.slug),
            person => person,
            line => family::line(&state.db, &person.person, today()).await?,
        });
    }
    page.render_status(
        state,
        status,
        "people.html",
        context! { lines => lines, ..extra },
    )
}

#[derive(Deserialize)]
struct AddForm {
    #[serde(default)]
    slug: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    birth_date: String,
}

/// Any account may add someone whose records it keeps (a child, a parent): it manages them.
async fn add(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    page: Page,
    Form(form): Form<AddForm>,
) -> Result<Response, AppError> {
    let mut conn = state.db.acquire().await?;
    let created = people::create(
        &mut conn,
        &form.slug,
        &form.name,
        Some(&form.birth_date),
        Some(user.id),
    )
    .await;
    match created {
        Ok(person) => {
            tracing::info!(by = %user.username, person = %person.slug, "person added");
            Ok(Redirect::to(&format!("{}/", person_url(&state, &person.slug))).into_response())
        }
        Err(PersonError::Database(e)) => Err(e.into()),
        Err(e) => {
            let status = match e {
                PersonError::SlugTaken(_) => StatusCode::CONFLICT,
                _ => StatusCode::BAD_REQUEST,
            };
            render_family(
                &state,
                &page,
                user.id,
                status,
                context! { error => e.to_string(), form => context! {
                slug => form.slug, name => form.name, birth_date => form.birth_date } },
            )
            .await
        }
    }
}

/// The person's own page: who they are, who can see them, and (for managers) the forms to
/// change that.
async fn show(
    State(state): State<AppState>,
    access: ViewPerson,
    page: Page,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, AppError> {
    let notice = query.notice.as_deref().and_then(notice_text);
    render_person(
        &state,
        &page,
        access.id(),
        StatusCode::OK,
        context! { notice => notice },
    )
    .await
}

async fn render_person(
    state: &AppState,
    page: &Page,
    person_id: i64,
    status: StatusCode,
    extra: Value,
) -> Result<Response, AppError> {
    let grants = people::grants(&state.db, person_id).await?;
    let has_account = people::has_account(&state.db, person_id).await?;
    let line = match people::by_id(&state.db, person_id).await? {
        Some(person) => family::line(&state.db, &person, today()).await?,
        None => return Err(AppError::NotFound),
    };
    page.render_status(
        state,
        status,
        "person.html",
        context! { grants => grants, has_account => has_account, line => line, ..extra },
    )
}

fn done(state: &AppState, slug: &str, tail: &str, notice: &str) -> Response {
    Redirect::to(&format!(
        "{}{tail}?notice={notice}",
        person_url(state, slug)
    ))
    .into_response()
}

#[derive(Deserialize)]
struct EditForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    birth_date: String,
}

async fn edit(
    State(state): State<AppState>,
    access: ManagePerson,
    page: Page,
    Form(form): Form<EditForm>,
) -> Result<Response, AppError> {
    let person = &access.person.person;
    let checked = people::check_name(&form.name, &person.slug)
        .and_then(|name| Ok((name, people::check_birth_date(&form.birth_date)?)));
    match checked {
        Ok((name, birth_date)) => {
            people::update(&state.db, person.id, &name, birth_date.as_deref()).await?;
            Ok(done(&state, &person.slug, "/person", "saved"))
        }
        Err(why) => {
            render_person(
                &state,
                &page,
                person.id,
                StatusCode::BAD_REQUEST,
                context! {
                error => why },
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct ShareForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    level: String,
}

async fn share(
    State(state): State<AppState>,
    access: ManagePerson,
    ClientAddr(address): ClientAddr,
    page: Page,
    Form(form): Form<ShareForm>,
) -> Result<Response, AppError> {
    let person = &access.person.person;
    let level = match form.level.as_str() {
        "view" => Level::View,
        "manage" => Level::Manage,
        _ => return Err(AppError::BadRequest("Choose view or manage.".into())),
    };
    let Some(target) = users::by_username(&state.db, form.username.trim()).await? else {
        return render_person(
            &state,
            &page,
            person.id,
            StatusCode::BAD_REQUEST,
            context! {
            error => format!("There is no account named {:?} in this Fasten. Ask an administrator \
                              to create it first.", form.username.trim()) },
        )
        .await;
    };
    people::grant(&state.db, person.id, target.id, level, Some(access.user.id)).await?;
    tracing::info!(by = %access.user.username, person = %person.slug, to = %target.username,
        level = level.as_str(), "person shared");
    let subject = format!(
        "{} may {} {}'s records",
        target.username,
        level.as_str(),
        person.slug
    );
    audit::record(
        &state.db,
        &Actor::user(&access.user, address),
        Action::AccessGiven,
        &subject,
    )
    .await;
    Ok(done(&state, &person.slug, "/person", "shared"))
}

#[derive(Deserialize)]
struct UnshareForm {
    user_id: i64,
}

async fn unshare(
    State(state): State<AppState>,
    access: ManagePerson,
    ClientAddr(address): ClientAddr,
    Form(form): Form<UnshareForm>,
) -> Result<Response, AppError> {
    let person = &access.person.person;
    if !people::revoke(&state.db, person.id, form.user_id).await? {
        return Err(AppError::Conflict(
            "That access cannot be taken away: it is the person's own account, or it was already \
             gone."
                .into(),
        ));
    }
    tracing::info!(by = %access.user.username, person = %person.slug, user_id = form.user_id,
        "person unshared");
    let who = match users::by_id(&state.db, form.user_id).await? {
        Some(user) => user.username,
        None => format!("account #{}", form.user_id),
    };
    let subject = format!("{who} no longer sees {}'s records", person.slug);
    audit::record(
        &state.db,
        &Actor::user(&access.user, address),
        Action::AccessRevoked,
        &subject,
    )
    .await;
    if form.user_id == access.user.id {
        return Ok(Redirect::to(&state.url("/people?notice=left")).into_response());
    }
    Ok(done(&state, &person.slug, "/person", "unshared"))
}

async fn confirm_delete(
    State(state): State<AppState>,
    access: ManagePerson,
    page: Page,
) -> Result<Response, AppError> {
    render_confirm_delete(&state, &page, &access, StatusCode::OK, None).await
}

async fn render_confirm_delete(
    state: &AppState,
    page: &Page,
    access: &ManagePerson,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, AppError> {
    let records = crate::store::resources::count_for_person(&state.db, access.id()).await?;
    let has_account = people::has_account(&state.db, access.id()).await?;
    page.render_status(
        state,
        status,
        "person_delete.html",
        context! { records => records, has_account => has_account, error => error },
    )
}

#[derive(Deserialize)]
struct DeleteForm {
    #[serde(default)]
    confirm_slug: String,
}

async fn delete(
    State(state): State<AppState>,
    access: ManagePerson,
    page: Page,
    Form(form): Form<DeleteForm>,
) -> Result<Response, AppError> {
    let person = access.person.person.clone();
    if people::has_account(&state.db, person.id).await? {
        return render_confirm_delete(
            &state,
            &page,
            &access,
            StatusCode::CONFLICT,
            Some(
                "This person signs in with an account of their own: an administrator deletes the \
             account (Users), which deletes their records too. Nothing was deleted."
                    .into(),
            ),
        )
        .await;
    }
    if !form.confirm_slug.trim().eq_ignore_ascii_case(&person.slug) {
        return render_confirm_delete(
            &state,
            &page,
            &access,
            StatusCode::BAD_REQUEST,
            Some("Type the short name exactly to confirm. Nothing was deleted.".into()),
        )
        .await;
    }
    // Stop anything still running for them before their sources go.
    let sources: Vec<i64> = sqlx::query_scalar("SELECT id FROM sources WHERE person_id = ?")
        .bind(person.id)
        .fetch_all(&state.db)
        .await?;
    for source_id in sources {
        state.jobs.cancel_for_source(&state.db, source_id).await?;
    }
    if !people::delete(&state.db, person.id).await? {
        return Err(AppError::NotFound);
    }
    remove_files(&state, &person);
    tracing::info!(by = %access.user.username, person = %person.slug,
        "person deleted with all their records");
    Ok(Redirect::to(&state.url("/people?notice=deleted")).into_response())
}

/// The files a deleted person had outside the database: their inbox folder and unconfirmed
/// upload previews. Best effort: a file that cannot be removed is logged, not fatal.
pub fn remove_files(state: &AppState, person: &people::Person) {
    let inbox = crate::inbox::root(state).join(&person.slug);
    if inbox.exists()
        && let Err(e) = std::fs::remove_dir_all(&inbox)
    {
        tracing::warn!(path = %inbox.display(), error = %e, "cannot remove a deleted person's inbox");
    }
    super::upload::remove_pending_of(state, person.id);
}
