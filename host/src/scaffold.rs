//! `fasten plugin new`: a new connector crate built on the `fasten-connector` SDK, ready to build,
//! check and install. Its example imports a CSV of `date,weight_kg` rows as body-weight
//! Observations, with a sample file and native tests, so an author starts from something that
//! works end to end and changes the format.
//!
//! The templates are the files in `plugins/scaffold/`, compiled into the binary and rendered with
//! minijinja, the same engine as the pages.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// What the new connector does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Imports files the user uploads.
    File,
    /// Syncs from the connection's address.
    Sync,
}

/// How the new crate depends on the SDK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sdk {
    /// A folder holding the SDK's Cargo.toml (a Fasten checkout's `plugins/sdk`).
    Path(PathBuf),
    /// A published version.
    Version(String),
}

impl Sdk {
    /// The SDK of the checkout this binary was built from, when it is still there; else the
    /// version of this Fasten.
    pub fn default_for_this_build() -> Sdk {
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk");
        match checkout.canonicalize() {
            Ok(path) if path.join("Cargo.toml").is_file() => Sdk::Path(path),
            _ => Sdk::Version(env!("CARGO_PKG_VERSION").into()),
        }
    }

    /// The dependency's value in Cargo.toml.
    fn dependency(&self) -> String {
        match self {
            Sdk::Path(path) => format!("{{ path = {} }}", toml_string(&path.to_string_lossy())),
            Sdk::Version(version) => toml_string(version),
        }
    }
}

const TEMPLATES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../plugins/scaffold/Cargo.toml.in"),
    ),
    (
        "plugin.toml",
        include_str!("../../plugins/scaffold/plugin.toml.in"),
    ),
    (
        "README.md",
        include_str!("../../plugins/scaffold/README.md.in"),
    ),
    (
        "src/lib.rs",
        include_str!("../../plugins/scaffold/lib.rs.in"),
    ),
];

const SAMPLE: &str = include_str!("../../plugins/scaffold/weights.csv");

/// Creates the crate `id` in `parent/id` and returns its folder. Refuses an id the registry
/// would refuse and a folder that is already there, so nothing of the author's is overwritten.
pub fn create(parent: &Path, id: &str, kind: Kind, sdk: &Sdk) -> anyhow::Result<PathBuf> {
    check_id(id)?;
    let folder = parent.join(id);
    if folder.exists() {
        bail!(
            "{} already exists; choose another name or --dir",
            folder.display()
        );
    }
    let mut files = render(id, kind, sdk)?;
    files.push(("sample/weights.csv".into(), SAMPLE.into()));
    files.push((".gitignore".into(), "/target\n/Cargo.lock\n".into()));
    for (name, text) in files {
        let path = folder.join(&name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(folder)
}

/// The file name `cargo build --target wasm32-wasip2` gives the crate's component.
pub fn artifact_name(id: &str) -> String {
    format!("{}.wasm", id.replace('-', "_"))
}

/// The rendered templates, by path inside the crate.
fn render(id: &str, kind: Kind, sdk: &Sdk) -> anyhow::Result<Vec<(String, String)>> {
    let mut env = minijinja::Environment::new();
    env.set_keep_trailing_newline(true);
    // What is rendered is Rust and TOML, not HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let context = minijinja::context! {
        id,
        name => display_name(id),
        type_name => type_name(id),
        kind => match kind { Kind::File => "file", Kind::Sync => "network" },
        sync => kind == Kind::Sync,
        artifact => artifact_name(id),
        sdk => sdk.dependency(),
    };
    TEMPLATES
        .iter()
        .map(|(path, template)| {
            let text = env
                .render_str(template, &context)
                .with_context(|| format!("the scaffold's {path} template is broken"))?;
            Ok((path.to_string(), text))
        })
        .collect()
}

/// The plugin id rule of `plugin.toml`, which is also a valid Cargo package name when it starts
/// with a letter.
fn check_id(id: &str) -> anyhow::Result<()> {
    let valid = id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.ends_with('-')
        && id.len() <= 64;
    if !valid {
        bail!(
            "{id:?} cannot be a plugin name: use lower-case letters, digits and '-', starting with a letter (e.g. my-lab)"
        );
    }
    Ok(())
}

/// "my-lab" → "My lab".
fn display_name(id: &str) -> String {
    let words = id.replace('-', " ");
    let mut chars = words.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// "my-lab" → "MyLab".
fn type_name(id: &str) -> String {
    id.split('-')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(chars).collect::<String>()
        })
        .collect()
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.into()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(kind: Kind) -> std::collections::BTreeMap<String, String> {
        render("my-lab", kind, &Sdk::Path("/opt/fasten/plugins/sdk".into()))
            .unwrap()
            .into_iter()
            .collect()
    }

    #[test]
    fn names_follow_the_id() {
        assert_eq!(display_name("my-lab"), "My lab");
        assert_eq!(type_name("my-lab2"), "MyLab2");
        assert_eq!(artifact_name("my-lab"), "my_lab.wasm");
        for bad in ["", "Demo", "2lab", "my_lab", "lab-", "lab/x"] {
            assert!(check_id(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_file_connector_imports_and_asks_for_no_host() {
        let files = rendered(Kind::File);
        let manifest = crate::plugins::manifest::Manifest::parse(&files["plugin.toml"]).unwrap();
        assert_eq!(manifest.id, "my-lab");
        assert_eq!(manifest.kind, "file");
        assert!(manifest.capabilities.allowed_hosts.is_empty());
        assert_eq!(
            manifest.artifact,
            "target/wasm32-wasip2/release/my_lab.wasm"
        );
        assert!(files["src/lib.rs"].contains("fn import_file("));
        assert!(!files["src/lib.rs"].contains("fn sync("));
        assert!(files["src/lib.rs"].contains("export_connector!(MyLab)"));
        assert!(
            files["Cargo.toml"]
                .contains(r#"fasten-connector = { path = "/opt/fasten/plugins/sdk" }"#)
        );
    }

    #[test]
    fn a_sync_connector_asks_for_its_connection() {
        let files = rendered(Kind::Sync);
        let manifest = crate::plugins::manifest::Manifest::parse(&files["plugin.toml"]).unwrap();
        assert_eq!(manifest.kind, "network");
        assert_eq!(manifest.capabilities.allowed_hosts, ["connection"]);
        assert!(files["src/lib.rs"].contains("fn sync("));
        assert!(!files["src/lib.rs"].contains("fn import_file("));
    }

    #[test]
    fn an_existing_folder_is_left_alone() {
        let parent = tempfile::tempdir().unwrap();
        std::fs::create_dir(parent.path().join("demo")).unwrap();
        let error = create(
            parent.path(),
            "demo",
            Kind::File,
            &Sdk::Version("0.1".into()),
        )
        .unwrap_err();
        assert!(error.to_string().contains("already exists"));
    }
}
