//! The inbox folders: a file dropped into `<data_dir>/inbox/<username>/` of a running Fasten is
//! imported for that member only, then moved to `processed/`, or to `failed/` with a
//! `.error.txt` saying why; nothing is deleted, and each import is on the member's Jobs page.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{PARIS, TestServer};

async fn start() -> (TestServer, common::Client) {
    let server = TestServer::start_with(|c| {
        c.inbox.settle = Duration::from_millis(300);
    })
    .await;
    let client = server.client();
    client
        .setup(common::ADMIN, "Alice", common::ADMIN_PASSWORD)
        .await;
    (server, client)
}

fn inbox(server: &TestServer, username: &str) -> PathBuf {
    server.data_dir.path().join("inbox").join(username)
}

/// Waits until `path` exists (the watcher has handled the file).
async fn appears(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear; the inbox holds {:?}",
            path.display(),
            ["", "processed", "failed"].map(|sub| std::fs::read_dir(
                path.parent().unwrap().parent().unwrap().join(sub)
            )
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            .unwrap_or_default())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the member's inbox folder, which the watcher creates for every account.
async fn folder_of(server: &TestServer, username: &str) -> PathBuf {
    let folder = inbox(server, username);
    appears(&folder.join("processed")).await;
    folder
}

#[tokio::test]
async fn a_bundle_dropped_in_a_members_inbox_is_imported_for_that_member_and_moved_to_processed() {
    let (server, client) = start().await;
    client.create_user("bob", "bob-password-1", "member").await;
    let folder = folder_of(&server, "bob").await;
    // Written under a temporary name and renamed, as copy tools do: the partial file is ignored.
    std::fs::copy(common::synthea(PARIS), folder.join("paris.json.part")).unwrap();
    std::fs::rename(folder.join("paris.json.part"), folder.join("paris.json")).unwrap();

    appears(&folder.join("processed/paris.json")).await;
    assert!(!folder.join("paris.json").exists(), "moved, not copied");
    let bob = server.user_id("bob").await;
    let alice = server.user_id(common::ADMIN).await;
    let count =
        |user: i64| server.count("SELECT COUNT(*) FROM resources WHERE person_id = ?", user);
    assert_eq!(count(bob).await, 104, "all of Paris's records are Bob's");
    assert_eq!(count(alice).await, 0, "nothing went to Alice");

    let (trigger, status, file_name, added): (String, String, String, i64) = sqlx::query_as(
        "SELECT trigger, status, file_name, added FROM jobs WHERE person_id = ? AND kind = 'import'",
    )
    .bind(bob)
    .fetch_one(&server.state.db)
    .await
    .unwrap();
    assert_eq!((trigger.as_str(), status.as_str()), ("inbox", "succeeded"));
    assert_eq!((file_name.as_str(), added), ("paris.json", 104));

    // Dropping the same file again updates rather than duplicates, and keeps both copies.
    std::fs::copy(common::synthea(PARIS), folder.join("paris.json")).unwrap();
    appears(&folder.join("processed/paris (2).json")).await;
    assert!(folder.join("processed/paris.json").exists());
    assert_eq!(count(bob).await, 104);
}

#[tokio::test]
async fn a_file_that_cannot_be_imported_goes_to_failed_with_the_reason_beside_it_and_an_email_is_imported()
 {
    let (server, client) = start().await;
    let folder = folder_of(&server, common::ADMIN).await;
    std::fs::write(
        folder.join("notes.json"),
        b"{\"resourceType\": \"Observation\", ",
    )
    .unwrap();
    std::fs::write(
        folder.join("holiday.jpg"),
        [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10],
    )
    .unwrap();
    // An email saved by a mail rule goes in beside them and is imported.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/eml/mixed-pdf.eml"),
        folder.join("from-clinic.eml"),
    )
    .unwrap();

    appears(&folder.join("failed/notes.json.error.txt")).await;
    appears(&folder.join("failed/holiday.jpg.error.txt")).await;
    let reason = std::fs::read_to_string(folder.join("failed/notes.json.error.txt")).unwrap();
    assert!(reason.contains("notes.json"), "{reason}");
    assert!(
        reason.contains("Nothing from this file was stored"),
        "{reason}"
    );
    let reason = std::fs::read_to_string(folder.join("failed/holiday.jpg.error.txt")).unwrap();
    assert!(reason.contains("cannot import holiday.jpg"), "{reason}");
    assert_eq!(
        std::fs::read(folder.join("failed/holiday.jpg")).unwrap(),
        [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10],
        "the file itself is kept as it was"
    );
    appears(&folder.join("processed/from-clinic.eml")).await;

    let alice = server.user_id(common::ADMIN).await;
    // Only the email was stored: its document and its PDF.
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", alice)
            .await,
        2
    );

    // The Jobs page tells the same story.
    let jobs = client.get("/jobs").await;
    assert!(jobs.body.contains("notes.json"), "{}", jobs.body);
    assert!(jobs.body.contains("Failed"), "{}", jobs.body);
}
