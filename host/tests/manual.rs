//! Entering records by hand over HTTP: a lab result and an attachment are added, shown, edited
//! and deleted; bad input is explained; imported and other users' records cannot be touched.

use crate::common;

use common::TestServer;
use reqwest::StatusCode;

fn record_path(location: &str) -> (String, String) {
    let rest = location.strip_prefix("/people/alice/explore/").unwrap();
    let (t, id) = rest.split_once('/').unwrap();
    (t.to_string(), id.to_string())
}

#[tokio::test]
async fn a_lab_result_entered_by_hand_can_be_seen_edited_and_deleted() {
    let (server, alice) = TestServer::with_admin().await;
    let kinds = alice.get("/records/new").await;
    assert!(kinds.body.contains("Lab result or measurement"));

    let bad = alice
        .submit(
            "/records/new/lab",
            "/records/new/lab",
            &[("name", "Ferritin"), ("value", ""), ("date", "31/12/2024")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("Result is required."), "{}", bad.body);
    assert!(bad.body.contains("Date must be a date like 2024-03-31."));
    assert!(
        bad.body.contains("value=\"Ferritin\""),
        "what was typed is kept"
    );

    let created = alice
        .submit(
            "/records/new/lab",
            "/records/new/lab",
            &[
                ("name", "Ferritin"),
                ("value", "45.5"),
                ("unit", "ng/mL"),
                ("date", "2024-03-01"),
                ("low", "30"),
                ("high", "400"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let location = created.location.unwrap();
    let (resource_type, id) = record_path(&location);
    assert_eq!(resource_type, "Observation");
    let shown = alice.get(&location).await;
    assert!(shown.body.contains("Ferritin"));
    assert!(shown.body.contains("45.5 ng&#x2f;mL"), "{}", shown.body);
    let sources = alice.get("/sources").await;
    assert!(sources.body.contains("Entered by hand"));

    // Edit: the form shows what was typed; the change is saved in place.
    let edit_path = format!("/records/manual/Observation/{id}/edit");
    let form = alice.get(&edit_path).await;
    assert!(form.body.contains("value=\"45.5\""), "{}", form.body);
    let saved = alice
        .submit(
            &edit_path,
            &edit_path,
            &[
                ("name", "Ferritin"),
                ("value", "52"),
                ("unit", "ng/mL"),
                ("date", "2024-03-01"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    assert!(alice.get(&location).await.body.contains("52 ng&#x2f;mL"));
    let uid = server.user_id(common::ADMIN).await;
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM resources WHERE person_id = ? AND resource_type = 'Observation'", uid)
            .await,
        1
    );

    // Another member cannot edit or delete it.
    alice.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1").await;
    assert_eq!(bob.get(&edit_path).await.status, StatusCode::NOT_FOUND);
    let delete_path = format!("/records/manual/Observation/{id}/delete");
    assert_eq!(
        bob.submit("/records/new", &delete_path, &[]).await.status,
        StatusCode::NOT_FOUND
    );

    let deleted = alice.submit("/records/new", &delete_path, &[]).await;
    deleted.assert_redirect("/people/alice/explore/Observation");
    assert_eq!(alice.get(&location).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_attachment_is_kept_as_a_document_with_its_file() {
    let (server, alice) = TestServer::with_admin().await;
    let token = alice.csrf_token("/records/new/attachment").await;
    let pdf = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n".to_vec();
    let send = |bytes: Vec<u8>, mime: &'static str| {
        let form = reqwest::multipart::Form::new()
            .text("name", "Letter from the cardiologist")
            .text("date", "2024-05-02")
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes)
                    .file_name("letter.pdf")
                    .mime_str(mime)
                    .unwrap(),
            );
        alice
            .http
            .post(format!(
                "{}/people/alice/records/new/attachment",
                alice.base
            ))
            .header("X-CSRF-Token", token.clone())
            .header("HX-Request", "true")
            .multipart(form)
            .send()
    };
    let refused = send(b"MZ\x90\x00".to_vec(), "application/x-msdownload")
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().await.unwrap().contains("Fasten keeps PDFs"));

    let created = send(pdf.clone(), "application/pdf").await.unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    let location = created.headers()["hx-redirect"]
        .to_str()
        .unwrap()
        .to_string();
    let (resource_type, _) = record_path(&location);
    assert_eq!(resource_type, "DocumentReference");
    assert!(
        alice
            .get(&location)
            .await
            .body
            .contains("Letter from the cardiologist")
    );
    let uid = server.user_id(common::ADMIN).await;
    let data: String = sqlx::query_scalar(
        "SELECT json_extract(json, '$.data') FROM resources WHERE person_id = ? AND resource_type = 'Binary'",
    )
    .bind(uid)
    .fetch_one(&server.state.db)
    .await
    .unwrap();
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
        pdf
    );
}

#[tokio::test]
async fn imported_records_are_not_editable_here() {
    let (server, alice) = TestServer::with_admin().await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../shared/testdata/fhir/synthea/Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json",
    );
    let uid = server.user_id(common::ADMIN).await;
    fasten::import::import_file(
        &server.state.db,
        &server.state.plugins,
        uid,
        &path,
        "paris.json",
        fasten::jobs::Trigger::Cli,
        &Default::default(),
    )
    .await
    .unwrap();
    let id: String = sqlx::query_scalar(
        "SELECT resource_id FROM resources WHERE resource_type = 'Condition' LIMIT 1",
    )
    .fetch_one(&server.state.db)
    .await
    .unwrap();
    let edit = alice
        .get(&format!("/records/manual/Condition/{id}/edit"))
        .await;
    assert_eq!(edit.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_oversized_attachment_is_refused_with_its_limit_and_nothing_is_stored() {
    let (server, alice) = TestServer::with_admin().await;
    let token = alice.csrf_token("/records/new/attachment").await;
    let form = reqwest::multipart::Form::new()
        .text("name", "Huge scan")
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![0u8; 11 * 1024 * 1024])
                .file_name("scan.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        );
    let reply = alice
        .http
        .post(format!(
            "{}/people/alice/records/new/attachment",
            alice.base
        ))
        .header("X-CSRF-Token", token)
        .header("HX-Request", "true")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = reply.text().await.unwrap();
    assert!(body.contains("larger than the 10 MiB"), "{body}");
    let uid = server.user_id(common::ADMIN).await;
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", uid)
            .await,
        0
    );
}
