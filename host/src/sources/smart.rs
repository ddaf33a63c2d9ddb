//! SMART-on-FHIR in the host: discovery, the authorization-code flow with PKCE, and token refresh.
//!
//! The user's own Fasten is the redirect URI, so no relay sits between the provider and the
//! household. Every request goes through the plugin host's [`HttpGate`], so the operator's network
//! policy (https only, no private addresses unless allowed) holds for the host's own requests too.
//! Tokens, client secrets and PKCE verifiers are sealed by the [`Vault`] before they are stored.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse,
    TokenUrl,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use super::client_keys::{AssertionKey, KeyAlg};
use crate::plugins::PluginHost;
use crate::plugins::grants::HostPattern;
use crate::plugins::http::{self, HttpFailure};

/// How long a started sign-in stays valid.
pub const PENDING_SECONDS: i64 = 600;

/// `client_assertion_type` of a `private_key_jwt` token request (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Where the SMART App Launch spec puts the endpoints in a CapabilityStatement.
const OAUTH_URIS: &str = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

/// The token response fields SMART adds: the patient in context, and (on some servers) when the
/// refresh token ends.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SmartFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_in: Option<u64>,
}

impl ExtraTokenFields for SmartFields {}

pub type SmartTokenResponse = StandardTokenResponse<SmartFields, BasicTokenType>;

type SmartClient = oauth2::Client<
    BasicErrorResponse,
    SmartTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// How the client proves itself at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum ClientAuth {
    /// A public client: only its id, in the form.
    None,
    /// `client_secret_basic`: HTTP Basic.
    Basic,
    /// `client_secret_post`: id and secret in the form.
    Post,
    /// `private_key_jwt`: a client assertion signed by the instance key, in the form.
    #[serde(rename = "private_key_jwt")]
    #[sqlx(rename = "private_key_jwt")]
    PrivateKeyJwt,
}

impl ClientAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Basic => "basic",
            ClientAuth::Post => "post",
            ClientAuth::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// Everything needed to talk OAuth with one provider on behalf of one connection.
#[derive(Clone, Serialize, Deserialize)]
pub struct OAuthClient {
    pub authorize_url: String,
    pub token_url: String,
    pub client_id: String,
    /// In memory only: sealed whenever it is stored.
    #[serde(skip)]
    pub client_secret: Option<String>,
    pub client_auth: ClientAuth,
    /// Needed for the authorization and the code exchange, not for refreshing.
    pub redirect_uri: Option<String>,
    /// How this provider departs from plain OAuth2 (none for SMART servers).
    #[serde(default)]
    pub quirks: OAuthQuirks,
    /// For `private_key_jwt`: which instance key signs (the registration's choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_alg: Option<KeyAlg>,
    /// For `private_key_jwt`: the key itself, looked up when the client is about to be used.
    #[serde(skip)]
    pub assertion_key: Option<Arc<AssertionKey>>,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret and the key are left out, so a debug log never holds them.
        f.debug_struct("OAuthClient")
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("has_client_secret", &self.client_secret.is_some())
            .field("client_auth", &self.client_auth)
            .field("redirect_uri", &self.redirect_uri)
            .field("quirks", &self.quirks)
            .field("signing_alg", &self.signing_alg)
            .finish_non_exhaustive()
    }
}

/// Departures from the standard flow that some non-FHIR APIs make, kept with the connection
/// (column `oauth_quirks`) so a refresh months later speaks the same dialect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthQuirks {
    /// A plain OAuth2 API rather than a FHIR server: no `aud` parameter on the authorization.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_fhir: bool,
    /// Extra form fields on every token request (Withings wants `action=requesttoken`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_params: Vec<(String, String)>,
    /// The field the token endpoint wraps its answer in (Withings: `{"status": 0, "body": {...}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_envelope: Option<String>,
}

/// Why a step of the flow failed. [`SmartError::message`] is what the Sources page says;
/// [`SmartError::detail`] is the protocol's side, behind "Details" (and `Display`, for the log).
#[derive(Debug, thiserror::Error)]
pub enum SmartError {
    /// Already in the family's words.
    #[error("{0}")]
    Input(String),
    #[error("Fasten could not find the sign-in endpoints of {base}: {reason}")]
    Discovery { base: String, reason: String },
    /// The provider refused (invalid_grant, invalid_client...): the user must act.
    #[error("the provider refused: {detail}")]
    Refused { message: String, detail: String },
    /// The provider could not be reached or answered nonsense: trying again later may work.
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
}

impl SmartError {
    /// What happened and what to do, in one or two plain sentences.
    pub fn message(&self) -> String {
        match self {
            SmartError::Input(message) | SmartError::Refused { message, .. } => message.clone(),
            SmartError::Discovery { .. } => "Fasten could not find this provider's sign-in at \
                 that address, so nothing was connected. Check the FHIR base URL and try again."
                .into(),
            SmartError::Unreachable(_) => "Fasten could not reach the provider's sign-in \
                 service, so nothing was connected. Try again in a few minutes."
                .into(),
        }
    }

    /// What the provider or the network said, for "Details".
    pub fn detail(&self) -> Option<String> {
        match self {
            SmartError::Input(_) => None,
            SmartError::Discovery { base, reason } => Some(format!("{base}: {reason}")),
            SmartError::Refused { detail, .. } => Some(detail.clone()),
            SmartError::Unreachable(reason) => Some(reason.clone()),
        }
    }

    /// A refusal from the provider's OAuth `error` code, for the page.
    pub fn refused(code: &str, description: Option<&str>) -> SmartError {
        let message = match code {
            "access_denied" => {
                "Access was not granted at the provider, so nothing was \
                 connected. Connect again if you want to allow it."
            }
            "invalid_grant" => {
                "The provider says this sign-in is no longer valid, so nothing \
                 was connected. Connect again to sign in anew."
            }
            "invalid_client" => {
                "The provider did not accept this app's client id or secret, so \
                 nothing was connected. Check them against the app's registration and connect \
                 again."
            }
            "unauthorized_client" => {
                "The provider does not allow this app to sign in this \
                 way, so nothing was connected. Check the app's registration with the provider."
            }
            "invalid_scope" => {
                "The provider did not accept the access Fasten asked for, so \
                 nothing was connected. Check that the app's registration allows patient access."
            }
            _ => {
                "The provider refused the sign-in, so nothing was connected. Try connecting \
                 again."
            }
        };
        let detail = match description.map(str::trim).filter(|d| !d.is_empty()) {
            Some(description) => format!("{code}: {description}"),
            None => code.to_string(),
        };
        SmartError::Refused {
            message: message.into(),
            detail,
        }
    }
}

/// The sign-in endpoints of a FHIR server and whether it speaks SMART v2 scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub authorize_url: String,
    pub token_url: String,
    pub smart_v2: bool,
}

/// A FHIR base URL as typed by a person: trimmed, without a trailing slash, http(s) only.
pub fn normalize_base(input: &str) -> Result<Url, SmartError> {
    let trimmed = input.trim().trim_end_matches('/');
    let url = Url::parse(trimmed).map_err(|_| {
        SmartError::Input(format!(
            "{trimmed:?} is not a web address; a FHIR base URL looks like https://fhir.example.org/api/FHIR/R4"
        ))
    })?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(SmartError::Input(format!(
            "{trimmed:?} is not an https address"
        )));
    }
    Ok(url)
}

fn origin_pattern(url: &Url) -> Result<HostPattern, SmartError> {
    HostPattern::origin_of(url)
        .ok_or_else(|| SmartError::Input(format!("{url} has no host Fasten can connect to")))
}

/// Finds the endpoints: `{base}/.well-known/smart-configuration`, else the CapabilityStatement's
/// oauth-uris extension (older servers).
pub async fn discover(plugins: &PluginHost, base: &Url) -> Result<Endpoints, SmartError> {
    let gate = plugins.host_gate(vec![origin_pattern(base)?]);
    let base_str = base.as_str().trim_end_matches('/');
    let failed = |reason: String| SmartError::Discovery {
        base: base_str.to_string(),
        reason,
    };
    let well_known = gate
        .get_json(&format!("{base_str}/.well-known/smart-configuration"))
        .await;
    let (authorize, token, smart_v2) = match well_known {
        Ok(config) => {
            let text = |key: &str| config.get(key).and_then(|v| v.as_str()).map(String::from);
            let smart_v2 = config
                .get("capabilities")
                .and_then(|c| c.as_array())
                .is_some_and(|c| c.iter().any(|v| v.as_str() == Some("permission-v2")));
            (
                text("authorization_endpoint"),
                text("token_endpoint"),
                smart_v2,
            )
        }
        Err(first) => {
            let metadata = gate
                .get_json(&format!("{base_str}/metadata"))
                .await
                .map_err(|second| failed(format!("{first}; {second}")))?;
            let (authorize, token) = oauth_uris(&metadata);
            (authorize, token, false)
        }
    };
    match (authorize, token) {
        (Some(authorize_url), Some(token_url)) => {
            for url in [&authorize_url, &token_url] {
                normalize_base(url).map_err(|e| failed(e.to_string()))?;
            }
            Ok(Endpoints {
                authorize_url,
                token_url,
                smart_v2,
            })
        }
        _ => Err(failed(
            "the server does not advertise SMART sign-in (no authorization and token endpoints)"
                .into(),
        )),
    }
}

/// `rest[].security.extension[oauth-uris].extension[authorize|token].valueUri`.
fn oauth_uris(capability: &serde_json::Value) -> (Option<String>, Option<String>) {
    let mut authorize = None;
    let mut token = None;
    let rests = capability.get("rest").and_then(|r| r.as_array());
    for ext in rests
        .into_iter()
        .flatten()
        .filter_map(|rest| rest.pointer("/security/extension")?.as_array())
        .flatten()
        .filter(|e| e.get("url").and_then(|u| u.as_str()) == Some(OAUTH_URIS))
        .filter_map(|e| e.get("extension")?.as_array())
        .flatten()
    {
        let value = ext
            .get("valueUri")
            .and_then(|v| v.as_str())
            .map(String::from);
        match ext.get("url").and_then(|u| u.as_str()) {
            Some("authorize") => authorize = authorize.or(value),
            Some("token") => token = token.or(value),
            _ => {}
        }
    }
    (authorize, token)
}

impl OAuthClient {
    fn build(&self) -> Result<SmartClient, SmartError> {
        let bad = |what: &str, e: oauth2::url::ParseError| {
            SmartError::Input(format!("the {what} is not a valid address: {e}"))
        };
        let mut client = oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_auth_uri(
                AuthUrl::new(self.authorize_url.clone()).map_err(|e| bad("authorize URL", e))?,
            )
            .set_token_uri(TokenUrl::new(self.token_url.clone()).map_err(|e| bad("token URL", e))?)
            .set_auth_type(match self.client_auth {
                ClientAuth::Basic => AuthType::BasicAuth,
                ClientAuth::Post | ClientAuth::None | ClientAuth::PrivateKeyJwt => {
                    AuthType::RequestBody
                }
            });
        if let Some(uri) = &self.redirect_uri {
            client = client.set_redirect_uri(
                RedirectUrl::new(uri.clone()).map_err(|e| bad("redirect URI", e))?,
            );
        }
        if let Some(secret) = &self.client_secret
            && matches!(self.client_auth, ClientAuth::Basic | ClientAuth::Post)
        {
            client = client.set_client_secret(ClientSecret::new(secret.clone()));
        }
        Ok(client)
    }

    /// The provider's sign-in URL for a new authorization, with the state and PKCE verifier
    /// Fasten must keep for the callback.
    pub fn authorize(&self, fhir_base: &str, scopes: &str) -> Result<Authorization, SmartError> {
        let client = self.build()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(scopes.split_whitespace().map(|s| Scope::new(s.to_string())))
            .set_pkce_challenge(challenge);
        if !self.quirks.not_fhir {
            request = request.add_extra_param("aud", fhir_base);
        }
        let (url, state) = request.url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the callback's code for tokens.
    pub async fn exchange_code(
        &self,
        plugins: &PluginHost,
        code: &str,
        pkce_verifier: &str,
    ) -> Result<Tokens, SmartError> {
        let client = self.build()?;
        let http_client = self.token_http_client(plugins)?;
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()));
        for (name, value) in self.token_params()? {
            request = request.add_extra_param(name, value);
        }
        let response = request
            .request_async(&http_client)
            .await
            .map_err(describe_token_error)?;
        Ok(Tokens::from_response(&response, None))
    }

    /// Trades the refresh token for a new access token. A provider that does not rotate refresh
    /// tokens answers without one: the old one then stays.
    pub async fn refresh(
        &self,
        plugins: &PluginHost,
        refresh_token: &str,
    ) -> Result<Tokens, SmartError> {
        let client = self.build()?;
        let http_client = self.token_http_client(plugins)?;
        let refresh = RefreshToken::new(refresh_token.to_string());
        let mut request = client.exchange_refresh_token(&refresh);
        for (name, value) in self.token_params()? {
            request = request.add_extra_param(name, value);
        }
        let response = request
            .request_async(&http_client)
            .await
            .map_err(describe_token_error)?;
        Ok(Tokens::from_response(&response, Some(refresh_token)))
    }

    /// The extra form fields of one token request: the platform's, and for `private_key_jwt` a
    /// client assertion signed for this request alone (a fresh `jti` every time, never reused).
    fn token_params(&self) -> Result<Vec<(String, String)>, SmartError> {
        let mut params = self.quirks.token_params.clone();
        if self.client_auth == ClientAuth::PrivateKeyJwt {
            let key = self.assertion_key.as_ref().ok_or_else(|| {
                SmartError::Input(
                    "Fasten has no signing key for this app registration, so it cannot sign in. \
                     Ask your administrator to open Admin → Provider apps."
                        .into(),
                )
            })?;
            let assertion = key
                .sign(&self.client_id, &self.token_url)
                .map_err(|e| SmartError::Input(format!("{e:#}")))?;
            params.push(("client_assertion_type".into(), JWT_BEARER.into()));
            params.push(("client_assertion".into(), assertion));
        }
        Ok(params)
    }

    /// oauth2's HTTP client for the token endpoint: requests go through a gate allowing only
    /// that endpoint's origin, so policy and limits apply.
    fn token_http_client(
        &self,
        plugins: &PluginHost,
    ) -> Result<
        impl Fn(oauth2::HttpRequest) -> BoxFuture<'static, Result<oauth2::HttpResponse, HttpFailure>>,
        SmartError,
    > {
        let url = normalize_base(&self.token_url)?;
        let gate = plugins.host_gate(vec![origin_pattern(&url)?]);
        let envelope = self.quirks.token_envelope.clone();
        // Each future owns its gate: a borrowed one makes the future's type higher-ranked,
        // which the Send check of the job runner cannot see through.
        Ok(move |request| {
            let gate = gate.clone();
            let envelope = envelope.clone();
            Box::pin(async move {
                let response = send_through(&gate, request).await?;
                Ok(match envelope {
                    Some(field) => unwrap_envelope(response, &field),
                    None => response,
                })
            }) as BoxFuture<'static, _>
        })
    }
}

/// A started authorization.
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub pkce_verifier: String,
}

/// Tokens from a token response, with expiry as Unix seconds.
#[derive(Clone)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub access_expires_at: Option<i64>,
    /// How long the access token lasts (`expires_in`), in seconds.
    pub access_lifetime: Option<i64>,
    pub refresh_expires_at: Option<i64>,
    pub scope: Option<String>,
    pub patient: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token, even in a debug log.
        f.debug_struct("Tokens")
            .field("access_expires_at", &self.access_expires_at)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("scope", &self.scope)
            .field("patient", &self.patient)
            .finish()
    }
}

impl Tokens {
    fn from_response(response: &SmartTokenResponse, previous_refresh: Option<&str>) -> Tokens {
        let now = crate::store::unix_now();
        let extra = response.extra_fields();
        Tokens {
            access_token: response.access_token().secret().clone(),
            refresh_token: response
                .refresh_token()
                .map(|t| t.secret().clone())
                .or_else(|| previous_refresh.map(String::from)),
            access_expires_at: response
                .expires_in()
                .map(|d| now + d.as_secs().min(10 * 365 * 86400) as i64),
            access_lifetime: response
                .expires_in()
                .map(|d| d.as_secs().min(10 * 365 * 86400) as i64),
            refresh_expires_at: extra
                .refresh_expires_in
                .map(|s| now + s.min(10 * 365 * 86400) as i64),
            scope: response.scopes().map(|scopes| {
                scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            patient: extra.patient.clone(),
        }
    }
}

/// One oauth2 request through the gate.
async fn send_through(
    gate: &http::HttpGate,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, HttpFailure> {
    let (parts, body) = request.into_parts();
    let headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let response = gate
        .send(http::Request {
            method: parts.method.to_string(),
            url: parts.uri.to_string(),
            headers,
            body: Some(body),
        })
        .await?;
    let mut builder = ::http::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(response.body)
        .map_err(|e| HttpFailure::Network(format!("unreadable answer: {e}")))
}

/// Turns an enveloped token answer into the plain OAuth2 one the oauth2 crate reads:
/// `{"status": 0, "body": {tokens}}` becomes `{tokens}`, and a non-zero status (always sent with
/// HTTP 200) becomes an HTTP 400 OAuth2 error carrying the provider's message, so a refused
/// refresh is recognised as one.
fn unwrap_envelope(response: oauth2::HttpResponse, field: &str) -> oauth2::HttpResponse {
    let (mut parts, body) = response.into_parts();
    let Ok(serde_json::Value::Object(mut outer)) = serde_json::from_slice(&body) else {
        return oauth2::HttpResponse::from_parts(parts, body);
    };
    let status = outer.get("status").and_then(serde_json::Value::as_i64);
    let unwrapped = match (status, outer.remove(field)) {
        (Some(0) | None, Some(inner)) if inner.is_object() => inner,
        // "Too many requests": try again later rather than ask the user to reconnect.
        (Some(601), _) => {
            parts.status = ::http::StatusCode::SERVICE_UNAVAILABLE;
            return oauth2::HttpResponse::from_parts(parts, b"rate limited (status 601)".to_vec());
        }
        _ => {
            let message = outer
                .get("error")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("no reason given");
            parts.status = ::http::StatusCode::BAD_REQUEST;
            serde_json::json!({
                "error": "invalid_grant",
                "error_description": format!("status {}: {message}", status.unwrap_or(-1)),
            })
        }
    };
    oauth2::HttpResponse::from_parts(parts, unwrapped.to_string().into_bytes())
}

fn describe_token_error<RE: std::error::Error + 'static>(
    error: RequestTokenError<RE, BasicErrorResponse>,
) -> SmartError {
    match error {
        RequestTokenError::ServerResponse(response) => SmartError::refused(
            response.error().as_ref(),
            response.error_description().map(String::as_str),
        ),
        RequestTokenError::Request(e) => SmartError::Unreachable(e.to_string()),
        RequestTokenError::Parse(e, _) => SmartError::Unreachable(format!(
            "the token endpoint's answer was not understood: {e}"
        )),
        RequestTokenError::Other(e) => SmartError::Unreachable(e),
    }
}

/// SHA-256, for state values and session ids kept only as hashes.
pub fn hash(value: &str) -> Vec<u8> {
    Sha256::digest(value.as_bytes()).to_vec()
}

/// The redirect URI providers send the browser back to.
pub fn redirect_uri(public_url: &str) -> String {
    format!("{}/sources/callback", public_url.trim_end_matches('/'))
}

/// Labels that bind each sealed value to its place.
pub mod labels {
    pub fn access(source_id: i64) -> String {
        format!("connection/{source_id}/access")
    }
    pub fn refresh(source_id: i64) -> String {
        format!("connection/{source_id}/refresh")
    }
    pub fn client_secret(source_id: i64) -> String {
        format!("connection/{source_id}/client-secret")
    }
    pub fn pending(state_hash_hex: &str) -> String {
        format!("pending/{state_hash_hex}")
    }
}

/// A time in words relative to now, for token expiry on the Sources page.
pub fn in_words(seconds: i64) -> String {
    let d = Duration::from_secs(seconds.unsigned_abs());
    let (n, unit) = match d.as_secs() {
        s if s < 120 => (s, "second"),
        s if s < 7200 => (s / 60, "minute"),
        s if s < 2 * 86400 => (s / 3600, "hour"),
        s => (s / 86400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_statement_endpoints_are_found() {
        let cap = serde_json::json!({"rest": [{"security": {"extension": [{
        "url": OAUTH_URIS,
        "extension": [
            {"url": "token", "valueUri": "https://auth.example/token"},
            {"url": "authorize", "valueUri": "https://auth.example/authorize"}
        ]}]}}]});
        assert_eq!(
            oauth_uris(&cap),
            (
                Some("https://auth.example/authorize".into()),
                Some("https://auth.example/token".into())
            )
        );
        assert_eq!(oauth_uris(&serde_json::json!({})), (None, None));
    }

    #[test]
    fn base_urls_are_normalised_and_checked() {
        assert_eq!(
            normalize_base(" https://fhir.example.org/R4/ ")
                .unwrap()
                .as_str(),
            "https://fhir.example.org/R4"
        );
        assert!(normalize_base("fhir.example.org").is_err());
        assert!(normalize_base("ftp://fhir.example.org").is_err());
    }

    #[test]
    fn an_enveloped_token_answer_is_unwrapped_and_a_refusal_becomes_an_oauth_error() {
        let answer = |body: &str| {
            let response = ::http::Response::builder()
                .status(200)
                .body(body.as_bytes().to_vec())
                .unwrap();
            let out = unwrap_envelope(response, "body");
            let json: serde_json::Value = serde_json::from_slice(out.body()).unwrap_or_default();
            (out.status().as_u16(), json)
        };
        let (status, json) = answer(
            r#"{"status":0,"body":{"access_token":"a","token_type":"Bearer","expires_in":10800}}"#,
        );
        assert_eq!(status, 200);
        assert_eq!(json["access_token"], "a");
        let (status, json) =
            answer(r#"{"status":503,"body":{},"error":"Invalid Params: invalid refresh_token"}"#);
        assert_eq!(status, 400);
        assert_eq!(json["error"], "invalid_grant");
        assert_eq!(
            json["error_description"],
            "status 503: Invalid Params: invalid refresh_token"
        );
        assert_eq!(answer(r#"{"status":601,"body":{}}"#).0, 503);
    }

    #[test]
    fn authorization_url_carries_pkce_state_and_audience() {
        let client = OAuthClient {
            authorize_url: "https://auth.example/authorize".into(),
            token_url: "https://auth.example/token".into(),
            client_id: "my-app".into(),
            client_secret: None,
            client_auth: ClientAuth::None,
            redirect_uri: Some("http://127.0.0.1:9090/sources/callback".into()),
            quirks: OAuthQuirks::default(),
            signing_alg: None,
            assertion_key: None,
        };
        let auth = client
            .authorize("https://fhir.example/R4", "launch/patient patient/*.read")
            .unwrap();
        let url = Url::parse(&auth.url).unwrap();
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(query["aud"], "https://fhir.example/R4");
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["state"], auth.state);
        assert_eq!(query["scope"], "launch/patient patient/*.read");
        assert_eq!(
            query["redirect_uri"],
            "http://127.0.0.1:9090/sources/callback"
        );
        assert!(auth.pkce_verifier.len() >= 43);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(in_words(3 * 86400 + 5), "3 days");
        assert_eq!(in_words(3600), "60 minutes");
        assert_eq!(in_words(1), "1 second");
    }
}
