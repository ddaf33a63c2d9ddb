//! Full-text search and the glossary, as a family member sees them: words found with their
//! matches marked, grouped by kind of record, only in one's own records, kept in step with
//! imports and deletions; and the "What is this?" box, online only when the administrator says so.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use common::{ADMIN, TestServer};
use reqwest::StatusCode;
use serde_json::json;

const PARIS: &str = "Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json";
/// Paris's "Viral sinusitis (disorder)".
const SINUSITIS: &str = "7648b996-765c-4e4b-9daf-af0ede11d69b";

fn search_path(words: &str) -> String {
    let q: String = form_urlencoded::byte_serialize(words.as_bytes()).collect();
    format!("/search?q={q}")
}

/// The results section of one kind of record, e.g. "Conditions".
fn group<'a>(body: &'a str, label: &str) -> Option<&'a str> {
    let start = body.find(&format!("<h2>{label} <small>"))?;
    let rest = &body[start..];
    let end = rest.find("</section>").unwrap_or(rest.len());
    Some(&rest[..end])
}

/// A small bundle with a note, a text document and a lab code the offline glossary lacks.
fn notes_bundle(dir: &Path) -> PathBuf {
    notes_bundle_with(dir, "Worse near the lilac hedge")
}

fn notes_bundle_with(dir: &Path, note: &str) -> PathBuf {
    let text = "Advised to try zebrafinch breathing exercises. <script>alert(1)</script>";
    let bundle = json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Condition", "id": "allergy-1",
                "code": {"text": "Seasonal allergy"},
                "note": [{"text": note}],
                "onsetDateTime": "2023-04-02"}},
            {"resource": {"resourceType": "DocumentReference", "id": "doc-1", "status": "current",
                "type": {"text": "Visit summary"}, "description": "Summary from the clinic",
                "date": "2024-03-01T10:00:00Z",
                "content": [{"attachment": {"contentType": "text/plain",
                    "data": base64::engine::general_purpose::STANDARD.encode(text)}}]}},
            {"resource": {"resourceType": "Observation", "id": "ldh-1", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2532-0",
                    "display": "Lactate dehydrogenase"}]},
                "effectiveDateTime": "2024-03-01",
                "valueQuantity": {"value": 180, "unit": "U/L"}}}
        ]
    });
    let path = dir.join("notes.json");
    std::fs::write(&path, bundle.to_string()).unwrap();
    path
}

#[tokio::test]
async fn words_find_their_records_marked_and_grouped_only_for_their_owner() {
    let (server, alice) = TestServer::with_admin().await;
    server.import_synthea(ADMIN, PARIS).await;

    // Every page has the search box.
    let explore = alice.get("/explore").await;
    assert!(
        explore.body.contains("action=\"/people/alice/search\""),
        "{}",
        explore.body
    );
    assert!(explore.body.contains("name=\"q\""));

    // An empty search is only the form.
    let empty = alice.get("/search").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(
        empty.body.contains("Search Alice&#x27;s records"),
        "{}",
        empty.body
    );
    assert!(!empty.body.contains("id=\"search-summary\""));

    let reply = alice.get(&search_path("sinusitis")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let conditions = group(&reply.body, "Conditions").expect("a Conditions group");
    assert!(
        conditions.contains(&format!(
            "/explore/Condition/{SINUSITIS}\">Viral <mark>sinusitis</mark> (disorder)"
        )),
        "{conditions}"
    );

    // A word from an Observation's name, typed in another case; the last word is a prefix.
    for words in ["TRIGLYCERIDES", "trigly"] {
        let reply = alice.get(&search_path(words)).await;
        let observations = group(&reply.body, "Observations").expect("an Observations group");
        assert!(
            observations.contains("<mark>Triglycerides</mark>"),
            "{words}: {observations}"
        );
        assert!(observations.contains("/explore/Observation/"));
    }
    // Several words must all match.
    let both = alice.get(&search_path("high density")).await;
    assert!(
        both.body.contains("<mark>High</mark> <mark>Density</mark>"),
        "{}",
        both.body
    );
    let none = alice.get(&search_path("triglycerides sinusitis")).await;
    assert!(none.body.contains("records matches"));

    // FTS syntax and punctuation are plain text: never an error.
    for words in [
        "\"",
        "sinusitis\"",
        "\"viral sinusitis",
        "sinusitis)",
        "NEAR(viral",
        "AND OR NOT",
        "title:viral",
        "*",
        "-",
        "viral -sinusitis",
        "'; DROP TABLE resources; --",
        "^^^ {} [] ::",
    ] {
        let reply = alice.get(&search_path(words)).await;
        assert_eq!(reply.status, StatusCode::OK, "{words}: {}", reply.body);
        assert!(reply.body.contains("id=\"search-summary\""), "{words}");
    }
    let quoted = alice.get(&search_path("\"viral sinusitis\"")).await;
    assert!(quoted.body.contains(SINUSITIS), "{}", quoted.body);

    // Bob finds nothing of Alice's.
    alice.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1")
        .await
        .assert_redirect("/");
    let reply = bob.get(&search_path("sinusitis")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.contains("records matches"));
    assert!(!reply.body.contains(SINUSITIS));
    assert!(
        !bob.get(&search_path("trigly"))
            .await
            .body
            .contains("<mark>")
    );

    // Signed out, search is not available.
    let anonymous = server.client().get(&search_path("sinusitis")).await;
    assert!(!anonymous.body.contains(SINUSITIS));
}

#[tokio::test]
async fn notes_and_documents_are_searchable_and_record_text_stays_text() {
    let (server, alice) = TestServer::with_admin().await;
    let dir = tempfile::tempdir().unwrap();
    server.import_path(ADMIN, &notes_bundle(dir.path())).await;

    let reply = alice.get(&search_path("lilac")).await;
    let conditions = group(&reply.body, "Conditions").expect("found by its note");
    assert!(conditions.contains("Seasonal allergy"));
    assert!(
        conditions.contains("<mark>lilac</mark> hedge"),
        "{conditions}"
    );

    let reply = alice.get(&search_path("zebrafinch")).await;
    let documents = group(&reply.body, "Documents").expect("found by its attachment text");
    assert!(documents.contains("/explore/DocumentReference/doc-1"));
    assert!(documents.contains("<mark>zebrafinch</mark>"), "{documents}");
    assert!(
        documents.contains(">1 Mar 2024</time>"),
        "the date is shown"
    );
    // The attachment's markup is shown as text, never run.
    assert!(!reply.body.contains("<script>alert"), "{}", reply.body);
    assert!(documents.contains("&lt;script&gt;"), "{documents}");

    let reply = alice.get(&search_path("clinic")).await;
    assert!(
        group(&reply.body, "Documents").is_some(),
        "found by its description"
    );

    // A changed record is found by its new words only.
    server
        .import_path(
            ADMIN,
            &notes_bundle_with(dir.path(), "Better since the maple was cut"),
        )
        .await;
    let reply = alice.get(&search_path("lilac")).await;
    assert!(reply.body.contains("records matches"), "{}", reply.body);
    let reply = alice.get(&search_path("maple")).await;
    let conditions = group(&reply.body, "Conditions").expect("found by its new note");
    assert!(conditions.contains("<mark>maple</mark>"), "{conditions}");
    assert_eq!(
        reply.body.matches("/explore/Condition/allergy-1").count(),
        1
    );
}

#[tokio::test]
async fn reimports_do_not_duplicate_and_deleting_the_source_removes_results() {
    let (server, alice) = TestServer::with_admin().await;
    let user_id = server.user_id(ADMIN).await;
    server.import_synthea(ADMIN, PARIS).await;
    let first = alice.get(&search_path("cholesterol")).await.body;
    let matches = |body: &str| body.matches("<li>").count();
    assert!(matches(&first) >= 4, "{first}");

    server.import_synthea(ADMIN, PARIS).await;
    let again = alice.get(&search_path("cholesterol")).await.body;
    assert_eq!(matches(&again), matches(&first));
    let indexed = server
        .count(
            "SELECT COUNT(*) FROM search_docs WHERE person_id = ?",
            user_id,
        )
        .await;
    let stored = server
        .count(
            "SELECT COUNT(*) FROM resources WHERE person_id = ?",
            user_id,
        )
        .await;
    assert_eq!(indexed, stored);
    let texts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM search_fts")
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    assert_eq!(texts, stored);

    let source_id: i64 = sqlx::query_scalar("SELECT id FROM sources WHERE person_id = ?")
        .bind(user_id)
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    let page = format!("/sources/{source_id}/delete");
    alice
        .submit(&page, &page, &[("confirm", "yes")])
        .await
        .assert_redirect("/people/alice/sources");
    let after = alice.get(&search_path("cholesterol")).await.body;
    assert!(after.contains("records matches"), "{after}");
    let texts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM search_fts")
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    assert_eq!(texts, 0, "the text goes with its records");
}

#[tokio::test]
async fn a_database_from_before_search_is_indexed_at_start() {
    let (server, alice) = TestServer::with_admin().await;
    server.import_synthea(ADMIN, PARIS).await;
    // As if these records had been stored before search existed.
    sqlx::query("DELETE FROM search_docs")
        .execute(&server.state.db)
        .await
        .unwrap();
    assert!(
        alice
            .get(&search_path("sinusitis"))
            .await
            .body
            .contains("records matches")
    );
    let data_dir = server.stop().await;
    let server = TestServer::start_in(data_dir, |_| {}).await;
    let alice = server.client();
    alice.login(ADMIN, common::ADMIN_PASSWORD).await;
    let reply = alice.get(&search_path("sinusitis")).await;
    assert!(reply.body.contains(SINUSITIS), "{}", reply.body);
}

#[tokio::test]
async fn record_pages_explain_common_tests() {
    let (server, alice) = TestServer::with_admin().await;
    server.import_synthea(ADMIN, PARIS).await;
    let (id,): (String,) = sqlx::query_as(
        "SELECT resource_id FROM resource_tokens WHERE kind = 'code' AND value = 'http://loinc.org|2085-9' LIMIT 1",
    )
    .fetch_one(&server.state.db)
    .await
    .unwrap();
    let card = alice.get(&format!("/explore/Observation/{id}")).await;
    assert_eq!(card.status, StatusCode::OK);
    assert!(card.body.contains("What is this?"), "{}", card.body);
    assert!(card.body.contains("HDL cholesterol"));
    assert!(card.body.contains("medlineplus.gov"));

    let glossary = alice.get("/glossary").await;
    assert_eq!(glossary.status, StatusCode::OK);
    for name in [
        "Hemoglobin A1c (HbA1c)",
        "eGFR",
        "Oxygen saturation (SpO2)",
        "Pain score",
    ] {
        assert!(glossary.body.contains(name), "{name}");
    }
    assert!(
        glossary.body.contains("nothing is sent"),
        "the admin sees the setting"
    );
}

/// A stand-in for MedlinePlus Connect on loopback that counts what it is asked.
async fn fake_medlineplus() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    use axum::extract::{RawQuery, State};
    let asked = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route(
            "/service",
            axum::routing::get(
                |State(asked): State<Arc<Mutex<Vec<String>>>>, RawQuery(query): RawQuery| async move {
                    asked.lock().unwrap().push(query.unwrap_or_default());
                    axum::Json(json!({"feed": {"entry": [{
                        "title": {"_value": "LDH Test"},
                        "link": [{"href": "https://medlineplus.gov/lab-tests/lactate-dehydrogenase-ldh-test/"}],
                        "summary": {"_value": "<p>An <b>LDH</b> test measures an enzyme found in most tissues.</p>"}
                    }]}}))
                },
            ),
        )
        .with_state(asked.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, asked)
}

async fn start_with_glossary(addr: SocketAddr, online: bool) -> (TestServer, common::Client) {
    let server = TestServer::start_with(|config| {
        config.glossary.online = online;
        config.glossary.medlineplus_url = format!("http://{addr}/service");
        config.plugins.allow_http_loopback = true;
        config.plugins.allow_private_networks = true;
    })
    .await;
    let client = server.client();
    client.setup(ADMIN, "Alice", common::ADMIN_PASSWORD).await;
    (server, client)
}

#[tokio::test]
async fn the_online_glossary_asks_once_and_only_when_turned_on() {
    let (addr, asked) = fake_medlineplus().await;
    let dir = tempfile::tempdir().unwrap();

    // Off (the default): no request, whatever is opened; the admin is told about the setting.
    let (server, alice) = start_with_glossary(addr, false).await;
    server.import_path(ADMIN, &notes_bundle(dir.path())).await;
    let card = alice.get("/explore/Observation/ldh-1").await;
    assert_eq!(card.status, StatusCode::OK);
    assert!(!card.body.contains("What is this?"));
    assert!(
        card.body.contains("[glossary] online = true"),
        "{}",
        card.body
    );
    assert!(asked.lock().unwrap().is_empty());
    server.stop().await;

    // On: asked once, then answered from the cache.
    let (server, alice) = start_with_glossary(addr, true).await;
    server.import_path(ADMIN, &notes_bundle(dir.path())).await;
    for _ in 0..2 {
        let card = alice.get("/explore/Observation/ldh-1").await;
        assert!(card.body.contains("What is this?"), "{}", card.body);
        assert!(card.body.contains("An LDH test measures an enzyme"));
        assert!(card.body.contains("text from MedlinePlus"));
    }
    let queries = asked.lock().unwrap().clone();
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert!(
        queries[0].contains("mainSearchCriteria.v.c=2532-0"),
        "{queries:?}"
    );
    assert!(queries[0].contains("mainSearchCriteria.v.cs=2.16.840.1.113883.6.1"));

    // Codes the offline glossary explains never leave the machine.
    server.import_synthea(ADMIN, PARIS).await;
    let (id,): (String,) = sqlx::query_as(
        "SELECT resource_id FROM resource_tokens WHERE kind = 'code' AND value = 'http://loinc.org|2085-9' LIMIT 1",
    )
    .fetch_one(&server.state.db)
    .await
    .unwrap();
    let card = alice.get(&format!("/explore/Observation/{id}")).await;
    assert!(card.body.contains("HDL cholesterol"));
    assert_eq!(asked.lock().unwrap().len(), 1);
}
