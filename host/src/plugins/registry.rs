//! The registry of connector plugins: every plugin found, bundled or dropped in, with its load
//! status, and what the Plugins page and `fasten plugins list` show of it.
//!
//! Plugins come from two places: the bundled ones compiled into this binary, and folders dropped
//! into `plugins.registry_dir`. A dropped-in plugin must match the sha256 in its manifest and stays
//! disabled until an administrator approves it (and the hosts it asks to reach): the decision is
//! kept in `plugin_grants` (see [`crate::store::plugin_grants`]). A plugin that fails to load is
//! listed with the reason; the server starts regardless. Under `serve --dev` bundled plugins load
//! from their `[dev]` artifact, and [`PluginHost::reload_changed`] reloads what changed on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use sqlx::SqlitePool;

use super::manifest::Manifest;
use super::wit::{ConnectorKind, ConnectorPre, PluginInfo};
use super::{LoadedPlugin, PluginHost, kind_name, sha256_hex};
use crate::store::plugin_grants::{self, Grant};

/// Plugins compiled into the binary: (manifest text, component bytes).
const BUNDLED: &[(&str, &[u8])] = &[
    (
        include_str!("../../../plugin-registry/fhir/plugin.toml"),
        include_bytes!(concat!(env!("OUT_DIR"), "/fhir.wasm")),
    ),
    (
        include_str!("../../../plugin-registry/withings/plugin.toml"),
        include_bytes!(concat!(env!("OUT_DIR"), "/withings.wasm")),
    ),
    (
        include_str!("../../../plugin-registry/email/plugin.toml"),
        include_bytes!(concat!(env!("OUT_DIR"), "/email.wasm")),
    ),
    (
        include_str!("../../../plugin-registry/csv-labs/plugin.toml"),
        include_bytes!(concat!(env!("OUT_DIR"), "/csv-labs.wasm")),
    ),
    (
        include_str!("../../../plugin-registry/apple-health/plugin.toml"),
        include_bytes!(concat!(env!("OUT_DIR"), "/apple-health.wasm")),
    ),
    (
        include_str!("../../../plugin-registry/ccda/plugin.toml"),
        include_bytes!(concat!(env!("OUT_DIR"), "/ccda.wasm")),
    ),
];

/// Where a plugin came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Bundled,
    DroppedIn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Loaded,
    Failed,
    AwaitingApproval,
    Disabled,
}

/// One plugin in the registry, loaded or not.
pub(super) struct Entry {
    manifest: Manifest,
    origin: Origin,
    status: Status,
    error: Option<String>,
    sha256: Option<String>,
    /// What `describe` said, also for a plugin that is not approved to run.
    described: Option<PluginInfo>,
    loaded: Option<Arc<LoadedPlugin>>,
}

/// What the Plugins page and `fasten plugins list` show about one plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginView {
    pub id: String,
    pub name: String,
    pub version: String,
    pub api: String,
    pub kind: String,
    pub description: String,
    pub origin: Origin,
    pub status: Status,
    pub error: Option<String>,
    pub sha256: Option<String>,
    pub requested_hosts: Vec<String>,
    pub memory_mib: u64,
    pub run_seconds: u64,
    pub sync_seconds: u64,
    pub file_types: Vec<String>,
    /// How the manifest tells this plugin's files from others' with the same ending, in words.
    pub signatures: Vec<String>,
    /// File types another plugin already imports, which this one does not get, with the plugin
    /// that keeps each: ".json (FHIR)". Plugins whose signatures tell their files apart do not
    /// conflict.
    pub conflicts: Vec<String>,
}

/// A plugin's component as read from disk, and whether it is an author's fresh build under
/// `serve --dev` (see `load_one`).
struct Component {
    bytes: Result<Vec<u8>, String>,
    dev_build: bool,
}

impl PluginHost {
    /// Loads the bundled plugins and every plugin in the registry folder. Failures are recorded
    /// per plugin, never returned: one broken plugin must not keep Fasten from starting.
    pub async fn load_all(self: &Arc<Self>, db: &SqlitePool) {
        let mut found: Vec<(Manifest, Origin, Component)> = Vec::new();
        for (manifest, bytes) in self.bundled() {
            let bytes = self
                .dev_artifact(&manifest)
                .unwrap_or_else(|| Ok(bytes.to_vec()));
            let component = Component {
                bytes,
                dev_build: false,
            };
            found.push((manifest, Origin::Bundled, component));
        }
        let bundled_ids: Vec<String> = found.iter().map(|(m, ..)| m.id.clone()).collect();
        for (dir, manifest) in self.scan_registry() {
            let manifest = match manifest {
                Ok(m) => m,
                Err(e) => {
                    let id = dir
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default();
                    self.record_broken_manifest(&id, format!("{e:#}"));
                    continue;
                }
            };
            if bundled_ids.contains(&manifest.id) {
                continue;
            }
            let component = self.dropped_in_component(&dir, &manifest);
            found.push((manifest, Origin::DroppedIn, component));
        }
        for (manifest, origin, component) in found {
            self.load_one(db, manifest, origin, component.bytes, component.dev_build)
                .await;
        }
    }

    /// The bundled plugins' manifests and components. Under `serve --dev` a manifest is read from
    /// the source registry folder when it is there, so a developer's edits apply.
    pub(crate) fn bundled(&self) -> Vec<(Manifest, &'static [u8])> {
        let mut out = Vec::new();
        for (text, bytes) in BUNDLED {
            let embedded = match Manifest::parse(text) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "a bundled manifest is broken");
                    continue;
                }
            };
            let on_disk = self.settings.dev.then(|| {
                self.settings
                    .source_registry_dir
                    .join(&embedded.id)
                    .join("plugin.toml")
            });
            let manifest = match on_disk.filter(|p| p.is_file()).map(|p| Manifest::load(&p)) {
                Some(Ok(m)) if m.id == embedded.id => m,
                Some(Err(e)) => {
                    tracing::warn!(error = format!("{e:#}"), "dev manifest ignored");
                    embedded
                }
                _ => embedded,
            };
            out.push((manifest, *bytes));
        }
        out
    }

    /// In dev mode, the bytes of a bundled plugin's `[dev]` artifact (None when there is none).
    fn dev_artifact(&self, manifest: &Manifest) -> Option<Result<Vec<u8>, String>> {
        if !self.settings.dev {
            return None;
        }
        let path = self.dev_artifact_path(manifest)?;
        Some(std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display())))
    }

    pub(crate) fn dev_artifact_path(&self, manifest: &Manifest) -> Option<PathBuf> {
        let dev = manifest.dev.as_ref()?;
        Some(
            self.settings
                .source_registry_dir
                .join(&manifest.id)
                .join(&dev.artifact),
        )
    }

    /// A dropped-in plugin's component, and whether it is the author's build: under
    /// `serve --dev`, the manifest's `[dev] artifact` when it is there (`fasten plugin install`
    /// makes it an absolute path into the folder the plugin was built in), else the installed
    /// copy.
    fn dropped_in_component(&self, dir: &Path, manifest: &Manifest) -> Component {
        if let Some(path) = self.dropped_in_dev_path(dir, manifest)
            && path.is_file()
        {
            let bytes =
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()));
            return Component {
                bytes,
                dev_build: true,
            };
        }
        let path = manifest.artifact_path(dir);
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("cannot read the component {}: {e}", path.display()));
        Component {
            bytes,
            dev_build: false,
        }
    }

    fn dropped_in_dev_path(&self, dir: &Path, manifest: &Manifest) -> Option<PathBuf> {
        let dev = manifest.dev.as_ref().filter(|_| self.settings.dev)?;
        Some(dir.join(&dev.artifact))
    }

    /// The folders holding dropped-in plugins' `[dev]` builds, for the dev-mode watcher.
    pub(crate) fn dropped_in_dev_folders(&self) -> Vec<PathBuf> {
        self.scan_registry()
            .into_iter()
            .filter_map(|(dir, manifest)| {
                let path = self.dropped_in_dev_path(&dir, &manifest.ok()?)?;
                path.parent().map(Path::to_path_buf)
            })
            .collect()
    }

    /// Reloads every plugin whose component changed on disk (dev artifacts of bundled plugins,
    /// and dropped-in plugins). A broken rebuild keeps the running version (see `set_entry`).
    pub async fn reload_changed(self: &Arc<Self>, db: &SqlitePool) {
        let bundled = self.bundled();
        for (manifest, _) in &bundled {
            let manifest = manifest.clone();
            let Some(bytes) = self.dev_artifact(&manifest) else {
                continue;
            };
            if let Ok(b) = &bytes
                && Some(sha256_hex(b)) == self.current_sha(&manifest.id)
            {
                continue;
            }
            tracing::info!(plugin = %manifest.id, "plugin changed on disk; reloading");
            self.load_one(db, manifest, Origin::Bundled, bytes, false)
                .await;
        }
        for (dir, manifest) in self.scan_registry() {
            let Ok(manifest) = manifest else { continue };
            if bundled.iter().any(|(m, _)| m.id == manifest.id) {
                continue;
            }
            let component = self.dropped_in_component(&dir, &manifest);
            if let Ok(b) = &component.bytes
                && Some(sha256_hex(b)) == self.current_sha(&manifest.id)
            {
                continue;
            }
            tracing::info!(plugin = %manifest.id, "plugin changed on disk; reloading");
            let Component { bytes, dev_build } = component;
            self.load_one(db, manifest, Origin::DroppedIn, bytes, dev_build)
                .await;
        }
    }

    fn current_sha(&self, id: &str) -> Option<String> {
        self.entries
            .read()
            .expect("plugin registry lock")
            .get(id)
            .and_then(|e| e.sha256.clone())
    }

    fn scan_registry(&self) -> Vec<(PathBuf, anyhow::Result<Manifest>)> {
        let Ok(dirs) = std::fs::read_dir(&self.settings.registry_dir) else {
            return Vec::new();
        };
        let mut found: Vec<_> = dirs
            .filter_map(Result::ok)
            .map(|d| d.path())
            .filter(|p| p.join("plugin.toml").is_file())
            .map(|dir| {
                let manifest = Manifest::load(&dir.join("plugin.toml"));
                (dir, manifest)
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    fn record_broken_manifest(&self, dir_name: &str, error: String) {
        tracing::warn!(plugin = dir_name, %error, "plugin manifest refused");
        let manifest = Manifest {
            id: dir_name.to_string(),
            name: dir_name.to_string(),
            version: "?".into(),
            api: "?".into(),
            kind: "?".into(),
            artifact: String::new(),
            sha256: None,
            description: String::new(),
            capabilities: Default::default(),
            limits: Default::default(),
            signatures: Vec::new(),
            dev: None,
        };
        self.set_entry(Entry {
            manifest,
            origin: Origin::DroppedIn,
            status: Status::Failed,
            error: Some(error),
            sha256: None,
            described: None,
            loaded: None,
        });
    }

    /// Records a plugin's new state. A failed reload of a plugin that is running keeps the
    /// running version (runs in progress hold their own `Arc` either way) and shows the error.
    fn set_entry(&self, mut entry: Entry) {
        let mut entries = self.entries.write().expect("plugin registry lock");
        if entry.status == Status::Failed
            && let Some(previous) = entries.get(&entry.manifest.id)
            && let Some(running) = &previous.loaded
        {
            entry.error = Some(format!(
                "the new version failed to load, so version {} (sha256 {}) keeps running: {}",
                running.info.version,
                &running.sha256[..12],
                entry.error.unwrap_or_default()
            ));
            entry.status = Status::Loaded;
            entry.loaded = Some(running.clone());
            entry.sha256 = previous.sha256.clone();
            entry.manifest = previous.manifest.clone();
        }
        entries.insert(entry.manifest.id.clone(), entry);
    }

    async fn load_one(
        self: &Arc<Self>,
        db: &SqlitePool,
        manifest: Manifest,
        origin: Origin,
        bytes: Result<Vec<u8>, String>,
        // An author's fresh build under `serve --dev`: its sha256 changes with every build, so
        // neither the manifest nor an approval pins it; the approval still covers the terms.
        dev_build: bool,
    ) {
        let id = manifest.id.clone();
        let failed = |manifest: Manifest, error: String, sha256: Option<String>| {
            tracing::warn!(plugin = %manifest.id, %error, "plugin not loaded");
            Entry {
                manifest,
                origin,
                status: Status::Failed,
                error: Some(error),
                sha256,
                described: None,
                loaded: None,
            }
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => return self.set_entry(failed(manifest, e, None)),
        };
        let sha256 = sha256_hex(&bytes);
        let mut granted = manifest.capabilities.allowed_hosts.clone();
        // Why a dropped-in plugin is not to run yet, if it is not.
        let mut pending: Option<(Status, Option<String>)> = None;
        if origin == Origin::DroppedIn {
            match &manifest.sha256 {
                _ if dev_build => {}
                None => {
                    return self.set_entry(failed(
                        manifest,
                        "the manifest has no sha256; dropped-in plugins must declare one".into(),
                        Some(sha256),
                    ));
                }
                Some(expected) if !expected.eq_ignore_ascii_case(&sha256) => {
                    let error = format!(
                        "sha256 mismatch: the manifest says {expected}, the component is {sha256}"
                    );
                    return self.set_entry(failed(manifest, error, Some(sha256)));
                }
                Some(_) => {}
            }
            // Approval covers the component and the manifest's terms (hosts, limits,
            // signatures): a change to either waits for the administrator again.
            let terms = manifest.terms_sha256();
            match plugin_grants::grant_for(db, &id).await {
                Ok(Some(grant))
                    if grant.enabled
                        && (dev_build || grant.sha256 == sha256)
                        && grant.terms_sha256.as_deref() == Some(terms.as_str()) =>
                {
                    granted = grant.allowed_hosts;
                }
                Ok(Some(grant)) if !grant.enabled => {
                    pending = Some((Status::Disabled, None));
                }
                Ok(Some(grant)) => {
                    let what = if grant.sha256 != sha256 {
                        "its component changed since it was approved"
                    } else {
                        "its manifest's file signatures, hosts or limits changed since they were approved"
                    };
                    pending = Some((
                        Status::AwaitingApproval,
                        Some(format!(
                            "Disabled because {what}: read what it asks for now and enable it again."
                        )),
                    ));
                }
                Ok(None) => pending = Some((Status::AwaitingApproval, None)),
                Err(e) => return self.set_entry(failed(manifest, format!("database: {e}"), None)),
            }
        }
        // Every plugin is compiled and described, so the administrator sees the file types a
        // plugin waiting for approval would take; only an approved one is loaded to run.
        let host = self.clone();
        let compiling = bytes;
        let sha_for_load = sha256.clone();
        let pre = tokio::task::spawn_blocking(move || host.compile(&compiling, &sha_for_load))
            .await
            .map_err(|e| anyhow!("the loader panicked: {e}"))
            .and_then(|r| r);
        let loaded = match pre {
            Ok(pre) => {
                self.described(manifest.clone(), pre, sha256.clone(), granted)
                    .await
            }
            Err(e) => Err(e),
        };
        match (loaded, pending) {
            (Ok(plugin), None) => {
                tracing::info!(plugin = %id, version = %plugin.info.version, "plugin loaded");
                self.set_entry(Entry {
                    manifest,
                    origin,
                    status: Status::Loaded,
                    error: None,
                    sha256: Some(sha256),
                    described: Some(plugin.info.clone()),
                    loaded: Some(Arc::new(plugin)),
                });
            }
            (Ok(plugin), Some((status, error))) => self.set_entry(Entry {
                manifest,
                origin,
                status,
                error,
                sha256: Some(sha256),
                described: Some(plugin.info),
                loaded: None,
            }),
            (Err(e), _) => self.set_entry(failed(manifest, format!("{e:#}"), Some(sha256))),
        }
    }

    /// Calls `describe` (within the manifest's `describe_seconds`) and cross-checks it with the
    /// manifest.
    pub(super) async fn described(
        &self,
        manifest: Manifest,
        pre: ConnectorPre,
        sha256: String,
        granted_hosts: Vec<String>,
    ) -> anyhow::Result<LoadedPlugin> {
        let info = self
            .call_describe(&manifest, &pre)
            .await
            .context("describe failed")?;
        if info.id != manifest.id {
            bail!(
                "describe says id {:?} but the manifest says {:?}",
                info.id,
                manifest.id
            );
        }
        if info.version != manifest.version {
            bail!(
                "describe says version {} but the manifest says {}",
                info.version,
                manifest.version
            );
        }
        let kind = kind_name(info.kind);
        if kind != manifest.kind {
            bail!(
                "describe says kind {kind} but the manifest says {}",
                manifest.kind
            );
        }
        Ok(LoadedPlugin {
            manifest,
            info,
            sha256,
            granted_hosts,
            pre,
        })
    }

    /// Every plugin with its status, for the admin page and the CLI.
    pub fn list(&self) -> Vec<PluginView> {
        let entries = self.entries.read().expect("plugin registry lock");
        // In the order files are offered to plugins (see `file_importers`).
        let mut ordered: Vec<&Entry> = entries.values().collect();
        ordered.sort_by_key(|e| e.origin != Origin::Bundled);
        let claims: Vec<crate::routing::Claim> = ordered
            .iter()
            .map(|e| claim(&e.manifest, e.described.as_ref()))
            .collect();
        let lost = crate::routing::conflicts(&claims);
        let conflicts_of = |id: &str| -> Vec<String> {
            let Some(j) = ordered.iter().position(|e| e.manifest.id == id) else {
                return Vec::new();
            };
            lost[j]
                .iter()
                .map(|(ext, keeper)| format!(".{ext} ({})", ordered[*keeper].manifest.name))
                .collect()
        };
        entries
            .values()
            .map(|e| {
                let file_types = extensions(e);
                PluginView {
                    id: e.manifest.id.clone(),
                    name: e.manifest.name.clone(),
                    version: e.manifest.version.clone(),
                    api: e.manifest.api.clone(),
                    kind: e.manifest.kind.clone(),
                    description: e.manifest.description.clone(),
                    origin: e.origin,
                    status: e.status,
                    error: e.error.clone(),
                    sha256: e.sha256.clone(),
                    requested_hosts: e.manifest.capabilities.allowed_hosts.clone(),
                    memory_mib: e.manifest.limits.memory_mib,
                    run_seconds: e.manifest.limits.run_seconds,
                    sync_seconds: e.manifest.limits.sync_seconds,
                    file_types: file_types.iter().map(|x| format!(".{x}")).collect(),
                    signatures: e.manifest.signatures.iter().map(|s| s.describe()).collect(),
                    conflicts: conflicts_of(&e.manifest.id),
                }
            })
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<LoadedPlugin>> {
        self.entries
            .read()
            .expect("plugin registry lock")
            .get(id)
            .and_then(|e| e.loaded.clone())
    }

    /// Loaded plugins that import files, for choosing one for an upload: bundled ones first,
    /// then dropped-in ones by id, the order [`crate::routing::route`] tries them in, so a plugin
    /// dropped in later never takes a type over from one that has no signature to tell their
    /// files apart.
    pub fn file_importers(&self) -> Vec<Arc<LoadedPlugin>> {
        let entries = self.entries.read().expect("plugin registry lock");
        let mut importers: Vec<(Origin, Arc<LoadedPlugin>)> = entries
            .values()
            .filter_map(|e| Some((e.origin, e.loaded.clone()?)))
            .filter(|(_, p)| matches!(p.info.kind, ConnectorKind::File | ConnectorKind::Both))
            .collect();
        // Stable: within each origin the registry's order (by id) stays.
        importers.sort_by_key(|(origin, _)| *origin != Origin::Bundled);
        importers.into_iter().map(|(_, p)| p).collect()
    }

    /// An administrator's decision on a dropped-in plugin, then a reload of it.
    pub async fn decide(
        self: &Arc<Self>,
        db: &SqlitePool,
        id: &str,
        enable: bool,
        by_user: Option<i64>,
    ) -> anyhow::Result<()> {
        let (manifest, sha256) = {
            let entries = self.entries.read().expect("plugin registry lock");
            let entry = entries.get(id).ok_or_else(|| anyhow!("no plugin {id:?}"))?;
            if entry.origin != Origin::DroppedIn {
                bail!("bundled plugins are always enabled");
            }
            let sha = entry
                .sha256
                .clone()
                .ok_or_else(|| anyhow!("plugin {id} could not be read, so it cannot be enabled"))?;
            (entry.manifest.clone(), sha)
        };
        let grant = Grant {
            enabled: enable,
            sha256,
            terms_sha256: Some(manifest.terms_sha256()),
            allowed_hosts: manifest.capabilities.allowed_hosts.clone(),
        };
        plugin_grants::save(db, id, &grant, by_user).await?;
        let dir = self.settings.registry_dir.join(id);
        let manifest = Manifest::load(&dir.join("plugin.toml"))?;
        let Component { bytes, dev_build } = self.dropped_in_component(&dir, &manifest);
        self.load_one(db, manifest, Origin::DroppedIn, bytes, dev_build)
            .await;
        Ok(())
    }
}

/// What a plugin declares about the files it imports, for [`crate::routing`]: the file types
/// `describe` gave (none before it was described) and the manifest's signatures.
pub(super) fn claim<'a>(
    manifest: &'a Manifest,
    info: Option<&'a PluginInfo>,
) -> crate::routing::Claim<'a> {
    crate::routing::Claim {
        file_types: info
            .iter()
            .flat_map(|info| info.file_types.iter())
            .map(|t| {
                let extensions = t
                    .extensions
                    .iter()
                    .map(|x| x.trim_start_matches('.').to_ascii_lowercase())
                    .collect();
                (extensions, t.description.as_str())
            })
            .collect(),
        signatures: &manifest.signatures,
    }
}

/// The file extensions a plugin says it imports, lower-case, without the dot.
fn extensions(entry: &Entry) -> Vec<String> {
    let mut found: Vec<String> = entry
        .described
        .iter()
        .flat_map(|info| info.file_types.iter())
        .flat_map(|t| t.extensions.iter())
        .map(|x| x.trim_start_matches('.').to_ascii_lowercase())
        .collect();
    found.dedup();
    found
}
