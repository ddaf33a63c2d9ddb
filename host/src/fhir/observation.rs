//! One FHIR Observation read into a plain struct the pages can sort, group, chart and print:
//! what was measured (a stable key and a name), when, the value (a number with its unit, or text
//! such as "Negative"), the reference range and a High/Low/Abnormal/Normal flag; and whether it
//! is a lab result ([`is_lab`]).
//!
//! Records come from many systems, so every field is optional and read leniently: a value of
//! `"<5"` in `valueString` is still the number 5 with a comparator, a missing interpretation is
//! computed from the range, and a blood pressure's components become observations of their own.
//!
//! It lives in `fhir` rather than with the pages because ingest reads observations too: what
//! each one measured, and whether it is a lab result, is kept beside it in `observation_keys`
//! (see [`super::index`]), so the Labs overview and the dashboard need not read every record.
//! The pages reach it under its old name, `observations` in the record module.

use serde::Serialize;
use serde_json::Value;

use super::concept_text;
use super::units;

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

/// An observation as the pages use it. Components (systolic/diastolic) come back separately from
/// [`read_all`], carrying their parent's date, categories and id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    /// The resource id (shared by an observation's components).
    pub id: String,
    /// What was measured, stable across labs: the LOINC code when there is one, else the
    /// lowercased name in URL-safe form (see [`name_key`]). Always usable in a URL path.
    pub key: String,
    /// The name to show, e.g. "Total Cholesterol".
    pub name: String,
    /// When it was measured (ISO 8601 text as in the record).
    pub date: Option<String>,
    /// The number, when the value is numeric.
    pub value: Option<f64>,
    /// "<", "<=", ">=" or ">" when the value is a bound rather than exact ("<5").
    pub comparator: Option<String>,
    /// The unit as written for people ("mg/dL").
    pub unit: Option<String>,
    /// The UCUM code of the unit when the record gives one; preferred for unit identity.
    pub unit_code: Option<String>,
    /// A non-numeric value: a string, a coded answer, a boolean.
    pub text: Option<String>,
    /// The value as the read model prints it ([`crate::fhir::read::element_value`]), so Labs,
    /// the dashboard and the summary say what Explore and History say.
    pub shown: Option<String>,
    pub range: Option<Range>,
    pub flag: Option<Flag>,
    /// Category codes ("laboratory", "vital-signs"...).
    pub categories: Vec<String>,
}

/// A reference range; either bound may be missing ("< 200"), or only text given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Range {
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// The unit of the bounds when the record states it (UCUM code preferred).
    pub unit: Option<String>,
    pub text: Option<String>,
}

/// How a result compares with normal. Serialised as the HL7 letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Flag {
    #[serde(rename = "H")]
    High,
    #[serde(rename = "L")]
    Low,
    #[serde(rename = "A")]
    Abnormal,
    #[serde(rename = "N")]
    Normal,
}

impl Flag {
    /// The word shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Flag::High => "High",
            Flag::Low => "Low",
            Flag::Abnormal => "Abnormal",
            Flag::Normal => "Normal",
        }
    }

    /// From an HL7 v3 ObservationInterpretation code (or its v2 equivalent).
    fn from_code(code: &str) -> Option<Flag> {
        Some(match code {
            "H" | "HH" | "HU" | ">" => Flag::High,
            "L" | "LL" | "LU" | "<" => Flag::Low,
            "A" | "AA" | "POS" | "DET" | "R" => Flag::Abnormal,
            "N" | "NEG" | "ND" | "S" => Flag::Normal,
            _ => return None,
        })
    }
}

impl Range {
    /// "70–100", "< 200", "> 40", or the range's text.
    pub fn display(&self) -> Option<String> {
        Band::new(self.low, self.high)
            .map(|band| band.label())
            .or_else(|| self.text.clone())
    }

    /// Where a value falls against the bounds, if either bound is known.
    pub fn flag_for(&self, value: f64) -> Option<Flag> {
        if self.low.is_none() && self.high.is_none() {
            return None;
        }
        Some(match (self.low, self.high) {
            (Some(l), _) if value < l => Flag::Low,
            (_, Some(h)) if value > h => Flag::High,
            _ => Flag::Normal,
        })
    }
}

/// A reference range's numeric bounds, checked: one bound may be open, since many lab ranges are
/// only "< 200" (total cholesterol) or "> 40" (HDL). [`Range::display`] prints it, and the
/// pages' charts (which re-export it) shade it in the chart's unit: kept beside [`Range`] so
/// the range's text and the chart's band never disagree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    low: Option<f64>,
    high: Option<f64>,
}

impl Band {
    /// A band from the bounds that are numbers; none without any, or when they are reversed.
    pub fn new(low: Option<f64>, high: Option<f64>) -> Option<Band> {
        let (low, high) = (
            low.filter(|l| l.is_finite()),
            high.filter(|h| h.is_finite()),
        );
        match (low, high) {
            (None, None) => None,
            (Some(l), Some(h)) if l > h => None,
            _ => Some(Band { low, high }),
        }
    }

    /// The lower bound, when there is one (finite).
    pub fn low(&self) -> Option<f64> {
        self.low
    }

    /// The upper bound, when there is one (finite, not below the lower).
    pub fn high(&self) -> Option<f64> {
        self.high
    }

    pub fn contains(&self, value: f64) -> bool {
        self.low.is_none_or(|l| value >= l) && self.high.is_none_or(|h| value <= h)
    }

    /// "70–99", "< 200" or "> 40", as lab reports write them.
    pub fn label(&self) -> String {
        match (self.low, self.high) {
            (Some(l), Some(h)) => {
                format!("{}–{}", units::format_number(l), units::format_number(h))
            }
            (None, Some(h)) => format!("< {}", units::format_number(h)),
            (Some(l), _) => format!("> {}", units::format_number(l)),
            (None, None) => String::new(),
        }
    }
}

impl Observation {
    /// The value as people read it: "173.9 mg/dL", "< 5 mg/L", "Negative".
    pub fn value_display(&self) -> Option<String> {
        self.shown.clone()
    }

    /// The unit that identifies what the number means: the UCUM code when given.
    pub fn unit_id(&self) -> Option<&str> {
        self.unit_code.as_deref().or(self.unit.as_deref())
    }

    pub fn has_category(&self, code: &str) -> bool {
        self.categories.iter().any(|c| c == code)
    }
}

/// LOINC codes of vital signs and scores, kept out of Labs when a record has no category.
const NOT_LABS: &[&str] = &[
    "8302-2", "8306-3", "29463-7", "39156-5", "55284-4", "85354-9", "8480-6", "8462-4", "8867-4",
    "9279-1", "8310-5", "8331-1", "2708-6", "59408-5", "72514-3", "8287-5", "9843-4", "77606-2",
    "59576-9", "8289-1",
];

/// Categories that are never lab tests, however numeric.
const OTHER_CATEGORIES: &[&str] = &[
    "vital-signs",
    "vital-sign",
    "social-history",
    "survey",
    "exam",
    "imaging",
    "procedure",
    "therapy",
    "activity",
];

/// Whether an observation belongs on the Labs page. An observation is a lab result when its
/// category says "laboratory". Records from systems that send no category at all still count
/// when they hold a number and are not a known vital sign, so a family's older exports are not
/// silently left out. Ingest keeps the answer in `observation_keys`.
pub fn is_lab(o: &Observation) -> bool {
    if o.has_category("laboratory") || o.has_category("LAB") {
        return true;
    }
    if o.categories
        .iter()
        .any(|c| OTHER_CATEGORIES.contains(&c.as_str()))
    {
        return false;
    }
    o.categories.is_empty() && o.value.is_some() && !NOT_LABS.contains(&o.key.as_str())
}

/// Reads an Observation resource. `None` when it is not an Observation or names nothing that
/// was measured. A blood pressure without a value of its own still comes back (its numbers are in
/// [`read_all`]'s components).
pub fn read(resource: &Value) -> Option<Observation> {
    if resource.get("resourceType").and_then(Value::as_str) != Some("Observation") {
        return None;
    }
    let id = resource.get("id").and_then(Value::as_str)?.to_owned();
    let date = [
        "/effectiveDateTime",
        "/effectivePeriod/start",
        "/effectiveInstant",
        "/issued",
    ]
    .iter()
    .find_map(|p| resource.pointer(p).and_then(Value::as_str))
    .map(str::to_owned);
    let categories = categories(resource);
    let ranges = resource.get("referenceRange");
    read_part(resource, id, date, categories, ranges)
}

/// The observation and, for panels like blood pressure, each component as an observation of
/// its own (same id, date and categories; its own code, value and range).
pub fn read_all(resource: &Value) -> Vec<Observation> {
    let Some(parent) = read(resource) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(components) = resource.get("component").and_then(Value::as_array) {
        for component in components {
            // A component without its own range shares the parent's, as FHIR intends.
            let ranges = component
                .get("referenceRange")
                .or_else(|| resource.get("referenceRange"));
            if let Some(part) = read_part(
                component,
                parent.id.clone(),
                parent.date.clone(),
                parent.categories.clone(),
                ranges,
            ) {
                out.push(part);
            }
        }
    }
    out.insert(0, parent);
    out
}

/// The shared reading of an Observation or one of its components.
fn read_part(
    part: &Value,
    id: String,
    date: Option<String>,
    categories: Vec<String>,
    ranges: Option<&Value>,
) -> Option<Observation> {
    let code = part.get("code")?;
    let name = concept_text(code)
        .map(|n| clean_name(&n))
        .filter(|n| !n.is_empty())?;
    let key = loinc_code(code).unwrap_or_else(|| name_key(&name));
    let mut obs = Observation {
        id,
        key,
        name,
        date,
        value: None,
        comparator: None,
        unit: None,
        unit_code: None,
        text: None,
        shown: super::read::element_value(part),
        range: ranges.and_then(first_range),
        flag: None,
        categories,
    };
    read_value(part, &mut obs);
    obs.flag = interpretation(part).or_else(|| {
        // Only an exact number can be compared with the range: "<5" against 3–10 is unknown.
        let value = obs.value.filter(|_| obs.comparator.is_none())?;
        let range = obs.range.as_ref()?;
        let same_unit = match (&range.unit, obs.unit_id()) {
            (Some(r), Some(v)) => units::same_unit(r, v),
            _ => true,
        };
        same_unit.then(|| range.flag_for(value)).flatten()
    });
    Some(obs)
}

fn read_value(part: &Value, obs: &mut Observation) {
    if let Some(q) = part.get("valueQuantity") {
        obs.value = q.get("value").and_then(Value::as_f64);
        obs.comparator = q
            .get("comparator")
            .and_then(Value::as_str)
            .map(str::to_owned);
        obs.unit = q.get("unit").and_then(Value::as_str).map(str::to_owned);
        let system = q.get("system").and_then(Value::as_str);
        // A code from another system ("mg/dl" in a local table) is still the best unit identity
        // we have, but a UCUM code is the one two labs will agree on.
        obs.unit_code = q
            .get("code")
            .and_then(Value::as_str)
            .filter(|_| system.is_none_or(|s| s == UCUM))
            .map(str::to_owned);
        if obs.unit.is_none() {
            obs.unit = q.get("code").and_then(Value::as_str).map(str::to_owned);
        }
    } else if let Some(n) = part.get("valueInteger").and_then(Value::as_f64) {
        obs.value = Some(n);
    } else if let Some(s) = part.get("valueString").and_then(Value::as_str) {
        match parse_bound(s) {
            Some((comparator, number)) => {
                obs.comparator = comparator;
                obs.value = Some(number);
            }
            None => obs.text = Some(s.trim().to_owned()),
        }
    } else if let Some(c) = part.get("valueCodeableConcept") {
        obs.text = concept_text(c);
    } else if let Some(b) = part.get("valueBoolean").and_then(Value::as_bool) {
        obs.text = Some(if b { "Yes" } else { "No" }.to_owned());
    } else if let Some(r) = part.get("valueRange") {
        // A range result ("2–5") is shown as text; it has no single point to chart.
        let low = r.pointer("/low/value").and_then(Value::as_f64);
        let high = r.pointer("/high/value").and_then(Value::as_f64);
        obs.text = Range {
            low,
            high,
            unit: None,
            text: None,
        }
        .display();
    } else if let Some(s) = part.get("valueDateTime").and_then(Value::as_str) {
        obs.text = Some(s.to_owned());
    }
}

/// "<5", "< 5", ">=10", "7.2" → (comparator, number). Anything else is text.
fn parse_bound(text: &str) -> Option<(Option<String>, f64)> {
    let text = text.trim();
    let (comparator, rest) = ["<=", ">=", "<", ">"]
        .iter()
        .find_map(|c| {
            text.strip_prefix(c)
                .map(|rest| (Some((*c).to_owned()), rest))
        })
        .unwrap_or((None, text));
    let number: f64 = rest.trim().parse().ok()?;
    number.is_finite().then_some((comparator, number))
}

fn categories(resource: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let list: Vec<&Value> = match resource.get("category") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => vec![],
    };
    for category in list {
        if let Some(codings) = category.get("coding").and_then(Value::as_array) {
            for coding in codings {
                if let Some(code) = coding.get("code").and_then(Value::as_str) {
                    out.push(code.to_owned());
                }
            }
        }
    }
    out
}

fn loinc_code(concept: &Value) -> Option<String> {
    concept
        .get("coding")?
        .as_array()?
        .iter()
        .filter(|c| c.get("system").and_then(Value::as_str) == Some(LOINC))
        .find_map(|c| c.get("code").and_then(Value::as_str))
        .map(str::trim)
        // LOINC codes are digits and a check digit; anything else is not safe to trust as a key.
        .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_digit() || ch == '-'))
        .map(str::to_owned)
}

/// The first range that has numbers, else the first with text. Ranges meant for another age or
/// sex are not told apart: the lab chose this patient's range when it sent the result.
fn first_range(ranges: &Value) -> Option<Range> {
    let ranges = ranges.as_array()?;
    let parsed: Vec<Range> = ranges
        .iter()
        .map(|r| {
            let unit = |side: &str| {
                let q = r.get(side)?;
                q.get("code")
                    .or_else(|| q.get("unit"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            Range {
                low: r.pointer("/low/value").and_then(Value::as_f64),
                high: r.pointer("/high/value").and_then(Value::as_f64),
                unit: unit("low").or_else(|| unit("high")),
                text: r.get("text").and_then(Value::as_str).map(str::to_owned),
            }
        })
        .collect();
    let numeric = parsed
        .iter()
        .position(|r| r.low.is_some() || r.high.is_some());
    let index = numeric.or_else(|| parsed.iter().position(|r| r.text.is_some()))?;
    parsed.into_iter().nth(index)
}

fn interpretation(part: &Value) -> Option<Flag> {
    let list: Vec<&Value> = match part.get("interpretation") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => vec![],
    };
    list.iter()
        .filter_map(|concept| concept.get("coding").and_then(Value::as_array))
        .flatten()
        .find_map(|c| {
            c.get("code")
                .and_then(Value::as_str)
                .and_then(Flag::from_code)
        })
}

/// Drops the zero-width spaces some exporters put after slashes and squeezes whitespace.
fn clean_name(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{feff}'))
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A name as a key: lowercased ASCII letters and digits in dash-separated runs. Other letters
/// become their hex code point, so a name in any script still gets a distinct, URL-safe key
/// (the templates have no URL-encoding filter).
pub fn name_key(name: &str) -> String {
    let mut key = String::new();
    let mut dash = false;
    for c in clean_name(name).chars() {
        if c.is_ascii_alphanumeric() || c.is_alphanumeric() {
            if dash && !key.is_empty() {
                key.push('-');
            }
            dash = false;
            if c.is_ascii() {
                key.push(c.to_ascii_lowercase());
            } else {
                for lower in c.to_lowercase() {
                    key.push_str(&format!("u{:x}", lower as u32));
                }
            }
        } else {
            dash = true;
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Verbatim from the Synthea patient Paris Casper.
    const CHOLESTEROL: &str = r#"{"resourceType": "Observation", "id": "160678a1-9c7e-4044-b637-3ffbd52e5174", "status": "final", "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory", "display": "laboratory"}]}], "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3", "display": "Total Cholesterol"}], "text": "Total Cholesterol"}, "subject": {"reference": "urn:uuid:d421c808-2605-41a4-9aaf-9d786528dc13"}, "encounter": {"reference": "urn:uuid:fc6527ed-e0c9-40ee-b598-fbe902a66233"}, "effectiveDateTime": "2014-09-18T15:22:50+00:00", "issued": "2014-09-18T15:22:50.414+00:00", "valueQuantity": {"value": 173.89263350936992, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}"#;
    const BLOOD_PRESSURE: &str = r#"{"resourceType": "Observation", "id": "ac46b70f-917c-41e7-902e-6373f9697083", "status": "final", "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "vital-signs"}]}], "code": {"coding": [{"system": "http://loinc.org", "code": "55284-4", "display": "Blood Pressure"}], "text": "Blood Pressure"}, "effectiveDateTime": "2012-09-13T15:22:50+00:00", "issued": "2012-09-13T15:22:50.414+00:00", "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic Blood Pressure"}], "text": "Diastolic Blood Pressure"}, "valueQuantity": {"value": 80.682850565953, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}, {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic Blood Pressure"}], "text": "Systolic Blood Pressure"}, "valueQuantity": {"value": 115.16191940905773, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]}"#;
    const SMOKING: &str = r#"{"resourceType": "Observation", "id": "0e55d688-96f4-48bc-91ea-213604a0a717", "status": "final", "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey", "display": "survey"}]}], "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2", "display": "Tobacco smoking status NHIS"}], "text": "Tobacco smoking status NHIS"}, "effectiveDateTime": "2012-09-13T15:22:50+00:00", "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "266919005", "display": "Never smoker"}], "text": "Never smoker"}}"#;
    /// Synthea (Fletcher Hyatt) writes zero-width spaces into some names.
    const ALBUMIN: &str = "{\"resourceType\": \"Observation\", \"id\": \"a1\", \"category\": [{\"coding\": [{\"code\": \"laboratory\"}]}], \"code\": {\"coding\": [{\"system\": \"http://loinc.org\", \"code\": \"1751-7\"}], \"text\": \"Albumin [Mass/\u{200b}volume] in Serum or Plasma\"}, \"effectivePeriod\": {\"start\": \"2020-01-02\"}, \"valueQuantity\": {\"value\": 4.1, \"unit\": \"g/dL\"}}";

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_synthea_lab_result_reads_with_code_date_value_and_unit() {
        let o = read(&parse(CHOLESTEROL)).unwrap();
        assert_eq!(o.key, "2093-3");
        assert_eq!(o.name, "Total Cholesterol");
        assert_eq!(o.date.as_deref(), Some("2014-09-18T15:22:50+00:00"));
        assert_eq!(o.value, Some(173.89263350936992));
        assert_eq!(o.unit.as_deref(), Some("mg/dL"));
        assert_eq!(o.unit_code.as_deref(), Some("mg/dL"));
        assert_eq!(o.categories, vec!["laboratory"]);
        assert!(o.has_category("laboratory"));
        // Synthea sends no range and no interpretation: no flag rather than a guess.
        assert_eq!(o.range, None);
        assert_eq!(o.flag, None);
        assert_eq!(o.value_display().as_deref(), Some("173.9 mg/dL"));
    }

    #[test]
    fn blood_pressure_components_become_observations_of_their_own() {
        let all = read_all(&parse(BLOOD_PRESSURE));
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].key, "55284-4");
        assert_eq!(all[0].value, None);
        let systolic = all.iter().find(|o| o.key == "8480-6").unwrap();
        assert_eq!(systolic.name, "Systolic Blood Pressure");
        assert_eq!(systolic.value_display().as_deref(), Some("115.2 mmHg"));
        assert_eq!(systolic.date.as_deref(), Some("2012-09-13T15:22:50+00:00"));
        assert_eq!(systolic.id, "ac46b70f-917c-41e7-902e-6373f9697083");
        assert!(systolic.has_category("vital-signs"));
    }

    #[test]
    fn coded_answers_are_text() {
        let o = read(&parse(SMOKING)).unwrap();
        assert_eq!(o.value, None);
        assert_eq!(o.text.as_deref(), Some("Never smoker"));
        assert_eq!(o.value_display().as_deref(), Some("Never smoker"));
    }

    #[test]
    fn names_lose_zero_width_spaces_and_period_starts_are_dates() {
        let o = read(&parse(ALBUMIN)).unwrap();
        assert_eq!(o.name, "Albumin [Mass/volume] in Serum or Plasma");
        assert_eq!(o.date.as_deref(), Some("2020-01-02"));
        assert_eq!(o.unit_code, None, "no code given");
        assert_eq!(o.unit_id(), Some("g/dL"));
    }

    #[test]
    fn without_loinc_the_key_is_the_normalised_name() {
        let o = read(&json!({
            "resourceType": "Observation", "id": "x",
            "code": {"coding": [{"system": "urn:local", "code": "GLU"}], "text": "  Glucose, Fasting (Plasma) "},
            "issued": "2021-05-06T07:00:00Z",
            "valueString": "<5"
        }))
        .unwrap();
        assert_eq!(o.key, "glucose-fasting-plasma");
        assert_eq!(o.date.as_deref(), Some("2021-05-06T07:00:00Z"));
        assert_eq!(o.comparator.as_deref(), Some("<"));
        assert_eq!(o.value, Some(5.0));
        assert_eq!(o.value_display().as_deref(), Some("< 5"));
        assert_eq!(name_key("Hämoglobin"), "hue4moglobin");
    }

    #[test]
    fn string_values_that_are_not_numbers_stay_text() {
        let o = read(&json!({
            "resourceType": "Observation", "id": "x", "code": {"text": "Urine protein"},
            "valueString": "Negative",
            "interpretation": [{"coding": [{"code": "N"}]}]
        }))
        .unwrap();
        assert_eq!(o.text.as_deref(), Some("Negative"));
        assert_eq!(o.flag, Some(Flag::Normal));
    }

    #[test]
    fn ranges_and_flags_come_from_the_record_or_are_computed() {
        let with_range = |value: f64, interpretation: Option<&str>| {
            let mut r = json!({
                "resourceType": "Observation", "id": "g",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}], "text": "Glucose"},
                "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
                "referenceRange": [{"low": {"value": 70, "unit": "mg/dL"}, "high": {"value": 99, "unit": "mg/dL"}, "text": "70-99"}]
            });
            if let Some(code) = interpretation {
                r["interpretation"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": code}]}]);
            }
            read(&r).unwrap()
        };
        let o = with_range(120.0, None);
        let range = o.range.clone().unwrap();
        assert_eq!((range.low, range.high), (Some(70.0), Some(99.0)));
        assert_eq!(range.unit.as_deref(), Some("mg/dL"));
        assert_eq!(range.display().as_deref(), Some("70–99"));
        assert_eq!(o.flag, Some(Flag::High));
        assert_eq!(with_range(50.0, None).flag, Some(Flag::Low));
        assert_eq!(with_range(80.0, None).flag, Some(Flag::Normal));
        // The lab's own interpretation wins over arithmetic.
        assert_eq!(with_range(80.0, Some("A")).flag, Some(Flag::Abnormal));
        assert_eq!(with_range(80.0, Some("HH")).flag, Some(Flag::High));
        assert_eq!(Flag::High.label(), "High");
    }

    #[test]
    fn a_range_in_another_unit_is_not_used_to_flag() {
        let o = read(&json!({
            "resourceType": "Observation", "id": "g",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
            "valueQuantity": {"value": 5.0, "unit": "mmol/L", "code": "mmol/L"},
            "referenceRange": [{"high": {"value": 99, "code": "mg/dL"}}]
        }));
        assert_eq!(o, None, "no name at all: nothing to show");
        let o = read(&json!({
            "resourceType": "Observation", "id": "g",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}]},
            "valueQuantity": {"value": 5.0, "unit": "mmol/L", "code": "mmol/L"},
            "referenceRange": [{"high": {"value": 99, "code": "mg/dL"}}]
        }))
        .unwrap();
        assert_eq!(o.flag, None);
        assert_eq!(o.range.unwrap().display().as_deref(), Some("< 99"));
    }

    #[test]
    fn labs_are_chosen_by_category_or_by_being_a_number() {
        let with = |category: Option<&str>, code: &str, value: Value| {
            let mut r = json!({"resourceType": "Observation", "id": "o",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}], "text": "T"}});
            if let Some(c) = category {
                r["category"] = json!([{"coding": [{"code": c}]}]);
            }
            if !value.is_null() {
                r["valueQuantity"] = json!({"value": value, "unit": "x"});
            }
            is_lab(&read(&r).unwrap())
        };
        assert!(with(Some("laboratory"), "2093-3", json!(1)));
        assert!(!with(Some("vital-signs"), "29463-7", json!(70)));
        assert!(!with(Some("survey"), "72166-2", Value::Null));
        assert!(
            with(None, "2093-3", json!(180)),
            "no category: a number is a lab"
        );
        assert!(!with(None, "29463-7", json!(70)), "but not body weight");
        assert!(!with(None, "2093-3", Value::Null));
    }

    #[test]
    fn other_resources_are_not_observations() {
        assert_eq!(read(&json!({"resourceType": "Condition", "id": "c"})), None);
        assert!(read_all(&json!({"resourceType": "Patient"})).is_empty());
    }
}
