//! The sync against a fake FHIR server: every request is answered from a table of URLs.

use fasten_connector::http::Response;
use fasten_connector::testing::FakeHost;
use serde_json::{Value, json};

use super::*;
use crate::Fhir;

const BASE: &str = "https://fhir.example.org/r4";

/// A fake FHIR server: a table of URLs, and a 404 OperationOutcome for anything else.
fn server() -> FakeHost {
    let mut host = FakeHost::new();
    host.on_request(|_| {
        Ok(json_response(
            404,
            json!({"resourceType": "OperationOutcome",
                   "issue": [{"severity": "error", "code": "not-found",
                              "diagnostics": "Unknown resource"}]}),
        ))
    });
    host
}

/// Routes for the fake server.
trait Routes {
    fn route(&mut self, url: &str, response: Result<Response, HttpError>) -> &mut Self;

    fn json(&mut self, url: &str, status: u16, body: Value) -> &mut Self {
        self.route(url, Ok(json_response(status, body)))
    }
}

impl Routes for FakeHost {
    fn route(&mut self, url: &str, response: Result<Response, HttpError>) -> &mut Self {
        self.respond_with_result("GET", url, response)
    }
}

/// The cursor the next sync would get.
fn checkpoint(host: &FakeHost) -> Option<&str> {
    host.checkpoints.last().map(String::as_str)
}

fn json_response(status: u16, body: Value) -> Response {
    Response {
        status,
        headers: vec![("Content-Type".into(), "application/fhir+json".into())],
        body: body.to_string().into_bytes(),
    }
}

fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Response {
    Response {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

fn request(patient: Option<&str>, cursor: Option<&str>, settings: &[(&str, &str)]) -> SyncRequest {
    SyncRequest {
        base_url: format!("{BASE}/"),
        patient_id: patient.map(str::to_string),
        cursor: cursor.map(str::to_string),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn bundle(resources: &[Value], next: Option<&str>) -> Value {
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": resources.iter().map(|r| json!({"resource": r, "search": {"mode": "match"}}))
            .collect::<Vec<_>>(),
    });
    if let Some(next) = next {
        bundle["link"] = json!([{"relation": "self", "url": "ignored"},
                                {"relation": "next", "url": next}]);
    }
    bundle
}

fn patient() -> Value {
    json!({"resourceType": "Patient", "id": "p1", "generalPractitioner": [{"reference": "Practitioner/dr1"}]})
}

/// A search URL as the sync builds it with the default page size.
fn search(resource_type: &str) -> String {
    format!("{BASE}/{resource_type}?patient=p1&_count=50")
}

#[test]
fn falls_back_to_searches_follows_pages_and_references() {
    let mut fake = server();
    fake.json(&format!("{BASE}/Patient/p1"), 200, patient())
        .json(
            &format!("{BASE}/Patient/p1/$everything?_count=50"),
            404,
            json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "diagnostics": "no"}]}),
        )
        .json(
            &search("Condition"),
            200,
            bundle(
                &[json!({"resourceType": "Condition", "id": "c1",
                          "recorder": {"reference": "https://fhir.example.org/r4/Practitioner/dr1"}})],
                Some("https://fhir.example.org/r4?_getpages=abc&_page=2"),
            ),
        )
        .json(
            "https://fhir.example.org/r4?_getpages=abc&_page=2",
            200,
            json!({
                "resourceType": "Bundle",
                "entry": [
                    {"resource": {"resourceType": "Condition", "id": "c2",
                                  "asserter": {"reference": "PractitionerRole/pr1"}}},
                    {"resource": {"resourceType": "Condition", "id": "c1"}},
                    {"resource": {"resourceType": "Encounter", "id": "e1",
                                  "serviceProvider": {"reference": "Organization/o1"}},
                     "search": {"mode": "include"}},
                    {"resource": {"resourceType": "OperationOutcome",
                                  "issue": [{"severity": "warning",
                                             "details": {"text": "Some results are hidden"}}]},
                     "search": {"mode": "outcome"}},
                    {"resource": {"resourceType": "OperationOutcome",
                                  "issue": [{"severity": "information", "diagnostics": "fine"}]}},
                ]
            }),
        )
        .json(
            &search("DocumentReference"),
            200,
            bundle(
                &[json!({"resourceType": "DocumentReference", "id": "d1",
                          "content": [{"attachment": {"url": format!("{BASE}/Binary/b1")}}]})],
                None,
            ),
        )
        .json(
            &format!("{BASE}/Practitioner/dr1"),
            200,
            json!({"resourceType": "Practitioner", "id": "dr1"}),
        )
        .json(
            &format!("{BASE}/PractitionerRole/pr1"),
            200,
            json!({"resourceType": "PractitionerRole", "id": "pr1",
                   "location": [{"reference": "Location/l1"}]}),
        )
        .route(
            &format!("{BASE}/Binary/b1"),
            Ok(response(200, &[("content-type", "application/pdf")], b"%PDF-1")),
        )
        .json(
            &format!("{BASE}/Location/l1"),
            200,
            json!({"resourceType": "Location", "id": "l1",
                   "managingOrganization": {"reference": "Organization/o2"}}),
        )
        .json(
            &format!("{BASE}/Organization/o1"),
            500,
            json!({"resourceType": "OperationOutcome", "issue": [{"diagnostics": "boom"}]}),
        );
    let summary = fake
        .sync::<Fhir>(request(
            Some("p1"),
            None,
            &[("resource_types", "Condition,DocumentReference,Coverage")],
        ))
        .unwrap();

    let mut keys = fake.resource_keys();
    keys.sort();
    assert_eq!(
        keys,
        [
            "Binary/b1",
            "Condition/c1",
            "Condition/c2",
            "DocumentReference/d1",
            "Encounter/e1",
            "Location/l1",
            "Patient/p1",
            "Practitioner/dr1",
            "PractitionerRole/pr1",
        ]
    );
    let binary = fake
        .resources()
        .into_iter()
        .find(|r| r["resourceType"] == "Binary")
        .unwrap();
    assert_eq!(
        binary,
        json!({"resourceType": "Binary", "id": "b1", "contentType": "application/pdf", "data": "JVBERi0x"})
    );
    // Organization/o2 was found in round 2's Location: a third round would be needed.
    assert!(
        !fake
            .requested_urls()
            .contains(&format!("{BASE}/Organization/o2").as_str())
    );
    assert_eq!(
        summary.warnings,
        [
            "Condition: the server reported: Some results are hidden",
            "Coverage: the server answered 404 Not Found: Unknown resource",
            "Organization/o1: the server answered 500 Internal Server Error: boom",
            "Some records could not be read because of server or network errors; the next sync \
             will read everything again.",
        ]
    );
    // The 500 keeps the cursor from advancing: there was none before, so none is set.
    assert!(fake.checkpoints.is_empty());
    // Every request asks for FHIR JSON; searches also ask the server not to ignore a parameter.
    for request in &fake.requests {
        let accept = ("accept".to_string(), "application/fhir+json".to_string());
        let strict = ("prefer".to_string(), "handling=strict".to_string());
        if request.url.contains('?') {
            assert_eq!(request.headers, vec![accept, strict], "{}", request.url);
        } else {
            assert_eq!(request.headers, vec![accept], "{}", request.url);
        }
    }
    // 1 patient + 1 $everything + 3 types + 2 rounds.
    assert_eq!(fake.progress.last(), Some(&(7, Some(7))));
}

#[test]
fn everything_replaces_the_searches_and_the_cursor_advances() {
    let mut fake = server();
    fake.json(&format!("{BASE}/Patient/p1"), 200, patient())
        .json(
            &format!("{BASE}/Patient/p1/$everything?_count=50"),
            200,
            bundle(
                &[
                    patient(),
                    json!({"resourceType": "Observation", "id": "o1"}),
                ],
                Some("https://fhir.example.org/r4/Patient/p1/$everything?page=2&session=xyz"),
            ),
        )
        .json(
            "https://fhir.example.org/r4/Patient/p1/$everything?page=2&session=xyz",
            200,
            bundle(&[json!({"resourceType": "Condition", "id": "c1"})], None),
        )
        .json(
            &format!("{BASE}/Practitioner/dr1"),
            200,
            json!({"resourceType": "Practitioner", "id": "dr1"}),
        );
    let summary = fake.sync::<Fhir>(request(Some("p1"), None, &[])).unwrap();
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    assert_eq!(
        fake.resource_keys(),
        [
            "Patient/p1",
            "Observation/o1",
            "Condition/c1",
            "Practitioner/dr1"
        ]
    );
    assert_eq!(fake.requests.len(), 4);
    assert_eq!(checkpoint(&fake), Some("2026-01-01T00:00:00Z"));
    assert_eq!(fake.progress.last(), Some(&(4, Some(4))));
}

#[test]
fn incremental_searches_and_a_server_without_last_updated() {
    let cursor = "2025-06-01T10:00:00Z";
    let mut fake = server();
    fake.json(&format!("{BASE}/Patient/p1"), 200, patient())
        .json(
            &format!("{BASE}/Patient/p1/$everything?_count=50&_since={cursor}"),
            405,
            json!({}),
        )
        .json(
            &format!("{BASE}/Condition?patient=p1&_count=50&_lastUpdated=gt{cursor}"),
            200,
            bundle(&[json!({"resourceType": "Condition", "id": "c1"})], None),
        )
        .json(
            &format!(
                "{BASE}/Observation?patient=p1&category=laboratory&_count=50&_lastUpdated=gt{cursor}"
            ),
            400,
            json!({"resourceType": "OperationOutcome", "issue": [{"diagnostics": "_lastUpdated"}]}),
        )
        .json(
            &format!("{BASE}/Observation?patient=p1&category=laboratory&_count=50"),
            200,
            bundle(&[json!({"resourceType": "Observation", "id": "o1"})], None),
        )
        .json(
            &format!("{BASE}/Observation?patient=p1&category=http://loinc.org%7Cvital&_count=50"),
            200,
            bundle(&[json!({"resourceType": "Observation", "id": "o2"})], None),
        );
    let summary = fake
        .sync::<Fhir>(request(
            Some("p1"),
            Some(cursor),
            &[
                ("resource_types", "Condition,Observation"),
                (
                    "category_searches",
                    "Observation=laboratory,http://loinc.org|vital",
                ),
                ("reference_rounds", "0"),
            ],
        ))
        .unwrap();
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    assert_eq!(
        fake.resource_keys(),
        [
            "Patient/p1",
            "Condition/c1",
            "Observation/o1",
            "Observation/o2"
        ]
    );
    assert_eq!(checkpoint(&fake), Some("2026-01-01T00:00:00Z"));
}

#[test]
fn not_incremental_ignores_the_cursor() {
    let mut fake = server();
    fake.json(&format!("{BASE}/Patient/p1"), 200, patient());
    fake.sync::<Fhir>(request(
        Some("p1"),
        Some("2025-06-01T10:00:00Z"),
        &[
            ("incremental", "false"),
            ("everything", "false"),
            ("resource_types", "Goal"),
        ],
    ))
    .unwrap();
    assert_eq!(
        fake.requested_urls(),
        [
            format!("{BASE}/Patient/p1"),
            format!("{BASE}/metadata"),
            search("Goal"),
            format!("{BASE}/Practitioner/dr1")
        ]
    );
}

#[test]
fn a_failing_later_page_keeps_the_earlier_ones() {
    let mut fake = server();
    fake.json(&format!("{BASE}/Patient/p1"), 200, patient())
        .json(
            &search("Condition"),
            200,
            bundle(
                &[json!({"resourceType": "Condition", "id": "c1"})],
                Some("https://fhir.example.org/r4/next"),
            ),
        )
        .route(
            "https://fhir.example.org/r4/next",
            Ok(response(
                200,
                &[("content-type", "text/html")],
                b"<html><title>Session expired</title></html>",
            )),
        );
    let summary = fake
        .sync::<Fhir>(request(
            Some("p1"),
            Some("2025-06-01T10:00:00Z"),
            &[
                ("everything", "false"),
                ("incremental", "false"),
                ("resource_types", "Condition"),
                ("reference_rounds", "0"),
            ],
        ))
        .unwrap();
    assert_eq!(fake.resource_keys(), ["Patient/p1", "Condition/c1"]);
    assert_eq!(
        summary.warnings[0],
        "Condition: the server answered with text/html instead of FHIR JSON: Session expired \
         (on page 2; the 1 pages before it were kept)"
    );
    // The previous cursor is kept, so the next run asks again.
    assert_eq!(checkpoint(&fake), Some("2025-06-01T10:00:00Z"));
}

#[test]
fn finds_the_patient_when_the_provider_named_none() {
    let mut fake = server();
    fake.json(&format!("{BASE}/Patient"), 200, bundle(&[patient()], None));
    fake.sync::<Fhir>(request(
        None,
        None,
        &[
            ("everything", "false"),
            ("resource_types", "Goal"),
            ("reference_rounds", "0"),
        ],
    ))
    .unwrap();
    assert_eq!(
        fake.requested_urls(),
        [
            format!("{BASE}/Patient"),
            format!("{BASE}/metadata"),
            search("Goal")
        ]
    );
    assert_eq!(fake.resource_keys(), ["Patient/p1"]);

    let mut fake = server();
    let other = json!({"resourceType": "Patient", "id": "p2"});
    fake.json(
        &format!("{BASE}/Patient"),
        200,
        bundle(&[patient(), other], None),
    );
    let error = fake.sync::<Fhir>(request(None, None, &[])).unwrap_err();
    assert!(
        matches!(&error, ConnectorError::InvalidInput(m)
            if m == "the provider did not say which patient this connection is for"),
        "{error:?}"
    );
    assert!(fake.batches.is_empty());
}

#[test]
fn errors_that_end_the_run() {
    let patient_url = format!("{BASE}/Patient/p1");
    let cases: Vec<(Result<Response, HttpError>, ConnectorError)> = vec![
        (Ok(response(401, &[], b"")), ConnectorError::Unauthorized),
        (
            Ok(response(429, &[("Retry-After", "120")], b"")),
            ConnectorError::RateLimited(120),
        ),
        (Ok(response(429, &[], b"")), ConnectorError::RateLimited(60)),
        (
            Ok(response(
                503,
                &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
                b"",
            )),
            ConnectorError::RateLimited(60),
        ),
        (
            Err(HttpError::Timeout),
            ConnectorError::Transient(
                "Reading Patient/p1: the server did not answer in time".into(),
            ),
        ),
        (
            Err(HttpError::Network("connection refused".into())),
            ConnectorError::Transient(
                "Reading Patient/p1: network error: connection refused".into(),
            ),
        ),
        (
            Err(HttpError::Denied("host not allowed".into())),
            ConnectorError::Fatal(
                "Reading Patient/p1: the host refused the request: host not allowed".into(),
            ),
        ),
        (
            Ok(response(503, &[], b"down")),
            ConnectorError::Transient(
                "Reading Patient/p1: the server answered 503 Service Unavailable: down".into(),
            ),
        ),
        (
            Ok(response(404, &[], b"")),
            ConnectorError::Fatal("Reading Patient/p1: the server answered 404 Not Found".into()),
        ),
    ];
    for (answer, expected) in cases {
        let mut fake = server();
        fake.route(&patient_url, answer);
        let error = fake
            .sync::<Fhir>(request(Some("p1"), None, &[]))
            .unwrap_err();
        assert_eq!(format!("{error:?}"), format!("{expected:?}"));
        assert!(fake.checkpoints.is_empty());
    }
}

#[test]
fn rate_limiting_later_ends_the_run() {
    let mut fake = server();
    fake.json(&format!("{BASE}/Patient/p1"), 200, patient())
        .route(
            &search("Condition"),
            Ok(response(429, &[("retry-after", "30")], b"")),
        );
    let error = fake
        .sync::<Fhir>(request(
            Some("p1"),
            None,
            &[
                ("everything", "false"),
                ("resource_types", "Condition,Goal"),
            ],
        ))
        .unwrap_err();
    assert!(matches!(error, ConnectorError::RateLimited(30)));
    assert!(fake.checkpoints.is_empty());
}

#[test]
fn a_dead_server_ends_the_run_as_transient() {
    let mut fake = server();
    fake.json(&format!("{BASE}/Patient/p1"), 200, patient());
    for t in ["Condition", "Goal", "Procedure"] {
        fake.route(&search(t), Err(HttpError::Timeout));
    }
    let error = fake
        .sync::<Fhir>(request(
            Some("p1"),
            None,
            &[
                ("everything", "false"),
                ("resource_types", "Condition,Goal,Procedure,Device"),
            ],
        ))
        .unwrap_err();
    assert!(matches!(error, ConnectorError::Transient(_)), "{error:?}");
    // The Patient, the CapabilityStatement, then three timeouts in a row.
    assert_eq!(fake.requests.len(), 5);
}

#[test]
fn bad_input_is_refused_before_any_request() {
    let mut fake = server();
    let error = fake
        .sync::<Fhir>(request(Some("p1"), None, &[("page_size", "0")]))
        .unwrap_err();
    assert!(matches!(error, ConnectorError::InvalidInput(_)));
    let mut bad_base = request(Some("p1"), None, &[]);
    bad_base.base_url = "fhir.example.org".into();
    let error = fake.sync::<Fhir>(bad_base).unwrap_err();
    assert!(matches!(error, ConnectorError::InvalidInput(_)));
    assert!(fake.requests.is_empty());
}

#[test]
fn batches_respect_the_host_limits_and_skip_what_it_would_refuse() {
    let mut fake = server();
    let many: Vec<Value> = (0..1200)
        .map(|i| json!({"resourceType": "Observation", "id": format!("o{i}"), "note": [{"text": "x".repeat(3000)}]}))
        .collect();
    let mut odd = many.clone();
    odd.push(json!({"resourceType": "Observation", "id": "bad id"}));
    odd.push(json!({"resourceType": "Observation"}));
    odd.push(json!({"resourceType": "Observation", "id": "huge", "note": [{"text": "x".repeat(5 << 20)}]}));
    fake.json(&format!("{BASE}/Patient/p1"), 200, patient())
        .json(&search("Observation"), 200, bundle(&odd, None));
    let summary = fake
        .sync::<Fhir>(request(
            Some("p1"),
            None,
            &[
                ("everything", "false"),
                ("resource_types", "Observation"),
                ("reference_rounds", "0"),
            ],
        ))
        .unwrap();
    assert_eq!(fake.resources().len(), 1201);
    assert!(fake.batches.len() >= 3);
    assert_eq!(summary.warnings.len(), 3, "{:?}", summary.warnings);
    assert_eq!(
        summary.warnings[0],
        "Observation: skipped Observation/bad id: not a valid FHIR id"
    );
    assert_eq!(
        summary.warnings[1],
        "Observation: skipped one Observation without an id"
    );
    assert!(summary.warnings[2].starts_with("Observation/huge: skipped: at 5.0 MiB"));
}

#[test]
fn too_many_warnings_are_counted() {
    let warnings: Vec<String> = (0..150).map(|i| i.to_string()).collect();
    let capped = cap_warnings(warnings);
    assert_eq!(capped.len(), 101);
    assert_eq!(capped[100], "... and 50 more");
}

#[test]
fn a_page_shows_when_the_patient_filter_was_ignored() {
    let page = |self_link: &str, note: Option<&str>| {
        let mut entries = vec![json!({"resource": {"resourceType": "Goal", "id": "g1"}})];
        if let Some(note) = note {
            entries.push(json!({"search": {"mode": "outcome"}, "resource": {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "warning", "code": "not-supported", "diagnostics": note}]}}));
        }
        json!({"resourceType": "Bundle", "type": "searchset",
               "link": [{"relation": "self", "url": self_link}], "entry": entries})
    };
    let base = "https://x.example/fhir/Goal";
    let applied = page(&format!("{base}?patient=p1&_count=50"), None);
    assert!(!patient_filter_ignored(
        &applied,
        FilterCheck::OutcomeAndSelfLink
    ));
    // The self link echoes what the server applied: no patient, no filter.
    let dropped = page(&format!("{base}?_count=50"), None);
    assert!(patient_filter_ignored(
        &dropped,
        FilterCheck::OutcomeAndSelfLink
    ));
    // ...but a later page's link may be opaque, and is not evidence.
    assert!(!patient_filter_ignored(&dropped, FilterCheck::Outcome));
    let said = page(
        &format!("{base}?patient=p1"),
        Some("Unknown search parameter 'patient' for Goal; parameter ignored"),
    );
    assert!(patient_filter_ignored(&said, FilterCheck::Outcome));
    let unrelated = page(
        &format!("{base}?patient=p1"),
        Some("Some results are hidden"),
    );
    assert!(!patient_filter_ignored(
        &unrelated,
        FilterCheck::OutcomeAndSelfLink
    ));
    // $everything names the patient in its path.
    assert!(!patient_filter_ignored(&dropped, FilterCheck::None));
}

#[test]
fn only_the_types_the_server_lists_are_searched() {
    let mut fake = server();
    fake.json(&format!("{BASE}/Patient/p1"), 200, patient())
        .json(
            &format!("{BASE}/metadata"),
            200,
            json!({"resourceType": "CapabilityStatement", "rest": [{"mode": "server",
            "resource": [
                {"type": "Condition", "interaction": [{"code": "read"}, {"code": "search-type"}]},
                {"type": "Claim"},
                {"type": "Goal", "interaction": [{"code": "read"}]}
            ]}]}),
        )
        .json(&search("Condition"), 200, bundle(&[], None))
        .json(&search("Claim"), 200, bundle(&[], None));
    let summary = fake
        .sync::<Fhir>(request(
            Some("p1"),
            None,
            &[
                ("everything", "false"),
                ("resource_types", "Condition,Claim,Goal,ImagingStudy"),
                ("reference_rounds", "0"),
            ],
        ))
        .unwrap();
    // Goal cannot be searched there and ImagingStudy is not served: neither is asked for, and
    // neither is worth a warning.
    assert_eq!(
        fake.requested_urls(),
        [
            format!("{BASE}/Patient/p1"),
            format!("{BASE}/metadata"),
            search("Condition"),
            search("Claim")
        ]
    );
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
}
