//! Files that cannot be used, rows that cannot be used, and the odd things real exports do.

use super::*;

/// Deterministic noise for "binary" files.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 56) as u8
        })
        .collect()
}

#[test]
fn an_empty_file_is_refused() {
    assert_eq!(error_of(b""), "The file is empty.");
    assert_eq!(error_of(b"\xEF\xBB\xBF \r\n\r\n"), "The file is empty.");
}

#[test]
fn a_png_is_not_a_csv_text_file() {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0\0\0\x01\0\x08\x06\0\0\0".to_vec();
    png.extend(noise(2048, 7));
    let message = error_of(&png);
    assert!(
        message.starts_with("The file does not look like a CSV text file"),
        "{message}"
    );
}

#[test]
fn random_bytes_are_not_a_csv_text_file() {
    for seed in 1..5 {
        let message = error_of(&noise(2048, seed));
        assert!(
            message.contains("does not look like a CSV text file"),
            "{message}"
        );
    }
}

#[test]
fn utf16_files_are_refused_with_how_to_save_them() {
    let mut bytes = vec![0xFF, 0xFE];
    for unit in "Test\tResult\tDate\r\n".encode_utf16() {
        bytes.extend(unit.to_le_bytes());
    }
    let message = error_of(&bytes);
    assert!(message.contains("UTF-16"), "{message}");
    assert!(message.contains("CSV UTF-8"), "{message}");
}

#[test]
fn a_single_column_file_has_no_recognisable_header() {
    let message = error_of(b"Glucose 5.2 mmol/L\nSodium 140 mmol/L\n");
    assert_eq!(
        message,
        "Fasten could not find the column names. It looks for a test name column (such as \
         \"Test\") and a value column (such as \"Result\") in the first 11 lines, separated by \
         commas, semicolons, tabs or |; the first line was: \"Glucose 5.2 mmol/L\"."
    );
}

#[test]
fn a_header_separated_by_spaces_is_not_taken_for_one_column() {
    let message = error_of(b"Test Result Date\nGlucose 5.2 2024-03-05\n");
    assert!(
        message.starts_with("Fasten could not find the column names."),
        "{message}"
    );
    assert!(message.contains("\"Test Result Date\""), "{message}");
}

#[test]
fn a_header_without_a_value_column_says_so() {
    let message = error_of(b"Test,Units,Collected\nGlucose,mg/dL,2024-03-05\n");
    assert_eq!(
        message,
        "The column names on line 1 (\"Test\", \"Units\", \"Collected\") have a test name column \
         but no value column: Fasten looks for one named like \"Result\" or \"Value\". Name the \
         column that holds the results that way and import again."
    );
}

#[test]
fn a_header_without_a_date_column_says_so() {
    let message = error_of(b"Test;Result;Unit\nGlucose;5,2;mmol/L\n");
    assert!(
        message.starts_with(
            "The column names on line 1 (\"Test\", \"Result\", \"Unit\") have no date column"
        ),
        "{message}"
    );
}

#[test]
fn a_header_with_no_rows_says_so() {
    let message = error_of(b"Patient: Jane Doe\nTest,Result,Date\n\n");
    assert_eq!(
        message,
        "The file has column names on line 2 but no results below them."
    );
}

#[test]
fn rows_with_empty_values_are_skipped_with_their_row_numbers() {
    let imported = run("Test,Result,Units,Date\n\
         Glucose,5.2,mmol/L,2024-03-05\n\
         Sodium,,mmol/L,2024-03-05\n\
         Potassium,4.1,mmol/L,2024-03-05\n\
         ,,,\n\
         Chloride,  ,mmol/L,2024-03-05\n");
    assert_eq!(
        imported.warnings,
        vec![
            "Row 3: no value for \"Sodium\"; skipped.",
            "Row 6: no value for \"Chloride\"; skipped.",
        ]
    );
    assert_eq!(imported.observations().len(), 2);
    assert_eq!(imported.reports().len(), 1);
    assert_eq!(imported.reports()[0]["result"].as_array().unwrap().len(), 2);
}

#[test]
fn rows_without_a_usable_date_are_skipped_with_the_reason() {
    let imported = run("Test,Result,Collected\n\
         Glucose,5.2,\n\
         Sodium,140,soon\n\
         Potassium,4.1,2024-02-30\n\
         Chloride,101,2024-03-05\n");
    assert_eq!(
        imported.warnings,
        vec![
            "Row 2: no date in column \"Collected\" for \"Glucose\"; skipped.",
            "Row 3: \"soon\" in column \"Collected\" is not a date Fasten can read (it reads \
             dates like 2024-03-05, 03/05/2024 and 05.03.2024, with or without a time); skipped.",
            "Row 4: \"2024-02-30\" in column \"Collected\" is not a valid date (that day does not \
             exist); skipped.",
        ]
    );
    assert_eq!(imported.observations().len(), 1);
}

#[test]
fn a_file_with_no_usable_row_fails_and_quotes_the_first_problems() {
    let message = error_of(
        b"Test,Result,Date\nGlucose,,2024-03-05\nSodium,,2024-03-05\n,,2024-03-05\nCalcium,,2024-03-05\n",
    );
    assert_eq!(
        message,
        "No row had a usable result; nothing was imported. The first problems: Row 2: no value \
         for \"Glucose\"; skipped. Row 3: no value for \"Sodium\"; skipped. Row 4: no test \
         name; skipped."
    );
}

#[test]
fn qualitative_results_keep_their_words_and_code_positive_and_negative() {
    let imported = run("Test,Result,Date\n\
         HIV 1+2 Ab,Negative,2024-03-05\n\
         SARS-CoV-2 RNA,Not detected,2024-03-05\n\
         Strep A Ag,POSITIVE,2024-03-05\n\
         Urine protein,Trace,2024-03-05\n\
         Urine culture,See note,2024-03-05\n\
         Vitamin D,Pending,2024-03-05\n");
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    let coded = |name: &str| imported.observation(name)["valueCodeableConcept"].clone();
    assert_eq!(coded("HIV 1+2 Ab")["coding"][0]["code"], "260385009");
    assert_eq!(
        coded("HIV 1+2 Ab")["coding"][0]["system"],
        "http://snomed.info/sct"
    );
    assert_eq!(coded("SARS-CoV-2 RNA")["coding"][0]["code"], "260415000");
    assert_eq!(coded("Strep A Ag")["coding"][0]["code"], "10828004");
    assert_eq!(coded("Strep A Ag")["text"], "POSITIVE");
    assert_eq!(
        imported.observation("Urine protein")["valueString"],
        "Trace"
    );
    assert_eq!(
        imported.observation("Urine culture")["valueString"],
        "See note"
    );
    let pending = imported.observation("Vitamin D");
    assert_eq!(pending["status"], "registered");
    assert!(pending.get("valueString").is_none() && pending.get("valueQuantity").is_none());
    assert_eq!(imported.observation("Urine protein")["status"], "final");
}

#[test]
fn comparators_become_quantity_comparators() {
    let imported = run("Test,Result,Units,Reference Range,Date\n\
         CRP,<5,mg/L,<10,2024-03-05\n\
         eGFR,>60,mL/min/1.73m2,>60,2024-03-05\n\
         Troponin,<= 0.01,ng/mL,,2024-03-05\n");
    let crp = imported.observation("CRP");
    assert_eq!(crp["valueQuantity"]["comparator"], "<");
    assert_eq!(crp["valueQuantity"]["value"].as_f64(), Some(5.0));
    assert_eq!(crp["valueQuantity"]["code"], "mg/L");
    assert_eq!(
        crp["referenceRange"][0]["high"]["value"].as_f64(),
        Some(10.0)
    );
    assert!(crp["referenceRange"][0].get("low").is_none());
    let egfr = imported.observation("eGFR");
    assert_eq!(egfr["valueQuantity"]["comparator"], ">");
    assert_eq!(egfr["valueQuantity"]["code"], "mL/min/{1.73_m2}");
    assert_eq!(
        egfr["referenceRange"][0]["low"]["value"].as_f64(),
        Some(60.0)
    );
    let troponin = imported.observation("Troponin");
    assert_eq!(troponin["valueQuantity"]["comparator"], "<=");
    assert_eq!(troponin["valueQuantity"]["value"].as_f64(), Some(0.01));
}

#[test]
fn decimal_commas_are_read_in_semicolon_and_quoted_comma_files() {
    let semicolon = run("Analyse;Wert;Einheit;Referenzbereich;Datum\n\
         Kalium;4,1;mmol/l;3,5 - 5,1;05.03.2024\n");
    let kalium = semicolon.observation("Kalium");
    assert_eq!(kalium["valueQuantity"]["value"].as_f64(), Some(4.1));
    assert_eq!(kalium["valueQuantity"]["code"], "mmol/L");
    assert_eq!(
        kalium["referenceRange"][0]["low"]["value"].as_f64(),
        Some(3.5)
    );
    assert_eq!(
        kalium["referenceRange"][0]["high"]["value"].as_f64(),
        Some(5.1)
    );
    assert_eq!(kalium["effectiveDateTime"], "2024-03-05");
    let quoted = run("Test,Result,Unit,Date\nGlucose,\"5,2\",mmol/L,2024-03-05\n");
    assert_eq!(
        quoted.observation("Glucose")["valueQuantity"]["value"].as_f64(),
        Some(5.2)
    );
}

#[test]
fn quoted_fields_may_hold_delimiters_quotes_and_line_breaks() {
    let imported = run("Test,Result,Comment,Date\n\
         \"Glucose, fasting\",99,\"said \"\"fasted\"\"\nsince 8pm\",2024-03-05\n\
         Sodium,140,,2024-03-05\n");
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    assert_eq!(
        imported.observation("Glucose, fasting")["valueQuantity"]["value"].as_f64(),
        Some(99.0)
    );
    assert_eq!(imported.observations().len(), 2);
}

#[test]
fn a_quote_that_is_never_closed_is_reported_with_its_row() {
    let mut text =
        String::from("Test,Result,Date\nGlucose,5.2,2024-03-05\nSodium,\"140,2024-03-05\n");
    for _ in 0..30 {
        text.push_str("Potassium,4.1,2024-03-05\n");
    }
    let message = error_of(text.as_bytes());
    assert!(
        message.starts_with("Row 3: a quotation mark in column \"Result\""),
        "{message}"
    );
}

#[test]
fn a_unit_fasten_does_not_know_keeps_the_number_and_the_unit_text() {
    let imported = run(
        "Test,Result,Units,Date\nOdd test,12.5,furlongs/fortnight,2024-03-05\nNo unit,3,,2024-03-05\n",
    );
    let odd = &imported.observation("Odd test")["valueQuantity"];
    assert_eq!(odd["value"].as_f64(), Some(12.5));
    assert_eq!(odd["unit"], "furlongs/fortnight");
    assert!(odd.get("system").is_none() && odd.get("code").is_none());
    let bare = &imported.observation("No unit")["valueQuantity"];
    assert_eq!(bare.as_object().unwrap().len(), 1, "{bare}");
}

#[test]
fn a_unit_inside_the_value_cell_is_used_when_there_is_no_unit_column() {
    let imported = run("Test,Result,Date\nGlucose,5.2 mmol/L,2024-03-05\n");
    let quantity = &imported.observation("Glucose")["valueQuantity"];
    assert_eq!(quantity["value"].as_f64(), Some(5.2));
    assert_eq!(quantity["unit"], "mmol/L");
    assert_eq!(quantity["code"], "mmol/L");
}

#[test]
fn the_later_of_two_rows_for_the_same_test_and_time_is_kept() {
    let imported = run("Test,LOINC,Result,Date\n\
         Glucose,2339-0,5.2,2024-03-05 08:00\n\
         Sodium,2951-2,140,2024-03-05 08:00\n\
         Glucose (repeat),2339-0,5.4,2024-03-05 08:00\n\
         Glucose,2339-0,6.1,2024-03-05 14:00\n");
    assert_eq!(
        imported.warnings,
        vec![
            "Rows 2 and 4 are the same test, \"Glucose (repeat)\" on 2024-03-05 08:00:00; row 4 was kept."
        ]
    );
    let glucose: Vec<f64> = imported
        .observations()
        .iter()
        .filter(|o| o["code"]["coding"][0]["code"] == "2339-0")
        .map(|o| o["valueQuantity"]["value"].as_f64().unwrap())
        .collect();
    assert_eq!(
        glucose,
        vec![5.4, 6.1],
        "the afternoon result is another result"
    );
}

#[test]
fn a_repeated_header_line_inside_the_file_is_skipped() {
    let imported =
        run("Test,Result,Date\nGlucose,5.2,2024-03-05\nTest,Result,Date\nSodium,140,2024-03-05\n");
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    assert_eq!(imported.observations().len(), 2);
}

#[test]
fn windows_1252_files_from_excel_are_read() {
    let mut bytes = b"Analyse;Wert;Einheit;Datum\n".to_vec();
    bytes.extend(b"H\xE4moglobin;14,2;g/dl;05.03.2024\n");
    let imported = run_with(&bytes, "text/csv").unwrap();
    let hb = imported.observation("Hämoglobin");
    assert_eq!(hb["valueQuantity"]["value"].as_f64(), Some(14.2));
    assert_eq!(hb["valueQuantity"]["code"], "g/dL");
}

#[test]
fn flags_become_interpretation_codes() {
    let imported = run("Test,Result,Flag,Date\n\
         A,1,H,2024-03-05\nB,1,Low,2024-03-05\nC,1,HH,2024-03-05\nD,1,critical,2024-03-05\n\
         E,1,N,2024-03-05\nF,1,*,2024-03-05\nG,1,,2024-03-05\nH,1,see comment,2024-03-05\n");
    let code = |name: &str| {
        imported.observation(name)["interpretation"][0]["coding"][0]["code"]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(code("A").as_deref(), Some("H"));
    assert_eq!(code("B").as_deref(), Some("L"));
    assert_eq!(code("C").as_deref(), Some("HH"));
    assert_eq!(code("D").as_deref(), Some("AA"));
    assert_eq!(code("E").as_deref(), Some("N"));
    assert_eq!(code("F").as_deref(), Some("A"));
    assert!(imported.observation("G").get("interpretation").is_none());
    assert_eq!(
        imported.observation("H")["interpretation"][0]["text"],
        "see comment"
    );
    assert_eq!(
        imported.observation("A")["interpretation"][0]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
    );
}

#[test]
fn ambiguous_slashed_dates_need_the_users_order() {
    let csv = "Test,Result,Collected\nGlucose,5.2,03/05/2024\nSodium,140,04/06/2024 9:15 AM\n";
    let message = error_of(csv.as_bytes());
    assert_eq!(
        message,
        "Ambiguous dates: The dates in column \"Collected\" could be month/day or day/month (for \
         example 03/05/2024 on row 2). Choose the date order and import again."
    );
    let day_first = run_with(csv.as_bytes(), "text/csv; dates=dmy").unwrap();
    assert_eq!(
        day_first.observation("Glucose")["effectiveDateTime"],
        "2024-05-03"
    );
    assert_eq!(
        day_first.observation("Sodium")["effectiveDateTime"],
        "2024-06-04"
    );
    let month_first = run_with(csv.as_bytes(), "text/csv;dates=\"mdy\"").unwrap();
    assert_eq!(
        month_first.observation("Glucose")["effectiveDateTime"],
        "2024-03-05"
    );
    assert!(month_first.warnings.is_empty());
}

#[test]
fn one_unambiguous_date_decides_the_whole_column() {
    let day_first = run("Test,Result,Date\nGlucose,5.2,03/05/2024\nSodium,140,25/05/2024\n");
    assert_eq!(
        day_first.observation("Glucose")["effectiveDateTime"],
        "2024-05-03"
    );
    let month_first = run("Test,Result,Date\nGlucose,5.2,03/05/2024\nSodium,140,05/25/2024\n");
    assert_eq!(
        month_first.observation("Glucose")["effectiveDateTime"],
        "2024-03-05"
    );
    let dotted = run("Test,Result,Date\nGlucose,5.2,03.05.2024\n");
    assert_eq!(
        dotted.observation("Glucose")["effectiveDateTime"],
        "2024-05-03"
    );
}

#[test]
fn dates_that_contradict_each_other_or_the_users_choice_are_reported() {
    let message = error_of(b"Test,Result,Date\nGlucose,5.2,25/05/2024\nSodium,140,05/25/2024\n");
    assert_eq!(
        message,
        "The dates in column \"Date\" mix day/month and month/day: row 2 has 25/05/2024 but row \
         3 has 05/25/2024. Write every date of the column the same way and import again."
    );
    let overruled = run_with(
        b"Test,Result,Date\nGlucose,5.2,03/05/2024\nSodium,140,05/25/2024\n",
        "text/csv; dates=dmy",
    )
    .unwrap();
    assert_eq!(
        overruled.observation("Glucose")["effectiveDateTime"],
        "2024-03-05"
    );
    assert_eq!(
        overruled.warnings,
        vec![
            "You chose day/month dates, but row 3 of column \"Date\" has 05/25/2024, which can only be month/day; the dates were read as month/day."
        ]
    );
}

#[test]
fn times_are_kept_only_with_their_zone() {
    let imported = run("Test,Result,Date\n\
         A,1,2024-03-05T08:30:00Z\n\
         B,1,2024-03-05 08:30+01:00\n\
         C,1,2024-03-05 08:30\n\
         D,1,03/25/2024 11:59 PM\n\
         E,1,2024-03-05T08:30:00.123-0500\n");
    let effective = |name: &str| imported.observation(name)["effectiveDateTime"].clone();
    assert_eq!(effective("A"), "2024-03-05T08:30:00Z");
    assert_eq!(effective("B"), "2024-03-05T08:30:00+01:00");
    assert_eq!(effective("C"), "2024-03-05");
    assert_eq!(effective("D"), "2024-03-25");
    assert_eq!(effective("E"), "2024-03-05T08:30:00.123-05:00");
}

#[test]
fn the_header_is_found_below_a_preamble_and_its_delimiter_sniffed() {
    let imported = run("Patient: Doe, Jane\n\
         Exported on 2024-05-01\n\
         \n\
         Component|Value|UOM|Specimen Date|Performing Lab|Ordered By|Specimen|Order Name\n\
         Hemoglobin|13.1|g/dL|2024-03-05|Acme Labs|Dr. Who|Blood|CBC\n\
         Platelets|250|x10^3/uL|2024-03-05|Acme Labs|Dr. Who|Blood|CBC\n");
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    let hb = imported.observation("Hemoglobin");
    assert_eq!(hb["performer"][0]["display"], "Acme Labs");
    assert_eq!(hb["specimen"]["display"], "Blood");
    assert_eq!(
        imported.observation("Platelets")["valueQuantity"]["code"],
        "10*3/uL"
    );
    let reports = imported.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["code"]["text"], "CBC");
    assert_eq!(reports[0]["performer"][0]["display"], "Acme Labs");
    assert_eq!(reports[0]["note"][0]["text"], "Ordered by Dr. Who");
    assert_eq!(reports[0]["effectiveDateTime"], "2024-03-05");
}

#[test]
fn a_non_loinc_code_is_not_claimed_as_loinc() {
    let imported = run(
        "Test,Code,Result,Date\nGlucose,GLU,5.2,2024-03-05\nSodium,LOINC:2951-2,140,2024-03-05\n",
    );
    assert!(
        imported.observation("Glucose")["code"]
            .get("coding")
            .is_none()
    );
    assert_eq!(imported.observation("Glucose")["code"]["text"], "Glucose");
    assert_eq!(
        imported.observation("Sodium")["code"]["coding"][0]["code"],
        "2951-2"
    );
}

#[test]
fn a_comma_file_with_decimal_points_groups_thousands_with_commas() {
    let imported = run("Test,Result,Units,Reference Range,Date\n\
         Hemoglobin,13.5,g/dL,13.5-17.5,2024-03-05\n\
         Neutrophils (absolute),\"3,400\",cells/uL,\"1,500-7,800\",2024-03-05\n");
    let neutrophils = imported.observation("Neutrophils (absolute)");
    assert_eq!(neutrophils["valueQuantity"]["value"].as_f64(), Some(3400.0));
    assert_eq!(neutrophils["valueQuantity"]["code"], "{cells}/uL");
    assert_eq!(
        neutrophils["referenceRange"][0]["low"]["value"].as_f64(),
        Some(1500.0)
    );
    assert_eq!(
        neutrophils["referenceRange"][0]["high"]["value"].as_f64(),
        Some(7800.0)
    );
}
