//! The connector plugins' own unit tests (format parsing and mapping, run natively against fake
//! hosts) are part of the one test command: the plugins are a separate cargo workspace, so
//! `cargo test --workspace` at the root would otherwise never run them.

use std::path::Path;
use std::process::Command;

#[test]
fn the_connector_plugins_pass_their_own_unit_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["test", "--manifest-path"])
        .arg(root.join("plugins/Cargo.toml"))
        // Not the wasm target dir the host's build uses, which holds guest artifacts.
        .arg("--target-dir")
        .arg(root.join("target/plugins-native"))
        .args(["--workspace", "--exclude", "fasten-plugin-test-hostile"])
        .args(["--exclude", "fasten-plugin-test-broken"]);
    // The host's own build settings must not leak into the plugins' build.
    for var in ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTFLAGS"] {
        command.env_remove(var);
    }
    let output = command.output().expect("cargo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "plugin unit tests failed:\n{stdout}\n{stderr}"
    );
    // Every plugin crate ran tests (a crate whose tests silently vanished would pass too).
    for crate_name in [
        "fasten_plugin_fhir",
        "fasten_plugin_csv_labs",
        "fasten_plugin_withings",
        "fasten_plugin_email",
        "fasten_plugin_apple_health",
        "fasten_plugin_ccda",
        "fasten_ccda",
        "fasten_connector",
    ] {
        assert!(
            stderr.contains(&format!("deps/{crate_name}-")),
            "{crate_name} ran no tests:\n{stderr}"
        );
    }
}
