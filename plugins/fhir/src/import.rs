//! `import-file`: a Bundle of any type, an NDJSON bulk export, or a single resource.
//!
//! Every resource is emitted while the file is read, so a file far larger than the plugin's
//! memory limit can be imported. A Bundle is read twice: the first pass only collects each
//! entry's `fullUrl` and identity (and proves the whole file is valid JSON before anything is
//! emitted), the second rewrites `urn:uuid:` references to `Type/id` and emits (see `bundle`).

use std::io::{BufRead, Read};

use fasten_connector::{ConnectorError, File, Run, Summary};
use fasten_fhir_r4::bundle::{Resource, outcome_issues};
use fasten_fhir_r4::json_text;
use serde_json::Value;

/// How much of a file is read to decide its format.
const SNIFF_BYTES: u64 = 64 * 1024;
/// The longest NDJSON line read. The host stores no record larger than the 4 MiB it accepts in
/// one call, and a longer line, held at once as bytes, parsed value and text, took the plugin
/// past its memory (a 10 MB line did).
const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, PartialEq)]
enum Format {
    Json,
    Ndjson,
}

/// The `import-file` export.
pub(crate) fn import(file: &mut File<'_>, run: &mut Run<'_>) -> Result<Summary, ConnectorError> {
    let format = sniff(file)?;
    file.rewind();
    let mut out = Output::new(run);
    match format {
        Format::Ndjson => import_ndjson(file, &mut out)?,
        Format::Json => crate::bundle::import_json(file, &mut out)?,
    }
    Ok(Summary {
        warnings: out.warnings,
    })
}

pub(crate) fn invalid(message: impl Into<String>) -> ConnectorError {
    ConnectorError::InvalidInput(message.into())
}

/// NDJSON when the name or media type says so, or when the first line is a whole JSON object and
/// more lines follow; otherwise one JSON document (a Bundle or a single resource).
fn sniff(file: &mut File<'_>) -> Result<Format, ConnectorError> {
    let name = file.name().to_ascii_lowercase();
    let media_type = file.media_type().to_ascii_lowercase();
    let mut head = Vec::new();
    file.take(SNIFF_BYTES)
        .read_to_end(&mut head)
        .map_err(|e| invalid(format!("The file could not be read: {e}.")))?;
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

fn import_ndjson(file: &mut File<'_>, out: &mut Output<'_, '_>) -> Result<(), ConnectorError> {
    let mut line = Vec::new();
    for number in 1.. {
        match next_line(file, &mut line, MAX_LINE_BYTES)
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
        out.push(Resource { value, verbatim })?;
    }
    if out.seen == 0 {
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
fn next_line(reader: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
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

/// Where the file's resources go: OperationOutcomes, problems a server reported rather than
/// records, become warnings; everything else is emitted.
pub(crate) struct Output<'r, 'h> {
    run: &'r mut Run<'h>,
    /// Resources read, OperationOutcomes included.
    seen: u64,
    warnings: Vec<String>,
}

impl<'r, 'h> Output<'r, 'h> {
    fn new(run: &'r mut Run<'h>) -> Self {
        Output {
            run,
            seen: 0,
            warnings: Vec::new(),
        }
    }

    /// How many resources the file holds, once known.
    pub(crate) fn expect_total(&mut self, total: u64) {
        self.run.expect_total(total);
    }

    pub(crate) fn push(&mut self, resource: Resource) -> Result<(), ConnectorError> {
        self.seen += 1;
        if resource.value.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome") {
            self.warnings.push(describe_outcome(&resource.value));
            return Ok(());
        }
        self.run.emit_text(resource.into_text())?;
        Ok(())
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
    use fasten_connector::testing::{FakeFile, FakeHost};

    use super::*;
    use crate::Fhir;

    fn import(name: &str, text: &str) -> (FakeHost, Result<Summary, ConnectorError>) {
        let mut host = FakeHost::new();
        let file = FakeFile::new(name, "application/fhir+json", text).in_chunks_of(7);
        let result = host.import_file::<Fhir>(file);
        (host, result)
    }

    fn invalid_input(name: &str, text: &str) -> String {
        match import(name, text).1 {
            Err(ConnectorError::InvalidInput(message)) => message,
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn a_bundle_is_read_twice_and_its_urn_references_rewritten() {
        let bundle = r#"{"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:6c4b", "resource": {"resourceType": "Patient"}},
            {"resource": {"resourceType": "Observation", "id": "o1",
                          "subject": {"reference": "urn:uuid:6c4b"},
                          "valueQuantity": {"value": 1.50}}},
            {"resource": {"resourceType": "OperationOutcome",
                          "issue": [{"severity": "warning", "diagnostics": "one was left out"}]}}
        ]}"#;
        let (host, summary) = import("bundle.json", bundle);
        let resources = host.resources();
        assert_eq!(resources.len(), 2);
        assert_eq!(resources[0]["id"], "6c4b");
        assert_eq!(resources[1]["subject"]["reference"], "Patient/6c4b");
        // Numbers are emitted with the digits they were written with.
        assert!(host.emitted[1].contains("1.50"), "{}", host.emitted[1]);
        assert_eq!(
            summary.unwrap().warnings,
            ["The file reported a problem: one was left out"]
        );
        // Progress counts towards the Bundle's entries, and ends complete.
        assert_eq!(host.progress.first(), Some(&(0, Some(3))));
        assert_eq!(host.progress.last(), Some(&(2, Some(2))));
    }

    #[test]
    fn ndjson_is_one_resource_a_line() {
        let text = "\u{feff}{\"resourceType\":\"Patient\",\"id\":\"p1\"}\n\n\
                    {\"resourceType\":\"Observation\",\"id\":\"o1\"}\n";
        let (host, summary) = import("export.ndjson", text);
        assert!(summary.unwrap().warnings.is_empty());
        let ids: Vec<Value> = host.resources().iter().map(|r| r["id"].clone()).collect();
        assert_eq!(ids, ["p1", "o1"]);
        // Recognised by its lines whatever its name.
        let (host, _) = import("export.json", text);
        assert_eq!(host.resources().len(), 2);
        assert_eq!(
            invalid_input("export.ndjson", "{\"resourceType\":\"Patient\"}\n{oops\n"),
            "Line 2 is not valid JSON: key must be a string at line 1 column 2."
        );
    }

    #[test]
    fn files_that_are_not_fhir_json_are_refused_before_anything_is_emitted() {
        assert_eq!(invalid_input("a.json", " \n"), "The file is empty.");
        assert!(invalid_input("a.json", "<xml/>").starts_with("This is not a FHIR JSON file"));
        assert_eq!(
            invalid_input("a.json", r#"{"id": "x"}"#),
            "The JSON has no \"resourceType\", so it is not a FHIR resource or Bundle."
        );
        let cut = r#"{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "p"}}"#;
        let (host, result) = import("a.json", cut);
        assert!(
            matches!(&result, Err(ConnectorError::InvalidInput(m)) if m.starts_with("The file is not valid JSON")),
            "{result:?}"
        );
        assert!(host.emitted.is_empty());
    }

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
