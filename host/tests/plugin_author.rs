//! The path of a third-party plugin author, exactly as the scaffold's README gives it, on a clean
//! temporary folder and without the network: `fasten plugin new`, `cargo test`, `cargo build`
//! for wasm32-wasip2, `fasten plugin check`, `install`, `approve`, and `fasten import` of the
//! scaffold's sample storing its Observations.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common;

/// `fasten ARGS` with its data in `data` and the plugin registry in `registry`.
fn fasten(data: &Path, registry: &Path, args: &[&str]) -> Output {
    common::fasten_command(data)
        .env("FASTEN_PLUGINS_REGISTRY_DIR", registry)
        .args(args)
        .output()
        .unwrap()
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `cargo ARGS` in a scaffolded crate, offline (everything it needs is in the local registry
/// cache once the bundled plugins are built). Its `target` is a link to one folder under the
/// repository's target, so the SDK's dependencies are compiled once, not once per test run.
fn cargo(crate_dir: &Path, args: &[&str]) -> Output {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-author");
    std::fs::create_dir_all(&shared).unwrap();
    let link = crate_dir.join("target");
    if !link.exists() {
        std::os::unix::fs::symlink(&shared, &link).unwrap();
    }
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(crate_dir).args(args).arg("--offline");
    // Settings of the outer build are not the author's.
    for var in [
        "CARGO_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        command.env_remove(var);
    }
    command.output().unwrap()
}

/// `fasten plugin new NAME` in `dir`, returning the crate's folder.
fn scaffold(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let data = tempfile::tempdir().unwrap();
    let mut args = vec!["plugin", "new", name, "--dir", dir.to_str().unwrap()];
    args.extend(extra);
    let printed = succeeded(&fasten(data.path(), data.path(), &args));
    assert!(
        printed.contains("cargo build --release --target wasm32-wasip2"),
        "{printed}"
    );
    dir.join(name)
}

#[test]
fn a_new_plugin_goes_from_scaffold_to_stored_records() {
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let registry = tempfile::tempdir().unwrap();
    let fasten = |args: &[&str]| fasten(data.path(), registry.path(), args);

    // 1. The scaffold, and its own tests pass natively.
    let demo = scaffold(work.path(), "demo", &[]);
    for file in [
        "Cargo.toml",
        "plugin.toml",
        "README.md",
        "src/lib.rs",
        "sample/weights.csv",
    ] {
        assert!(demo.join(file).is_file(), "the scaffold has no {file}");
    }
    let tests = cargo(&demo, &["test"]);
    assert!(
        tests.status.success(),
        "the scaffold's tests fail:\n{}",
        String::from_utf8_lossy(&tests.stderr)
    );
    assert!(String::from_utf8_lossy(&tests.stdout).contains("3 passed"));

    // 2. The component.
    let built = cargo(&demo, &["build", "--release", "--target", "wasm32-wasip2"]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wasm = demo.join("target/wasm32-wasip2/release/demo.wasm");
    let manifest = demo.join("plugin.toml");

    // 3. The check: the new build's sha256 is recorded, then the manifest passes as it is.
    let without_sha = fasten(&[
        "plugin",
        "check",
        wasm.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    assert!(!without_sha.status.success());
    assert!(String::from_utf8_lossy(&without_sha.stderr).contains("has no sha256"));
    succeeded(&fasten(&[
        "plugin",
        "check",
        wasm.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "--write-sha256",
    ]));
    let checked = succeeded(&fasten(&[
        "plugin",
        "check",
        wasm.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ]));
    assert!(
        checked.starts_with("ok: demo 0.1.0 (file), imports .csv"),
        "{checked}"
    );
    let sha256 = fasten::plugins::sha256_hex(&std::fs::read(&wasm).unwrap());
    assert!(checked.contains(&sha256));

    // 4. Installed from its folder, it waits for approval; then it is approved.
    let installed = succeeded(&fasten(&["plugin", "install", demo.to_str().unwrap()]));
    assert!(
        installed.contains("fasten plugin approve demo"),
        "{installed}"
    );
    assert_eq!(
        std::fs::read(registry.path().join("demo/demo.wasm")).unwrap(),
        std::fs::read(&wasm).unwrap()
    );
    let listed = succeeded(&fasten(&["plugin", "list"]));
    let line = listed.lines().find(|l| l.contains("demo")).unwrap();
    assert!(line.contains("awaiting"), "{line}");
    let approved = succeeded(&fasten(&["plugin", "approve", "demo"]));
    assert!(approved.contains("Approved demo 0.1.0"), "{approved}");

    // 5. The sample imports through it (its first line tells it from a lab CSV), and the weights
    //    are stored with the digits they were written with.
    succeeded(&common::run_with_stdin(
        common::fasten_command(data.path())
            .env("FASTEN_PLUGINS_REGISTRY_DIR", registry.path())
            .args(["user", "add", "anna"]),
        "anna-password-1\n",
    ));
    let sample = demo.join("sample/weights.csv");
    let imported = succeeded(&fasten(&[
        "import",
        "--user",
        "anna",
        sample.to_str().unwrap(),
    ]));
    assert!(imported.contains("3 added"), "{imported}");
    let exported = succeeded(&fasten(&["export", "--user", "anna"]));
    let weights: Vec<serde_json::Value> = exported
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|r: &serde_json::Value| r["code"]["coding"][0]["code"] == "29463-7")
        .collect();
    assert_eq!(weights.len(), 3, "{exported}");
    assert!(exported.contains(r#""value":70.80"#), "{exported}");

    // 6. Under `serve --dev`, rebuilding where the author works reloads the installed plugin,
    //    with no reinstall and no new approval.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let db = fasten::store::open(&data.path().join("fasten.db"))
            .await
            .unwrap();
        let host = std::sync::Arc::new(
            fasten::plugins::PluginHost::new(fasten::plugins::HostSettings {
                registry_dir: registry.path().to_path_buf(),
                cache_dir: data.path().join("dev-cache"),
                network: Default::default(),
                dev: true,
                source_registry_dir: fasten::plugins::source_registry_dir(),
                quotas: Default::default(),
                spool_dir: data.path().join("spool"),
                concurrent_runs: 1,
            })
            .unwrap(),
        );
        host.load_all(&db).await;
        let view_of_demo = |host: &fasten::plugins::PluginHost| {
            host.list().into_iter().find(|p| p.id == "demo").unwrap()
        };
        assert_eq!(view_of_demo(&host).status, fasten::plugins::Status::Loaded);
        assert_eq!(view_of_demo(&host).sha256.as_deref(), Some(sha256.as_str()));
        let _watch = fasten::plugins::reload::spawn(host.clone(), db.clone()).unwrap();

        let source = demo.join("src/lib.rs");
        let code = std::fs::read_to_string(&source).unwrap();
        std::fs::write(
            &source,
            code.replace("(a CSV of date,weight_kg rows)", "(rebuilt)"),
        )
        .unwrap();
        let rebuilt = tokio::task::spawn_blocking({
            let crate_dir = demo.clone();
            move || {
                cargo(
                    &crate_dir,
                    &["build", "--release", "--target", "wasm32-wasip2"],
                )
            }
        })
        .await
        .unwrap();
        assert!(
            rebuilt.status.success(),
            "{}",
            String::from_utf8_lossy(&rebuilt.stderr)
        );
        let new_sha = fasten::plugins::sha256_hex(&std::fs::read(&wasm).unwrap());
        assert_ne!(new_sha, sha256);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while view_of_demo(&host).sha256.as_deref() != Some(new_sha.as_str()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the rebuilt plugin was not reloaded: {:?}",
                view_of_demo(&host).error
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let view = view_of_demo(&host);
        assert_eq!(
            view.status,
            fasten::plugins::Status::Loaded,
            "{:?}",
            view.error
        );
        assert_eq!(
            host.get("demo").unwrap().info.file_types[0].description,
            "Body weights (rebuilt)"
        );
    });
}

#[test]
fn a_new_sync_plugin_passes_its_own_tests() {
    let work = tempfile::tempdir().unwrap();
    let crate_dir = scaffold(work.path(), "weights-sync", &["--kind", "sync"]);
    let manifest = std::fs::read_to_string(crate_dir.join("plugin.toml")).unwrap();
    assert!(
        manifest.contains(r#"allowed_hosts = ["connection"]"#),
        "{manifest}"
    );
    let tests = cargo(&crate_dir, &["test"]);
    assert!(
        tests.status.success(),
        "{}",
        String::from_utf8_lossy(&tests.stderr)
    );
    assert!(String::from_utf8_lossy(&tests.stdout).contains("3 passed"));
}

#[test]
fn a_name_the_registry_would_refuse_is_refused_before_anything_is_written() {
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let output = fasten(
        data.path(),
        data.path(),
        &[
            "plugin",
            "new",
            "My_Lab",
            "--dir",
            work.path().to_str().unwrap(),
        ],
    );
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");
    assert!(message.contains("lower-case letters"), "{message}");
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}
