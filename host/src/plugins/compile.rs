//! Turning a component's bytes into something that can run: the one wasmtime `Engine` (epoch
//! interruption, advanced by a 10 ms ticker thread), the linker with WASI and the
//! `fasten:connector` imports, the cache of precompiled components in `plugins.cache_dir`, and
//! the check of which `fasten:connector` version a component was built against (see
//! [`super::wit`]).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::PluginHost;
use super::runtime::RunState;
use super::wit::{self, ApiVersion, ConnectorPre};

/// Epoch ticks per second (a 10 ms tick).
const TICKS_PER_SECOND: u64 = 100;

/// wasmtime 48 has its own error type; this adds context while converting it to anyhow.
trait WasmContext<T> {
    fn wasm_context(self, message: &str) -> anyhow::Result<T>;
}

impl<T> WasmContext<T> for wasmtime::Result<T> {
    fn wasm_context(self, message: &str) -> anyhow::Result<T> {
        self.map_err(|e| anyhow!("{message}: {e:#}"))
    }
}

pub(super) fn engine() -> anyhow::Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    Engine::new(&config).wasm_context("cannot create the WebAssembly engine")
}

/// A linker with WASI and every `fasten:connector` version's imports.
pub(super) fn linker(engine: &Engine) -> anyhow::Result<Linker<RunState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .wasm_context("cannot link WASI into the plugin host")?;
    wit::add_to_linker(&mut linker).wasm_context("cannot link the connector imports")?;
    Ok(linker)
}

/// Starts the thread that advances `engine`'s epoch every tick, until the returned flag is set.
pub(super) fn start_epoch_ticker(engine: &Engine) -> anyhow::Result<Arc<AtomicBool>> {
    let stop_ticker = Arc::new(AtomicBool::new(false));
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
    Ok(stop_ticker)
}

impl PluginHost {
    /// Compiles (or reuses the precompiled cache), checks the WIT version and links: the slow,
    /// blocking part of loading a plugin.
    pub(super) fn compile(&self, bytes: &[u8], sha256: &str) -> anyhow::Result<ConnectorPre> {
        let component = self.compile_cached(bytes, sha256)?;
        let version = check_api_version(&self.engine, &component)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .wasm_context("the plugin needs imports this Fasten does not provide")?;
        ConnectorPre::new(version, instance_pre)
            .wasm_context("the plugin does not export fasten:connector/connector")
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
}

/// The `fasten:connector` version a component was built against, which its `connector` export
/// names. A component built against a version this host lacks is refused by name, before
/// linking would fail with a less helpful message.
fn check_api_version(engine: &Engine, component: &Component) -> anyhow::Result<ApiVersion> {
    let ty = component.component_type();
    let mut names: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    names.extend(ty.exports(engine).map(|(n, _)| n.to_string()));
    let mut declared = None;
    for name in names.iter().filter(|n| n.starts_with("fasten:connector/")) {
        let version = name.rsplit_once('@').map(|(_, v)| v).unwrap_or("");
        let Some(api) = ApiVersion::of(version) else {
            bail!(
                "the plugin is built for fasten:connector@{version} ({name}); this Fasten supports {}",
                wit::SUPPORTED_APIS.join(", ")
            );
        };
        if name.starts_with("fasten:connector/connector@") {
            declared = Some(api);
        }
    }
    declared.ok_or_else(|| {
        anyhow!("the component does not export fasten:connector/connector; is it a Fasten plugin?")
    })
}
