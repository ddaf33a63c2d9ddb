//! Everything kept beside a stored resource, derived from its JSON in one place: the title and
//! date that lists sort by, the tokens (codes, categories, status, whether it is current,
//! references) that pages query instead of reading JSON, the text full-text search indexes (see
//! [`super::search_text`]) and, for an Observation, what it measured (`observation_keys`).
//! [`super::prepare`] calls [`derive`] for every resource a plugin emits, and [`super::ingest`]
//! writes the result in the same transaction as the resource, so what is derived never disagrees
//! with the JSON. When this code changes what it derives, a migration lists the records in
//! `rederive_pending` and the server derives them again at start-up.
//!
//! Derivation is a handful of field lookups per resource, not a FHIRPath engine: cheap enough to
//! run on every upsert. It uses only `fhir` (the read model, the Observation reader), never the
//! pages that query what it derives: the plugin runtime prepares every resource, and should not
//! depend on the pages.

use serde_json::Value;

use super::observation;
use super::read;
use super::search_text::{self, Document};
use super::{Token, concept_text};

/// What is kept beside one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub sort_date: Option<String>,
    pub title: Option<String>,
    pub tokens: Vec<Token>,
    /// The text full-text search indexes.
    pub search: Document,
    /// For an Observation, what it measured (see [`observation_keys`]); empty for anything else.
    pub observation_keys: Vec<(String, bool)>,
}

/// Derives everything kept beside `resource`.
pub fn derive(resource: &Value) -> Derived {
    let title = title(resource);
    Derived {
        sort_date: sort_date(resource),
        search: search_text::document(resource, title.as_deref()),
        tokens: tokens(resource),
        observation_keys: observation_keys(resource),
        title,
    }
}

/// The text full-text search indexes for `resource`, as [`derive`] gives it (for records
/// indexed after they were stored).
pub fn search_document(resource: &Value) -> Document {
    search_text::document(resource, title(resource).as_deref())
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

/// What an Observation measured, as `observation_keys` keeps it: each observation's key (a
/// panel's components each have their own), once, with whether it is a lab result.
pub fn observation_keys(resource: &Value) -> Vec<(String, bool)> {
    let mut keys: Vec<(String, bool)> = Vec::new();
    for o in observation::read_all(resource) {
        if !keys.iter().any(|(k, _)| *k == o.key) {
            let lab = observation::is_lab(&o);
            keys.push((o.key, lab));
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn observations_are_keyed_by_what_they_measured_with_whether_it_is_a_lab() {
        // A blood pressure: the panel and each component, none of them a lab result.
        let pressure = json!({"resourceType": "Observation", "id": "bp",
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "55284-4"}], "text": "Blood Pressure"},
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}], "text": "Systolic"},
             "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}], "text": "Systolic again"},
             "valueQuantity": {"value": 121, "unit": "mm[Hg]"}}
        ]});
        assert_eq!(
            observation_keys(&pressure),
            vec![
                ("55284-4".to_string(), false),
                ("8480-6".to_string(), false)
            ]
        );
        // No category, a number and no LOINC code: a lab result keyed by its name.
        let local = json!({"resourceType": "Observation", "id": "g",
            "code": {"text": "Glucose, Fasting"}, "valueString": "<5"});
        assert_eq!(
            observation_keys(&local),
            vec![("glucose-fasting".to_string(), true)]
        );
        assert!(observation_keys(&json!({"resourceType": "Condition", "id": "c"})).is_empty());
    }

    #[test]
    fn the_search_title_is_the_title() {
        let resource = json!({"resourceType": "Condition", "id": "c",
            "code": {"text": "Viral  sinusitis\u{2}"}, "note": [{"text": "mild"}]});
        let derived = derive(&resource);
        assert_eq!(derived.title.as_deref(), Some("Viral  sinusitis\u{2}"));
        assert_eq!(derived.search.title, "Viral sinusitis");
        assert_eq!(derived.search, search_document(&resource));
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
            let p = super::super::prepare(&resource.to_string()).unwrap();
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
        let p = super::super::prepare(&goal.to_string()).unwrap();
        assert_eq!(p.sort_title.as_deref(), Some("Walk 30 minutes a day"));
        assert_eq!(p.sort_date.as_deref(), Some("2021-06-01"));
        let claim = serde_json::json!({"resourceType": "Claim", "id": "c1",
            "type": {"coding": [{"code": "pharmacy"}]}, "created": "2012-07-01",
            "item": [{"productOrService": {"text": "Emergency room admission (procedure)"}}]});
        let p = super::super::prepare(&claim.to_string()).unwrap();
        assert_eq!(
            p.sort_title.as_deref(),
            Some("Claim for Emergency room admission (procedure)")
        );
    }
}
