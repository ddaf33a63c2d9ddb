//! Drives the in-process SMART-on-FHIR mock (tests/smart_mock) over real loopback HTTP, so the
//! tests that rely on it can trust its behaviour.

use crate::smart_mock;

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use smart_mock::{Discovery, SmartMock, load_synthea};

const PARIS: &str = "Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json";
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const SCOPE: &str = "launch/patient patient/*.read offline_access";

async fn start() -> SmartMock {
    SmartMock::start(load_synthea(PARIS)).await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn query_pairs(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Runs /authorize with a fresh PKCE pair: (code, verifier).
async fn authorize(mock: &SmartMock, client_id: &str) -> (String, String) {
    let mut random = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut random);
    let verifier = URL_SAFE_NO_PAD.encode(random);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let response = http()
        .get(format!("{}/authorize", mock.url))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT_URI),
            ("scope", SCOPE),
            ("state", "st4te"),
            ("aud", &mock.fhir_base()),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT_URI), "{location}");
    let pairs = query_pairs(&location);
    assert_eq!(pairs["state"], "st4te");
    (pairs["code"].clone(), verifier)
}

/// The full code flow as the public client: the token response.
async fn login(mock: &SmartMock) -> Value {
    let (code, verifier) = authorize(mock, "fasten-test").await;
    let response = http()
        .post(format!("{}/token", mock.url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &verifier),
            ("client_id", "fasten-test"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn refresh(mock: &SmartMock, refresh_token: &str) -> (StatusCode, Value) {
    let response = http()
        .post(format!("{}/token", mock.url))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "fasten-test"),
        ])
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn get(url: &str, token: &str) -> reqwest::Response {
    http().get(url).bearer_auth(token).send().await.unwrap()
}

fn token_of(body: &Value, field: &str) -> String {
    body[field].as_str().expect(field).to_owned()
}

/// Follows `next` links from `url`: (entries with search mode "match", number of pages, total).
async fn fetch_all(url: &str, token: &str) -> (Vec<Value>, usize, u64) {
    let mut entries = Vec::new();
    let mut pages = 0;
    let mut next = Some(url.to_owned());
    let mut total = 0;
    while let Some(url) = next.take() {
        let response = get(&url, token).await;
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let bundle: Value = response.json().await.unwrap();
        assert_eq!(bundle["type"], "searchset");
        total = bundle["total"].as_u64().unwrap();
        pages += 1;
        for entry in bundle["entry"].as_array().unwrap() {
            if entry["search"]["mode"] == "match" {
                entries.push(entry.clone());
            }
        }
        next = bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
    }
    (entries, pages, total)
}

#[tokio::test]
async fn code_flow_with_pkce_then_read_and_page_through_observations() {
    let mock = start().await;
    mock.configure(|b| b.page_size = 25);
    let config: Value = http()
        .get(format!(
            "{}/.well-known/smart-configuration",
            mock.fhir_base()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        config["authorization_endpoint"],
        format!("{}/authorize", mock.url)
    );
    assert_eq!(config["token_endpoint"], format!("{}/token", mock.url));
    assert_eq!(config["code_challenge_methods_supported"], json!(["S256"]));

    let (code, verifier) = authorize(&mock, "fasten-test").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", verifier.as_str()),
        ("client_id", "fasten-test"),
    ];
    let response = http()
        .post(format!("{}/token", mock.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], SCOPE);
    assert_eq!(tokens["patient"], mock.patient_id());
    assert!(tokens.get("refresh_expires_in").is_none());
    let access = token_of(&tokens, "access_token");

    // Codes are single use.
    let again = http()
        .post(format!("{}/token", mock.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["error"], "invalid_grant");

    let patient = get(
        &format!("{}/Patient/{}", mock.fhir_base(), mock.patient_id()),
        &access,
    )
    .await;
    assert_eq!(patient.status(), StatusCode::OK);
    assert_eq!(patient.headers()["content-type"], "application/fhir+json");
    let patient: Value = patient.json().await.unwrap();
    assert_eq!(patient["resourceType"], "Patient");
    assert_eq!(patient["meta"]["lastUpdated"], smart_mock::LOADED_AT);

    let (entries, pages, total) = fetch_all(
        &format!(
            "{}/Observation?patient={}",
            mock.fhir_base(),
            mock.patient_id()
        ),
        &access,
    )
    .await;
    assert_eq!(total, 60);
    assert_eq!(entries.len(), 60);
    assert_eq!(pages, 3);
    // References were rewritten from urn:uuid to Type/id.
    let subject = &entries[0]["resource"]["subject"]["reference"];
    assert_eq!(*subject, format!("Patient/{}", mock.patient_id()));

    let log = mock.log();
    let searches: Vec<_> = log
        .iter()
        .filter(|r| r.path == "/fhir/Observation")
        .collect();
    assert_eq!(searches.len(), 3);
    assert!(searches[1].query.contains("_offset=25"), "{searches:?}");
    assert!(
        searches
            .iter()
            .all(|r| r.authorization.as_deref() == Some(&*format!("Bearer {access}")))
    );
    let exchanges = mock.token_requests();
    assert_eq!(exchanges.len(), 2);
    assert_eq!(exchanges[0].grant_type, "authorization_code");
    assert_eq!(exchanges[0].client_id, "fasten-test");
    assert_eq!(exchanges[0].client_auth, "none");
    assert_eq!(exchanges[0].status, 200);
    assert_eq!(exchanges[1].status, 400);
}

#[tokio::test]
async fn pkce_and_authorize_are_checked() {
    let mock = start().await;
    let (code, _) = authorize(&mock, "fasten-test").await;
    let wrong = http()
        .post(format!("{}/token", mock.url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", "not-the-verifier"),
            ("client_id", "fasten-test"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );

    // Wrong audience: a 400 naming the problem.
    let response = http()
        .get(format!("{}/authorize", mock.url))
        .query(&[
            ("response_type", "code"),
            ("client_id", "fasten-test"),
            ("redirect_uri", REDIRECT_URI),
            ("state", "s"),
            ("aud", "http://elsewhere/fhir"),
            ("code_challenge", "abc"),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("aud"));

    // authorize_error: back to the client with error and state.
    mock.configure(|b| b.authorize_error = Some("access_denied".into()));
    let response = http()
        .get(format!("{}/authorize", mock.url))
        .query(&[
            ("response_type", "code"),
            ("client_id", "fasten-test"),
            ("redirect_uri", REDIRECT_URI),
            ("state", "s1"),
            ("aud", &mock.fhir_base()),
            ("code_challenge", "abc"),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let pairs = query_pairs(response.headers()["location"].to_str().unwrap());
    assert_eq!(pairs["error"], "access_denied");
    assert_eq!(pairs["state"], "s1");
    assert!(pairs.contains_key("error_description"));
    assert!(!pairs.contains_key("code"));
}

#[tokio::test]
async fn confidential_client_authenticates_with_basic_or_post() {
    let mock = start().await;
    let exchange = |code: String, verifier: String, auth: &'static str| {
        let mock_url = mock.url.clone();
        async move {
            let mut form = vec![
                ("grant_type", "authorization_code".to_owned()),
                ("code", code),
                ("redirect_uri", REDIRECT_URI.to_owned()),
                ("code_verifier", verifier),
            ];
            let mut request = http().post(format!("{mock_url}/token"));
            match auth {
                "basic" => request = request.basic_auth("fasten-confidential", Some("s3cret")),
                "post" => {
                    form.push(("client_id", "fasten-confidential".to_owned()));
                    form.push(("client_secret", "s3cret".to_owned()));
                }
                "wrong" => request = request.basic_auth("fasten-confidential", Some("nope")),
                _ => form.push(("client_id", "fasten-confidential".to_owned())),
            }
            request.form(&form).send().await.unwrap()
        }
    };

    let (code, verifier) = authorize(&mock, "fasten-confidential").await;
    let response = exchange(code, verifier, "basic").await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Value = response.json().await.unwrap();
    assert!(tokens["access_token"].is_string());

    let (code, verifier) = authorize(&mock, "fasten-confidential").await;
    assert_eq!(
        exchange(code, verifier, "post").await.status(),
        StatusCode::OK
    );

    for auth in ["wrong", "none"] {
        let (code, verifier) = authorize(&mock, "fasten-confidential").await;
        let response = exchange(code, verifier, auth).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
    }

    let methods: Vec<(String, String, u16)> = mock
        .token_requests()
        .into_iter()
        .map(|t| (t.client_id, t.client_auth, t.status))
        .collect();
    let confidential = "fasten-confidential".to_owned();
    assert_eq!(
        methods,
        vec![
            (confidential.clone(), "basic".into(), 200),
            (confidential.clone(), "post".into(), 200),
            (confidential.clone(), "basic".into(), 401),
            (confidential, "none".into(), 401),
        ]
    );
}

#[tokio::test]
async fn refresh_rotates_and_the_old_refresh_token_is_rejected() {
    let mock = start().await;
    mock.configure(|b| b.refresh_token_seconds = Some(600));
    let first = login(&mock).await;
    assert_eq!(first["refresh_expires_in"], 600);
    let old = token_of(&first, "refresh_token");

    let (status, second) = refresh(&mock, &old).await;
    assert_eq!(status, StatusCode::OK);
    let new = token_of(&second, "refresh_token");
    assert_ne!(new, old);
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(second["scope"], SCOPE);

    let (status, body) = refresh(&mock, &old).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");

    let (status, _) = refresh(&mock, &new).await;
    assert_eq!(status, StatusCode::OK);

    // Without rotation the same refresh token keeps working and none is returned.
    mock.configure(|b| b.rotate_refresh_tokens = false);
    let stable = token_of(&login(&mock).await, "refresh_token");
    for _ in 0..2 {
        let (status, body) = refresh(&mock, &stable).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.get("refresh_token").is_none());
    }
}

#[tokio::test]
async fn revoked_or_expired_refresh_tokens_are_invalid_grant() {
    let mock = start().await;
    let refresh_token = token_of(&login(&mock).await, "refresh_token");
    mock.revoke_all_refresh_tokens();
    let (status, body) = refresh(&mock, &refresh_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        body["error_description"],
        "refresh token expired or revoked"
    );
    let last = mock.token_requests().pop().unwrap();
    assert_eq!(last.grant_type, "refresh_token");
    assert_eq!(last.error.as_deref(), Some("invalid_grant"));

    mock.configure(|b| b.refresh_token_seconds = Some(0));
    let refresh_token = token_of(&login(&mock).await, "refresh_token");
    let (status, body) = refresh(&mock, &refresh_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn session_bound_paging_rejects_another_token() {
    let mock = start().await;
    mock.configure(|b| {
        b.session_bound_paging = true;
        b.page_size = 10;
    });
    let first = token_of(&login(&mock).await, "access_token");
    let second = token_of(&login(&mock).await, "access_token");
    let search = format!(
        "{}/Observation?patient=Patient/{}",
        mock.fhir_base(),
        mock.patient_id()
    );
    let bundle: Value = get(&search, &first).await.json().await.unwrap();
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 10);
    let next = bundle["link"][1]["url"].as_str().unwrap().to_owned();
    assert_eq!(bundle["link"][1]["relation"], "next");
    assert!(
        next.starts_with(&format!("{}?_getpages=", mock.fhir_base())),
        "{next}"
    );
    assert!(next.ends_with("&_page=1"), "{next}");

    let rejected = get(&next, &second).await;
    assert_eq!(rejected.status(), StatusCode::BAD_REQUEST);
    let outcome: Value = rejected.json().await.unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["diagnostics"], "paging session expired");

    let (entries, pages, _) = fetch_all(&search, &first).await;
    assert_eq!((entries.len(), pages), (60, 6));
}

#[tokio::test]
async fn rate_limit_answers_429_then_succeeds() {
    let mock = start().await;
    mock.configure(|b| b.rate_limit = Some(("Observation".into(), 2, 1)));
    let access = token_of(&login(&mock).await, "access_token");
    let search = format!(
        "{}/Observation?patient={}",
        mock.fhir_base(),
        mock.patient_id()
    );
    for _ in 0..2 {
        let response = get(&search, &access).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "1");
    }
    // Other types are not limited.
    let conditions = get(
        &format!(
            "{}/Condition?patient={}",
            mock.fhir_base(),
            mock.patient_id()
        ),
        &access,
    )
    .await;
    assert_eq!(conditions.status(), StatusCode::OK);
    assert_eq!(get(&search, &access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn expired_access_tokens_answer_401_until_refreshed() {
    let mock = start().await;
    let tokens = login(&mock).await;
    let access = token_of(&tokens, "access_token");
    let read = format!("{}/Patient/{}", mock.fhir_base(), mock.patient_id());
    assert_eq!(get(&read, &access).await.status(), StatusCode::OK);

    mock.expire_access_tokens();
    let response = get(&read, &access).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let no_token = http().get(&read).send().await.unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(no_token.headers()["www-authenticate"], "Bearer");

    let (status, refreshed) = refresh(&mock, &token_of(&tokens, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK);
    let fresh = token_of(&refreshed, "access_token");
    assert_eq!(get(&read, &fresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn capability_only_discovery_and_metadata() {
    let mock = start().await;
    mock.configure(|b| {
        b.discovery = Discovery::CapabilityOnly;
        b.smart_v2 = true;
    });
    for url in [
        format!("{}/.well-known/smart-configuration", mock.url),
        format!("{}/.well-known/smart-configuration", mock.fhir_base()),
    ] {
        assert_eq!(
            http().get(&url).send().await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
    }
    let metadata: Value = http()
        .get(format!("{}/metadata", mock.fhir_base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["fhirVersion"], "4.0.1");
    let extension = &metadata["rest"][0]["security"]["extension"][0];
    assert_eq!(extension["url"], smart_mock::OAUTH_URIS);
    let uris: HashMap<&str, &str> = extension["extension"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["url"].as_str().unwrap(), e["valueUri"].as_str().unwrap()))
        .collect();
    assert_eq!(uris["authorize"], format!("{}/authorize", mock.url));
    assert_eq!(uris["token"], format!("{}/token", mock.url));

    mock.configure(|b| b.discovery = Discovery::WellKnown);
    let config: Value = http()
        .get(format!("{}/.well-known/smart-configuration", mock.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        config["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("permission-v2"))
    );
}

#[tokio::test]
async fn search_quirks() {
    let mock = start().await;
    let access = token_of(&login(&mock).await, "access_token");
    let base = mock.fhir_base();
    let patient = mock.patient_id();
    mock.configure(|b| {
        b.require_observation_category = true;
        b.html_404_type = Some("Procedure".into());
        b.operation_outcome_in_searchset = Some("Condition".into());
        b.reference_500 = Some("Organization/4f3a530e-a2f7-3de0-9a09-c0a70a9ab894".into());
    });

    let response = get(&format!("{base}/Observation?patient={patient}"), &access).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json::<Value>().await.unwrap()["resourceType"],
        "OperationOutcome"
    );
    let (vitals, _, _) = fetch_all(
        &format!("{base}/Observation?patient={patient}&category=vital-signs"),
        &access,
    )
    .await;
    assert_eq!(vitals.len(), 25);

    let response = get(&format!("{base}/Procedure?patient={patient}"), &access).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["content-type"], "text/html");

    let bundle: Value = get(&format!("{base}/Condition?patient={patient}"), &access)
        .await
        .json()
        .await
        .unwrap();
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(bundle["total"], 3);
    assert_eq!(entries.len(), 4);
    let outcome = entries.iter().find(|e| e["search"]["mode"] == "outcome");
    assert_eq!(
        outcome.unwrap()["resource"]["issue"][0]["severity"],
        "warning"
    );

    // Shared resources are found by read, not by patient search.
    let organizations: Value = get(&format!("{base}/Organization?patient={patient}"), &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(organizations["total"], 0);
    let practitioner = get(
        &format!("{base}/Practitioner/e92c468f-8f1b-4d5e-bf96-76dc945d2e8c"),
        &access,
    )
    .await;
    assert_eq!(practitioner.status(), StatusCode::OK);
    let organization = get(
        &format!("{base}/Organization/4f3a530e-a2f7-3de0-9a09-c0a70a9ab894"),
        &access,
    )
    .await;
    assert_eq!(organization.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let missing = get(&format!("{base}/Condition/nope"), &access).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Another patient's search finds nothing.
    let other: Value = get(&format!("{base}/Condition?patient=someone-else"), &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other["total"], 0);
}

#[tokio::test]
async fn last_updated_touch_and_everything() {
    let mock = start().await;
    let access = token_of(&login(&mock).await, "access_token");
    let base = mock.fhir_base();
    let patient = mock.patient_id();
    let since = smart_mock::now_instant();
    let incremental = format!("{base}/Condition?patient={patient}&_lastUpdated=gt{since}");
    let bundle: Value = get(&incremental, &access).await.json().await.unwrap();
    assert_eq!(bundle["total"], 0);

    let (conditions, _, _) =
        fetch_all(&format!("{base}/Condition?patient={patient}"), &access).await;
    let id = conditions[0]["resource"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    mock.touch(&format!("Condition/{id}"));
    let bundle: Value = get(&incremental, &access).await.json().await.unwrap();
    assert_eq!(bundle["total"], 1);
    assert_eq!(bundle["entry"][0]["resource"]["id"], id.as_str());
    assert_eq!(bundle["entry"][0]["resource"]["meta"]["versionId"], "2");

    // An unencoded '+' zone arrives as a space: rejected like a strict server would.
    let broken = get(
        &format!("{base}/Condition?patient={patient}&_lastUpdated=gt2020-01-01T00:00:00+00:00"),
        &access,
    )
    .await;
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);

    let everything = format!("{base}/Patient/{patient}/$everything");
    assert_eq!(
        get(&everything, &access).await.status(),
        StatusCode::NOT_FOUND
    );
    mock.configure(|b| {
        b.support_everything = true;
        b.page_size = 40;
    });
    let (entries, pages, total) = fetch_all(&everything, &access).await;
    assert_eq!((entries.len(), pages, total), (104, 3, 104));
    assert_eq!(entries[0]["resource"]["resourceType"], "Patient");
}

#[tokio::test]
async fn outage_after_some_requests() {
    let mock = start().await;
    let access = token_of(&login(&mock).await, "access_token");
    let read = format!("{}/Patient/{}", mock.fhir_base(), mock.patient_id());
    assert_eq!(get(&read, &access).await.status(), StatusCode::OK);
    mock.configure(|b| b.fail_all_after_requests = Some(2));
    for expected in [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::SERVICE_UNAVAILABLE,
    ] {
        let response = get(&read, &access).await;
        assert_eq!(response.status(), expected);
        assert!(response.headers().get("retry-after").is_none());
    }
    // Discovery and tokens still work; data does not.
    let metadata = http()
        .get(format!("{}/metadata", mock.fhir_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.status(), StatusCode::OK);
    let fresh = token_of(&login(&mock).await, "access_token");
    assert_eq!(
        get(&read, &fresh).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}
