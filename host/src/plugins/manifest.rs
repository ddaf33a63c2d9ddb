//! `plugin-registry/<id>/plugin.toml`: who a plugin is, where its component is, what it may do.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The WIT API versions this host can run, as written in manifests (one list, kept with the
/// bindings in [`super::wit`]).
pub use super::wit::SUPPORTED_APIS;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub id: String,
    pub name: String,
    pub version: String,
    /// e.g. "fasten:connector@0.1"
    pub api: String,
    /// "network", "file" or "both"
    pub kind: String,
    /// The component file, relative to the manifest's folder.
    pub artifact: String,
    /// Required for dropped-in plugins; bundled ones are checked at build time.
    pub sha256: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default)]
    pub limits: Limits,
    /// How this plugin's files are told from another plugin's that end the same way (see
    /// [`crate::routing`]); none makes it the fallback for the endings it claims.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<Signature>,
    pub dev: Option<DevSection>,
}

/// The most signatures one manifest may declare: each is checked against every file whose
/// ending the plugin claims.
const MAX_SIGNATURES: usize = 16;
/// The longest `starts_with`: files are sniffed from a bounded prefix.
pub const MAX_STARTS_WITH: usize = 64;

/// One `[[signatures]]` table: what a file of this plugin's looks like inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SignatureTable", into = "SignatureTable")]
pub enum Signature {
    /// An XML file whose root element has this local name (any namespace prefix).
    XmlRoot(String),
    /// A zip holding a member whose path matches this glob (`*` any run, case-insensitive).
    ZipMember(String),
    /// Text that, after a byte-order mark and whitespace, starts with this.
    StartsWith(String),
}

/// A `[[signatures]]` table as written; [`Signature`] is what it must be: exactly one key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureTable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    xml_root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    zip_member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    starts_with: Option<String>,
}

impl TryFrom<SignatureTable> for Signature {
    type Error = String;

    fn try_from(table: SignatureTable) -> Result<Signature, String> {
        let signature = match (table.xml_root, table.zip_member, table.starts_with) {
            (Some(root), None, None) => Signature::XmlRoot(root),
            (None, Some(glob), None) => Signature::ZipMember(glob),
            (None, None, Some(prefix)) => Signature::StartsWith(prefix),
            _ => {
                return Err(
                    "a [[signatures]] table has exactly one of xml_root, zip_member or starts_with"
                        .into(),
                );
            }
        };
        signature.check()?;
        Ok(signature)
    }
}

impl From<Signature> for SignatureTable {
    fn from(signature: Signature) -> SignatureTable {
        match signature {
            Signature::XmlRoot(root) => SignatureTable {
                xml_root: Some(root),
                ..Default::default()
            },
            Signature::ZipMember(glob) => SignatureTable {
                zip_member: Some(glob),
                ..Default::default()
            },
            Signature::StartsWith(prefix) => SignatureTable {
                starts_with: Some(prefix),
                ..Default::default()
            },
        }
    }
}

impl Signature {
    /// Refuses a signature that could never match, or that would match every file of its kind
    /// and so take files from every other plugin.
    fn check(&self) -> Result<(), String> {
        match self {
            Signature::XmlRoot(root) => {
                let name_char = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.');
                if root.is_empty()
                    || !root.chars().all(name_char)
                    || root.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
                {
                    return Err(format!(
                        "xml_root {root:?} is not the local name of an XML element (no prefix, no spaces)"
                    ));
                }
            }
            Signature::ZipMember(glob) => {
                if glob.chars().all(|c| c == '*' || c == '/') {
                    return Err(format!(
                        "zip_member {glob:?} would match every zip: name at least part of a member's path"
                    ));
                }
            }
            Signature::StartsWith(prefix) => {
                if prefix.trim().is_empty() || prefix.starts_with(char::is_whitespace) {
                    return Err(format!(
                        "starts_with {prefix:?} must begin with something other than whitespace (leading whitespace is skipped before it is compared)"
                    ));
                }
                if prefix.len() > MAX_STARTS_WITH {
                    return Err(format!(
                        "starts_with is at most {MAX_STARTS_WITH} bytes long"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The signature in words, for the admin page: "XML whose root is `<HealthData>`".
    pub fn describe(&self) -> String {
        match self {
            Signature::XmlRoot(root) => format!("XML whose root is <{root}>"),
            Signature::ZipMember(glob) => format!("a zip holding {glob}"),
            Signature::StartsWith(prefix) => format!("text starting with {prefix}"),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// `scheme://host[:port]`, `https://*.example.com`, or "connection" (the API base of the
    /// connection being synced).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub memory_mib: u64,
    pub describe_seconds: u64,
    /// Time limit of an `import-file` run.
    pub run_seconds: u64,
    /// Time limit of a `sync` run, which mostly waits on the provider's server.
    pub sync_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 64,
            describe_seconds: 2,
            run_seconds: 300,
            sync_seconds: 1800,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevSection {
    /// The freshly built component, relative to the manifest's folder; used by `serve --dev`.
    pub artifact: String,
}

impl Manifest {
    /// The sha256 of what an administrator grants besides the component: the hosts it may
    /// reach and its limits. An approval is for these exact terms.
    pub fn terms_sha256(&self) -> String {
        let mut terms = serde_json::json!({
            "allowed_hosts": self.capabilities.allowed_hosts,
            "limits": self.limits,
        });
        // Signatures decide which files the plugin is given, so they are terms too; added only
        // when there are some, so approvals from before signatures existed still hold.
        if !self.signatures.is_empty() {
            terms["signatures"] = serde_json::json!(self.signatures);
        }
        super::sha256_hex(terms.to_string().as_bytes())
    }

    pub fn parse(text: &str) -> anyhow::Result<Manifest> {
        let manifest: Manifest = toml::from_str(text).context("plugin.toml is not valid")?;
        if manifest.id.is_empty()
            || !manifest
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            bail!(
                "plugin id {:?} must be lower-case letters, digits and '-'",
                manifest.id
            );
        }
        if !SUPPORTED_APIS.contains(&manifest.api.as_str()) {
            bail!(
                "plugin {} is built for {}, but this Fasten supports {}",
                manifest.id,
                manifest.api,
                SUPPORTED_APIS.join(", ")
            );
        }
        if !["network", "file", "both"].contains(&manifest.kind.as_str()) {
            bail!(
                "plugin {} has unknown kind {:?}",
                manifest.id,
                manifest.kind
            );
        }
        if manifest.limits.memory_mib == 0 || manifest.limits.memory_mib > 1024 {
            bail!("plugin {}: limits.memory_mib must be 1-1024", manifest.id);
        }
        if manifest.signatures.len() > MAX_SIGNATURES {
            bail!(
                "plugin {}: at most {MAX_SIGNATURES} [[signatures]] tables",
                manifest.id
            );
        }
        Ok(manifest)
    }

    pub fn load(path: &Path) -> anyhow::Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Manifest::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn artifact_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.artifact)
    }
}

/// The text of a manifest with its `sha256` set to `sha256`, everything else (comments
/// included) as it was: what `fasten plugin check --write-sha256` saves after a build.
pub fn with_sha256(text: &str, sha256: &str) -> anyhow::Result<String> {
    let mut document: toml_edit::DocumentMut = text.parse().context("plugin.toml is not valid")?;
    document["sha256"] = toml_edit::value(sha256);
    Ok(document.to_string())
}

/// The text of a manifest as `fasten plugin install` writes it into the registry: the
/// component sits beside it as `artifact_file`, and a `[dev]` artifact (relative to the folder
/// it was installed from) becomes an absolute path, so `serve --dev` reloads the installed
/// plugin when the author rebuilds it where it is.
pub fn installed(text: &str, artifact_file: &str, source_dir: &Path) -> anyhow::Result<String> {
    let mut document: toml_edit::DocumentMut = text.parse().context("plugin.toml is not valid")?;
    document["artifact"] = toml_edit::value(artifact_file);
    if let Some(dev) = document
        .get_mut("dev")
        .and_then(|dev| dev.get_mut("artifact"))
        && let Some(relative) = dev.as_str()
    {
        let absolute = std::path::absolute(source_dir.join(relative))
            .context("cannot resolve the [dev] artifact's path")?;
        *dev = toml_edit::value(absolute.to_string_lossy().into_owned());
    }
    Ok(document.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_sha256_keeps_the_authors_comments() {
        let text = "# mine\nid = \"x\"\nname = \"X\"\nversion = \"1\"\napi = \"fasten:connector@0.1\"\nkind = \"file\"\nartifact = \"x.wasm\"\nsha256 = \"old\"\n\n[capabilities]\nallowed_hosts = []\n";
        let updated = with_sha256(text, "abc").unwrap();
        assert!(updated.starts_with("# mine\n"));
        assert_eq!(
            Manifest::parse(&updated).unwrap().sha256.as_deref(),
            Some("abc")
        );
        let added = with_sha256(&text.replace("sha256 = \"old\"\n", ""), "abc").unwrap();
        assert_eq!(
            Manifest::parse(&added).unwrap().sha256.as_deref(),
            Some("abc")
        );
    }

    #[test]
    fn an_installed_manifest_names_its_component_and_an_absolute_dev_artifact() {
        let text = "id = \"x\"\nname = \"X\"\nversion = \"1\"\napi = \"fasten:connector@0.1\"\nkind = \"file\"\nartifact = \"target/r/x.wasm\"\n\n[dev]\nartifact = \"target/r/x.wasm\"\n";
        let installed = installed(text, "x.wasm", Path::new("/home/me/x")).unwrap();
        let manifest = Manifest::parse(&installed).unwrap();
        assert_eq!(manifest.artifact, "x.wasm");
        assert_eq!(manifest.dev.unwrap().artifact, "/home/me/x/target/r/x.wasm");
    }

    #[test]
    fn bundled_manifests_parse() {
        let text = include_str!("../../../plugin-registry/fhir/plugin.toml");
        let manifest = Manifest::parse(text).unwrap();
        assert_eq!(manifest.id, "fhir");
        assert_eq!(manifest.limits.memory_mib, 64);
    }

    const HEADER: &str = r#"id = "x"
name = "X"
version = "1.0.0"
api = "fasten:connector@0.1"
kind = "file"
artifact = "x.wasm"
"#;

    #[test]
    fn signatures_parse_one_key_per_table() {
        let manifest = Manifest::parse(&format!(
            "{HEADER}[[signatures]]\nxml_root = \"ClinicalDocument\"\n[[signatures]]\nzip_member = \"IHE_XDM/*\"\n[[signatures]]\nstarts_with = \"{{\"\n"
        ))
        .unwrap();
        assert_eq!(
            manifest.signatures,
            [
                Signature::XmlRoot("ClinicalDocument".into()),
                Signature::ZipMember("IHE_XDM/*".into()),
                Signature::StartsWith("{".into()),
            ]
        );
    }

    #[test]
    fn bad_signatures_are_refused_saying_why() {
        for (table, expected) in [
            (
                "xml_root = \"a\"\nstarts_with = \"{\"",
                "exactly one of xml_root, zip_member or starts_with",
            ),
            ("", "exactly one of"),
            ("xml_rot = \"a\"", "unknown field `xml_rot`"),
            ("xml_root = \"cda:ClinicalDocument\"", "not the local name"),
            ("zip_member = \"*/*\"", "would match every zip"),
            ("starts_with = \" \"", "other than whitespace"),
        ] {
            let err = format!(
                "{:#}",
                Manifest::parse(&format!("{HEADER}[[signatures]]\n{table}\n")).unwrap_err()
            );
            assert!(err.contains(expected), "{table}: {err}");
        }
    }

    #[test]
    fn signatures_are_part_of_the_approved_terms_only_when_present() {
        let plain = Manifest::parse(HEADER).unwrap();
        let signed =
            Manifest::parse(&format!("{HEADER}[[signatures]]\nstarts_with = \"{{\"\n")).unwrap();
        assert_ne!(plain.terms_sha256(), signed.terms_sha256());
        // The terms of a manifest without signatures are what they were before signatures.
        let before = serde_json::json!({
            "allowed_hosts": plain.capabilities.allowed_hosts,
            "limits": plain.limits,
        });
        assert_eq!(
            plain.terms_sha256(),
            crate::plugins::sha256_hex(before.to_string().as_bytes())
        );
    }

    #[test]
    fn the_bundled_signatures_parse() {
        for text in [
            include_str!("../../../plugin-registry/fhir/plugin.toml"),
            include_str!("../../../plugin-registry/apple-health/plugin.toml"),
        ] {
            let manifest = Manifest::parse(text).unwrap();
            assert!(!manifest.signatures.is_empty(), "{}", manifest.id);
        }
    }

    #[test]
    fn wrong_api_versions_are_refused_by_name() {
        let text = r#"id = "x"
name = "X"
version = "1.0.0"
api = "fasten:connector@0.9"
kind = "file"
artifact = "x.wasm""#;
        let err = format!("{:#}", Manifest::parse(text).unwrap_err());
        assert!(err.contains("fasten:connector@0.9"), "{err}");
    }
}
