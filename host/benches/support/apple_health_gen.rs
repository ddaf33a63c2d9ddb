//! A synthetic Apple Health export.xml of any size, for benchmarking the apple-health plugin.
//!
//! Std only, so a bench can `mod apple_health_gen;` it (or `#[path]` it in) without new
//! dependencies. The mix follows a real Apple Watch + iPhone export: Apple's DOCTYPE with its
//! internal DTD subset, then years of records dominated by heart rate (every few minutes, with a
//! MetadataEntry child and the escaped `device` attribute) and step counts from two sources,
//! with daily energy and distance, sleep analysis (a type the plugin does not map), weekly
//! weights, blood pressure written as Apple does (two top-level records and a Correlation
//! repeating them), and workouts with routes.
//!
//! The apple-health plugin's own tests import a small export from here, so it stays valid.

// A bench target that includes this module may not use every item.
#![allow(dead_code)]

use std::io::{self, Write};

/// Writes an export of at least `target_bytes` (the last day is completed, then the document is
/// closed) and returns the bytes written. The same `target_bytes` always gives the same file.
pub fn write_export(writer: &mut impl Write, target_bytes: u64) -> io::Result<u64> {
    let mut out = Counting {
        inner: writer,
        written: 0,
    };
    for part in [XML_DECLARATION, APPLE_DOCTYPE, OPENING] {
        out.write_all(part.as_bytes())?;
    }
    let mut random = 0x2545_f491_4f6c_dd1d_u64;
    // 2019-01-01 in days since 1970.
    let mut day = 17_897_i64;
    while out.written < target_bytes {
        write_day(&mut out, day, &mut random)?;
        day += 1;
    }
    out.write_all(b"</HealthData>\n")?;
    out.flush()?;
    Ok(out.written)
}

struct Counting<'a, W: Write> {
    inner: &'a mut W,
    written: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// xorshift64*: deterministic and dependency-free.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn below(state: &mut u64, bound: u64) -> u64 {
    next(state) % bound
}

/// (year, month, day) of a day since 1970 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// "2019-01-01 08:05:00 -0800": Pacific time, daylight saving roughly March to October.
fn stamp(date: (i64, u32, u32), minute_of_day: u64, second: u64) -> String {
    let (year, month, day) = date;
    let offset = if (3..=10).contains(&month) {
        "-0700"
    } else {
        "-0800"
    };
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{second:02} {offset}",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

const WATCH: &str = "Anna’s Apple\u{a0}Watch";
const PHONE: &str = "Anna’s iPhone";
const WATCH_DEVICE: &str = "&lt;&lt;HKDevice: 0x283a4d0e0&gt;, name:Apple Watch, \
     manufacturer:Apple Inc., model:Watch, hardware:Watch6,2, software:9.4&gt;";
const PHONE_DEVICE: &str = "&lt;&lt;HKDevice: 0x283a4c1e0&gt;, name:iPhone, \
     manufacturer:Apple Inc., model:iPhone, hardware:iPhone14,2, software:16.3&gt;";

fn write_day(out: &mut impl Write, day: i64, random: &mut u64) -> io::Result<()> {
    let date = civil(day);
    // Heart rate every 4-6 minutes while the watch is worn (06:00 to 23:30).
    let mut minute = 6 * 60;
    while minute < 23 * 60 + 30 {
        let at = stamp(date, minute, below(random, 60));
        let bpm = 55 + below(random, 70);
        writeln!(
            out,
            " <Record type=\"HKQuantityTypeIdentifierHeartRate\" sourceName=\"{WATCH}\" \
             sourceVersion=\"9.4\" device=\"{WATCH_DEVICE}\" unit=\"count/min\" \
             creationDate=\"{at}\" startDate=\"{at}\" endDate=\"{at}\" value=\"{bpm}\">\n  \
             <MetadataEntry key=\"HKMetadataKeyHeartRateMotionContext\" value=\"{}\"/>\n \
             </Record>",
            below(random, 3)
        )?;
        minute += 4 + below(random, 3);
    }
    // Steps in bursts of a few minutes from both the phone and the watch, with the distance
    // and active energy the phone and watch derive from them.
    let mut minute = 7 * 60;
    while minute < 22 * 60 {
        let start = stamp(date, minute, 0);
        let end = stamp(date, minute + 3, 30);
        let steps = 20 + below(random, 400);
        for (source, device, version) in
            [(PHONE, PHONE_DEVICE, "16.3"), (WATCH, WATCH_DEVICE, "9.4")]
        {
            writeln!(
                out,
                " <Record type=\"HKQuantityTypeIdentifierStepCount\" sourceName=\"{source}\" \
                 sourceVersion=\"{version}\" device=\"{device}\" unit=\"count\" \
                 creationDate=\"{end}\" startDate=\"{start}\" endDate=\"{end}\" value=\"{steps}\">\n  \
                 <MetadataEntry key=\"HKMetadataKeySyncVersion\" value=\"2\"/>\n \
                 </Record>"
            )?;
        }
        writeln!(
            out,
            " <Record type=\"HKQuantityTypeIdentifierDistanceWalkingRunning\" \
             sourceName=\"{PHONE}\" sourceVersion=\"16.3\" device=\"{PHONE_DEVICE}\" unit=\"km\" \
             creationDate=\"{end}\" startDate=\"{start}\" endDate=\"{end}\" value=\"{:.5}\"/>",
            steps as f64 * 0.000_72
        )?;
        writeln!(
            out,
            " <Record type=\"HKQuantityTypeIdentifierActiveEnergyBurned\" sourceName=\"{WATCH}\" \
             sourceVersion=\"9.4\" device=\"{WATCH_DEVICE}\" unit=\"kcal\" \
             creationDate=\"{end}\" startDate=\"{start}\" endDate=\"{end}\" value=\"{:.3}\"/>",
            steps as f64 * 0.041
        )?;
        minute += 15 + below(random, 30);
    }
    // A night's sleep stages, which the plugin does not map.
    for stage in 0..6 {
        let at = stamp(date, 60 + stage * 45, 0);
        let until = stamp(date, 60 + stage * 45 + 44, 0);
        writeln!(
            out,
            " <Record type=\"HKCategoryTypeIdentifierSleepAnalysis\" sourceName=\"{WATCH}\" \
             sourceVersion=\"9.4\" device=\"{WATCH_DEVICE}\" creationDate=\"{until}\" \
             startDate=\"{at}\" endDate=\"{until}\" value=\"HKCategoryValueSleepAnalysisAsleepCore\"/>"
        )?;
    }
    if day % 7 == 0 {
        let at = stamp(date, 7 * 60 + 5, 12);
        writeln!(
            out,
            " <Record type=\"HKQuantityTypeIdentifierBodyMass\" sourceName=\"Health Mate\" \
             sourceVersion=\"6020000\" unit=\"kg\" creationDate=\"{at}\" startDate=\"{at}\" \
             endDate=\"{at}\" value=\"{}.{}\">\n  \
             <MetadataEntry key=\"Withings Link\" \
             value=\"withings-bd2://timeline/measure?userid=12345&amp;type=1\"/>\n \
             </Record>",
            62 + below(random, 5),
            below(random, 10)
        )?;
    }
    if day % 3 == 0 {
        let at = stamp(date, 8 * 60 + 30, 0);
        let systolic = 108 + below(random, 30);
        let diastolic = 68 + below(random, 20);
        let half = |kind: &str, value: u64| {
            format!(
                "<Record type=\"HKQuantityTypeIdentifierBloodPressure{kind}\" \
                 sourceName=\"OMRON connect\" sourceVersion=\"7.1\" unit=\"mmHg\" \
                 creationDate=\"{at}\" startDate=\"{at}\" endDate=\"{at}\" value=\"{value}\"/>"
            )
        };
        let (s, d) = (half("Systolic", systolic), half("Diastolic", diastolic));
        writeln!(
            out,
            " {s}\n {d}\n <Correlation type=\"HKCorrelationTypeIdentifierBloodPressure\" \
             sourceName=\"OMRON connect\" sourceVersion=\"7.1\" creationDate=\"{at}\" \
             startDate=\"{at}\" endDate=\"{at}\">\n  {s}\n  {d}\n </Correlation>"
        )?;
    }
    if day % 2 == 0 {
        let start = stamp(date, 18 * 60, 0);
        let end = stamp(date, 18 * 60 + 32, 10);
        writeln!(
            out,
            " <Workout workoutActivityType=\"HKWorkoutActivityTypeRunning\" duration=\"32.16\" \
             durationUnit=\"min\" sourceName=\"{WATCH}\" sourceVersion=\"9.4\" \
             device=\"{WATCH_DEVICE}\" creationDate=\"{end}\" startDate=\"{start}\" \
             endDate=\"{end}\">\n  <MetadataEntry key=\"HKIndoorWorkout\" value=\"0\"/>\n  \
             <WorkoutStatistics type=\"HKQuantityTypeIdentifierDistanceWalkingRunning\" \
             startDate=\"{start}\" endDate=\"{end}\" sum=\"5.1\" unit=\"km\"/>\n  \
             <WorkoutRoute sourceName=\"{WATCH}\" sourceVersion=\"9.4\" creationDate=\"{end}\" \
             startDate=\"{start}\" endDate=\"{end}\">\n   \
             <FileReference path=\"/workout-routes/route_{}.gpx\"/>\n  </WorkoutRoute>\n \
             </Workout>",
            &start[..10]
        )?;
    }
    let (year, month, day_of_month) = date;
    writeln!(
        out,
        " <ActivitySummary dateComponents=\"{year:04}-{month:02}-{day_of_month:02}\" \
         activeEnergyBurned=\"{}\" activeEnergyBurnedGoal=\"600\" \
         activeEnergyBurnedUnit=\"kcal\" appleMoveTime=\"0\" appleMoveTimeGoal=\"0\" \
         appleExerciseTime=\"{}\" appleExerciseTimeGoal=\"30\" appleStandHours=\"{}\" \
         appleStandHoursGoal=\"12\"/>",
        300 + below(random, 400),
        below(random, 90),
        8 + below(random, 8)
    )
}

/// The DTD Apple puts at the top of every export, shared with the plugin's own tests.
const APPLE_DOCTYPE: &str = include_str!("../../../plugins/apple-health/src/testdata/doctype.xml");

const XML_DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

const OPENING: &str = r#"<HealthData locale="en_US">
 <ExportDate value="2024-01-10 09:00:00 -0800"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="1985-06-01" HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale" HKCharacteristicTypeIdentifierBloodType="HKBloodTypeNotSet" HKCharacteristicTypeIdentifierFitzpatrickSkinType="HKFitzpatrickSkinTypeNotSet" HKCharacteristicTypeIdentifierCardioFitnessMedicationsUse="None"/>
"#;
