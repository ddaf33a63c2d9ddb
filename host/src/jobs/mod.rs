//! Background jobs: a persistent queue in SQLite and the runner that works through it.
//!
//! A sync never runs inside an HTTP request: handlers enqueue and wake the runner. The queue is
//! a table, so it survives restarts; a job that was running when the process died is marked
//! `interrupted` at start and queued again as a new job. At most one job per source runs at a
//! time, and at most `sync.concurrency` in all.

pub mod runner;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio::sync::Notify;

use crate::store::unix_now;

/// What started a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Connect,
    Manual,
    Schedule,
    Restart,
    /// An import from the upload page.
    Upload,
    /// An import by `fasten import`.
    Cli,
    /// An import of a file dropped into the user's inbox folder.
    Inbox,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Connect => "connect",
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
            Trigger::Restart => "restart",
            Trigger::Upload => "upload",
            Trigger::Cli => "cli",
            Trigger::Inbox => "inbox",
        }
    }
}

/// The in-memory side of the queue: a bell for the runner and the cancel flags of running jobs.
#[derive(Default)]
pub struct JobQueue {
    wake: Notify,
    running: Mutex<HashMap<i64, Arc<AtomicBool>>>,
}

impl JobQueue {
    /// Tells the runner to look at the queue now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.wake.notified().await
    }

    /// The cancel flag for a job about to run.
    pub(crate) fn register(&self, job_id: i64) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.running
            .lock()
            .expect("running jobs lock")
            .insert(job_id, flag.clone());
        flag
    }

    pub(crate) fn unregister(&self, job_id: i64) {
        self.running
            .lock()
            .expect("running jobs lock")
            .remove(&job_id);
    }

    fn raise(&self, job_id: i64) {
        if let Some(flag) = self.running.lock().expect("running jobs lock").get(&job_id) {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// Cancels one of a person's jobs: a queued one at once, a running one at its next request or
    /// record; false when the job is not theirs or already over.
    pub async fn cancel(&self, db: &SqlitePool, job_id: i64, person_id: i64) -> sqlx::Result<bool> {
        let now = unix_now();
        let queued = sqlx::query(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?, error = 'Cancelled before it started.'
             WHERE id = ? AND status = 'queued' AND person_id = ?",
        )
        .bind(now)
        .bind(job_id)
        .bind(person_id)
        .execute(db)
        .await?
        .rows_affected();
        if queued > 0 {
            return Ok(true);
        }
        let running = sqlx::query(
            "UPDATE jobs SET cancel_requested = 1
             WHERE id = ? AND status = 'running' AND person_id = ?",
        )
        .bind(job_id)
        .bind(person_id)
        .execute(db)
        .await?
        .rows_affected();
        if running > 0 {
            self.raise(job_id);
        }
        Ok(running > 0)
    }

    /// Cancels every unfinished job of a source (before it is deleted).
    pub async fn cancel_for_source(&self, db: &SqlitePool, source_id: i64) -> sqlx::Result<()> {
        let running: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs SET cancel_requested = 1 WHERE source_id = ? AND status = 'running'
             RETURNING id",
        )
        .bind(source_id)
        .fetch_all(db)
        .await?;
        for id in running {
            self.raise(id);
        }
        sqlx::query(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?,
               error = 'Cancelled: the source was deleted.'
             WHERE source_id = ? AND status = 'queued'",
        )
        .bind(unix_now())
        .bind(source_id)
        .execute(db)
        .await?;
        Ok(())
    }
}

/// Queues a sync of a source inside the caller's transaction, unless one is already waiting.
/// Answers the waiting or new job's id.
pub async fn enqueue_in(
    tx: &mut Transaction<'_, Sqlite>,
    person_id: i64,
    source_id: i64,
    trigger: Trigger,
) -> sqlx::Result<i64> {
    let waiting: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE source_id = ? AND status = 'queued' ORDER BY id LIMIT 1",
    )
    .bind(source_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = waiting {
        // Someone asked now: a waiting retry or scheduled job runs now rather than later.
        if trigger == Trigger::Manual {
            sqlx::query("UPDATE jobs SET run_after = ? WHERE id = ?")
                .bind(unix_now())
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        return Ok(id);
    }
    let now = unix_now();
    sqlx::query_scalar(
        "INSERT INTO jobs (kind, person_id, source_id, source_name, status, trigger, run_after,
           created_at)
         SELECT 'sync', ?, id, display_name, 'queued', ?, ?, ? FROM sources WHERE id = ?
         RETURNING id",
    )
    .bind(person_id)
    .bind(trigger.as_str())
    .bind(now)
    .bind(now)
    .bind(source_id)
    .fetch_one(&mut **tx)
    .await
}

/// Queues a sync (see [`enqueue_in`]) and wakes the runner.
pub async fn enqueue(
    db: &SqlitePool,
    queue: &JobQueue,
    person_id: i64,
    source_id: i64,
    trigger: Trigger,
) -> sqlx::Result<i64> {
    let mut tx = db.begin().await?;
    let id = enqueue_in(&mut tx, person_id, source_id, trigger).await?;
    tx.commit().await?;
    queue.wake();
    Ok(id)
}

/// At start-up: jobs left `running` by a process that died are marked `interrupted`, and syncs
/// among them queued again. A job that stored its records says so in the same transaction, so
/// one still `running` stored nothing (an import's file is the user's to import again). Answers
/// how many were re-queued.
pub async fn recover(db: &SqlitePool) -> sqlx::Result<u64> {
    let now = unix_now();
    let mut tx = db.begin().await?;
    let interrupted: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "UPDATE jobs SET status = 'interrupted', finished_at = ?,
           error = CASE kind
             WHEN 'sync' THEN 'Fasten stopped while this sync was running, before it stored anything; it was queued again.'
             ELSE 'Fasten stopped while this file was being imported; nothing from it was stored. Import it again.'
           END
         WHERE status = 'running' RETURNING kind, person_id, source_id",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let mut requeued = 0;
    for (kind, person_id, source_id) in interrupted {
        if kind == "sync"
            && let Some(source_id) = source_id
        {
            enqueue_in(&mut tx, person_id, source_id, Trigger::Restart).await?;
            requeued += 1;
        }
    }
    tx.commit().await?;
    Ok(requeued)
}

/// Records an import that is starting (imports run at once, never from the queue).
pub async fn start_import(
    db: &SqlitePool,
    person_id: i64,
    source: Option<(i64, &str)>,
    file_name: &str,
    trigger: Trigger,
) -> sqlx::Result<i64> {
    let now = unix_now();
    sqlx::query_scalar(
        "INSERT INTO jobs (kind, person_id, source_id, source_name, status, trigger, run_after,
           created_at, started_at, file_name)
         VALUES ('import', ?, ?, ?, 'running', ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(person_id)
    .bind(source.map(|(id, _)| id))
    .bind(source.map_or("Uploaded files", |(_, name)| name))
    .bind(trigger.as_str())
    .bind(now)
    .bind(now)
    .bind(now)
    .bind(file_name)
    .fetch_one(db)
    .await
}

/// Records how an import ended: what it stored and its warnings, or why it stored nothing.
///
/// A successful import records this in the transaction that stores its records (pass the
/// writer's connection), so after a crash the job and the data agree.
pub async fn finish_import(
    db: impl sqlx::SqliteExecutor<'_>,
    job_id: i64,
    outcome: Result<(&crate::fhir::ingest::Counts, &[String]), &str>,
) -> sqlx::Result<()> {
    let (status, counts, warnings, error) = match outcome {
        Ok((counts, warnings)) => (
            if warnings.is_empty() {
                "succeeded"
            } else {
                "warnings"
            },
            *counts,
            warnings.to_vec(),
            None,
        ),
        Err(message) => ("failed", Default::default(), vec![], Some(message)),
    };
    sqlx::query(
        "UPDATE jobs SET status = ?, added = ?, updated = ?, unchanged = ?, warnings = ?,
           error = ?, progress_done = ?, finished_at = ? WHERE id = ?",
    )
    .bind(status)
    .bind(counts.added as i64)
    .bind(counts.updated as i64)
    .bind(counts.unchanged as i64)
    .bind(serde_json::to_string(&warnings).expect("strings serialise"))
    .bind(error)
    .bind(counts.total() as i64)
    .bind(unix_now())
    .bind(job_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Records a sync that stored its records, in the transaction that stored them (pass the
/// writer's connection). `emitted` is how many records the plugin sent, kept or not.
pub async fn finish_sync(
    tx: &mut sqlx::SqliteConnection,
    job_id: i64,
    counts: &crate::fhir::ingest::Counts,
    warnings: &[String],
    emitted: u64,
) -> sqlx::Result<()> {
    let status = if warnings.is_empty() {
        "succeeded"
    } else {
        "warnings"
    };
    sqlx::query(
        "UPDATE jobs SET status = ?, added = ?, updated = ?, unchanged = ?, warnings = ?,
           progress_done = ?, progress_total = ?, error = NULL, error_detail = NULL,
           finished_at = ?
         WHERE id = ?",
    )
    .bind(status)
    .bind(counts.added as i64)
    .bind(counts.updated as i64)
    .bind(counts.unchanged as i64)
    .bind(serde_json::to_string(warnings).expect("strings serialise"))
    .bind(emitted as i64)
    .bind(emitted as i64)
    .bind(unix_now())
    .bind(job_id)
    .execute(tx)
    .await?;
    Ok(())
}

/// A job as the Jobs page shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobView {
    pub id: i64,
    pub kind: String,
    pub person_id: i64,
    pub person_name: String,
    pub source_id: Option<i64>,
    pub source_name: String,
    pub status: String,
    pub trigger: String,
    pub attempt: i64,
    pub run_after: i64,
    pub progress_done: i64,
    pub progress_total: Option<i64>,
    pub added: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub warnings: String,
    pub error: Option<String>,
    /// What the provider or the plugin said, behind "Details".
    pub error_detail: Option<String>,
    pub cancel_requested: bool,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub file_name: Option<String>,
}

impl JobView {
    pub fn is_active(&self) -> bool {
        matches!(self.status.as_str(), "queued" | "running")
    }

    pub fn warning_list(&self) -> Vec<String> {
        serde_json::from_str(&self.warnings).unwrap_or_default()
    }
}

/// Which jobs to list.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct JobFilter {
    /// `active` (queued or running), `failed` (failed, interrupted), or an exact status.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub source: Option<i64>,
}

const JOB_COLUMNS: &str =
    "j.id, j.kind, j.person_id, p.name AS person_name, j.source_id, j.source_name,
    j.status, j.trigger, j.attempt, j.run_after, j.progress_done, j.progress_total, j.added,
    j.updated, j.unchanged, j.warnings, j.error, j.error_detail, j.cancel_requested, j.created_at, j.started_at,
    j.finished_at, j.file_name";

/// A person's newest jobs.
pub async fn list(
    db: &SqlitePool,
    person_id: i64,
    filter: &JobFilter,
    limit: i64,
) -> sqlx::Result<Vec<JobView>> {
    let statuses: Vec<&str> = match filter.status.as_str() {
        "" => vec![],
        "active" => vec!["queued", "running"],
        "failed" => vec!["failed", "interrupted"],
        "succeeded" => vec!["succeeded", "warnings"],
        other => vec![other],
    };
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs j JOIN people p ON p.id = j.person_id
         WHERE j.person_id = ?
           AND (? = '[]' OR j.status IN (SELECT value FROM json_each(?)))
           AND (? IS NULL OR j.source_id = ?)
         ORDER BY j.id DESC LIMIT ?"
    );
    let statuses = serde_json::to_string(&statuses).expect("strings serialise");
    sqlx::query_as(&sql)
        .bind(person_id)
        .bind(&statuses)
        .bind(&statuses)
        .bind(filter.source)
        .bind(filter.source)
        .bind(limit)
        .fetch_all(db)
        .await
}

/// One of a person's jobs.
pub async fn get(db: &SqlitePool, job_id: i64, person_id: i64) -> sqlx::Result<Option<JobView>> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs j JOIN people p ON p.id = j.person_id
         WHERE j.id = ? AND j.person_id = ?"
    );
    sqlx::query_as(&sql)
        .bind(job_id)
        .bind(person_id)
        .fetch_optional(db)
        .await
}
