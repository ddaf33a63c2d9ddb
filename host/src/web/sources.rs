//! The Sources page: the user's sources, and uploading a file to import. The upload is streamed
//! to a file under `data_dir/uploads` (never held in memory), capped at `limits.upload_bytes`,
//! imported through the plugin that takes it, and removed.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::response::{Html, Response};
use axum::routing::{get, post};
use minijinja::context;
use rand::RngCore;
use tokio::io::AsyncWriteExt;

use super::render::Page;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::import::{self, ImportError};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/sources", get(list)).route(
        "/sources/upload",
        // Room for the multipart framing around a file at the cap; the cap itself is
        // enforced while streaming, with a clear message.
        post(upload).layer(DefaultBodyLimit::disable()),
    )
}

#[derive(serde::Serialize, sqlx::FromRow)]
struct SourceRow {
    id: i64,
    kind: String,
    display_name: String,
    records: i64,
    created_at: i64,
}

async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    page: Page,
) -> Result<Html<String>, AppError> {
    let sources: Vec<SourceRow> = sqlx::query_as(
        "SELECT s.id, s.kind, s.display_name, s.created_at,
                (SELECT COUNT(*) FROM resources r WHERE r.source_id = s.id) AS records
         FROM sources s WHERE s.user_id = ? ORDER BY s.display_name",
    )
    .bind(user.id)
    .fetch_all(&state.db)
    .await?;
    let accepts: Vec<String> = state
        .plugins
        .file_importers()
        .iter()
        .flat_map(|p| {
            p.info
                .file_types
                .iter()
                .flat_map(|t| t.extensions.iter().map(|x| format!(".{x}")))
        })
        .collect();
    page.render(
        &state,
        "sources.html",
        context! { sources => sources, accepts => accepts.join(","),
        max_upload_mib => state.config.limits.upload_bytes / (1024 * 1024) },
    )
}

fn result(
    state: &AppState,
    page: &Page,
    status: StatusCode,
    ctx: minijinja::Value,
) -> Result<Response, AppError> {
    page.render_status(state, status, "upload_result.html", ctx)
}

async fn upload(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    page: Page,
    mut multipart: Multipart,
) -> Result<Response, AppError> {
    let cap = state.config.limits.upload_bytes;
    let dir = state.config.data_dir.join("uploads");
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
        let name = field
            .file_name()
            .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n).to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "upload".into());
        let mut random = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut random);
        let path = dir.join(format!("upload-{}.part", hex::encode(random)));
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(anyhow::Error::new)?;
        let mut size: u64 = 0;
        loop {
            let chunk = match field.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&path).await;
                    return Err(AppError::BadRequest(format!(
                        "The upload was interrupted: {e}"
                    )));
                }
            };
            size += chunk.len() as u64;
            if size > cap {
                drop(file);
                let _ = tokio::fs::remove_file(&path).await;
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
        saved = Some((path, name));
        break;
    }
    let Some((path, name)) = saved else {
        return result(
            &state,
            &page,
            StatusCode::BAD_REQUEST,
            context! { error => "Choose a file to upload." },
        );
    };
    let outcome = import::import_file(&state.db, &state.plugins, user.id, &path, &name).await;
    let _ = tokio::fs::remove_file(&path).await;
    match outcome {
        Ok(report) => result(
            &state,
            &page,
            StatusCode::OK,
            context! { report => report, file_name => name },
        ),
        Err(ImportError::Database(e)) => Err(e.into()),
        Err(e) => result(
            &state,
            &page,
            StatusCode::UNPROCESSABLE_ENTITY,
            context! { error => e.to_string(), file_name => name },
        ),
    }
}

/// "256 MiB", or bytes below one MiB.
fn human_size(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{bytes} bytes")
    }
}
