//! Admin → Provider apps and `private_key_jwt`, end to end against a real verifying authorization
//! server (`peers/oidc-server.mjs`: oidc-provider, which checks each client assertion's
//! signature against Fasten's JWK Set URL, its `aud`, `exp` and `jti`) in front of a sekmet FHIR
//! server holding a Synthea patient. Fasten runs as `fasten serve`, the way an operator runs it, so
//! everything it logs is captured and searched for secrets.
//!
//! Skipped (with a message) when the peers are not installed, unless `CI` is set.

use crate::common;
use crate::directory::{self, Lists};
use crate::peers;
use crate::sync_peers::{continue_href, records_shown, unescape_html};

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{ADMIN, ADMIN_PASSWORD, Client, Reply, ServeProcess};
use peers::{OAuthPeer, Sekmet};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::SqlitePool;
use tempfile::TempDir;

/// The client id the "vendor" gave the administrator's Epic registration.
const CLIENT_ID: &str = "fasten-family-epic-7f3a";
/// A client secret saved for another platform, to look for in pages and logs.
const WITHINGS_SECRET: &str = "withings-secret-5d1e0c9b8a";
const MEMBER: &str = "bob";
const MEMBER_PASSWORD: &str = "bob-password-1";
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// Every page and file Fasten served in a test, for the secrets check.
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl Seen {
    /// Keeps the page as served and with its HTML escapes undone (`&#x2f;` is `/`).
    fn keep(&self, reply: Reply) -> Reply {
        let mut seen = self.0.lock().unwrap();
        seen.push(reply.body.clone());
        seen.push(unescape_html(&reply.body));
        reply
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Fasten, the FHIR server with Paris Casper, and the authorization server, wired together.
struct World {
    fasten: ServeProcess,
    data: TempDir,
    db: SqlitePool,
    sekmet: Sekmet,
    oidc: OAuthPeer,
    patient: String,
    admin: Client,
    seen: Seen,
}

impl World {
    /// `grace` is Fasten's key rotation grace period; `expires_in` the access token lifetime.
    async fn start(grace: &str, expires_in: u64, signing_alg: &str) -> World {
        let started = Instant::now();
        let sekmet = Sekmet::start().await;
        let patient = sekmet
            .load_bundle(&peers::synthea(peers::PARIS_CASPER))
            .await;
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        // The vendors' directory lists, served on loopback: Epic's brands lead to the peer.
        let lists = Lists::default();
        let directory_file = data.path().join("directory.toml");
        std::fs::write(
            &directory_file,
            format!(
                "[[source]]\nid = \"epic\"\nname = \"Epic brands\"\n\
                 url = \"{}/brands.json\"\nformat = \"fhir-bundle\"\nplatform = \"epic\"\n",
                lists.serve().await
            ),
        )
        .unwrap();
        let fasten = ServeProcess::start(
            &data_dir,
            &[
                (
                    "FASTEN_LOG_LEVEL",
                    OsStr::new("debug,cranelift=info,wasmtime=info"),
                ),
                ("FASTEN_PLUGINS_ALLOW_HTTP_LOOPBACK", OsStr::new("true")),
                ("FASTEN_PLUGINS_ALLOW_PRIVATE_NETWORKS", OsStr::new("true")),
                ("FASTEN_SYNC_EVERY", OsStr::new("0s")),
                ("FASTEN_INBOX_ENABLED", OsStr::new("false")),
                ("FASTEN_PROVIDER_APPS_KEY_GRACE", OsStr::new(grace)),
                ("FASTEN_DIRECTORY_FILE", directory_file.as_os_str()),
            ],
        );
        let expires_in = expires_in.to_string();
        let oidc = OAuthPeer::start_oidc(&[
            ("CLIENT_ID", CLIENT_ID),
            ("JWKS_URI", &format!("{}/.well-known/jwks.json", fasten.url)),
            ("REDIRECT_URI", &format!("{}/sources/callback", fasten.url)),
            ("SIGNING_ALG", signing_alg),
            ("PATIENT_ID", &patient),
            ("EXPIRES_IN", &expires_in),
            ("FHIR_UPSTREAM", &sekmet.base),
        ])
        .await;
        lists.put(
            "brands.json",
            directory::brands()
                .replace(directory::SPRINGFIELD_BASE, &format!("{}/", oidc.fhir_base)),
        );
        let admin = fasten.client();
        admin.setup(ADMIN, "Alice", ADMIN_PASSWORD).await;
        let db = SqlitePool::connect(&format!(
            "sqlite://{}",
            data_dir.join("fasten.db").display()
        ))
        .await
        .unwrap();
        eprintln!("fasten and peers up in {:?}", started.elapsed());
        World {
            fasten,
            data,
            db,
            sekmet,
            oidc,
            patient,
            admin,
            seen: Seen::default(),
        }
    }

    async fn get(&self, client: &Client, path: &str) -> Reply {
        let reply = client.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.body);
        self.seen.keep(reply)
    }

    async fn submit(
        &self,
        client: &Client,
        page: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> Reply {
        let page = self.get(client, page).await;
        let token = common::extract_csrf(&page.body).expect("a CSRF token");
        let mut form = fields.to_vec();
        form.push(("csrf_token", &token));
        self.seen.keep(client.post_raw(action, &form).await)
    }

    /// The administrator saves the Epic registration with private_key_jwt.
    async fn register_epic(&self, signing_alg: &str) {
        let saved = self
            .submit(
                &self.admin,
                "/admin/provider-apps/epic",
                "/admin/provider-apps/epic",
                &[
                    ("client_id", CLIENT_ID),
                    ("client_auth", "private_key_jwt"),
                    ("signing_alg", signing_alg),
                    ("scopes", ""),
                ],
            )
            .await;
        saved.assert_redirect("/admin/provider-apps?notice=saved");
    }

    /// The administrator downloads the provider directory and waits for it to be searchable.
    async fn download_directory(&self) {
        let started = self
            .submit(
                &self.admin,
                "/admin/directory",
                "/admin/directory/refresh",
                &[],
            )
            .await;
        assert!(started.status.is_redirection(), "{}", started.body);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done: Option<(String, Option<String>)> = sqlx::query_as(
                "SELECT status, error FROM directory_refreshes WHERE status != 'running'
                 ORDER BY id DESC LIMIT 1",
            )
            .fetch_optional(&self.db)
            .await
            .unwrap();
            match done {
                Some((status, _)) if status == "succeeded" => return,
                Some(other) => panic!("the directory download ended {other:?}"),
                None if Instant::now() > deadline => panic!("the directory download never ended"),
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// `client` finds Springfield General in the provider directory and connects its own
    /// person with it, typing neither an address nor a client id, signs in at the provider and
    /// comes back. Answers the source id.
    async fn connect_epic(&self, client: &Client, person: &str) -> i64 {
        let sources = format!("/people/{person}/sources");
        // The catalog's "Epic (your organisation)" entry does not ask for the app either.
        let page = self.get(client, &sources).await;
        let entry = entry_form(&page.body, "epic");
        assert!(
            !entry.contains("name=\"client_id\"") && !entry.contains("name=\"client_secret\""),
            "the Epic entry still asks for the app registration: {entry}"
        );
        let found = self
            .get(client, &format!("{sources}/directory?q=Springfield"))
            .await;
        let results = directory::results(&found.body);
        let (id, result) = results
            .iter()
            .find(|(_, text)| text.contains("Springfield General Health"))
            .unwrap_or_else(|| panic!("Springfield is not in the directory: {}", found.body));
        assert!(
            result.contains("Epic"),
            "the result names its platform: {result}"
        );
        assert!(
            !result.contains("name=\"client_id\"") && !result.contains("name=\"client_secret\""),
            "the result still asks for the app registration: {result}"
        );
        assert!(!result.contains("name=\"fhir_base\""), "{result}");
        let connect = self
            .submit(
                client,
                &sources,
                &format!("{sources}/connect"),
                &[("directory_id", id.as_str())],
            )
            .await;
        assert_eq!(connect.status, StatusCode::OK, "{}", connect.body);
        let authorize = continue_href(&connect.body)
            .unwrap_or_else(|| panic!("no continue link: {}", connect.body));
        assert!(
            authorize.starts_with(&format!("{}/auth?", self.oidc.url)),
            "{authorize}"
        );
        let back = self
            .oidc
            .sign_in(&authorize, &format!("{}/sources/callback", self.fasten.url))
            .await;
        let callback = back.strip_prefix(&self.fasten.url).unwrap();
        let connected = self.seen.keep(client.get(callback).await);
        let location = connected.location.clone().unwrap_or_default();
        location
            .strip_prefix(&format!("/people/{person}/sources?connected="))
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "callback: {} {location:?} {}\n{}",
                    connected.status,
                    connected.body,
                    self.oidc.stderr()
                )
            })
    }

    /// Queues a sync of the source from its person's Sources page.
    async fn sync_now(&self, client: &Client, person: &str, source_id: i64) {
        let sources = format!("/people/{person}/sources");
        let sync = self
            .submit(
                client,
                &sources,
                &format!("{sources}/{source_id}/sync"),
                &[],
            )
            .await;
        assert!(
            sync.status.is_redirection(),
            "{} {}",
            sync.status,
            sync.body
        );
    }

    /// The newest job of the source above `after`, once finished: (id, status, error).
    async fn finished_job(&self, source_id: i64, after: i64) -> (i64, String, Option<String>) {
        let started = Instant::now();
        loop {
            let job: Option<(i64, String, Option<String>)> = sqlx::query_as(
                "SELECT id, status, error FROM jobs WHERE source_id = ? AND id > ?
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(source_id)
            .bind(after)
            .fetch_optional(&self.db)
            .await
            .unwrap();
            match job {
                Some(job) if job.1 != "queued" && job.1 != "running" => return job,
                last if started.elapsed() > JOB_TIMEOUT => panic!(
                    "no finished sync of source {source_id}: {last:?}\n{}",
                    self.diagnostics().await
                ),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    async fn assert_synced(&self, source_id: i64, after: i64, what: &str) -> i64 {
        let (id, status, error) = self.finished_job(source_id, after).await;
        assert!(
            status == "succeeded" || status == "warnings",
            "{what}: job {id} ended {status}: {error:?}\n{}",
            self.diagnostics().await
        );
        id
    }

    /// The token requests the provider answered, oldest first.
    async fn token_events(&self) -> Vec<Value> {
        self.oidc.token_events().await
    }

    async fn diagnostics(&self) -> String {
        let log: Vec<String> = self
            .oidc
            .log()
            .await
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.as_object_mut().map(|o| o.remove("client_assertion"));
                e.to_string()
            })
            .collect();
        let fasten = self.fasten.log.lock().unwrap();
        let tail = &fasten[fasten.len().saturating_sub(60)..];
        format!(
            "provider log:\n{}\n--- fasten log (end):\n{}",
            log.join("\n"),
            tail.join("\n")
        )
    }

    /// The JWK Set Fasten publishes, as anyone fetches it (no session).
    async fn jwks(&self) -> Value {
        let response = peers::http()
            .get(format!("{}/.well-known/jwks.json", self.fasten.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        self.seen.0.lock().unwrap().push(text.clone());
        serde_json::from_str(&text).unwrap()
    }

    /// The stored private keys, opened with the instance key from the data folder: every form a
    /// page or a log line could show one in (base64 DER as stored, the JWK `d` as base64url, hex).
    async fn private_key_material(&self) -> Vec<String> {
        let secret =
            fasten::secrets::SecretKey::read(&self.data.path().join("data/secret.key")).unwrap();
        let vault = fasten::vault::Vault::new(secret.derive("vault"));
        let rows: Vec<(String, String, Vec<u8>)> =
            sqlx::query_as("SELECT kid, alg, private_key FROM client_keys")
                .fetch_all(&self.db)
                .await
                .unwrap();
        assert!(!rows.is_empty(), "no keys stored");
        let mut needles = Vec::new();
        for (kid, alg, sealed) in rows {
            let stored = vault.open(&format!("client-key/{kid}"), &sealed).unwrap();
            let der = STANDARD.decode(&stored).unwrap();
            let d = match alg.as_str() {
                "ES384" => {
                    use p384::pkcs8::DecodePrivateKey;
                    p384::SecretKey::from_pkcs8_der(&der)
                        .unwrap()
                        .to_bytes()
                        .to_vec()
                }
                _ => {
                    use rsa::pkcs1::DecodeRsaPrivateKey;
                    use rsa::traits::PrivateKeyParts;
                    rsa::RsaPrivateKey::from_pkcs1_der(&der)
                        .unwrap()
                        .d()
                        .to_bytes_be()
                }
            };
            // A slice from the middle: PEM would wrap the same base64 at 64 characters.
            needles.push(stored[stored.len() / 2..stored.len() / 2 + 40].to_string());
            needles.push(URL_SAFE_NO_PAD.encode(&d)[..40].to_string());
            needles.push(hex::encode(&d)[..40].to_string());
        }
        needles
    }
}

/// The `<li id="provider-{id}">` of a Sources page.
fn entry_form(html: &str, id: &str) -> String {
    let start = html
        .find(&format!("id=\"provider-{id}\""))
        .unwrap_or_else(|| panic!("no provider {id} on the page: {html}"));
    let rest = &html[start..];
    rest[..rest.find("</li>").unwrap()].to_string()
}

async fn stored_count(db: &SqlitePool, source_id: i64) -> (i64, i64) {
    sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(resource_type = 'Patient'), 0) FROM resources
         WHERE source_id = ?",
    )
    .bind(source_id)
    .fetch_one(db)
    .await
    .unwrap()
}

/// Fails with what was found if `needle` is in any of `haystacks`.
fn assert_absent(what: &str, needle: &str, haystacks: &[(&str, &str)]) {
    assert!(
        needle.len() >= 16,
        "{what}: too short a needle to mean anything"
    );
    for (name, text) in haystacks {
        if let Some(at) = text.find(needle) {
            let from = text[..at]
                .char_indices()
                .rev()
                .nth(100)
                .map_or(0, |(i, _)| i);
            panic!(
                "{what} appears in {name}: …{}…",
                &text[from..(at + needle.len()).min(text.len())]
            );
        }
    }
}

/// The administrator registers this Fasten's Epic app with private_key_jwt; a member connects
/// through the catalog's Epic entry without seeing a client id, signs in at a real authorization
/// server that verifies every assertion against Fasten's JWK Set URL, and the sync stores the
/// patient's records. Every assertion has its own jti, one sent again is refused, and no
/// private key, client secret or assertion shows in a page or the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_connects_with_the_platform_app_over_private_key_jwt() {
    if !peers::require() {
        return;
    }
    // Short-lived access tokens, so the second sync refreshes: an assertion for that grant too.
    const EXPIRES_IN: u64 = 6;
    let world = World::start("7days", EXPIRES_IN, "ES384").await;
    let admin = &world.admin;

    // --- Admin → Provider apps: the exact values to give Epic ---
    let list = world.get(admin, "/admin/provider-apps").await;
    let jwks_url = format!("{}/.well-known/jwks.json", world.fasten.url);
    assert!(
        unescape_html(&list.body).contains(&jwks_url),
        "{}",
        list.body
    );
    let epic = world.get(admin, "/admin/provider-apps/epic").await;
    for value in [
        jwks_url.as_str(),
        &format!("{}/sources/callback", world.fasten.url),
        "USCDI v3",
        "Patient-facing",
        "launch/patient",
    ] {
        assert!(
            unescape_html(&epic.body).contains(value),
            "the Epic page lacks {value:?}: {}",
            epic.body
        );
    }
    let download = world.get(admin, "/admin/provider-apps/jwks.json").await;
    let downloaded: Value = serde_json::from_str(&download.body).unwrap();
    // The published set: one ES384 and one RS384 key, public halves only.
    let published = world.jwks().await;
    assert_eq!(published, downloaded);
    let keys = published["keys"].as_array().unwrap();
    let algs: BTreeSet<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    assert_eq!(algs, BTreeSet::from(["ES384", "RS384"]), "{published}");
    for key in keys {
        assert_eq!(key["use"], "sig", "{key}");
        assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()), "{key}");
        assert!(
            key.get("d").is_none() && key.get("p").is_none(),
            "a private part: {key}"
        );
    }

    world.register_epic("ES384").await;
    world.download_directory().await;
    // A client secret for another platform, to look for later.
    let saved = world
        .submit(
            admin,
            "/admin/provider-apps/withings",
            "/admin/provider-apps/withings",
            &[
                ("client_id", "withings-app-id"),
                ("client_auth", "client_secret"),
                ("client_secret", WITHINGS_SECRET),
            ],
        )
        .await;
    saved.assert_redirect("/admin/provider-apps?notice=saved");
    world.get(admin, "/admin/provider-apps/withings").await;
    world.get(admin, "/admin/provider-apps").await;

    // --- a member connects ---
    admin
        .create_user(MEMBER, MEMBER_PASSWORD, "member")
        .await
        .assert_redirect("/admin/users?notice=created");
    let bob = world.fasten.client();
    bob.login(MEMBER, MEMBER_PASSWORD).await;
    let source_id = world.connect_epic(&bob, MEMBER).await;
    let signed_in = Instant::now();
    let first = world.assert_synced(source_id, 0, "first sync").await;

    // Records stored: the patient and the searches the Epic platform makes.
    let (records, patients) = stored_count(&world.db, source_id).await;
    let observations = world.sekmet.count("Observation", &world.patient).await;
    assert_eq!(patients, 1, "the Patient");
    assert!(
        records > 20 && records as usize <= observations + 200,
        "{records} records stored (the server holds {observations} observations)"
    );
    let sources = world.get(&bob, "/people/bob/sources").await;
    assert_eq!(
        records_shown(&sources.body, source_id).as_deref(),
        Some(records.to_string().as_str())
    );
    eprintln!("stored {records} records for source {source_id}");
    // The member never saw the registration.
    assert!(!sources.body.contains(CLIENT_ID), "{}", sources.body);

    // Sync again once the access token is due: Fasten refreshes it with a new assertion.
    tokio::time::sleep_until((signed_in + Duration::from_secs(EXPIRES_IN + 1)).into()).await;
    world.sync_now(&bob, MEMBER, source_id).await;
    world.assert_synced(source_id, first, "second sync").await;

    // --- what the provider saw: every token request carried a fresh, valid assertion ---
    let events = world.token_events().await;
    assert!(!events.is_empty());
    let token_url = format!("{}/token", world.oidc.url);
    let mut jtis = BTreeSet::new();
    for event in &events {
        assert_eq!(
            event["status"],
            200,
            "{event}\n{}",
            world.diagnostics().await
        );
        assert_eq!(
            event["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        assert_eq!(event["alg"], "ES384");
        let claims = &event["claims"];
        assert_eq!(claims["iss"], CLIENT_ID);
        assert_eq!(claims["sub"], CLIENT_ID);
        assert_eq!(claims["aud"], token_url.as_str());
        let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
        assert!((1..=300).contains(&lifetime), "exp {lifetime} s after iat");
        assert!(
            jtis.insert(claims["jti"].as_str().unwrap().to_string()),
            "a jti was used twice: {claims}"
        );
    }
    assert_eq!(events[0]["grant_type"], "authorization_code");
    assert!(
        events[1..]
            .iter()
            .any(|e| e["grant_type"] == "refresh_token"),
        "the second sync refreshed: {events:?}"
    );

    // --- replay: the first assertion, sent again, is refused by the server ---
    let first = events[0]["client_assertion"].as_str().unwrap().to_string();
    let replay = peers::http()
        .post(&token_url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "any"),
            ("client_id", CLIENT_ID),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &first),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    let refused: Value = replay.json().await.unwrap();
    assert_eq!(refused["error"], "invalid_client", "{refused}");
    let last = world.token_events().await.pop().unwrap();
    assert!(
        last["error_detail"]
            .as_str()
            .is_some_and(|d| d.contains("only be used once")),
        "the server's reason: {last}"
    );

    // --- no private key, client secret or assertion in any page or in the log ---
    for path in [
        "/admin/provider-apps",
        "/admin/provider-apps/epic",
        "/admin/provider-apps/withings",
        "/admin/activity",
    ] {
        world.get(admin, path).await;
    }
    world.get(&bob, "/people/bob/sources").await;
    world.jwks().await;
    let pages = world.seen.all();
    let log = world.fasten.log.lock().unwrap().join("\n");
    assert!(log.contains("source connected"), "the log was captured");
    let mut haystacks: Vec<(String, &str)> = pages
        .iter()
        .enumerate()
        .map(|(n, page)| (format!("page {n}"), page.as_str()))
        .collect();
    haystacks.push(("the log".into(), &log));
    let haystacks: Vec<(&str, &str)> = haystacks.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    for needle in world.private_key_material().await {
        assert_absent("a private key", &needle, &haystacks);
    }
    assert_absent("the client secret", WITHINGS_SECRET, &haystacks);
    for event in world.oidc.log().await {
        if let Some(assertion) = event["client_assertion"].as_str() {
            assert_absent("a client assertion", assertion, &haystacks);
            let signature = assertion.rsplit('.').next().unwrap();
            assert_absent("an assertion's signature", signature, &haystacks);
        }
    }
    eprintln!(
        "checked {} pages and {} log lines",
        pages.len(),
        log.lines().count()
    );
}

/// Key rotation with a server that caches the JWK Set: "Add a new key" publishes a new pair at
/// once and Fasten keeps signing with the old one for the grace period (longer than
/// oidc-provider's 60-second cache), then switches. Tokens keep refreshing throughout: once
/// with the old key after the new one was published, once with the new key, which the server
/// only knows after fetching Fasten's JWK Set again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_refreshing_across_a_key_rotation() {
    if !peers::require() {
        return;
    }
    // RS384 here, ES384 in the test above: both key types sign for real.
    const GRACE: u64 = 62;
    const EXPIRES_IN: u64 = 8;
    let world = World::start(&format!("{GRACE}s"), EXPIRES_IN, "RS384").await;
    let admin = &world.admin;
    world.register_epic("RS384").await;
    world.download_directory().await;
    let source_id = world.connect_epic(admin, ADMIN).await;
    let signed_in = Instant::now();
    let first = world.assert_synced(source_id, 0, "first sync").await;
    let old_kid = world.token_events().await[0]["kid"]
        .as_str()
        .unwrap()
        .to_string();

    // --- Add a new key: both are published, the old one still signs ---
    let before: BTreeSet<String> = kids(&world.jwks().await);
    let added = world
        .submit(
            admin,
            "/admin/provider-apps",
            "/admin/provider-apps/keys",
            &[],
        )
        .await;
    added.assert_redirect("/admin/provider-apps?notice=key");
    let added_at = Instant::now();
    let after = kids(&world.jwks().await);
    assert!(after.is_superset(&before), "the old keys stay published");
    assert_eq!(after.len(), before.len() + 2, "a new ES384 and RS384 key");
    let page = world.get(admin, "/admin/provider-apps").await;
    assert!(page.body.contains("Published; signs from"), "{}", page.body);
    // A second rotation while one waits is refused.
    let again = world
        .submit(
            admin,
            "/admin/provider-apps",
            "/admin/provider-apps/keys",
            &[],
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    // --- a refresh during the grace period: signed with the old key ---
    tokio::time::sleep_until((signed_in + Duration::from_secs(EXPIRES_IN + 1)).into()).await;
    world.sync_now(admin, ADMIN, source_id).await;
    let second = world
        .assert_synced(source_id, first, "sync during the grace period")
        .await;
    let events = world.token_events().await;
    let refresh = events.last().unwrap();
    assert_eq!(refresh["grant_type"], "refresh_token", "{refresh}");
    assert_eq!(refresh["kid"], old_kid.as_str());

    // --- after the grace period: signed with the new key, which the server fetches ---
    tokio::time::sleep_until((added_at + Duration::from_secs(GRACE + 2)).into()).await;
    world.sync_now(admin, ADMIN, source_id).await;
    world
        .assert_synced(source_id, second, "sync after the switch")
        .await;
    let events = world.token_events().await;
    let refresh = events.last().unwrap();
    assert_eq!(refresh["grant_type"], "refresh_token", "{refresh}");
    assert_eq!(refresh["status"], 200, "{refresh}");
    let new_kid = refresh["kid"].as_str().unwrap();
    assert_ne!(new_kid, old_kid, "signing switched to the new key");
    assert!(after.contains(new_kid) && !before.contains(new_kid));
    assert!(
        events.iter().all(|e| e["status"] == 200),
        "every token request was accepted\n{}",
        world.diagnostics().await
    );
    // The old key stays published for another grace period, for assertions signed just before.
    let now = kids(&world.jwks().await);
    assert!(now.contains(&old_kid), "the old key left too early");
    let page = world.get(admin, "/admin/provider-apps").await;
    assert!(
        page.body.contains("No longer signs; published until"),
        "{}",
        page.body
    );
}

fn kids(jwks: &Value) -> BTreeSet<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

/// A registration the administrator gets wrong is refused in a sentence on the same page, with
/// what was typed kept, and nothing is stored; a registration already saved stays as it was.
#[tokio::test]
async fn a_wrong_registration_is_refused_in_words_and_nothing_is_stored() {
    let (server, alice) = common::TestServer::with_admin().await;
    let page = "/admin/provider-apps/epic";
    let attempts: [(&[(&str, &str)], &str); 4] = [
        (
            &[("client_id", "  "), ("client_auth", "none")],
            "Enter the client id the vendor gave your app registration.",
        ),
        (
            &[
                ("client_id", "typed-app-id"),
                ("client_auth", "client_secret"),
            ],
            "Enter the client secret the vendor gave your app.",
        ),
        (
            &[("client_id", "typed-app-id"), ("client_auth", "magic")],
            "Choose how the app authenticates.",
        ),
        (
            &[
                ("client_id", "typed-app-id"),
                ("client_auth", "private_key_jwt"),
                ("signing_alg", "HS256"),
            ],
            "Choose ES384 or RS384.",
        ),
    ];
    for (fields, message) in attempts {
        let reply = alice.submit(page, page, fields).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert!(
            reply.body.contains("id=\"registration-error\"") && reply.body.contains(message),
            "{message}: {}",
            reply.body
        );
        if fields[0].1 == "typed-app-id" {
            assert!(
                reply.body.contains("value=\"typed-app-id\""),
                "kept what was typed"
            );
        }
    }
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM provider_apps")
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing is stored from a refused form");

    // A saved registration is untouched by a later wrong attempt.
    alice
        .submit(
            page,
            page,
            &[("client_id", "good-id"), ("client_auth", "none")],
        )
        .await
        .assert_redirect("/admin/provider-apps?notice=saved");
    let reply = alice
        .submit(page, page, &[("client_id", ""), ("client_auth", "none")])
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let kept: String =
        sqlx::query_scalar("SELECT client_id FROM provider_apps WHERE platform = 'epic'")
            .fetch_one(&server.state.db)
            .await
            .unwrap();
    assert_eq!(kept, "good-id");
}
