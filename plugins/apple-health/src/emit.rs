//! Batching resources for the host, and telling it how far the run is.

use std::cell::Cell;
use std::rc::Rc;

use serde_json::Value;

use crate::exports::fasten::connector::connector::ConnectorError;

/// What a run hands to the host (the wit `batch-sink`, or a recorder in tests).
pub(crate) trait Output {
    fn emit(&mut self, resources: &[String]) -> Result<(), String>;
    fn progress(&mut self, done: u64, total: Option<u64>);
}

/// Emit when this many resources are waiting (the host takes at most 500)...
const BATCH_RESOURCES: usize = 250;
/// ...or when they add up to this many bytes (the host takes at most 4 MiB).
const BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Most records are folded into daily summaries emitted at the end, so progress is also reported
/// whenever reading has moved on this far.
const PROGRESS_STEP_BYTES: u64 = 4 * 1024 * 1024;

pub(crate) struct Emitter<O: Output> {
    out: O,
    batch: Vec<String>,
    batch_bytes: usize,
    /// Bytes of the uploaded file read so far (advanced by the reader).
    position: Rc<Cell<u64>>,
    total: Option<u64>,
    reported: u64,
    pub(crate) emitted: u64,
}

impl<O: Output> Emitter<O> {
    pub(crate) fn new(out: O, position: Rc<Cell<u64>>, total: Option<u64>) -> Self {
        Emitter {
            out,
            batch: Vec::new(),
            batch_bytes: 0,
            position,
            total,
            reported: 0,
            emitted: 0,
        }
    }

    pub(crate) fn push(&mut self, resource: Value) -> Result<(), ConnectorError> {
        let text = resource.to_string();
        self.batch_bytes += text.len();
        self.batch.push(text);
        self.emitted += 1;
        if self.batch.len() >= BATCH_RESOURCES || self.batch_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<(), ConnectorError> {
        if !self.batch.is_empty() {
            let batch = std::mem::take(&mut self.batch);
            self.batch_bytes = 0;
            self.out.emit(&batch).map_err(|reason| {
                ConnectorError::Fatal(format!("The host refused a batch of records: {reason}"))
            })?;
        }
        self.report();
        Ok(())
    }

    /// Sends what is left and reports the whole file as done (a zip's last bytes, its directory,
    /// were read before the export inside it).
    pub(crate) fn finish(&mut self) -> Result<(), ConnectorError> {
        self.flush()?;
        if let Some(total) = self.total {
            self.position.set(total);
            self.report();
        }
        Ok(())
    }

    /// Cheap enough to call for every record.
    pub(crate) fn tick(&mut self) {
        if self.position.get() >= self.reported + PROGRESS_STEP_BYTES {
            self.report();
        }
    }

    fn report(&mut self) {
        let done = self.position.get();
        self.reported = done;
        self.out.progress(done, self.total);
    }
}

impl<T: Output + ?Sized> Output for &mut T {
    fn emit(&mut self, resources: &[String]) -> Result<(), String> {
        (**self).emit(resources)
    }

    fn progress(&mut self, done: u64, total: Option<u64>) {
        (**self).progress(done, total);
    }
}
