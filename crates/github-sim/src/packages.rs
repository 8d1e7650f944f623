//! GitHub Packages, container registry (`ghcr.io`) only: the packages of an account, their
//! versions (one per image digest, with the tags that currently point at it), the REST
//! endpoints that list, read and delete them, and the `package` / `registry_package` webhooks a
//! push to the registry sends.
//!
//! Plumbline reads which images a repository publishes and which digest a tag points at; the
//! simulator keeps exactly that. Tests publish images with [`Simulator::add_container_version`]
//! (a `docker push` stand-in: the package is created on first use and linked to a repository)
//! and move tags with [`Simulator::tag_container_version`], as a registry does.
//!
//! GitHub's rules reproduced here:
//! - only `package_type=container` has packages; the other types answer like a package that
//!   does not exist ("Package not found."), and their listings are empty;
//! - the package endpoints are not enabled for GitHub Apps (`enabledForGitHubApps: false` in
//!   GitHub's OpenAPI description): an installation token is answered 400 "Invalid argument."
//!   by the listing and 404 "Package not found." by the others, whatever its permissions, as
//!   GitHub does (PATs and the simulator's open mode see everything);
//! - versions are listed newest first, `state=deleted` lists deleted ones, a deleted version
//!   answers 404, and the last tagged version of a package cannot be deleted.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::api::{
    base_of, encode_query_component, json_response, paginate, with_link, ApiError, PageParams, Tag,
};
use crate::apps::Identity;
use crate::render;
use crate::state::{Actor, Org, Repo, State as SimState};
use crate::webhooks::{self, Event};
use crate::{SimError, Simulator};

const R_ORG_LIST: &str = "/orgs/{org}/packages";
const R_USER_LIST: &str = "/users/{username}/packages";
const R_ORG_PACKAGE: &str = "/orgs/{org}/packages/{package_type}/{package_name}";
const R_USER_PACKAGE: &str = "/users/{username}/packages/{package_type}/{package_name}";
const R_ORG_VERSIONS: &str = "/orgs/{org}/packages/{package_type}/{package_name}/versions";
const R_USER_VERSIONS: &str = "/users/{username}/packages/{package_type}/{package_name}/versions";
const R_ORG_VERSION: &str =
    "/orgs/{org}/packages/{package_type}/{package_name}/versions/{package_version_id}";
const R_USER_VERSION: &str =
    "/users/{username}/packages/{package_type}/{package_name}/versions/{package_version_id}";

const DOCS_LIST_ORG: &str =
    "https://docs.github.com/rest/packages/packages#list-packages-for-an-organization";
const DOCS_LIST_USER: &str =
    "https://docs.github.com/rest/packages/packages#list-packages-for-a-user";
const DOCS_GET_ORG: &str =
    "https://docs.github.com/rest/packages/packages#get-a-package-for-an-organization";
const DOCS_GET_USER: &str =
    "https://docs.github.com/rest/packages/packages#get-a-package-for-a-user";
const DOCS_VERSIONS_ORG: &str = "https://docs.github.com/rest/packages/packages#list-package-versions-for-a-package-owned-by-an-organization";
const DOCS_VERSIONS_USER: &str = "https://docs.github.com/rest/packages/packages#list-package-versions-for-a-package-owned-by-a-user";
const DOCS_VERSION_ORG: &str =
    "https://docs.github.com/rest/packages/packages#get-a-package-version-for-an-organization";
const DOCS_VERSION_USER: &str =
    "https://docs.github.com/rest/packages/packages#get-a-package-version-for-a-user";
const DOCS_DELETE_ORG: &str =
    "https://docs.github.com/rest/packages/packages#delete-package-version-for-an-organization";
const DOCS_DELETE_USER: &str =
    "https://docs.github.com/rest/packages/packages#delete-a-package-version-for-a-user";

/// The package types of GitHub's `package_type` parameter.
const PACKAGE_TYPES: [&str; 6] = ["npm", "maven", "rubygems", "docker", "nuget", "container"];

/// The only type the simulator has packages of.
const CONTAINER: &str = "container";

const PACKAGE_NOT_FOUND: &str = "Package not found.";
const LAST_TAGGED_VERSION: &str =
    "You cannot delete the last tagged version of a package. You must delete the package instead.";
/// GitHub's answer to a listing beyond its 10,000-item window.
const PAGE_WINDOW: usize = 10_000;

/// A container package.
#[derive(Debug, Clone)]
pub(crate) struct Package {
    pub id: u64,
    pub name: String,
    /// Lower-cased owner login, the key into `State::orgs`.
    pub owner_key: String,
    /// The repository the package is linked to (its `repository` field).
    pub repository_id: Option<u64>,
    pub private: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Versions in publication order.
    pub versions: Vec<Version>,
}

/// One image of a container package.
#[derive(Debug, Clone)]
pub(crate) struct Version {
    pub id: u64,
    /// "sha256:<hex>", the version's `name`.
    pub digest: String,
    /// Tags pointing at this image, in the order they were given to it.
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// The packages of all accounts in creation order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Packages {
    list: Vec<Package>,
}

/// Whether `digest` is a container image digest, "sha256:" and 64 lower-case hex digits.
fn is_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The account path segment of `/orgs/...` or `/users/...` routes, from the request path.
fn scope_of(uri: &Uri) -> &'static str {
    if uri.path().starts_with("/users/") {
        "users"
    } else {
        "orgs"
    }
}

fn invalid_argument(documentation_url: &'static str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "Invalid argument.",
        documentation_url,
    )
}

fn package_not_found(documentation_url: &'static str) -> ApiError {
    ApiError::not_found(PACKAGE_NOT_FOUND, documentation_url)
}

/// Whether the request comes with an installation token, which GitHub does not let use the
/// package endpoints.
fn is_installation(identity: &Option<Extension<Identity>>) -> bool {
    identity
        .as_ref()
        .is_some_and(|Extension(i)| i.installation_id().is_some())
}

/// `{base}/orgs/{owner}/packages/container/{name}`, the package's API URL.
fn package_api_url(base: &str, org: &Org, package: &Package) -> String {
    format!(
        "{base}/orgs/{}/packages/{CONTAINER}/{}",
        org.login,
        encode_query_component(&package.name)
    )
}

/// The package's page, `{web}/orgs/{owner}/packages/container/package/{name}`.
fn package_html_url(base: &str, org: &Org, package: &Package) -> String {
    format!(
        "{base}/orgs/{}/packages/{CONTAINER}/package/{}",
        org.login,
        encode_query_component(&package.name)
    )
}

/// A package in GitHub's `package` shape.
fn package_json(base: &str, org: &Org, package: &Package, repo: Option<&Repo>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(package.id));
    m.insert("name".into(), json!(package.name));
    m.insert("package_type".into(), json!(CONTAINER));
    m.insert("owner".into(), render::owner_json(base, org));
    m.insert(
        "version_count".into(),
        json!(package
            .versions
            .iter()
            .filter(|v| v.deleted_at.is_none())
            .count()),
    );
    m.insert(
        "visibility".into(),
        json!(if package.private { "private" } else { "public" }),
    );
    m.insert("url".into(), json!(package_api_url(base, org, package)));
    m.insert(
        "html_url".into(),
        json!(package_html_url(base, org, package)),
    );
    if let Some(repo) = repo {
        m.insert("repository".into(), render::repo_json(base, org, repo));
    }
    m.insert(
        "created_at".into(),
        json!(render::time(&package.created_at)),
    );
    m.insert(
        "updated_at".into(),
        json!(render::time(&package.updated_at)),
    );
    Value::Object(m)
}

/// A version in GitHub's `package-version` shape, with its container metadata.
fn version_json(base: &str, org: &Org, package: &Package, version: &Version) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(version.id));
    m.insert("name".into(), json!(version.digest));
    m.insert(
        "url".into(),
        json!(format!(
            "{}/versions/{}",
            package_api_url(base, org, package),
            version.id
        )),
    );
    m.insert(
        "package_html_url".into(),
        json!(package_html_url(base, org, package)),
    );
    m.insert(
        "html_url".into(),
        json!(format!(
            "{base}/orgs/{}/packages/{CONTAINER}/{}/{}",
            org.login,
            encode_query_component(&package.name),
            version.id
        )),
    );
    m.insert(
        "created_at".into(),
        json!(render::time(&version.created_at)),
    );
    m.insert(
        "updated_at".into(),
        json!(render::time(&version.updated_at)),
    );
    if let Some(deleted_at) = &version.deleted_at {
        m.insert("deleted_at".into(), json!(render::time(deleted_at)));
    }
    m.insert(
        "metadata".into(),
        json!({ "package_type": CONTAINER, "container": { "tags": version.tags } }),
    );
    Value::Object(m)
}

impl SimState {
    /// A container package of an account (names compare case-insensitively, like ghcr.io's
    /// lower-case names).
    pub(crate) fn container_package(&self, owner: &str, name: &str) -> Option<&Package> {
        let owner_key = owner.to_lowercase();
        self.packages
            .list
            .iter()
            .find(|p| p.owner_key == owner_key && p.name.eq_ignore_ascii_case(name))
    }

    fn container_package_mut(&mut self, owner: &str, name: &str) -> Option<&mut Package> {
        let owner_key = owner.to_lowercase();
        self.packages
            .list
            .iter_mut()
            .find(|p| p.owner_key == owner_key && p.name.eq_ignore_ascii_case(name))
    }

    /// Publishes an image (a `docker push`): creates the package on first use, links it to
    /// `repository` ("owner/name") when given, adds the version (or, for a digest the package
    /// already has, just its tags) and moves the tags onto it. Returns the version id and the
    /// `package` and `registry_package` events ("published" for a new version, else "updated").
    fn push_container_version(
        &mut self,
        owner: &str,
        name: &str,
        repository: Option<&str>,
        digest: &str,
        tags: &[&str],
        actor: Actor,
    ) -> Result<(u64, Vec<Event>), SimError> {
        if !is_digest(digest) {
            return Err(SimError::Invalid(format!(
                "digest must be \"sha256:\" and 64 lower-case hex digits, not {digest:?}"
            )));
        }
        if name.is_empty() || tags.iter().any(|t| t.is_empty()) {
            return Err(SimError::Invalid(
                "package names and tags must not be empty".to_owned(),
            ));
        }
        let repository_id = match repository {
            Some(full_name) => {
                let (repo_owner, repo_name) = full_name.split_once('/').ok_or_else(|| {
                    SimError::Invalid(format!(
                        "repository must be \"owner/name\", not {full_name:?}"
                    ))
                })?;
                Some(self.repo_id(repo_owner, repo_name)?)
            }
            None => None,
        };
        let private = repository_id
            .and_then(|id| self.repos.get(&id))
            .is_none_or(|repo| repo.private);
        let owner_key = self.ensure_org(owner).login.to_lowercase();
        let now = Utc::now();
        if self.container_package(owner, name).is_none() {
            let id = self.next_object_id();
            self.packages.list.push(Package {
                id,
                name: name.to_owned(),
                owner_key,
                repository_id,
                private,
                created_at: now,
                updated_at: now,
                versions: Vec::new(),
            });
        }
        let new_id = self.next_object_id();
        let package = self
            .container_package_mut(owner, name)
            .ok_or_else(|| SimError::NotFound(PACKAGE_NOT_FOUND.to_owned()))?;
        if repository_id.is_some() {
            package.repository_id = repository_id;
        }
        package.updated_at = now;
        let existing = package
            .versions
            .iter()
            .position(|v| v.digest == digest && v.deleted_at.is_none());
        let (index, action) = match existing {
            Some(index) => (index, "updated"),
            None => {
                package.versions.push(Version {
                    id: new_id,
                    digest: digest.to_owned(),
                    tags: Vec::new(),
                    created_at: now,
                    updated_at: now,
                    deleted_at: None,
                });
                (package.versions.len() - 1, "published")
            }
        };
        for tag in tags {
            move_tag(package, index, tag, now);
        }
        let version_id = package.versions[index].id;
        let events = self.package_events(owner, name, version_id, action, actor);
        Ok((version_id, events))
    }

    /// Points `tag` at the active version with `digest`; sends `package` "updated".
    fn tag_container(
        &mut self,
        owner: &str,
        name: &str,
        digest: &str,
        tag: &str,
        actor: Actor,
    ) -> Result<Vec<Event>, SimError> {
        if tag.is_empty() {
            return Err(SimError::Invalid("tags must not be empty".to_owned()));
        }
        let now = Utc::now();
        let package = self
            .container_package_mut(owner, name)
            .ok_or_else(|| SimError::NotFound(PACKAGE_NOT_FOUND.to_owned()))?;
        let index = package
            .versions
            .iter()
            .position(|v| v.digest == digest && v.deleted_at.is_none())
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))?;
        move_tag(package, index, tag, now);
        package.updated_at = now;
        let version_id = package.versions[index].id;
        Ok(self.package_events(owner, name, version_id, "updated", actor))
    }

    /// Deletes an active version; GitHub refuses the last tagged one (delete the package).
    fn delete_container(
        &mut self,
        owner: &str,
        name: &str,
        version_id: u64,
    ) -> Result<(), SimError> {
        let package = self
            .container_package_mut(owner, name)
            .ok_or_else(|| SimError::NotFound(PACKAGE_NOT_FOUND.to_owned()))?;
        let index = package
            .versions
            .iter()
            .position(|v| v.id == version_id && v.deleted_at.is_none())
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))?;
        let tagged_elsewhere = package
            .versions
            .iter()
            .any(|v| v.id != version_id && v.deleted_at.is_none() && !v.tags.is_empty());
        if !package.versions[index].tags.is_empty() && !tagged_elsewhere {
            return Err(SimError::Invalid(LAST_TAGGED_VERSION.to_owned()));
        }
        let now = Utc::now();
        package.versions[index].deleted_at = Some(now);
        package.updated_at = now;
        Ok(())
    }

    /// The package (with its owner and linked repository) of a REST path, for a container
    /// `package_type`; GitHub's 404 otherwise.
    fn package_of_path(
        &self,
        owner: &str,
        package_type: &str,
        name: &str,
        documentation_url: &'static str,
    ) -> Result<(&Org, &Package, Option<&Repo>), ApiError> {
        if package_type != CONTAINER {
            return Err(package_not_found(documentation_url));
        }
        let package = self
            .container_package(owner, name)
            .ok_or_else(|| package_not_found(documentation_url))?;
        let org = self
            .orgs
            .get(&package.owner_key)
            .ok_or_else(|| package_not_found(documentation_url))?;
        let repo = package.repository_id.and_then(|id| self.repos.get(&id));
        Ok((org, package, repo))
    }

    /// The `package` and `registry_package` events of a version, when anyone receives them.
    fn package_events(
        &self,
        owner: &str,
        name: &str,
        version_id: u64,
        action: &str,
        actor: Actor,
    ) -> Vec<Event> {
        if !self.delivers_webhooks() {
            return Vec::new();
        }
        ["package", "registry_package"]
            .into_iter()
            .filter_map(|event| {
                let payload =
                    self.package_payload(event, action, owner, name, version_id, actor)?;
                Some(Event {
                    name: event,
                    payload,
                })
            })
            .collect()
    }

    /// The payload of a `package` or `registry_package` webhook (`key` names both the event and
    /// the payload's package object) in the shape GitHub sends for a container image.
    pub(crate) fn package_payload(
        &self,
        key: &str,
        action: &str,
        owner: &str,
        name: &str,
        version_id: u64,
        actor: Actor,
    ) -> Option<Value> {
        let package = self.container_package(owner, name)?;
        let org = self.orgs.get(&package.owner_key)?;
        let version = package.versions.iter().find(|v| v.id == version_id)?;
        let repo = package.repository_id.and_then(|id| self.repos.get(&id));
        let base = self.base_url(None);
        let mut m = match repo {
            Some(repo) => webhooks::base_payload(&base, org, repo, action, actor),
            None => {
                let mut m = Map::new();
                m.insert("action".into(), json!(action));
                m.insert("organization".into(), render::org_json(&base, org));
                m.insert("sender".into(), render::sender_json(&base, actor));
                m.insert("installation".into(), render::installation_json());
                m
            }
        };
        let login = &org.login;
        let image = format!("ghcr.io/{}/{}", login.to_lowercase(), package.name);
        let tag = version.tags.last().cloned().unwrap_or_default();
        let namespace = match repo {
            Some(repo) => format!("{login}/{}", repo.name),
            None => login.clone(),
        };
        let time = |t: &DateTime<Utc>| json!(render::time(t));
        let package_version = json!({
            "id": version.id,
            "version": version.digest,
            "name": version.digest,
            "description": "",
            "summary": "",
            "body": {},
            "manifest": "",
            "html_url": format!(
                "{base}/orgs/{login}/packages/{CONTAINER}/{}/{}",
                encode_query_component(&package.name),
                version.id
            ),
            "target_commitish": repo.map(|r| r.default_branch.clone()).unwrap_or_default(),
            "target_oid": "",
            "created_at": time(&version.created_at),
            "updated_at": time(&version.updated_at),
            "metadata": [],
            "container_metadata": {
                "tag": { "name": tag, "digest": version.digest },
                "labels": {
                    "description": "",
                    "source": repo.map(|r| format!("{base}/{login}/{}", r.name)).unwrap_or_default(),
                    "revision": "",
                    "image_url": repo.map(|r| format!("{base}/{login}/{}", r.name)).unwrap_or_default(),
                    "licenses": "",
                    "all_labels": {},
                },
                "manifest": {
                    "digest": version.digest,
                    "media_type": "application/vnd.oci.image.manifest.v1+json",
                    "uri": format!("repositories/{login}/{}/manifests/{}", package.name, version.digest),
                },
            },
            "package_files": [],
            "installation_command": format!("docker pull {image}:{tag}"),
            "package_url": format!("{image}:{tag}"),
        });
        let object = json!({
            "id": package.id,
            "name": package.name,
            "namespace": namespace,
            "description": null,
            "ecosystem": "CONTAINER",
            "package_type": "CONTAINER",
            "html_url": package_html_url(&base, org, package),
            "created_at": time(&package.created_at),
            "updated_at": time(&package.updated_at),
            "owner": render::owner_json(&base, org),
            "package_version": package_version,
            "registry": {
                "about_url": "https://docs.github.com/packages/learn-github-packages/introduction-to-github-packages",
                "name": "GitHub CONTAINER registry",
                "type": "CONTAINER",
                "url": format!("https://ghcr.io/{}", login.to_lowercase()),
                "vendor": "GitHub Inc",
            },
        });
        m.insert(key.to_owned(), object);
        Some(Value::Object(m))
    }
}

/// Points `tag` at version `index` of `package`, taking it from any other version.
fn move_tag(package: &mut Package, index: usize, tag: &str, now: DateTime<Utc>) {
    for (i, version) in package.versions.iter_mut().enumerate() {
        if i != index && version.tags.iter().any(|t| t == tag) {
            version.tags.retain(|t| t != tag);
            version.updated_at = now;
        }
    }
    if let Some(version) = package.versions.get_mut(index) {
        if !version.tags.iter().any(|t| t == tag) {
            version.tags.push(tag.to_owned());
            version.updated_at = now;
        }
    }
}

pub(crate) fn register(router: Router<Simulator>, tag: Tag<'_>) -> Router<Simulator> {
    router
        .route(R_ORG_LIST, tag(R_ORG_LIST, get(list_packages)))
        .route(R_USER_LIST, tag(R_USER_LIST, get(list_packages)))
        .route(R_ORG_PACKAGE, tag(R_ORG_PACKAGE, get(get_package)))
        .route(R_USER_PACKAGE, tag(R_USER_PACKAGE, get(get_package)))
        .route(R_ORG_VERSIONS, tag(R_ORG_VERSIONS, get(list_versions)))
        .route(R_USER_VERSIONS, tag(R_USER_VERSIONS, get(list_versions)))
        .route(
            R_ORG_VERSION,
            tag(R_ORG_VERSION, get(get_version).delete(delete_version)),
        )
        .route(
            R_USER_VERSION,
            tag(R_USER_VERSION, get(get_version).delete(delete_version)),
        )
}

/// `GET /orgs/{org}/packages` and `GET /users/{username}/packages`.
async fn list_packages(
    State(sim): State<Simulator>,
    Path(owner): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    identity: Option<Extension<Identity>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let scope = scope_of(&uri);
    let docs = if scope == "users" {
        DOCS_LIST_USER
    } else {
        DOCS_LIST_ORG
    };
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let org = st
        .org(&owner)
        .ok_or_else(|| ApiError::not_found("Not Found", docs))?;
    let package_type = query
        .get("package_type")
        .map(String::as_str)
        .filter(|t| PACKAGE_TYPES.contains(t))
        .ok_or_else(|| invalid_argument(docs))?;
    if package_type == CONTAINER && is_installation(&identity) {
        return Err(invalid_argument(docs));
    }
    let params = PageParams::from_query(&query);
    if params.page.saturating_mul(params.per_page) > PAGE_WINDOW {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The value of `per_page` multiplied by `page` cannot be greater than 10000.",
            docs,
        ));
    }
    let visibility = query.get("visibility").map(String::as_str);
    let owner_key = org.login.to_lowercase();
    let packages: Vec<&Package> = st
        .packages
        .list
        .iter()
        .filter(|p| package_type == CONTAINER && p.owner_key == owner_key)
        .filter(|p| match visibility {
            Some("public") => !p.private,
            Some("private" | "internal") => p.private,
            _ => true,
        })
        .collect();
    let url = format!("{base}/{scope}/{}/packages", org.login);
    let (page, link) = paginate(&packages, params, &url, &query);
    let body: Vec<Value> = page
        .iter()
        .map(|p| {
            let repo = p.repository_id.and_then(|id| st.repos.get(&id));
            package_json(&base, org, p, repo)
        })
        .collect();
    Ok(with_link(
        json_response(StatusCode::OK, &Value::Array(body)),
        link,
    ))
}

/// `GET /orgs/{org}/packages/{package_type}/{package_name}` (and the `/users/` form).
async fn get_package(
    State(sim): State<Simulator>,
    Path((owner, package_type, name)): Path<(String, String, String)>,
    identity: Option<Extension<Identity>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let docs = if scope_of(&uri) == "users" {
        DOCS_GET_USER
    } else {
        DOCS_GET_ORG
    };
    if is_installation(&identity) {
        return Err(package_not_found(docs));
    }
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, package, repo) = st.package_of_path(&owner, &package_type, &name, docs)?;
    Ok(json_response(
        StatusCode::OK,
        &package_json(&base, org, package, repo),
    ))
}

/// `GET .../packages/{package_type}/{package_name}/versions`: newest first, `state=active`
/// (default) or `deleted`, paginated.
async fn list_versions(
    State(sim): State<Simulator>,
    Path((owner, package_type, name)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    identity: Option<Extension<Identity>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let scope = scope_of(&uri);
    let docs = if scope == "users" {
        DOCS_VERSIONS_USER
    } else {
        DOCS_VERSIONS_ORG
    };
    if is_installation(&identity) {
        return Err(package_not_found(docs));
    }
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, package, _) = st.package_of_path(&owner, &package_type, &name, docs)?;
    let deleted = query.get("state").map(String::as_str) == Some("deleted");
    let versions: Vec<&Version> = package
        .versions
        .iter()
        .rev()
        .filter(|v| v.deleted_at.is_some() == deleted)
        .collect();
    let params = PageParams::from_query(&query);
    let url = format!(
        "{base}/{scope}/{}/packages/{CONTAINER}/{}/versions",
        org.login,
        encode_query_component(&package.name)
    );
    let (page, link) = paginate(&versions, params, &url, &query);
    let body: Vec<Value> = page
        .iter()
        .map(|v| version_json(&base, org, package, v))
        .collect();
    Ok(with_link(
        json_response(StatusCode::OK, &Value::Array(body)),
        link,
    ))
}

/// The documentation URLs of the single-version routes: (get, delete).
fn version_docs(uri: &Uri) -> (&'static str, &'static str) {
    if scope_of(uri) == "users" {
        (DOCS_VERSION_USER, DOCS_DELETE_USER)
    } else {
        (DOCS_VERSION_ORG, DOCS_DELETE_ORG)
    }
}

/// `GET .../versions/{package_version_id}`: an active version, else 404.
async fn get_version(
    State(sim): State<Simulator>,
    Path((owner, package_type, name, version_id)): Path<(String, String, String, String)>,
    identity: Option<Extension<Identity>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (docs, _) = version_docs(&uri);
    if is_installation(&identity) {
        return Err(package_not_found(docs));
    }
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, package, _) = st.package_of_path(&owner, &package_type, &name, docs)?;
    let version = version_id
        .parse::<u64>()
        .ok()
        .and_then(|id| {
            package
                .versions
                .iter()
                .find(|v| v.id == id && v.deleted_at.is_none())
        })
        .ok_or_else(|| ApiError::not_found("Not Found", docs))?;
    Ok(json_response(
        StatusCode::OK,
        &version_json(&base, org, package, version),
    ))
}

/// `DELETE .../versions/{package_version_id}`: 204, then the version answers 404.
async fn delete_version(
    State(sim): State<Simulator>,
    Path((owner, package_type, name, version_id)): Path<(String, String, String, String)>,
    identity: Option<Extension<Identity>>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (_, docs) = version_docs(&uri);
    if is_installation(&identity) {
        return Err(package_not_found(docs));
    }
    let mut st = sim.lock();
    st.package_of_path(&owner, &package_type, &name, docs)?;
    let id = version_id
        .parse::<u64>()
        .map_err(|_| ApiError::not_found("Not Found", docs))?;
    st.delete_container(&owner, &name, id)
        .map_err(|e| match e {
            SimError::Invalid(message) => ApiError::new(StatusCode::BAD_REQUEST, message, docs),
            other => ApiError::from_sim(other, docs),
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

impl Simulator {
    /// Publishes a container image as a `docker push` to `ghcr.io/{owner}/{package}` would:
    /// creates the package on first use (linked to `repository_full_name`, "owner/name", when
    /// given; the package is private unless that repository is public), adds a version for
    /// `digest` ("sha256:" and 64 lower-case hex digits) and points `tags` at it, taking them
    /// from any other version. Pushing a digest the package already has only adds the tags.
    /// Sends `package` and `registry_package` webhooks ("published" for a new version, else
    /// "updated"). Returns the version id.
    pub fn add_container_version(
        &self,
        owner: &str,
        package: &str,
        repository_full_name: Option<&str>,
        digest: &str,
        tags: &[&str],
    ) -> Result<u64, SimError> {
        let mut st = self.lock();
        let (id, events) = st.push_container_version(
            owner,
            package,
            repository_full_name,
            digest,
            tags,
            Actor::Admin,
        )?;
        self.emit(&st, events);
        Ok(id)
    }

    /// Points `tag` at the version with `digest`, moving it from the version it pointed at, as
    /// the registry does on a push of an existing image under a new tag. Sends `package` and
    /// `registry_package` "updated".
    pub fn tag_container_version(
        &self,
        owner: &str,
        package: &str,
        digest: &str,
        tag: &str,
    ) -> Result<(), SimError> {
        let mut st = self.lock();
        let events = st.tag_container(owner, package, digest, tag, Actor::Admin)?;
        self.emit(&st, events);
        Ok(())
    }

    /// Deletes a version, as in the package's settings page: it is listed under
    /// `state=deleted` from then on and answers 404. Like GitHub, the last tagged version of a
    /// package cannot be deleted (`SimError::Invalid`). GitHub sends no webhook for it.
    pub fn delete_container_version(
        &self,
        owner: &str,
        package: &str,
        version_id: u64,
    ) -> Result<(), SimError> {
        self.lock().delete_container(owner, package, version_id)
    }

    /// Sets a package's visibility, as in the package's settings page (no webhook).
    pub fn set_container_visibility(
        &self,
        owner: &str,
        package: &str,
        private: bool,
    ) -> Result<(), SimError> {
        let mut st = self.lock();
        let found = st
            .container_package_mut(owner, package)
            .ok_or_else(|| SimError::NotFound(PACKAGE_NOT_FOUND.to_owned()))?;
        found.private = private;
        found.updated_at = Utc::now();
        Ok(())
    }

    /// The payload of the `package` webhook GitHub sends for a version of a container package
    /// (`action` "published" or "updated"), as sent by [`Simulator::add_container_version`];
    /// None if the package or version does not exist.
    pub fn package_webhook_payload(
        &self,
        action: &str,
        owner: &str,
        package: &str,
        version_id: u64,
    ) -> Option<Value> {
        self.lock()
            .package_payload("package", action, owner, package, version_id, Actor::Admin)
    }

    /// The payload of the `registry_package` webhook: the same as
    /// [`Simulator::package_webhook_payload`] with the package under `registry_package`.
    pub fn registry_package_webhook_payload(
        &self,
        action: &str,
        owner: &str,
        package: &str,
        version_id: u64,
    ) -> Option<Value> {
        self.lock().package_payload(
            "registry_package",
            action,
            owner,
            package,
            version_id,
            Actor::Admin,
        )
    }

    /// The active versions of a container package in the REST shape, newest first; empty if
    /// the package does not exist.
    pub fn container_versions(&self, owner: &str, package: &str) -> Vec<Value> {
        let st = self.lock();
        let base = st.base_url(None);
        let Some(found) = st.container_package(owner, package) else {
            return Vec::new();
        };
        let Some(org) = st.orgs.get(&found.owner_key) else {
            return Vec::new();
        };
        found
            .versions
            .iter()
            .rev()
            .filter(|v| v.deleted_at.is_none())
            .map(|v| version_json(&base, org, found, v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn digests_are_checked() {
        assert!(is_digest(A));
        assert!(!is_digest("sha256:ABC"));
        assert!(!is_digest(&A.replace("sha256", "sha512")));
    }

    #[test]
    fn tags_move_between_versions_and_the_last_tagged_version_stays() {
        let mut st = SimState::new();
        let (a, _) = st
            .push_container_version("acme", "api", None, A, &["latest", "v1"], Actor::Admin)
            .unwrap();
        let (b, _) = st
            .push_container_version("acme", "api", None, B, &["latest"], Actor::Admin)
            .unwrap();
        let package = st.container_package("ACME", "API").unwrap();
        assert_eq!(package.versions[0].tags, ["v1"]);
        assert_eq!(package.versions[1].tags, ["latest"]);
        assert!(package.private);
        st.tag_container("acme", "api", B, "v1", Actor::Admin)
            .unwrap();
        // A is untagged now and can go; B is the last tagged version.
        assert_eq!(
            st.delete_container("acme", "api", b),
            Err(SimError::Invalid(LAST_TAGGED_VERSION.to_owned()))
        );
        st.delete_container("acme", "api", a).unwrap();
        assert!(st.delete_container("acme", "api", a).is_err());
    }
}
