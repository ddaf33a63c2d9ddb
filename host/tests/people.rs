//! People and family access: records belong to a person, accounts get access to people.
//!
//! Isolation is checked from the router itself: every person-scoped path that
//! `web::people::person_routes` registers is tried with another person's slug and that person's
//! real record, source and job ids, by an account without a grant (404 every time) and by one
//! with a view grant (403 on every form), and the database must not change.

use crate::common;

use common::{ADMIN, ADMIN_PASSWORD, Client, TestServer, synthea};
use reqwest::StatusCode;

const ROBERTO: &str = "Roberto_Graham_238a58eb-31dc-4054-82ee-0651ee76f391.json";
const BOB_PASSWORD: &str = "bob-password-12";

/// Alice (admin) with her own records (Paris Casper) and her son Leo's (Roberto Graham); Bob, a
/// member with records of his own (Norma Pagan) and, so far, no access to anyone else.
async fn family() -> (TestServer, Client, Client, i64) {
    let (server, alice) = TestServer::with_admin().await;
    alice.create_user("bob", BOB_PASSWORD, "member").await;
    let leo = server.add_person(ADMIN, "leo", "Leo Example").await;
    server.import_synthea(ADMIN, common::PARIS).await;
    server.import_for(leo, &synthea(ROBERTO)).await;
    server
        .import_synthea(
            "bob",
            "Norma_Pagan_c5c29bde-5877-42ae-b786-17ce70275691.json",
        )
        .await;
    let bob = server.client();
    bob.login("bob", BOB_PASSWORD).await;
    (server, alice, bob, leo)
}

async fn one(server: &TestServer, sql: &str, person: i64) -> String {
    sqlx::query_scalar(sql)
        .bind(person)
        .fetch_one(&server.state.db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every person-scoped path with its parameters filled in from `person`'s real records.
async fn filled_paths(server: &TestServer, person: i64) -> Vec<String> {
    filled_routes(server, person)
        .await
        .into_iter()
        .map(|(_, filled)| filled)
        .collect()
}

/// Every person-scoped route's pattern, and the path with `person`'s real ids filled in.
async fn filled_routes(server: &TestServer, person: i64) -> Vec<(&'static str, String)> {
    let observation = one(
        server,
        "SELECT resource_id FROM resources WHERE person_id = ? AND resource_type = 'Observation' LIMIT 1",
        person,
    )
    .await;
    let encounter = one(
        server,
        "SELECT resource_id FROM resources WHERE person_id = ? AND resource_type = 'Encounter' LIMIT 1",
        person,
    )
    .await;
    let condition = one(
        server,
        "SELECT resource_id FROM resources WHERE person_id = ? AND resource_type = 'Condition' LIMIT 1",
        person,
    )
    .await;
    let source = one(
        server,
        "SELECT CAST(id AS TEXT) FROM sources WHERE person_id = ? LIMIT 1",
        person,
    )
    .await;
    let job = one(
        server,
        "SELECT CAST(id AS TEXT) FROM jobs WHERE person_id = ? LIMIT 1",
        person,
    )
    .await;
    let lab = one(
        server,
        "SELECT key FROM observation_keys WHERE person_id = ? AND is_lab = 1 LIMIT 1",
        person,
    )
    .await;
    let routes = fasten::web::people::person_routes();
    assert!(
        routes.paths().len() >= 30,
        "the person-scoped routes: {:?}",
        routes.paths()
    );
    routes
        .paths()
        .iter()
        .map(|pattern| {
            let id = if pattern.starts_with("/sources/") {
                &source
            } else if pattern.starts_with("/jobs/") {
                &job
            } else if pattern.starts_with("/history/encounter/") {
                &encounter
            } else if pattern.starts_with("/conditions/") {
                &condition
            } else if pattern.starts_with("/dashboard/widgets/") {
                "vitals"
            } else {
                &observation
            };
            let filled = pattern
                .replace("{resource_type}", "Observation")
                .replace("{id}", id)
                .replace("{key}", &lab)
                .replace("{index}", "0")
                .replace("{kind}", "condition");
            (*pattern, filled)
        })
        .collect()
}

/// Row counts of every table a request could change.
async fn snapshot(server: &TestServer) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in [
        "people",
        "person_access",
        "users",
        "sources",
        "resources",
        "resource_tokens",
        "search_docs",
        "jobs",
        "dashboard_layouts",
        "connections",
    ] {
        counts.push(
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&server.state.db)
                .await
                .unwrap(),
        );
    }
    let changed: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(updated_at), 0) FROM resources")
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    counts.push(changed);
    counts
}

/// A form post with the account's CSRF token (taken from its family page).
async fn post(client: &Client, path: &str) -> StatusCode {
    let token = client.csrf_token("/people").await;
    client
        .post_raw(
            path,
            &[
                ("csrf_token", token.as_str()),
                ("confirm", "yes"),
                ("confirm_slug", "leo"),
                ("username", "bob"),
                ("level", "manage"),
                ("user_id", "1"),
                ("name", "Changed"),
                ("token", "000000000000000000000000"),
                ("widgets", "vitals"),
            ],
        )
        .await
        .status
}

#[tokio::test]
async fn another_persons_pages_are_not_found_on_every_route() {
    let (server, alice, bob, leo) = family().await;
    let paths = filled_paths(&server, leo).await;
    // Alice manages Leo: the filled-in paths are real (not 404 because of a bad id).
    for path in paths
        .iter()
        .filter(|p| !p.contains("/records/manual/") && !p.contains("/attachments/"))
    {
        let status = alice.get_exact(&format!("/people/leo{path}")).await.status;
        assert_ne!(status, StatusCode::NOT_FOUND, "alice GET /people/leo{path}");
    }
    let before = snapshot(&server).await;
    for path in &paths {
        let url = format!("/people/leo{path}");
        let got = bob.get_exact(&url).await.status;
        assert!(
            got == StatusCode::NOT_FOUND || got == StatusCode::METHOD_NOT_ALLOWED,
            "bob GET {url}: {got}"
        );
        let posted = post(&bob, &url).await;
        assert!(
            posted == StatusCode::NOT_FOUND || posted == StatusCode::METHOD_NOT_ALLOWED,
            "bob POST {url}: {posted}"
        );
        // A slug that exists nowhere answers the same: a slug reveals nothing.
        let nobody = bob.get_exact(&format!("/people/nobody{path}")).await.status;
        assert!(
            nobody == StatusCode::NOT_FOUND || nobody == StatusCode::METHOD_NOT_ALLOWED,
            "bob GET /people/nobody{path}: {nobody}"
        );
    }
    // Bob's own person's pages with Leo's ids: Leo's records are not found there either.
    let with_ids = filled_routes(&server, leo).await;
    let leos_ids = with_ids
        .iter()
        .filter(|(pattern, _)| pattern.contains("{id}") && !pattern.starts_with("/dashboard/"));
    for (_, path) in leos_ids {
        let url = format!("/people/bob{path}");
        let got = bob.get_exact(&url).await.status;
        assert!(
            got == StatusCode::NOT_FOUND || got == StatusCode::METHOD_NOT_ALLOWED,
            "bob GET {url}: {got}"
        );
        let posted = post(&bob, &url).await;
        assert!(
            posted == StatusCode::NOT_FOUND || posted == StatusCode::METHOD_NOT_ALLOWED,
            "bob POST {url}: {posted}"
        );
    }
    assert_eq!(snapshot(&server).await, before, "nothing changed");
    // Being an administrator grants nothing: Alice cannot read Bob's records.
    let bobs = alice.get_exact("/people/bob/labs").await;
    assert_eq!(bobs.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_view_grant_reads_but_every_form_is_forbidden() {
    let (server, alice, bob, leo) = family().await;
    let shared = alice
        .submit(
            "/people/leo/person",
            "/people/leo/person/share",
            &[("username", "bob"), ("level", "view")],
        )
        .await;
    assert_eq!(shared.status, StatusCode::SEE_OTHER, "{}", shared.body);
    let labs = bob.get("/people/leo/labs").await;
    assert_eq!(labs.status, StatusCode::OK);
    assert!(
        labs.body.contains("Leo Example&#x27;s labs"),
        "{}",
        labs.body
    );
    let paths = filled_paths(&server, leo).await;
    let before = snapshot(&server).await;
    for path in &paths {
        let url = format!("/people/leo{path}");
        let posted = post(&bob, &url).await;
        assert!(
            posted == StatusCode::FORBIDDEN || posted == StatusCode::METHOD_NOT_ALLOWED,
            "bob (view) POST {url}: {posted}"
        );
    }
    assert_eq!(snapshot(&server).await, before, "nothing changed");
    // The sources page shows a viewer no upload or connect form.
    let sources = bob.get("/people/leo/sources").await;
    assert_eq!(sources.status, StatusCode::OK);
    assert!(!sources.body.contains("upload-form"));
    assert!(!sources.body.contains("custom-connect"));
    assert!(sources.body.contains("view-only"));
}

#[tokio::test]
async fn two_people_under_one_account_never_mix() {
    let (server, alice, _bob, leo) = family().await;
    let paris = "Paris";
    let roberto = "Roberto";
    for (slug, mine, theirs) in [("alice", paris, roberto), ("leo", roberto, paris)] {
        for tail in ["/", "/profile", "/dashboard/widgets/summary", "/summary"] {
            let page = alice.get(&format!("/people/{slug}{tail}")).await;
            assert_eq!(page.status, StatusCode::OK, "{slug}{tail}");
            assert!(
                page.body.contains(mine) || tail == "/",
                "{slug}{tail} names {mine}"
            );
            assert!(!page.body.contains(theirs), "{slug}{tail} names {theirs}");
        }
    }
    // Weight: each person's chart and lab list come from their own records only.
    let alice_count: i64 = server
        .count(
            "SELECT COUNT(*) FROM resources WHERE person_id = ?",
            server.person_id(ADMIN).await,
        )
        .await;
    let leo_count = server
        .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", leo)
        .await;
    let explore_alice = alice.get("/people/alice/explore").await;
    assert!(explore_alice.body.contains(&format!("{alice_count}")));
    let explore_leo = alice.get("/people/leo/explore").await;
    assert!(explore_leo.body.contains(&format!("{leo_count}")));
    // Search: Roberto's conditions are found for Leo only.
    let found = alice.get("/people/leo/search?q=Graham").await;
    assert!(found.body.contains("Roberto"), "{}", found.body);
    let not_found = alice.get("/people/alice/search?q=Graham").await;
    assert!(!not_found.body.contains("Roberto"));
    // Export: each person's file holds their Patient only.
    let leo_export = alice.get("/people/leo/export/everything.json").await;
    assert!(
        leo_export
            .body
            .contains("ac2c231f-86d3-43e0-ab69-7527cbd8ac05")
    );
    assert!(
        !leo_export
            .body
            .contains("d421c808-2605-41a4-9aaf-9d786528dc13")
    );
    let summary = alice.get("/people/leo/summary/ips.json").await;
    assert!(summary.body.contains("Graham"));
    assert!(!summary.body.contains("Casper"));
}

#[tokio::test]
async fn old_addresses_move_to_the_accounts_own_person() {
    let (_server, alice, _bob, _leo) = family().await;
    let moved = alice.get_exact("/labs?report=x").await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER);
    assert_eq!(
        moved.location.as_deref(),
        Some("/people/alice/labs?report=x")
    );
    let home = alice.get_exact("/").await;
    assert_eq!(home.location.as_deref(), Some("/people/alice/"));
    let token = alice.csrf_token("/people").await;
    let form = alice
        .http
        .post(format!("{}/sources/1/sync", alice.base))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        form.headers()["location"].to_str().unwrap(),
        "/people/alice/sources/1/sync"
    );
}

#[tokio::test]
async fn the_family_page_lists_everyone_the_account_can_see() {
    let (_server, alice, bob, _leo) = family().await;
    let page = alice.get("/people").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("person-alice"));
    assert!(page.body.contains("person-leo"));
    assert!(!page.body.contains("person-bob"));
    // Roberto's records say he died; the line says so rather than an age.
    assert!(page.body.contains("died 19 Oct 1987"), "{}", page.body);
    let bobs = bob.get("/people").await;
    assert!(bobs.body.contains("person-bob"));
    assert!(!bobs.body.contains("person-leo"));
    // The header's switcher lists the same people, the current one marked.
    let labs = alice.get("/people/leo/labs").await;
    assert!(
        labs.body.contains(r#"href="/people/alice/labs""#),
        "{}",
        labs.body
    );
    assert!(
        labs.body
            .contains(r#"href="/people/leo/labs" aria-current="true""#)
    );
}

#[tokio::test]
async fn a_manager_adds_shares_revokes_and_deletes_a_person() {
    let (server, alice, bob, _leo) = family().await;
    let added = alice
        .submit(
            "/people",
            "/people",
            &[
                ("slug", "mia"),
                ("name", "Mia Example"),
                ("birth_date", "2019-02-03"),
            ],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    assert_eq!(added.location.as_deref(), Some("/people/mia/"));
    let taken = alice
        .submit("/people", "/people", &[("slug", "mia"), ("name", "Other")])
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert!(taken.body.contains("already used"));
    // Share at manage: Bob now uploads for Mia.
    alice
        .submit(
            "/people/mia/person",
            "/people/mia/person/share",
            &[("username", "bob"), ("level", "manage")],
        )
        .await;
    let mia = server
        .count("SELECT id FROM people WHERE slug = 'mia' AND ? = 1", 1)
        .await;
    let bundle = std::fs::read(synthea(common::PARIS)).unwrap();
    let uploaded = common::upload_for(&bob, "/people/mia", "paris.json", bundle).await;
    assert_eq!(uploaded.status, StatusCode::OK, "{}", uploaded.body);
    assert!(
        server
            .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", mia)
            .await
            > 100
    );
    // Revoke: Bob no longer finds Mia.
    let bob_id = server.user_id("bob").await.to_string();
    alice
        .submit(
            "/people/mia/person",
            "/people/mia/person/unshare",
            &[("user_id", &bob_id)],
        )
        .await;
    assert_eq!(
        bob.get_exact("/people/mia/").await.status,
        StatusCode::NOT_FOUND
    );
    // Deleting needs the slug typed, and removes every record.
    let wrong = alice
        .submit(
            "/people/mia/person/delete",
            "/people/mia/person/delete",
            &[("confirm_slug", "mi")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    let deleted = alice
        .submit(
            "/people/mia/person/delete",
            "/people/mia/person/delete",
            &[("confirm_slug", "mia")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", mia)
            .await,
        0
    );
    assert_eq!(
        alice.get_exact("/people/mia/").await.status,
        StatusCode::NOT_FOUND
    );
    // A person with their own account is deleted with the account, not from here.
    let own = alice
        .submit(
            "/people/alice/person/delete",
            "/people/alice/person/delete",
            &[("confirm_slug", "alice")],
        )
        .await;
    assert_eq!(own.status, StatusCode::CONFLICT);
    let _ = ADMIN_PASSWORD;
}

const FLETCHER: &str = "Fletcher_Hyatt_fe0562b5-f517-4951-8366-32fdab088930.json";

async fn count(server: &TestServer, person: i64) -> i64 {
    server
        .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", person)
        .await
}

#[tokio::test]
async fn an_upload_about_someone_else_asks_first_and_stores_nothing_until_told() {
    let (server, alice, _bob, leo) = family().await;
    let leos = count(&server, leo).await;
    let bundle = std::fs::read(synthea(FLETCHER)).unwrap();
    let asked = common::upload_for(&alice, "/people/leo", "fletcher.json", bundle.clone()).await;
    assert_eq!(asked.status, StatusCode::CONFLICT, "{}", asked.body);
    assert!(
        asked.body.contains(
            "This file is about Fletcher Hyatt, born 3 Jul 1915. Leo Example&#x27;s records are \
             about Roberto Graham, born 3 Oct 1920."
        ),
        "{}",
        asked.body
    );
    assert!(asked.body.contains("id=\"add-anyway\""));
    assert!(asked.body.contains("id=\"new-person\""));
    assert_eq!(
        count(&server, leo).await,
        leos,
        "nothing stored while asking"
    );
    let token = common::extract_field(&asked.body, "token").unwrap();

    // "Create a new person from it": Fletcher becomes a person Alice manages.
    let created = alice
        .submit(
            "/people/leo/sources",
            "/people/leo/sources/upload/new-person",
            &[("token", token.as_str())],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert!(
        created
            .body
            .contains("Fletcher Hyatt was added to your family")
    );
    let fletcher = fasten::store::people::by_slug(&server.state.db, "fletcher-hyatt")
        .await
        .unwrap()
        .expect("a person made from the file");
    assert_eq!(fletcher.birth_date.as_deref(), Some("1915-07-03"));
    assert_eq!(count(&server, fletcher.id).await, 1111);
    assert_eq!(count(&server, leo).await, leos);
    assert_eq!(
        alice.get_exact("/people/fletcher-hyatt/").await.status,
        StatusCode::OK
    );

    // "Add to Leo anyway" stores it for Leo; "Cancel" stores nothing.
    let asked = common::upload_for(&alice, "/people/leo", "fletcher.json", bundle.clone()).await;
    let token = common::extract_field(&asked.body, "token").unwrap();
    let cancelled = alice
        .submit(
            "/people/leo/sources",
            "/people/leo/sources/upload/cancel",
            &[("token", token.as_str())],
        )
        .await;
    assert!(cancelled.body.contains("nothing was stored"));
    assert_eq!(count(&server, leo).await, leos);
    let asked = common::upload_for(&alice, "/people/leo", "fletcher.json", bundle).await;
    let token = common::extract_field(&asked.body, "token").unwrap();
    let anyway = alice
        .submit(
            "/people/leo/sources",
            "/people/leo/sources/upload/confirm",
            &[("token", token.as_str()), ("anyway", "yes")],
        )
        .await;
    assert_eq!(anyway.status, StatusCode::OK, "{}", anyway.body);
    assert_eq!(count(&server, leo).await, leos + 1111);
}

/// Patient ids and the number of Encounters of a person.
async fn patients_and_visits(server: &TestServer, person: i64) -> (Vec<String>, i64) {
    let patients: Vec<String> = server
        .stored(person, "Patient")
        .await
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    let visits = server.stored(person, "Encounter").await.len() as i64;
    (patients, visits)
}

fn bundle_of(files: &[&str]) -> Vec<u8> {
    let mut entries = Vec::new();
    for file in files {
        let bundle: serde_json::Value =
            serde_json::from_slice(&std::fs::read(synthea(file)).unwrap()).unwrap();
        entries.extend(bundle["entry"].as_array().unwrap().iter().cloned());
    }
    serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn a_familys_file_is_split_by_patient_and_asks_about_those_it_cannot_place() {
    let (server, alice, _bob, leo) = family().await;
    let mia = server.add_person(ADMIN, "mia", "Mia").await;
    let alice_person = server.person_id(ADMIN).await;
    let before = (
        patients_and_visits(&server, alice_person).await,
        patients_and_visits(&server, leo).await,
    );
    // Paris is Alice, Roberto is Leo: uploaded on Mia's page, each part goes to its person.
    let split = common::upload_for(
        &alice,
        "/people/mia",
        "family.json",
        bundle_of(&[common::PARIS, ROBERTO]),
    )
    .await;
    assert_eq!(split.status, StatusCode::OK, "{}", split.body);
    assert!(split.body.contains("id=\"import-parts\""), "{}", split.body);
    assert!(split.body.contains("Roberto Graham, born 3 Oct 1920"));
    assert_eq!(count(&server, mia).await, 0, "nothing of the file is Mia's");
    assert_eq!(
        (
            patients_and_visits(&server, alice_person).await,
            patients_and_visits(&server, leo).await,
        ),
        before,
        "each record went to its own person (already there: nothing new, nothing mixed)"
    );

    // Fletcher is nobody here: the page asks, and nothing is stored until it is answered.
    let leos = count(&server, leo).await;
    let asked = common::upload_for(
        &alice,
        "/people/leo",
        "family.json",
        bundle_of(&[ROBERTO, FLETCHER]),
    )
    .await;
    assert_eq!(asked.status, StatusCode::CONFLICT, "{}", asked.body);
    assert!(
        asked
            .body
            .contains("It cannot tell who in your family is Fletcher Hyatt, born 3 Jul 1915."),
        "{}",
        asked.body
    );
    assert!(
        asked
            .body
            .contains("Roberto Graham, born 3 Oct 1920 (to Leo Example)")
    );
    assert_eq!(count(&server, leo).await, leos);
    let token = common::extract_field(&asked.body, "token").unwrap();
    let placed = alice
        .submit(
            "/people/leo/sources",
            "/people/leo/sources/upload/confirm",
            &[("token", token.as_str()), ("create_people", "yes")],
        )
        .await;
    assert_eq!(placed.status, StatusCode::OK, "{}", placed.body);
    let fletcher = fasten::store::people::by_slug(&server.state.db, "fletcher-hyatt")
        .await
        .unwrap()
        .expect("a person for the patient nobody was");
    let fletchers_visits = synthea_count(FLETCHER, "Encounter");
    assert_eq!(
        patients_and_visits(&server, fletcher.id).await,
        (
            vec!["c5ed5d78-5b3f-4a75-bdfb-5f318b068a20".to_string()],
            fletchers_visits
        )
    );
    assert_eq!(patients_and_visits(&server, leo).await, before.1);
    // Each part is a job of its person.
    let jobs = alice.get("/people/fletcher-hyatt/jobs").await;
    assert!(jobs.body.contains("family.json"), "{}", jobs.body);
}

fn synthea_count(file: &str, resource_type: &str) -> i64 {
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(synthea(file)).unwrap()).unwrap();
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == resource_type)
        .count() as i64
}
