//! The patient profile: who the records are about, as each source tells it, and the short lists a
//! clinician asks for first (allergies, immunizations, active medications and conditions).
//!
//! Demographics come from the Patient resource of every source. Sources often agree, so equal
//! values are merged into one line naming all the sources that gave it; where they disagree every
//! version is shown with its source, because a family member fixing a wrong address at one
//! provider needs to see which one is wrong.

use serde::Serialize;
use serde_json::Value;
use sqlx::SqlitePool;
use time::Date;

use crate::fhir::read::{self, Line};

/// One value of a field and the sources that gave it.
#[derive(Debug, Serialize, PartialEq)]
pub struct Sourced {
    pub value: String,
    pub sources: Vec<String>,
}

/// A labelled demographic field ("Birth date") with its distinct values.
#[derive(Debug, Serialize, PartialEq)]
pub struct Field {
    pub label: String,
    pub values: Vec<Sourced>,
}

#[derive(Debug, Serialize)]
pub struct Profile {
    /// Whether the user has any record at all, to tell "upload something" from "no patient data".
    pub has_records: bool,
    pub fields: Vec<Field>,
    pub allergies: Vec<Line>,
    pub immunizations: Vec<Line>,
    pub medications: Vec<Line>,
    pub conditions: Vec<Line>,
}

pub async fn profile(db: &SqlitePool, person_id: i64, today: Date) -> Result<Profile, sqlx::Error> {
    let has_records: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM resources WHERE person_id = ?)")
            .bind(person_id)
            .fetch_one(db)
            .await?;
    let patients: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.json, s.display_name FROM resources r JOIN sources s ON s.id = r.source_id
         WHERE r.person_id = ? AND r.resource_type = 'Patient' ORDER BY s.id, r.resource_id",
    )
    .bind(person_id)
    .fetch_all(db)
    .await?;
    let mut facts = Vec::new();
    for (json, source) in &patients {
        let Ok(patient) = serde_json::from_str::<Value>(json) else {
            continue;
        };
        for (label, value) in patient_facts(&patient, today) {
            facts.push((label, value, source.clone()));
        }
    }

    let allergies = allergies(db, person_id, None).await?;
    let immunizations = immunizations(db, person_id, None).await?;
    let medications = medications(db, person_id, None).await?;
    let conditions = conditions(db, person_id, None).await?;
    Ok(Profile {
        has_records,
        fields: merge(facts),
        allergies,
        immunizations,
        medications,
        conditions,
    })
}

/// Allergies that still hold ([`read::is_current_allergy`]), by name.
pub async fn allergies(
    db: &SqlitePool,
    person_id: i64,
    limit: Option<usize>,
) -> Result<Vec<Line>, sqlx::Error> {
    Ok(current(db, person_id, "AllergyIntolerance", limit)
        .await?
        .into_iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|(mut line, json)| {
            line.value = allergy_detail(&json);
            quiet_status(&mut line, &["active"]);
            line
        })
        .collect())
}

/// The latest dose of one vaccine, and every dose of it.
#[derive(sqlx::FromRow)]
struct VaccineRow {
    resource_id: String,
    sort_date: Option<String>,
    sort_title: Option<String>,
    doses: i64,
    first_date: Option<String>,
    /// Every dose's id, comma-separated (ids have no commas).
    dose_ids: String,
    json: String,
}

/// Vaccines given ([`read::is_current_immunization`]: not a dose marked not-done or entered in
/// error), one line per vaccine: its latest dose, newest first, with how many doses there were
/// ("3 doses since 2019"). The line stands for every dose (`earlier`), as the IPS lists them.
pub async fn immunizations(
    db: &SqlitePool,
    person_id: i64,
    limit: Option<usize>,
) -> Result<Vec<Line>, sqlx::Error> {
    // Grouped from the token index before any JSON is read; the same dose from two sources is
    // counted once.
    let rows: Vec<VaccineRow> = sqlx::query_as(
        "WITH doses AS (
               SELECT r.source_id, r.resource_id, r.sort_date, r.sort_title
               FROM resource_tokens t
               JOIN resources r ON r.source_id = t.source_id
                    AND r.resource_type = t.resource_type AND r.resource_id = t.resource_id
               WHERE t.person_id = ?1 AND t.kind = 'current' AND t.value = 'true'
                 AND t.resource_type = 'Immunization'
             ), vaccines AS (
               -- SQLite takes the bare columns from the row holding max(sort_date).
               SELECT source_id, resource_id, max(sort_date) AS sort_date, sort_title,
                      count(DISTINCT resource_id) AS doses, min(sort_date) AS first_date,
                      group_concat(DISTINCT resource_id) AS dose_ids
               FROM doses
               GROUP BY lower(coalesce(sort_title, ''))
             )
             SELECT v.resource_id, v.sort_date, v.sort_title, v.doses, v.first_date, v.dose_ids,
                    r.json
             FROM vaccines v JOIN resources r ON r.source_id = v.source_id
                  AND r.resource_type = 'Immunization' AND r.resource_id = v.resource_id
             ORDER BY v.sort_date DESC, v.resource_id LIMIT ?2",
    )
    .bind(person_id)
    .bind(limit.map_or(-1, |l| l as i64))
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let json: Value = serde_json::from_str(&row.json).unwrap_or(Value::Null);
            let mut line = Line::new(
                "Immunization",
                &row.resource_id,
                row.sort_date.as_deref(),
                row.sort_title.as_deref(),
                &json,
            );
            if row.doses > 1 {
                let since = row.first_date.as_deref().and_then(|d| d.get(..4));
                line.value = Some(match since {
                    Some(year) => format!("{} doses since {year}", row.doses),
                    None => format!("{} doses", row.doses),
                });
            }
            // A completed dose is what every line is: only another status is worth a word.
            quiet_status(&mut line, &["completed"]);
            line.earlier = row
                .dose_ids
                .split(',')
                .filter(|id| *id != row.resource_id)
                .map(|id| format!("Immunization/{id}"))
                .collect();
            line
        })
        .collect())
}

/// Medications being taken ([`read::is_current_medication`]): prescriptions, then statements (a
/// medication entered by hand is a statement), each by name.
pub async fn medications(
    db: &SqlitePool,
    person_id: i64,
    limit: Option<usize>,
) -> Result<Vec<Line>, sqlx::Error> {
    let mut found = current(db, person_id, "MedicationRequest", limit).await?;
    found.extend(current(db, person_id, "MedicationStatement", limit).await?);
    Ok(found
        .into_iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|(mut line, json)| {
            line.value = json
                .pointer("/dosageInstruction/0/text")
                .or_else(|| json.pointer("/dosage/0/text"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            quiet_status(&mut line, &["active"]);
            line
        })
        .collect())
}

/// Conditions still going on ([`read::is_current_condition`]), by name.
pub async fn conditions(
    db: &SqlitePool,
    person_id: i64,
    limit: Option<usize>,
) -> Result<Vec<Line>, sqlx::Error> {
    Ok(current(db, person_id, "Condition", limit)
        .await?
        .into_iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|(mut line, _)| {
            quiet_status(&mut line, &["active"]);
            line
        })
        .collect())
}

/// The person's current records of one type ([`read::is_current`], kept at ingest as the
/// `current` token), by title. With a `limit` (a dashboard widget) only the first few rows are
/// read whole, with room for the ones the callers leave out (duplicates).
async fn current(
    db: &SqlitePool,
    person_id: i64,
    resource_type: &str,
    limit: Option<usize>,
) -> Result<Vec<(Line, Value)>, sqlx::Error> {
    // The rows are chosen (and cut to the limit) from the token index first; only those are
    // read whole.
    let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "WITH chosen AS (
           SELECT r.source_id, r.resource_id, r.sort_date, r.sort_title
           FROM resource_tokens t
           JOIN resources r ON r.source_id = t.source_id
                AND r.resource_type = t.resource_type AND r.resource_id = t.resource_id
           WHERE t.person_id = ",
    );
    query
        .push_bind(person_id)
        .push(" AND t.kind = 'current' AND t.value = 'true' AND t.resource_type = ")
        .push_bind(resource_type.to_string());
    let order = " ORDER BY lower(sort_title), sort_date DESC, resource_id";
    query.push(
        order
            .replace("sort_", "r.sort_")
            .replace(", resource_id", ", r.resource_id"),
    );
    if let Some(limit) = limit {
        query.push(" LIMIT ").push_bind((limit * 3) as i64);
    }
    query
        .push(
            ") SELECT c.resource_id, c.sort_date, c.sort_title, r.json FROM chosen c
             JOIN resources r ON r.source_id = c.source_id AND r.resource_type = ",
        )
        .push_bind(resource_type.to_string())
        .push(" AND r.resource_id = c.resource_id")
        .push(
            order
                .replace("sort_", "c.sort_")
                .replace(", resource_id", ", c.resource_id"),
        );
    let rows: Vec<(String, Option<String>, Option<String>, String)> =
        query.build_query_as().fetch_all(db).await?;
    let mut seen = std::collections::HashSet::new();
    Ok(rows
        .into_iter()
        // The same record from two sources is listed once.
        .filter(|(id, ..)| seen.insert(id.clone()))
        .map(|(id, date, title, json)| {
            let json: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
            let line = Line::new(resource_type, &id, date.as_deref(), title.as_deref(), &json);
            (line, json)
        })
        .collect())
}

/// Hides a status every line of a list shares ("active" in the active medications).
fn quiet_status(line: &mut Line, obvious: &[&str]) {
    if line.status.as_deref().is_some_and(|s| obvious.contains(&s)) {
        line.status = None;
    }
}

/// "High risk; reaction: Hives" from an AllergyIntolerance.
fn allergy_detail(allergy: &Value) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(criticality) = allergy.get("criticality").and_then(Value::as_str) {
        match criticality {
            "high" => parts.push("high risk".to_string()),
            "low" => parts.push("low risk".to_string()),
            _ => {}
        }
    }
    let reactions: Vec<String> = allergy
        .get("reaction")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|r| {
            r.get("manifestation")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(read::concept)
        .collect();
    if !reactions.is_empty() {
        parts.push(format!("reaction: {}", reactions.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The demographic facts of one Patient resource as (label, value), in display order.
pub fn patient_facts(patient: &Value, today: Date) -> Vec<(String, String)> {
    let mut facts: Vec<(String, String)> = Vec::new();
    let mut add = |label: &str, value: String| {
        if !value.trim().is_empty() {
            facts.push((label.to_string(), value));
        }
    };
    for name in read::list(patient, "name") {
        if name.get("use").and_then(Value::as_str) == Some("old") {
            continue;
        }
        if let Some(name) = person_name(name) {
            add("Name", name);
        }
    }
    if let Some(birth) = patient.get("birthDate").and_then(Value::as_str) {
        let shown = read::date(birth);
        add(
            "Birth date",
            match age(birth, today) {
                Some(years) if patient.get("deceasedDateTime").is_none() => {
                    format!("{shown} (age {years})")
                }
                _ => shown,
            },
        );
    }
    if let Some(died) = patient.get("deceasedDateTime").and_then(Value::as_str) {
        add("Died", read::date(died));
    }
    if let Some(gender) = patient.get("gender").and_then(Value::as_str) {
        add("Gender", capitalise(gender));
    }
    for address in read::list(patient, "address") {
        if let Some(text) = address_text(address) {
            add("Address", text);
        }
    }
    for telecom in read::list(patient, "telecom") {
        let Some(value) = telecom.get("value").and_then(Value::as_str) else {
            continue;
        };
        let label = match telecom.get("system").and_then(Value::as_str) {
            Some("phone") | Some("sms") => "Phone",
            Some("email") => "Email",
            _ => continue,
        };
        let value = match telecom.get("use").and_then(Value::as_str) {
            Some(use_) => format!("{value} ({use_})"),
            None => value.to_string(),
        };
        add(label, value);
    }
    for communication in read::list(patient, "communication") {
        if let Some(language) = communication.get("language").and_then(read::concept) {
            add("Language", language);
        }
    }
    let identifiers = read::list(patient, "identifier");
    for identifier in identifiers {
        let Some(value) = identifier.get("value").and_then(Value::as_str) else {
            continue;
        };
        let type_ = identifier.get("type");
        // An untyped identifier repeating a typed one (Synthea's MRN, say) adds nothing.
        let repeated = identifiers.iter().any(|other| {
            other.get("type").is_some() && other.get("value").and_then(Value::as_str) == Some(value)
        });
        if type_.is_none() && repeated {
            continue;
        }
        let code = type_
            .and_then(|t| t.pointer("/coding/0/code"))
            .and_then(Value::as_str);
        let system = identifier
            .get("system")
            .and_then(Value::as_str)
            .unwrap_or("");
        let label = type_
            .and_then(read::concept)
            .unwrap_or_else(|| "Record number".to_string());
        // A social security number is shown only by its last digits: the page is often on a
        // shared screen, and the full number is still in Explore for whoever needs it.
        let value = if code == Some("SS") || system.ends_with("us-ssn") {
            mask(value)
        } else {
            value.to_string()
        };
        add(&label, value);
    }
    facts
}

/// "Paris Casper": given names then family name, or the name's text.
fn person_name(name: &Value) -> Option<String> {
    if let Some(text) = name.get("text").and_then(Value::as_str) {
        return Some(text.to_string());
    }
    let mut parts: Vec<&str> = read::list(name, "given")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if let Some(family) = name.get("family").and_then(Value::as_str) {
        parts.push(family);
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// "204 Stehr Row, Adams, Massachusetts 01220, US".
fn address_text(address: &Value) -> Option<String> {
    if let Some(text) = address.get("text").and_then(Value::as_str) {
        return Some(text.to_string());
    }
    let field = |name: &str| address.get(name).and_then(Value::as_str);
    let mut parts: Vec<String> = read::list(address, "line")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    parts.extend(field("city").map(str::to_owned));
    let region = [field("state"), field("postalCode")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    if !region.is_empty() {
        parts.push(region);
    }
    parts.extend(field("country").map(str::to_owned));
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// "•••-••-3544": everything but the last four characters hidden.
fn mask(value: &str) -> String {
    let keep = value.chars().count().saturating_sub(4);
    value
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i < keep && c.is_ascii_alphanumeric() {
                '•'
            } else {
                c
            }
        })
        .collect()
}

/// Whole years from an ISO birth date to `today`, or None for a partial or future date.
pub fn age(birth: &str, today: Date) -> Option<i32> {
    let mut parts = birth.get(..10)?.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let mut years = today.year() - year;
    if (u8::from(today.month()), today.day()) < (month, day) {
        years -= 1;
    }
    (years >= 0).then_some(years)
}

/// Groups facts by label (first-seen order) and merges equal values, keeping every source that
/// gave each. Values compare ignoring case and spacing, as sources differ in both.
pub fn merge(facts: Vec<(String, String, String)>) -> Vec<Field> {
    fn key(value: &str) -> String {
        value
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    }
    let mut fields: Vec<Field> = Vec::new();
    for (label, value, source) in facts {
        let index = match fields.iter().position(|f| f.label == label) {
            Some(i) => i,
            None => {
                fields.push(Field {
                    label,
                    values: Vec::new(),
                });
                fields.len() - 1
            }
        };
        let values = &mut fields[index].values;
        match values.iter_mut().find(|v| key(&v.value) == key(&value)) {
            Some(existing) => {
                if !existing.sources.contains(&source) {
                    existing.sources.push(source);
                }
            }
            None => values.push(Sourced {
                value,
                sources: vec![source],
            }),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::date;

    #[test]
    fn age_counts_whole_years() {
        assert_eq!(age("1972-02-24", date!(2026 - 02 - 23)), Some(53));
        assert_eq!(age("1972-02-24", date!(2026 - 02 - 24)), Some(54));
        assert_eq!(age("1972", date!(2026 - 02 - 24)), None);
        assert_eq!(age("2030-01-01", date!(2026 - 02 - 24)), None);
    }

    #[test]
    fn equal_values_merge_and_different_ones_keep_their_source() {
        let facts = vec![
            ("Name".into(), "Paris Casper".into(), "Clinic".into()),
            ("Phone".into(), "555".into(), "Clinic".into()),
            ("Name".into(), "paris  casper".into(), "Hospital".into()),
            ("Phone".into(), "556".into(), "Hospital".into()),
        ];
        let fields = merge(facts);
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0].label, "Name");
        assert_eq!(
            fields[0].values,
            vec![Sourced {
                value: "Paris Casper".into(),
                sources: vec!["Clinic".into(), "Hospital".into()]
            }]
        );
        assert_eq!(fields[1].values.len(), 2);
        assert_eq!(fields[1].values[1].sources, vec!["Hospital".to_string()]);
    }

    #[test]
    fn a_patient_reads_as_facts() {
        let patient = json!({
            "resourceType": "Patient",
            "name": [{"use": "official", "given": ["Paris"], "family": "Casper", "prefix": ["Mr."]},
                     {"use": "old", "given": ["Old"], "family": "Name"}],
            "birthDate": "1972-02-24",
            "gender": "male",
            "address": [{"line": ["204 Stehr Row"], "city": "Adams", "state": "Massachusetts",
                         "postalCode": "01220", "country": "US"}],
            "telecom": [{"system": "phone", "value": "555-355-3506", "use": "home"},
                        {"system": "email", "value": "p@example.org"}],
            "communication": [{"language": {"text": "English"}}],
            "identifier": [
                {"system": "https://example.org", "value": "826f"},
                {"type": {"text": "Medical Record Number", "coding": [{"code": "MR"}]}, "value": "826f"},
                {"type": {"coding": [{"code": "SS", "display": "Social Security Number"}]},
                 "system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-37-3544"}
            ]
        });
        let facts = patient_facts(&patient, date!(2026 - 11 - 25));
        let get = |label: &str| -> Vec<&str> {
            facts
                .iter()
                .filter(|(l, _)| l == label)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(get("Name"), ["Paris Casper"]);
        assert_eq!(get("Birth date"), ["24 Feb 1972 (age 54)"]);
        assert_eq!(get("Gender"), ["Male"]);
        assert_eq!(
            get("Address"),
            ["204 Stehr Row, Adams, Massachusetts 01220, US"]
        );
        assert_eq!(get("Phone"), ["555-355-3506 (home)"]);
        assert_eq!(get("Email"), ["p@example.org"]);
        assert_eq!(get("Language"), ["English"]);
        assert_eq!(get("Medical Record Number"), ["826f"]);
        assert!(get("Record number").is_empty(), "the MRN is not repeated");
        assert_eq!(get("Social Security Number"), ["•••-••-3544"]);
    }

    #[test]
    fn allergies_say_how_serious() {
        let allergy = json!({"criticality": "high",
            "reaction": [{"manifestation": [{"text": "Hives"}, {"text": "Wheezing"}]}]});
        assert_eq!(
            allergy_detail(&allergy).as_deref(),
            Some("high risk; reaction: Hives, Wheezing")
        );
        assert_eq!(allergy_detail(&json!({})), None);
    }
}
