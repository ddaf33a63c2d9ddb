//! Labs over HTTP: a Synthea patient's tests with their latest values, a test's trend chart, a
//! crafted bundle with reference ranges and glucose in two units, the report filter, and
//! isolation between users.

use crate::common;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

const FLETCHER: &str = "Fletcher_Hyatt_fe0562b5-f517-4951-8366-32fdab088930.json";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::synthea(name)).unwrap()
}

/// Text as the templates print it: minijinja escapes "/" too.
fn html(text: &str) -> String {
    text.replace('/', "&#x2f;")
}

/// The chart shown on wide screens (the page also holds a narrower copy for phones).
fn wide_chart(body: &str) -> &str {
    let start = body.find(r#"class="chart-wide""#).expect("a wide chart");
    let end = body
        .find(r#"class="chart-narrow""#)
        .expect("a narrow chart");
    &body[start..end]
}

/// The Observations of a bundle with this LOINC code.
fn observations_with_code<'a>(bundle: &'a Value, code: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "Observation" && r["code"]["coding"][0]["code"] == code)
        .collect()
}

async fn bob(server: &TestServer, alice: &common::Client) -> common::Client {
    alice.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1")
        .await
        .assert_redirect("/");
    bob
}

#[tokio::test]
async fn a_synthea_patient_has_tests_with_latest_values_trends_and_reports() {
    let (server, alice) = TestServer::with_admin().await;
    let empty = alice.get("/labs").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.body.contains("No lab results yet"), "{}", empty.body);
    assert!(
        empty.body.contains(r#"href="/people/alice/sources""#),
        "tells where records come from"
    );

    let bytes = fixture(FLETCHER);
    let bundle: Value = serde_json::from_slice(&bytes).unwrap();
    common::upload(&alice, "fletcher.json", bytes).await;

    let cholesterol = observations_with_code(&bundle, "2093-3");
    let latest = cholesterol
        .iter()
        .max_by_key(|o| o["effectiveDateTime"].as_str().unwrap())
        .unwrap();
    let latest_value =
        fasten::record::units::format_number(latest["valueQuantity"]["value"].as_f64().unwrap());

    let labs = alice.get("/labs").await;
    assert_eq!(labs.status, StatusCode::OK);
    assert!(
        labs.body.contains(">Total Cholesterol</a>"),
        "{}",
        labs.body
    );
    assert!(labs.body.contains(r#"href="/people/alice/labs/2093-3""#));
    assert!(
        labs.body.contains(&html(&format!("{latest_value} mg/dL"))),
        "latest value {latest_value} shown"
    );
    assert!(
        labs.body
            .contains(&latest["effectiveDateTime"].as_str().unwrap()[..10])
    );
    // Vital signs and surveys are not lab tests.
    assert!(!labs.body.contains("Body Weight"));
    assert!(!labs.body.contains("Tobacco smoking status"));

    let page = alice.get("/labs/2093-3").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<h1>Total Cholesterol</h1>"));
    // The plain-language explanation from the glossary.
    assert!(page.body.contains("What is this?"), "{}", page.body);
    assert!(page.body.contains("<svg"));
    assert!(page.body.contains(r#"role="img""#));
    assert_eq!(
        wide_chart(&page.body).matches("<circle").count(),
        cholesterol.len(),
        "one point per value"
    );
    assert!(
        !page.body.contains(r#"class="band""#),
        "Synthea sends no reference range"
    );
    assert!(
        page.body.contains("Uploaded files (FHIR)"),
        "the source name"
    );
    assert!(page.body.contains(&html(&format!("{latest_value} mg/dL"))));
    assert_eq!(
        alice.get("/labs/no-such-test").await.status,
        StatusCode::NOT_FOUND
    );

    // A CBC report narrows the list to its own results.
    let reports = alice.get("/labs").await.body;
    assert!(reports.contains("Complete blood count (hemogram) panel"));
    let (report_id,): (String,) = sqlx::query_as(
        "SELECT resource_id FROM resources WHERE resource_type = 'DiagnosticReport'
         AND sort_title LIKE 'Complete blood count%' ORDER BY sort_date LIMIT 1",
    )
    .fetch_one(&server.state.db)
    .await
    .unwrap();
    let filtered = alice.get(&format!("/labs?report={report_id}")).await;
    assert_eq!(filtered.status, StatusCode::OK);
    assert!(
        filtered
            .body
            .contains(&html("Hemoglobin [Mass/volume] in Blood"))
    );
    assert!(filtered.body.contains("11 tests"), "{}", filtered.body);
    assert!(!filtered.body.contains(">Total Cholesterol</a>"));
    assert_eq!(
        alice.get("/labs?report=no-such-report").await.status,
        StatusCode::NOT_FOUND
    );

    // Bob sees none of it, and Alice's test and report are not found for him.
    let bob = bob(&server, &alice).await;
    let his = bob.get("/labs").await;
    assert!(his.body.contains("No lab results yet"));
    assert!(!his.body.contains("Cholesterol"));
    assert!(!his.body.contains(&report_id));
    assert_eq!(bob.get("/labs/2093-3").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        bob.get(&format!("/labs?report={report_id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

fn glucose(
    id: &str,
    code: &str,
    name: &str,
    date: &str,
    value: f64,
    unit: &str,
    range: (f64, f64),
) -> Value {
    json!({"resource": {
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}], "text": name},
        "effectiveDateTime": date,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
        "referenceRange": [{"low": {"value": range.0, "unit": unit}, "high": {"value": range.1, "unit": unit}}]
    }})
}

#[tokio::test]
async fn glucose_in_two_units_shares_one_chart_with_its_reference_band() {
    let (server, alice) = TestServer::with_admin().await;
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        glucose("g1", "2339-0", "Glucose", "2020-01-10T08:00:00Z", 95.0, "mg/dL", (70.0, 99.0)),
        glucose("g2", "2339-0", "Glucose", "2021-01-10T08:00:00Z", 110.0, "mg/dL", (70.0, 99.0)),
        glucose("g3", "15074-8", "Glucose [Moles/volume] in Blood", "2022-01-10T08:00:00Z", 5.5, "mmol/L", (3.9, 5.6)),
        {"resource": {
            "resourceType": "Observation", "id": "vitd",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1989-3"}], "text": "Vitamin D <b>25-OH</b>"},
            "effectiveDateTime": "2021-06-01",
            "valueQuantity": {"value": 18, "unit": "ng/mL"},
            "interpretation": [{"coding": [{"code": "L"}]}]
        }},
        {"resource": {
            "resourceType": "Observation", "id": "weight",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Body Weight"},
            "effectiveDateTime": "2021-06-01",
            "valueQuantity": {"value": 70, "unit": "kg"}
        }},
        {"resource": {
            "resourceType": "DiagnosticReport", "id": "r1", "status": "final",
            "code": {"text": "Summer check-up"},
            "effectiveDateTime": "2021-06-01",
            "result": [{"reference": "Observation/vitd"}]
        }}
    ]});
    common::upload(&alice, "crafted.json", serde_json::to_vec(&bundle).unwrap()).await;

    let labs = alice.get("/labs").await;
    assert!(
        labs.body.contains(&html("5.5 mmol/L")),
        "latest glucose: {}",
        labs.body
    );
    assert!(labs.body.contains("3.9–5.6"), "its range");
    assert_eq!(
        labs.body
            .matches(r#"href="/people/alice/labs/2339-0""#)
            .count(),
        1,
        "both codes are one test"
    );
    assert!(
        labs.body
            .contains("Vitamin D &lt;b&gt;25-OH&lt;&#x2f;b&gt;"),
        "escaped, listed without a category"
    );
    assert!(labs.body.contains(">Low</span>"), "the lab's own flag");
    assert!(
        !labs.body.contains("Body Weight"),
        "an uncategorised vital sign is not a lab"
    );

    let page = alice.get("/labs/2339-0").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(wide_chart(&page.body).matches("<circle").count(), 3);
    assert_eq!(page.body.matches("<svg").count(), 2, "wide and narrow");
    assert_eq!(page.body.matches("<circle").count(), 6);
    assert_eq!(
        wide_chart(&page.body)
            .matches(r#"<rect class="band""#)
            .count(),
        1
    );
    // The newest range, 3.9–5.6 mmol/L, drawn in mg/dL (the unit two of three values use).
    assert!(
        page.body.contains(&html("70.26–100.9 mg/dL")),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(&html("1 value was converted to mg/dL (1 from mmol/L)"))
    );
    assert!(page.body.contains(&format!(
        "{} <small>(= {})</small>",
        html("5.5 mmol/L"),
        html("99.09 mg/dL")
    )));
    assert!(page.body.contains("<title>10 Jan 2021: 110 mg/dL</title>"));
    assert!(page.body.contains(">High</span>"), "110 is above 70–99");
    assert!(
        page.body
            .contains(r#"href="/people/alice/explore/Observation/g2""#)
    );

    let report = alice.get("/labs?report=r1").await;
    assert!(report.body.contains("Summer check-up"));
    assert!(report.body.contains("Vitamin D"));
    assert!(!report.body.contains(r#"href="/people/alice/labs/2339-0""#));

    let bob = bob(&server, &alice).await;
    assert!(!bob.get("/labs").await.body.contains("Glucose"));
    assert_eq!(bob.get("/labs/2339-0").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        bob.get("/labs?report=r1").await.status,
        StatusCode::NOT_FOUND
    );
}

/// The overview reads only the newest result per code; it must say what reading every result
/// says, for real patients and for results entered by hand without a code.
#[tokio::test]
async fn the_fast_overview_matches_reading_every_result() {
    let (server, alice) = TestServer::with_admin().await;
    // Two patients are two people: Paris is Alice's child here, and must not change her labs.
    server.import_synthea(common::ADMIN, FLETCHER).await;
    let child = server.add_person(common::ADMIN, "paris", "Paris").await;
    server
        .import_for(child, &common::synthea(common::PARIS))
        .await;
    let reply = alice
        .submit(
            "/records/new/lab",
            "/records/new/lab",
            &[
                ("name", "Ferritin"),
                ("value", "35"),
                ("unit", "ng/mL"),
                ("date", "2024-01-10"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let uid = server.person_id(common::ADMIN).await;
    let db = &server.state.db;
    let fast = fasten::record::labs::overview(db, uid).await.unwrap();
    let childs = fasten::record::labs::overview(db, child).await.unwrap();
    assert!(
        fast.iter().all(|t| !childs
            .iter()
            .any(|c| serde_json::to_value(c).unwrap() == serde_json::to_value(t).unwrap())),
        "no test result is shared"
    );
    let slow =
        fasten::record::labs::summarise(&fasten::record::labs::results(db, uid).await.unwrap());
    assert!(fast.len() > 20);
    assert_eq!(
        serde_json::to_value(&fast).unwrap(),
        serde_json::to_value(&slow).unwrap()
    );

    // A database from before the observation index gets it built at start-up, with the same answer.
    sqlx::query("DELETE FROM observation_keys")
        .execute(db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM observation_keys_backfill")
        .execute(db)
        .await
        .unwrap();
    assert!(
        fasten::record::labs::overview(db, uid)
            .await
            .unwrap()
            .is_empty()
    );
    let rows = fasten::fhir::ingest::backfill_observation_keys(db)
        .await
        .unwrap();
    assert!(rows > 20, "{rows}");
    let rebuilt = fasten::record::labs::overview(db, uid).await.unwrap();
    assert_eq!(
        serde_json::to_value(&rebuilt).unwrap(),
        serde_json::to_value(&slow).unwrap()
    );
    assert_eq!(
        fasten::fhir::ingest::backfill_observation_keys(db)
            .await
            .unwrap(),
        0,
        "only once"
    );
}
