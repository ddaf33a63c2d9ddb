//! `fasten plugin check | install | approve | revoke` through the real binary: what an author
//! and an administrator do from a shell, with the components the tests build (test-hostile, a
//! well-behaved file plugin as far as loading goes, and test-broken, whose `describe` traps).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common;

fn component(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("BUILT_PLUGIN_ARTIFACTS")).join(format!("{name}.wasm"))).unwrap()
}

/// `fasten plugin ARGS` with the plugin registry in `registry`.
fn plugin(data_dir: &Path, registry: &Path, args: &[&str]) -> Output {
    let mut command = common::fasten_command(data_dir);
    command
        .env("FASTEN_PLUGINS_REGISTRY_DIR", registry)
        .arg("plugin")
        .args(args);
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A refusal: a non-zero exit and one line that says why.
fn refused(output: &Output) -> String {
    assert!(!output.status.success(), "{}", stdout(output));
    let message = stderr(output);
    assert_eq!(message.trim_end().lines().count(), 1, "one line: {message}");
    message
}

struct Author {
    dir: tempfile::TempDir,
    data: tempfile::TempDir,
    registry: tempfile::TempDir,
}

impl Author {
    fn new() -> Author {
        Author {
            dir: tempfile::tempdir().unwrap(),
            data: tempfile::tempdir().unwrap(),
            registry: tempfile::tempdir().unwrap(),
        }
    }

    fn plugin(&self, args: &[&str]) -> Output {
        plugin(self.data.path(), self.registry.path(), args)
    }

    /// Writes a component as `hostile.wasm` and returns its path.
    fn write_component(&self, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join("hostile.wasm");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn write_manifest(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("plugin.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

#[test]
fn check_prints_a_ready_manifest_that_then_passes() {
    let author = Author::new();
    let wasm = author.write_component(&component("fasten_plugin_test_hostile"));
    let output = author.plugin(&["check", wasm.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    let sha256 = fasten::plugins::sha256_hex(&component("fasten_plugin_test_hostile"));
    assert!(
        printed.starts_with("ok: test-hostile 0.1.0 (file), imports .hostile, .json"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("sha256 = \"{sha256}\"")),
        "{printed}"
    );
    // The suggested plugin.toml is a manifest the check accepts as it is.
    let manifest = printed
        .split_once("(name the hosts it must reach):\n\n")
        .map(|(_, toml)| toml)
        .expect("a suggested plugin.toml");
    let manifest_path = author.write_manifest(manifest);
    let output = author.plugin(&[
        "check",
        wasm.to_str().unwrap(),
        "--manifest",
        manifest_path.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    // Checking writes nothing into the data folder.
    assert_eq!(std::fs::read_dir(author.data.path()).unwrap().count(), 0);
}

#[test]
fn check_refuses_each_problem_with_a_one_line_reason() {
    let author = Author::new();
    let bytes = component("fasten_plugin_test_hostile");
    let wasm = author.write_component(&bytes);
    let sha256 = fasten::plugins::sha256_hex(&bytes);
    let manifest = |id: &str, version: &str, sha: &str| {
        format!(
            "id = \"{id}\"\nname = \"Hostile\"\nversion = \"{version}\"\napi = \"fasten:connector@0.1\"\n\
             kind = \"file\"\nartifact = \"hostile.wasm\"\nsha256 = \"{sha}\"\n"
        )
    };
    let check = |text: &str| {
        let path = author.write_manifest(text);
        author.plugin(&[
            "check",
            wasm.to_str().unwrap(),
            "--manifest",
            path.to_str().unwrap(),
        ])
    };

    let wrong = "0".repeat(64);
    let message = refused(&check(&manifest("test-hostile", "0.1.0", &wrong)));
    assert!(
        message.contains(&format!(
            "sha256 mismatch: the manifest says {wrong}, the component is {sha256}"
        )),
        "{message}"
    );

    let message = refused(&check(&manifest("someone-else", "0.1.0", &sha256)));
    assert!(
        message
            .contains("describe says id \"test-hostile\" but the manifest says \"someone-else\""),
        "{message}"
    );

    let message = refused(&check(&manifest("test-hostile", "9.9.9", &sha256)));
    assert!(
        message.contains("describe says version 0.1.0 but the manifest says 9.9.9"),
        "{message}"
    );

    // A component built against a WIT this Fasten does not know: the same component with its
    // interface names moved to @0.9.0 (the same length, so the binary stays well-formed).
    let newer = replace_all(
        &bytes,
        b"fasten:connector/connector@0.1.0",
        b"fasten:connector/connector@0.9.0",
    );
    assert_ne!(newer, bytes);
    let newer_path = author.dir.path().join("newer.wasm");
    std::fs::write(&newer_path, &newer).unwrap();
    let message = refused(&author.plugin(&["check", newer_path.to_str().unwrap()]));
    assert!(
        message.contains("this Fasten supports fasten:connector@0.1"),
        "{message}"
    );

    // A describe that traps.
    let broken_path = author.dir.path().join("broken.wasm");
    std::fs::write(&broken_path, component("fasten_plugin_test_broken")).unwrap();
    let message = refused(&author.plugin(&["check", broken_path.to_str().unwrap()]));
    assert!(message.contains("describe failed"), "{message}");

    // Not a component at all.
    let junk = author.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let message = refused(&author.plugin(&["check", junk.to_str().unwrap()]));
    assert!(
        message.contains("not a valid WebAssembly component"),
        "{message}"
    );
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = haystack.to_vec();
    let mut at = 0;
    while let Some(found) = out[at..].windows(from.len()).position(|w| w == from) {
        let start = at + found;
        out[start..start + to.len()].copy_from_slice(to);
        at = start + to.len();
    }
    out
}

/// The STATUS column of `fasten plugin list` for a plugin.
fn status_of(author: &Author, id: &str) -> String {
    let output = author.plugin(&["list"]);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .find(|line| line.starts_with(&format!("{id}\t")))
        .and_then(|line| line.split('\t').nth(3))
        .unwrap_or_else(|| panic!("{id} is not listed: {}", stdout(&output)))
        .to_string()
}

#[test]
fn an_installed_plugin_waits_for_approval_and_can_be_approved_and_revoked_from_a_shell() {
    let author = Author::new();
    let bytes = component("fasten_plugin_test_hostile");
    author.write_component(&bytes);
    author.write_manifest(&format!(
        "id = \"test-hostile\"\nname = \"Hostile\"\nversion = \"0.1.0\"\napi = \"fasten:connector@0.1\"\n\
         kind = \"file\"\nartifact = \"hostile.wasm\"\nsha256 = \"{}\"\n",
        fasten::plugins::sha256_hex(&bytes)
    ));
    let output = author.plugin(&["install", author.dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("It asks to reach no host"),
        "{}",
        stdout(&output)
    );
    let installed = author.registry.path().join("test-hostile");
    assert_eq!(
        std::fs::read(installed.join("hostile.wasm")).unwrap(),
        bytes
    );
    assert_eq!(status_of(&author, "test-hostile"), "awaiting-approval");

    let output = author.plugin(&["approve", "test-hostile"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("Approved test-hostile 0.1.0"),
        "{}",
        stdout(&output)
    );
    assert_eq!(status_of(&author, "test-hostile"), "loaded");

    let output = author.plugin(&["revoke", "test-hostile"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(status_of(&author, "test-hostile"), "disabled");

    // A plugin that does not pass the check is not installed.
    let other = Author::new();
    other.write_component(b"not wasm");
    other.write_manifest(
        "id = \"junk\"\nname = \"Junk\"\nversion = \"0.1.0\"\napi = \"fasten:connector@0.1\"\n\
         kind = \"file\"\nartifact = \"hostile.wasm\"\nsha256 = \"00\"\n",
    );
    refused(&other.plugin(&["install", other.dir.path().to_str().unwrap()]));
    assert!(!other.registry.path().join("junk").exists());
    // Nothing to approve by a name the registry does not have.
    let message = refused(&author.plugin(&["approve", "nobody"]));
    assert!(
        message.contains("there is no plugin \"nobody\""),
        "{message}"
    );
}
