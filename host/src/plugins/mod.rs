//! The plugin microkernel: connector plugins, WebAssembly components run by wasmtime in a fresh
//! sandboxed store each. This module holds the [`PluginHost`] the rest of Fasten talks to and the
//! types it hands out; the work is split by concern:
//!
//! - [`registry`]: the plugins found (bundled and dropped in), their load status, approval, the
//!   views the Plugins page shows, and reloading what changed on disk;
//! - [`compile`]: the wasmtime engine and its epoch ticker, the precompiled-component cache, and
//!   the check of the WIT version a component was built against;
//! - [`run`]: runs of `describe`, `import-file` and `sync` within their limits, and why a run
//!   failed;
//! - [`wit`]: one module per `fasten:connector` WIT version (its bindings and the host's imports),
//!   and the dispatch by the version a component declares;
//! - [`runtime`]: the sandbox a run executes in (its store data, memory limit and quotas);
//! - [`grants`] and [`http`]: which hosts a plugin may reach, and the gate its requests pass;
//! - [`manifest`], [`check`] and [`reload`]: `plugin.toml`, `fasten plugin check`, and the file
//!   watcher of `serve --dev`.
//!
//! Grants and plugin state are stored by [`crate::store::plugin_grants`] and
//! [`crate::store::plugin_state`].

pub mod check;
pub mod compile;
pub mod grants;
pub mod http;
pub mod manifest;
pub mod registry;
pub mod reload;
pub mod run;
pub mod runtime;
pub mod wit;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Linker;

use self::grants::NetworkGrant;
use self::http::{HttpGate, NetworkPolicy};
use self::manifest::Manifest;
use self::registry::Entry;
pub use self::registry::{Origin, PluginView, Status};
pub use self::run::{FileInput, PluginError, RunContext, RunFailure, RunOutput};
use self::runtime::RunState;
pub use self::runtime::{PluginState, RunQuotas};
pub use self::wit::SyncRequest;
use self::wit::{ConnectorKind, ConnectorPre, PluginInfo};
/// A source's plugin state in the database: `plugins::state::load` and `save`, as before the
/// queries moved to the store.
pub use crate::store::plugin_state as state;

/// A plugin ready to run: compiled, linked, described.
pub struct LoadedPlugin {
    pub manifest: Manifest,
    pub info: PluginInfo,
    pub sha256: String,
    pub granted_hosts: Vec<String>,
    pre: ConnectorPre,
}

impl LoadedPlugin {
    /// What this plugin declares about the files it imports.
    pub fn claim(&self) -> crate::routing::Claim<'_> {
        registry::claim(&self.manifest, Some(&self.info))
    }
}

/// Settings for the plugin host, from `[plugins]` in the config.
#[derive(Debug, Clone)]
pub struct HostSettings {
    pub registry_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub network: NetworkPolicy,
    /// `serve --dev`: bundled plugins load from their `[dev]` artifact, found relative to
    /// `source_registry_dir/<id>/`, installed ones from theirs when it is there, and both are
    /// reloaded when it changes.
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

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A connector kind as a manifest's `kind` writes it: "network", "file" or "both".
pub fn kind_name(kind: ConnectorKind) -> &'static str {
    match kind {
        ConnectorKind::Network => "network",
        ConnectorKind::File => "file",
        ConnectorKind::Both => "both",
    }
}

impl PluginHost {
    pub fn new(settings: HostSettings) -> anyhow::Result<PluginHost> {
        let engine = compile::engine()?;
        let linker = compile::linker(&engine)?;
        let stop_ticker = compile::start_epoch_ticker(&engine)?;
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
}
