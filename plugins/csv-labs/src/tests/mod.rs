//! Native tests: the connector imports byte slices, with the SDK's FakeHost as the host.

#[path = "../../../../host/tests/common/lab_csv.rs"]
mod lab_csv;

mod fixtures;
mod malformed;
mod parsing;

use std::path::PathBuf;

use fasten_connector::ConnectorError;
use fasten_connector::testing::{FakeFile, FakeHost};
use serde_json::Value;

use crate::CsvLabs;

/// What an import produced.
struct Imported {
    resources: Vec<Value>,
    warnings: Vec<String>,
}

impl Imported {
    fn of_type(&self, resource_type: &str) -> Vec<&Value> {
        self.resources
            .iter()
            .filter(|r| r["resourceType"] == resource_type)
            .collect()
    }

    fn observations(&self) -> Vec<&Value> {
        self.of_type("Observation")
    }

    fn reports(&self) -> Vec<&Value> {
        self.of_type("DiagnosticReport")
    }

    /// The one Observation whose `code.text` is `name`.
    fn observation(&self, name: &str) -> &Value {
        let found: Vec<&Value> = self
            .observations()
            .into_iter()
            .filter(|o| o["code"]["text"] == name)
            .collect();
        assert_eq!(found.len(), 1, "one Observation named {name}");
        found[0]
    }
}

fn run_with(bytes: &[u8], media_type: &str) -> Result<Imported, ConnectorError> {
    let mut host = FakeHost::new();
    let file = FakeFile::new("labs.csv", media_type, bytes).in_chunks_of(64 * 1024);
    let warnings = host.import_file::<CsvLabs>(file)?.warnings;
    let resources = host.resources();
    // The total is announced before the first record, and every report counts towards it.
    assert_eq!(
        host.progress.first(),
        Some(&(0, Some(resources.len() as u64)))
    );
    assert!(
        host.progress
            .iter()
            .all(|&(_, total)| total == Some(resources.len() as u64)),
        "the announced total matches what was emitted"
    );
    Ok(Imported {
        resources,
        warnings,
    })
}

fn run(text: &str) -> Imported {
    match run_with(text.as_bytes(), "text/csv") {
        Ok(imported) => imported,
        Err(e) => panic!("import failed: {e:?}"),
    }
}

/// The user-facing message of a failed import.
fn error_of(bytes: &[u8]) -> String {
    match run_with(bytes, "text/csv") {
        Ok(imported) => panic!(
            "import succeeded with {} resources",
            imported.resources.len()
        ),
        Err(ConnectorError::InvalidInput(message)) => message,
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

fn synthea(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/fhir/synthea")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

const PARIS: &str = "Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json";
const ALL_BUNDLES: [&str; 5] = [
    "Fletcher_Hyatt_fe0562b5-f517-4951-8366-32fdab088930.json",
    "Kathy_Walker_59885d16-d333-481e-8edb-422fa047d6b6.json",
    "Norma_Pagan_c5c29bde-5877-42ae-b786-17ce70275691.json",
    PARIS,
    "Roberto_Graham_238a58eb-31dc-4054-82ee-0651ee76f391.json",
];
