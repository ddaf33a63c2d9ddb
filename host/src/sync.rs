//! One sync of a provider connection, as a background job runs it: the FHIR plugin fetches the
//! patient's records through the host's http capability (which adds and refreshes the token),
//! and what it emits is stored in one transaction only when the whole run succeeded, so a failed
//! or cancelled sync leaves the records of earlier syncs exactly as they were.
//!
//! The records wait in a spool while the plugin runs rather than being written as they come:
//! a sync waits on the network for minutes, and a write transaction held that long would block
//! every other writer (sign-ins, uploads, other members' syncs) behind SQLite's single-writer
//! lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;

use crate::fhir::Prepared;
use crate::fhir::ingest::{Counts, Writer};
use crate::plugins::{PluginError, RunContext, RunFailure, SyncRequest};
use crate::sources;
use crate::sources::tokens::{ConnectionTokens, RECONNECT_MESSAGE, RefreshProblem};
use crate::spool::Spool;
use crate::state::AppState;
use crate::store::unix_now;

/// A finished sync.
#[derive(Debug, Clone)]
pub struct SyncReport {
    pub counts: Counts,
    pub warnings: Vec<String>,
    pub emitted: u64,
    pub http_requests: u64,
    pub token_refreshes: u32,
    /// Where the time went: the whole run, waiting on the provider, and writing.
    pub run_time: Duration,
    pub http_waiting: Duration,
    pub write_time: Duration,
}

/// How a sync ended, for the job record. Messages are for the family: what happened and what
/// to do, in plain words. `detail` is the protocol's side of it (a status, an error code, a
/// resource path), shown behind "Details" on the Jobs page and logged.
#[derive(Debug)]
pub enum SyncOutcome {
    Done(SyncReport),
    /// A temporary problem; `after_seconds` when the provider said how long to wait.
    Retry {
        reason: String,
        detail: Option<String>,
        after_seconds: Option<i64>,
    },
    Failed {
        message: String,
        detail: Option<String>,
    },
    Cancelled,
}

impl SyncOutcome {
    fn failed(message: impl Into<String>) -> SyncOutcome {
        SyncOutcome::Failed {
            message: message.into(),
            detail: None,
        }
    }
}

/// Runs one sync of `source_id`. `progress` receives the plugin's (done, total).
///
/// A sync that stores its records also records `job` as finished in the same transaction,
/// with the cursor and the next scheduled time, so after a crash the job and the data agree.
pub async fn run(
    state: &AppState,
    source_id: i64,
    job: Option<i64>,
    cancel: Arc<AtomicBool>,
    progress: Arc<Mutex<(u64, Option<u64>)>>,
) -> SyncOutcome {
    match run_inner(state, source_id, job, cancel, progress).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(source_id, error = %format!("{e:#}"), "sync failed inside Fasten");
            SyncOutcome::Failed {
                message: "Fasten could not finish this sync because of a problem on this \
                          computer; the records from earlier syncs are kept. If it happens \
                          again, ask whoever runs Fasten to look at its log."
                    .into(),
                detail: Some(format!("{e:#}")),
            }
        }
    }
}

async fn run_inner(
    state: &AppState,
    source_id: i64,
    job: Option<i64>,
    cancel: Arc<AtomicBool>,
    progress: Arc<Mutex<(u64, Option<u64>)>>,
) -> anyhow::Result<SyncOutcome> {
    let started = Instant::now();
    let Some(connection) = sources::load_connection(&state.db, &state.vault, source_id).await?
    else {
        return Ok(SyncOutcome::failed(
            "This source has no provider connection to sync.",
        ));
    };
    if connection.status != "connected" {
        return Ok(SyncOutcome::failed(
            connection.status_message.unwrap_or_else(|| {
                "This source needs to be reconnected before it can sync.".into()
            }),
        ));
    }
    let Some(plugin) = state.plugins.get(&connection.plugin_id) else {
        return Ok(SyncOutcome::Retry {
            reason: format!(
                "The {} plugin that syncs this source is not loaded (see Admin → Plugins).",
                connection.plugin_id
            ),
            detail: None,
            after_seconds: None,
        });
    };
    let base = url::Url::parse(&connection.fhir_base)?;
    let request = SyncRequest {
        base_url: connection.fhir_base.clone(),
        patient_id: connection.patient_id.clone(),
        cursor: connection.sync_cursor.clone(),
        settings: connection.sync_settings.clone(),
    };
    let person_id = connection.person_id;
    let patient_id = connection.patient_id.clone();
    let tokens = Arc::new(ConnectionTokens::new(
        state.db.clone(),
        state.vault.clone(),
        state.plugins.clone(),
        connection,
    ));

    let plugin_state = crate::plugins::state::load(&state.db, source_id).await?;
    let run = || {
        run_plugin(state, plugin.clone(), request.clone(), |batches| {
            RunContext {
                batches,
                progress: progress.clone(),
                state: Some(plugin_state.clone()),
                connection: Some(base.clone()),
                bearer: Some(tokens.clone()),
                cancel: Some(cancel.clone()),
            }
        })
    };
    let (mut outcome, mut spool) = run().await?;
    // Some APIs (Withings) refuse an expired token inside an HTTP 200 answer, where the http
    // gate cannot see it: the plugin says "unauthorized", and as the contract promises, the
    // host renews the token once and runs the sync again.
    if matches!(outcome, Err(RunFailure::Plugin(PluginError::Unauthorized)))
        && tokens.refreshes() == 0
        && tokens.problem().is_none()
        && tokens.refresh_now().await
    {
        (outcome, spool) = run().await?;
    }
    let run_time = started.elapsed();
    let mut spool = spool.context("cannot set this sync's records aside on disk")?;

    let output = match outcome {
        Ok(_) if cancel.load(Ordering::Relaxed) => return Ok(SyncOutcome::Cancelled),
        Ok(output) => output,
        Err(failure) => return Ok(classify(state, source_id, failure, &tokens).await?),
    };

    let writing = Instant::now();
    // A server may ignore a search's patient filter: what it sent about anyone else than the
    // connection's patient is left out, and the job says how much.
    let mut warnings = output.warnings.clone();
    let kept = match &patient_id {
        Some(patient) => {
            let mut filter = crate::fhir::identity::PatientFilter::new(patient);
            let mut reader = spool.reader(crate::spool::CHUNK_RECORDS)?;
            while let Some(chunk) = reader.next_chunk()? {
                chunk.iter().for_each(|p| filter.see(p));
            }
            let kept = filter.finish();
            if kept.about_someone_else > 0 || kept.unlinked > 0 {
                tracing::warn!(
                    source_id,
                    about_someone_else = kept.about_someone_else,
                    unlinked = kept.unlinked,
                    "records left out"
                );
            }
            if kept.about_someone_else > 0 {
                warnings.push(format!(
                    "{} about someone else {} left out: the provider sent {} with this \
                     patient's records.",
                    records(kept.about_someone_else),
                    were(kept.about_someone_else),
                    them(kept.about_someone_else)
                ));
            }
            if kept.unlinked > 0 {
                warnings.push(format!(
                    "{} that none of this patient's records refer to (such as a practitioner \
                     or an organisation) {} left out.",
                    records(kept.unlinked),
                    were(kept.unlinked)
                ));
            }
            Some(kept)
        }
        None => None,
    };
    // A provider may send another patient's records: stop before storing anything.
    let mut guard = crate::fhir::identity::PatientGuard::load(&state.db, person_id, false).await?;
    let mut writer = Writer::begin(&state.db, person_id, source_id).await?;
    let mut reader = spool.reader(crate::spool::CHUNK_RECORDS)?;
    while let Some(mut chunk) = reader.next_chunk()? {
        if let Some(kept) = &kept {
            chunk.retain(|p| kept.keeps(p));
        }
        if let Err(other) = guard.check(&chunk) {
            writer.rollback().await?;
            return Ok(SyncOutcome::failed(format!(
                "{} Nothing from this sync was stored. If the provider account belongs to \
                 someone else, delete this source and connect it from their page.",
                other.sentence("This sync")
            )));
        }
        writer.write(&chunk).await?;
    }
    if cancel.load(Ordering::Relaxed) {
        writer.rollback().await?;
        return Ok(SyncOutcome::Cancelled);
    }
    if let Some(limit) = state.plugins.quotas().person_bytes
        && writer.person_bytes().await? > limit
    {
        writer.rollback().await?;
        return Ok(SyncOutcome::Failed {
            message: format!(
                "This sync would take this person's records past the {} MiB this Fasten allows \
                 one person, so nothing from it was stored; the records from earlier syncs are \
                 kept. Ask whoever runs Fasten to raise the limit.",
                limit >> 20
            ),
            detail: Some("[plugins] max_person_bytes".into()),
        });
    }
    if let Some(plugin_state) = &output.state {
        writer.save_plugin_state(plugin_state).await?;
    }
    // The provider would not renew the access ahead of time; the sync still worked. Say when
    // it stops working if that comes before the next scheduled sync.
    let every = state.config.sync.every.as_secs() as i64;
    if let Some(RefreshProblem::RefusedEarly {
        access_expires_at: Some(expires_at),
        ..
    }) = tokens.problem()
    {
        let left = expires_at - unix_now();
        if every == 0 || left < every {
            warnings.push(format!(
                "The provider would not renew this connection's access, which stops working in {}. \
                 Reconnect before then to keep syncing.",
                crate::sources::smart::in_words(left.max(0))
            ));
        }
    }
    // The job, the cursor and the next scheduled sync are written with the records: the cursor
    // moves only when they are stored, so a failure never skips any, and a crash after the
    // commit leaves a job that says what was stored.
    let counts = writer.counts;
    if let Some(job_id) = job {
        crate::jobs::finish_sync(
            writer.connection(),
            job_id,
            &counts,
            &warnings,
            output.emitted,
        )
        .await?;
    }
    let now = unix_now();
    sqlx::query(
        "UPDATE connections SET last_sync_at = ?, sync_cursor = COALESCE(?, sync_cursor),
           next_sync_at = ?
         WHERE source_id = ?",
    )
    .bind(now)
    .bind(&output.checkpoint)
    .bind((every > 0).then_some(now + every))
    .bind(source_id)
    .execute(writer.connection())
    .await?;
    writer.commit().await?;
    let write_time = writing.elapsed();
    Ok(SyncOutcome::Done(SyncReport {
        counts,
        warnings,
        emitted: output.emitted,
        http_requests: output.http_requests,
        token_refreshes: tokens.refreshes(),
        run_time,
        http_waiting: output.http_waiting,
        write_time,
    }))
}

/// "1 record", "12 records".
fn records(count: usize) -> String {
    format!("{count} record{}", if count == 1 { "" } else { "s" })
}

fn were(count: usize) -> &'static str {
    if count == 1 { "was" } else { "were" }
}

fn them(count: usize) -> &'static str {
    if count == 1 { "it" } else { "them" }
}

/// One run of the plugin's sync, spooling what it emits (see [`crate::spool`]).
async fn run_plugin(
    state: &AppState,
    plugin: Arc<crate::plugins::LoadedPlugin>,
    request: SyncRequest,
    context: impl FnOnce(mpsc::Sender<Vec<Prepared>>) -> RunContext,
) -> anyhow::Result<(
    Result<crate::plugins::RunOutput, RunFailure>,
    std::io::Result<Spool>,
)> {
    let (batches, mut received) = mpsc::channel::<Vec<Prepared>>(2);
    let ctx = context(batches);
    let mut spool = state.plugins.spool();
    let gathering = tokio::spawn(async move {
        while let Some(batch) = received.recv().await {
            // Dropping the receiver makes the plugin's next emit fail, ending the run.
            spool.push(batch)?;
        }
        Ok(spool)
    });
    let outcome = state.plugins.sync(plugin, request, ctx).await;
    Ok((outcome, gathering.await?))
}

/// Turns a failed run into what the job records, marking the source when the user must act.
async fn classify(
    state: &AppState,
    source_id: i64,
    failure: RunFailure,
    tokens: &ConnectionTokens,
) -> sqlx::Result<SyncOutcome> {
    let kept = "the records from earlier syncs are kept";
    Ok(match failure {
        RunFailure::Cancelled => SyncOutcome::Cancelled,
        RunFailure::Plugin(PluginError::Unauthorized) => match tokens.problem() {
            Some(RefreshProblem::Refused { message, detail }) => SyncOutcome::Failed {
                message,
                detail: Some(detail),
            },
            // The renewal was refused ahead of time, and now the token in hand has been too.
            Some(RefreshProblem::RefusedEarly { detail, .. }) => {
                sources::mark_needs_reconnect(&state.db, source_id, RECONNECT_MESSAGE).await?;
                SyncOutcome::Failed {
                    message: RECONNECT_MESSAGE.into(),
                    detail: Some(detail),
                }
            }
            Some(RefreshProblem::Unreachable(reason)) => SyncOutcome::Retry {
                reason: "The provider's sign-in service could not be reached to renew this \
                         connection's access."
                    .into(),
                detail: Some(reason),
                after_seconds: None,
            },
            None => {
                let message = "The provider refused this connection's access and it could not \
                               be renewed. Reconnect to sign in again; the records already here \
                               are kept.";
                sources::mark_needs_reconnect(&state.db, source_id, message).await?;
                SyncOutcome::Failed {
                    message: message.into(),
                    detail: Some(
                        "the provider answered 401 Unauthorized to a renewed access token".into(),
                    ),
                }
            }
        },
        RunFailure::Plugin(PluginError::RateLimited(seconds)) => SyncOutcome::Retry {
            reason: "The provider asked Fasten to slow down.".into(),
            detail: Some(format!("rate limited: wait {seconds} s")),
            after_seconds: Some(i64::from(seconds).clamp(1, 3600)),
        },
        RunFailure::Plugin(PluginError::Transient(message)) => SyncOutcome::Retry {
            reason: "The provider's server had a temporary problem.".into(),
            detail: Some(message),
            after_seconds: None,
        },
        RunFailure::Plugin(PluginError::Fatal(message) | PluginError::InvalidInput(message)) => {
            SyncOutcome::Failed {
                message: format!(
                    "The provider's server answered in a way Fasten could not use, so this sync \
                     stopped; {kept}. Try again later, and if it keeps failing, tell the provider."
                ),
                detail: Some(message),
            }
        }
        RunFailure::TimeLimit(seconds) => SyncOutcome::Failed {
            message: format!(
                "This sync took longer than Fasten allows and was stopped; {kept}. The next \
                 scheduled sync will try again."
            ),
            detail: Some(format!("the plugin ran past its time limit of {seconds} s")),
        },
        RunFailure::Unavailable(message) => SyncOutcome::failed(message),
        RunFailure::ShuttingDown => SyncOutcome::Retry {
            reason: "Fasten was stopping, so this sync was stopped before it finished; the \
                     records from earlier syncs are kept."
                .into(),
            detail: None,
            after_seconds: None,
        },
        other => SyncOutcome::Failed {
            message: format!(
                "The connector that syncs this source failed; {kept}. If it keeps failing, ask \
                 whoever runs Fasten to check Admin, Plugins."
            ),
            detail: Some(other.to_string()),
        },
    })
}
