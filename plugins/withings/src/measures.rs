//! Body measures (`getmeas` measure groups) as vital-signs Observations.
//!
//! A measure group is what one device (or one manual entry) recorded at one moment: a scale's
//! weight with body composition, a blood pressure monitor's systolic, diastolic and pulse...
//! Each measure becomes its own Observation, except that systolic and diastolic of one group
//! become one blood pressure panel, the shape dashboards and other FHIR sources (Synthea, EHRs)
//! use.

use serde_json::{Value, json};

use crate::fhir::{
    self, BEATS_PER_MINUTE, CELSIUS, Category, Concept, Effective, KG, LOINC, METRE,
    METRES_PER_SECOND, MM_HG, ObservationParts, PERCENT, Unit, WITHINGS_MEASURE_TYPE,
};
use crate::sync::Notes;

/// The measure types `getmeas` is asked for (and mapped below).
pub(crate) const REQUESTED_TYPES: &str = "1,4,5,6,8,9,10,11,12,54,71,73,76,77,88,91";

const DIASTOLIC: i64 = 9;
const SYSTOLIC: i64 = 10;

const SYSTOLIC_LOINC: (&str, &str) = ("8480-6", "Systolic blood pressure");
const DIASTOLIC_LOINC: (&str, &str) = ("8462-4", "Diastolic blood pressure");

/// Withings' `attrib` 1: a device measured it but could not tell which of the people using it
/// stepped on (a shared scale, say). It may be someone else's, so it is left out until the user
/// assigns it to themselves in the Withings app, which changes its attrib and its modification
/// time, so a later incremental sync picks it up.
const ATTRIB_AMBIGUOUS: i64 = 1;

struct MeasureType {
    loinc: Option<(&'static str, &'static str)>,
    text: &'static str,
    unit: Unit,
}

fn measure_type(code: i64) -> Option<MeasureType> {
    let (loinc, text, unit) = match code {
        1 => (Some(("29463-7", "Body weight")), "Body weight", KG),
        4 => (Some(("8302-2", "Body height")), "Body height", METRE),
        5 => (None, "Fat-free mass", KG),
        6 => (
            Some(("41982-0", "Percentage of body fat Measured")),
            "Body fat percentage",
            PERCENT,
        ),
        // LOINC's fat mass codes are for DEXA scans, not for a bioimpedance scale.
        8 => (None, "Body fat mass", KG),
        9 => (Some(DIASTOLIC_LOINC), "Diastolic blood pressure", MM_HG),
        10 => (Some(SYSTOLIC_LOINC), "Systolic blood pressure", MM_HG),
        11 => (
            Some(("8867-4", "Heart rate")),
            "Heart rate",
            BEATS_PER_MINUTE,
        ),
        12 => (Some(("8310-5", "Body temperature")), "Temperature", CELSIUS),
        54 => (
            Some((
                "59408-5",
                "Oxygen saturation in Arterial blood by Pulse oximetry",
            )),
            "Oxygen saturation (SpO2)",
            PERCENT,
        ),
        71 => (
            Some(("8310-5", "Body temperature")),
            "Body temperature",
            CELSIUS,
        ),
        73 => (
            Some(("39106-0", "Temperature of Skin")),
            "Skin temperature",
            CELSIUS,
        ),
        76 => (None, "Muscle mass", KG),
        77 => (None, "Hydration (body water mass)", KG),
        88 => (None, "Bone mass", KG),
        91 => (None, "Pulse wave velocity", METRES_PER_SECOND),
        _ => return None,
    };
    Some(MeasureType { loinc, text, unit })
}

fn concept(code: i64, kind: &MeasureType) -> Concept {
    Concept {
        loinc: kind.loinc,
        withings_system: WITHINGS_MEASURE_TYPE,
        withings_code: code.to_string(),
        text: kind.text,
    }
}

/// One decoded measure of a group.
struct Measure {
    code: i64,
    value: serde_json::Number,
}

/// The Observations of one measure group; what is skipped is counted in `notes`.
pub(crate) fn map_group(group: &Value, notes: &mut Notes) -> Vec<Value> {
    let grpid = fhir::integer(group.get("grpid"));
    let label = match grpid {
        Some(id) => format!("The Withings measure group {id}"),
        None => "A Withings measure group without an id".to_string(),
    };
    let Some(grpid) = grpid else {
        notes.problem(format!("{label} was skipped."));
        return Vec::new();
    };
    let Some(date) = fhir::integer(group.get("date")).filter(|d| fhir::is_plausible_time(*d))
    else {
        notes.problem(format!("{label} has no valid date and was skipped."));
        return Vec::new();
    };
    if fhir::integer(group.get("attrib")) == Some(ATTRIB_AMBIGUOUS) {
        notes.ambiguous_groups += 1;
        return Vec::new();
    }
    let device = group.get("model").and_then(Value::as_str);

    let mut measures = Vec::new();
    for raw in group
        .get("measures")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(code) = fhir::integer(raw.get("type")) else {
            notes.problem(format!(
                "{label} holds a measure without a type; it was skipped."
            ));
            continue;
        };
        if measure_type(code).is_none() {
            *notes.unknown_measure_types.entry(code).or_default() += 1;
            continue;
        }
        let value = fhir::integer(raw.get("value"))
            .zip(fhir::integer(raw.get("unit")))
            .and_then(|(mantissa, exponent)| fhir::decimal(mantissa, exponent));
        match value {
            Some(value) => measures.push(Measure { code, value }),
            None => notes.problem(format!(
                "{label} holds a measure of type {code} whose value or unit is not a usable \
                 number; it was skipped."
            )),
        }
    }

    let identity = |part: &str| format!("{grpid}|{date}|{part}");
    let find = |code: i64| measures.iter().find(|m| m.code == code);
    let mut resources = Vec::new();
    let panel = find(SYSTOLIC).zip(find(DIASTOLIC));
    if let Some((systolic, diastolic)) = panel {
        resources.push(blood_pressure_panel(
            fhir::stable_id("bp", &identity("bp")),
            date,
            systolic.value.clone(),
            diastolic.value.clone(),
            device,
        ));
    }
    for measure in &measures {
        if panel.is_some() && (measure.code == SYSTOLIC || measure.code == DIASTOLIC) {
            continue;
        }
        let kind = measure_type(measure.code).expect("unknown types were skipped above");
        resources.push(fhir::observation(ObservationParts {
            id: fhir::stable_id("measure", &identity(&measure.code.to_string())),
            category: Category::VitalSigns,
            code: concept(measure.code, &kind).to_json(),
            effective: Effective::Instant(date),
            value: Some(fhir::quantity(measure.value.clone(), kind.unit)),
            components: Vec::new(),
            device,
        }));
    }
    resources
}

fn blood_pressure_panel(
    id: String,
    date: i64,
    systolic: serde_json::Number,
    diastolic: serde_json::Number,
    device: Option<&str>,
) -> Value {
    let component = |(code, display): (&str, &str), value| {
        json!({
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}],
                     "text": display},
            "valueQuantity": fhir::quantity(value, MM_HG),
        })
    };
    fhir::observation(ObservationParts {
        id,
        category: Category::VitalSigns,
        code: json!({
            "coding": [{"system": LOINC, "code": "85354-9",
                        "display": "Blood pressure panel with all children optional"}],
            "text": "Blood pressure",
        }),
        effective: Effective::Instant(date),
        value: None,
        components: vec![
            component(SYSTOLIC_LOINC, systolic),
            component(DIASTOLIC_LOINC, diastolic),
        ],
        device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(attrib: i64, measures: Value) -> Value {
        json!({"grpid": 42, "attrib": attrib, "date": 1_564_660_800, "category": 1,
               "model": "BPM Connect", "measures": measures})
    }

    #[test]
    fn blood_pressure_becomes_one_panel_and_pulse_its_own_observation() {
        let mut notes = Notes::default();
        let resources = map_group(
            &group(
                0,
                json!([{"type": 10, "unit": 0, "value": 128},
                       {"type": 9, "unit": 0, "value": 84},
                       {"type": 11, "unit": 0, "value": 67}]),
            ),
            &mut notes,
        );
        assert_eq!(resources.len(), 2);
        let panel = &resources[0];
        assert_eq!(panel["code"]["coding"][0]["code"], "85354-9");
        assert!(panel.get("valueQuantity").is_none());
        assert_eq!(panel["component"][0]["code"]["coding"][0]["code"], "8480-6");
        assert_eq!(panel["component"][0]["valueQuantity"]["value"], 128);
        assert_eq!(panel["component"][1]["code"]["coding"][0]["code"], "8462-4");
        assert_eq!(panel["component"][1]["valueQuantity"]["value"], 84);
        assert_eq!(panel["component"][1]["valueQuantity"]["code"], "mm[Hg]");
        assert_eq!(panel["device"]["display"], "BPM Connect");
        let pulse = &resources[1];
        assert_eq!(pulse["code"]["coding"][0]["code"], "8867-4");
        assert_eq!(pulse["valueQuantity"]["value"], 67);
        assert_eq!(pulse["valueQuantity"]["code"], "/min");
        assert_eq!(pulse["effectiveDateTime"], "2019-08-01T12:00:00Z");
    }

    #[test]
    fn a_lone_systolic_value_is_its_own_observation() {
        let mut notes = Notes::default();
        let resources = map_group(
            &group(0, json!([{"type": 10, "unit": 0, "value": 128}])),
            &mut notes,
        );
        assert_eq!(resources.len(), 1);
        assert_eq!(resources[0]["code"]["coding"][0]["code"], "8480-6");
        assert_eq!(resources[0]["valueQuantity"]["value"], 128);
    }

    #[test]
    fn ambiguous_groups_are_skipped_and_counted() {
        let mut notes = Notes::default();
        let measures = json!([{"type": 1, "unit": -2, "value": 7500}]);
        assert!(map_group(&group(1, measures.clone()), &mut notes).is_empty());
        assert_eq!(notes.ambiguous_groups, 1);
        // Manual entries (attrib 2) and those made at account creation (4) are the user's own.
        assert_eq!(map_group(&group(2, measures.clone()), &mut notes).len(), 1);
        assert_eq!(map_group(&group(4, measures), &mut notes).len(), 1);
    }

    #[test]
    fn weight_in_hundredths_of_a_kilogram_is_exact() {
        let mut notes = Notes::default();
        let resources = map_group(
            &group(0, json!([{"type": 1, "unit": -2, "value": 7515}])),
            &mut notes,
        );
        assert_eq!(resources[0]["valueQuantity"]["value"].to_string(), "75.15");
        assert_eq!(resources[0]["valueQuantity"]["unit"], "kg");
        assert_eq!(
            resources[0]["code"]["coding"][1],
            json!({"system": WITHINGS_MEASURE_TYPE, "code": "1", "display": "Body weight"})
        );
    }

    #[test]
    fn measures_without_loinc_carry_only_the_withings_code() {
        let mut notes = Notes::default();
        let resources = map_group(
            &group(0, json!([{"type": 76, "unit": -2, "value": 5230}])),
            &mut notes,
        );
        let coding = resources[0]["code"]["coding"].as_array().unwrap();
        assert_eq!(coding.len(), 1);
        assert_eq!(coding[0]["system"], WITHINGS_MEASURE_TYPE);
        assert_eq!(coding[0]["code"], "76");
        assert_eq!(resources[0]["code"]["text"], "Muscle mass");
        assert_eq!(resources[0]["valueQuantity"]["value"].to_string(), "52.3");
    }

    #[test]
    fn broken_groups_and_measures_are_reported() {
        let mut notes = Notes::default();
        let no_date = json!({"grpid": 7, "attrib": 0, "measures": []});
        assert!(map_group(&no_date, &mut notes).is_empty());
        let bad_value = group(0, json!([{"type": 1, "unit": -2, "value": "heavy"}]));
        assert!(map_group(&bad_value, &mut notes).is_empty());
        assert_eq!(
            notes.problems,
            [
                "The Withings measure group 7 has no valid date and was skipped.",
                "The Withings measure group 42 holds a measure of type 1 whose value or unit is \
                 not a usable number; it was skipped."
            ]
        );
    }
}
