//! C-CDA documents through the real `ccda` plugin: each HL7 example document imports whole, a
//! real FHIR server accepts what it became, a portal's XDM zip imports every document it lists
//! (and again adds nothing), and the converted records show on the pages like any others.

use std::io::Write;
use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, TestServer};
use crate::peers::{self, Sekmet};

/// The connector's name, as an import report gives it.
const CCDA_PLUGIN: &str = "Health record documents (C-CDA)";

fn ccda_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/ccda")
}

/// The twelve example documents, by file name.
fn documents() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(ccda_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    paths.sort();
    paths
}

/// Every resource stored for a person: (type, id, json).
async fn stored_all(server: &TestServer, person_id: i64) -> Vec<Value> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT json FROM resources WHERE person_id = ? ORDER BY resource_type, resource_id",
    )
    .bind(person_id)
    .fetch_all(&server.state.db)
    .await
    .unwrap();
    rows.iter()
        .map(|j| serde_json::from_str(j).unwrap())
        .collect()
}

/// `<entry>` elements per section, counted straight from the XML.
fn entries_in(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let document = roxmltree::Document::parse(&text).unwrap();
    document
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "section")
        .flat_map(|s| s.children())
        .filter(|c| c.is_element() && c.tag_name().name() == "entry")
        .count()
}

#[tokio::test]
async fn every_example_document_imports_and_a_fhir_server_accepts_what_it_became() {
    let (server, _client) = TestServer::with_admin().await;
    let sekmet = if peers::require() {
        Some(Sekmet::start_strict().await)
    } else {
        None
    };
    let paths = documents();
    assert_eq!(paths.len(), 12);
    for (index, path) in paths.iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // Each document on its own person: the examples are about different patients.
        let person = server
            .add_person(
                common::ADMIN,
                &format!("doc-{index}"),
                &format!("Patient {index}"),
            )
            .await;
        let report = server
            .import_report(person, path)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(report.plugin, CCDA_PLUGIN, "{name}");
        let stored = stored_all(&server, person).await;
        assert_eq!(report.counts.added as usize, stored.len(), "{name}");
        // Clinical records, not only the document: every example has entries, and no more
        // entries were warned about than the document has.
        let clinical = stored
            .iter()
            .filter(|r| {
                !matches!(
                    r["resourceType"].as_str(),
                    Some(
                        "Binary"
                            | "DocumentReference"
                            | "Patient"
                            | "Practitioner"
                            | "PractitionerRole"
                            | "Organization"
                    )
                )
            })
            .count();
        assert!(clinical > 0, "{name}: only header records were stored");
        assert!(
            report.warnings.len() <= entries_in(path) + 2,
            "{name}: {:?}",
            report.warnings
        );
        for warning in &report.warnings {
            assert!(
                warning.contains(" section: "),
                "{name}: a warning that names no section: {warning}"
            );
        }
        // The original is kept, byte for byte.
        let binary = stored
            .iter()
            .find(|r| r["resourceType"] == "Binary")
            .unwrap();
        use base64::Engine;
        let original = base64::engine::general_purpose::STANDARD
            .decode(binary["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(original, std::fs::read(path).unwrap(), "{name}");

        // A FHIR R4 server that validates every resource takes them all in one transaction.
        if let Some(sekmet) = &sekmet {
            let entries: Vec<Value> = stored
                .iter()
                .map(|r| {
                    let url = format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
                    json!({ "fullUrl": format!("{}/{url}", sekmet.base), "resource": r, "request": { "method": "PUT", "url": url } })
                })
                .collect();
            let bundle =
                json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries });
            let response = peers::http()
                .post(&sekmet.base)
                .header("content-type", "application/fhir+json")
                .header("accept", "application/fhir+json")
                .body(bundle.to_string())
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(status, StatusCode::OK, "{name}: {body:#}");
            let answered = body["entry"].as_array().map(Vec::len).unwrap_or(0);
            assert_eq!(answered, stored.len(), "{name}: {body:#}");
            for entry in body["entry"].as_array().unwrap() {
                let status = entry["response"]["status"].as_str().unwrap_or("");
                assert!(status.starts_with('2'), "{name}: {entry:#}");
            }
        }
    }
}

/// A zip in the IHE XDM layout, as a portal's "Download my record" gives, holding `documents`.
fn xdm_zip(documents: &[&Path]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    let mut metadata = String::from(
        "<?xml version=\"1.0\"?>\n<lcm:SubmitObjectsRequest xmlns:lcm=\"urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0\" \
         xmlns:rim=\"urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0\"><rim:RegistryObjectList>",
    );
    for (index, _) in documents.iter().enumerate() {
        metadata.push_str(&format!(
            "<rim:ExtrinsicObject id=\"Document{index}\" mimeType=\"text/xml\"><rim:Slot name=\"URI\">\
             <rim:ValueList><rim:Value>DOC{:04}.XML</rim:Value></rim:ValueList></rim:Slot></rim:ExtrinsicObject>",
            index + 1
        ));
    }
    metadata.push_str("</rim:RegistryObjectList></lcm:SubmitObjectsRequest>");
    let mut put = |path: &str, bytes: &[u8]| {
        writer.start_file(path, options).unwrap();
        writer.write_all(bytes).unwrap();
    };
    put(
        "INDEX.HTM",
        b"<html><body><a href=\"IHE_XDM/SUBSET01/DOC0001.XML\">Record</a></body></html>",
    );
    put("README.TXT", b"This folder holds your health record.");
    put("IHE_XDM/SUBSET01/METADATA.XML", metadata.as_bytes());
    put(
        "IHE_XDM/SUBSET01/CCD.XSL",
        b"<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\"/>",
    );
    for (index, path) in documents.iter().enumerate() {
        put(
            &format!("IHE_XDM/SUBSET01/DOC{:04}.XML", index + 1),
            &std::fs::read(path).unwrap(),
        );
    }
    writer.finish().unwrap().into_inner()
}

#[tokio::test]
async fn a_portal_download_imports_both_its_documents_and_again_adds_nothing() {
    let (server, client) = TestServer::with_admin().await;
    let dir = ccda_dir();
    // Two documents about the same patient (Eve Betterhalf, born 1 May 1975).
    let zip = xdm_zip(&[&dir.join("CCD-1.xml"), &dir.join("Referral_Note.xml")]);

    // Uploaded on the page like any file: the zip goes to the C-CDA connector by its IHE_XDM folder.
    let reply = common::upload(&client, "MyChart-record.zip", zip.clone()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains(CCDA_PLUGIN), "{}", reply.body);
    let alice = server.person_id(common::ADMIN).await;
    let documents: Vec<Value> = server
        .stored(alice, "DocumentReference")
        .await
        .into_iter()
        .filter(|d| d.get("masterIdentifier").is_some())
        .collect();
    let mut titles: Vec<&str> = documents
        .iter()
        .map(|d| d["description"].as_str().unwrap())
        .collect();
    titles.sort();
    assert_eq!(titles, ["Patient Chart Summary", "Referral Note"]);
    let stored = stored_all(&server, alice).await.len();

    // The same download again: nothing added, nothing changed.
    let path = server.data_dir.path().join("again.zip");
    std::fs::write(&path, &zip).unwrap();
    let report = server.import_report(alice, &path).await.unwrap();
    assert_eq!(report.counts.added, 0, "{:?}", report.counts);
    assert_eq!(report.counts.updated, 0, "{:?}", report.counts);
    assert_eq!(stored_all(&server, alice).await.len(), stored);
}

#[tokio::test]
async fn a_zip_of_loose_documents_goes_to_the_ccda_connector_and_apple_healths_zip_does_not() {
    let (server, client) = TestServer::with_admin().await;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer
        .start_file(
            "records/summary.xml",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
    writer
        .write_all(&std::fs::read(ccda_dir().join("CCD-2.xml")).unwrap())
        .unwrap();
    let zip = writer.finish().unwrap().into_inner();
    let reply = common::upload(&client, "records.zip", zip).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains(CCDA_PLUGIN), "{}", reply.body);
    let alice = server.person_id(common::ADMIN).await;
    assert!(!server.stored(alice, "AllergyIntolerance").await.is_empty());

    // Apple's export zip holds XML too (export.xml, export_cda.xml): it stays Apple Health's.
    let export_xml = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/apple-health/export.xml"),
    )
    .unwrap();
    let export = crate::apple_health::exported_zip(&export_xml);
    let reply = common::upload(&client, "export.zip", export).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains("Apple Health"), "{}", reply.body);
}

#[tokio::test]
async fn converted_records_show_on_labs_history_profile_and_search() {
    let (_server, client) = TestServer::with_admin().await;
    let reply = common::upload(
        &client,
        "CCD.xml",
        std::fs::read(ccda_dir().join("CCD-1.xml")).unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains(CCDA_PLUGIN), "{}", reply.body);
    let person = client.own_person_path().await;

    // Results: the CBC's hemoglobin is a lab trend.
    let labs = client.get(&format!("{person}/labs")).await;
    assert_eq!(labs.status, StatusCode::OK);
    assert!(labs.body.contains("Hemoglobin"), "{}", labs.body);

    // The profile lists the allergy, the medication and the current problem (the pneumonia of
    // 2008 is resolved).
    let profile = client.get(&format!("{person}/profile")).await;
    assert_eq!(profile.status, StatusCode::OK);
    for expected in ["Penicillin", "Proventil", "Chest pain"] {
        assert!(
            profile.body.contains(expected),
            "{expected}: {}",
            profile.body
        );
    }

    // History has the visit of the Encounters section, with its diagnosis.
    let history = client.get(&format!("{person}/history")).await;
    assert_eq!(history.status, StatusCode::OK);
    assert!(
        history.body.contains("Checkup Examination"),
        "{}",
        history.body
    );
    assert!(history.body.contains("Pneumonia"), "{}", history.body);

    // Search finds a problem, and a narrative-only section by its words.
    let search = client.get(&format!("{person}/search?q=pneumonia")).await;
    assert_eq!(search.status, StatusCode::OK);
    assert!(search.body.contains("Pneumonia"), "{}", search.body);
}
