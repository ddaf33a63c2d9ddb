//! Portal-style CSV exports made from the Synthea patients' lab results must import to the same
//! tests, values, units and dates as the FHIR originals.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::lab_csv::{LabRow, Layout, lab_csv, lab_observations};
use super::*;
use crate::import::{self, Options};

const LAYOUTS: [Layout; 3] = [Layout::UsPortal, Layout::EuLab, Layout::TabbedWithPreamble];

/// The rows an import keeps: of rows for the same test, time (as precise as the layout writes
/// it) and specimen, the later one.
fn kept_rows(rows: &[LabRow], layout: Layout) -> Vec<LabRow> {
    let identity = |row: &LabRow| match layout {
        // The US layout writes hours and minutes, the EU layout only the date.
        Layout::UsPortal => (row.loinc.clone(), row.date_time[..16].to_string(), ""),
        Layout::EuLab => (row.loinc.clone(), row.date.clone(), ""),
        Layout::TabbedWithPreamble => (row.loinc.clone(), row.date_time.clone(), row.specimen()),
    };
    let mut last: HashMap<_, usize> = HashMap::new();
    for (index, row) in rows.iter().enumerate() {
        last.insert(identity(row), index);
    }
    let mut kept: Vec<usize> = last.into_values().collect();
    kept.sort();
    kept.into_iter().map(|i| rows[i].clone()).collect()
}

fn assert_matches_source(observation: &Value, row: &LabRow, layout: Layout) {
    let context = format!("{} on {} ({layout:?})", row.name, row.date);
    assert_eq!(observation["status"], "final", "{context}");
    assert_eq!(
        observation["category"][0]["coding"][0]["code"], "laboratory",
        "{context}"
    );
    assert_eq!(observation["code"]["text"], row.name.as_str(), "{context}");
    assert_eq!(
        observation["code"]["coding"][0]["system"], "http://loinc.org",
        "{context}"
    );
    assert_eq!(
        observation["code"]["coding"][0]["code"],
        row.loinc.as_str(),
        "{context}"
    );
    let quantity = &observation["valueQuantity"];
    assert_eq!(quantity["value"].as_f64(), Some(row.value), "{context}");
    assert_eq!(quantity["system"], "http://unitsofmeasure.org", "{context}");
    assert_eq!(quantity["code"], row.ucum.as_str(), "{context}");
    assert_eq!(
        observation["effectiveDateTime"],
        row.effective(layout).as_str(),
        "{context}"
    );
    let range = &observation["referenceRange"][0];
    assert_eq!(range["low"]["value"].as_f64(), row.ref_low, "{context}");
    assert_eq!(range["high"]["value"].as_f64(), row.ref_high, "{context}");
    for bound in ["low", "high"] {
        if !range[bound].is_null() {
            assert_eq!(range[bound]["code"], row.ucum.as_str(), "{context}");
        }
    }
    let interpretation = observation["interpretation"][0]["coding"][0]["code"].as_str();
    match layout {
        Layout::EuLab => assert_eq!(interpretation, None, "{context}"),
        Layout::UsPortal | Layout::TabbedWithPreamble => {
            assert_eq!(interpretation, row.flag, "{context}")
        }
    }
    match layout {
        Layout::UsPortal => {
            assert_eq!(
                observation["performer"][0]["display"],
                row.lab.as_str(),
                "{context}"
            );
        }
        Layout::TabbedWithPreamble => {
            assert_eq!(
                observation["specimen"]["display"],
                row.specimen(),
                "{context}"
            );
        }
        Layout::EuLab => assert!(observation.get("performer").is_none(), "{context}"),
    }
}

fn import_layout(bundle: &Value, layout: Layout) -> Imported {
    let text = lab_csv(bundle, layout);
    match run_with(text.as_bytes(), "text/csv") {
        Ok(imported) => imported,
        Err(e) => panic!("{layout:?}: {e:?}"),
    }
}

#[test]
fn every_lab_value_of_paris_casper_comes_out_with_its_loinc_value_and_ucum_unit() {
    let bundle = synthea(PARIS);
    let rows = lab_observations(&bundle);
    assert_eq!(rows.len(), 30, "Paris Casper has 30 laboratory results");
    for layout in LAYOUTS {
        let imported = import_layout(&bundle, layout);
        assert_eq!(imported.warnings, Vec::<String>::new(), "{layout:?}");
        let observations = imported.observations();
        assert_eq!(observations.len(), rows.len(), "{layout:?}");
        for (observation, row) in observations.iter().zip(&rows) {
            assert_matches_source(observation, row, layout);
        }
    }
}

#[test]
fn every_synthea_patient_imports_in_every_layout() {
    for name in ALL_BUNDLES {
        let bundle = synthea(name);
        let rows = lab_observations(&bundle);
        assert!(!rows.is_empty(), "{name} has lab results");
        for layout in LAYOUTS {
            let imported = import_layout(&bundle, layout);
            let kept = kept_rows(&rows, layout);
            let observations = imported.observations();
            assert_eq!(observations.len(), kept.len(), "{name} {layout:?}");
            for (observation, row) in observations.iter().zip(&kept) {
                assert_matches_source(observation, row, layout);
            }
            // Synthea measures some tests twice in one visit (in two panels): each repeat is
            // reported, naming both rows.
            let repeats = rows.len() - kept.len();
            assert_eq!(imported.warnings.len(), repeats, "{name} {layout:?}");
            for warning in &imported.warnings {
                assert!(
                    warning.starts_with("Rows ") && warning.contains("was kept"),
                    "{warning}"
                );
            }
        }
    }
}

#[test]
fn one_report_per_collection_date_without_a_panel_column() {
    let bundle = synthea(PARIS);
    let rows = lab_observations(&bundle);
    let dates: BTreeSet<&str> = rows.iter().map(|r| r.date.as_str()).collect();
    assert_eq!(dates.len(), 3);
    for layout in [Layout::UsPortal, Layout::EuLab] {
        let imported = import_layout(&bundle, layout);
        let reports = imported.reports();
        assert_eq!(reports.len(), dates.len(), "{layout:?}");
        let report_dates: BTreeSet<&str> = reports
            .iter()
            .map(|r| r["effectiveDateTime"].as_str().unwrap())
            .collect();
        assert_eq!(report_dates, dates, "{layout:?}");
        for report in &reports {
            assert_eq!(report["code"]["text"], "Lab results");
            assert_eq!(report["status"], "final");
            assert_eq!(report["category"][0]["coding"][0]["code"], "LAB");
            assert_eq!(
                report["category"][0]["coding"][0]["system"],
                "http://terminology.hl7.org/CodeSystem/v2-0074"
            );
        }
        let listed: usize = reports
            .iter()
            .map(|r| r["result"].as_array().unwrap().len())
            .sum();
        assert_eq!(
            listed,
            rows.len(),
            "every result is in a report ({layout:?})"
        );
    }
}

#[test]
fn the_panel_column_makes_one_report_per_panel_and_time() {
    for name in ALL_BUNDLES {
        let bundle = synthea(name);
        let kept = kept_rows(&lab_observations(&bundle), Layout::TabbedWithPreamble);
        let expected: BTreeSet<(String, String)> = kept
            .iter()
            .map(|r| {
                let panel = r.panel.clone().unwrap_or_else(|| "Lab results".into());
                (panel, r.date_time.clone())
            })
            .collect();
        let imported = import_layout(&bundle, Layout::TabbedWithPreamble);
        let reports: BTreeSet<(String, String)> = imported
            .reports()
            .iter()
            .map(|r| {
                (
                    r["code"]["text"].as_str().unwrap().to_string(),
                    r["effectiveDateTime"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(reports, expected, "{name}");
        assert_eq!(imported.reports().len(), expected.len(), "{name}");
    }
}

#[test]
fn reports_list_their_observations_and_come_after_them() {
    let imported = import_layout(&synthea(PARIS), Layout::TabbedWithPreamble);
    let observation_ids: Vec<String> = imported
        .observations()
        .iter()
        .map(|o| format!("Observation/{}", o["id"].as_str().unwrap()))
        .collect();
    let first_report = imported
        .resources
        .iter()
        .position(|r| r["resourceType"] == "DiagnosticReport")
        .unwrap();
    assert_eq!(
        first_report,
        observation_ids.len(),
        "reports are emitted last"
    );
    let cbc = imported
        .reports()
        .into_iter()
        .find(|r| {
            r["code"]["text"] == "Complete blood count (hemogram) panel - Blood by Automated count"
        })
        .expect("a CBC report");
    let listed: Vec<&str> = cbc["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reference"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 11, "a Synthea CBC has 11 results");
    for reference in listed {
        assert!(
            observation_ids.iter().any(|id| id == reference),
            "{reference}"
        );
    }
}

#[test]
fn the_us_portal_keeps_the_unit_as_written_next_to_its_ucum_code() {
    let imported = import_layout(&synthea(PARIS), Layout::UsPortal);
    let leukocytes = imported
        .observations()
        .into_iter()
        .find(|o| o["code"]["coding"][0]["code"] == "6690-2")
        .unwrap()
        .clone();
    assert_eq!(leukocytes["valueQuantity"]["unit"], "K/uL");
    assert_eq!(leukocytes["valueQuantity"]["code"], "10*3/uL");
    assert_eq!(leukocytes["referenceRange"][0]["text"], "4.5-11");
    let report = imported.reports()[0];
    let note = report["note"][0]["text"].as_str().unwrap();
    assert!(note.starts_with("Ordered by Dr. "), "{note}");
}

#[test]
fn ids_are_stable_across_imports_and_valid_fhir_ids() {
    let bundle = synthea(ALL_BUNDLES[0]);
    for layout in LAYOUTS {
        let first = import_layout(&bundle, layout);
        let second = import_layout(&bundle, layout);
        let ids = |imported: &Imported| -> Vec<String> {
            imported
                .resources
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids(&first), ids(&second), "{layout:?}");
        let unique: BTreeSet<String> = ids(&first).into_iter().collect();
        assert_eq!(unique.len(), first.resources.len(), "{layout:?}");
        for id in unique {
            assert!(id.len() <= 64, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
                "{id}"
            );
            assert!(id.starts_with("csvlab-"), "{id}");
        }
    }
}

#[test]
fn an_export_with_more_results_updates_the_earlier_ones_instead_of_copying_them() {
    let bundle = synthea(PARIS);
    let full = lab_csv(&bundle, Layout::EuLab);
    let lines: Vec<&str> = full.lines().collect();
    let shorter = lines[..11].join("\r\n");
    let earlier = run(&shorter);
    let later = run(&full);
    let later_ids: Vec<&Value> = later.observations().iter().map(|o| &o["id"]).collect();
    for observation in earlier.observations() {
        assert!(later_ids.contains(&&observation["id"]));
    }
}

#[test]
fn a_blank_value_in_a_file_with_a_preamble_is_reported_by_its_line_in_the_file() {
    let text = lab_csv(&synthea(PARIS), Layout::TabbedWithPreamble);
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // Line 7 of the file: the third result (the header is on line 4).
    let mut fields: Vec<String> = lines[6].split('\t').map(String::from).collect();
    let name = fields[1].clone();
    fields[3].clear();
    lines[6] = fields.join("\t");
    let imported = run(&lines.join("\n"));
    assert_eq!(
        imported.warnings,
        vec![format!("Row 7: no value for \"{name}\"; skipped.")]
    );
    assert_eq!(imported.observations().len(), 29);
}

/// Run by hand (`--ignored --nocapture`) to see time and peak memory for a long history.
#[test]
#[ignore]
fn a_long_history_imports_in_flat_memory() {
    let mut text = String::from("Test,LOINC,Result,Units,Reference Range,Flag,Collected\n");
    let tests = [
        ("Glucose", "2339-0", "mg/dL"),
        ("Sodium", "2951-2", "mmol/L"),
    ];
    let rows = 200_000;
    for i in 0..rows {
        let (name, loinc, unit) = tests[i % 2];
        let day = i / 2;
        text.push_str(&format!(
            "{name},{loinc},{}.{},{unit},70-99,,{:04}-{:02}-{:02} {:02}:{:02}\n",
            90 + i % 20,
            i % 10,
            1900 + day / 336,
            1 + (day / 28) % 12,
            1 + day % 28,
            (i / 60) % 24,
            i % 60
        ));
    }
    let before = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let started = std::time::Instant::now();
    let mut host = FakeHost::new();
    host.discard_records();
    let mut input = std::io::Cursor::new(text.as_bytes());
    let warnings = host
        .with_run(|run| import::import(&mut input, &Options::default(), run))
        .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let emitted: usize = host.batches.iter().sum();
    assert_eq!(emitted, rows + rows / 2, "a report per (distinct) time");
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = |status: &str| {
        status
            .lines()
            .find(|l| l.starts_with("VmHWM"))
            .unwrap_or("")
            .to_string()
    };
    eprintln!(
        "{rows} rows ({} bytes, {emitted} resources out) in {:?}; peak before {}, after {}",
        text.len(),
        started.elapsed(),
        peak(&before),
        peak(&status)
    );
}
