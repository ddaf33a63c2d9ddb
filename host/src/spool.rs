//! Where a run's records wait until the run has succeeded. An import or a sync stores nothing
//! while its plugin runs: holding SQLite's single write lock for a whole run would make every
//! other writer (a sign-in, another member's upload) wait on a plugin. The records are spooled
//! instead, in memory while they are few and in an unnamed temporary file under the data folder
//! once they are not, so a run of a gigabyte costs disk, not memory. The file has no name, so
//! it disappears with the process however that ends. When the run has succeeded, the spool is
//! read back in chunks and written in one short transaction.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::fhir::Prepared;

/// Records are kept in memory up to this many bytes of JSON, then all go to the file.
const MEMORY_BYTES: usize = 16 << 20;
/// Records are read back, and written, at most this many at a time.
pub const CHUNK_RECORDS: usize = 2000;
/// A chunk read back holds about this many bytes of JSON at most (what is derived from them,
/// tokens and search text, can be as much again), so writing large records stays small.
pub const CHUNK_BYTES: usize = 8 << 20;

/// A run's records, in the order they were emitted.
pub struct Spool {
    dir: PathBuf,
    memory: Vec<Prepared>,
    memory_bytes: usize,
    file: Option<BufWriter<File>>,
    count: u64,
}

impl Spool {
    /// A spool that spills into `dir` (created when first needed).
    pub fn new(dir: &Path) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
            memory: Vec::new(),
            memory_bytes: 0,
            file: None,
            count: 0,
        }
    }

    /// How many records it holds.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn push(&mut self, batch: Vec<Prepared>) -> std::io::Result<()> {
        self.count += batch.len() as u64;
        if self.file.is_none() {
            self.memory_bytes += batch.iter().map(|p| p.json.len()).sum::<usize>();
            self.memory.extend(batch);
            if self.memory_bytes <= MEMORY_BYTES {
                return Ok(());
            }
            let held = std::mem::take(&mut self.memory);
            self.memory_bytes = 0;
            return self.spill(held);
        }
        self.spill(batch)
    }

    fn spill(&mut self, records: Vec<Prepared>) -> std::io::Result<()> {
        if self.file.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            self.file = Some(BufWriter::with_capacity(
                1 << 20,
                tempfile::tempfile_in(&self.dir)?,
            ));
        }
        let file = self.file.as_mut().expect("just opened");
        for record in &records {
            let bytes = postcard::to_stdvec(record).map_err(std::io::Error::other)?;
            file.write_all(&(bytes.len() as u32).to_le_bytes())?;
            file.write_all(&bytes)?;
        }
        Ok(())
    }

    /// Reads the records back from the start, at most `chunk` at a time and about
    /// [`CHUNK_BYTES`] of JSON; may be called again for another pass.
    pub fn reader(&mut self, chunk: usize) -> std::io::Result<SpoolReader<'_>> {
        let file = match self.file.as_mut() {
            Some(writer) => {
                writer.flush()?;
                let mut file = writer.get_ref().try_clone()?;
                file.rewind()?;
                Some(BufReader::with_capacity(1 << 20, file))
            }
            None => None,
        };
        Ok(SpoolReader {
            spool: self,
            file,
            next: 0,
            chunk: chunk.max(1),
        })
    }
}

/// One pass over a [`Spool`].
pub struct SpoolReader<'a> {
    spool: &'a Spool,
    file: Option<BufReader<File>>,
    next: usize,
    chunk: usize,
}

impl SpoolReader<'_> {
    /// The next records, or `None` at the end.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Vec<Prepared>>> {
        let Some(file) = self.file.as_mut() else {
            let rest = &self.spool.memory[self.next.min(self.spool.memory.len())..];
            let mut bytes = 0;
            let taken: Vec<Prepared> = rest
                .iter()
                .take(self.chunk)
                .take_while(|p| {
                    let first = bytes == 0;
                    bytes += p.json.len();
                    first || bytes <= CHUNK_BYTES
                })
                .cloned()
                .collect();
            self.next += taken.len();
            return Ok((!taken.is_empty()).then_some(taken));
        };
        let mut records = Vec::with_capacity(self.chunk.min(4096));
        let mut buffer = Vec::new();
        let mut bytes = 0;
        while records.len() < self.chunk && bytes < CHUNK_BYTES {
            let mut length = [0u8; 4];
            match file.read_exact(&mut length) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
            buffer.resize(u32::from_le_bytes(length) as usize, 0);
            file.read_exact(&mut buffer)?;
            let record: Prepared = postcard::from_bytes(&buffer).map_err(std::io::Error::other)?;
            bytes += record.json.len();
            records.push(record);
        }
        Ok((!records.is_empty()).then_some(records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize, size: usize) -> Prepared {
        let text = "x".repeat(size);
        crate::fhir::prepare(&format!(
            r#"{{"resourceType":"Observation","id":"o{i}","status":"final","code":{{"text":"{text}"}},"valueQuantity":{{"value":1.50}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn records_come_back_as_they_went_in_from_memory_and_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for size in [10, 100_000] {
            let mut spool = Spool::new(&dir.path().join("spool"));
            let sent: Vec<Prepared> = (0..400).map(|i| record(i, size)).collect();
            for batch in sent.chunks(70) {
                spool.push(batch.to_vec()).unwrap();
            }
            assert_eq!(spool.len(), 400);
            for _pass in 0..2 {
                let mut reader = spool.reader(128).unwrap();
                let mut back = Vec::new();
                while let Some(chunk) = reader.next_chunk().unwrap() {
                    assert!(chunk.len() <= 128);
                    back.extend(chunk);
                }
                assert_eq!(back.len(), sent.len());
                for (a, b) in sent.iter().zip(&back) {
                    assert_eq!(a.json, b.json);
                    assert_eq!(a.content_hash, b.content_hash);
                    assert_eq!(a.tokens, b.tokens);
                    assert_eq!(a.search, b.search);
                    assert_eq!(a.observation_keys, b.observation_keys);
                }
            }
        }
        // The spilled file has no name: nothing is left in the folder.
        let left = std::fs::read_dir(dir.path().join("spool")).unwrap().count();
        assert_eq!(left, 0);
    }
}
