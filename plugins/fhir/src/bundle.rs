//! One JSON document: a Bundle (streamed entry by entry) or a single resource.

use fasten_connector::{ConnectorError, File};
use fasten_fhir_r4::bundle::{self, Mode, ReadError, ScanError};

use crate::import::{Output, invalid};

pub(crate) fn import_json(
    file: &mut File<'_>,
    out: &mut Output<'_, '_>,
) -> Result<(), ConnectorError> {
    // Strict: a user's file is refused as a whole, before anything is stored, when any of it is
    // not what it should be.
    let document = bundle::scan(buffered(file), Mode::Strict).map_err(|e| match e {
        ScanError::Json(e) => not_json(e),
        ScanError::TrailingText(e) => invalid(format!(
            "The file has extra text after the JSON document: {e}."
        )),
    })?;
    file.rewind();
    if document.resource_type().is_none() {
        return Err(invalid(
            "The JSON has no \"resourceType\", so it is not a FHIR resource or Bundle.",
        ));
    }
    if document.is_bundle() {
        if !document.holds_resources() {
            return Err(invalid(
                "This Bundle has no entries with resources: there is nothing to import.",
            ));
        }
        out.expect_total(document.entries() as u64);
    } else {
        out.expect_total(1);
    }
    document
        .read_resources(buffered(file), |resource| out.push(resource))
        .map_err(|e| match e {
            ReadError::Stopped(e) => e,
            ReadError::Json(e) => not_json(e),
        })
}

/// serde_json reads a stream byte by byte; std's `BufReader` has a fast path for that which
/// another `BufRead` (the SDK's `File`) does not get, and without it a Bundle imports at half
/// the speed (`cargo bench --bench ingest`).
fn buffered<'a, 'h>(file: &'a mut File<'h>) -> std::io::BufReader<&'a mut File<'h>> {
    std::io::BufReader::with_capacity(256 * 1024, file)
}

fn not_json(e: serde_json::Error) -> ConnectorError {
    invalid(format!("The file is not valid JSON: {e}."))
}
