//! Reading the signatures stored beside an image in an OCI registry.
//!
//! Two places hold them: cosign's `sha256-<hex>.sig` tag (one simple-signing layer per signature,
//! the signature material in annotations) and OCI referrers whose artifact is a Sigstore bundle
//! (the referrers API, or, where the registry answers 404 to it, the OCI 1.1 referrers tag schema
//! `sha256-<hex>`). Manifests and index types come from oci-client; the HTTP reads are made here
//! on the same reqwest client oci-client uses, because oci-client 0.18 reads manifests and
//! referrer indexes whole (no size cap) and sends Basic credentials to whichever token realm a
//! registry names. Here every body is capped at `max_manifest_bytes` while it streams, every
//! request has a timeout, and credentials go only to the configured host: a token realm on
//! another host is asked anonymously, and redirects (blob storage) carry no `Authorization`
//! (reqwest drops it on a cross-host redirect).
//!
//! The crate's own fetching (rather than sigstore-rs's `cosign::Client`) also keeps the "signed
//! but not verified" signal: that client drops layers that fail to verify.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use oci_client::manifest::{OciImageIndex, OciImageManifest};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

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
    /// Cap on any one manifest, index, layer or token answer.
    pub max_manifest_bytes: usize,
    /// Cap on the evidences returned for one image (the rest are ignored, with a warning).
    pub max_signatures: usize,
}

impl RegistryOptions {
    /// HTTPS to `host` with the default caps (4 MiB bodies, 32 signatures, 30 s per request).
    pub fn new(host: impl Into<String>) -> RegistryOptions {
        RegistryOptions {
            host: host.into(),
            plain_http: false,
            timeout: Duration::from_secs(30),
            max_manifest_bytes: 4 << 20,
            max_signatures: 32,
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
    http: reqwest::Client,
}

const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const BUNDLE_MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
const MANIFEST_ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const INDEX_ACCEPT: &str = "application/vnd.oci.image.index.v1+json";

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
        if opts.max_manifest_bytes == 0 || opts.max_signatures == 0 || opts.timeout.is_zero() {
            return Err(Error::Options(
                "timeout, max_manifest_bytes and max_signatures must be positive".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(Error::Client)?;
        let scheme = if opts.plain_http { "http" } else { "https" };
        Ok(Registry {
            base: format!("{scheme}://{}", opts.host),
            opts,
            http,
        })
    }

    /// Every signature stored beside the image: each layer of the cosign `sha256-<hex>.sig` tag,
    /// and each OCI referrer carrying a Sigstore bundle. `Ok(empty)` when there is none; `Err`
    /// only when the registry cannot be read (connection, timeout, 5xx, refused credentials,
    /// a body over the cap).
    pub async fn signatures(
        &self,
        image: &ImageRef,
        auth: &RegistryAuth,
    ) -> Result<Vec<Evidence>, Error> {
        let mut session = Session {
            registry: self,
            auth,
            authorization: None,
        };
        let mut out = Vec::new();
        self.cosign_tag(&mut session, image, &mut out).await?;
        self.referrers(&mut session, image, &mut out).await?;
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
        Ok(out)
    }

    async fn cosign_tag(
        &self,
        session: &mut Session<'_>,
        image: &ImageRef,
        out: &mut Vec<Evidence>,
    ) -> Result<(), Error> {
        let path = format!(
            "/v2/{}/manifests/sha256-{}.sig",
            image.repository,
            image.hex()
        );
        let Some(bytes) = session.get(&path, MANIFEST_ACCEPT).await? else {
            return Ok(());
        };
        let manifest: OciImageManifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => {
                out.push(Evidence::unreadable(
                    EvidenceSource::CosignTag,
                    format!("cosign signature manifest does not parse: {e}"),
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
    ) -> Result<(), Error> {
        let api = format!("/v2/{}/referrers/{}", image.repository, image.digest);
        let index = match session.get(&api, INDEX_ACCEPT).await? {
            Some(bytes) => bytes,
            None => {
                // No referrers API (404): the OCI 1.1 referrers tag schema.
                let tag = format!("/v2/{}/manifests/sha256-{}", image.repository, image.hex());
                match session.get(&tag, INDEX_ACCEPT).await? {
                    Some(bytes) => bytes,
                    None => return Ok(()),
                }
            }
        };
        let index: OciImageIndex =
            serde_json::from_slice(&index).map_err(|source| Error::Manifest {
                url: format!("{}{api}", self.base),
                source,
            })?;
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
                out.push(Evidence::unreadable(
                    EvidenceSource::Referrer,
                    format!("referrer digest {:?} is not sha256:<hex>", entry.digest),
                ));
                continue;
            }
            let path = format!("/v2/{}/manifests/{}", image.repository, entry.digest);
            let Some(bytes) = session.get(&path, MANIFEST_ACCEPT).await? else {
                continue;
            };
            if sha256_digest(&bytes) != entry.digest {
                return Err(Error::DigestMismatch {
                    url: format!("{}{path}", self.base),
                });
            }
            let Ok(manifest) = serde_json::from_slice::<OciImageManifest>(&bytes) else {
                continue;
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
                out.push(Evidence::unreadable(
                    EvidenceSource::Referrer,
                    "Sigstore bundle referrer has no bundle layer".into(),
                ));
                continue;
            };
            match self.blob(session, image, &layer.digest).await? {
                Ok(bytes) => out.push(Evidence::bundle_bytes(EvidenceSource::Referrer, &bytes)),
                Err(why) => out.push(Evidence::unreadable(EvidenceSource::Referrer, why)),
            }
        }
        Ok(())
    }

    /// A blob by digest: `Ok(Err(why))` when the registry serves something other than that blob
    /// (missing, or bytes that do not hash to the digest): a signature that cannot be checked.
    async fn blob(
        &self,
        session: &mut Session<'_>,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Result<Vec<u8>, String>, Error> {
        if !valid_digest(digest) {
            return Ok(Err(format!("layer digest {digest:?} is not sha256:<hex>")));
        }
        let path = format!("/v2/{}/blobs/{digest}", image.repository);
        match session.get(&path, "*/*").await? {
            None => Ok(Err(format!("layer {digest} is missing from the registry"))),
            Some(bytes) if sha256_digest(&bytes) != digest => Ok(Err(format!(
                "layer {digest} served by the registry does not match its digest"
            ))),
            Some(bytes) => Ok(Ok(bytes)),
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

/// One `signatures` call: the authorization obtained on the first challenge is reused.
struct Session<'a> {
    registry: &'a Registry,
    auth: &'a RegistryAuth,
    authorization: Option<HeaderValue>,
}

impl Session<'_> {
    /// GET `path` on the registry: `None` on 404, the capped body on success.
    async fn get(&mut self, path: &str, accept: &str) -> Result<Option<Vec<u8>>, Error> {
        let url = format!("{}{path}", self.registry.base);
        let mut challenged = false;
        loop {
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
                return Ok(None);
            }
            if !status.is_success() {
                return Err(Error::Status {
                    url,
                    status: status.as_u16(),
                });
            }
            return read_capped(response, self.registry.opts.max_manifest_bytes, &url)
                .await
                .map(Some);
        }
    }

    /// Answers a `WWW-Authenticate` challenge with an `Authorization` value.
    async fn authenticate(&self, challenge: &str) -> Result<HeaderValue, Error> {
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
            return HeaderValue::from_str(&value)
                .map_err(|_| Error::Auth("credentials are not a valid header".into()));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Error::Auth(format!(
                "unsupported challenge scheme {scheme:?}"
            )));
        }
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| Error::Auth("bearer challenge without realm".into()))?;
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| Error::Auth(format!("token realm {realm:?}: {e}")))?;
        let scheme_ok =
            url.scheme() == "https" || (self.registry.opts.plain_http && url.scheme() == "http");
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(Error::Auth(format!("token realm {realm:?} is not http(s)")));
        }
        let realm_host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(Error::Auth(format!("token realm {realm:?} has no host"))),
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
            tracing::warn!(realm = %realm_host, host = %self.registry.opts.host,
                "token realm is not the configured host; asking it anonymously");
        }
        let token_url = url.to_string();
        let response = request.send().await.map_err(|source| Error::Request {
            url: token_url.clone(),
            source,
        })?;
        if !response.status().is_success() {
            return Err(Error::Status {
                url: token_url,
                status: response.status().as_u16(),
            });
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
        HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Error::Auth("token is not a valid header".into()))
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
}
