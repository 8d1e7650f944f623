//! Requests to hosts other than the provider's API: what a rule type's data sources call
//! (OSV, an SPDX list, a project's badge API). Rule types are written by people who are not
//! the operator, so every such request is treated as an attempt to reach inside the network
//! until shown otherwise (server-side request forgery):
//!
//! - the URL is parsed as a browser would (WHATWG): `http://2852039166/`, `http://0177.0.0.1/`
//!   and `http://127.1/` are the IPv4 addresses they spell, and are checked as such;
//! - only `https` is allowed, except for hosts the operator put on an allowlist;
//! - every address a name resolves to is checked against the IANA special-purpose registries
//!   (IPv4 and IPv6: loopback, private, shared 100.64/10, link-local, documentation, benchmark,
//!   multicast, reserved, v4-mapped, v4-compatible, NAT64, 6to4, Teredo, ULA, ...) and the whole
//!   name is refused if any one address is not public: a resolver returning one public and one
//!   private address must not get a second chance at the private one;
//! - the connection is made to exactly the addresses that were checked (the check is the DNS
//!   resolver of the HTTP client itself), so a second lookup cannot answer differently
//!   (DNS rebinding); environment proxies are ignored, since a proxy would resolve on its own;
//! - redirects are followed (at most five) only to URLs that pass the same checks;
//! - responses are read up to a byte cap, within a time limit; no credentials are ever sent.
//!
//! Refusals happen before any connection is made, and say which rule was broken.

use bytes::Bytes;
use http::Method;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// What may be reached, and how much may be read.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    /// Hosts that may be reached over plain `http://` (exact names, lower case). Their
    /// addresses are still checked.
    pub http_allowed_hosts: Vec<String>,
    /// Hosts that may be reached although they are, or resolve to, loopback, private or other
    /// special-purpose addresses: an internal mirror an operator names (a vulnerability
    /// database inside the network). Each is `host` or `host:port` (a name or an IP literal,
    /// IPv6 with or without brackets); with a port, only that port. Nothing else is.
    pub private_allowed_hosts: Vec<String>,
    /// Response bodies are cut here (the rest is not read).
    pub max_body_bytes: usize,
    /// Whole-request time limit (connect, send, read).
    pub timeout: Duration,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        EgressPolicy {
            http_allowed_hosts: Vec::new(),
            private_allowed_hosts: Vec::new(),
            max_body_bytes: 1 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why the egress policy refused a request, before or while connecting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("not a URL: {0}")]
    NotAUrl(#[source] url::ParseError),
    #[error("credentials in the URL are not allowed")]
    Credentials,
    #[error("no host")]
    NoHost,
    #[error(
        "plain http to {0} is not allowed (https only, unless the operator allowlists the host)"
    )]
    PlainHttp(String),
    #[error("scheme {0:?} is not allowed")]
    Scheme(String),
    #[error("{0} resolves to loopback")]
    Localhost(String),
    #[error("address {ip} is {why}")]
    Address { ip: IpAddr, why: &'static str },
    #[error("{host} resolves to {ip}, which is {why}")]
    Resolved {
        host: String,
        ip: IpAddr,
        why: &'static str,
    },
    #[error("redirect to {url} refused: {refusal}")]
    Redirect {
        url: String,
        #[source]
        refusal: Box<Refusal>,
    },
    #[error("header {0} may not be set by a rule type")]
    Header(String),
}

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("url {url:?} refused: {reason}")]
    Refused {
        url: String,
        #[source]
        reason: Refusal,
    },
    #[error("{method} {url}: {source}")]
    Transport {
        method: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("egress client: {0}")]
    Config(#[source] reqwest::Error),
}

impl EgressError {
    /// Whether the request was refused by policy (never worth retrying).
    pub fn is_refusal(&self) -> bool {
        matches!(self, EgressError::Refused { .. })
    }
}

/// The IANA IPv4 and IPv6 special-purpose address registries (as of 2025), plus multicast and
/// the v4-in-v6 forms, all refused as destinations.
static FORBIDDEN: LazyLock<Vec<(IpNet, &'static str)>> = LazyLock::new(|| {
    [
        ("0.0.0.0/8", "\"this network\""),
        ("10.0.0.0/8", "private-use"),
        ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private-use"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.31.196.0/24", "AS112"),
        ("192.52.193.0/24", "AMT"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private-use"),
        ("192.175.48.0/24", "AS112 direct delegation"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("255.255.255.255/32", "limited broadcast"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        (
            "2001::/23",
            "IETF protocol assignments (Teredo, ORCHID, ...)",
        ),
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    ]
    .into_iter()
    .filter_map(|(net, why)| net.parse::<IpNet>().ok().map(|n| (n, why)))
    .collect()
});

/// Why `ip` may not be a destination, or `None` when it is a public address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    FORBIDDEN
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, why)| *why)
}

/// Checks a URL's form before anything is resolved: scheme, allowlist, credentials in the URL,
/// and a host that is an address literal (in any of the forms a URL parser accepts).
pub fn check_url(url: &str, policy: &EgressPolicy) -> Result<reqwest::Url, EgressError> {
    let refuse = |reason: Refusal| EgressError::Refused {
        url: url.to_string(),
        reason,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| refuse(Refusal::NotAUrl(e)))?;
    check_parsed(&parsed, policy).map_err(refuse)?;
    Ok(parsed)
}

fn check_parsed(url: &reqwest::Url, policy: &EgressPolicy) -> Result<(), Refusal> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Credentials);
    }
    let host = match url.host() {
        None => return Err(Refusal::NoHost),
        Some(h) => h,
    };
    let host_name = host.to_string().to_ascii_lowercase();
    match url.scheme() {
        "https" => {}
        "http"
            if policy
                .http_allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host_name.trim_end_matches('.'))) => {}
        "http" => return Err(Refusal::PlainHttp(host_name)),
        other => return Err(Refusal::Scheme(other.to_string())),
    }
    if private_allowed(
        &policy.private_allowed_hosts,
        &host_name,
        url.port_or_known_default(),
    ) {
        return Ok(());
    }
    let literal = match host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(d) => {
            // RFC 6761: `localhost` and every name under it are loopback, whatever DNS says.
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if d == "localhost" || d.ends_with(".localhost") {
                return Err(Refusal::Localhost(d));
            }
            None
        }
    };
    if let Some(ip) = literal {
        if let Some(why) = forbidden_reason(ip) {
            return Err(Refusal::Address { ip, why });
        }
    }
    Ok(())
}

/// A host as compared: lower case, without IPv6 brackets or a trailing dot.
fn bare_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// An allowance entry as `(host, port)`: `host`, `host:port`, `[v6]`, `[v6]:port` or a bare
/// IPv6 literal (its colons are not a port).
fn allowance(entry: &str) -> (String, Option<u16>) {
    let entry = entry.trim();
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (bare_host(host), port);
        }
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            (bare_host(host), port.parse().ok())
        }
        _ => (bare_host(entry), None),
    }
}

/// Whether `host` (and `port`, when known) is one the operator allowed despite its address.
fn private_allowed(entries: &[String], host: &str, port: Option<u16>) -> bool {
    let host = bare_host(host);
    entries.iter().any(|e| {
        let (h, p) = allowance(e);
        h == host && (p.is_none() || port.is_none() || p == port)
    })
}

/// Whether a redirect to `url` may be followed: the same checks as the first URL (the resolver
/// checks the addresses when it connects).
fn may_follow(url: &reqwest::Url, policy: &EgressPolicy) -> Result<(), Refusal> {
    check_parsed(url, policy).map_err(|refusal| Refusal::Redirect {
        url: url.to_string(),
        refusal: Box::new(refusal),
    })
}

/// The first refusal in an error's chain: the redirect policy's and the resolver's reach the
/// client as the source of its error, so they are found by type.
fn refusal_in(error: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    let mut chain = Some(error);
    while let Some(e) = chain {
        if let Some(refusal) = e.downcast_ref::<Refusal>() {
            return Some(refusal.clone());
        }
        chain = e.source();
    }
    None
}

/// The addresses a name resolves to, eventually.
pub type LookupFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Looks names up; replaceable so tests can make a name resolve to any address.
pub trait NameLookup: Send + Sync + 'static {
    fn lookup(&self, host: String) -> LookupFuture;
}

/// The operating system's resolver (`getaddrinfo`).
pub struct SystemLookup;

impl NameLookup for SystemLookup {
    fn lookup(&self, host: String) -> LookupFuture {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// The HTTP client's resolver: resolves, then refuses the name unless every address is public.
struct GuardedResolver {
    lookup: Arc<dyn NameLookup>,
    /// Names whose special-purpose addresses the operator allowed.
    private_allowed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to no address")]
struct NoAddress {
    host: String,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let lookup = self.lookup.lookup(host.clone());
        // The port was checked with the URL (check_parsed); names only here.
        let allowed = private_allowed(&self.private_allowed, &host, None);
        Box::pin(async move {
            let ips = lookup.await?;
            if ips.is_empty() {
                // Not a refusal: DNS may answer next time, so the request may be retried.
                return Err(
                    Box::new(NoAddress { host }) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            if let Some((ip, why)) = ips
                .iter()
                .filter(|_| !allowed)
                .find_map(|ip| forbidden_reason(*ip).map(|w| (*ip, w)))
            {
                return Err(Box::new(Refusal::Resolved { host, ip, why })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// A response from an egress request (body cut at the policy's cap).
#[derive(Debug, Clone)]
pub struct EgressResponse {
    pub status: u16,
    pub body: Bytes,
}

/// The client for requests outside the provider's API. Cheap to clone.
#[derive(Clone)]
pub struct Egress {
    client: reqwest::Client,
    policy: Arc<EgressPolicy>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("policy", &self.policy)
            .finish()
    }
}

impl Egress {
    pub fn new(policy: EgressPolicy) -> Result<Self, EgressError> {
        Self::with_lookup(policy, Arc::new(SystemLookup))
    }

    /// With a resolver of the caller's (tests: names that resolve to private addresses).
    pub fn with_lookup(
        policy: EgressPolicy,
        lookup: Arc<dyn NameLookup>,
    ) -> Result<Self, EgressError> {
        let redirect_policy = {
            let policy = policy.clone();
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    return attempt.error("too many redirects");
                }
                match may_follow(attempt.url(), &policy) {
                    Ok(()) => attempt.follow(),
                    Err(refusal) => attempt.error(refusal),
                }
            })
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                lookup,
                private_allowed: policy.private_allowed_hosts.clone(),
            }))
            .redirect(redirect_policy)
            .connect_timeout(Duration::from_secs(10).min(policy.timeout))
            .timeout(policy.timeout)
            .user_agent("plumbline")
            .build()
            .map_err(EgressError::Config)?;
        Ok(Egress {
            client,
            policy: Arc::new(policy),
        })
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// Sends one request, without credentials. Refused (before connecting) when the URL or any
    /// address its host resolves to breaks the policy.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(String, String)],
        body: Option<Vec<u8>>,
    ) -> Result<EgressResponse, EgressError> {
        let parsed = check_url(url, &self.policy)?;
        let transport = |source: reqwest::Error| {
            // A refusal by the resolver or the redirect policy is a refusal, not a network error.
            match refusal_in(&source) {
                Some(reason) => EgressError::Refused {
                    url: url.to_string(),
                    reason,
                },
                None => EgressError::Transport {
                    method: method.to_string(),
                    url: url.to_string(),
                    source,
                },
            }
        };
        let mut req = self.client.request(method.clone(), parsed);
        for (k, v) in headers {
            // Credentials are never sent through egress, whatever a rule type asks for.
            if k.eq_ignore_ascii_case("authorization")
                || k.eq_ignore_ascii_case("cookie")
                || k.eq_ignore_ascii_case("proxy-authorization")
            {
                return Err(EgressError::Refused {
                    url: url.to_string(),
                    reason: Refusal::Header(k.clone()),
                });
            }
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            let room = self.policy.max_body_bytes.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if buf.len() >= self.policy.max_body_bytes {
                break;
            }
        }
        Ok(EgressResponse {
            status,
            body: buf.freeze(),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_redirect_to_a_forbidden_place_is_a_refusal_found_through_the_chain() {
        let policy = super::EgressPolicy::default();
        let ok = reqwest::Url::parse("https://example.com/next").expect("url");
        assert_eq!(super::may_follow(&ok, &policy), Ok(()));
        let metadata = reqwest::Url::parse("https://169.254.169.254/latest").expect("url");
        let refusal = super::may_follow(&metadata, &policy).expect_err("refused");
        assert!(matches!(
            &refusal,
            super::Refusal::Redirect { refusal, .. }
                if matches!(**refusal, super::Refusal::Address { .. })
        ));
        // As the HTTP client reports it: its error, whose source is the policy's refusal.
        #[derive(Debug, thiserror::Error)]
        #[error("error following redirect")]
        struct ClientError(#[source] Box<dyn std::error::Error + Send + Sync>);
        let reported = ClientError(Box::new(refusal.clone()));
        assert_eq!(super::refusal_in(&reported), Some(refusal));
        let network = ClientError(Box::new(std::io::Error::other("connection reset")));
        assert_eq!(super::refusal_in(&network), None);
        let plain = reqwest::Url::parse("http://example.com/").expect("url");
        assert!(matches!(
            super::may_follow(&plain, &policy),
            Err(super::Refusal::Redirect { refusal, .. }) if matches!(*refusal, super::Refusal::PlainHttp(_))
        ));
    }

    use super::*;

    #[test]
    fn special_purpose_ranges_are_forbidden_and_public_addresses_are_not() {
        for ip in [
            "8.8.8.8",
            "140.82.112.6",
            "2606:4700::1111",
            "2a00:1450:4001::1",
        ] {
            assert_eq!(forbidden_reason(ip.parse().expect("ip")), None, "{ip}");
        }
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "169.254.169.254",
            "172.31.0.1",
            "192.168.1.1",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::127.0.0.1",
        ] {
            assert!(
                forbidden_reason(ip.parse().expect("ip")).is_some(),
                "{ip} must be refused"
            );
        }
    }

    #[test]
    fn only_the_private_hosts_an_operator_names_are_reachable() {
        let p = EgressPolicy {
            http_allowed_hosts: vec!["127.0.0.1".into()],
            private_allowed_hosts: vec!["127.0.0.1".into(), "osv.corp".into()],
            ..EgressPolicy::default()
        };
        assert!(check_url("http://127.0.0.1:8080/v1/query", &p).is_ok());
        assert!(check_url("https://osv.corp/v1/query", &p).is_ok());
        // The same address however it is spelled (the URL parser normalizes it first).
        assert!(check_url("http://127.1:8080/", &p).is_ok());
        // With a port, only that port; IPv6 with or without brackets.
        let p = EgressPolicy {
            private_allowed_hosts: vec![
                "10.0.0.5:8443".into(),
                "::1".into(),
                "[fd00::2]:443".into(),
            ],
            ..EgressPolicy::default()
        };
        assert!(check_url("https://10.0.0.5:8443/v1", &p).is_ok());
        assert!(
            check_url("https://10.0.0.5/v1", &p).is_err(),
            "another port"
        );
        assert!(check_url("https://[::1]/", &p).is_ok());
        assert!(check_url("https://[fd00::2]/", &p).is_ok());
        assert!(check_url("https://[fd00::2]:8443/", &p).is_err());
        // Nothing else private: not another loopback spelling, not localhost, not the
        // metadata address, and not over http unless allowed for http too.
        for url in [
            "http://127.0.0.2/",
            "https://localhost/",
            "https://169.254.169.254/latest/meta-data/",
            "http://osv.corp/",
        ] {
            assert!(check_url(url, &p).is_err(), "{url}");
        }
        assert!(check_url("https://127.0.0.1/", &EgressPolicy::default()).is_err());
    }

    #[test]
    fn url_forms_are_parsed_as_browsers_do() {
        let p = EgressPolicy {
            http_allowed_hosts: vec!["osv.internal".into()],
            ..EgressPolicy::default()
        };
        for url in [
            "https://2852039166/",
            "https://0xa9.0xfe.0xa9.0xfe/",
            "https://0251.0376.0251.0376/",
            "https://127.1/",
            "https://[::ffff:7f00:1]/",
        ] {
            let e = check_url(url, &p).expect_err(url);
            assert!(
                e.is_refusal() && e.to_string().contains("address"),
                "{url}: {e}"
            );
        }
        assert!(check_url("http://example.com/", &p)
            .expect_err("http")
            .to_string()
            .contains("https only"));
        assert!(
            check_url("http://osv.internal/v1/query", &p).is_ok(),
            "allowlisted http host"
        );
        assert!(
            check_url("https://user:pw@example.com/", &p).is_err(),
            "credentials in the URL"
        );
        assert!(check_url("file:///etc/passwd", &p).is_err());
        assert!(check_url("gopher://example.com/", &p).is_err());
        assert!(check_url("https://api.osv.dev/v1/query", &p).is_ok());
    }
}
