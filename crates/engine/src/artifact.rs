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
    /// When the version was made or last changed (a tag moved onto it), the later of the two:
    /// moving a tag onto an old image makes it current again, not exempt.
    changed_at: Option<&'a str>,
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
        changed_at: ["created_at", "updated_at"]
            .iter()
            .filter_map(|k| p.get(*k).and_then(Value::as_str))
            .max_by_key(|t| chrono::DateTime::parse_from_rfc3339(t).ok()),
    })
}

/// Why a version is not one the rule is about (Minder's `IsSkippable`), if it is not.
fn skip_reason(p: &Params, v: &Version<'_>, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
    if p.name.as_deref().is_some_and(|n| n != v.package) {
        return Some(format!("the rule is about artifact {:?}", p.name));
    }
    if !is_current(v.changed_at, None, now) {
        return Some("the version is older than the six months' retention period".into());
    }
    if v.tags.is_empty() {
        return Some("the version has no tags".into());
    }
    if v.tags.iter().all(|t| is_signature_tag(t)) {
        return Some(
            "the version is a signature, attestation or SBOM stored beside an image".into(),
        );
    }
    if !p.filter.matches(&v.tags) {
        return Some("the version's tags do not match the rule's".into());
    }
    None
}

/// Whether a version made at `created_at` and last changed at `updated_at` (RFC 3339, either
/// unknown) is within the retention period: judged from its latest change, so a tag moved onto
/// an old image makes it current. Unknown times count as current (judged, not skipped).
pub fn is_current(
    created_at: Option<&str>,
    updated_at: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let latest = [created_at, updated_at]
        .into_iter()
        .flatten()
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .max();
    latest.is_none_or(|t| now.signed_duration_since(t) <= chrono::Duration::days(RETENTION_DAYS))
}

/// cosign's tags beside an image: `sha256-<hex>.sig`, `.att`, `.sbom`, and the OCI referrers
/// tag schema's `sha256-<hex>`.
pub fn is_signature_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let hex = rest
        .strip_suffix(".sig")
        .or_else(|| rest.strip_suffix(".att"))
        .or_else(|| rest.strip_suffix(".sbom"))
        .unwrap_or(rest);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Where an attestation's SLSA provenance contradicts the certificate that signed it, if it
/// does. A verified signature says who signed; the predicate is what the signer wrote, so a
/// workflow on any branch (or any Fulcio identity) could claim to be the release build. For
/// GitHub Actions provenance the claims rules read (workflow repository, ref and path, runner
/// environment, event) must be what Fulcio certified for the signing run.
fn predicate_contradiction(
    c: &CertificateSummary,
    predicate_type: &str,
    p: &Value,
) -> Option<String> {
    const SLSA_V1: &str = "https://slsa.dev/provenance/v1";
    const GITHUB_WORKFLOW: &str = "https://actions.github.io/buildtypes/workflow/v1";
    let build = p.get("buildDefinition");
    if predicate_type != SLSA_V1
        || build
            .and_then(|b| b.get("buildType"))
            .and_then(Value::as_str)
            != Some(GITHUB_WORKFLOW)
    {
        return None;
    }
    if c.issuer.as_deref() != Some(GITHUB_ACTIONS_ISSUER) {
        return Some(
            "GitHub Actions provenance signed by a certificate not issued to GitHub Actions".into(),
        );
    }
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let workflow = build
        .and_then(|b| b.get("externalParameters"))
        .and_then(|e| e.get("workflow"));
    let repository = text(workflow.and_then(|w| w.get("repository")));
    let git_ref = text(workflow.and_then(|w| w.get("ref")));
    let path = text(workflow.and_then(|w| w.get("path")));
    let github = build
        .and_then(|b| b.get("internalParameters"))
        .and_then(|i| i.get("github"));
    let runner = text(github.and_then(|g| g.get("runner_environment")));
    let event = text(github.and_then(|g| g.get("event_name")));
    let certified = |what: &str, claimed: &str, cert: Option<&str>| -> Option<String> {
        (Some(claimed) != cert).then(|| {
            format!(
                "the provenance claims {what} {}, the certificate says {}",
                shorten(claimed),
                shorten(cert.unwrap_or("nothing"))
            )
        })
    };
    let top_level = c
        .build_config_uri
        .as_deref()
        .or(c.subject_alternative_name.as_deref());
    certified(
        "repository",
        &repository,
        c.source_repository_uri.as_deref(),
    )
    .or_else(|| certified("ref", &git_ref, c.source_repository_ref.as_deref()))
    .or_else(|| {
        certified(
            "workflow",
            &format!("{repository}/{path}@{git_ref}"),
            top_level,
        )
    })
    .or_else(|| {
        certified(
            "runner environment",
            &runner,
            c.runner_environment.as_deref(),
        )
    })
    .or_else(|| match c.build_trigger.as_deref() {
        Some(trigger) => certified("event", &event, Some(trigger)),
        None => None,
    })
}

/// At most 200 characters of what a signer wrote, for a message.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(200).collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
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
        let contradiction = v
            .certificate
            .as_ref()
            .and_then(|c| predicate_contradiction(c, &s.predicate_type, &s.predicate));
        match contradiction {
            None => {
                o.insert(
                    "attestation".into(),
                    json!({"predicate_type": s.predicate_type, "predicate": s.predicate}),
                );
            }
            // Signed, but what it says is not what was certified: not verified, and no
            // identity or predicate to match a policy against.
            Some(why) => {
                return json!({"Verification": {
                    "is_signed": true, "is_verified": false, "repository": "", "branch": "",
                    "signer_identity": "", "runner_environment": "", "cert_issuer": "",
                    "error": why,
                }});
            }
        }
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
            ..CertificateSummary::default()
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
        let v = |package, tags: &[&str], changed_at| Version {
            owner: "o",
            package,
            digest: "sha256:00",
            tags: tags.iter().map(|t| t.to_string()).collect(),
            changed_at,
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
        let sig = format!("sha256-{}.sig", "a".repeat(64));
        let all = params(&json!({})).expect("params");
        assert!(
            skip_reason(&all, &v("web", &[&sig], None), now).is_some(),
            "a cosign signature stored as a version is not an image to check"
        );
        assert!(
            skip_reason(&all, &v("web", &[&sig, "latest"], None), now).is_none(),
            "one signature-like tag does not hide an image"
        );
    }

    /// A tag moved onto an old image makes it current: judged, not skipped.
    #[test]
    fn retention_counts_from_the_last_change() {
        let entity = Entity {
            entity_ref: plumbline_domain::EntityRef {
                provider: "github".into(),
                kind: plumbline_domain::EntityKind::Artifact,
                upstream_id: "1".into(),
            },
            project: "default".into(),
            owner: "o".into(),
            name: "r".into(),
            properties: json!({"package_owner": "o", "package_name": "web", "digest": "sha256:00",
                "tags": ["latest"], "created_at": "2020-01-01T00:00:00Z",
                "updated_at": chrono::Utc::now().to_rfc3339()}),
            labels: vec![],
            credential: None,
        };
        let v = version(&entity).expect("version");
        let p = params(&json!({"tags": ["latest"]})).expect("params");
        assert!(skip_reason(&p, &v, chrono::Utc::now()).is_none());
        assert!(!is_current(
            Some("2020-01-01T00:00:00Z"),
            None,
            chrono::Utc::now()
        ));
        assert!(is_current(None, None, chrono::Utc::now()));
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
            ..CertificateSummary::default()
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

    /// A verified attestation whose provenance claims another workflow, ref, repository,
    /// runner or event than the certificate says is not verified, and shows no predicate.
    #[test]
    fn provenance_must_agree_with_its_certificate() {
        let cert = CertificateSummary {
            issuer: Some(GITHUB_ACTIONS_ISSUER.into()),
            subject_alternative_name: Some(
                "https://github.com/o/r/.github/workflows/b.yml@refs/heads/feature".into(),
            ),
            source_repository_uri: Some("https://github.com/o/r".into()),
            source_repository_ref: Some("refs/heads/feature".into()),
            runner_environment: Some("github-hosted".into()),
            build_trigger: Some("push".into()),
            ..CertificateSummary::default()
        };
        let provenance = |repository: &str,
                          git_ref: &str,
                          path: &str,
                          runner: &str,
                          event: &str| {
            plumbline_sigstore::Statement {
                predicate_type: "https://slsa.dev/provenance/v1".into(),
                predicate: json!({"buildDefinition": {
                    "buildType": "https://actions.github.io/buildtypes/workflow/v1",
                    "externalParameters": {"workflow": {"repository": repository, "ref": git_ref, "path": path}},
                    "internalParameters": {"github": {"runner_environment": runner, "event_name": event}}}}),
            }
        };
        let judged = |s: plumbline_sigstore::Statement| {
            entry(&Verification {
                is_signed: true,
                is_verified: true,
                certificate: Some(cert.clone()),
                statement: Some(s),
                error: None,
                source: plumbline_sigstore::EvidenceSource::Attestation,
            })
        };
        let honest = judged(provenance(
            "https://github.com/o/r",
            "refs/heads/feature",
            ".github/workflows/b.yml",
            "github-hosted",
            "push",
        ));
        assert_eq!(honest["Verification"]["is_verified"], true);
        assert!(honest["Verification"]["attestation"].is_object());
        for (lie, named) in [
            (
                provenance(
                    "https://github.com/o/r",
                    "refs/heads/main",
                    ".github/workflows/b.yml",
                    "github-hosted",
                    "push",
                ),
                "ref",
            ),
            (
                provenance(
                    "https://github.com/o/other",
                    "refs/heads/feature",
                    ".github/workflows/b.yml",
                    "github-hosted",
                    "push",
                ),
                "repository",
            ),
            (
                provenance(
                    "https://github.com/o/r",
                    "refs/heads/feature",
                    ".github/workflows/release.yml",
                    "github-hosted",
                    "push",
                ),
                "workflow",
            ),
            (
                provenance(
                    "https://github.com/o/r",
                    "refs/heads/feature",
                    ".github/workflows/b.yml",
                    "self-hosted",
                    "push",
                ),
                "runner environment",
            ),
            (
                provenance(
                    "https://github.com/o/r",
                    "refs/heads/feature",
                    ".github/workflows/b.yml",
                    "github-hosted",
                    "workflow_dispatch",
                ),
                "event",
            ),
        ] {
            let e = judged(lie);
            assert_eq!(e["Verification"]["is_verified"], false, "{named}");
            assert!(e["Verification"].get("attestation").is_none(), "{named}");
            assert!(
                e["Verification"]["error"]
                    .as_str()
                    .unwrap_or("")
                    .contains(named),
                "{named}: {e}"
            );
        }
        // Other predicates have nothing to contradict.
        let sbom = judged(plumbline_sigstore::Statement {
            predicate_type: "https://spdx.dev/Document".into(),
            predicate: json!({}),
        });
        assert_eq!(sbom["Verification"]["is_verified"], true);
    }
}
