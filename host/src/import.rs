//! Importing a file: choose the plugin, run it in the sandbox, and store what it emits in one
//! transaction, committed only if the whole run succeeds. Shared by the upload page and
//! `fasten import`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sqlx::SqlitePool;
use tokio::sync::mpsc;

use crate::fhir::ingest::{Counts, Writer};
use crate::plugins::{FileInput, LoadedPlugin, PluginHost, RunContext, RunFailure};

/// What a successful import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub file_name: String,
    pub plugin: String,
    pub counts: Counts,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// No loaded plugin takes this kind of file.
    #[error("Fasten cannot import {0}: {1}")]
    NoPlugin(String, String),
    /// The run failed; nothing from the file was stored.
    #[error("{file}: {failure}. Nothing from this file was stored.")]
    Failed { file: String, failure: RunFailure },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
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

/// The user's "Uploaded files" source for a plugin, created on first use, so that importing the
/// same file again updates the same records instead of duplicating them.
pub async fn upload_source(
    db: &SqlitePool,
    user_id: i64,
    plugin: &LoadedPlugin,
) -> sqlx::Result<i64> {
    let now = crate::store::unix_now();
    sqlx::query(
        "INSERT INTO sources (user_id, kind, display_name, plugin_id, created_at, updated_at)
         VALUES (?, 'upload', ?, ?, ?, ?)
         ON CONFLICT (user_id, plugin_id) WHERE kind = 'upload' DO NOTHING",
    )
    .bind(user_id)
    .bind(format!("Uploaded files ({})", plugin.manifest.name))
    .bind(&plugin.manifest.id)
    .bind(now)
    .bind(now)
    .execute(db)
    .await?;
    sqlx::query_scalar(
        "SELECT id FROM sources WHERE user_id = ? AND kind = 'upload' AND plugin_id = ?",
    )
    .bind(user_id)
    .bind(&plugin.manifest.id)
    .fetch_one(db)
    .await
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
    } else {
        "application/octet-stream"
    }
}

/// Imports one file for a user. On any failure nothing from the file is stored.
pub async fn import_file(
    db: &SqlitePool,
    plugins: &PluginHost,
    user_id: i64,
    path: &Path,
    file_name: &str,
) -> Result<ImportReport, ImportError> {
    let head = read_head(path);
    let plugin = choose_plugin(plugins, file_name, &head)?;
    let source_id = upload_source(db, user_id, &plugin).await?;

    // The writer owns the transaction and stores batches while the plugin keeps reading.
    let (batches, mut received) = mpsc::channel::<Vec<crate::fhir::Prepared>>(4);
    let mut writer = Writer::begin(db, user_id, source_id).await?;
    let storing = tokio::spawn(async move {
        while let Some(batch) = received.recv().await {
            if let Err(e) = writer.write(&batch).await {
                // Dropping the receiver makes the plugin's next emit fail, ending the run.
                return Err((writer, e));
            }
        }
        Ok(writer)
    });
    let ctx = RunContext {
        batches,
        progress: Arc::new(Mutex::new((0, None))),
        state_store: Some((db.clone(), source_id)),
        connection: None,
        bearer: None,
        cancel: None,
    };
    let input = FileInput {
        path: path.to_path_buf(),
        name: file_name.to_string(),
        media_type: media_type_for(file_name).to_string(),
    };
    let outcome = plugins.import_file(plugin.clone(), input, ctx).await;
    let stored = storing
        .await
        .map_err(|e| sqlx::Error::Protocol(format!("writer task: {e}")))?;
    match (outcome, stored) {
        (Ok(output), Ok(writer)) => {
            let counts = writer.commit().await?;
            tracing::info!(user_id, plugin = %plugin.manifest.id, added = counts.added,
                updated = counts.updated, unchanged = counts.unchanged, "file imported");
            Ok(ImportReport {
                file_name: file_name.to_string(),
                plugin: plugin.manifest.name.clone(),
                counts,
                warnings: output.warnings,
            })
        }
        (Ok(_), Err((writer, e))) | (Err(_), Err((writer, e))) => {
            writer.rollback().await.ok();
            Err(ImportError::Database(e))
        }
        (Err(failure), Ok(writer)) => {
            writer.rollback().await?;
            tracing::info!(user_id, plugin = %plugin.manifest.id, %failure, "import refused");
            Err(ImportError::Failed {
                file: file_name.to_string(),
                failure,
            })
        }
    }
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
