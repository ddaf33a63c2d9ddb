//! Fasten's FHIR R4 connector.
//!
//! `import-file` accepts a Bundle of any type, an NDJSON bulk export, or a single resource, and
//! emits every resource in batches while it reads, so a file far larger than the plugin's memory
//! limit can be imported. A Bundle is read twice: the first pass only collects each entry's
//! `fullUrl` and identity (and proves the whole file is valid JSON before anything is emitted),
//! the second rewrites `urn:uuid:` references to `Type/id` and emits. `sync` reads a patient's
//! records from a FHIR R4 server the host has connected with SMART on FHIR (see `sync`).

mod bundle;
mod sync;

use fasten_fhir_r4::bundle::{Resource, outcome_issues};
use fasten_fhir_r4::json_text;
use serde_json::Value;

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

/// Emit when this many resources are waiting...
const BATCH_RESOURCES: usize = 250;
/// ...or when they add up to this many bytes (the host accepts at most 4 MiB per call).
const BATCH_BYTES: usize = 2 * 1024 * 1024;
/// How much of a file is read to decide its format.
const SNIFF_BYTES: usize = 64 * 1024;
/// The longest NDJSON line read. The host stores no record larger than the 4 MiB it accepts in
/// one call, and a longer line, held at once as bytes, parsed value and text, took the plugin
/// past its memory (a 10 MB line did).
const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

struct Fhir;

impl Guest for Fhir {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "fhir".into(),
            name: "FHIR".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: ConnectorKind::Both,
            auth: AuthNeed::SmartOnFhir,
            file_types: vec![
                FileType {
                    media_type: "application/fhir+json".into(),
                    extensions: vec!["json".into()],
                    description: "FHIR R4 Bundle or single resource (JSON)".into(),
                },
                FileType {
                    media_type: "application/fhir+ndjson".into(),
                    extensions: vec!["ndjson".into(), "jsonl".into()],
                    description: "FHIR bulk export (NDJSON, one resource per line)".into(),
                },
            ],
            settings_schema: None,
        }
    }

    fn sync(request: SyncRequest, out: &BatchSink) -> Result<Summary, ConnectorError> {
        sync::run(request, out)
    }

    fn import_file(file: &SourceFile, out: &BatchSink) -> Result<Summary, ConnectorError> {
        let format = sniff(file)?;
        file.rewind();
        let mut emitter = Emitter::new(out);
        match format {
            Format::Ndjson => import_ndjson(file, &mut emitter)?,
            Format::Json => bundle::import_json(file, &mut emitter)?,
        }
        emitter.finish()?;
        Ok(Summary {
            warnings: emitter.warnings,
        })
    }
}

export!(Fhir);

#[derive(Debug, PartialEq)]
enum Format {
    Json,
    Ndjson,
}

/// Reads the host's file in chunks as a `std::io::Read`.
pub(crate) struct FileReader<'a> {
    file: &'a SourceFile,
}

impl<'a> FileReader<'a> {
    pub(crate) fn new(file: &'a SourceFile) -> Self {
        FileReader { file }
    }
}

impl std::io::Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(1 << 20) as u32;
        let chunk = self.file.read(want);
        buf[..chunk.len()].copy_from_slice(&chunk);
        Ok(chunk.len())
    }
}

pub(crate) fn invalid(message: impl Into<String>) -> ConnectorError {
    ConnectorError::InvalidInput(message.into())
}

/// NDJSON when the name or media type says so, or when the first line is a whole JSON object and
/// more lines follow; otherwise one JSON document (a Bundle or a single resource).
fn sniff(file: &SourceFile) -> Result<Format, ConnectorError> {
    let name = file.name().to_ascii_lowercase();
    let media_type = file.media_type().to_ascii_lowercase();
    let mut head = Vec::new();
    while head.len() < SNIFF_BYTES {
        let chunk = file.read((SNIFF_BYTES - head.len()) as u32);
        if chunk.is_empty() {
            break;
        }
        head.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(strip_bom(&head));
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(invalid("The file is empty."));
    }
    if !trimmed.starts_with('{') {
        return Err(invalid(
            "This is not a FHIR JSON file: it should start with '{'. Fasten imports FHIR R4 \
             Bundles, single resources, and NDJSON bulk exports.",
        ));
    }
    if name.ends_with(".ndjson") || name.ends_with(".jsonl") || media_type.contains("ndjson") {
        return Ok(Format::Ndjson);
    }
    let mut lines = trimmed.lines().filter(|l| !l.trim().is_empty());
    let first_is_whole = lines
        .next()
        .is_some_and(|l| serde_json::from_str::<serde::de::IgnoredAny>(l).is_ok());
    if first_is_whole && lines.next().is_some() {
        return Ok(Format::Ndjson);
    }
    Ok(Format::Json)
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

fn import_ndjson(file: &SourceFile, emitter: &mut Emitter<'_>) -> Result<(), ConnectorError> {
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, FileReader::new(file));
    let mut line = Vec::new();
    for number in 1.. {
        match next_line(&mut reader, &mut line, MAX_LINE_BYTES)
            .map_err(|e| invalid(format!("cannot read line {number}: {e}")))?
        {
            Line::End => break,
            Line::TooLong => {
                return Err(invalid(format!(
                    "Line {number} is longer than {} MiB, more than Fasten stores as one record, \
                     so the file cannot be imported.",
                    MAX_LINE_BYTES >> 20
                )));
            }
            Line::Read => {}
        }
        let line = if number == 1 { strip_bom(&line) } else { &line };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| invalid(format!("Line {number} is not valid JSON: {e}.")))?;
        // The line parsed, so it is UTF-8.
        let verbatim = json_text::has_rewritten_numbers(line)
            .then(|| json_text::minify(&String::from_utf8_lossy(line)));
        emitter.push(Resource { value, verbatim })?;
    }
    if emitter.seen == 0 {
        return Err(invalid("The file holds no resources."));
    }
    Ok(())
}

enum Line {
    Read,
    TooLong,
    End,
}

/// Reads the next line into `line`, without its `\n`, reading no more than `max` bytes of it.
fn next_line(
    reader: &mut impl std::io::BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    use std::io::{BufRead, Read};
    line.clear();
    if reader.take(max as u64 + 1).read_until(b'\n', line)? == 0 {
        return Ok(Line::End);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(Line::Read);
    }
    // No line break: the last line, or one cut at `max + 1` bytes.
    Ok(if line.len() > max {
        Line::TooLong
    } else {
        Line::Read
    })
}

/// Collects resources into batches and hands them to the host.
pub(crate) struct Emitter<'a> {
    out: &'a BatchSink,
    batch: Vec<String>,
    batch_bytes: usize,
    pub(crate) seen: u64,
    pub(crate) total: Option<u64>,
    pub(crate) warnings: Vec<String>,
}

impl<'a> Emitter<'a> {
    fn new(out: &'a BatchSink) -> Self {
        Emitter {
            out,
            batch: Vec::new(),
            batch_bytes: 0,
            seen: 0,
            total: None,
            warnings: Vec::new(),
        }
    }

    /// Queues one resource. OperationOutcomes are problems reported by a server, not records:
    /// they become warnings.
    pub(crate) fn push(&mut self, resource: Resource) -> Result<(), ConnectorError> {
        self.seen += 1;
        if resource.value.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome") {
            self.warnings.push(describe_outcome(&resource.value));
            return Ok(());
        }
        let text = resource.into_text();
        self.batch_bytes += text.len();
        self.batch.push(text);
        if self.batch.len() >= BATCH_RESOURCES || self.batch_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ConnectorError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.out.emit(&batch).map_err(|reason| {
            ConnectorError::Fatal(format!("the host refused a batch: {reason}"))
        })?;
        self.out.progress(self.seen, self.total);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ConnectorError> {
        self.flush()
    }
}

fn describe_outcome(outcome: &Value) -> String {
    let issues = outcome_issues(outcome);
    if issues.is_empty() {
        "The file contained an OperationOutcome (a server-reported problem).".into()
    } else {
        format!("The file reported a problem: {}", issues.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[u8], max: usize) -> Vec<Result<String, &'static str>> {
        let mut reader = text;
        let mut line = Vec::new();
        let mut read = Vec::new();
        loop {
            match next_line(&mut reader, &mut line, max).unwrap() {
                Line::End => return read,
                Line::TooLong => read.push(Err("too long")),
                Line::Read => read.push(Ok(String::from_utf8(line.clone()).unwrap())),
            }
        }
    }

    #[test]
    fn ndjson_lines_are_read_up_to_a_length() {
        assert_eq!(
            lines(b"{}\n\n{\"a\":1}", 8),
            [Ok("{}".into()), Ok("".into()), Ok("{\"a\":1}".into())]
        );
        // Exactly `max` bytes and its line break, then one byte more.
        assert_eq!(lines(b"12345678\n", 8), [Ok("12345678".into())]);
        assert_eq!(lines(b"123456789\n", 8)[0], Err("too long"));
        assert_eq!(lines(b"123456789", 8)[0], Err("too long"));
    }
}
