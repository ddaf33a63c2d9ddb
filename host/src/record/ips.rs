//! "Summary for my doctor": the International Patient Summary (IPS) of a user's records, as a
//! FHIR `document` Bundle and as the sections of a printable page.
//!
//! The IPS is a short, current picture: allergies, current medications, active problems,
//! immunizations, recent results and procedures. What is "current" is the read model's answer
//! ([`read::is_current`]), the same as Profile's and the dashboard's, for both the Bundle and
//! the page. Each entry is the read model's [`Line`] for the page, beside the resources it stands
//! for in the Bundle.

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

use crate::fhir::{self, read, read::Line};
use crate::record::observations;

/// How many recent results and procedures the summary lists.
pub const RECENT: usize = 20;

/// One IPS section: its LOINC code and title, and the entries in it.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub code: &'static str,
    pub title: &'static str,
    /// The page's `data-list` name for the lists Profile shows too ("conditions"), so the two
    /// can be compared.
    pub list: Option<&'static str>,
    pub entries: Vec<Entry>,
}

/// One line of a section: what the printable page shows, and the resources it stands for in the
/// Bundle.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The page's line; its `value` is the section's detail (a reaction, a dosage, a result,
    /// "3 doses, the first on 1 Oct 2021"), and `earlier` names the earlier resources.
    pub line: Line,
    /// The line's own resource, then earlier records of the same thing, newest first (earlier
    /// doses of a vaccine): every one is in the Bundle.
    #[serde(skip)]
    pub resources: Vec<Value>,
}

/// The summary of one user: the Patient (first one found) and the sections, in IPS order.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub patient_name: Option<String>,
    pub birth_date: Option<String>,
    pub gender: Option<String>,
    #[serde(skip)]
    pub patient: Option<Value>,
    pub sections: Vec<Section>,
}

/// A resource as stored, with the title Fasten stored for it (which may come from elsewhere: a
/// medicine named by a separate Medication).
pub type Stored = (Value, Option<String>);

impl Entry {
    /// The entry of one resource, its line saying `value`. The resource's own title comes
    /// before the stored one.
    fn new((resource, stored_title): Stored, value: Option<String>) -> Entry {
        let title = fhir::title(&resource)
            .or(stored_title)
            .unwrap_or_else(|| "(no name)".into());
        let mut line = Line::new(
            resource["resourceType"].as_str().unwrap_or(""),
            resource["id"].as_str().unwrap_or(""),
            fhir::sort_date(&resource).as_deref(),
            Some(&title),
            &resource,
        );
        line.value = value;
        Entry {
            line,
            resources: vec![resource],
        }
    }
}

/// One line per vaccine: its latest dose, with how many there were and when the first was.
fn immunization_lines(doses: Vec<Stored>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for dose in doses {
        let title = fhir::title(&dose.0).map(|t| read::name(&t));
        match entries
            .iter_mut()
            .find(|entry| Some(&entry.line.title) == title.as_ref())
        {
            Some(entry) => entry.resources.push(dose.0),
            None => entries.push(Entry::new(dose, None)),
        }
    }
    for entry in &mut entries {
        let earlier = &entry.resources[1..];
        if let Some(first) = earlier.last().and_then(fhir::sort_date) {
            let count = earlier.len() + 1;
            entry.line.value = Some(format!(
                "{count} doses, the first on {}",
                read::date(&first)
            ));
        }
        entry.line.earlier = earlier
            .iter()
            .map(|dose| format!("Immunization/{}", dose["id"].as_str().unwrap_or("")))
            .collect();
    }
    entries
}

/// Builds the summary from all of one user's resources of the types it uses, newest first.
pub fn summarise(resources: Vec<Stored>) -> Summary {
    let mut patient = None;
    let mut allergies = Vec::new();
    let mut medications = Vec::new();
    let mut problems = Vec::new();
    let mut immunizations = Vec::new();
    let mut results = Vec::new();
    let mut procedures = Vec::new();
    let mut seen_tests = std::collections::HashSet::new();
    for stored in resources {
        let resource = &stored.0;
        match resource["resourceType"].as_str().unwrap_or("") {
            "Patient" if patient.is_none() => patient = Some(stored.0),
            "AllergyIntolerance" if read::is_current_allergy(resource) => {
                let reaction = resource
                    .pointer("/reaction/0/manifestation/0")
                    .and_then(fhir::concept_text);
                allergies.push(Entry::new(stored, reaction));
            }
            "MedicationRequest" | "MedicationStatement"
                if read::is_current_medication(resource) =>
            {
                let dosage = resource
                    .pointer("/dosageInstruction/0/text")
                    .or_else(|| resource.pointer("/dosage/0/text"))
                    .and_then(Value::as_str)
                    .map(String::from);
                medications.push(Entry::new(stored, dosage));
            }
            "Condition" if read::is_current_condition(resource) => {
                problems.push(Entry::new(stored, None))
            }
            "Immunization" if read::is_current_immunization(resource) => immunizations.push(stored),
            "Observation" if is_laboratory(resource) && results.len() < RECENT => {
                // The latest result of each test: the rows come newest first.
                let test = fhir::title(resource).unwrap_or_default();
                if seen_tests.insert(test) {
                    let value = observations::read(resource).and_then(|o| o.value_display());
                    results.push(Entry::new(stored, value));
                }
            }
            "Procedure" if procedures.len() < RECENT => procedures.push(Entry::new(stored, None)),
            _ => {}
        }
    }
    let text = |pointer: &str| {
        patient
            .as_ref()
            .and_then(|p: &Value| p.pointer(pointer))
            .and_then(Value::as_str)
            .map(String::from)
    };
    Summary {
        patient_name: patient.as_ref().and_then(fhir::title),
        birth_date: text("/birthDate"),
        gender: text("/gender"),
        sections: vec![
            section("48765-2", "Allergies and intolerances", allergies),
            section("10160-0", "Medications", medications),
            section("11450-4", "Problems", problems),
            section(
                "11369-6",
                "Immunizations",
                immunization_lines(immunizations),
            ),
            section("30954-2", "Results", results),
            section("47519-4", "Procedures", procedures),
        ],
        patient,
    }
}

fn section(code: &'static str, title: &'static str, entries: Vec<Entry>) -> Section {
    let list = match code {
        "48765-2" => Some("allergies"),
        "10160-0" => Some("medications"),
        "11450-4" => Some("conditions"),
        "11369-6" => Some("immunizations"),
        _ => None,
    };
    Section {
        code,
        title,
        list,
        entries,
    }
}

fn is_laboratory(resource: &Value) -> bool {
    resource
        .get("category")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("coding")?.as_array())
        .flatten()
        .any(|c| c.get("code").and_then(Value::as_str) == Some("laboratory"))
}

/// Reads the user's resources the summary draws on, newest first.
pub async fn load(db: &SqlitePool, person_id: i64) -> sqlx::Result<Summary> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT json, sort_title FROM resources WHERE person_id = ? AND resource_type IN
           ('Patient', 'AllergyIntolerance', 'MedicationRequest', 'MedicationStatement',
            'Condition', 'Immunization', 'Observation', 'Procedure')
         ORDER BY sort_date DESC, resource_type, resource_id",
    )
    .bind(person_id)
    .fetch_all(db)
    .await?;
    Ok(summarise(
        rows.into_iter()
            .filter_map(|(json, title)| Some((serde_json::from_str(&json).ok()?, title)))
            .collect(),
    ))
}

/// A stable `urn:uuid:` for a resource, so the same record keeps its address in every summary.
fn urn(resource_type: &str, id: &str) -> String {
    let hash = Sha256::digest(format!("{resource_type}/{id}").as_bytes());
    let h = hex::encode(&hash[..16]);
    format!(
        "urn:uuid:{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The summary as an IPS `document` Bundle: a Composition (with one section per IPS section,
/// each listing its entries, or saying it has none), the Patient, then every entry.
/// `timestamp` is an RFC 3339 instant.
pub fn bundle(summary: &Summary, timestamp: &str) -> Value {
    let patient_ref = summary
        .patient
        .as_ref()
        .map(|p| urn("Patient", p["id"].as_str().unwrap_or("")));
    let mut entries = Vec::new();
    let mut sections = Vec::new();
    for s in &summary.sections {
        let full_url = |resource: &Value| {
            urn(
                resource["resourceType"].as_str().unwrap_or(""),
                resource["id"].as_str().unwrap_or(""),
            )
        };
        let resources: Vec<&Value> = s.entries.iter().flat_map(|e| &e.resources).collect();
        let references: Vec<Value> = resources
            .iter()
            .map(|r| json!({ "reference": full_url(r) }))
            .collect();
        let mut section = json!({
            "title": s.title,
            "code": { "coding": [{ "system": "http://loinc.org", "code": s.code }] },
            "text": {
                "status": "generated",
                "div": format!(
                    "<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>",
                    if s.entries.is_empty() {
                        "None recorded".to_string()
                    } else {
                        s.entries
                            .iter()
                            .map(|e| super::chart::escape(&e.line.title))
                            .collect::<Vec<_>>()
                            .join("; ")
                    }
                ),
            },
        });
        if references.is_empty() {
            // IPS: an empty section says why (no information rather than "none").
            section["emptyReason"] = json!({ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                "code": "unavailable" }] });
        } else {
            section["entry"] = Value::Array(references);
        }
        sections.push(section);
        for resource in resources {
            entries.push(json!({ "fullUrl": full_url(resource), "resource": resource }));
        }
    }
    let composition = json!({
        "resourceType": "Composition",
        "id": "summary",
        "status": "final",
        "type": { "coding": [{ "system": "http://loinc.org", "code": "60591-5",
                               "display": "Patient summary Document" }] },
        "subject": patient_ref.as_ref().map(|r| json!({ "reference": r })),
        "date": timestamp,
        "author": [{ "display": "Fasten On-Prem (compiled by the patient)" }],
        "title": "International Patient Summary",
        "section": sections,
    });
    let mut all = vec![
        json!({ "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
                               "resource": composition }),
    ];
    if let (Some(patient), Some(reference)) = (&summary.patient, &patient_ref) {
        all.push(json!({ "fullUrl": reference, "resource": patient }));
    }
    all.extend(entries);
    json!({
        "resourceType": "Bundle",
        "type": "document",
        "timestamp": timestamp,
        "identifier": { "system": "urn:ietf:rfc:3986",
                        "value": urn("Bundle", timestamp) },
        "entry": all,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resources as stored with no title of Fasten's own.
    fn untitled(resources: Vec<Value>) -> Vec<Stored> {
        resources.into_iter().map(|r| (r, None)).collect()
    }

    fn condition(id: &str, status: &str, onset: &str, name: &str) -> Value {
        json!({"resourceType": "Condition", "id": id, "onsetDateTime": onset,
               "clinicalStatus": {"coding": [{"code": status}]},
               "code": {"text": name}})
    }

    #[test]
    fn only_current_problems_medications_and_allergies_are_summarised() {
        let summary = summarise(untitled(vec![
            json!({"resourceType": "Patient", "id": "p", "birthDate": "1980-02-03",
                   "name": [{"given": ["Ada"], "family": "Lovelace"}]}),
            condition("c1", "active", "2020-01-01", "Hypertension"),
            condition("c2", "resolved", "2019-01-01", "Acute bronchitis"),
            json!({"resourceType": "MedicationRequest", "id": "m1", "status": "active",
                   "medicationCodeableConcept": {"text": "Lisinopril 10 MG"}}),
            json!({"resourceType": "MedicationRequest", "id": "m2", "status": "stopped",
                   "medicationCodeableConcept": {"text": "Amoxicillin"}}),
            json!({"resourceType": "AllergyIntolerance", "id": "a1",
                   "clinicalStatus": {"coding": [{"code": "active"}]},
                   "code": {"text": "Peanut"}}),
        ]));
        assert_eq!(summary.birth_date.as_deref(), Some("1980-02-03"));
        let titles = |code: &str| -> Vec<String> {
            summary
                .sections
                .iter()
                .find(|s| s.code == code)
                .unwrap()
                .entries
                .iter()
                .map(|e| e.line.title.clone())
                .collect()
        };
        assert_eq!(titles("11450-4"), ["Hypertension"]);
        assert_eq!(titles("10160-0"), ["Lisinopril 10 MG"]);
        assert_eq!(titles("48765-2"), ["Peanut"]);
    }

    #[test]
    fn each_vaccine_is_one_line_and_every_dose_is_in_the_bundle() {
        let dose = |id: &str, date: &str, vaccine: &str| {
            json!({"resourceType": "Immunization", "id": id, "status": "completed",
                   "occurrenceDateTime": date, "vaccineCode": {"text": vaccine}})
        };
        // Newest first, as `load` reads them.
        let summary = summarise(untitled(vec![
            dose("i3", "2023-10-01", "Influenza"),
            dose("i2", "2022-10-01", "Influenza"),
            dose("t1", "2021-05-01", "Tdap"),
            dose("i1", "2021-10-01", "Influenza"),
        ]));
        let section = summary
            .sections
            .iter()
            .find(|s| s.code == "11369-6")
            .unwrap();
        let lines: Vec<(&str, Option<&str>, Option<&str>)> = section
            .entries
            .iter()
            .map(|e| {
                let line = &e.line;
                (
                    line.title.as_str(),
                    line.date.as_deref(),
                    line.value.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                (
                    "Influenza",
                    Some("1 Oct 2023"),
                    Some("3 doses, the first on 1 Oct 2021")
                ),
                ("Tdap", Some("1 May 2021"), None),
            ]
        );
        assert_eq!(
            section.entries[0].line.earlier,
            ["Immunization/i2", "Immunization/i1"]
        );
        let bundle = bundle(&summary, "2026-11-25T10:00:00Z");
        let section = bundle["entry"][0]["resource"]["section"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["code"]["coding"][0]["code"] == "11369-6")
            .unwrap()
            .clone();
        assert_eq!(section["entry"].as_array().unwrap().len(), 4);
        let doses = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["resource"]["resourceType"] == "Immunization")
            .count();
        assert_eq!(doses, 4);
    }

    #[test]
    fn the_bundle_is_an_ips_document_with_composition_first_and_resolvable_entries() {
        let summary = summarise(untitled(vec![
            json!({"resourceType": "Patient", "id": "p"}),
            condition("c1", "active", "2020-01-01", "Asthma <severe>"),
        ]));
        let bundle = bundle(&summary, "2026-11-25T10:00:00Z");
        assert_eq!(bundle["type"], "document");
        let entries = bundle["entry"].as_array().unwrap();
        assert_eq!(entries[0]["resource"]["resourceType"], "Composition");
        assert_eq!(entries[1]["resource"]["resourceType"], "Patient");
        let full_urls: Vec<&str> = entries
            .iter()
            .map(|e| e["fullUrl"].as_str().unwrap())
            .collect();
        let sections = entries[0]["resource"]["section"].as_array().unwrap();
        assert_eq!(sections.len(), 6);
        for section in sections {
            for entry in section["entry"].as_array().into_iter().flatten() {
                assert!(full_urls.contains(&entry["reference"].as_str().unwrap()));
            }
        }
        let problems = sections
            .iter()
            .find(|s| s["code"]["coding"][0]["code"] == "11450-4");
        assert!(
            problems.unwrap()["text"]["div"]
                .as_str()
                .unwrap()
                .contains("Asthma &lt;severe&gt;")
        );
        let allergies = sections
            .iter()
            .find(|s| s["code"]["coding"][0]["code"] == "48765-2");
        assert!(allergies.unwrap().get("emptyReason").is_some());
        // Unique fullUrls.
        let unique: std::collections::HashSet<_> = full_urls.iter().collect();
        assert_eq!(unique.len(), full_urls.len());
    }
}
