//! `cargo bench -p fasten --bench sync`: syncs the largest Synthea patient (Fletcher Hyatt) from
//! the local real peers (sekmet-fhir behind the SMART authorization server's token-checking
//! proxy, see `host/tests/peers`) through `fasten::sync::run`, the way a sync job does. For the
//! default `Patient/$everything` mode and for per-type searches (`everything = false`), each
//! round takes a fresh data folder and measures a first sync into its empty database, then a
//! re-sync of the same source (incremental, from the first run's cursor). Each row shows the
//! round with the median wall time: wall time, resources emitted and per second, HTTP requests,
//! and where the time went (plugin CPU = run time − network wait, waiting on the network,
//! writing to SQLite). Then the peak RSS.
//! Prints figures; asserts nothing beyond the syncs succeeding and storing something.
//!
//! Skipped (with a message) when the peers are not installed (`.ci/peers.sh`), unless `CI` is set.

#[path = "support/rss.rs"]
mod rss;

// Its unit test is left out of a bench build, leaving the test's import unused.
#[allow(unused_imports)]
#[path = "../tests/peers/mod.rs"]
mod peers;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fasten::sources::smart::labels;
use fasten::state::AppState;
use fasten::sync::{SyncOutcome, SyncReport};
use peers::{OAuthPeer, Sekmet};

use rss::peak_rss_mib;

const PATIENT_FILE: &str = "Fletcher_Hyatt_fe0562b5-f517-4951-8366-32fdab088930.json";
const CLIENT_ID: &str = "fasten-bench";
const SCOPES: &str = "launch/patient patient/*.read offline_access";
/// Rounds of each measurement; each round has its own data folder.
const ROUNDS: usize = 3;

/// The two ways the FHIR plugin fetches a patient: the connection's `sync_settings`.
const MODES: &[(&str, &str)] = &[
    ("$everything", "[]"),
    ("per-type", r#"[["everything","false"]]"#),
];

/// One sync: its wall time around `sync::run` and the report.
struct Sample {
    wall: Duration,
    report: SyncReport,
}

fn main() -> anyhow::Result<()> {
    if !peers::require() {
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let bench_started = Instant::now();
    let bundle_path = peers::synthea(PATIENT_FILE);
    let bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(&bundle_path)?)?;
    let entries = bundle["entry"].as_array().map_or(0, Vec::len);
    drop(bundle);

    let sekmet = Sekmet::start().await;
    let started = Instant::now();
    let patient = sekmet.load_bundle(&bundle_path).await;
    let loaded = started.elapsed();
    let oauth = OAuthPeer::start(&[
        ("FHIR_UPSTREAM", sekmet.base.as_str()),
        ("PATIENT_ID", patient.as_str()),
        ("CLIENT_ID", CLIENT_ID),
        ("EXPIRES_IN", "3600"),
    ])
    .await;
    // One sign-in serves every connection: the proxy accepts any unexpired token it issued.
    let token = oauth.code_flow(CLIENT_ID, SCOPES).await;
    let access = token["access_token"]
        .as_str()
        .expect("an access token")
        .to_string();
    let refresh = token["refresh_token"].as_str().map(str::to_string);
    println!(
        "{PATIENT_FILE}: {entries} bundle entries, loaded into sekmet in {:.0} ms; \
         peers up after {:.1} s",
        ms(loaded),
        bench_started.elapsed().as_secs_f64()
    );
    let rss_before = peak_rss_mib();

    // The compiled plugin is kept between data folders, so each round pays for the sync only.
    let cache = tempfile::tempdir()?;
    let mut rows = Vec::new();
    for (mode, settings) in MODES {
        let mut first = Vec::new();
        let mut again = Vec::new();
        for _ in 0..ROUNDS {
            let dir = tempfile::tempdir()?;
            copy_files(cache.path(), &dir.path().join("plugin-cache"))?;
            let state = fasten::open_state(config(dir.path())?).await?;
            if std::fs::read_dir(cache.path())?.next().is_none() {
                copy_files(&dir.path().join("plugin-cache"), cache.path())?;
            }
            let hash = "not-a-password-hash";
            let user = fasten::store::users::create(
                &state.db,
                "bench",
                "bench",
                hash,
                fasten::store::users::Role::Admin,
            )
            .await?
            .id;
            let connection = Connection {
                oauth: &oauth,
                patient: &patient,
                access: &access,
                refresh: refresh.as_deref(),
                settings,
            };
            let source_id = connect(&state, user, mode, &connection).await?;
            let sample = sync(&state, source_id).await?;
            anyhow::ensure!(
                sample.report.counts.added > 0,
                "the first {mode} sync stored nothing: {:?}",
                sample.report.counts
            );
            first.push(sample);
            again.push(sync(&state, source_id).await?);
            state.db.close().await;
        }
        rows.push((format!("first sync, {mode}"), first));
        rows.push((format!("re-sync, {mode}"), again));
    }

    println!(
        "each row: the round with the median wall time of {ROUNDS} (range: fastest-slowest); \
         plugin = run time − network wait; shares are of the wall time"
    );
    println!(
        "{:<24} {:>7} {:>9} {:>7} {:>6} {:>4} {:>10} {:>11} {:>10} {:>7} {:>17}",
        "",
        "wall ms",
        "range",
        "emitted",
        "res/s",
        "HTTP",
        "plugin ms",
        "network ms",
        "write ms",
        "refresh",
        "add/upd/unchanged"
    );
    for (name, samples) in &rows {
        print_row(name, samples);
    }
    for (name, samples) in &rows {
        let warnings = &samples[0].report.warnings;
        if !warnings.is_empty() {
            println!(
                "{name}: {} warning(s), first: {}",
                warnings.len(),
                warnings[0]
            );
        }
    }
    println!(
        "peak RSS (VmHWM): {rss_before:.1} MiB before the syncs, {:.1} MiB after all {} syncs",
        peak_rss_mib(),
        rows.iter().map(|(_, s)| s.len()).sum::<usize>()
    );
    println!("bench took {:.1} s", bench_started.elapsed().as_secs_f64());
    Ok(())
}

fn config(data_dir: &Path) -> anyhow::Result<fasten::config::Config> {
    let mut config =
        fasten::config::Config::load(Some(&peers::root().join("config.toml")), Vec::new())?;
    config.data_dir = data_dir.to_path_buf();
    config.plugins.registry_dir = data_dir.join("no-registry");
    config.plugins.allow_http_loopback = true;
    config.plugins.allow_private_networks = true;
    Ok(config)
}

/// What a SMART connection to the peers needs.
struct Connection<'a> {
    oauth: &'a OAuthPeer,
    patient: &'a str,
    access: &'a str,
    refresh: Option<&'a str>,
    settings: &'a str,
}

/// A source with a connected SMART connection, as the OAuth callback stores it; returns its id.
async fn connect(
    state: &AppState,
    user_id: i64,
    name: &str,
    c: &Connection<'_>,
) -> anyhow::Result<i64> {
    let now = fasten::store::unix_now();
    let source_id: i64 = sqlx::query_scalar(
        "INSERT INTO sources (person_id, kind, display_name, plugin_id, created_at, updated_at)
         VALUES (?, 'smart', ?, 'fhir', ?, ?) RETURNING id",
    )
    .bind(user_id)
    .bind(name)
    .bind(now)
    .bind(now)
    .fetch_one(&state.db)
    .await?;
    sqlx::query(
        "INSERT INTO connections (source_id, fhir_base, authorize_url, token_url, client_id,
           client_auth, scopes_requested, scopes_granted, patient_id, access_token, refresh_token,
           access_expires_at, status, sync_settings, connected_at)
         VALUES (?, ?, ?, ?, ?, 'none', ?, ?, ?, ?, ?, ?, 'connected', ?, ?)",
    )
    .bind(source_id)
    .bind(&c.oauth.fhir_base)
    .bind(format!("{}/authorize", c.oauth.url))
    .bind(format!("{}/token", c.oauth.url))
    .bind(CLIENT_ID)
    .bind(SCOPES)
    .bind(SCOPES)
    .bind(c.patient)
    .bind(state.vault.seal(&labels::access(source_id), c.access))
    .bind(
        c.refresh
            .map(|t| state.vault.seal(&labels::refresh(source_id), t)),
    )
    .bind(now + 3600)
    .bind(c.settings)
    .bind(now)
    .execute(&state.db)
    .await?;
    Ok(source_id)
}

async fn sync(state: &AppState, source_id: i64) -> anyhow::Result<Sample> {
    let cancel = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Mutex::new((0, None)));
    let started = Instant::now();
    let outcome = fasten::sync::run(state, source_id, None, cancel, progress).await;
    let wall = started.elapsed();
    match outcome {
        SyncOutcome::Done(report) => Ok(Sample { wall, report }),
        other => anyhow::bail!("the sync of source {source_id} did not finish: {other:?}"),
    }
}

/// The round with the median wall time, so that its split adds up; with the fastest and
/// slowest wall times beside it.
fn print_row(name: &str, samples: &[Sample]) {
    let mut by_wall: Vec<&Sample> = samples.iter().collect();
    by_wall.sort_by_key(|s| s.wall);
    let Sample { wall, report } = by_wall[by_wall.len() / 2];
    let range = format!(
        "{:.0}-{:.0}",
        ms(by_wall[0].wall),
        ms(by_wall[by_wall.len() - 1].wall)
    );
    let plugin = report.run_time.saturating_sub(report.http_waiting);
    let share = |part: Duration| 100.0 * part.as_secs_f64() / wall.as_secs_f64();
    println!(
        "{name:<24} {:>7.0} {:>9} {:>7} {:>6.0} {:>4} {:>4.0} ({:>2.0}%) {:>5.0} ({:>2.0}%) \
         {:>4.0} ({:>2.0}%) {:>7} {:>17}",
        ms(*wall),
        range,
        report.emitted,
        report.emitted as f64 / wall.as_secs_f64(),
        report.http_requests,
        ms(plugin),
        share(plugin),
        ms(report.http_waiting),
        share(report.http_waiting),
        ms(report.write_time),
        share(report.write_time),
        report.token_refreshes,
        format!(
            "{}/{}/{}",
            report.counts.added, report.counts.updated, report.counts.unchanged
        ),
    );
}

/// Copies the files of `from` (if it exists) into `to`.
fn copy_files(from: &Path, to: &Path) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(());
    };
    std::fs::create_dir_all(to)?;
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
