//! The sandbox a plugin runs in: one store per run with an empty WASI context (no files, no
//! environment, no sockets), a memory limit, an epoch deadline, and the host's implementations of
//! the `fasten:connector@0.1` imports.

use std::io::{Read, Seek};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::SqlitePool;
use tokio::sync::mpsc;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::http::{HttpFailure, HttpGate};
use crate::fhir::{self, Prepared};

wasmtime::component::bindgen!({
    path: "../wit/v0.1",
    world: "plugin",
    // Resource methods can fail on the host side (a bad handle); those become traps.
    imports: {
        "fasten:connector/http": trappable,
        "fasten:connector/files": trappable,
        "fasten:connector/sink": trappable,
    },
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
/// Total size of one source's plugin state.
pub const STATE_QUOTA_BYTES: usize = 64 * 1024;
const MAX_LOG_CHARS: usize = 4096;

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

/// Per-run store data.
pub struct RunState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub plugin_id: String,
    pub http: Option<HttpGate>,
    pub runtime: tokio::runtime::Handle,
    /// The database and source for the `state` import; absent in `describe`.
    pub state_store: Option<(SqlitePool, i64)>,
    /// Set by the host to stop the run: the next host call traps.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// The trap a cancelled run ends with; `classify_trap` recognises it.
pub const CANCELLED: &str = "the run was cancelled";

impl RunState {
    fn check_cancelled(&self) -> wasmtime::Result<()> {
        match &self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(wasmtime::Error::msg(CANCELLED)),
            _ => Ok(()),
        }
    }
}

impl RunState {
    pub fn new(plugin_id: &str, memory_bytes: usize, runtime: tokio::runtime::Handle) -> RunState {
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
            runtime,
            state_store: None,
            cancel: None,
        }
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
    fn send(
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
        let outcome = self.runtime.block_on(gate.send(request));
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
        let message: String = message.chars().take(MAX_LOG_CHARS).collect();
        let plugin = self.plugin_id.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl self::fasten::connector::state::Host for RunState {
    fn get(&mut self, key: String) -> Option<String> {
        let (db, source) = self.state_store.clone()?;
        self.runtime
            .block_on(
                sqlx::query_scalar(
                    "SELECT value FROM plugin_state WHERE source_id = ? AND key = ?",
                )
                .bind(source)
                .bind(key)
                .fetch_optional(&db),
            )
            .ok()
            .flatten()
    }

    fn set(&mut self, key: String, value: String) -> Result<(), String> {
        let Some((db, source)) = self.state_store.clone() else {
            return Err("no state is kept for this run".into());
        };
        self.runtime.block_on(async {
            let used: i64 = sqlx::query_scalar(
                "SELECT COALESCE(SUM(LENGTH(key) + LENGTH(value)), 0) FROM plugin_state
                 WHERE source_id = ? AND key != ?",
            )
            .bind(source)
            .bind(&key)
            .fetch_one(&db)
            .await
            .map_err(|e| e.to_string())?;
            if used as usize + key.len() + value.len() > STATE_QUOTA_BYTES {
                return Err(format!("state quota of {STATE_QUOTA_BYTES} bytes exceeded"));
            }
            sqlx::query(
                "INSERT INTO plugin_state (source_id, key, value) VALUES (?, ?, ?)
                 ON CONFLICT (source_id, key) DO UPDATE SET value = excluded.value",
            )
            .bind(source)
            .bind(&key)
            .bind(&value)
            .execute(&db)
            .await
            .map_err(|e| e.to_string())?;
            Ok(())
        })
    }

    fn delete(&mut self, key: String) {
        if let Some((db, source)) = self.state_store.clone() {
            let _ = self.runtime.block_on(
                sqlx::query("DELETE FROM plugin_state WHERE source_id = ? AND key = ?")
                    .bind(source)
                    .bind(key)
                    .execute(&db),
            );
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
    fn emit(
        &mut self,
        sink: Resource<SinkHandle>,
        resources: Vec<String>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.check_cancelled()?;
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
        } else {
            None
        };
        let prepared = match refusal {
            Some(why) => Err(why),
            None => {
                let mut ok = Vec::with_capacity(resources.len());
                let mut problems = Vec::new();
                for (index, text) in resources.iter().enumerate() {
                    match fhir::prepare(text) {
                        Ok(p) => ok.push(p),
                        Err(why) => problems.push(format!(
                            "resource {} of the batch: {why}",
                            handle.emitted + index as u64 + 1
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
        let count = batch.len() as u64;
        let sent = match &handle.batches {
            Some(tx) => tx.blocking_send(batch).is_ok(),
            None => false,
        };
        if !sent {
            let why = "the records could not be stored".to_string();
            handle.refused = Some(why.clone());
            return Ok(Err(why));
        }
        handle.emitted += count;
        Ok(Ok(()))
    }

    fn progress(
        &mut self,
        sink: Resource<SinkHandle>,
        done: u64,
        total: Option<u64>,
    ) -> wasmtime::Result<()> {
        let handle = self.table.get(&sink)?;
        *handle.progress.lock().expect("progress lock") = (done, total);
        Ok(())
    }

    fn checkpoint(&mut self, sink: Resource<SinkHandle>, cursor: String) -> wasmtime::Result<()> {
        self.table.get_mut(&sink)?.checkpoint = Some(cursor);
        Ok(())
    }

    fn drop(&mut self, sink: Resource<SinkHandle>) -> wasmtime::Result<()> {
        let _ = sink;
        Ok(())
    }
}
