//! Refreshing the directory: download each source's list (size-capped, to a temporary file),
//! stream it into a staging database, check it, and replace the source's rows; record every
//! attempt in `directory_refreshes`, with the reason when the previous directory was kept.
//!
//! Started by an administrator (Admin → Provider directory), by `fasten directory refresh`, and
//! then every `[directory] refresh` by [`schedule`], which never starts the first download:
//! nothing leaves this machine for a vendor's list until an administrator asked once.

use std::io::{BufReader, Seek};
use std::path::PathBuf;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::io::AsyncWriteExt;

use super::stage::{Counts, Stage};
use super::{Source, Sources, bundle};
use crate::plugins::http::HttpGate;
use crate::state::AppState;
use crate::store::unix_now;

/// The longest one list may take to download (Epic's 90 MB on a slow line).
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How far a new list's size may stray from the last good one's before it is taken for broken.
pub const MAX_CHANGE: f64 = 0.20;
/// Read buffer for parsing the downloaded file.
const READ_BUFFER: usize = 256 * 1024;

/// Who asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Admin,
    Cli,
    Schedule,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Admin => "admin",
            Trigger::Cli => "cli",
            Trigger::Schedule => "schedule",
        }
    }
}

/// Everything a refresh needs, owned, so it can run in a background task.
#[derive(Clone)]
pub struct Settings {
    pub db: SqlitePool,
    /// The host's gate, open to the sources' origins only.
    pub gate: HttpGate,
    /// Where the download and the staging database are written.
    pub spool_dir: PathBuf,
    pub max_bytes: u64,
    /// Take a list even when its size changed by more than [`MAX_CHANGE`].
    pub accept_count_change: bool,
}

impl Settings {
    /// The server's settings for downloading `sources` (their origins, nothing else).
    pub fn for_server(state: &AppState, sources: &Sources) -> Settings {
        Settings {
            db: state.db.clone(),
            gate: state.plugins.host_gate(sources.origins()),
            spool_dir: state.config.data_dir.join("spool"),
            max_bytes: state.config.directory.max_bytes,
            accept_count_change: false,
        }
    }
}

/// Why a refresh kept the previous directory, in the administrator's words.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("The download failed: {0}.")]
    Download(String),
    #[error("The list is larger than {} MiB (the [directory] max_bytes setting).", .limit >> 20)]
    TooLarge { limit: u64 },
    #[error("The list is cut off ({0}): the download did not arrive whole.")]
    Truncated(String),
    #[error("The list is not a FHIR Bundle Fasten can read: {0}.")]
    Unreadable(String),
    #[error("The list holds no organisation with a usable FHIR endpoint.")]
    Empty,
    #[error(
        "The list has {now} organisations where the last download had {before}, a change of more \
         than a fifth, which looks like a broken list rather than a real change. The previous \
         directory is kept; `fasten directory refresh --accept-count-change` takes it anyway."
    )]
    CountChanged { before: i64, now: i64 },
    #[error("Fasten could not store the list: {0}")]
    Internal(String),
}

fn internal(e: impl std::fmt::Display) -> RefreshError {
    RefreshError::Internal(e.to_string())
}

/// How one source's refresh ended.
#[derive(Debug)]
pub struct Outcome {
    pub source: String,
    pub result: Result<Counts, RefreshError>,
}

/// Refreshes every source in turn; one failing does not stop the others.
pub async fn refresh_all(settings: &Settings, sources: &Sources, trigger: Trigger) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for source in sources.list() {
        outcomes.push(Outcome {
            source: source.id.clone(),
            result: refresh_one(settings, source, trigger).await,
        });
    }
    outcomes
}

/// Refreshes one source and records the attempt.
pub async fn refresh_one(
    settings: &Settings,
    source: &Source,
    trigger: Trigger,
) -> Result<Counts, RefreshError> {
    let started = unix_now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO directory_refreshes (source, trigger, status, started_at)
         VALUES (?, ?, 'running', ?) RETURNING id",
    )
    .bind(&source.id)
    .bind(trigger.as_str())
    .bind(started)
    .fetch_one(&settings.db)
    .await
    .map_err(internal)?;
    tracing::info!(source = %source.id, url = %source.url, "provider directory download started");
    let result = run(settings, source, id).await;
    match &result {
        Ok(counts) => tracing::info!(
            source = %source.id,
            entries = counts.entries,
            choices = counts.choices,
            "provider directory refreshed"
        ),
        Err(e) => {
            tracing::warn!(source = %source.id, reason = %e, "provider directory kept as it was");
            let recorded = sqlx::query(
                "UPDATE directory_refreshes SET status = 'failed', error = ?, finished_at = ?
                 WHERE id = ?",
            )
            .bind(e.to_string())
            .bind(unix_now())
            .bind(id)
            .execute(&settings.db)
            .await;
            if let Err(e) = recorded {
                tracing::error!(error = %e, "cannot record how the directory refresh ended");
            }
        }
    }
    result
}

async fn run(
    settings: &Settings,
    source: &Source,
    refresh_id: i64,
) -> Result<Counts, RefreshError> {
    let (file, bytes) = download(settings, &source.url).await?;
    let stage = Stage::create(&settings.spool_dir).await.map_err(internal)?;
    let handle = tokio::runtime::Handle::current();
    // serde reads synchronously; the staging writes are async. The read runs on a blocking
    // thread and waits for each batch to be written, so at most one batch is in memory.
    let (mut stage, read, stage_error) = tokio::task::spawn_blocking(move || {
        let mut stage = stage;
        let mut stage_error = None;
        let reader = BufReader::with_capacity(READ_BUFFER, file);
        let read = bundle::read(reader, &mut |record| {
            handle.block_on(stage.push(record)).map_err(|e| {
                let message = format!("staging failed: {e}");
                stage_error = Some(e);
                message
            })
        });
        (stage, read, stage_error)
    })
    .await
    .map_err(internal)?;
    if let Some(e) = stage_error {
        return Err(internal(e));
    }
    match read {
        Ok(_) => {}
        Err(e) if e.is_truncated() => return Err(RefreshError::Truncated(e.to_string())),
        Err(e) => return Err(RefreshError::Unreadable(e.to_string())),
    }
    let counts = stage.resolve().await.map_err(internal)?;
    if counts.entries == 0 {
        return Err(RefreshError::Empty);
    }
    if !settings.accept_count_change
        && let Some(before) = last_good_entries(&settings.db, &source.id)
            .await
            .map_err(internal)?
        && changed_too_much(before, counts.entries)
    {
        return Err(RefreshError::CountChanged {
            before,
            now: counts.entries,
        });
    }
    stage
        .replace(
            &settings.db,
            &source.id,
            &source.platform,
            refresh_id,
            counts,
            bytes,
        )
        .await
        .map_err(|e| RefreshError::Internal(format!("{e:#}")))?;
    Ok(counts)
}

/// More than [`MAX_CHANGE`] away from the last good size, either way.
pub fn changed_too_much(before: i64, now: i64) -> bool {
    before > 0 && ((now - before).abs() as f64) > MAX_CHANGE * before as f64
}

async fn last_good_entries(db: &SqlitePool, source: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT entries FROM directory_refreshes WHERE source = ? AND status = 'succeeded'
         ORDER BY id DESC LIMIT 1",
    )
    .bind(source)
    .fetch_optional(db)
    .await
    .map(Option::flatten)
}

/// Downloads `url` into an unnamed temporary file, a chunk at a time, refusing more than
/// `max_bytes`. Answers the file, rewound, and its size.
async fn download(settings: &Settings, url: &str) -> Result<(std::fs::File, u64), RefreshError> {
    let mut response = settings
        .gate
        .get_streaming(url, DOWNLOAD_TIMEOUT)
        .await
        .map_err(|e| RefreshError::Download(e.to_string()))?;
    if !response.status().is_success() {
        return Err(RefreshError::Download(format!(
            "{url} answered HTTP {}",
            response.status().as_u16()
        )));
    }
    let too_large = RefreshError::TooLarge {
        limit: settings.max_bytes,
    };
    if response
        .content_length()
        .is_some_and(|n| n > settings.max_bytes)
    {
        return Err(too_large);
    }
    std::fs::create_dir_all(&settings.spool_dir).map_err(internal)?;
    let file = tempfile::tempfile_in(&settings.spool_dir).map_err(internal)?;
    let mut out = tokio::fs::File::from_std(file);
    let mut bytes = 0u64;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) if e.is_timeout() => {
                return Err(RefreshError::Download(format!(
                    "no complete answer within {} minutes",
                    DOWNLOAD_TIMEOUT.as_secs() / 60
                )));
            }
            Err(e) => {
                return Err(RefreshError::Truncated(format!(
                    "the connection ended after {bytes} bytes: {}",
                    std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string())
                )));
            }
        };
        bytes += chunk.len() as u64;
        if bytes > settings.max_bytes {
            return Err(too_large);
        }
        out.write_all(&chunk).await.map_err(internal)?;
    }
    out.flush().await.map_err(internal)?;
    let mut file = out.into_std().await;
    file.rewind().map_err(internal)?;
    Ok((file, bytes))
}

/// Starts a refresh of every source in the background, unless one is running. Answers whether
/// it started.
pub fn start(state: &AppState, trigger: Trigger) -> bool {
    let Some(guard) = state.directory.try_start() else {
        return false;
    };
    let state = state.clone();
    tokio::spawn(async move {
        // The file's sources and the lists added until now.
        match state.directory.all_sources(&state.db).await {
            Ok(sources) => {
                let settings = Settings::for_server(&state, &sources);
                refresh_all(&settings, &sources, trigger).await;
            }
            Err(e) => tracing::error!(error = %e, "cannot read the directory's added lists"),
        }
        drop(guard);
    });
    true
}

/// At start-up: refreshes left running by a Fasten that stopped are marked failed.
pub async fn recover(db: &SqlitePool) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE directory_refreshes SET status = 'failed', finished_at = ?,
           error = 'Fasten stopped during this download; the previous directory was kept.'
         WHERE status = 'running'",
    )
    .bind(unix_now())
    .execute(db)
    .await?
    .rows_affected())
}

/// Whether the schedule should download again: only once someone has downloaded before, and
/// `every` after the last attempt began.
pub async fn due(db: &SqlitePool, every: Duration, now: i64) -> sqlx::Result<bool> {
    let last: Option<i64> = sqlx::query_scalar("SELECT MAX(started_at) FROM directory_refreshes")
        .fetch_one(db)
        .await?;
    Ok(!every.is_zero() && last.is_some_and(|last| now - last >= every.as_secs() as i64))
}

/// Downloads the directory again every `[directory] refresh`, once an administrator has
/// downloaded it the first time.
pub async fn schedule(state: AppState) {
    let every = state.config.directory.refresh;
    if every.is_zero() {
        return;
    }
    loop {
        tokio::time::sleep(every.min(Duration::from_secs(3600))).await;
        match due(&state.db, every, unix_now()).await {
            Ok(true) => {
                start(&state, Trigger::Schedule);
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "cannot read when the directory was downloaded"),
        }
    }
}

/// The newest refreshes, for Admin → Provider directory.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct RefreshView {
    pub id: i64,
    pub source: String,
    pub trigger: String,
    pub status: String,
    pub entries: Option<i64>,
    pub choices: Option<i64>,
    pub bytes: Option<i64>,
    pub error: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

pub async fn recent(db: &SqlitePool, limit: i64) -> sqlx::Result<Vec<RefreshView>> {
    sqlx::query_as(
        "SELECT id, source, trigger, status, entries, choices, bytes, error, started_at,
                finished_at
         FROM directory_refreshes ORDER BY id DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifth_either_way_is_the_limit() {
        assert!(!changed_too_much(1000, 1200));
        assert!(!changed_too_much(1000, 800));
        assert!(changed_too_much(1000, 1201));
        assert!(changed_too_much(1000, 799));
        // Nothing to compare with: any size goes.
        assert!(!changed_too_much(0, 5));
    }

    #[test]
    fn messages_say_what_was_kept_and_why() {
        let e = RefreshError::CountChanged {
            before: 1359,
            now: 900,
        };
        let text = e.to_string();
        assert!(
            text.contains("1359")
                && text.contains("900")
                && text.contains("previous directory is kept"),
            "{text}"
        );
        assert!(
            RefreshError::TooLarge { limit: 512 << 20 }
                .to_string()
                .contains("512 MiB")
        );
    }
}
