//! Emails (.eml) through the real `email` plugin: uploaded on the Sources page, the message
//! becomes a document in Explore with its attachments viewable, a FHIR attachment's records join
//! the record, and the malformed samples in `../shared/testdata/eml` give clear answers.

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{PARIS, TestServer};
use reqwest::StatusCode;

fn testdata_eml(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata/eml")
            .join(name),
    )
    .unwrap()
}

/// Base64 in 76-character lines, as mail programs write it.
fn wrapped_base64(bytes: &[u8]) -> String {
    STANDARD
        .encode(bytes)
        .as_bytes()
        .chunks(76)
        .map(|line| String::from_utf8(line.to_vec()).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

/// A clinic's email: a note, a PDF report and the patient's FHIR Bundle.
fn clinic_email() -> Vec<u8> {
    let bundle = std::fs::read(common::synthea(PARIS)).unwrap();
    format!(
        "From: Riverside Clinic <results@riverside.example>\r\n\
         To: Paris <paris@example.org>\r\n\
         Subject: Your lab results from March\r\n\
         Date: Tue, 05 Mar 2024 09:30:00 +0100\r\n\
         Message-ID: <results-4711@riverside.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Dear Paris, your cholesterol is back to normal. The full report is attached.\r\n\
         --b1\r\n\
         Content-Type: application/pdf; name=\"report.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"report.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {}\r\n\
         --b1\r\n\
         Content-Type: application/fhir+json; name=\"record.json\"\r\n\
         Content-Disposition: attachment; filename=\"record.json\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {}\r\n\
         --b1--\r\n",
        wrapped_base64(PDF),
        wrapped_base64(&bundle)
    )
    .into_bytes()
}

async fn count(server: &TestServer, user: i64, resource_type: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM resources WHERE person_id = ? AND resource_type = ?")
        .bind(user)
        .bind(resource_type)
        .fetch_one(&server.state.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_emailed_report_becomes_a_document_with_its_files_and_its_fhir_records() {
    let (server, client) = TestServer::with_admin().await;
    let reply = common::upload(&client, "results.eml", clinic_email()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains("import-report"), "{}", reply.body);
    assert!(
        reply.body.contains("Email"),
        "imported by the email plugin: {}",
        reply.body
    );
    let alice = server.user_id(common::ADMIN).await;
    // The bundle's own records (Paris has 60 Observations), the email, and its two files.
    assert_eq!(count(&server, alice, "Observation").await, 60);
    assert_eq!(count(&server, alice, "DocumentReference").await, 1);
    assert_eq!(count(&server, alice, "Binary").await, 2);

    let (doc_id,): (String,) = sqlx::query_as(
        "SELECT resource_id FROM resources WHERE person_id = ? AND resource_type = 'DocumentReference'",
    )
    .bind(alice)
    .fetch_one(&server.state.db)
    .await
    .unwrap();
    let card = client
        .get(&format!("/explore/DocumentReference/{doc_id}"))
        .await;
    assert!(
        card.body.contains("Your lab results from March"),
        "{}",
        card.body
    );
    assert!(card.body.contains("id=\"attachments\""), "{}", card.body);
    assert!(card.body.contains("report.pdf"), "{}", card.body);

    // Each listed file opens: the message text, then the PDF exactly as sent.
    let files = client.http.get(format!(
        "{}/people/alice/explore/DocumentReference/{doc_id}/attachments/0",
        client.base
    ));
    let text = files.send().await.unwrap();
    assert!(
        text.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        text.text()
            .await
            .unwrap()
            .contains("cholesterol is back to normal")
    );
    let pdf = client
        .http
        .get(format!(
            "{}/people/alice/explore/DocumentReference/{doc_id}/attachments/1",
            client.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.status(), StatusCode::OK);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert_eq!(pdf.bytes().await.unwrap().as_ref(), PDF);

    // Another member cannot open Alice's files.
    client.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1").await;
    let theirs = bob
        .get(&format!(
            "/explore/DocumentReference/{doc_id}/attachments/1"
        ))
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);

    // The same email again updates rather than duplicates.
    let again = common::upload(&client, "results.eml", clinic_email()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(count(&server, alice, "DocumentReference").await, 1);
    assert_eq!(count(&server, alice, "Binary").await, 2);
}

#[tokio::test]
async fn the_sample_emails_import_or_say_clearly_why_not() {
    let (server, client) = TestServer::with_admin().await;
    let alice = server.user_id(common::ADMIN).await;
    for (name, pdfs) in [("mixed-pdf.eml", 1), ("mixed-pdf-inline.eml", 1)] {
        let before = count(&server, alice, "Binary").await;
        let reply = common::upload(&client, name, testdata_eml(name)).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.body);
        assert_eq!(
            count(&server, alice, "Binary").await - before,
            pdfs,
            "{name}"
        );
    }
    // Missing closing boundaries: what can be read is kept, and the page says the email may be
    // cut off.
    for name in ["malformed-003.eml", "malformed-004.eml"] {
        let reply = common::upload(&client, name, testdata_eml(name)).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.body);
        assert!(
            reply.body.contains("<li>"),
            "{name} has a warning: {}",
            reply.body
        );
    }
    // Only empty parts: nothing to import, nothing stored.
    let before = server
        .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", alice)
        .await;
    let reply = common::upload(
        &client,
        "malformed-007.eml",
        testdata_eml("malformed-007.eml"),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("Nothing from this file was stored"),
        "{}",
        reply.body
    );
    // A PDF renamed to .eml is not an email.
    let reply = common::upload(&client, "scan.eml", PDF.to_vec()).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("not an email message"),
        "{}",
        reply.body
    );
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", alice)
            .await,
        before
    );
}

/// The clinic emails the record the family already imported: each visit is listed once in
/// History, with what happened there, and each condition once on the profile.
#[tokio::test]
async fn a_record_that_arrives_twice_is_listed_once() {
    let (server, client) = TestServer::with_admin().await;
    server.import_synthea(common::ADMIN, PARIS).await;
    let reply = common::upload(&client, "results.eml", clinic_email()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let alice = server.user_id(common::ADMIN).await;
    // The email's records are the imported ones, byte for byte: they are not stored twice.
    assert_eq!(count(&server, alice, "Encounter").await, 7, "stored once");

    let history = client.get("/history").await.body;
    assert!(history.contains("7 visits"), "{history}");
    assert_eq!(history.matches("<article class=\"encounter\"").count(), 7);
    assert!(history.contains("Laceration of thigh"));
    let profile = client.get("/profile").await.body;
    assert_eq!(
        profile.matches(">Laceration of thigh<").count(),
        0,
        "healed"
    );
    assert_eq!(profile.matches("Body mass index 30+ - obesity").count(), 1);
}
