//! Lab results: the lab tests, grouped by test with the latest value, and one test's trend
//! (values in one unit, a chart, every result with its source). Reports (DiagnosticReport)
//! narrow the list to the results they reference.
//!
//! Which observations are lab tests is decided with the Observation reader ([`is_lab`], in
//! `fhir::observation`), at ingest as well: `observation_keys`, written beside each stored
//! observation by `fhir::ingest`, lets the overview count each test without reading every
//! result. This module only queries.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use sqlx::SqlitePool;
use time::{Date, Month};

use crate::fhir::read;
use crate::record::chart::{self, Band, Size};
/// Kept here for the pages that ask it of a result (the dashboard).
pub use crate::record::observations::is_lab;
use crate::record::observations::{self, Observation};
use crate::record::units;

/// One result with where it came from.
#[derive(Debug, Clone)]
pub struct LabResult {
    pub observation: Observation,
    pub source_name: String,
}

#[derive(sqlx::FromRow)]
struct Stored {
    json: String,
    source_name: String,
}

/// Every observation of the user read into results (components included), oldest first.
async fn all_results(db: &SqlitePool, person_id: i64) -> Result<Vec<LabResult>, sqlx::Error> {
    let rows: Vec<Stored> = sqlx::query_as(
        "SELECT r.json, s.display_name AS source_name
         FROM resources r JOIN sources s ON s.id = r.source_id
         WHERE r.person_id = ? AND r.resource_type = 'Observation'
         ORDER BY r.sort_date, r.resource_id",
    )
    .bind(person_id)
    .fetch_all(db)
    .await?;
    Ok(read_rows(rows))
}

/// The observations carrying one of these LOINC codes (as code or component code), through the
/// code index rather than by reading every observation.
async fn results_with_codes(
    db: &SqlitePool,
    person_id: i64,
    codes: &[&str],
) -> Result<Vec<LabResult>, sqlx::Error> {
    let values: Vec<String> = codes
        .iter()
        .map(|c| format!("http://loinc.org|{c}"))
        .collect();
    let rows: Vec<Stored> = sqlx::query_as(
        "SELECT DISTINCT r.json, s.display_name AS source_name, r.sort_date, r.resource_id
         FROM resource_tokens t
         JOIN resources r ON r.source_id = t.source_id AND r.resource_type = t.resource_type
                          AND r.resource_id = t.resource_id
         JOIN sources s ON s.id = r.source_id
         WHERE t.person_id = ?1 AND t.kind = 'code' AND t.resource_type = 'Observation'
           AND t.value IN (SELECT value FROM json_each(?2))
         ORDER BY r.sort_date, r.resource_id",
    )
    .bind(person_id)
    .bind(serde_json::to_string(&values).expect("strings serialise"))
    .fetch_all(db)
    .await?;
    Ok(read_rows(rows))
}

fn read_rows(rows: Vec<Stored>) -> Vec<LabResult> {
    rows.into_iter()
        .flat_map(|row| {
            // Stored JSON was validated at ingest; a row that no longer parses is skipped, not fatal.
            let resource: Value = serde_json::from_str(&row.json).unwrap_or(Value::Null);
            let source_name = row.source_name;
            observations::read_all(&resource)
                .into_iter()
                .map(move |observation| LabResult {
                    observation,
                    source_name: source_name.clone(),
                })
        })
        .collect()
}

/// The user's lab results, oldest first.
pub async fn results(db: &SqlitePool, person_id: i64) -> Result<Vec<LabResult>, sqlx::Error> {
    let mut all = all_results(db, person_id).await?;
    all.retain(|r| is_lab(&r.observation));
    Ok(all)
}

/// Every result of one test (equivalent codes joined), whatever its category: a test page
/// also serves a vital sign linked from elsewhere.
pub async fn test_results(
    db: &SqlitePool,
    person_id: i64,
    key: &str,
) -> Result<Vec<LabResult>, sqlx::Error> {
    // A LOINC key is found through the code index; a name key (no code) needs a full read.
    let is_loinc = key.contains('-') && key.chars().all(|c| c.is_ascii_digit() || c == '-');
    let mut all = if is_loinc {
        results_with_codes(db, person_id, &units::keys_in_group(key)).await?
    } else {
        Vec::new()
    };
    // Component codes (a blood pressure's systolic part) are not in the index.
    if all.is_empty() {
        all = all_results(db, person_id).await?;
    }
    all.retain(|r| units::group_key(&r.observation.key) == key);
    Ok(all)
}

/// A report that lists results, for the filter.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Report {
    pub id: String,
    pub title: Option<String>,
    pub date: Option<String>,
}

/// The user's reports that reference at least one observation, newest first.
pub async fn reports(db: &SqlitePool, person_id: i64) -> Result<Vec<Report>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.resource_id AS id, r.sort_title AS title, substr(r.sort_date, 1, 10) AS date
         FROM resources r
         WHERE r.person_id = ? AND r.resource_type = 'DiagnosticReport' AND EXISTS (
             SELECT 1 FROM resource_tokens t
             WHERE t.source_id = r.source_id AND t.resource_type = 'DiagnosticReport'
               AND t.resource_id = r.resource_id AND t.kind = 'ref'
               AND t.value LIKE 'Observation/%')
         GROUP BY r.resource_id
         ORDER BY r.sort_date DESC, r.resource_id",
    )
    .bind(person_id)
    .fetch_all(db)
    .await
}

/// The results a report references (whatever their category: the report says they belong
/// together), with the report; `None` when the user has no such report.
pub async fn report_results(
    db: &SqlitePool,
    person_id: i64,
    report_id: &str,
) -> Result<Option<(Report, Vec<LabResult>)>, sqlx::Error> {
    let report: Option<Report> = sqlx::query_as(
        "SELECT resource_id AS id, sort_title AS title, substr(sort_date, 1, 10) AS date
         FROM resources WHERE person_id = ? AND resource_type = 'DiagnosticReport' AND resource_id = ?
         LIMIT 1",
    )
    .bind(person_id)
    .bind(report_id)
    .fetch_optional(db)
    .await?;
    let Some(report) = report else {
        return Ok(None);
    };
    let references: Vec<String> = sqlx::query_scalar(
        "SELECT value FROM resource_tokens
         WHERE person_id = ? AND resource_type = 'DiagnosticReport' AND resource_id = ?
           AND kind = 'ref' AND value LIKE 'Observation/%'",
    )
    .bind(person_id)
    .bind(report_id)
    .fetch_all(db)
    .await?;
    let wanted: HashSet<&str> = references
        .iter()
        .filter_map(|r| r.strip_prefix("Observation/"))
        .collect();
    let mut all = all_results(db, person_id).await?;
    // A panel's own entry (blood pressure) holds no value; its components carry them.
    all.retain(|r| {
        let o = &r.observation;
        wanted.contains(o.id.as_str()) && (o.value.is_some() || o.text.is_some())
    });
    Ok(Some((report, all)))
}

/// One row of the Labs list: a test with its latest result.
#[derive(Debug, Clone, Serialize)]
pub struct TestSummary {
    /// URL-safe: the path segment of the test's page.
    pub key: String,
    pub name: String,
    pub latest_value: Option<String>,
    pub latest_date: Option<String>,
    pub range: Option<String>,
    pub flag: Option<observations::Flag>,
    pub flag_label: Option<&'static str>,
    pub count: usize,
}

/// Groups results by test (equivalent codes joined), each with its latest result; by name.
pub fn summarise(results: &[LabResult]) -> Vec<TestSummary> {
    summarise_counted(results.iter().map(|r| (r, 1)))
}

/// As [`summarise`], where each result stands for `count` results of its code (the overview
/// reads only the newest result of each code, with how many there are).
fn summarise_counted<'a>(
    results: impl Iterator<Item = (&'a LabResult, usize)>,
) -> Vec<TestSummary> {
    let mut groups: BTreeMap<&str, (Vec<&LabResult>, usize)> = BTreeMap::new();
    for (r, count) in results {
        let group = groups
            .entry(units::group_key(&r.observation.key))
            .or_default();
        group.0.push(r);
        group.1 += count;
    }
    let mut out: Vec<TestSummary> = groups
        .into_iter()
        .filter_map(|(key, (members, count))| {
            let latest = latest(&members)?;
            let o = &latest.observation;
            Some(TestSummary {
                key: key.to_owned(),
                name: group_name(key, &members).unwrap_or_else(|| o.name.clone()),
                latest_value: o.value_display(),
                latest_date: o.date.as_deref().map(read::iso_date),
                range: o.range.as_ref().and_then(|r| r.display()),
                flag: o.flag,
                flag_label: o.flag.map(|f| f.label()),
                count,
            })
        })
        .collect();
    out.sort_by_key(|t| t.name.to_lowercase());
    out
}

/// The Labs overview without reading every result: `observation_keys` gives each test's count
/// and newest observation from its index, and only those newest observations are read whole.
/// Same answer as `summarise(&results(..))`.
pub async fn overview(db: &SqlitePool, person_id: i64) -> Result<Vec<TestSummary>, sqlx::Error> {
    // SQLite takes the bare columns of a MAX() aggregate from the row holding the maximum.
    let newest: Vec<(String, i64, String, String)> = sqlx::query_as(
        "WITH newest AS (
           SELECT key, COUNT(*) AS n, MAX(sort_date) AS latest, source_id, resource_id
           FROM observation_keys WHERE person_id = ? AND is_lab = 1 GROUP BY key)
         SELECT k.key, k.n, r.json, s.display_name AS source_name FROM newest k
         JOIN resources r ON r.source_id = k.source_id AND r.resource_type = 'Observation'
                          AND r.resource_id = k.resource_id
         JOIN sources s ON s.id = r.source_id",
    )
    .bind(person_id)
    .fetch_all(db)
    .await?;
    let mut counted: Vec<(LabResult, usize)> = Vec::new();
    for (key, n, json, source_name) in newest {
        // The newest result of this test: the observation (or the panel's component) with
        // this key.
        let results = read_rows(vec![Stored { json, source_name }]);
        counted.extend(
            results
                .into_iter()
                .filter(|r| r.observation.key == key)
                .map(|r| (r, n as usize)),
        );
    }
    counted.retain(|(r, _)| is_lab(&r.observation));
    Ok(summarise_counted(counted.iter().map(|(r, n)| (r, *n))))
}

/// The test's name: from the newest result under the group's own code, so glucose reported
/// in mmol/L (15074-8, "Glucose [Moles/volume] in Blood") joins "Glucose" under its name.
fn group_name(key: &str, members: &[&LabResult]) -> Option<String> {
    let own: Vec<&LabResult> = members
        .iter()
        .copied()
        .filter(|r| r.observation.key == key)
        .collect();
    let named = latest(&own).or_else(|| latest(members))?;
    Some(named.observation.name.clone())
}

/// The newest result; ties and undated results keep record order (oldest first).
fn latest<'a>(members: &[&'a LabResult]) -> Option<&'a LabResult> {
    members
        .iter()
        .copied()
        .max_by(|a, b| a.observation.date.cmp(&b.observation.date))
}

/// "2019-03-12..." (or "2019-03", "2019") as a date; partial dates take the first day.
pub fn parse_date(text: &str) -> Option<Date> {
    let mut parts = text.get(..10).unwrap_or(text).split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next().map_or(Ok(1), str::parse).ok()?;
    let day: u8 = parts.next().map_or(Ok(1), str::parse).ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// One test over time.
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    pub key: String,
    pub name: String,
    /// The unit the chart uses, as people write it.
    pub unit: String,
    /// The SVG, already escaped: safe to embed.
    pub chart: String,
    /// The same chart drawn narrower, so its text stays legible on a phone (CSS shows one).
    pub chart_small: String,
    /// Points on the chart.
    pub charted: usize,
    /// "2 values were converted from mmol/L to mg/dL", when any were.
    pub conversion: Option<String>,
    /// Why some values are not on the chart, when some are not.
    pub left_out: Option<String>,
    /// The reference range drawn on the chart, in the chart's unit.
    pub range: Option<String>,
    /// Every result, newest first.
    pub rows: Vec<TrendRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrendRow {
    pub id: String,
    pub date: Option<String>,
    pub value: Option<String>,
    /// The value in the chart's unit, when it was converted.
    pub converted: Option<String>,
    pub range: Option<String>,
    pub flag: Option<observations::Flag>,
    pub flag_label: Option<&'static str>,
    pub source_name: String,
}

/// The trend of the test `key` among `results`; `None` when there is no such test.
pub fn trend(key: &str, results: &[LabResult]) -> Option<Trend> {
    let members: Vec<&LabResult> = results
        .iter()
        .filter(|r| units::group_key(&r.observation.key) == key)
        .collect();
    let newest = latest(&members)?;
    let chart_unit = common_unit(&members);

    let mut points = Vec::new();
    let mut converted_from: BTreeMap<String, usize> = BTreeMap::new();
    let mut rows = Vec::new();
    let mut left_out = 0;
    for r in &members {
        let o = &r.observation;
        let mut converted = None;
        let in_chart_unit = match (o.value, o.unit_id(), &chart_unit) {
            (Some(v), Some(unit), Some(target)) => {
                let value = units::convert(&o.key, v, unit, target);
                if value.is_some() && !units::same_unit(unit, target) {
                    *converted_from.entry(units::pretty(unit)).or_default() += 1;
                    converted = value
                        .map(|c| format!("{} {}", units::format_number(c), units::pretty(target)));
                }
                value
            }
            (Some(v), None, None) => Some(v),
            _ => None,
        };
        let date = o.date.as_deref().and_then(parse_date);
        match (date, in_chart_unit) {
            (Some(d), Some(v)) => points.push((d, v)),
            _ if o.value.is_some() => left_out += 1,
            _ => {}
        }
        rows.push(TrendRow {
            id: o.id.clone(),
            date: o.date.as_deref().map(read::iso_date),
            value: o.value_display(),
            converted,
            range: o.range.as_ref().and_then(|r| r.display()),
            flag: o.flag,
            flag_label: o.flag.map(|f| f.label()),
            source_name: r.source_name.clone(),
        });
    }
    rows.sort_by(|a, b| b.date.cmp(&a.date));

    let band = band(&members, chart_unit.as_deref());
    let unit = chart_unit.as_deref().map(units::pretty).unwrap_or_default();
    let name = group_name(key, &members).unwrap_or_else(|| newest.observation.name.clone());
    let conversion = (!converted_from.is_empty()).then(|| {
        let from: Vec<String> = converted_from
            .iter()
            .map(|(unit, n)| format!("{n} from {unit}"))
            .collect();
        let total: usize = converted_from.values().sum();
        format!(
            "{} {} converted to {unit} ({}) so they share one chart.",
            total,
            if total == 1 {
                "value was"
            } else {
                "values were"
            },
            from.join(", ")
        )
    });
    let left_out = (left_out > 0).then(|| {
        format!(
            "{left_out} {} not on the chart: no date, or a unit that cannot be converted to {unit}.",
            if left_out == 1 { "value is" } else { "values are" }
        )
    });
    Some(Trend {
        key: key.to_owned(),
        chart: chart::line_chart(&name, &unit, &points, band, Size::WIDE),
        chart_small: chart::line_chart(&name, &unit, &points, band, Size::SMALL),
        charted: points.len(),
        range: band.map(|b| format!("{} {unit}", b.label()).trim().to_owned()),
        name,
        unit,
        conversion,
        left_out,
        rows,
    })
}

/// The unit most numeric results use (normalised); ties go to the newest result's unit.
fn common_unit(members: &[&LabResult]) -> Option<String> {
    let mut counts: HashMap<String, (usize, Option<&str>)> = HashMap::new();
    for r in members {
        let o = &r.observation;
        if let (Some(_), Some(unit)) = (o.value, o.unit_id()) {
            let entry = counts.entry(units::normalise(unit)).or_insert((0, None));
            entry.0 += 1;
            entry.1 = entry.1.max(o.date.as_deref());
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        .map(|(unit, _)| unit)
}

/// The newest two-sided reference range, converted to the chart's unit.
fn band(members: &[&LabResult], unit: Option<&str>) -> Option<Band> {
    let mut with_range: Vec<&Observation> = members
        .iter()
        .map(|r| &r.observation)
        .filter(|o| {
            o.range
                .as_ref()
                .is_some_and(|r| r.low.is_some() || r.high.is_some())
        })
        .collect();
    with_range.sort_by(|a, b| b.date.cmp(&a.date));
    with_range.into_iter().find_map(|o| {
        let range = o.range.as_ref()?;
        let from = range.unit.as_deref().or(o.unit_id());
        let convert = |bound: Option<f64>| match (bound, from, unit) {
            (Some(value), Some(from), Some(to)) => {
                units::convert(&o.key, value, from, to).map(Some)
            }
            (bound, ..) => Some(bound),
        };
        Band::new(convert(range.low)?, convert(range.high)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(resource: Value) -> LabResult {
        LabResult {
            observation: observations::read(&resource).unwrap(),
            source_name: "Lab".into(),
        }
    }

    fn glucose(id: &str, code: &str, date: &str, value: f64, unit: &str) -> LabResult {
        result(json!({
            "resourceType": "Observation", "id": id,
            "category": [{"coding": [{"code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}], "text": "Glucose"},
            "effectiveDateTime": date,
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
            "referenceRange": [{"low": {"value": 70, "unit": "mg/dL"}, "high": {"value": 99, "unit": "mg/dL"}}]
        }))
    }

    #[test]
    fn results_group_by_test_with_the_latest_value() {
        let results = vec![
            glucose("a", "2339-0", "2020-01-01T08:00:00Z", 90.0, "mg/dL"),
            glucose("b", "15074-8", "2021-01-01T08:00:00Z", 6.0, "mmol/L"),
            glucose("c", "2339-0", "2019-01-01", 120.0, "mg/dL"),
        ];
        let list = summarise(&results);
        assert_eq!(list.len(), 1);
        let t = &list[0];
        assert_eq!((t.key.as_str(), t.count), ("2339-0", 3));
        // Printed with the digits the record has (the read model's rule).
        assert_eq!(t.latest_value.as_deref(), Some("6.0 mmol/L"));
        assert_eq!(t.latest_date.as_deref(), Some("2021-01-01"));
        assert_eq!(t.range.as_deref(), Some("70–99"));
        // The range is in mg/dL and the value in mmol/L: no computed flag.
        assert_eq!(t.flag, None);
    }

    #[test]
    fn a_trend_converts_to_the_common_unit_and_draws_the_band() {
        let results = vec![
            glucose("a", "2339-0", "2020-01-01", 90.0, "mg/dL"),
            glucose("b", "15074-8", "2021-01-01", 6.0, "mmol/L"),
            glucose("c", "2339-0", "2019-01-01", 120.0, "mg/dL"),
        ];
        let t = trend("2339-0", &results).unwrap();
        assert_eq!(t.unit, "mg/dL");
        assert_eq!(t.charted, 3);
        assert_eq!(t.chart.matches("<circle").count(), 3);
        assert!(t.chart.contains(r#"class="band""#));
        assert_eq!(t.range.as_deref(), Some("70–99 mg/dL"));
        assert_eq!(
            t.conversion.as_deref(),
            Some("1 value was converted to mg/dL (1 from mmol/L) so they share one chart.")
        );
        assert_eq!(t.rows[0].date.as_deref(), Some("2021-01-01"));
        assert_eq!(t.rows[0].converted.as_deref(), Some("108.1 mg/dL"));
        assert_eq!(t.rows[2].flag_label, Some("High"));
        assert_eq!(t.left_out, None);
        assert!(trend("2093-3", &results).is_none());
    }

    #[test]
    fn a_range_with_only_an_upper_bound_is_drawn_and_converted() {
        // Total cholesterol as a European lab reports it: mmol/L with "< 5.2".
        let cholesterol = |id: &str, date: &str, value: f64, unit: &str, high: f64| {
            result(json!({
                "resourceType": "Observation", "id": id,
                "category": [{"coding": [{"code": "laboratory"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3"}], "text": "Cholesterol"},
                "effectiveDateTime": date,
                "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
                "referenceRange": [{"high": {"value": high, "unit": unit}}]
            }))
        };
        let results = vec![
            cholesterol("a", "2019-01-01", 231.0, "mg/dL", 200.0),
            cholesterol("b", "2020-01-01", 190.0, "mg/dL", 200.0),
            cholesterol("c", "2021-01-01", 4.9, "mmol/L", 5.2),
        ];
        let t = trend("2093-3", &results).unwrap();
        assert_eq!(t.unit, "mg/dL");
        // The newest range, converted: 5.2 mmol/L is about 201 mg/dL.
        let range = t.range.as_deref().unwrap();
        assert!(range.starts_with("< 201"), "{range}");
        assert!(t.chart.contains(r#"class="band""#), "{}", t.chart);
        assert_eq!(t.chart.matches(r#"class="out""#).count(), 1, "231 only");
        assert_eq!(t.rows[2].flag_label, Some("High"));
    }

    #[test]
    fn dates_parse_in_full_or_in_part() {
        assert_eq!(
            parse_date("2019-03-12T10:00:00+01:00"),
            Date::from_calendar_date(2019, Month::March, 12).ok()
        );
        assert_eq!(
            parse_date("2019-03"),
            Date::from_calendar_date(2019, Month::March, 1).ok()
        );
        assert_eq!(parse_date("soon"), None);
    }
}
