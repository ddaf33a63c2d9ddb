//! Uploading a file to import, from the Sources page. The upload is streamed to a file under
//! `data_dir/uploads` (never held in memory) and capped at `limits.upload_bytes`. A lab CSV is
//! first shown as a preview (the results as they will be stored, and every problem with its row
//! number) and imported only when the user confirms; other files are imported at once. Either
//! way the file is removed afterwards.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use axum::Form;

use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use minijinja::context;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::people::PersonRouter;
use super::render::Page;
use crate::auth::person::ManagePerson;
use crate::error::AppError;
use crate::import::{self, ImportError, ImportOptions, Preview};
use crate::jobs::Trigger;
use crate::record::observations;
use crate::state::AppState;

/// The plugin whose files are previewed before they are imported.
const PREVIEWED_PLUGIN: &str = "csv-labs";
/// Rows shown in a preview.
const PREVIEW_ROWS: usize = 20;
/// A previewed file nobody confirmed is removed after this long.
const PENDING_LIFETIME: Duration = Duration::from_secs(3600);
/// How a plugin's error starts when a date column could be read two ways.
const AMBIGUOUS_DATES: &str = "Ambiguous dates:";

pub fn router(r: PersonRouter) -> PersonRouter {
    r.route(
        "/sources/upload",
        // Room for the multipart framing around a file at the cap; the cap itself is
        // enforced while streaming, with a clear message.
        post(upload).layer(DefaultBodyLimit::disable()),
    )
    .route("/sources/upload/preview", post(preview_again))
    .route("/sources/upload/confirm", post(confirm))
    .route("/sources/upload/cancel", post(cancel))
    .route("/sources/upload/new-person", post(new_person))
}

fn result(
    state: &AppState,
    page: &Page,
    status: StatusCode,
    ctx: minijinja::Value,
) -> Result<Response, AppError> {
    page.render_status(state, status, "upload_result.html", ctx)
}

/// A file kept between its preview and the user's decision: `uploads/pending-<person>-<token>/`
/// holding the file under its own name, so the owner and the name survive without a table.
struct Pending {
    dir: PathBuf,
    file_name: String,
}

impl Pending {
    fn dir(state: &AppState, person_id: i64, token: &str) -> Option<PathBuf> {
        let valid = token.len() == 24 && token.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| uploads_dir(state).join(format!("pending-{person_id}-{token}")))
    }

    /// The user's pending file with this token, if there is one.
    fn find(state: &AppState, person_id: i64, token: &str) -> Option<Pending> {
        let dir = Self::dir(state, person_id, token)?;
        let entry = std::fs::read_dir(&dir).ok()?.flatten().next()?;
        Some(Pending {
            file_name: entry.file_name().to_string_lossy().into_owned(),
            dir,
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(&self.file_name)
    }

    async fn remove(self) {
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
    }
}

fn uploads_dir(state: &AppState) -> PathBuf {
    state.config.data_dir.join("uploads")
}

/// Removes every preview of one person (the person is being deleted).
pub fn remove_pending_of(state: &AppState, person_id: i64) {
    let prefix = format!("pending-{person_id}-");
    let Ok(entries) = std::fs::read_dir(uploads_dir(state)) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Removes previews nobody confirmed or cancelled (the tab was closed).
async fn remove_stale_pending(state: &AppState) {
    let Ok(mut entries) = tokio::fs::read_dir(uploads_dir(state)).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let stale = entry.file_name().to_string_lossy().starts_with("pending-")
            && entry
                .metadata()
                .await
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > PENDING_LIFETIME);
        if stale {
            let _ = tokio::fs::remove_dir_all(entry.path()).await;
        }
    }
}

fn random_token() -> String {
    let mut random = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut random);
    hex::encode(random)
}

/// The name of an uploaded file without any folder part, safe to use as a file name.
fn clean_file_name(name: Option<&str>) -> String {
    let base = name
        .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n))
        .unwrap_or("")
        .trim()
        .trim_start_matches('.');
    if base.is_empty() {
        "upload".into()
    } else {
        base.chars().filter(|c| !c.is_control()).collect()
    }
}

async fn upload(
    State(state): State<AppState>,
    access: ManagePerson,
    page: Page,
    mut multipart: Multipart,
) -> Result<Response, AppError> {
    let cap = state.config.limits.upload_bytes;
    remove_stale_pending(&state).await;
    let token = random_token();
    let dir = Pending::dir(&state, access.id(), &token).expect("a fresh token is valid");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(anyhow::Error::new)?;
    let mut saved = None;
    while let Some(mut field) = multipart.next_field().await.map_err(|e| {
        AppError::BadRequest(format!("The upload was interrupted or malformed: {e}"))
    })? {
        if field.name() != Some("file") {
            continue;
        }
        let name = clean_file_name(field.file_name());
        let path = dir.join(&name);
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(anyhow::Error::new)?;
        let mut size: u64 = 0;
        loop {
            let chunk = match field.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    let _ = tokio::fs::remove_dir_all(&dir).await;
                    return Err(AppError::BadRequest(format!(
                        "The upload was interrupted: {e}"
                    )));
                }
            };
            size += chunk.len() as u64;
            if size > cap {
                drop(file);
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return result(
                    &state,
                    &page,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    context! {
                        file_name => name,
                        error => format!("The file is larger than the {} this Fasten accepts. Nothing was stored.", human_size(cap)),
                    },
                );
            }
            file.write_all(&chunk).await.map_err(anyhow::Error::new)?;
        }
        file.flush().await.map_err(anyhow::Error::new)?;
        saved = Some(name);
        break;
    }
    let Some(file_name) = saved else {
        let _ = tokio::fs::remove_dir_all(&dir).await;
        return result(
            &state,
            &page,
            StatusCode::BAD_REQUEST,
            context! { error => "Choose a file to upload." },
        );
    };
    let pending = Pending { dir, file_name };
    let previewed = import::choose_plugin(&state.plugins, &pending.file_name, &pending.path())
        .is_ok_and(|p| p.manifest.id == PREVIEWED_PLUGIN);
    if previewed {
        return show_preview(&state, &page, pending, &token, ImportOptions::default()).await;
    }
    let options = PendingForm {
        token: token.clone(),
        dates: String::new(),
        anyway: String::new(),
        create_people: String::new(),
    }
    .options_for(&state, &access)
    .await?;
    import_pending(&state, &page, access.id(), pending, &token, &options).await
}

/// The page's answer about a pending file: `token` names it, `dates` is the user's choice.
#[derive(Debug, Deserialize)]
struct PendingForm {
    token: String,
    #[serde(default)]
    dates: String,
    /// "yes" when the user chose to add a file about someone else to this person anyway.
    #[serde(default)]
    anyway: String,
    /// "yes" when the user chose a new person for each patient of a family's file that Fasten
    /// could not place.
    #[serde(default)]
    create_people: String,
}

impl PendingForm {
    fn options(&self) -> ImportOptions {
        ImportOptions {
            dates: Some(self.dates.clone()).filter(|d| !d.is_empty()),
            anyway: self.anyway == "yes",
            ..ImportOptions::default()
        }
        .validated()
    }

    /// The options of an import by `access`: a family's file may be split between the people
    /// the account manages, and new people made for the rest if the user said so.
    async fn options_for(
        &self,
        state: &AppState,
        access: &ManagePerson,
    ) -> Result<ImportOptions, AppError> {
        let mut options = self.options();
        options.family = crate::store::people::managed_by(&state.db, access.user.id).await?;
        if self.create_people == "yes" {
            options.create_people_for = Some(access.user.id);
        }
        Ok(options)
    }
}

fn gone(state: &AppState, page: &Page) -> Result<Response, AppError> {
    result(
        state,
        page,
        StatusCode::NOT_FOUND,
        context! { error => "This preview has expired or was already used. Upload the file again." },
    )
}

async fn preview_again(
    State(state): State<AppState>,
    access: ManagePerson,
    page: Page,
    Form(form): Form<PendingForm>,
) -> Result<Response, AppError> {
    match Pending::find(&state, access.id(), &form.token) {
        Some(pending) => show_preview(&state, &page, pending, &form.token, form.options()).await,
        None => gone(&state, &page),
    }
}

async fn confirm(
    State(state): State<AppState>,
    access: ManagePerson,
    page: Page,
    Form(form): Form<PendingForm>,
) -> Result<Response, AppError> {
    match Pending::find(&state, access.id(), &form.token) {
        Some(pending) => {
            let options = form.options_for(&state, &access).await?;
            import_pending(&state, &page, access.id(), pending, &form.token, &options).await
        }
        None => gone(&state, &page),
    }
}

async fn cancel(
    State(state): State<AppState>,
    access: ManagePerson,
    page: Page,
    Form(form): Form<PendingForm>,
) -> Result<Response, AppError> {
    let file_name = match Pending::find(&state, access.id(), &form.token) {
        Some(pending) => {
            let name = pending.file_name.clone();
            pending.remove().await;
            name
        }
        None => String::new(),
    };
    result(
        &state,
        &page,
        StatusCode::OK,
        context! { cancelled => true, file_name },
    )
}

/// "Create a new person from it": a file about someone else becomes that person's first records
/// (named and dated from its Patient), managed by whoever uploaded it.
async fn new_person(
    State(state): State<AppState>,
    access: ManagePerson,
    page: Page,
    Form(form): Form<PendingForm>,
) -> Result<Response, AppError> {
    let Some(pending) = Pending::find(&state, access.id(), &form.token) else {
        return gone(&state, &page);
    };
    // Who the file is about, read again so the page's word is not trusted.
    let identity = match import::file_patient(&state.plugins, &pending.path(), &pending.file_name)
        .await
    {
        Ok(Some(identity)) => identity,
        Ok(None) | Err(_) => {
            return result(
                &state,
                &page,
                StatusCode::UNPROCESSABLE_ENTITY,
                context! {
                error => "Fasten could not tell who this file is about, so it cannot name a new person from it. Add a person on the Family page and upload it there.",
                file_name => pending.file_name },
            );
        }
    };
    let mut conn = state.db.acquire().await?;
    let person = crate::store::people::create_unique(
        &mut conn,
        &identity.display,
        identity.birth_date.as_deref(),
        access.user.id,
    )
    .await?;
    drop(conn);
    let Some(dir) = Pending::dir(&state, person.id, &form.token) else {
        return gone(&state, &page);
    };
    tokio::fs::rename(&pending.dir, &dir)
        .await
        .map_err(anyhow::Error::new)?;
    let moved = Pending {
        dir,
        file_name: pending.file_name,
    };
    tracing::info!(by = %access.user.username, person = %person.slug, "person created from an uploaded file");
    let target = crate::auth::person::person_url(&state, &person.slug);
    let outcome = import::import_file(
        &state.db,
        &state.plugins,
        person.id,
        &moved.path(),
        &moved.file_name,
        Trigger::Upload,
        &form.options(),
    )
    .await;
    let file_name = moved.file_name.clone();
    moved.remove().await;
    match outcome {
        Ok(report) => result(
            &state,
            &page,
            StatusCode::OK,
            context! {
            report => report, file_name, target => minijinja::Value::from_safe_string(target),
            created => person.name },
        ),
        Err(ImportError::Database(e)) => Err(e.into()),
        Err(e) => result(
            &state,
            &page,
            StatusCode::UNPROCESSABLE_ENTITY,
            context! {
            error => e.to_string(), file_name },
        ),
    }
}

async fn import_pending(
    state: &AppState,
    page: &Page,
    person_id: i64,
    pending: Pending,
    token: &str,
    options: &ImportOptions,
) -> Result<Response, AppError> {
    let outcome = import::import_file(
        &state.db,
        &state.plugins,
        person_id,
        &pending.path(),
        &pending.file_name,
        Trigger::Upload,
        options,
    )
    .await;
    let file_name = pending.file_name.clone();
    // Nothing is stored until the user chooses: the file waits under its token.
    if let Err(ImportError::OtherPatient(other)) = &outcome {
        return result(
            state,
            page,
            StatusCode::CONFLICT,
            context! { other_patient => other.sentence("This file"), token, file_name },
        );
    }
    if let Err(ImportError::Unplaced(unplaced)) = &outcome {
        return result(
            state,
            page,
            StatusCode::CONFLICT,
            context! { unplaced => unplaced.to_string(), token, file_name },
        );
    }
    pending.remove().await;
    match outcome {
        Ok(report) => result(
            state,
            page,
            StatusCode::OK,
            context! { report => report, file_name },
        ),
        Err(ImportError::Database(e)) => Err(e.into()),
        Err(e) => result(
            state,
            page,
            StatusCode::UNPROCESSABLE_ENTITY,
            context! { error => e.to_string(), file_name },
        ),
    }
}

/// One result row of a preview, as it will be stored.
#[derive(Debug, Serialize)]
struct PreviewRow {
    name: String,
    value: Option<String>,
    range: Option<String>,
    flag: Option<&'static str>,
    date: Option<String>,
}

async fn show_preview(
    state: &AppState,
    page: &Page,
    pending: Pending,
    token: &str,
    options: ImportOptions,
) -> Result<Response, AppError> {
    let outcome = import::preview_file(
        &state.plugins,
        &pending.path(),
        &pending.file_name,
        &options,
        PREVIEW_ROWS,
    )
    .await;
    let file_name = pending.file_name.clone();
    let preview: Preview = match outcome {
        Ok(preview) => preview,
        Err(ImportError::Database(e)) => return Err(e.into()),
        Err(ImportError::Failed { failure, .. })
            if failure.to_string().contains(AMBIGUOUS_DATES) =>
        {
            // The user can fix this one here: the file stays until they choose the date order.
            return page.render_status(
                state,
                StatusCode::OK,
                "upload_preview.html",
                context! {
                    file_name, token, ambiguous => failure.to_string(),
                    dates => options.dates,
                },
            );
        }
        Err(e) => {
            pending.remove().await;
            return result(
                state,
                page,
                StatusCode::UNPROCESSABLE_ENTITY,
                context! { error => e.to_string(), file_name },
            );
        }
    };
    let rows: Vec<PreviewRow> = preview
        .sample
        .iter()
        .filter_map(observations::read)
        .map(|o| PreviewRow {
            value: o.value_display(),
            range: o.range.as_ref().and_then(|r| r.display()),
            flag: o.flag.map(|f| f.label()),
            date: o.date.clone(),
            name: o.name,
        })
        .collect();
    page.render_status(
        state,
        StatusCode::OK,
        "upload_preview.html",
        context! {
            file_name, token, preview, rows, dates => options.dates,
        },
    )
}

/// "256 MiB", or bytes below one MiB.
fn human_size(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploaded_names_lose_their_folders() {
        assert_eq!(clean_file_name(Some("C:\\Users\\me\\labs.csv")), "labs.csv");
        assert_eq!(clean_file_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(clean_file_name(Some("..")), "upload");
        assert_eq!(clean_file_name(None), "upload");
    }
}
