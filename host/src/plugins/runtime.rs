//! The sandbox a plugin runs in: one store per run with an empty WASI context (no files, no
//! environment, no sockets), a memory limit, an epoch deadline, the quotas on what a run may
//! produce, and the per-run state the `fasten:connector` imports work on (their implementations
//! are in [`super::wit`], one module per WIT version).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::http::HttpGate;
use crate::fhir::{self, Prepared};

/// At most this many resources, or bytes, in one `emit` call.
pub const MAX_EMIT_RESOURCES: usize = 500;
pub const MAX_EMIT_BYTES: usize = 4 * 1024 * 1024;
/// Total size of one source's plugin state, in bytes of UTF-8 (keys and values).
pub const STATE_QUOTA_BYTES: usize = 64 * 1024;
/// The longest checkpoint a run may leave for the next one, in bytes.
pub const CHECKPOINT_QUOTA_BYTES: usize = 64 * 1024;
/// What of a plugin's own words is kept: one log line, its error, its warnings together.
pub const MAX_LOG_BYTES: usize = 4096;
pub const ERROR_TEXT_BYTES: usize = 8 * 1024;
pub const WARNING_TEXT_BYTES: usize = 64 * 1024;

/// How much one run may produce, from `[plugins]` in the config. A run past `resources` or
/// `bytes` fails and stores nothing; log lines past `log_lines` are counted, not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunQuotas {
    pub resources: u64,
    pub bytes: u64,
    pub log_lines: u64,
    /// The most bytes of records one person may have stored; none for no limit.
    pub person_bytes: Option<u64>,
}

impl Default for RunQuotas {
    fn default() -> Self {
        RunQuotas {
            resources: 2_000_000,
            bytes: 2 << 30,
            log_lines: 10_000,
            person_bytes: None,
        }
    }
}

/// The file behind a `source-file` resource.
pub struct SourceFileHandle {
    pub file: std::fs::File,
    pub name: String,
    pub media_type: String,
    pub size: u64,
}

/// The run's output side. Prepared batches go to the writer task; the first refusal poisons the
/// sink so the run fails even if the plugin ignores the error it was given.
pub struct SinkHandle {
    pub batches: Option<mpsc::Sender<Vec<Prepared>>>,
    pub refused: Option<String>,
    pub emitted: u64,
    /// Bytes of resource text emitted so far (for the run's byte quota).
    pub emitted_bytes: u64,
    pub progress: Arc<Mutex<(u64, Option<u64>)>>,
    pub checkpoint: Option<String>,
}

/// Counts memory growth against the plugin's limit and remembers if the limit was hit.
pub struct MemoryLimiter {
    pub max_bytes: usize,
    pub exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// A source's plugin state as one run sees it: read before the run, changed in memory, and
/// saved with the run's records only if the run succeeds (a failed run leaves it as it was).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginState {
    pub entries: BTreeMap<String, String>,
    pub changed: bool,
}

impl PluginState {
    pub fn new(entries: BTreeMap<String, String>) -> PluginState {
        PluginState {
            entries,
            changed: false,
        }
    }

    /// Bytes of UTF-8 in every key and value but `key`'s: NULs and 4-byte characters count
    /// for what they take.
    pub(super) fn bytes_without(&self, key: &str) -> usize {
        self.entries
            .iter()
            .filter(|(k, _)| k.as_str() != key)
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }
}

/// Why the host stopped a run from outside: set by a cancel or a shutdown, read by the epoch
/// callback (every tick of wasm) and by the watcher around host calls.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    pub cancel: Option<Arc<AtomicBool>>,
    pub shutdown: Arc<AtomicBool>,
}

impl Stop {
    pub fn requested(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
            || self
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// Per-run store data.
pub struct RunState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub plugin_id: String,
    pub http: Option<HttpGate>,
    /// The source's state for the `state` import; absent in `describe` and file previews.
    pub state: Option<PluginState>,
    pub stop: Stop,
    /// When the run's time is up; the epoch callback interrupts wasm past it.
    pub deadline: Instant,
    pub quotas: RunQuotas,
    pub log_lines: u64,
}

/// The trap a cancelled run ends with; `classify_trap` recognises it.
pub const CANCELLED: &str = "the run was cancelled";

impl RunState {
    pub(super) fn check_cancelled(&self) -> wasmtime::Result<()> {
        if self.stop.requested() {
            return Err(wasmtime::Error::msg(CANCELLED));
        }
        Ok(())
    }

    pub fn new(
        plugin_id: &str,
        memory_bytes: usize,
        deadline: Instant,
        quotas: RunQuotas,
    ) -> RunState {
        RunState {
            // Nothing: no preopened folders, no environment, no arguments, no network.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_bytes: memory_bytes,
                exceeded: false,
            },
            plugin_id: plugin_id.to_string(),
            http: None,
            state: None,
            stop: Stop::default(),
            deadline,
            quotas,
            log_lines: 0,
        }
    }

    /// Log lines the plugin wrote past its quota, which were counted and not written.
    pub fn log_lines_dropped(&self) -> u64 {
        self.log_lines.saturating_sub(self.quotas.log_lines)
    }
}

/// Checks and prepares an emitted batch, half of it on another thread: the plugin waits for its
/// emit either way, and a second core makes that wait about half as long.
pub(super) async fn prepare_batch(mut texts: Vec<String>) -> Vec<Result<Prepared, String>> {
    let prepare_all = |texts: &[String]| -> Vec<Result<Prepared, String>> {
        texts.iter().map(|t| fhir::prepare(t)).collect()
    };
    if texts.len() < 16 {
        return prepare_all(&texts);
    }
    let second = texts.split_off(texts.len() / 2);
    let other = tokio::task::spawn_blocking(move || prepare_all(&second));
    let mut prepared = prepare_all(&texts);
    match other.await {
        Ok(rest) => prepared.extend(rest),
        Err(e) => prepared.push(Err(format!("the batch could not be checked: {e}"))),
    }
    prepared
}

/// A plugin's text as one line of the host's log: control characters (newlines, escape codes)
/// shown escaped, so a plugin cannot start a line of its own or colour the terminal, and at
/// most `max_bytes`.
pub fn escape_plugin_text(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes));
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() >= max_bytes {
            truncate_to(&mut out, max_bytes);
            out.push('…');
            break;
        }
    }
    out
}

/// Cuts `text` to at most `max_bytes`, on a character boundary.
pub fn truncate_to(text: &mut String, max_bytes: usize) {
    if text.len() > max_bytes {
        let mut end = max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
