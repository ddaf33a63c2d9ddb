//! Upgrading a database made before people existed: every account gets a person with the
//! account's username as slug, and that person owns what the account owned. Nothing is lost:
//! the export before and after is the same, line for line.
//!
//! The old database is made the way the previous release made it: the migrations it shipped
//! (0001 to 0009, run by sqlx from a folder holding only those) and rows written in its schema,
//! with a Synthea patient's resources stored exactly as they came.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{TestServer, synthea};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

const PASSWORD: &str = "anna-password-1";

/// A data folder holding a database of the release before people, with account "Anna" (admin,
/// mixed case as accounts could be) and her imported records, and "bob" with none.
async fn previous_release_database(dir: &Path) -> BTreeSet<String> {
    let migrations = dir.join("old-migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.as_str() < "0010" {
            std::fs::copy(entry.path(), migrations.join(&name)).unwrap();
        }
    }
    let options = SqliteConnectOptions::new()
        .filename(dir.join("fasten.db"))
        .create_if_missing(true)
        .foreign_keys(true);
    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(migrations.as_path())
        .await
        .unwrap()
        .run(&db)
        .await
        .unwrap();
    let hash = fasten::auth::password::hash(PASSWORD.to_string()).await;
    for (name, role) in [("Anna", "admin"), ("bob", "member")] {
        sqlx::query(
            "INSERT INTO users (username, display_name, password_hash, role, created_at, updated_at)
             VALUES (?, ?, ?, ?, 0, 0)",
        )
        .bind(name)
        .bind(format!("{name} Example"))
        .bind(&hash)
        .bind(role)
        .execute(&db)
        .await
        .unwrap();
    }
    let source: i64 = sqlx::query_scalar(
        "INSERT INTO sources (user_id, kind, display_name, plugin_id, created_at, updated_at)
         VALUES (1, 'upload', 'Uploaded files (FHIR)', 'fhir', 0, 0) RETURNING id",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO jobs (kind, user_id, source_id, source_name, status, trigger, run_after,
           created_at, file_name, added, finished_at)
         VALUES ('import', 1, ?, 'Uploaded files (FHIR)', 'succeeded', 'cli', 0, 0, 'paris.json', 104, 1)",
    )
    .bind(source)
    .execute(&db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO dashboard_layouts (user_id, widgets, updated_at) VALUES (1, '[\"labs\"]', 0)",
    )
    .execute(&db)
    .await
    .unwrap();
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(synthea(common::PARIS)).unwrap()).unwrap();
    let mut lines = BTreeSet::new();
    for entry in bundle["entry"].as_array().unwrap() {
        let resource = &entry["resource"];
        let json = resource.to_string();
        sqlx::query(
            "INSERT INTO resources (user_id, source_id, resource_type, resource_id, content_hash,
               json, updated_at) VALUES (1, ?, ?, ?, ?, ?, 0)",
        )
        .bind(source)
        .bind(resource["resourceType"].as_str().unwrap())
        .bind(resource["id"].as_str().unwrap())
        .bind(Sha256::digest(json.as_bytes()).to_vec())
        .bind(&json)
        .execute(&db)
        .await
        .unwrap();
    }
    // The previous release's own export query.
    let exported: Vec<String> = sqlx::query_scalar(
        "SELECT json FROM resources WHERE user_id = 1 ORDER BY resource_type, resource_id, source_id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    lines.extend(exported);
    db.close().await;
    lines
}

#[tokio::test]
async fn an_old_database_upgrades_with_every_record_kept_and_owned_by_the_accounts_person() {
    let data_dir = tempfile::tempdir().unwrap();
    let before = previous_release_database(data_dir.path()).await;
    assert_eq!(before.len(), 104);

    let server = TestServer::start_in(data_dir, |_| {}).await;
    let db = &server.state.db;
    let anna = fasten::store::users::by_username(db, "anna")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(anna.username, "Anna", "the account keeps its name");
    assert!(anna.is_admin(), "and its role");
    let person = fasten::store::people::by_id(db, anna.person_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(person.slug, "anna");

    let mut out = Vec::new();
    let count = fasten::fhir::export::export_person(
        db,
        person.id,
        fasten::fhir::export::ExportFormat::Ndjson,
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(count, 104);
    let after: BTreeSet<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(after, before, "the export is the same before and after");

    // Bob's person exists and owns nothing.
    let bob = fasten::store::users::by_username(db, "bob")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        server
            .count(
                "SELECT COUNT(*) FROM resources WHERE person_id = ?",
                bob.person_id
            )
            .await,
        0
    );

    // Anna signs in with her old password and finds her records, her job and her layout under
    // /people/anna/; her old addresses lead there.
    let client = server.client();
    client.login("anna", PASSWORD).await.assert_redirect("/");
    let explore = client.get("/people/anna/explore").await;
    assert_eq!(explore.status, StatusCode::OK);
    assert!(explore.body.contains("104"), "{}", explore.body);
    let jobs = client.get("/people/anna/jobs").await;
    assert!(jobs.body.contains("paris.json"));
    let customize = client.get("/people/anna/dashboard/customize").await;
    assert_eq!(customize.status, StatusCode::OK);
    let moved = client.get_exact("/explore").await;
    assert_eq!(moved.location.as_deref(), Some("/people/anna/explore"));
    // Search was rebuilt for her person at start-up.
    let found = client.get("/people/anna/search?q=Casper").await;
    assert!(found.body.contains("Paris"), "{}", found.body);
    // Bob cannot see Anna's records, admin or not.
    let bob_client = server.client();
    bob_client.login("bob", PASSWORD).await;
    assert_eq!(
        bob_client.get_exact("/people/anna/explore").await.status,
        StatusCode::NOT_FOUND
    );
}

/// Every file and folder under `dir` with group or other permission bits, with its mode.
#[cfg(unix)]
pub(crate) fn readable_by_others(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            found.push(format!("{} {mode:o}", path.display()));
        }
        if metadata.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    found
}

#[cfg(unix)]
#[tokio::test]
async fn a_data_folder_stays_private_to_fastens_account_through_uploads_and_exports() {
    let (server, alice) = TestServer::with_admin().await;
    let bytes = std::fs::read(synthea(
        "Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json",
    ))
    .unwrap();
    let reply = common::upload(&alice, "paris.json", bytes).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let export = alice.get("/people/alice/export/everything.zip").await;
    assert_eq!(export.status, StatusCode::OK);
    let data = server.data_dir.path().to_path_buf();
    let entries = std::fs::read_dir(&data).unwrap().count();
    assert!(entries >= 3, "the database, its key and caches are there");
    assert_eq!(readable_by_others(&data), Vec::<String>::new());
}

/// The same after a sync from a provider and a scheduled backup: the connection's sealed tokens,
/// the sync's spool and the backup folder and file are private too.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_folder_stays_private_through_a_sync_and_a_backup() {
    let (server, alice) = crate::sync_errors::start_fasten(|c| {
        c.backup.every = std::time::Duration::from_secs(1);
    })
    .await;
    let mock =
        crate::smart_mock::SmartMock::start(crate::smart_mock::load_synthea(common::PARIS)).await;
    let source = crate::sync_errors::connect(&alice, &mock).await;
    let job = crate::sync_errors::finished_job(&server, source).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server
        .count(
            "SELECT COUNT(*) FROM backups WHERE status = 'succeeded' AND id > ?",
            0,
        )
        .await
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled backup was made"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let data = server.data_dir.path().to_path_buf();
    let backups: Vec<_> = std::fs::read_dir(data.join("backups")).unwrap().collect();
    assert!(!backups.is_empty());
    assert_eq!(readable_by_others(&data), Vec::<String>::new());
}

#[cfg(unix)]
#[tokio::test]
async fn an_install_readable_by_others_is_made_private_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    // What a release before private files left: a 0755 folder and 0644 files.
    let db = fasten::store::open(&data.join("fasten.db")).await.unwrap();
    db.close().await;
    std::fs::create_dir_all(data.join("plugin-cache")).unwrap();
    std::fs::write(data.join("plugin-cache/old.cwasm"), b"x").unwrap();
    for (path, mode) in [
        (data.clone(), 0o755),
        (data.join("plugin-cache"), 0o755),
        (data.join("fasten.db"), 0o644),
        (data.join("plugin-cache/old.cwasm"), 0o644),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    assert_eq!(readable_by_others(&data).len(), 4);
    let server = TestServer::start_in(dir, |_| {}).await;
    assert_eq!(
        readable_by_others(server.data_dir.path()),
        Vec::<String>::new()
    );
}
