//! `cargo bench --bench ingest`: imports the five Synthea bundles through the FHIR plugin and,
//! in the same run, inserts the same resources with a minimal direct sqlx loop into the same
//! schema. Also reports plugin start-up (cold and warm cache), instantiate + describe, and the
//! peak RSS after importing the largest bundle. Prints figures; asserts nothing.

#[path = "support/rss.rs"]
mod rss;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use rss::peak_rss_mib;

fn synthea() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/fhir/synthea");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    // Largest first, so the peak RSS reading below is about the largest bundle.
    files.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
    files
}

fn main() -> anyhow::Result<()> {
    // RUST_LOG=fasten::import=debug shows how long each file's run and write took.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fasten::config::Config::load(None, Vec::new())?;
    config.data_dir = dir.path().to_path_buf();
    config.plugins.registry_dir = dir.path().join("no-registry");
    fasten::prepare_data_dir(&config.data_dir)?;
    let db = fasten::store::open(&config.database_path()).await?;

    let started = Instant::now();
    let plugins = fasten::open_plugins(&config, &db).await?;
    let cold = started.elapsed();
    drop(plugins);
    let started = Instant::now();
    let plugins = fasten::open_plugins(&config, &db).await?;
    let warm = started.elapsed();
    println!(
        "plugin start-up (all bundled plugins): cold cache {:.1} ms, warm cache {:.1} ms",
        ms(cold),
        ms(warm)
    );
    let fhir = plugins.get("fhir").expect("the FHIR plugin loads");
    let rounds = 200;
    let started = Instant::now();
    for _ in 0..rounds {
        plugins.describe(&fhir).await?;
    }
    println!(
        "instantiate + describe: {:.1} µs per call (mean of {rounds})",
        started.elapsed().as_secs_f64() * 1e6 / rounds as f64
    );

    let hash = fasten::auth::password::hash_blocking("benchmark-password");
    let member = |name: String| {
        let (db, hash) = (db.clone(), hash.clone());
        async move {
            anyhow::Ok(
                fasten::store::users::create(
                    &db,
                    &name,
                    &name,
                    &hash,
                    fasten::store::users::Role::Member,
                )
                .await?
                .person_id,
            )
        }
    };
    let raw_person = member("raw".into()).await?;

    let files = synthea();
    let mut plugin_resources = 0u64;
    let mut plugin_time = Duration::ZERO;
    for (i, path) in files.iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // Each bundle is another patient: each goes to a person of its own.
        let person = member(format!("plugin{i}")).await?;
        let started = Instant::now();
        let report = fasten::import::import_file(
            &db,
            &plugins,
            person,
            path,
            &name,
            fasten::jobs::Trigger::Cli,
            &Default::default(),
        )
        .await?;
        let took = started.elapsed();
        plugin_time += took;
        plugin_resources += report.counts.total();
        println!(
            "plugin import {name}: {} resources in {:.1} ms",
            report.counts.total(),
            ms(took)
        );
        if i == 0 {
            println!(
                "peak RSS after importing the largest bundle: {:.1} MiB",
                peak_rss_mib()
            );
        }
    }

    // The baseline: parse in the host and insert rows directly, one transaction per file.
    let source: i64 = sqlx::query_scalar(
        "INSERT INTO sources (person_id, kind, display_name, created_at, updated_at) VALUES (?, 'raw', 'raw', 0, 0) RETURNING id",
    )
    .bind(raw_person)
    .fetch_one(&db)
    .await?;
    let mut raw_resources = 0u64;
    let mut raw_time = Duration::ZERO;
    for path in &files {
        let started = Instant::now();
        let bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
        let mut tx = db.begin().await?;
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let resource = &entry["resource"];
            let json = resource.to_string();
            let hash = Sha256::digest(json.as_bytes());
            sqlx::query(
                "INSERT OR REPLACE INTO resources (person_id, source_id, resource_type, resource_id, content_hash, json, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, 0)",
            )
            .bind(raw_person)
            .bind(source)
            .bind(resource["resourceType"].as_str())
            .bind(resource["id"].as_str())
            .bind(&hash[..])
            .bind(&json)
            .execute(&mut *tx)
            .await?;
            raw_resources += 1;
        }
        tx.commit().await?;
        raw_time += started.elapsed();
    }
    let plugin_rate = plugin_resources as f64 / plugin_time.as_secs_f64();
    let raw_rate = raw_resources as f64 / raw_time.as_secs_f64();
    println!(
        "ingest ratio: {:.2} (plugin {:.0} res/s, raw {:.0} res/s)",
        plugin_rate / raw_rate,
        plugin_rate,
        raw_rate
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
