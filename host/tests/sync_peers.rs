//! End to end against real peers (`.ci/peers.sh`): a sekmet-fhir server holding a Synthea patient,
//! behind a SMART authorization server (oauth2-mock-server) that proxies FHIR requests to it and
//! checks the bearer tokens it issued. Fasten is driven over HTTP only, the way a browser drives
//! it: connect a custom endpoint, sign in at the provider, come back, let the sync job run, then
//! sync again once the access token has expired so that the host must refresh it by itself.
//!
//! Skipped (with a message) when the peers are not installed, unless `CI` is set.

use crate::common;
use crate::peers;

use std::time::{Duration, Instant};

use common::{ADMIN, ADMIN_PASSWORD, TestServer, extract_csrf};
use fasten::sources::tokens::refresh_margin;
use peers::{Keys, OAuthPeer, Sekmet};
use reqwest::StatusCode;
use serde_json::Value;

const CLIENT_ID: &str = "fasten-e2e";
/// Access token lifetime in the harness test, in seconds: short, to see the proxy enforce it.
const SHORT_EXPIRY: u64 = 5;
/// Access token lifetime in the end-to-end test. The host refreshes a token once it has less than
/// a tenth of its lifetime left (`refresh_margin`), so the token from the sign-in serves the first
/// sync as is and is due for a refresh REFRESH_AFTER later, before the second sync.
const E2E_EXPIRY: u64 = 10;
const REFRESH_AFTER: Duration =
    Duration::from_secs(E2E_EXPIRY - refresh_margin(Some(E2E_EXPIRY as i64)) as u64);
/// How long a sync job may take before the test gives up.
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// sekmet with Paris Casper loaded, behind the SMART server. Returns the patient id and every
/// resource the bundle created.
pub(crate) async fn provider(expires_in: u64) -> (Sekmet, OAuthPeer, String, Keys) {
    let sekmet = Sekmet::start().await;
    let (patient, loaded) = sekmet
        .load_bundle_keys(&peers::synthea(peers::PARIS_CASPER))
        .await;
    let expires_in = expires_in.to_string();
    let oauth = OAuthPeer::start(&[
        ("FHIR_UPSTREAM", sekmet.base.as_str()),
        ("PATIENT_ID", patient.as_str()),
        ("EXPIRES_IN", expires_in.as_str()),
        ("CLIENT_ID", CLIENT_ID),
    ])
    .await;
    (sekmet, oauth, patient, loaded)
}

/// The harness alone: both peers start, and the patient can be read through the proxy with a
/// token from the authorization code flow (PKCE, by hand), and not without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_start_and_serve_the_patient() {
    if !peers::require() {
        return;
    }
    let started = Instant::now();
    let (sekmet, oauth, patient, loaded) = provider(SHORT_EXPIRY).await;
    eprintln!("peers up, bundle loaded in {:?}", started.elapsed());

    // On a fresh server holding one bundle, $everything is exactly what the bundle created: the
    // patient's records and the Organization and Practitioner they refer to.
    assert_eq!(sekmet.resource_ids(&patient).await, loaded);
    let observations = loaded.iter().filter(|(t, _)| t == "Observation").count();
    assert!(observations > 0);
    assert_eq!(sekmet.count("Observation", &patient).await, observations);

    let http = peers::http();
    let patient_url = format!("{}/Patient/{patient}", oauth.fhir_base);
    let anonymous = http.get(&patient_url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let metadata = http
        .get(format!("{}/metadata", oauth.fhir_base))
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.status(), StatusCode::OK, "metadata needs no token");
    let smart: Value = http
        .get(format!(
            "{}/.well-known/smart-configuration",
            oauth.fhir_base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(smart["token_endpoint"], format!("{}/token", oauth.url));

    let token = oauth
        .code_flow(CLIENT_ID, "launch/patient patient/*.read offline_access")
        .await;
    assert_eq!(token["patient"], patient.as_str(), "{token}");
    assert_eq!(token["expires_in"], SHORT_EXPIRY, "{token}");
    let access = token["access_token"].as_str().expect("access_token");
    let refresh = token["refresh_token"].as_str().expect("refresh_token");

    let read = http
        .get(&patient_url)
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["resourceType"], "Patient");
    assert_eq!(read["id"], patient.as_str());

    // The proxy rewrites sekmet's base URL to its own in bodies (links, fullUrls).
    let search: Value = http
        .get(format!(
            "{}/Observation?patient={patient}&_count=5",
            oauth.fhir_base
        ))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = search.to_string();
    assert!(!text.contains(&sekmet.base), "{text}");
    assert!(text.contains(&oauth.fhir_base), "{text}");

    // Tokens expire when EXPIRES_IN says, and a refresh grant gives a working one.
    tokio::time::sleep(Duration::from_secs(SHORT_EXPIRY + 1)).await;
    let expired = http
        .get(&patient_url)
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    let (status, refreshed) = oauth.refresh(CLIENT_ID, refresh).await;
    assert_eq!(status, 200, "{refreshed}");
    let again = http
        .get(&patient_url)
        .bearer_auth(refreshed["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let (status, _) = oauth.refresh("someone-else", refresh).await;
    assert_eq!(status, 401, "CLIENT_ID is enforced");

    assert_eq!(
        grants(&oauth).await,
        [
            ("authorization_code".to_string(), 200),
            ("refresh_token".to_string(), 200),
            ("refresh_token".to_string(), 401),
        ]
    );
    eprintln!("harness test done in {:?}", started.elapsed());
}

/// `(grant_type, status)` of every token request the provider answered, oldest first.
async fn grants(oauth: &OAuthPeer) -> Vec<(String, u64)> {
    oauth
        .token_events()
        .await
        .iter()
        .map(|e| {
            (
                e["grant_type"].as_str().unwrap_or_default().to_string(),
                e["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// One row of `jobs`.
#[derive(Debug, sqlx::FromRow)]
struct Job {
    id: i64,
    status: String,
    trigger: String,
    attempt: i64,
    added: i64,
    updated: i64,
    unchanged: i64,
    warnings: String,
    error: Option<String>,
}

/// The newest job of `source_id` with an id above `after`, once it has finished.
async fn finished_job(
    server: &TestServer,
    sekmet: &Sekmet,
    oauth: &OAuthPeer,
    source_id: i64,
    after: i64,
) -> Job {
    let started = Instant::now();
    loop {
        let job: Option<Job> = sqlx::query_as(
            "SELECT id, status, trigger, attempt, added, updated, unchanged, warnings, error \
             FROM jobs WHERE source_id = ? AND id > ? ORDER BY id DESC LIMIT 1",
        )
        .bind(source_id)
        .bind(after)
        .fetch_optional(&server.state.db)
        .await
        .unwrap();
        match job {
            Some(job) if job.status != "queued" && job.status != "running" => {
                eprintln!(
                    "job {} ({}, attempt {}) {} after {:?}",
                    job.id,
                    job.trigger,
                    job.attempt,
                    job.status,
                    started.elapsed()
                );
                return job;
            }
            last if started.elapsed() > JOB_TIMEOUT => panic!(
                "no finished sync job for source {source_id} within {JOB_TIMEOUT:?}; last: \
                 {last:?}\n{}",
                diagnostics(sekmet, oauth).await
            ),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the peers saw, for failure messages.
async fn diagnostics(sekmet: &Sekmet, oauth: &OAuthPeer) -> String {
    let log: Vec<String> = oauth.log().await.iter().map(Value::to_string).collect();
    let tail = |s: String| {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    format!(
        "oauth server log:\n{}\n--- sekmet stderr (end):\n{}",
        log.join("\n"),
        tail(sekmet.stderr())
    )
}

fn assert_succeeded(job: &Job, what: &str) {
    assert!(
        job.status == "succeeded" || job.status == "warnings",
        "{what}: job {} ended {} (attempt {}): error {:?}, warnings {}",
        job.id,
        job.status,
        job.attempt,
        job.error,
        job.warnings
    );
    if job.status == "warnings" {
        eprintln!("{what}: warnings {}", job.warnings);
    }
}

/// The `href` of `<a id="continue" href="...">`, HTML unescaped.
pub(crate) fn continue_href(html: &str) -> Option<String> {
    let anchor = &html[html.find("id=\"continue\"")?..];
    let start = anchor.find("href=\"")? + "href=\"".len();
    let end = anchor[start..].find('"')? + start;
    Some(unescape_html(&anchor[start..end]))
}

pub(crate) fn unescape_html(text: &str) -> String {
    text.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

async fn fasten_keys(server: &TestServer, source_id: i64) -> Keys {
    sqlx::query_as::<_, (String, String)>(
        "SELECT resource_type, resource_id FROM resources WHERE source_id = ?",
    )
    .bind(source_id)
    .fetch_all(&server.state.db)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// The `<td class="records">` of the source's row on the Sources page.
pub(crate) fn records_shown(html: &str, source_id: i64) -> Option<String> {
    let row = &html[html.find(&format!("id=\"source-{source_id}\""))?..];
    let row = &row[..row.find("</tr>")?];
    let cell = &row[row.find("class=\"records\">")? + "class=\"records\">".len()..];
    Some(cell[..cell.find('<')?].trim().to_string())
}

async fn stored_tokens(server: &TestServer, source_id: i64) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    sqlx::query_as("SELECT access_token, refresh_token FROM connections WHERE source_id = ?")
        .bind(source_id)
        .fetch_one(&server.state.db)
        .await
        .unwrap()
}

/// A value sealed by the vault: present, longer than a nonce and a tag, and binary (random bytes
/// are all printable ASCII with a negligible probability), with no JWT in it.
fn assert_sealed(name: &str, value: Option<&[u8]>) {
    let value = value.unwrap_or_else(|| panic!("{name} was not stored"));
    let text = String::from_utf8_lossy(value);
    assert!(
        value.len() > 40,
        "{name} is too short to be sealed: {text:?}"
    );
    assert!(
        !value.iter().all(|b| b.is_ascii_graphic()),
        "{name} is stored as text: {text:?}"
    );
    assert!(!text.contains("eyJ"), "{name} holds a JWT: {text:?}");
}

/// Connects the signed-in account's own person to the provider behind `oauth` as a browser does:
/// the custom endpoint form, the provider's sign-in (the mock approves at once), the callback.
/// Answers the new source's id.
pub(crate) async fn connect_through(
    client: &common::Client,
    server_url: &str,
    oauth: &OAuthPeer,
) -> i64 {
    let page = client.get("/sources").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = extract_csrf(&page.body).expect("csrf_token on /sources");
    let connect = client
        .post_raw(
            "/sources/connect",
            &[
                ("csrf_token", csrf.as_str()),
                ("fhir_base", oauth.fhir_base.as_str()),
                ("client_id", CLIENT_ID),
                ("client_secret", ""),
                ("display_name", "Peer hospital"),
            ],
        )
        .await;
    assert_eq!(connect.status, StatusCode::OK, "{}", connect.body);
    let authorize = continue_href(&connect.body)
        .unwrap_or_else(|| panic!("no continue link: {}", connect.body));
    assert!(
        authorize.starts_with(&format!("{}/authorize?", oauth.url)),
        "{authorize}"
    );

    // The browser follows the link; the mock provider approves at once.
    let at_provider = peers::http().get(&authorize).send().await.unwrap();
    assert_eq!(at_provider.status(), StatusCode::FOUND);
    let back = at_provider.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let callback = back
        .strip_prefix(server_url)
        .filter(|rest| rest.starts_with("/sources/callback?"))
        .unwrap_or_else(|| panic!("the provider sent the browser to {back}"));
    let connected = client.get(callback).await;
    assert!(
        matches!(connected.status, StatusCode::SEE_OTHER | StatusCode::FOUND),
        "callback: {} {}",
        connected.status,
        connected.body
    );
    let location = connected.location.clone().unwrap_or_default();
    let source_id: i64 = location
        .strip_prefix(&format!(
            "{}/people/alice/sources?connected=",
            common::path_prefix(server_url)
        ))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("callback redirected to {location:?}"));
    source_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_sync_and_refresh_against_real_peers() {
    if !peers::require() {
        return;
    }
    let started = Instant::now();
    let (sekmet, oauth, patient, loaded) = provider(E2E_EXPIRY).await;
    // The server holds this bundle and nothing else, so `loaded` is everything a sync could
    // possibly read; $everything agreeing with it says the patient's record is all of it.
    let everything = sekmet.resource_ids(&patient).await;
    assert_eq!(everything, loaded, "sekmet's $everything vs the bundle");
    eprintln!(
        "peers up, {} resources loaded in {:?}",
        loaded.len(),
        started.elapsed()
    );

    let server = TestServer::start_with(|c| {
        c.plugins.allow_http_loopback = true;
        c.plugins.allow_private_networks = true;
        // No scheduled syncs: the only jobs are the one connecting starts and the manual one.
        c.sync.every = Duration::ZERO;
    })
    .await;
    let client = server.client();
    client.setup(ADMIN, "Alice", ADMIN_PASSWORD).await;

    // --- connect: the custom endpoint form, then the provider's sign-in, then the callback ---
    let source_id = connect_through(&client, &server.url, &oauth).await;
    // The token was issued at the callback, a moment ago: from here it is valid for E2E_EXPIRY.
    let signed_in = Instant::now();
    eprintln!("connected source {source_id} after {:?}", started.elapsed());

    // --- the first sync, started by connecting ---
    let first = finished_job(&server, &sekmet, &oauth, source_id, 0).await;
    assert_succeeded(&first, "first sync");
    let synced = fasten_keys(&server, source_id).await;
    // Exact equality is the honest check here: the plugin also reads the practitioners,
    // organisations, locations and medications the records refer to, but on this server those
    // are part of the bundle (and of $everything) already, and nothing else exists to be read.
    let missing: Vec<_> = loaded.difference(&synced).collect();
    let extra: Vec<_> = synced.difference(&loaded).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "Fasten vs the server: missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(first.added as usize, loaded.len(), "{first:?}");
    let page = client.get("/sources").await;
    assert_eq!(
        records_shown(&page.body, source_id).as_deref(),
        Some(loaded.len().to_string().as_str()),
        "records on the Sources page: {}",
        page.body
    );
    eprintln!(
        "first sync: {} resources, after {:?}",
        synced.len(),
        started.elapsed()
    );

    // The first sync used the token from the sign-in: no refresh yet.
    assert_eq!(
        grants(&oauth).await,
        [("authorization_code".to_string(), 200)],
        "token requests up to the first sync"
    );

    // Tokens are stored sealed (the access token the mock issues is a JWT, the refresh token a
    // UUID): neither column reads as text, let alone as a JWT.
    let (access, refresh) = stored_tokens(&server, source_id).await;
    assert_sealed("access_token", access.as_deref());
    assert_sealed("refresh_token", refresh.as_deref());

    // --- the second sync, once the access token is due for a refresh: the host must refresh it
    // by itself (the proxy refuses expired tokens, see peers_start_and_serve_the_patient) ---
    // Expiry times are whole seconds, hence the extra second and a half.
    let due = signed_in + REFRESH_AFTER + Duration::from_millis(1500);
    tokio::time::sleep_until(due.into()).await;
    let page = client.get("/sources").await;
    let csrf = extract_csrf(&page.body).expect("csrf_token on /sources");
    let sync = client
        .post_raw(
            &format!("/sources/{source_id}/sync"),
            &[("csrf_token", csrf.as_str())],
        )
        .await;
    assert!(
        sync.status.is_redirection(),
        "sync now: {} {}",
        sync.status,
        sync.body
    );
    let second = finished_job(&server, &sekmet, &oauth, source_id, first.id).await;
    assert_succeeded(&second, "second sync");
    let grants = grants(&oauth).await;
    let refreshes = grants.iter().filter(|g| g.0 == "refresh_token").count();
    assert!(
        refreshes >= 1
            && grants[1..]
                .iter()
                .all(|g| g == &("refresh_token".to_string(), 200)),
        "expected successful refresh_token grants after the first: {grants:?}\n{}",
        diagnostics(&sekmet, &oauth).await
    );
    // Refreshed ahead of expiry, so the provider never had to refuse a request.
    let fhir_statuses: Vec<u64> = oauth
        .log()
        .await
        .iter()
        .filter(|e| e["endpoint"] == "fhir")
        .map(|e| e["status"].as_u64().unwrap_or_default())
        .collect();
    assert!(
        !fhir_statuses.is_empty() && fhir_statuses.iter().all(|s| *s == 200),
        "FHIR requests through the proxy: {fhir_statuses:?}\n{}",
        diagnostics(&sekmet, &oauth).await
    );
    eprintln!(
        "second sync: {refreshes} refresh(es), {} FHIR requests in both syncs",
        fhir_statuses.len()
    );
    // Nothing changed at the provider. sekmet ignores $everything's _since, so the incremental
    // run reads the whole record again, and every resource comes back unchanged.
    assert_eq!(
        (second.added, second.updated),
        (0, 0),
        "second sync: {second:?}"
    );
    assert_eq!(second.unchanged as usize, loaded.len(), "{second:?}");
    assert_eq!(fasten_keys(&server, source_id).await, synced);

    // The refresh replaced the stored access token, still sealed.
    let (access_now, refresh_now) = stored_tokens(&server, source_id).await;
    assert_ne!(access_now, access, "the access token was not replaced");
    assert_sealed("access_token", access_now.as_deref());
    assert_sealed("refresh_token", refresh_now.as_deref());
    eprintln!("e2e test done in {:?}", started.elapsed());
}

/// A platform without `$everything`, as Epic and most vendors are: the connector searches type
/// by type. Its one entry takes the FHIR base from the form.
const PER_TYPE_CATALOG: &str = r#"
[[platform]]
id = "per-type"
name = "Searches by type"
everything = false

[[entry]]
id = "per-type-peer"
name = "Per-type peer hospital"
platform = "per-type"
fhir_base = ""
client_id = "fasten-e2e"
"#;

/// Every type's count in a set of keys.
fn per_type(keys: &Keys) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for (resource_type, _) in keys {
        *counts.entry(resource_type.clone()).or_default() += 1;
    }
    counts
}

/// With all five Synthea patients on one server, syncing each of them by per-type searches
/// stores, type by type, exactly what `$everything` returns for that patient: nothing missed
/// (claims, imaging, care plans) and nothing of the other four.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_type_searches_store_what_everything_returns_for_each_patient() {
    if !peers::require() {
        return;
    }
    let started = Instant::now();
    let sekmet = Sekmet::start().await;
    let mut patients = Vec::new();
    for file in peers::SYNTHEA_PATIENTS {
        let (patient, _) = sekmet.load_bundle_keys(&peers::synthea(file)).await;
        patients.push(patient);
    }
    eprintln!("five patients loaded in {:?}", started.elapsed());

    let registry = tempfile::tempdir().unwrap();
    std::fs::write(registry.path().join("catalog.toml"), PER_TYPE_CATALOG).unwrap();
    let server = TestServer::start_with(|c| {
        c.plugins.allow_http_loopback = true;
        c.plugins.allow_private_networks = true;
        c.plugins.registry_dir = registry.path().to_path_buf();
        c.sync.every = Duration::ZERO;
    })
    .await;
    let client = server.client();
    client.setup(ADMIN, "Alice", ADMIN_PASSWORD).await;

    for (n, patient) in patients.iter().enumerate() {
        let oauth = OAuthPeer::start(&[
            ("FHIR_UPSTREAM", sekmet.base.as_str()),
            ("PATIENT_ID", patient.as_str()),
            ("EXPIRES_IN", "3600"),
            ("CLIENT_ID", CLIENT_ID),
        ])
        .await;
        // Each patient is a person of the family, connected from their own page.
        let slug = format!("member{n}");
        server
            .add_person(ADMIN, &slug, &format!("Member {n}"))
            .await;
        let sources = format!("/people/{slug}/sources");
        let connect = client
            .submit(
                &sources,
                &format!("{sources}/connect"),
                &[
                    ("catalog_id", "per-type-peer"),
                    ("fhir_base", oauth.fhir_base.as_str()),
                ],
            )
            .await;
        assert_eq!(connect.status, StatusCode::OK, "{}", connect.body);
        let authorize = continue_href(&connect.body)
            .unwrap_or_else(|| panic!("no continue link: {}", connect.body));
        let at_provider = peers::http().get(&authorize).send().await.unwrap();
        let back = at_provider.headers()["location"]
            .to_str()
            .unwrap()
            .to_string();
        let connected = client.get(back.strip_prefix(&server.url).unwrap()).await;
        let location = connected.location.clone().unwrap_or_default();
        let source_id: i64 = location
            .rsplit("connected=")
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("callback: {} {location:?}", connected.body));
        let job = finished_job(&server, &sekmet, &oauth, source_id, 0).await;
        assert_succeeded(&job, &slug);

        let everything = per_type(&sekmet.resource_ids(patient).await);
        let stored = per_type(&fasten_keys(&server, source_id).await);
        assert_eq!(
            stored, everything,
            "{slug}: stored per type (left) vs $everything (right); warnings {}",
            job.warnings
        );
        eprintln!("{slug}: {stored:?} after {:?}", started.elapsed());
    }
}
