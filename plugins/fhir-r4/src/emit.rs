//! Batching emitted resources into the calls the host accepts. The host refuses an `emit` call
//! of more than [`MAX_BATCH_RESOURCES`] resources or [`MAX_BATCH_BYTES`] bytes, so no single
//! resource may be larger than that either; smaller batches are sent sooner, so a long import
//! shows progress and holds less in memory.

/// The host refuses an `emit` call with more resources than this...
pub const MAX_BATCH_RESOURCES: usize = 500;
/// ...or whose resources add up to more bytes than this (so no one resource may be larger).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// A batch is sent once it has this many resources...
const SEND_RESOURCES: usize = 250;
/// ...or this many bytes.
const SEND_BYTES: usize = 2 * 1024 * 1024;

/// Collects resources (JSON texts) and hands them to `send` in batches the host accepts.
pub struct Batcher<F: FnMut(&[String]) -> Result<(), String>> {
    send: F,
    batch: Vec<String>,
    batch_bytes: usize,
    /// Resources handed over so far, sent or waiting.
    pub emitted: u64,
}

impl<F: FnMut(&[String]) -> Result<(), String>> Batcher<F> {
    pub fn new(send: F) -> Self {
        Batcher {
            send,
            batch: Vec::new(),
            batch_bytes: 0,
            emitted: 0,
        }
    }

    /// Adds one resource, sending the batch when it is full. A resource larger than
    /// [`MAX_BATCH_BYTES`] is refused here with the reason, before the host would refuse it.
    pub fn emit(&mut self, resource: String) -> Result<(), String> {
        if resource.len() > MAX_BATCH_BYTES {
            return Err(format!(
                "a record of {} bytes is larger than the {} MiB the host accepts",
                resource.len(),
                MAX_BATCH_BYTES >> 20
            ));
        }
        if self.batch.len() >= MAX_BATCH_RESOURCES
            || self.batch_bytes + resource.len() > MAX_BATCH_BYTES
        {
            self.flush()?;
        }
        self.batch_bytes += resource.len();
        self.batch.push(resource);
        self.emitted += 1;
        if self.batch.len() >= SEND_RESOURCES || self.batch_bytes >= SEND_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends what is waiting.
    pub fn flush(&mut self) -> Result<(), String> {
        if self.batch.is_empty() {
            return Ok(());
        }
        (self.send)(&self.batch)?;
        self.batch.clear();
        self.batch_bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_within_the_hosts_limits() {
        let mut sent: Vec<(usize, usize)> = Vec::new();
        let mut batcher = Batcher::new(|batch: &[String]| {
            sent.push((batch.len(), batch.iter().map(String::len).sum()));
            Ok(())
        });
        for _ in 0..600 {
            batcher.emit("x".repeat(10)).unwrap();
        }
        for _ in 0..3 {
            batcher.emit("y".repeat(1_500_000)).unwrap();
        }
        assert!(batcher.emit("z".repeat(MAX_BATCH_BYTES + 1)).is_err());
        batcher.flush().unwrap();
        let emitted = batcher.emitted;
        assert_eq!(emitted, 603);
        assert_eq!(sent.iter().map(|s| s.0).sum::<usize>(), 603);
        assert!(
            sent.iter()
                .all(|&(n, bytes)| n <= MAX_BATCH_RESOURCES && bytes <= MAX_BATCH_BYTES)
        );
    }
}
