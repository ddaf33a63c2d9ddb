//! Finding the references worth following in a synced resource.
//!
//! A patient's records point at the people, places, organisations and medications they involve,
//! and at documents stored as Binary. Those are not in the patient compartment, so neither
//! `$everything` (on many servers) nor the per-type searches return them; the sync reads them one
//! by one, and this module says which.

use std::collections::BTreeSet;

use serde_json::Value;

use super::settings::is_type_name;
use super::util::is_valid_id;

/// The types whose references are followed.
pub(crate) const CHASED_TYPES: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Medication",
    "Binary",
];

/// `Type/id` for a reference that names a resource on this server: relative (`Type/id`, with an
/// optional `/_history/version`) or absolute under `base` (which has no trailing slash).
/// Contained (`#id`), `urn:` and conditional (`Type?query`) references and URLs of other servers
/// give `None`.
pub(crate) fn reference_key(reference: &str, base: &str) -> Option<String> {
    let reference = reference.trim();
    if reference.starts_with('#') || reference.starts_with("urn:") || reference.contains('?') {
        return None;
    }
    let relative = if reference.starts_with("https://") || reference.starts_with("http://") {
        reference.strip_prefix(base)?.strip_prefix('/')?
    } else {
        reference
    };
    let mut parts = relative.split('/');
    let (resource_type, id) = (parts.next()?, parts.next()?);
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => {}
        (Some("_history"), Some(version), None) if !version.is_empty() => {}
        _ => return None,
    }
    (is_type_name(resource_type) && is_valid_id(id)).then(|| format!("{resource_type}/{id}"))
}

/// Adds to `found` the `Type/id` of every reference in `resource` to one of the [`CHASED_TYPES`]:
/// every `"reference"` string anywhere in it (contained resources included), and the attachment
/// URLs of a DocumentReference's content or a DiagnosticReport's presentedForm that point at this
/// server's Binary endpoint (where document-heavy servers such as Epic keep the actual PDF).
pub(crate) fn collect_references(resource: &Value, base: &str, found: &mut BTreeSet<String>) {
    walk(resource, base, found);
    let attachments: Vec<&Value> = match resource.get("resourceType").and_then(Value::as_str) {
        Some("DocumentReference") => resource
            .get("content")
            .and_then(Value::as_array)
            .map(|content| content.iter().filter_map(|c| c.get("attachment")).collect())
            .unwrap_or_default(),
        Some("DiagnosticReport") => resource
            .get("presentedForm")
            .and_then(Value::as_array)
            .map(|forms| forms.iter().collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    for attachment in attachments {
        if let Some(key) = attachment
            .get("url")
            .and_then(Value::as_str)
            .and_then(|url| reference_key(url, base))
            && key.starts_with("Binary/")
        {
            found.insert(key);
        }
    }
}

fn walk(value: &Value, base: &str, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("reference", Value::String(reference)) => {
                        if let Some(key) = reference_key(reference, base) {
                            let resource_type = key.split('/').next().unwrap_or("");
                            if CHASED_TYPES.contains(&resource_type) {
                                found.insert(key);
                            }
                        }
                    }
                    _ => walk(child, base, found),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, base, found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BASE: &str = "https://fhir.example.org/r4";

    #[test]
    fn parses_references() {
        let cases = [
            ("Practitioner/123", Some("Practitioner/123")),
            ("Practitioner/123/_history/4", Some("Practitioner/123")),
            (
                "https://fhir.example.org/r4/Organization/o.1",
                Some("Organization/o.1"),
            ),
            ("https://other.example.org/r4/Organization/1", None),
            ("https://fhir.example.org/r4x/Organization/1", None),
            ("#med1", None),
            ("urn:uuid:0b0e7a8c-55ec-4b5c-9a3b-6b1c3c6c2f4b", None),
            ("Patient?identifier=123", None),
            ("Practitioner", None),
            ("Practitioner/", None),
            ("Practitioner/1/extra", None),
            ("Practitioner/1/_history/", None),
            ("practitioner/1", None),
            ("Practitioner/has space", None),
        ];
        for (reference, expected) in cases {
            assert_eq!(
                reference_key(reference, BASE).as_deref(),
                expected,
                "{reference}"
            );
        }
    }

    #[test]
    fn collects_chased_references_anywhere() {
        let resource = json!({
            "resourceType": "MedicationRequest",
            "id": "m1",
            "subject": {"reference": "Patient/p1"},
            "requester": {"reference": "Practitioner/dr1", "display": "Dr One"},
            "medicationReference": {"reference": "https://fhir.example.org/r4/Medication/med9"},
            "contained": [{"resourceType": "Medication", "id": "c1",
                           "manufacturer": {"reference": "Organization/acme"}}],
            "performer": [{"reference": "#c1"}, {"reference": "Location/l1/_history/2"}],
            "note": [{"text": "reference", "reference": 5}],
        });
        let mut found = BTreeSet::new();
        collect_references(&resource, BASE, &mut found);
        let found: Vec<_> = found.into_iter().collect();
        assert_eq!(
            found,
            [
                "Location/l1",
                "Medication/med9",
                "Organization/acme",
                "Practitioner/dr1"
            ]
        );
    }

    #[test]
    fn collects_binary_attachments_of_this_server() {
        let document = json!({
            "resourceType": "DocumentReference",
            "id": "d1",
            "content": [
                {"attachment": {"contentType": "application/pdf",
                                "url": "https://fhir.example.org/r4/Binary/b1"}},
                {"attachment": {"url": "Binary/b2"}},
                {"attachment": {"url": "https://elsewhere.example.org/Binary/b3"}},
                {"attachment": {"url": "https://fhir.example.org/r4/Observation/o1"}},
                {"attachment": {"data": "aGVsbG8="}},
            ]
        });
        let report = json!({
            "resourceType": "DiagnosticReport",
            "id": "r1",
            "presentedForm": [{"url": "Binary/b4"}],
        });
        let mut found = BTreeSet::new();
        collect_references(&document, BASE, &mut found);
        collect_references(&report, BASE, &mut found);
        let found: Vec<_> = found.into_iter().collect();
        assert_eq!(found, ["Binary/b1", "Binary/b2", "Binary/b4"]);
    }
}
