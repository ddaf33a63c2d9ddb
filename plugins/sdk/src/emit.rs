//! Batching records into the `emit` calls the host accepts. The host refuses a call of more than
//! [`MAX_BATCH_RESOURCES`] records or [`MAX_BATCH_BYTES`] bytes, so no single record may be
//! larger than that either. Batches are sent at half those sizes, so a long import shows progress
//! and holds less in memory.

use std::fmt;

use crate::ConnectorError;

/// The host refuses an `emit` call with more records than this (`wit/v0.1`, `batch-sink.emit`)...
pub const MAX_BATCH_RESOURCES: usize = 500;
/// ...or whose records add up to more bytes than this, so no one record may be larger.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// A batch is sent once it has this many records...
const SEND_RESOURCES: usize = MAX_BATCH_RESOURCES / 2;
/// ...or this many bytes.
const SEND_BYTES: usize = MAX_BATCH_BYTES / 2;

/// A record the host would not take, or a batch it refused. The run cannot go on: the host
/// fails it and stores nothing of it. `?` turns it into [`ConnectorError::Fatal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "The host refused a batch of records: {}", self.0)
    }
}

impl std::error::Error for Refused {}

impl From<Refused> for ConnectorError {
    fn from(refused: Refused) -> ConnectorError {
        ConnectorError::Fatal(refused.to_string())
    }
}

/// Collects records (JSON texts) and hands them to `send` in batches the host accepts.
/// [`Run`](crate::Run) holds one; use it directly only to batch for something else.
#[derive(Debug, Default)]
pub struct Emitter {
    batch: Vec<String>,
    batch_bytes: usize,
    emitted: u64,
}

impl Emitter {
    /// An empty emitter.
    pub fn new() -> Emitter {
        Emitter::default()
    }

    /// Records handed over so far, sent or waiting.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Adds one record, sending batches through `send` when full. Returns whether a batch was
    /// sent. A record larger than [`MAX_BATCH_BYTES`] is refused here, with the reason, before
    /// the host would refuse it.
    pub fn push(
        &mut self,
        record: String,
        mut send: impl FnMut(&[String]) -> Result<(), String>,
    ) -> Result<bool, Refused> {
        if record.len() > MAX_BATCH_BYTES {
            return Err(Refused(format!(
                "a record of {} bytes is larger than the {} MiB the host accepts",
                record.len(),
                MAX_BATCH_BYTES >> 20
            )));
        }
        let mut sent = false;
        if self.batch.len() >= MAX_BATCH_RESOURCES
            || self.batch_bytes + record.len() > MAX_BATCH_BYTES
        {
            sent |= self.flush(&mut send)?;
        }
        self.batch_bytes += record.len();
        self.batch.push(record);
        self.emitted += 1;
        if self.batch.len() >= SEND_RESOURCES || self.batch_bytes >= SEND_BYTES {
            sent |= self.flush(&mut send)?;
        }
        Ok(sent)
    }

    /// Sends what is waiting; returns whether there was anything.
    pub fn flush(
        &mut self,
        mut send: impl FnMut(&[String]) -> Result<(), String>,
    ) -> Result<bool, Refused> {
        if self.batch.is_empty() {
            return Ok(false);
        }
        send(&self.batch).map_err(Refused)?;
        self.batch.clear();
        self.batch_bytes = 0;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_within_the_hosts_limits() {
        let mut sent: Vec<(usize, usize)> = Vec::new();
        let mut send = |batch: &[String]| {
            sent.push((batch.len(), batch.iter().map(String::len).sum()));
            Ok(())
        };
        let mut emitter = Emitter::new();
        for _ in 0..600 {
            emitter.push("x".repeat(10), &mut send).unwrap();
        }
        for _ in 0..3 {
            emitter.push("y".repeat(1_500_000), &mut send).unwrap();
        }
        let too_big = emitter.push("z".repeat(MAX_BATCH_BYTES + 1), &mut send);
        assert!(too_big.unwrap_err().0.contains("larger than the 4 MiB"));
        emitter.flush(&mut send).unwrap();
        assert_eq!(emitter.emitted(), 603);
        assert_eq!(sent.iter().map(|s| s.0).sum::<usize>(), 603);
        assert!(
            sent.iter()
                .all(|&(n, bytes)| n <= MAX_BATCH_RESOURCES && bytes <= MAX_BATCH_BYTES)
        );
    }

    #[test]
    fn a_refused_batch_says_why() {
        let mut emitter = Emitter::new();
        emitter.push("{}".into(), |_| Ok(())).unwrap();
        let refused = emitter.flush(|_| Err("quota exceeded".into())).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "The host refused a batch of records: quota exceeded"
        );
    }
}
