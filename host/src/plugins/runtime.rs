//! The sandbox a plugin runs in: one store per run with an empty WASI context (no files, no
//! environment, no sockets), a memory limit, an epoch deadline, and the host's implementations of
//! the `fasten:connector@0.1` imports.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::http::{HttpFailure, HttpGate};
use crate::fhir::{self, Prepared};

wasmtime::component::bindgen!({
    path: "../wit/v0.1",
    world: "plugin",
    // Resource methods can fail on the host side (a bad handle); those become traps.
    // Calls that wait (the network, handing a batch to the writer) are async, so a run's
    // deadline, a cancel or a shutdown can end the run while it waits in one of them.
    imports: {
        "fasten:connector/http": async | trappable,
        "fasten:connector/files": trappable,
        "fasten:connector/sink": async | trappable,
    },
    exports: { default: async },
    with: {
        "fasten:connector/files.source-file": SourceFileHandle,
        "fasten:connector/sink.batch-sink": SinkHandle,
    },
});

pub use self::exports::fasten::connector::connector::{ConnectorError, PluginInfo, Summary};
pub use self::fasten::connector::types::{AuthNeed, ConnectorKind, SyncRequest};

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
    fn bytes_without(&self, key: &str) -> usize {
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
    fn check_cancelled(&self) -> wasmtime::Result<()> {
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
async fn prepare_batch(mut texts: Vec<String>) -> Vec<Result<Prepared, String>> {
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

impl self::fasten::connector::types::Host for RunState {}

impl self::fasten::connector::http::Host for RunState {
    async fn send(
        &mut self,
        request: self::fasten::connector::http::Request,
    ) -> wasmtime::Result<
        Result<self::fasten::connector::http::Response, self::fasten::connector::http::HttpError>,
    > {
        use self::fasten::connector::http::{HttpError, Response};
        self.check_cancelled()?;
        let Some(gate) = self.http.clone() else {
            return Ok(Err(HttpError::Denied(
                "this plugin has no network access here".into(),
            )));
        };
        let request = super::http::Request {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        };
        let outcome = gate.send(request).await;
        // A cancel that arrived while the request was in flight ends the run here.
        self.check_cancelled()?;
        Ok(match outcome {
            Ok(r) => Ok(Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(HttpFailure::Denied(why)) => {
                tracing::warn!(plugin = %self.plugin_id, %why, "plugin request denied");
                Err(HttpError::Denied(why))
            }
            Err(HttpFailure::Timeout) => Err(HttpError::Timeout),
            Err(HttpFailure::TooLarge) => Err(HttpError::TooLarge),
            Err(HttpFailure::Network(why)) => Err(HttpError::Network(why)),
        })
    }
}

impl self::fasten::connector::log::Host for RunState {
    fn log(&mut self, level: self::fasten::connector::log::Level, message: String) {
        use self::fasten::connector::log::Level;
        self.log_lines += 1;
        if self.log_lines > self.quotas.log_lines {
            return;
        }
        // The plugin's words go in a field of their own, escaped: they can neither forge a line
        // of the host's log nor pass for the host's own message.
        let text = escape_plugin_text(&message, MAX_LOG_BYTES);
        let plugin = self.plugin_id.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, text = %text, "plugin log"),
            Level::Debug => tracing::debug!(plugin, text = %text, "plugin log"),
            Level::Info => tracing::info!(plugin, text = %text, "plugin log"),
            Level::Warn => tracing::warn!(plugin, text = %text, "plugin log"),
            Level::Error => tracing::error!(plugin, text = %text, "plugin log"),
        }
    }
}

impl self::fasten::connector::state::Host for RunState {
    fn get(&mut self, key: String) -> Option<String> {
        self.state.as_ref()?.entries.get(&key).cloned()
    }

    fn set(&mut self, key: String, value: String) -> Result<(), String> {
        let Some(state) = self.state.as_mut() else {
            return Err("no state is kept for this run".into());
        };
        if state.bytes_without(&key) + key.len() + value.len() > STATE_QUOTA_BYTES {
            return Err(format!("state quota of {STATE_QUOTA_BYTES} bytes exceeded"));
        }
        state.entries.insert(key, value);
        state.changed = true;
        Ok(())
    }

    fn delete(&mut self, key: String) {
        if let Some(state) = self.state.as_mut()
            && state.entries.remove(&key).is_some()
        {
            state.changed = true;
        }
    }
}

impl self::fasten::connector::clock::Host for RunState {
    fn now(&mut self) -> u64 {
        crate::store::unix_now().max(0) as u64
    }
}

impl self::fasten::connector::files::Host for RunState {}

impl self::fasten::connector::files::HostSourceFile for RunState {
    fn name(&mut self, file: Resource<SourceFileHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&file)?.name.clone())
    }

    fn media_type(&mut self, file: Resource<SourceFileHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&file)?.media_type.clone())
    }

    fn size(&mut self, file: Resource<SourceFileHandle>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&file)?.size)
    }

    fn read(
        &mut self,
        file: Resource<SourceFileHandle>,
        max_bytes: u32,
    ) -> wasmtime::Result<Vec<u8>> {
        let handle = self.table.get_mut(&file)?;
        let mut buffer = vec![0u8; (max_bytes as usize).min(1 << 20)];
        let mut filled = 0;
        while filled < buffer.len() {
            match handle.file.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(wasmtime::Error::msg(format!("cannot read the upload: {e}"))),
            }
        }
        buffer.truncate(filled);
        Ok(buffer)
    }

    fn rewind(&mut self, file: Resource<SourceFileHandle>) -> wasmtime::Result<()> {
        self.table.get_mut(&file)?.file.rewind()?;
        Ok(())
    }

    fn drop(&mut self, file: Resource<SourceFileHandle>) -> wasmtime::Result<()> {
        // The host owns both resources and removes them itself after the run.
        let _ = file;
        Ok(())
    }
}

impl self::fasten::connector::sink::Host for RunState {}

impl self::fasten::connector::sink::HostBatchSink for RunState {
    async fn emit(
        &mut self,
        sink: Resource<SinkHandle>,
        resources: Vec<String>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.check_cancelled()?;
        let quotas = self.quotas;
        let handle = self.table.get_mut(&sink)?;
        if let Some(earlier) = &handle.refused {
            return Ok(Err(format!("an earlier batch was refused: {earlier}")));
        }
        let bytes: usize = resources.iter().map(String::len).sum();
        let refusal = if resources.len() > MAX_EMIT_RESOURCES {
            Some(format!(
                "a batch of {} resources exceeds the limit of {MAX_EMIT_RESOURCES}",
                resources.len()
            ))
        } else if bytes > MAX_EMIT_BYTES {
            Some(format!(
                "a batch of {bytes} bytes exceeds the limit of {MAX_EMIT_BYTES}"
            ))
        } else if handle.emitted + resources.len() as u64 > quotas.resources {
            Some(format!(
                "it held more than {} records, the most one run may store (the \
                 max_run_resources setting)",
                quotas.resources
            ))
        } else if handle.emitted_bytes + bytes as u64 > quotas.bytes {
            Some(format!(
                "it held more than {} MiB of records, the most one run may store (the \
                 max_run_bytes setting)",
                quotas.bytes >> 20
            ))
        } else {
            None
        };
        let prepared = match refusal {
            Some(why) => Err(why),
            None => {
                let emitted_before = handle.emitted;
                let mut ok = Vec::with_capacity(resources.len());
                let mut problems = Vec::new();
                for (index, prepared) in prepare_batch(resources).await.into_iter().enumerate() {
                    match prepared {
                        Ok(p) => ok.push(p),
                        Err(why) => problems.push(format!(
                            "resource {} of the batch: {why}",
                            emitted_before + index as u64 + 1
                        )),
                    }
                }
                if problems.is_empty() {
                    Ok(ok)
                } else {
                    let shown: Vec<_> = problems.iter().take(5).cloned().collect();
                    let more = problems.len().saturating_sub(5);
                    Err(if more > 0 {
                        format!("{} (and {more} more)", shown.join("; "))
                    } else {
                        shown.join("; ")
                    })
                }
            }
        };
        let batch = match prepared {
            Ok(batch) => batch,
            Err(why) => {
                handle.refused = Some(why.clone());
                return Ok(Err(why));
            }
        };
        let handle = self.table.get_mut(&sink)?;
        let count = batch.len() as u64;
        let sender = handle.batches.clone();
        // Waiting here for the writer to take the batch is what bounds a run's memory; the
        // wait can be ended by the run's deadline, a cancel or a shutdown.
        let sent = match sender {
            Some(tx) => tx.send(batch).await.is_ok(),
            None => false,
        };
        let handle = self.table.get_mut(&sink)?;
        if !sent {
            let why = "the records could not be stored".to_string();
            handle.refused = Some(why.clone());
            return Ok(Err(why));
        }
        handle.emitted += count;
        handle.emitted_bytes += bytes as u64;
        Ok(Ok(()))
    }

    async fn progress(
        &mut self,
        sink: Resource<SinkHandle>,
        done: u64,
        total: Option<u64>,
    ) -> wasmtime::Result<()> {
        let handle = self.table.get(&sink)?;
        *handle.progress.lock().expect("progress lock") = (done, total);
        Ok(())
    }

    async fn checkpoint(
        &mut self,
        sink: Resource<SinkHandle>,
        cursor: String,
    ) -> wasmtime::Result<()> {
        let handle = self.table.get_mut(&sink)?;
        if cursor.len() > CHECKPOINT_QUOTA_BYTES {
            handle.refused.get_or_insert_with(|| {
                format!(
                    "a checkpoint of {} bytes exceeds the limit of {CHECKPOINT_QUOTA_BYTES}",
                    cursor.len()
                )
            });
            return Ok(());
        }
        handle.checkpoint = Some(cursor);
        Ok(())
    }

    async fn drop(&mut self, sink: Resource<SinkHandle>) -> wasmtime::Result<()> {
        let _ = sink;
        Ok(())
    }
}
