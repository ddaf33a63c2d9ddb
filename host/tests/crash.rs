//! Crashes: a real `fasten serve` is killed with SIGKILL at random moments while it imports
//! several bundles, then started again on the same data folder. After every kill the database
//! is intact, each file's records are all there or none, every job says what happened to its
//! file, and nothing half-done is left in the data folder.
//!
//! The kill times come from a fixed seed, so a failure repeats. `CRASH_ROUNDS` sets the
//! number of rounds (20 by default) and `CRASH_SEED` the seed.

use crate::common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use common::{ADMIN, ADMIN_PASSWORD, ServeProcess};
use rand::{Rng, SeedableRng};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// Three patients of different sizes, each imported for a person of their own, so a person's
/// records come from one file only.
const BUNDLES: [&str; 3] = [
    common::PARIS,
    "Norma_Pagan_c5c29bde-5877-42ae-b786-17ce70275691.json",
    "Roberto_Graham_238a58eb-31dc-4054-82ee-0651ee76f391.json",
];

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The distinct resources a bundle holds: what a complete import of it stores.
fn resources_in(bundle: &[u8]) -> usize {
    let bundle: serde_json::Value = serde_json::from_slice(bundle).unwrap();
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let r = &e["resource"];
            format!("{}/{}", r["resourceType"], r["id"])
        })
        .collect::<HashSet<_>>()
        .len()
}

/// The database as a restarted server (or the next start) finds it.
async fn open_db(path: &Path) -> sqlx::SqliteConnection {
    SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap()
}

async fn assert_intact(db: &mut sqlx::SqliteConnection, round: u64) {
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(integrity, "ok", "round {round}: the database is damaged");
}

/// Starts the three uploads, each for its own person, as the Sources page's form sends them.
/// A killed server cuts them off, so each answers its status or the error.
async fn upload_all(
    client: &common::Client,
    people: &[String],
    bundles: &[Vec<u8>],
) -> Vec<tokio::task::JoinHandle<Result<reqwest::StatusCode, reqwest::Error>>> {
    let mut uploads = Vec::new();
    for ((slug, bytes), name) in people.iter().zip(bundles).zip(BUNDLES) {
        let person = format!("/people/{slug}");
        let token = client.csrf_token(&format!("{person}/sources")).await;
        let request = client
            .http
            .post(format!("{}{person}/sources/upload", client.base))
            .header("X-CSRF-Token", token)
            .header("HX-Request", "true")
            .multipart(reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(bytes.clone()).file_name(name),
            ));
        uploads.push(tokio::spawn(
            async move { Ok(request.send().await?.status()) },
        ));
    }
    uploads
}

async fn sign_in(server: &ServeProcess) -> common::Client {
    let client = server.client();
    client
        .login(ADMIN, ADMIN_PASSWORD)
        .await
        .assert_redirect("/");
    client
}

/// What a restarted server must show about the round's people: each file all there or not at all,
/// and its jobs saying so.
async fn check_after_crash(
    data_dir: &Path,
    people: &[String],
    expected: &[usize],
    round: u64,
) -> usize {
    let mut db = open_db(&data_dir.join("fasten.db")).await;
    assert_intact(&mut db, round).await;
    let running: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = 'running'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(running, 0, "round {round}: a job still says it is running");
    let mut committed = 0;
    for (slug, &expected) in people.iter().zip(expected) {
        let person_id: i64 = sqlx::query_scalar("SELECT id FROM people WHERE slug = ?")
            .bind(slug)
            .fetch_one(&mut db)
            .await
            .unwrap();
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM resources WHERE person_id = ?")
            .bind(person_id)
            .fetch_one(&mut db)
            .await
            .unwrap();
        let jobs: Vec<(String, i64, Option<String>)> = sqlx::query_as(
            "SELECT status, added, error FROM jobs WHERE person_id = ? AND kind = 'import'",
        )
        .bind(person_id)
        .fetch_all(&mut db)
        .await
        .unwrap();
        let said_stored: Vec<_> = jobs
            .iter()
            .filter(|(status, ..)| status == "succeeded" || status == "warnings")
            .collect();
        if stored == 0 {
            assert!(
                said_stored.is_empty(),
                "round {round}: {slug} has no records, yet a job says it stored some: {jobs:?}"
            );
            for (status, _, error) in &jobs {
                assert!(
                    status == "interrupted" || status == "failed",
                    "round {round}: {slug}: {jobs:?}"
                );
                assert!(
                    error.as_deref().is_some_and(
                        |e| e.contains("nothing from it was stored") || e.contains("Nothing")
                    ),
                    "round {round}: {slug}: a job without records must say nothing was stored: \
                     {jobs:?}"
                );
            }
        } else {
            assert_eq!(
                stored as usize, expected,
                "round {round}: {slug} has {stored} of the file's {expected} records"
            );
            assert_eq!(
                said_stored.len(),
                1,
                "round {round}: {slug}'s records are stored, so exactly one job says so: {jobs:?}"
            );
            assert_eq!(
                said_stored[0].1 as usize, expected,
                "round {round}: {slug}'s job counts what was stored"
            );
            committed += 1;
        }
    }
    db.close().await.unwrap();
    committed
}

/// Nothing a killed server was in the middle of remains in the data folder once it is back.
fn assert_nothing_half_done(data_dir: &Path, round: u64) {
    for folder in ["uploads", "spool"] {
        let left: Vec<_> = std::fs::read_dir(data_dir.join(folder))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "round {round}: left behind: {left:?}");
    }
    let mut stack = vec![data_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(".fasten-") && !name.ends_with("-journal"),
                "round {round}: left behind: {}",
                entry.path().display()
            );
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_imports_loses_nothing_and_leaves_jobs_truthful() {
    let rounds = env_number("CRASH_ROUNDS", 20);
    let seed = env_number("CRASH_SEED", 20_261_206);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let bundles: Vec<Vec<u8>> = BUNDLES
        .iter()
        .map(|name| std::fs::read(common::synthea(name)).unwrap())
        .collect();
    let expected: Vec<usize> = bundles.iter().map(|b| resources_in(b)).collect();
    common::fasten_ok(
        &data_dir,
        &["user", "add", ADMIN, "--admin"],
        &format!("{ADMIN_PASSWORD}\n"),
    );
    let add_people = |round: u64| -> Vec<String> {
        (0..BUNDLES.len())
            .map(|k| {
                let slug = format!("r{round}-p{k}");
                common::fasten_ok(&data_dir, &["person", "add", &slug, "--owner", ADMIN], "");
                slug
            })
            .collect()
    };

    // Round 0 is not killed: it proves the three imports store what the files hold, and times
    // them, so the kills fall before, during and after the imports' commits.
    let mut server = ServeProcess::start(&data_dir, &[]);
    let people = add_people(0);
    let client = sign_in(&server).await;
    let started = Instant::now();
    for upload in upload_all(&client, &people, &bundles).await {
        assert!(upload.await.unwrap().unwrap().is_success());
    }
    let full = started.elapsed();
    assert_eq!(
        check_after_crash(&data_dir, &people, &expected, 0).await,
        BUNDLES.len()
    );
    println!("three imports took {full:?} in all");

    let mut outcomes = [0usize; 4];
    let test_started = Instant::now();
    for round in 1..=rounds {
        let people = add_people(round);
        let client = sign_in(&server).await;
        let uploads = upload_all(&client, &people, &bundles).await;
        let kill_after = full.mul_f64(rng.gen_range(0.0..1.3));
        tokio::time::sleep(kill_after).await;
        server.kill();
        for upload in uploads {
            let _ = upload.await;
        }
        server = ServeProcess::start(&data_dir, &[]);
        // The server is up: its start-up recovery has run.
        let committed = check_after_crash(&data_dir, &people, &expected, round).await;
        assert_nothing_half_done(&data_dir, round);
        outcomes[committed] += 1;
        println!("round {round}: killed after {kill_after:?}; {committed} of 3 files committed");
    }
    println!(
        "{rounds} rounds (seed {seed}) in {:?}: rounds by files committed 0/1/2/3: {outcomes:?}",
        test_started.elapsed()
    );
    // The kills did land at different points of the imports, not all before or all after.
    if rounds >= 10 {
        assert!(
            outcomes[0] > 0,
            "no kill came before a commit: {outcomes:?}"
        );
        assert!(
            outcomes[1] + outcomes[2] + outcomes[3] > 0,
            "no kill came after a commit: {outcomes:?}"
        );
    }
    drop(server);
}

/// The newest sync job of `source`, once it has ended: (id, status).
async fn ended_sync(server_db: &Path, source: i64, after: i64) -> (i64, String) {
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let mut db = open_db(server_db).await;
        let job: Option<(i64, String)> = sqlx::query_as(
            "SELECT id, status FROM jobs WHERE source_id = ? AND id > ? ORDER BY id DESC LIMIT 1",
        )
        .bind(source)
        .bind(after)
        .fetch_optional(&mut db)
        .await
        .unwrap();
        db.close().await.unwrap();
        if let Some((id, status)) = &job
            && status != "queued"
            && status != "running"
        {
            return (*id, status.clone());
        }
        assert!(Instant::now() < deadline, "the sync did not end: {job:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// What a killed server left of a sync, read as the next start finds it: the records are all
/// those of earlier syncs, plus all of this sync's new ones or none of them, and the sync's job
/// says it finished exactly when they are there. Answers whether the killed sync committed.
async fn check_sync_after_crash(
    db_path: &Path,
    source: i64,
    job: i64,
    before: usize,
    round: u64,
) -> bool {
    let mut db = open_db(db_path).await;
    assert_intact(&mut db, round).await;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM resources WHERE source_id = ?")
        .bind(source)
        .fetch_one(&mut db)
        .await
        .unwrap();
    let (status, added): (String, i64) =
        sqlx::query_as("SELECT status, added FROM jobs WHERE id = ?")
            .bind(job)
            .fetch_one(&mut db)
            .await
            .unwrap();
    db.close().await.unwrap();
    let committed = match stored as usize {
        n if n == before => false,
        n if n == before + 1 => true,
        n => panic!(
            "round {round}: {n} records, expected {before} or {}",
            before + 1
        ),
    };
    if committed {
        assert!(
            status == "succeeded" || status == "warnings",
            "round {round}: the sync's new record is stored, yet its job says {status}"
        );
        assert_eq!(added, 1, "round {round}: the job counts the new record");
    } else {
        assert!(
            status == "queued" || status == "running",
            "round {round}: nothing of the sync is stored, yet its job says {status}"
        );
    }
    committed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_syncs_from_the_real_peer_keeps_jobs_and_records_in_step() {
    if !crate::peers::require() {
        return;
    }
    let rounds = env_number("CRASH_ROUNDS", 20);
    let seed = env_number("CRASH_SEED", 20_261_206);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let (sekmet, oauth, patient, loaded) = crate::sync_peers::provider(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let db_path = data_dir.join("fasten.db");
    common::fasten_ok(
        &data_dir,
        &["user", "add", ADMIN, "--admin"],
        &format!("{ADMIN_PASSWORD}\n"),
    );
    let yes = std::ffi::OsStr::new("true");
    let settings = [
        ("FASTEN_PLUGINS_ALLOW_HTTP_LOOPBACK", yes),
        ("FASTEN_PLUGINS_ALLOW_PRIVATE_NETWORKS", yes),
        ("FASTEN_SYNC_EVERY", std::ffi::OsStr::new("0s")),
    ];
    let mut server = ServeProcess::start(&data_dir, &settings);
    let client = sign_in(&server).await;
    let started = Instant::now();
    let source = crate::sync_peers::connect_through(&client, &server.url, &oauth).await;
    // The first sync, started by connecting, is not killed: it stores the patient and is timed.
    let (mut last_job, status) = ended_sync(&db_path, source, 0).await;
    assert_eq!(status, "succeeded");
    let full = started.elapsed();
    println!("connecting and the first sync took {full:?}");

    let mut committed_rounds = 0;
    let test_started = Instant::now();
    for round in 1..=rounds {
        // Something new at the provider for this round's sync to store.
        sekmet
            .add_weight(&patient, &format!("{}.5", 60 + round))
            .await;
        let client = sign_in(&server).await;
        let reply = client
            .submit(
                "/people/alice/sources",
                &format!("/people/alice/sources/{source}/sync"),
                &[],
            )
            .await;
        assert!(
            reply.status.is_redirection() || reply.status.is_success(),
            "{}",
            reply.body
        );
        let job = loop {
            let mut db = open_db(&db_path).await;
            let id: Option<i64> =
                sqlx::query_scalar("SELECT MAX(id) FROM jobs WHERE source_id = ? AND id > ?")
                    .bind(source)
                    .bind(last_job)
                    .fetch_one(&mut db)
                    .await
                    .unwrap();
            db.close().await.unwrap();
            if let Some(id) = id {
                break id;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        let kill_after = full.mul_f64(rng.gen_range(0.0..0.7));
        tokio::time::sleep(kill_after).await;
        server.kill();
        // Each earlier round's new record is stored by now.
        let before = loaded.len() + round as usize - 1;
        let committed = check_sync_after_crash(&db_path, source, job, before, round).await;
        committed_rounds += usize::from(committed);
        // Started again: a sync that was cut off runs again (queued once more if it was
        // running) and finishes.
        server = ServeProcess::start(&data_dir, &settings);
        let (newest, status) = ended_sync(&db_path, source, job - 1).await;
        assert_eq!(status, "succeeded", "round {round}: after the restart");
        assert!(
            committed == (newest == job),
            "round {round}: jobs {job}..{newest}"
        );
        last_job = newest;
        println!("round {round}: killed after {kill_after:?}; the sync had committed: {committed}");
    }
    println!(
        "{rounds} sync rounds (seed {seed}) in {:?}; {committed_rounds} had committed when killed",
        test_started.elapsed()
    );
    if rounds >= 10 {
        assert!(committed_rounds > 0 && committed_rounds < rounds as usize);
    }
}
