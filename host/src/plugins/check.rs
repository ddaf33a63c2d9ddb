//! `fasten plugin check`: a component loaded exactly as the server loads a dropped-in plugin
//! (its sha256, the WIT version it was built against, what it imports and exports, `describe`
//! within its limits) and cross-checked with its manifest, without touching the registry or the
//! database. An author runs it before dropping a plugin in; `fasten plugin install` runs it too.

use std::sync::Arc;

use anyhow::{Context, anyhow, bail};

use super::manifest::Manifest;
use super::{PluginHost, PluginInfo, sha256_hex};

/// What a component that passed the check says about itself.
pub struct Checked {
    pub sha256: String,
    pub info: PluginInfo,
}

impl Checked {
    /// "file", "network" or "both", as a manifest's `kind` says it.
    pub fn kind(&self) -> &'static str {
        super::kind_name(self.info.kind)
    }

    /// A `plugin.toml` for the component, for an author who has none yet: what `describe`
    /// says, the sha256, and no hosts (a file plugin needs none; a network one names them).
    pub fn suggested_manifest(&self, artifact: &str) -> String {
        let quoted = |text: &str| toml::Value::String(text.to_string()).to_string();
        format!(
            "id = {}\nname = {}\nversion = {}\napi = \"fasten:connector@0.1\"\nkind = \"{}\"\n\
             artifact = {}\nsha256 = \"{}\"\ndescription = \"\"\n\n[capabilities]\n\
             # The hosts it must reach: \"connection\" (the API base of the connection being\n\
             # synced) or \"https://api.example.com\". A plugin that only reads files needs none.\n\
             allowed_hosts = []\n",
            quoted(&self.info.id),
            quoted(&self.info.name),
            quoted(&self.info.version),
            self.kind(),
            quoted(artifact),
            self.sha256
        )
    }

    /// The file endings it imports, as ".csv, .tsv".
    pub fn file_endings(&self) -> String {
        self.info
            .file_types
            .iter()
            .flat_map(|t| t.extensions.iter())
            .map(|e| format!(".{e}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The manifest `describe` runs under when the author has none yet: the default limits.
const PROVISIONAL_MANIFEST: &str = "id = \"unchecked\"\nname = \"unchecked\"\nversion = \"0\"\n\
    api = \"fasten:connector@0.1\"\nkind = \"file\"\nartifact = \"unchecked.wasm\"\n";

impl PluginHost {
    /// Checks a component (and its manifest, when given) as loading it would. The error is one
    /// line naming the first problem found.
    pub async fn check(
        self: &Arc<Self>,
        bytes: Vec<u8>,
        manifest: Option<&Manifest>,
    ) -> anyhow::Result<Checked> {
        self.check_component(bytes, manifest).await.map_err(|e| {
            // wasmtime's messages may span lines (a parser's expected/actual bytes).
            let text = format!("{e:#}");
            anyhow!(text.split_whitespace().collect::<Vec<_>>().join(" "))
        })
    }

    async fn check_component(
        self: &Arc<Self>,
        bytes: Vec<u8>,
        manifest: Option<&Manifest>,
    ) -> anyhow::Result<Checked> {
        let sha256 = sha256_hex(&bytes);
        if let Some(manifest) = manifest {
            match &manifest.sha256 {
                None => bail!(
                    "the manifest has no sha256; a dropped-in plugin must declare it: sha256 = \"{sha256}\""
                ),
                Some(expected) if !expected.eq_ignore_ascii_case(&sha256) => bail!(
                    "sha256 mismatch: the manifest says {expected}, the component is {sha256}"
                ),
                Some(_) => {}
            }
        }
        let host = self.clone();
        let for_compile = sha256.clone();
        let pre = tokio::task::spawn_blocking(move || host.compile(&bytes, &for_compile))
            .await
            .map_err(|e| anyhow!("the loader panicked: {e}"))??;
        let info = match manifest {
            Some(manifest) => {
                self.described(manifest.clone(), pre, sha256.clone(), Vec::new())
                    .await?
                    .info
            }
            None => {
                let provisional = Manifest::parse(PROVISIONAL_MANIFEST)?;
                self.call_describe(&provisional, &pre)
                    .await
                    .context("describe failed")?
            }
        };
        Ok(Checked { sha256, info })
    }
}
