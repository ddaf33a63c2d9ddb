//! `plugin-registry/<id>/plugin.toml`: who a plugin is, where its component is, what it may do.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The WIT API versions this host can run, as written in manifests.
pub const SUPPORTED_APIS: &[&str] = &["fasten:connector@0.1"];

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
    pub dev: Option<DevSection>,
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
        let terms = serde_json::json!({
            "allowed_hosts": self.capabilities.allowed_hosts,
            "limits": self.limits,
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_manifests_parse() {
        let text = include_str!("../../../plugin-registry/fhir/plugin.toml");
        let manifest = Manifest::parse(text).unwrap();
        assert_eq!(manifest.id, "fhir");
        assert_eq!(manifest.limits.memory_mib, 64);
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
