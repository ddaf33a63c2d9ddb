//! Nightly sleep summaries (`getsummary` series) as activity Observations, one per field and
//! night, each spanning the night (`effectivePeriod`).
//!
//! Heart and breathing rates during sleep get only the Withings code, not LOINC's heart rate or
//! respiratory rate: under those codes they would mix into the daytime resting-rate trends.

use serde_json::{Number, Value};

use crate::fhir::{
    self, BEATS_PER_MINUTE, BREATHS_PER_MINUTE, Category, Concept, Effective, HOURS,
    ObservationParts, Unit, WITHINGS_SLEEP_FIELD,
};
use crate::sync::Notes;

/// The fields `getsummary` is asked for (and mapped below).
pub(crate) const REQUESTED_FIELDS: &str = "total_sleep_time,total_timeinbed,deepsleepduration,\
     lightsleepduration,remsleepduration,wakeupcount,hr_average,hr_min,hr_max,rr_average,\
     sleep_score";

const TIMES: Unit = Unit {
    code: "{count}",
    display: "times",
};
const SCORE: Unit = Unit {
    code: "{score}",
    display: "score",
};

#[derive(Clone, Copy, PartialEq)]
enum Conversion {
    AsIs,
    SecondsToHours,
}

struct Field {
    name: &'static str,
    loinc: Option<(&'static str, &'static str)>,
    text: &'static str,
    unit: Unit,
    conversion: Conversion,
    /// No one sleeps with a heart rate of 0: it means the sensor did not measure.
    zero_means_unmeasured: bool,
}

const fn field(
    name: &'static str,
    text: &'static str,
    unit: Unit,
    conversion: Conversion,
    zero_means_unmeasured: bool,
) -> Field {
    Field {
        name,
        loinc: None,
        text,
        unit,
        conversion,
        zero_means_unmeasured,
    }
}

const FIELDS: [Field; 11] = [
    Field {
        name: "total_sleep_time",
        loinc: Some(("93832-4", "Sleep duration")),
        text: "Sleep duration",
        unit: HOURS,
        conversion: Conversion::SecondsToHours,
        zero_means_unmeasured: false,
    },
    field(
        "total_timeinbed",
        "Time in bed",
        HOURS,
        Conversion::SecondsToHours,
        false,
    ),
    field(
        "deepsleepduration",
        "Deep sleep duration",
        HOURS,
        Conversion::SecondsToHours,
        false,
    ),
    field(
        "lightsleepduration",
        "Light sleep duration",
        HOURS,
        Conversion::SecondsToHours,
        false,
    ),
    field(
        "remsleepduration",
        "REM sleep duration",
        HOURS,
        Conversion::SecondsToHours,
        false,
    ),
    field(
        "wakeupcount",
        "Wake-ups during sleep",
        TIMES,
        Conversion::AsIs,
        false,
    ),
    field(
        "hr_average",
        "Average heart rate during sleep",
        BEATS_PER_MINUTE,
        Conversion::AsIs,
        true,
    ),
    field(
        "hr_min",
        "Lowest heart rate during sleep",
        BEATS_PER_MINUTE,
        Conversion::AsIs,
        true,
    ),
    field(
        "hr_max",
        "Highest heart rate during sleep",
        BEATS_PER_MINUTE,
        Conversion::AsIs,
        true,
    ),
    field(
        "rr_average",
        "Average breathing rate during sleep",
        BREATHS_PER_MINUTE,
        Conversion::AsIs,
        true,
    ),
    field(
        "sleep_score",
        "Sleep score (Withings)",
        SCORE,
        Conversion::AsIs,
        false,
    ),
];

/// A field's value, or `None` for Withings' "no data" (null, missing, -1).
fn value(data: &Value, field: &Field) -> Option<Number> {
    let raw = data.get(field.name)?;
    let reading = raw.as_f64().filter(|v| v.is_finite() && *v >= 0.0)?;
    if field.zero_means_unmeasured && reading == 0.0 {
        return None;
    }
    match field.conversion {
        Conversion::AsIs => raw.as_number().cloned(),
        Conversion::SecondsToHours => fhir::ratio_2dp(fhir::integer(Some(raw))?, 3600),
    }
}

/// The Observations of one night.
pub(crate) fn map_series(series: &Value, notes: &mut Notes) -> Vec<Value> {
    // The series id is Withings' identity of a night; without one, its start is the next best.
    let identity = match (
        series
            .get("id")
            .filter(|id| id.is_number() || id.is_string()),
        fhir::integer(series.get("startdate")),
    ) {
        (Some(Value::String(id)), _) => id.clone(),
        (Some(id), _) => id.to_string(),
        (None, Some(start)) => format!("start:{start}"),
        (None, None) => {
            notes.problem("A Withings sleep summary without an id or start was skipped.".into());
            return Vec::new();
        }
    };
    let start = fhir::integer(series.get("startdate")).filter(|t| fhir::is_plausible_time(*t));
    let end = fhir::integer(series.get("enddate")).filter(|t| fhir::is_plausible_time(*t));
    let (Some(start), Some(end)) = (start, end) else {
        notes.problem(format!(
            "The Withings sleep summary {identity} has no valid start or end and was skipped."
        ));
        return Vec::new();
    };
    if end < start {
        notes.problem(format!(
            "The Withings sleep summary {identity} ends before it starts and was skipped."
        ));
        return Vec::new();
    }
    let device = series.get("model").and_then(Value::as_str);
    let Some(data) = series.get("data") else {
        return Vec::new();
    };
    FIELDS
        .iter()
        .filter_map(|field| {
            let value = value(data, field)?;
            Some(fhir::observation(ObservationParts {
                id: fhir::stable_id("sleep", &format!("{identity}|{}", field.name)),
                category: Category::Activity,
                code: Concept {
                    loinc: field.loinc,
                    withings_system: WITHINGS_SLEEP_FIELD,
                    withings_code: field.name.to_string(),
                    text: field.text,
                }
                .to_json(),
                effective: Effective::Period(start, end),
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

    fn field_code(resource: &Value) -> &str {
        resource["code"]["coding"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["code"]
            .as_str()
            .unwrap()
    }

    #[test]
    fn a_night_spans_its_period_and_skips_unmeasured_values() {
        let night = json!({"id": 7, "startdate": 1_618_691_453, "enddate": 1_618_713_173,
                           "date": "2021-04-18", "model": 32,
                           "data": {"total_sleep_time": 18660, "hr_average": 0, "hr_min": -1,
                                    "hr_max": null, "rr_average": 14, "wakeupcount": 0,
                                    "sleep_score": 37}});
        let resources = map_series(&night, &mut Notes::default());
        let codes: Vec<&str> = resources.iter().map(field_code).collect();
        assert_eq!(
            codes,
            [
                "total_sleep_time",
                "wakeupcount",
                "rr_average",
                "sleep_score"
            ]
        );
        let total = &resources[0];
        assert_eq!(total["code"]["coding"][0]["code"], "93832-4");
        assert_eq!(total["valueQuantity"]["value"].to_string(), "5.18");
        assert_eq!(total["valueQuantity"]["code"], "h");
        assert_eq!(total["effectivePeriod"]["start"], "2021-04-17T20:30:53Z");
        assert_eq!(total["effectivePeriod"]["end"], "2021-04-18T02:32:53Z");
        // A model number is not a name a person would recognise.
        assert!(total.get("device").is_none());
        assert_eq!(resources[1]["valueQuantity"]["value"], 0);
        assert_eq!(resources[2]["valueQuantity"]["unit"], "breaths/minute");
    }

    #[test]
    fn a_night_without_times_is_reported() {
        let mut notes = Notes::default();
        let night = json!({"id": 9, "data": {"total_sleep_time": 100}});
        assert!(map_series(&night, &mut notes).is_empty());
        assert_eq!(
            notes.problems,
            ["The Withings sleep summary 9 has no valid start or end and was skipped."]
        );
    }
}
