//! Artifact attestations: the Sigstore bundles GitHub stores per repository and subject digest,
//! listed by `GET /repos/{owner}/{repo}/attestations/{subject_digest}` and
//! `GET /orgs/{org}/attestations/{subject_digest}`.
//!
//! Plumbline checks that the images and release assets a repository publishes carry
//! provenance; tests seed the bundles with [`Simulator::add_attestation`] (GitHub creates them
//! from `actions/attest-build-provenance`, which the simulator does not run).
//!
//! GitHub's rules reproduced here:
//! - a digest without attestations (after the `predicate_type` filter) answers 404 "Not
//!   Found", not an empty list;
//! - pages are cut with opaque `before` / `after` cursors and `per_page` (at most 100), linked
//!   in the `Link` header;
//! - `predicate_type` takes `provenance`, `sbom`, `release` or a predicate type URI, matched
//!   against the in-toto statement inside the bundle's DSSE envelope;
//! - installation tokens need the `attestations` permission (read), else 403 "Resource not
//!   accessible by integration"; the organization listing leaves out repositories the token
//!   cannot see.
//!
//! `bundle_url` leads to the simulator's own `/_download/attestations/{id}`, which serves the
//! bundle as plain JSON (GitHub's blob is Snappy-compressed; clients read the inline `bundle`,
//! which the 2022-11-28 API version always includes).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine;
use serde_json::{json, Value};

use crate::api::{
    base_of, encode_query_component, find_repo, json_response, not_found, set_header, with_link,
    ApiError, PageParams, Tag,
};
use crate::apps::Identity;
use crate::state::State as SimState;
use crate::{SimError, Simulator};

const R_REPO: &str = "/repos/{owner}/{repo}/attestations/{subject_digest}";
const R_ORG: &str = "/orgs/{org}/attestations/{subject_digest}";
/// Where `bundle_url` leads; not a REST route (no token, not rate limited, not logged).
const R_BUNDLE: &str = "/_download/attestations/{id}";

const DOCS_REPO: &str = "https://docs.github.com/rest/repos/attestations#list-attestations";
const DOCS_ORG: &str = "https://docs.github.com/rest/orgs/attestations#list-attestations";

/// The permission an installation token needs for the attestation endpoints.
const PERMISSION: &str = "attestations";

/// Predicate types behind the short names `predicate_type` accepts.
const PROVENANCE: &[&str] = &["https://slsa.dev/provenance/v1"];
const SBOM: &[&str] = &[
    "https://spdx.dev/Document/v2.2",
    "https://spdx.dev/Document/v2.3",
    "https://spdx.dev/Document",
    "https://cyclonedx.org/bom",
    "https://cyclonedx.org/bom/v1.4",
    "https://cyclonedx.org/bom/v1.5",
    "https://cyclonedx.org/bom/v1.6",
];
const RELEASE: &[&str] = &["https://in-toto.io/attestation/release/v0.1"];

/// One stored attestation.
#[derive(Debug, Clone)]
pub(crate) struct Attestation {
    pub id: u64,
    pub repo_id: u64,
    /// Lower-cased "algorithm:hex" subject digest.
    pub digest: String,
    pub bundle: Value,
    /// The in-toto statement's `predicateType`, when the bundle carries a readable one.
    pub predicate_type: Option<String>,
}

/// Whether `digest` looks like a subject digest: "algorithm:hex".
fn is_subject_digest(digest: &str) -> bool {
    digest.split_once(':').is_some_and(|(alg, hex)| {
        !alg.is_empty()
            && alg.bytes().all(|b| b.is_ascii_alphanumeric())
            && !hex.is_empty()
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The `predicateType` of the in-toto statement in a bundle's DSSE envelope (base64 JSON).
fn predicate_type_of(bundle: &Value) -> Option<String> {
    let payload = bundle.pointer("/dsseEnvelope/payload")?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    let statement: Value = serde_json::from_slice(&bytes).ok()?;
    statement
        .get("predicateType")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Whether an attestation passes the `predicate_type` filter.
fn matches_predicate(attestation: &Attestation, filter: Option<&str>) -> bool {
    let Some(filter) = filter else {
        return true;
    };
    let Some(actual) = attestation.predicate_type.as_deref() else {
        return false;
    };
    let known = match filter {
        "provenance" => PROVENANCE,
        "sbom" => SBOM,
        "release" => RELEASE,
        _ => return actual == filter,
    };
    known.contains(&actual)
}

fn encode_cursor(id: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("cursor:v1:{id}"))
}

fn decode_cursor(cursor: &str) -> Option<u64> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("cursor:v1:")?
        .parse()
        .ok()
}

/// The 403 an installation token without the `attestations` permission gets.
fn not_accessible(documentation_url: &'static str) -> Response {
    let mut response = ApiError::new(
        StatusCode::FORBIDDEN,
        "Resource not accessible by integration",
        documentation_url,
    )
    .into_response();
    set_header(
        response.headers_mut(),
        "x-accepted-github-permissions",
        format!("{PERMISSION}=read"),
    );
    response
}

/// Cuts one page out of `items` (ascending ids) by GitHub's cursor parameters and builds the
/// `Link` header (`next` with `after`, `prev` with `before`).
fn cursor_page<'a>(
    items: &[&'a Attestation],
    query: &HashMap<String, String>,
    url: &str,
    documentation_url: &'static str,
) -> Result<(Vec<&'a Attestation>, Option<String>), ApiError> {
    let per_page = PageParams::from_query(query).per_page;
    let cursor = |name: &str| -> Result<Option<u64>, ApiError> {
        match query.get(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(raw) => decode_cursor(raw).map(Some).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("Invalid `{name}` cursor."),
                    documentation_url,
                )
            }),
        }
    };
    let page: Vec<&Attestation> = match (cursor("after")?, cursor("before")?) {
        (Some(after), _) => items
            .iter()
            .filter(|a| a.id > after)
            .take(per_page)
            .copied()
            .collect(),
        (None, Some(before)) => {
            let earlier: Vec<&Attestation> =
                items.iter().filter(|a| a.id < before).copied().collect();
            let skip = earlier.len().saturating_sub(per_page);
            earlier.into_iter().skip(skip).collect()
        }
        (None, None) => items.iter().take(per_page).copied().collect(),
    };
    let kept: BTreeMap<&String, &String> = query
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "before" | "after" | "per_page" | "page"))
        .collect();
    let mut prefix = String::new();
    for (k, v) in kept {
        prefix.push_str(&format!(
            "{}={}&",
            encode_query_component(k),
            encode_query_component(v)
        ));
    }
    let mut links = Vec::new();
    if let (Some(first), Some(last)) = (page.first(), page.last()) {
        if items.iter().any(|a| a.id < first.id) {
            links.push(format!(
                "<{url}?{prefix}per_page={per_page}&before={}>; rel=\"prev\"",
                encode_cursor(first.id)
            ));
        }
        if items.iter().any(|a| a.id > last.id) {
            links.push(format!(
                "<{url}?{prefix}per_page={per_page}&after={}>; rel=\"next\"",
                encode_cursor(last.id)
            ));
        }
    }
    Ok((page, (!links.is_empty()).then(|| links.join(", "))))
}

/// The answer of both listings: 404 when nothing matched, else one page.
fn listing(
    base: &str,
    matching: &[&Attestation],
    query: &HashMap<String, String>,
    url: &str,
    documentation_url: &'static str,
) -> Result<Response, ApiError> {
    if matching.is_empty() {
        return Err(ApiError::not_found("Not Found", documentation_url));
    }
    let (page, link) = cursor_page(matching, query, url, documentation_url)?;
    let body: Vec<Value> = page
        .iter()
        .map(|a| {
            json!({
                "bundle": a.bundle,
                "repository_id": a.repo_id,
                "bundle_url": format!("{base}/_download/attestations/{}", a.id),
                "initiator": "user",
            })
        })
        .collect();
    Ok(with_link(
        json_response(StatusCode::OK, &json!({ "attestations": body })),
        link,
    ))
}

impl SimState {
    fn add_attestation(
        &mut self,
        owner: &str,
        repo: &str,
        digest: &str,
        bundle: Value,
    ) -> Result<u64, SimError> {
        if !is_subject_digest(digest) {
            return Err(SimError::Invalid(format!(
                "subject digest must be \"algorithm:hex\" (e.g. \"sha256:...\"), not {digest:?}"
            )));
        }
        if !bundle.is_object() {
            return Err(SimError::Invalid(
                "the bundle must be a JSON object".to_owned(),
            ));
        }
        let repo_id = self.repo_id(owner, repo)?;
        let id = self.next_object_id();
        let predicate_type = predicate_type_of(&bundle);
        self.attestations.push(Attestation {
            id,
            repo_id,
            digest: digest.to_ascii_lowercase(),
            bundle,
            predicate_type,
        });
        Ok(id)
    }
}

pub(crate) fn register(router: Router<Simulator>, tag: Tag<'_>) -> Router<Simulator> {
    router
        .route(R_REPO, tag(R_REPO, get(list_repo_attestations)))
        .route(R_ORG, tag(R_ORG, get(list_org_attestations)))
        .route(R_BUNDLE, get(download_bundle).fallback(not_found))
}

/// `GET /repos/{owner}/{repo}/attestations/{subject_digest}`. A repository an installation
/// token cannot see was already answered 404 by the middleware.
async fn list_repo_attestations(
    State(sim): State<Simulator>,
    Path((owner, name, digest)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    identity: Option<Extension<Identity>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_REPO)?;
    if identity
        .as_ref()
        .is_some_and(|Extension(i)| !i.permits(PERMISSION, "read"))
    {
        return Ok(not_accessible(DOCS_REPO));
    }
    let digest = digest.to_ascii_lowercase();
    let filter = query.get("predicate_type").map(String::as_str);
    let matching: Vec<&Attestation> = st
        .attestations
        .iter()
        .filter(|a| a.repo_id == repo.id && a.digest == digest)
        .filter(|a| matches_predicate(a, filter))
        .collect();
    let url = format!(
        "{base}/repos/{}/{}/attestations/{digest}",
        org.login, repo.name
    );
    listing(&base, &matching, &query, &url, DOCS_REPO)
}

/// `GET /orgs/{org}/attestations/{subject_digest}`: the attestations of the organization's
/// repositories the caller can see.
async fn list_org_attestations(
    State(sim): State<Simulator>,
    Path((owner, digest)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    identity: Option<Extension<Identity>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let org = st
        .org(&owner)
        .ok_or_else(|| ApiError::not_found("Not Found", DOCS_ORG))?;
    let identity = identity.map(|Extension(i)| i);
    if identity
        .as_ref()
        .is_some_and(|i| !i.permits(PERMISSION, "read"))
    {
        return Ok(not_accessible(DOCS_ORG));
    }
    let owner_key = org.login.to_lowercase();
    let digest = digest.to_ascii_lowercase();
    let filter = query.get("predicate_type").map(String::as_str);
    let matching: Vec<&Attestation> = st
        .attestations
        .iter()
        .filter(|a| a.digest == digest && matches_predicate(a, filter))
        .filter(|a| {
            st.repos.get(&a.repo_id).is_some_and(|repo| {
                repo.owner_key == owner_key && identity.as_ref().is_none_or(|i| st.can_see(i, repo))
            })
        })
        .collect();
    let url = format!("{base}/orgs/{}/attestations/{digest}", org.login);
    listing(&base, &matching, &query, &url, DOCS_ORG)
}

/// The bundle behind a `bundle_url`, as plain JSON; 404 for an unknown id or a deleted
/// repository.
async fn download_bundle(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    let st = sim.lock();
    let found = id.parse::<u64>().ok().and_then(|id| {
        st.attestations
            .iter()
            .find(|a| a.id == id && st.repos.contains_key(&a.repo_id))
    });
    match found {
        Some(attestation) => json_response(StatusCode::OK, &attestation.bundle),
        None => ApiError::not_found("Not Found", DOCS_REPO).into_response(),
    }
}

impl Simulator {
    /// Stores an artifact attestation of `owner/repo` for `subject_digest` ("sha256:<hex>", or
    /// another "algorithm:hex") with its Sigstore bundle (a JSON object; its
    /// `dsseEnvelope.payload` statement's `predicateType` serves the `predicate_type` filter),
    /// as `actions/attest-build-provenance` would. GitHub sends no webhook for attestations.
    /// Returns the attestation id.
    pub fn add_attestation(
        &self,
        owner: &str,
        repo: &str,
        subject_digest: &str,
        bundle: Value,
    ) -> Result<u64, SimError> {
        self.lock()
            .add_attestation(owner, repo, subject_digest, bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(5_000_123)), Some(5_000_123));
        assert_eq!(decode_cursor("not-a-cursor"), None);
    }

    #[test]
    fn predicate_types_are_read_from_the_statement() {
        let statement = json!({ "predicateType": "https://slsa.dev/provenance/v1" });
        let payload =
            base64::engine::general_purpose::STANDARD.encode(statement.to_string().as_bytes());
        let bundle = json!({ "dsseEnvelope": { "payload": payload } });
        let attestation = Attestation {
            id: 1,
            repo_id: 1,
            digest: "sha256:ab".to_owned(),
            predicate_type: predicate_type_of(&bundle),
            bundle,
        };
        assert!(matches_predicate(&attestation, None));
        assert!(matches_predicate(&attestation, Some("provenance")));
        assert!(matches_predicate(
            &attestation,
            Some("https://slsa.dev/provenance/v1")
        ));
        assert!(!matches_predicate(&attestation, Some("sbom")));
        assert!(is_subject_digest("sha1:0123abcd"));
        assert!(!is_subject_digest("0123abcd"));
    }
}
