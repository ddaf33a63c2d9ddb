//! The FHIR side: Observation shapes, stable ids, exact decimals and dates. Pure functions, unit
//! tested natively.

use fasten_fhir_r4::instant::rfc3339;
use serde_json::{Map, Number, Value, json};
use sha2::{Digest, Sha256};

pub(crate) const LOINC: &str = "http://loinc.org";
pub(crate) const UCUM: &str = "http://unitsofmeasure.org";
pub(crate) const OBSERVATION_CATEGORY: &str =
    "http://terminology.hl7.org/CodeSystem/observation-category";

/// Where each kind of Withings code is defined, so that every Observation also carries the
/// provider's own code (the only code for values LOINC has no exact match for).
pub(crate) const WITHINGS_MEASURE_TYPE: &str =
    "https://developer.withings.com/api-reference#measure-type";
pub(crate) const WITHINGS_ACTIVITY_FIELD: &str =
    "https://developer.withings.com/api-reference#activity-field";
pub(crate) const WITHINGS_SLEEP_FIELD: &str =
    "https://developer.withings.com/api-reference#sleep-summary-field";

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Category {
    VitalSigns,
    Activity,
}

impl Category {
    fn to_json(self) -> Value {
        let (code, display) = match self {
            Category::VitalSigns => ("vital-signs", "Vital Signs"),
            Category::Activity => ("activity", "Activity"),
        };
        json!([{"coding": [{"system": OBSERVATION_CATEGORY, "code": code, "display": display}]}])
    }
}

/// A UCUM unit: `code` is what machines compare, `display` what people read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Unit {
    pub code: &'static str,
    pub display: &'static str,
}

pub(crate) const KG: Unit = Unit {
    code: "kg",
    display: "kg",
};
pub(crate) const METRE: Unit = Unit {
    code: "m",
    display: "m",
};
pub(crate) const PERCENT: Unit = Unit {
    code: "%",
    display: "%",
};
pub(crate) const MM_HG: Unit = Unit {
    code: "mm[Hg]",
    display: "mmHg",
};
pub(crate) const BEATS_PER_MINUTE: Unit = Unit {
    code: "/min",
    display: "beats/minute",
};
pub(crate) const BREATHS_PER_MINUTE: Unit = Unit {
    code: "/min",
    display: "breaths/minute",
};
pub(crate) const CELSIUS: Unit = Unit {
    code: "Cel",
    display: "°C",
};
pub(crate) const METRES_PER_SECOND: Unit = Unit {
    code: "m/s",
    display: "m/s",
};
pub(crate) const KCAL: Unit = Unit {
    code: "kcal",
    display: "kcal",
};
pub(crate) const MINUTES: Unit = Unit {
    code: "min",
    display: "min",
};
pub(crate) const HOURS: Unit = Unit {
    code: "h",
    display: "h",
};

/// What an Observation measures: a LOINC code when one matches exactly, always the Withings code.
#[derive(Clone, Debug)]
pub(crate) struct Concept {
    pub loinc: Option<(&'static str, &'static str)>,
    pub withings_system: &'static str,
    pub withings_code: String,
    pub text: &'static str,
}

impl Concept {
    pub(crate) fn to_json(&self) -> Value {
        let mut coding = Vec::new();
        if let Some((code, display)) = self.loinc {
            coding.push(json!({"system": LOINC, "code": code, "display": display}));
        }
        coding.push(json!({
            "system": self.withings_system,
            "code": self.withings_code,
            "display": self.text,
        }));
        json!({"coding": coding, "text": self.text})
    }
}

pub(crate) enum Effective {
    /// Seconds since the Unix epoch.
    Instant(i64),
    /// A calendar day as Withings gives it (`YYYY-MM-DD`, the user's local day).
    Day(String),
    /// Start and end, in seconds since the Unix epoch.
    Period(i64, i64),
}

pub(crate) fn quantity(value: Number, unit: Unit) -> Value {
    json!({"value": value, "unit": unit.display, "system": UCUM, "code": unit.code})
}

/// One final Observation. `value` is a `valueQuantity`; a panel passes `None` and `components`.
pub(crate) struct ObservationParts<'a> {
    pub id: String,
    pub category: Category,
    pub code: Value,
    pub effective: Effective,
    pub value: Option<Value>,
    pub components: Vec<Value>,
    pub device: Option<&'a str>,
}

pub(crate) fn observation(parts: ObservationParts<'_>) -> Value {
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Observation".into());
    resource.insert("id".into(), parts.id.into());
    resource.insert("status".into(), "final".into());
    resource.insert("category".into(), parts.category.to_json());
    resource.insert("code".into(), parts.code);
    match parts.effective {
        Effective::Instant(seconds) => {
            resource.insert("effectiveDateTime".into(), rfc3339(seconds).into());
        }
        Effective::Day(day) => {
            resource.insert("effectiveDateTime".into(), day.into());
        }
        Effective::Period(start, end) => {
            resource.insert(
                "effectivePeriod".into(),
                json!({"start": rfc3339(start), "end": rfc3339(end)}),
            );
        }
    }
    if let Some(value) = parts.value {
        resource.insert("valueQuantity".into(), value);
    }
    if !parts.components.is_empty() {
        resource.insert("component".into(), parts.components.into());
    }
    if let Some(model) = parts.device.filter(|m| !m.trim().is_empty()) {
        resource.insert("device".into(), json!({"display": model.trim()}));
    }
    Value::Object(resource)
}

/// `withings-<kind>-<16 hex digits>`: the same record (by its Withings identity, not its values)
/// gets the same id on every sync, so a changed value updates the stored resource.
pub(crate) fn stable_id(kind: &str, identity: &str) -> String {
    let digest = Sha256::digest(identity.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("withings-{kind}-{hex}")
}

/// `mantissa × 10^exponent` as a JSON number without binary float noise: the decimal text is built
/// first and parsed once, so 7500 × 10⁻² is exactly 75 and 95 × 10⁻² is 0.95. `None` when the
/// result cannot be a finite JSON number.
pub(crate) fn decimal(mantissa: i64, exponent: i64) -> Option<Number> {
    if !(-30..=18).contains(&exponent) {
        return None;
    }
    if exponent >= 0 {
        let scaled = mantissa.checked_mul(10i64.checked_pow(exponent as u32)?)?;
        return Some(Number::from(scaled));
    }
    let places = (-exponent) as usize;
    let digits = format!("{:0>width$}", mantissa.unsigned_abs(), width = places + 1);
    let (whole, fraction) = digits.split_at(digits.len() - places);
    let sign = if mantissa < 0 { "-" } else { "" };
    if fraction.bytes().all(|b| b == b'0') {
        // A whole number reads as one: 75 kg, not 75.0 kg.
        return format!("{sign}{whole}")
            .parse::<i64>()
            .ok()
            .map(Number::from);
    }
    let text = format!("{sign}{whole}.{fraction}");
    text.parse::<f64>().ok().and_then(Number::from_f64)
}

/// `numerator / denominator` rounded half up to two decimals, for unit conversions (seconds to
/// hours, say) that should read as 7.47 h rather than 7.466666666666667 h.
pub(crate) fn ratio_2dp(numerator: i64, denominator: i64) -> Option<Number> {
    let hundredths = (i128::from(numerator) * 100 * 2 + i128::from(denominator))
        .div_euclid(2 * i128::from(denominator));
    decimal(i64::try_from(hundredths).ok()?, -2)
}

/// Unix times Withings could plausibly send: after 2000 and before 2200. Anything else is a
/// broken record, and FHIR would reject a year outside 0001-9999 anyway.
pub(crate) fn is_plausible_time(seconds: i64) -> bool {
    (946_684_800..7_258_118_400).contains(&seconds)
}

/// Whether `text` is a calendar day `YYYY-MM-DD` with a real month and day.
pub(crate) fn is_day(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = &text[range];
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    match (number(0..4), number(5..7), number(8..10)) {
        (Some(year), Some(month), Some(day)) => {
            year >= 1 && (1..=12).contains(&month) && (1..=31).contains(&day)
        }
        _ => false,
    }
}

/// An integer field, accepting `12` and `12.0` (Withings' JSON is not always consistent).
pub(crate) fn integer(value: Option<&Value>) -> Option<i64> {
    let value = value?;
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal(7500, -2).unwrap().to_string(), "75");
        assert_eq!(decimal(95, -2).unwrap().to_string(), "0.95");
        assert_eq!(decimal(70, -3).unwrap().to_string(), "0.07");
        assert_eq!(decimal(72345, -3).unwrap().to_string(), "72.345");
        assert_eq!(decimal(-5, -1).unwrap().to_string(), "-0.5");
        assert_eq!(decimal(70, 0).unwrap().to_string(), "70");
        assert_eq!(decimal(7, 3).unwrap().to_string(), "7000");
        assert_eq!(decimal(1, 40), None);
        assert_eq!(decimal(i64::MAX, 1), None);
    }

    #[test]
    fn ratios_round_to_two_decimals() {
        // 18660 s of sleep is 5.1833... h.
        assert_eq!(ratio_2dp(18_660, 3600).unwrap().to_string(), "5.18");
        assert_eq!(ratio_2dp(26_880, 3600).unwrap().to_string(), "7.47");
        assert_eq!(ratio_2dp(4981, 60).unwrap().to_string(), "83.02");
        assert_eq!(ratio_2dp(3600, 3600).unwrap().to_string(), "1");
        // Half a hundredth rounds up.
        assert_eq!(ratio_2dp(18, 3600).unwrap().to_string(), "0.01");
    }

    #[test]
    fn times_are_utc_rfc3339() {
        assert_eq!(rfc3339(1_564_660_800), "2019-08-01T12:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_618_691_453), "2021-04-17T20:30:53Z");
    }

    #[test]
    fn days_are_checked() {
        assert!(is_day("2023-10-08"));
        assert!(!is_day("2023-13-08"));
        assert!(!is_day("2023-1-08"));
        assert!(!is_day("20231008"));
        assert!(!is_day("2023-10-0x"));
    }

    #[test]
    fn ids_are_stable_valid_fhir_ids() {
        let id = stable_id("measure", "1|1564660800|1");
        assert_eq!(id, stable_id("measure", "1|1564660800|1"));
        assert_ne!(id, stable_id("measure", "1|1564660800|4"));
        assert!(id.starts_with("withings-measure-"));
        assert_eq!(id.len(), "withings-measure-".len() + 16);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        );
    }
}
