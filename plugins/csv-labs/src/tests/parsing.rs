//! The readers of single cells and column names.

use crate::dates::{DateOrder, DateParts, DayMonth, parse_raw, resolve};
use crate::header::{Role, SYNONYMS, header_roles, normalise};
use crate::import::Options;
use crate::rows::loinc_code;
use crate::values::{
    Flag, Range, ResultValue, parse_flag, parse_number, parse_range, parse_value, ucum_code,
};

#[test]
fn lab_unit_spellings_map_to_ucum() {
    let cases = [
        ("mg/dL", "mg/dL"),
        ("MG/DL", "mg/dL"),
        ("mmol/L", "mmol/L"),
        ("g/dL", "g/dL"),
        ("g/L", "g/L"),
        ("%", "%"),
        ("K/uL", "10*3/uL"),
        ("x10^3/uL", "10*3/uL"),
        ("10^3/µL", "10*3/uL"),
        ("x10E3/uL", "10*3/uL"),
        ("10^9/L", "10*9/L"),
        ("x10^9/L", "10*9/L"),
        ("M/uL", "10*6/uL"),
        ("x10^6/uL", "10*6/uL"),
        ("fL", "fL"),
        ("pg", "pg"),
        ("U/L", "U/L"),
        ("IU/L", "[IU]/L"),
        ("mEq/L", "meq/L"),
        ("ng/mL", "ng/mL"),
        ("pg/mL", "pg/mL"),
        ("ug/dL", "ug/dL"),
        ("mcg/dL", "ug/dL"),
        ("µg/L", "ug/L"),
        ("mIU/L", "m[IU]/L"),
        ("uIU/mL", "u[IU]/mL"),
        ("µIU/mL", "u[IU]/mL"),
        ("mL/min/1.73m2", "mL/min/{1.73_m2}"),
        ("mL/min/1.73 m²", "mL/min/{1.73_m2}"),
        ("ml/min/1,73m²", "mL/min/{1.73_m2}"),
        ("mm/hr", "mm/h"),
        ("sec", "s"),
        ("ratio", "{ratio}"),
        ("cells/uL", "{cells}/uL"),
        ("mg/L", "mg/L"),
        ("umol/L", "umol/L"),
        ("µmol/l", "umol/L"),
        ("nmol/L", "nmol/L"),
        ("pmol/L", "pmol/L"),
        ("kg", "kg"),
        ("cm", "cm"),
        ("mmHg", "mm[Hg]"),
        ("bpm", "/min"),
        ("°C", "Cel"),
        ("10*3/uL", "10*3/uL"),
        ("mL/min/{1.73_m2}", "mL/min/{1.73_m2}"),
    ];
    for (written, ucum) in cases {
        assert_eq!(ucum_code(written), Some(ucum), "{written}");
    }
    assert_eq!(ucum_code("furlongs"), None);
    assert_eq!(ucum_code(""), None);
}

#[test]
fn numbers_take_a_decimal_point_or_comma() {
    assert_eq!(parse_number("5.2"), Some(5.2));
    assert_eq!(parse_number(" 5,2 "), Some(5.2));
    assert_eq!(parse_number("-0.5"), Some(-0.5));
    assert_eq!(parse_number(".5"), Some(0.5));
    assert_eq!(parse_number("140"), Some(140.0));
    assert_eq!(parse_number("1.234.5"), None);
    assert_eq!(parse_number("5."), None);
    assert_eq!(parse_number("1e3"), None);
    assert_eq!(parse_number("n/a"), None);
}

#[test]
fn numbers_are_emitted_with_the_digits_written() {
    assert_eq!(crate::values::json_number_text("13.90"), "13.90");
    assert_eq!(crate::values::json_number_text(" 5,20 "), "5.20");
    assert_eq!(crate::values::json_number_text("+3"), "3");
    assert_eq!(crate::values::json_number_text(".5"), "0.5");
    assert_eq!(crate::values::json_number_text("-.5"), "-0.5");
}

#[test]
fn values_are_numbers_comparisons_or_words() {
    assert_eq!(parse_value("   "), None);
    assert_eq!(
        parse_value("≥ 90"),
        Some(ResultValue::Number {
            value: 90.0,
            written: "90".into(),
            comparator: Some(">="),
            unit: None
        })
    );
    assert_eq!(
        parse_value("5,2 mmol/l"),
        Some(ResultValue::Number {
            value: 5.2,
            written: "5.2".into(),
            comparator: None,
            unit: Some("mmol/l".into())
        })
    );
    assert_eq!(parse_value("1:80"), Some(ResultValue::Text("1:80".into())));
    assert_eq!(
        parse_value("<negative"),
        Some(ResultValue::Text("<negative".into()))
    );
    assert_eq!(parse_value("in progress"), Some(ResultValue::Pending));
    assert!(matches!(
        parse_value("Negativ"),
        Some(ResultValue::Coded {
            code: "260385009",
            ..
        })
    ));
}

#[test]
fn reference_ranges_in_their_usual_forms() {
    let bounds = |text: &str| parse_range(text).map(|r| (r.low, r.high));
    assert_eq!(bounds("3.5-5.0"), Some((Some(3.5), Some(5.0))));
    assert_eq!(bounds("3.5 - 5.0 mmol/L"), Some((Some(3.5), Some(5.0))));
    assert_eq!(bounds("3,5–5,0"), Some((Some(3.5), Some(5.0))));
    assert_eq!(bounds("3.5 to 5.0"), Some((Some(3.5), Some(5.0))));
    assert_eq!(bounds("-2.0 - 2.0"), Some((Some(-2.0), Some(2.0))));
    assert_eq!(bounds("<5"), Some((None, Some(5.0))));
    assert_eq!(bounds("< 200 mg/dL"), Some((None, Some(200.0))));
    assert_eq!(bounds(">60"), Some((Some(60.0), None)));
    assert_eq!(bounds(""), None);
    assert_eq!(
        parse_range("Negative"),
        Some(Range {
            low: None,
            high: None,
            text: Some("Negative".into())
        })
    );
}

#[test]
fn flags_in_words_and_letters() {
    let code = |text: &str| match parse_flag(text) {
        Some(Flag::Coded { code, .. }) => Some(code),
        _ => None,
    };
    assert_eq!(code("H"), Some("H"));
    assert_eq!(code("high"), Some("H"));
    assert_eq!(code("L"), Some("L"));
    assert_eq!(code("LL"), Some("LL"));
    assert_eq!(code("Critical High"), Some("HH"));
    assert_eq!(code("Abnormal"), Some("A"));
    assert_eq!(code("Critical"), Some("AA"));
    assert_eq!(code("N"), Some("N"));
    assert_eq!(code("hoch"), Some("H"));
    assert_eq!(parse_flag(""), None);
}

#[test]
fn dates_in_iso_us_eu_and_dotted_forms() {
    let effective = |text: &str, order| {
        resolve(&parse_raw(text).unwrap_or_else(|| panic!("{text}")), order).map(|d| d.effective)
    };
    let month_first = Some(DayMonth::MonthFirst);
    let day_first = Some(DayMonth::DayFirst);
    assert_eq!(effective("2024-03-05", None).unwrap(), "2024-03-05");
    assert_eq!(effective("2024/03/05", None).unwrap(), "2024-03-05");
    assert_eq!(effective("05.03.2024", None).unwrap(), "2024-03-05");
    assert_eq!(effective("5.3.2024 14:05", None).unwrap(), "2024-03-05");
    assert_eq!(effective("03/05/2024", month_first).unwrap(), "2024-03-05");
    assert_eq!(effective("03/05/2024", day_first).unwrap(), "2024-05-03");
    assert_eq!(effective("3-5-2024", month_first).unwrap(), "2024-03-05");
    assert_eq!(
        effective("2024-03-05T23:59:59+05:30", None).unwrap(),
        "2024-03-05T23:59:59+05:30"
    );
    assert_eq!(
        effective("03/05/2024 12:15 AM UTC", month_first).unwrap(),
        "2024-03-05T00:15:00Z"
    );
    assert_eq!(
        effective("2024-03-05 08:30 EST", None).unwrap(),
        "2024-03-05"
    );
    assert_eq!(
        effective("02/29/2023", month_first),
        Err("that day does not exist")
    );
    assert_eq!(effective("02/29/2024", month_first).unwrap(), "2024-02-29");
    assert_eq!(effective("13/13/2024", day_first), Err("it has no month"));
    assert_eq!(
        effective("03/05/2024", None),
        Err("its day/month order is unknown")
    );
    for unreadable in [
        "soon",
        "2024-03",
        "03/05/24",
        "2024-03-05 25:00",
        "2024-03-05 8:30 later",
    ] {
        assert_eq!(parse_raw(unreadable), None, "{unreadable}");
    }
    assert!(matches!(
        parse_raw("12/31/2024 11:00 PM").unwrap().parts,
        DateParts::Slashed {
            first: 12,
            second: 31,
            year: 2024
        }
    ));
}

#[test]
fn times_without_a_zone_still_tell_results_apart() {
    let identity = |text: &str| resolve(&parse_raw(text).unwrap(), None).unwrap().identity;
    assert_eq!(identity("2024-03-05 08:00"), "2024-03-05T08:00:00");
    assert_ne!(identity("2024-03-05 08:00"), identity("2024-03-05 14:00"));
    assert_eq!(identity("2024-03-05 2:00 PM"), identity("2024-03-05 14:00"));
}

#[test]
fn the_date_order_comes_from_the_media_type() {
    assert_eq!(Options::from_media_type("text/csv").date_order, None);
    assert_eq!(
        Options::from_media_type("text/csv; dates=dmy").date_order,
        Some(DateOrder::Dmy)
    );
    assert_eq!(
        Options::from_media_type("text/csv;charset=utf-8; Dates=MDY").date_order,
        Some(DateOrder::Mdy)
    );
    assert_eq!(
        Options::from_media_type("text/csv; dates=later").date_order,
        None
    );
}

#[test]
fn column_names_match_whatever_their_case_spacing_and_punctuation() {
    let roles = |names: &[&str]| {
        let fields: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut roles = header_roles(&fields);
        roles.sort_by_key(|(_, index)| *index);
        roles.into_iter().map(|(role, _)| role).collect::<Vec<_>>()
    };
    assert_eq!(
        roles(&[
            "TEST_NAME",
            "Loinc Code",
            "Result (numeric)",
            "U.O.M.",
            "Ref. Range",
            "Abnormal Flag",
            "Date Collected"
        ]),
        vec![
            Role::Name,
            Role::Code,
            Role::Value,
            Role::Unit,
            Role::Range,
            Role::Flag,
            Role::Date
        ]
    );
    assert_eq!(
        roles(&[
            "Analyse",
            "Wert",
            "Einheit",
            "Ref. unten",
            "Ref. oben",
            "Datum",
            "Labor"
        ]),
        vec![
            Role::Name,
            Role::Value,
            Role::Unit,
            Role::RangeLow,
            Role::RangeHigh,
            Role::Date,
            Role::Lab
        ]
    );
    // Of two date columns the collection date wins over the report date.
    let fields: Vec<String> = ["Test", "Result", "Reported", "Collected"]
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(header_roles(&fields).contains(&(Role::Date, 3)));
    assert_eq!(normalise("Réf. Unité"), "refunite");
}

#[test]
fn no_column_name_means_two_things() {
    let mut seen = std::collections::HashMap::new();
    for (role, names) in SYNONYMS {
        for name in *names {
            assert_eq!(normalise(name), *name, "{name} is written normalised");
            if let Some(other) = seen.insert(*name, *role) {
                panic!("{name} is both {other:?} and {role:?}");
            }
        }
    }
}

#[test]
fn loinc_codes_are_recognised_by_their_shape() {
    assert_eq!(loinc_code("2339-0").as_deref(), Some("2339-0"));
    assert_eq!(loinc_code(" loinc: 718-7 ").as_deref(), Some("718-7"));
    assert_eq!(loinc_code("12345-6").as_deref(), Some("12345-6"));
    assert_eq!(loinc_code("123456-7"), None);
    assert_eq!(loinc_code("GLU"), None);
    assert_eq!(loinc_code("2339-01"), None);
}

#[test]
fn thousands_commas_are_dropped_only_in_groups_of_three() {
    use crate::values::{drop_thousands_commas, has_decimal_point};
    assert_eq!(drop_thousands_commas("3,400"), "3400");
    assert_eq!(
        drop_thousands_commas("1,234,567.5 cells"),
        "1234567.5 cells"
    );
    assert_eq!(drop_thousands_commas("1,500-7,800"), "1500-7800");
    assert_eq!(drop_thousands_commas("5,2"), "5,2");
    assert_eq!(drop_thousands_commas("12,34"), "12,34");
    assert!(has_decimal_point("<0.01"));
    assert!(has_decimal_point("5.2 mmol/L"));
    assert!(!has_decimal_point("140"));
    assert!(!has_decimal_point("5,2"));
    assert!(!has_decimal_point("Negative."));
}
