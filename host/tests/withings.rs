//! Connecting Withings and syncing it, end to end: the catalog's Withings entry (pointed at an
//! in-process stand-in for Withings on loopback), the Sources form, Withings' own OAuth2 dialect
//! (`action=requesttoken`, answers wrapped in `{"status": 0, "body": ...}`, the secret in the
//! form), the `withings` plugin's sync through the host's http gate, and the records it stores.
//! The stand-in answers with the real response bodies in `../shared/testdata/withings`.

use crate::common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use common::{Client, TestServer};
use serde_json::{Value, json};

const CLIENT_ID: &str = "withings-app";
const CLIENT_SECRET: &str = "withings-secret";

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/withings")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    params: HashMap<String, String>,
    authorization: Option<String>,
}

#[derive(Default)]
struct MockState {
    code: Option<String>,
    access_token: String,
    refresh_token: String,
    /// The refresh token is refused (the user revoked Fasten at Withings).
    refuse_refresh: bool,
    seen: Vec<Seen>,
    issued: u32,
}

#[derive(Clone)]
struct WithingsMock {
    url: String,
    state: Arc<Mutex<MockState>>,
}

impl WithingsMock {
    async fn start() -> WithingsMock {
        let state = Arc::new(Mutex::new(MockState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        WithingsMock { url, state }
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        let state = self.state.lock().unwrap();
        state
            .seen
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    /// Makes the current access token stop working, as Withings' do after three hours.
    fn expire_access_token(&self) {
        self.state.lock().unwrap().access_token = "expired".into();
    }
}

fn envelope(body: Value) -> Response {
    json_response(json!({"status": 0, "body": body}))
}

fn json_response(value: Value) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(value.to_string()))
        .unwrap()
}

async fn handle(State(state): State<Arc<Mutex<MockState>>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let mut params: HashMap<String, String> =
        form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_string());
    let body = to_bytes(request.into_body(), 1 << 20).await.unwrap();
    params.extend(form_urlencoded::parse(&body).into_owned());
    let mut state = state.lock().unwrap();
    state.seen.push(Seen {
        path: path.clone(),
        params: params.clone(),
        authorization: authorization.clone(),
    });
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    match path.as_str() {
        "/oauth2_user/authorize2" => {
            // Withings shows its consent page; the user agrees.
            let code = format!("code-{}", state.issued);
            state.code = Some(code.clone());
            let location = format!(
                "{}?code={code}&state={}",
                param("redirect_uri"),
                param("state")
            );
            Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, location)
                .body(Body::empty())
                .unwrap()
        }
        "/v2/oauth2" => {
            if param("action") != "requesttoken"
                || param("client_id") != CLIENT_ID
                || param("client_secret") != CLIENT_SECRET
            {
                return json_response(
                    json!({"status": 503, "body": {}, "error": "Invalid Params: invalid client"}),
                );
            }
            let valid = match param("grant_type").as_str() {
                "authorization_code" => state.code.take() == Some(param("code")),
                "refresh_token" => {
                    !state.refuse_refresh && param("refresh_token") == state.refresh_token
                }
                _ => false,
            };
            if !valid {
                return json_response(
                    json!({"status": 503, "body": {}, "error": "Invalid Params: invalid refresh_token"}),
                );
            }
            state.issued += 1;
            state.access_token = format!("access-{}", state.issued);
            state.refresh_token = format!("refresh-{}", state.issued);
            envelope(json!({
                "userid": "363",
                "access_token": state.access_token,
                "refresh_token": state.refresh_token,
                "expires_in": 10800,
                "scope": "user.info,user.metrics,user.activity",
                "token_type": "Bearer",
            }))
        }
        "/measure" | "/v2/measure" | "/v2/sleep" => {
            if authorization.as_deref() != Some(&format!("Bearer {}", state.access_token)) {
                // Withings says so in the body, with HTTP 200.
                return json_response(
                    json!({"status": 401, "body": {}, "error": "XRequire valid token"}),
                );
            }
            match (path.as_str(), param("action").as_str()) {
                ("/measure", "getmeas") => envelope(fixture("get_meas.json")),
                ("/v2/measure", "getactivity") => envelope(json!({
                    "activities": fixture("activity.json"), "more": false, "offset": 0,
                })),
                ("/v2/sleep", "getsummary") => envelope(fixture("get_sleep.json")),
                _ => json_response(json!({"status": 2555, "body": {}, "error": "Unknown action"})),
            }
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .unwrap(),
    }
}

/// Fasten with the bundled catalog's Withings entry pointed at the stand-in.
async fn start_fasten(mock: &WithingsMock) -> (TestServer, Client, tempfile::TempDir) {
    let registry = tempfile::tempdir().unwrap();
    let catalog = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-registry/catalog.toml"),
    )
    .unwrap()
    .replace("https://wbsapi.withings.net", &mock.url)
    .replace("https://account.withings.com", &mock.url);
    std::fs::write(registry.path().join("catalog.toml"), catalog).unwrap();
    let server = TestServer::start_with(|c| {
        c.plugins.allow_http_loopback = true;
        c.plugins.allow_private_networks = true;
        c.plugins.registry_dir = registry.path().to_path_buf();
    })
    .await;
    let client = server.client();
    client
        .setup(common::ADMIN, "Alice", common::ADMIN_PASSWORD)
        .await;
    (server, client, registry)
}

fn continue_link(body: &str) -> String {
    let marker = "id=\"continue\" href=\"";
    let start = body
        .find(marker)
        .unwrap_or_else(|| panic!("no continue link in: {body}"))
        + marker.len();
    let end = start + body[start..].find('"').unwrap();
    body[start..end]
        .replace("&amp;", "&")
        .replace("&#x2f;", "/")
        .replace("&#x3d;", "=")
}

/// Connects Withings from the Sources page; answers the new source's id.
async fn connect(client: &Client) -> i64 {
    let page = client.get("/sources/catalog?q=withings").await;
    assert!(
        page.body.contains("provider-withings"),
        "Withings is offered: {}",
        page.body
    );
    let reply = client
        .submit(
            "/sources",
            "/sources/connect",
            &[
                ("catalog_id", "withings"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "connect: {}", reply.body);
    let provider = continue_link(&reply.body);
    let outside = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = outside.get(&provider).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::FOUND);
    let callback = answer.headers()["location"].to_str().unwrap().to_string();
    let reply = client
        .get(callback.strip_prefix(&client.base).unwrap())
        .await;
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
        .unwrap()
}

#[derive(Debug, sqlx::FromRow)]
struct JobRow {
    id: i64,
    status: String,
    added: i64,
    error: Option<String>,
}

async fn job_after(server: &TestServer, source_id: i64, after: i64) -> JobRow {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job: Option<JobRow> = sqlx::query_as(
            "SELECT id, status, added, error FROM jobs
             WHERE source_id = ? AND id > ? ORDER BY id DESC LIMIT 1",
        )
        .bind(source_id)
        .bind(after)
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

/// The stored Observations of a source with a LOINC code, as (date, value, unit).
async fn loinc_values(
    server: &TestServer,
    source_id: i64,
    code: &str,
) -> Vec<(String, f64, String)> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT json FROM resources WHERE source_id = ? AND resource_type = 'Observation'",
    )
    .bind(source_id)
    .fetch_all(&server.state.db)
    .await
    .unwrap();
    let mut values: Vec<(String, f64, String)> = rows
        .iter()
        .map(|(json,)| serde_json::from_str::<Value>(json).unwrap())
        .filter(|o| {
            o["code"]["coding"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["system"] == "http://loinc.org" && c["code"] == code)
            })
        })
        .map(|o| {
            let date = o["effectiveDateTime"]
                .as_str()
                .or(o["effectivePeriod"]["start"].as_str())
                .unwrap_or_default()
                .to_string();
            (
                date,
                o["valueQuantity"]["value"].as_f64().unwrap_or(f64::NAN),
                o["valueQuantity"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    values.sort_by(|a, b| a.0.cmp(&b.0));
    values
}

#[tokio::test]
async fn withings_connects_with_its_own_oauth_dialect_and_syncs_measures_activity_and_sleep() {
    let mock = WithingsMock::start().await;
    let (server, client, _registry) = start_fasten(&mock).await;
    let source_id = connect(&client).await;

    // The token request spoke Withings' dialect, with the secret in the form.
    let token_requests = mock.seen("/v2/oauth2");
    assert_eq!(token_requests.len(), 1);
    let exchange = &token_requests[0].params;
    assert_eq!(exchange["action"], "requesttoken");
    assert_eq!(exchange["grant_type"], "authorization_code");
    assert_eq!(exchange["client_secret"], CLIENT_SECRET);
    let authorize = &mock.seen("/oauth2_user/authorize2")[0].params;
    assert_eq!(authorize["scope"], "user.info,user.metrics,user.activity");
    assert!(
        !authorize.contains_key("aud"),
        "no FHIR audience for a plain OAuth2 API"
    );

    let job = job_after(&server, source_id, 0).await;
    assert!(
        matches!(job.status.as_str(), "succeeded" | "warnings"),
        "{job:?}"
    );
    assert!(job.added > 0, "{job:?}");

    // Every API call carried the token the host holds; the plugin never handled it.
    for path in ["/measure", "/v2/measure", "/v2/sleep"] {
        let calls = mock.seen(path);
        assert!(!calls.is_empty(), "the sync asked {path}");
        for call in calls {
            assert_eq!(
                call.authorization.as_deref(),
                Some("Bearer access-1"),
                "{path}"
            );
        }
    }

    // The first weighing in get_meas.json: type 1, value 70, unit 0, on 2019-08-01T12:00:00Z.
    let weights = loinc_values(&server, source_id, "29463-7").await;
    assert!(
        weights
            .iter()
            .any(|(date, value, unit)| date.starts_with("2019-08-01")
                && *value == 70.0
                && unit == "kg"),
        "{weights:?}"
    );
    // Daily steps from activity.json: 1892 on 2023-10-08.
    let steps = loinc_values(&server, source_id, "41950-7").await;
    assert!(
        steps
            .iter()
            .any(|(date, value, _)| date.starts_with("2023-10-08") && *value == 1892.0),
        "{steps:?}"
    );
    // A night of sleep from get_sleep.json.
    let sleep = loinc_values(&server, source_id, "93832-4").await;
    assert_eq!(sleep.len(), 5, "five nights: {sleep:?}");

    // The records are on the user's pages: Explore lists the newest day's steps first.
    let explore = client.get("/explore/Observation").await;
    assert!(explore.body.contains(">Steps</a>"), "{}", explore.body);

    // Three hours later the access token has expired: the next sync refreshes it in Withings'
    // dialect and carries on from where the last one stopped.
    mock.expire_access_token();
    let reply = client
        .submit("/sources", &format!("/sources/{source_id}/sync"), &[])
        .await;
    assert!(reply.status.is_redirection() || reply.status.is_success());
    let again = job_after(&server, source_id, job.id).await;
    assert!(
        matches!(again.status.as_str(), "succeeded" | "warnings"),
        "{again:?}"
    );
    assert_eq!(again.added, 0, "nothing new: {again:?}");
    let refresh = mock
        .seen("/v2/oauth2")
        .into_iter()
        .find(|s| s.params.get("grant_type").map(String::as_str) == Some("refresh_token"))
        .expect("the host refreshed the token");
    assert_eq!(refresh.params["action"], "requesttoken");
    assert_eq!(refresh.params["refresh_token"], "refresh-1");
    let last_measure = mock.seen("/measure").pop().unwrap();
    assert_eq!(
        last_measure.authorization.as_deref(),
        Some("Bearer access-2")
    );
    assert_ne!(
        last_measure.params.get("lastupdate").map(String::as_str),
        Some("0"),
        "the second sync is incremental"
    );
}

#[tokio::test]
async fn a_refused_withings_refresh_asks_the_user_to_reconnect_and_keeps_the_records() {
    let mock = WithingsMock::start().await;
    let (server, client, _registry) = start_fasten(&mock).await;
    let source_id = connect(&client).await;
    let first = job_after(&server, source_id, 0).await;
    let stored = server
        .count(
            "SELECT COUNT(*) FROM resources WHERE source_id = ?",
            source_id,
        )
        .await;
    assert!(stored > 0, "{first:?}");

    mock.expire_access_token();
    mock.state.lock().unwrap().refuse_refresh = true;
    client
        .submit("/sources", &format!("/sources/{source_id}/sync"), &[])
        .await;
    let failed = job_after(&server, source_id, first.id).await;
    assert_eq!(failed.status, "failed", "{failed:?}");
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("Reconnect")),
        "{failed:?}"
    );
    let page = client.get("/sources").await;
    assert!(page.body.contains("Needs reconnect"), "{}", page.body);
    // Withings' own reason is behind "Details" on the Jobs page, not in the message.
    let jobs = client.get("/jobs").await;
    assert!(
        jobs.body.contains("<summary>Details</summary>")
            && jobs.body.contains("invalid refresh_token"),
        "Withings' reason is shown: {}",
        jobs.body
    );
    assert_eq!(
        server
            .count(
                "SELECT COUNT(*) FROM resources WHERE source_id = ?",
                source_id
            )
            .await,
        stored,
        "the failed sync kept what the first one stored"
    );
}
