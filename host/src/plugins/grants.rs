//! The one place that answers "may this plugin reach this URL?". Deny by default: a plugin may
//! reach only origins its manifest asks for *and* the operator granted (bundled plugins are
//! granted what they ask), with "connection" standing for the API base of the connection being
//! synced.

use url::Url;

/// One allowed origin pattern: `scheme://host[:port]`, where host may be `*.suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl HostPattern {
    pub fn parse(pattern: &str) -> Result<HostPattern, String> {
        let (scheme, rest) = pattern
            .split_once("://")
            .ok_or_else(|| format!("{pattern:?} is not scheme://host[:port]"))?;
        if !matches!(scheme, "https" | "http") {
            return Err(format!("{pattern:?}: only http and https are possible"));
        }
        if rest.contains('/') || rest.is_empty() {
            return Err(format!("{pattern:?} must be an origin without a path"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !h.ends_with(':') => (
                h.to_string(),
                Some(
                    p.parse()
                        .map_err(|_| format!("{pattern:?} has a bad port"))?,
                ),
            ),
            _ => (rest.to_string(), None),
        };
        Ok(HostPattern {
            scheme: scheme.into(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The origin of a connection's base URL.
    pub fn origin_of(url: &Url) -> Option<HostPattern> {
        Some(HostPattern {
            scheme: url.scheme().into(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port(),
        })
    }

    pub fn matches(&self, url: &Url) -> bool {
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return false;
        };
        if url.scheme() != self.scheme || url.port_or_known_default() != self.effective_port() {
            return false;
        }
        match self.host.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => host == self.host,
        }
    }

    fn effective_port(&self) -> Option<u16> {
        self.port.or(match self.scheme.as_str() {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        })
    }
}

/// What one run of a plugin may reach.
#[derive(Debug, Clone, Default)]
pub struct NetworkGrant {
    pub allowed: Vec<HostPattern>,
}

impl NetworkGrant {
    /// The manifest's requests that the operator granted, with "connection" resolved to the
    /// connection's API origin (absent for file imports, so it grants nothing there).
    pub fn effective(
        requested: &[String],
        granted: &[String],
        connection: Option<&Url>,
    ) -> NetworkGrant {
        let mut allowed = Vec::new();
        for request in requested.iter().filter(|r| granted.contains(r)) {
            if request == "connection" {
                if let Some(origin) = connection.and_then(HostPattern::origin_of) {
                    allowed.push(origin);
                }
            } else if let Ok(pattern) = HostPattern::parse(request) {
                allowed.push(pattern);
            }
        }
        NetworkGrant { allowed }
    }

    pub fn allows(&self, url: &Url) -> bool {
        self.allowed.iter().any(|p| p.matches(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn empty_grants_allow_nothing() {
        assert!(!NetworkGrant::default().allows(&url("https://example.com/")));
        let grant = NetworkGrant::effective(&["https://api.example.com".into()], &[], None);
        assert!(!grant.allows(&url("https://api.example.com/x")));
    }

    #[test]
    fn exact_origins_match_scheme_host_and_port() {
        let requested = vec![
            "https://api.example.com".to_string(),
            "http://127.0.0.1:8080".to_string(),
        ];
        let grant = NetworkGrant::effective(&requested, &requested, None);
        assert!(grant.allows(&url("https://api.example.com/fhir/Patient")));
        assert!(grant.allows(&url("https://API.example.com:443/")));
        assert!(!grant.allows(&url("http://api.example.com/")), "scheme");
        assert!(!grant.allows(&url("https://api.example.com:8443/")), "port");
        assert!(grant.allows(&url("http://127.0.0.1:8080/a")));
        assert!(!grant.allows(&url("http://127.0.0.1:8081/a")));
    }

    #[test]
    fn wildcards_match_subdomains_only_and_escapes_fail() {
        let requested = vec!["https://*.example.com".to_string()];
        let grant = NetworkGrant::effective(&requested, &requested, None);
        assert!(grant.allows(&url("https://a.example.com/")));
        assert!(grant.allows(&url("https://a.b.example.com/")));
        assert!(!grant.allows(&url("https://example.com/")));
        assert!(!grant.allows(&url("https://evilexample.com/")));
        assert!(!grant.allows(&url("https://example.com.evil.net/")));
        assert!(!grant.allows(&url("https://a.example.com@evil.net/")));
    }

    #[test]
    fn connection_means_the_connection_origin_only() {
        let requested = vec!["connection".to_string()];
        let base = url("https://fhir.hospital.org/r4/");
        let grant = NetworkGrant::effective(&requested, &requested, Some(&base));
        assert!(grant.allows(&url("https://fhir.hospital.org/r4/Patient/1")));
        assert!(!grant.allows(&url("https://other.org/")));
        let none = NetworkGrant::effective(&requested, &requested, None);
        assert!(!none.allows(&url("https://fhir.hospital.org/")));
    }
}
