//! Reading the signatures stored beside an image in an OCI registry.
//!
//! Two places hold them: cosign's `sha256-<hex>.sig` tag (one simple-signing layer per signature,
//! the signature material in annotations) and OCI referrers whose artifact is a Sigstore bundle
//! (the referrers API, or, where the registry answers 404 to it, the OCI 1.1 referrers tag schema
//! `sha256-<hex>`). Manifests and index types come from oci-client; the HTTP reads are made here
//! on the same reqwest client oci-client uses, because oci-client 0.18 reads manifests and
//! referrer indexes whole (no size cap) and sends Basic credentials to whichever token realm a
//! registry names. Here every body is capped while it streams (`max_manifest_bytes` for manifests,
//! indexes and tokens, the much smaller `max_signature_bytes` for signature blobs), every request
//! has a timeout, one `signatures` call makes at most `max_requests` requests, and credentials go
//! only to the configured host: a token realm on another host is asked anonymously, and redirects
//! (blob storage) carry no `Authorization` (reqwest drops it on a cross-host redirect).
//!
//! Everything under the image's `.sig` tag and referrers is pushed by whoever can push to the
//! package, that is, by the repository whose signatures are being judged. So what that content
//! does (too large, not parsing, not matching its digest, costing too many requests) is never an
//! `Err`: an `Err` reads as "could not check" and raises no alert, which would let a repository
//! turn a failing verdict into silence. It becomes evidence that is signed but not verified.
//! `Err` is kept for what says nothing about the image: the registry unreachable, timing out,
//! failing (5xx, 429), refusing the credentials.
//!
//! Where the registry may send this client (a token realm, a redirect) is checked too, since the
//! client runs inside the cluster: only `https` (plain `http` only from a plain-HTTP loopback test
//! registry to its own host), and no loopback, private or link-local address literal unless the
//! registry itself is on loopback. Host names are not resolved for this check: it stops a
//! registry from naming internal addresses, not DNS tricks.
//!
//! The crate's own fetching (rather than sigstore-rs's `cosign::Client`) also keeps the "signed
//! but not verified" signal: that client drops layers that fail to verify.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use oci_client::manifest::{OciImageIndex, OciImageManifest};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::error::untrusted;
use crate::evidence::CosignSignature;
use crate::{Error, Evidence, EvidenceSource, ImageRef};

/// Where and how to read a registry.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `ghcr.io`, or `127.0.0.1:5000` for a test registry: host and optional port, nothing else.
    pub host: String,
    /// Speak plain HTTP (test registries on loopback only).
    pub plain_http: bool,
    /// Per request, connection included.
    pub timeout: Duration,
    /// Cap on any one manifest, index or token answer.
    pub max_manifest_bytes: usize,
    /// Cap on any one signature blob (a simple-signing payload is under 4 KiB, a Sigstore bundle
    /// under about 256 KiB). A larger one is not read: it is evidence that does not verify.
    pub max_signature_bytes: usize,
    /// Cap on the evidences returned for one image (the rest are ignored, with a warning).
    pub max_signatures: usize,
    /// Cap on the registry requests one `signatures` call makes (manifests, indexes, blobs,
    /// token fetches; the redirects one request follows, at most 5, are not counted apart).
    /// When it runs out, what was read so far is returned with one evidence that does not
    /// verify, saying so.
    pub max_requests: usize,
}

impl RegistryOptions {
    /// HTTPS to `host` with the default caps (4 MiB manifests, 512 KiB signature blobs,
    /// 32 signatures, 64 requests per image, 30 s per request).
    pub fn new(host: impl Into<String>) -> RegistryOptions {
        RegistryOptions {
            host: host.into(),
            plain_http: false,
            timeout: Duration::from_secs(30),
            max_manifest_bytes: 4 << 20,
            max_signature_bytes: 512 << 10,
            max_signatures: 32,
            max_requests: 64,
        }
    }
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions::new("ghcr.io")
    }
}

/// The credentials for the configured registry host.
#[derive(Debug, Clone)]
pub enum RegistryAuth {
    Anonymous,
    /// Sent only to the configured host (directly, or to a token realm on that same host).
    Basic {
        username: String,
        password: SecretString,
    },
}

/// A registry client for one host.
#[derive(Debug, Clone)]
pub struct Registry {
    opts: RegistryOptions,
    base: String,
    destinations: Arc<Destinations>,
    http: reqwest::Client,
}

const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const BUNDLE_MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
const MANIFEST_ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const INDEX_ACCEPT: &str = "application/vnd.oci.image.index.v1+json";
/// Redirects one request may follow (blob storage takes one).
const MAX_REDIRECTS: usize = 5;

impl Registry {
    /// Checks the options and builds the HTTP client (no request is made).
    pub fn new(opts: RegistryOptions) -> Result<Registry, Error> {
        let host_ok = !opts.host.is_empty()
            && opts
                .host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
            && !opts.host.starts_with(['.', '-', ':']);
        if !host_ok {
            return Err(Error::Options(format!(
                "host {:?} is not host[:port]",
                opts.host
            )));
        }
        if opts.max_manifest_bytes == 0
            || opts.max_signature_bytes == 0
            || opts.max_signatures == 0
            || opts.max_requests == 0
            || opts.timeout.is_zero()
        {
            return Err(Error::Options(
                "timeout, max_manifest_bytes, max_signature_bytes, max_signatures and max_requests must be positive".into(),
            ));
        }
        let scheme = if opts.plain_http { "http" } else { "https" };
        let base = format!("{scheme}://{}", opts.host);
        let host = Url::parse(&base)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .ok_or_else(|| Error::Options(format!("host {:?} is not host[:port]", opts.host)))?;
        let destinations = Arc::new(Destinations {
            loopback: is_loopback(&host),
            host,
            plain_http: opts.plain_http,
        });
        let policy = {
            let destinations = destinations.clone();
            reqwest::redirect::Policy::custom(move |attempt| {
                // The first of `previous` is the request itself, not a redirect.
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
                }
                match destinations.check(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(why) => {
                        let refused = format!(
                            "redirect to {} refused: {why}",
                            untrusted(attempt.url().as_str())
                        );
                        attempt.error(refused)
                    }
                }
            })
        };
        let http = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .redirect(policy)
            .build()
            .map_err(Error::Client)?;
        Ok(Registry {
            base,
            destinations,
            opts,
            http,
        })
    }

    /// Every signature stored beside the image: each layer of the cosign `sha256-<hex>.sig` tag,
    /// and each OCI referrer carrying a Sigstore bundle. `Ok(empty)` when there is none. Content
    /// that cannot be read (too large, not parsing, not matching its digest, more requests than
    /// `max_requests`) is evidence that does not verify, not an error. `Err` only when the
    /// registry itself cannot be read: connection, timeout, 5xx or 429, refused credentials, a
    /// token realm or redirect that is refused.
    pub async fn signatures(
        &self,
        image: &ImageRef,
        auth: &RegistryAuth,
    ) -> Result<Vec<Evidence>, Error> {
        let mut session = Session {
            registry: self,
            auth,
            authorization: None,
            requests: 0,
        };
        let mut out = Vec::new();
        let stopped = match self.cosign_tag(&mut session, image, &mut out).await {
            Ok(()) => self
                .referrers(&mut session, image, &mut out)
                .await
                .err()
                .map(|stop| (EvidenceSource::Referrer, stop)),
            Err(stop) => Some((EvidenceSource::CosignTag, stop)),
        };
        if out.len() > self.opts.max_signatures {
            tracing::warn!(
                repository = %image.repository,
                digest = %image.digest,
                found = out.len(),
                cap = self.opts.max_signatures,
                "more signatures than the cap; the rest are ignored"
            );
            out.truncate(self.opts.max_signatures);
        }
        match stopped {
            None => {}
            Some((_, Stop::Failed(error))) => return Err(error),
            Some((source, Stop::Budget)) => {
                tracing::warn!(
                    repository = %image.repository,
                    digest = %image.digest,
                    budget = self.opts.max_requests,
                    "registry request budget ran out; reporting a signature that does not verify"
                );
                // Room for the one evidence that says so, within the cap.
                out.truncate(self.opts.max_signatures.saturating_sub(1));
                out.push(Evidence::unreadable(
                    source,
                    format!(
                        "reading the signatures took more than {} registry requests; the rest were not read",
                        self.opts.max_requests
                    ),
                ));
            }
        }
        Ok(out)
    }

    async fn cosign_tag(
        &self,
        session: &mut Session<'_>,
        image: &ImageRef,
        out: &mut Vec<Evidence>,
    ) -> Result<(), Stop> {
        let path = format!(
            "/v2/{}/manifests/sha256-{}.sig",
            image.repository,
            image.hex()
        );
        let bytes = match session
            .get(&path, MANIFEST_ACCEPT, self.opts.max_manifest_bytes)
            .await?
        {
            Body::Found(bytes) => bytes,
            Body::Missing => return Ok(()),
            Body::Refused(why) => {
                out.push(Evidence::unreadable(
                    EvidenceSource::CosignTag,
                    format!("cosign signature manifest {why}"),
                ));
                return Ok(());
            }
        };
        let manifest: OciImageManifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => {
                out.push(Evidence::unreadable(
                    EvidenceSource::CosignTag,
                    format!(
                        "cosign signature manifest does not parse: {}",
                        untrusted(&e.to_string())
                    ),
                ));
                return Ok(());
            }
        };
        for layer in manifest
            .layers
            .iter()
            .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
        {
            if out.len() >= self.opts.max_signatures {
                break;
            }
            let payload = match self.blob(session, image, &layer.digest).await? {
                Ok(payload) => payload,
                Err(why) => {
                    out.push(Evidence::unreadable(EvidenceSource::CosignTag, why));
                    continue;
                }
            };
            let annotation =
                |key: &str| layer.annotations.as_ref().and_then(|a| a.get(key)).cloned();
            out.push(Evidence::cosign(CosignSignature {
                payload,
                signature: annotation("dev.cosignproject.cosign/signature"),
                certificate: annotation("dev.sigstore.cosign/certificate"),
                rekor_bundle: annotation("dev.sigstore.cosign/bundle"),
            }));
        }
        Ok(())
    }

    async fn referrers(
        &self,
        session: &mut Session<'_>,
        image: &ImageRef,
        out: &mut Vec<Evidence>,
    ) -> Result<(), Stop> {
        if out.len() >= self.opts.max_signatures {
            return Ok(());
        }
        let unreadable = |why: String| Evidence::unreadable(EvidenceSource::Referrer, why);
        let limit = self.opts.max_manifest_bytes;
        let api = format!("/v2/{}/referrers/{}", image.repository, image.digest);
        let index = match session.get(&api, INDEX_ACCEPT, limit).await? {
            Body::Found(bytes) => bytes,
            Body::Refused(why) => {
                out.push(unreadable(format!("referrers index {why}")));
                return Ok(());
            }
            Body::Missing => {
                // No referrers API (404): the OCI 1.1 referrers tag schema.
                let tag = format!("/v2/{}/manifests/sha256-{}", image.repository, image.hex());
                match session.get(&tag, INDEX_ACCEPT, limit).await? {
                    Body::Found(bytes) => bytes,
                    Body::Missing => return Ok(()),
                    Body::Refused(why) => {
                        out.push(unreadable(format!("referrers index {why}")));
                        return Ok(());
                    }
                }
            }
        };
        let index: OciImageIndex = match serde_json::from_slice(&index) {
            Ok(index) => index,
            Err(e) => {
                out.push(unreadable(format!(
                    "referrers index does not parse: {}",
                    untrusted(&e.to_string())
                )));
                return Ok(());
            }
        };
        // Entries that turn out missing, about another image or not bundles yield no evidence,
        // so `max_signatures` alone does not bound what they cost.
        let max_fetched = self.opts.max_signatures.saturating_mul(2);
        let mut fetched = 0usize;
        for entry in &index.manifests {
            if out.len() >= self.opts.max_signatures {
                break;
            }
            // Entries that say what they are and are not bundles are skipped unread.
            if entry
                .artifact_type
                .as_deref()
                .is_some_and(|t| !t.starts_with(BUNDLE_MEDIA_TYPE_PREFIX))
            {
                continue;
            }
            if !valid_digest(&entry.digest) {
                out.push(unreadable(format!(
                    "referrer digest {:?} is not sha256:<hex>",
                    untrusted(&entry.digest)
                )));
                continue;
            }
            if fetched >= max_fetched {
                tracing::warn!(
                    repository = %image.repository,
                    digest = %image.digest,
                    fetched,
                    "referrers index lists more candidate entries than are read; the rest are ignored"
                );
                out.push(unreadable(format!(
                    "the referrers index lists more than {max_fetched} candidate signatures; the rest were not read"
                )));
                break;
            }
            fetched += 1;
            let path = format!("/v2/{}/manifests/{}", image.repository, entry.digest);
            let bytes = match session.get(&path, MANIFEST_ACCEPT, limit).await? {
                Body::Found(bytes) => bytes,
                Body::Missing => continue,
                Body::Refused(why) => {
                    out.push(unreadable(format!("referrer manifest {why}")));
                    continue;
                }
            };
            if sha256_digest(&bytes) != entry.digest {
                out.push(unreadable(format!(
                    "referrer manifest {} served by the registry does not match its digest",
                    entry.digest
                )));
                continue;
            }
            let manifest = match serde_json::from_slice::<OciImageManifest>(&bytes) {
                Ok(manifest) => manifest,
                Err(e) => {
                    out.push(unreadable(format!(
                        "referrer manifest {} does not parse: {}",
                        entry.digest,
                        untrusted(&e.to_string())
                    )));
                    continue;
                }
            };
            let artifact_type = manifest
                .artifact_type
                .as_deref()
                .unwrap_or(manifest.config.media_type.as_str());
            let about_this_image = manifest
                .subject
                .as_ref()
                .is_some_and(|s| s.digest == image.digest);
            if !artifact_type.starts_with(BUNDLE_MEDIA_TYPE_PREFIX) || !about_this_image {
                continue;
            }
            let Some(layer) = manifest
                .layers
                .iter()
                .find(|l| l.media_type.starts_with(BUNDLE_MEDIA_TYPE_PREFIX))
            else {
                out.push(unreadable(
                    "Sigstore bundle referrer has no bundle layer".into(),
                ));
                continue;
            };
            match self.blob(session, image, &layer.digest).await? {
                Ok(bytes) => out.push(Evidence::bundle_bytes(EvidenceSource::Referrer, &bytes)),
                Err(why) => out.push(unreadable(why)),
            }
        }
        Ok(())
    }

    /// A signature blob by digest: `Ok(Err(why))` when the registry serves something other than
    /// that blob (missing, over `max_signature_bytes`, bytes that do not hash to the digest): a
    /// signature that cannot be checked.
    async fn blob(
        &self,
        session: &mut Session<'_>,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Result<Vec<u8>, String>, Stop> {
        if !valid_digest(digest) {
            return Ok(Err(format!(
                "layer digest {:?} is not sha256:<hex>",
                untrusted(digest)
            )));
        }
        let path = format!("/v2/{}/blobs/{digest}", image.repository);
        match session
            .get(&path, "*/*", self.opts.max_signature_bytes)
            .await?
        {
            Body::Missing => Ok(Err(format!("layer {digest} is missing from the registry"))),
            Body::Refused(why) => Ok(Err(format!("layer {digest} {why}"))),
            Body::Found(bytes) if sha256_digest(&bytes) != digest => Ok(Err(format!(
                "layer {digest} served by the registry does not match its digest"
            ))),
            Body::Found(bytes) => Ok(Ok(bytes)),
        }
    }
}

fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Where the registry may send this client (a token realm, a redirect).
#[derive(Debug)]
struct Destinations {
    /// The configured host, without its port, lower case.
    host: String,
    /// The configured host is `localhost` or a loopback address: a test registry.
    loopback: bool,
    plain_http: bool,
}

impl Destinations {
    /// `Err(why)` when `url` is not a place to send a request the registry asked for: not
    /// `https` (plain `http` only from a plain-HTTP loopback registry to its own host), or an
    /// internal address (unless the registry itself is on loopback).
    fn check(&self, url: &Url) -> Result<(), String> {
        let host = url
            .host_str()
            .ok_or("it names no host")?
            .to_ascii_lowercase();
        match url.scheme() {
            "https" => {}
            "http" if self.plain_http && self.loopback && host == self.host => {}
            "http" => return Err(
                "plain http is only allowed from a plain-http loopback registry to its own host"
                    .into(),
            ),
            other => return Err(format!("scheme {:?} is not https", untrusted(other))),
        }
        if !self.loopback && is_internal(&host) {
            return Err(format!(
                "{} is a loopback, private or link-local address",
                untrusted(&host)
            ));
        }
        Ok(())
    }
}

/// An IP literal (as `Url::host_str` writes it: IPv6 in brackets) or a host name.
fn host_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host_ip(host).is_some_and(|ip| ip.is_loopback())
}

/// `localhost` names, and address literals in loopback, private, link-local, shared (CGNAT),
/// unspecified or broadcast ranges (IPv4-mapped IPv6 judged as the IPv4 address).
fn is_internal(host: &str) -> bool {
    let name = host.trim_end_matches('.');
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    host_ip(host).is_some_and(internal_ip)
}

fn internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.to_ipv4_mapped()
                .is_some_and(|v4| internal_ip(IpAddr::V4(v4)))
                || v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Why a `signatures` call stopped before reading everything.
enum Stop {
    /// `max_requests` ran out: what was read is kept, with one evidence saying so.
    Budget,
    /// The registry cannot be read.
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(error: Error) -> Stop {
        Stop::Failed(error)
    }
}

/// One read of registry content.
enum Body {
    Found(Vec<u8>),
    /// 404.
    Missing,
    /// The registry holds it but it is not read (over its cap): why, to be evidence.
    Refused(String),
}

/// One `signatures` call: the authorization obtained on the first challenge is reused, and the
/// requests made are counted against `max_requests`.
struct Session<'a> {
    registry: &'a Registry,
    auth: &'a RegistryAuth,
    authorization: Option<HeaderValue>,
    requests: usize,
}

impl Session<'_> {
    /// Counts one request, or stops when the budget is spent.
    fn spend(&mut self) -> Result<(), Stop> {
        if self.requests >= self.registry.opts.max_requests {
            return Err(Stop::Budget);
        }
        self.requests += 1;
        Ok(())
    }

    /// GET `path` on the registry, the body capped at `limit` bytes.
    async fn get(&mut self, path: &str, accept: &str, limit: usize) -> Result<Body, Stop> {
        let url = format!("{}{path}", self.registry.base);
        let mut challenged = false;
        loop {
            self.spend()?;
            let mut request = self.registry.http.get(&url).header(ACCEPT, accept);
            if let Some(authorization) = &self.authorization {
                request = request.header(AUTHORIZATION, authorization.clone());
            }
            let response = request.send().await.map_err(|source| Error::Request {
                url: url.clone(),
                source,
            })?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .ok_or(Error::Status {
                        url: url.clone(),
                        status: status.as_u16(),
                    })?;
                self.authorization = Some(self.authenticate(&challenge).await?);
                continue;
            }
            if status == StatusCode::NOT_FOUND {
                return Ok(Body::Missing);
            }
            if !status.is_success() {
                return Err(Error::Status {
                    url,
                    status: status.as_u16(),
                }
                .into());
            }
            return match read_capped(response, limit, &url).await {
                Ok(body) => Ok(Body::Found(body)),
                Err(Error::TooLarge { limit, .. }) => {
                    Ok(Body::Refused(format!("is larger than {limit} bytes")))
                }
                Err(error) => Err(error.into()),
            };
        }
    }

    /// Answers a `WWW-Authenticate` challenge with an `Authorization` value.
    async fn authenticate(&mut self, challenge: &str) -> Result<HeaderValue, Stop> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        let params = parse_params(params);
        let basic = match self.auth {
            RegistryAuth::Anonymous => None,
            RegistryAuth::Basic { username, password } => Some(format!(
                "Basic {}",
                B64.encode(format!("{username}:{}", password.expose_secret()))
            )),
        };
        if scheme.eq_ignore_ascii_case("basic") {
            // The configured host itself asks for credentials.
            let value = basic.ok_or_else(|| {
                Error::Auth(format!(
                    "{} asks for credentials and none are configured",
                    self.registry.opts.host
                ))
            })?;
            return Ok(HeaderValue::from_str(&value)
                .map_err(|_| Error::Auth("credentials are not a valid header".into()))?);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Error::Auth(format!(
                "unsupported challenge scheme {:?}",
                untrusted(scheme)
            ))
            .into());
        }
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| Error::Auth("bearer challenge without realm".into()))?;
        let mut url = Url::parse(realm)
            .map_err(|e| Error::Auth(format!("token realm {:?}: {e}", untrusted(realm))))?;
        // The realm is wherever the registry says: not into the cluster, not in clear text.
        self.registry.destinations.check(&url).map_err(|why| {
            Error::Auth(format!("token realm {:?} refused: {why}", untrusted(realm)))
        })?;
        let scheme_ok =
            url.scheme() == "https" || (self.registry.opts.plain_http && url.scheme() == "http");
        let realm_host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => {
                return Err(
                    Error::Auth(format!("token realm {:?} has no host", untrusted(realm))).into(),
                )
            }
        };
        let same_host = realm_host.eq_ignore_ascii_case(&self.registry.opts.host);
        {
            let mut query = url.query_pairs_mut();
            for (k, v) in &params {
                if k == "service" || k == "scope" {
                    query.append_pair(k, v);
                }
            }
        }
        let mut request = self.registry.http.get(url.clone());
        // Credentials only to the configured host (over TLS unless the host is plain HTTP);
        // another host's realm gets an anonymous token request.
        if let (Some(basic), true, true) = (&basic, same_host, scheme_ok) {
            request = request.header(AUTHORIZATION, basic);
        } else if basic.is_some() {
            tracing::warn!(realm = %untrusted(&realm_host), host = %self.registry.opts.host,
                "token realm is not the configured host; asking it anonymously");
        }
        let token_url = url.to_string();
        self.spend()?;
        let response = request.send().await.map_err(|source| Error::Request {
            url: token_url.clone(),
            source,
        })?;
        if !response.status().is_success() {
            return Err(Error::Status {
                url: token_url,
                status: response.status().as_u16(),
            }
            .into());
        }
        let body = read_capped(response, self.registry.opts.max_manifest_bytes, &token_url).await?;
        let token: serde_json::Value =
            serde_json::from_slice(&body).map_err(|source| Error::Manifest {
                url: token_url.clone(),
                source,
            })?;
        let token = token["token"]
            .as_str()
            .or_else(|| token["access_token"].as_str())
            .ok_or_else(|| Error::Auth(format!("{token_url} answered without a token")))?;
        Ok(HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Error::Auth("token is not a valid header".into()))?)
    }
}

/// `key="value", key2=value2` (quoted values may hold commas).
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((key, value.to_string()));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
    url: &str,
) -> Result<Vec<u8>, Error> {
    let too_large = || Error::TooLarge {
        url: url.to_string(),
        limit,
    };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|source| Error::Request {
        url: url.to_string(),
        source,
    })? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_params() {
        let p = parse_params(
            r#"realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/x:pull,push""#,
        );
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://ghcr.io/token".into()),
                ("service".into(), "ghcr.io".into()),
                ("scope".into(), "repository:o/x:pull,push".into()),
            ]
        );
    }

    #[test]
    fn refuses_hosts_with_paths() {
        for bad in [
            "",
            "ghcr.io/x",
            "user@ghcr.io",
            "http://ghcr.io",
            ".ghcr.io",
        ] {
            assert!(Registry::new(RegistryOptions::new(bad)).is_err(), "{bad:?}");
        }
        assert!(Registry::new(RegistryOptions::new("127.0.0.1:5000")).is_ok());
    }

    #[test]
    fn zero_caps_are_refused() {
        let mut opts = RegistryOptions::new("ghcr.io");
        opts.max_requests = 0;
        assert!(Registry::new(opts).is_err());
        let mut opts = RegistryOptions::new("ghcr.io");
        opts.max_signature_bytes = 0;
        assert!(Registry::new(opts).is_err());
    }

    fn destinations(host: &str, plain_http: bool) -> Arc<Destinations> {
        let mut opts = RegistryOptions::new(host);
        opts.plain_http = plain_http;
        Registry::new(opts).unwrap().destinations
    }

    fn allowed(d: &Destinations, url: &str) -> bool {
        d.check(&Url::parse(url).unwrap()).is_ok()
    }

    #[test]
    fn public_registry_sends_only_to_public_https() {
        let d = destinations("ghcr.io", false);
        assert!(!d.loopback);
        for ok in [
            "https://ghcr.io/token",
            "https://pkg-containers.githubusercontent.com/ghcr1/blobs/sha256:ab",
            "https://203.0.113.7/token",
        ] {
            assert!(allowed(&d, ok), "{ok}");
        }
        for refused in [
            "http://ghcr.io/token",
            "ftp://ghcr.io/token",
            "https://127.0.0.1/token",
            "https://2130706433/token",
            "https://0.0.0.0/",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data/",
            "https://100.64.0.1/",
            "https://localhost/",
            "https://LOCALHOST./",
            "https://metadata.localhost/",
            "https://[::1]/",
            "https://[::]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:169.254.169.254]/",
        ] {
            assert!(!allowed(&d, refused), "{refused}");
        }
    }

    #[test]
    fn loopback_test_registry_may_use_http_to_itself_only() {
        let d = destinations("127.0.0.1:5000", true);
        assert!(d.loopback);
        assert!(allowed(&d, "http://127.0.0.1:5001/token"));
        assert!(allowed(&d, "https://127.0.0.1/token"));
        assert!(allowed(&d, "https://ghcr.io/token"));
        assert!(!allowed(&d, "http://localhost:5000/token"));
        assert!(!allowed(&d, "http://example.com/token"));
        // A loopback registry over TLS gets no plain http at all.
        let d = destinations("localhost:5000", false);
        assert!(d.loopback);
        assert!(!allowed(&d, "http://localhost:5000/token"));
        assert!(allowed(&d, "https://localhost:5001/token"));
        // A plain-http registry that is not on loopback gets https only.
        let d = destinations("0.0.0.0:5000", true);
        assert!(!d.loopback);
        assert!(!allowed(&d, "http://0.0.0.0:5000/token"));
    }
}
