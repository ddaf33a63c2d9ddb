//! Which HealthKit record types Fasten imports, and as what: LOINC code, category, UCUM unit.

/// A LOINC code and its display name.
pub(crate) type Loinc = (&'static str, &'static str);

/// One unit Apple writes for a type, and what it becomes.
pub(crate) struct Unit {
    /// As in the export's `unit` attribute.
    pub(crate) apple: &'static str,
    /// The UCUM code.
    pub(crate) ucum: &'static str,
    /// Apple's value times this is the value in `ucum` (Apple writes percentages as fractions).
    pub(crate) scale: f64,
    /// For daily sums: the value times this is the value in the type's first unit, so samples
    /// a source wrote in different units still add up.
    pub(crate) in_first_unit: f64,
    /// When the unit changes what is measured (glucose by mass or by moles), the LOINC code to
    /// use instead of the type's.
    pub(crate) loinc: Option<Loinc>,
}

const fn unit(apple: &'static str, ucum: &'static str) -> Unit {
    Unit {
        apple,
        ucum,
        scale: 1.0,
        in_first_unit: 1.0,
        loinc: None,
    }
}

const fn fraction_as_percent(apple: &'static str) -> Unit {
    Unit {
        scale: 100.0,
        ..unit(apple, "%")
    }
}

const fn convertible(apple: &'static str, ucum: &'static str, in_first_unit: f64) -> Unit {
    Unit {
        in_first_unit,
        ..unit(apple, ucum)
    }
}

/// How records of one type become observations.
pub(crate) enum Kind {
    /// Each record is one vital-signs observation.
    Sample,
    /// One half of a blood pressure panel.
    Systolic,
    Diastolic,
    /// Recorded every few minutes by a watch: one observation per day and source (mean, min, max).
    HeartRate,
    /// Many small samples a day: their sum per day and source, as an activity observation.
    DailySum,
}

pub(crate) struct Metric {
    pub(crate) apple_type: &'static str,
    pub(crate) kind: Kind,
    pub(crate) loinc: Option<Loinc>,
    /// `code.text`, what people see.
    pub(crate) text: &'static str,
    pub(crate) units: &'static [Unit],
}

const fn metric(
    apple_type: &'static str,
    kind: Kind,
    loinc: Option<Loinc>,
    text: &'static str,
    units: &'static [Unit],
) -> Metric {
    Metric {
        apple_type,
        kind,
        loinc,
        text,
        units,
    }
}

const PER_MINUTE: &[Unit] = &[unit("count/min", "/min")];
const BLOOD_PRESSURE: &[Unit] = &[unit("mmHg", "mm[Hg]")];
const ENERGY: &[Unit] = &[
    unit("kcal", "kcal"),
    // Apple's "Cal" is the food calorie, a kilocalorie.
    unit("Cal", "kcal"),
    convertible("kJ", "kJ", 1.0 / 4.184),
];

pub(crate) static METRICS: &[Metric] = &[
    metric(
        "HKQuantityTypeIdentifierBodyMass",
        Kind::Sample,
        Some(("29463-7", "Body weight")),
        "Body weight",
        &[unit("kg", "kg"), unit("lb", "[lb_av]"), unit("g", "g")],
    ),
    metric(
        "HKQuantityTypeIdentifierHeight",
        Kind::Sample,
        Some(("8302-2", "Body height")),
        "Body height",
        &[
            unit("cm", "cm"),
            unit("m", "m"),
            unit("in", "[in_i]"),
            unit("ft", "[ft_i]"),
        ],
    ),
    metric(
        "HKQuantityTypeIdentifierBodyMassIndex",
        Kind::Sample,
        Some(("39156-5", "Body mass index (BMI) [Ratio]")),
        "Body mass index",
        // Apple stores BMI as a plain count.
        &[unit("count", "kg/m2")],
    ),
    metric(
        "HKQuantityTypeIdentifierBodyFatPercentage",
        Kind::Sample,
        Some(("41982-0", "Percentage of body fat Measured")),
        "Body fat percentage",
        &[fraction_as_percent("%")],
    ),
    metric(
        "HKQuantityTypeIdentifierBloodPressureSystolic",
        Kind::Systolic,
        Some(("8480-6", "Systolic blood pressure")),
        "Systolic blood pressure",
        BLOOD_PRESSURE,
    ),
    metric(
        "HKQuantityTypeIdentifierBloodPressureDiastolic",
        Kind::Diastolic,
        Some(("8462-4", "Diastolic blood pressure")),
        "Diastolic blood pressure",
        BLOOD_PRESSURE,
    ),
    metric(
        "HKQuantityTypeIdentifierOxygenSaturation",
        Kind::Sample,
        Some((
            "59408-5",
            "Oxygen saturation in Arterial blood by Pulse oximetry",
        )),
        "Oxygen saturation",
        &[fraction_as_percent("%")],
    ),
    metric(
        "HKQuantityTypeIdentifierBodyTemperature",
        Kind::Sample,
        Some(("8310-5", "Body temperature")),
        "Body temperature",
        &[unit("degC", "Cel"), unit("degF", "[degF]")],
    ),
    metric(
        "HKQuantityTypeIdentifierRespiratoryRate",
        Kind::Sample,
        Some(("9279-1", "Respiratory rate")),
        "Respiratory rate",
        PER_MINUTE,
    ),
    metric(
        "HKQuantityTypeIdentifierBloodGlucose",
        Kind::Sample,
        Some(("2339-0", "Glucose [Mass/volume] in Blood")),
        "Blood glucose",
        &[
            unit("mg/dL", "mg/dL"),
            // HealthKit names the molar unit with glucose's molar mass.
            Unit {
                loinc: Some(("15074-8", "Glucose [Moles/volume] in Blood")),
                ..unit("mmol<180.1558800000541>/L", "mmol/L")
            },
        ],
    ),
    metric(
        "HKQuantityTypeIdentifierRestingHeartRate",
        Kind::Sample,
        Some(("40443-4", "Heart rate --resting")),
        "Resting heart rate",
        PER_MINUTE,
    ),
    metric(
        "HKQuantityTypeIdentifierWalkingHeartRateAverage",
        Kind::Sample,
        None,
        "Walking heart rate average",
        PER_MINUTE,
    ),
    metric(
        "HKQuantityTypeIdentifierHeartRateVariabilitySDNN",
        Kind::Sample,
        Some((
            "80404-7",
            "R-R interval.standard deviation (Heart rate variability)",
        )),
        "Heart rate variability (SDNN)",
        &[unit("ms", "ms")],
    ),
    metric(
        "HKQuantityTypeIdentifierVO2Max",
        Kind::Sample,
        None,
        "VO2 max",
        &[
            unit("mL/min·kg", "mL/(kg.min)"),
            unit("mL/kg·min", "mL/(kg.min)"),
            unit("mL/(kg·min)", "mL/(kg.min)"),
        ],
    ),
    metric(
        "HKQuantityTypeIdentifierHeartRate",
        Kind::HeartRate,
        Some(("8867-4", "Heart rate")),
        "Heart rate",
        PER_MINUTE,
    ),
    metric(
        "HKQuantityTypeIdentifierStepCount",
        Kind::DailySum,
        Some(("41950-7", "Number of steps in 24 hour Measured")),
        "Steps",
        &[unit("count", "{steps}")],
    ),
    metric(
        "HKQuantityTypeIdentifierDistanceWalkingRunning",
        Kind::DailySum,
        Some(("41953-1", "Walking distance 24 hour Calc")),
        "Walking and running distance",
        // `in_first_unit` here is metres per unit; the sum divides by the first unit's.
        &[
            convertible("km", "km", 1000.0),
            convertible("mi", "[mi_i]", 1609.344),
            convertible("m", "m", 1.0),
            convertible("yd", "[yd_i]", 0.9144),
            convertible("ft", "[ft_i]", 0.3048),
        ],
    ),
    metric(
        "HKQuantityTypeIdentifierActiveEnergyBurned",
        Kind::DailySum,
        Some(("41981-2", "Calories burned 24 hour Calc")),
        "Active energy burned",
        ENERGY,
    ),
    metric(
        "HKQuantityTypeIdentifierBasalEnergyBurned",
        Kind::DailySum,
        None,
        "Resting energy burned",
        ENERGY,
    ),
    metric(
        "HKQuantityTypeIdentifierFlightsClimbed",
        Kind::DailySum,
        None,
        "Flights climbed",
        &[unit("count", "{flights}")],
    ),
    metric(
        "HKQuantityTypeIdentifierAppleExerciseTime",
        Kind::DailySum,
        None,
        "Exercise minutes",
        &[unit("min", "min")],
    ),
];

/// An index into [`METRICS`].
pub(crate) type MetricId = u8;

/// The metric of a record's `type` attribute, compared as raw bytes (no allocation per record).
pub(crate) fn metric_for(apple_type: &[u8]) -> Option<MetricId> {
    METRICS
        .iter()
        .position(|m| m.apple_type.as_bytes() == apple_type)
        .map(|i| i as MetricId)
}

impl Metric {
    pub(crate) fn unit_for(&self, apple_unit: &[u8]) -> Option<usize> {
        self.units
            .iter()
            .position(|u| u.apple.as_bytes() == apple_unit)
    }

    /// A daily sum is kept in the unit of its first sample; this converts a later sample.
    pub(crate) fn convert_for_sum(&self, value: f64, from: usize, to: usize) -> f64 {
        if from == to {
            value
        } else {
            value * self.units[from].in_first_unit / self.units[to].in_first_unit
        }
    }
}

/// The human-readable `unit` text next to a UCUM `code`.
pub(crate) fn unit_text(ucum: &str) -> &str {
    match ucum {
        "{steps}" => "steps",
        "{flights}" => "flights",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_listed_once_and_the_table_fits_its_index_type() {
        assert!(METRICS.len() < usize::from(MetricId::MAX));
        for (i, m) in METRICS.iter().enumerate() {
            assert_eq!(metric_for(m.apple_type.as_bytes()), Some(i as MetricId));
            assert!(!m.units.is_empty(), "{}", m.apple_type);
        }
        assert_eq!(metric_for(b"HKCategoryTypeIdentifierSleepAnalysis"), None);
    }

    #[test]
    fn miles_added_to_a_kilometre_sum_are_converted() {
        let distance = &METRICS
            [metric_for(b"HKQuantityTypeIdentifierDistanceWalkingRunning").unwrap() as usize];
        let km = distance.unit_for(b"km").unwrap();
        let mi = distance.unit_for(b"mi").unwrap();
        assert_eq!(distance.units[mi].ucum, "[mi_i]");
        assert!((distance.convert_for_sum(1.0, mi, km) - 1.609344).abs() < 1e-12);
        assert_eq!(distance.convert_for_sum(2.5, km, km), 2.5);
    }
}
