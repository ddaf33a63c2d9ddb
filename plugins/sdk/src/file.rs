//! The file a user uploaded, read from the host in chunks so that large files need not fit in
//! the plugin's memory.

use std::io::{self, BufRead, Read, Seek, SeekFrom};

use crate::ConnectorError;

/// Chunks asked of the host at a time (the host may return fewer bytes).
const CHUNK_BYTES: u32 = 1 << 20;

/// Where a [`File`]'s bytes come from: the host's `source-file`, or a
/// [`FakeFile`](crate::testing::FakeFile) in tests.
pub trait FileSource {
    /// The name the user's file had, e.g. `export.ndjson`.
    fn name(&self) -> String;
    /// The media type the host determined, e.g. `text/csv`.
    fn media_type(&self) -> String;
    /// The size in bytes the host reports (an upper bound is not promised: read to the end).
    fn size(&self) -> u64;
    /// Up to `max_bytes` more bytes; empty at the end.
    fn read(&mut self, max_bytes: u32) -> Vec<u8>;
    /// Starts again from the first byte.
    fn rewind(&mut self);
}

/// An uploaded file: a buffered [`Read`] and [`BufRead`], with its name, media type and size,
/// and [`File::rewind`] for a second pass. It is also [`Seek`], for readers written against
/// `Read + Seek`, but the host's file reads forwards only: seeking back rewinds and reads up
/// to the position again, and seeking from the end is not supported.
pub struct File<'a> {
    source: &'a mut dyn FileSource,
    buffer: Vec<u8>,
    consumed: usize,
    /// Bytes taken from the source so far.
    fetched: u64,
}

impl<'a> File<'a> {
    /// A file reading from `source`.
    pub fn new(source: &'a mut dyn FileSource) -> File<'a> {
        File {
            source,
            buffer: Vec::new(),
            consumed: 0,
            fetched: 0,
        }
    }

    /// The name the user's file had.
    pub fn name(&self) -> String {
        self.source.name()
    }

    /// The media type the host determined.
    pub fn media_type(&self) -> String {
        self.source.media_type()
    }

    /// The size the host reports, in bytes.
    pub fn size(&self) -> u64 {
        self.source.size()
    }

    /// How many bytes have been read so far (for progress).
    pub fn position(&self) -> u64 {
        self.fetched - (self.buffer.len() - self.consumed) as u64
    }

    /// Starts again from the first byte.
    pub fn rewind(&mut self) {
        self.source.rewind();
        self.buffer.clear();
        self.consumed = 0;
        self.fetched = 0;
    }

    /// Reads the whole file, refusing one larger than `max_bytes` with `too_large(size)` as
    /// the message the user sees. The size the host reports is checked first, and the bytes
    /// read are counted too, so memory stays bounded either way.
    pub fn read_all(
        &mut self,
        max_bytes: u64,
        too_large: impl Fn(u64) -> String,
    ) -> Result<Vec<u8>, ConnectorError> {
        let size = self.size();
        if size > max_bytes {
            return Err(ConnectorError::InvalidInput(too_large(size)));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        loop {
            let chunk = self.fill_buf().expect("reading from the host cannot fail");
            if chunk.is_empty() {
                return Ok(bytes);
            }
            if (bytes.len() + chunk.len()) as u64 > max_bytes {
                return Err(ConnectorError::InvalidInput(too_large(
                    (bytes.len() + chunk.len()) as u64,
                )));
            }
            bytes.extend_from_slice(chunk);
            let n = chunk.len();
            self.consume(n);
        }
    }
}

impl Read for File<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for File<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.consumed == self.buffer.len() {
            self.buffer = self.source.read(CHUNK_BYTES);
            self.consumed = 0;
            self.fetched += self.buffer.len() as u64;
        }
        Ok(&self.buffer[self.consumed..])
    }

    fn consume(&mut self, amount: usize) {
        self.consumed = (self.consumed + amount).min(self.buffer.len());
    }
}

impl Seek for File<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(at) => at,
            SeekFrom::Current(delta) => {
                self.position().checked_add_signed(delta).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "seek before the start")
                })?
            }
            SeekFrom::End(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "an uploaded file is read forwards; it cannot seek from its end",
                ));
            }
        };
        if target < self.position() {
            self.rewind();
        }
        while self.position() < target {
            let available = self.fill_buf()?.len();
            if available == 0 {
                break;
            }
            let skip = available.min((target - self.position()) as usize);
            self.consume(skip);
        }
        Ok(self.position())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, Read, Seek, SeekFrom};

    use super::File;
    use crate::testing::FakeFile;

    #[test]
    fn reads_lines_across_chunks_and_again_after_a_rewind() {
        let mut source = FakeFile::new("a.txt", "text/plain", "one\ntwo\nthree\n").in_chunks_of(3);
        let mut file = File::new(&mut source);
        let lines: Vec<String> = (&mut file).lines().map(Result::unwrap).collect();
        assert_eq!(lines, ["one", "two", "three"]);
        assert_eq!(file.position(), 14);
        file.seek(SeekFrom::Start(4)).unwrap();
        let mut rest = String::new();
        file.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "two\nthree\n");
        assert!(file.seek(SeekFrom::End(0)).is_err());
    }

    #[test]
    fn read_all_refuses_a_file_over_the_limit() {
        let mut source = FakeFile::new("a.txt", "text/plain", vec![b'x'; 100]).in_chunks_of(7);
        let mut file = File::new(&mut source);
        let refused = file
            .read_all(99, |size| format!("{size} bytes is too much"))
            .unwrap_err();
        assert!(
            matches!(refused, crate::ConnectorError::InvalidInput(m) if m == "100 bytes is too much")
        );
        file.rewind();
        assert_eq!(file.read_all(100, |_| String::new()).unwrap().len(), 100);
        drop(file);
        assert_eq!(source.rewinds(), 1);
    }
}
