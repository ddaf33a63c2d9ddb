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
use crate::fhir::identity::{Identity, OtherPatient, PatientGuard};
use crate::fhir::ingest::{Counts, Writer};
use crate::jobs::{self, Trigger};
use crate::plugins::{FileInput, LoadedPlugin, PluginHost, RunContext, RunFailure, RunOutput};
use crate::routing::{self, Claim, Content, Refusal};
use crate::spool::Spool;

/// What a successful import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub file_name: String,
    pub plugin: String,
    pub counts: Counts,
    pub warnings: Vec<String>,
    /// The job recording this import.
    pub job_id: i64,
    /// A family's file split by patient: what went to whom (empty for a file about one person).
    pub parts: Vec<Part>,
}

/// The records of one patient of a family's file, stored for their person.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    pub person_id: i64,
    pub person_name: String,
    pub person_slug: String,
    /// Who the file says the records are about.
    pub patient: String,
    pub counts: Counts,
    pub job_id: i64,
}

/// A family's file with patients Fasten could not match to anyone.
#[derive(Debug, Clone)]
pub struct Unplaced {
    /// (patient, the person they go to).
    pub placed: Vec<(String, String)>,
    pub unplaced: Vec<String>,
}

impl std::fmt::Display for Unplaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "This file holds the records of {} people.",
            self.placed.len() + self.unplaced.len()
        )?;
        if !self.placed.is_empty() {
            let placed: Vec<String> = self
                .placed
                .iter()
                .map(|(patient, person)| format!("{patient} (to {person})"))
                .collect();
            write!(f, " Fasten recognised {}.", placed.join("; "))?;
        }
        write!(
            f,
            " It cannot tell who in your family {} {}.",
            if self.unplaced.len() == 1 {
                "is"
            } else {
                "are"
            },
            self.unplaced.join("; ")
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// No loaded plugin takes this kind of file.
    #[error("Fasten cannot import {0}: {1}.")]
    NoPlugin(String, String),
    /// Plugins take files with this one's ending, but its content is none of theirs (an XML
    /// file with another root element): refused before any plugin runs.
    #[error("Fasten cannot import {0}: {1}. Nothing from this file was stored.")]
    NotRecognised(String, String),
    /// The run failed; nothing from the file was stored.
    #[error("{file}: {} Nothing from this file was stored.", full_stop(&.failure.to_string()))]
    Failed { file: String, failure: RunFailure },
    /// The file's patient is clearly someone else than the person's; nothing was stored.
    #[error("{} Nothing from this file was stored.", .0.sentence("This file"))]
    OtherPatient(Box<OtherPatient>),
    /// A family's file with patients nobody could be matched to; nothing was stored.
    #[error("{0} Nothing from this file was stored.")]
    Unplaced(Box<Unplaced>),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The person's records would grow past `[plugins] max_person_bytes`.
    #[error(
        "{file}: storing it would take {name}'s records past the {limit_mib} MiB this Fasten allows one person (the max_person_bytes setting). Nothing from this file was stored."
    )]
    PersonQuota {
        file: String,
        name: String,
        limit_mib: u64,
    },
    /// The records could not be set aside on disk while the file was read.
    #[error(
        "Fasten could not set this file's records aside while reading it ({0}). Nothing from this file was stored."
    )]
    Spool(#[from] std::io::Error),
}

/// A plugin's message as one sentence: plugins end theirs with a full stop, the host's own do not.
fn full_stop(message: &str) -> String {
    if message.ends_with(['.', '!', '?']) {
        message.to_string()
    } else {
        format!("{message}.")
    }
}

/// Picks the plugin for a file by the file types and content signatures the plugins declare
/// (the rule is [`crate::routing::route`]), looking at the start of the file at `path` (and a
/// zip's list of members). Nothing is recorded: a refused file touches no source.
pub fn choose_plugin(
    plugins: &PluginHost,
    name: &str,
    path: &Path,
) -> Result<Arc<LoadedPlugin>, ImportError> {
    let importers = plugins.file_importers();
    let claims: Vec<Claim> = importers.iter().map(|p| p.claim()).collect();
    match routing::route(&claims, name, &Content::of_file(path)) {
        Ok(i) => Ok(importers[i].clone()),
        Err(Refusal::Unclaimed(why)) => Err(ImportError::NoPlugin(name.to_string(), why)),
        Err(Refusal::NotRecognised(why)) => Err(ImportError::NotRecognised(name.to_string(), why)),
    }
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
    /// The people a family's file may be split between, besides the person it is imported for:
    /// each patient goes to the one it is recognisably about. Set by the caller from who is
    /// importing (the people an account manages), never from a form.
    #[serde(skip)]
    pub family: Vec<i64>,
    /// The account that manages a new person made for each patient of a family's file who is
    /// nobody in `family` (the user chose "create people for the others").
    #[serde(skip)]
    pub create_people_for: Option<i64>,
}

impl ImportOptions {
    /// Only known values pass: the text ends up in the plugin's view of the file.
    pub fn validated(self) -> ImportOptions {
        ImportOptions {
            dates: self
                .dates
                .filter(|d| matches!(d.as_str(), "ymd" | "mdy" | "dmy")),
            anyway: self.anyway,
            family: self.family,
            create_people_for: self.create_people_for,
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
    state: Option<crate::plugins::PluginState>,
    consume: impl FnOnce(mpsc::Receiver<Vec<Prepared>>) -> tokio::task::JoinHandle<T>,
) -> Result<(Result<RunOutput, RunFailure>, T), ImportError> {
    let (batches, received) = mpsc::channel::<Vec<Prepared>>(4);
    let consuming = consume(received);
    let ctx = RunContext {
        batches,
        progress: Arc::new(Mutex::new((0, None))),
        state,
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

/// Runs a file's plugin without storing anything, folding each resource it emits into `state`:
/// for looking at a file (who it is about, what it holds) before it is imported.
async fn run_without_storing<T: Send + 'static>(
    plugins: &PluginHost,
    plugin: &Arc<LoadedPlugin>,
    path: &Path,
    file_name: &str,
    options: &ImportOptions,
    state: T,
    mut fold: impl FnMut(&mut T, Prepared) + Send + 'static,
) -> Result<(RunOutput, T), ImportError> {
    let (outcome, state) = run_plugin(
        plugins,
        plugin.clone(),
        path,
        file_name,
        options,
        None,
        |mut received| {
            tokio::spawn(async move {
                let mut state = state;
                while let Some(batch) = received.recv().await {
                    for prepared in batch {
                        fold(&mut state, prepared);
                    }
                }
                state
            })
        },
    )
    .await?;
    let output = outcome.map_err(|failure| ImportError::Failed {
        file: file_name.to_string(),
        failure,
    })?;
    Ok((output, state))
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
    let plugin = match choose_plugin(plugins, file_name, path) {
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
        db, plugins, &plugin, person_id, source_id, job_id, path, file_name, options,
    )
    .await
    .map(|(counts, warnings)| ImportReport {
        file_name: file_name.to_string(),
        plugin: plugin.manifest.name.clone(),
        counts,
        warnings,
        job_id,
        parts: Vec::new(),
    });
    // A family's file (several patients): split it by patient, each to their person. Only such
    // a file pays for reading it twice more.
    let family_file = match &result {
        Err(ImportError::OtherPatient(other)) if other.within_input => true,
        // The person's own patient may come first in a family's file, or after another's.
        Err(ImportError::OtherPatient(_)) => {
            let patients = patients_in(plugins, &plugin, path, file_name, options).await?;
            patients
                .iter()
                .any(|(_, a)| patients.iter().any(|(_, b)| a.clearly_differs(b)))
        }
        _ => false,
    };
    if family_file {
        let split = import_family(
            db, plugins, &plugin, person_id, job_id, path, file_name, via, options,
        )
        .await;
        // A split that stored its parts recorded this job with them.
        if let Err(e) = &split {
            jobs::finish_import(db, job_id, Err(&e.to_string())).await?;
        }
        return split.map(|mut report| {
            report.job_id = job_id;
            report
        });
    }
    match &result {
        // Recorded in the transaction that stored the records.
        Ok(report) => {
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

/// Every Patient in a file: (id, who), in file order, by running its plugin without storing.
async fn patients_in(
    plugins: &PluginHost,
    plugin: &Arc<LoadedPlugin>,
    path: &Path,
    file_name: &str,
    options: &ImportOptions,
) -> Result<Vec<(String, Identity)>, ImportError> {
    let (_, found) = run_without_storing(
        plugins,
        plugin,
        path,
        file_name,
        options,
        Vec::<(String, Identity)>::new(),
        |found, p| {
            if p.resource_type != "Patient" || found.iter().any(|(id, _)| *id == p.resource_id) {
                return;
            }
            let identity = serde_json::from_str::<serde_json::Value>(&p.json)
                .ok()
                .and_then(|v| Identity::of(&v));
            if let Some(identity) = identity {
                found.push((p.resource_id, identity));
            }
        },
    )
    .await?;
    Ok(found)
}

/// The patient a stored resource is about: itself for a Patient, else the first of the file's
/// patients it references. `None` for what belongs to nobody in particular (an organisation, a
/// practitioner, a medicine), which each part gets a copy of.
fn patient_of<'a>(prepared: &Prepared, patients: &'a [String]) -> Option<&'a String> {
    if prepared.resource_type == "Patient" {
        return patients.iter().find(|id| **id == prepared.resource_id);
    }
    let value = serde_json::from_str::<serde_json::Value>(&prepared.json).ok()?;
    crate::fhir::identity::patient_references(&value)
        .iter()
        .find_map(|id| patients.iter().find(|p| *p == id))
}

/// A person a family's file may go to, and who their records say they are.
struct Candidate {
    person: crate::store::people::Person,
    identity: Identity,
}

async fn candidate(db: &SqlitePool, person_id: i64) -> sqlx::Result<Option<Candidate>> {
    let Some(person) = crate::store::people::by_id(db, person_id).await? else {
        return Ok(None);
    };
    let identity = match crate::fhir::identity::stored_identity(db, person_id).await? {
        Some(identity) => identity,
        None => Identity::of_person(&person.name, person.birth_date.as_deref()),
    };
    Ok(Some(Candidate { person, identity }))
}

/// Imports a family's file: each patient's records go to the person they are recognisably about
/// (among `person_id` and `options.family`), with what belongs to nobody in particular copied to
/// each; all in one transaction, each part recorded as a job of its person. A patient nobody is
/// recognised as stops the import (nothing stored), unless `options.create_people_for` asks for
/// a new person for each.
#[allow(clippy::too_many_arguments)]
async fn import_family(
    db: &SqlitePool,
    plugins: &PluginHost,
    plugin: &Arc<LoadedPlugin>,
    person_id: i64,
    file_job: i64,
    path: &Path,
    file_name: &str,
    via: Trigger,
    options: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let patients = patients_in(plugins, plugin, path, file_name, options).await?;
    let mut candidates = Vec::new();
    let mut ids = vec![person_id];
    ids.extend(options.family.iter().copied().filter(|id| *id != person_id));
    for id in ids {
        if let Some(c) = candidate(db, id).await? {
            candidates.push(c);
        }
    }
    // patient id -> index into `candidates`
    let mut placement: Vec<(String, Identity, Option<usize>)> = Vec::new();
    for (id, identity) in &patients {
        let matching: Vec<usize> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.identity.same_person(identity))
            .map(|(i, _)| i)
            .collect();
        let place = (matching.len() == 1).then(|| matching[0]);
        placement.push((id.clone(), identity.clone(), place));
    }
    if placement.iter().any(|(_, _, place)| place.is_none()) {
        match options.create_people_for {
            Some(manager) => {
                for entry in placement.iter_mut().filter(|(_, _, p)| p.is_none()) {
                    // Two records of one person (two systems' ids) make one new person.
                    let same = candidates
                        .iter()
                        .position(|c| c.identity.same_person(&entry.1));
                    let index = match same {
                        Some(i) => i,
                        None => {
                            let mut conn = db.acquire().await?;
                            let person = crate::store::people::create_unique(
                                &mut conn,
                                &entry.1.display,
                                entry.1.birth_date.as_deref(),
                                manager,
                            )
                            .await?;
                            candidates.push(Candidate {
                                person,
                                identity: entry.1.clone(),
                            });
                            candidates.len() - 1
                        }
                    };
                    entry.2 = Some(index);
                }
            }
            None => {
                return Err(ImportError::Unplaced(Box::new(Unplaced {
                    placed: placement
                        .iter()
                        .filter_map(|(_, who, place)| {
                            place.map(|i| (who.describe(), candidates[i].person.name.clone()))
                        })
                        .collect(),
                    unplaced: placement
                        .iter()
                        .filter(|(_, _, place)| place.is_none())
                        .map(|(_, who, _)| who.describe())
                        .collect(),
                })));
            }
        }
    }
    // One source and one job per person the file goes to.
    let mut targets: Vec<(usize, i64, i64)> = Vec::new(); // (candidate, source, job)
    for (_, _, place) in &placement {
        let index = place.expect("every patient is placed");
        if targets.iter().any(|(i, _, _)| *i == index) {
            continue;
        }
        let person = &candidates[index].person;
        let source_id = upload_source(db, person.id, plugin).await?;
        let job_id = jobs::start_import(
            db,
            person.id,
            Some((source_id, &upload_source_name(plugin))),
            file_name,
            via,
        )
        .await?;
        targets.push((index, source_id, job_id));
    }
    let patient_ids: Vec<String> = placement.iter().map(|(id, _, _)| id.clone()).collect();
    let target_of: std::collections::HashMap<String, usize> = placement
        .iter()
        .map(|(id, _, place)| (id.clone(), place.expect("placed")))
        .collect();
    let routes: Vec<(usize, i64, i64)> = targets
        .iter()
        .map(|(index, source, _)| (*index, candidates[*index].person.id, *source))
        .collect();
    let jobs_of_parts: Vec<i64> = targets.iter().map(|(_, _, job)| *job).collect();
    let failed = |message: String| {
        let jobs_of_parts = jobs_of_parts.clone();
        async move {
            for job in jobs_of_parts {
                jobs::finish_import(db, job, Err(&message)).await?;
            }
            Ok::<_, sqlx::Error>(())
        }
    };
    let (output, mut spool) =
        match spool_run(plugins, plugin, path, file_name, options, None, |_| Ok(())).await {
            Ok(done) => done,
            Err(error) => {
                failed(error.to_string()).await?;
                return Err(error);
            }
        };
    // Each patient's records go to their person; what is about nobody in particular to each.
    let written = async {
        let mut writer = Writer::begin(db, person_id, targets[0].1).await?;
        let mut counts: Vec<Counts> = vec![Counts::default(); routes.len()];
        let mut reader = spool.reader(crate::spool::CHUNK_RECORDS)?;
        while let Some(batch) = reader.next_chunk()? {
            for (slot, (index, person, source)) in routes.iter().enumerate() {
                let part: Vec<Prepared> = batch
                    .iter()
                    .filter(|p| match patient_of(p, &patient_ids) {
                        Some(patient) => target_of.get(patient) == Some(index),
                        None => true,
                    })
                    .cloned()
                    .collect();
                if part.is_empty() {
                    continue;
                }
                writer.retarget(*person, *source);
                let before = writer.counts;
                writer.write(&part).await?;
                let after = writer.counts;
                counts[slot].added += after.added - before.added;
                counts[slot].updated += after.updated - before.updated;
                counts[slot].unchanged += after.unchanged - before.unchanged;
            }
        }
        for (_, person, source) in &routes {
            writer.retarget(*person, *source);
            within_person_quota(db, plugins, &mut writer, *person, file_name).await?;
        }
        // The jobs say what was stored in the same transaction as the records. The file's own
        // job stored nothing itself: it says where the file went; each part has its own.
        let note = format!(
            "The file held the records of {} people; each part was stored for its person.",
            targets.len()
        );
        jobs::finish_import(
            writer.connection(),
            file_job,
            Ok((&Counts::default(), &[note][..])),
        )
        .await?;
        for ((_, _, job), counts) in targets.iter().zip(&counts) {
            jobs::finish_import(writer.connection(), *job, Ok((counts, &output.warnings))).await?;
        }
        writer.commit().await?;
        Ok::<_, ImportError>(counts)
    };
    let counts = match written.await {
        Ok(counts) => counts,
        Err(error) => {
            failed(error.to_string()).await?;
            return Err(error);
        }
    };
    let mut parts = Vec::new();
    let mut total = Counts::default();
    for ((index, _, job_id), counts) in targets.iter().zip(counts) {
        let person = &candidates[*index].person;
        let patient = placement
            .iter()
            .find(|(_, _, place)| *place == Some(*index))
            .map(|(_, who, _)| who.describe())
            .unwrap_or_default();
        total.added += counts.added;
        total.updated += counts.updated;
        total.unchanged += counts.unchanged;
        tracing::info!(
            person_id = person.id,
            job_id,
            added = counts.added,
            "family file part imported"
        );
        parts.push(Part {
            person_id: person.id,
            person_name: person.name.clone(),
            person_slug: person.slug.clone(),
            patient,
            counts,
            job_id: *job_id,
        });
    }
    Ok(ImportReport {
        file_name: file_name.to_string(),
        plugin: plugin.manifest.name.clone(),
        counts: total,
        warnings: output.warnings,
        job_id: targets[0].2,
        parts,
    })
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
    job_id: i64,
    path: &Path,
    file_name: &str,
    options: &ImportOptions,
) -> Result<(Counts, Vec<String>), ImportError> {
    let mut guard = PatientGuard::load(db, person_id, options.anyway).await?;
    let state = crate::plugins::state::load(db, source_id).await?;
    let started = std::time::Instant::now();
    let (output, mut spool) = spool_run(
        plugins,
        plugin,
        path,
        file_name,
        options,
        Some(state),
        move |batch| guard.check(batch).map_err(ImportError::OtherPatient),
    )
    .await?;
    let ran = started.elapsed();
    // The run succeeded: its records and state are written in one short transaction.
    let mut writer = Writer::begin(db, person_id, source_id).await?;
    let mut reader = spool.reader(crate::spool::CHUNK_RECORDS)?;
    while let Some(chunk) = reader.next_chunk()? {
        writer.write(&chunk).await?;
    }
    within_person_quota(db, plugins, &mut writer, person_id, file_name).await?;
    if let Some(state) = &output.state {
        writer.save_plugin_state(state).await?;
    }
    // The job says what was stored in the same transaction as the records, so after a crash
    // the two agree.
    let stored = writer.counts;
    jobs::finish_import(writer.connection(), job_id, Ok((&stored, &output.warnings))).await?;
    let counts = writer.commit().await?;
    tracing::debug!(
        file_name,
        records = spool.len(),
        run_ms = ran.as_millis() as u64,
        write_ms = (started.elapsed() - ran).as_millis() as u64,
        "file stored"
    );
    Ok((counts, output.warnings))
}

/// Refuses a write that takes the person past `[plugins] max_person_bytes` (when set); the
/// caller's transaction is then dropped, so nothing is stored.
async fn within_person_quota(
    db: &SqlitePool,
    plugins: &PluginHost,
    writer: &mut Writer,
    person_id: i64,
    file_name: &str,
) -> Result<(), ImportError> {
    let Some(limit) = plugins.quotas().person_bytes else {
        return Ok(());
    };
    if writer.person_bytes().await? <= limit {
        return Ok(());
    }
    let name = crate::store::people::by_id(db, person_id)
        .await?
        .map(|p| p.name)
        .unwrap_or_default();
    Err(ImportError::PersonQuota {
        file: file_name.to_string(),
        name,
        limit_mib: limit >> 20,
    })
}

/// Runs a file's plugin, setting what it emits aside in a spool (see [`crate::spool`]) after
/// `check` passes each batch: nothing is written while the plugin runs. Answers the run's
/// output and the spool, or why the run or a check failed.
async fn spool_run(
    plugins: &PluginHost,
    plugin: &Arc<LoadedPlugin>,
    path: &Path,
    file_name: &str,
    options: &ImportOptions,
    state: Option<crate::plugins::PluginState>,
    mut check: impl FnMut(&[Prepared]) -> Result<(), ImportError> + Send + 'static,
) -> Result<(RunOutput, Spool), ImportError> {
    let mut spool = plugins.spool();
    let (outcome, spooled) = run_plugin(
        plugins,
        plugin.clone(),
        path,
        file_name,
        options,
        state,
        |mut received| {
            tokio::spawn(async move {
                while let Some(batch) = received.recv().await {
                    // Dropping the receiver makes the plugin's next emit fail, ending the run.
                    check(&batch)?;
                    spool.push(batch)?;
                }
                Ok::<_, ImportError>(spool)
            })
        },
    )
    .await?;
    match (outcome, spooled) {
        (Ok(output), Ok(spool)) => Ok((output, spool)),
        (_, Err(e)) => Err(e),
        (Err(failure), Ok(_)) => Err(ImportError::Failed {
            file: file_name.to_string(),
            failure,
        }),
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
    let plugin = choose_plugin(plugins, file_name, path)?;
    let (output, (counts, sample)) = run_without_storing(
        plugins,
        &plugin,
        path,
        file_name,
        options,
        (Vec::<(String, u64)>::new(), Vec::new()),
        move |(counts, sample), prepared| {
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
        },
    )
    .await?;
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
) -> Result<Option<Identity>, ImportError> {
    let plugin = choose_plugin(plugins, file_name, path)?;
    let patients =
        patients_in(plugins, &plugin, path, file_name, &ImportOptions::default()).await?;
    Ok(patients.into_iter().next().map(|(_, identity)| identity))
}
