//! Taking records out over HTTP: everything as a Bundle or a zip of NDJSON files, and the
//! summary for a doctor (printable page and IPS Bundle), each for its owner only.

use crate::common;

use std::io::Read;

use common::TestServer;
use reqwest::StatusCode;

async fn download(client: &common::Client, path: &str) -> (StatusCode, String, Vec<u8>) {
    let response = client
        .http
        .get(format!("{}{path}", client.base))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let disposition = response
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        status,
        disposition,
        response.bytes().await.unwrap().to_vec(),
    )
}

#[tokio::test]
async fn everything_downloads_as_a_bundle_and_as_ndjson_per_type() {
    let (server, alice) = TestServer::with_admin().await;
    server.import_synthea(common::ADMIN, common::PARIS).await;
    let page = alice.get("/export").await;
    assert!(page.body.contains("104 records"), "{}", page.body);

    let (status, disposition, body) =
        download(&alice, "/people/alice/export/everything.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    let bundle: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 104);

    let (status, _, body) = download(&alice, "/people/alice/export/everything.zip").await;
    assert_eq!(status, StatusCode::OK);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(body)).unwrap();
    let mut lines = 0;
    let mut names = Vec::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).unwrap();
        names.push(file.name().to_string());
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        for line in text.lines() {
            let resource: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(
                format!("{}.ndjson", resource["resourceType"].as_str().unwrap()),
                file.name()
            );
            lines += 1;
        }
    }
    assert_eq!(lines, 104);
    assert!(
        names.contains(&"Observation.ndjson".to_string()),
        "{names:?}"
    );
    // Nothing is left behind in the data folder.
    let leftovers = std::fs::read_dir(server.data_dir.path().join("exports"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0);

    // Another member downloads an empty record, not Alice's.
    alice.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1").await;
    let (status, _, _) = download(&bob, "/people/alice/export/everything.json").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, body) = download(&bob, "/people/bob/export/everything.json").await;
    let bundle: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_summary_for_a_doctor_prints_and_downloads_as_an_ips_document() {
    let (server, alice) = TestServer::with_admin().await;
    server.import_synthea(common::ADMIN, common::PARIS).await;
    let page = alice.get("/summary").await;
    assert_eq!(page.status, StatusCode::OK);
    for heading in [
        "Allergies and intolerances",
        "Medications",
        "Problems",
        "Immunizations",
        "Results",
        "Procedures",
    ] {
        assert!(
            page.body.contains(&format!("<h2>{heading}</h2>")),
            "{heading}"
        );
    }
    // What Paris Casper's records say: born 1972, an active finding, flu shots, recent labs
    // (rounded as people read them), and the resolved problems left out.
    assert!(page.body.contains("born 24 Feb 1972"), "{}", page.body);
    assert!(page.body.contains("Body mass index 30+ - obesity"));
    // Five flu shots are one line; all eight vaccinations are in the Bundle.
    assert_eq!(
        page.body
            .matches("Influenza, seasonal, injectable, preservative free")
            .count(),
        1
    );
    assert!(page.body.contains("5 doses, the first on 13 Sep 2012"));
    assert!(
        page.body
            .contains("<strong>Total Cholesterol</strong>: 170.8 mg&#x2f;dL"),
        "{}",
        page.body
    );

    let (status, disposition, body) = download(&alice, "/people/alice/summary/ips.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(disposition.contains("patient-summary-"), "{disposition}");
    let bundle: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(bundle["type"], "document");
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(entries[0]["resource"]["resourceType"], "Composition");
    assert_eq!(entries[1]["resource"]["resourceType"], "Patient");
    let immunizations = entries
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Immunization")
        .count();
    assert_eq!(immunizations, 8);

    // Another member's summary is their own (empty) one.
    alice.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1").await;
    let page = bob.get("/summary").await;
    assert!(page.body.contains("Name not recorded"));
    assert!(!page.body.contains("Influenza"));
}
