//! Real test peers, installed by `.ci/peers.sh` into `target/peers`, run as child processes:
//!
//! - [`Sekmet`]: the FHIR R4 server sekmet-fhir (Python), on a free loopback port, with its own
//!   temporary data folder. It does not check authorization at all.
//! - [`OAuthPeer`]: `host/tests/peers/oauth-server.mjs` (node, oauth2-mock-server): a SMART
//!   authorization server that, given `FHIR_UPSTREAM`, also proxies `/fhir/*` to a sekmet and
//!   refuses requests without a valid bearer token it issued.
//! - The same handle runs `host/tests/peers/oidc-server.mjs` ([`OAuthPeer::start_oidc`]):
//!   oidc-provider, a real OpenID Provider that verifies `private_key_jwt` client assertions
//!   against the client's JWK Set URL, with the same FHIR proxy and `/_log`.
//!
//! Both are killed when dropped. Their stderr goes to a file in their temporary folder, shown by
//! the panics here and available to tests through `stderr()`.
//!
//! Tests start with `if !peers::require() { return; }`: without the peers they are skipped
//! locally, and fail in CI (where `CI` is set) rather than silently passing.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// How long a peer may take to be ready (sekmet takes 1-2 s, the oauth server well under 1 s).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

pub fn peers_dir() -> PathBuf {
    root().join("target/peers")
}

fn sekmet_bin() -> PathBuf {
    peers_dir().join("venv/bin/sekmet")
}

fn oauth_script() -> PathBuf {
    root().join("host/tests/peers/oauth-server.mjs")
}

fn oidc_script() -> PathBuf {
    root().join("host/tests/peers/oidc-server.mjs")
}

/// Whether `.ci/peers.sh` has installed the peers.
pub fn available() -> bool {
    sekmet_bin().is_file()
        && ["oauth2-mock-server", "oidc-provider"]
            .iter()
            .all(|package| peers_dir().join("node/node_modules").join(package).is_dir())
}

/// Whether a test needing the peers can run: true when they are installed; false (after saying
/// so) when they are not and this is not CI; a panic when they are missing in CI.
pub fn require() -> bool {
    if available() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "the test peers are not installed in {} (CI is set, so this is an error, not a skip): \
             run .ci/peers.sh first",
            peers_dir().display()
        );
    }
    eprintln!("skipping: run .ci/peers.sh to install the test peers");
    false
}

/// A Synthea bundle from the shared test data.
pub fn synthea(file: &str) -> PathBuf {
    root().join("../shared/testdata/fhir/synthea").join(file)
}

/// The small Synthea patient the tests load.
pub const PARIS_CASPER: &str = "Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json";

/// Every Synthea patient in `../shared/testdata`.
#[allow(dead_code)] // Not every test crate that includes this module loads them all.
pub const SYNTHEA_PATIENTS: [&str; 5] = [
    PARIS_CASPER,
    "Fletcher_Hyatt_fe0562b5-f517-4951-8366-32fdab088930.json",
    "Kathy_Walker_59885d16-d333-481e-8edb-422fa047d6b6.json",
    "Norma_Pagan_c5c29bde-5877-42ae-b786-17ce70275691.json",
    "Roberto_Graham_238a58eb-31dc-4054-82ee-0651ee76f391.json",
];

/// A set of `(resourceType, id)`.
pub type Keys = BTreeSet<(String, String)>;

fn read_to_string_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `max` bytes of `text` (a process's stderr can be long).
fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A loopback port that was free a moment ago (sekmet needs its port in its settings file).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP client for talking to the peers directly: no cookies, no redirects followed.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .pool_idle_timeout(fasten::plugins::http::IDLE_CONNECTION)
        .build()
        .unwrap()
}

/// `Type/id` of a location or reference, absolute or relative, with or without `/_history/n`.
fn type_and_id(reference: &str) -> Option<(String, String)> {
    let path = reference.split("/_history/").next()?;
    let mut parts = path.rsplit('/');
    let id = parts.next()?;
    let resource_type = parts.next()?;
    (!id.is_empty() && resource_type.starts_with(|c: char| c.is_ascii_uppercase()))
        .then(|| (resource_type.to_string(), id.to_string()))
}

// ---------------------------------------------------------------------------------------------
// sekmet

/// A sekmet-fhir server on a free loopback port with an empty database.
pub struct Sekmet {
    /// `http://127.0.0.1:PORT/fhir`
    pub base: String,
    child: Child,
    stderr_path: PathBuf,
    _dir: TempDir,
}

impl Sekmet {
    /// Starts a server and waits until `GET /fhir/metadata` answers 200. The port is chosen
    /// before the server binds it, so a lost race is retried on another port.
    pub async fn start() -> Sekmet {
        Self::start_checking("warn").await
    }

    /// A server that refuses any resource failing its structural validation (fhir.resources
    /// R4B models), for checking that what Fasten produces is valid FHIR.
    pub async fn start_strict() -> Sekmet {
        Self::start_checking("strict").await
    }

    async fn start_checking(validation: &'static str) -> Sekmet {
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start(validation).await {
                Ok(sekmet) => return sekmet,
                Err(e) => last_error = e,
            }
        }
        panic!("sekmet did not start: {last_error}");
    }

    async fn try_start(validation: &str) -> Result<Sekmet, String> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}/fhir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        // JSON is YAML: no quoting questions for the paths.
        let settings = serde_json::json!({
            "base_url": base,
            "host": "127.0.0.1",
            "port": port,
            "data_dir": data,
            "simulator": { "enabled": false },
            "validation": { "inbound": validation },
        });
        let settings_path = dir.path().join("settings.yaml");
        std::fs::write(&settings_path, settings.to_string()).unwrap();
        let stderr_path = dir.path().join("sekmet.stderr");
        let stdout_path = dir.path().join("sekmet.stdout");
        let child = Command::new(sekmet_bin())
            .arg("serve")
            .arg("--config")
            .arg(&settings_path)
            .current_dir(dir.path())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", sekmet_bin().display()))?;
        let mut sekmet = Sekmet {
            base,
            child,
            stderr_path,
            _dir: dir,
        };
        let client = http();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = sekmet.child.try_wait() {
                return Err(format!(
                    "sekmet exited ({status}) before answering; its stderr:\n{}",
                    tail(&sekmet.stderr(), 4000)
                ));
            }
            if let Ok(r) = client
                .get(format!("{}/metadata", sekmet.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status() == 200
            {
                return Ok(sekmet);
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "sekmet did not answer {}/metadata within {START_TIMEOUT:?}; its stderr:\n{}",
                    sekmet.base,
                    tail(&sekmet.stderr(), 4000)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the server wrote to stderr so far (uvicorn's access log among it).
    pub fn stderr(&self) -> String {
        read_to_string_lossy(&self.stderr_path)
    }

    /// Loads a transaction bundle (a Synthea patient); returns the new Patient's id.
    pub async fn load_bundle(&self, path: &Path) -> String {
        self.load_bundle_keys(path).await.0
    }

    /// Loads a transaction bundle; returns the new Patient's id and every resource the
    /// transaction created (sekmet assigns new ids, and rewrites the bundle's `urn:uuid:`
    /// references to them).
    pub async fn load_bundle_keys(&self, path: &Path) -> (String, Keys) {
        let body = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let response = http()
            .post(&self.base)
            .header("content-type", "application/fhir+json")
            .header("accept", "application/fhir+json")
            .body(body)
            .send()
            .await
            .expect("POST the bundle to sekmet");
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(
            status.is_success(),
            "sekmet refused {}: {status}: {}",
            path.display(),
            tail(&text, 4000)
        );
        let reply: Value = serde_json::from_str(&text).expect("transaction-response JSON");
        let mut keys = Keys::new();
        let mut patient = None;
        for entry in reply["entry"]
            .as_array()
            .expect("transaction-response entries")
        {
            let response = &entry["response"];
            let status = response["status"].as_str().unwrap_or_default();
            assert!(
                status.starts_with('2'),
                "sekmet refused an entry of {}: {entry}",
                path.display()
            );
            let location = response["location"]
                .as_str()
                .unwrap_or_else(|| panic!("no location in {entry}"));
            let key = type_and_id(location).unwrap_or_else(|| panic!("location {location}"));
            if key.0 == "Patient" && patient.is_none() {
                patient = Some(key.1.clone());
            }
            keys.insert(key);
        }
        (patient.expect("the bundle created a Patient"), keys)
    }

    /// Adds a body-weight Observation for `patient` (a new measurement, as from a visit), so the
    /// next sync has something new to store. Answers its key.
    pub async fn add_weight(&self, patient: &str, kilograms: &str) -> (String, String) {
        let body = format!(
            r#"{{"resourceType":"Observation","status":"final",
              "category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}}]}}],
              "code":{{"coding":[{{"system":"http://loinc.org","code":"29463-7","display":"Body weight"}}]}},
              "subject":{{"reference":"Patient/{patient}"}},
              "effectiveDateTime":"2026-12-06T10:00:00Z",
              "valueQuantity":{{"value":{kilograms},"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}}}"#
        );
        let response = http()
            .post(format!("{}/Observation", self.base))
            .header("content-type", "application/fhir+json")
            .body(body)
            .send()
            .await
            .expect("POST an Observation to sekmet");
        assert!(
            response.status().is_success(),
            "sekmet refused the Observation"
        );
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap();
        let id = match location.as_deref().and_then(type_and_id) {
            Some((_, id)) => id,
            None => serde_json::from_str::<Value>(&text).unwrap()["id"]
                .as_str()
                .expect("the created Observation's id")
                .to_string(),
        };
        ("Observation".into(), id)
    }

    /// GET `{base}/{path}` as JSON (sekmet ignores authorization, so none is sent).
    pub async fn get_json(&self, path: &str) -> Value {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}/{path}", self.base)
        };
        let response = http()
            .get(&url)
            .header("accept", "application/fhir+json")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(
            status.is_success(),
            "GET {url}: {status}: {}",
            tail(&text, 2000)
        );
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// How many `resource_type` the search `?patient={patient}` finds (`_summary=count`).
    pub async fn count(&self, resource_type: &str, patient: &str) -> usize {
        let bundle = self
            .get_json(&format!("{resource_type}?patient={patient}&_summary=count"))
            .await;
        bundle["total"]
            .as_u64()
            .unwrap_or_else(|| panic!("no total in {bundle}")) as usize
    }

    /// Everything the server holds for `patient_id`, from `Patient/{id}/$everything`.
    ///
    /// Why `$everything` rather than per-type searches: sekmet's `$everything` returns the
    /// Patient, every resource that refers to it through any indexed reference search parameter
    /// (its compartment, in practice), plus the non-patient resources those refer to directly
    /// (Practitioner, Organization, Location, Medication...), which is the set a patient-facing
    /// sync should end up with. It answers in one page whatever `_count` says, but `next` links
    /// are followed anyway in case a later version pages. Known gap: resource types for which
    /// sekmet has no reference search parameter (Goal, for one) are missing from it, and a
    /// per-type search for them is not possible either; tests should use patients without them
    /// or compare with [`Sekmet::load_bundle_keys`] as well.
    pub async fn resource_ids(&self, patient_id: &str) -> Keys {
        let mut keys = Keys::new();
        let mut url = format!("{}/Patient/{patient_id}/$everything?_count=1000", self.base);
        let mut pages = 0;
        loop {
            pages += 1;
            assert!(pages < 1000, "$everything pages never end");
            let bundle = self.get_json(&url).await;
            for entry in bundle["entry"].as_array().into_iter().flatten() {
                let resource = &entry["resource"];
                if entry["search"]["mode"] == "outcome"
                    || resource["resourceType"] == "OperationOutcome"
                {
                    continue;
                }
                let resource_type = resource["resourceType"].as_str().expect("resourceType");
                let id = resource["id"].as_str().expect("id");
                keys.insert((resource_type.to_string(), id.to_string()));
            }
            let next = bundle["link"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["relation"] == "next")
                .and_then(|l| l["url"].as_str());
            match next {
                Some(next) => url = next.to_string(),
                None => break,
            }
        }
        keys
    }
}

impl Drop for Sekmet {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

// ---------------------------------------------------------------------------------------------
// the SMART authorization server

/// `host/tests/peers/oauth-server.mjs` on a free loopback port.
pub struct OAuthPeer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `{url}/fhir`: the proxy to `FHIR_UPSTREAM` (only useful when that was given).
    pub fhir_base: String,
    child: Child,
    /// Kept open: the server writes only its first line there, but closing it is not ours to do.
    _stdout: ChildStdout,
    stderr_path: PathBuf,
    _dir: TempDir,
}

impl OAuthPeer {
    /// Starts the server with `PORT=0` and `env` (PATIENT_ID, EXPIRES_IN, CLIENT_ID,
    /// CLIENT_SECRET, FHIR_UPSTREAM, SCOPE: see the script's header) and waits for its
    /// `listening URL` line.
    pub async fn start(env: &[(&str, &str)]) -> OAuthPeer {
        Self::start_script(oauth_script(), env).await
    }

    /// Starts `oidc-server.mjs` (oidc-provider) with `env`: CLIENT_ID, JWKS_URI, REDIRECT_URI,
    /// SIGNING_ALG, PATIENT_ID, EXPIRES_IN, FHIR_UPSTREAM (see the script's header). Its sign-in
    /// completes by itself but needs a browser that keeps cookies: see [`OAuthPeer::sign_in`].
    pub async fn start_oidc(env: &[(&str, &str)]) -> OAuthPeer {
        Self::start_script(oidc_script(), env).await
    }

    async fn start_script(script: PathBuf, env: &[(&str, &str)]) -> OAuthPeer {
        let dir = tempfile::tempdir().unwrap();
        let stderr_path = dir.path().join("oauth-server.stderr");
        let mut command = Command::new("node");
        command
            .arg(&script)
            .current_dir(root())
            .env("PORT", "0")
            .env("NODE_PEERS", peers_dir().join("node"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node {}: {e}", script.display()));
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(START_TIMEOUT, lines.read_line(&mut line)).await;
        let stderr = || tail(&read_to_string_lossy(&stderr_path), 4000).to_string();
        match read {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) => panic!("the oauth server exited before listening:\n{}", stderr()),
            Ok(Err(e)) => panic!("reading the oauth server's stdout: {e}\n{}", stderr()),
            Err(_) => panic!(
                "the oauth server did not listen within {START_TIMEOUT:?}:\n{}",
                stderr()
            ),
        }
        let url = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}:\n{}", stderr()))
            .trim_end_matches('/')
            .to_string();
        OAuthPeer {
            fhir_base: format!("{url}/fhir"),
            url,
            child,
            _stdout: lines.into_inner(),
            stderr_path,
            _dir: dir,
        }
    }

    /// What the server wrote to stderr so far (one line per event).
    pub fn stderr(&self) -> String {
        read_to_string_lossy(&self.stderr_path)
    }

    /// `GET /_log`: every event so far, oldest first (`{endpoint, grant_type, client_auth,
    /// status, ...}`).
    pub async fn log(&self) -> Vec<Value> {
        http()
            .get(format!("{}/_log", self.url))
            .send()
            .await
            .expect("GET /_log")
            .json()
            .await
            .expect("/_log is JSON")
    }

    /// Follows the provider's sign-in from `authorize` as a browser does (keeping the provider's
    /// cookies, following its redirects) until it sends the browser to `back_to`; answers that
    /// address. The test's patient approves at once.
    pub async fn sign_in(&self, authorize: &str, back_to: &str) -> String {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut url = url::Url::parse(authorize).expect("an authorization URL");
        for _ in 0..10 {
            let response = browser.get(url.as_str()).send().await.unwrap();
            let status = response.status();
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            let Some(location) = location else {
                panic!(
                    "the provider answered {url} with {status} and no redirect: {}\n{}",
                    response.text().await.unwrap_or_default(),
                    tail(&self.stderr(), 4000)
                );
            };
            url = url.join(&location).expect("a redirect address");
            if url.as_str().starts_with(back_to) {
                return url.to_string();
            }
        }
        panic!("the provider's sign-in never sent the browser back to {back_to}");
    }

    /// The token events of the log.
    pub async fn token_events(&self) -> Vec<Value> {
        self.log()
            .await
            .into_iter()
            .filter(|e| e["endpoint"] == "token")
            .collect()
    }

    /// The SMART standalone launch done by hand, as a public client with PKCE (S256): GET
    /// /authorize (the mock approves at once and redirects to `redirect_uri` with a code), then
    /// exchange the code at /token. Returns the token response (access_token, refresh_token,
    /// patient, expires_in...).
    pub async fn code_flow(&self, client_id: &str, scope: &str) -> Value {
        let verifier = pkce_verifier();
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        let redirect_uri = "http://127.0.0.1:9/callback";
        let mut authorize = url::Url::parse(&format!("{}/authorize", self.url)).unwrap();
        authorize
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scope)
            .append_pair("state", "by-hand")
            .append_pair("aud", &self.fhir_base)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let response = http().get(authorize.as_str()).send().await.unwrap();
        assert!(
            response.status().is_redirection(),
            "/authorize answered {}",
            response.status()
        );
        let location = response.headers()["location"].to_str().unwrap().to_string();
        let location = url::Url::parse(&location).unwrap();
        let query: std::collections::HashMap<String, String> =
            location.query_pairs().into_owned().collect();
        assert_eq!(query.get("state").map(String::as_str), Some("by-hand"));
        let code = query
            .get("code")
            .unwrap_or_else(|| panic!("no code in {location}"));
        let response = http()
            .post(format!("{}/token", self.url))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect_uri),
                ("client_id", client_id),
                ("code_verifier", verifier.as_str()),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "token exchange: {body}");
        body
    }

    /// A `refresh_token` grant by hand; returns the status and the body.
    pub async fn refresh(&self, client_id: &str, refresh_token: &str) -> (u16, Value) {
        let response = http()
            .post(format!("{}/token", self.url))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", client_id),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

impl Drop for OAuthPeer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A PKCE code verifier: 64 characters from the unreserved set.
fn pkce_verifier() -> String {
    use rand::Rng as _;
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(64)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::type_and_id;

    #[test]
    fn locations_give_type_and_id() {
        let key = |t: &str, i: &str| Some((t.to_string(), i.to_string()));
        assert_eq!(
            type_and_id("http://127.0.0.1:1/fhir/Patient/abc/_history/1"),
            key("Patient", "abc")
        );
        assert_eq!(type_and_id("Observation/x-1"), key("Observation", "x-1"));
        assert_eq!(type_and_id("abc"), None);
    }
}
