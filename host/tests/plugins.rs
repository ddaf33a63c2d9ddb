//! The plugin kernel end to end: real WASM components through the real runtime, importing the
//! Synthea fixtures, refusing bad files whole, and containing a deliberately hostile plugin.

use crate::common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use fasten::import::{ImportError, import_file};
use fasten::plugins::{FileInput, RunContext, RunFailure, Status};

/// Log output written to memory, for tests that read what the server logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

fn synthea() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/fhir/synthea");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 5);
    files
}

async fn member(server: &TestServer, name: &str) -> i64 {
    let hash = fasten::auth::password::hash_blocking("member-password-1");
    fasten::store::users::create(
        &server.state.db,
        name,
        name,
        &hash,
        fasten::store::users::Role::Member,
    )
    .await
    .unwrap()
    .id
}

async fn resource_count(server: &TestServer, user: i64) -> i64 {
    server
        .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", user)
        .await
}

fn write(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[tokio::test]
async fn every_synthea_bundle_imports_exports_back_whole_and_reimports_as_unchanged() {
    let server = TestServer::start().await;
    let plugins = &server.state.plugins;
    assert_eq!(
        plugins
            .list()
            .iter()
            .find(|p| p.id == "fhir")
            .unwrap()
            .status,
        Status::Loaded
    );
    for (n, path) in synthea().iter().enumerate() {
        let user = member(&server, &format!("patient{n}")).await;
        let bundle: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let entries = bundle["entry"].as_array().unwrap();
        let distinct: HashSet<(String, String)> = entries
            .iter()
            .map(|e| {
                let r = &e["resource"];
                (
                    r["resourceType"].as_str().unwrap().to_string(),
                    r["id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let name = path.file_name().unwrap().to_str().unwrap();
        let report = import_file(
            &server.state.db,
            plugins,
            user,
            path,
            name,
            fasten::jobs::Trigger::Cli,
            &Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            report.counts.total(),
            entries.len() as u64,
            "{name}: every entry seen"
        );
        assert_eq!(
            report.counts.added,
            distinct.len() as u64,
            "{name}: identical duplicates stored once"
        );

        let mut exported = Vec::new();
        let count = fasten::fhir::export::export_person(
            &server.state.db,
            user,
            fasten::fhir::export::ExportFormat::Ndjson,
            &mut exported,
        )
        .await
        .unwrap();
        assert_eq!(count, distinct.len() as u64, "{name}");
        let text = String::from_utf8(exported).unwrap();
        let mut back = HashSet::new();
        for line in text.lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            back.insert((
                r["resourceType"].as_str().unwrap().to_string(),
                r["id"].as_str().unwrap().to_string(),
            ));
        }
        assert_eq!(back, distinct, "{name}: the same resources come back");
        assert!(
            !text.contains("\"reference\":\"urn:uuid:"),
            "{name}: urn:uuid references rewritten"
        );
        assert!(text.contains("\"reference\":\"Patient/"), "{name}");

        let again = import_file(
            &server.state.db,
            plugins,
            user,
            path,
            name,
            fasten::jobs::Trigger::Cli,
            &Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(again.counts.added, 0, "{name}: re-import adds nothing");
        assert_eq!(again.counts.updated, 0);
        assert_eq!(resource_count(&server, user).await, distinct.len() as i64);
    }
}

#[tokio::test]
async fn ndjson_and_single_resources_import_and_bundles_export_as_a_bundle() {
    let server = TestServer::start().await;
    let user = member(&server, "nd").await;
    let dir = tempfile::tempdir().unwrap();
    let ndjson = concat!(
        "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"name\":[{\"family\":\"Doe\"}]}\n",
        "\n",
        "{\"resourceType\":\"Observation\",\"id\":\"o1\",\"status\":\"final\",\"subject\":{\"reference\":\"Patient/p1\"}}\n",
    );
    let path = write(dir.path(), "export.ndjson", ndjson.as_bytes());
    let report = import_file(
        &server.state.db,
        &server.state.plugins,
        user,
        &path,
        "export.ndjson",
        fasten::jobs::Trigger::Cli,
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.counts.added, 2);
    let single = write(
        dir.path(),
        "one.json",
        "\u{feff}{\"resourceType\":\"Condition\",\"id\":\"c1\"}".as_bytes(),
    );
    let report = import_file(
        &server.state.db,
        &server.state.plugins,
        user,
        &single,
        "one.json",
        fasten::jobs::Trigger::Cli,
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.counts.added, 1);

    let mut out = Vec::new();
    let count = fasten::fhir::export::export_person(
        &server.state.db,
        user,
        fasten::fhir::export::ExportFormat::Bundle,
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(count, 3);
    let bundle: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn bad_files_are_refused_with_a_clear_message_and_store_nothing() {
    let server = TestServer::start().await;
    let user = member(&server, "bad").await;
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(&synthea()[3]).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.json", full[..full.len() / 2].to_vec(), "not valid JSON"),
        // Refused before the plugin runs: FHIR's signature is a JSON object.
        ("notes.json", b"hello, this is not json".to_vec(), "it starts with “hello, this”"),
        ("empty-bundle.json", br#"{"resourceType":"Bundle","type":"collection","entry":[]}"#.to_vec(), "no entries"),
        ("wizard.json", br#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"ok"}},{"resource":{"resourceType":"Wizard","id":"w"}}]}"#.to_vec(), "unknown resourceType \"Wizard\""),
        ("bad-line.ndjson", b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Pat".to_vec(), "Line 2"),
        ("no-type.json", br#"{"id":"x"}"#.to_vec(), "no \"resourceType\""),
    ];
    for (name, contents, expected) in cases {
        let path = write(dir.path(), name, &contents);
        let err = import_file(
            &server.state.db,
            &server.state.plugins,
            user,
            &path,
            name,
            fasten::jobs::Trigger::Cli,
            &Default::default(),
        )
        .await
        .expect_err(name);
        let message = err.to_string();
        assert!(message.contains(expected), "{name}: {message}");
        assert!(
            message.contains("Nothing from this file was stored"),
            "{name}: {message}"
        );
        assert_eq!(
            resource_count(&server, user).await,
            0,
            "{name}: nothing stored"
        );
    }
    let docx = write(dir.path(), "letter.docx", b"PK\x03\x04word/document.xml");
    let err = import_file(
        &server.state.db,
        &server.state.plugins,
        user,
        &docx,
        "letter.docx",
        fasten::jobs::Trigger::Cli,
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ImportError::NoPlugin(..)), "{err}");
}

/// Counts requests and redirects `/redirect` to `target`.
async fn counting_server(target: Option<String>) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let counter = counter.clone();
        let target = target.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            match (uri.path(), target) {
                ("/redirect", Some(t)) => axum::response::Redirect::temporary(&t).into_response(),
                _ => "hello from the allowed host".into_response(),
            }
        }
    });
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

fn hostile_artifact() -> PathBuf {
    Path::new(env!("BUILT_PLUGIN_ARTIFACTS")).join("fasten_plugin_test_hostile.wasm")
}

/// A registry folder with the hostile plugin dropped in, allowed to reach `allowed`.
fn drop_in_hostile(registry: &Path, allowed: &str, sha256: Option<&str>, api: &str) {
    drop_in_hostile_for(registry, allowed, sha256, api, 2);
}

/// The hostile plugin with `run_seconds` to run.
pub(crate) fn drop_in_hostile_for(
    registry: &Path,
    allowed: &str,
    sha256: Option<&str>,
    api: &str,
    run_seconds: u64,
) {
    let dir = registry.join("test-hostile");
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(hostile_artifact()).unwrap();
    std::fs::write(dir.join("hostile.wasm"), &bytes).unwrap();
    let sha = sha256
        .map(str::to_owned)
        .unwrap_or_else(|| fasten::plugins::sha256_hex(&bytes));
    std::fs::write(
        dir.join("plugin.toml"),
        format!(
            r#"id = "test-hostile"
name = "Hostile test plugin"
version = "0.1.0"
api = "{api}"
kind = "file"
artifact = "hostile.wasm"
sha256 = "{sha}"

[capabilities]
allowed_hosts = ["{allowed}"]

[limits]
memory_mib = 32
describe_seconds = 2
run_seconds = {run_seconds}
"#
        ),
    )
    .unwrap();
}

#[tokio::test]
async fn a_hostile_plugin_is_contained_and_everything_else_keeps_working() {
    let (forbidden_url, forbidden_hits) = counting_server(None).await;
    let (allowed_url, allowed_hits) =
        counting_server(Some(format!("{forbidden_url}/stolen"))).await;
    let registry = tempfile::tempdir().unwrap();
    drop_in_hostile(registry.path(), &allowed_url, None, "fasten:connector@0.1");
    let registry_dir = registry.path().to_path_buf();
    let (server, admin) = {
        let server = TestServer::start_with(|c| {
            c.plugins.registry_dir = registry_dir;
            c.plugins.allow_http_loopback = true;
            c.plugins.max_run_resources = 1000;
            c.plugins.max_run_bytes = 2 << 20;
            c.plugins.max_person_bytes = 1 << 20;
        })
        .await;
        let admin = server.client();
        admin.setup("alice", "Alice", "alice-password-1").await;
        (server, admin)
    };
    let plugins = server.state.plugins.clone();
    let view = plugins
        .list()
        .into_iter()
        .find(|p| p.id == "test-hostile")
        .unwrap();
    assert_eq!(
        view.status,
        Status::AwaitingApproval,
        "dropped-in plugins start disabled"
    );
    assert!(plugins.get("test-hostile").is_none());
    let page = admin.get("/admin/plugins").await;
    assert!(
        page.body
            .contains(allowed_url.trim_start_matches("http://")),
        "the admin sees the requested hosts"
    );
    enable_hostile(&admin).await;
    assert_eq!(
        plugins
            .list()
            .into_iter()
            .find(|p| p.id == "test-hostile")
            .unwrap()
            .status,
        Status::Loaded
    );

    let user = server.user_id("alice").await;
    let dir = tempfile::tempdir().unwrap();
    let run = |command: &str| {
        let path = write(dir.path(), "cmd.hostile", command.as_bytes());
        let db = server.state.db.clone();
        let plugins = plugins.clone();
        async move {
            import_file(
                &db,
                &plugins,
                user,
                &path,
                "cmd.hostile",
                fasten::jobs::Trigger::Cli,
                &Default::default(),
            )
            .await
        }
    };
    let failure = |result: Result<fasten::import::ImportReport, ImportError>| match result {
        Err(ImportError::Failed { failure, .. }) => failure,
        other => panic!("expected a failed run, got {other:?}"),
    };

    let started = Instant::now();
    assert!(matches!(
        failure(run("loop").await),
        RunFailure::TimeLimit(2)
    ));
    assert!(started.elapsed() < Duration::from_secs(10));
    // A blocking call is no way out of the time limit: a 120 s sleep under a 2 s limit ends
    // at the limit.
    let started = Instant::now();
    assert!(matches!(
        failure(run("sleep 120").await),
        RunFailure::TimeLimit(2)
    ));
    let slept = started.elapsed();
    println!("a 120 s sleep under a 2 s limit ended after {slept:?}");
    assert!(slept <= Duration::from_secs(3), "{slept:?}");

    // Cancel ends a run within a second, spinning or sleeping.
    for command in ["loop", "sleep 120"] {
        let path = write(dir.path(), "cancel.hostile", command.as_bytes());
        let cancel = Arc::new(AtomicBool::new(false));
        let (batches, _received) = tokio::sync::mpsc::channel(1);
        let ctx = RunContext {
            batches,
            progress: Default::default(),
            state: None,
            connection: None,
            bearer: None,
            cancel: Some(cancel.clone()),
        };
        let hostile = plugins.get("test-hostile").unwrap();
        let input = FileInput {
            path,
            name: "cancel.hostile".into(),
            media_type: "text/x-hostile".into(),
        };
        let running = tokio::spawn({
            let plugins = plugins.clone();
            async move { plugins.import_file(hostile, input, ctx).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let asked = Instant::now();
        cancel.store(true, Ordering::SeqCst);
        let result = running.await.unwrap();
        let took = asked.elapsed();
        println!("cancel of a {command:?} run took {took:?}");
        assert!(matches!(result, Err(RunFailure::Cancelled)), "{result:?}");
        assert!(took <= Duration::from_secs(1), "{command}: {took:?}");
    }

    // A plugin's log is bounded and cannot forge the host's lines.
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    {
        let _scope = tracing::subscriber::set_default(subscriber);
        run("log-flood 50000").await.unwrap();
        failure(run("log-forge").await);
    }
    let logged = logs.text();
    let flood_lines = logged.lines().filter(|l| l.contains("flood line")).count();
    let more_lines = logged
        .lines()
        .filter(|l| l.contains("more log lines"))
        .count();
    println!("a 50,000-line log flood left {flood_lines} lines and {more_lines} summary line");
    assert_eq!(flood_lines, 10_000);
    assert_eq!(more_lines, 1);
    assert!(
        logged.contains("40000 more log lines"),
        "{}",
        &logged[logged.len().saturating_sub(500)..]
    );
    assert!(
        !logged
            .lines()
            .any(|l| l.starts_with("2026-12-06T10:00:00Z")),
        "a plugin cannot start a log line of its own"
    );
    let forged = logged.lines().find(|l| l.contains("harmless")).unwrap();
    assert!(
        forged.contains("harmless\\n2026-12-06T10:00:00Z") && forged.contains("\\u{1b}[2K"),
        "{forged}"
    );
    assert!(
        !logged.contains('\u{1b}'),
        "no raw escape code reaches the log"
    );
    assert!(matches!(
        failure(run("alloc").await),
        RunFailure::MemoryLimit(32)
    ));
    // A crash says what the trap was, not only where it happened.
    let crashed = failure(run("panic").await);
    assert!(
        matches!(&crashed, RunFailure::Crashed(reason) if reason.contains("unreachable")),
        "{crashed}"
    );

    let denied = failure(run(&format!("http {forbidden_url}/x")).await).to_string();
    assert!(
        denied.contains("denied") && denied.contains("not among the hosts"),
        "{denied}"
    );
    let redirected = failure(run(&format!("http {allowed_url}/redirect")).await).to_string();
    assert!(redirected.contains("denied"), "{redirected}");
    assert_eq!(
        allowed_hits.load(Ordering::SeqCst),
        1,
        "the allowed host answered the redirect"
    );
    assert_eq!(
        forbidden_hits.load(Ordering::SeqCst),
        0,
        "the forbidden host saw no request"
    );
    let allowed = failure(run(&format!("http {allowed_url}/hello")).await).to_string();
    assert!(allowed.contains("status 200"), "{allowed}");
    let not_https = failure(run("http http://example.com/").await).to_string();
    assert!(not_https.contains("denied"), "{not_https}");

    for (command, expected) in [
        ("emit-invalid", "not valid JSON"),
        ("emit-unknown-type", "unknown resourceType"),
        ("emit-many", "exceeds the limit of 500"),
        ("emit-big", "exceeds the limit of 4194304"),
        ("emit-then-ignore-refusal", "not valid JSON"),
    ] {
        let reason = failure(run(command).await);
        assert!(
            matches!(reason, RunFailure::Refused(_)),
            "{command}: {reason}"
        );
        assert!(reason.to_string().contains(expected), "{command}: {reason}");
    }
    assert_eq!(
        resource_count(&server, user).await,
        0,
        "nothing from refused runs is stored"
    );

    let state = failure(run("state").await).to_string();
    assert!(
        state.contains("before None, now Some(\"page-2\")"),
        "{state}"
    );
    assert!(state.contains("quota"), "{state}");
    // State set by a failed run is discarded with the run; a successful run's is kept.
    let state = failure(run("state").await).to_string();
    assert!(state.contains("before None"), "{state}");
    failure(run("state-then-fail").await);
    let kept = run("state-then-succeed page-3").await.unwrap();
    assert_eq!(kept.warnings, vec!["state before: None".to_string()]);
    let kept = run("state-then-succeed page-4").await.unwrap();
    assert_eq!(
        kept.warnings,
        vec!["state before: Some(\"page-3\")".to_string()]
    );
    // The quota counts bytes: NULs and 4-byte characters count for what they take.
    let nul = failure(run("state-nul").await).to_string();
    assert!(
        nul.contains("first Ok(())") && nul.contains("second Err(\"state quota"),
        "{nul}"
    );
    let wide = failure(run("state-wide").await).to_string();
    assert!(wide.contains("Err(\"state quota"), "{wide}");
    let stored_state: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(CAST(value AS BLOB))), 0)
         FROM plugin_state",
    )
    .fetch_one(&server.state.db)
    .await
    .unwrap();
    assert!(
        stored_state < 100,
        "only the small cursor is stored: {stored_state}"
    );

    // Quotas per run: each trips with a sentence naming it, and nothing is stored.
    let before = resource_count(&server, user).await;
    let too_many = failure(run("emit-bulk 1500 0").await).to_string();
    assert!(
        too_many.contains("more than 1000 records") && too_many.contains("max_run_resources"),
        "{too_many}"
    );
    let too_big = failure(run("emit-bulk 100 30000").await).to_string();
    assert!(
        too_big.contains("more than 2 MiB") && too_big.contains("max_run_bytes"),
        "{too_big}"
    );
    let checkpoint = failure(run("checkpoint-big").await).to_string();
    assert!(
        checkpoint.contains("checkpoint of 1048576 bytes exceeds the limit of 65536"),
        "{checkpoint}"
    );
    match run("emit-bulk 200 9000").await {
        Err(e @ ImportError::PersonQuota { .. }) => {
            assert!(e.to_string().contains("past the 1 MiB"), "{e}")
        }
        other => panic!("expected the person's quota, got {other:?}"),
    }
    assert_eq!(
        resource_count(&server, user).await,
        before,
        "nothing from a run past a quota is stored"
    );
    let huge = failure(run("error-huge").await).to_string();
    assert!(
        huge.len() < 9 * 1024,
        "a plugin's error is cut to 8 KiB: {} bytes",
        huge.len()
    );
    let jobs = admin
        .get(&format!("{}/jobs", admin.own_person_path().await))
        .await;
    assert!(
        jobs.body.len() < 1 << 20,
        "the Jobs page stays small: {} bytes",
        jobs.body.len()
    );

    let probe = failure(run("probe").await).to_string();
    assert!(probe.contains("files: none; env: 0"), "{probe}");

    // After all that, the same plugin, the FHIR plugin and the server still work.
    let ok = run("ok").await.unwrap();
    assert_eq!(ok.counts.added, 1);
    let fhir = import_file(
        &server.state.db,
        &plugins,
        user,
        &synthea()[3],
        "paris.json",
        fasten::jobs::Trigger::Cli,
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(fhir.counts.added, 104);
    assert_eq!(
        fhir.plugin, "FHIR",
        "the bundled plugin keeps FHIR's .json files"
    );
    assert_eq!(admin.get("/").await.status, reqwest::StatusCode::OK);
    // FHIR's signature (a JSON object) tells its files apart, so the hostile plugin's claim on
    // .json is no conflict: it is given only the .json files FHIR does not recognise.
    let page = admin.get("/admin/plugins").await;
    assert!(
        page.body.contains("Recognises them by") && !page.body.contains("keeps it"),
        "{}",
        page.body
    );
    let not_fhir = write(dir.path(), "list.json", b"ok");
    let taken = import_file(
        &server.state.db,
        &plugins,
        user,
        &not_fhir,
        "list.json",
        fasten::jobs::Trigger::Cli,
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(taken.plugin, "Hostile test plugin");

    // A limit raised in the manifest after approval needs approval again.
    let manifest = registry.path().join("test-hostile/plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("memory_mib = 32", "memory_mib = 1024"),
    )
    .unwrap();
    plugins.load_all(&server.state.db).await;
    let view = plugins
        .list()
        .into_iter()
        .find(|p| p.id == "test-hostile")
        .unwrap();
    assert_eq!(view.status, Status::AwaitingApproval);
    assert!(
        view.error
            .as_deref()
            .unwrap_or("")
            .contains("limits changed"),
        "{:?}",
        view.error
    );
    assert!(plugins.get("test-hostile").is_none(), "it no longer runs");
    let page = admin.get("/admin/plugins").await;
    assert!(
        page.body.contains("1024 MiB memory"),
        "the admin sees the new limit"
    );
    enable_hostile(&admin).await;
    assert_eq!(
        plugins
            .get("test-hostile")
            .unwrap()
            .manifest
            .limits
            .memory_mib,
        1024,
        "approved again, with the new terms"
    );
}

#[tokio::test]
async fn broken_plugins_are_listed_with_the_reason_and_the_server_starts() {
    let cases: [(&str, Option<&str>, &str, &str); 3] = [
        (
            "bad hash",
            Some("00"),
            "fasten:connector@0.1",
            "sha256 mismatch",
        ),
        (
            "wrong api",
            None,
            "fasten:connector@0.7",
            "fasten:connector@0.7",
        ),
        (
            "missing file",
            None,
            "fasten:connector@0.1",
            "cannot read the component",
        ),
    ];
    for (case, sha, api, expected) in cases {
        let registry = tempfile::tempdir().unwrap();
        drop_in_hostile(registry.path(), "https://example.com", sha, api);
        if case == "missing file" {
            std::fs::remove_file(registry.path().join("test-hostile/hostile.wasm")).unwrap();
        }
        let registry_dir = registry.path().to_path_buf();
        let server = TestServer::start_with(|c| c.plugins.registry_dir = registry_dir).await;
        let view = server
            .state
            .plugins
            .list()
            .into_iter()
            .find(|p| p.id == "test-hostile")
            .unwrap();
        assert_eq!(view.status, Status::Failed, "{case}");
        assert!(
            view.error.as_deref().unwrap_or("").contains(expected),
            "{case}: {:?}",
            view.error
        );
        let fhir = server
            .state
            .plugins
            .list()
            .into_iter()
            .find(|p| p.id == "fhir")
            .unwrap();
        assert_eq!(fhir.status, Status::Loaded, "{case}: others still load");
        let health = reqwest::get(format!("{}/healthz", server.url))
            .await
            .unwrap();
        assert_eq!(health.status(), reqwest::StatusCode::OK);
    }
}

/// A component with one more custom section: the same plugin, but a different file and sha256,
/// as a rebuild produces.
fn rebuilt(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.extend_from_slice(&[0x00, 0x06, 0x05, b'b', b'u', b'i', b'l', b'd']);
    out
}

#[tokio::test]
async fn dev_mode_swaps_a_rebuilt_plugin_in_and_keeps_the_old_one_when_a_rebuild_is_broken() {
    common::init_logs();
    let data = tempfile::tempdir().unwrap();
    let source = tempfile::tempdir().unwrap();
    let fhir_dir = source.path().join("fhir");
    std::fs::create_dir_all(&fhir_dir).unwrap();
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-registry/fhir/plugin.toml"),
    )
    .unwrap()
    .replace(
        "../../target/plugins/wasm32-wasip2/release/fasten_plugin_fhir.wasm",
        "build/fhir.wasm",
    );
    std::fs::write(fhir_dir.join("plugin.toml"), manifest).unwrap();
    std::fs::create_dir_all(fhir_dir.join("build")).unwrap();
    let artifact = fhir_dir.join("build/fhir.wasm");
    let original =
        std::fs::read(Path::new(env!("BUILT_PLUGIN_ARTIFACTS")).join("fasten_plugin_fhir.wasm"))
            .unwrap();
    std::fs::write(&artifact, &original).unwrap();

    let db = fasten::store::open(&data.path().join("fasten.db"))
        .await
        .unwrap();
    let host = Arc::new(
        fasten::plugins::PluginHost::new(fasten::plugins::HostSettings {
            registry_dir: data.path().join("registry"),
            cache_dir: data.path().join("cache"),
            network: Default::default(),
            dev: true,
            source_registry_dir: source.path().to_path_buf(),
            quotas: Default::default(),
            spool_dir: data.path().join("spool"),
            concurrent_runs: 4,
        })
        .unwrap(),
    );
    host.load_all(&db).await;
    let sha = |host: &fasten::plugins::PluginHost| {
        host.list().into_iter().find(|p| p.id == "fhir").unwrap()
    };
    assert_eq!(
        sha(&host).sha256.unwrap(),
        fasten::plugins::sha256_hex(&original),
        "dev loads the [dev] artifact"
    );
    let running = host.get("fhir").unwrap();
    let _watch = fasten::plugins::reload::spawn(host.clone(), db.clone()).unwrap();

    let new_bytes = rebuilt(&original);
    std::fs::write(&artifact, &new_bytes).unwrap();
    let new_sha = fasten::plugins::sha256_hex(&new_bytes);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sha(&host).sha256.as_deref() != Some(new_sha.as_str()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the rebuilt plugin was not picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(sha(&host).status, Status::Loaded);
    assert!(
        !Arc::ptr_eq(&running, &host.get("fhir").unwrap()),
        "swapped"
    );
    assert_eq!(
        running.sha256,
        fasten::plugins::sha256_hex(&original),
        "a run holding the old version keeps it"
    );

    std::fs::write(&artifact, b"not a component").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sha(&host).error.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the broken rebuild was not noticed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let view = sha(&host);
    assert_eq!(
        view.status,
        Status::Loaded,
        "the previous version keeps running"
    );
    assert_eq!(view.sha256.as_deref(), Some(new_sha.as_str()));
    assert!(view.error.unwrap().contains("failed to load"));

    // The kept version still imports.
    let hash = fasten::auth::password::hash_blocking("member-password-1");
    let user =
        fasten::store::users::create(&db, "dev", "dev", &hash, fasten::store::users::Role::Member)
            .await
            .unwrap()
            .id;
    let report = import_file(
        &db,
        &host,
        user,
        &synthea()[3],
        "paris.json",
        fasten::jobs::Trigger::Cli,
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.counts.added, 104);
}

/// An administrator enables the hostile plugin on Admin → Plugins, as shown there.
async fn enable_hostile(admin: &common::Client) {
    admin
        .submit("/admin/plugins", "/admin/plugins/test-hostile/enable", &[])
        .await
        .assert_redirect("/admin/plugins");
}

/// A server with the hostile plugin dropped in, allowed `run_seconds`, and approved.
async fn with_approved_hostile(
    run_seconds: u64,
) -> (TestServer, common::Client, tempfile::TempDir) {
    let registry = tempfile::tempdir().unwrap();
    drop_in_hostile_for(
        registry.path(),
        "https://example.com",
        None,
        "fasten:connector@0.1",
        run_seconds,
    );
    let registry_dir = registry.path().to_path_buf();
    let server = TestServer::start_with(|c| c.plugins.registry_dir = registry_dir).await;
    let admin = server.client();
    admin.setup("alice", "Alice", "alice-password-1").await;
    enable_hostile(&admin).await;
    (server, admin, registry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_import_never_keeps_another_member_from_signing_in() {
    let (server, admin, _registry) = with_approved_hostile(30).await;
    admin
        .create_user("bob", "bob-password-1", "member")
        .await
        .assert_redirect("/admin/users?notice=created");
    let alice = server.user_id("alice").await;
    let dir = tempfile::tempdir().unwrap();
    // Eight slow imports at once, each holding its run open after its first batch.
    let mut slow = Vec::new();
    for i in 0..8 {
        let path = write(
            dir.path(),
            &format!("slow{i}.hostile"),
            b"emit-then-sleep 6",
        );
        let (db, plugins) = (server.state.db.clone(), server.state.plugins.clone());
        slow.push(tokio::spawn(async move {
            import_file(
                &db,
                &plugins,
                alice,
                &path,
                "slow.hostile",
                fasten::jobs::Trigger::Cli,
                &Default::default(),
            )
            .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut times = Vec::new();
    for _ in 0..20 {
        let bob = server.client();
        let started = Instant::now();
        bob.login("bob", "bob-password-1")
            .await
            .assert_redirect("/");
        let page = bob.get("/").await;
        times.push(started.elapsed());
        assert_eq!(page.status, reqwest::StatusCode::OK);
    }
    let slowest = times.iter().max().unwrap();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!("20 sign-ins (+ a page) during 8 slow imports: mean {mean:?}, slowest {slowest:?}");
    assert!(
        slow.iter().all(|task| !task.is_finished()),
        "the imports were still running during the sign-ins"
    );
    // Failure looked like "database is locked" after the 10 s busy timeout; a wide margin.
    assert!(*slowest < Duration::from_secs(3), "{times:?}");
    for task in slow {
        let report = task.await.unwrap().unwrap();
        assert_eq!(report.counts.total(), 1);
    }
}

#[tokio::test]
async fn sigterm_stops_the_server_promptly_while_a_plugin_spins() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    drop_in_hostile_for(
        &registry,
        "https://example.com",
        None,
        "fasten:connector@0.1",
        120,
    );
    // An administrator and the plugin's approval, made before the server starts.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = fasten::store::open(&data.join("fasten.db")).await.unwrap();
    let hash = fasten::auth::password::hash_blocking("alice-password-1");
    let alice = fasten::store::users::create(
        &db,
        "alice",
        "Alice",
        &hash,
        fasten::store::users::Role::Admin,
    )
    .await
    .unwrap();
    let sha = fasten::plugins::sha256_hex(&std::fs::read(hostile_artifact()).unwrap());
    let terms =
        fasten::plugins::manifest::Manifest::load(&registry.join("test-hostile/plugin.toml"))
            .unwrap()
            .terms_sha256();
    sqlx::query(
        "INSERT INTO plugin_grants (plugin_id, enabled, sha256, terms_sha256, allowed_hosts,
           decided_by, decided_at)
         VALUES ('test-hostile', 1, ?, ?, '[]', ?, 0)",
    )
    .bind(&sha)
    .bind(&terms)
    .bind(alice.id)
    .execute(&db)
    .await
    .unwrap();
    db.close().await;

    let mut server = common::ServeProcess::start(
        &data,
        &[("FASTEN_PLUGINS_REGISTRY_DIR", registry.as_os_str())],
    );
    let client = server.client();
    client
        .login("alice", "alice-password-1")
        .await
        .assert_redirect("/");
    let upload =
        tokio::spawn(
            async move { common::upload(&client, "spin.hostile", b"loop".to_vec()).await },
        );
    tokio::time::sleep(Duration::from_secs(1)).await;
    if upload.is_finished() {
        let reply = upload.await.unwrap();
        panic!(
            "the upload should still be running: {} {}",
            reply.status, reply.body
        );
    }
    let asked = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        if asked.elapsed() > Duration::from_secs(20) {
            panic!("the server did not stop after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = asked.elapsed();
    println!("SIGTERM with a spinning plugin: the server exited in {took:?}");
    assert!(status.success(), "{status}");
    assert!(took <= Duration::from_secs(2), "{took:?}");
    let reply = upload.await.unwrap();
    assert!(reply.body.contains("stopping"), "{}", reply.body);
}
