//! The plugin microkernel: one wasmtime `Engine` (epoch interruption, a 10 ms ticker thread), the
//! registry of connector plugins with their load status, and runs of `describe`, `import-file`
//! and `sync` in a fresh sandboxed store each.
//!
//! Plugins come from two places: the bundled ones compiled into this binary, and folders dropped
//! into `plugins.registry_dir`. A dropped-in plugin must match the sha256 in its manifest and stays
//! disabled until an administrator approves it (and the hosts it asks to reach). A plugin that
//! fails to load is listed with the reason; the server starts regardless.

pub mod check;
pub mod grants;
pub mod http;
pub mod manifest;
pub mod reload;
pub mod runtime;
pub mod state;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use tokio::sync::mpsc;
use wasmtime::component::{Component, Linker, Resource};
use wasmtime::{Engine, Store, UpdateDeadline};

use self::grants::NetworkGrant;
use self::http::{BearerAuth, HttpGate, HttpStats, NetworkPolicy};
use self::manifest::Manifest;
pub use self::runtime::SyncRequest;
use self::runtime::{
    ConnectorError, ConnectorKind, PluginInfo, PluginPre, RunState, SinkHandle, SourceFileHandle,
    Stop,
};
pub use self::runtime::{PluginState, RunQuotas};
use crate::fhir::Prepared;

/// Epoch ticks per second (a 10 ms tick).
const TICKS_PER_SECOND: u64 = 100;
/// How often a run waiting in a host call looks whether it was cancelled.
const STOP_CHECK: Duration = Duration::from_millis(50);

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

/// A plugin ready to run: compiled, linked, described.
pub struct LoadedPlugin {
    pub manifest: Manifest,
    pub info: PluginInfo,
    pub sha256: String,
    pub granted_hosts: Vec<String>,
    pre: PluginPre<RunState>,
}

struct Entry {
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

/// Settings for the plugin host, from `[plugins]` in the config.
#[derive(Debug, Clone)]
pub struct HostSettings {
    pub registry_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub network: NetworkPolicy,
    /// `serve --dev`: bundled plugins load from their `[dev]` artifact, found relative to
    /// `source_registry_dir/<id>/`, and are reloaded when it changes.
    pub dev: bool,
    pub source_registry_dir: PathBuf,
    pub quotas: RunQuotas,
    /// Where runs set their records aside until they succeed (see [`crate::spool`]).
    pub spool_dir: PathBuf,
    /// How many runs execute at once.
    pub concurrent_runs: usize,
}

/// The repository's registry folder, where bundled manifests and their `[dev]` paths live.
pub fn source_registry_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-registry"))
}

pub struct PluginHost {
    engine: Engine,
    linker: Linker<RunState>,
    settings: HostSettings,
    http_clients: http::Clients,
    entries: RwLock<BTreeMap<String, Entry>>,
    stop_ticker: Arc<AtomicBool>,
    /// Set when Fasten is stopping: every run ends at once.
    shutting_down: Arc<AtomicBool>,
    /// One permit per run that may execute now.
    run_permits: tokio::sync::Semaphore,
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// Why a run did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    #[error("the plugin reported: {0}")]
    Plugin(PluginError),
    #[error("the plugin ran past its time limit ({0} s) and was stopped")]
    TimeLimit(u64),
    #[error("the plugin exceeded its memory limit ({0} MiB) and was stopped")]
    MemoryLimit(u64),
    #[error("the plugin crashed: {0}")]
    Crashed(String),
    #[error("the plugin emitted records Fasten could not accept: {0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("cancelled")]
    Cancelled,
    #[error("Fasten was stopping, so the plugin was stopped")]
    ShuttingDown,
}

/// The plugin's own error, from the WIT `connector-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    Unauthorized,
    RateLimited(u32),
    Transient(String),
    InvalidInput(String),
    Fatal(String),
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginError::Unauthorized => f.write_str("the provider refused the credentials"),
            PluginError::RateLimited(s) => write!(f, "the provider asked to wait {s} seconds"),
            PluginError::Transient(m) => write!(f, "temporary problem: {m}"),
            PluginError::InvalidInput(m) | PluginError::Fatal(m) => f.write_str(m),
        }
    }
}

impl From<ConnectorError> for PluginError {
    fn from(e: ConnectorError) -> Self {
        // A plugin's message ends up in the job record and the page: at most 8 KiB of it.
        let bounded = |mut message: String| {
            if message.len() > runtime::ERROR_TEXT_BYTES {
                runtime::truncate_to(&mut message, runtime::ERROR_TEXT_BYTES);
                message.push('…');
            }
            message
        };
        match e {
            ConnectorError::Unauthorized => PluginError::Unauthorized,
            ConnectorError::RateLimited(s) => PluginError::RateLimited(s),
            ConnectorError::Transient(m) => PluginError::Transient(bounded(m)),
            ConnectorError::InvalidInput(m) => PluginError::InvalidInput(bounded(m)),
            ConnectorError::Fatal(m) => PluginError::Fatal(bounded(m)),
        }
    }
}

/// A plugin's warnings, kept while they fit in [`runtime::WARNING_TEXT_BYTES`] together; the
/// rest are counted in a last one.
fn bounded_warnings(warnings: Vec<String>) -> Vec<String> {
    let mut kept = Vec::new();
    let mut bytes = 0;
    let total = warnings.len();
    for mut warning in warnings {
        runtime::truncate_to(&mut warning, runtime::ERROR_TEXT_BYTES);
        if bytes + warning.len() > runtime::WARNING_TEXT_BYTES {
            break;
        }
        bytes += warning.len();
        kept.push(warning);
    }
    if kept.len() < total {
        let more = total - kept.len();
        kept.push(format!(
            "… and {more} more warning{} from the plugin.",
            if more == 1 { "" } else { "s" }
        ));
    }
    kept
}

/// A file to import.
pub struct FileInput {
    pub path: PathBuf,
    pub name: String,
    pub media_type: String,
}

/// Where a run's output goes and what it may touch.
pub struct RunContext {
    pub batches: mpsc::Sender<Vec<Prepared>>,
    pub progress: Arc<Mutex<(u64, Option<u64>)>>,
    /// The source's plugin state (see `plugins::state`); none for a run that keeps none.
    pub state: Option<PluginState>,
    /// The connection's API base, for "connection" in `allowed_hosts`; none for file imports.
    pub connection: Option<url::Url>,
    /// The connection's credentials, added by the host to requests for its API.
    pub bearer: Option<Arc<dyn BearerAuth>>,
    /// Set to stop the run (the user cancelled the job).
    pub cancel: Option<Arc<AtomicBool>>,
}

/// A successful run.
#[derive(Debug)]
pub struct RunOutput {
    pub warnings: Vec<String>,
    pub emitted: u64,
    pub checkpoint: Option<String>,
    /// The source's plugin state when the run changed it, to be saved with its records.
    pub state: Option<PluginState>,
    /// HTTP requests the run made, and the time spent waiting for their responses.
    pub http_requests: u64,
    pub http_waiting: Duration,
}

/// wasmtime 48 has its own error type; this adds context while converting it to anyhow.
trait WasmContext<T> {
    fn wasm_context(self, message: &str) -> anyhow::Result<T>;
}

impl<T> WasmContext<T> for wasmtime::Result<T> {
    fn wasm_context(self, message: &str) -> anyhow::Result<T> {
        self.map_err(|e| anyhow!("{message}: {e:#}"))
    }
}

fn engine() -> anyhow::Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    Engine::new(&config).wasm_context("cannot create the WebAssembly engine")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl PluginHost {
    pub fn new(settings: HostSettings) -> anyhow::Result<PluginHost> {
        let engine = engine()?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .wasm_context("cannot link WASI into the plugin host")?;
        runtime::Plugin::add_to_linker::<RunState, wasmtime::component::HasSelf<RunState>>(
            &mut linker,
            |state| state,
        )
        .wasm_context("cannot link the connector imports")?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("fasten-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(1000 / TICKS_PER_SECOND));
                        engine.increment_epoch();
                    }
                })
                .context("cannot start the plugin timer thread")?;
        }
        Ok(PluginHost {
            engine,
            linker,
            http_clients: http::Clients::new(settings.network.clone()),
            entries: RwLock::new(BTreeMap::new()),
            stop_ticker,
            shutting_down: Arc::default(),
            run_permits: tokio::sync::Semaphore::new(settings.concurrent_runs.max(1)),
            settings,
        })
    }

    /// What one run, and one person, may store.
    pub fn quotas(&self) -> RunQuotas {
        self.settings.quotas
    }

    /// A spool for one run's records.
    pub fn spool(&self) -> crate::spool::Spool {
        crate::spool::Spool::new(&self.settings.spool_dir)
    }

    /// Ends every run now and refuses new ones: for a server that is stopping.
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Loads the bundled plugins and every plugin in the registry folder. Failures are recorded
    /// per plugin, never returned: one broken plugin must not keep Fasten from starting.
    pub async fn load_all(self: &Arc<Self>, db: &SqlitePool) {
        let mut found: Vec<(Manifest, Origin, Result<Vec<u8>, String>)> = Vec::new();
        for (manifest, bytes) in self.bundled() {
            let bytes = self
                .dev_artifact(&manifest)
                .unwrap_or_else(|| Ok(bytes.to_vec()));
            found.push((manifest, Origin::Bundled, bytes));
        }
        let bundled_ids: Vec<String> = found.iter().map(|(m, _, _)| m.id.clone()).collect();
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
            let bytes = std::fs::read(manifest.artifact_path(&dir)).map_err(|e| {
                format!(
                    "cannot read the component {}: {e}",
                    manifest.artifact_path(&dir).display()
                )
            });
            found.push((manifest, Origin::DroppedIn, bytes));
        }
        for (manifest, origin, bytes) in found {
            self.load_one(db, manifest, origin, bytes).await;
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
            self.load_one(db, manifest, Origin::Bundled, bytes).await;
        }
        for (dir, manifest) in self.scan_registry() {
            let Ok(manifest) = manifest else { continue };
            if bundled.iter().any(|(m, _)| m.id == manifest.id) {
                continue;
            }
            let bytes = std::fs::read(manifest.artifact_path(&dir)).map_err(|e| e.to_string());
            if let Ok(b) = &bytes
                && Some(sha256_hex(b)) == self.current_sha(&manifest.id)
            {
                continue;
            }
            tracing::info!(plugin = %manifest.id, "plugin changed on disk; reloading");
            self.load_one(db, manifest, Origin::DroppedIn, bytes).await;
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
            match grant_for(db, &id).await {
                Ok(Some(grant))
                    if grant.enabled
                        && grant.sha256 == sha256
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

    /// Compiles (or reuses the precompiled cache), checks the WIT version and links: the slow,
    /// blocking part of loading a plugin.
    fn compile(&self, bytes: &[u8], sha256: &str) -> anyhow::Result<PluginPre<RunState>> {
        let component = self.compile_cached(bytes, sha256)?;
        check_api_version(&self.engine, &component)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .wasm_context("the plugin needs imports this Fasten does not provide")?;
        PluginPre::new(instance_pre)
            .wasm_context("the plugin does not export fasten:connector/connector")
    }

    /// Calls `describe` (within the manifest's `describe_seconds`) and cross-checks it with the
    /// manifest.
    async fn described(
        &self,
        manifest: Manifest,
        pre: PluginPre<RunState>,
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

    fn compile_cached(&self, bytes: &[u8], sha256: &str) -> anyhow::Result<Component> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let path = self
            .settings
            .cache_dir
            .join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` of an engine with the same
            // compatibility hash (it is in the name), into our own data folder.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "ignoring a bad plugin cache file")
                }
            }
        }
        let compiled = self
            .engine
            .precompile_component(bytes)
            .wasm_context("the file is not a valid WebAssembly component")?;
        std::fs::create_dir_all(&self.settings.cache_dir)
            .with_context(|| format!("cannot create {}", self.settings.cache_dir.display()))?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &compiled)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        // SAFETY: as above; we just wrote it.
        unsafe { Component::deserialize_file(&self.engine, &path) }
            .wasm_context("cannot load the precompiled plugin")
    }

    fn new_store(
        &self,
        manifest: &Manifest,
        seconds: u64,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Store<RunState> {
        let memory = (manifest.limits.memory_mib as usize) << 20;
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut state = RunState::new(&manifest.id, memory, deadline, self.settings.quotas);
        state.stop = Stop {
            cancel,
            shutdown: self.shutting_down.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Every tick (10 ms) of running wasm: stop when the time is up or the run was stopped,
        // else let other tasks run for a moment.
        store.epoch_deadline_callback(|context| {
            let state = context.data();
            if state.stop.requested() || Instant::now() >= state.deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        store
    }

    /// Runs `describe` on a fresh instance of a loaded plugin (what every run's start costs).
    pub async fn describe(&self, plugin: &LoadedPlugin) -> anyhow::Result<PluginInfo> {
        self.call_describe(&plugin.manifest, &plugin.pre).await
    }

    async fn call_describe(
        &self,
        manifest: &Manifest,
        pre: &PluginPre<RunState>,
    ) -> anyhow::Result<PluginInfo> {
        let seconds = manifest.limits.describe_seconds;
        let mut store = self.new_store(manifest, seconds, None);
        let stop = store.data().stop.clone();
        let deadline = store.data().deadline;
        let describing = async {
            let result = match pre.instantiate_async(&mut store).await {
                Ok(instance) => {
                    instance
                        .fasten_connector_connector()
                        .call_describe(&mut store)
                        .await
                }
                Err(trap) => Err(trap),
            };
            result.map_err(|trap| classify_trap(&store, manifest, seconds, trap))
        };
        match within_limits(deadline, &stop, seconds, describing).await {
            Ok(Ok(info)) => Ok(info),
            Ok(Err(failure)) | Err(failure) => Err(anyhow!(failure)),
        }
    }

    /// A gate for the host's own requests to `origins` (SMART discovery, token endpoints): the
    /// same network policy as plugins get, no credentials added.
    pub fn host_gate(&self, origins: Vec<grants::HostPattern>) -> HttpGate {
        HttpGate {
            grant: NetworkGrant { allowed: origins },
            bearer: None,
            clients: self.http_clients.clone(),
            stats: Arc::default(),
        }
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
        sqlx::query(
            "INSERT INTO plugin_grants (plugin_id, enabled, sha256, terms_sha256, allowed_hosts,
               decided_by, decided_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (plugin_id) DO UPDATE SET enabled = excluded.enabled, sha256 = excluded.sha256,
               terms_sha256 = excluded.terms_sha256, allowed_hosts = excluded.allowed_hosts,
               decided_by = excluded.decided_by, decided_at = excluded.decided_at",
        )
        .bind(id)
        .bind(enable)
        .bind(&sha256)
        .bind(manifest.terms_sha256())
        .bind(serde_json::to_string(&manifest.capabilities.allowed_hosts)?)
        .bind(by_user)
        .bind(crate::store::unix_now())
        .execute(db)
        .await?;
        let dir = self.settings.registry_dir.join(id);
        let manifest = Manifest::load(&dir.join("plugin.toml"))?;
        let bytes = std::fs::read(manifest.artifact_path(&dir)).map_err(|e| e.to_string());
        self.load_one(db, manifest, Origin::DroppedIn, bytes).await;
        Ok(())
    }

    /// Runs `import-file`. The run gets a fresh store; its resources go to `ctx.batches`.
    pub async fn import_file(
        &self,
        plugin: Arc<LoadedPlugin>,
        input: FileInput,
        ctx: RunContext,
    ) -> Result<RunOutput, RunFailure> {
        let file = std::fs::File::open(&input.path)
            .map_err(|e| RunFailure::Unavailable(format!("cannot open the upload: {e}")))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let seconds = plugin.manifest.limits.run_seconds;
        let handle = SourceFileHandle {
            file,
            name: input.name,
            media_type: input.media_type,
            size,
        };
        self.run(plugin, ctx, seconds, Call::ImportFile(handle))
            .await
    }

    /// Runs `sync` against the connection in `request`; resources go to `ctx.batches`. Requests to
    /// the connection's origin carry `ctx.bearer`'s token.
    pub async fn sync(
        &self,
        plugin: Arc<LoadedPlugin>,
        request: SyncRequest,
        ctx: RunContext,
    ) -> Result<RunOutput, RunFailure> {
        let seconds = plugin.manifest.limits.sync_seconds;
        self.run(plugin, ctx, seconds, Call::Sync(request)).await
    }

    /// One run of a plugin export in a fresh store: the sink, the state and the http gate are
    /// set up from `ctx`, the export is called, and the outcome is classified. The run ends at
    /// its deadline, on cancel or at shutdown, wherever it is: in wasm (the epoch callback) or
    /// waiting in a host call (`within_limits` drops it).
    async fn run(
        &self,
        plugin: Arc<LoadedPlugin>,
        ctx: RunContext,
        seconds: u64,
        call: Call,
    ) -> Result<RunOutput, RunFailure> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(RunFailure::ShuttingDown);
        }
        // The run's time starts when it may execute.
        let _permit = self
            .run_permits
            .acquire()
            .await
            .map_err(|_| RunFailure::ShuttingDown)?;
        let mut store = self.new_store(&plugin.manifest, seconds, ctx.cancel.clone());
        let stats = Arc::new(HttpStats::default());
        store.data_mut().state = ctx.state;
        store.data_mut().http = Some(HttpGate {
            grant: NetworkGrant::effective(
                &plugin.manifest.capabilities.allowed_hosts,
                &plugin.granted_hosts,
                ctx.connection.as_ref(),
            ),
            bearer: ctx.bearer.clone(),
            clients: self.http_clients.clone(),
            stats: stats.clone(),
        });
        let stop = store.data().stop.clone();
        let deadline = store.data().deadline;
        let plugin_id = plugin.manifest.id.clone();
        let running = async move {
            let sink = store
                .data_mut()
                .table
                .push(SinkHandle {
                    batches: Some(ctx.batches),
                    refused: None,
                    emitted: 0,
                    emitted_bytes: 0,
                    progress: ctx.progress,
                    checkpoint: None,
                })
                .map_err(|e| RunFailure::Crashed(e.to_string()))?;
            let borrowed = Resource::new_borrow(sink.rep());
            let result = match plugin.pre.instantiate_async(&mut store).await {
                Ok(instance) => {
                    let connector = instance.fasten_connector_connector();
                    match call {
                        Call::ImportFile(handle) => {
                            let file = store
                                .data_mut()
                                .table
                                .push(handle)
                                .map_err(|e| RunFailure::Crashed(e.to_string()))?;
                            connector
                                .call_import_file(
                                    &mut store,
                                    Resource::new_borrow(file.rep()),
                                    borrowed,
                                )
                                .await
                        }
                        Call::Sync(request) => {
                            connector.call_sync(&mut store, &request, borrowed).await
                        }
                    }
                }
                Err(trap) => Err(trap),
            };
            let dropped = store.data().log_lines_dropped();
            if dropped > 0 {
                tracing::warn!(plugin = %plugin_id, dropped, "… {dropped} more log lines from the plugin were not written");
            }
            let outcome = match result {
                Err(trap) => Err(classify_trap(&store, &plugin.manifest, seconds, trap)),
                Ok(returned) => {
                    let sink_state: SinkHandle = store
                        .data_mut()
                        .table
                        .delete(sink)
                        .map_err(|e| RunFailure::Crashed(e.to_string()))?;
                    let state = store.data_mut().state.take().filter(|s| s.changed);
                    match (sink_state.refused, returned) {
                        (Some(refusal), _) => Err(RunFailure::Refused(refusal)),
                        (None, Err(e)) => Err(RunFailure::Plugin(e.into())),
                        (None, Ok(summary)) => Ok(RunOutput {
                            warnings: bounded_warnings(summary.warnings),
                            emitted: sink_state.emitted,
                            checkpoint: sink_state.checkpoint,
                            state,
                            http_requests: 0,
                            http_waiting: Duration::ZERO,
                        }),
                    }
                }
            };
            // Dropping the store drops the sink's sender, which tells the writer the run is over.
            drop(store);
            outcome
        };
        let outcome = within_limits(deadline, &stop, seconds, running)
            .await
            .and_then(|outcome| outcome);
        match outcome {
            Ok(mut output) => {
                output.http_requests = stats.requests();
                output.http_waiting = stats.waiting();
                Ok(output)
            }
            // However the plugin reacted, a stopped run is reported as stopped.
            Err(_) if stop.shutdown.load(Ordering::Relaxed) => Err(RunFailure::ShuttingDown),
            Err(_) if stop.requested() => Err(RunFailure::Cancelled),
            Err(failure) => Err(failure),
        }
    }
}

/// A connector kind as a manifest's `kind` writes it: "network", "file" or "both".
pub fn kind_name(kind: ConnectorKind) -> &'static str {
    match kind {
        ConnectorKind::Network => "network",
        ConnectorKind::File => "file",
        ConnectorKind::Both => "both",
    }
}

/// What a plugin declares about the files it imports, for [`crate::routing`]: the file types
/// `describe` gave (none before it was described) and the manifest's signatures.
fn claim<'a>(manifest: &'a Manifest, info: Option<&'a PluginInfo>) -> crate::routing::Claim<'a> {
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

impl LoadedPlugin {
    /// What this plugin declares about the files it imports.
    pub fn claim(&self) -> crate::routing::Claim<'_> {
        claim(&self.manifest, Some(&self.info))
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

/// The export a run calls.
enum Call {
    ImportFile(SourceFileHandle),
    Sync(SyncRequest),
}

/// Awaits `work` until `deadline` or a stop, whichever comes first. Dropping the unfinished
/// future drops the plugin's store with it, wherever it was waiting.
async fn within_limits<T>(
    deadline: Instant,
    stop: &Stop,
    seconds: u64,
    work: impl Future<Output = T>,
) -> Result<T, RunFailure> {
    let stopped = async {
        while !stop.requested() {
            tokio::time::sleep(STOP_CHECK).await;
        }
    };
    tokio::select! {
        done = work => Ok(done),
        () = tokio::time::sleep_until(deadline.into()) => Err(RunFailure::TimeLimit(seconds)),
        () = stopped => Err(if stop.shutdown.load(Ordering::Relaxed) {
            RunFailure::ShuttingDown
        } else {
            RunFailure::Cancelled
        }),
    }
}

/// Turns a trap into the reason a person can read: time limit, memory limit, or a crash.
fn classify_trap(
    store: &Store<RunState>,
    manifest: &Manifest,
    seconds: u64,
    trap: wasmtime::Error,
) -> RunFailure {
    if store.data().limiter.exceeded {
        return RunFailure::MemoryLimit(manifest.limits.memory_mib);
    }
    if trap.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return RunFailure::TimeLimit(seconds);
    }
    // The trap itself says what went wrong ("wasm `unreachable` instruction executed" for a
    // panic, "call stack exhausted"); the error around it only says where, over many lines.
    let reason = match trap.downcast_ref::<wasmtime::Trap>() {
        Some(kind) => kind.to_string(),
        None => trap.root_cause().to_string(),
    };
    RunFailure::Crashed(reason.lines().next().unwrap_or("").to_string())
}

/// A component built against a `fasten:connector` version this host lacks is refused by name,
/// before linking would fail with a less helpful message.
fn check_api_version(engine: &Engine, component: &Component) -> anyhow::Result<()> {
    let ty = component.component_type();
    let mut names: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    names.extend(ty.exports(engine).map(|(n, _)| n.to_string()));
    for name in names.iter().filter(|n| n.starts_with("fasten:connector/")) {
        let version = name.rsplit_once('@').map(|(_, v)| v).unwrap_or("");
        if !version.starts_with("0.1.") {
            bail!(
                "the plugin is built for fasten:connector@{version} ({name}); this Fasten supports fasten:connector@0.1"
            );
        }
    }
    if !names
        .iter()
        .any(|n| n.starts_with("fasten:connector/connector@"))
    {
        bail!("the component does not export fasten:connector/connector; is it a Fasten plugin?");
    }
    Ok(())
}

struct Grant {
    enabled: bool,
    sha256: String,
    /// [`Manifest::terms_sha256`] when approved; none for approvals from before it was kept.
    terms_sha256: Option<String>,
    allowed_hosts: Vec<String>,
}

async fn grant_for(db: &SqlitePool, id: &str) -> sqlx::Result<Option<Grant>> {
    let row: Option<(bool, String, Option<String>, String)> = sqlx::query_as(
        "SELECT enabled, sha256, terms_sha256, allowed_hosts FROM plugin_grants WHERE plugin_id = ?",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(enabled, sha256, terms_sha256, hosts)| Grant {
        enabled,
        sha256,
        terms_sha256,
        allowed_hosts: serde_json::from_str(&hosts).unwrap_or_default(),
    }))
}
