//! The provider directory end to end: the vendors' lists served over loopback by the test,
//! downloaded when the administrator asks, searched as a member types, kept when a new list is
//! broken, and a result handed to the sign-in without the member typing a FHIR address.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode as AxumStatus;
use common::{Client, TestServer};
use fasten::directory::refresh::{self, RefreshError, Settings, Trigger};
use reqwest::StatusCode;
use serde_json::Value;

const ORACLE: &str = "oracle-millennium-patient-r4-endpoints.json";
const SOARIAN: &str = "oracle-soarian-patient-r4-endpoints.json";
/// Placeholder FHIR base of the hand-made brand, replaced by a test's own server.
pub(crate) const SPRINGFIELD_BASE: &str = "https://fhir.springfield-general.example/api/FHIR/R4/";

fn shared(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata/directory")
            .join(name),
    )
    .unwrap()
}

pub(crate) fn brands() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/directory/user-access-brands.json"),
    )
    .unwrap()
}

/// The vendors' side: files served on a loopback port, which a test may swap.
#[derive(Clone, Default)]
pub(crate) struct Lists(Arc<Mutex<HashMap<String, Vec<u8>>>>);

impl Lists {
    pub(crate) async fn serve(&self) -> String {
        async fn file(
            State(lists): State<Lists>,
            UrlPath(name): UrlPath<String>,
        ) -> Result<Vec<u8>, AxumStatus> {
            lists
                .0
                .lock()
                .unwrap()
                .get(&name)
                .cloned()
                .ok_or(AxumStatus::NOT_FOUND)
        }
        let app = axum::Router::new()
            .route("/lists/{name}", axum::routing::get(file))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/lists", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    pub(crate) fn put(&self, name: &str, body: impl Into<Vec<u8>>) {
        self.0.lock().unwrap().insert(name.to_owned(), body.into());
    }
}

/// A Fasten whose directory sources are the test's lists, with Alice (admin) signed in.
async fn server_with(lists: &Lists) -> (TestServer, Client) {
    let base = lists.serve().await;
    let sources = format!(
        "[[source]]\nid = \"epic\"\nname = \"Epic brands\"\nurl = \"{base}/brands.json\"\n\
         format = \"fhir-bundle\"\nplatform = \"epic\"\n\n\
         [[source]]\nid = \"oracle-millennium\"\nname = \"Oracle Millennium\"\n\
         url = \"{base}/oracle.json\"\nformat = \"fhir-bundle\"\nplatform = \"oracle-health\"\n\n\
         [[source]]\nid = \"oracle-soarian\"\nname = \"Oracle Soarian\"\n\
         url = \"{base}/soarian.json\"\nformat = \"fhir-bundle\"\nplatform = \"oracle-health\"\n"
    );
    let server = TestServer::start_with(|c| {
        c.plugins.allow_http_loopback = true;
        c.plugins.allow_private_networks = true;
        let path = c.data_dir.join("directory-sources.toml");
        std::fs::write(&path, sources).unwrap();
        c.directory.file = path;
    })
    .await;
    let alice = server.client();
    alice
        .setup(common::ADMIN, "Alice", common::ADMIN_PASSWORD)
        .await;
    (server, alice)
}

fn standard_lists(springfield_base: &str) -> Lists {
    let lists = Lists::default();
    lists.put("oracle.json", shared(ORACLE));
    lists.put("soarian.json", shared(SOARIAN));
    lists.put(
        "brands.json",
        brands().replace(SPRINGFIELD_BASE, springfield_base),
    );
    lists
}

pub(crate) async fn search(client: &Client, words: &str) -> String {
    let q: String = form_urlencoded::byte_serialize(words.as_bytes()).collect();
    let reply = client.get(&format!("/sources/directory?q={q}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// The results' ids and texts, in order.
pub(crate) fn results(body: &str) -> Vec<(String, String)> {
    body.split("<li id=\"directory-")
        .skip(1)
        .map(|item| {
            let id = item[..item.find('"').unwrap()].to_owned();
            let end = item.find("</li>").unwrap_or(item.len());
            (id, item[..end].to_owned())
        })
        .collect()
}

/// Waits until no refresh is running.
async fn settled(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM directory_refreshes WHERE status = 'running'")
                .fetch_one(&server.state.db)
                .await
                .unwrap();
        let any: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM directory_refreshes")
            .fetch_one(&server.state.db)
            .await
            .unwrap();
        if running == 0 && any > 0 && server.state.directory.try_start().is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "the refresh did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn refresh_source(server: &TestServer, id: &str) -> Result<(i64, i64), RefreshError> {
    let sources = server
        .state
        .directory
        .all_sources(&server.state.db)
        .await
        .unwrap();
    let settings = Settings::for_server(&server.state, &sources);
    let source = sources.get(id).unwrap().clone();
    refresh::refresh_one(&settings, &source, Trigger::Admin)
        .await
        .map(|c| (c.entries, c.choices))
}

async fn held(server: &TestServer, source: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM directory_orgs o JOIN directory_endpoints d ON d.id = o.endpoint_id
         WHERE d.source = ?",
    )
    .bind(source)
    .fetch_one(&server.state.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_administrator_downloads_and_members_search_by_name_town_and_zip() {
    let lists = standard_lists(SPRINGFIELD_BASE);
    let (server, alice) = server_with(&lists).await;

    // Nothing is downloaded until asked; the Sources page says so in one sentence and keeps
    // the catalog and the custom endpoint.
    let page = alice.get("/sources").await;
    assert!(
        page.body.contains("id=\"directory-search\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("No provider directory has been downloaded yet"),
        "{}",
        page.body
    );
    assert!(page.body.contains("id=\"custom-endpoint\""));
    assert!(page.body.contains("id=\"providers\""));
    let admin = alice.get("/admin/directory").await;
    assert_eq!(admin.status, StatusCode::OK);
    assert!(admin.body.contains("Not downloaded"), "{}", admin.body);
    let none: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM directory_refreshes")
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    assert_eq!(none, 0, "nothing downloaded before the administrator asks");

    let started = alice
        .submit("/admin/directory", "/admin/directory/refresh", &[])
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    settled(&server).await;
    // What the download wrote under the data folder (its spool and staging files) is private.
    #[cfg(unix)]
    assert_eq!(
        crate::upgrade::readable_by_others(server.data_dir.path()),
        Vec::<String>::new()
    );
    let admin = alice.get("/admin/directory").await;
    assert!(
        !admin.body.contains("Kept the previous directory"),
        "{}",
        admin.body
    );
    // Oracle's 1,359 organisations, each with its own endpoint.
    assert_eq!(held(&server, "oracle-millennium").await, 1359);
    assert!(
        admin
            .body
            .contains("Stored 1359 organisations, 1359 sign-ins"),
        "{}",
        admin.body
    );

    // Town: "Newport Beach" finds the practice in Newport Beach.
    let found = results(&search(&alice, "Newport Beach").await);
    assert!(
        found
            .iter()
            .any(|(_, text)| text.contains("Oscar Matthews, MD")
                && text.contains("Newport Beach, CA")
                && text.contains("Oracle Health (Cerner)")),
        "{found:?}"
    );
    // Zip, and a name typed in part.
    let by_zip = results(&search(&alice, "92663").await);
    assert!(
        by_zip.iter().any(|(_, t)| t.contains("Oscar Matthews, MD")),
        "{by_zip:?}"
    );
    let by_name = results(&search(&alice, "oscar matth").await);
    assert_eq!(by_name.len(), 1, "{by_name:?}");
    assert!(by_name[0].1.contains("Connect"));
    // The result's form, and the catalog's, post to this person's connect address.
    assert!(
        by_name[0]
            .1
            .contains("action=\"/people/alice/sources/connect\""),
        "{by_name:?}"
    );
    let catalog = alice.get("/sources/catalog?q=epic").await;
    assert!(
        catalog
            .body
            .contains("action=\"/people/alice/sources/connect\""),
        "{}",
        catalog.body
    );

    // A brand and its facilities behind one endpoint are one choice, named after the brand.
    let springfield = results(&search(&alice, "Springfield General").await);
    assert_eq!(springfield.len(), 1, "{springfield:#?}");
    assert!(springfield[0].1.contains("Springfield General Health"));
    assert!(springfield[0].1.contains("Epic"));
    let shelbyville = results(&search(&alice, "Shelbyville").await);
    assert_eq!(shelbyville.len(), 1, "{shelbyville:?}");
    assert_eq!(
        shelbyville[0].0, springfield[0].0,
        "a facility connects to its brand"
    );
    assert!(shelbyville[0].1.contains("Shelbyville Family Clinic"));
    assert!(shelbyville[0].1.contains("Shelbyville, IL"));
    // An Endpoint that names its organisation (managingOrganization) works too; a retired one
    // is not offered.
    let lakeside = results(&search(&alice, "Lakeside Duluth").await);
    assert_eq!(lakeside.len(), 1, "{lakeside:?}");
    assert!(lakeside[0].1.contains("Lakeside Health"));
    assert!(results(&search(&alice, "Retired Valley").await).is_empty());
    // Typed syntax is text, never FTS syntax.
    assert!(results(&search(&alice, "\"OR* NEAR(").await).is_empty());
    let nothing = search(&alice, "zzqxj").await;
    assert!(
        nothing.contains("Nothing in the provider directory matches"),
        "{nothing}"
    );
}

#[tokio::test]
async fn a_broken_or_shrunken_list_keeps_the_previous_directory_and_says_why() {
    let lists = standard_lists(SPRINGFIELD_BASE);
    let (server, alice) = server_with(&lists).await;
    assert_eq!(
        refresh_source(&server, "oracle-millennium").await.unwrap(),
        (1359, 1359)
    );

    // Cut off half way.
    let whole = shared(ORACLE);
    lists.put("oracle.json", whole[..whole.len() / 2].to_vec());
    let err = refresh_source(&server, "oracle-millennium")
        .await
        .unwrap_err();
    assert!(matches!(err, RefreshError::Truncated(_)), "{err}");
    assert_eq!(held(&server, "oracle-millennium").await, 1359);

    // A whole, valid Bundle with a third of the organisations gone.
    let mut bundle: Value = serde_json::from_slice(&whole).unwrap();
    let entries = bundle["entry"].as_array_mut().unwrap();
    let keep = entries.len() * 2 / 3;
    entries.truncate(keep);
    lists.put("oracle.json", serde_json::to_vec(&bundle).unwrap());
    let err = refresh_source(&server, "oracle-millennium")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RefreshError::CountChanged { before: 1359, .. }),
        "{err}"
    );
    assert_eq!(held(&server, "oracle-millennium").await, 1359);

    // Not JSON at all, and a server that answers 404.
    lists.put("oracle.json", "<html>maintenance</html>");
    let err = refresh_source(&server, "oracle-millennium")
        .await
        .unwrap_err();
    assert!(matches!(err, RefreshError::Unreadable(_)), "{err}");
    lists.0.lock().unwrap().remove("oracle.json");
    let err = refresh_source(&server, "oracle-millennium")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("HTTP 404"), "{err}");
    assert_eq!(held(&server, "oracle-millennium").await, 1359);
    assert!(
        results(&search(&alice, "Newport Beach").await)
            .iter()
            .any(|(_, t)| t.contains("Oscar Matthews, MD")),
        "the previous directory is still searched"
    );

    // The administrator reads why on Admin → Provider directory.
    let admin = alice.get("/admin/directory").await;
    for reason in [
        "is cut off",
        "more than a fifth",
        "not a FHIR Bundle",
        "HTTP 404",
    ] {
        assert!(admin.body.contains(reason), "{reason}: {}", admin.body);
    }

    // The same list, whole again, replaces the rows (not adds to them).
    lists.put("oracle.json", whole);
    assert_eq!(
        refresh_source(&server, "oracle-millennium").await.unwrap(),
        (1359, 1359)
    );
    assert_eq!(held(&server, "oracle-millennium").await, 1359);
}

#[tokio::test]
async fn members_cannot_open_or_start_the_directory_download() {
    let lists = standard_lists(SPRINGFIELD_BASE);
    let (server, alice) = server_with(&lists).await;
    alice.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1").await;
    assert_eq!(
        bob.get("/admin/directory").await.status,
        StatusCode::FORBIDDEN
    );
    let token = bob.csrf_token("/").await;
    let posted = bob
        .post_raw("/admin/directory/refresh", &[("csrf_token", &token)])
        .await;
    assert_eq!(posted.status, StatusCode::FORBIDDEN);
    // Without the CSRF token even the administrator is refused.
    let forged = alice.post_raw("/admin/directory/refresh", &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let none: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM directory_refreshes")
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    assert_eq!(none, 0);
}

#[tokio::test]
async fn a_directory_result_connects_without_typing_an_address() {
    let mock =
        crate::smart_mock::SmartMock::start(crate::smart_mock::load_synthea(common::PARIS)).await;
    let lists = standard_lists(&format!("{}/", mock.fhir_base()));
    let (server, alice) = server_with(&lists).await;
    let (entries, choices) = refresh_source(&server, "epic").await.unwrap();
    assert_eq!((entries, choices), (7, 3));

    let found = results(&search(&alice, "Shelbyville").await);
    let (id, text) = &found[0];
    assert!(
        text.contains("name=\"client_id\""),
        "Epic needs the app's client id: {text}"
    );
    assert!(
        !text.contains("name=\"fhir_base\""),
        "no address to type: {text}"
    );
    let callback = crate::sync_errors::start_connect(
        &alice,
        &[("directory_id", id.as_str()), ("client_id", "fasten-test")],
    )
    .await;
    let reply = crate::sync_errors::visit(&alice, &callback).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let (name, base, catalog_id): (String, String, Option<String>) = sqlx::query_as(
        "SELECT s.display_name, c.fhir_base, c.catalog_id FROM sources s
         JOIN connections c ON c.source_id = s.id",
    )
    .fetch_one(&server.state.db)
    .await
    .unwrap();
    assert_eq!(name, "Springfield General Health");
    assert_eq!(base, mock.fhir_base());
    assert_eq!(catalog_id.as_deref(), Some("epic"));

    // A result from before a refresh that dropped it says so.
    let gone = alice
        .submit(
            "/sources",
            "/sources/connect",
            &[("directory_id", "999999"), ("client_id", "fasten-test")],
        )
        .await;
    assert_eq!(gone.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        gone.body.contains("no longer in the provider directory"),
        "{}",
        gone.body
    );
}

#[tokio::test]
async fn the_administrator_adds_another_list_and_removes_it() {
    // Only the added list is served: the file's three answer 404 and keep nothing.
    let lists = Lists::default();
    lists.put("added.json", shared(SOARIAN));
    let (server, alice) = server_with(&lists).await;
    let base = server
        .state
        .directory
        .sources
        .get("epic")
        .unwrap()
        .url
        .replace("/brands.json", "");
    alice.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1").await;

    // Bad input is refused in a sentence, with the form as typed.
    let add = |name: &'static str, url: String, platform: &'static str| {
        let alice = &alice;
        async move {
            alice
                .submit(
                    "/admin/directory",
                    "/admin/directory/lists",
                    &[("name", name), ("url", &url), ("platform", platform)],
                )
                .await
        }
    };
    let plain = add(
        "Elsewhere",
        "http://lists.example/added.json".into(),
        "oracle-health",
    )
    .await;
    assert_eq!(plain.status, StatusCode::BAD_REQUEST);
    assert!(
        plain.body.contains("must start with https:")
            && plain.body.contains("lists.example&#x2f;added.json\""),
        "{}",
        plain.body
    );
    let unknown = add("Soarian too", format!("{base}/added.json"), "nope").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(
        unknown.body.contains("Choose the platform"),
        "{}",
        unknown.body
    );
    let duplicate = add("Again", format!("{base}/oracle.json"), "oracle-health").await;
    assert_eq!(duplicate.status, StatusCode::BAD_REQUEST);
    assert!(
        duplicate.body.contains("already downloads that list"),
        "{}",
        duplicate.body
    );

    // A list on this machine (allow_http_loopback is set) is added and listed.
    let added = add("Soarian too", format!("{base}/added.json"), "oracle-health").await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let id: i64 = sqlx::query_scalar("SELECT id FROM directory_added_sources")
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    let source = format!("added-{id}");
    let again = add("Twice", format!("{base}/added.json"), "epic").await;
    assert!(
        again.body.contains("already downloads that list"),
        "{}",
        again.body
    );
    let admin = alice.get("/admin/directory").await;
    assert!(
        admin
            .body
            .contains(&format!("id=\"directory-source-{source}\"")),
        "{}",
        admin.body
    );
    // Members can neither add nor remove.
    let token = bob.csrf_token("/").await;
    for (action, fields) in [
        (
            "/admin/directory/lists".to_string(),
            vec![
                ("name", "Bob's"),
                ("url", "https://lists.example/b.json"),
                ("platform", "epic"),
            ],
        ),
        (format!("/admin/directory/lists/{source}/delete"), vec![]),
    ] {
        let mut fields = fields;
        fields.push(("csrf_token", &token));
        assert_eq!(
            bob.post_raw(&action, &fields).await.status,
            StatusCode::FORBIDDEN,
            "{action}"
        );
    }

    // The administrator's download takes the added list with the others.
    let started = alice
        .submit("/admin/directory", "/admin/directory/refresh", &[])
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    settled(&server).await;
    assert_eq!(held(&server, &source).await, 7);
    let found = results(&search(&bob, "Peconic Bay").await);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].1.contains("Peconic Bay Medical Center")
            && found[0].1.contains("Oracle Health (Cerner)"),
        "{found:?}"
    );
    let platform: String =
        sqlx::query_scalar("SELECT platform FROM directory_endpoints WHERE source = ? LIMIT 1")
            .bind(&source)
            .fetch_one(&server.state.db)
            .await
            .unwrap();
    assert_eq!(platform, "oracle-health");

    // Removing the list drops its results.
    let removed = alice
        .submit(
            "/admin/directory",
            &format!("/admin/directory/lists/{source}/delete"),
            &[],
        )
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    assert_eq!(held(&server, &source).await, 0);
    assert!(results(&search(&bob, "Peconic Bay").await).is_empty());
    let admin = alice.get("/admin/directory").await;
    assert!(
        !admin.body.contains(&format!("directory-source-{source}")),
        "{}",
        admin.body
    );
}
