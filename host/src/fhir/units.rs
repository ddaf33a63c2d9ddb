//! Units of measure: recognising two spellings of one unit, converting a value between units of
//! the same test (so one chart holds results from a lab reporting mg/dL and one reporting
//! mmol/L), and printing numbers and units the way people read them.
//!
//! Prefix changes (g/dL↔g/L, kg↔g, cm↔m) need no knowledge of the test. Mass↔molar conversions
//! do: they go through the analyte's molar mass, looked up by the observation key (a LOINC code
//! or a normalised name). Tests reported under a different LOINC code per unit (glucose
//! 2339-0 in mg/dL, 15074-8 in mmol/L) are joined by [`group_key`]. Anything not listed here is
//! left unconverted rather than guessed.

/// Metric prefixes UCUM uses for lab units, with their factor.
const PREFIXES: &[(&str, f64)] = &[
    ("", 1.0),
    ("k", 1e3),
    ("d", 1e-1),
    ("c", 1e-2),
    ("m", 1e-3),
    ("u", 1e-6),
    ("n", 1e-9),
    ("p", 1e-12),
    ("f", 1e-15),
];

/// Molar masses (g/mol) by analyte, and the observation keys that measure it. The factors the
/// labs print follow from them: glucose mg/dL ÷ 18.016 = mmol/L, cholesterol ÷ 38.67,
/// triglycerides ÷ 88.57, creatinine mg/dL × 88.4 = µmol/L, urea nitrogen ÷ 2.801.
const ANALYTES: &[(f64, &[&str])] = &[
    // Glucose
    (
        180.16,
        &[
            "2339-0", "2345-7", "1558-6", "41653-7", "2340-8", "15074-8", "14749-6", "14771-0",
            "glucose",
        ],
    ),
    // Cholesterol: total, HDL, LDL (measured and calculated), non-HDL.
    (
        386.7,
        &[
            "2093-3",
            "14647-2",
            "2085-9",
            "14646-4",
            "18262-6",
            "13457-7",
            "2089-1",
            "22748-8",
            "39469-2",
            "43396-1",
            "cholesterol",
            "total-cholesterol",
            "hdl-cholesterol",
            "ldl-cholesterol",
            "high-density-lipoprotein-cholesterol",
            "low-density-lipoprotein-cholesterol",
        ],
    ),
    // Triglycerides (as triolein).
    (
        885.7,
        &["2571-8", "14927-8", "triglycerides", "triglyceride"],
    ),
    // Creatinine
    (
        113.12,
        &["2160-0", "38483-4", "14682-9", "59826-8", "creatinine"],
    ),
    // Urea nitrogen (BUN): two nitrogen atoms per urea.
    (
        28.014,
        &[
            "3094-0",
            "6299-2",
            "14937-7",
            "urea-nitrogen",
            "bun",
            "blood-urea-nitrogen",
        ],
    ),
    // Urea itself.
    (60.06, &["urea"]),
    // Hemoglobin per haem unit, the convention of labs reporting mmol/L.
    (
        16_114.5,
        &["718-7", "20509-6", "59260-0", "hemoglobin", "haemoglobin"],
    ),
    // Calcium
    (40.078, &["17861-6", "49765-1", "2000-8", "calcium"]),
];

/// LOINC codes that name the same test in another unit, mapped to the code they join.
const SAME_TEST: &[(&str, &str)] = &[
    ("15074-8", "2339-0"),  // glucose, blood, mol → mass
    ("14749-6", "2345-7"),  // glucose, serum/plasma
    ("14771-0", "1558-6"),  // fasting glucose
    ("14647-2", "2093-3"),  // total cholesterol
    ("14646-4", "2085-9"),  // HDL cholesterol
    ("22748-8", "2089-1"),  // LDL cholesterol
    ("39469-2", "13457-7"), // LDL cholesterol, calculated
    ("14927-8", "2571-8"),  // triglycerides
    ("14682-9", "2160-0"),  // creatinine, serum/plasma
    ("59826-8", "38483-4"), // creatinine, blood
    ("14937-7", "3094-0"),  // urea nitrogen
    ("59260-0", "718-7"),   // hemoglobin
    ("2000-8", "17861-6"),  // calcium
];

/// eGFR is written "mL/min/{1.73_m2}", "mL/min/1.73m2" or just "mL/min": all the same number.
const EGFR: &[&str] = &["33914-3", "48642-3", "48643-1", "62238-1", "98979-8"];

/// The key under which a test's results are grouped: equivalent LOINC codes share one.
pub fn group_key(key: &str) -> &str {
    SAME_TEST
        .iter()
        .find(|(from, _)| *from == key)
        .map(|(_, to)| *to)
        .unwrap_or(key)
}

/// Every key grouped under `group` (itself included), e.g. both glucose codes.
pub fn keys_in_group(group: &str) -> Vec<&str> {
    std::iter::once(group)
        .chain(
            SAME_TEST
                .iter()
                .filter(|(_, to)| *to == group)
                .map(|(from, _)| *from),
        )
        .collect()
}

fn molar_mass(key: &str) -> Option<f64> {
    let key = group_key(key);
    ANALYTES
        .iter()
        .find(|(_, keys)| keys.contains(&key))
        .map(|(mass, _)| *mass)
}

/// One spelling per unit: "mg/dl" → "mg/dL", "µmol/l" → "umol/L", "lbs" → "[lb_av]", "°C" → "Cel".
pub fn normalise(unit: &str) -> String {
    let unit = unit.trim().replace(['µ', 'μ'], "u");
    let named = match unit.as_str() {
        "lb" | "lbs" | "[lb_us]" => Some("[lb_av]"),
        "oz" => Some("[oz_av]"),
        "in" | "inch" | "inches" => Some("[in_i]"),
        "ft" => Some("[ft_i]"),
        "°C" | "C" | "degC" | "cel" => Some("Cel"),
        "°F" | "F" | "degF" => Some("[degF]"),
        "mmHg" | "mm Hg" => Some("mm[Hg]"),
        _ => None,
    };
    if let Some(n) = named {
        return n.to_owned();
    }
    unit.split('/').map(fix_litre).collect::<Vec<_>>().join("/")
}

/// "dl" → "dL": UCUM writes the litre as L; some systems send it lower-case.
fn fix_litre(part: &str) -> String {
    if part.ends_with("mol") {
        return part.to_owned();
    }
    match part.strip_suffix('l') {
        Some(prefix) if PREFIXES.iter().any(|(p, _)| *p == prefix) => format!("{prefix}L"),
        _ => part.to_owned(),
    }
}

/// Whether two unit strings name the same unit.
pub fn same_unit(a: &str, b: &str) -> bool {
    normalise(a) == normalise(b)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dimension {
    Mass,
    Amount,
    Volume,
    Length,
    MassPerVolume,
    AmountPerVolume,
}

/// A unit as a dimension and the factor to its base (g, mol, L, m, g/L, mol/L).
fn parse(unit: &str) -> Option<(Dimension, f64)> {
    match unit {
        "[lb_av]" => return Some((Dimension::Mass, 453.592_37)),
        "[oz_av]" => return Some((Dimension::Mass, 28.349_523_125)),
        "[in_i]" => return Some((Dimension::Length, 0.0254)),
        "[ft_i]" => return Some((Dimension::Length, 0.3048)),
        _ => {}
    }
    if let Some((top, bottom)) = unit.split_once('/') {
        let (top_dim, top_factor) = simple(top)?;
        let (Dimension::Volume, bottom_factor) = simple(bottom)? else {
            return None;
        };
        let dim = match top_dim {
            Dimension::Mass => Dimension::MassPerVolume,
            Dimension::Amount => Dimension::AmountPerVolume,
            _ => return None,
        };
        return Some((dim, top_factor / bottom_factor));
    }
    simple(unit)
}

/// A prefixed base unit: "mg", "mmol", "dL", "cm".
fn simple(unit: &str) -> Option<(Dimension, f64)> {
    let bases = [
        ("mol", Dimension::Amount),
        ("g", Dimension::Mass),
        ("L", Dimension::Volume),
        ("m", Dimension::Length),
    ];
    bases.iter().find_map(|(base, dim)| {
        let prefix = unit.strip_suffix(base)?;
        let factor = PREFIXES.iter().find(|(p, _)| *p == prefix)?.1;
        Some((*dim, factor))
    })
}

/// Converts `value` from one unit to another for the test `key`. `None` when the units measure
/// different things or the conversion needs a molar mass this module does not know.
pub fn convert(key: &str, value: f64, from: &str, to: &str) -> Option<f64> {
    let (from, to) = (normalise(from), normalise(to));
    if from == to {
        return Some(value);
    }
    let key = group_key(key);
    if EGFR.contains(&key) && from.starts_with("mL/min") && to.starts_with("mL/min") {
        return Some(value);
    }
    match (from.as_str(), to.as_str()) {
        ("Cel", "[degF]") => return Some(value * 9.0 / 5.0 + 32.0),
        ("[degF]", "Cel") => return Some((value - 32.0) * 5.0 / 9.0),
        _ => {}
    }
    let (from_dim, from_factor) = parse(&from)?;
    let (to_dim, to_factor) = parse(&to)?;
    let base = value * from_factor;
    let base = match (from_dim, to_dim) {
        (a, b) if a == b => base,
        (Dimension::MassPerVolume, Dimension::AmountPerVolume) => base / molar_mass(key)?,
        (Dimension::AmountPerVolume, Dimension::MassPerVolume) => base * molar_mass(key)?,
        _ => return None,
    };
    Some(base / to_factor)
}

/// A unit as people write it: "mm[Hg]" → "mmHg", "10*3/uL" → "×10³/µL", "{score}" → "".
pub fn pretty(unit: &str) -> String {
    match normalise(unit).as_str() {
        "Cel" => return "°C".into(),
        "[degF]" => return "°F".into(),
        "[lb_av]" => return "lb".into(),
        "[in_i]" => return "in".into(),
        "mm[Hg]" => return "mmHg".into(),
        _ => {}
    }
    let mut out = unit.trim().to_owned();
    // Annotations in braces are for machines ("{score}", "{1.73_m2}" excepted below).
    out = out.replace("{1.73_m2}", "1.73 m²");
    while let (Some(start), Some(end)) = (out.find('{'), out.find('}')) {
        if end < start {
            break;
        }
        out.replace_range(start..=end, "");
    }
    for (from, to) in [
        ("10*3", "×10³"),
        ("10*6", "×10⁶"),
        ("10*9", "×10⁹"),
        ("10*12", "×10¹²"),
        ("m2", "m²"),
        ("/uL", "/µL"),
        ("umol", "µmol"),
        ("ug", "µg"),
        ("uU", "µU"),
        ("uIU", "µIU"),
    ] {
        out = out.replace(from, to);
    }
    out.trim().to_owned()
}

/// A measured number with four significant digits and no trailing zeros: 173.89263 → "173.9",
/// 5.40 → "5.4", 0.012345 → "0.01235", 250000.0 → "250000".
pub fn format_number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value == 0.0 {
        return "0".into();
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (3 - magnitude).clamp(0, 8) as usize;
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    if text == "-0" { "0".into() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-6 * b.abs().max(1.0))
    }

    #[test]
    fn glucose_converts_with_its_molar_mass() {
        assert!(close(convert("2339-0", 180.16, "mg/dL", "mmol/L"), 10.0));
        assert!(close(convert("2339-0", 5.0, "mmol/L", "mg/dL"), 90.08));
        // The molar code joins the mass code and converts the same way.
        assert_eq!(group_key("15074-8"), "2339-0");
        assert!(close(convert("15074-8", 5.0, "mmol/L", "mg/dL"), 90.08));
        assert!(close(convert("glucose", 18.016, "mg/dl", "mmol/l"), 1.0));
    }

    #[test]
    fn lipids_creatinine_and_urea_nitrogen_use_the_labs_factors() {
        for key in ["2093-3", "18262-6", "2085-9"] {
            assert!(close(convert(key, 386.7, "mg/dL", "mmol/L"), 10.0), "{key}");
        }
        assert!(close(convert("2571-8", 88.57, "mg/dL", "mmol/L"), 1.0));
        let creatinine = convert("38483-4", 1.0, "mg/dL", "umol/L").unwrap();
        assert!((creatinine - 88.4).abs() < 0.01, "{creatinine}");
        let back = convert("2160-0", 88.4, "µmol/L", "mg/dL").unwrap();
        assert!((back - 1.0).abs() < 0.001, "{back}");
        assert!(close(convert("6299-2", 2.8014, "mg/dL", "mmol/L"), 1.0));
    }

    #[test]
    fn prefix_changes_need_no_analyte() {
        assert!(close(convert("718-7", 13.5, "g/dL", "g/L"), 135.0));
        assert!(close(convert("anything", 135.0, "g/L", "g/dL"), 13.5));
        assert!(close(convert("29463-7", 70.0, "kg", "g"), 70_000.0));
        assert!(close(convert("8302-2", 180.0, "cm", "m"), 1.8));
        assert!(close(convert("29463-7", 1.0, "lbs", "kg"), 0.453_592_37));
        assert!(close(convert("8310-5", 100.0, "Cel", "[degF]"), 212.0));
        assert!(close(convert("x", 3.0, "mg/L", "mg/L"), 3.0));
    }

    #[test]
    fn unrelated_or_unknown_conversions_are_refused() {
        assert_eq!(convert("2339-0", 5.0, "mg/dL", "kg"), None);
        assert_eq!(convert("unknown-test", 5.0, "mg/dL", "mmol/L"), None);
        assert_eq!(convert("2339-0", 5.0, "%", "mg/dL"), None);
        assert_eq!(convert("2339-0", 5.0, "mL/min", "mL/min/{1.73_m2}"), None);
        assert_eq!(
            convert("33914-3", 61.0, "mL/min", "mL/min/{1.73_m2}"),
            Some(61.0)
        );
    }

    #[test]
    fn spellings_are_normalised() {
        assert_eq!(normalise("mg/dl"), "mg/dL");
        assert_eq!(normalise(" µmol/l "), "umol/L");
        assert_eq!(normalise("mmol/L"), "mmol/L");
        assert!(same_unit("g/dl", "g/dL"));
        assert!(!same_unit("g/dL", "g/L"));
        assert_eq!(normalise("lbs"), "[lb_av]");
    }

    #[test]
    fn units_and_numbers_print_for_people() {
        assert_eq!(pretty("mm[Hg]"), "mmHg");
        assert_eq!(pretty("10*3/uL"), "×10³/µL");
        assert_eq!(pretty("{score}"), "");
        assert_eq!(pretty("kg/m2"), "kg/m²");
        assert_eq!(pretty("mL/min/{1.73_m2}"), "mL/min/1.73 m²");
        assert_eq!(pretty("Cel"), "°C");
        assert_eq!(pretty("mg/dL"), "mg/dL");
        assert_eq!(format_number(173.89263350936992), "173.9");
        assert_eq!(format_number(5.40), "5.4");
        assert_eq!(format_number(0.012345), "0.01235");
        assert_eq!(format_number(250000.0), "250000");
        assert_eq!(format_number(-0.0), "0");
        assert_eq!(format_number(80.682850565953), "80.68");
    }
}
