//! Connecting and syncing against an in-process SMART + FHIR server (`smart_mock`), for what a
//! real peer cannot stage on demand: expired and revoked refresh tokens, a token that dies
//! mid-sync, 429 with Retry-After, per-type failures, session-bound paging, a failing reference,
//! an OperationOutcome inside a searchset, wrong or replayed `state`, a denial at the provider.
//! Every case is driven the way a browser drives it: the Sources form, the provider redirect,
//! the callback, then the background job.

use crate::common;
use crate::smart_mock;

use std::time::{Duration, Instant};

use common::{Client, TestServer};
use reqwest::StatusCode;
use smart_mock::{SmartMock, load_synthea};

const PATIENT_FILE: &str = "Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json";

/// The patient's resources, cut to keep each sync short: the Patient and the first `n` others
/// that are not Claims (Paris Casper's file starts with a long run of them).
fn patient(n: usize) -> Vec<serde_json::Value> {
    load_synthea(PATIENT_FILE)
        .into_iter()
        .filter(|r| r["resourceType"] != "Claim")
        .take(n + 1)
        .collect()
}

/// What the mock holds, as (type, id), to compare with what Fasten stored.
fn served(mock: &SmartMock) -> std::collections::BTreeSet<(String, String)> {
    mock.state
        .lock()
        .unwrap()
        .resources
        .iter()
        .map(|r| {
            (
                r["resourceType"].as_str().unwrap().to_string(),
                r["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn stored(
    server: &TestServer,
    source_id: i64,
) -> std::collections::BTreeSet<(String, String)> {
    sqlx::query_as("SELECT resource_type, resource_id FROM resources WHERE source_id = ?")
        .bind(source_id)
        .fetch_all(&server.state.db)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

pub(crate) async fn start_fasten(
    adjust: impl FnOnce(&mut fasten::config::Config),
) -> (TestServer, Client) {
    let server = TestServer::start_with(|c| {
        c.plugins.allow_http_loopback = true;
        c.plugins.allow_private_networks = true;
        c.sync.max_attempts = 2;
        adjust(c);
    })
    .await;
    let client = server.client();
    client
        .setup(common::ADMIN, "Alice", common::ADMIN_PASSWORD)
        .await;
    (server, client)
}

/// The provider URL in the "taking you to the provider" page.
fn continue_link(body: &str) -> String {
    let start = body
        .find("id=\"continue\" href=\"")
        .unwrap_or_else(|| panic!("no continue link in: {body}"))
        + "id=\"continue\" href=\"".len();
    let end = start + body[start..].find('"').unwrap();
    html_unescape(&body[start..end])
}

fn html_unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&#x2f;", "/")
        .replace("&#x3d;", "=")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// A client that follows nothing, for the provider side of the redirect dance.
fn outside_browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Submits the connect form and visits the provider: answers the callback URL the provider
/// sends the browser back to (not yet visited).
pub(crate) async fn start_connect(client: &Client, fields: &[(&str, &str)]) -> String {
    let reply = client.submit("/sources", "/sources/connect", fields).await;
    assert_eq!(reply.status, StatusCode::OK, "connect form: {}", reply.body);
    let provider = continue_link(&reply.body);
    let answer = outside_browser().get(&provider).send().await.unwrap();
    assert_eq!(
        answer.status(),
        StatusCode::FOUND,
        "the provider redirects back"
    );
    answer
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

/// Visits the callback with the signed-in client; answers the reply.
pub(crate) async fn visit(client: &Client, absolute: &str) -> common::Reply {
    let path = absolute
        .strip_prefix(&client.base)
        .unwrap_or_else(|| panic!("{absolute} is not on Fasten ({})", client.base));
    client.get(path).await
}

/// One sentence of what happened and one of what to do, as the family reads them: no protocol
/// codes in brackets (`[invalid_client]`), no HTTP statuses, no doubled punctuation.
fn assert_plain(message: &str) {
    assert!(!message.trim().is_empty(), "an empty message");
    for code in [
        "[",
        "]",
        "invalid_",
        "access_denied",
        "HTTP",
        " 500 ",
        " 401 ",
        "Internal Server Error",
    ] {
        assert!(
            !message.contains(code),
            "{code:?} in the message: {message}"
        );
    }
    for doubled in ["..", ". .", ",,", ",.", ".,", " .", " ,", ";."] {
        assert!(
            !message.contains(doubled),
            "{doubled:?} in the message: {message}"
        );
    }
    let sentences = message.matches(['.', '?', '!']).count();
    assert!(
        (1..=4).contains(&sentences),
        "{sentences} sentences: {message}"
    );
}

/// The error the Sources page shows: its message, and what is behind "Details".
fn shown_error(html: &str) -> Option<(String, Option<String>)> {
    let block = &html[html.find("id=\"sources-error\"")?..];
    let start = block.find("<p>")? + "<p>".len();
    let message = html_unescape(&block[start..start + block[start..].find("</p>")?]);
    let detail = html.find("id=\"sources-error-detail\"").and_then(|at| {
        let rest = &html[at..];
        let start = rest.find("<small>")? + "<small>".len();
        Some(html_unescape(
            &rest[start..start + rest[start..].find("</small>")?],
        ))
    });
    Some((message, detail))
}

/// Visits a callback that fails: the browser is sent back to the Sources page, so the code
/// leaves the address bar, and that page says what happened (once). Answers what it shows.
async fn failed_callback(client: &Client, absolute: &str) -> (String, Option<String>) {
    let reply = visit(client, absolute).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let location = reply.location.unwrap();
    let path = &location[location.find("/people/").expect("a person's page")..];
    assert!(path.ends_with("/sources"), "{location}");
    let page = client.get(path).await;
    let shown = shown_error(&page.body)
        .unwrap_or_else(|| panic!("the Sources page says nothing: {}", page.body));
    assert_plain(&shown.0);
    let again = client.get(path).await;
    assert!(shown_error(&again.body).is_none(), "said once");
    shown
}

/// Connects the mock as a custom endpoint; answers the new source's id.
pub(crate) async fn connect(client: &Client, mock: &SmartMock) -> i64 {
    let callback = start_connect(
        client,
        &[
            ("fhir_base", &mock.fhir_base()),
            ("client_id", "fasten-test"),
            ("display_name", "Mock Hospital"),
        ],
    )
    .await;
    let reply = visit(client, &callback).await;
    assert_eq!(
        reply.status,
        StatusCode::SEE_OTHER,
        "callback: {}",
        reply.body
    );
    let location = reply.location.unwrap();
    location
        .rsplit("connected=")
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("unexpected redirect {location}"))
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobRow {
    pub(crate) id: i64,
    pub(crate) status: String,
    pub(crate) trigger: String,
    pub(crate) attempt: i64,
    pub(crate) added: i64,
    pub(crate) updated: i64,
    pub(crate) unchanged: i64,
    pub(crate) warnings: String,
    pub(crate) error: Option<String>,
    pub(crate) error_detail: Option<String>,
}

/// Waits for the newest job of a source to end.
pub(crate) async fn finished_job(server: &TestServer, source_id: i64) -> JobRow {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job: Option<JobRow> = sqlx::query_as(
            "SELECT id, status, trigger, attempt, added, updated, unchanged, warnings, error,
                    error_detail
             FROM jobs WHERE source_id = ? ORDER BY id DESC LIMIT 1",
        )
        .bind(source_id)
        .fetch_optional(&server.state.db)
        .await
        .unwrap();
        if let Some(job) = job
            && !matches!(job.status.as_str(), "queued" | "running")
        {
            return job;
        }
        assert!(Instant::now() < deadline, "the sync did not finish in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn records(server: &TestServer, source_id: i64) -> i64 {
    server
        .count(
            "SELECT COUNT(*) FROM resources WHERE source_id = ?",
            source_id,
        )
        .await
}

async fn connection_status(server: &TestServer, source_id: i64) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, status_message FROM connections WHERE source_id = ?")
        .bind(source_id)
        .fetch_one(&server.state.db)
        .await
        .unwrap()
}

async fn sync_now(client: &Client, source_id: i64) {
    let reply = client
        .submit("/sources", &format!("/sources/{source_id}/sync"), &[])
        .await;
    assert_eq!(
        reply.status,
        StatusCode::SEE_OTHER,
        "sync now: {}",
        reply.body
    );
}

#[tokio::test]
async fn a_connected_source_syncs_in_the_background_with_sealed_tokens() {
    let mock = SmartMock::start(patient(60)).await;
    let (server, client) = start_fasten(|_| {}).await;
    let source = connect(&client, &mock).await;
    let job = finished_job(&server, source).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(job.trigger, "connect");
    // Every resource the server has for the patient is stored, once.
    assert_eq!(stored(&server, source).await, served(&mock));
    assert_eq!(records(&server, source).await, 61);
    assert_eq!(job.added, 61);

    // The page a user checks.
    let page = client.get("/sources").await;
    assert!(page.body.contains("Mock Hospital"), "{}", page.body);
    assert!(page.body.contains("Connected"));
    assert!(
        page.body.contains("class=\"records\">61</td>"),
        "{}",
        page.body
    );

    // Tokens are stored sealed: the access token the provider issued is not in the database.
    let issued: Vec<String> = mock
        .state
        .lock()
        .unwrap()
        .access_tokens
        .keys()
        .cloned()
        .collect();
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT access_token FROM connections WHERE source_id = ?")
            .bind(source)
            .fetch_one(&server.state.db)
            .await
            .unwrap();
    for token in &issued {
        assert!(
            !sealed.windows(token.len()).any(|w| w == token.as_bytes()),
            "the access token is stored in the clear"
        );
    }
    // The token went only to the FHIR API, as a bearer header added by the host.
    let log = mock.log();
    assert!(
        log.iter()
            .filter(|r| r.path.starts_with("/fhir/") && !r.path.contains("well-known"))
            .all(|r| r
                .authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Bearer "))),
        "every FHIR request carries the host's bearer token"
    );
    // Asking for the SMART scopes with PKCE and the audience is checked by the mock's
    // /authorize; the patient in context came from the token response.
    let patient_id: Option<String> =
        sqlx::query_scalar("SELECT patient_id FROM connections WHERE source_id = ?")
            .bind(source)
            .fetch_one(&server.state.db)
            .await
            .unwrap();
    assert_eq!(patient_id, Some(mock.patient_id()));
}

#[tokio::test]
async fn wrong_or_replayed_state_is_refused_and_connects_nothing() {
    let mock = SmartMock::start(patient(5)).await;
    let (server, client) = start_fasten(|_| {}).await;

    let (unknown, _) = failed_callback(
        &client,
        &format!(
            "{}/sources/callback?code=abc&state=not-a-state-we-sent",
            client.base
        ),
    )
    .await;
    assert!(
        unknown.contains("unknown, was already used, or has expired"),
        "{unknown}"
    );

    let callback = start_connect(
        &client,
        &[
            ("fhir_base", &mock.fhir_base()),
            ("client_id", "fasten-test"),
        ],
    )
    .await;
    // The same callback in another browser session (another sign-in of the same user) is refused...
    let other = server.client();
    other.login(common::ADMIN, common::ADMIN_PASSWORD).await;
    let (stolen, _) = failed_callback(&other, &callback).await;
    assert!(stolen.contains("another browser session"), "{stolen}");
    // ...and that spent it: the state is single use, so the rightful session is refused too.
    let (replay, _) = failed_callback(&client, &callback).await;
    assert!(replay.contains("already used"), "{replay}");

    // A fresh flow works once; replaying its callback afterwards is refused.
    let callback = start_connect(
        &client,
        &[
            ("fhir_base", &mock.fhir_base()),
            ("client_id", "fasten-test"),
        ],
    )
    .await;
    assert_eq!(
        visit(&client, &callback).await.status,
        StatusCode::SEE_OTHER
    );
    let (replay, _) = failed_callback(&client, &callback).await;
    assert!(replay.contains("already used"), "{replay}");
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM sources WHERE person_id = ?", 1)
            .await,
        1,
        "exactly one source was connected"
    );
}

#[tokio::test]
async fn a_denial_at_the_provider_is_reported() {
    let mock = SmartMock::start(patient(5)).await;
    mock.configure(|b| b.authorize_error = Some("access_denied".into()));
    let (server, client) = start_fasten(|_| {}).await;
    let callback = start_connect(
        &client,
        &[
            ("fhir_base", &mock.fhir_base()),
            ("client_id", "fasten-test"),
        ],
    )
    .await;
    let (message, detail) = failed_callback(&client, &callback).await;
    assert!(
        message.starts_with("Access was not granted at the provider, so nothing was connected."),
        "{message}"
    );
    // What the provider said is behind "Details".
    assert!(detail.unwrap_or_default().starts_with("access_denied"));
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM sources WHERE person_id = ?", 1)
            .await,
        0
    );
}

#[tokio::test]
async fn discovery_failures_and_bad_input_are_explained_on_the_page() {
    let (_server, client) = start_fasten(|_| {}).await;
    let reply = client
        .submit(
            "/sources",
            "/sources/connect",
            &[("fhir_base", "not a url"), ("client_id", "x")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let (message, _) = shown_error(&reply.body).expect("an error on the page");
    assert!(message.contains("is not a web address"), "{message}");
    assert_plain(&message);

    // A server that answers but speaks no SMART.
    let mock = SmartMock::start(patient(1)).await;
    let reply = client
        .submit(
            "/sources",
            "/sources/connect",
            &[
                ("fhir_base", &format!("{}/nothing-here", mock.url)),
                ("client_id", "x"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let (message, detail) = shown_error(&reply.body).expect("an error on the page");
    assert!(
        message.contains("could not find this provider's sign-in"),
        "{message}"
    );
    assert_plain(&message);
    assert!(detail.unwrap_or_default().contains("nothing-here"));
    // What the user typed is still in the form.
    assert!(reply.body.contains("nothing-here"));
}

#[tokio::test]
async fn older_servers_are_discovered_through_their_capability_statement() {
    let mock = SmartMock::start(patient(10)).await;
    mock.configure(|b| b.discovery = smart_mock::Discovery::CapabilityOnly);
    let (server, client) = start_fasten(|_| {}).await;
    let source = connect(&client, &mock).await;
    assert_eq!(finished_job(&server, source).await.status, "succeeded");
    assert_eq!(records(&server, source).await, 11);
}

#[tokio::test]
async fn a_confidential_client_authenticates_with_its_secret() {
    let mock = SmartMock::start(patient(10)).await;
    let (server, client) = start_fasten(|_| {}).await;
    let callback = start_connect(
        &client,
        &[
            ("fhir_base", &mock.fhir_base()),
            ("client_id", "fasten-confidential"),
            ("client_secret", "s3cret"),
        ],
    )
    .await;
    assert_eq!(
        visit(&client, &callback).await.status,
        StatusCode::SEE_OTHER
    );
    let source: i64 = sqlx::query_scalar("SELECT id FROM sources ORDER BY id DESC LIMIT 1")
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    assert_eq!(finished_job(&server, source).await.status, "succeeded");
    let exchange = &mock.token_requests()[0];
    assert_eq!(
        (
            exchange.grant_type.as_str(),
            exchange.client_auth.as_str(),
            exchange.status
        ),
        ("authorization_code", "basic", 200)
    );
    // The secret is sealed too.
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT client_secret FROM connections WHERE source_id = ?")
            .bind(source)
            .fetch_one(&server.state.db)
            .await
            .unwrap();
    assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
}

#[tokio::test]
async fn a_token_that_dies_mid_sync_is_refreshed_once_and_the_sync_finishes() {
    let mock = SmartMock::start(patient(usize::MAX - 1)).await;
    mock.configure(|b| b.page_size = 5);
    let (server, client) = start_fasten(|_| {}).await;
    // Kill every access token once the sync is under way.
    let watcher = {
        let state = mock.state.clone();
        tokio::spawn(async move {
            loop {
                let requests = state.lock().unwrap().fhir_requests;
                if requests >= 6 {
                    let mut st = state.lock().unwrap();
                    let now = Instant::now();
                    for grant in st.access_tokens.values_mut() {
                        grant.expires_at = now;
                    }
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let source = connect(&client, &mock).await;
    let job = finished_job(&server, source).await;
    watcher.await.unwrap();
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(stored(&server, source).await, served(&mock));
    let refreshes: Vec<_> = mock
        .token_requests()
        .into_iter()
        .filter(|t| t.grant_type == "refresh_token")
        .collect();
    assert_eq!(
        refreshes.len(),
        1,
        "one refresh for the whole sync: {refreshes:?}"
    );
    assert_eq!(refreshes[0].status, 200);
    assert!(
        mock.log().iter().any(|r| r.status == 401),
        "the old token was refused once"
    );
    // The rotated refresh token was stored: a later sync works without the user.
    mock.expire_access_tokens();
    sync_now(&client, source).await;
    let again = finished_job(&server, source).await;
    assert_eq!(again.status, "succeeded", "{again:?}");
    // Nothing changed at the provider: the incremental sync stores nothing new or changed.
    assert_eq!((again.added, again.updated), (0, 0), "{again:?}");
    assert!(
        again.unchanged >= 1,
        "the Patient is read every time: {again:?}"
    );
    assert_eq!(stored(&server, source).await, served(&mock));
}

#[tokio::test]
async fn a_revoked_refresh_token_asks_for_a_reconnect_and_keeps_the_records() {
    let mock = SmartMock::start(patient(30)).await;
    let (server, client) = start_fasten(|_| {}).await;
    let source = connect(&client, &mock).await;
    assert_eq!(finished_job(&server, source).await.status, "succeeded");

    mock.revoke_all_refresh_tokens();
    mock.expire_access_tokens();
    sync_now(&client, source).await;
    let job = finished_job(&server, source).await;
    assert_eq!(job.status, "failed");
    assert!(
        job.error.as_deref().unwrap_or("").contains("Reconnect"),
        "{job:?}"
    );
    assert_plain(job.error.as_deref().unwrap());
    assert!(
        job.error_detail
            .as_deref()
            .unwrap_or("")
            .contains("invalid_grant"),
        "{job:?}"
    );
    assert_eq!(records(&server, source).await, 31, "nothing was lost");
    let (status, message) = connection_status(&server, source).await;
    assert_eq!(status, "needs_reconnect");
    assert!(message.unwrap().contains("no longer accepts"));
    let page = client.get("/sources").await;
    assert!(page.body.contains("Needs reconnect"), "{}", page.body);
    // No promise of a next sync that cannot happen until someone reconnects.
    assert!(!page.body.contains("Next:"), "{}", page.body);

    // Reconnect runs the flow again for the same source.
    let reply = client
        .submit("/sources", &format!("/sources/{source}/reconnect"), &[])
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let provider = continue_link(&reply.body);
    let back = outside_browser().get(&provider).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_string();
    let done = visit(&client, &callback).await;
    assert_eq!(
        done.location.as_deref(),
        Some(format!("/people/alice/sources?connected={source}").as_str())
    );
    let job = finished_job(&server, source).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(job.trigger, "connect");
    assert_eq!(connection_status(&server, source).await.0, "connected");
    assert_eq!(records(&server, source).await, 31);
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM sources WHERE person_id = ?", 1)
            .await,
        1
    );
}

#[tokio::test]
async fn an_expired_refresh_token_is_announced_then_asks_for_a_reconnect() {
    let mock = SmartMock::start(patient(10)).await;
    mock.configure(|b| b.refresh_token_seconds = Some(2));
    let (server, client) = start_fasten(|_| {}).await;
    let source = connect(&client, &mock).await;
    assert_eq!(finished_job(&server, source).await.status, "succeeded");
    // The provider said when the refresh token ends; the page warns before it does.
    let page = client.get("/sources").await;
    assert!(
        page.body.contains("reconnect soon") || page.body.contains("has expired"),
        "{}",
        page.body
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    mock.expire_access_tokens();
    sync_now(&client, source).await;
    let job = finished_job(&server, source).await;
    assert_eq!(job.status, "failed", "{job:?}");
    assert_plain(job.error.as_deref().unwrap());
    assert_eq!(
        connection_status(&server, source).await.0,
        "needs_reconnect"
    );
    assert_eq!(records(&server, source).await, 11);
}

#[tokio::test]
async fn a_rate_limited_sync_waits_as_asked_and_then_succeeds() {
    let mock = SmartMock::start(patient(20)).await;
    mock.configure(|b| b.rate_limit = Some(("Condition".into(), 1, 1)));
    let (server, client) = start_fasten(|_| {}).await;
    let source = connect(&client, &mock).await;
    let job = finished_job(&server, source).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(job.attempt, 2, "the first attempt was rate limited");
    assert_eq!(records(&server, source).await, 21);
    assert!(mock.log().iter().any(|r| r.status == 429));
}

#[tokio::test]
async fn failing_types_references_and_outcomes_become_warnings_not_failures() {
    let resources = patient(200);
    let practitioner = resources.iter().find_map(|r| {
        let text = r.to_string();
        let at = text.find("Practitioner/")?;
        let rest = &text[at..];
        let end = rest.find('"')?;
        Some(rest[..end].to_string())
    });
    let mock = SmartMock::start(resources).await;
    mock.configure(|b| {
        b.require_observation_category = true;
        b.html_404_type = Some("DiagnosticReport".into());
        b.operation_outcome_in_searchset = Some("Condition".into());
        b.reference_500 = practitioner.clone();
        b.session_bound_paging = true;
        b.page_size = 7;
    });
    let (server, client) = start_fasten(|_| {}).await;
    let source = connect(&client, &mock).await;
    let job = finished_job(&server, source).await;
    assert_eq!(job.status, "warnings", "{job:?}");
    let warnings: Vec<String> = serde_json::from_str(&job.warnings).unwrap();
    let all = warnings.join("\n");
    assert!(all.contains("Observation"), "{all}");
    assert!(all.contains("DiagnosticReport"), "{all}");
    assert!(all.contains("Some results were omitted"), "{all}");
    // No OperationOutcome is stored as a record; the other types are all there.
    assert_eq!(
        server
            .count(
                "SELECT COUNT(*) FROM resources WHERE source_id = ? AND resource_type = 'OperationOutcome'",
                source
            )
            .await,
        0
    );
    let conditions = server
        .count(
            "SELECT COUNT(*) FROM resources WHERE source_id = ? AND resource_type = 'Condition'",
            source,
        )
        .await;
    assert!(conditions > 0);
    // The session-bound next links were followed exactly as given.
    assert!(mock.log().iter().any(|r| r.query.contains("_getpages=")));
    assert!(
        mock.log()
            .iter()
            .all(|r| r.status != 400 || r.path.contains("Observation"))
    );
    // The Jobs page shows the warnings.
    let jobs = client.get("/jobs").await;
    assert!(jobs.body.contains("Done with"), "{}", jobs.body);

    // With the platform's category searches (as the Epic catalog entry sets them) the
    // Observations arrive too.
    sqlx::query("UPDATE connections SET sync_settings = ? WHERE source_id = ?")
        .bind(
            r#"[["category_searches","Observation=laboratory,vital-signs,social-history,survey"]]"#,
        )
        .bind(source)
        .execute(&server.state.db)
        .await
        .unwrap();
    sync_now(&client, source).await;
    let job = finished_job(&server, source).await;
    let warnings: Vec<String> = serde_json::from_str(&job.warnings).unwrap();
    assert!(
        !warnings.iter().any(|w| w.starts_with("Observation")),
        "{warnings:?}"
    );
    let observations = server
        .count(
            "SELECT COUNT(*) FROM resources WHERE source_id = ? AND resource_type = 'Observation'",
            source,
        )
        .await;
    assert!(observations > 0);
}

#[tokio::test]
async fn a_failed_sync_keeps_what_earlier_syncs_stored() {
    let mock = SmartMock::start(patient(25)).await;
    let (server, client) = start_fasten(|c| c.sync.max_attempts = 1).await;
    let source = connect(&client, &mock).await;
    assert_eq!(finished_job(&server, source).await.status, "succeeded");
    mock.configure(|b| b.fail_all_after_requests = Some(0));
    sync_now(&client, source).await;
    let job = finished_job(&server, source).await;
    assert_eq!(job.status, "failed", "{job:?}");
    let error = job.error.unwrap();
    assert!(error.contains("kept"), "{error}");
    assert_plain(&error);
    // The server's side of it is behind "Details" on the Jobs page, not in the message.
    let detail = job.error_detail.unwrap_or_default();
    assert!(detail.contains("503"), "{detail}");
    let jobs = client.get("/jobs").await.body;
    assert!(
        jobs.contains("<summary>Details</summary>") && jobs.contains("503"),
        "{jobs}"
    );
    assert_eq!(records(&server, source).await, 26);
    assert_eq!(connection_status(&server, source).await.0, "connected");
}

#[tokio::test]
async fn a_job_running_when_fasten_stopped_is_interrupted_and_queued_again() {
    let mock = SmartMock::start(patient(10)).await;
    let (server, client) = start_fasten(|_| {}).await;
    let source = connect(&client, &mock).await;
    let first = finished_job(&server, source).await;
    // As if the process died mid-sync.
    sqlx::query("UPDATE jobs SET status = 'running', finished_at = NULL WHERE id = ?")
        .bind(first.id)
        .execute(&server.state.db)
        .await
        .unwrap();
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, |c| {
        c.plugins.allow_http_loopback = true;
        c.plugins.allow_private_networks = true;
    })
    .await;
    let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = ?")
        .bind(first.id)
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    assert_eq!(status, "interrupted");
    let again = finished_job(&server, source).await;
    assert_eq!(
        (again.trigger.as_str(), again.status.as_str()),
        ("restart", "succeeded")
    );
    assert_eq!(records(&server, source).await, 11);
}

#[tokio::test]
async fn sources_sync_again_on_their_schedule() {
    let mock = SmartMock::start(patient(10)).await;
    let (server, client) = start_fasten(|c| c.sync.every = Duration::from_secs(1)).await;
    let source = connect(&client, &mock).await;
    assert_eq!(finished_job(&server, source).await.trigger, "connect");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let scheduled = server
            .count(
                "SELECT COUNT(*) FROM jobs WHERE source_id = ? AND trigger = 'schedule' AND status = 'succeeded'",
                source,
            )
            .await;
        if scheduled > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no scheduled sync ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn members_see_and_touch_only_their_own_sources_and_jobs() {
    let mock = SmartMock::start(patient(10)).await;
    let (server, admin) = start_fasten(|_| {}).await;
    let source = connect(&admin, &mock).await;
    let job = finished_job(&server, source).await;
    admin.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1").await;

    assert!(!bob.get("/sources").await.body.contains("Mock Hospital"));
    assert!(!bob.get("/jobs").await.body.contains("Mock Hospital"));
    assert_eq!(
        bob.get(&format!("/jobs/{}/progress", job.id)).await.status,
        StatusCode::NOT_FOUND
    );
    for action in ["sync", "reconnect", "delete"] {
        let reply = bob
            .submit(
                "/sources",
                &format!("/sources/{source}/{action}"),
                &[("confirm", "yes")],
            )
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{action}");
    }
    assert_eq!(
        bob.get(&format!("/sources/{source}/delete")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(records(&server, source).await, 11);
    // The administrator sees everyone's jobs, with who they belong to.
    let jobs = admin.get("/jobs").await;
    assert!(jobs.body.contains("Mock Hospital"));
}

#[tokio::test]
async fn deleting_a_source_removes_its_records_after_confirmation() {
    let mock = SmartMock::start(patient(10)).await;
    let (server, client) = start_fasten(|_| {}).await;
    let source = connect(&client, &mock).await;
    finished_job(&server, source).await;
    let confirm = client.get(&format!("/sources/{source}/delete")).await;
    assert!(
        confirm.body.contains("<strong>11</strong> records"),
        "{}",
        confirm.body
    );
    let unconfirmed = client
        .submit("/sources", &format!("/sources/{source}/delete"), &[])
        .await;
    assert_eq!(unconfirmed.status, StatusCode::BAD_REQUEST);
    assert_eq!(records(&server, source).await, 11);
    let reply = client
        .submit(
            "/sources",
            &format!("/sources/{source}/delete"),
            &[("confirm", "yes")],
        )
        .await;
    reply.assert_redirect("/people/alice/sources");
    assert_eq!(records(&server, source).await, 0);
    assert_eq!(
        server
            .count(
                "SELECT COUNT(*) FROM connections WHERE source_id = ?",
                source
            )
            .await,
        0
    );
    // The job history still names the source.
    assert!(client.get("/jobs").await.body.contains("Mock Hospital"));
}

/// Waits until the newest job of a source is running.
async fn running_job(server: &TestServer, source_id: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let running: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE source_id = ? AND status = 'running' ORDER BY id DESC",
        )
        .bind(source_id)
        .fetch_optional(&server.state.db)
        .await
        .unwrap();
        if let Some(id) = running {
            return id;
        }
        assert!(Instant::now() < deadline, "the sync never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn cancelling_a_running_sync_stops_it_and_stores_nothing_from_it() {
    let mock = SmartMock::start(patient(40)).await;
    let (server, client) = start_fasten(|_| {}).await;
    let source = connect(&client, &mock).await;
    assert_eq!(finished_job(&server, source).await.status, "succeeded");
    let before = stored(&server, source).await;

    // A slow provider, and a new record there: the cancelled sync must not store it.
    mock.configure(|b| b.fhir_delay = Duration::from_millis(300));
    let mut extra = mock.state.lock().unwrap().resources[1].clone();
    extra["id"] = serde_json::json!("added-at-the-provider");
    mock.add_resource(extra);
    sync_now(&client, source).await;
    let job = running_job(&server, source).await;
    let page = client.get("/jobs").await;
    assert!(page.body.contains("Syncing:"), "{}", page.body);
    let reply = client
        .submit("/jobs", &format!("/jobs/{job}/cancel"), &[])
        .await;
    reply.assert_redirect("/people/alice/jobs");
    let ended = finished_job(&server, source).await;
    assert_eq!((ended.id, ended.status.as_str()), (job, "cancelled"));
    assert!(
        ended
            .error
            .unwrap()
            .contains("nothing from this run was stored")
    );
    assert_eq!(stored(&server, source).await, before);

    // A queued job is cancelled before it starts; another member cannot cancel anyone's.
    mock.configure(|b| b.fhir_delay = Duration::ZERO);
    client.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1").await;
    mock.configure(|b| b.rate_limit = Some(("Condition".into(), 1, 600)));
    sync_now(&client, source).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let waiting = loop {
        let retry: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE source_id = ? AND status = 'queued' AND attempt = 2",
        )
        .bind(source)
        .fetch_optional(&server.state.db)
        .await
        .unwrap();
        if let Some(id) = retry {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "the rate-limited sync was not queued for retry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let progress = client.get(&format!("/jobs/{waiting}/progress")).await;
    assert!(
        progress.body.contains("Waiting to retry"),
        "{}",
        progress.body
    );
    assert!(progress.body.contains("slow down"), "{}", progress.body);
    let refused = bob
        .submit("/jobs", &format!("/jobs/{waiting}/cancel"), &[])
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    client
        .submit("/jobs", &format!("/jobs/{waiting}/cancel"), &[])
        .await
        .assert_redirect("/people/alice/jobs");
    let ended = finished_job(&server, source).await;
    assert_eq!((ended.id, ended.status.as_str()), (waiting, "cancelled"));
}

#[tokio::test]
async fn an_uploaded_source_has_nothing_to_sync_and_says_so() {
    let (server, client) = start_fasten(|_| {}).await;
    server.import_synthea(common::ADMIN, common::PARIS).await;
    let source: i64 = sqlx::query_scalar("SELECT id FROM sources LIMIT 1")
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    let reply = client
        .submit("/sources", &format!("/sources/{source}/sync"), &[])
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.body.contains("no provider connection to sync"),
        "{}",
        reply.body
    );
    assert_eq!(
        server
            .count(
                "SELECT COUNT(*) FROM jobs WHERE source_id = ? AND kind = 'sync'",
                source
            )
            .await,
        0,
        "no sync was queued (the import itself is on record)"
    );
}

#[tokio::test]
async fn a_sync_about_someone_else_stops_before_storing_anything() {
    // Alice's records are about Roberto Graham; the provider account is Paris Casper's.
    let mock = SmartMock::start(patient(20)).await;
    let (server, client) = start_fasten(|_| {}).await;
    server
        .import_synthea(
            common::ADMIN,
            "Roberto_Graham_238a58eb-31dc-4054-82ee-0651ee76f391.json",
        )
        .await;
    let alice = server.person_id(common::ADMIN).await;
    let before = server
        .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", alice)
        .await;
    let source = connect(&client, &mock).await;
    let job = finished_job(&server, source).await;
    assert_eq!(job.status, "failed", "{job:?}");
    let error = job.error.unwrap_or_default();
    assert!(
        error.contains("This sync is about Paris Casper, born 24 Feb 1972. Alice's records are about Roberto Graham, born 3 Oct 1920."),
        "{error}"
    );
    assert!(
        error.contains("Nothing from this sync was stored."),
        "{error}"
    );
    assert_plain(&error);
    assert_eq!(records(&server, source).await, 0);
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", alice)
            .await,
        before
    );
    // The Jobs page says so in the person's words.
    let jobs = client.get("/jobs").await;
    assert!(
        jobs.body.contains("This sync is about Paris Casper"),
        "{}",
        jobs.body
    );
}

#[tokio::test]
async fn records_about_another_patient_that_a_server_sends_are_left_out() {
    // This server ignores the patient filter: its searches also return five of Roberto
    // Graham's conditions and observations.
    let others: Vec<serde_json::Value> =
        load_synthea("Roberto_Graham_238a58eb-31dc-4054-82ee-0651ee76f391.json")
            .into_iter()
            .filter(|r| r["resourceType"] == "Condition" || r["resourceType"] == "Observation")
            .take(5)
            .collect();
    let mut resources = patient(40);
    resources.extend(others.iter().cloned());
    let mock = SmartMock::start(resources).await;
    let (server, client) = start_fasten(|_| {}).await;
    let source = connect(&client, &mock).await;
    let job = finished_job(&server, source).await;
    assert_eq!(job.status, "warnings", "{job:?}");
    assert!(
        job.warnings
            .contains("5 records about someone else were left out"),
        "{}",
        job.warnings
    );
    let mut expected = served(&mock);
    for other in &others {
        expected.remove(&(
            other["resourceType"].as_str().unwrap().to_string(),
            other["id"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(stored(&server, source).await, expected);
    assert_eq!(job.added, 41);
}

/// FHIR decimals that a float parse and print would change: more digits than a double holds,
/// a float artefact, a trailing zero, an exponent (serde_json would write `1e+2`) and a tiny
/// value.
const EXACT_DECIMALS: [&str; 5] = [
    "164.00316868363547",
    "112.41600000000001",
    "1.50",
    "1e2",
    "0.000000001",
];

/// One Observation per decimal of [`EXACT_DECIMALS`] about `patient`, written as JSON text so the
/// numbers are exactly those digits.
fn exact_observations(patient: &str) -> Vec<serde_json::Value> {
    EXACT_DECIMALS
        .iter()
        .enumerate()
        .map(|(n, value)| {
            serde_json::from_str(&format!(
                r#"{{"resourceType":"Observation","id":"exact-{n}","status":"final",
                    "code":{{"text":"Exact measure {n}"}},
                    "subject":{{"reference":"Patient/{patient}"}},
                    "effectiveDateTime":"2020-01-0{day}",
                    "valueQuantity":{{"value":{value},"unit":"mg"}},
                    "component":[{{"code":{{"text":"part"}},"valueQuantity":{{"value":{value}}}}}]}}"#,
                day = n + 1
            ))
            .unwrap()
        })
        .collect()
}

/// Asserts every exact decimal appears in an export twice (value and component), as sent.
fn assert_exact_decimals(export: &str, whose: &str) {
    for value in EXACT_DECIMALS {
        let needle = format!("\"value\":{value}");
        assert_eq!(
            export.matches(&needle).count(),
            2,
            "{whose}: {needle} is not in the export exactly as sent"
        );
    }
}

async fn export_text(client: &Client, person: &str) -> String {
    let reply = client
        .get_exact(&format!("/people/{person}/export/everything.json"))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.body
}

#[tokio::test]
async fn decimals_are_stored_and_exported_exactly_as_sent() {
    // Synced from a provider.
    let mut resources = patient(3);
    let patient_id = resources[0]["id"].as_str().unwrap().to_string();
    resources.extend(exact_observations(&patient_id));
    let mock = SmartMock::start(resources.clone()).await;
    // The mock holds parsed JSON, which writes `1e2` as `1e+2`: it writes it back as sent.
    mock.configure(|b| b.written_as = vec![(":1e+2".into(), ":1e2".into())]);
    let (server, client) = start_fasten(|_| {}).await;
    let source = connect(&client, &mock).await;
    let job = finished_job(&server, source).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_exact_decimals(&export_text(&client, "alice").await, "synced");

    // Imported from a file written with those digits.
    server.add_person(common::ADMIN, "leo", "Leo").await;
    let mut bundle = String::from(r#"{"resourceType":"Bundle","type":"collection","entry":["#);
    for (n, resource) in resources.iter().enumerate() {
        if n > 0 {
            bundle.push(',');
        }
        bundle.push_str(&format!(r#"{{"resource":{resource}}}"#));
    }
    bundle.push_str("]}");
    // Written as a file would be, not as serde_json writes an exponent.
    let bundle = bundle.replace(":1e+2", ":1e2");
    for value in EXACT_DECIMALS {
        assert!(bundle.contains(&format!("\"value\":{value}")), "{value}");
    }
    let reply = common::upload_for(&client, "/people/leo", "exact.json", bundle.into_bytes()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_exact_decimals(&export_text(&client, "leo").await, "imported");
}

#[tokio::test]
async fn connecting_the_same_provider_and_patient_again_renews_the_source() {
    let mock = SmartMock::start(patient(20)).await;
    let (server, client) = start_fasten(|_| {}).await;
    let source = connect(&client, &mock).await;
    let first = finished_job(&server, source).await;
    assert_eq!(first.status, "succeeded", "{first:?}");
    let stored_once = records(&server, source).await;
    assert_eq!(stored_once, 21);

    // The same server and patient again (a trailing slash on the base changes nothing).
    let callback = start_connect(
        &client,
        &[
            ("fhir_base", &format!("{}/", mock.fhir_base())),
            ("client_id", "fasten-test"),
            ("display_name", "Mock Hospital again"),
        ],
    )
    .await;
    let reply = visit(&client, &callback).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let location = reply.location.unwrap();
    assert!(
        location.ends_with(&format!("/people/alice/sources?renewed={source}")),
        "{location}"
    );
    let page = client
        .get(&location[location.find("/people").unwrap()..])
        .await;
    assert!(
        page.body
            .contains("You were already connected to this provider; the connection was renewed."),
        "{}",
        page.body
    );
    let alice = server.person_id(common::ADMIN).await;
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM sources WHERE person_id = ?", alice)
            .await,
        1,
        "no second source"
    );
    let again = finished_job(&server, source).await;
    assert!(again.id > first.id, "the renewed source syncs again");
    assert_eq!(again.status, "succeeded", "{again:?}");
    assert_eq!(again.added, 0, "{again:?}");
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", alice)
            .await,
        stored_once,
        "no resource is stored twice"
    );
}

#[tokio::test]
async fn a_record_another_source_already_holds_is_not_stored_twice() {
    // The same patient's file uploaded first, then synced from the provider: the sync's
    // records are the file's, byte for byte, so nothing is stored a second time.
    let resources = patient(20);
    let mock = SmartMock::start(resources).await;
    let (server, client) = start_fasten(|_| {}).await;
    let served: Vec<serde_json::Value> = mock.state.lock().unwrap().resources.clone();
    let bundle = serde_json::json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": served.iter().map(|r| serde_json::json!({"resource": r})).collect::<Vec<_>>(),
    });
    server
        .import_bundle(common::ADMIN, "download.json", &bundle)
        .await;
    let alice = server.person_id(common::ADMIN).await;
    let uploaded = server
        .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", alice)
        .await;
    assert_eq!(uploaded, 21);
    let source = connect(&client, &mock).await;
    let job = finished_job(&server, source).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!((job.added, job.unchanged), (0, 21), "{job:?}");
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", alice)
            .await,
        uploaded
    );
}

#[tokio::test]
async fn a_search_whose_patient_filter_the_server_ignored_is_left_out_whole() {
    // Conditions: the server ignores `patient=`, says so, and answers Roberto Graham's too.
    let others: Vec<serde_json::Value> =
        load_synthea("Roberto_Graham_238a58eb-31dc-4054-82ee-0651ee76f391.json")
            .into_iter()
            .filter(|r| r["resourceType"] == "Condition")
            .take(5)
            .collect();
    let mut resources = patient(40);
    let own_conditions = resources
        .iter()
        .filter(|r| r["resourceType"] == "Condition")
        .count();
    assert!(own_conditions > 0);
    resources.extend(others.iter().cloned());
    let mock = SmartMock::start(resources).await;
    mock.configure(|b| b.ignore_patient_filter = Some("Condition".into()));
    let (server, client) = start_fasten(|_| {}).await;
    let source = connect(&client, &mock).await;
    let job = finished_job(&server, source).await;
    assert_eq!(job.status, "warnings", "{job:?}");
    assert!(
        job.warnings.contains(
            "Condition: the server ignored the patient filter, so what it sent was left out"
        ),
        "{}",
        job.warnings
    );
    assert_eq!(
        server
            .count(
                "SELECT COUNT(*) FROM resources WHERE source_id = ? AND resource_type = 'Condition'",
                source
            )
            .await,
        0,
        "nothing of a search whose filter was ignored is stored"
    );
    assert_eq!(records(&server, source).await as usize, 41 - own_conditions);
    // Every search asked the server to refuse what it cannot apply rather than ignore it.
    let searches: Vec<_> = mock
        .log()
        .into_iter()
        .filter(|r| r.query.contains("patient="))
        .collect();
    assert!(!searches.is_empty());
    for search in searches {
        assert_eq!(
            search.prefer.as_deref(),
            Some("handling=strict"),
            "{search:?}"
        );
    }
}

#[tokio::test]
async fn a_short_lived_token_is_not_renewed_the_moment_it_arrives() {
    // 30-second tokens: a fixed one-minute margin would renew each one the moment it arrives
    // (and, with a provider that refuses that, mark the source for reconnecting).
    let mock = SmartMock::start(patient(10)).await;
    mock.configure(|b| b.access_token_seconds = 30);
    let (server, client) = start_fasten(|_| {}).await;
    let source = connect(&client, &mock).await;
    let job = finished_job(&server, source).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(connection_status(&server, source).await.0, "connected");
    assert!(
        mock.token_requests()
            .iter()
            .all(|t| t.grant_type != "refresh_token"),
        "no renewal was asked for"
    );
}

#[tokio::test]
async fn a_refused_early_renewal_keeps_the_source_connected_and_says_until_when() {
    let mock = SmartMock::start(patient(10)).await;
    let (server, client) = start_fasten(|_| {}).await;
    let source = connect(&client, &mock).await;
    assert_eq!(finished_job(&server, source).await.status, "succeeded");

    // The token has 20 seconds left of its hour: due for renewal, which the provider refuses.
    sqlx::query("UPDATE connections SET access_expires_at = ? WHERE source_id = ?")
        .bind(fasten::store::unix_now() + 20)
        .bind(source)
        .execute(&server.state.db)
        .await
        .unwrap();
    mock.revoke_all_refresh_tokens();
    sync_now(&client, source).await;
    let job = finished_job(&server, source).await;
    assert_eq!(job.status, "warnings", "{job:?}");
    assert!(
        job.warnings.contains(
            "The provider would not renew this connection's access, which stops working in"
        ),
        "{}",
        job.warnings
    );
    assert_eq!(connection_status(&server, source).await.0, "connected");
    assert_eq!(records(&server, source).await, 11);
}
