//! OIDC bearer tokens: JWTs verified against the issuer's published keys (JWKS).
//!
//! A token is accepted when its header names an asymmetric algorithm Plumbline allows
//! ([`ALGORITHMS`]; `none` and the HMAC family never), its `kid` is one of the issuer's keys,
//! the signature verifies with that key, and its claims carry this issuer (`iss`), this
//! audience (`aud`), a subject (`sub`) and an expiry (`exp`) not passed (30 s of leeway for
//! clock skew). Keys the header carries itself (`jwk`, `jku`) are never used. The identity is
//! `user:<sub>`.
//!
//! The key set is fetched from `--oidc-jwks-url`, or from the `jwks_uri` of the issuer's
//! discovery document, when first needed; it is refreshed when older than an hour, and when a
//! token names a key it does not hold (the issuer rotated), but at most once per
//! `--oidc-jwks-min-refresh-secs`, so tokens with made-up key ids cannot make the control
//! service hammer the issuer. A failed refresh keeps the keys already held.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// Signature algorithms accepted: the asymmetric ones issuers use.
pub const ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Keys older than this are fetched again before use.
const MAX_KEY_AGE: Duration = Duration::from_secs(3600);
/// The largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("not a JWT: {0}")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(Algorithm),
    #[error("the token names no key (kid)")]
    NoKeyId,
    #[error("the issuer has no key {0:?}")]
    UnknownKey(String),
    #[error("key {kid:?}: {source}")]
    Key {
        kid: String,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    #[error("rejected: {0}")]
    Rejected(#[source] jsonwebtoken::errors::Error),
    #[error("the token's subject is empty")]
    NoSubject,
    #[error("OIDC client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("fetching {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("fetching {url}: status {status}")]
    Status { url: String, status: u16 },
    #[error("fetching {url}: larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge { url: String },
    #[error("fetching {url}: {source}")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0:?} must be an https URL (plain http only on loopback)")]
    InsecureUrl(String),
    #[error("{url} describes issuer {issuer:?}, not the one configured")]
    WrongIssuer { url: String, issuer: String },
    #[error("key {0:?} is not for verifying this token's signature")]
    KeyMismatch(String),
}

/// Where and what to verify.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub audience: String,
    /// The key set's URL; `None` reads it from the issuer's discovery document.
    pub jwks_url: Option<String>,
    pub min_refresh: Duration,
}

struct Keys {
    set: JwkSet,
    fetched: Option<Instant>,
}

pub struct OidcVerifier {
    settings: OidcSettings,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    /// One fetch at a time; holds when the last one was tried.
    refresh: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

#[derive(serde::Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// A key set read leniently: a key of a kind this verifier does not know (another curve, an
/// encryption key) is skipped, not a reason to refuse the whole set.
#[derive(serde::Deserialize)]
struct RawKeySet {
    keys: Vec<serde_json::Value>,
}

impl OidcVerifier {
    pub fn new(settings: OidcSettings) -> Result<Self, OidcError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(OidcError::Client)?;
        Ok(OidcVerifier {
            settings,
            http,
            keys: RwLock::new(Keys {
                set: JwkSet { keys: Vec::new() },
                fetched: None,
            }),
            refresh: Mutex::new(None),
        })
    }

    /// The token's subject, when the token is valid.
    pub async fn verify(&self, token: &str) -> Result<String, OidcError> {
        let header = jsonwebtoken::decode_header(token).map_err(OidcError::Malformed)?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(OidcError::Algorithm(header.alg));
        }
        let kid = header.kid.ok_or(OidcError::NoKeyId)?;
        let jwk = self.key(&kid).await?;
        let use_ok = jwk
            .common
            .public_key_use
            .as_ref()
            .is_none_or(|u| *u == jsonwebtoken::jwk::PublicKeyUse::Signature);
        let alg_ok = jwk.common.key_algorithm.is_none_or(|a| {
            a.to_string()
                .parse::<Algorithm>()
                .is_ok_and(|a| a == header.alg)
        });
        if !(use_ok && alg_ok) {
            return Err(OidcError::KeyMismatch(kid));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|source| OidcError::Key {
            kid: kid.clone(),
            source,
        })?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(OidcError::Rejected)?;
        if data.claims.sub.is_empty() {
            return Err(OidcError::NoSubject);
        }
        Ok(data.claims.sub)
    }

    /// The issuer's key `kid`. The key set is fetched again when it is old or lacks `kid`, but
    /// at most once per `min_refresh` whatever happens, and never while a caller waits: while
    /// one fetch runs, other calls use the keys held (stale ones included, until a fetch
    /// succeeds). Only before the first fetch ever succeeded do calls wait for it.
    async fn key(&self, kid: &str) -> Result<Jwk, OidcError> {
        let (held, fresh, ever) = {
            let keys = self.keys.read().await;
            (
                keys.set.find(kid).cloned(),
                keys.fetched.is_some_and(|t| t.elapsed() < MAX_KEY_AGE),
                keys.fetched.is_some(),
            )
        };
        if let (Some(k), true) = (&held, fresh) {
            return Ok(k.clone());
        }
        let guard = if ever {
            self.refresh.try_lock().ok()
        } else {
            Some(self.refresh.lock().await)
        };
        if let Some(mut last_try) = guard {
            if last_try.is_none_or(|t| t.elapsed() >= self.settings.min_refresh) {
                *last_try = Some(Instant::now());
                match self.fetch().await {
                    Ok(set) => {
                        *self.keys.write().await = Keys {
                            set,
                            fetched: Some(Instant::now()),
                        };
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "OIDC keys not refreshed; the keys held stay in use")
                    }
                }
            }
        }
        let keys = self.keys.read().await;
        keys.set
            .find(kid)
            .cloned()
            .ok_or_else(|| OidcError::UnknownKey(kid.to_string()))
    }

    async fn fetch(&self) -> Result<JwkSet, OidcError> {
        let url = match &self.settings.jwks_url {
            Some(u) => u.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.settings.issuer.trim_end_matches('/')
                );
                let discovery = self.get_json::<Discovery>(&url).await?;
                // The document must be this issuer's, and its keys come over https too.
                if discovery.issuer != self.settings.issuer {
                    return Err(OidcError::WrongIssuer {
                        url,
                        issuer: discovery.issuer,
                    });
                }
                check_url(&discovery.jwks_uri)?;
                discovery.jwks_uri
            }
        };
        let raw: RawKeySet = self.get_json(&url).await?;
        let keys = raw
            .keys
            .into_iter()
            .filter_map(|k| match serde_json::from_value::<Jwk>(k) {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::debug!(error = %e, "a key of the issuer's set is skipped");
                    None
                }
            })
            .collect();
        Ok(JwkSet { keys })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let transport = |source| OidcError::Transport {
            url: url.to_string(),
            source,
        };
        let mut resp = self.http.get(url).send().await.map_err(transport)?;
        if !resp.status().is_success() {
            return Err(OidcError::Status {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(OidcError::TooLarge {
                    url: url.to_string(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|source| OidcError::Decode {
            url: url.to_string(),
            source,
        })
    }
}

/// An issuer (or key set) URL must be https, except on loopback where tests and local
/// identity providers serve plain http.
pub fn check_url(url: &str) -> Result<(), OidcError> {
    if plumbline_runtime::https_or_loopback(url) {
        Ok(())
    } else {
        Err(OidcError::InsecureUrl(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn issuer_urls_are_https_except_on_loopback() {
        for ok in [
            "https://accounts.example.com",
            "http://127.0.0.1:8080/realms/x",
            "http://[::1]:9/",
            "http://localhost/x",
        ] {
            assert!(super::check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://issuer.example.com",
            "ftp://127.0.0.1/",
            "not a url",
            "http://10.0.0.1/",
        ] {
            assert!(super::check_url(bad).is_err(), "{bad}");
        }
    }
}
