//! The uploaded file as the zip reader needs it: seekable, from the end too, without rereading.
//!
//! The host's file is read forwards; seeking back means rewinding it and reading up to the
//! position again (which the SDK's `File` does). A zip reader jumps to the end (the central
//! directory), back a little (the directory itself), then to the entry it opens, so a window of
//! the most recently read bytes is kept: short jumps back land in it, and only a jump before it
//! costs a rewind and a skip forward from the start. Seeking from the end uses the size the host
//! reported.

use std::cell::Cell;
use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::rc::Rc;

/// Bytes read from the file at a time.
const CHUNK_BYTES: usize = 256 * 1024;
/// Bytes behind the read position that a backward seek can reach without a rewind. A zip's
/// central directory is about 100 bytes per entry, so this covers exports with thousands of
/// workout routes.
const WINDOW_BYTES: usize = 2 * 1024 * 1024;

/// `file` (read forwards, and rewound by seeking to its start) with a window of what was read.
pub(crate) struct SeekableFile<F: Read + Seek> {
    file: F,
    /// The bytes of the file from `window_start` on, as far as they have been read.
    window: Vec<u8>,
    window_start: u64,
    /// The logical position of the next `read`.
    position: u64,
    /// Whether the host has said the file ends at `window_end()`.
    at_end: bool,
    /// Once only read forward, the window is just the host's last chunk: no copying.
    forward_only: bool,
    size: u64,
    /// How far into the file the reading has got, for the progress bar (shared with the parser).
    progress: Rc<Cell<u64>>,
    rewinds: u32,
}

impl<F: Read + Seek> SeekableFile<F> {
    /// `file`, of `size` bytes, read from its start.
    pub(crate) fn new(file: F, size: u64) -> Self {
        SeekableFile {
            file,
            window: Vec::new(),
            window_start: 0,
            position: 0,
            at_end: false,
            forward_only: false,
            size,
            progress: Rc::new(Cell::new(0)),
            rewinds: 0,
        }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The position the reading has reached, readable while the parser owns the reader.
    pub(crate) fn progress(&self) -> Rc<Cell<u64>> {
        Rc::clone(&self.progress)
    }

    /// Promises no more seeks backwards beyond the current chunk, so a plain export.xml is
    /// read without copying it into the window.
    pub(crate) fn forward_only(&mut self) {
        self.forward_only = true;
    }

    #[cfg(test)]
    pub(crate) fn rewinds(&self) -> u32 {
        self.rewinds
    }

    fn window_end(&self) -> u64 {
        self.window_start + self.window.len() as u64
    }

    /// Appends the file's next chunk to the window; false at the end of the file.
    fn fetch(&mut self) -> io::Result<bool> {
        if self.at_end {
            return Ok(false);
        }
        let mut chunk = vec![0; CHUNK_BYTES];
        let read = loop {
            match self.file.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                read => break read?,
            }
        };
        if read == 0 {
            self.at_end = true;
            return Ok(false);
        }
        chunk.truncate(read);
        if self.forward_only && self.position >= self.window_end() {
            self.window_start = self.window_end();
            self.window = chunk;
            return Ok(true);
        }
        // Dropping the front only once the window is twice its size keeps the copying to about
        // one byte per byte read.
        if self.window.len() + chunk.len() > 2 * WINDOW_BYTES {
            let keep_from = self.window.len().saturating_sub(WINDOW_BYTES);
            self.window.drain(..keep_from);
            self.window_start += keep_from as u64;
        }
        self.window.extend_from_slice(&chunk);
        Ok(true)
    }

    fn restart(&mut self) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.rewinds += 1;
        self.window.clear();
        self.window_start = 0;
        self.at_end = false;
        Ok(())
    }
}

impl<F: Read + Seek> Read for SeekableFile<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Serves the window itself, so the XML parser reads the file's chunks without another buffer.
impl<F: Read + Seek> BufRead for SeekableFile<F> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.position < self.window_start {
            self.restart()?;
        }
        while self.position >= self.window_end() {
            if !self.fetch()? {
                return Ok(&[]);
            }
        }
        let offset = (self.position - self.window_start) as usize;
        Ok(&self.window[offset..])
    }

    fn consume(&mut self, amount: usize) {
        self.position += amount as u64;
        self.progress.set(self.position);
    }
}

impl<F: Read + Seek> Seek for SeekableFile<F> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        // Reading happens lazily in `read`; a seek only moves the position.
        self.position = target;
        Ok(target)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.position)
    }
}
