//! FHIR JSON attached to an email: a Bundle (its entries' resources, with `urn:uuid:` references
//! rewritten to `Type/id`), a single resource, or NDJSON (one resource a line). A Bundle is read
//! twice from the attachment's bytes, first for the entries' identities only and then entry by
//! entry, so a large Bundle is never held as one JSON tree.

use fasten_fhir_r4::bundle::{self, Mode, ReadError, ScanError};
use serde_json::Value;

use crate::email::ImportError;

/// Where the resources found in an attachment go.
pub(crate) trait Resources {
    fn resource(&mut self, resource: Value) -> Result<(), ImportError>;
    fn warn(&mut self, warning: String);
}

/// Why an attachment's records could not be read; the attachment itself is still kept.
#[derive(Debug, PartialEq)]
pub(crate) enum Unreadable {
    NotJson(String),
    NotFhir,
    EmptyBundle,
}

/// Imports the resources of a JSON attachment. `Err(Ok(_))` says why its records could not be
/// read (a warning, not a failure); `Err(Err(_))` is a failure of the run.
pub(crate) fn import_json(
    bytes: &[u8],
    out: &mut dyn Resources,
) -> Result<(), Result<Unreadable, ImportError>> {
    // Lenient: an attachment is read for whatever records it holds, and `out` checks each one.
    let document = bundle::scan(bytes, Mode::Lenient).map_err(|e| {
        Ok(match e {
            ScanError::Json(e) if e.is_data() => Unreadable::NotFhir,
            ScanError::Json(e) => Unreadable::NotJson(e.to_string()),
            ScanError::TrailingText(e) => {
                Unreadable::NotJson(format!("extra text after the JSON document: {e}"))
            }
        })
    })?;
    if document.resource_type().is_none() {
        return Err(Ok(Unreadable::NotFhir));
    }
    if document.is_bundle() && !document.holds_resources() {
        return Err(Ok(Unreadable::EmptyBundle));
    }
    document
        // An exponent in an emailed document is written serde_json's way (`1e+2`), which keeps
        // its digits: only files and syncs keep a number's text as sent.
        .read_resources(bytes, |resource| out.resource(resource.value))
        .map_err(|e| match e {
            ReadError::Stopped(failure) => Err(failure),
            // The first pass already proved the document valid, so this cannot happen in practice.
            ReadError::Json(e) => Ok(Unreadable::NotJson(e.to_string())),
        })
}

/// Imports each line of an NDJSON attachment; a line that is not JSON is skipped with a warning
/// naming it. Returns how many lines held a resource.
pub(crate) fn import_ndjson(
    bytes: &[u8],
    label: &str,
    out: &mut dyn Resources,
) -> Result<usize, ImportError> {
    let mut count = 0;
    for (index, line) in strip_bom(bytes).split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(resource) => {
                count += 1;
                out.resource(resource)?;
            }
            Err(e) => out.warn(format!(
                "Line {} of the attachment {label} is not valid JSON ({e}), so it was skipped; \
                 the rest of the file was imported and the file itself was kept.",
                index + 1
            )),
        }
    }
    Ok(count)
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}
