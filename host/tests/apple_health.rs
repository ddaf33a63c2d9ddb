//! Apple Health exports through the real `apple-health` plugin: `export.xml` and the zip the
//! Health app shares give the same records; a truncated export says what is wrong and stores
//! nothing. (Another kind of XML never reaches the plugin: see `routing.rs`.)

use crate::common;

#[path = "../benches/support/apple_health_gen.rs"]
pub(crate) mod apple_health_gen;

use std::io::Write;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::Value;

fn sample() -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata/apple-health/export.xml"),
    )
    .unwrap()
}

/// The zip the Health app shares: the export in `apple_health_export/`, beside its other files.
pub(crate) fn exported_zip(export_xml: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("apple_health_export/export_cda.xml", options)
        .unwrap();
    zip.write_all(b"<ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>")
        .unwrap();
    zip.start_file("apple_health_export/export.xml", options)
        .unwrap();
    zip.write_all(export_xml).unwrap();
    zip.finish().unwrap().into_inner()
}

fn with_loinc<'a>(observations: &'a [Value], code: &str) -> Vec<&'a Value> {
    observations
        .iter()
        .filter(|o| {
            o["code"]["coding"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["code"] == code))
        })
        .collect()
}

#[tokio::test]
async fn an_apple_health_export_and_its_zip_give_the_same_records() {
    let (server, client) = TestServer::with_admin().await;
    let alice = server.user_id(common::ADMIN).await;
    let reply = common::upload(&client, "export.xml", sample()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains("Apple Health"), "{}", reply.body);
    // The workout is not imported, and the page says so.
    assert!(reply.body.contains("workout"), "{}", reply.body);

    let stored = server.stored(alice, "Observation").await;
    let bmi = with_loinc(&stored, "39156-5");
    assert_eq!(bmi.len(), 1, "{stored:?}");
    assert_eq!(bmi[0]["valueQuantity"]["value"], 22.5312);
    assert_eq!(bmi[0]["effectiveDateTime"], "2016-04-18T08:25:32-07:00");
    let heart = with_loinc(&stored, "8867-4");
    assert_eq!(heart.len(), 1, "one day of heart rate");
    assert_eq!(heart[0]["valueQuantity"]["value"], 72.0);

    // The zip of the same export: the same records, so nothing new.
    let reply = common::upload(&client, "export.zip", exported_zip(&sample())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains(" 0 new,"), "{}", reply.body);
    assert_eq!(server.stored(alice, "Observation").await, stored);
}

#[tokio::test]
async fn a_years_export_is_summarised_per_day_and_a_cut_off_one_stores_nothing() {
    let (server, client) = TestServer::with_admin().await;
    let alice = server.user_id(common::ADMIN).await;
    let mut export = Vec::new();
    apple_health_gen::write_export(&mut export, 3 * 1024 * 1024).unwrap();

    // Cut off mid-way, as an interrupted copy would be: refused, nothing stored.
    let cut = export[..export.len() / 2].to_vec();
    let reply = common::upload(&client, "export.xml", cut).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert!(reply.body.contains("ends in the middle"), "{}", reply.body);
    assert!(
        reply.body.contains("Nothing from this file was stored"),
        "{}",
        reply.body
    );
    assert!(server.stored(alice, "Observation").await.is_empty());

    let reply = common::upload(&client, "export.zip", exported_zip(&export)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let stored = server.stored(alice, "Observation").await;
    // Heart rate every few minutes becomes one summary per day and device, so a few weeks of
    // readings are tens of records, not thousands.
    let heart = with_loinc(&stored, "8867-4");
    let days: std::collections::BTreeSet<&str> = heart
        .iter()
        .map(|o| &o["effectivePeriod"]["start"].as_str().unwrap()[..10])
        .collect();
    assert!(!days.is_empty());
    assert!(
        heart.len() <= days.len() * 2,
        "{} summaries for {} days",
        heart.len(),
        days.len()
    );
    let readings = export
        .windows(b"HKQuantityTypeIdentifierHeartRate\"".len())
        .filter(|w| w == b"HKQuantityTypeIdentifierHeartRate\"")
        .count();
    assert!(readings > heart.len() * 20, "{readings} readings");
    // Daily steps per device; the Labs page does not list any of it.
    assert!(!with_loinc(&stored, "41950-7").is_empty());
    let labs = client.get("/labs").await;
    assert!(!labs.body.contains("Heart rate"), "{}", labs.body);
}
