//! Uploading over HTTP and browsing the result, with isolation between users.

use crate::common;

use common::{ADMIN, TestServer};
use reqwest::StatusCode;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::synthea(name)).unwrap()
}

const PARIS: &str = "Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json";

#[tokio::test]
async fn an_uploaded_bundle_shows_in_explore_and_only_for_its_owner() {
    let (server, alice) = TestServer::with_admin().await;
    let reply = common::upload(&alice, "paris.json", fixture(PARIS)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains("104 new"), "{}", reply.body);

    let sources = alice.get("/sources").await;
    assert!(sources.body.contains("Uploaded files (FHIR)"));
    let explore = alice.get("/explore").await;
    assert!(
        explore.body.contains("104 records in all"),
        "{}",
        explore.body
    );
    assert!(explore.body.contains(">Observation</a>"));
    let observations = alice.get("/explore/Observation").await;
    assert_eq!(observations.status, StatusCode::OK);
    let (id,): (String,) = sqlx::query_as(
        "SELECT resource_id FROM resources WHERE resource_type = 'Observation' AND json LIKE '%valueQuantity%' LIMIT 1",
    )
    .fetch_one(&server.state.db)
    .await
    .unwrap();
    assert!(observations.body.contains(&id));
    let card = alice.get(&format!("/explore/Observation/{id}")).await;
    assert_eq!(card.status, StatusCode::OK);
    assert!(card.body.contains("Raw FHIR JSON"));
    assert!(
        card.body.contains("id=\"record-value\""),
        "a value with its unit"
    );
    assert!(
        card.body.contains("Patient&#x2f;"),
        "references shown as links"
    );

    // Bob sees none of it, and alice's ids are 404 for him.
    alice.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1")
        .await
        .assert_redirect("/");
    assert!(bob.get("/explore").await.body.contains("Nothing here yet"));
    assert_eq!(
        bob.get(&format!("/explore/Observation/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(!bob.get("/explore/Observation").await.body.contains(&id));
    assert_eq!(
        bob.get("/explore/Wizard").await.status,
        StatusCode::NOT_FOUND
    );
    let _ = ADMIN;
}

#[tokio::test]
async fn bad_uploads_explain_themselves_and_store_nothing() {
    let (server, alice) = TestServer::with_admin().await;
    let mut truncated = fixture(PARIS);
    truncated.truncate(truncated.len() / 3);
    let reply = common::upload(&alice, "paris.json", truncated).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body.contains("not valid JSON"), "{}", reply.body);
    assert!(reply.body.contains("Nothing from this file was stored"));
    let reply = common::upload(&alice, "labs.docx", b"PK\x03\x04word/document.xml".to_vec()).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply.body.contains("Fasten cannot import labs.docx"),
        "{}",
        reply.body
    );
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM resources WHERE ? = ?", 0)
            .await,
        0
    );

    // Without the CSRF header the upload is refused before it is read.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(fixture(PARIS)).file_name("p.json"),
    );
    let refused = alice
        .http
        .post(format!("{}/people/alice/sources/upload", alice.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM resources WHERE ? = ?", 0)
            .await,
        0
    );
}

#[tokio::test]
async fn uploads_over_the_size_cap_are_refused() {
    let server = TestServer::start_with(|c| c.limits.upload_bytes = 1000).await;
    let alice = server.client();
    alice.setup(ADMIN, "Alice", common::ADMIN_PASSWORD).await;
    let reply = common::upload(&alice, "paris.json", fixture(PARIS)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.body.contains("larger than"), "{}", reply.body);
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM resources WHERE ? = ?", 0)
            .await,
        0
    );
    let leftovers = std::fs::read_dir(server.data_dir.path().join("uploads"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "the partial upload was removed");
}

#[tokio::test]
async fn a_file_shows_in_the_page_only_under_a_type_that_cannot_run() {
    use base64::Engine;
    let (server, alice) = TestServer::with_admin().await;
    let data = base64::engine::general_purpose::STANDARD
        .encode(b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script>");
    // What a stored file declares, what it is served as, and how.
    let cases = [
        // Browsers may read this as HTML; it does not parse, so it is only downloaded.
        (
            "image/png;,text/html",
            "application/octet-stream",
            "attachment",
        ),
        ("image/png; name=\"a,text/html\"", "image/png", "inline"),
        ("IMAGE/PNG", "image/png", "inline"),
        (
            "text/plain; charset=UTF-8",
            "text/plain; charset=utf-8",
            "inline",
        ),
        (
            "text/plain; charset=\"a,text/html\"",
            "text/plain",
            "inline",
        ),
        ("text/html", "application/octet-stream", "attachment"),
        ("image/svg+xml", "application/octet-stream", "attachment"),
    ];
    let content: Vec<_> = cases
        .iter()
        .map(|(declared, ..)| {
            serde_json::json!({"attachment": {"contentType": declared, "data": data}})
        })
        .collect();
    let bundle = serde_json::json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": {"resourceType": "DocumentReference", "id": "doc-1",
            "status": "current", "content": content}}]
    });
    server.import_bundle(ADMIN, "files.json", &bundle).await;
    for (index, (declared, served, disposition)) in cases.into_iter().enumerate() {
        let reply = alice
            .http
            .get(format!(
                "{}/people/alice/explore/DocumentReference/doc-1/attachments/{index}",
                alice.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::OK, "{declared}");
        assert_eq!(reply.headers()["content-type"], served, "{declared}");
        let sent_as = reply.headers()["content-disposition"].to_str().unwrap();
        assert!(sent_as.starts_with(disposition), "{declared}: {sent_as}");
    }
}
