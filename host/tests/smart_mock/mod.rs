#![allow(dead_code)]
#![allow(clippy::result_large_err)] // handlers bail out with a ready Response
//! An in-process SMART-on-FHIR authorization server and FHIR R4 server for integration tests of
//! error cases a real peer cannot stage (rate limits, expiring paging sessions, revoked refresh
//! tokens, outages...). One patient's resources, loopback only, plain http.
//!
//! ```ignore
//! mod smart_mock;
//! let mock = smart_mock::SmartMock::start(smart_mock::load_synthea("Paris_Casper_....json")).await;
//! mock.configure(|b| b.session_bound_paging = true);
//! // point the client at mock.fhir_base(), then assert on mock.log() / mock.token_requests()
//! ```
//!
//! Endpoints: `/.well-known/smart-configuration` (also under `/fhir/`), `/authorize` (auto-approves,
//! no login page), `/token`, `/fhir/metadata`, `/fhir/{Type}` (search), `/fhir/{Type}/{id}` (read),
//! `/fhir/Patient/{id}/$everything`, and `/fhir?_getpages=..&_page=N` (session-bound paging).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The `meta.lastUpdated` every resource gets when the mock loads it.
pub const LOADED_AT: &str = "2020-01-01T00:00:00.000Z";
/// The CapabilityStatement security extension that carries the OAuth endpoints.
pub const OAUTH_URIS: &str =
    "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";
/// How long an authorization code stays valid.
pub const CODE_LIFETIME: Duration = Duration::from_secs(60);

/// Types that are not in the patient compartment: found only by read or `_id` search.
const SHARED_TYPES: [&str; 4] = ["Practitioner", "Organization", "Location", "Medication"];

/// How clients find the OAuth endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Discovery {
    /// `.well-known/smart-configuration` answers (and the CapabilityStatement has the extension).
    #[default]
    WellKnown,
    /// `.well-known/smart-configuration` answers 404: only the CapabilityStatement extension.
    CapabilityOnly,
}

/// What the mock does; `Default` is a well-behaved server.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// `expires_in` of token responses; access tokens really stop working after that.
    pub access_token_seconds: u64,
    /// When set: token responses carry `refresh_expires_in` and refresh tokens stop working after.
    pub refresh_token_seconds: Option<u64>,
    /// Each refresh returns a new refresh token and invalidates the old one. When false, refresh
    /// responses carry no `refresh_token` and the old one stays valid.
    pub rotate_refresh_tokens: bool,
    /// The `scope` of token responses; otherwise the scope asked for at /authorize.
    pub scope_granted: Option<String>,
    /// smart-configuration capabilities include "permission-v2".
    pub smart_v2: bool,
    pub discovery: Discovery,
    /// /authorize redirects back with `error=<value>` instead of a code.
    pub authorize_error: Option<String>,
    /// (resource type, times, Retry-After seconds): the first `times` searches of that type
    /// (counted from when this was configured) answer 429.
    pub rate_limit: Option<(String, u32, u32)>,
    /// Observation searches without `category` answer 400 with an OperationOutcome (like Epic).
    pub require_observation_category: bool,
    /// Searches of this type answer 404 with an HTML body.
    pub html_404_type: Option<String>,
    /// Largest page: the page size when `_count` is absent, and the cap on `_count`.
    pub page_size: usize,
    /// `next` links are `{fhir_base}?_getpages=<id>&_page=N`, valid only with the access token of
    /// the first page; otherwise `{fhir_base}/{Type}?...&_count=..&_offset=N`.
    pub session_bound_paging: bool,
    /// A read of this reference ("Type/id") answers 500.
    pub reference_500: Option<String>,
    /// Searchsets of this type carry an extra `outcome` entry (an OperationOutcome warning) on
    /// their first page.
    pub operation_outcome_in_searchset: Option<String>,
    /// Searches of this type ignore `patient=` (and `subject=`): they answer every resource of
    /// the type, say so in an OperationOutcome on the first page, and leave the parameter out of
    /// the `self` link, as a lenient server does with a parameter it does not support.
    pub ignore_patient_filter: Option<String>,
    /// `GET /fhir/Patient/{id}/$everything` works; otherwise it answers 404.
    pub support_everything: bool,
    /// After this many FHIR data requests (anything under /fhir except metadata and
    /// .well-known, counted from when this was configured), every one answers 503.
    pub fail_all_after_requests: Option<usize>,
    /// Registered clients: (client_id, secret). Confidential ones must authenticate with it.
    pub clients: Vec<(String, Option<String>)>,
    /// Every FHIR search and read waits this long before answering (a slow provider).
    pub fhir_delay: Duration,
    /// Text replaced in every FHIR answer, as a server that writes numbers its own way does
    /// (Java's BigDecimal writes `1E+2`; others `1e2`, which serde_json would write `1e+2`).
    pub written_as: Vec<(String, String)>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            access_token_seconds: 3600,
            refresh_token_seconds: None,
            rotate_refresh_tokens: true,
            scope_granted: None,
            smart_v2: false,
            discovery: Discovery::WellKnown,
            authorize_error: None,
            rate_limit: None,
            require_observation_category: false,
            html_404_type: None,
            page_size: 50,
            session_bound_paging: false,
            reference_500: None,
            operation_outcome_in_searchset: None,
            ignore_patient_filter: None,
            support_everything: false,
            fail_all_after_requests: None,
            clients: vec![
                ("fasten-test".to_owned(), None),
                ("fasten-confidential".to_owned(), Some("s3cret".to_owned())),
            ],
            fhir_delay: Duration::ZERO,
            written_as: Vec::new(),
        }
    }
}

/// One HTTP request the mock answered.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string ("" when none).
    pub query: String,
    pub authorization: Option<String>,
    /// The `Prefer` header, if any.
    pub prefer: Option<String>,
    pub status: u16,
}

/// One request to the token endpoint.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub grant_type: String,
    /// The client id the request authenticated as ("" when none was given).
    pub client_id: String,
    /// "basic" (client_secret_basic), "post" (client_secret_post) or "none" (public client).
    pub client_auth: String,
    pub status: u16,
    /// The OAuth `error` of a failed request.
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub expires_at: Instant,
}

#[derive(Clone, Debug)]
pub struct AccessGrant {
    pub client_id: String,
    pub scope: String,
    pub expires_at: Instant,
}

#[derive(Clone, Debug)]
pub struct RefreshGrant {
    pub client_id: String,
    pub scope: String,
    pub expires_at: Option<Instant>,
}

#[derive(Clone, Debug)]
pub struct PagingSession {
    /// The access token that made the first page.
    pub token: String,
    /// Everything that matched, from the first page's offset on.
    pub matches: Vec<Value>,
    pub count: usize,
}

pub struct MockState {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub behaviour: Behaviour,
    pub patient_id: String,
    /// Stored resources, the Patient first.
    pub resources: Vec<Value>,
    pub log: Vec<LoggedRequest>,
    pub token_requests: Vec<TokenRequest>,
    pub codes: HashMap<String, CodeGrant>,
    pub access_tokens: HashMap<String, AccessGrant>,
    pub refresh_tokens: HashMap<String, RefreshGrant>,
    pub paging_sessions: HashMap<String, PagingSession>,
    /// FHIR data requests since `fail_all_after_requests` was last configured.
    pub fhir_requests: usize,
    /// Searches answered 429 since `rate_limit` was last configured.
    pub rate_limited: u32,
}

impl MockState {
    fn fhir_base(&self) -> String {
        format!("{}/fhir", self.url)
    }
}

pub struct SmartMock {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub state: Arc<Mutex<MockState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmartMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmartMock {
    /// Serves `patient` (one patient's resources, the Patient first) on a free loopback port.
    /// Every resource's `meta.lastUpdated` is set to [`LOADED_AT`] (and `meta.versionId` to "1"
    /// where absent).
    pub async fn start(patient: Vec<Value>) -> SmartMock {
        let mut resources = patient;
        let patient_id = match resources.first() {
            Some(first) if first["resourceType"] == "Patient" => first["id"]
                .as_str()
                .expect("the Patient has an id")
                .to_owned(),
            _ => panic!("SmartMock::start: the first resource must be the Patient"),
        };
        for resource in &mut resources {
            let object = resource
                .as_object_mut()
                .expect("resources are JSON objects");
            let meta = object.entry("meta").or_insert_with(|| json!({}));
            meta["lastUpdated"] = json!(LOADED_AT);
            if meta.get("versionId").is_none() {
                meta["versionId"] = json!("1");
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(MockState {
            url: url.clone(),
            behaviour: Behaviour::default(),
            patient_id,
            resources,
            log: Vec::new(),
            token_requests: Vec::new(),
            codes: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            paging_sessions: HashMap::new(),
            fhir_requests: 0,
            rate_limited: 0,
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("smart mock serves");
        });
        SmartMock { url, state, task }
    }

    fn lock(&self) -> MutexGuard<'_, MockState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `{url}/fhir`
    pub fn fhir_base(&self) -> String {
        format!("{}/fhir", self.url)
    }

    /// The id of the served Patient.
    pub fn patient_id(&self) -> String {
        self.lock().patient_id.clone()
    }

    /// Changes the behaviour. Changing `rate_limit` restarts its count, and changing
    /// `fail_all_after_requests` restarts the count of FHIR requests.
    pub fn configure(&self, f: impl FnOnce(&mut Behaviour)) {
        let mut st = self.lock();
        let before = st.behaviour.clone();
        f(&mut st.behaviour);
        if st.behaviour.rate_limit != before.rate_limit {
            st.rate_limited = 0;
        }
        if st.behaviour.fail_all_after_requests != before.fail_all_after_requests {
            st.fhir_requests = 0;
        }
    }

    /// Every request so far, in order.
    pub fn log(&self) -> Vec<LoggedRequest> {
        self.lock().log.clone()
    }

    /// Every token endpoint request so far, in order.
    /// Every authorization code, access token and refresh token issued so far, for tests that
    /// check none of them was written where it must not be.
    pub fn issued_secrets(&self) -> Vec<String> {
        let state = self.lock();
        state
            .codes
            .keys()
            .chain(state.access_tokens.keys())
            .chain(state.refresh_tokens.keys())
            .cloned()
            .collect()
    }

    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.lock().token_requests.clone()
    }

    /// Every refresh token issued so far stops working (later ones work).
    pub fn revoke_all_refresh_tokens(&self) {
        self.lock().refresh_tokens.clear();
    }

    /// Every access token issued so far stops working (401), as if it expired mid-sync.
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for grant in self.lock().access_tokens.values_mut() {
            grant.expires_at = now;
        }
    }

    /// Marks the resource ("Type/id") as changed now: `meta.lastUpdated` = now (millisecond
    /// precision, UTC) and `meta.versionId` + 1. Panics if it is not stored.
    pub fn touch(&self, reference: &str) {
        let mut st = self.lock();
        let (ty, id) = reference
            .split_once('/')
            .unwrap_or_else(|| panic!("touch: {reference:?} is not Type/id"));
        let resource = st
            .resources
            .iter_mut()
            .find(|r| r["resourceType"] == ty && r["id"] == id)
            .unwrap_or_else(|| panic!("touch: {reference} is not stored"));
        let meta = resource
            .as_object_mut()
            .unwrap()
            .entry("meta")
            .or_insert_with(|| json!({}));
        let version = meta["versionId"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1);
        meta["versionId"] = json!((version + 1).to_string());
        meta["lastUpdated"] = json!(now_instant());
    }

    /// Stores a new resource (or replaces the one with the same type and id) with
    /// `meta.lastUpdated` = now.
    pub fn add_resource(&self, mut resource: Value) {
        let mut st = self.lock();
        let object = resource.as_object_mut().expect("a JSON object");
        let meta = object.entry("meta").or_insert_with(|| json!({}));
        meta["lastUpdated"] = json!(now_instant());
        if meta.get("versionId").is_none() {
            meta["versionId"] = json!("1");
        }
        let (ty, id) = (resource["resourceType"].clone(), resource["id"].clone());
        assert!(ty.is_string() && id.is_string(), "resourceType and id");
        st.resources
            .retain(|r| !(r["resourceType"] == ty && r["id"] == id));
        st.resources.push(resource);
    }
}

/// Reads `../../shared/testdata/fhir/synthea/<file_name>` (relative to host/) and returns its
/// entries' resources, the Patient first. The bundle's `urn:uuid:` references to its own entries
/// are rewritten to `Type/id`, as a server would after processing the transaction.
pub fn load_synthea(file_name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/fhir/synthea")
        .join(file_name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let bundle: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    let entries = bundle["entry"].as_array().expect("a Bundle with entries");
    let mut references = HashMap::new();
    for entry in entries {
        let resource = &entry["resource"];
        if let (Some(full_url), Some(ty), Some(id)) = (
            entry["fullUrl"].as_str(),
            resource["resourceType"].as_str(),
            resource["id"].as_str(),
        ) {
            references.insert(full_url.to_owned(), format!("{ty}/{id}"));
        }
    }
    let mut resources: Vec<Value> = entries.iter().map(|e| e["resource"].clone()).collect();
    for resource in &mut resources {
        rewrite_references(resource, &references);
    }
    resources.sort_by_key(|r| r["resourceType"] != "Patient");
    assert_eq!(resources[0]["resourceType"], "Patient", "{file_name}");
    resources
}

fn rewrite_references(value: &mut Value, references: &HashMap<String, String>) {
    match value {
        Value::Object(object) => {
            for (key, field) in object.iter_mut() {
                if key == "reference"
                    && let Some(target) = field.as_str().and_then(|r| references.get(r))
                {
                    *field = json!(target);
                    continue;
                }
                rewrite_references(field, references);
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_references(item, references);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Dispatch

async fn handle(State(state): State<Arc<Mutex<MockState>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let delay = state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .behaviour
        .fhir_delay;
    if path.starts_with("/fhir/") && !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // The lock is not held across the awaits below.
    let (response, written_as) = {
        let mut st = state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let response = route(
            &mut st,
            parts.method.as_str(),
            &path,
            &query,
            &parts.headers,
            &body,
        );
        let prefer = parts
            .headers
            .get("prefer")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        st.log.push(LoggedRequest {
            method: parts.method.to_string(),
            path,
            query,
            authorization,
            prefer,
            status: response.status().as_u16(),
        });
        (response, st.behaviour.written_as.clone())
    };
    if written_as.is_empty() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let mut text =
        String::from_utf8_lossy(&to_bytes(body, usize::MAX).await.unwrap_or_default()).into_owned();
    for (from, to) in &written_as {
        text = text.replace(from.as_str(), to);
    }
    let mut response = Response::from_parts(parts, axum::body::Body::from(text));
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}

fn route(
    st: &mut MockState,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    match (method, path) {
        ("GET", "/.well-known/smart-configuration" | "/fhir/.well-known/smart-configuration") => {
            smart_configuration(st)
        }
        ("GET", "/fhir/metadata") => capability_statement(st),
        ("GET", "/authorize") => authorize(st, &params),
        ("POST", "/token") => token(st, headers, body),
        _ if path == "/fhir" || path.starts_with("/fhir/") => {
            fhir(st, method, path, query, &params, headers)
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "Not Found"),
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery

fn smart_configuration(st: &MockState) -> Response {
    if st.behaviour.discovery == Discovery::CapabilityOnly {
        return text(StatusCode::NOT_FOUND, "text/plain", "Not Found");
    }
    let mut capabilities = vec![
        "launch-standalone",
        "client-public",
        "client-confidential-symmetric",
        "context-standalone-patient",
        "permission-offline",
        "permission-patient",
    ];
    if st.behaviour.smart_v2 {
        capabilities.push("permission-v2");
    }
    json_response(
        StatusCode::OK,
        json!({
            "issuer": st.url,
            "authorization_endpoint": format!("{}/authorize", st.url),
            "token_endpoint": format!("{}/token", st.url),
            "token_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post", "none"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "response_types_supported": ["code"],
            "scopes_supported":
                ["openid", "fhirUser", "launch/patient", "offline_access", "patient/*.read",
                 "patient/*.rs"],
            "code_challenge_methods_supported": ["S256"],
            "capabilities": capabilities,
        }),
    )
}

fn capability_statement(st: &MockState) -> Response {
    let mut types: Vec<&str> = st
        .resources
        .iter()
        .filter_map(|r| r["resourceType"].as_str())
        .collect();
    types.sort_unstable();
    types.dedup();
    let resources: Vec<Value> = types
        .iter()
        .map(|ty| {
            json!({
                "type": ty,
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": [{"name": "patient", "type": "reference"},
                                {"name": "_lastUpdated", "type": "date"}],
            })
        })
        .collect();
    fhir_response(
        StatusCode::OK,
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2024-01-01",
            "kind": "instance",
            "software": {"name": "smart_mock"},
            "implementation": {"description": "Fasten test mock", "url": st.fhir_base()},
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{
                "mode": "server",
                "security": {
                    "extension": [{
                        "url": OAUTH_URIS,
                        "extension": [
                            {"url": "authorize", "valueUri": format!("{}/authorize", st.url)},
                            {"url": "token", "valueUri": format!("{}/token", st.url)},
                        ],
                    }],
                    "service": [{"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }]}],
                },
                "resource": resources,
            }],
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// Authorization

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn authorize(st: &mut MockState, params: &[(String, String)]) -> Response {
    let bad = |problem: &str| {
        text(
            StatusCode::BAD_REQUEST,
            "text/plain",
            &format!("authorize: {problem}"),
        )
    };
    if param(params, "response_type") != Some("code") {
        return bad("response_type must be code");
    }
    let Some(client_id) = param(params, "client_id").filter(|c| !c.is_empty()) else {
        return bad("client_id missing");
    };
    if !st.behaviour.clients.iter().any(|(id, _)| id == client_id) {
        return bad("client_id unknown");
    }
    let Some(redirect_uri) = param(params, "redirect_uri").filter(|r| !r.is_empty()) else {
        return bad("redirect_uri missing");
    };
    let Ok(mut redirect) = url::Url::parse(redirect_uri) else {
        return bad("redirect_uri is not an absolute URL");
    };
    let Some(state) = param(params, "state").filter(|s| !s.is_empty()) else {
        return bad("state missing");
    };
    let Some(challenge) = param(params, "code_challenge").filter(|c| !c.is_empty()) else {
        return bad("code_challenge missing (PKCE is required)");
    };
    if param(params, "code_challenge_method") != Some("S256") {
        return bad("code_challenge_method must be S256");
    }
    let fhir_base = st.fhir_base();
    match param(params, "aud") {
        None => return bad("aud missing"),
        Some(aud) if aud.trim_end_matches('/') != fhir_base => {
            return bad(&format!(
                "aud {aud:?} is not this FHIR server ({fhir_base})"
            ));
        }
        Some(_) => {}
    }
    if let Some(error) = st.behaviour.authorize_error.clone() {
        redirect
            .query_pairs_mut()
            .append_pair("error", &error)
            .append_pair(
                "error_description",
                &format!("The authorization server refused the request ({error})"),
            )
            .append_pair("state", state);
        return redirect_to(redirect.as_str());
    }
    let code = random_token(24);
    st.codes.insert(
        code.clone(),
        CodeGrant {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            code_challenge: challenge.to_owned(),
            scope: param(params, "scope").unwrap_or("").to_owned(),
            expires_at: Instant::now() + CODE_LIFETIME,
        },
    );
    redirect
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", state);
    redirect_to(redirect.as_str())
}

struct TokenError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

fn token_error(status: StatusCode, error: &'static str, description: &str) -> TokenError {
    TokenError {
        status,
        error,
        description: description.to_owned(),
    }
}

fn token(st: &mut MockState, headers: &HeaderMap, body: &[u8]) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let grant_type = param(&form, "grant_type").unwrap_or("").to_owned();
    let basic = basic_credentials(headers);
    let (client_id, secret, client_auth) = match &basic {
        Some((id, secret)) => (id.clone(), Some(secret.clone()), "basic"),
        None => match param(&form, "client_id") {
            Some(id) => match param(&form, "client_secret") {
                Some(secret) => (id.to_owned(), Some(secret.to_owned()), "post"),
                None => (id.to_owned(), None, "none"),
            },
            None => (String::new(), None, "none"),
        },
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let result = if !content_type.starts_with("application/x-www-form-urlencoded") {
        Err(token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ))
    } else if basic.is_some()
        && param(&form, "client_id").is_some_and(|form_id| form_id != client_id)
    {
        Err(token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client_id in the body differs from the Basic credentials",
        ))
    } else {
        authenticate_client(st, &client_id, secret.as_deref()).and_then(|()| {
            match grant_type.as_str() {
                "authorization_code" => exchange_code(st, &form, &client_id),
                "refresh_token" => refresh(st, &form, &client_id),
                _ => Err(token_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    &format!("grant_type {grant_type:?} is not supported"),
                )),
            }
        })
    };
    let (status, body, error) = match result {
        Ok(body) => (StatusCode::OK, body, None),
        Err(e) => (
            e.status,
            json!({"error": e.error, "error_description": e.description}),
            Some(e.error.to_owned()),
        ),
    };
    st.token_requests.push(TokenRequest {
        grant_type,
        client_id,
        client_auth: client_auth.to_owned(),
        status: status.as_u16(),
        error: error.clone(),
    });
    let mut response = json_response(status, body);
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, "no-store".parse().unwrap());
    headers.insert(header::PRAGMA, "no-cache".parse().unwrap());
    if error.as_deref() == Some("invalid_client") {
        headers.insert(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"token\"".parse().unwrap(),
        );
    }
    response
}

/// `Authorization: Basic` credentials, form-decoded as RFC 6749 section 2.3.1 asks.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

fn form_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn authenticate_client(
    st: &MockState,
    client_id: &str,
    secret: Option<&str>,
) -> Result<(), TokenError> {
    let invalid = |description: &str| {
        Err(token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            description,
        ))
    };
    if client_id.is_empty() {
        return invalid("no client_id");
    }
    match st.behaviour.clients.iter().find(|(id, _)| id == client_id) {
        None => invalid("unknown client"),
        Some((_, Some(expected))) if secret != Some(expected.as_str()) => {
            invalid("client authentication failed")
        }
        Some(_) => Ok(()),
    }
}

fn exchange_code(
    st: &mut MockState,
    form: &[(String, String)],
    client_id: &str,
) -> Result<Value, TokenError> {
    let invalid_grant = |description: &str| {
        Err(token_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            description,
        ))
    };
    let Some(code) = param(form, "code") else {
        return Err(token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code missing",
        ));
    };
    // Single use: gone whether or not this exchange succeeds.
    let Some(grant) = st.codes.remove(code) else {
        return invalid_grant("unknown or already used code");
    };
    if Instant::now() >= grant.expires_at {
        return invalid_grant("code expired");
    }
    if grant.client_id != client_id {
        return invalid_grant("code was issued to another client");
    }
    if param(form, "redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return invalid_grant("redirect_uri does not match the authorization request");
    }
    let Some(verifier) = param(form, "code_verifier") else {
        return invalid_grant("code_verifier missing");
    };
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != grant.code_challenge {
        return invalid_grant("PKCE verification failed");
    }
    let scope = st.behaviour.scope_granted.clone().unwrap_or(grant.scope);
    Ok(issue_tokens(st, client_id, &scope, true))
}

fn refresh(
    st: &mut MockState,
    form: &[(String, String)],
    client_id: &str,
) -> Result<Value, TokenError> {
    let Some(refresh_token) = param(form, "refresh_token") else {
        return Err(token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token missing",
        ));
    };
    let expired_or_revoked = || {
        Err(token_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "refresh token expired or revoked",
        ))
    };
    let Some(grant) = st.refresh_tokens.get(refresh_token).cloned() else {
        return expired_or_revoked();
    };
    if grant.expires_at.is_some_and(|at| Instant::now() >= at) {
        st.refresh_tokens.remove(refresh_token);
        return expired_or_revoked();
    }
    if grant.client_id != client_id {
        return Err(token_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "refresh token was issued to another client",
        ));
    }
    let rotate = st.behaviour.rotate_refresh_tokens;
    if rotate {
        st.refresh_tokens.remove(refresh_token);
    }
    let scope = st.behaviour.scope_granted.clone().unwrap_or(grant.scope);
    Ok(issue_tokens(st, client_id, &scope, rotate))
}

fn issue_tokens(st: &mut MockState, client_id: &str, scope: &str, with_refresh: bool) -> Value {
    let now = Instant::now();
    let access_token = random_token(32);
    let access_seconds = st.behaviour.access_token_seconds;
    st.access_tokens.insert(
        access_token.clone(),
        AccessGrant {
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            expires_at: now + Duration::from_secs(access_seconds),
        },
    );
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": access_seconds,
        "scope": scope,
        "patient": st.patient_id,
    });
    if with_refresh {
        let refresh_token = random_token(32);
        let refresh_seconds = st.behaviour.refresh_token_seconds;
        st.refresh_tokens.insert(
            refresh_token.clone(),
            RefreshGrant {
                client_id: client_id.to_owned(),
                scope: scope.to_owned(),
                expires_at: refresh_seconds.map(|s| now + Duration::from_secs(s)),
            },
        );
        body["refresh_token"] = json!(refresh_token);
        if let Some(seconds) = refresh_seconds {
            body["refresh_expires_in"] = json!(seconds);
        }
    }
    body
}

// ---------------------------------------------------------------------------------------------
// FHIR

fn fhir(
    st: &mut MockState,
    method: &str,
    path: &str,
    query: &str,
    params: &[(String, String)],
    headers: &HeaderMap,
) -> Response {
    st.fhir_requests += 1;
    if let Some(limit) = st.behaviour.fail_all_after_requests
        && st.fhir_requests > limit
    {
        return outcome(
            StatusCode::SERVICE_UNAVAILABLE,
            "transient",
            "The server is temporarily unavailable",
        );
    }
    if method != "GET" {
        return outcome(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            &format!("{method} is not supported"),
        );
    }
    let token = match bearer(st, headers) {
        Ok(token) => token,
        Err(response) => return response,
    };
    let segments: Vec<&str> = path["/fhir".len()..]
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let self_link = if query.is_empty() {
        format!("{}{path}", st.url)
    } else {
        format!("{}{path}?{query}", st.url)
    };
    match segments.as_slice() {
        [] => next_session_page(st, params, &token, self_link),
        [ty] if is_type_name(ty) => search(st, ty, params, &token, self_link),
        [ty, id] if is_type_name(ty) => read(st, ty, id),
        ["Patient", id, "$everything" | "%24everything"] => {
            everything(st, id, params, &token, self_link)
        }
        _ => outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            &format!("no such endpoint: {path}"),
        ),
    }
}

fn is_type_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase()) && s.chars().all(|c| c.is_ascii_alphanumeric())
}

fn bearer(st: &MockState, headers: &HeaderMap) -> Result<String, Response> {
    let unauthorized = |challenge: &str, diagnostics: &str| {
        let mut response = outcome(StatusCode::UNAUTHORIZED, "login", diagnostics);
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge.parse().unwrap());
        response
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(token) = presented else {
        return Err(unauthorized("Bearer", "a Bearer access token is required"));
    };
    match st.access_tokens.get(token) {
        Some(grant) if Instant::now() < grant.expires_at => Ok(token.to_owned()),
        _ => Err(unauthorized(
            "Bearer error=\"invalid_token\"",
            "the access token is invalid or expired",
        )),
    }
}

fn read(st: &MockState, ty: &str, id: &str) -> Response {
    let reference = format!("{ty}/{id}");
    if st.behaviour.reference_500.as_deref() == Some(reference.as_str()) {
        return outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            &format!("internal error reading {reference}"),
        );
    }
    match st
        .resources
        .iter()
        .find(|r| r["resourceType"] == ty && r["id"] == id)
    {
        Some(resource) => {
            let mut response = fhir_response(StatusCode::OK, resource.clone());
            if let Some(version) = resource["meta"]["versionId"].as_str()
                && let Ok(etag) = format!("W/\"{version}\"").parse()
            {
                response.headers_mut().insert(header::ETAG, etag);
            }
            response
        }
        None => outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            &format!("{reference} is not known"),
        ),
    }
}

fn search(
    st: &mut MockState,
    ty: &str,
    params: &[(String, String)],
    token: &str,
    self_link: String,
) -> Response {
    if st.behaviour.html_404_type.as_deref() == Some(ty) {
        return text(
            StatusCode::NOT_FOUND,
            "text/html",
            "<html><body><h1>Not Found</h1></body></html>",
        );
    }
    if let Some((limited, times, retry_after)) = st.behaviour.rate_limit.clone()
        && limited == ty
        && st.rate_limited < times
    {
        st.rate_limited += 1;
        let mut response = outcome(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "Too many requests",
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            retry_after.to_string().parse().unwrap(),
        );
        return response;
    }
    if ty == "Observation"
        && st.behaviour.require_observation_category
        && param(params, "category").is_none()
    {
        return outcome(
            StatusCode::BAD_REQUEST,
            "required",
            "Must have either code or category parameter",
        );
    }
    let (count, offset) = match paging_params(st, params) {
        Ok(paging) => paging,
        Err(response) => return response,
    };
    let last_updated = match date_filters(params, "_lastUpdated") {
        Ok(filters) => filters,
        Err(response) => return response,
    };
    let ids: Option<Vec<&str>> = param(params, "_id").map(|ids| ids.split(',').collect());
    let ignoring = st.behaviour.ignore_patient_filter.as_deref() == Some(ty);
    let patient_filter = param(params, "patient")
        .or_else(|| param(params, "subject"))
        .filter(|_| !ignoring);
    let other_patient = patient_filter
        .is_some_and(|p| p.rsplit_once("Patient/").map_or(p, |(_, id)| id) != st.patient_id);
    let categories: Option<Vec<&str>> = param(params, "category").map(|c| {
        c.split(',')
            .map(|token| token.rsplit_once('|').map_or(token, |(_, code)| code))
            .collect()
    });
    let matches: Vec<Value> = st
        .resources
        .iter()
        .filter(|r| r["resourceType"] == ty)
        .filter(|r| match &ids {
            Some(ids) => ids.iter().any(|id| r["id"] == *id),
            None => !SHARED_TYPES.contains(&ty),
        })
        .filter(|_| !other_patient || SHARED_TYPES.contains(&ty))
        .filter(|r| {
            categories
                .as_ref()
                .is_none_or(|wanted| has_category(r, wanted))
        })
        .filter(|r| date_matches(last_updated_ms(r), &last_updated))
        .cloned()
        .collect();
    let next_params: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| name != "_count" && name != "_offset")
        .cloned()
        .collect();
    let next_path = format!("{}/{ty}", st.fhir_base());
    let (self_link, note) = if ignoring {
        let (path, query) = self_link.split_once('?').unwrap_or((&self_link, ""));
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.starts_with("patient=") && !pair.starts_with("subject="))
            .collect();
        (
            format!("{path}?{}", kept.join("&")),
            Some(format!(
                "Unknown search parameter 'patient' for {ty}; parameter ignored"
            )),
        )
    } else if st.behaviour.operation_outcome_in_searchset.as_deref() == Some(ty) {
        (self_link, Some("Some results were omitted".to_string()))
    } else {
        (self_link, None)
    };
    first_page(
        st,
        matches,
        count,
        offset,
        self_link,
        (next_path, next_params),
        token,
        note,
    )
}

fn everything(
    st: &mut MockState,
    id: &str,
    params: &[(String, String)],
    token: &str,
    self_link: String,
) -> Response {
    if !st.behaviour.support_everything {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            "Operation $everything is not supported",
        );
    }
    if id != st.patient_id {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            &format!("Patient/{id} is not known"),
        );
    }
    let (count, offset) = match paging_params(st, params) {
        Ok(paging) => paging,
        Err(response) => return response,
    };
    let since = match param(params, "_since") {
        None => None,
        Some(since) => match parse_instant(since) {
            Some(ms) => Some(ms),
            None => {
                return outcome(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    &format!("invalid _since {since:?}"),
                );
            }
        },
    };
    let types: Option<Vec<&str>> = param(params, "_type").map(|t| t.split(',').collect());
    let matches: Vec<Value> = st
        .resources
        .iter()
        .filter(|r| {
            types
                .as_ref()
                .is_none_or(|types| types.iter().any(|t| r["resourceType"] == *t))
        })
        .filter(|r| since.is_none_or(|since| last_updated_ms(r) >= since))
        .cloned()
        .collect();
    let next_params: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| name != "_count" && name != "_offset")
        .cloned()
        .collect();
    let next_path = format!("{}/Patient/{id}/$everything", st.fhir_base());
    first_page(
        st,
        matches,
        count,
        offset,
        self_link,
        (next_path, next_params),
        token,
        None,
    )
}

/// (page size, offset) from `_count` (capped at `page_size`) and `_offset`.
fn paging_params(st: &MockState, params: &[(String, String)]) -> Result<(usize, usize), Response> {
    let number = |name: &str| match param(params, name) {
        None => Ok(None),
        Some(v) => v.parse::<usize>().map(Some).map_err(|_| {
            outcome(
                StatusCode::BAD_REQUEST,
                "invalid",
                &format!("invalid {name} {v:?}"),
            )
        }),
    };
    let page_size = st.behaviour.page_size;
    let count = number("_count")?.map_or(page_size, |c| c.min(page_size));
    let offset = number("_offset")?.unwrap_or(0);
    Ok((count, offset))
}

#[allow(clippy::too_many_arguments)]
fn first_page(
    st: &mut MockState,
    matches: Vec<Value>,
    count: usize,
    offset: usize,
    self_link: String,
    (next_path, next_params): (String, Vec<(String, String)>),
    token: &str,
    outcome_note: Option<String>,
) -> Response {
    let total = matches.len();
    let start = offset.min(total);
    let end = start.saturating_add(count).min(total);
    let next = if count == 0 || end >= total {
        None
    } else if st.behaviour.session_bound_paging {
        let id = random_token(12);
        st.paging_sessions.insert(
            id.clone(),
            PagingSession {
                token: token.to_owned(),
                matches: matches[start..].to_vec(),
                count,
            },
        );
        Some(format!("{}?_getpages={id}&_page=1", st.fhir_base()))
    } else {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(next_params)
            .append_pair("_count", &count.to_string())
            .append_pair("_offset", &end.to_string())
            .finish();
        Some(format!("{next_path}?{query}"))
    };
    let body = searchset(
        st,
        total,
        &matches[start..end],
        self_link,
        next,
        outcome_note.filter(|_| start == 0),
    );
    fhir_response(StatusCode::OK, body)
}

fn next_session_page(
    st: &MockState,
    params: &[(String, String)],
    token: &str,
    self_link: String,
) -> Response {
    let Some(id) = param(params, "_getpages") else {
        return outcome(
            StatusCode::BAD_REQUEST,
            "not-supported",
            "system-level search is not supported",
        );
    };
    let session = match st.paging_sessions.get(id) {
        Some(session) if session.token == token => session,
        _ => {
            return outcome(StatusCode::BAD_REQUEST, "invalid", "paging session expired");
        }
    };
    let Some(page) = param(params, "_page").and_then(|p| p.parse::<usize>().ok()) else {
        return outcome(StatusCode::BAD_REQUEST, "invalid", "invalid _page");
    };
    let total = session.matches.len();
    let start = page.saturating_mul(session.count).min(total);
    let end = start.saturating_add(session.count).min(total);
    let next =
        (end < total).then(|| format!("{}?_getpages={id}&_page={}", st.fhir_base(), page + 1));
    let body = searchset(
        st,
        total,
        &session.matches[start..end],
        self_link,
        next,
        None,
    );
    fhir_response(StatusCode::OK, body)
}

fn searchset(
    st: &MockState,
    total: usize,
    page: &[Value],
    self_link: String,
    next: Option<String>,
    outcome_note: Option<String>,
) -> Value {
    let fhir_base = st.fhir_base();
    let mut entries: Vec<Value> = page
        .iter()
        .map(|r| {
            json!({
                "fullUrl": format!(
                    "{fhir_base}/{}/{}",
                    r["resourceType"].as_str().unwrap_or(""),
                    r["id"].as_str().unwrap_or("")
                ),
                "resource": r,
                "search": {"mode": "match"},
            })
        })
        .collect();
    if let Some(note) = outcome_note {
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{}", random_token(16)),
            "resource": {
                "resourceType": "OperationOutcome",
                "issue": [{
                    "severity": "warning",
                    "code": "incomplete",
                    "diagnostics": note,
                }],
            },
            "search": {"mode": "outcome"},
        }));
    }
    let mut links = vec![json!({"relation": "self", "url": self_link})];
    if let Some(next) = next {
        links.push(json!({"relation": "next", "url": next}));
    }
    json!({
        "resourceType": "Bundle",
        "id": random_token(12),
        "meta": {"lastUpdated": now_instant()},
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": entries,
    })
}

fn has_category(resource: &Value, wanted: &[&str]) -> bool {
    resource["category"].as_array().is_some_and(|categories| {
        categories.iter().any(|category| {
            category["coding"].as_array().is_some_and(|codings| {
                codings
                    .iter()
                    .any(|coding| wanted.iter().any(|code| coding["code"] == *code))
            })
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Dates

/// Comparison prefix and instant (ms since the epoch) of each value of a date search parameter.
fn date_filters(params: &[(String, String)], name: &str) -> Result<Vec<(String, i64)>, Response> {
    params
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, value)| {
            let (prefix, date) = match value.get(..2) {
                Some(p @ ("eq" | "ne" | "gt" | "lt" | "ge" | "le" | "sa" | "eb")) => {
                    (p, &value[2..])
                }
                _ => ("eq", value.as_str()),
            };
            match parse_instant(date) {
                Some(ms) => Ok((prefix.to_owned(), ms)),
                None => Err(outcome(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    &format!("invalid {name} value {value:?}"),
                )),
            }
        })
        .collect()
}

fn date_matches(value: i64, filters: &[(String, i64)]) -> bool {
    filters.iter().all(|(prefix, at)| match prefix.as_str() {
        "gt" | "sa" => value > *at,
        "lt" | "eb" => value < *at,
        "ge" => value >= *at,
        "le" => value <= *at,
        "ne" => value != *at,
        _ => value == *at,
    })
}

fn last_updated_ms(resource: &Value) -> i64 {
    resource["meta"]["lastUpdated"]
        .as_str()
        .and_then(parse_instant)
        .unwrap_or(i64::MIN)
}

/// Milliseconds since the Unix epoch of a FHIR date, dateTime or instant ("2024", "2024-05",
/// "2024-05-06", "2024-05-06T07:08:09.123+02:00"...): missing parts are the start of the period,
/// no zone means UTC. `None` when malformed (a `+` zone sent unencoded arrives as a space).
pub fn parse_instant(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = num(0, 4)?;
    let (mut month, mut day) = (1, 1);
    let (mut hour, mut minute, mut second, mut millis, mut offset) = (0, 0, 0, 0, 0);
    let mut i = 4;
    if b.get(i) == Some(&b'-') {
        month = num(5, 2)?;
        i = 7;
        if b.get(i) == Some(&b'-') {
            day = num(8, 2)?;
            i = 10;
        }
    }
    if b.get(i) == Some(&b'T') {
        hour = num(i + 1, 2)?;
        if b.get(i + 3) != Some(&b':') {
            return None;
        }
        minute = num(i + 4, 2)?;
        i += 6;
        if b.get(i) == Some(&b':') {
            second = num(i + 1, 2)?;
            i += 3;
            if b.get(i) == Some(&b'.') {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                if end == start {
                    return None;
                }
                let digits = &s[start..end.min(start + 3)];
                millis = format!("{digits:0<3}").parse().ok()?;
                i = end;
            }
        }
        match b.get(i) {
            None => {}
            Some(b'Z') => i += 1,
            Some(&sign @ (b'+' | b'-')) => {
                let zone_hours = num(i + 1, 2)?;
                if b.get(i + 3) != Some(&b':') {
                    return None;
                }
                let zone_minutes = num(i + 4, 2)?;
                let minutes = zone_hours * 60 + zone_minutes;
                offset = if sign == b'+' { minutes } else { -minutes } * 60_000;
                i += 6;
            }
            Some(_) => return None,
        }
    }
    if i != b.len()
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(seconds * 1000 + millis - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Now as a FHIR instant in UTC with millisecond precision.
pub fn now_instant() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .expect("format now")
}

// ---------------------------------------------------------------------------------------------
// Responses

fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

fn text(status: StatusCode, content_type: &str, body: &str) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn json_response(status: StatusCode, body: Value) -> Response {
    text(status, "application/json", &body.to_string())
}

fn fhir_response(status: StatusCode, body: Value) -> Response {
    text(status, "application/fhir+json", &body.to_string())
}

fn outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
    fhir_response(
        status,
        json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
        }),
    )
}

fn redirect_to(location: &str) -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location)
        .body(Body::empty())
        .unwrap()
}
