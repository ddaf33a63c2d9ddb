//! The `fasten` binary as an operator uses it: start-up failures, graceful shutdown, and the
//! `user` commands that read passwords from standard input.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fasten(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fasten"));
    // Run from an empty folder so no ./config.toml is picked up, with only our FASTEN_ settings.
    command.current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("FASTEN_") {
            command.env_remove(name);
        }
    }
    command.env("FASTEN_DATA_DIR", dir.join("data"));
    command
}

fn run_with_stdin(command: &mut Command, stdin: &str) -> Output {
    crate::common::run_with_stdin(command, stdin)
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_port_already_in_use_is_one_clear_line_and_a_failure_exit() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = fasten(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("error: cannot listen on"), "{lines:?}");
    assert!(lines[0].contains("already in use"), "{lines:?}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing written before the port was checked"
    );
}

#[test]
fn an_unusable_data_dir_is_one_clear_line_and_a_failure_exit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    let output = fasten(dir.path())
        .env("FASTEN_DATA_DIR", file.join("data"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("cannot create data directory"),
        "{lines:?}"
    );
}

#[test]
fn a_bad_setting_names_itself() {
    let dir = tempfile::tempdir().unwrap();
    let output = fasten(dir.path())
        .env("FASTEN_LISTEN", "everywhere")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("invalid setting"), "{lines:?}");
}

#[test]
fn passwords_are_never_taken_from_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let output = fasten(dir.path())
        .args(["user", "add", "anna", "--password", "secret-secret"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let output = run_with_stdin(fasten(dir.path()).args(["user", "add", "anna"]), "short\n");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 10 characters"));
}

struct Running {
    child: Child,
    url: String,
}

/// Starts `fasten serve` on a free port and waits for the line that says where it listens.
fn serve(dir: &std::path::Path) -> Running {
    let mut child = fasten(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("FASTEN_LOG_LEVEL", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if let Some(rest) = line.split("url=").nth(1) {
            let url = rest
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('/');
            // Keep draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return Running {
                child,
                url: url.to_string(),
            };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("fasten serve did not report its address");
}

#[tokio::test]
async fn user_commands_create_and_reset_accounts_and_sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let added = run_with_stdin(
        fasten(dir.path()).args(["user", "add", "anna", "--admin", "--display-name", "Anna"]),
        "first-password-1\n",
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(String::from_utf8_lossy(&added.stdout).contains("administrator"));
    let again = run_with_stdin(
        fasten(dir.path()).args(["user", "add", "anna"]),
        "first-password-1\n",
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already taken"));

    let reset = run_with_stdin(
        fasten(dir.path()).args(["user", "reset-password", "anna"]),
        "second-password-2\n",
    );
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let missing = run_with_stdin(
        fasten(dir.path()).args(["user", "reset-password", "nobody"]),
        "x\n",
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no account named"));

    let mut running = serve(dir.path());
    let health: serde_json::Value = reqwest::get(format!("{}/healthz", running.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["first_run"], false, "the CLI-created admin counts");

    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login_page = client
        .get(format!("{}/login", running.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = login_page.find(marker).unwrap() + marker.len();
    let token = &login_page[start..start + login_page[start..].find('"').unwrap()];
    for (password, expected) in [("first-password-1", 401), ("second-password-2", 303)] {
        let reply = client
            .post(format!("{}/login", running.url))
            .form(&[
                ("username", "anna"),
                ("password", password),
                ("csrf_token", token),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status().as_u16(), expected, "{password}");
    }

    let pid = running.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            assert!(status.success(), "graceful shutdown exits 0, got {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn import_export_and_plugins_list_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let added = run_with_stdin(
        fasten(dir.path()).args(["user", "add", "anna"]),
        "anna-password-1\n",
    );
    assert!(added.status.success());
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../shared/testdata/fhir/synthea/Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json",
    );
    let truncated = dir.path().join("truncated.json");
    let bytes = std::fs::read(&fixture).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();

    let bad = fasten(dir.path())
        .args(["import", "--user", "anna"])
        .arg(&truncated)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("not valid JSON") && stderr.contains("Nothing from this file was stored"),
        "{stderr}"
    );

    let good = fasten(dir.path())
        .args(["import", "--user", "anna"])
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("104 added"));

    let export = fasten(dir.path())
        .args(["export", "--user", "anna"])
        .output()
        .unwrap();
    assert!(export.status.success());
    assert_eq!(String::from_utf8_lossy(&export.stdout).lines().count(), 104);
    let out = dir.path().join("anna.json");
    let bundle = fasten(dir.path())
        .args(["export", "--user", "anna", "--format", "bundle", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(bundle.status.success());
    let parsed: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(parsed["entry"].as_array().unwrap().len(), 104);

    let list = fasten(dir.path())
        .args(["plugins", "list"])
        .output()
        .unwrap();
    assert!(list.status.success());
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("fhir\t0.1.0\tbundled\tloaded\tconnection")),
        "{text}"
    );
}

#[test]
fn a_csv_with_ambiguous_dates_is_refused_until_the_order_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let added = run_with_stdin(
        fasten(dir.path()).args(["user", "add", "anna"]),
        "anna-password-1\n",
    );
    assert!(added.status.success());
    let csv = dir.path().join("labs.csv");
    std::fs::write(
        &csv,
        "Test,Result,Units,Date\nGlucose,95,mg/dL,03/05/2024\nGlucose,101,mg/dL,04/06/2024\n",
    )
    .unwrap();

    let ambiguous = fasten(dir.path())
        .args(["import", "--user", "anna"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(!ambiguous.status.success());
    let stderr = String::from_utf8_lossy(&ambiguous.stderr);
    assert!(
        stderr.contains("Ambiguous dates") && stderr.contains("Nothing from this file was stored"),
        "{stderr}"
    );

    let day_first = fasten(dir.path())
        .args(["import", "--user", "anna", "--dates", "dmy"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        day_first.status.success(),
        "{}",
        String::from_utf8_lossy(&day_first.stderr)
    );
    // Two results and their two reports (one per date), recorded as a job.
    let stdout = String::from_utf8_lossy(&day_first.stdout);
    assert!(stdout.contains("labs.csv: 4 added"), "{stdout}");
    assert!(stdout.contains("(job #"), "{stdout}");
    let export = fasten(dir.path())
        .args(["export", "--user", "anna"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&export.stdout);
    assert!(
        text.contains("\"effectiveDateTime\":\"2024-05-03\""),
        "{text}"
    );
}

fn synthea(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/fhir/synthea")
        .join(name)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn people_are_added_shared_and_imported_for_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    for user in ["anna", "bob"] {
        let added = run_with_stdin(
            fasten(dir.path()).args(["user", "add", user]),
            &format!("{user}-password-1\n"),
        );
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
    }
    let leo = fasten(dir.path())
        .args([
            "person",
            "add",
            "leo",
            "--owner",
            "anna",
            "--name",
            "Leo Example",
        ])
        .args(["--birth-date", "2015-04-02"])
        .output()
        .unwrap();
    assert!(
        leo.status.success(),
        "{}",
        String::from_utf8_lossy(&leo.stderr)
    );
    let bad = fasten(dir.path())
        .args(["person", "add", "Leo Two", "--owner", "anna"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("lowercase letters"));

    let roberto = synthea("Roberto_Graham_238a58eb-31dc-4054-82ee-0651ee76f391.json");
    let paris = synthea("Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json");
    let imported = fasten(dir.path())
        .args(["import", "--person", "leo"])
        .arg(&roberto)
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );

    // A file about someone else is refused with the sentence, and stored with --anyway.
    let refused = fasten(dir.path())
        .args(["import", "--person", "leo"])
        .arg(&paris)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains(
            "This file is about Paris Casper, born 24 Feb 1972. Leo Example's records are about \
             Roberto Graham, born 3 Oct 1920. Nothing from this file was stored."
        ),
        "{why}"
    );
    assert!(why.contains("--anyway"), "{why}");
    let count = |who: &[&str]| {
        let export = fasten(dir.path()).arg("export").args(who).output().unwrap();
        assert!(export.status.success());
        stdout(&export).lines().count()
    };
    assert_eq!(count(&["--person", "leo"]), 363);
    let anyway = fasten(dir.path())
        .args(["import", "--person", "leo", "--anyway"])
        .arg(&paris)
        .output()
        .unwrap();
    assert!(
        anyway.status.success(),
        "{}",
        String::from_utf8_lossy(&anyway.stderr)
    );
    assert_eq!(count(&["--person", "leo"]), 363 + 104);
    // `--user` still means the account's own person, which has none of Leo's records.
    assert_eq!(count(&["--user", "anna"]), 0);

    // Sharing, as `person list` reports it.
    let shared = fasten(dir.path())
        .args(["person", "share", "leo", "bob", "--view"])
        .output()
        .unwrap();
    assert!(shared.status.success());
    let bobs = fasten(dir.path())
        .args(["person", "list", "--user", "bob"])
        .output()
        .unwrap();
    let listed = stdout(&bobs);
    assert!(
        listed.contains("leo\tLeo Example\t2015-04-02\tview"),
        "{listed}"
    );
    assert!(listed.contains("bob\tbob\t-\tmanage (own)"), "{listed}");
    let unshared = fasten(dir.path())
        .args(["person", "unshare", "leo", "bob"])
        .output()
        .unwrap();
    assert!(unshared.status.success());
    let all = stdout(
        &fasten(dir.path())
            .args(["person", "list"])
            .output()
            .unwrap(),
    );
    assert!(
        all.contains("leo\tLeo Example\t2015-04-02\tanna:manage"),
        "{all}"
    );
}
