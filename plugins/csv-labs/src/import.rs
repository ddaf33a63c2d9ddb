//! The import of one CSV file, in three passes over it so that memory stays flat however long
//! the file is:
//!
//! 1. the first 64 KiB decide the encoding, the delimiter and the header line; then every date
//!    of the date column is read to decide whether 03/05/2024 is March 5 or 3 May;
//! 2. every row is read and checked: rows that cannot be used become warnings, and of two rows
//!    for the same test, time and specimen the later is kept;
//! 3. the kept rows are read again and emitted as Observations, then one DiagnosticReport per
//!    panel, time taken and lab.
//!
//! Nothing is emitted before the whole file has been checked, so a file that cannot be used
//! fails without output.

use std::collections::HashMap;
use std::io::{Cursor, Read, Seek, SeekFrom};

use fasten_connector::{ConnectorError, Refused, Run};

use crate::dates::{DateOrder, OrderEvidence};
use crate::header::{self, Columns, Detection, Role, quoted_list};
use crate::rows::{LabResult, Reading, Report, ReportKey, observation_id, parse_row};
use crate::values;

/// How much of the file decides its encoding, delimiter and header.
const HEAD_BYTES: usize = 64 * 1024;
/// Warnings listed in the summary; the rest are counted.
const MAX_WARNINGS: usize = 100;
/// Problems quoted in the error when no row could be used.
const PROBLEMS_QUOTED: usize = 3;
/// A field spanning this many lines is a quote left open, not a multi-line note.
const MAX_FIELD_LINES: usize = 20;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What the host told about the file beyond its bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// The date order the user chose after an "Ambiguous dates" error.
    pub date_order: Option<DateOrder>,
}

impl Options {
    /// Reads the parameters of the file's media type, e.g. `text/csv; dates=dmy`.
    pub fn from_media_type(media_type: &str) -> Options {
        let mut options = Options::default();
        for parameter in media_type.split(';').skip(1) {
            if let Some((key, value)) = parameter.split_once('=')
                && key.trim().eq_ignore_ascii_case("dates")
            {
                options.date_order = DateOrder::from_parameter(value);
            }
        }
        options
    }
}

/// The file cannot be used; the message says why, for the user.
fn invalid(message: impl Into<String>) -> ConnectorError {
    ConnectorError::InvalidInput(message.into())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    Utf8,
    /// What Excel on Windows writes in Western Europe when not told to use UTF-8.
    Windows1252,
}

/// How to read the file, decided from its first bytes.
#[derive(Debug)]
struct Layout {
    encoding: Encoding,
    delimiter: u8,
    columns: Columns,
}

/// Imports the CSV file `input` (read from its start once per pass), emitting through `run`,
/// and returns the warnings.
pub fn import(
    input: &mut (impl Read + Seek),
    options: &Options,
    run: &mut Run<'_>,
) -> Result<Vec<String>, ConnectorError> {
    let layout = read_layout(rewound(input)?)?;
    let mut warnings = Warnings::default();

    let date_column = layout.columns.name(Role::Date).to_string();
    let date_index = layout.columns.index(Role::Date);
    let mut evidence = OrderEvidence::default();
    let value_index = layout.columns.index(Role::Value);
    let mut data_rows = 0u64;
    let mut decimal_points = false;
    for_each_row(input, &layout, |line, fields| {
        data_rows += 1;
        if let Some(text) = date_index.and_then(|i| fields.get(i)) {
            evidence.add(line, text);
        }
        if let Some(text) = value_index.and_then(|i| fields.get(i)) {
            decimal_points |= values::has_decimal_point(text);
        }
    })?;
    if data_rows == 0 {
        return Err(invalid(format!(
            "The file has column names on line {} but no results below them.",
            layout.columns.header_line
        )));
    }
    let (order, order_warning) = evidence
        .decide(&date_column, options.date_order)
        .map_err(ConnectorError::InvalidInput)?;
    warnings.extend(order_warning);
    let reading = Reading {
        order,
        thousands_commas: layout.delimiter == b',' && decimal_points,
    };

    let mut kept: HashMap<u64, (u64, usize)> = HashMap::new();
    let mut reports: Vec<Report> = Vec::new();
    let mut report_index: HashMap<ReportKey, usize> = HashMap::new();
    for_each_row(input, &layout, |line, fields| {
        let result = match parse_row(&layout.columns, fields, line, reading) {
            Ok(result) => result,
            Err(warning) => return warnings.push(warning),
        };
        let key = result.report_key();
        let report = *report_index.entry(key).or_insert_with(|| {
            reports.push(Report::new(&result));
            reports.len() - 1
        });
        if let Some(orderer) = &result.orderer {
            reports[report].add_orderer(orderer);
        }
        if let Some((earlier, _)) = kept.insert(result.identity(), (line, report)) {
            warnings.push(duplicate_warning(earlier, &result));
        }
    })?;
    if kept.is_empty() {
        return Err(invalid(format!(
            "No row had a usable result; nothing was imported. The first problems: {}",
            warnings.first(PROBLEMS_QUOTED).join(" ")
        )));
    }
    for (digest, (line, report)) in &kept {
        reports[*report].results.push((*line, *digest));
    }
    reports.retain(|r| !r.results.is_empty());
    for report in &mut reports {
        report.results.sort();
    }
    run.expect_total((kept.len() + reports.len()) as u64);

    let mut failure: Option<Refused> = None;
    for_each_row(input, &layout, |line, fields| {
        if failure.is_some() {
            return;
        }
        let Ok(result) = parse_row(&layout.columns, fields, line, reading) else {
            return;
        };
        let digest = result.identity();
        if kept
            .get(&digest)
            .is_some_and(|(kept_line, _)| *kept_line == line)
            && let Err(refused) = run.emit(&result.to_observation(&observation_id(digest)))
        {
            failure = Some(refused);
        }
    })?;
    if let Some(refused) = failure {
        return Err(refused.into());
    }
    for report in &reports {
        run.emit(&report.to_resource())?;
    }
    Ok(warnings.finish())
}

fn duplicate_warning(earlier: u64, result: &LabResult) -> String {
    format!(
        "Rows {earlier} and {} are the same test, {}; row {} was kept.",
        result.line,
        result.describe(),
        result.line
    )
}

/// The input, from its start.
fn rewound<R: Seek>(input: &mut R) -> Result<&mut R, ConnectorError> {
    input
        .seek(SeekFrom::Start(0))
        .map_err(|e| invalid(format!("The file could not be read: {e}.")))?;
    Ok(input)
}

/// Reads the first bytes and decides the encoding, delimiter and header.
fn read_layout(reader: impl Read) -> Result<Layout, ConnectorError> {
    let mut head = Vec::with_capacity(HEAD_BYTES);
    reader
        .take(HEAD_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| invalid(format!("The file could not be read: {e}.")))?;
    if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
        return Err(invalid(
            "The file is saved as UTF-16 (\"Unicode text\"). Save it as \"CSV UTF-8\" (or plain \
             CSV) and import it again.",
        ));
    }
    let head = head.strip_prefix(UTF8_BOM).unwrap_or(&head);
    if head.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("The file is empty."));
    }
    if !looks_like_text(head) {
        return Err(invalid(
            "The file does not look like a CSV text file: it holds binary data. Export the lab \
             results from the portal as CSV and import that file.",
        ));
    }
    let encoding = match std::str::from_utf8(head) {
        Ok(_) => Encoding::Utf8,
        // Cut off in the middle of a character by the 64 KiB limit.
        Err(e) if e.error_len().is_none() => Encoding::Utf8,
        Err(_) => Encoding::Windows1252,
    };
    match header::detect(&decode(head, encoding)) {
        Detection::Found { delimiter, columns } => {
            if !columns.has(Role::Date) {
                return Err(invalid(format!(
                    "The column names on line {} ({}) have no date column: Fasten looks for one \
                     named like \"Collected\", \"Collection Date\" or \"Date\". Name the column \
                     that says when each sample was taken that way and import again.",
                    columns.header_line,
                    columns.quoted_names()
                )));
            }
            Ok(Layout {
                encoding,
                delimiter,
                columns,
            })
        }
        Detection::NoValueColumn { line, names } => Err(invalid(format!(
            "The column names on line {line} ({}) have a test name column but no value column: \
             Fasten looks for one named like \"Result\" or \"Value\". Name the column that holds \
             the results that way and import again.",
            quoted_list(&names)
        ))),
        Detection::NotFound { first_line } => Err(invalid(format!(
            "Fasten could not find the column names. It looks for a test name column (such as \
             \"Test\") and a value column (such as \"Result\") in the first {} lines, separated \
             by commas, semicolons, tabs or |; the first line was: \"{first_line}\".",
            header::MAX_PREAMBLE_LINES + 1
        ))),
    }
}

/// Text has no NUL bytes and almost no other control characters; binary files (images, PDFs,
/// spreadsheets in .xlsx form) have many.
fn looks_like_text(head: &[u8]) -> bool {
    let sample = &head[..head.len().min(4096)];
    if sample.contains(&0) {
        return false;
    }
    let control = sample
        .iter()
        .filter(|b| (**b < 0x20 && !matches!(**b, b'\t' | b'\n' | b'\r')) || **b == 0x7F)
        .count();
    control * 100 <= sample.len()
}

fn decode(bytes: &[u8], encoding: Encoding) -> String {
    match encoding {
        Encoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
        Encoding::Windows1252 => bytes.iter().map(|b| windows_1252(*b)).collect(),
    }
}

fn windows_1252(byte: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž',
        '\u{8F}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}',
        'ž', 'Ÿ',
    ];
    match byte {
        0x80..=0x9F => HIGH[usize::from(byte - 0x80)],
        _ => char::from(byte),
    }
}

/// Calls `visit` with the line number and fields of every data row after the header, skipping
/// blank rows and repeats of the header line.
fn for_each_row(
    input: &mut (impl Read + Seek),
    layout: &Layout,
    mut visit: impl FnMut(u64, &[String]),
) -> Result<(), ConnectorError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(layout.delimiter)
        .buffer_capacity(256 * 1024)
        .from_reader(skip_bom(rewound(input)?));
    let header_key: Vec<String> = layout
        .columns
        .names
        .iter()
        .map(|n| header::normalise(n))
        .collect();
    let mut record = csv::ByteRecord::new();
    let mut record_index = 0usize;
    let mut fields: Vec<String> = Vec::new();
    loop {
        let more = reader.read_byte_record(&mut record).map_err(|e| {
            invalid(format!(
                "The file could not be read after row {}: {e}.",
                record.position().map_or(0, csv::Position::line)
            ))
        })?;
        if !more {
            return Ok(());
        }
        fields.clear();
        fields.extend(record.iter().map(|f| decode(f, layout.encoding)));
        if fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let index = record_index;
        record_index += 1;
        if index <= layout.columns.header_record {
            continue;
        }
        let line = record.position().map_or(0, csv::Position::line);
        if let Some((column, _)) = fields
            .iter()
            .enumerate()
            .find(|(_, f)| f.matches('\n').count() >= MAX_FIELD_LINES)
        {
            let name = layout.columns.names.get(column).map_or("", String::as_str);
            return Err(invalid(format!(
                "Row {line}: a quotation mark in column \"{name}\" starts a field that runs over \
                 {MAX_FIELD_LINES} lines, so it is probably never closed. Check the quotation \
                 marks on that row and import again."
            )));
        }
        let repeated_header = fields.len() == header_key.len()
            && fields
                .iter()
                .zip(&header_key)
                .all(|(f, h)| header::normalise(f) == *h);
        if repeated_header {
            continue;
        }
        visit(line, &fields);
    }
}

/// The reader without a leading UTF-8 byte-order mark.
fn skip_bom<R: Read>(mut reader: R) -> std::io::Chain<Cursor<Vec<u8>>, R> {
    let mut start = Vec::with_capacity(3);
    let mut buffer = [0u8; 3];
    while start.len() < 3 {
        match reader.read(&mut buffer[..3 - start.len()]) {
            Ok(0) | Err(_) => break,
            Ok(n) => start.extend_from_slice(&buffer[..n]),
        }
    }
    if start == UTF8_BOM {
        start.clear();
    }
    Cursor::new(start).chain(reader)
}

/// The run's warnings, the first [`MAX_WARNINGS`] of them listed.
#[derive(Default)]
struct Warnings {
    listed: Vec<String>,
    unlisted: usize,
}

impl Warnings {
    fn push(&mut self, warning: String) {
        if self.listed.len() < MAX_WARNINGS {
            self.listed.push(warning);
        } else {
            self.unlisted += 1;
        }
    }

    fn extend(&mut self, warnings: impl IntoIterator<Item = String>) {
        for warning in warnings {
            self.push(warning);
        }
    }

    fn first(&self, count: usize) -> Vec<String> {
        self.listed.iter().take(count).cloned().collect()
    }

    fn finish(mut self) -> Vec<String> {
        if self.unlisted > 0 {
            self.listed.push(format!(
                "… and {} more problems like these (not listed).",
                self.unlisted
            ));
        }
        self.listed
    }
}
