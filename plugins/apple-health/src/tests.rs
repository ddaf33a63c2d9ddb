//! The importer run natively against in-memory files, with the SDK's FakeHost as the host.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom, Write as _};

use fasten_connector::testing::{FakeFile, FakeHost};
use fasten_connector::{ConnectorError, File, MAX_BATCH_BYTES, MAX_BATCH_RESOURCES};
use serde_json::Value;

use crate::AppleHealth;
use crate::import::check_inflation;
use crate::source::SeekableFile;

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

/// An upload the host serves in chunks of at most 64 KiB.
fn upload(name: &str, bytes: impl Into<Vec<u8>>) -> FakeFile {
    FakeFile::new(name, "application/xml", bytes).in_chunks_of(64 * 1024)
}

struct Run {
    resources: Vec<Value>,
    warnings: Vec<String>,
    /// What the run did: batches, progress, the file's rewinds.
    host: FakeHost,
}

fn run(bytes: impl Into<Vec<u8>>) -> Result<Run, ConnectorError> {
    run_file(upload("export.xml", bytes))
}

fn run_file(file: FakeFile) -> Result<Run, ConnectorError> {
    let mut host = FakeHost::new();
    let warnings = host.import_file::<AppleHealth>(file)?.warnings;
    Ok(Run {
        resources: host.resources(),
        warnings,
        host,
    })
}

fn error_of(bytes: impl Into<Vec<u8>>) -> String {
    match run(bytes) {
        Err(ConnectorError::InvalidInput(message)) => message,
        Err(other) => panic!("expected invalid input, got {other:?}"),
        Ok(run) => panic!("expected an error, got {} resources", run.resources.len()),
    }
}

fn sample_export() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/apple-health/export.xml"
    );
    std::fs::read(path).expect("the Apple Health sample is in shared/testdata")
}

fn loinc_of(resource: &Value) -> Option<&str> {
    resource["code"]["coding"]
        .as_array()?
        .iter()
        .find(|c| c["system"] == LOINC)?["code"]
        .as_str()
}

fn with_loinc<'a>(resources: &'a [Value], code: &str) -> Vec<&'a Value> {
    resources
        .iter()
        .filter(|r| loinc_of(r) == Some(code))
        .collect()
}

fn with_text<'a>(resources: &'a [Value], text: &str) -> Vec<&'a Value> {
    resources
        .iter()
        .filter(|r| r["code"]["text"] == text)
        .collect()
}

fn category(resource: &Value) -> &str {
    resource["category"][0]["coding"][0]["code"]
        .as_str()
        .unwrap()
}

fn value(resource: &Value) -> f64 {
    resource["valueQuantity"]["value"].as_f64().unwrap()
}

fn ucum(resource: &Value) -> &str {
    assert_eq!(resource["valueQuantity"]["system"], UCUM);
    resource["valueQuantity"]["code"].as_str().unwrap()
}

/// Wraps records in an export's frame.
fn export_with(records: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<HealthData locale=\"en_US\">\n \
         <ExportDate value=\"2024-01-01 10:00:00 +0100\"/>\n{records}</HealthData>\n"
    )
}

fn record(kind: &str, unit: &str, value: &str, start: &str, source: &str) -> String {
    format!(
        "<Record type=\"{kind}\" sourceName=\"{source}\" unit=\"{unit}\" \
         creationDate=\"{start}\" startDate=\"{start}\" endDate=\"{start}\" value=\"{value}\"/>\n"
    )
}

// ---------------------------------------------------------------------------------------------
// The public sample (dogsheep/healthkit-to-sqlite tests/export.xml)

#[test]
fn the_sample_bmi_record_becomes_a_bmi_observation() {
    let run = run(sample_export()).unwrap();
    let bmi = with_loinc(&run.resources, "39156-5");
    assert_eq!(bmi.len(), 1);
    let bmi = bmi[0];
    assert_eq!(bmi["resourceType"], "Observation");
    assert_eq!(bmi["status"], "final");
    assert_eq!(category(bmi), "vital-signs");
    assert_eq!(value(bmi), 22.5312);
    assert_eq!(ucum(bmi), "kg/m2");
    assert_eq!(bmi["effectiveDateTime"], "2016-04-18T08:25:32-07:00");
    assert_eq!(bmi["code"]["text"], "Body mass index");
    assert_eq!(bmi["device"]["display"], "Health Mate");
    assert!(bmi["id"].as_str().unwrap().starts_with("apple-"));
}

#[test]
fn the_sample_heart_rate_becomes_a_day_summary_of_one_reading() {
    let run = run(sample_export()).unwrap();
    let heart_rate = with_loinc(&run.resources, "8867-4");
    assert_eq!(heart_rate.len(), 1);
    let day = heart_rate[0];
    assert_eq!(category(day), "vital-signs");
    assert_eq!(value(day), 72.0);
    assert_eq!(ucum(day), "/min");
    assert_eq!(day["effectivePeriod"]["start"], "2018-09-10T02:28:55-07:00");
    assert_eq!(day["effectivePeriod"]["end"], "2018-09-10T02:28:55-07:00");
    assert_eq!(day["note"][0]["text"], "Mean of 1 reading");
    assert_eq!(day["component"][0]["code"]["text"], "Minimum heart rate");
    assert_eq!(day["component"][0]["valueQuantity"]["value"], 72);
    assert_eq!(day["component"][1]["code"]["text"], "Maximum heart rate");
    assert_eq!(day["component"][1]["valueQuantity"]["value"], 72);
    // The escaped `device` attribute (`&lt;&lt;HKDevice: ...&gt;`) is read past, not shown; the
    // source name keeps the no-break space Apple wrote in it.
    assert_eq!(day["device"]["display"], "Apple\u{a0}Watch");
}

#[test]
fn the_sample_emits_two_observations_and_warns_only_about_its_workout() {
    let run = run(sample_export()).unwrap();
    assert_eq!(run.resources.len(), 2, "BMI and one heart-rate day");
    assert_eq!(
        run.warnings,
        ["Skipped 1 workout: Fasten does not import workouts yet."]
    );
    let total = sample_export().len() as u64;
    assert_eq!(run.host.progress.last(), Some(&(total, Some(total))));
}

#[test]
fn importing_the_same_export_again_gives_the_same_ids() {
    let ids = |run: Run| -> Vec<String> {
        run.resources
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = ids(run(sample_export()).unwrap());
    let second = ids(run(sample_export()).unwrap());
    assert_eq!(first, second);
    assert_ne!(first[0], first[1]);
}

#[test]
fn a_corrected_value_keeps_its_id_but_another_time_gets_a_new_one() {
    let weight = |value: &str, start: &str| {
        let xml = export_with(&record(
            "HKQuantityTypeIdentifierBodyMass",
            "kg",
            value,
            start,
            "Scale",
        ));
        run(xml).unwrap().resources[0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let original = weight("70.1", "2024-01-02 07:00:00 +0100");
    assert_eq!(original, weight("70.4", "2024-01-02 07:00:00 +0100"));
    assert_ne!(original, weight("70.1", "2024-01-03 07:00:00 +0100"));
}

// ---------------------------------------------------------------------------------------------
// A generated export: the shape of a real one, with known sums

const WATCH: &str = "Anna’s Apple Watch";
const PHONE: &str = "Anna’s iPhone";

/// What [`generate`] put in, for checking what comes out.
#[derive(Default)]
struct Expected {
    /// (day, source) -> readings
    heart_rate: BTreeMap<(String, &'static str), Vec<u32>>,
    /// (day, source) -> steps
    steps: BTreeMap<(String, &'static str), u64>,
    blood_pressure: Vec<(String, u32, u32)>,
    sleep: usize,
    weights: usize,
    workouts: usize,
}

/// Minutes after 2023-03-28 00:00 (Pacific daylight time) as Apple writes them; spans into
/// April so that days cross a month end.
fn apple_time(minutes: usize) -> String {
    let day_index = minutes / (24 * 60);
    let (month, day) = if day_index < 4 {
        (3, 28 + day_index)
    } else {
        (4, day_index - 3)
    };
    let within = minutes % (24 * 60);
    format!(
        "2023-{month:02}-{day:02} {:02}:{:02}:{:02} -0700",
        within / 60,
        within % 60,
        (minutes * 7) % 60
    )
}

/// The DTD Apple puts at the top of every export.
const APPLE_DOCTYPE: &str = include_str!("testdata/doctype.xml");

const DEVICE: &str = "&lt;&lt;HKDevice: 0x283a4d0e0&gt;, name:Apple Watch, manufacturer:Apple Inc., \
                      model:Watch, hardware:Watch6,2, software:9.4&gt;";

/// A realistic export of about `records` records: heart rate every few minutes from a watch,
/// steps from a phone and a watch, sleep analysis (not mapped), blood pressure as Apple writes
/// it (a Correlation repeating two top-level records), weights, and workouts with routes.
fn generate(records: usize) -> (String, Expected) {
    let mut expected = Expected::default();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(APPLE_DOCTYPE);
    xml.push_str(
        "<HealthData locale=\"en_US\">\n <ExportDate value=\"2023-04-10 09:00:00 -0700\"/>\n",
    );
    xml.push_str(
        " <Me HKCharacteristicTypeIdentifierDateOfBirth=\"1985-06-01\" \
         HKCharacteristicTypeIdentifierBiologicalSex=\"HKBiologicalSexFemale\" \
         HKCharacteristicTypeIdentifierBloodType=\"HKBloodTypeNotSet\" \
         HKCharacteristicTypeIdentifierFitzpatrickSkinType=\"HKFitzpatrickSkinTypeNotSet\" \
         HKCharacteristicTypeIdentifierCardioFitnessMedicationsUse=\"None\"/>\n",
    );
    for i in 0..records {
        let at = apple_time(i * 3);
        let day = at[..10].to_owned();
        match i % 10 {
            0..=5 => {
                let bpm = 55 + (i * 37 % 71) as u32;
                expected
                    .heart_rate
                    .entry((day, WATCH))
                    .or_default()
                    .push(bpm);
                let _ = writeln!(
                    xml,
                    " <Record type=\"HKQuantityTypeIdentifierHeartRate\" sourceName=\"{WATCH}\" \
                     sourceVersion=\"9.4\" device=\"{DEVICE}\" unit=\"count/min\" \
                     creationDate=\"{at}\" startDate=\"{at}\" endDate=\"{at}\" value=\"{bpm}\">\n  \
                     <MetadataEntry key=\"HKMetadataKeyHeartRateMotionContext\" value=\"0\"/>\n \
                     </Record>"
                );
            }
            6 | 7 => {
                let source = if i % 10 == 6 { PHONE } else { WATCH };
                let steps = 10 + (i * 13 % 400) as u64;
                *expected.steps.entry((day, source)).or_default() += steps;
                let _ = writeln!(
                    xml,
                    " <Record type=\"HKQuantityTypeIdentifierStepCount\" sourceName=\"{source}\" \
                     sourceVersion=\"16.3\" unit=\"count\" creationDate=\"{at}\" \
                     startDate=\"{at}\" endDate=\"{at}\" value=\"{steps}\"/>"
                );
            }
            8 => {
                expected.sleep += 1;
                let _ = writeln!(
                    xml,
                    " <Record type=\"HKCategoryTypeIdentifierSleepAnalysis\" sourceName=\"{WATCH}\" \
                     creationDate=\"{at}\" startDate=\"{at}\" endDate=\"{at}\" \
                     value=\"HKCategoryValueSleepAnalysisAsleepCore\"/>"
                );
            }
            _ if i % 20 == 9 => {
                let (systolic, diastolic) = (110 + (i % 30) as u32, 70 + (i % 15) as u32);
                expected
                    .blood_pressure
                    .push((at.clone(), systolic, diastolic));
                let half = |kind: &str, value: u32| {
                    format!(
                        "<Record type=\"HKQuantityTypeIdentifierBloodPressure{kind}\" \
                         sourceName=\"Omron Connect\" sourceVersion=\"7\" unit=\"mmHg\" \
                         creationDate=\"{at}\" startDate=\"{at}\" endDate=\"{at}\" \
                         value=\"{value}\"/>"
                    )
                };
                let _ = writeln!(
                    xml,
                    " {}\n {}\n <Correlation type=\"HKCorrelationTypeIdentifierBloodPressure\" \
                     sourceName=\"Omron Connect\" sourceVersion=\"7\" creationDate=\"{at}\" \
                     startDate=\"{at}\" endDate=\"{at}\">\n  \
                     <MetadataEntry key=\"HKWasUserEntered\" value=\"0\"/>\n  {}\n  {}\n \
                     </Correlation>",
                    half("Systolic", systolic),
                    half("Diastolic", diastolic),
                    half("Systolic", systolic),
                    half("Diastolic", diastolic),
                );
            }
            _ if i % 40 == 19 => {
                expected.workouts += 1;
                let _ = writeln!(
                    xml,
                    " <Workout workoutActivityType=\"HKWorkoutActivityTypeWalking\" \
                     duration=\"20\" durationUnit=\"min\" sourceName=\"{WATCH}\" \
                     startDate=\"{at}\" endDate=\"{at}\">\n  <WorkoutRoute sourceName=\"{PHONE}\" \
                     startDate=\"{at}\" endDate=\"{at}\">\n   <Location date=\"{at}\" \
                     latitude=\"52.5\" longitude=\"13.4\"/>\n  </WorkoutRoute>\n </Workout>"
                );
            }
            _ => {
                expected.weights += 1;
                let _ = writeln!(
                    xml,
                    " <Record type=\"HKQuantityTypeIdentifierBodyMass\" \
                     sourceName=\"Withings &amp; Co\" unit=\"kg\" creationDate=\"{at}\" \
                     startDate=\"{at}\" endDate=\"{at}\" value=\"{}.{}\">\n  \
                     <MetadataEntry key=\"Withings Link\" \
                     value=\"withings-bd2://timeline/measure?userid=1&amp;type=1\"/>\n \
                     </Record>",
                    60 + i % 7,
                    i % 10
                );
            }
        }
    }
    xml.push_str(
        " <ActivitySummary dateComponents=\"2023-03-28\" activeEnergyBurned=\"590.252\" \
         activeEnergyBurnedGoal=\"630\" activeEnergyBurnedUnit=\"kcal\"/>\n</HealthData>\n",
    );
    (xml, expected)
}

fn generated_export(records: usize) -> String {
    generate(records).0
}

#[test]
fn heart_rate_is_one_observation_per_day_with_exact_mean_min_and_max() {
    let (xml, expected) = generate(4000);
    let run = run(xml).unwrap();
    let days = with_loinc(&run.resources, "8867-4");
    assert_eq!(days.len(), expected.heart_rate.len());
    assert!(days.len() >= 8, "the export spans at least eight days");
    for ((day, source), readings) in &expected.heart_rate {
        let found: Vec<_> = days
            .iter()
            .filter(|r| {
                r["effectivePeriod"]["start"]
                    .as_str()
                    .unwrap()
                    .starts_with(day)
            })
            .collect();
        assert_eq!(found.len(), 1, "{day}");
        let observation = found[0];
        let sum: u32 = readings.iter().sum();
        let mean = (f64::from(sum) / readings.len() as f64 * 10.0).round() / 10.0;
        assert_eq!(value(observation), mean, "{day}");
        assert_eq!(observation["device"]["display"], *source);
        assert_eq!(
            observation["component"][0]["valueQuantity"]["value"],
            *readings.iter().min().unwrap()
        );
        assert_eq!(
            observation["component"][1]["valueQuantity"]["value"],
            *readings.iter().max().unwrap()
        );
        assert_eq!(
            observation["note"][0]["text"],
            format!(
                "Mean of {} readings",
                crate::import::thousands(readings.len() as u64)
            )
        );
    }
}

#[test]
fn steps_are_summed_per_day_and_per_source() {
    let (xml, expected) = generate(4000);
    let run = run(xml).unwrap();
    let steps = with_loinc(&run.resources, "41950-7");
    assert_eq!(steps.len(), expected.steps.len());
    let mut found = BTreeMap::new();
    for observation in steps {
        assert_eq!(category(observation), "activity");
        assert_eq!(ucum(observation), "{steps}");
        assert_eq!(observation["valueQuantity"]["unit"], "steps");
        let day = observation["effectiveDateTime"]
            .as_str()
            .unwrap()
            .to_owned();
        let source = observation["device"]["display"]
            .as_str()
            .unwrap()
            .to_owned();
        found.insert(
            (day, source),
            observation["valueQuantity"]["value"].as_u64().unwrap(),
        );
    }
    let wanted: BTreeMap<(String, String), u64> = expected
        .steps
        .iter()
        .map(|((day, source), steps)| ((day.clone(), source.to_string()), *steps))
        .collect();
    assert_eq!(found, wanted);
    assert!(
        found.keys().any(|(day, _)| day == "2023-04-01"),
        "days cross into April"
    );
}

#[test]
fn blood_pressure_written_twice_by_apple_becomes_one_panel_per_reading() {
    let (xml, expected) = generate(4000);
    let run = run(xml).unwrap();
    let panels = with_loinc(&run.resources, "85354-9");
    assert_eq!(panels.len(), expected.blood_pressure.len());
    for (at, systolic, diastolic) in &expected.blood_pressure {
        let fhir_time = format!("{}T{}-07:00", &at[..10], &at[11..19]);
        let panel = panels
            .iter()
            .find(|p| p["effectiveDateTime"] == fhir_time.as_str())
            .unwrap_or_else(|| panic!("a panel at {fhir_time}"));
        assert_eq!(category(panel), "vital-signs");
        let components = panel["component"].as_array().unwrap();
        assert_eq!(components.len(), 2);
        assert_eq!(components[0]["code"]["coding"][0]["system"], LOINC);
        assert_eq!(components[0]["code"]["coding"][0]["code"], "8480-6");
        assert_eq!(components[0]["valueQuantity"]["value"], *systolic);
        assert_eq!(components[1]["code"]["coding"][0]["code"], "8462-4");
        assert_eq!(components[1]["valueQuantity"]["value"], *diastolic);
        for part in components {
            assert_eq!(part["valueQuantity"]["unit"], "mm[Hg]");
            assert_eq!(part["valueQuantity"]["code"], "mm[Hg]");
            assert_eq!(part["valueQuantity"]["system"], UCUM);
        }
    }
    assert!(
        with_loinc(&run.resources, "8480-6").is_empty(),
        "no loose halves"
    );
}

#[test]
fn the_generated_export_skips_sleep_and_workouts_with_one_warning_each() {
    let (xml, expected) = generate(4000);
    let run = run(xml).unwrap();
    assert_eq!(
        run.warnings,
        [
            format!(
                "Skipped {} records of a type Fasten does not map yet: \
                 HKCategoryTypeIdentifierSleepAnalysis ({}).",
                expected.sleep, expected.sleep
            ),
            format!(
                "Skipped {} workouts: Fasten does not import workouts yet.",
                expected.workouts
            ),
        ]
    );
    let weights = with_loinc(&run.resources, "29463-7");
    assert_eq!(weights.len(), expected.weights);
    assert_eq!(weights[0]["device"]["display"], "Withings & Co");
    assert_eq!(
        run.resources.len(),
        expected.heart_rate.len()
            + expected.steps.len()
            + expected.blood_pressure.len()
            + expected.weights
    );
}

#[test]
fn batches_stay_within_the_hosts_limits_and_progress_reaches_the_end() {
    let xml = generated_export(20_000);
    let size = xml.len() as u64;
    let run = run(xml).unwrap();
    let host = &run.host;
    assert!(host.batches.len() > 1);
    let mut sent = host.emitted.iter();
    for &batch in &host.batches {
        assert!(batch <= MAX_BATCH_RESOURCES);
        assert!(sent.by_ref().take(batch).map(String::len).sum::<usize>() <= MAX_BATCH_BYTES);
    }
    let progress = &host.progress;
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress only moves forward"
    );
    assert_eq!(progress.last(), Some(&(size, Some(size))));
}

// ---------------------------------------------------------------------------------------------
// Units and conversions

#[test]
fn fractions_become_percentages_and_units_become_ucum() {
    let at = "2024-01-02 07:00:00 +0100";
    let records = [
        record(
            "HKQuantityTypeIdentifierBodyFatPercentage",
            "%",
            "0.21",
            at,
            "Scale",
        ),
        record(
            "HKQuantityTypeIdentifierOxygenSaturation",
            "%",
            "0.97",
            at,
            "Watch",
        ),
        record(
            "HKQuantityTypeIdentifierBodyMass",
            "lb",
            "154.3",
            at,
            "Scale",
        ),
        record("HKQuantityTypeIdentifierHeight", "in", "67", at, "Health"),
        record(
            "HKQuantityTypeIdentifierBodyTemperature",
            "degF",
            "98.6",
            at,
            "Thermo",
        ),
        record(
            "HKQuantityTypeIdentifierBloodGlucose",
            "mmol<180.1558800000541>/L",
            "5.4",
            at,
            "Meter",
        ),
        record(
            "HKQuantityTypeIdentifierBloodGlucose",
            "mg/dL",
            "97",
            "2024-01-03 07:00:00 +0100",
            "Meter",
        ),
        record(
            "HKQuantityTypeIdentifierRestingHeartRate",
            "count/min",
            "58",
            at,
            "Watch",
        ),
        record(
            "HKQuantityTypeIdentifierVO2Max",
            "mL/min·kg",
            "41.2",
            at,
            "Watch",
        ),
    ]
    .concat();
    let run = run(export_with(&records)).unwrap();
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    let one = |code: &str| -> &Value {
        let found = with_loinc(&run.resources, code);
        assert_eq!(found.len(), 1, "{code}");
        found[0]
    };
    assert_eq!((value(one("41982-0")), ucum(one("41982-0"))), (21.0, "%"));
    assert_eq!((value(one("59408-5")), ucum(one("59408-5"))), (97.0, "%"));
    assert_eq!(
        (value(one("29463-7")), ucum(one("29463-7"))),
        (154.3, "[lb_av]")
    );
    assert_eq!(
        (value(one("8302-2")), ucum(one("8302-2"))),
        (67.0, "[in_i]")
    );
    assert_eq!(
        (value(one("8310-5")), ucum(one("8310-5"))),
        (98.6, "[degF]")
    );
    assert_eq!(
        (value(one("15074-8")), ucum(one("15074-8"))),
        (5.4, "mmol/L")
    );
    assert_eq!((value(one("2339-0")), ucum(one("2339-0"))), (97.0, "mg/dL"));
    assert_eq!(
        (value(one("40443-4")), ucum(one("40443-4"))),
        (58.0, "/min")
    );
    let vo2 = with_text(&run.resources, "VO2 max");
    assert_eq!((value(vo2[0]), ucum(vo2[0])), (41.2, "mL/(kg.min)"));
    assert_eq!(
        vo2[0]["code"]["coding"][0]["code"],
        "HKQuantityTypeIdentifierVO2Max"
    );
    assert!(run.resources.iter().all(|r| category(r) == "vital-signs"));
}

#[test]
fn daily_sums_convert_a_days_later_units_to_its_first() {
    let day = |time: &str| format!("2024-05-01 {time} +0200");
    let records = [
        record(
            "HKQuantityTypeIdentifierDistanceWalkingRunning",
            "km",
            "1.5",
            &day("08:00:00"),
            "Phone",
        ),
        record(
            "HKQuantityTypeIdentifierDistanceWalkingRunning",
            "mi",
            "1",
            &day("09:00:00"),
            "Phone",
        ),
        record(
            "HKQuantityTypeIdentifierDistanceWalkingRunning",
            "mi",
            "2",
            &day("09:00:00"),
            "Watch",
        ),
        record(
            "HKQuantityTypeIdentifierActiveEnergyBurned",
            "kcal",
            "12.5",
            &day("08:00:00"),
            "Watch",
        ),
        record(
            "HKQuantityTypeIdentifierActiveEnergyBurned",
            "Cal",
            "7.5",
            &day("08:10:00"),
            "Watch",
        ),
        record(
            "HKQuantityTypeIdentifierAppleExerciseTime",
            "min",
            "3",
            &day("08:00:00"),
            "Watch",
        ),
        record(
            "HKQuantityTypeIdentifierAppleExerciseTime",
            "min",
            "4",
            "2024-05-02 00:30:00 +0200",
            "Watch",
        ),
    ]
    .concat();
    let run = run(export_with(&records)).unwrap();
    let distance = with_loinc(&run.resources, "41953-1");
    assert_eq!(distance.len(), 2);
    let by_source = |source: &str| {
        *distance
            .iter()
            .find(|r| r["device"]["display"] == source)
            .unwrap()
    };
    assert_eq!(
        (value(by_source("Phone")), ucum(by_source("Phone"))),
        (3.109, "km")
    );
    assert_eq!(
        (value(by_source("Watch")), ucum(by_source("Watch"))),
        (2.0, "[mi_i]")
    );
    assert_eq!(by_source("Phone")["effectiveDateTime"], "2024-05-01");
    let energy = with_loinc(&run.resources, "41981-2");
    assert_eq!((value(energy[0]), ucum(energy[0])), (20.0, "kcal"));
    assert_eq!(category(energy[0]), "activity");
    let exercise = with_text(&run.resources, "Exercise minutes");
    let minutes: Vec<(&str, f64)> = exercise
        .iter()
        .map(|r| (r["effectiveDateTime"].as_str().unwrap(), value(r)))
        .collect();
    assert_eq!(minutes, [("2024-05-01", 3.0), ("2024-05-02", 4.0)]);
}

// ---------------------------------------------------------------------------------------------
// Blood pressure pairing

#[test]
fn blood_pressure_halves_pair_by_time_and_source_and_a_lone_half_is_kept_with_a_warning() {
    let at = "2024-02-01 08:00:00 +0000";
    let records = [
        record(
            "HKQuantityTypeIdentifierBloodPressureSystolic",
            "mmHg",
            "131",
            at,
            "Cuff",
        ),
        record(
            "HKQuantityTypeIdentifierBloodPressureDiastolic",
            "mmHg",
            "84",
            at,
            "Cuff",
        ),
        // The same moment from another source is another reading.
        record(
            "HKQuantityTypeIdentifierBloodPressureSystolic",
            "mmHg",
            "125",
            at,
            "Manual",
        ),
    ]
    .concat();
    let run = run(export_with(&records)).unwrap();
    let panels = with_loinc(&run.resources, "85354-9");
    assert_eq!(panels.len(), 2);
    let cuff = panels
        .iter()
        .find(|p| p["device"]["display"] == "Cuff")
        .unwrap();
    let values: Vec<_> = cuff["component"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["code"]["coding"][0]["code"].clone(),
                c["valueQuantity"]["value"].clone(),
            )
        })
        .collect();
    assert_eq!(
        values,
        [
            (Value::from("8480-6"), Value::from(131)),
            (Value::from("8462-4"), Value::from(84))
        ]
    );
    let manual = panels
        .iter()
        .find(|p| p["device"]["display"] == "Manual")
        .unwrap();
    assert_eq!(manual["component"].as_array().unwrap().len(), 1);
    assert_eq!(
        run.warnings,
        [
            "1 blood pressure reading had only a systolic or only a diastolic value; it was \
          imported with the one value it has."
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed records and files

#[test]
fn unreadable_records_are_skipped_with_one_warning_quoting_five() {
    let at = "2024-02-01 08:00:00 +0000";
    let mut records = vec![
        record(
            "HKQuantityTypeIdentifierBodyMass",
            "kg",
            "heavy",
            at,
            "Scale",
        ),
        record(
            "HKQuantityTypeIdentifierBodyMass",
            "kg",
            "70",
            "yesterday",
            "Scale",
        ),
        record(
            "HKQuantityTypeIdentifierBodyMass",
            "stone",
            "11",
            at,
            "Scale",
        ),
        record("HKQuantityTypeIdentifierBodyMass", "kg", "71", at, "Scale"),
    ];
    for _ in 0..4 {
        records.push(record(
            "HKQuantityTypeIdentifierHeartRate",
            "count/min",
            "",
            at,
            "Watch",
        ));
    }
    let run = run(export_with(&records.concat())).unwrap();
    assert_eq!(run.resources.len(), 1, "only the good weight");
    assert_eq!(value(&run.resources[0]), 71.0);
    assert_eq!(
        run.warnings,
        [
            "Skipped 7 records that could not be read: a Body weight record of \
          2024-02-01T08:00:00+00:00 has the value \"heavy\", which is not a number; a Body \
          weight record has the start date \"yesterday\", which is not a date; a Body weight \
          record of 2024-02-01T08:00:00+00:00 is in \"stone\", a unit Fasten does not know for \
          it; a Heart rate record of 2024-02-01T08:00:00+00:00 has the value \"\", which is not \
          a number; a Heart rate record of 2024-02-01T08:00:00+00:00 has the value \"\", which \
          is not a number; and 2 more."
        ]
    );
}

#[test]
fn many_unmapped_types_are_listed_by_count_in_one_warning() {
    let at = "2024-02-01 08:00:00 +0000";
    let mut records = String::new();
    for (index, kind) in (0..12)
        .map(|n| format!("HKQuantityTypeIdentifierDietary{n:02}"))
        .enumerate()
    {
        for _ in 0..=index {
            records.push_str(&record(&kind, "g", "1", at, "Food app"));
        }
    }
    let run = run(export_with(&records)).unwrap();
    assert!(run.resources.is_empty());
    assert_eq!(
        run.warnings,
        [
            "The export holds no records Fasten imports, so nothing was added.",
            "Skipped 78 records of types Fasten does not map yet: \
          HKQuantityTypeIdentifierDietary11 (12), HKQuantityTypeIdentifierDietary10 (11), \
          HKQuantityTypeIdentifierDietary09 (10), HKQuantityTypeIdentifierDietary08 (9), \
          HKQuantityTypeIdentifierDietary07 (8), HKQuantityTypeIdentifierDietary06 (7), \
          HKQuantityTypeIdentifierDietary05 (6), HKQuantityTypeIdentifierDietary04 (5), \
          HKQuantityTypeIdentifierDietary03 (4), HKQuantityTypeIdentifierDietary02 (3), and 2 \
          more types."
        ]
    );
}

#[test]
fn a_cut_off_export_is_refused_saying_where_it_ends() {
    let xml = sample_export();
    let cut = String::from_utf8_lossy(&xml)
        .find("<MetadataEntry key=\"HKMetadataKeyHeartRate")
        .unwrap();
    let message = error_of(&xml[..cut]);
    assert!(
        message.starts_with("export.xml ends in the middle of the export (inside <Record>"),
        "{message}"
    );
    assert!(message.contains("the file was cut off"), "{message}");

    let text = String::from_utf8_lossy(&xml).into_owned();
    let in_a_child = text.find("value=\"2.16.0\"").unwrap();
    assert_eq!(
        error_of(&xml[..in_a_child]),
        format!(
            "export.xml ends in the middle of a tag inside <Record> at byte {}: the file was cut \
             off. Export it again from the Health app and upload the whole file.",
            crate::import::thousands(
                text.find("<MetadataEntry key=\"Health Mate App").unwrap() as u64
            )
        )
    );

    let in_a_record_tag = text.find("value=\"72\"").unwrap();
    let message = error_of(&xml[..in_a_record_tag]);
    assert!(
        message.starts_with("export.xml ends in the middle of a tag at byte"),
        "{message}"
    );
}

#[test]
fn other_xml_is_refused_naming_its_root() {
    let ccda = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/ccda/CCD-1.xml"
    ))
    .unwrap();
    let message = error_of(ccda);
    assert!(
        message.starts_with(
            "This XML file is not an Apple Health export (its root is <ClinicalDocument>)."
        ),
        "{message}"
    );
}

#[test]
fn garbage_json_and_empty_files_are_refused_in_plain_words() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(error_of(garbage).starts_with("This file is not XML"));
    assert!(error_of("{\"resourceType\": \"Bundle\"}").starts_with("This file is not XML"));
    assert_eq!(
        error_of(""),
        "The file is empty. Upload export.xml or the zip the Health app shares."
    );
    assert_eq!(
        error_of("  \n"),
        "The file is empty. Upload export.xml or the zip the Health app shares."
    );
}

#[test]
fn mismatched_tags_are_refused_with_their_position() {
    let xml = export_with(
        "<Record type=\"x\" sourceName=\"y\" startDate=\"z\" endDate=\"z\"></Workout>\n",
    );
    let message = error_of(xml);
    assert!(
        message.starts_with("export.xml is not well-formed XML at byte "),
        "{message}"
    );
}

#[test]
fn a_byte_order_mark_and_windows_line_ends_are_fine() {
    let mut xml = b"\xEF\xBB\xBF".to_vec();
    xml.extend_from_slice(
        String::from_utf8(sample_export())
            .unwrap()
            .replace('\n', "\r\n")
            .as_bytes(),
    );
    let run = run(xml).unwrap();
    assert_eq!(run.resources.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// The zip

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

#[test]
fn the_zip_gives_the_same_observations_as_its_export_xml() {
    let xml = generated_export(3000);
    let plain = run(xml.clone()).unwrap();
    let zip = zip_of(&[
        ("apple_health_export/export_cda.xml", b"<ClinicalDocument/>"),
        ("apple_health_export/export.xml", xml.as_bytes()),
        (
            "apple_health_export/workout-routes/route_2023-03-28.gpx",
            b"<gpx/>",
        ),
        (
            "apple_health_export/electrocardiograms/ecg_2023-03-28.csv",
            b"Name,Anna",
        ),
    ]);
    let file = FakeFile::new("export.zip", "application/zip", zip.clone()).in_chunks_of(4096);
    let zipped = run_file(file).unwrap();
    assert_eq!(zipped.resources, plain.resources);
    assert_eq!(zipped.warnings, plain.warnings);
    let rewinds = zipped.host.file_rewinds;
    assert!(rewinds <= 2, "{rewinds} rewinds");
    let size = zip.len() as u64;
    assert_eq!(zipped.host.progress.last(), Some(&(size, Some(size))));
}

#[test]
fn a_zip_without_export_xml_is_refused() {
    let zip = zip_of(&[
        ("apple_health_export/export_cda.xml", b"<ClinicalDocument/>"),
        ("notes.txt", b"hi"),
    ]);
    assert_eq!(
        error_of(zip),
        "This zip has no export.xml: it does not look like an Apple Health export."
    );
}

#[test]
fn a_damaged_zip_is_refused() {
    let zip = zip_of(&[(
        "apple_health_export/export.xml",
        generated_export(200).as_bytes(),
    )]);
    let message = error_of(&zip[..zip.len() / 2]);
    assert!(
        message.starts_with("This zip could not be read ("),
        "{message}"
    );
}

#[test]
fn an_export_xml_inflating_far_more_than_the_health_apps_is_refused_as_a_zip_bomb() {
    // 2 GiB of zeros deflate to about 2 MiB.
    let message = match check_inflation(2 << 30, 2 << 20) {
        Err(ConnectorError::InvalidInput(message)) => message,
        other => panic!("{other:?}"),
    };
    assert!(
        message.starts_with(
            "The export.xml in this zip would inflate to 2,147 MB, 1,024 times the 2,097,152 \
             bytes it takes in the zip;"
        ),
        "{message}"
    );
    // A real export: 1.5 GB from 60 MB.
    assert!(check_inflation(1_500_000_000, 60_000_000).is_ok());
    // Small, however repetitive.
    assert!(check_inflation(60 << 20, 1).is_ok());
}

#[test]
fn megabytes_without_markup_are_refused_before_they_fill_the_memory() {
    // The XML reader holds a whole text node: a bomb of spaces or zeros would fill the memory.
    let spaces = |mebibytes: usize| {
        let mut xml = b"<HealthData>".to_vec();
        xml.resize(xml.len() + (mebibytes << 20), b' ');
        xml.extend(b"</HealthData>");
        xml
    };
    assert_eq!(
        error_of(spaces(9)),
        "export.xml has more than 8 MiB without any XML markup from byte 12 on, which no Apple \
         Health export has: the file is damaged, or it is not an export (it may be a zip bomb). \
         Export it again from the Health app."
    );
    assert!(error_of(vec![0; 9 << 20]).starts_with("This file is not XML"));
    // Megabytes of text are still read, up to the cap.
    assert!(run(spaces(5)).is_ok());
}

// ---------------------------------------------------------------------------------------------
// The file adapter

#[test]
fn seeking_back_within_the_window_does_not_rewind_the_host_file() {
    let data: Vec<u8> = (0..6_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut upload = upload("data.bin", data.clone()).in_chunks_of(10_000);
    let mut file = File::new(&mut upload);
    let size = file.size();
    let mut seekable = SeekableFile::new(&mut file, size);
    let mut tail = [0u8; 22];
    seekable.seek(SeekFrom::End(-22)).unwrap();
    seekable.read_exact(&mut tail).unwrap();
    assert_eq!(&tail[..], &data[data.len() - 22..]);
    seekable.seek(SeekFrom::Current(-5000)).unwrap();
    let mut middle = [0u8; 100];
    seekable.read_exact(&mut middle).unwrap();
    assert_eq!(&middle[..], &data[data.len() - 5000..data.len() - 4900]);
    assert_eq!(seekable.rewinds(), 0);

    seekable.seek(SeekFrom::Start(10)).unwrap();
    seekable.read_exact(&mut middle).unwrap();
    assert_eq!(&middle[..], &data[10..110]);
    assert_eq!(
        seekable.rewinds(),
        1,
        "a jump before the window rewinds once"
    );
    assert_eq!(seekable.read(&mut middle).unwrap(), 100);
    seekable.seek(SeekFrom::Start(7_000_000)).unwrap();
    assert_eq!(
        seekable.read(&mut middle).unwrap(),
        0,
        "past the end reads nothing"
    );
    drop(seekable);
    drop(file);
    assert_eq!(upload.rewinds(), 1, "the upload itself was rewound once");
}

// ---------------------------------------------------------------------------------------------
// The lead's benchmark input (host/benches/support/apple_health_gen.rs)

#[path = "../../../host/benches/support/apple_health_gen.rs"]
mod benchmark_generator;

fn benchmark_export(target_bytes: u64) -> Vec<u8> {
    let mut xml = Vec::new();
    let written = benchmark_generator::write_export(&mut xml, target_bytes).unwrap();
    assert_eq!(written, xml.len() as u64);
    assert!(written >= target_bytes);
    xml
}

#[test]
fn the_benchmark_export_imports_cleanly() {
    let run = run(benchmark_export(2_000_000)).unwrap();
    let heart_rate_days = with_loinc(&run.resources, "8867-4").len();
    assert!(heart_rate_days > 10, "{heart_rate_days} days");
    let steps = with_loinc(&run.resources, "41950-7");
    assert_eq!(
        steps.len(),
        2 * heart_rate_days,
        "one sum per day for the phone and the watch"
    );
    assert_eq!(with_loinc(&run.resources, "41953-1").len(), heart_rate_days);
    assert_eq!(with_loinc(&run.resources, "41981-2").len(), heart_rate_days);
    assert!(!with_loinc(&run.resources, "85354-9").is_empty());
    assert!(!with_loinc(&run.resources, "29463-7").is_empty());
    assert_eq!(run.warnings.len(), 2, "{:?}", run.warnings);
    assert!(run.warnings[0].contains("HKCategoryTypeIdentifierSleepAnalysis"));
    assert!(run.warnings[1].ends_with("workouts: Fasten does not import workouts yet."));
}

/// Counts heap bytes in use, to report the importer's peak beyond its input.
struct CountingAllocator;

static IN_USE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use std::sync::atomic::Ordering::Relaxed;
        let now = IN_USE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(now, Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        IN_USE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs an import, dropping what it emits; returns its warnings, seconds, and the most heap it
/// took beyond what was in use before.
fn measured(file: FakeFile) -> (Vec<String>, f64, usize) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut host = FakeHost::new();
    host.discard_records();
    let baseline = IN_USE.load(Relaxed);
    PEAK.store(baseline, Relaxed);
    let started = std::time::Instant::now();
    let warnings = host.import_file::<AppleHealth>(file).unwrap().warnings;
    let seconds = started.elapsed().as_secs_f64();
    (warnings, seconds, PEAK.load(Relaxed) - baseline)
}

/// `cargo test --release -- --ignored --nocapture throughput`: MB/s and peak heap of the plain
/// and zipped import natively (the plugin runs slower under wasmtime).
#[test]
#[ignore]
fn throughput() {
    let xml = benchmark_export(200 * 1024 * 1024);
    let megabytes = xml.len() as f64 / 1e6;
    let (plain, seconds, peak) = measured(upload("export.xml", xml.clone()));
    println!(
        "plain: {megabytes:.0} MB in {seconds:.2} s = {:.0} MB/s, peak heap {:.1} MiB",
        megabytes / seconds,
        peak as f64 / 1048576.0
    );
    let zip = zip_of(&[("apple_health_export/export.xml", &xml)]);
    drop(xml);
    let zip_megabytes = zip.len() as f64 / 1e6;
    let (zipped, seconds, peak) = measured(upload("export.zip", zip));
    println!(
        "zip ({zip_megabytes:.0} MB): {megabytes:.0} MB of XML in {seconds:.2} s = {:.0} MB/s, \
         peak heap {:.1} MiB",
        megabytes / seconds,
        peak as f64 / 1048576.0
    );
    assert_eq!(zipped, plain);
}
