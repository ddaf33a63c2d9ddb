//! One data row read into a lab result, and the FHIR resources made from results.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::dates::{self, DayMonth, FhirDate};
use crate::header::{Columns, Role, shorten};
use crate::values::{self, Flag, Range, ResultValue};

pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
pub const INTERPRETATION: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
pub const DIAGNOSTIC_SERVICE: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
/// The report name when the file has no panel column (or the row's panel is empty).
pub const DEFAULT_REPORT_NAME: &str = "Lab results";

/// A data row, read.
#[derive(Debug, Clone, PartialEq)]
pub struct LabResult {
    /// The row's line number in the file.
    pub line: u64,
    pub name: String,
    pub loinc: Option<String>,
    /// The code (LOINC or the lab's own) or else the name, normalised: what test this is.
    pub test_key: String,
    pub value: ResultValue,
    pub unit: Option<String>,
    pub range: Option<Range>,
    pub flag: Option<Flag>,
    pub date: FhirDate,
    pub lab: Option<String>,
    pub orderer: Option<String>,
    pub specimen: Option<String>,
    pub panel: Option<String>,
}

/// What the whole file decided about how to read its cells.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    /// Whether 03/05/2024 is March 5 or 3 May.
    pub order: Option<DayMonth>,
    /// In a comma-separated file whose results use decimal points, "3,400" (quoted) can only be
    /// three thousand four hundred.
    pub thousands_commas: bool,
}

/// Reads one data row; the error is the warning to show (the row is then skipped).
pub fn parse_row(
    columns: &Columns,
    fields: &[String],
    line: u64,
    reading: Reading,
) -> Result<LabResult, String> {
    let cell = |role| {
        columns
            .index(role)
            .and_then(|i| fields.get(i))
            .map_or("", |f| f.trim())
    };
    let number_cell = |role| {
        let text = cell(role);
        if reading.thousands_commas {
            values::drop_thousands_commas(text)
        } else {
            text.to_string()
        }
    };
    let optional = |role| Some(cell(role).to_string()).filter(|s| !s.is_empty());
    let code = cell(Role::Code);
    let name = match cell(Role::Name) {
        "" if code.is_empty() => return Err(format!("Row {line}: no test name; skipped.")),
        "" => code.to_string(),
        name => name.to_string(),
    };
    let Some(value) = values::parse_value(&number_cell(Role::Value)) else {
        return Err(format!("Row {line}: no value for \"{name}\"; skipped."));
    };
    let date_text = cell(Role::Date);
    let date_column = columns.name(Role::Date);
    if date_text.is_empty() {
        return Err(format!(
            "Row {line}: no date in column \"{date_column}\" for \"{name}\"; skipped."
        ));
    }
    let Some(raw) = dates::parse_raw(date_text) else {
        return Err(format!(
            "Row {line}: \"{}\" in column \"{date_column}\" is not a date Fasten can read (it \
             reads dates like 2024-03-05, 03/05/2024 and 05.03.2024, with or without a time); \
             skipped.",
            shorten(date_text, 40)
        ));
    };
    let date = dates::resolve(&raw, reading.order).map_err(|reason| {
        format!(
            "Row {line}: \"{date_text}\" in column \"{date_column}\" is not a valid date \
             ({reason}); skipped."
        )
    })?;
    let inline_unit = match &value {
        ResultValue::Number { unit, .. } => unit.clone(),
        _ => None,
    };
    let range = if columns.has(Role::Range) {
        values::parse_range(&number_cell(Role::Range))
    } else {
        let low = values::parse_number(&number_cell(Role::RangeLow));
        let high = values::parse_number(&number_cell(Role::RangeHigh));
        (low.is_some() || high.is_some()).then_some(Range {
            low,
            high,
            text: None,
        })
    };
    let loinc = loinc_code(code);
    let test_key = if code.is_empty() {
        identity_text(&name)
    } else {
        identity_text(loinc.as_deref().unwrap_or(code))
    };
    Ok(LabResult {
        line,
        name,
        loinc,
        test_key,
        value,
        unit: optional(Role::Unit).or(inline_unit),
        range,
        flag: values::parse_flag(cell(Role::Flag)),
        date,
        lab: optional(Role::Lab),
        orderer: optional(Role::Orderer),
        specimen: optional(Role::Specimen),
        panel: optional(Role::Panel),
    })
}

/// The code when it has LOINC's shape (1 to 5 digits, a dash, a check digit), "LOINC:" prefix
/// or not.
pub fn loinc_code(code: &str) -> Option<String> {
    let code = code.trim();
    let code = code
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("loinc:"))
        .map_or(code, |_| code[6..].trim());
    let (number, check) = code.split_once('-')?;
    let shaped = (1..=5).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
        && check.len() == 1
        && check.bytes().all(|b| b.is_ascii_digit());
    shaped.then(|| code.to_string())
}

/// Lower case with runs of white space made one space, so "Glucose " and "glucose" are one test.
fn identity_text(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The first 64 bits of the SHA-256 of the identity parts: kept per row instead of the id
/// text, so a long history needs less memory.
fn identity_digest(parts: &[&str]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// `csvlab-` and 16 hex digits of the Observation's identity digest.
pub fn observation_id(digest: u64) -> String {
    format!("csvlab-{digest:016x}")
}

impl LabResult {
    /// Depends only on what identifies the result (test, time taken, specimen), so importing a
    /// corrected or longer export of the same results updates them instead of adding copies.
    pub fn identity(&self) -> u64 {
        let specimen = self.specimen.as_deref().map(identity_text);
        identity_digest(&[
            "observation",
            &self.test_key,
            &self.date.identity,
            specimen.as_deref().unwrap_or(""),
        ])
    }

    pub fn report_key(&self) -> ReportKey {
        ReportKey {
            panel: self.panel.as_deref().map(identity_text).unwrap_or_default(),
            effective: self.date.effective.clone(),
            lab: self.lab.as_deref().map(identity_text).unwrap_or_default(),
        }
    }

    /// How the row is named in warnings: the test, and the date as written in FHIR form.
    pub fn describe(&self) -> String {
        match &self.specimen {
            Some(specimen) => format!(
                "\"{}\" ({specimen}) on {}",
                self.name,
                self.date.identity.replace('T', " ")
            ),
            None => format!(
                "\"{}\" on {}",
                self.name,
                self.date.identity.replace('T', " ")
            ),
        }
    }

    pub fn to_observation(&self, id: &str) -> Value {
        let mut code = Map::new();
        if let Some(loinc) = &self.loinc {
            code.insert("coding".into(), json!([{ "system": LOINC, "code": loinc }]));
        }
        code.insert("text".into(), json!(self.name));
        let status = if self.value == ResultValue::Pending {
            "registered"
        } else {
            "final"
        };
        let mut observation = json!({
            "resourceType": "Observation",
            "id": id,
            "status": status,
            "category": [{
                "coding": [{
                    "system": OBSERVATION_CATEGORY,
                    "code": "laboratory",
                    "display": "Laboratory",
                }],
            }],
            "code": code,
            "effectiveDateTime": self.date.effective,
        });
        let fields = observation.as_object_mut().expect("an object");
        match &self.value {
            ResultValue::Number {
                value,
                written,
                comparator,
                ..
            } => {
                // The digits as written ("13.90" stays 13.90); serde_json keeps them exactly.
                let number = written
                    .parse::<serde_json::Number>()
                    .map(Value::Number)
                    .unwrap_or_else(|_| json!(value));
                let mut quantity = self.quantity(number);
                if let Some(comparator) = comparator {
                    quantity.insert("comparator".into(), json!(comparator));
                }
                fields.insert("valueQuantity".into(), Value::Object(quantity));
            }
            ResultValue::Coded {
                code,
                display,
                text,
            } => {
                fields.insert(
                    "valueCodeableConcept".into(),
                    json!({
                        "coding": [{ "system": SNOMED, "code": code, "display": display }],
                        "text": text,
                    }),
                );
            }
            ResultValue::Text(text) => {
                fields.insert("valueString".into(), json!(text));
            }
            ResultValue::Pending => {}
        }
        if let Some(range) = &self.range {
            let mut entry = Map::new();
            if let Some(low) = range.low {
                entry.insert("low".into(), Value::Object(self.quantity(json!(low))));
            }
            if let Some(high) = range.high {
                entry.insert("high".into(), Value::Object(self.quantity(json!(high))));
            }
            if let Some(text) = &range.text {
                entry.insert("text".into(), json!(text));
            }
            fields.insert("referenceRange".into(), json!([entry]));
        }
        match &self.flag {
            Some(Flag::Coded { code, display }) => {
                fields.insert(
                    "interpretation".into(),
                    json!([{ "coding": [{ "system": INTERPRETATION, "code": code, "display": display }] }]),
                );
            }
            Some(Flag::Text(text)) => {
                fields.insert("interpretation".into(), json!([{ "text": text }]));
            }
            None => {}
        }
        if let Some(lab) = &self.lab {
            fields.insert("performer".into(), json!([{ "display": lab }]));
        }
        if let Some(specimen) = &self.specimen {
            fields.insert("specimen".into(), json!({ "display": specimen }));
        }
        observation
    }

    /// A Quantity in the row's unit: with its UCUM code when Fasten knows the spelling, else with
    /// the unit as written only (still valid FHIR, and the number can still be charted).
    fn quantity(&self, value: Value) -> Map<String, Value> {
        let mut quantity = Map::new();
        quantity.insert("value".into(), value);
        if let Some(unit) = &self.unit {
            quantity.insert("unit".into(), json!(unit));
            if let Some(code) = values::ucum_code(unit) {
                quantity.insert("system".into(), json!(UCUM));
                quantity.insert("code".into(), json!(code));
            }
        }
        quantity
    }
}

/// What makes results one report: the panel, the time taken, and the lab.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReportKey {
    panel: String,
    effective: String,
    lab: String,
}

/// A DiagnosticReport being gathered: one per panel (or "Lab results"), time taken and lab.
#[derive(Debug, Clone)]
pub struct Report {
    pub key: ReportKey,
    pub name: String,
    pub lab: Option<String>,
    pub orderers: Vec<String>,
    /// Line and identity digest of each Observation it lists.
    pub results: Vec<(u64, u64)>,
}

impl Report {
    pub fn new(result: &LabResult) -> Report {
        Report {
            key: result.report_key(),
            name: result
                .panel
                .clone()
                .unwrap_or_else(|| DEFAULT_REPORT_NAME.to_string()),
            lab: result.lab.clone(),
            orderers: Vec::new(),
            results: Vec::new(),
        }
    }

    pub fn add_orderer(&mut self, orderer: &str) {
        if !self.orderers.iter().any(|o| o == orderer) {
            self.orderers.push(orderer.to_string());
        }
    }

    pub fn id(&self) -> String {
        let digest = identity_digest(&[
            "report",
            &self.key.panel,
            &self.key.effective,
            &self.key.lab,
        ]);
        format!("csvlab-report-{digest:016x}")
    }

    pub fn to_resource(&self) -> Value {
        let results: Vec<Value> = self
            .results
            .iter()
            .map(|(_, digest)| json!({ "reference": format!("Observation/{}", observation_id(*digest)) }))
            .collect();
        let mut report = json!({
            "resourceType": "DiagnosticReport",
            "id": self.id(),
            "status": "final",
            "category": [{
                "coding": [{ "system": DIAGNOSTIC_SERVICE, "code": "LAB", "display": "Laboratory" }],
            }],
            "code": { "text": self.name },
            "effectiveDateTime": self.key.effective,
            "result": results,
        });
        let fields = report.as_object_mut().expect("an object");
        if let Some(lab) = &self.lab {
            fields.insert("performer".into(), json!([{ "display": lab }]));
        }
        if !self.orderers.is_empty() {
            // FHIR names the orderer on a ServiceRequest, which a CSV export gives too little
            // to make; a note keeps who ordered the tests visible with the report.
            fields.insert(
                "note".into(),
                json!([{ "text": format!("Ordered by {}", self.orderers.join(", ")) }]),
            );
        }
        report
    }
}
