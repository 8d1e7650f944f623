//! Container packages in GitHub's registry, and the artifact attestations GitHub keeps for
//! them: what makes an image an entity (its package, the repository the package is linked to,
//! each version's digest and tags) and the Sigstore bundles GitHub holds for a digest.
//!
//! A package belongs to an account, not to a repository; the link to a repository is a
//! property of the package that its owner can change. So every read names the account kind
//! (`/orgs/...` or `/users/...`) and callers check the link themselves before they attribute
//! a version to a repository.

use crate::client::GitHub;
use crate::GitHubError;
use http::Method;
use serde::Deserialize;
use serde_json::Value;

/// Whose packages: an organization's or a user's (the API paths differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageOwner {
    Organization,
    User,
}

impl PackageOwner {
    /// From a webhook's `owner.type` ("Organization" or "User"; anything else is a user).
    pub fn from_account_type(t: &str) -> PackageOwner {
        if t.eq_ignore_ascii_case("organization") {
            PackageOwner::Organization
        } else {
            PackageOwner::User
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PackageOwner::Organization => "Organization",
            PackageOwner::User => "User",
        }
    }

    fn segment(self) -> &'static str {
        match self {
            PackageOwner::Organization => "orgs",
            PackageOwner::User => "users",
        }
    }
}

/// A container package (`GET /orgs/{org}/packages/container/{name}`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Package {
    pub id: u64,
    pub name: String,
    /// The repository the package is linked to, when it is.
    #[serde(default)]
    pub repository: Option<PackageRepository>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PackageRepository {
    pub id: u64,
    pub full_name: String,
}

/// One version of a container package: an image digest and the tags pointing at it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PackageVersion {
    pub id: u64,
    /// The image digest (`sha256:...`).
    pub name: String,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub metadata: Option<VersionMetadata>,
}

impl PackageVersion {
    /// The version's tags (none for an untagged version).
    pub fn tags(&self) -> Vec<String> {
        self.metadata
            .as_ref()
            .and_then(|m| m.container.as_ref())
            .map(|c| c.tags.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct VersionMetadata {
    #[serde(default)]
    pub container: Option<ContainerMetadata>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ContainerMetadata {
    #[serde(default)]
    pub tags: Vec<String>,
}

/// At most this many pages of versions are read per package on a sweep (100 each).
const MAX_VERSION_PAGES: usize = 100;
/// At most this many pages of packages per account.
const MAX_PACKAGE_PAGES: usize = 50;

impl GitHub {
    /// A container package; `None` when GitHub does not know it (or it is not visible).
    pub async fn get_container_package(
        &self,
        owner_kind: PackageOwner,
        owner: &str,
        name: &str,
    ) -> Result<Option<Package>, GitHubError> {
        let path = format!(
            "/{}/{owner}/packages/container/{}",
            owner_kind.segment(),
            encode(name)
        );
        self.get_optional(&path).await
    }

    /// One version of a container package; `None` when it does not exist (deleted).
    pub async fn get_container_version(
        &self,
        owner_kind: PackageOwner,
        owner: &str,
        name: &str,
        version_id: u64,
    ) -> Result<Option<PackageVersion>, GitHubError> {
        let path = format!(
            "/{}/{owner}/packages/container/{}/versions/{version_id}",
            owner_kind.segment(),
            encode(name)
        );
        self.get_optional(&path).await
    }

    /// The account's container packages (all pages, bounded).
    pub async fn list_container_packages(
        &self,
        owner_kind: PackageOwner,
        owner: &str,
    ) -> Result<Vec<Package>, GitHubError> {
        let path = format!(
            "/{}/{owner}/packages?package_type=container&per_page=100",
            owner_kind.segment()
        );
        self.list_all(&path, None, MAX_PACKAGE_PAGES).await
    }

    /// The active versions of a container package (all pages, bounded).
    pub async fn list_container_versions(
        &self,
        owner_kind: PackageOwner,
        owner: &str,
        name: &str,
    ) -> Result<Vec<PackageVersion>, GitHubError> {
        let path = format!(
            "/{}/{owner}/packages/container/{}/versions?state=active&per_page=100",
            owner_kind.segment(),
            encode(name)
        );
        self.list_all(&path, None, MAX_VERSION_PAGES).await
    }

    /// The Sigstore bundles GitHub holds for `digest` in a repository
    /// (`GET /repos/{owner}/{repo}/attestations/{digest}`); empty when there are none.
    pub async fn attestation_bundles(
        &self,
        owner: &str,
        repo: &str,
        digest: &str,
    ) -> Result<Vec<Value>, GitHubError> {
        #[derive(Deserialize)]
        struct Entry {
            #[serde(default)]
            bundle: Option<Value>,
        }
        let path = format!(
            "/repos/{owner}/{repo}/attestations/{}?per_page=100",
            encode(digest)
        );
        let r = match self.request_ok(Method::GET, &path, None).await {
            Ok(r) => r,
            Err(GitHubError::Status { status: 404, .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            attestations: Vec<Entry>,
        }
        let page: Page = serde_json::from_slice(&r.body).map_err(|e| GitHubError::Decode {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(page
            .attestations
            .into_iter()
            .filter_map(|e| e.bundle)
            .collect())
    }

    async fn get_optional<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, GitHubError> {
        match self.request_ok(Method::GET, path, None).await {
            Ok(r) => serde_json::from_slice(&r.body)
                .map(Some)
                .map_err(|e| GitHubError::Decode {
                    path: path.to_string(),
                    reason: e.to_string(),
                }),
            Err(GitHubError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A package name or digest as one path segment (package names may hold `/`): everything but
/// RFC 3986's unreserved characters is percent-encoded.
fn encode(segment: &str) -> String {
    const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(segment, NOT_UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_segment() {
        assert_eq!(encode("app/web"), "app%2Fweb");
        assert_eq!(encode("sha256:ab"), "sha256%3Aab");
        assert_eq!(encode("../x"), "..%2Fx");
    }

    #[test]
    fn tags_come_from_container_metadata() {
        let v: PackageVersion = serde_json::from_value(serde_json::json!({
            "id": 1, "name": "sha256:aa",
            "metadata": {"package_type": "container", "container": {"tags": ["v1", "latest"]}}
        }))
        .expect("version");
        assert_eq!(v.tags(), vec!["v1", "latest"]);
        let untagged: PackageVersion =
            serde_json::from_value(serde_json::json!({"id": 2, "name": "sha256:bb"}))
                .expect("version");
        assert!(untagged.tags().is_empty());
    }
}
