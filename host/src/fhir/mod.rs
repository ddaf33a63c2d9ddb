//! FHIR R4 resources as the host sees them: validation of what plugins emit, and extraction of
//! what the pages need (date, title, status, codes, references) into plain columns and tokens.
//! Extraction is a handful of field lookups per resource, not a FHIRPath engine: cheap enough to
//! run on every upsert.

pub mod export;
pub mod identity;
pub mod ingest;
pub mod observation;
pub mod read;
pub mod units;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use fasten_fhir_r4::{RESOURCE_TYPES, is_resource_type, is_valid_id};

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
    /// The text full-text search indexes (see [`crate::search`]).
    pub search: crate::search::Document,
    /// For an Observation, what it measured (see [`crate::record::labs::observation_keys`]);
    /// empty for anything else.
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
    Ok(Prepared {
        sort_date: sort_date(&value),
        sort_title: title(&value),
        tokens: tokens(&value),
        search: crate::search::document(&value),
        observation_keys: crate::record::labs::observation_keys(&value),
        resource_type,
        resource_id,
        json,
        content_hash,
    })
}

/// The date a person would file this record under, as ISO 8601 text.
pub fn sort_date(resource: &Value) -> Option<String> {
    const PATHS: &[&str] = &[
        "/effectiveDateTime",
        "/effectivePeriod/start",
        "/effectiveInstant",
        "/issued",
        "/onsetDateTime",
        "/onsetPeriod/start",
        "/performedDateTime",
        "/performedPeriod/start",
        "/period/start",
        "/authoredOn",
        "/occurrenceDateTime",
        "/recordedDate",
        "/billablePeriod/start",
        "/context/period/start",
        "/created",
        "/date",
        "/started",
        "/recorded",
        "/birthDate",
        // A Goal: when it was set, else when it is due.
        "/startDate",
        "/target/0/dueDate",
        "/statusDate",
    ];
    // Not `meta.lastUpdated`: that is when the server stored the record (often the day of the
    // sync), not when anything happened. A record without a date of its own has none.
    PATHS
        .iter()
        .find_map(|p| resource.pointer(p).and_then(Value::as_str))
        .map(str::to_owned)
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

fn human_name(name: &Value) -> Option<String> {
    if let Some(text) = name.get("text").and_then(Value::as_str) {
        return Some(text.to_owned());
    }
    let mut parts: Vec<&str> = name
        .get("given")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(family) = name.get("family").and_then(Value::as_str) {
        parts.push(family);
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// A short human title: the code's text, the medicine's name, a person's name, an
/// organisation's name...
pub fn title(resource: &Value) -> Option<String> {
    if let Some(title) = own_title(resource) {
        return Some(title);
    }
    let field_text = |field: &str| {
        let concept = match resource.get(field) {
            Some(Value::Array(items)) => items.first(),
            other => other,
        };
        concept.and_then(concept_text)
    };
    if let Some(text) = ["code", "medicationCodeableConcept", "procedureCode"]
        .into_iter()
        .find_map(field_text)
        .or_else(|| referenced_medication_name(resource))
        .or_else(|| {
            ["vaccineCode", "type", "class", "category"]
                .into_iter()
                .find_map(field_text)
        })
    {
        return Some(text);
    }
    if let Some(name) = resource.get("name") {
        match name {
            Value::String(s) => return Some(s.clone()),
            Value::Array(names) => {
                if let Some(n) = names.iter().find_map(human_name) {
                    return Some(n);
                }
            }
            _ => {}
        }
    }
    ["description", "title"]
        .iter()
        .find_map(|f| resource.get(*f).and_then(Value::as_str))
        .map(str::to_owned)
        .or_else(|| imaging_title(resource))
}

/// The title of a type whose generic fields would not give one a person can read: a Goal is
/// what it aims at (`description`, a CodeableConcept); a claim or explanation of benefit is
/// named by what it bills for, since its `type` is a bare code ("pharmacy").
fn own_title(resource: &Value) -> Option<String> {
    match resource.get("resourceType")?.as_str()? {
        "Goal" => resource.get("description").and_then(concept_text),
        kind @ ("Claim" | "ExplanationOfBenefit") => {
            let what = if kind == "Claim" {
                "Claim"
            } else {
                "Explanation of benefits"
            };
            let billed = resource
                .pointer("/item/0/productOrService")
                .and_then(concept_text);
            let claim_type = resource
                .pointer("/type/coding/0/code")
                .and_then(Value::as_str)
                .filter(|code| !code.is_empty());
            Some(match (billed, claim_type) {
                (Some(billed), _) => format!("{what} for {billed}"),
                (None, Some(code)) => format!("{what} ({code})"),
                (None, None) => what.to_string(),
            })
        }
        _ => None,
    }
}

/// "Ultrasound (thoracic)" for an ImagingStudy that names no procedure: what kind of images of
/// which part of the body, from its first series.
fn imaging_title(resource: &Value) -> Option<String> {
    let series = resource.pointer("/series/0")?;
    let modality = series.pointer("/modality/display")?.as_str()?;
    Some(
        match series.pointer("/bodySite/display").and_then(Value::as_str) {
            Some(site) => format!("{modality} ({site})"),
            None => modality.to_owned(),
        },
    )
}

/// The medicine of a medication record that points to it (`medicationReference`, as Epic's
/// records do) instead of naming it: the reference's display, else the contained Medication's
/// name. Checked before the record's category, which would otherwise give every such
/// prescription the title "Outpatient".
fn referenced_medication_name(resource: &Value) -> Option<String> {
    let display = resource
        .pointer("/medicationReference/display")
        .and_then(Value::as_str)
        .filter(|display| !display.trim().is_empty());
    match display {
        Some(display) => Some(display.to_owned()),
        None => contained_medication(resource)?
            .get("code")
            .and_then(concept_text),
    }
}

/// The Medication a medication record carries inside itself (`contained`) and points to by
/// `#id`.
fn contained_medication(resource: &Value) -> Option<&Value> {
    let local_id = resource
        .pointer("/medicationReference/reference")?
        .as_str()?
        .strip_prefix('#')?;
    resource.get("contained")?.as_array()?.iter().find(|c| {
        c.get("resourceType").and_then(Value::as_str) == Some("Medication")
            && c.get("id").and_then(Value::as_str) == Some(local_id)
    })
}

fn codings<'a>(concept: &'a Value, out: &mut Vec<(&'a str, &'a str, Option<&'a str>)>) {
    if let Some(codings) = concept.get("coding").and_then(Value::as_array) {
        for coding in codings {
            if let Some(code) = coding.get("code").and_then(Value::as_str) {
                let system = coding.get("system").and_then(Value::as_str).unwrap_or("");
                out.push((system, code, coding.get("display").and_then(Value::as_str)));
            }
        }
    }
}

/// Codes, categories, status and references of a resource.
pub fn tokens(resource: &Value) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut found = Vec::new();
    for field in ["code", "medicationCodeableConcept", "vaccineCode"] {
        if let Some(concept) = resource.get(field) {
            codings(concept, &mut found);
        }
    }
    // A contained medicine's codes are the record's own: the glossary and search find them.
    if let Some(concept) = contained_medication(resource).and_then(|m| m.get("code")) {
        codings(concept, &mut found);
    }
    for (system, code, display) in found.drain(..) {
        tokens.push(Token {
            kind: "code",
            value: format!("{system}|{code}"),
            display: display.map(str::to_owned),
        });
    }
    let categories: Vec<&Value> = match resource.get("category") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => vec![],
    };
    for category in categories {
        codings(category, &mut found);
    }
    for (system, code, display) in found.drain(..) {
        tokens.push(Token {
            kind: "category",
            value: format!("{system}|{code}"),
            display: display.map(str::to_owned),
        });
    }
    let status = resource
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            resource
                .pointer("/clinicalStatus/coding/0/code")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    if let Some(status) = status {
        tokens.push(Token {
            kind: "status",
            value: status,
            display: None,
        });
    }
    // The current lists (Profile, dashboard) ask the index what the read model would answer.
    if read::is_current(resource) {
        tokens.push(Token {
            kind: "current",
            value: "true".into(),
            display: None,
        });
    }
    let mut references = Vec::new();
    collect_references(resource, &mut references);
    references.sort();
    references.dedup();
    tokens.extend(references.into_iter().map(|r| Token {
        kind: "ref",
        value: r,
        display: None,
    }));
    tokens
}

fn collect_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("reference", Value::String(r)) if r.contains('/') && !r.starts_with('#') => {
                        out.push(r.clone())
                    }
                    _ => collect_references(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_references(i, out)),
        _ => {}
    }
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
    fn medicines_given_by_reference_are_titled_by_their_name() {
        // As Epic sends them: the medicine by reference with a display, and a category.
        let epic = json!({
            "resourceType": "MedicationRequest", "id": "m1", "status": "active",
            "category": [{"coding": [{"code": "outpatient", "display": "Outpatient"}], "text": "Outpatient"}],
            "medicationReference": {"reference": "Medication/eXYZ", "display": "atorvastatin (LIPITOR) 40 MG tablet"},
        });
        assert_eq!(
            title(&epic).as_deref(),
            Some("atorvastatin (LIPITOR) 40 MG tablet")
        );
        // The medicine contained in the record: its name, and its code as the record's own.
        let contained = json!({
            "resourceType": "MedicationStatement", "id": "s1", "status": "active",
            "contained": [{"resourceType": "Medication", "id": "med1",
                "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361", "display": "amlodipine 5 MG Oral Tablet"}]}}],
            "medicationReference": {"reference": "#med1"},
        });
        assert_eq!(
            title(&contained).as_deref(),
            Some("amlodipine 5 MG Oral Tablet")
        );
        assert!(
            tokens(&contained).iter().any(|t| t.kind == "code"
                && t.value == "http://www.nlm.nih.gov/research/umls/rxnorm|197361")
        );
        // A reference with nothing to name it by falls back as before.
        let bare = json!({
            "resourceType": "MedicationRequest", "id": "m2", "status": "active",
            "medicationReference": {"reference": "#missing", "display": " "},
        });
        assert_eq!(title(&bare), None);
    }

    #[test]
    fn imaging_studies_are_titled_by_procedure_else_by_modality_and_body_site() {
        let synthea = json!({
            "resourceType": "ImagingStudy", "id": "i1", "status": "available",
            "series": [{"uid": "1.2", "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "US", "display": "Ultrasound"},
                        "bodySite": {"system": "http://snomed.info/sct", "code": "261179002", "display": "thoracic"}}],
        });
        assert_eq!(title(&synthea).as_deref(), Some("Ultrasound (thoracic)"));
        let mut named = synthea.clone();
        named["procedureCode"] = json!([{"text": "Echocardiography"}]);
        assert_eq!(title(&named).as_deref(), Some("Echocardiography"));
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

#[cfg(test)]
mod synthea_titles {
    use serde_json::Value;

    /// Every resource of the Synthea patients in `../shared/testdata`, as a sync or import would
    /// store it (Synthea writes `urn:uuid:` references; they do not matter here).
    fn synthea_resources() -> Vec<Value> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata/fhir/synthea");
        let mut resources = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("the Synthea bundles are in ../shared") {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let bundle: Value = serde_json::from_str(&text).unwrap();
            for entry in bundle["entry"].as_array().unwrap() {
                resources.push(entry["resource"].clone());
            }
        }
        resources
    }

    const SYNC_DAY: &str = "2026-12-06T08:00:00Z";

    /// Types about no patient in particular: they have no date of their own.
    const UNDATED: [&str; 4] = ["Organization", "Practitioner", "Location", "Medication"];

    #[test]
    fn every_synthea_record_has_a_title_and_a_date_of_its_own() {
        let mut checked = std::collections::BTreeMap::<String, usize>::new();
        for resource in synthea_resources() {
            // As a server sends it: stored today. That is not a date of the record's own.
            let mut resource = resource;
            resource["meta"]["lastUpdated"] = Value::from(SYNC_DAY);
            let p = super::prepare(&resource.to_string()).unwrap();
            assert_ne!(p.sort_date.as_deref(), Some(SYNC_DAY), "{}", p.resource_id);
            let kind = p.resource_type.clone();
            let title = p.sort_title.as_deref().unwrap_or("");
            assert!(
                !title.trim().is_empty() && title != p.resource_id,
                "{kind}/{} has no title of its own",
                p.resource_id
            );
            // Synthea's Goals carry no date at all: they are shown undated.
            if !UNDATED.contains(&kind.as_str()) && kind != "Goal" {
                assert!(
                    p.sort_date.is_some(),
                    "{kind}/{} has no date of its own",
                    p.resource_id
                );
            }
            *checked.entry(kind).or_default() += 1;
        }
        for kind in [
            "Goal",
            "Claim",
            "ExplanationOfBenefit",
            "CarePlan",
            "ImagingStudy",
        ] {
            assert!(
                checked.contains_key(kind),
                "no {kind} in the Synthea bundles"
            );
        }
    }

    #[test]
    fn goals_and_claims_are_titled_and_dated_from_their_own_fields() {
        let goal = serde_json::json!({"resourceType": "Goal", "id": "g1",
            "lifecycleStatus": "active", "description": {"text": "Walk 30 minutes a day"},
            "target": [{"dueDate": "2021-06-01"}], "meta": {"lastUpdated": SYNC_DAY}});
        let p = super::prepare(&goal.to_string()).unwrap();
        assert_eq!(p.sort_title.as_deref(), Some("Walk 30 minutes a day"));
        assert_eq!(p.sort_date.as_deref(), Some("2021-06-01"));
        let claim = serde_json::json!({"resourceType": "Claim", "id": "c1",
            "type": {"coding": [{"code": "pharmacy"}]}, "created": "2012-07-01",
            "item": [{"productOrService": {"text": "Emergency room admission (procedure)"}}]});
        let p = super::prepare(&claim.to_string()).unwrap();
        assert_eq!(
            p.sort_title.as_deref(),
            Some("Claim for Emergency room admission (procedure)")
        );
    }
}
