//! `fasten:connector@0.1`: the bindings generated from `wit/v0.1` and the host's implementations
//! of its imports (http, log, state, clock, files, sink) over a run's [`RunState`]. The imports
//! only translate between the WIT types and the sandbox; the limits they enforce are the
//! sandbox's (see [`crate::plugins::runtime`]).

use std::io::{Read, Seek};

use wasmtime::component::Resource;

use crate::plugins::http::HttpFailure;
use crate::plugins::runtime::{
    CHECKPOINT_QUOTA_BYTES, MAX_EMIT_BYTES, MAX_EMIT_RESOURCES, MAX_LOG_BYTES, RunState,
    STATE_QUOTA_BYTES, SinkHandle, SourceFileHandle, escape_plugin_text, prepare_batch,
};

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
        "fasten:connector/files.source-file": crate::plugins::runtime::SourceFileHandle,
        "fasten:connector/sink.batch-sink": crate::plugins::runtime::SinkHandle,
    },
});

pub use self::exports::fasten::connector::connector::{ConnectorError, PluginInfo, Summary};
pub use self::fasten::connector::types::{AuthNeed, ConnectorKind, SyncRequest};

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
        let request = crate::plugins::http::Request {
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
