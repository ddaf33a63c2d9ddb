//! One run of a connector: the handle it gets, and the two entry points the export and
//! [`FakeHost`](crate::testing::FakeHost) share, so that a test runs exactly what the component
//! runs.

use serde_json::Value;

use crate::emit::{Emitter, Refused};
use crate::file::{File, FileSource};
use crate::host::Host;
use crate::http::{HttpError, Request, Response};
use crate::{Connector, ConnectorError, Level, Summary, SyncRequest};

/// What a run can do: emit records, reach the network, log, keep state, read the clock and
/// leave a checkpoint. Every call goes to the host.
pub struct Run<'h> {
    host: &'h mut dyn Host,
    emitter: Emitter,
    /// Whether the connector reports its own progress; until it does, the host is told how many
    /// records have been emitted after each batch.
    reports_progress: bool,
    /// How many records the run expects to emit, once the connector knows ([`Run::expect_total`]).
    expected: Option<u64>,
}

impl<'h> Run<'h> {
    /// A run against `host`. Connectors get theirs from the export (or from
    /// [`FakeHost`](crate::testing::FakeHost)); build one only to test a part of a connector.
    pub fn new(host: &'h mut dyn Host) -> Run<'h> {
        Run {
            host,
            emitter: Emitter::new(),
            reports_progress: false,
            expected: None,
        }
    }

    /// Emits one FHIR R4 resource.
    pub fn emit(&mut self, resource: &Value) -> Result<(), Refused> {
        self.emit_text(resource.to_string())
    }

    /// Emits one FHIR R4 resource given as JSON text, as it is: for a connector that passes on
    /// what a server sent without re-serialising it.
    pub fn emit_text(&mut self, json: String) -> Result<(), Refused> {
        let host = &mut *self.host;
        let sent = self.emitter.push(json, |batch| host.emit(batch))?;
        if sent {
            self.auto_progress(self.expected);
        }
        Ok(())
    }

    /// Hands `records` to the host as one `emit` call, exactly as given, after sending what is
    /// waiting, and returns the host's answer: no splitting and no size check, so the host may
    /// well refuse the batch (and then the whole run). Only for testing the host's own limits,
    /// as the hostile test connector does; a connector uses [`Run::emit`], which keeps within
    /// them. The records do not count in [`Run::emitted`].
    #[doc(hidden)]
    pub fn emit_batch_unchecked(&mut self, records: &[String]) -> Result<(), String> {
        self.flush().map_err(|refused| refused.0)?;
        self.host.emit(records)
    }

    /// Sends the records waiting in the batch now (the run does so when it ends).
    pub fn flush(&mut self) -> Result<(), Refused> {
        let host = &mut *self.host;
        if self.emitter.flush(|batch| host.emit(batch))? {
            self.auto_progress(self.expected);
        }
        Ok(())
    }

    /// Records emitted so far.
    pub fn emitted(&self) -> u64 {
        self.emitter.emitted()
    }

    /// Tells the host how many records the run will emit, once that is known (say, after a
    /// first pass over a file): the count of emitted records the run reports after each batch
    /// then goes towards it. Has no effect once the connector reports its own progress.
    pub fn expect_total(&mut self, total: u64) {
        self.expected = Some(total);
        self.auto_progress(self.expected);
    }

    /// Tells the host how far the run is (in any unit: records, bytes); `total` when known.
    /// Once called, the run stops reporting the count of emitted records by itself.
    pub fn progress(&mut self, done: u64, total: Option<u64>) {
        self.reports_progress = true;
        self.host.progress(done, total);
    }

    /// Where the next incremental sync should resume. Kept only if this run succeeds, and
    /// handed back as [`SyncRequest::cursor`].
    pub fn checkpoint(&mut self, cursor: &str) {
        self.host.checkpoint(cursor);
    }

    /// Sends an HTTP request through the host (see [`crate::http`]).
    pub fn send(&mut self, request: &Request) -> Result<Response, HttpError> {
        self.host.send(request)
    }

    /// Writes a log line under the plugin's id. Never log a patient's data or a secret.
    pub fn log(&mut self, level: Level, message: &str) {
        self.host.log(level, message);
    }

    /// A value the connection's earlier runs kept with [`Run::set_state`].
    pub fn state(&mut self, key: &str) -> Option<String> {
        self.host.state_get(key)
    }

    /// Keeps a value for the connection's later runs (saved only if this run succeeds); fails
    /// with the reason past the host's quota.
    pub fn set_state(&mut self, key: &str, value: &str) -> Result<(), String> {
        self.host.state_set(key, value)
    }

    /// Forgets a kept value.
    pub fn delete_state(&mut self, key: &str) {
        self.host.state_delete(key);
    }

    /// The host's clock: seconds since 1970-01-01T00:00:00Z.
    pub fn now(&mut self) -> u64 {
        self.host.now()
    }

    fn auto_progress(&mut self, total: Option<u64>) {
        if !self.reports_progress {
            self.host.progress(self.emitter.emitted(), total);
        }
    }

    /// Sends what is left after the connector returned `Ok`.
    fn finish(&mut self) -> Result<(), Refused> {
        // Sent without the progress `flush` would report: the last report follows.
        let host = &mut *self.host;
        self.emitter.flush(|batch| host.emit(batch))?;
        let emitted = self.emitter.emitted();
        self.auto_progress(Some(emitted));
        Ok(())
    }
}

/// `sync`, as the export and the fake host run it.
pub(crate) fn sync<C: Connector>(
    host: &mut dyn Host,
    request: SyncRequest,
) -> Result<Summary, ConnectorError> {
    let mut run = Run::new(host);
    let summary = C::sync(request, &mut run)?;
    run.finish()?;
    Ok(summary)
}

/// `import-file`, as the export and the fake host run it.
pub(crate) fn import_file<C: Connector>(
    host: &mut dyn Host,
    source: &mut dyn FileSource,
) -> Result<Summary, ConnectorError> {
    let mut run = Run::new(host);
    let summary = C::import_file(&mut File::new(source), &mut run)?;
    run.finish()?;
    Ok(summary)
}

/// Runs `f` with a run against `host`, then sends what it left batched (for
/// [`FakeHost::with_run`](crate::testing::FakeHost::with_run)).
pub(crate) fn with_run<T>(host: &mut dyn Host, f: impl FnOnce(&mut Run<'_>) -> T) -> T {
    let mut run = Run::new(host);
    let out = f(&mut run);
    // A refusal here is recorded by the fake host; the caller inspects it there.
    let _ = run.flush();
    out
}

#[cfg(test)]
mod tests {
    use crate::testing::FakeHost;

    fn basic(i: usize) -> String {
        format!(r#"{{"resourceType":"Basic","id":"b{i}"}}"#)
    }

    #[test]
    fn progress_counts_towards_the_expected_total() {
        let mut host = FakeHost::new();
        host.with_run(|run| {
            run.emit_text(basic(0)).unwrap();
            run.expect_total(600);
            for i in 1..600 {
                run.emit_text(basic(i)).unwrap();
            }
        });
        assert_eq!(
            host.progress,
            [
                (1, Some(600)),
                (250, Some(600)),
                (500, Some(600)),
                (600, Some(600))
            ]
        );
        assert_eq!(host.batches, [250, 250, 100]);

        // A connector that reports its own progress is not second-guessed.
        let mut host = FakeHost::new();
        host.with_run(|run| {
            run.progress(7, Some(10));
            run.expect_total(600);
            for i in 0..600 {
                run.emit_text(basic(i)).unwrap();
            }
        });
        assert_eq!(host.progress, [(7, Some(10))]);
    }

    #[test]
    fn an_unchecked_batch_goes_to_the_host_as_it_is() {
        let mut host = FakeHost::new();
        let answer = host.with_run(|run| {
            run.emit_text(basic(0)).unwrap();
            let many: Vec<String> = (1..=600).map(basic).collect();
            run.emit_batch_unchecked(&many)
        });
        assert_eq!(
            answer.unwrap_err(),
            "a batch of 600 records and 21492 bytes is over the host's limits"
        );
        // What was waiting went first, in a batch of its own.
        assert_eq!(host.batches, [1]);
    }

    #[test]
    fn a_discarding_host_counts_batches_only() {
        let mut host = FakeHost::new();
        host.discard_records();
        host.with_run(|run| {
            for i in 0..300 {
                run.emit_text(basic(i)).unwrap();
            }
        });
        assert_eq!(host.batches, [250, 50]);
        assert!(host.emitted.is_empty());
    }
}
