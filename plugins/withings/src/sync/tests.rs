//! The whole sync against a fake Withings that answers from the fixtures in
//! /work/shared/testdata/withings (Home Assistant's test data, see SOURCES.md there).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use fasten_connector::MAX_BATCH_RESOURCES;
use fasten_connector::http::{HttpError, Request, Response};
use fasten_connector::testing::FakeHost;
use serde_json::{Value, json};

use super::*;
use crate::Withings;
use crate::api::tests::outcome;

const BASE: &str = "http://127.0.0.1:8089";
const MEASURES_URL: &str = "http://127.0.0.1:8089/measure";
const ACTIVITY_URL: &str = "http://127.0.0.1:8089/v2/measure";
const SLEEP_URL: &str = "http://127.0.0.1:8089/v2/sleep";

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../../../shared/testdata/withings/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn envelope(body: Value) -> Answer {
    withings_status(json!({"status": 0, "body": body}))
}

fn withings_status(envelope: Value) -> Answer {
    Ok(Response {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: envelope.to_string().into_bytes(),
    })
}

type Answer = Result<Response, HttpError>;
/// url -> (offset asked for, answer)
type Pages = HashMap<String, Vec<(u64, Answer)>>;

/// A host whose HTTP requests a fake Withings answers, by URL and offset, from pages that
/// [`Fake::page`] sets. It derefs to the [`FakeHost`], which records what the run did.
struct Fake {
    host: FakeHost,
    pages: Rc<RefCell<Pages>>,
}

impl Fake {
    /// Measures from get_meas.json, activity from activity.json, sleep from get_sleep.json.
    fn from_fixtures() -> Self {
        let pages = Rc::new(RefCell::new(Pages::new()));
        let mut host = FakeHost::new();
        let server = Rc::clone(&pages);
        host.on_request(move |request| {
            let offset = form_of(request)
                .get("offset")
                .map_or(0, |o| o.parse().unwrap());
            server
                .borrow()
                .get(&request.url)
                .and_then(|pages| pages.iter().find(|(o, _)| *o == offset))
                .map(|(_, answer)| answer.clone())
                .unwrap_or_else(|| panic!("unexpected request {} offset {offset}", request.url))
        });
        let mut fake = Fake { host, pages };
        fake.page(MEASURES_URL, 0, envelope(fixture("get_meas.json")));
        fake.page(
            ACTIVITY_URL,
            0,
            envelope(json!({"activities": fixture("activity.json"), "more": false, "offset": 0})),
        );
        fake.page(SLEEP_URL, 0, envelope(fixture("get_sleep.json")));
        fake
    }

    fn page(&mut self, url: &str, offset: u64, answer: Answer) -> &mut Self {
        {
            let mut pages = self.pages.borrow_mut();
            let pages = pages.entry(url.to_string()).or_default();
            pages.retain(|(o, _)| *o != offset);
            pages.push((offset, answer));
        }
        self
    }

    fn forms(&self) -> Vec<HashMap<String, String>> {
        self.requests.iter().map(form_of).collect()
    }

    /// The cursor the next sync would get.
    fn checkpoint(&self) -> Option<&str> {
        self.checkpoints.last().map(String::as_str)
    }

    /// Every progress report's count of records: a sync never knows its total.
    fn progress(&self) -> Vec<u64> {
        assert!(self.host.progress.iter().all(|(_, total)| total.is_none()));
        self.host.progress.iter().map(|(done, _)| *done).collect()
    }
}

impl Deref for Fake {
    type Target = FakeHost;

    fn deref(&self) -> &FakeHost {
        &self.host
    }
}

impl DerefMut for Fake {
    fn deref_mut(&mut self) -> &mut FakeHost {
        &mut self.host
    }
}

/// Decodes a form body (only what the plugin sends: `%XX` escapes, no `+`).
fn form_of(request: &Request) -> HashMap<String, String> {
    let body = String::from_utf8(request.body.clone().unwrap_or_default()).unwrap();
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            let mut decoded = Vec::new();
            let bytes = value.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    decoded.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                } else {
                    decoded.push(bytes[i]);
                    i += 1;
                }
            }
            (name.to_string(), String::from_utf8(decoded).unwrap())
        })
        .collect()
}

fn request(cursor: Option<&str>) -> SyncRequest {
    SyncRequest {
        base_url: format!("{BASE}/"),
        patient_id: None,
        cursor: cursor.map(str::to_string),
        settings: Vec::new(),
    }
}

/// The Withings code of an Observation (always its last coding).
fn withings_code(resource: &Value) -> &str {
    resource["code"]["coding"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["code"]
        .as_str()
        .unwrap()
}

fn find<'a>(resources: &'a [Value], code: &str, effective: &str) -> Vec<&'a Value> {
    resources
        .iter()
        .filter(|r| {
            withings_code(r) == code
                && (r["effectiveDateTime"] == effective
                    || r["effectivePeriod"]["start"] == effective)
        })
        .collect()
}

fn one<'a>(resources: &'a [Value], code: &str, effective: &str) -> &'a Value {
    let found = find(resources, code, effective);
    assert_eq!(found.len(), 1, "{code} at {effective}: {found:?}");
    found[0]
}

#[test]
fn a_first_sync_reads_every_endpoint_and_maps_the_fixtures() {
    let mut fake = Fake::from_fixtures();
    let summary = fake.sync::<Withings>(request(None)).unwrap();
    let resources = fake.resources();

    // Two usable measure groups of 16 measures, blood pressure as one panel: 15 each. 14 days of
    // 7 activity fields (no floors: the tracker reports 0). 5 nights of 10 sleep fields.
    assert_eq!(resources.len(), 2 * 15 + 14 * 7 + 5 * 10);
    assert!(resources.iter().all(|r| r["resourceType"] == "Observation"
        && r["status"] == "final"
        && r.get("subject").is_none()));

    // Group 1 of get_meas.json, 2019-08-01 12:00 UTC: weight 70 (unit 0).
    let weight = one(&resources, "1", "2019-08-01T12:00:00Z");
    assert_eq!(weight["code"]["coding"][0]["system"], "http://loinc.org");
    assert_eq!(weight["code"]["coding"][0]["code"], "29463-7");
    assert_eq!(weight["valueQuantity"]["value"], 70);
    assert_eq!(
        weight["valueQuantity"]["system"],
        "http://unitsofmeasure.org"
    );
    assert_eq!(weight["valueQuantity"]["code"], "kg");
    assert_eq!(weight["category"][0]["coding"][0]["code"], "vital-signs");

    // Fat ratio 70 × 10⁻³ and SpO2 95 × 10⁻².
    let fat = one(&resources, "6", "2019-08-01T12:00:00Z");
    assert_eq!(fat["code"]["coding"][0]["code"], "41982-0");
    assert_eq!(fat["valueQuantity"]["value"].to_string(), "0.07");
    assert_eq!(fat["valueQuantity"]["code"], "%");
    let spo2 = one(&resources, "54", "2019-08-01T12:00:00Z");
    assert_eq!(spo2["code"]["coding"][0]["code"], "59408-5");
    assert_eq!(spo2["valueQuantity"]["value"].to_string(), "0.95");
    let temperature = one(&resources, "71", "2019-08-01T11:00:00Z");
    assert_eq!(temperature["valueQuantity"]["value"], 41);
    assert_eq!(temperature["valueQuantity"]["code"], "Cel");

    // Blood pressure of the same group: one panel, systolic 100 / diastolic 70, no lone values.
    let panels: Vec<&Value> = resources
        .iter()
        .filter(|r| r["code"]["coding"][0]["code"] == "85354-9")
        .collect();
    assert_eq!(panels.len(), 2);
    let panel = panels
        .iter()
        .find(|p| p["effectiveDateTime"] == "2019-08-01T12:00:00Z")
        .unwrap();
    assert!(panel.get("valueQuantity").is_none());
    assert_eq!(panel["component"][0]["code"]["coding"][0]["code"], "8480-6");
    assert_eq!(panel["component"][0]["valueQuantity"]["value"], 100);
    assert_eq!(panel["component"][1]["code"]["coding"][0]["code"], "8462-4");
    assert_eq!(panel["component"][1]["valueQuantity"]["value"], 70);
    assert_eq!(panel["component"][1]["valueQuantity"]["unit"], "mmHg");
    assert!(find(&resources, "9", "2019-08-01T12:00:00Z").is_empty());
    assert!(find(&resources, "10", "2019-08-01T12:00:00Z").is_empty());
    let pulse = one(&resources, "11", "2019-08-01T12:00:00Z");
    assert_eq!(pulse["code"]["coding"][0]["code"], "8867-4");
    assert_eq!(pulse["valueQuantity"]["value"], 60);

    // The attrib-1 group (13:00, height 201) may be someone else's: skipped, and said so.
    assert!(
        resources
            .iter()
            .all(|r| r["effectiveDateTime"] != "2019-08-01T13:00:00Z")
    );
    assert_eq!(
        summary.warnings,
        [
            "1 Withings measurement was skipped because Withings could not tell whether it is \
             yours (a device shared by several people). Assign it to yourself in the Withings \
             app and it will be imported with the next sync."
        ]
    );

    // Activity on 2023-10-13: 6787 steps, 6008.779 m, 36 s of intense activity.
    let steps = one(&resources, "steps", "2023-10-13");
    assert_eq!(steps["code"]["coding"][0]["code"], "41950-7");
    assert_eq!(steps["valueQuantity"]["value"], 6787);
    assert_eq!(steps["category"][0]["coding"][0]["code"], "activity");
    assert_eq!(steps["device"]["display"], "GoogleFit tracker");
    let distance = one(&resources, "distance", "2023-10-13");
    assert_eq!(distance["valueQuantity"]["value"].to_string(), "6008.779");
    assert_eq!(distance["valueQuantity"]["code"], "m");
    let intense = one(&resources, "intense", "2023-10-13");
    assert_eq!(intense["valueQuantity"]["value"].to_string(), "0.6");
    assert_eq!(intense["valueQuantity"]["code"], "min");
    let total = one(&resources, "totalcalories", "2023-10-13");
    assert_eq!(total["code"]["text"], "Total calories burned");
    assert_eq!(total["valueQuantity"]["value"].to_string(), "2380.669");

    // The night of 2021-04-17 (series 2081804265): 26880 s asleep is 7.47 h.
    let night = "2021-04-16T20:30:55Z";
    let sleep = one(&resources, "total_sleep_time", night);
    assert_eq!(sleep["code"]["coding"][0]["code"], "93832-4");
    assert_eq!(sleep["valueQuantity"]["value"].to_string(), "7.47");
    assert_eq!(sleep["valueQuantity"]["code"], "h");
    assert_eq!(sleep["effectivePeriod"]["end"], "2021-04-17T05:22:55Z");
    let heart = one(&resources, "hr_average", night);
    assert_eq!(heart["code"]["coding"].as_array().unwrap().len(), 1);
    assert_eq!(heart["code"]["text"], "Average heart rate during sleep");
    assert_eq!(heart["valueQuantity"]["value"], 85);
    assert_eq!(
        one(&resources, "sleep_score", night)["valueQuantity"]["value"],
        90
    );
    assert_eq!(
        one(&resources, "wakeupcount", night)["valueQuantity"]["value"],
        3
    );

    // The cursor is Withings' own clock from the getmeas answer.
    assert_eq!(fake.checkpoint(), Some("1564617600"));
    assert_eq!(fake.progress(), [0, 30, 30 + 98, 30 + 98 + 50]);
}

#[test]
fn requests_are_form_posts_without_credentials() {
    let mut fake = Fake::from_fixtures();
    fake.sync::<Withings>(request(None)).unwrap();
    let urls: Vec<&str> = fake.requests.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(urls, [MEASURES_URL, ACTIVITY_URL, SLEEP_URL]);
    for request in &fake.requests {
        assert_eq!(request.method, "POST");
        assert!(
            request
                .headers
                .iter()
                .all(|(name, _)| !name.eq_ignore_ascii_case("authorization")),
            "the host adds the token, never the plugin"
        );
        assert!(
            request
                .headers
                .iter()
                .any(|(name, value)| name.eq_ignore_ascii_case("content-type")
                    && value == "application/x-www-form-urlencoded")
        );
    }
    let forms = fake.forms();
    assert_eq!(forms[0]["action"], "getmeas");
    assert_eq!(
        forms[0]["meastypes"],
        "1,4,5,6,8,9,10,11,12,54,71,73,76,77,88,91"
    );
    assert_eq!(forms[0]["category"], "1");
    assert_eq!(forms[1]["action"], "getactivity");
    assert_eq!(
        forms[1]["data_fields"],
        "steps,distance,calories,totalcalories,elevation,soft,moderate,intense"
    );
    assert_eq!(forms[2]["action"], "getsummary");
    assert_eq!(
        forms[2]["data_fields"],
        "total_sleep_time,total_timeinbed,deepsleepduration,lightsleepduration,remsleepduration,\
         wakeupcount,hr_average,hr_min,hr_max,rr_average,sleep_score"
    );
    assert!(forms.iter().all(|f| f["lastupdate"] == "0"));
    assert!(forms.iter().all(|f| !f.contains_key("offset")));
}

#[test]
fn the_next_sync_asks_only_for_changes_and_gives_the_same_ids() {
    let mut first = Fake::from_fixtures();
    first.sync::<Withings>(request(None)).unwrap();
    let cursor = first.checkpoint().unwrap().to_string();

    let mut second = Fake::from_fixtures();
    second.sync::<Withings>(request(Some(&cursor))).unwrap();
    assert!(second.forms().iter().all(|f| f["lastupdate"] == cursor));

    let ids = |fake: &Fake| -> Vec<String> {
        fake.resources()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let first_ids = ids(&first);
    assert_eq!(first_ids, ids(&second));
    let unique: HashSet<&String> = first_ids.iter().collect();
    assert_eq!(unique.len(), first_ids.len());
    assert!(first_ids.iter().all(|id| id.len() <= 64
        && id.starts_with("withings-")
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')));
}

#[test]
fn a_changed_value_keeps_its_id() {
    let mut first = Fake::from_fixtures();
    first.sync::<Withings>(request(None)).unwrap();
    let mut changed = fixture("get_meas.json");
    changed["measuregrps"][0]["measures"][0]["value"] = json!(69);
    let mut second = Fake::from_fixtures();
    second.page(MEASURES_URL, 0, envelope(changed));
    second.sync::<Withings>(request(None)).unwrap();
    let before = one(&first.resources(), "1", "2019-08-01T12:00:00Z").clone();
    let after = one(&second.resources(), "1", "2019-08-01T12:00:00Z").clone();
    assert_eq!(after["valueQuantity"]["value"], 69);
    assert_eq!(before["id"], after["id"]);
}

#[test]
fn newer_measurements_with_unknown_types_are_reported_once_per_type() {
    let mut fake = Fake::from_fixtures();
    // measurements.json is a list of groups with a device model and no `updatetime` around it.
    fake.page(
        MEASURES_URL,
        0,
        envelope(json!({"measuregrps": fixture("measurements.json"), "more": 0, "offset": 0})),
    );
    let summary = fake.sync::<Withings>(request(None)).unwrap();
    let resources = fake.resources();
    let weight = one(&resources, "1", "2019-08-01T12:00:00Z");
    assert_eq!(weight["device"]["display"], "BPM Connect");
    let hydration = one(&resources, "77", "2019-08-01T11:00:00Z");
    assert_eq!(hydration["valueQuantity"]["value"].to_string(), "0.96");
    assert_eq!(hydration["code"]["text"], "Hydration (body water mass)");
    for code in [123, 155, 168, 169, 170, 196, 197, 198] {
        let warning =
            format!("Withings measure type {code} is not known to Fasten; 1 value skipped.");
        assert!(
            summary.warnings.contains(&warning),
            "{:?}",
            summary.warnings
        );
    }
    assert_eq!(summary.warnings.len(), 1 + 8);
    // Without Withings' clock, the newest modification seen (an activity day) is the cursor.
    assert_eq!(fake.checkpoint(), Some("1697888004"));
}

#[test]
fn sleep_summaries_out_of_order_are_all_read() {
    let mut fake = Fake::from_fixtures();
    fake.page(
        SLEEP_URL,
        0,
        envelope(json!({"series": fixture("sleep_summaries.json"), "more": false, "offset": 0})),
    );
    fake.sync::<Withings>(request(None)).unwrap();
    let resources = fake.resources();
    let totals: Vec<String> = resources
        .iter()
        .filter(|r| withings_code(r) == "total_sleep_time")
        .map(|r| r["valueQuantity"]["value"].to_string())
        .collect();
    // 2021-04-17, -18, -16, -15, -14 as the fixture lists them.
    assert_eq!(totals, ["7.47", "5.18", "4.68", "4.68", "6.3"]);
}

#[test]
fn values_meaning_no_data_are_skipped() {
    let mut sleep = fixture("get_sleep.json");
    let data = &mut sleep["series"][0]["data"];
    data["hr_average"] = json!(-1);
    data["rr_average"] = Value::Null;
    data["sleep_score"] = json!(-1);
    let mut fake = Fake::from_fixtures();
    fake.page(SLEEP_URL, 0, envelope(sleep));
    fake.sync::<Withings>(request(None)).unwrap();
    let resources = fake.resources();
    let night = "2021-04-17T20:30:53Z";
    assert_eq!(
        one(&resources, "total_sleep_time", night)["valueQuantity"]["value"].to_string(),
        "5.18"
    );
    for field in ["hr_average", "rr_average", "sleep_score"] {
        assert!(find(&resources, field, night).is_empty(), "{field}");
    }
    assert_eq!(
        one(&resources, "hr_min", night)["valueQuantity"]["value"],
        70
    );
}

#[test]
fn pages_are_followed_by_offset() {
    let mut all = fixture("get_meas.json");
    let groups = all["measuregrps"].as_array().unwrap().clone();
    let mut first = all.clone();
    first["measuregrps"] = json!(groups[..1]);
    first["more"] = json!(1);
    first["offset"] = json!(1);
    all["measuregrps"] = json!(groups[1..]);
    all["updatetime"] = json!(1_564_700_000);
    let mut activity_first = json!({"activities": fixture("activity.json"), "more": true,
                                   "offset": 14});
    activity_first["activities"]
        .as_array_mut()
        .unwrap()
        .truncate(10);
    let activity_rest: Vec<Value> = fixture("activity.json").as_array().unwrap()[10..].to_vec();

    let mut fake = Fake::from_fixtures();
    fake.page(MEASURES_URL, 0, envelope(first))
        .page(MEASURES_URL, 1, envelope(all))
        .page(ACTIVITY_URL, 0, envelope(activity_first))
        .page(
            ACTIVITY_URL,
            14,
            envelope(json!({"activities": activity_rest, "more": false, "offset": 0})),
        );
    fake.sync::<Withings>(request(None)).unwrap();

    let offsets: Vec<Option<String>> = fake
        .forms()
        .iter()
        .map(|f| f.get("offset").cloned())
        .collect();
    assert_eq!(
        offsets,
        [None, Some("1".into()), None, Some("14".into()), None]
    );
    let resources = fake.resources();
    assert_eq!(resources.len(), 2 * 15 + 14 * 7 + 5 * 10);
    assert_eq!(
        one(&resources, "1", "2019-08-01T11:00:00Z")["valueQuantity"]["value"],
        71
    );
    assert_eq!(
        one(&resources, "steps", "2023-10-21")["valueQuantity"]["value"],
        1155
    );
    // The first page's server time is the cursor: it was taken before anything was read.
    assert_eq!(fake.checkpoint(), Some("1564617600"));
    assert_eq!(
        fake.progress().len(),
        1 + 5,
        "at the start, then once a page"
    );
}

#[test]
fn a_page_that_never_advances_stops_the_run_without_a_checkpoint() {
    let mut stuck = fixture("get_meas.json");
    stuck["more"] = json!(true);
    stuck["offset"] = json!(0);
    let mut fake = Fake::from_fixtures();
    fake.page(MEASURES_URL, 0, envelope(stuck));
    let error = outcome(fake.sync::<Withings>(request(None)));
    assert_eq!(
        error,
        "fatal: Withings said more body measures follow but gave no next offset past 0; the \
         sync stopped so as not to read the same page forever."
    );
    assert_eq!(fake.requests.len(), 1);
    assert_eq!(fake.checkpoint(), None);
}

#[test]
fn withings_errors_end_the_run_as_the_host_expects() {
    let cases = [
        (
            json!({"status": 401, "error": "XRequestID: Not provided invalid_token"}),
            "unauthorized",
        ),
        (
            json!({"status": 601, "error": "Too Many Requests"}),
            "rate limited for 60 s",
        ),
        (
            json!({"status": 2555, "error": "An unknown error occurred"}),
            "unauthorized",
        ),
        (
            json!({"status": 293, "error": "Invalid params"}),
            "fatal: Withings refused the request for daily activity (status 293: Invalid params).",
        ),
    ];
    for (answer, expected) in cases {
        let mut fake = Fake::from_fixtures();
        fake.page(ACTIVITY_URL, 0, withings_status(answer));
        assert_eq!(outcome(fake.sync::<Withings>(request(None))), expected);
        assert_eq!(fake.checkpoint(), None);
        // Measures were emitted before the failure; the host discards them with the run.
        assert_eq!(fake.requests.len(), 2);
    }
}

#[test]
fn network_failures_are_transient() {
    let mut fake = Fake::from_fixtures();
    fake.page(SLEEP_URL, 0, Err(HttpError::Timeout));
    assert_eq!(
        outcome(fake.sync::<Withings>(request(None))),
        "transient: Withings did not answer the request for sleep summaries in time."
    );
}

#[test]
fn a_refused_batch_fails_the_run() {
    let mut fake = Fake::from_fixtures();
    fake.refuse_batches("Observation.valueQuantity.value is not a number");
    assert_eq!(
        outcome(fake.sync::<Withings>(request(None))),
        "fatal: The host refused a batch of records: Observation.valueQuantity.value is not \
         a number"
    );
    assert_eq!(fake.checkpoint(), None);
}

#[test]
fn a_bad_base_url_or_cursor_is_handled() {
    let mut fake = Fake::from_fixtures();
    let mut bad = request(None);
    bad.base_url = "wbsapi.withings.net".into();
    assert_eq!(
        outcome(fake.sync::<Withings>(bad)),
        "invalid input: The Withings API address must start with https://, not \
         \"wbsapi.withings.net\"."
    );
    assert!(fake.requests.is_empty());

    let mut fake = Fake::from_fixtures();
    fake.sync::<Withings>(request(Some("2024-01-01T00:00:00Z")))
        .unwrap();
    assert!(fake.forms().iter().all(|f| f["lastupdate"] == "0"));
    assert!(fake.logs[0].1.contains("did not write"));
}

#[test]
fn the_cursor_never_moves_back() {
    let mut fake = Fake::from_fixtures();
    fake.sync::<Withings>(request(Some("1700000000"))).unwrap();
    assert_eq!(fake.checkpoint(), Some("1700000000"));
}

#[test]
fn large_syncs_are_emitted_in_bounded_batches() {
    let template = fixture("get_meas.json")["measuregrps"][0].clone();
    let groups: Vec<Value> = (0..100)
        .map(|i| {
            let mut group = template.clone();
            group["grpid"] = json!(1000 + i);
            group["date"] = json!(1_564_660_800 + i * 3600);
            group
        })
        .collect();
    let mut fake = Fake::from_fixtures();
    fake.page(
        MEASURES_URL,
        0,
        envelope(json!({"updatetime": 1_564_617_600, "measuregrps": groups, "more": false})),
    );
    fake.sync::<Withings>(request(None)).unwrap();
    assert_eq!(fake.resources().len(), 100 * 15 + 14 * 7 + 5 * 10);
    assert!(fake.batches.len() >= 4);
    assert!(fake.batches.iter().all(|&b| b <= MAX_BATCH_RESOURCES));
    assert_eq!(fake.progress()[1], 1500);
}
