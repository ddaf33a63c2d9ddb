//! The runner: claims queued jobs with bounded concurrency, runs each, records the outcome, and
//! queues scheduled syncs when they fall due.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::Semaphore;

use super::{Trigger, enqueue};
use crate::state::AppState;
use crate::store::unix_now;
use crate::sync::{self, SyncOutcome};

/// How often a running job's progress is written for the page to poll.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// The longest the runner sleeps without looking at the queue (retries fall due by time).
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// Waits before retry `attempt` (1-based) of a transiently failed job.
fn backoff_seconds(attempt: i64) -> i64 {
    match attempt {
        1 => 30,
        2 => 120,
        _ => 600,
    }
}

/// A job taken from the queue.
#[derive(Debug, sqlx::FromRow)]
struct Claimed {
    id: i64,
    source_id: i64,
    attempt: i64,
}

/// Starts the runner and the scheduler; they stop when the returned handles are aborted.
pub fn spawn(state: AppState) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(run_queue(state.clone())),
        tokio::spawn(schedule(state)),
    ]
}

async fn run_queue(state: AppState) {
    let permits = Arc::new(Semaphore::new(state.config.sync.concurrency.max(1)));
    loop {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        match claim_next(&state.db).await {
            Ok(Some(job)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    run_one(&state, job).await;
                    drop(permit);
                    state.jobs.wake();
                });
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot read the job queue"),
        }
        drop(permit);
        let wait = next_due_in(&state.db).await.unwrap_or(IDLE_CHECK);
        tokio::select! {
            _ = state.jobs.woken() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Marks the next runnable job running: queued, due, and no other job of its source running.
async fn claim_next(db: &SqlitePool) -> sqlx::Result<Option<Claimed>> {
    let now = unix_now();
    sqlx::query_as(
        "UPDATE jobs SET status = 'running', started_at = ?, finished_at = NULL,
           progress_done = 0, progress_total = NULL
         WHERE id = (
           SELECT j.id FROM jobs j
           WHERE j.status = 'queued' AND j.run_after <= ? AND j.source_id IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM jobs r
                             WHERE r.status = 'running' AND r.source_id = j.source_id)
           ORDER BY j.run_after, j.id LIMIT 1)
         RETURNING id, source_id, attempt",
    )
    .bind(now)
    .bind(now)
    .fetch_optional(db)
    .await
}

/// Time until the earliest waiting job falls due.
async fn next_due_in(db: &SqlitePool) -> Option<Duration> {
    let earliest: Option<i64> =
        sqlx::query_scalar("SELECT MIN(run_after) FROM jobs WHERE status = 'queued'")
            .fetch_one(db)
            .await
            .ok()?;
    let seconds = (earliest? - unix_now()).clamp(1, IDLE_CHECK.as_secs() as i64);
    Some(Duration::from_secs(seconds as u64))
}

async fn run_one(state: &AppState, job: Claimed) {
    let cancel = state.jobs.register(job.id);
    let progress = Arc::new(Mutex::new((0u64, None::<u64>)));
    let reporter = tokio::spawn(report_progress(state.db.clone(), job.id, progress.clone()));
    tracing::info!(job_id = job.id, source_id = job.source_id, "sync started");
    let outcome = sync::run(state, job.source_id, Some(job.id), cancel, progress.clone()).await;
    reporter.abort();
    let done = progress.lock().expect("progress lock").0;
    if let Err(e) = record(state, &job, outcome, done).await {
        tracing::error!(job_id = job.id, error = %e, "cannot record the job's outcome");
    }
    state.jobs.unregister(job.id);
}

async fn report_progress(db: SqlitePool, job_id: i64, progress: Arc<Mutex<(u64, Option<u64>)>>) {
    let mut last = (u64::MAX, None);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    loop {
        tick.tick().await;
        let now = *progress.lock().expect("progress lock");
        if now == last {
            continue;
        }
        last = now;
        let _ = sqlx::query(
            "UPDATE jobs SET progress_done = ?, progress_total = ? WHERE id = ? AND status = 'running'",
        )
        .bind(now.0 as i64)
        .bind(now.1.map(|t| t as i64))
        .bind(job_id)
        .execute(&db)
        .await;
    }
}

/// Writes a job's outcome, queues its retry, and sets the source's next scheduled sync.
async fn record(
    state: &AppState,
    job: &Claimed,
    outcome: SyncOutcome,
    progress_done: u64,
) -> sqlx::Result<()> {
    let db = &state.db;
    let now = unix_now();
    let max_attempts = state.config.sync.max_attempts.max(1) as i64;
    match outcome {
        // Recorded with its records, in their transaction.
        SyncOutcome::Done(report) => {
            let status = if report.warnings.is_empty() {
                "succeeded"
            } else {
                "warnings"
            };
            tracing::info!(
                job_id = job.id,
                source_id = job.source_id,
                status,
                added = report.counts.added,
                updated = report.counts.updated,
                requests = report.http_requests,
                "sync finished"
            );
            return Ok(());
        }
        SyncOutcome::Retry {
            reason,
            detail,
            after_seconds,
        } if job.attempt < max_attempts => {
            let wait = after_seconds.unwrap_or_else(|| backoff_seconds(job.attempt));
            tracing::info!(
                job_id = job.id,
                reason,
                detail,
                "sync attempt did not finish"
            );
            sqlx::query(
                "UPDATE jobs SET status = 'queued', attempt = attempt + 1, run_after = ?,
                   started_at = NULL, error = ?, error_detail = ? WHERE id = ?",
            )
            .bind(now + wait)
            .bind(format!(
                "Attempt {} of {max_attempts} did not finish: {reason} Fasten tries again in {}.",
                job.attempt,
                crate::sources::smart::in_words(wait)
            ))
            .bind(detail)
            .bind(job.id)
            .execute(db)
            .await?;
            tracing::info!(
                job_id = job.id,
                attempt = job.attempt,
                wait,
                "sync will be retried"
            );
            return Ok(());
        }
        SyncOutcome::Retry { reason, detail, .. } => {
            fail(
                db,
                job.id,
                &format!(
                    "{reason} Fasten gave up after {max_attempts} attempts; the records from \
                     earlier syncs are kept, and the next scheduled sync will try again."
                ),
                detail.as_deref(),
                progress_done,
            )
            .await?;
        }
        SyncOutcome::Failed { message, detail } => {
            fail(db, job.id, &message, detail.as_deref(), progress_done).await?
        }
        SyncOutcome::Cancelled => {
            sqlx::query(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, progress_done = ?,
                   error = 'Cancelled; nothing from this run was stored.' WHERE id = ?",
            )
            .bind(now)
            .bind(progress_done as i64)
            .bind(job.id)
            .execute(db)
            .await?;
        }
    }
    // The next scheduled sync counts from the end of this one, whatever its outcome (a sync
    // that stored its records set it in their transaction).
    let every = state.config.sync.every.as_secs() as i64;
    sqlx::query("UPDATE connections SET next_sync_at = ? WHERE source_id = ?")
        .bind((every > 0).then_some(now + every))
        .bind(job.source_id)
        .execute(db)
        .await?;
    Ok(())
}

async fn fail(
    db: &SqlitePool,
    job_id: i64,
    message: &str,
    detail: Option<&str>,
    progress_done: u64,
) -> sqlx::Result<()> {
    tracing::info!(job_id, message, detail, "sync failed");
    sqlx::query(
        "UPDATE jobs SET status = 'failed', error = ?, error_detail = ?, progress_done = ?,
           finished_at = ? WHERE id = ?",
    )
    .bind(message)
    .bind(detail)
    .bind(progress_done as i64)
    .bind(unix_now())
    .bind(job_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Queues a sync for each connected source whose scheduled time has come.
async fn schedule(state: AppState) {
    let every = state.config.sync.every;
    if every.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(every.min(Duration::from_secs(60)));
    loop {
        tick.tick().await;
        if let Err(e) = queue_due(&state).await {
            tracing::error!(error = %e, "cannot queue scheduled syncs");
        }
    }
}

async fn queue_due(state: &AppState) -> sqlx::Result<()> {
    let now = unix_now();
    let due: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT c.source_id, s.person_id FROM connections c JOIN sources s ON s.id = c.source_id
         WHERE c.status = 'connected' AND c.next_sync_at IS NOT NULL AND c.next_sync_at <= ?
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.source_id = c.source_id
                           AND j.status IN ('queued', 'running'))",
    )
    .bind(now)
    .fetch_all(&state.db)
    .await?;
    for (source_id, person_id) in due {
        enqueue(
            &state.db,
            &state.jobs,
            person_id,
            source_id,
            Trigger::Schedule,
        )
        .await?;
        // Set again when the job ends; this keeps the next tick from queueing it twice.
        sqlx::query("UPDATE connections SET next_sync_at = NULL WHERE source_id = ?")
            .bind(source_id)
            .execute(&state.db)
            .await?;
        tracing::info!(source_id, "scheduled sync queued");
    }
    Ok(())
}
