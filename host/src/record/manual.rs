//! Records entered by hand: a condition, medication, procedure, immunization, allergy, lab
//! result, practitioner, note or attachment, turned into FHIR R4 resources in the user's own
//! "Entered by hand" source and stored through the same ingest path as imports (so they are
//! indexed, searchable and exported like any other record).
//!
//! Each resource keeps the form it was made from in an extension, so "Edit" shows exactly what
//! the person typed rather than a lossy reading of the FHIR back into fields.

use rand::RngCore;
use serde_json::{Value, json};
use sqlx::SqlitePool;

use crate::fhir::{self, ingest::Writer};

/// Where the submitted form is kept inside the resource.
pub const FORM_EXTENSION: &str =
    "https://github.com/fastenhealth/fasten-onprem/StructureDefinition/manual-entry-form";

/// Largest attachment accepted (PDF or image), stored base64 inside a Binary.
pub const MAX_ATTACHMENT_BYTES: usize = 10 * 1024 * 1024;

/// Attachments people keep: documents and pictures. Also the only types Explore lets a browser
/// show in the page.
pub const ATTACHMENT_TYPES: &[&str] = &[
    "application/pdf",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "text/plain",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Text,
    Date,
    Number,
    LongText,
    Choice(&'static [(&'static str, &'static str)]),
}

/// One field of a form.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub input: Input,
    pub required: bool,
}

const fn field(name: &'static str, label: &'static str, input: Input, required: bool) -> Field {
    Field {
        name,
        label,
        input,
        required,
    }
}

const ACTIVE_RESOLVED: &[(&str, &str)] = &[("active", "Ongoing"), ("resolved", "Resolved")];
const ACTIVE_STOPPED: &[(&str, &str)] = &[("active", "Taking it"), ("stopped", "Stopped")];
const SEVERITY: &[(&str, &str)] = &[
    ("", "Not sure"),
    ("mild", "Mild"),
    ("moderate", "Moderate"),
    ("severe", "Severe"),
];

/// A kind of record a person can enter.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub id: &'static str,
    pub label: &'static str,
    pub resource_type: &'static str,
    pub fields: &'static [Field],
}

pub const KINDS: &[Kind] = &[
    Kind {
        id: "condition",
        label: "Condition or diagnosis",
        resource_type: "Condition",
        fields: &[
            field("name", "Condition", Input::Text, true),
            field("onset", "Since", Input::Date, false),
            field("status", "Status", Input::Choice(ACTIVE_RESOLVED), true),
            field("note", "Notes", Input::LongText, false),
        ],
    },
    Kind {
        id: "medication",
        label: "Medication",
        resource_type: "MedicationStatement",
        fields: &[
            field("name", "Medication", Input::Text, true),
            field("dosage", "How you take it", Input::Text, false),
            field("start", "Since", Input::Date, false),
            field("status", "Status", Input::Choice(ACTIVE_STOPPED), true),
            field("note", "Notes", Input::LongText, false),
        ],
    },
    Kind {
        id: "procedure",
        label: "Procedure or surgery",
        resource_type: "Procedure",
        fields: &[
            field("name", "Procedure", Input::Text, true),
            field("date", "Date", Input::Date, false),
            field("note", "Notes", Input::LongText, false),
        ],
    },
    Kind {
        id: "immunization",
        label: "Vaccination",
        resource_type: "Immunization",
        fields: &[
            field("name", "Vaccine", Input::Text, true),
            field("date", "Date", Input::Date, true),
            field("note", "Notes", Input::LongText, false),
        ],
    },
    Kind {
        id: "allergy",
        label: "Allergy or intolerance",
        resource_type: "AllergyIntolerance",
        fields: &[
            field("name", "Allergic to", Input::Text, true),
            field("reaction", "Reaction", Input::Text, false),
            field("severity", "Severity", Input::Choice(SEVERITY), false),
            field("note", "Notes", Input::LongText, false),
        ],
    },
    Kind {
        id: "lab",
        label: "Lab result or measurement",
        resource_type: "Observation",
        fields: &[
            field("name", "Test", Input::Text, true),
            field("value", "Result", Input::Text, true),
            field("unit", "Unit", Input::Text, false),
            field("date", "Date", Input::Date, true),
            field("low", "Normal range from", Input::Number, false),
            field("high", "Normal range to", Input::Number, false),
            field("note", "Notes", Input::LongText, false),
        ],
    },
    Kind {
        id: "practitioner",
        label: "Doctor or other practitioner",
        resource_type: "Practitioner",
        fields: &[
            field("name", "Name", Input::Text, true),
            field("role", "Speciality", Input::Text, false),
            field("phone", "Phone", Input::Text, false),
        ],
    },
    Kind {
        id: "note",
        label: "Note",
        resource_type: "DocumentReference",
        fields: &[
            field("name", "Title", Input::Text, true),
            field("date", "Date", Input::Date, false),
            field("text", "Note", Input::LongText, true),
        ],
    },
    Kind {
        id: "attachment",
        label: "Document or picture (PDF, image)",
        resource_type: "DocumentReference",
        fields: &[
            field("name", "Title", Input::Text, true),
            field("date", "Date", Input::Date, false),
        ],
    },
];

pub fn kind(id: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.id == id)
}

/// A file attached to an "attachment" record.
pub struct Attachment {
    pub content_type: String,
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// The submitted values, by field name.
pub type FormValues = Vec<(String, String)>;

fn value<'a>(form: &'a FormValues, name: &str) -> &'a str {
    form.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.trim())
        .unwrap_or("")
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// A new id for a record entered here.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("manual-{}", hex::encode(bytes))
}

/// Checks the form against its fields: required ones present, dates as YYYY-MM-DD, numbers as
/// numbers, choices among their options. Answers each problem as a sentence.
pub fn validate(kind: &Kind, form: &FormValues) -> Vec<String> {
    let mut problems = Vec::new();
    for f in kind.fields {
        let v = value(form, f.name);
        if v.is_empty() {
            if f.required {
                problems.push(format!("{} is required.", f.label));
            }
            continue;
        }
        match f.input {
            Input::Date => {
                let format = time::macros::format_description!("[year]-[month]-[day]");
                if time::Date::parse(v, &format).is_err() {
                    problems.push(format!("{} must be a date like 2024-03-31.", f.label));
                }
            }
            Input::Number if v.replace(',', ".").parse::<f64>().is_err() => {
                problems.push(format!("{} must be a number.", f.label));
            }
            Input::Choice(options) if !options.iter().any(|(o, _)| *o == v) => {
                problems.push(format!("{} has an unknown choice.", f.label));
            }
            _ => {}
        }
    }
    problems
}

/// A number as typed ("45,5" → 45.5), kept exactly (52 stays 52, not 52.0).
fn number(text: &str) -> Option<serde_json::Number> {
    let text = text.trim().replace(',', ".");
    text.parse::<f64>().ok().filter(|n| n.is_finite())?;
    serde_json::from_str(&text).ok()
}

fn note(form: &FormValues) -> Option<Value> {
    non_empty(value(form, "note")).map(|t| json!([{ "text": t }]))
}

/// The FHIR resource for a form (already validated). `binary_id` names the Binary holding an
/// attachment's bytes.
pub fn build(
    kind: &Kind,
    id: &str,
    form: &FormValues,
    binary: Option<(&str, &Attachment)>,
) -> Value {
    let name = value(form, "name");
    let concept = json!({ "text": name });
    let mut resource = match kind.id {
        "condition" => json!({
            "resourceType": "Condition",
            "clinicalStatus": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": value(form, "status") }] },
            "code": concept,
            "onsetDateTime": non_empty(value(form, "onset")),
        }),
        "medication" => json!({
            "resourceType": "MedicationStatement",
            "status": if value(form, "status") == "stopped" { "stopped" } else { "active" },
            "medicationCodeableConcept": concept,
            "effectiveDateTime": non_empty(value(form, "start")),
            "dosage": non_empty(value(form, "dosage")).map(|d| json!([{ "text": d }])),
        }),
        "procedure" => json!({
            "resourceType": "Procedure",
            "status": "completed",
            "code": concept,
            "performedDateTime": non_empty(value(form, "date")),
        }),
        "immunization" => json!({
            "resourceType": "Immunization",
            "status": "completed",
            "vaccineCode": concept,
            "occurrenceDateTime": value(form, "date"),
        }),
        "allergy" => {
            let reaction = non_empty(value(form, "reaction")).map(|r| {
                let mut reaction = json!({ "manifestation": [{ "text": r }] });
                if let Some(s) = non_empty(value(form, "severity")) {
                    reaction["severity"] = json!(s);
                }
                json!([reaction])
            });
            json!({
                "resourceType": "AllergyIntolerance",
                "clinicalStatus": { "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active" }] },
                "code": concept,
                "reaction": reaction,
            })
        }
        "lab" => {
            let raw = value(form, "value");
            let unit = value(form, "unit");
            let mut observation = json!({
                "resourceType": "Observation",
                "status": "final",
                "category": [{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "laboratory", "display": "Laboratory" }] }],
                "code": concept,
                "effectiveDateTime": value(form, "date"),
            });
            match number(raw) {
                Some(n) => {
                    observation["valueQuantity"] = json!({ "value": n });
                    if !unit.is_empty() {
                        observation["valueQuantity"]["unit"] = json!(unit);
                    }
                }
                None => observation["valueString"] = json!(raw),
            }
            let (low, high) = (number(value(form, "low")), number(value(form, "high")));
            if low.is_some() || high.is_some() {
                let bound = |v: serde_json::Number| {
                    let mut q = json!({ "value": v });
                    if !unit.is_empty() {
                        q["unit"] = json!(unit);
                    }
                    q
                };
                let mut range = json!({});
                if let Some(l) = low {
                    range["low"] = bound(l);
                }
                if let Some(h) = high {
                    range["high"] = bound(h);
                }
                observation["referenceRange"] = json!([range]);
            }
            observation
        }
        "practitioner" => json!({
            "resourceType": "Practitioner",
            "name": [{ "text": name }],
            "qualification": non_empty(value(form, "role"))
                .map(|r| json!([{ "code": { "text": r } }])),
            "telecom": non_empty(value(form, "phone"))
                .map(|p| json!([{ "system": "phone", "value": p }])),
        }),
        "note" => {
            use base64::Engine as _;
            let text = value(form, "text");
            json!({
                "resourceType": "DocumentReference",
                "status": "current",
                "type": { "text": "Note" },
                "description": name,
                "date": non_empty(value(form, "date")).map(|d| format!("{d}T00:00:00Z")),
                "content": [{ "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "title": name,
                    "data": base64::engine::general_purpose::STANDARD.encode(text),
                } }],
            })
        }
        _ => {
            let (binary_id, file) = binary.expect("an attachment record has its file");
            json!({
                "resourceType": "DocumentReference",
                "status": "current",
                "type": { "text": "Document" },
                "description": name,
                "date": non_empty(value(form, "date")).map(|d| format!("{d}T00:00:00Z")),
                "content": [{ "attachment": {
                    "contentType": file.content_type,
                    "url": format!("Binary/{binary_id}"),
                    "title": file.file_name,
                    "size": file.bytes.len(),
                } }],
            })
        }
    };
    let object = resource.as_object_mut().expect("built as an object");
    // Absent optional fields came out as JSON null; FHIR has no nulls.
    object.retain(|_, v| !v.is_null());
    object.insert("id".into(), json!(id));
    if let Some(n) = note(form)
        && kind.id != "note"
    {
        object.insert("note".into(), n);
    }
    object.insert(
        "extension".into(),
        json!([{ "url": FORM_EXTENSION,
                 "valueString": serde_json::to_string(&form_for_extension(kind, form))
                     .expect("strings serialise") }]),
    );
    resource
}

/// An attachment after editing: its file stays; its title, date and kept form change.
pub fn retitle_attachment(existing: &Value, form: &FormValues) -> Value {
    let kind = kind("attachment").expect("the attachment kind exists");
    let mut resource = existing.clone();
    let object = resource
        .as_object_mut()
        .expect("a stored resource is an object");
    object.insert("description".into(), json!(value(form, "name")));
    match non_empty(value(form, "date")) {
        Some(d) => object.insert("date".into(), json!(format!("{d}T00:00:00Z"))),
        None => object.remove("date"),
    };
    object.insert(
        "extension".into(),
        json!([{ "url": FORM_EXTENSION,
                 "valueString": serde_json::to_string(&form_for_extension(kind, form))
                     .expect("strings serialise") }]),
    );
    resource
}

/// Only the kind's own fields are kept.
fn form_for_extension(kind: &Kind, form: &FormValues) -> Vec<(String, String)> {
    kind.fields
        .iter()
        .map(|f| (f.name.to_string(), value(form, f.name).to_string()))
        .collect()
}

/// The form a resource was made from, for editing.
pub fn form_of(resource: &Value) -> Option<FormValues> {
    let text = resource
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(FORM_EXTENSION))?
        .get("valueString")?
        .as_str()?;
    serde_json::from_str(text).ok()
}

/// Which kind made a resource (DocumentReference: a note has text, an attachment a Binary).
pub fn kind_of(resource: &Value) -> Option<&'static Kind> {
    let resource_type = resource.get("resourceType")?.as_str()?;
    if resource_type == "DocumentReference" {
        let is_file = resource
            .pointer("/content/0/attachment/url")
            .and_then(Value::as_str)
            .is_some_and(|u| u.starts_with("Binary/"));
        return kind(if is_file { "attachment" } else { "note" });
    }
    KINDS.iter().find(|k| k.resource_type == resource_type)
}

/// The user's "Entered by hand" source, created on first use.
pub async fn source(db: &SqlitePool, person_id: i64) -> sqlx::Result<i64> {
    let existing: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM sources WHERE person_id = ? AND kind = 'manual' ORDER BY id LIMIT 1",
    )
    .bind(person_id)
    .fetch_optional(db)
    .await?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let now = crate::store::unix_now();
    sqlx::query_scalar(
        "INSERT INTO sources (person_id, kind, display_name, created_at, updated_at)
         VALUES (?, 'manual', 'Entered by hand', ?, ?) RETURNING id",
    )
    .bind(person_id)
    .bind(now)
    .bind(now)
    .fetch_one(db)
    .await
}

/// Stores resources in the manual source, in one transaction (a new or an edited record).
pub async fn store(db: &SqlitePool, person_id: i64, resources: &[Value]) -> anyhow::Result<()> {
    let source_id = source(db, person_id).await?;
    let prepared = resources
        .iter()
        .map(|r| fhir::prepare(&r.to_string()).map_err(|e| anyhow::anyhow!(e)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut writer = Writer::begin(db, person_id, source_id).await?;
    writer.write(&prepared).await?;
    writer.commit().await?;
    Ok(())
}

/// A record of the user's manual source, if there is one with this type and id.
pub async fn load(
    db: &SqlitePool,
    person_id: i64,
    resource_type: &str,
    id: &str,
) -> sqlx::Result<Option<Value>> {
    let json: Option<String> = sqlx::query_scalar(
        "SELECT r.json FROM resources r JOIN sources s ON s.id = r.source_id
         WHERE r.person_id = ? AND s.kind = 'manual' AND r.resource_type = ? AND r.resource_id = ?",
    )
    .bind(person_id)
    .bind(resource_type)
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

/// Deletes a manual record (and the Binary of an attachment). False when there is none.
pub async fn delete(
    db: &SqlitePool,
    person_id: i64,
    resource_type: &str,
    id: &str,
) -> sqlx::Result<bool> {
    let Some(resource) = load(db, person_id, resource_type, id).await? else {
        return Ok(false);
    };
    let source_id = source(db, person_id).await?;
    let mut tx = db.begin().await?;
    let mut targets = vec![(resource_type.to_string(), id.to_string())];
    if let Some(binary) = resource
        .pointer("/content/0/attachment/url")
        .and_then(Value::as_str)
        .and_then(|u| u.strip_prefix("Binary/"))
    {
        targets.push(("Binary".into(), binary.to_string()));
    }
    for (t, i) in targets {
        sqlx::query(
            "DELETE FROM resources WHERE source_id = ? AND resource_type = ? AND resource_id = ?",
        )
        .bind(source_id)
        .bind(&t)
        .bind(&i)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> FormValues {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_lab_result_becomes_a_laboratory_observation_with_its_range() {
        let kind = kind("lab").unwrap();
        let f = form(&[
            ("name", "Ferritin"),
            ("value", "45,5"),
            ("unit", "ng/mL"),
            ("date", "2024-03-01"),
            ("low", "30"),
            ("high", "400"),
        ]);
        assert!(validate(kind, &f).is_empty());
        let r = build(kind, "manual-1", &f, None);
        assert_eq!(r["valueQuantity"]["value"], 45.5);
        assert_eq!(r["referenceRange"][0]["high"]["value"], 400);
        assert_eq!(r["category"][0]["coding"][0]["code"], "laboratory");
        // Valid FHIR as far as the ingest path checks, and the form comes back for editing.
        assert!(fhir::prepare(&r.to_string()).is_ok());
        assert_eq!(value(&form_of(&r).unwrap(), "value"), "45,5");
        assert_eq!(kind_of(&r).unwrap().id, "lab");
    }

    #[test]
    fn problems_are_sentences_naming_the_field() {
        let kind = kind("immunization").unwrap();
        let problems = validate(kind, &form(&[("name", ""), ("date", "31/12/2024")]));
        assert_eq!(
            problems,
            [
                "Vaccine is required.",
                "Date must be a date like 2024-03-31."
            ]
        );
    }

    #[test]
    fn optional_fields_left_empty_leave_no_nulls() {
        let kind = kind("condition").unwrap();
        let r = build(
            kind,
            "manual-2",
            &form(&[("name", "Migraine"), ("status", "active")]),
            None,
        );
        assert!(r.get("onsetDateTime").is_none());
        assert!(!r.to_string().contains("null"));
    }
}
