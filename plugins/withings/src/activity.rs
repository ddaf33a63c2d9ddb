//! Daily activity (`getactivity` days) as activity Observations, one per field and day.

use serde_json::{Number, Value};

use crate::fhir::{
    self, Category, Concept, Effective, KCAL, METRE, MINUTES, ObservationParts, Unit,
    WITHINGS_ACTIVITY_FIELD,
};
use crate::sync::Notes;

/// The fields `getactivity` is asked for (and mapped below).
pub(crate) const REQUESTED_FIELDS: &str =
    "steps,distance,calories,totalcalories,elevation,soft,moderate,intense";

const STEPS: Unit = Unit {
    code: "{steps}",
    display: "steps",
};
const FLOORS: Unit = Unit {
    code: "{floors}",
    display: "floors",
};

#[derive(Clone, Copy, PartialEq)]
enum Conversion {
    AsIs,
    SecondsToMinutes,
}

struct Field {
    name: &'static str,
    loinc: Option<(&'static str, &'static str)>,
    text: &'static str,
    unit: Unit,
    conversion: Conversion,
    /// A device that cannot measure it (floors, without a barometer) reports 0, not null.
    zero_means_unmeasured: bool,
    /// Whether a nonzero value shows the day was tracked at all. Total calories are not: Withings
    /// fills in the resting metabolic rate estimate even for a day nobody wore a tracker.
    shows_tracking: bool,
}

const FIELDS: [Field; 8] = [
    Field {
        name: "steps",
        loinc: Some(("41950-7", "Number of steps in 24 hour Measured")),
        text: "Steps",
        unit: STEPS,
        conversion: Conversion::AsIs,
        zero_means_unmeasured: false,
        shows_tracking: true,
    },
    Field {
        name: "distance",
        loinc: Some(("41953-1", "Walking distance 24 hour Calc")),
        text: "Distance walked or run",
        unit: METRE,
        conversion: Conversion::AsIs,
        zero_means_unmeasured: false,
        shows_tracking: true,
    },
    Field {
        name: "calories",
        loinc: Some(("41981-2", "Calories burned 24 hour Calc")),
        text: "Active calories burned",
        unit: KCAL,
        conversion: Conversion::AsIs,
        zero_means_unmeasured: false,
        shows_tracking: true,
    },
    Field {
        name: "totalcalories",
        loinc: None,
        text: "Total calories burned",
        unit: KCAL,
        conversion: Conversion::AsIs,
        zero_means_unmeasured: false,
        shows_tracking: false,
    },
    Field {
        name: "elevation",
        loinc: None,
        text: "Floors climbed",
        unit: FLOORS,
        conversion: Conversion::AsIs,
        zero_means_unmeasured: true,
        shows_tracking: true,
    },
    Field {
        name: "soft",
        loinc: None,
        text: "Light activity duration",
        unit: MINUTES,
        conversion: Conversion::SecondsToMinutes,
        zero_means_unmeasured: false,
        shows_tracking: true,
    },
    Field {
        name: "moderate",
        loinc: None,
        text: "Moderate activity duration",
        unit: MINUTES,
        conversion: Conversion::SecondsToMinutes,
        zero_means_unmeasured: false,
        shows_tracking: true,
    },
    Field {
        name: "intense",
        loinc: None,
        text: "Intense activity duration",
        unit: MINUTES,
        conversion: Conversion::SecondsToMinutes,
        zero_means_unmeasured: false,
        shows_tracking: true,
    },
];

/// A field's value, or `None` for Withings' "no data" (null, missing, negative).
fn reading(day: &Value, field: &Field) -> Option<f64> {
    day.get(field.name)
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite() && *v >= 0.0)
        .filter(|v| !(field.zero_means_unmeasured && *v == 0.0))
}

fn converted(raw: &Value, field: &Field) -> Option<Number> {
    match field.conversion {
        Conversion::AsIs => match raw {
            Value::Number(number) => Some(number.clone()),
            _ => None,
        },
        Conversion::SecondsToMinutes => fhir::ratio_2dp(fhir::integer(Some(raw))?, 60),
    }
}

/// The Observations of one day. A day on which nothing was tracked (every field zero or missing)
/// gives none: a row of zeros would read as a day spent motionless.
pub(crate) fn map_day(day: &Value, notes: &mut Notes) -> Vec<Value> {
    let Some(date) = day
        .get("date")
        .and_then(Value::as_str)
        .filter(|d| fhir::is_day(d))
    else {
        notes.problem(
            "A Withings activity day without a valid date (YYYY-MM-DD) was skipped.".into(),
        );
        return Vec::new();
    };
    let tracked = FIELDS
        .iter()
        .any(|f| f.shows_tracking && reading(day, f).is_some_and(|v| v > 0.0));
    if !tracked {
        return Vec::new();
    }
    // Withings reports a day once per source when it cannot merge them.
    let source = day
        .get("hash_deviceid")
        .or_else(|| day.get("deviceid"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let device = day.get("model").and_then(Value::as_str);
    FIELDS
        .iter()
        .filter(|field| reading(day, field).is_some())
        .filter_map(|field| {
            let value = converted(&day[field.name], field)?;
            Some(fhir::observation(ObservationParts {
                id: fhir::stable_id("activity", &format!("{date}|{source}|{}", field.name)),
                category: Category::Activity,
                code: Concept {
                    loinc: field.loinc,
                    withings_system: WITHINGS_ACTIVITY_FIELD,
                    withings_code: field.name.to_string(),
                    text: field.text,
                }
                .to_json(),
                effective: Effective::Day(date.to_string()),
                value: Some(fhir::quantity(value, field.unit)),
                components: Vec::new(),
                device,
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn by_field<'a>(resources: &'a [Value], field: &str) -> Option<&'a Value> {
        resources
            .iter()
            .find(|r| r["code"]["coding"].as_array().unwrap().last().unwrap()["code"] == field)
    }

    #[test]
    fn a_day_gives_one_observation_per_field() {
        let day = json!({"date": "2023-10-08", "steps": 1892, "distance": 1607.93,
                         "calories": 204.796, "totalcalories": 2454.481, "elevation": 0,
                         "soft": 4981, "moderate": 158, "intense": 0,
                         "model": "GoogleFit tracker", "deviceid": null});
        let resources = map_day(&day, &mut Notes::default());
        // Elevation 0 means the tracker has no barometer: left out.
        assert_eq!(resources.len(), 7);
        let steps = by_field(&resources, "steps").unwrap();
        assert_eq!(steps["code"]["coding"][0]["code"], "41950-7");
        assert_eq!(steps["valueQuantity"]["value"], 1892);
        assert_eq!(steps["valueQuantity"]["code"], "{steps}");
        assert_eq!(steps["effectiveDateTime"], "2023-10-08");
        assert_eq!(steps["category"][0]["coding"][0]["code"], "activity");
        assert_eq!(steps["device"]["display"], "GoogleFit tracker");
        let light = by_field(&resources, "soft").unwrap();
        assert_eq!(light["valueQuantity"]["value"].to_string(), "83.02");
        assert_eq!(light["valueQuantity"]["unit"], "min");
        // A real zero on a tracked day is kept.
        let intense = by_field(&resources, "intense").unwrap();
        assert_eq!(intense["valueQuantity"]["value"], 0);
        assert!(by_field(&resources, "elevation").is_none());
    }

    #[test]
    fn untracked_days_and_missing_fields_give_nothing() {
        let untracked = json!({"date": "2023-10-08", "steps": 0, "distance": 0, "calories": 0,
                               "totalcalories": 1650.2, "soft": 0, "moderate": 0, "intense": 0});
        assert!(map_day(&untracked, &mut Notes::default()).is_empty());
        let sparse = json!({"date": "2023-10-09", "steps": 310, "distance": null,
                            "calories": -1});
        let resources = map_day(&sparse, &mut Notes::default());
        assert_eq!(resources.len(), 1);
        assert_eq!(resources[0]["valueQuantity"]["value"], 310);
    }

    #[test]
    fn a_day_without_a_date_is_reported() {
        let mut notes = Notes::default();
        assert!(map_day(&json!({"date": "yesterday", "steps": 10}), &mut notes).is_empty());
        assert_eq!(notes.problems.len(), 1);
    }
}
