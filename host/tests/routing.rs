//! Files go to the plugin whose declared file types and content signatures fit them (the
//! manifests' `[[signatures]]`, see `fasten::routing`): an `.xml` by its root element, JSON by
//! its first character, with or without an ending. A file no plugin recognises is refused
//! before any plugin runs, saying what it is, and no source is marked as failed by it.

use crate::common;

use common::{PARIS, TestServer};
use reqwest::StatusCode;

fn shared(path: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata")
            .join(path),
    )
    .unwrap()
}

/// (plugin id, display name) of each upload source of a person.
async fn upload_sources(server: &TestServer, person_id: i64) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT plugin_id, display_name FROM sources WHERE person_id = ? AND kind = 'upload'
         ORDER BY plugin_id",
    )
    .bind(person_id)
    .fetch_all(&server.state.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_xml_file_goes_to_apple_health_by_its_root_element_with_or_without_an_ending() {
    let (server, alice) = TestServer::with_admin().await;
    let person = server.person_id(common::ADMIN).await;
    for name in ["health.xml", "export"] {
        let reply = common::upload(&alice, name, shared("apple-health/export.xml")).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.body);
    }
    assert!(!server.stored(person, "Observation").await.is_empty());
    assert_eq!(
        upload_sources(&server, person).await,
        [(
            "apple-health".into(),
            "Uploaded files (Apple Health)".into()
        )]
    );
}

#[tokio::test]
async fn fhir_json_goes_to_fhir_with_or_without_an_ending() {
    let (server, alice) = TestServer::with_admin().await;
    let person = server.person_id(common::ADMIN).await;
    let bundle = std::fs::read(common::synthea(PARIS)).unwrap();
    let reply = common::upload(&alice, "paris.json", bundle.clone()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // A download saved without an ending, with a byte-order mark and a blank line first.
    let unnamed = [&b"\xEF\xBB\xBF\n"[..], &bundle].concat();
    let reply = common::upload(&alice, "download", unnamed).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        upload_sources(&server, person).await,
        [("fhir".into(), "Uploaded files (FHIR)".into())]
    );
    assert_eq!(
        server
            .count(
                "SELECT COUNT(*) FROM jobs WHERE person_id = ? AND status = 'succeeded'",
                person
            )
            .await,
        2
    );
}

#[tokio::test]
async fn an_xml_file_nobody_recognises_is_refused_saying_what_it_is_and_fails_no_source() {
    let (server, alice) = TestServer::with_admin().await;
    let person = server.person_id(common::ADMIN).await;
    let reply = common::upload(&alice, "export.xml", shared("apple-health/export.xml")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let stored = server
        .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", person)
        .await;

    let drawing = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- drawn by hand -->\n\
        <svg:svg xmlns:svg=\"http://www.w3.org/2000/svg\"><svg:circle r=\"1\"/></svg:svg>";
    let reply = common::upload(&alice, "drawing.xml", drawing.to_vec()).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains(
            "Fasten cannot import drawing.xml: it is XML whose root is &lt;svg&gt;, which is \
             none of the kinds of .xml file Fasten knows: Apple Health export (export.xml); \
             Health record document from a patient portal (C-CDA XML)."
        ),
        "{}",
        reply.body
    );
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", person)
            .await,
        stored
    );
    // The refusal is a job of its own, about no source; Apple Health's last import stays done.
    let (source, error): (Option<i64>, String) = sqlx::query_as(
        "SELECT source_id, error FROM jobs WHERE person_id = ? ORDER BY id DESC LIMIT 1",
    )
    .bind(person)
    .fetch_one(&server.state.db)
    .await
    .unwrap();
    assert_eq!(source, None, "{error}");
    assert!(error.contains("whose root is <svg>"), "{error}");
    let sources = alice
        .get(&format!("{}/sources", alice.own_person_path().await))
        .await;
    assert!(sources.body.contains("Last sync: done"), "{}", sources.body);
    assert!(
        !sources.body.contains("Last sync: failed"),
        "{}",
        sources.body
    );
    assert_eq!(upload_sources(&server, person).await.len(), 1);

    // The same through `fasten import`, the inbox's path: refused, naming what the file is.
    let path = server.data_dir.path().join("drawing.xml");
    std::fs::write(&path, drawing).unwrap();
    let refused = fasten::import::import_file(
        &server.state.db,
        &server.state.plugins,
        person,
        &path,
        "drawing.xml",
        fasten::jobs::Trigger::Cli,
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(refused, fasten::import::ImportError::NotRecognised(..)),
        "{refused:?}"
    );
    assert_eq!(
        server
            .count(
                "SELECT COUNT(*) FROM jobs WHERE person_id = ? AND status = 'failed'
                 AND source_id IS NOT NULL",
                person
            )
            .await,
        0
    );
}

#[tokio::test]
async fn a_zip_is_routed_by_its_members() {
    let (server, alice) = TestServer::with_admin().await;
    let person = server.person_id(common::ADMIN).await;
    let export = crate::apple_health::exported_zip(&shared("apple-health/export.xml"));
    let reply = common::upload(&alice, "export.zip", export).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(upload_sources(&server, person).await.len(), 1);

    let mut other = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    other
        .start_file(
            "photos/IMG_0001.JPG",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
    let other = other.finish().unwrap().into_inner();
    let reply = common::upload(&alice, "photos.zip", other).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("it is a zip of 1 file (photos")
            && reply
                .body
                .contains("which is none of the kinds of .zip file Fasten knows"),
        "{}",
        reply.body
    );
}

// The `ccda` plugin's manifest declares `xml_root = "ClinicalDocument"`: the same ending as
// Apple Health's export.xml, told apart by the root element.
#[tokio::test]
async fn a_ccda_document_goes_to_the_ccda_plugin() {
    let (server, alice) = TestServer::with_admin().await;
    let person = server.person_id(common::ADMIN).await;
    let reply = common::upload(&alice, "CCD.xml", shared("ccda/CCD-1.xml")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let sources = upload_sources(&server, person).await;
    assert_eq!(sources.len(), 1, "{sources:?}");
    assert_eq!(sources[0].0, "ccda");
    assert!(!server.stored(person, "DocumentReference").await.is_empty());
}
