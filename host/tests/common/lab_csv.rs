//! Lab-result CSV files made from the laboratory Observations of a Synthea Bundle, in the column
//! layouts of three kinds of portal, plus the values a correct import must produce from them.
//!
//! Shared by the host's integration tests and the csv-labs connector's unit tests (which include
//! this file by path), so it depends only on `std` and `serde_json`.

#![allow(dead_code)]

use std::collections::HashMap;

use serde_json::Value;

/// Which portal's export to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Comma-separated, `Test Name,LOINC,Result,Units,Reference Range,Flag,Collected,Ordering
    /// Provider,Lab`, US dates with a 12-hour time and no zone (`09/13/2012 03:22 PM`), portal
    /// unit spellings (`K/uL`, `M/uL`).
    UsPortal,
    /// Semicolon-separated German lab export, `Analyse;Code;Wert;Einheit;Ref. unten;Ref. oben;Datum`,
    /// decimal commas, dotted dates (`13.09.2012`), `10^3/µl`-style units.
    EuLab,
    /// Tab-separated with a UTF-8 BOM and three preamble lines before the header, a panel column,
    /// UCUM units, ranges with units (`4.5 - 11 10*3/uL`) and ISO date-times with a zone.
    TabbedWithPreamble,
}

/// One laboratory result of the Bundle, as the CSV states it (values rounded to 2 decimals).
#[derive(Debug, Clone, PartialEq)]
pub struct LabRow {
    pub name: String,
    pub loinc: String,
    pub value: f64,
    /// The UCUM code of the unit (the Bundle's `valueQuantity.code`).
    pub ucum: String,
    /// `YYYY-MM-DD`
    pub date: String,
    /// The Bundle's `effectiveDateTime`, e.g. `2012-09-13T15:22:50+00:00`.
    pub date_time: String,
    /// The text of the DiagnosticReport that lists the result, if one does.
    pub panel: Option<String>,
    pub ref_low: Option<f64>,
    pub ref_high: Option<f64>,
    /// `H` or `L` when the value is outside the reference range.
    pub flag: Option<&'static str>,
    pub ordering_provider: String,
    pub lab: String,
}

impl LabRow {
    /// The `effectiveDateTime` an import of `layout` should give this result: a time is kept only
    /// where the file states its zone, because FHIR allows no time without one.
    pub fn effective(&self, layout: Layout) -> String {
        match layout {
            Layout::TabbedWithPreamble => self.date_time.clone(),
            Layout::UsPortal | Layout::EuLab => self.date.clone(),
        }
    }

    /// The specimen the tabbed layout names (the other layouts have no specimen column).
    pub fn specimen(&self) -> &'static str {
        let blood_panel = self.panel.as_deref().is_some_and(|p| p.contains("Blood"));
        if blood_panel { "Blood" } else { "Serum" }
    }
}

/// Every laboratory Observation of `bundle` that has a `valueQuantity`, in Bundle order.
pub fn lab_observations(bundle: &Value) -> Vec<LabRow> {
    let entries = bundle["entry"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let by_url: HashMap<&str, &Value> = entries
        .iter()
        .filter_map(|e| Some((e["fullUrl"].as_str()?, &e["resource"])))
        .collect();
    let mut panel_of: HashMap<&str, String> = HashMap::new();
    for entry in entries {
        let resource = &entry["resource"];
        if resource["resourceType"] != "DiagnosticReport" {
            continue;
        }
        let Some(text) = code_text(&resource["code"]) else {
            continue;
        };
        for result in resource["result"].as_array().into_iter().flatten() {
            if let Some(reference) = result["reference"].as_str() {
                panel_of.insert(reference, text.clone());
            }
        }
    }
    let mut rows = Vec::new();
    for entry in entries {
        let observation = &entry["resource"];
        if observation["resourceType"] != "Observation" || !is_laboratory(observation) {
            continue;
        }
        let quantity = &observation["valueQuantity"];
        let (Some(value), Some(ucum)) = (quantity["value"].as_f64(), quantity["code"].as_str())
        else {
            continue;
        };
        let coding = &observation["code"]["coding"][0];
        let loinc = coding["code"].as_str().unwrap_or_default().to_string();
        let name = coding["display"]
            .as_str()
            .or_else(|| observation["code"]["text"].as_str())
            .unwrap_or_default()
            .to_string();
        let date_time = observation["effectiveDateTime"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let value = round2(value);
        let (ref_low, ref_high) = reference_range(&loinc);
        let flag = match (ref_low, ref_high) {
            (Some(low), _) if value < low => Some("L"),
            (_, Some(high)) if value > high => Some("H"),
            _ => None,
        };
        let encounter = observation["encounter"]["reference"]
            .as_str()
            .and_then(|url| by_url.get(url));
        let ordering_provider = encounter
            .and_then(|e| e["participant"][0]["individual"]["reference"].as_str())
            .and_then(|url| by_url.get(url))
            .map(|p| practitioner_name(p))
            .unwrap_or_default();
        let lab = encounter
            .and_then(|e| e["serviceProvider"]["reference"].as_str())
            .and_then(|url| by_url.get(url))
            .and_then(|o| o["name"].as_str())
            .unwrap_or_default()
            .to_string();
        rows.push(LabRow {
            name,
            loinc,
            value,
            ucum: ucum.to_string(),
            date: date_time.get(..10).unwrap_or_default().to_string(),
            date_time,
            panel: entry["fullUrl"]
                .as_str()
                .and_then(|url| panel_of.get(url))
                .cloned(),
            ref_low,
            ref_high,
            flag,
            ordering_provider,
            lab,
        });
    }
    rows
}

/// The CSV file a portal of `layout` would export for the laboratory results of `bundle`.
pub fn lab_csv(bundle: &Value, layout: Layout) -> String {
    let rows = lab_observations(bundle);
    let mut out = String::new();
    match layout {
        Layout::UsPortal => {
            let header = [
                "Test Name",
                "LOINC",
                "Result",
                "Units",
                "Reference Range",
                "Flag",
                "Collected",
                "Ordering Provider",
                "Lab",
            ];
            push_line(&mut out, ',', &header.map(String::from));
            for row in &rows {
                let range = match (row.ref_low, row.ref_high) {
                    (Some(low), Some(high)) => format!("{low}-{high}"),
                    (None, Some(high)) => format!("<{high}"),
                    (Some(low), None) => format!(">{low}"),
                    (None, None) => String::new(),
                };
                let fields = [
                    row.name.clone(),
                    row.loinc.clone(),
                    row.value.to_string(),
                    us_unit(&row.ucum),
                    range,
                    row.flag.unwrap_or_default().to_string(),
                    us_date_time(&row.date_time),
                    row.ordering_provider.clone(),
                    row.lab.clone(),
                ];
                push_line(&mut out, ',', &fields);
            }
        }
        Layout::EuLab => {
            let header = [
                "Analyse",
                "Code",
                "Wert",
                "Einheit",
                "Ref. unten",
                "Ref. oben",
                "Datum",
            ];
            push_line(&mut out, ';', &header.map(String::from));
            for row in &rows {
                let decimal = |v: Option<f64>| {
                    v.map(|v| v.to_string().replace('.', ","))
                        .unwrap_or_default()
                };
                let fields = [
                    row.name.clone(),
                    row.loinc.clone(),
                    decimal(Some(row.value)),
                    eu_unit(&row.ucum),
                    decimal(row.ref_low),
                    decimal(row.ref_high),
                    format!(
                        "{}.{}.{}",
                        &row.date[8..10],
                        &row.date[5..7],
                        &row.date[..4]
                    ),
                ];
                push_line(&mut out, ';', &fields);
            }
        }
        Layout::TabbedWithPreamble => {
            out.push('\u{feff}');
            out.push_str("Patient: Synthea sample patient\r\n");
            out.push_str("Exported on: 2024-05-01\r\n");
            out.push_str("Results are shown as reported by the performing laboratory.\r\n");
            let header = [
                "Panel",
                "Test",
                "LOINC Code",
                "Value",
                "Unit",
                "Reference Range",
                "Abnormal Flag",
                "Specimen",
                "Collection Date",
            ];
            push_line(&mut out, '\t', &header.map(String::from));
            for row in &rows {
                let range = match (row.ref_low, row.ref_high) {
                    (Some(low), Some(high)) => format!("{low} - {high} {}", row.ucum),
                    (None, Some(high)) => format!("< {high} {}", row.ucum),
                    (Some(low), None) => format!("> {low} {}", row.ucum),
                    (None, None) => String::new(),
                };
                let flag = match row.flag {
                    Some("H") => "High",
                    Some("L") => "Low",
                    _ => "",
                };
                let fields = [
                    row.panel.clone().unwrap_or_default(),
                    row.name.clone(),
                    row.loinc.clone(),
                    row.value.to_string(),
                    row.ucum.clone(),
                    range,
                    flag.to_string(),
                    row.specimen().to_string(),
                    row.date_time.clone(),
                ];
                push_line(&mut out, '\t', &fields);
            }
        }
    }
    out
}

fn is_laboratory(observation: &Value) -> bool {
    observation["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .any(|coding| coding["code"] == "laboratory")
}

fn code_text(code: &Value) -> Option<String> {
    code["text"]
        .as_str()
        .or_else(|| code["coding"][0]["display"].as_str())
        .map(str::to_string)
}

fn practitioner_name(practitioner: &Value) -> String {
    let name = &practitioner["name"][0];
    let mut parts: Vec<&str> = Vec::new();
    parts.extend(
        name["prefix"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str),
    );
    parts.extend(
        name["given"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str),
    );
    parts.extend(name["family"].as_str());
    parts.join(" ")
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Adult reference ranges of the common tests, as a lab report would print them.
fn reference_range(loinc: &str) -> (Option<f64>, Option<f64>) {
    match loinc {
        "6690-2" => (Some(4.5), Some(11.0)),
        "789-8" => (Some(4.2), Some(5.9)),
        "718-7" => (Some(12.0), Some(17.5)),
        "4544-3" => (Some(36.0), Some(50.0)),
        "787-2" => (Some(80.0), Some(100.0)),
        "785-6" => (Some(27.0), Some(33.0)),
        "786-4" => (Some(32.0), Some(36.0)),
        "777-3" => (Some(150.0), Some(450.0)),
        "2093-3" => (None, Some(200.0)),
        "2571-8" => (None, Some(150.0)),
        "18262-6" => (None, Some(100.0)),
        "2085-9" => (Some(40.0), None),
        "2339-0" => (Some(70.0), Some(99.0)),
        "38483-4" => (Some(0.6), Some(1.3)),
        "6299-2" => (Some(7.0), Some(20.0)),
        "2947-0" => (Some(135.0), Some(145.0)),
        "6298-4" => (Some(3.5), Some(5.1)),
        "2069-3" => (Some(98.0), Some(107.0)),
        "20565-8" => (Some(22.0), Some(29.0)),
        "49765-1" => (Some(8.5), Some(10.2)),
        _ => (None, None),
    }
}

fn us_unit(ucum: &str) -> String {
    match ucum {
        "10*3/uL" => "K/uL",
        "10*6/uL" => "M/uL",
        "mL/min/{1.73_m2}" => "mL/min/1.73m2",
        other => other,
    }
    .to_string()
}

fn eu_unit(ucum: &str) -> String {
    match ucum {
        "10*3/uL" => "10^3/µl",
        "10*6/uL" => "10^6/µl",
        "mL/min/{1.73_m2}" => "ml/min/1,73m²",
        "mL/min" => "ml/min",
        "mg/dL" => "mg/dl",
        "g/dL" => "g/dl",
        "mmol/L" => "mmol/l",
        "g/L" => "g/l",
        "U/L" => "U/l",
        "pg/mL" => "pg/ml",
        "ng/mL" => "ng/ml",
        other => other,
    }
    .to_string()
}

/// `2012-09-13T15:22:50+00:00` as a US portal shows it: `09/13/2012 03:22 PM` (the zone is
/// dropped, as portals do).
fn us_date_time(date_time: &str) -> String {
    let (year, month, day) = (&date_time[..4], &date_time[5..7], &date_time[8..10]);
    let hour: u32 = date_time[11..13].parse().unwrap_or(0);
    let minute = &date_time[14..16];
    let (hour12, half) = match hour {
        0 => (12, "AM"),
        1..=11 => (hour, "AM"),
        12 => (12, "PM"),
        _ => (hour - 12, "PM"),
    };
    format!("{month}/{day}/{year} {hour12:02}:{minute} {half}")
}

/// One CSV line, quoting the fields that need it.
fn push_line(out: &mut String, delimiter: char, fields: &[String]) {
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(delimiter);
        }
        if field.contains([delimiter, '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
}
