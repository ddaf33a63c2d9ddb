//! Emitting through the run, and telling the host how far the reading has got, in bytes of the
//! uploaded file.

use std::cell::Cell;
use std::rc::Rc;

use fasten_connector::{ConnectorError, Run};
use serde_json::Value;

/// Most records are folded into daily summaries emitted at the end, so progress is reported
/// whenever reading has moved on this far.
const PROGRESS_STEP_BYTES: u64 = 4 * 1024 * 1024;

pub(crate) struct Emitter<'r, 'h> {
    run: &'r mut Run<'h>,
    /// Bytes of the uploaded file read so far (advanced by the reader).
    position: Rc<Cell<u64>>,
    total: Option<u64>,
    reported: u64,
}

impl<'r, 'h> Emitter<'r, 'h> {
    /// Reports the start at once: from then on, progress is in bytes, not records.
    pub(crate) fn new(run: &'r mut Run<'h>, position: Rc<Cell<u64>>, total: Option<u64>) -> Self {
        let mut emitter = Emitter {
            run,
            position,
            total,
            reported: 0,
        };
        emitter.report();
        emitter
    }

    pub(crate) fn push(&mut self, resource: Value) -> Result<(), ConnectorError> {
        self.run.emit(&resource)?;
        Ok(())
    }

    /// Records emitted so far.
    pub(crate) fn emitted(&self) -> u64 {
        self.run.emitted()
    }

    /// Sends what is left and reports the whole file as done (a zip's last bytes, its directory,
    /// were read before the export inside it).
    pub(crate) fn finish(&mut self) -> Result<(), ConnectorError> {
        self.run.flush()?;
        if let Some(total) = self.total {
            self.position.set(total);
        }
        self.report();
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
        self.run.progress(done, self.total);
    }
}
