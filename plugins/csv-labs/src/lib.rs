//! Fasten's connector for lab results exported as CSV from a lab or patient portal.
//!
//! `import-file` finds the header line (after up to ten preamble lines) and the delimiter, reads
//! each row as one result, and emits an Observation per row and a DiagnosticReport per panel and
//! collection time. The format logic lives in plain modules that the unit tests run natively;
//! this file only adapts the host's imports to them (the imports exist only in wasm).

mod dates;
mod header;
mod import;
mod rows;
mod values;

#[cfg(test)]
mod tests;

wit_bindgen::generate!({
    path: "../../wit/v0.1",
    world: "plugin",
});

use exports::fasten::connector::connector::{
    ConnectorError, Guest, PluginInfo, Summary, SyncRequest,
};
use fasten::connector::files::SourceFile;
use fasten::connector::sink::BatchSink;
use fasten::connector::types::{AuthNeed, ConnectorKind, FileType};
use serde_json::Value;

use import::{ImportError, Options, Output};

/// Emit when this many resources are waiting...
const BATCH_RESOURCES: usize = 250;
/// ...or when they add up to this many bytes (the host accepts at most 4 MiB per call).
const BATCH_BYTES: usize = 2 * 1024 * 1024;

struct CsvLabs;

impl Guest for CsvLabs {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "csv-labs".into(),
            name: "Lab results (CSV)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: ConnectorKind::File,
            auth: AuthNeed::None,
            file_types: vec![FileType {
                media_type: "text/csv".into(),
                extensions: vec!["csv".into(), "tsv".into()],
                description: "Lab results exported as CSV from a lab or patient portal".into(),
            }],
            settings_schema: None,
        }
    }

    fn sync(_request: SyncRequest, _out: &BatchSink) -> Result<Summary, ConnectorError> {
        Err(ConnectorError::Fatal(
            "The lab results (CSV) connector only imports files; it has nothing to sync.".into(),
        ))
    }

    fn import_file(file: &SourceFile, out: &BatchSink) -> Result<Summary, ConnectorError> {
        let options = Options::from_media_type(&file.media_type());
        let mut emitter = Emitter::new(out);
        let open = || {
            file.rewind();
            FileReader { file }
        };
        let warnings = import::import(open, &options, &mut emitter).map_err(|e| match e {
            ImportError::Invalid(message) => ConnectorError::InvalidInput(message),
            ImportError::Output(reason) => {
                ConnectorError::Fatal(format!("the host refused a batch: {reason}"))
            }
        })?;
        emitter.flush()?;
        Ok(Summary { warnings })
    }
}

export!(CsvLabs);

/// Reads the host's file in chunks as a `std::io::Read`.
struct FileReader<'a> {
    file: &'a SourceFile,
}

impl std::io::Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(1 << 20) as u32;
        let chunk = self.file.read(want);
        buf[..chunk.len()].copy_from_slice(&chunk);
        Ok(chunk.len())
    }
}

/// Collects resources into batches and hands them to the host.
struct Emitter<'a> {
    out: &'a BatchSink,
    batch: Vec<String>,
    batch_bytes: usize,
    emitted: u64,
    total: Option<u64>,
}

impl<'a> Emitter<'a> {
    fn new(out: &'a BatchSink) -> Self {
        Emitter {
            out,
            batch: Vec::new(),
            batch_bytes: 0,
            emitted: 0,
            total: None,
        }
    }

    fn flush(&mut self) -> Result<(), ConnectorError> {
        self.send()
            .map_err(|reason| ConnectorError::Fatal(format!("the host refused a batch: {reason}")))
    }

    fn send(&mut self) -> Result<(), String> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.out.emit(&batch)?;
        self.out.progress(self.emitted, self.total);
        Ok(())
    }
}

impl Output for Emitter<'_> {
    fn emit(&mut self, resource: Value) -> Result<(), String> {
        let text = resource.to_string();
        self.emitted += 1;
        self.batch_bytes += text.len();
        self.batch.push(text);
        if self.batch.len() >= BATCH_RESOURCES || self.batch_bytes >= BATCH_BYTES {
            self.send()?;
        }
        Ok(())
    }

    fn expect(&mut self, total: u64) {
        self.total = Some(total);
        self.out.progress(0, self.total);
    }
}
