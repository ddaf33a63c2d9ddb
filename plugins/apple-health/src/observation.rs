//! The FHIR Observations this connector writes, and their stable ids.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::mapping::{Loinc, Metric, Unit, unit_text};

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
/// Every observation also carries the HealthKit type it came from, so types without a LOINC code
/// are still coded and a reader can trace a value back to Apple's data.
pub(crate) const HEALTHKIT: &str = "https://developer.apple.com/documentation/healthkit";

#[derive(Clone, Copy)]
pub(crate) enum Category {
    VitalSigns,
    Activity,
}

/// `apple-` and 16 hex digits of the SHA-256 of what identifies a record (never its value), so
/// the same record imported again from a later export replaces the earlier copy.
pub(crate) fn stable_id(identity: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in identity {
        hash.update(part.as_bytes());
        // A separator that cannot occur in the parts keeps ("ab", "c") apart from ("a", "bc").
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut id = String::with_capacity(22);
    id.push_str("apple-");
    for byte in &digest[..8] {
        id.push(char::from_digit(u32::from(byte >> 4), 16).expect("a nibble"));
        id.push(char::from_digit(u32::from(byte & 15), 16).expect("a nibble"));
    }
    id
}

/// A number as JSON: whole numbers without a fraction ("72", not "72.0").
pub(crate) fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// Rounds away the binary noise of sums and scaling (0.21 × 100 = 21.000000000000004).
pub(crate) fn round_to(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

pub(crate) fn quantity(value: f64, unit: &Unit) -> Value {
    json!({
        "value": number(value),
        "unit": unit_text(unit.ucum),
        "system": UCUM,
        "code": unit.ucum,
    })
}

fn concept(loinc: Option<Loinc>, apple_type: Option<&str>, text: &str) -> Value {
    let mut coding = Vec::new();
    if let Some((code, display)) = loinc {
        coding.push(json!({"system": LOINC, "code": code, "display": display}));
    }
    if let Some(apple_type) = apple_type {
        coding.push(json!({"system": HEALTHKIT, "code": apple_type}));
    }
    json!({"coding": coding, "text": text})
}

/// The LOINC code, HealthKit type and text of a metric's observations in this unit.
pub(crate) fn metric_concept(metric: &Metric, unit: &Unit) -> Value {
    concept(
        unit.loinc.or(metric.loinc),
        Some(metric.apple_type),
        metric.text,
    )
}

pub(crate) fn text_concept(text: &str) -> Value {
    concept(None, None, text)
}

fn category(category: Category) -> Value {
    let (code, display) = match category {
        Category::VitalSigns => ("vital-signs", "Vital Signs"),
        Category::Activity => ("activity", "Activity"),
    };
    json!([{
        "coding": [{"system": CATEGORY, "code": code, "display": display}],
        "text": display,
    }])
}

/// When an observation was made: an instant, a span, or a whole day.
pub(crate) enum Effective {
    DateTime(String),
    Period(String, String),
}

/// An Observation with what every one of ours has; callers add the value, components and notes.
pub(crate) fn observation(
    id: String,
    category_of: Category,
    code: Value,
    effective: Effective,
    source: &str,
) -> serde_json::Map<String, Value> {
    let mut resource = serde_json::Map::new();
    resource.insert("resourceType".into(), json!("Observation"));
    resource.insert("id".into(), json!(id));
    resource.insert("status".into(), json!("final"));
    resource.insert("category".into(), category(category_of));
    resource.insert("code".into(), code);
    match effective {
        Effective::DateTime(at) => resource.insert("effectiveDateTime".into(), json!(at)),
        Effective::Period(start, end) => resource.insert(
            "effectivePeriod".into(),
            json!({"start": start, "end": end}),
        ),
    };
    // The app or device that recorded it, as Apple names it ("Apple Watch", "Health Mate").
    if !source.is_empty() {
        resource.insert("device".into(), json!({"display": source}));
    }
    resource
}

pub(crate) fn component(code: Value, value: Value) -> Value {
    json!({"code": code, "valueQuantity": value})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_valid_fhir_ids_that_depend_on_every_part() {
        let id = stable_id(&["HKQuantityTypeIdentifierBodyMass", "2020-01-01", "Scale"]);
        assert_eq!(id.len(), 22);
        assert!(id.starts_with("apple-"));
        assert!(id[6..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            id,
            stable_id(&["HKQuantityTypeIdentifierBodyMass", "2020-01-01", "Scale"])
        );
        assert_ne!(
            id,
            stable_id(&["HKQuantityTypeIdentifierBodyMass", "2020-01-0", "1Scale"])
        );
    }

    #[test]
    fn numbers_are_written_as_people_expect() {
        assert_eq!(number(72.0).to_string(), "72");
        assert_eq!(number(22.5312).to_string(), "22.5312");
        assert_eq!(round_to(0.21 * 100.0, 6), 21.0);
        assert_eq!(round_to(72.25, 1), 72.3);
    }
}
