//! The read model: the one place that turns a stored resource into what a person reads, and that
//! decides whether a condition, medication, allergy or vaccination is current. Every page, the
//! "Summary for my doctor" and the IPS document call these, so two of them never disagree about
//! one record.
//!
//! - Names: [`name`] drops SNOMED's semantic tags ("(disorder)") everywhere.
//! - Dates: [`date`] writes a date with the precision the record has: "2020", "Oct 2020",
//!   "1 Oct 2020".
//! - Values: [`value_text`] writes any `value[x]` (a quantity with its comparator and unit, a
//!   concept, a range, a ratio, a period, a boolean) or the components; numbers keep the digits
//!   they were stored with ("70.80"), except binary-float artefacts ("97.30000000000001"),
//!   which are rounded.
//! - Statuses: [`status`] is the record's status as a word ("on hold").
//! - Current: [`is_current`] and the predicates it dispatches to, each naming the FHIR statuses
//!   it accepts. Ingest keeps its answer as a `current` token, so lists can ask the index.
//! - Lines: [`Line`] is a record as one line of a list (history, Profile, the dashboard, the
//!   summary), built from these printers.

use serde::Serialize;
use serde_json::Value;

use super::units;

/// A field holding an array, or nothing: FHIR leaves out an empty list.
pub fn list<'a>(value: &'a Value, field: &str) -> &'a [Value] {
    value
        .get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Drops SNOMED's semantic tag: "Viral sinusitis (disorder)" reads "Viral sinusitis".
pub fn name(text: &str) -> String {
    const TAGS: &[&str] = &[
        "(disorder)",
        "(finding)",
        "(procedure)",
        "(situation)",
        "(observable entity)",
        "(regime/therapy)",
        "(morphologic abnormality)",
        "(event)",
        "(qualifier value)",
        "(record artifact)",
        "(substance)",
        "(product)",
        "(body structure)",
    ];
    let trimmed = text.trim();
    for tag in TAGS {
        if let Some(rest) = trimmed.strip_suffix(tag) {
            let rest = rest.trim_end();
            if !rest.is_empty() {
                return rest.to_string();
            }
        }
    }
    trimmed.to_string()
}

/// A CodeableConcept as a name: its text, else its first coding's display, tags dropped.
pub fn concept(concept: &Value) -> Option<String> {
    super::concept_text(concept).map(|text| name(&text))
}

/// An ISO 8601 date or date-time as people write it, with the precision it has: "1 Oct 2020",
/// "Oct 2020", "2020". Anything unparseable is shown as it is.
pub fn date(iso: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let day_part = iso.get(..10.min(iso.len())).unwrap_or(iso);
    let mut parts = day_part.split('-');
    let year = parts
        .next()
        .filter(|y| y.len() == 4 && y.parse::<u32>().is_ok());
    let month = parts
        .next()
        .and_then(|m| m.parse::<usize>().ok())
        .filter(|m| (1..=12).contains(m));
    let day = parts
        .next()
        .and_then(|d| d.parse::<u32>().ok())
        .filter(|d| (1..=31).contains(d));
    match (year, month, day) {
        (Some(y), Some(m), Some(d)) => format!("{d} {} {y}", MONTHS[m - 1]),
        (Some(y), Some(m), None) if iso.len() == 7 => format!("{} {y}", MONTHS[m - 1]),
        (Some(y), None, None) if iso.len() == 4 => y.to_string(),
        _ => iso.to_string(),
    }
}

/// The day of an ISO 8601 date or date-time, as `<time datetime>` wants it: "2020-10-01" of
/// "2020-10-01T08:30:00+02:00"; a partial date ("2020-10") stays as it is.
pub fn iso_date(iso: &str) -> String {
    iso.chars().take(10).collect()
}

/// More decimals than any lab reports: a number written with more is a binary-float artefact.
const MAX_WRITTEN_DECIMALS: usize = 6;

/// A stored number as written ("70.80" stays "70.80"), unless it carries a float artefact
/// ("97.30000000000001"), which is rounded to four significant digits.
pub fn number(value: &Value) -> Option<String> {
    let Value::Number(n) = value else {
        return value.as_str().map(str::to_owned);
    };
    let text = n.to_string();
    let decimals = text.split_once('.').map_or(0, |(_, fraction)| {
        fraction
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .len()
    });
    if decimals > MAX_WRITTEN_DECIMALS || text.contains(['e', 'E']) {
        return n.as_f64().map(units::format_number);
    }
    Some(text)
}

/// A Quantity: "< 5 mg/L", "120 mmHg", "5.4 mmol/L". The unit as people write it.
pub fn quantity(quantity: &Value) -> Option<String> {
    let number = number(quantity.get("value")?)?;
    let mut out = String::new();
    if let Some(comparator) = quantity.get("comparator").and_then(Value::as_str) {
        out.push_str(comparator);
        out.push(' ');
    }
    out.push_str(&number);
    let unit = quantity
        .get("unit")
        .or_else(|| quantity.get("code"))
        .and_then(Value::as_str)
        .map(units::pretty)
        .unwrap_or_default();
    if !unit.is_empty() {
        out.push(' ');
        out.push_str(&unit);
    }
    Some(out)
}

/// A record's value as a person reads it: its `value[x]`, else its components
/// ("Systolic blood pressure: 120 mmHg, Diastolic blood pressure: 80 mmHg").
pub fn value_text(resource: &Value) -> Option<String> {
    if let Some(text) = element_value(resource) {
        return Some(text);
    }
    let parts: Vec<String> = list(resource, "component")
        .iter()
        .filter_map(|component| {
            let value = element_value(component)?;
            Some(match component.get("code").and_then(self::concept) {
                Some(label) => format!("{}: {value}", short_label(&label)),
                None => value,
            })
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// One element's own `value[x]` (a resource's, or one component's), without its components.
pub fn element_value(element: &Value) -> Option<String> {
    if let Some(q) = element.get("valueQuantity") {
        return quantity(q);
    }
    if let Some(c) = element.get("valueCodeableConcept") {
        return concept(c);
    }
    if let Some(range) = element.get("valueRange") {
        let low = range.get("low").and_then(quantity);
        let high = range.get("high").and_then(quantity);
        return match (low, high) {
            (Some(low), Some(high)) => Some(format!("{low} to {high}")),
            (Some(low), None) => Some(format!("at least {low}")),
            (None, Some(high)) => Some(format!("at most {high}")),
            (None, None) => None,
        };
    }
    if let Some(ratio) = element.get("valueRatio") {
        let numerator = ratio.get("numerator").and_then(quantity)?;
        return Some(match ratio.get("denominator").and_then(quantity) {
            Some(denominator) => format!("{numerator} / {denominator}"),
            None => numerator,
        });
    }
    if let Some(period) = element.get("valuePeriod") {
        let start = period.get("start").and_then(Value::as_str).map(date);
        let end = period.get("end").and_then(Value::as_str).map(date);
        return match (start, end) {
            (Some(start), Some(end)) => Some(format!("{start} to {end}")),
            (Some(start), None) => Some(format!("from {start}")),
            (None, Some(end)) => Some(format!("until {end}")),
            (None, None) => None,
        };
    }
    if let Some(flag) = element.get("valueBoolean").and_then(Value::as_bool) {
        return Some(if flag { "Yes" } else { "No" }.into());
    }
    if let Some(when) = element.get("valueDateTime").and_then(Value::as_str) {
        return Some(date(when));
    }
    if let Some(integer) = element.get("valueInteger") {
        return number(integer);
    }
    if let Some(text) = element.get("valueString").and_then(Value::as_str) {
        return Some(bound(text).unwrap_or_else(|| text.trim().to_owned()));
    }
    element
        .get("valueTime")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// A bound written as text ("<5", ">= 10") as the quantities print theirs: "< 5", ">= 10".
fn bound(text: &str) -> Option<String> {
    let text = text.trim();
    let (comparator, rest) = ["<=", ">=", "<", ">"]
        .iter()
        .find_map(|c| text.strip_prefix(c).map(|rest| (*c, rest.trim())))?;
    rest.parse::<f64>()
        .is_ok_and(f64::is_finite)
        .then(|| format!("{comparator} {rest}"))
}

/// "Systolic Blood Pressure" reads fine; LOINC's long names ("... by Automated count") do not.
fn short_label(label: &str) -> &str {
    label.split(" [").next().unwrap_or(label)
}

/// A status CodeableConcept (clinicalStatus, verificationStatus) as a word: its text, display,
/// or code.
pub fn status_word(concept: &Value) -> Option<String> {
    super::concept_text(concept).or_else(|| {
        concept
            .get("coding")?
            .as_array()?
            .iter()
            .find_map(|c| c.get("code").and_then(Value::as_str))
            .map(words)
    })
}

/// A record's status as a word: its `status` ("on hold"), else its `clinicalStatus`.
pub fn status(resource: &Value) -> Option<String> {
    resource
        .get("status")
        .and_then(Value::as_str)
        .map(words)
        .or_else(|| resource.get("clinicalStatus").and_then(status_word))
}

/// An encounter's `class` (a Coding) in words: its display, else HL7's terse v3 ActCode as
/// people say it ("EMER" reads "Emergency").
pub fn encounter_class(class: &Value) -> Option<String> {
    if let Some(display) = class.get("display").and_then(Value::as_str) {
        return Some(display.to_string());
    }
    let code = class.get("code").and_then(Value::as_str)?;
    let label = match code {
        "AMB" => "Outpatient",
        "EMER" => "Emergency",
        "IMP" => "Hospital stay",
        "ACUTE" => "Hospital stay (acute)",
        "NONAC" => "Hospital stay (non-acute)",
        "OBSENC" => "Observation stay",
        "PRENC" => "Pre-admission",
        "SS" => "Short stay",
        "VR" => "Virtual visit",
        "HH" => "Home health",
        "FLD" => "Field visit",
        other => other,
    };
    Some(label.to_string())
}

/// The name an organisation, place or person gives itself (`name`: a string, or HumanNames:
/// the first one's text, else its given names then family name). Their stored title can be
/// their type ("Healthcare Provider"), which says nothing about who or where they are.
pub fn own_name(resource: &Value) -> Option<String> {
    match resource.get("name")? {
        Value::String(name) => Some(name.clone()),
        Value::Array(names) => names.iter().find_map(|name| {
            if let Some(text) = name.get("text").and_then(Value::as_str) {
                return Some(text.to_string());
            }
            let mut parts: Vec<&str> = name
                .get("given")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            parts.extend(name.get("family").and_then(Value::as_str));
            (!parts.is_empty()).then(|| parts.join(" "))
        }),
        _ => None,
    }
}

/// A FHIR code as words: "on-hold" → "on hold", "entered-in-error" → "entered in error".
fn words(code: &str) -> String {
    code.replace('-', " ")
}

/// The first code of a CodeableConcept field (`clinicalStatus`, `verificationStatus`).
fn code_of<'a>(resource: &'a Value, field: &str) -> Option<&'a str> {
    resource
        .get(field)?
        .get("coding")?
        .as_array()?
        .iter()
        .find_map(|c| c.get("code")?.as_str())
}

/// Whether the record's author withdrew it: entered in error, or (a diagnosis, an allergy)
/// refuted.
fn withdrawn(resource: &Value) -> bool {
    matches!(
        code_of(resource, "verificationStatus"),
        Some("entered-in-error" | "refuted")
    ) || resource.get("status").and_then(Value::as_str) == Some("entered-in-error")
}

/// Whether a record belongs on the current lists (Profile, the dashboard, the summary, the IPS):
/// see the predicate for each type. Every other type is never current.
pub fn is_current(resource: &Value) -> bool {
    match resource.get("resourceType").and_then(Value::as_str) {
        Some("Condition") => is_current_condition(resource),
        Some("MedicationRequest" | "MedicationStatement") => is_current_medication(resource),
        Some("AllergyIntolerance") => is_current_allergy(resource),
        Some("Immunization") => is_current_immunization(resource),
        _ => false,
    }
}

/// A problem still going on: `clinicalStatus` active, recurrence or relapse, or none at all (FHIR
/// asks for one, but a problem list entry without it is taken as active, as IPS does); no
/// `abatement[x]`; not entered in error or refuted.
pub fn is_current_condition(condition: &Value) -> bool {
    let abated = condition
        .as_object()
        .is_some_and(|o| o.keys().any(|k| k.starts_with("abatement")));
    matches!(
        code_of(condition, "clinicalStatus"),
        None | Some("active" | "recurrence" | "relapse")
    ) && !abated
        && !withdrawn(condition)
}

/// A medicine being taken: `status` active, on-hold (paused, still prescribed) or intended
/// (about to start; MedicationStatement). Completed, stopped, cancelled, draft, unknown,
/// not-taken and entered-in-error are not.
pub fn is_current_medication(medication: &Value) -> bool {
    matches!(
        medication.get("status").and_then(Value::as_str),
        Some("active" | "on-hold" | "intended")
    )
}

/// An allergy that still holds: `clinicalStatus` active or none; not resolved or inactive, not
/// refuted or entered in error.
pub fn is_current_allergy(allergy: &Value) -> bool {
    matches!(code_of(allergy, "clinicalStatus"), None | Some("active")) && !withdrawn(allergy)
}

/// A dose that was given: `status` completed, or none. Not-done and entered-in-error are not.
pub fn is_current_immunization(immunization: &Value) -> bool {
    matches!(
        immunization.get("status").and_then(Value::as_str),
        None | Some("completed")
    )
}

/// A record as one line of a list (the history, Profile, the dashboard, the summary): what it
/// is, when, and its value or status. Lists may put their own words in `value` (a medicine's
/// dosage, "3 doses since 2019") or drop a `status` every line shares.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub resource_type: String,
    pub id: String,
    /// The stored title as a name ([`name`]), else the resource type.
    pub title: String,
    /// "1 Oct 2020", for reading ([`date`]).
    pub date: Option<String>,
    /// "2020-10-01", for `<time datetime>` ([`iso_date`]).
    pub iso_date: Option<String>,
    /// [`status`].
    pub status: Option<String>,
    /// [`value_text`], unless the list says something else.
    pub value: Option<String>,
    /// Other records this line stands for ("Type/id"): a vaccine's earlier doses. Lists print
    /// them as `data-ref`s.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<String>,
}

impl Line {
    /// The line of a stored record, from its columns (`sort_date`, `sort_title`) and its JSON.
    pub fn new(
        resource_type: &str,
        id: &str,
        sort_date: Option<&str>,
        sort_title: Option<&str>,
        resource: &Value,
    ) -> Line {
        Line {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            title: sort_title
                .map(name)
                .unwrap_or_else(|| resource_type.to_string()),
            date: sort_date.map(date),
            iso_date: sort_date.map(iso_date),
            status: status(resource),
            value: value_text(resource),
            earlier: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn value(resource: Value) -> String {
        value_text(&resource).unwrap()
    }

    #[test]
    fn values_read_as_people_write_them() {
        let written = |text: &str| -> Value { serde_json::from_str(text).unwrap() };
        assert_eq!(
            value(json!({"valueQuantity": {"value": 5, "comparator": "<", "unit": "mg/L"}})),
            "< 5 mg/L"
        );
        assert_eq!(
            value(written(
                r#"{"valueQuantity": {"value": 70.80, "unit": "kg"}}"#
            )),
            "70.80 kg"
        );
        assert_eq!(
            value(written(
                r#"{"valueQuantity": {"value": 97.30000000000001, "unit": "%"}}"#
            )),
            "97.3 %"
        );
        assert_eq!(
            value(json!({"valueQuantity": {"value": 120, "code": "mm[Hg]"}})),
            "120 mmHg"
        );
        assert_eq!(
            value(json!({"valueQuantity": {"value": 2, "unit": "{score}"}})),
            "2"
        );
        assert_eq!(
            value(
                json!({"valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 128}}})
            ),
            "1 / 128"
        );
        assert_eq!(
            value(
                json!({"valueRange": {"low": {"value": 4, "unit": "mmol/L"}, "high": {"value": 6, "unit": "mmol/L"}}})
            ),
            "4 mmol/L to 6 mmol/L"
        );
        assert_eq!(
            value(json!({"valuePeriod": {"start": "2020-10-01", "end": "2021"}})),
            "1 Oct 2020 to 2021"
        );
        assert_eq!(value(json!({"valueBoolean": false})), "No");
        assert_eq!(value(json!({"valueString": "<5"})), "< 5");
        assert_eq!(value(json!({"valueString": "Negative "})), "Negative");
        assert_eq!(
            value(json!({"valueQuantity": {"value": 4, "unit": "/min"}})),
            "4 /min"
        );
        assert_eq!(
            value(json!({"valueCodeableConcept": {"text": "Never smoker (finding)"}})),
            "Never smoker"
        );
        assert_eq!(
            value(json!({"component": [
                {"code": {"text": "Systolic blood pressure"}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
                {"code": {"text": "Diastolic blood pressure"}, "valueQuantity": {"value": 80, "unit": "mm[Hg]"}}
            ]})),
            "Systolic blood pressure: 120 mmHg, Diastolic blood pressure: 80 mmHg"
        );
        assert_eq!(value_text(&json!({"code": {"text": "x"}})), None);
    }

    #[test]
    fn dates_keep_the_precision_they_have() {
        assert_eq!(date("2020"), "2020");
        assert_eq!(date("2020-10"), "Oct 2020");
        assert_eq!(date("2020-10-01"), "1 Oct 2020");
        assert_eq!(date("2020-10-01T08:30:00+02:00"), "1 Oct 2020");
        assert_eq!(date("sometime"), "sometime");
        assert_eq!(date("2019-13-01"), "2019-13-01");
    }

    #[test]
    fn encounter_classes_and_own_names_are_words() {
        assert_eq!(
            encounter_class(&json!({"code": "EMER"})).as_deref(),
            Some("Emergency")
        );
        assert_eq!(
            encounter_class(&json!({"code": "AMB", "display": "ambulatory"})).as_deref(),
            Some("ambulatory")
        );
        assert_eq!(encounter_class(&json!({})), None);
        assert_eq!(
            own_name(&json!({"name": "Good Hospital"})).as_deref(),
            Some("Good Hospital")
        );
        assert_eq!(
            own_name(&json!({"name": [{"given": ["Ada", "B."], "family": "Who"}]})).as_deref(),
            Some("Ada B. Who")
        );
        assert_eq!(own_name(&json!({"type": "x"})), None);
    }

    #[test]
    fn a_line_reads_the_stored_columns_with_the_printers() {
        let line = Line::new(
            "Observation",
            "o1",
            Some("2020-10-01T08:30:00Z"),
            Some("Body weight (observable entity)"),
            &json!({"status": "final", "valueQuantity": {"value": 70.8, "unit": "kg"}}),
        );
        assert_eq!(line.title, "Body weight");
        assert_eq!(line.date.as_deref(), Some("1 Oct 2020"));
        assert_eq!(line.iso_date.as_deref(), Some("2020-10-01"));
        assert_eq!(line.status.as_deref(), Some("final"));
        assert_eq!(line.value.as_deref(), Some("70.8 kg"));
        let untitled = Line::new("Procedure", "p1", None, None, &Value::Null);
        assert_eq!(untitled.title, "Procedure");
        assert_eq!(untitled.date, None);
    }

    #[test]
    fn statuses_read_as_words() {
        assert_eq!(status(&json!({"status": "on-hold"})).unwrap(), "on hold");
        assert_eq!(
            status(&json!({"clinicalStatus": {"coding": [{"code": "resolved"}]}})).unwrap(),
            "resolved"
        );
        assert_eq!(name("Acute bronchitis (disorder)"), "Acute bronchitis");
        assert_eq!(name("Hep A, adult"), "Hep A, adult");
        assert_eq!(
            name("(disorder)"),
            "(disorder)",
            "a tag alone is all there is"
        );
    }

    #[test]
    fn each_status_of_each_type_is_current_or_not() {
        let condition = |extra: Value| {
            let mut c = json!({"resourceType": "Condition"});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            is_current(&c)
        };
        let clinical = |code: &str| json!({"clinicalStatus": {"coding": [{"code": code}]}});
        assert!(condition(json!({})), "no clinicalStatus is taken as active");
        for code in ["active", "recurrence", "relapse"] {
            assert!(condition(clinical(code)), "{code}");
        }
        for code in ["inactive", "remission", "resolved"] {
            assert!(!condition(clinical(code)), "{code}");
        }
        assert!(
            !condition(json!({"abatementDateTime": "2020-01-01"})),
            "abated"
        );
        assert!(
            !condition(json!({"abatementString": "as a child"})),
            "abated"
        );
        assert!(!condition(
            json!({"verificationStatus": {"coding": [{"code": "entered-in-error"}]}})
        ));
        assert!(!condition(
            json!({"verificationStatus": {"coding": [{"code": "refuted"}]}})
        ));

        for (status, current) in [
            ("active", true),
            ("on-hold", true),
            ("intended", true),
            ("completed", false),
            ("stopped", false),
            ("cancelled", false),
            ("draft", false),
            ("entered-in-error", false),
            ("not-taken", false),
            ("unknown", false),
        ] {
            for kind in ["MedicationRequest", "MedicationStatement"] {
                let medication = json!({"resourceType": kind, "status": status});
                assert_eq!(is_current(&medication), current, "{kind} {status}");
            }
        }

        let allergy = |extra: Value| {
            let mut a = json!({"resourceType": "AllergyIntolerance"});
            a.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            is_current(&a)
        };
        assert!(allergy(json!({})));
        assert!(allergy(clinical("active")));
        assert!(!allergy(clinical("resolved")));
        assert!(!allergy(clinical("inactive")));
        assert!(!allergy(
            json!({"verificationStatus": {"coding": [{"code": "refuted"}]}})
        ));
        assert!(!allergy(
            json!({"verificationStatus": {"coding": [{"code": "entered-in-error"}]}})
        ));

        for (status, current) in [
            (Some("completed"), true),
            (None, true),
            (Some("not-done"), false),
            (Some("entered-in-error"), false),
        ] {
            let mut dose = json!({"resourceType": "Immunization"});
            if let Some(status) = status {
                dose["status"] = json!(status);
            }
            assert_eq!(is_current(&dose), current, "{status:?}");
        }
        assert!(!is_current(
            &json!({"resourceType": "Observation", "status": "final"})
        ));
    }
}
