//! The `http` capability: outbound requests on a plugin's behalf.
//!
//! Every request and every redirect hop is checked against the run's [`NetworkGrant`]; only
//! https is allowed (plain http only to loopback, and only when the operator's config allows it,
//! as tests need); names that resolve to private or loopback addresses are refused unless allowed;
//! bodies and time are capped; an Authorization header never follows a redirect to another host.
//! The bearer token of a connection is added here, by the host, only for the connection's own
//! origin: the plugin never sees it.

use std::net::IpAddr;
use std::time::Duration;

use url::Url;

use super::grants::{HostPattern, NetworkGrant};

pub const MAX_REDIRECTS: usize = 5;
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
pub const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    /// Plain http to loopback addresses (tests, local development).
    pub allow_http_loopback: bool,
    /// Private, loopback and link-local destinations (tests, home-lab FHIR servers).
    pub allow_private_networks: bool,
}

/// Everything one run's http capability needs.
#[derive(Clone)]
pub struct HttpGate {
    pub grant: NetworkGrant,
    pub policy: NetworkPolicy,
    /// The connection's origin and its bearer token, added to requests bound there.
    pub bearer: Option<(HostPattern, String)>,
    pub client: reqwest::Client,
}

pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub enum HttpFailure {
    Denied(String),
    Timeout,
    TooLarge,
    Network(String),
}

/// A client that never follows redirects by itself: [`HttpGate::send`] checks each hop.
pub fn build_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .user_agent(concat!("Fasten-On-Prem/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a reqwest client with static settings")
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // CGNAT 100.64/10
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

impl HttpGate {
    /// Checks one hop; returns the addresses it may connect to.
    async fn check(&self, url: &Url) -> Result<(), HttpFailure> {
        let host = url
            .host_str()
            .ok_or_else(|| HttpFailure::Denied(format!("{url} has no host")))?;
        if !self.grant.allows(url) {
            return Err(HttpFailure::Denied(format!(
                "{} is not among the hosts this plugin may reach",
                origin(url)
            )));
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let addresses: Vec<IpAddr> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| HttpFailure::Network(format!("cannot resolve {host}: {e}")))?
            .map(|a| a.ip())
            .collect();
        let loopback_only = !addresses.is_empty() && addresses.iter().all(IpAddr::is_loopback);
        match url.scheme() {
            "https" => {}
            "http" if self.policy.allow_http_loopback && loopback_only => {}
            _ => {
                return Err(HttpFailure::Denied(format!(
                    "{} is not https; plugins may only use https",
                    origin(url)
                )));
            }
        }
        let private_ok = self.policy.allow_private_networks
            || (self.policy.allow_http_loopback && loopback_only);
        if !private_ok && addresses.iter().any(|ip| is_private(*ip)) {
            return Err(HttpFailure::Denied(format!(
                "{host} resolves to a private or local address"
            )));
        }
        Ok(())
    }

    pub async fn send(&self, request: Request) -> Result<Response, HttpFailure> {
        let method = reqwest::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| HttpFailure::Denied(format!("bad method {:?}", request.method)))?;
        let mut url = Url::parse(&request.url)
            .map_err(|e| HttpFailure::Denied(format!("bad URL {:?}: {e}", request.url)))?;
        let first_origin = HostPattern::origin_of(&url);
        let mut method = method;
        let mut body = request.body;
        for _hop in 0..=MAX_REDIRECTS {
            self.check(&url).await?;
            let same_origin = HostPattern::origin_of(&url) == first_origin;
            let mut builder = self.client.request(method.clone(), url.clone());
            for (name, value) in &request.headers {
                // A plugin-supplied Authorization header does not travel to another host.
                if name.eq_ignore_ascii_case("authorization") && !same_origin {
                    continue;
                }
                if name.eq_ignore_ascii_case("host") {
                    continue;
                }
                builder = builder.header(name.as_str(), value.as_str());
            }
            if let Some((origin, token)) = &self.bearer
                && origin.matches(&url)
            {
                builder = builder.bearer_auth(token);
            }
            if let Some(bytes) = &body {
                builder = builder.body(bytes.clone());
            }
            let response = builder.send().await.map_err(|e| {
                if e.is_timeout() {
                    HttpFailure::Timeout
                } else {
                    HttpFailure::Network(without_url(&e))
                }
            })?;
            if response.status().is_redirection()
                && let Some(location) = response.headers().get(reqwest::header::LOCATION)
            {
                let location = location.to_str().map_err(|_| {
                    HttpFailure::Network("a redirect with an unreadable Location".into())
                })?;
                url = url
                    .join(location)
                    .map_err(|e| HttpFailure::Network(format!("a redirect to a bad URL: {e}")))?;
                if response.status() == reqwest::StatusCode::SEE_OTHER {
                    method = reqwest::Method::GET;
                    body = None;
                }
                continue;
            }
            return read_response(response).await;
        }
        Err(HttpFailure::Network(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }
}

async fn read_response(mut response: reqwest::Response) -> Result<Response, HttpFailure> {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    if response
        .content_length()
        .is_some_and(|n| n as usize > MAX_BODY_BYTES)
    {
        return Err(HttpFailure::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        if e.is_timeout() {
            HttpFailure::Timeout
        } else {
            HttpFailure::Network(without_url(&e))
        }
    })? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(HttpFailure::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// reqwest errors print the URL, which may carry query parameters a log should not keep.
fn without_url(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    if let Some(url) = e.url() {
        message = message.replace(url.as_str(), &origin(url));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_recognised() {
        for ip in [
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
