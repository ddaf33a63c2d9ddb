//! The plugin kernel end to end: real WASM components through the real runtime, importing the
//! Synthea fixtures, refusing bad files whole, and containing a deliberately hostile plugin.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::TestServer;
use fasten::import::{ImportError, import_file};
use fasten::plugins::{RunFailure, Status};

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
        ("notes.json", b"hello, this is not json".to_vec(), "not a FHIR JSON file"),
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
run_seconds = 2
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
    admin
        .submit("/admin/plugins", "/admin/plugins/test-hostile/enable", &[])
        .await
        .assert_redirect("/admin/plugins");
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

    let started = std::time::Instant::now();
    assert!(matches!(
        failure(run("loop").await),
        RunFailure::TimeLimit(2)
    ));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(matches!(
        failure(run("alloc").await),
        RunFailure::MemoryLimit(32)
    ));
    assert!(matches!(
        failure(run("panic").await),
        RunFailure::Crashed(_)
    ));

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
    let state = failure(run("state").await).to_string();
    assert!(
        state.contains("before Some(\"page-2\")"),
        "state persists per source: {state}"
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
    assert_eq!(admin.get("/").await.status, reqwest::StatusCode::OK);
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
