//! Taking records out: everything as a FHIR Bundle or as NDJSON in a zip (one file per type, the
//! bulk-export layout), and "Summary for my doctor": a printable page and the same summary as an
//! International Patient Summary Bundle.
//!
//! Downloads are written to a temporary file under `data_dir/exports` and streamed from it, so a
//! large record never sits whole in memory; the file is unlinked as soon as it is open.

use std::io::Write;
use std::net::IpAddr;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures_util::TryStreamExt;
use minijinja::context;
use rand::RngCore;

use super::people::PersonRouter;
use super::render::Page;
use crate::audit::{self, Action, Actor};
use crate::auth::ClientAddr;
use crate::auth::person::ViewPerson;
use crate::error::AppError;
use crate::fhir::export::{ExportFormat, export_person};
use crate::record::ips;
use crate::state::AppState;

pub fn router(r: PersonRouter) -> PersonRouter {
    r.route("/export", get(page))
        .route("/export/everything.json", get(bundle))
        .route("/export/everything.zip", get(ndjson_zip))
        .route("/summary", get(summary))
        .route("/summary/ips.json", get(summary_bundle))
}

async fn page(
    State(state): State<AppState>,
    access: ViewPerson,
    page: Page,
) -> Result<Html<String>, AppError> {
    let records = crate::store::resources::count_for_person(&state.db, access.id()).await?;
    page.render(&state, "export.html", context! { records => records })
}

/// A fresh temporary file for one download.
fn temp_file(state: &AppState) -> Result<(std::path::PathBuf, std::fs::File), AppError> {
    let dir = state.config.data_dir.join("exports");
    std::fs::create_dir_all(&dir).map_err(anyhow::Error::new)?;
    let mut random = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let path = dir.join(format!("export-{}.part", hex::encode(random)));
    let file = std::fs::File::create(&path).map_err(anyhow::Error::new)?;
    Ok((path, file))
}

/// Streams a finished temporary file as an attachment, then it is gone.
async fn send_file(
    path: std::path::PathBuf,
    content_type: &'static str,
    file_name: String,
) -> Result<Response, AppError> {
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(anyhow::Error::new)?;
    // Unlinked now: the open handle keeps the data readable until the response ends.
    let _ = tokio::fs::remove_file(&path).await;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

fn today() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}

/// Records a download of someone's records in the audit log.
async fn downloaded(
    state: &AppState,
    access: &ViewPerson,
    address: IpAddr,
    action: Action,
    what: &str,
) {
    let subject = format!("{what} of {}'s records", access.person.person.slug);
    audit::record(
        &state.db,
        &Actor::user(&access.user, address),
        action,
        &subject,
    )
    .await;
}

async fn bundle(
    State(state): State<AppState>,
    access: ViewPerson,
    ClientAddr(address): ClientAddr,
) -> Result<Response, AppError> {
    let (path, file) = temp_file(&state)?;
    let mut writer = std::io::BufWriter::new(file);
    let written = export_person(&state.db, access.id(), ExportFormat::Bundle, &mut writer).await;
    drop(writer);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        return Err(e.into());
    }
    downloaded(
        &state,
        &access,
        address,
        Action::ExportDownloaded,
        "FHIR Bundle",
    )
    .await;
    send_file(
        path,
        "application/fhir+json",
        format!("fasten-{}-{}.json", access.person.person.slug, today()),
    )
    .await
}

/// One NDJSON file per resource type in a zip, as a FHIR bulk export lays them out.
async fn ndjson_zip(
    State(state): State<AppState>,
    access: ViewPerson,
    ClientAddr(address): ClientAddr,
) -> Result<Response, AppError> {
    let (path, file) = temp_file(&state)?;
    let written = write_zip(&state, access.id(), file).await;
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    downloaded(
        &state,
        &access,
        address,
        Action::ExportDownloaded,
        "NDJSON zip",
    )
    .await;
    send_file(
        path,
        "application/zip",
        format!("fasten-{}-{}.zip", access.person.person.slug, today()),
    )
    .await
}

async fn write_zip(state: &AppState, person_id: i64, file: std::fs::File) -> Result<(), AppError> {
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut rows = sqlx::query_as::<_, (String, String)>(
        "SELECT resource_type, json FROM resources WHERE person_id = ?
         ORDER BY resource_type, resource_id, source_id",
    )
    .bind(person_id)
    .fetch(&state.db);
    let mut current: Option<String> = None;
    while let Some((resource_type, json)) = rows.try_next().await? {
        if current.as_deref() != Some(resource_type.as_str()) {
            zip.start_file(format!("{resource_type}.ndjson"), options)
                .map_err(anyhow::Error::new)?;
            current = Some(resource_type);
        }
        writeln!(zip, "{json}").map_err(anyhow::Error::new)?;
    }
    zip.finish()
        .map_err(anyhow::Error::new)?
        .flush()
        .map_err(anyhow::Error::new)?;
    Ok(())
}

async fn summary(
    State(state): State<AppState>,
    access: ViewPerson,
    page: Page,
) -> Result<Html<String>, AppError> {
    let summary = ips::load(&state.db, access.id()).await?;
    page.render(
        &state,
        "summary.html",
        context! { summary => summary, today => today() },
    )
}

async fn summary_bundle(
    State(state): State<AppState>,
    access: ViewPerson,
    ClientAddr(address): ClientAddr,
) -> Result<Response, AppError> {
    let summary = ips::load(&state.db, access.id()).await?;
    downloaded(
        &state,
        &access,
        address,
        Action::SummaryDownloaded,
        "Patient summary",
    )
    .await;
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(anyhow::Error::new)?;
    let bundle = ips::bundle(&summary, &now);
    Ok((
        [
            (header::CONTENT_TYPE, "application/fhir+json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"patient-summary-{}-{}.json\"",
                    access.person.person.slug,
                    today()
                ),
            ),
        ],
        serde_json::to_string_pretty(&bundle).map_err(anyhow::Error::new)?,
    )
        .into_response())
}
