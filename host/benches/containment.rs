//! `cargo bench -p fasten --bench containment`: one run of about 1 GB of records through the
//! whole import path (the test plugin's `emit-bulk`, the spool, the one transaction at the end),
//! printing the peak RSS of this process, the time the run and the write took, and the size of
//! the database. A sync uses the same spool. Prints figures; asserts nothing beyond the import
//! succeeding.
//!
//! `FASTEN_BENCH_MIB` sets the size (default 1024).

#[path = "support/rss.rs"]
mod rss;

use std::time::Instant;

use rss::peak_rss_mib;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let mib: u64 = std::env::var("FASTEN_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let record_bytes = 9_000u64;
    let count = (mib << 20) / (record_bytes + 60);

    let dir = tempfile::tempdir()?;
    let registry = dir.path().join("registry");
    let plugin_dir = registry.join("test-hostile");
    std::fs::create_dir_all(&plugin_dir)?;
    let artifact = std::path::Path::new(env!("BUILT_PLUGIN_ARTIFACTS"))
        .join("fasten_plugin_test_hostile.wasm");
    let bytes = std::fs::read(&artifact)?;
    std::fs::write(plugin_dir.join("hostile.wasm"), &bytes)?;
    let sha = fasten::plugins::sha256_hex(&bytes);
    std::fs::write(
        plugin_dir.join("plugin.toml"),
        format!(
            "id = \"test-hostile\"\nname = \"Hostile test plugin\"\nversion = \"0.1.0\"\n\
             api = \"fasten:connector@0.1\"\nkind = \"file\"\nartifact = \"hostile.wasm\"\n\
             sha256 = \"{sha}\"\n\n[limits]\nmemory_mib = 64\nrun_seconds = 3600\n"
        ),
    )?;
    let mut config = fasten::config::Config::load(None, Vec::new())?;
    config.data_dir = dir.path().join("data");
    config.plugins.registry_dir = registry.clone();
    fasten::prepare_data_dir(&config.data_dir)?;
    let db = fasten::store::open(&config.database_path()).await?;
    let hash = fasten::auth::password::hash_blocking("benchmark-password");
    let user = fasten::store::users::create(
        &db,
        "bench",
        "Bench",
        &hash,
        fasten::store::users::Role::Admin,
    )
    .await?;
    let terms =
        fasten::plugins::manifest::Manifest::load(&plugin_dir.join("plugin.toml"))?.terms_sha256();
    sqlx::query(
        "INSERT INTO plugin_grants (plugin_id, enabled, sha256, terms_sha256, allowed_hosts,
           decided_by, decided_at) VALUES ('test-hostile', 1, ?, ?, '[]', ?, 0)",
    )
    .bind(&sha)
    .bind(&terms)
    .bind(user.id)
    .execute(&db)
    .await?;
    let plugins = fasten::open_plugins(&config, &db).await?;
    println!("peak RSS before the run: {:.1} MiB", peak_rss_mib());

    let command = dir.path().join("bulk.hostile");
    std::fs::write(&command, format!("emit-bulk {count} {record_bytes}"))?;
    let started = Instant::now();
    let report = fasten::import::import_file(
        &db,
        &plugins,
        user.person_id,
        &command,
        "bulk.hostile",
        fasten::jobs::Trigger::Cli,
        &Default::default(),
    )
    .await?;
    let took = started.elapsed();
    let database = std::fs::metadata(config.database_path())?.len()
        + std::fs::metadata(config.data_dir.join("fasten.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!(
        "one run of {} records, {:.0} MiB of JSON: stored {} in {:.1} s ({:.0} records/s)",
        count,
        (count * (record_bytes + 60)) as f64 / (1 << 20) as f64,
        report.counts.added,
        took.as_secs_f64(),
        count as f64 / took.as_secs_f64()
    );
    println!(
        "database with its WAL afterwards: {:.0} MiB",
        database as f64 / (1 << 20) as f64
    );
    println!("peak RSS over the run: {:.1} MiB", peak_rss_mib());
    Ok(())
}
