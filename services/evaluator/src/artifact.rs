//! Artifacts: what GitHub says of a container image version now, before any rule is judged
//! on it.
//!
//! Ingest enrolls a version from a `package` webhook, which can be replayed; so the evaluator
//! reads the package and the version itself and keeps what it finds (the digest, the tags, when
//! it was made). A version GitHub no longer has (deleted) in a package it still shows is
//! retired; a package that cannot be read at all is a problem, not a retirement. A package that is not
//! linked to the version's repository any more is not evaluated under it: the link is what
//! attributes an image to a repository, and a package's owner can move it.

use plumbline_domain::Entity;
use plumbline_engine::artifact::is_signature_tag;
use plumbline_github::{GitHub, GitHubError, PackageOwner};
use serde_json::{json, Value};

/// What GitHub says of an artifact entity.
pub(crate) enum ArtifactCheck {
    /// The version exists: the properties to keep.
    Present(Value),
    /// Deleted (or its package is): retire it.
    Gone(String),
    /// It cannot be judged under this repository.
    Problem(String),
}

/// Where the package lives, from the entity's properties.
struct Coordinates<'a> {
    owner_kind: PackageOwner,
    owner: &'a str,
    package: &'a str,
    version_id: u64,
}

fn coordinates(entity: &Entity) -> Option<Coordinates<'_>> {
    let p = &entity.properties;
    Some(Coordinates {
        owner_kind: PackageOwner::from_account_type(p.get("package_owner_type")?.as_str()?),
        owner: p.get("package_owner")?.as_str()?,
        package: p.get("package_name")?.as_str()?,
        version_id: entity.entity_ref.upstream_id.parse().ok()?,
    })
}

/// Why an App installation cannot judge artifacts: GitHub answers its token 400/404 on every
/// packages endpoint, which must not read as "deleted".
pub(crate) const INSTALLATION_CANNOT_READ_PACKAGES: &str = "GitHub App installation tokens cannot read GitHub Packages (GitHub does not offer the packages API to Apps): artifacts are judged only for projects whose provider is a personal access token with read:packages";

pub(crate) async fn confirm(
    github: &GitHub,
    entity: &Entity,
) -> Result<ArtifactCheck, GitHubError> {
    if github.is_installation() {
        return Ok(ArtifactCheck::Problem(
            INSTALLATION_CANNOT_READ_PACKAGES.into(),
        ));
    }
    let Some(at) = coordinates(entity) else {
        return Ok(ArtifactCheck::Problem(
            "the artifact has no package coordinates: not evaluated".into(),
        ));
    };
    let shown = format!("{}/{}", at.owner, at.package);
    let Some(package) = github
        .get_container_package(at.owner_kind, at.owner, at.package)
        .await?
    else {
        // Not "deleted": GitHub answers 404 as well when the credential lost access to the
        // package, and retiring would quietly remove its failures. Only a version missing from
        // a package that can be read retires.
        return Ok(ArtifactCheck::Problem(format!(
            "package {shown} cannot be read (deleted, or this credential has no access to it): not evaluated"
        )));
    };
    // Set at enrolment from the parent's id (the row's parent is that repository).
    let repository_id = entity.properties.get("repo_id").and_then(Value::as_u64);
    match (&package.repository, repository_id) {
        (Some(linked), Some(expected)) if linked.id == expected => {}
        (linked, _) => {
            return Ok(ArtifactCheck::Problem(format!(
                "package {shown} is linked to {}, not to {}: not evaluated under it",
                linked
                    .as_ref()
                    .map(|r| r.full_name.as_str())
                    .unwrap_or("no repository"),
                entity.full_name()
            )))
        }
    }
    let Some(version) = github
        .get_container_version(at.owner_kind, at.owner, at.package, at.version_id)
        .await?
    else {
        return Ok(ArtifactCheck::Gone(format!(
            "version {} of package {shown} is not found",
            at.version_id
        )));
    };
    if !is_digest(&version.name) {
        return Ok(ArtifactCheck::Problem(format!(
            "version {} of package {shown} names no image digest: not evaluated",
            at.version_id
        )));
    }
    Ok(ArtifactCheck::Present(json!({
        "type": "container",
        "package_name": package.name,
        "digest": version.name,
        "tags": version.tags(),
        "created_at": version.created_at,
        "updated_at": version.updated_at,
        "repo_id": repository_id,
    })))
}

/// `sha256:` and 64 lower-case hex digits: the only digests the registry reads take.
pub(crate) fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// A version found on a sweep: its id, and the properties to enroll it with.
pub(crate) struct Found {
    pub version_id: u64,
    pub properties: Value,
}

/// At most this many versions are newly enrolled per repository and sweep: a package with
/// thousands of tagged images is taken in over several sweeps rather than in one burst (the
/// ones already enrolled do not count, so each sweep gets further).
pub(crate) const MAX_DISCOVERED_PER_SWEEP: usize = 500;

/// The tagged container image versions of the packages linked to `repository` (a repository
/// entity), as a sweep finds them: what catches a version whose webhook was lost. Untagged
/// versions (intermediate layers of multi-platform builds) and cosign's own signature,
/// attestation and SBOM tags are not artifacts to check.
pub(crate) async fn discover(
    github: &GitHub,
    repository: &Entity,
) -> Result<Vec<Found>, GitHubError> {
    let Ok(repo_id) = repository.entity_ref.upstream_id.parse::<u64>() else {
        return Ok(Vec::new());
    };
    if github.is_installation() {
        tracing::debug!(repository = %repository.id(), "{INSTALLATION_CANNOT_READ_PACKAGES}");
        return Ok(Vec::new());
    }
    let owner = repository.owner.as_str();
    let (owner_kind, packages) = match github
        .list_container_packages(PackageOwner::Organization, owner)
        .await
    {
        Ok(p) => (PackageOwner::Organization, p),
        Err(GitHubError::Status { status: 404, .. }) => (
            PackageOwner::User,
            github
                .list_container_packages(PackageOwner::User, owner)
                .await?,
        ),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for package in packages
        .iter()
        .filter(|p| p.repository.as_ref().is_some_and(|r| r.id == repo_id))
    {
        for version in github
            .list_container_versions(owner_kind, owner, &package.name)
            .await?
        {
            let tags = version.tags();
            if tags.is_empty()
                || tags.iter().all(|t| is_signature_tag(t))
                || !is_digest(&version.name)
                || !plumbline_engine::artifact::is_current(
                    version.created_at.as_deref(),
                    version.updated_at.as_deref(),
                    chrono::Utc::now(),
                )
            {
                continue;
            }
            found.push(Found {
                version_id: version.id,
                properties: json!({
                    "type": "container",
                    "package_owner": owner,
                    "package_owner_type": owner_kind.as_str(),
                    "package_name": package.name,
                    "version_id": version.id,
                    "repo_id": repo_id,
                    "digest": version.name,
                    "tags": tags,
                }),
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An App installation is told why, never retired: GitHub answers its token 404 on the
    /// packages API, which must not read as "the version was deleted". Nothing is requested
    /// (the API URL leads nowhere).
    #[tokio::test]
    async fn installations_are_told_packages_are_out_of_their_reach() {
        let mut config = plumbline_github::GitHubConfig::new("http://127.0.0.1:9", None);
        config.app = Some(plumbline_github::AppCredentials {
            app_id: 77,
            private_key_pem: include_str!(
                "../../../crates/github-sim/testdata/app-private-key.pem"
            )
            .into(),
            installation_id: Some(1),
            private_key_file: None,
        });
        let github = GitHub::new(&config).expect("client");
        assert!(github.is_installation());
        let entity = Entity {
            entity_ref: plumbline_domain::EntityRef {
                provider: "github".into(),
                kind: plumbline_domain::EntityKind::Artifact,
                upstream_id: "5".into(),
            },
            project: "default".into(),
            owner: "o".into(),
            name: "r".into(),
            properties: json!({"package_owner": "o", "package_owner_type": "User",
                "package_name": "web", "repo_id": 1}),
            labels: vec![],
            credential: None,
        };
        match confirm(&github, &entity).await.expect("no request") {
            ArtifactCheck::Problem(why) => assert!(why.contains("read:packages"), "{why}"),
            _ => panic!("an installation's artifact is a problem, not present or gone"),
        }
        let mut repository = entity.clone();
        repository.entity_ref = plumbline_domain::EntityRef::repository("github", 1);
        assert!(discover(&github, &repository)
            .await
            .expect("no request")
            .is_empty());
    }

    #[test]
    fn digests_and_signature_tags() {
        let hex = "a".repeat(64);
        assert!(is_digest(&format!("sha256:{hex}")));
        assert!(!is_digest(&format!("sha256:{}", "A".repeat(64))));
        assert!(!is_digest("sha256:abc"));
        assert!(!is_digest(&format!("sha512:{hex}")));
        for t in [".sig", ".att", ".sbom", ""] {
            assert!(is_signature_tag(&format!("sha256-{hex}{t}")), "{t}");
        }
        assert!(!is_signature_tag("v1.2.3"));
        assert!(!is_signature_tag("sha256-short.sig"));
    }
}
