//! Runs of a loaded plugin's exports (`describe`, `import-file`, `sync`), each in a fresh
//! sandboxed store (see [`super::runtime`]): what a run is given ([`RunContext`], [`FileInput`]),
//! what it gives back ([`RunOutput`]) or why it failed ([`RunFailure`]), the watch that ends it at
//! its deadline, on cancel or at shutdown, and the call into the guest through the bindings of
//! the WIT version it was built against (see [`super::wit`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use tokio::sync::mpsc;
use wasmtime::component::Resource;
use wasmtime::{Store, UpdateDeadline};

use super::grants::NetworkGrant;
use super::http::{BearerAuth, HttpGate, HttpStats};
use super::manifest::Manifest;
use super::runtime::{self, PluginState, RunState, SinkHandle, SourceFileHandle, Stop};
use super::wit::{ConnectorError, ConnectorPre, PluginInfo, SyncRequest};
use super::{LoadedPlugin, PluginHost};
use crate::fhir::Prepared;

/// How often a run waiting in a host call looks whether it was cancelled.
const STOP_CHECK: Duration = Duration::from_millis(50);

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
    /// The source's plugin state (see [`crate::store::plugin_state`]); none for a run that keeps
    /// none.
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

impl PluginHost {
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

    pub(super) async fn call_describe(
        &self,
        manifest: &Manifest,
        pre: &ConnectorPre,
    ) -> anyhow::Result<PluginInfo> {
        let seconds = manifest.limits.describe_seconds;
        let mut store = self.new_store(manifest, seconds, None);
        let stop = store.data().stop.clone();
        let deadline = store.data().deadline;
        let describing = async {
            let result = match pre.instantiate_async(&mut store).await {
                Ok(instance) => instance.call_describe(&mut store).await,
                Err(trap) => Err(trap),
            };
            result.map_err(|trap| classify_trap(&store, manifest, seconds, trap))
        };
        match within_limits(deadline, &stop, seconds, describing).await {
            Ok(Ok(info)) => Ok(info),
            Ok(Err(failure)) | Err(failure) => Err(anyhow!(failure)),
        }
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
                Ok(connector) => match call {
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
                },
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
