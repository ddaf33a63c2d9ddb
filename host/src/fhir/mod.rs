//! FHIR R4 resources as the host sees them: validation of what plugins emit ([`prepare`]), what
//! is derived from each one and kept beside it ([`index`]: title, date, tokens, search text,
//! observation keys), transactional ingest ([`ingest`]), the read model ([`read`]) and export.
//!
//! Nothing in `fhir` uses the pages (`record`) or the search page: they query what ingest wrote,
//! and the plugin runtime, which prepares every resource a plugin emits, depends on `fhir` alone.
//! `host/tests/layering.rs` checks this.

pub mod export;
pub mod identity;
pub mod index;
pub mod ingest;
pub mod observation;
pub mod read;
pub mod search_text;
pub mod units;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use fasten_fhir_r4::{RESOURCE_TYPES, is_resource_type, is_valid_id};
pub use index::{sort_date, title, tokens};
pub use search_text::Document;

/// A validated resource with everything the store needs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Prepared {
    pub resource_type: String,
    pub resource_id: String,
    /// The resource re-serialised with sorted keys, so equal content hashes equally; or, when
    /// it holds a number serde_json would write another way (`1e2`), its own text without the
    /// whitespace, so every decimal is stored exactly as sent.
    pub json: String,
    pub content_hash: [u8; 32],
    pub sort_date: Option<String>,
    pub sort_title: Option<String>,
    pub tokens: Vec<Token>,
    /// The text full-text search indexes (see [`search_text`]).
    pub search: Document,
    /// For an Observation, what it measured (see [`index::observation_keys`]); empty for
    /// anything else.
    pub observation_keys: Vec<(String, bool)>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Token {
    pub kind: &'static str,
    pub value: String,
    pub display: Option<String>,
}

/// The kinds of [`Token`] there are, for reading one back from a run's spool.
const TOKEN_KINDS: [&str; 5] = ["code", "category", "status", "current", "ref"];

/// A [`Token`] as read back, before its kind is matched to one of [`TOKEN_KINDS`].
#[derive(serde::Deserialize)]
struct TokenText {
    kind: String,
    value: String,
    display: Option<String>,
}

impl<'de> serde::Deserialize<'de> for Token {
    fn deserialize<D: serde::Deserializer<'de>>(reader: D) -> Result<Token, D::Error> {
        let text = TokenText::deserialize(reader)?;
        let kind = TOKEN_KINDS
            .into_iter()
            .find(|k| *k == text.kind)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("unknown token kind {:?}", text.kind))
            })?;
        Ok(Token {
            kind,
            value: text.value,
            display: text.display,
        })
    }
}

/// FHIR ids: 1-64 of `A-Z a-z 0-9 - .`.
/// Validates one emitted resource. A missing id gets a stable one derived from the content, so
/// importing the same file twice finds the same record.
pub fn prepare(text: &str) -> Result<Prepared, String> {
    let mut value: Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
    let Some(object) = value.as_object_mut() else {
        return Err("not a JSON object".into());
    };
    let resource_type = match object.get("resourceType") {
        Some(Value::String(t)) => t.clone(),
        _ => return Err("no \"resourceType\"".into()),
    };
    if !is_resource_type(&resource_type) {
        return Err(format!(
            "unknown resourceType {resource_type:?} (not FHIR R4)"
        ));
    }
    let had_id = object.contains_key("id");
    let resource_id = match object.get("id") {
        Some(Value::String(id)) if is_valid_id(id) => id.clone(),
        Some(Value::String(id)) => return Err(format!("{resource_type} has an invalid id {id:?}")),
        Some(_) => return Err(format!("{resource_type} has a non-text id")),
        None => {
            // Derived from the content without an id, so the same resource gets the same id.
            let digest = Sha256::digest(value.to_string().as_bytes());
            let id = format!("fasten-{}", &hex::encode(digest)[..32]);
            value["id"] = Value::String(id.clone());
            id
        }
    };
    // (A resource given an id here is written out again: plugins give every resource its id.)
    let verbatim = had_id && fasten_fhir_r4::json_text::has_rewritten_numbers(text.as_bytes());
    let json = if verbatim {
        fasten_fhir_r4::json_text::minify(text)
    } else {
        value.to_string()
    };
    let content_hash = Sha256::digest(json.as_bytes()).into();
    let index::Derived {
        sort_date,
        title,
        tokens,
        search,
        observation_keys,
    } = index::derive(&value);
    Ok(Prepared {
        sort_date,
        sort_title: title,
        tokens,
        search,
        observation_keys,
        resource_type,
        resource_id,
        json,
        content_hash,
    })
}

/// Display text of a CodeableConcept: its text, else its first coding's display.
pub fn concept_text(concept: &Value) -> Option<String> {
    concept
        .get("text")
        .and_then(Value::as_str)
        .or_else(|| {
            concept
                .get("coding")?
                .as_array()?
                .iter()
                .find_map(|c| c.get("display").and_then(Value::as_str))
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn observations_yield_date_title_codes_status_and_references() {
        let text = json!({
            "resourceType": "Observation", "id": "o1", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}], "text": "Glucose [Mass/volume] in Blood"},
            "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "Encounter/e1"},
            "effectiveDateTime": "2019-02-01T10:00:00Z",
            "valueQuantity": {"value": 5.4, "unit": "mmol/L"}
        })
        .to_string();
        let p = prepare(&text).unwrap();
        assert_eq!(p.resource_id, "o1");
        assert_eq!(p.sort_date.as_deref(), Some("2019-02-01T10:00:00Z"));
        assert_eq!(
            p.sort_title.as_deref(),
            Some("Glucose [Mass/volume] in Blood")
        );
        let values: Vec<_> = p
            .tokens
            .iter()
            .map(|t| (t.kind, t.value.as_str()))
            .collect();
        assert!(values.contains(&("code", "http://loinc.org|2339-0")));
        assert!(values.contains(&("status", "final")));
        assert!(values.contains(&("ref", "Patient/p1")));
        assert!(
            values
                .iter()
                .any(|(k, v)| *k == "category" && v.ends_with("|laboratory"))
        );
    }

    #[test]
    fn people_are_titled_by_name_and_missing_ids_are_stable() {
        let text = r#"{"resourceType":"Patient","name":[{"given":["Ada","M"],"family":"Lovelace"}],"birthDate":"1815-12-10"}"#;
        let a = prepare(text).unwrap();
        let b = prepare(text).unwrap();
        assert_eq!(a.sort_title.as_deref(), Some("Ada M Lovelace"));
        assert_eq!(a.resource_id, b.resource_id);
        assert!(a.resource_id.starts_with("fasten-"));
        assert_eq!(a.sort_date.as_deref(), Some("1815-12-10"));
    }

    #[test]
    fn invalid_resources_are_refused_with_a_reason() {
        assert!(prepare("not json").unwrap_err().contains("not valid JSON"));
        assert!(prepare("[1]").unwrap_err().contains("not a JSON object"));
        assert!(
            prepare(r#"{"id":"x"}"#)
                .unwrap_err()
                .contains("resourceType")
        );
        assert!(
            prepare(r#"{"resourceType":"Wizard"}"#)
                .unwrap_err()
                .contains("unknown resourceType")
        );
        assert!(
            prepare(r#"{"resourceType":"Patient","id":"a b"}"#)
                .unwrap_err()
                .contains("invalid id")
        );
    }
}
