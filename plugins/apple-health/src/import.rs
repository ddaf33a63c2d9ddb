//! Reading an Apple Health export as a stream and turning its records into observations.
//!
//! Everything here is plain Rust over `Read + Seek` and the SDK's [`Run`], so the native tests
//! run it with the SDK's `FakeHost` and `FakeFile`.
//!
//! What becomes what:
//! - occasional measurements (weight, blood pressure, temperature...) become one observation
//!   each, emitted while reading;
//! - heart rate, which a watch records every few minutes, becomes one observation per day and
//!   source (mean, minimum, maximum);
//! - steps, distance, energy, flights and exercise minutes, which come in many small samples,
//!   become one sum per day and source. Per source because an iPhone and a Watch both count the
//!   same steps: adding them up would count the day twice, while Apple's own per-source numbers
//!   are what the user can compare with the Health app;
//! - the daily observations and blood pressure panels are emitted at the end, from small maps
//!   (a few entries per day of data).
//!
//! Records inside a `Correlation` are skipped: Apple's DTD notes that they also appear as
//! top-level records. A blood pressure panel is made by pairing the top-level systolic and
//! diastolic records with the same start, end and source (which is how both halves of one cuff
//! reading are written), so each reading is counted once whether or not a correlation names it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Value, json};

use fasten_connector::{ConnectorError, Run};

use crate::date::{AppleDate, Day};
use crate::emit::Emitter;
use crate::mapping::{Kind, METRICS, Metric, MetricId, metric_for};
use crate::observation::{
    Category, Effective, HEALTHKIT, component, metric_concept, observation, quantity, round_to,
    stable_id, text_concept,
};
use crate::source::SeekableFile;

/// The buffer between the zip's decompressor and the XML parser.
const XML_BUFFER_BYTES: usize = 256 * 1024;
/// Malformed records quoted in the warning; the rest are only counted.
const MAX_EXAMPLES: usize = 5;
/// Skipped record types named in the warning; the rest are only counted.
const MAX_LISTED_TYPES: usize = 10;
/// How many times its compressed size export.xml may be in a zip. The Health app's exports
/// inflate 20 to 30 times; a zip bomb (a few MiB that inflate to gigabytes) about 1,000 times,
/// and streaming its gigabytes would keep a run busy until its time limit.
const MAX_INFLATION: u64 = 200;
/// Below this, any inflation is allowed: reading that much takes a moment, and a small export
/// of repetitive records may compress better than a real one.
const INFLATION_CHECKED_FROM: u64 = 64 * 1024 * 1024;
/// The most bytes of export.xml read without a `<` or `>`. The XML reader holds a whole text or
/// tag in memory, and an export has nothing longer than a few hundred bytes between its angle
/// brackets (its records are attributes, its text only line breaks and indentation): without
/// this cap, a file or zip bomb of spaces or zeros would fill the plugin's memory before
/// anything could say what is wrong.
const MAX_BYTES_WITHOUT_MARKUP: usize = 8 * 1024 * 1024;

const EMPTY_FILE: &str = "The file is empty. Upload export.xml or the zip the Health app shares.";
const NOT_XML: &str = "This file is not XML, so it is not an Apple Health export. Upload \
                       export.xml or the zip the Health app shares (in the Health app, tap your \
                       picture, then Export All Health Data).";

fn invalid(message: impl Into<String>) -> ConnectorError {
    ConnectorError::InvalidInput(message.into())
}

/// Imports an Apple Health export of `size` bytes: export.xml itself, or the zip the Health app
/// shares. Returns the run's warnings.
pub(crate) fn import(
    file: impl Read + Seek,
    size: u64,
    run: &mut Run<'_>,
) -> Result<Vec<String>, ConnectorError> {
    let mut source = SeekableFile::new(file, size);
    if source.size() == 0 {
        return Err(invalid(EMPTY_FILE));
    }
    let mut magic = [0u8; 4];
    let magic_len = read_up_to(&mut source, &mut magic);
    source.seek(SeekFrom::Start(0)).map_err(|e| {
        ConnectorError::Fatal(format!("Could not go back to the file's start: {e}"))
    })?;
    let total = Some(source.size());
    let mut emitter = Emitter::new(run, source.progress(), total);
    let is_zip = magic_len == 4 && (magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06");
    let mut warnings = if is_zip {
        let mut archive = zip::ZipArchive::new(source).map_err(unreadable_zip)?;
        let index = find_export_xml(&archive)?;
        let entry = archive.by_index(index).map_err(unreadable_zip)?;
        // The zip reader refuses to inflate past the declared size, so it can be trusted here.
        check_inflation(entry.size(), entry.compressed_size())?;
        import_xml(
            BufReader::with_capacity(XML_BUFFER_BYTES, entry),
            &mut emitter,
        )?
    } else {
        source.forward_only();
        import_xml(source, &mut emitter)?
    };
    emitter.finish()?;
    if emitter.emitted() == 0 {
        warnings.insert(
            0,
            "The export holds no records Fasten imports, so nothing was added.".to_owned(),
        );
    }
    Ok(warnings)
}

/// Refuses an export.xml that would inflate far more than the Health app's do.
pub(crate) fn check_inflation(size: u64, compressed_size: u64) -> Result<(), ConnectorError> {
    if size <= INFLATION_CHECKED_FROM || size / compressed_size.max(1) <= MAX_INFLATION {
        return Ok(());
    }
    Err(invalid(format!(
        "The export.xml in this zip would inflate to {} MB, {} times the {} bytes it takes in \
         the zip; the Health app's exports inflate about 20 to 30 times, so this is not one (it \
         may be a zip bomb). Upload the zip exactly as the Health app shared it, or the \
         export.xml inside it.",
        thousands(size / 1_000_000),
        thousands(size / compressed_size.max(1)),
        thousands(compressed_size)
    )))
}

/// The XML as it is read, failing once [`MAX_BYTES_WITHOUT_MARKUP`] bytes have gone by without
/// a `<` or `>`.
struct MarkupRuns<R> {
    inner: R,
    since_markup: usize,
    /// Bytes read in all.
    position: u64,
}

impl<R> MarkupRuns<R> {
    fn new(inner: R) -> Self {
        MarkupRuns {
            inner,
            since_markup: 0,
            position: 0,
        }
    }

    /// Where the run of bytes without markup that stopped the reading began.
    fn overlong_run(&self) -> Option<u64> {
        (self.since_markup > MAX_BYTES_WITHOUT_MARKUP)
            .then(|| self.position - self.since_markup as u64)
    }
}

impl<R: BufRead> Read for MarkupRuns<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for MarkupRuns<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.overlong_run().is_some() {
            // Said in words by `import_xml`, which knows whether this is XML at all.
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "too long without markup",
            ));
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        // The bytes consumed are the front of the buffer the last `fill_buf` returned, which
        // asking again returns without reading (BufRead's contract).
        if let Ok(buffer) = self.inner.fill_buf() {
            let consumed = &buffer[..amount.min(buffer.len())];
            // Searched from the end: in an export, markup is never far.
            self.since_markup = match consumed.iter().rposition(|&b| b == b'<' || b == b'>') {
                Some(at) => consumed.len() - at - 1,
                None => self.since_markup + consumed.len(),
            };
        }
        self.position += amount as u64;
        self.inner.consume(amount);
    }
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

fn unreadable_zip(error: zip::result::ZipError) -> ConnectorError {
    invalid(format!(
        "This zip could not be read ({error}). Upload the zip exactly as the Health app shared \
         it, or the export.xml inside it."
    ))
}

/// The entry named `export.xml` (in Apple's zip, `apple_health_export/export.xml`); not
/// `export_cda.xml`, which holds the same data as a C-CDA document.
fn find_export_xml<R: Read + Seek>(archive: &zip::ZipArchive<R>) -> Result<usize, ConnectorError> {
    archive
        .file_names_raw()
        .enumerate()
        .filter(|(_, name)| {
            let file_name = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
            file_name.eq_ignore_ascii_case(b"export.xml")
        })
        // The shallowest, should a re-zipped folder hold another copy deeper down.
        .min_by_key(|(_, name)| name.len())
        .map(|(index, _)| index)
        .ok_or_else(|| {
            invalid("This zip has no export.xml: it does not look like an Apple Health export.")
        })
}

/// Parses export.xml as a stream of events, one reused buffer, whatever its size.
fn import_xml<R: BufRead>(
    xml: R,
    out: &mut Emitter<'_, '_>,
) -> Result<Vec<String>, ConnectorError> {
    let mut reader = Reader::from_reader(MarkupRuns::new(xml));
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut importer = Importer::default();
    let mut depth = 0u32;
    let mut root_seen = false;
    let mut saw_markup = false;
    // The element under the root being read, to say where a cut-off file ends.
    let mut open_element: Vec<u8> = Vec::new();
    loop {
        let event = match reader.read_event_into(&mut buf) {
            Ok(event) => event,
            Err(_) if root_seen && reader.get_ref().overlong_run().is_some() => {
                let from = reader.get_ref().overlong_run().unwrap_or_default();
                return Err(invalid(format!(
                    "export.xml has more than {} MiB without any XML markup from byte {} on, \
                     which no Apple Health export has: the file is damaged, or it is not an \
                     export (it may be a zip bomb). Export it again from the Health app.",
                    MAX_BYTES_WITHOUT_MARKUP >> 20,
                    thousands(from)
                )));
            }
            Err(error) => {
                return Err(xml_error(
                    &error,
                    reader.error_position(),
                    root_seen,
                    &open_element,
                ));
            }
        };
        match event {
            Event::Start(element) => {
                match depth {
                    0 => {
                        check_root(&element, root_seen)?;
                        root_seen = true;
                    }
                    1 => {
                        importer.element(&element, out)?;
                        open_element.clear();
                        open_element.extend_from_slice(element.name().as_ref().as_bytes());
                    }
                    _ => {}
                }
                depth += 1;
            }
            Event::Empty(element) => match depth {
                0 => {
                    check_root(&element, root_seen)?;
                    root_seen = true;
                }
                1 => importer.element(&element, out)?,
                _ => {}
            },
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    open_element.clear();
                }
            }
            Event::Text(text) if depth == 0 && !text.bytes().all(|b| b.is_ascii_whitespace()) => {
                return Err(invalid(if root_seen {
                    "export.xml has text after its end (after </HealthData>): it is not a \
                     well-formed Apple Health export. Export it again from the Health app."
                } else {
                    NOT_XML
                }));
            }
            Event::CData(_) | Event::GeneralRef(_) if depth == 0 => {
                return Err(invalid(NOT_XML));
            }
            Event::Eof => break,
            Event::Decl(_) | Event::DocType(_) | Event::Comment(_) | Event::PI(_) => {
                saw_markup = true;
            }
            _ => {}
        }
        buf.clear();
        out.tick();
    }
    if !root_seen {
        return Err(invalid(if saw_markup {
            "The file ends before its first element: it was cut off, or it is not an Apple \
             Health export. Export it again from the Health app and upload the whole file."
        } else {
            EMPTY_FILE
        }));
    }
    if depth > 0 {
        let inside = if depth > 1 {
            String::from_utf8_lossy(&open_element).into_owned()
        } else {
            "HealthData".to_owned()
        };
        return Err(invalid(format!(
            "export.xml ends in the middle of the export (inside <{inside}>, after byte {}): the \
             file was cut off. Export it again from the Health app and upload the whole file.",
            thousands(reader.buffer_position())
        )));
    }
    importer.finish(out)
}

fn check_root(element: &BytesStart<'_>, root_seen: bool) -> Result<(), ConnectorError> {
    let name = element.name();
    let name = name.as_ref().as_bytes();
    if root_seen {
        return Err(invalid(
            "export.xml has a second root element after </HealthData>: it is not a well-formed \
             Apple Health export. Export it again from the Health app.",
        ));
    }
    if name == b"HealthData" {
        return Ok(());
    }
    let plausible_name = !name.is_empty()
        && name.len() <= 64
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-' | b'.'));
    if !plausible_name {
        return Err(invalid(NOT_XML));
    }
    Err(invalid(format!(
        "This XML file is not an Apple Health export (its root is <{}>). Upload export.xml, not \
         export_cda.xml or another XML file, or the zip the Health app shares.",
        String::from_utf8_lossy(name)
    )))
}

fn xml_error(
    error: &quick_xml::Error,
    position: u64,
    root_seen: bool,
    open_element: &[u8],
) -> ConnectorError {
    use quick_xml::errors::{Error, SyntaxError};
    if !root_seen {
        return invalid(NOT_XML);
    }
    match error {
        // Every syntax error but this one means the input ended inside some markup.
        Error::Syntax(syntax) if *syntax != SyntaxError::InvalidBangMarkup => {
            let inside = if open_element.is_empty() {
                String::new()
            } else {
                format!(" inside <{}>", String::from_utf8_lossy(open_element))
            };
            invalid(format!(
                "export.xml ends in the middle of a tag{inside} at byte {}: the file was cut off. \
                 Export it again from the Health app and upload the whole file.",
                thousands(position)
            ))
        }
        Error::Io(io) => invalid(format!(
            "The export could not be read at byte {} of export.xml ({io}). If you uploaded the \
             zip, it may be damaged: share the export from the Health app again.",
            thousands(position)
        )),
        other => invalid(format!(
            "export.xml is not well-formed XML at byte {}: {other}. Export it again from the \
             Health app; if this keeps happening, the export itself is damaged.",
            thousands(position)
        )),
    }
}

/// Sources ("Apple Watch", "Health Mate") by number, so the per-record work compares bytes
/// instead of allocating names.
#[derive(Default)]
struct Sources {
    /// As written in the file (still escaped), to compare with the next record's.
    raw: Vec<String>,
    names: Vec<String>,
    last: usize,
}

type SourceId = u32;

impl Sources {
    fn id(&mut self, raw: &str) -> SourceId {
        if self.raw.get(self.last).is_some_and(|r| r == raw) {
            return self.last as SourceId;
        }
        let index = match self.raw.iter().position(|r| r == raw) {
            Some(index) => index,
            None => {
                let name = quick_xml::escape::unescape(raw)
                    .map(|n| n.into_owned())
                    .unwrap_or_else(|_| raw.to_owned());
                self.raw.push(raw.to_owned());
                self.names.push(name);
                self.raw.len() - 1
            }
        };
        self.last = index;
        index as SourceId
    }

    fn name(&self, id: SourceId) -> &str {
        &self.names[id as usize]
    }
}

struct HeartRateDay {
    sum: f64,
    count: u64,
    min: f64,
    max: f64,
    first: AppleDate,
    last: AppleDate,
}

struct DailySum {
    sum: f64,
    /// The unit of the day's first sample, which later ones are converted to.
    unit: usize,
}

#[derive(Default)]
struct BloodPressure {
    systolic: Option<f64>,
    diastolic: Option<f64>,
}

#[derive(Default)]
struct Importer {
    sources: Sources,
    /// The last record type and its metric: exports list records grouped by type.
    last_type: String,
    last_metric: Option<MetricId>,
    heart_rate: HashMap<(Day, SourceId), HeartRateDay>,
    daily: HashMap<(MetricId, Day, SourceId), DailySum>,
    blood_pressure: HashMap<(AppleDate, AppleDate, SourceId), BloodPressure>,
    unmapped: HashMap<String, u64>,
    malformed: u64,
    malformed_examples: Vec<String>,
    workouts: u64,
    clinical_records: u64,
}

/// The attributes of a `Record` that matter, still as raw bytes.
#[derive(Default)]
struct RecordFields<'a> {
    kind: Option<std::borrow::Cow<'a, str>>,
    source: Option<std::borrow::Cow<'a, str>>,
    unit: Option<std::borrow::Cow<'a, str>>,
    value: Option<std::borrow::Cow<'a, str>>,
    start: Option<std::borrow::Cow<'a, str>>,
    end: Option<std::borrow::Cow<'a, str>>,
}

/// A value quoted in a warning, shortened.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn parse_number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

impl Importer {
    /// A child of `<HealthData>`.
    fn element(
        &mut self,
        element: &BytesStart<'_>,
        out: &mut Emitter<'_, '_>,
    ) -> Result<(), ConnectorError> {
        match element.name().as_ref() {
            "Record" => self.record(element, out),
            "Workout" => {
                self.workouts += 1;
                Ok(())
            }
            "ClinicalRecord" => {
                self.clinical_records += 1;
                Ok(())
            }
            // ActivitySummary rows are Apple's daily ring totals, derived from the energy and
            // exercise records summed here. `Me` (birth date, sex) is the host's to keep, and a
            // Correlation's records also appear at the top level.
            _ => Ok(()),
        }
    }

    fn skip_malformed(&mut self, describe: impl FnOnce() -> String) {
        self.malformed += 1;
        if self.malformed_examples.len() < MAX_EXAMPLES {
            self.malformed_examples.push(describe());
        }
    }

    fn metric_of(&mut self, kind: &str) -> Option<MetricId> {
        if self.last_type != kind {
            self.last_type.clear();
            self.last_type.push_str(kind);
            self.last_metric = metric_for(kind.as_bytes());
        }
        self.last_metric
    }

    fn record(
        &mut self,
        element: &BytesStart<'_>,
        out: &mut Emitter<'_, '_>,
    ) -> Result<(), ConnectorError> {
        let mut fields = RecordFields::default();
        for attribute in element.attributes().with_checks(false) {
            let Ok(attribute) = attribute else {
                self.skip_malformed(|| {
                    "a record whose attributes are not well-formed XML".to_owned()
                });
                return Ok(());
            };
            let slot = match attribute.key.as_ref() {
                "type" => &mut fields.kind,
                "sourceName" => &mut fields.source,
                "unit" => &mut fields.unit,
                "value" => &mut fields.value,
                "startDate" => &mut fields.start,
                "endDate" => &mut fields.end,
                _ => continue,
            };
            *slot = Some(attribute.value);
        }
        let Some(kind) = fields.kind else {
            self.skip_malformed(|| "a record without a type".to_owned());
            return Ok(());
        };
        let Some(metric_id) = self.metric_of(&kind) else {
            match self.unmapped.get_mut(kind.as_ref() as &str) {
                Some(count) => *count += 1,
                None => {
                    self.unmapped.insert(kind.into_owned(), 1);
                }
            }
            return Ok(());
        };
        let metric = &METRICS[usize::from(metric_id)];
        let raw_start = fields.start.as_deref().unwrap_or_default();
        let Some(start) = AppleDate::parse(raw_start.as_bytes()) else {
            self.skip_malformed(|| {
                format!(
                    "a {} record has the start date \"{}\", which is not a date",
                    metric.text,
                    quoted(raw_start)
                )
            });
            return Ok(());
        };
        let raw_end = fields.end.as_deref().unwrap_or(raw_start);
        let Some(end) = AppleDate::parse(raw_end.as_bytes()) else {
            self.skip_malformed(|| {
                format!(
                    "a {} record of {} has the end date \"{}\", which is not a date",
                    metric.text,
                    start.fhir(),
                    quoted(raw_end)
                )
            });
            return Ok(());
        };
        let raw_value = fields.value.as_deref().unwrap_or_default();
        let Some(value) = parse_number(raw_value) else {
            self.skip_malformed(|| {
                format!(
                    "a {} record of {} has the value \"{}\", which is not a number",
                    metric.text,
                    start.fhir(),
                    quoted(raw_value)
                )
            });
            return Ok(());
        };
        let raw_unit = fields.unit.as_deref().unwrap_or_default();
        let Some(unit) = metric.unit_for(raw_unit.as_bytes()) else {
            self.skip_malformed(|| {
                format!(
                    "a {} record of {} is in \"{}\", a unit Fasten does not know for it",
                    metric.text,
                    start.fhir(),
                    quoted(raw_unit)
                )
            });
            return Ok(());
        };
        let source = self
            .sources
            .id(fields.source.as_deref().unwrap_or_default());
        match metric.kind {
            Kind::Sample => {
                let resource = sample(metric, unit, value, start, end, self.sources.name(source));
                out.push(resource)?;
            }
            Kind::Systolic => {
                let reading = self.blood_pressure.entry((start, end, source)).or_default();
                reading.systolic = Some(value);
            }
            Kind::Diastolic => {
                let reading = self.blood_pressure.entry((start, end, source)).or_default();
                reading.diastolic = Some(value);
            }
            Kind::HeartRate => {
                let day = self
                    .heart_rate
                    .entry((start.day(), source))
                    .or_insert(HeartRateDay {
                        sum: 0.0,
                        count: 0,
                        min: value,
                        max: value,
                        first: start,
                        last: end,
                    });
                day.sum += value;
                day.count += 1;
                day.min = day.min.min(value);
                day.max = day.max.max(value);
                if start.instant() < day.first.instant() {
                    day.first = start;
                }
                if end.instant() > day.last.instant() {
                    day.last = end;
                }
            }
            Kind::DailySum => {
                let day = self
                    .daily
                    .entry((metric_id, start.day(), source))
                    .or_insert(DailySum { sum: 0.0, unit });
                day.sum += metric.convert_for_sum(value, unit, day.unit);
            }
        }
        Ok(())
    }

    /// Emits the daily observations and blood pressure panels; returns the warnings.
    fn finish(self, out: &mut Emitter<'_, '_>) -> Result<Vec<String>, ConnectorError> {
        let heart_rate_metric = &METRICS[usize::from(
            metric_for(b"HKQuantityTypeIdentifierHeartRate").expect("heart rate is mapped"),
        )];
        let mut heart_rate: Vec<_> = self.heart_rate.into_iter().collect();
        heart_rate.sort_by_key(|(key, _)| *key);
        for ((day, source), summary) in heart_rate {
            let resource =
                heart_rate_day(heart_rate_metric, day, self.sources.name(source), &summary);
            out.push(resource)?;
        }

        let mut daily: Vec<_> = self.daily.into_iter().collect();
        daily.sort_by_key(|(key, _)| *key);
        for ((metric_id, day, source), total) in daily {
            let metric = &METRICS[usize::from(metric_id)];
            out.push(daily_sum(metric, day, self.sources.name(source), &total))?;
        }

        let mut one_sided = 0u64;
        let mut readings: Vec<_> = self.blood_pressure.into_iter().collect();
        readings.sort_by_key(|(key, _)| *key);
        for ((start, end, source), reading) in readings {
            if reading.systolic.is_none() || reading.diastolic.is_none() {
                one_sided += 1;
            }
            out.push(blood_pressure(
                start,
                end,
                self.sources.name(source),
                &reading,
            ))?;
        }

        let mut warnings = Vec::new();
        if !self.unmapped.is_empty() {
            warnings.push(unmapped_warning(self.unmapped));
        }
        if self.malformed > 0 {
            let more = self.malformed - self.malformed_examples.len() as u64;
            let mut examples = self.malformed_examples.join("; ");
            if more > 0 {
                examples.push_str(&format!("; and {} more", thousands(more)));
            }
            warnings.push(format!(
                "Skipped {} that could not be read: {examples}.",
                plural(self.malformed, "record", "records")
            ));
        }
        if one_sided > 0 {
            warnings.push(format!(
                "{} had only a systolic or only a diastolic value; {} imported with the one \
                 value it has.",
                plural(
                    one_sided,
                    "blood pressure reading",
                    "blood pressure readings"
                ),
                if one_sided == 1 { "it was" } else { "each was" },
            ));
        }
        if self.workouts > 0 {
            warnings.push(format!(
                "Skipped {}: Fasten does not import workouts yet.",
                plural(self.workouts, "workout", "workouts")
            ));
        }
        if self.clinical_records > 0 {
            warnings.push(format!(
                "Skipped {} that providers shared with the Health app: Fasten does not import \
                 them from an Apple Health export yet. Connect to those providers in Fasten to \
                 import them.",
                plural(self.clinical_records, "clinical record", "clinical records")
            ));
        }
        Ok(warnings)
    }
}

fn unmapped_warning(unmapped: HashMap<String, u64>) -> String {
    let total: u64 = unmapped.values().sum();
    let mut types: Vec<(String, u64)> = unmapped.into_iter().collect();
    types.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut listed: Vec<String> = types
        .iter()
        .take(MAX_LISTED_TYPES)
        .map(|(kind, count)| format!("{kind} ({})", thousands(*count)))
        .collect();
    if types.len() > MAX_LISTED_TYPES {
        let more = (types.len() - MAX_LISTED_TYPES) as u64;
        listed.push(format!(
            "and {} more {}",
            thousands(more),
            if more == 1 { "type" } else { "types" }
        ));
    }
    format!(
        "Skipped {} of {} Fasten does not map yet: {}.",
        plural(total, "record", "records"),
        if types.len() == 1 { "a type" } else { "types" },
        listed.join(", ")
    )
}

fn plural(count: u64, one: &str, many: &str) -> String {
    format!(
        "{} {}",
        thousands(count),
        if count == 1 { one } else { many }
    )
}

/// 1234567 as "1,234,567".
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn effective(start: AppleDate, end: AppleDate) -> Effective {
    if start == end {
        Effective::DateTime(start.fhir())
    } else {
        Effective::Period(start.fhir(), end.fhir())
    }
}

/// One measurement (weight, temperature...) as one vital-signs observation.
fn sample(
    metric: &Metric,
    unit: usize,
    value: f64,
    start: AppleDate,
    end: AppleDate,
    source: &str,
) -> Value {
    let unit = &metric.units[unit];
    let value = if unit.scale == 1.0 {
        value
    } else {
        round_to(value * unit.scale, 6)
    };
    let id = stable_id(&[metric.apple_type, &start.fhir(), &end.fhir(), source]);
    let mut resource = observation(
        id,
        Category::VitalSigns,
        metric_concept(metric, unit),
        effective(start, end),
        source,
    );
    resource.insert("valueQuantity".into(), quantity(value, unit));
    Value::Object(resource)
}

fn heart_rate_day(metric: &Metric, day: Day, source: &str, summary: &HeartRateDay) -> Value {
    let unit = &metric.units[0];
    let id = stable_id(&[metric.apple_type, "day", &day.fhir(), source]);
    let mut resource = observation(
        id,
        Category::VitalSigns,
        metric_concept(metric, unit),
        Effective::Period(summary.first.fhir(), summary.last.fhir()),
        source,
    );
    let mean = round_to(summary.sum / summary.count as f64, 1);
    resource.insert("valueQuantity".into(), quantity(mean, unit));
    resource.insert(
        "component".into(),
        json!([
            component(
                text_concept("Minimum heart rate"),
                quantity(summary.min, unit)
            ),
            component(
                text_concept("Maximum heart rate"),
                quantity(summary.max, unit)
            ),
        ]),
    );
    resource.insert(
        "note".into(),
        json!([{"text": format!("Mean of {}", plural(summary.count, "reading", "readings"))}]),
    );
    Value::Object(resource)
}

fn daily_sum(metric: &Metric, day: Day, source: &str, total: &DailySum) -> Value {
    let unit = &metric.units[total.unit];
    let id = stable_id(&[metric.apple_type, "day", &day.fhir(), source]);
    let mut resource = observation(
        id,
        Category::Activity,
        metric_concept(metric, unit),
        Effective::DateTime(day.fhir()),
        source,
    );
    resource.insert(
        "valueQuantity".into(),
        quantity(round_to(total.sum, 3), unit),
    );
    Value::Object(resource)
}

/// A blood pressure panel in the shape Synthea writes and the dashboard reads.
fn blood_pressure(
    start: AppleDate,
    end: AppleDate,
    source: &str,
    reading: &BloodPressure,
) -> Value {
    let systolic = &METRICS[usize::from(
        metric_for(b"HKQuantityTypeIdentifierBloodPressureSystolic").expect("mapped"),
    )];
    let diastolic = &METRICS[usize::from(
        metric_for(b"HKQuantityTypeIdentifierBloodPressureDiastolic").expect("mapped"),
    )];
    let id = stable_id(&["blood-pressure", &start.fhir(), &end.fhir(), source]);
    let code = json!({
        "coding": [
            {"system": "http://loinc.org", "code": "85354-9",
             "display": "Blood pressure panel with all children optional"},
            {"system": HEALTHKIT, "code": "HKCorrelationTypeIdentifierBloodPressure"},
        ],
        "text": "Blood pressure",
    });
    let mut resource = observation(
        id,
        Category::VitalSigns,
        code,
        effective(start, end),
        source,
    );
    let components: Vec<Value> = [(systolic, reading.systolic), (diastolic, reading.diastolic)]
        .into_iter()
        .filter_map(|(metric, value)| {
            let unit = &metric.units[0];
            Some(component(
                metric_concept(metric, unit),
                quantity(value?, unit),
            ))
        })
        .collect();
    resource.insert("component".into(), Value::Array(components));
    Value::Object(resource)
}
