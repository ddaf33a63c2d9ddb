//! Importing a file: choose the plugin, run it in the sandbox, and store what it emits in one
//! transaction, committed only if the whole run succeeds. Shared by the upload page, `fasten
//! import` and the inbox folder; every import is recorded as a job. A preview runs the same
//! plugin without storing anything.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sqlx::SqlitePool;
use tokio::sync::mpsc;

use crate::fhir::Prepared;
use crate::fhir::identity::{OtherPatient, PatientGuard};
use crate::fhir::ingest::{Counts, Writer};
use crate::jobs::{self, Trigger};
use crate::plugins::{FileInput, LoadedPlugin, PluginHost, RunContext, RunFailure, RunOutput};

/// What a successful import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub file_name: String,
    pub plugin: String,
    pub counts: Counts,
    pub warnings: Vec<String>,
    /// The job recording this import.
    pub job_id: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// No loaded plugin takes this kind of file.
    #[error("Fasten cannot import {0}: {1}")]
    NoPlugin(String, String),
    /// The run failed; nothing from the file was stored.
    #[error("{file}: {} Nothing from this file was stored.", full_stop(&.failure.to_string()))]
    Failed { file: String, failure: RunFailure },
    /// The file's patient is clearly someone else than the person's; nothing was stored.
    #[error("{} Nothing from this file was stored.", .0.sentence("This file"))]
    OtherPatient(Box<OtherPatient>),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A plugin's message as one sentence: plugins end theirs with a full stop, the host's own do not.
fn full_stop(message: &str) -> String {
    if message.ends_with(['.', '!', '?']) {
        message.to_string()
    } else {
        format!("{message}.")
    }
}

/// Picks the plugin for a file: by its name's ending, else by a look at its first bytes.
pub fn choose_plugin(
    plugins: &PluginHost,
    name: &str,
    head: &[u8],
) -> Result<Arc<LoadedPlugin>, ImportError> {
    let importers = plugins.file_importers();
    let lower = name.to_ascii_lowercase();
    let by_name = importers.iter().find(|p| {
        p.info
            .file_types
            .iter()
            .flat_map(|t| t.extensions.iter())
            .any(|ext| lower.ends_with(&format!(".{ext}")))
    });
    if let Some(plugin) = by_name {
        return Ok(plugin.clone());
    }
    let text = String::from_utf8_lossy(head);
    if text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('{')
        && let Some(fhir) = importers.iter().find(|p| p.manifest.id == "fhir")
    {
        return Ok(fhir.clone());
    }
    let accepted: Vec<String> = importers
        .iter()
        .flat_map(|p| p.info.file_types.iter().map(|t| t.description.clone()))
        .collect();
    Err(ImportError::NoPlugin(
        name.to_string(),
        if accepted.is_empty() {
            "no import plugin is loaded".into()
        } else {
            format!(
                "it is none of the kinds of file Fasten knows: {}",
                accepted.join("; ")
            )
        },
    ))
}

/// The name of a plugin's "Uploaded files" source.
fn upload_source_name(plugin: &LoadedPlugin) -> String {
    format!("Uploaded files ({})", plugin.manifest.name)
}

/// The user's "Uploaded files" source for a plugin, created on first use, so that importing the
/// same file again updates the same records instead of duplicating them.
pub async fn upload_source(
    db: &SqlitePool,
    person_id: i64,
    plugin: &LoadedPlugin,
) -> sqlx::Result<i64> {
    let now = crate::store::unix_now();
    sqlx::query(
        "INSERT INTO sources (person_id, kind, display_name, plugin_id, created_at, updated_at)
         VALUES (?, 'upload', ?, ?, ?, ?)
         ON CONFLICT (person_id, plugin_id) WHERE kind = 'upload' DO NOTHING",
    )
    .bind(person_id)
    .bind(upload_source_name(plugin))
    .bind(&plugin.manifest.id)
    .bind(now)
    .bind(now)
    .execute(db)
    .await?;
    sqlx::query_scalar(
        "SELECT id FROM sources WHERE person_id = ? AND kind = 'upload' AND plugin_id = ?",
    )
    .bind(person_id)
    .bind(&plugin.manifest.id)
    .fetch_one(db)
    .await
}

/// What the user chose about how a file is read, passed to the plugin as parameters of the
/// file's media type (`text/csv; dates=dmy`), which is how the connector contract carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImportOptions {
    /// The order of day and month in dates a CSV column leaves ambiguous: `ymd`, `mdy`, `dmy`.
    #[serde(default)]
    pub dates: Option<String>,
    /// Store the file even when its patient is clearly someone else than the person's (the
    /// user was asked and said so).
    #[serde(default)]
    pub anyway: bool,
}

impl ImportOptions {
    /// Only known values pass: the text ends up in the plugin's view of the file.
    pub fn validated(self) -> ImportOptions {
        ImportOptions {
            dates: self
                .dates
                .filter(|d| matches!(d.as_str(), "ymd" | "mdy" | "dmy")),
            anyway: self.anyway,
        }
    }

    fn media_type(&self, name: &str) -> String {
        let base = media_type_for(name);
        match &self.dates {
            Some(order) => format!("{base}; dates={order}"),
            None => base.to_string(),
        }
    }
}

fn media_type_for(name: &str) -> &'static str {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".ndjson") || lower.ends_with(".jsonl") {
        "application/fhir+ndjson"
    } else if lower.ends_with(".json") {
        "application/json"
    } else if lower.ends_with(".xml") {
        "application/xml"
    } else if lower.ends_with(".csv") {
        "text/csv"
    } else if lower.ends_with(".tsv") {
        "text/tab-separated-values"
    } else if lower.ends_with(".zip") {
        "application/zip"
    } else if lower.ends_with(".eml") {
        "message/rfc822"
    } else {
        "application/octet-stream"
    }
}

/// Runs a plugin over a file, handing what it emits to `consume` as it comes. Answers the run's
/// outcome and what `consume` made of the batches.
async fn run_plugin<T: Send + 'static>(
    plugins: &PluginHost,
    plugin: Arc<LoadedPlugin>,
    path: &Path,
    file_name: &str,
    options: &ImportOptions,
    state_store: Option<(SqlitePool, i64)>,
    consume: impl FnOnce(mpsc::Receiver<Vec<Prepared>>) -> tokio::task::JoinHandle<T>,
) -> Result<(Result<RunOutput, RunFailure>, T), ImportError> {
    let (batches, received) = mpsc::channel::<Vec<Prepared>>(4);
    let consuming = consume(received);
    let ctx = RunContext {
        batches,
        progress: Arc::new(Mutex::new((0, None))),
        state_store,
        connection: None,
        bearer: None,
        cancel: None,
    };
    let input = FileInput {
        path: path.to_path_buf(),
        name: file_name.to_string(),
        media_type: options.media_type(file_name),
    };
    let outcome = plugins.import_file(plugin, input, ctx).await;
    let consumed = consuming
        .await
        .map_err(|e| sqlx::Error::Protocol(format!("storing task: {e}")))?;
    Ok((outcome, consumed))
}

/// Imports one file for a user, recording the import as a job. On any failure nothing from the
/// file is stored, and the job says why.
pub async fn import_file(
    db: &SqlitePool,
    plugins: &PluginHost,
    person_id: i64,
    path: &Path,
    file_name: &str,
    via: Trigger,
    options: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let head = read_head(path);
    let plugin = match choose_plugin(plugins, file_name, &head) {
        Ok(plugin) => plugin,
        Err(e) => {
            let job_id = jobs::start_import(db, person_id, None, file_name, via).await?;
            jobs::finish_import(db, job_id, Err(&e.to_string())).await?;
            return Err(e);
        }
    };
    let source_id = upload_source(db, person_id, &plugin).await?;
    let source_name = upload_source_name(plugin.as_ref());
    let job_id = jobs::start_import(
        db,
        person_id,
        Some((source_id, &source_name)),
        file_name,
        via,
    )
    .await?;
    let result = store_file(
        db, plugins, &plugin, person_id, source_id, path, file_name, options,
    )
    .await
    .map(|(counts, warnings)| ImportReport {
        file_name: file_name.to_string(),
        plugin: plugin.manifest.name.clone(),
        counts,
        warnings,
        job_id,
    });
    match &result {
        Ok(report) => {
            jobs::finish_import(db, job_id, Ok((&report.counts, &report.warnings))).await?;
            tracing::info!(person_id, job_id, plugin = %plugin.manifest.id, added = report.counts.added,
                updated = report.counts.updated, unchanged = report.counts.unchanged, "file imported");
        }
        Err(e) => {
            jobs::finish_import(db, job_id, Err(&e.to_string())).await?;
            tracing::info!(person_id, job_id, plugin = %plugin.manifest.id, error = %e, "import refused");
        }
    }
    result
}

/// The run and its one transaction: the writer stores batches while the plugin keeps reading,
/// and commits only when the plugin finished without error.
#[allow(clippy::too_many_arguments)]
async fn store_file(
    db: &SqlitePool,
    plugins: &PluginHost,
    plugin: &Arc<LoadedPlugin>,
    person_id: i64,
    source_id: i64,
    path: &Path,
    file_name: &str,
    options: &ImportOptions,
) -> Result<(Counts, Vec<String>), ImportError> {
    let mut guard = PatientGuard::load(db, person_id, options.anyway).await?;
    let mut writer = Writer::begin(db, person_id, source_id).await?;
    let (outcome, stored) = run_plugin(
        plugins,
        plugin.clone(),
        path,
        file_name,
        options,
        Some((db.clone(), source_id)),
        |mut received| {
            tokio::spawn(async move {
                while let Some(batch) = received.recv().await {
                    // Dropping the receiver makes the plugin's next emit fail, ending the run.
                    if let Err(other) = guard.check(&batch) {
                        return Err((writer, ImportError::OtherPatient(other)));
                    }
                    if let Err(e) = writer.write(&batch).await {
                        return Err((writer, ImportError::Database(e)));
                    }
                }
                Ok(writer)
            })
        },
    )
    .await?;
    match (outcome, stored) {
        (Ok(output), Ok(writer)) => Ok((writer.commit().await?, output.warnings)),
        (_, Err((writer, e))) => {
            writer.rollback().await.ok();
            Err(e)
        }
        (Err(failure), Ok(writer)) => {
            writer.rollback().await?;
            Err(ImportError::Failed {
                file: file_name.to_string(),
                failure,
            })
        }
    }
}

/// What importing a file would store, without storing anything.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub file_name: String,
    pub plugin_id: String,
    pub plugin: String,
    /// How many resources of each type the file holds, e.g. ("Observation", 120).
    pub counts: Vec<(String, u64)>,
    /// The first resources as they would be stored.
    pub sample: Vec<serde_json::Value>,
    pub warnings: Vec<String>,
}

/// Runs the import of a file without a transaction, keeping the first `sample_size` resources
/// and counting the rest, so the user can see what would be stored before anything is.
pub async fn preview_file(
    plugins: &PluginHost,
    path: &Path,
    file_name: &str,
    options: &ImportOptions,
    sample_size: usize,
) -> Result<Preview, ImportError> {
    let plugin = choose_plugin(plugins, file_name, &read_head(path))?;
    let (outcome, (counts, sample)) = run_plugin(
        plugins,
        plugin.clone(),
        path,
        file_name,
        options,
        None,
        |mut received| {
            tokio::spawn(async move {
                let mut counts: Vec<(String, u64)> = Vec::new();
                let mut sample = Vec::new();
                while let Some(batch) = received.recv().await {
                    for prepared in batch {
                        match counts
                            .iter_mut()
                            .find(|(t, _)| *t == prepared.resource_type)
                        {
                            Some((_, n)) => *n += 1,
                            None => counts.push((prepared.resource_type.clone(), 1)),
                        }
                        if sample.len() < sample_size
                            && let Ok(value) = serde_json::from_str(&prepared.json)
                        {
                            sample.push(value);
                        }
                    }
                }
                (counts, sample)
            })
        },
    )
    .await?;
    let output = outcome.map_err(|failure| ImportError::Failed {
        file: file_name.to_string(),
        failure,
    })?;
    Ok(Preview {
        file_name: file_name.to_string(),
        plugin_id: plugin.manifest.id.clone(),
        plugin: plugin.manifest.name.clone(),
        counts,
        sample,
        warnings: output.warnings,
    })
}

/// Who a file is about: its first Patient, read by running its plugin without storing anything.
pub async fn file_patient(
    plugins: &PluginHost,
    path: &Path,
    file_name: &str,
) -> Result<Option<crate::fhir::identity::Identity>, ImportError> {
    let plugin = choose_plugin(plugins, file_name, &read_head(path))?;
    let (_, found) = run_plugin(
        plugins,
        plugin,
        path,
        file_name,
        &ImportOptions::default(),
        None,
        |mut received| {
            tokio::spawn(async move {
                let mut found = None;
                while let Some(batch) = received.recv().await {
                    if found.is_some() {
                        continue;
                    }
                    found = batch
                        .iter()
                        .filter(|p| p.resource_type == "Patient")
                        .filter_map(|p| serde_json::from_str::<serde_json::Value>(&p.json).ok())
                        .find_map(|v| crate::fhir::identity::Identity::of(&v));
                }
                found
            })
        },
    )
    .await?;
    Ok(found)
}

fn read_head(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut head = vec![0u8; 512];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head.truncate(n);
    head
}
