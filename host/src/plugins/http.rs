//! The `http` capability: outbound requests on a plugin's behalf.
//!
//! Every request and every redirect hop is checked against the run's [`NetworkGrant`]; only
//! https is allowed (plain http only to loopback, and only when the operator's config allows it,
//! as tests need); names that resolve to private or loopback addresses are refused unless allowed,
//! both when a hop is checked and again when the connection is made, so a name cannot answer a
//! public address to the check and a private one to the connection (DNS rebinding); bodies and
//! time are capped; an Authorization header never follows a redirect to another host.
//! The bearer token of a connection is added here, by the host, only for the connection's own
//! origin: the plugin never sees it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
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

/// The credentials of a connection, added by the host to requests for the connection's own API.
/// The implementation (in `sources`) refreshes tokens and records when it no longer can.
pub trait BearerAuth: Send + Sync {
    /// Whether requests to `url` get the token: only the connection's own origin does.
    fn covers(&self, url: &Url) -> bool;
    /// A current access token, refreshed first when it is about to expire; `None` when there is
    /// none to be had (the request then goes without, and the provider answers 401).
    fn token(&self) -> BoxFuture<'_, Option<String>>;
    /// The provider answered 401 to `rejected`: refresh once. True when a new token is ready.
    fn refresh_after_rejection(&self, rejected: String) -> BoxFuture<'_, bool>;
}

/// What one run's requests cost, for the job record and the sync benchmark.
#[derive(Debug, Default)]
pub struct HttpStats {
    pub requests: AtomicU64,
    /// Time spent waiting for responses, in microseconds.
    pub waiting_micros: AtomicU64,
}

impl HttpStats {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn waiting(&self) -> Duration {
        Duration::from_micros(self.waiting_micros.load(Ordering::Relaxed))
    }
}

/// Everything one run's http capability needs.
#[derive(Clone)]
pub struct HttpGate {
    pub grant: NetworkGrant,
    /// The connection's credentials, added to requests bound for its origin.
    pub bearer: Option<Arc<dyn BearerAuth>>,
    /// The network policy travels with the clients, so the gate's check and the connections its
    /// clients make can never disagree about it.
    pub clients: Clients,
    pub stats: Arc<HttpStats>,
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

#[derive(Debug, thiserror::Error)]
pub enum HttpFailure {
    #[error("refused: {0}")]
    Denied(String),
    #[error("no answer within {} seconds", TIMEOUT.as_secs())]
    Timeout,
    #[error("the answer was larger than {} MiB", MAX_BODY_BYTES >> 20)]
    TooLarge,
    #[error("{0}")]
    Network(String),
}

/// How long an idle connection is kept for reuse: less than common servers' keep-alive timeout.
pub const IDLE_CONNECTION: Duration = Duration::from_secs(4);

/// Turns a host name into addresses. Tests replace it to play a DNS server that changes its
/// answer between the check and the connection.
type Lookup = dyn Fn(String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> + Send + Sync;

fn system_lookup(host: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
    Box::pin(async move {
        Ok(tokio::net::lookup_host((host.as_str(), 0))
            .await?
            .map(|a| a.ip())
            .collect())
    })
}

/// The clients of one network policy. Their connections go only to addresses the policy
/// allows, whatever the name resolves to by then: the check before a hop gives the plugin a
/// clear refusal, this is what makes it hold.
#[derive(Clone)]
pub struct Clients {
    policy: NetworkPolicy,
    lookup: Arc<Lookup>,
    https: reqwest::Client,
    /// Plain http is for loopback only, a rule the resolver can only apply knowing the scheme.
    plain_http: reqwest::Client,
}

impl Clients {
    pub fn new(policy: NetworkPolicy) -> Clients {
        Clients::with_lookup(policy, Arc::new(system_lookup))
    }

    fn with_lookup(policy: NetworkPolicy, lookup: Arc<Lookup>) -> Clients {
        let client = |plain_http: bool| {
            let resolver = Screening {
                policy: policy.clone(),
                plain_http,
                lookup: lookup.clone(),
            };
            // Redirects are never followed by the client: [`HttpGate::send`] checks each hop.
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .https_only(!plain_http)
                .dns_resolver(Arc::new(resolver))
                .timeout(TIMEOUT)
                // A server may close a keep-alive connection once it has been idle for its own
                // timeout (5 s in Node.js); reusing one it is closing fails the request with
                // "connection reset". Idle connections are dropped before that.
                .pool_idle_timeout(IDLE_CONNECTION)
                .user_agent(concat!("Fasten-On-Prem/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("a reqwest client with static settings")
        };
        Clients {
            https: client(false),
            plain_http: client(true),
            policy,
            lookup,
        }
    }

    fn for_url(&self, url: &Url) -> &reqwest::Client {
        if url.scheme() == "http" {
            &self.plain_http
        } else {
            &self.https
        }
    }
}

/// Why a destination's addresses may not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    PlainHttp,
    Private,
}

/// The policy on where a request may go, given every address its host resolves to. One private
/// address among public ones refuses them all: a mixed answer is what a rebinding server sends.
fn screen(policy: &NetworkPolicy, plain_http: bool, addresses: &[IpAddr]) -> Result<(), Refusal> {
    let loopback_only = !addresses.is_empty() && addresses.iter().all(IpAddr::is_loopback);
    if plain_http && !(policy.allow_http_loopback && loopback_only) {
        return Err(Refusal::PlainHttp);
    }
    let private_ok = policy.allow_private_networks || (policy.allow_http_loopback && loopback_only);
    if !private_ok && addresses.iter().any(|ip| is_private(*ip)) {
        return Err(Refusal::Private);
    }
    Ok(())
}

/// Whether `policy` lets plain http reach a URL's host as written: an IP literal, or `localhost`
/// (which resolves to loopback). For checking an address an administrator types before anything
/// is sent; the gate screens the resolved addresses again at download time.
pub(crate) fn plain_http_allowed(policy: &NetworkPolicy, url: &Url) -> bool {
    let address = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(url::Host::Domain(name)) if name.eq_ignore_ascii_case("localhost") => {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        _ => return false,
    };
    screen(policy, true, &[address]).is_ok()
}

fn not_https(place: &str) -> String {
    format!("{place} is not https; plugins may only use https")
}

fn private_destination(host: &str) -> String {
    format!("{host} resolves to a private or local address")
}

/// A connection refused by [`Screening`], told to the plugin as a denial rather than a network
/// error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// The clients' resolver: connections go only to addresses that pass [`screen`]. Names in IP
/// literal form never reach it; [`HttpGate::check`] screens those, and they cannot change.
struct Screening {
    policy: NetworkPolicy,
    plain_http: bool,
    lookup: Arc<Lookup>,
}

impl reqwest::dns::Resolve for Screening {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let policy = self.policy.clone();
        let plain_http = self.plain_http;
        let lookup = self.lookup.clone();
        Box::pin(async move {
            let addresses = lookup(host.clone()).await?;
            screen(&policy, plain_http, &addresses).map_err(|refusal| {
                Refused(match refusal {
                    Refusal::PlainHttp => not_https(&format!("http://{host}")),
                    Refusal::Private => private_destination(&host),
                })
            })?;
            // Port 0 stands for the URL's port.
            let addresses: reqwest::dns::Addrs =
                Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addresses)
        })
    }
}

/// Whether an address is one plugins may not reach without `allow_private_networks`: anything
/// but a public unicast host.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_documentation()
                || v4.octets()[0] == 0 // "this network"; 0.0.0.0 reaches the host itself
                || v4.octets()[0] >= 224 // multicast, reserved and broadcast
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // CGNAT 100.64/10
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || (first & 0xffc0) == 0xfec0 // site local, deprecated but still routed
                || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || embedded_ipv4(v6)
                    .into_iter()
                    .any(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// The IPv4 hosts an IPv6 address reaches through a translator or tunnel, which is where a
/// connection to it ends up.
fn embedded_ipv4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = v6.segments();
    let v4 = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    match s {
        // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d).
        _ if v6.to_ipv4().is_some() => v6.to_ipv4().into_iter().collect(),
        // NAT64, the well-known prefix and the local-use /48 (taken as holding a /96, the usual
        // layout, with the IPv4 address last).
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 1, ..] => vec![v4(s[6], s[7])],
        // 6to4: the IPv4 address follows the prefix.
        [0x2002, ..] => vec![v4(s[1], s[2])],
        // Teredo: the server, and the client, whose address is stored inverted.
        [0x2001, 0, ..] => vec![v4(s[2], s[3]), v4(!s[6], !s[7])],
        _ => Vec::new(),
    }
}

impl HttpGate {
    /// Checks one hop, so that a refusal reaches the plugin in words; [`Screening`] applies the
    /// same policy again to the addresses actually connected to.
    async fn check(&self, url: &Url) -> Result<(), HttpFailure> {
        let host = url
            .host()
            .ok_or_else(|| HttpFailure::Denied(format!("{url} has no host")))?;
        if !self.grant.allows(url) {
            return Err(HttpFailure::Denied(format!(
                "{} is not among the hosts this plugin may reach",
                origin(url)
            )));
        }
        let plain_http = match url.scheme() {
            "https" => false,
            "http" if self.clients.policy.allow_http_loopback => true,
            _ => return Err(HttpFailure::Denied(not_https(&origin(url)))),
        };
        let addresses = match host {
            url::Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
            url::Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
            url::Host::Domain(name) => (self.clients.lookup)(name.to_string())
                .await
                .map_err(|e| HttpFailure::Network(format!("cannot resolve {name}: {e}")))?,
        };
        screen(&self.clients.policy, plain_http, &addresses).map_err(|refusal| {
            HttpFailure::Denied(match refusal {
                Refusal::PlainHttp => not_https(&origin(url)),
                Refusal::Private => private_destination(&host.to_string()),
            })
        })
    }

    /// A GET for the host's own use (discovery, the glossary): the JSON body of a 200, else why
    /// not, in words.
    pub async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let response = self
            .send(Request {
                method: "GET".into(),
                url: url.to_string(),
                headers: vec![("Accept".into(), "application/json".into())],
                body: None,
            })
            .await
            .map_err(|e| e.to_string())?;
        if response.status != 200 {
            return Err(format!("{url} answered HTTP {}", response.status));
        }
        serde_json::from_slice(&response.body).map_err(|_| format!("{url} did not answer JSON"))
    }

    /// A GET for the host's own use whose body the caller reads a chunk at a time, within
    /// `timeout` for the whole transfer: for documents larger than [`MAX_BODY_BYTES`] (the
    /// provider directory's lists). Every redirect hop is checked as for [`HttpGate::send`].
    pub async fn get_streaming(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<reqwest::Response, HttpFailure> {
        let mut url =
            Url::parse(url).map_err(|e| HttpFailure::Denied(format!("bad URL {url:?}: {e}")))?;
        for _hop in 0..=MAX_REDIRECTS {
            self.check(&url).await?;
            let response = self
                .clients
                .for_url(&url)
                .get(url.clone())
                .timeout(timeout)
                .send()
                .await
                .map_err(failure_of)?;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            if let Some(next) = redirect_target(&url, &response)? {
                url = next;
                continue;
            }
            return Ok(response);
        }
        Err(HttpFailure::Network(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    pub async fn send(&self, request: Request) -> Result<Response, HttpFailure> {
        let started = Instant::now();
        let result = self.send_following_redirects(request).await;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .waiting_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        result
    }

    async fn send_following_redirects(&self, request: Request) -> Result<Response, HttpFailure> {
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
            let hop = Hop {
                method: &method,
                url: &url,
                headers: &request.headers,
                body: body.as_deref(),
                same_origin,
            };
            let (mut response, token) = self.send_hop(&hop).await?;
            // A 401 with the host's token: refresh once and try again (tokens can expire
            // mid-sync, and some providers revoke early). The plugin only sees the outcome.
            if response.status() == reqwest::StatusCode::UNAUTHORIZED
                && let (Some(bearer), Some(rejected)) = (&self.bearer, token)
                && bearer.refresh_after_rejection(rejected).await
            {
                response = self.send_hop(&hop).await?.0;
            }
            if let Some(next) = redirect_target(&url, &response)? {
                url = next;
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

    /// One request, with the connection's token when it is bound for the connection's origin.
    /// Returns the token it used, so a 401 can say which one was refused.
    async fn send_hop(
        &self,
        hop: &Hop<'_>,
    ) -> Result<(reqwest::Response, Option<String>), HttpFailure> {
        let mut builder = self
            .clients
            .for_url(hop.url)
            .request(hop.method.clone(), hop.url.clone());
        for (name, value) in hop.headers {
            // A plugin-supplied Authorization header does not travel to another host, and never
            // replaces the host's own credentials.
            if name.eq_ignore_ascii_case("authorization")
                && (!hop.same_origin || self.bearer.is_some())
            {
                continue;
            }
            if name.eq_ignore_ascii_case("host") {
                continue;
            }
            builder = builder.header(name.as_str(), value.as_str());
        }
        let mut token = None;
        if let Some(bearer) = &self.bearer
            && bearer.covers(hop.url)
            && let Some(current) = bearer.token().await
        {
            builder = builder.bearer_auth(&current);
            token = Some(current);
        }
        if let Some(bytes) = hop.body {
            builder = builder.body(bytes.to_vec());
        }
        let response = builder.send().await.map_err(failure_of)?;
        Ok((response, token))
    }
}

struct Hop<'a> {
    method: &'a reqwest::Method,
    url: &'a Url,
    headers: &'a [(String, String)],
    body: Option<&'a [u8]>,
    same_origin: bool,
}

/// A request that got no answer, in the plugin's terms: refused by the gate's resolver (a
/// private address), timed out, or a network error (without the URL, which may hold a query).
fn failure_of(e: reqwest::Error) -> HttpFailure {
    if let Some(refused) = refused_in(&e) {
        HttpFailure::Denied(refused.0.clone())
    } else if e.is_timeout() {
        HttpFailure::Timeout
    } else {
        HttpFailure::Network(without_url(&e))
    }
}

/// Where a redirect sends the request next, resolved against the URL that answered; `None` when
/// the response is not a redirect (or names no Location).
fn redirect_target(url: &Url, response: &reqwest::Response) -> Result<Option<Url>, HttpFailure> {
    let Some(location) = response
        .headers()
        .get(reqwest::header::LOCATION)
        .filter(|_| response.status().is_redirection())
    else {
        return Ok(None);
    };
    let location = location
        .to_str()
        .map_err(|_| HttpFailure::Network("a redirect with an unreadable Location".into()))?;
    url.join(location)
        .map(Some)
        .map_err(|e| HttpFailure::Network(format!("a redirect to a bad URL: {e}")))
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

/// The resolver's refusal, if that is why a request failed.
fn refused_in(e: &reqwest::Error) -> Option<&Refused> {
    std::iter::successors(std::error::Error::source(e), |e| e.source())
        .find_map(|e| e.downcast_ref::<Refused>())
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
        let teredo = |server: Ipv4Addr, client: Ipv4Addr| -> IpAddr {
            let [s0, s1, s2, s3] = server.octets();
            let [c0, c1, c2, c3] = client.octets().map(|b| !b);
            let s = |a: u8, b: u8| u16::from_be_bytes([a, b]);
            Ipv6Addr::new(
                0x2001,
                0,
                s(s0, s1),
                s(s2, s3),
                0x8000,
                0x63bf,
                s(c0, c1),
                s(c2, c3),
            )
            .into()
        };
        let teredo_server = Ipv4Addr::new(65, 54, 227, 120);
        let private: Vec<IpAddr> = [
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::7f00:1",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::127.0.0.1",
            "64:ff9b:1::c0a8:101",
            "2002:c0a8:0101::1",
            "2002:7f00:1::1",
        ]
        .iter()
        .map(|ip| ip.parse().unwrap())
        .chain([
            teredo(teredo_server, Ipv4Addr::new(192, 168, 1, 1)),
            teredo(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(8, 8, 8, 8)),
        ])
        .collect();
        for ip in private {
            assert!(is_private(ip), "{ip}");
        }
        let public: Vec<IpAddr> = [
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "::808:808",
            "64:ff9b::808:808",
            "64:ff9b:1::808:808",
            "2002:808:808::1",
        ]
        .iter()
        .map(|ip| ip.parse().unwrap())
        .chain([teredo(teredo_server, Ipv4Addr::new(8, 8, 8, 8))])
        .collect();
        for ip in public {
            assert!(!is_private(ip), "{ip}");
        }
    }

    #[test]
    fn the_policy_screens_every_address_a_name_resolves_to() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let strict = NetworkPolicy::default();
        let loopback = NetworkPolicy {
            allow_http_loopback: true,
            ..Default::default()
        };
        let private = NetworkPolicy {
            allow_private_networks: true,
            ..Default::default()
        };
        let public = [ip("93.184.216.34")];
        let mixed = [ip("93.184.216.34"), ip("10.0.0.1")];
        let local = [ip("127.0.0.1"), ip("::1")];
        let cases = [
            (&strict, false, &public[..], Ok(())),
            (&strict, false, &mixed[..], Err(Refusal::Private)),
            (&strict, false, &local[..], Err(Refusal::Private)),
            (&strict, true, &local[..], Err(Refusal::PlainHttp)),
            (&loopback, true, &local[..], Ok(())),
            (&loopback, false, &local[..], Ok(())),
            (&loopback, true, &public[..], Err(Refusal::PlainHttp)),
            (&loopback, false, &mixed[..], Err(Refusal::Private)),
            (&private, false, &mixed[..], Ok(())),
            (&private, true, &local[..], Err(Refusal::PlainHttp)),
        ];
        for (policy, plain_http, addresses, expected) in cases {
            assert_eq!(
                screen(policy, plain_http, addresses),
                expected,
                "{policy:?}, plain http {plain_http}, {addresses:?}"
            );
        }
    }

    /// A DNS server that answers `first` once, then `then`: what a rebinding attacker runs.
    fn rebinding(first: &str, then: &str) -> (Arc<Lookup>, Arc<AtomicU64>) {
        let asked = Arc::new(AtomicU64::new(0));
        let (first, then): (IpAddr, IpAddr) = (first.parse().unwrap(), then.parse().unwrap());
        let lookup: Arc<Lookup> = Arc::new({
            let asked = asked.clone();
            move |_host| {
                let answer = if asked.fetch_add(1, Ordering::SeqCst) == 0 {
                    first
                } else {
                    then
                };
                Box::pin(async move { Ok(vec![answer]) })
            }
        });
        (lookup, asked)
    }

    /// A local server that counts the connections it accepts.
    async fn counting_listener() -> (u16, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU64::new(0));
        tokio::spawn({
            let accepted = accepted.clone();
            async move {
                while listener.accept().await.is_ok() {
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        (port, accepted)
    }

    fn gate(origin: &str, policy: NetworkPolicy, lookup: Arc<Lookup>) -> HttpGate {
        HttpGate {
            grant: NetworkGrant {
                allowed: vec![HostPattern::parse(origin).unwrap()],
            },
            bearer: None,
            clients: Clients::with_lookup(policy, lookup),
            stats: Arc::default(),
        }
    }

    async fn get(gate: &HttpGate, url: &str) -> Result<Response, HttpFailure> {
        gate.send(Request {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
        })
        .await
    }

    #[tokio::test]
    async fn a_name_on_loopback_is_reached_when_the_policy_allows_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let origin = format!("http://fasten.test:{port}");
        let (lookup, asked) = rebinding("127.0.0.1", "127.0.0.1");
        let policy = NetworkPolicy {
            allow_http_loopback: true,
            ..Default::default()
        };
        let reply = get(&gate(&origin, policy, lookup), &format!("{origin}/"))
            .await
            .unwrap();
        assert_eq!((reply.status, reply.body.as_slice()), (200, &b"ok"[..]));
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_name_that_rebinds_to_a_private_address_is_never_connected_to() {
        let (port, accepted) = counting_listener().await;
        let origin = format!("https://rebind.test:{port}");
        let (lookup, asked) = rebinding("93.184.216.34", "127.0.0.1");
        let gate = gate(&origin, NetworkPolicy::default(), lookup);
        match get(&gate, &format!("{origin}/")).await {
            Err(HttpFailure::Denied(why)) => {
                assert_eq!(why, "rebind.test resolves to a private or local address")
            }
            Err(other) => panic!("expected a denial, got {other}"),
            Ok(r) => panic!("expected a denial, got HTTP {}", r.status),
        }
        assert_eq!(
            asked.load(Ordering::SeqCst),
            2,
            "resolved for the check, then again for the connection"
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "the private address saw nothing"
        );
    }

    #[tokio::test]
    async fn plain_http_that_rebinds_away_from_loopback_is_refused() {
        let (port, accepted) = counting_listener().await;
        let origin = format!("http://rebind.test:{port}");
        let policy = NetworkPolicy {
            allow_http_loopback: true,
            ..Default::default()
        };
        let (lookup, _) = rebinding("127.0.0.1", "93.184.216.34");
        let gate = gate(&origin, policy, lookup);
        match get(&gate, &format!("{origin}/")).await {
            Err(HttpFailure::Denied(why)) => assert!(why.contains("not https"), "{why}"),
            Err(other) => panic!("expected a denial, got {other}"),
            Ok(r) => panic!("expected a denial, got HTTP {}", r.status),
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
    }
}
