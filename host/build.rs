//! Build script: embeds the page templates, and builds the connector plugins in `plugins/` for
//! `wasm32-wasip2` so that `cargo run` and `cargo test` need no separate step. The bundled
//! plugins' components are copied into OUT_DIR and compiled into the binary.

use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";
/// Plugins compiled into the binary: (registry id, crate artifact name).
const BUNDLED: &[(&str, &str)] = &[
    ("fhir", "fasten_plugin_fhir"),
    ("withings", "fasten_plugin_withings"),
    ("email", "fasten_plugin_email"),
    ("csv-labs", "fasten_plugin_csv_labs"),
    ("apple-health", "fasten_plugin_apple_health"),
    ("ccda", "fasten_plugin_ccda"),
];
/// Every plugin crate built, bundled or not (the test-only ones are loaded by the tests). A crate
/// in the plugin workspace but not listed here is not built, so one being written cannot break
/// the host's build.
const BUILT: &[&str] = &[
    "fasten-plugin-fhir",
    "fasten-plugin-withings",
    "fasten-plugin-email",
    "fasten-plugin-csv-labs",
    "fasten-plugin-apple-health",
    "fasten-plugin-ccda",
    "fasten-plugin-test-hostile",
    "fasten-plugin-test-broken",
];

fn main() {
    // Release binaries carry the templates inside them so `fasten` runs from any folder;
    // `serve --dev` reads them from disk instead (see web::render).
    minijinja_embed::embed_templates!("../templates", &[".html"][..]);

    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    println!("cargo::rerun-if-changed={}", root.join("plugins").display());
    println!("cargo::rerun-if-changed={}", root.join("wit").display());
    // `sqlx::migrate!` embeds the migrations but cannot tell cargo to watch them on stable Rust.
    println!(
        "cargo::rerun-if-changed={}",
        manifest_dir.join("migrations").display()
    );
    println!(
        "cargo::rerun-if-changed={}",
        root.join("plugin-registry").display()
    );

    if !ensure_wasm_target() {
        println!(
            "cargo::error=the {WASM_TARGET} Rust target is missing; install it with: rustup target add {WASM_TARGET}"
        );
        return;
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let artifacts = match build_plugins(&root) {
        Ok(dir) => dir,
        Err(message) => {
            for line in message.lines() {
                println!("cargo::warning={line}");
            }
            println!("cargo::error=building the connector plugins failed (see the warnings above)");
            return;
        }
    };
    for (id, artifact) in BUNDLED {
        let from = artifacts.join(format!("{artifact}.wasm"));
        let to = out_dir.join(format!("{id}.wasm"));
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("cannot copy {}: {e}", from.display()));
    }
    // Tests and benchmarks find every built plugin (including the test-only ones) here.
    println!(
        "cargo::rustc-env=BUILT_PLUGIN_ARTIFACTS={}",
        artifacts.display()
    );
}

/// True when the standard library for the wasm target is installed, installing it with rustup
/// if it is not (and rustup is there to ask).
fn ensure_wasm_target() -> bool {
    let installed = || {
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        Command::new(rustc)
            .args(["--print", "sysroot"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .is_some_and(|sysroot| {
                Path::new(&sysroot)
                    .join("lib/rustlib")
                    .join(WASM_TARGET)
                    .exists()
            })
    };
    if installed() {
        return true;
    }
    let added = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .is_ok_and(|s| s.success());
    added && installed()
}

/// Builds the plugin workspace and returns the folder holding the `.wasm` components.
fn build_plugins(root: &Path) -> Result<PathBuf, String> {
    // A separate target dir: the outer cargo holds a lock on the main one for this whole build.
    let target_dir = root.join("target").join("plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--manifest-path",
        ])
        .arg(root.join("plugins").join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for package in BUILT {
        command.args(["--package", package]);
    }
    // Settings meant for the host build must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "CARGO_LLVM_COV",
    ] {
        command.env_remove(var);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        return Err(tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    Ok(target_dir.join(WASM_TARGET).join("release"))
}
