//! `artifact` ingest: a container image version and what its Sigstore signatures say.
//!
//! Minder's semantics (`internal/engine/ingester/artifact`): the rule's `name`, `tags`,
//! `tag_regex` and `type` params choose which versions the rule is about; a version they do not
//! choose is skipped, never passed. For a chosen version, each signature found is one entry of
//! the ingested list, `{"Verification": {is_signed, is_verified, repository, branch,
//! signer_identity, runner_environment, cert_issuer, attestation?}}`, and an image with none is
//! one unsigned entry. Signatures are looked for in the container registry first (cosign's
//! `.sig` tag, OCI referrers) and, when it holds none, in GitHub's attestations API for the
//! image's repository, as Minder does. Each entry also carries the verification error, and an
//! `Artifact` key naming the image; Minder's policies read neither, so they see what Minder
//! gives them.
//!
//! Which Sigstore root signatures must chain to is the rule's `sigstore` param, but only among
//! the roots the operator configured ([`Provider::sigstore_root`]): a rule author cannot bring
//! a root of their own, since whoever picks the root decides what verifies.

use crate::provider::Provider;
use crate::{EngineError, IngestError};
use plumbline_domain::Entity;
use plumbline_sigstore::{CertificateSummary, Evidence, ImageRef, Verification};
use serde_json::{json, Value};

/// Minder's default `sigstore` param: Sigstore's public-good instance.
pub const PUBLIC_GOOD: &str = "tuf-repo-cdn.sigstore.dev";

/// GitHub Actions' OIDC issuer, as Fulcio stamps it into certificates.
const GITHUB_ACTIONS_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// Longest `tag_regex` accepted (Minder's limit).
const MAX_TAG_REGEX: usize = 512;

/// Versions made longer ago than this are not evaluated (Minder's retention period: six
/// months).
const RETENTION_DAYS: i64 = 183;

/// Attestations read from GitHub per image at most (a real image has a handful).
const MAX_ATTESTATIONS: usize = 32;

/// The rule's params, checked.
#[derive(Debug)]
struct Params {
    name: Option<String>,
    filter: TagFilter,
    sigstore: String,
}

#[derive(Debug)]
enum TagFilter {
    All,
    /// Every listed tag must be among the version's.
    List(Vec<String>),
    /// One of the version's tags must match.
    Regex(regex::Regex),
}

fn params(params: &Value) -> Result<Params, EngineError> {
    let invalid = |m: String| EngineError::Validation(format!("artifact params: {m}"));
    let text = |key: &str| -> Result<Option<String>, EngineError> {
        match params.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(format!("{key} must be a string"))),
        }
    };
    match text("type")?.as_deref() {
        None | Some("container") => {}
        Some(other) => {
            return Err(invalid(format!(
                "type {other:?} is not supported: only container artifacts are"
            )))
        }
    }
    let tags: Vec<String> = match params.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| match t {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                Value::String(_) => Err(invalid("an empty tag cannot be matched".into())),
                _ => Err(invalid("tags must be strings".into())),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("tags must be a list of strings".into())),
    };
    let tag_regex = text("tag_regex")?;
    let filter = match (tags.is_empty(), tag_regex) {
        (false, Some(_)) => return Err(invalid("cannot specify both tags and tag_regex".into())),
        (false, None) => TagFilter::List(tags),
        (true, Some(r)) if r.len() > MAX_TAG_REGEX => {
            return Err(invalid(format!(
                "tag_regex is limited to {MAX_TAG_REGEX} characters"
            )))
        }
        (true, Some(r)) => TagFilter::Regex(
            regex::RegexBuilder::new(&r)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| invalid(format!("tag_regex does not compile: {e}")))?,
        ),
        (true, None) => TagFilter::All,
    };
    Ok(Params {
        name: text("name")?,
        filter,
        sigstore: text("sigstore")?.unwrap_or_else(|| PUBLIC_GOOD.to_string()),
    })
}

impl TagFilter {
    fn matches(&self, tags: &[String]) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::List(want) => want.iter().all(|w| tags.contains(w)),
            TagFilter::Regex(re) => tags.iter().any(|t| re.is_match(t)),
        }
    }
}

/// What the entity says of the image (kept by the evaluator from GitHub's answer).
struct Version<'a> {
    owner: &'a str,
    package: &'a str,
    digest: &'a str,
    tags: Vec<String>,
    created_at: Option<&'a str>,
}

fn version(entity: &Entity) -> Result<Version<'_>, EngineError> {
    let p = &entity.properties;
    let missing = |k: &str| {
        EngineError::Ingest(format!(
            "artifact {} has no {k}: it has not been read from GitHub",
            entity.id()
        ))
    };
    Ok(Version {
        owner: p
            .get("package_owner")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("package owner"))?,
        package: p
            .get("package_name")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("package name"))?,
        digest: p
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("digest"))?,
        tags: p
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        created_at: p.get("created_at").and_then(Value::as_str),
    })
}

/// Why a version is not one the rule is about (Minder's `IsSkippable`), if it is not.
fn skip_reason(p: &Params, v: &Version<'_>, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
    if p.name.as_deref().is_some_and(|n| n != v.package) {
        return Some(format!("the rule is about artifact {:?}", p.name));
    }
    if let Some(made) = v
        .created_at
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
    {
        if now.signed_duration_since(made) > chrono::Duration::days(RETENTION_DAYS) {
            return Some("the version is older than the six months' retention period".into());
        }
    }
    if v.tags.is_empty() {
        return Some("the version has no tags".into());
    }
    if !p.filter.matches(&v.tags) {
        return Some("the version's tags do not match the rule's".into());
    }
    None
}

/// Ingests an artifact entity for a rule with `rule_params`.
pub(crate) async fn ingest(
    provider: &dyn Provider,
    entity: &Entity,
    rule_params: &Value,
) -> Result<Value, IngestError> {
    let p = params(rule_params).map_err(IngestError::Rule)?;
    let v = version(entity).map_err(IngestError::Rule)?;
    if let Some(why) = skip_reason(&p, &v, chrono::Utc::now()) {
        return Err(IngestError::NotApplicable(why));
    }
    let root = provider.sigstore_root(&p.sigstore).ok_or_else(|| {
        IngestError::Rule(EngineError::Ingest(format!(
            "no Sigstore trust root named {:?} is configured (the operator configures roots; a rule can only choose among them)",
            p.sigstore
        )))
    })?;
    let image = ImageRef::new(&format!("{}/{}", v.owner, v.package), v.digest)
        .map_err(|e| IngestError::Rule(EngineError::Ingest(e.to_string())))?;
    let mut evidence = provider
        .image_signatures(&image)
        .await
        .map_err(IngestError::from)?;
    if evidence.is_empty() {
        evidence = attestations(provider, entity, v.digest).await?;
    }
    let mut results: Vec<Value> = evidence
        .iter()
        .map(|e| entry(&plumbline_sigstore::verify(&root, &image, e)))
        .collect();
    if results.is_empty() {
        results.push(unsigned());
    }
    let artifact = json!({
        "name": v.package,
        "type": "container",
        "digest": v.digest,
        "tags": v.tags,
        "image": format!("{}@{}", image.repository, image.digest),
    });
    for r in &mut results {
        if let Some(o) = r.as_object_mut() {
            o.insert("Artifact".into(), artifact.clone());
        }
    }
    Ok(Value::Array(results))
}

/// The Sigstore bundles GitHub keeps for the image in its repository.
async fn attestations(
    provider: &dyn Provider,
    entity: &Entity,
    digest: &str,
) -> Result<Vec<Evidence>, IngestError> {
    let path = format!(
        "/repos/{}/{}/attestations/{}?per_page={MAX_ATTESTATIONS}",
        entity.owner,
        entity.name,
        crate::scope::encode_segment(digest)
    );
    let r = provider
        .request("GET", &path, None)
        .await
        .map_err(IngestError::from)?;
    match r.status {
        404 => return Ok(Vec::new()),
        200 => {}
        s => {
            return Err(IngestError::Rule(EngineError::Ingest(format!(
                "GitHub answered {s} for the image's attestations"
            ))))
        }
    }
    let body: Value = serde_json::from_slice(&r.body).map_err(|e| {
        IngestError::Rule(EngineError::Ingest(format!(
            "GitHub's attestations answer is not JSON: {e}"
        )))
    })?;
    Ok(body
        .get("attestations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(MAX_ATTESTATIONS)
        .filter_map(|a| a.get("bundle"))
        .map(Evidence::from_bundle_json)
        .collect())
}

fn unsigned() -> Value {
    json!({"Verification": {
        "is_signed": false, "is_verified": false, "repository": "", "branch": "",
        "signer_identity": "", "runner_environment": "", "cert_issuer": "",
    }})
}

/// One signature as Minder's policies read it. Identity fields are filled only when the
/// signature verified (an unverified certificate says nothing about who signed).
fn entry(v: &Verification) -> Value {
    let mut out = json!({
        "is_signed": v.is_signed,
        "is_verified": v.is_verified,
        "repository": "",
        "branch": "",
        "signer_identity": "",
        "runner_environment": "",
        "cert_issuer": "",
    });
    if let (true, Some(c), Some(o)) = (v.is_verified, &v.certificate, out.as_object_mut()) {
        let text = |s: &Option<String>| s.clone().unwrap_or_default();
        o.insert("repository".into(), text(&c.source_repository_uri).into());
        o.insert(
            "branch".into(),
            c.source_repository_ref
                .as_deref()
                .and_then(|r| r.strip_prefix("refs/heads/"))
                .unwrap_or("")
                .into(),
        );
        o.insert("signer_identity".into(), signer_identity(c).into());
        o.insert(
            "runner_environment".into(),
            text(&c.runner_environment).into(),
        );
        o.insert("cert_issuer".into(), text(&c.issuer).into());
    }
    if let (true, Some(s), Some(o)) = (v.is_verified, &v.statement, out.as_object_mut()) {
        o.insert(
            "attestation".into(),
            json!({"predicate_type": s.predicate_type, "predicate": s.predicate}),
        );
    }
    if let (Some(e), Some(o)) = (&v.error, out.as_object_mut()) {
        o.insert("error".into(), e.clone().into());
    }
    json!({ "Verification": out })
}

/// Minder's signer identity: for a GitHub Actions certificate, the workflow's path within its
/// repository (`/.github/workflows/build.yml`: the SAN without the repository and the `@ref`),
/// so one rule fits every repository; any other identity (an e-mail, another issuer's URI)
/// as the certificate gives it. Empty when the certificate names no identity.
fn signer_identity(c: &CertificateSummary) -> String {
    let Some(san) = c
        .subject_alternative_name
        .as_deref()
        .filter(|s| !s.is_empty())
    else {
        return String::new();
    };
    if c.issuer.as_deref() != Some(GITHUB_ACTIONS_ISSUER) {
        return san.to_string();
    }
    let Some(repo) = c.source_repository_uri.as_deref().filter(|s| !s.is_empty()) else {
        return String::new();
    };
    let workflow = san.split_once('@').map_or(san, |(w, _)| w);
    workflow.strip_prefix(repo).unwrap_or(workflow).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(san: &str, issuer: Option<&str>, repo: Option<&str>) -> CertificateSummary {
        CertificateSummary {
            issuer: issuer.map(str::to_string),
            subject_alternative_name: Some(san.to_string()),
            source_repository_uri: repo.map(str::to_string),
            source_repository_ref: None,
            runner_environment: None,
            build_signer_uri: None,
        }
    }

    /// Minder's `TestSignerIdentityFromCertificate` cases.
    #[test]
    fn signer_identity_as_minder_derives_it() {
        let san =
            "https://github.com/openvex/vexctl/.github/workflows/release.yaml@refs/tags/v0.2.6";
        let repo = Some("https://github.com/openvex/vexctl");
        assert_eq!(
            signer_identity(&summary(san, Some(GITHUB_ACTIONS_ISSUER), repo)),
            "/.github/workflows/release.yaml"
        );
        let mut with_build_signer = summary(san, Some(GITHUB_ACTIONS_ISSUER), repo);
        with_build_signer.build_signer_uri =
            Some("https://github.com/openvex/vexctl/.github/workflows/fake.yaml@x".into());
        assert_eq!(
            signer_identity(&with_build_signer),
            "/.github/workflows/release.yaml"
        );
        assert_eq!(
            signer_identity(&summary(san, Some(GITHUB_ACTIONS_ISSUER), None)),
            ""
        );
        assert_eq!(signer_identity(&summary(san, None, repo)), san);
        assert_eq!(
            signer_identity(&summary(
                "jane@example.com",
                Some("https://accounts.google.com"),
                None
            )),
            "jane@example.com"
        );
    }

    #[test]
    fn params_follow_minder() {
        assert!(params(&json!({"tags": ["a"], "tag_regex": "b"})).is_err());
        assert!(params(&json!({"tags": [""]})).is_err());
        assert!(params(&json!({"tag_regex": "("})).is_err());
        assert!(params(&json!({"tag_regex": "a".repeat(513)})).is_err());
        assert!(params(&json!({"type": "npm"})).is_err());
        let p = params(&json!({"tags": ["latest"], "name": "web"})).expect("params");
        assert_eq!(p.sigstore, PUBLIC_GOOD);
        assert_eq!(p.name.as_deref(), Some("web"));
        assert!(p.filter.matches(&["v1".into(), "latest".into()]));
        assert!(!p.filter.matches(&["v1".into()]));
        let r = params(&json!({"tag_regex": "^v[0-9]+$"})).expect("params");
        assert!(r.filter.matches(&["latest".into(), "v2".into()]));
        assert!(!r.filter.matches(&["v2-rc".into()]));
    }

    #[test]
    fn versions_the_rule_is_not_about_are_skipped() {
        let now = chrono::Utc::now();
        let p = params(&json!({"tags": ["latest"], "name": "web"})).expect("params");
        let v = |package, tags: &[&str], created_at| Version {
            owner: "o",
            package,
            digest: "sha256:00",
            tags: tags.iter().map(|t| t.to_string()).collect(),
            created_at,
        };
        assert!(skip_reason(&p, &v("web", &["latest"], None), now).is_none());
        assert!(skip_reason(&p, &v("api", &["latest"], None), now).is_some());
        assert!(skip_reason(&p, &v("web", &[], None), now).is_some());
        assert!(skip_reason(&p, &v("web", &["v1"], None), now).is_some());
        assert!(skip_reason(
            &p,
            &v("web", &["latest"], Some("2020-01-01T00:00:00Z")),
            now
        )
        .is_some());
    }

    #[test]
    fn identity_is_only_shown_for_verified_signatures() {
        let cert = CertificateSummary {
            issuer: Some(GITHUB_ACTIONS_ISSUER.into()),
            subject_alternative_name: Some(
                "https://github.com/o/r/.github/workflows/b.yml@refs/heads/main".into(),
            ),
            source_repository_uri: Some("https://github.com/o/r".into()),
            source_repository_ref: Some("refs/heads/main".into()),
            runner_environment: Some("github-hosted".into()),
            build_signer_uri: None,
        };
        let verified = Verification {
            is_signed: true,
            is_verified: true,
            certificate: Some(cert.clone()),
            statement: None,
            error: None,
            source: plumbline_sigstore::EvidenceSource::CosignTag,
        };
        let e = entry(&verified);
        assert_eq!(e["Verification"]["repository"], "https://github.com/o/r");
        assert_eq!(e["Verification"]["branch"], "main");
        assert_eq!(
            e["Verification"]["signer_identity"],
            "/.github/workflows/b.yml"
        );
        assert_eq!(e["Verification"]["runner_environment"], "github-hosted");
        let failed = Verification {
            is_verified: false,
            error: Some("certificate is not trusted".into()),
            ..verified
        };
        let e = entry(&failed);
        assert_eq!(e["Verification"]["repository"], "");
        assert_eq!(e["Verification"]["error"], "certificate is not trusted");
    }
}
