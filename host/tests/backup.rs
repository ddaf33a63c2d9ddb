//! Backups as an operator makes and restores them: `fasten backup` while the server runs and
//! imports, `fasten restore` into a new folder, the refusals that keep a bad restore from
//! writing anything, and the schedule that keeps the newest few.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{ADMIN, TestServer, synthea};
use reqwest::StatusCode;

const PASSPHRASE: &str = "correct horse battery staple";

fn fasten(data_dir: &Path) -> Command {
    common::fasten_command(data_dir)
}

fn run(command: &mut Command, stdin: &str) -> Output {
    common::run_with_stdin(command, stdin)
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A refusal: a failure exit and exactly one line on stderr, which is returned.
fn refused(output: &Output) -> String {
    assert!(!output.status.success(), "expected a refusal");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    lines[0].to_string()
}

/// Every person's export from the data folder, by short name.
fn exports(data_dir: &Path, people: &[&str]) -> Vec<(String, Vec<u8>)> {
    people
        .iter()
        .map(|slug| {
            let output = run(
                fasten(data_dir).args(["export", "--person", slug, "--format", "ndjson"]),
                "",
            );
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            (slug.to_string(), output.stdout)
        })
        .collect()
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// A data folder holding alice (an administrator, Paris's records) and her son leo (Norma's).
fn family(data_dir: &Path) {
    succeeded(&run(
        fasten(data_dir).args(["user", "add", ADMIN, "--admin"]),
        &format!("{}\n", common::ADMIN_PASSWORD),
    ));
    succeeded(&run(
        fasten(data_dir).args(["person", "add", "leo", "--owner", ADMIN, "--name", "Leo"]),
        "",
    ));
    succeeded(&run(
        fasten(data_dir)
            .args(["import", "--user", ADMIN])
            .arg(synthea(common::PARIS)),
        "",
    ));
    succeeded(&run(
        fasten(data_dir)
            .args(["import", "--person", "leo"])
            .arg(synthea(
                "Norma_Pagan_c5c29bde-5877-42ae-b786-17ce70275691.json",
            )),
        "",
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_made_during_an_import_restores_every_export_byte_for_byte() {
    let (server, alice) = TestServer::with_admin().await;
    let data = server.data_dir.path().to_path_buf();
    server.import_synthea(ADMIN, common::PARIS).await;
    let leo = server.add_person(ADMIN, "leo", "Leo").await;
    server
        .import_for(
            leo,
            &synthea("Norma_Pagan_c5c29bde-5877-42ae-b786-17ce70275691.json"),
        )
        .await;
    let max = server.add_person(ADMIN, "max", "Max").await;
    let people = ["alice", "leo", "max"];
    let before = exports(&data, &people);

    // The largest patient, uploaded for max; the backup starts while it is being imported.
    let big = std::fs::read(synthea(
        "Fletcher_Hyatt_fe0562b5-f517-4951-8366-32fdab088930.json",
    ))
    .unwrap();
    let uploading = {
        let alice = alice.clone();
        tokio::spawn(async move {
            common::upload_for(&alice, "/people/max", "fletcher.json", big).await
        })
    };
    // Wait until the import has started (its job exists) before backing up.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server
        .count(
            "SELECT COUNT(*) FROM jobs WHERE person_id = ? AND kind = 'import'",
            max,
        )
        .await
        == 0
    {
        assert!(Instant::now() < deadline, "the import never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let archive = data
        .parent()
        .unwrap()
        .join(format!("during-import-{}.tar", std::process::id()));
    let backup_started = Instant::now();
    let output = tokio::task::spawn_blocking({
        let data = data.clone();
        let archive = archive.clone();
        move || run(fasten(&data).arg("backup").arg("--out").arg(&archive), "")
    })
    .await
    .unwrap();
    let import_running_at_backup = !uploading.is_finished();
    let said = succeeded(&output);
    println!(
        "backup took {:?}; the import was {} when it finished",
        backup_started.elapsed(),
        if import_running_at_backup {
            "still running"
        } else {
            "done"
        }
    );
    assert!(
        said.contains("The secret key is not in this backup"),
        "{said}"
    );
    let reply = uploading.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let after = exports(&data, &people);
    assert_ne!(before[2], after[2], "the import stored max's records");

    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().join("data");
    let said = succeeded(&run(
        fasten(&target)
            .arg("restore")
            .arg(&archive)
            .arg("--key")
            .arg(data.join("secret.key")),
        "",
    ));
    assert!(said.starts_with("Restored "), "{said}");
    let restored_exports = exports(&target, &people);
    // alice's and leo's records did not change during the backup: byte for byte the same.
    assert_eq!(restored_exports[0], before[0]);
    assert_eq!(restored_exports[1], before[1]);
    // max's import committed either before the snapshot or after it, never half.
    assert!(
        restored_exports[2] == before[2] || restored_exports[2] == after[2],
        "max's records are all there or none"
    );
    println!(
        "the snapshot holds max's import: {}",
        restored_exports[2] == after[2]
    );
    assert_eq!(
        std::fs::read(target.join("secret.key")).unwrap(),
        std::fs::read(data.join("secret.key")).unwrap()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for path in [
            target.clone(),
            target.join("fasten.db"),
            target.join("secret.key"),
            archive.clone(),
        ] {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        }
    }
    // The restored folder serves: alice signs in and sees her records.
    let restored_server = common::ServeProcess::start(&target, &[]);
    let client = restored_server.client();
    client
        .login(ADMIN, common::ADMIN_PASSWORD)
        .await
        .assert_redirect("/");
    let page = client.get("/people/alice/explore").await;
    assert_eq!(page.status, StatusCode::OK);
    let _ = std::fs::remove_file(&archive);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_used_folder_a_damaged_file_and_a_missing_or_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    family(&data);
    let archive = dir.path().join("family.tar");
    succeeded(&run(
        fasten(&data).arg("backup").arg("--out").arg(&archive),
        "",
    ));
    // A second backup to the same name is refused: a backup is never overwritten.
    let line = refused(&run(
        fasten(&data).arg("backup").arg("--out").arg(&archive),
        "",
    ));
    assert!(line.contains("already exists"), "{line}");
    let key = data.join("secret.key");
    let bytes = std::fs::read(&archive).unwrap();

    // Into a folder that holds anything: refused, and the folder is as it was.
    let used = dir.path().join("used");
    std::fs::create_dir_all(&used).unwrap();
    std::fs::write(used.join("notes.txt"), "mine").unwrap();
    let line = refused(&run(
        fasten(&used)
            .arg("restore")
            .arg(&archive)
            .arg("--key")
            .arg(&key),
        "",
    ));
    assert!(line.contains("is not empty"), "{line}");
    assert_eq!(entries(&used), vec![used.join("notes.txt")]);

    // One byte flipped anywhere (the manifest, the database, tar's padding, the checksum line):
    // refused as damaged, and nothing is written.
    let manifest_at = bytes
        .windows(12)
        .position(|w| w == b"\"accounts\": ")
        .expect("the manifest is readable in a plain backup");
    let database_at = bytes
        .windows(16)
        .position(|w| w == b"SQLite format 3\0")
        .expect("the database follows");
    let positions = [
        manifest_at + 12,
        database_at + 4096 + 100,
        bytes.len() / 2,
        bytes.len() - 200,
        bytes.len() - 10,
    ];
    for (n, at) in positions.into_iter().enumerate() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x20;
        let file = dir.path().join(format!("damaged-{n}.tar"));
        std::fs::write(&file, &damaged).unwrap();
        let target = dir.path().join(format!("from-damaged-{n}"));
        let line = refused(&run(
            fasten(&target)
                .arg("restore")
                .arg(&file)
                .arg("--key")
                .arg(&key),
            "",
        ));
        assert!(line.contains("damaged"), "byte {at}: {line}");
        assert!(line.contains("nothing was restored"), "{line}");
        assert!(!target.exists(), "byte {at}: nothing written");
    }
    // Cut short: refused too.
    let cut = dir.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let line = refused(&run(
        fasten(&dir.path().join("from-cut"))
            .arg("restore")
            .arg(&cut)
            .arg("--key")
            .arg(&key),
        "",
    ));
    assert!(line.contains("damaged"), "{line}");

    // Without the key, or with another one: refused, saying why it matters.
    let target = dir.path().join("restored");
    let line = refused(&run(fasten(&target).arg("restore").arg(&archive), ""));
    assert!(line.contains("stored tokens would be unreadable"), "{line}");
    let other = dir.path().join("other.key");
    std::fs::write(&other, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    let line = refused(&run(
        fasten(&target)
            .arg("restore")
            .arg(&archive)
            .arg("--key")
            .arg(&other),
        "",
    ));
    assert!(
        line.contains("not the one this backup was made with"),
        "{line}"
    );
    assert!(line.contains("stored tokens would be unreadable"), "{line}");
    assert!(!target.exists());

    // With the right key it restores, and the exports are the same.
    succeeded(&run(
        fasten(&target)
            .arg("restore")
            .arg(&archive)
            .arg("--key")
            .arg(&key),
        "",
    ));
    assert_eq!(
        exports(&target, &["alice", "leo"]),
        exports(&data, &["alice", "leo"])
    );
    // Nothing of the refused attempts was left beside the folders.
    let leftovers: Vec<_> = entries(dir.path())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".fasten-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_with_the_key_is_encrypted_and_restores_with_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    family(&data);
    let archive = dir.path().join("family.tar.age");
    let said = succeeded(&run(
        fasten(&data)
            .args(["backup", "--with-key", "--out"])
            .arg(&archive),
        &format!("{PASSPHRASE}\n"),
    ));
    assert!(!said.contains("not in this backup"), "{said}");
    let bytes = std::fs::read(&archive).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    let key_text = std::fs::read(data.join("secret.key")).unwrap();
    let key_text = String::from_utf8(key_text).unwrap();
    for secret in [key_text.trim().as_bytes(), b"SQLite format 3", b"Paris"] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "the encrypted backup shows {}",
            String::from_utf8_lossy(secret)
        );
    }

    let target = dir.path().join("restored");
    let line = refused(&run(
        fasten(&target).arg("restore").arg(&archive),
        "not the passphrase\n",
    ));
    assert!(line.contains("passphrase does not open"), "{line}");
    assert!(!target.exists());

    let mut damaged = bytes.clone();
    let at = bytes.len() - 100;
    damaged[at] ^= 1;
    let damaged_file = dir.path().join("damaged.tar.age");
    std::fs::write(&damaged_file, &damaged).unwrap();
    let line = refused(&run(
        fasten(&target).arg("restore").arg(&damaged_file),
        &format!("{PASSPHRASE}\n"),
    ));
    assert!(line.contains("damaged"), "{line}");
    assert!(!target.exists());

    succeeded(&run(
        fasten(&target).arg("restore").arg(&archive),
        &format!("{PASSPHRASE}\n"),
    ));
    assert_eq!(
        std::fs::read_to_string(target.join("secret.key")).unwrap(),
        key_text,
        "the key came back with the records"
    );
    assert_eq!(
        exports(&target, &["alice", "leo"]),
        exports(&data, &["alice", "leo"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_keep_the_newest_and_the_admin_sees_how_old_they_are() {
    let (server, alice) = TestServer::with_admin().await;
    let page = alice.get("/admin/users").await;
    assert!(
        page.body.contains("No backup has been made yet"),
        "{}",
        page.body
    );
    server.stop().await;
    let data_dir = tempfile::tempdir().unwrap();
    let (server, alice) = {
        let server = TestServer::start_in(data_dir, |config| {
            config.backup.every = Duration::from_secs(1);
            config.backup.keep = 2;
        })
        .await;
        let client = server.client();
        client.setup(ADMIN, "Alice", common::ADMIN_PASSWORD).await;
        (server, client)
    };
    server.import_synthea(ADMIN, common::PARIS).await;
    let backups_dir = server.data_dir.path().join("backups");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let made = server
            .count(
                "SELECT COUNT(*) FROM backups WHERE status = 'succeeded' AND id > ?",
                0,
            )
            .await;
        if made >= 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {made} scheduled backups were made"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let files: Vec<_> = entries(&backups_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .collect();
    assert!(
        (2..=3).contains(&files.len()),
        "only the newest 2 are kept (and one may be being written): {files:?}"
    );
    let page = alice.get("/admin/backups").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("The newest backup was made"),
        "{}",
        page.body
    );
    assert!(page.body.contains("removed"), "{}", page.body);
    assert!(page.body.contains("by the schedule"), "{}", page.body);
    let users = alice.get("/admin/users").await;
    assert!(
        users.body.contains("The newest backup was made"),
        "{}",
        users.body
    );
    // Members are not shown the family's backups.
    alice.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1")
        .await
        .assert_redirect("/");
    assert_eq!(
        bob.get("/admin/backups").await.status,
        StatusCode::FORBIDDEN
    );
    server.stop().await;
}
