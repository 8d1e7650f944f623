//! Releases and their assets (`/releases`, `/releases/{release_id}`,
//! `/releases/{release_id}/assets`).
//!
//! Uploads go to `POST /repos/{owner}/{repo}/releases/{release_id}/assets?name=...` with the
//! raw file as body. On GitHub that path lives on uploads.github.com; the simulator serves it
//! on its own address and hands out `upload_url`s pointing there. Downloads
//! (`browser_download_url`) are served under `/_download/{owner}/{repo}/releases/download/...`,
//! mirroring github.com's `/{owner}/{repo}/releases/download/{tag}/{name}`; like the tarball
//! download they need no token, are not rate limited and are logged under their own template.
//!
//! Tags are not modelled beyond the release's `tag_name`, which is unique per repository;
//! `target_commitish` must name a branch or a branch head sha.
//!
//! Webhooks: `release` "created", "published" + "released"/"prereleased" (creating a
//! non-draft release, or publishing a draft), "edited", "unpublished", "deleted".

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::api::{
    base_of, encode_query_component, find_repo, json_response, not_found, paginate, parse_json,
    request_token, set_header, with_link, ApiError, PageParams, Tag,
};
use crate::objects::{invalid_type, object, opt_bool, opt_string, reactions_json, Person};
use crate::render::{node_id, time};
use crate::state::{Actor, Org, Repo, State as SimState};
use crate::webhooks::Event;
use crate::{LoggedRequest, SimError, Simulator};

const ROUTE_RELEASES: &str = "/repos/{owner}/{repo}/releases";
const ROUTE_RELEASE: &str = "/repos/{owner}/{repo}/releases/{release_id}";
const ROUTE_ASSETS: &str = "/repos/{owner}/{repo}/releases/{release_id}/assets";
/// Where `browser_download_url` leads (github.com's download path, under `/_download`).
pub(crate) const ROUTE_ASSET_DOWNLOAD: &str =
    "/_download/{owner}/{repo}/releases/download/{tag}/{name}";

const DOCS_LIST: &str = "https://docs.github.com/rest/releases/releases#list-releases";
const DOCS_CREATE: &str = "https://docs.github.com/rest/releases/releases#create-a-release";
const DOCS_GET: &str = "https://docs.github.com/rest/releases/releases#get-a-release";
const DOCS_UPDATE: &str = "https://docs.github.com/rest/releases/releases#update-a-release";
const DOCS_DELETE: &str = "https://docs.github.com/rest/releases/releases#delete-a-release";
const DOCS_LIST_ASSETS: &str = "https://docs.github.com/rest/releases/assets#list-release-assets";
const DOCS_UPLOAD: &str = "https://docs.github.com/rest/releases/assets#upload-a-release-asset";

/// Largest asset the simulator accepts, far below GitHub's 2 GiB: tests upload small files.
const MAX_ASSET: usize = 32 * 1024 * 1024;

/// A release asset.
#[derive(Debug, Clone)]
pub(crate) struct Asset {
    pub id: u64,
    pub name: String,
    pub label: Option<String>,
    pub content_type: String,
    pub data: Vec<u8>,
    pub uploader: Person,
    pub download_count: u64,
    pub created_at: DateTime<Utc>,
}

/// A release.
#[derive(Debug, Clone)]
pub(crate) struct Release {
    pub id: u64,
    pub tag_name: String,
    pub target_commitish: String,
    pub name: Option<String>,
    pub body: Option<String>,
    pub draft: bool,
    pub prerelease: bool,
    pub author: Person,
    pub assets: Vec<Asset>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
}

/// The fields of a create or update body; None = not mentioned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    pub tag_name: Option<String>,
    pub target_commitish: Option<String>,
    pub name: Option<String>,
    pub body: Option<String>,
    pub draft: Option<bool>,
    pub prerelease: Option<bool>,
    pub generate_release_notes: bool,
    pub discussion_category_name: Option<String>,
}

/// Why a request was refused, in GitHub's terms.
#[derive(Debug)]
enum Refusal {
    /// 422 with a plain message (wrong types).
    Message(String),
    /// 422 "Validation Failed" with this `errors` list.
    Errors(Value),
    /// 404 (unknown repository, release, or discussion category).
    NotFound,
}

impl Refusal {
    fn field(resource: &str, field: &str, code: &str) -> Refusal {
        Refusal::Errors(json!([{ "resource": resource, "code": code, "field": field }]))
    }

    fn into_api(self, docs: &'static str) -> ApiError {
        match self {
            Refusal::Message(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m, docs),
            Refusal::Errors(e) => ApiError::validation(e, docs),
            Refusal::NotFound => ApiError::not_found("Not Found", docs),
        }
    }

    fn into_sim(self) -> SimError {
        match self {
            Refusal::Message(m) => SimError::Invalid(m),
            Refusal::Errors(e) => SimError::Invalid(format!("Validation Failed: {e}")),
            Refusal::NotFound => SimError::NotFound("Not Found".to_owned()),
        }
    }
}

impl From<String> for Refusal {
    fn from(message: String) -> Self {
        Refusal::Message(message)
    }
}

impl From<SimError> for Refusal {
    fn from(error: SimError) -> Self {
        match error {
            SimError::NotFound(_) => Refusal::NotFound,
            SimError::Invalid(m) => Refusal::Message(m),
        }
    }
}

fn parse_fields(body: &Value, for_create: bool) -> Result<Fields, Refusal> {
    let fields = object(body)?;
    let parsed = Fields {
        tag_name: opt_string(fields, "tag_name")?,
        target_commitish: opt_string(fields, "target_commitish")?,
        name: opt_string(fields, "name")?,
        body: opt_string(fields, "body")?,
        draft: opt_bool(fields, "draft")?,
        prerelease: opt_bool(fields, "prerelease")?,
        generate_release_notes: for_create
            && opt_bool(fields, "generate_release_notes")?.unwrap_or(false),
        discussion_category_name: opt_string(fields, "discussion_category_name")?,
    };
    if let Some(value) = fields.get("make_latest") {
        if !value
            .as_str()
            .is_some_and(|v| ["true", "false", "legacy"].contains(&v))
        {
            return Err(invalid_type(
                "make_latest",
                value,
                "one of [\"true\", \"false\", \"legacy\"]",
            )
            .into());
        }
    }
    match &parsed.tag_name {
        None if for_create => {
            return Err(Refusal::Message(
                "Invalid request.\n\n\"tag_name\" wasn't supplied.".to_owned(),
            ))
        }
        Some(tag) if tag.trim().is_empty() => {
            return Err(Refusal::field("Release", "tag_name", "missing_field"))
        }
        _ => {}
    }
    Ok(parsed)
}

/// GitHub's renaming of asset file names: characters outside `[A-Za-z0-9._+-]` become dots,
/// leading and trailing dots go.
fn asset_name(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect::<String>()
        .trim_matches('.')
        .to_owned()
}

fn repo_urls(base: &str, org: &Org, repo: &Repo) -> (String, String) {
    (
        format!("{base}/repos/{}/{}", org.login, repo.name),
        format!("{base}/{}/{}", org.login, repo.name),
    )
}

fn asset_json(base: &str, org: &Org, repo: &Repo, release: &Release, asset: &Asset) -> Value {
    let (api, _) = repo_urls(base, org, repo);
    json!({
        "url": format!("{api}/releases/assets/{}", asset.id),
        "browser_download_url": format!(
            "{base}/_download/{}/{}/releases/download/{}/{}",
            org.login,
            repo.name,
            encode_query_component(&release.tag_name),
            encode_query_component(&asset.name),
        ),
        "id": asset.id,
        "node_id": node_id("ReleaseAsset", asset.id),
        "name": asset.name,
        "label": asset.label,
        "state": "uploaded",
        "content_type": asset.content_type,
        "size": asset.data.len(),
        "digest": format!("sha256:{}", hex::encode(Sha256::digest(&asset.data))),
        "download_count": asset.download_count,
        "created_at": time(&asset.created_at),
        "updated_at": time(&asset.created_at),
        "uploader": asset.uploader.json(base),
    })
}

/// The release object of REST answers and webhooks.
pub(crate) fn release_json(base: &str, org: &Org, repo: &Repo, r: &Release) -> Value {
    let (api, html) = repo_urls(base, org, repo);
    let url = format!("{api}/releases/{}", r.id);
    let tag = encode_query_component(&r.tag_name);
    // Drafts have no tag yet, so no archive either.
    let archive = |kind: &str| {
        if r.draft {
            Value::Null
        } else {
            json!(format!("{api}/{kind}/{tag}"))
        }
    };
    let mut m = Map::new();
    m.insert("url".into(), json!(url));
    m.insert("assets_url".into(), json!(format!("{url}/assets")));
    m.insert(
        "upload_url".into(),
        json!(format!("{url}/assets{{?name,label}}")),
    );
    m.insert(
        "html_url".into(),
        json!(format!("{html}/releases/tag/{tag}")),
    );
    m.insert("id".into(), json!(r.id));
    m.insert("author".into(), r.author.json(base));
    m.insert("node_id".into(), json!(node_id("Release", r.id)));
    m.insert("tag_name".into(), json!(r.tag_name));
    m.insert("target_commitish".into(), json!(r.target_commitish));
    m.insert("name".into(), json!(r.name));
    m.insert("draft".into(), json!(r.draft));
    m.insert("immutable".into(), json!(false));
    m.insert("prerelease".into(), json!(r.prerelease));
    m.insert("created_at".into(), json!(time(&r.created_at)));
    m.insert("updated_at".into(), json!(time(&r.updated_at)));
    m.insert(
        "published_at".into(),
        json!(r.published_at.as_ref().map(time)),
    );
    m.insert(
        "assets".into(),
        Value::Array(
            r.assets
                .iter()
                .map(|a| asset_json(base, org, repo, r, a))
                .collect(),
        ),
    );
    m.insert("tarball_url".into(), archive("tarball"));
    m.insert("zipball_url".into(), archive("zipball"));
    m.insert("body".into(), json!(r.body));
    m.insert("reactions".into(), reactions_json(&url));
    Value::Object(m)
}

impl SimState {
    fn release_events(
        &self,
        repo_id: u64,
        id: u64,
        actions: &[&str],
        changes: Option<Value>,
        actor: Actor,
    ) -> Vec<Event> {
        let Some(repo) = self.repos.get(&repo_id) else {
            return Vec::new();
        };
        let Some(org) = self.orgs.get(&repo.owner_key) else {
            return Vec::new();
        };
        let Some(release) = repo.releases.iter().find(|r| r.id == id) else {
            return Vec::new();
        };
        let base = self.base_url(None);
        let value = release_json(&base, org, repo, release);
        actions
            .iter()
            .filter_map(|action| {
                let mut fields = vec![("release", value.clone())];
                if let (true, Some(changes)) = (*action == "edited", &changes) {
                    fields.insert(0, ("changes", changes.clone()));
                }
                self.repo_object_event(repo_id, "release", action, actor, fields)
            })
            .collect()
    }

    /// Checks a target: a branch, or the head sha of one.
    fn valid_target(repo: &Repo, target: &str) -> bool {
        repo.branches.contains_key(target) || repo.branches.values().any(|b| b.sha == target)
    }

    fn create_release(
        &mut self,
        owner: &str,
        name: &str,
        fields: Fields,
        actor: Actor,
    ) -> Result<(u64, Vec<Event>), Refusal> {
        let id = self.next_object_id();
        let repo = self.repo_mut(owner, name)?;
        let repo_id = repo.id;
        if fields.discussion_category_name.is_some() {
            // The simulator has no discussions, so no category exists.
            return Err(Refusal::NotFound);
        }
        let tag = fields.tag_name.unwrap_or_default();
        if repo.releases.iter().any(|r| r.tag_name == tag) {
            return Err(Refusal::field("Release", "tag_name", "already_exists"));
        }
        let target = fields
            .target_commitish
            .unwrap_or_else(|| repo.default_branch.clone());
        if !Self::valid_target(repo, &target) {
            return Err(Refusal::field("Release", "target_commitish", "invalid"));
        }
        let draft = fields.draft.unwrap_or(false);
        let prerelease = fields.prerelease.unwrap_or(false);
        let now = Utc::now();
        let body = fields.body.or_else(|| {
            fields.generate_release_notes.then(|| {
                format!("**Full Changelog**: https://github.com/{owner}/{name}/commits/{tag}")
            })
        });
        repo.releases.push(Release {
            id,
            tag_name: tag,
            target_commitish: target,
            name: fields.name,
            body,
            draft,
            prerelease,
            author: Person::Actor(actor),
            assets: Vec::new(),
            created_at: now,
            updated_at: now,
            published_at: (!draft).then_some(now),
        });
        let actions: &[&str] = match (draft, prerelease) {
            (true, _) => &["created"],
            (false, false) => &["created", "published", "released"],
            (false, true) => &["created", "published", "prereleased"],
        };
        Ok((id, self.release_events(repo_id, id, actions, None, actor)))
    }

    fn update_release(
        &mut self,
        owner: &str,
        name: &str,
        id: u64,
        fields: Fields,
        actor: Actor,
    ) -> Result<Vec<Event>, Refusal> {
        let repo = self.repo_mut(owner, name)?;
        let repo_id = repo.id;
        let index = repo
            .releases
            .iter()
            .position(|r| r.id == id)
            .ok_or(Refusal::NotFound)?;
        if fields.discussion_category_name.is_some() {
            return Err(Refusal::NotFound);
        }
        if let Some(tag) = &fields.tag_name {
            if repo
                .releases
                .iter()
                .any(|r| r.id != id && &r.tag_name == tag)
            {
                return Err(Refusal::field("Release", "tag_name", "already_exists"));
            }
        }
        if let Some(target) = &fields.target_commitish {
            if !Self::valid_target(repo, target) {
                return Err(Refusal::field("Release", "target_commitish", "invalid"));
            }
        }
        let release = &mut repo.releases[index];
        let now = Utc::now();
        let mut changes = Map::new();
        if let Some(tag) = fields.tag_name {
            if tag != release.tag_name {
                changes.insert("tag_name".into(), json!({ "from": release.tag_name }));
                release.tag_name = tag;
            }
        }
        if let Some(value) = fields.name {
            if Some(&value) != release.name.as_ref() {
                changes.insert("name".into(), json!({ "from": release.name }));
                release.name = Some(value);
            }
        }
        if let Some(value) = fields.body {
            if Some(&value) != release.body.as_ref() {
                changes.insert("body".into(), json!({ "from": release.body }));
                release.body = Some(value);
            }
        }
        if let Some(target) = fields.target_commitish {
            release.target_commitish = target;
        }
        let was_draft = release.draft;
        let was_prerelease = release.prerelease;
        if let Some(prerelease) = fields.prerelease {
            release.prerelease = prerelease;
        }
        if let Some(draft) = fields.draft {
            release.draft = draft;
        }
        let mut actions: Vec<&str> = Vec::new();
        if !changes.is_empty() {
            actions.push("edited");
        }
        match (was_draft, release.draft) {
            (true, false) => {
                release.published_at = Some(now);
                actions.push("published");
                actions.push(if release.prerelease {
                    "prereleased"
                } else {
                    "released"
                });
            }
            (false, true) => {
                release.published_at = None;
                actions.push("unpublished");
            }
            (false, false) if was_prerelease && !release.prerelease => actions.push("released"),
            _ => {}
        }
        release.updated_at = now;
        let changes = (!changes.is_empty()).then_some(Value::Object(changes));
        Ok(self.release_events(repo_id, id, &actions, changes, actor))
    }

    fn delete_release(
        &mut self,
        owner: &str,
        name: &str,
        id: u64,
        actor: Actor,
    ) -> Result<Vec<Event>, SimError> {
        let repo = self.repo_mut(owner, name)?;
        let repo_id = repo.id;
        if !repo.releases.iter().any(|r| r.id == id) {
            return Err(SimError::NotFound("Not Found".to_owned()));
        }
        // The event shows the release as it was, so it is built before the removal.
        let events = self.release_events(repo_id, id, &["deleted"], None, actor);
        if let Some(repo) = self.repos.get_mut(&repo_id) {
            repo.releases.retain(|r| r.id != id);
        }
        Ok(events)
    }

    #[allow(clippy::too_many_arguments)]
    fn upload_asset(
        &mut self,
        owner: &str,
        name: &str,
        release_id: u64,
        file_name: Option<&str>,
        label: Option<String>,
        content_type: String,
        data: Vec<u8>,
        uploader: Person,
    ) -> Result<u64, Refusal> {
        let id = self.next_object_id();
        let repo = self.repo_mut(owner, name)?;
        let release = repo
            .releases
            .iter_mut()
            .find(|r| r.id == release_id)
            .ok_or(Refusal::NotFound)?;
        let file_name = asset_name(file_name.unwrap_or_default());
        if file_name.is_empty() {
            return Err(Refusal::field("ReleaseAsset", "name", "missing_field"));
        }
        if release.assets.iter().any(|a| a.name == file_name) {
            return Err(Refusal::field("ReleaseAsset", "name", "already_exists"));
        }
        if data.len() > MAX_ASSET {
            return Err(Refusal::field("ReleaseAsset", "size", "invalid"));
        }
        release.assets.push(Asset {
            id,
            name: file_name,
            label,
            content_type,
            data,
            uploader,
            download_count: 0,
            created_at: Utc::now(),
        });
        Ok(id)
    }
}

pub(crate) fn register(router: Router<Simulator>, tag: Tag<'_>) -> Router<Simulator> {
    router
        .route(
            ROUTE_RELEASES,
            tag(ROUTE_RELEASES, get(list_releases).post(create_release)),
        )
        .route(
            ROUTE_RELEASE,
            tag(
                ROUTE_RELEASE,
                get(get_release)
                    .patch(update_release)
                    .delete(delete_release),
            ),
        )
        .route(
            ROUTE_ASSETS,
            tag(ROUTE_ASSETS, get(list_assets).post(upload_asset)),
        )
        .route(
            ROUTE_ASSET_DOWNLOAD,
            get(download_asset).fallback(not_found),
        )
}

/// A release id from the path; anything that is not a number is no release (404).
fn release_id(raw: &str, docs: &'static str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .map_err(|_| ApiError::not_found("Not Found", docs))
}

/// The release as JSON, or GitHub's 404.
fn found(
    st: &SimState,
    base: &str,
    owner: &str,
    name: &str,
    id: u64,
    docs: &'static str,
) -> Result<Value, ApiError> {
    let (org, repo) = find_repo(st, owner, name, docs)?;
    let release = repo
        .releases
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::not_found("Not Found", docs))?;
    Ok(release_json(base, org, repo, release))
}

async fn list_releases(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_LIST)?;
    // Newest first, like GitHub.
    let releases: Vec<&Release> = repo.releases.iter().rev().collect();
    let url = format!("{base}/repos/{}/{}/releases", org.login, repo.name);
    let (page, link) = paginate(&releases, PageParams::from_query(&query), &url, &query);
    let body = Value::Array(
        page.iter()
            .map(|r| release_json(&base, org, repo, r))
            .collect(),
    );
    Ok(with_link(json_response(StatusCode::OK, &body), link))
}

async fn create_release(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    find_repo(&st, &owner, &name, DOCS_CREATE)?;
    let value = parse_json(&body, DOCS_CREATE)?;
    let fields = parse_fields(&value, true).map_err(|r| r.into_api(DOCS_CREATE))?;
    let (id, events) = st
        .create_release(&owner, &name, fields, Actor::Api)
        .map_err(|r| r.into_api(DOCS_CREATE))?;
    sim.emit(&st, events);
    let value = found(&st, &base, &owner, &name, id, DOCS_CREATE)?;
    let mut response = json_response(StatusCode::CREATED, &value);
    if let Some(url) = value["url"].as_str() {
        set_header(response.headers_mut(), "location", url.to_owned());
    }
    Ok(response)
}

async fn get_release(
    State(sim): State<Simulator>,
    Path((owner, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let id = release_id(&id, DOCS_GET)?;
    Ok(json_response(
        StatusCode::OK,
        &found(&st, &base, &owner, &name, id, DOCS_GET)?,
    ))
}

async fn update_release(
    State(sim): State<Simulator>,
    Path((owner, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    let id = release_id(&id, DOCS_UPDATE)?;
    found(&st, &base, &owner, &name, id, DOCS_UPDATE)?;
    let value = parse_json(&body, DOCS_UPDATE)?;
    let fields = parse_fields(&value, false).map_err(|r| r.into_api(DOCS_UPDATE))?;
    let events = st
        .update_release(&owner, &name, id, fields, Actor::Api)
        .map_err(|r| r.into_api(DOCS_UPDATE))?;
    sim.emit(&st, events);
    Ok(json_response(
        StatusCode::OK,
        &found(&st, &base, &owner, &name, id, DOCS_UPDATE)?,
    ))
}

async fn delete_release(
    State(sim): State<Simulator>,
    Path((owner, name, id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let id = release_id(&id, DOCS_DELETE)?;
    let events = st
        .delete_release(&owner, &name, id, Actor::Api)
        .map_err(|e| ApiError::from_sim(e, DOCS_DELETE))?;
    sim.emit(&st, events);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_assets(
    State(sim): State<Simulator>,
    Path((owner, name, id)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let id = release_id(&id, DOCS_LIST_ASSETS)?;
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_LIST_ASSETS)?;
    let release = repo
        .releases
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::not_found("Not Found", DOCS_LIST_ASSETS))?;
    let url = format!(
        "{base}/repos/{}/{}/releases/{id}/assets",
        org.login, repo.name
    );
    let (page, link) = paginate(
        &release.assets,
        PageParams::from_query(&query),
        &url,
        &query,
    );
    let body = Value::Array(
        page.iter()
            .map(|a| asset_json(&base, org, repo, release, a))
            .collect(),
    );
    Ok(with_link(json_response(StatusCode::OK, &body), link))
}

async fn upload_asset(
    State(sim): State<Simulator>,
    Path((owner, name, id)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    let id = release_id(&id, DOCS_UPLOAD)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let asset = st
        .upload_asset(
            &owner,
            &name,
            id,
            query.get("name").map(String::as_str),
            query.get("label").cloned(),
            content_type,
            body.to_vec(),
            Person::Actor(Actor::Api),
        )
        .map_err(|r| r.into_api(DOCS_UPLOAD))?;
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_UPLOAD)?;
    let release = repo
        .releases
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::not_found("Not Found", DOCS_UPLOAD))?;
    let asset = release
        .assets
        .iter()
        .find(|a| a.id == asset)
        .ok_or_else(|| ApiError::not_found("Not Found", DOCS_UPLOAD))?;
    Ok(json_response(
        StatusCode::CREATED,
        &asset_json(&base, org, repo, release, asset),
    ))
}

/// The file behind `browser_download_url` (counts the download), or a GitHub-style JSON 404.
async fn download_asset(
    State(sim): State<Simulator>,
    Path((owner, name, tag, file)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let at = Utc::now();
    let mut st = sim.lock();
    let asset = st.repo_mut(&owner, &name).ok().and_then(|repo| {
        let release = repo
            .releases
            .iter_mut()
            .find(|r| r.tag_name == tag && !r.draft)?;
        let asset = release.assets.iter_mut().find(|a| a.name == file)?;
        asset.download_count += 1;
        Some((asset.data.clone(), asset.content_type.clone()))
    });
    let response = match asset {
        Some((data, content_type)) => {
            let mut response = Response::new(Body::from(data));
            let value = HeaderValue::from_str(&content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            response.headers_mut().insert(header::CONTENT_TYPE, value);
            let disposition = format!(
                "attachment; filename={}",
                file.replace(['"', '/', '\\'], "_")
            );
            set_header(response.headers_mut(), "content-disposition", disposition);
            response
        }
        None => ApiError::not_found("Not Found", DOCS_LIST_ASSETS).into_response(),
    };
    st.record(LoggedRequest {
        method: Method::GET.to_string(),
        path: format!("/_download/{owner}/{name}/releases/download/{tag}/{file}"),
        route: ROUTE_ASSET_DOWNLOAD.to_owned(),
        status: response.status().as_u16(),
        token_label: crate::quota::token_label(request_token(&headers).as_deref()),
        not_modified: false,
        charged: false,
        fault: None,
        at,
    });
    response
}

impl Simulator {
    /// Creates a release as the REST API would, but from the admin user, with a body in the
    /// shape of GitHub's create request; returns its id. Sends `release` "created" (plus
    /// "published" and "released"/"prereleased" unless it is a draft).
    pub fn create_release(&self, owner: &str, repo: &str, body: Value) -> Result<u64, SimError> {
        let fields = parse_fields(&body, true).map_err(Refusal::into_sim)?;
        let mut st = self.lock();
        let (id, events) = st
            .create_release(owner, repo, fields, Actor::Admin)
            .map_err(Refusal::into_sim)?;
        self.emit(&st, events);
        Ok(id)
    }

    /// Changes a release with a body in the shape of GitHub's update request; sends the
    /// matching `release` webhooks.
    pub fn update_release(
        &self,
        owner: &str,
        repo: &str,
        id: u64,
        body: Value,
    ) -> Result<(), SimError> {
        let fields = parse_fields(&body, false).map_err(Refusal::into_sim)?;
        let mut st = self.lock();
        let events = st
            .update_release(owner, repo, id, fields, Actor::Admin)
            .map_err(Refusal::into_sim)?;
        self.emit(&st, events);
        Ok(())
    }

    /// Deletes a release; sends `release` "deleted".
    pub fn delete_release(&self, owner: &str, repo: &str, id: u64) -> Result<(), SimError> {
        let mut st = self.lock();
        let events = st.delete_release(owner, repo, id, Actor::Admin)?;
        self.emit(&st, events);
        Ok(())
    }

    /// Attaches a file to a release as the admin user; returns the asset id. Names are
    /// sanitized like GitHub's and unique per release. No webhook (GitHub sends none).
    pub fn upload_release_asset(
        &self,
        owner: &str,
        repo: &str,
        release_id: u64,
        name: &str,
        content_type: &str,
        data: impl Into<Vec<u8>>,
    ) -> Result<u64, SimError> {
        let mut st = self.lock();
        st.upload_asset(
            owner,
            repo,
            release_id,
            Some(name),
            None,
            content_type.to_owned(),
            data.into(),
            Person::Actor(Actor::Admin),
        )
        .map_err(Refusal::into_sim)
    }

    /// A release in the shape of GitHub's GET response; None if it does not exist.
    pub fn release(&self, owner: &str, repo: &str, id: u64) -> Option<Value> {
        let st = self.lock();
        let base = st.base_url(None);
        found(&st, &base, owner, repo, id, DOCS_GET).ok()
    }
}

pub(crate) fn admin_routes() -> Router<Simulator> {
    Router::new()
        .route("/repos/{owner}/{repo}/releases", post(admin_create))
        .route(
            "/repos/{owner}/{repo}/releases/{id}",
            patch(admin_update).delete(admin_delete),
        )
        .route(
            "/repos/{owner}/{repo}/releases/{id}/assets",
            post(admin_upload),
        )
}

fn admin_answer(sim: &Simulator, owner: &str, name: &str, id: u64, status: StatusCode) -> Response {
    crate::admin::found(status, sim.release(owner, name, id))
}

/// `POST /_admin/repos/{owner}/{repo}/releases` with the REST create body: 201 with the
/// release.
async fn admin_create(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let value: Value = match crate::admin::parse(&body) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    match sim.create_release(&owner, &name, value) {
        Ok(id) => admin_answer(&sim, &owner, &name, id, StatusCode::CREATED),
        Err(e) => crate::admin::sim_error(e),
    }
}

/// `PATCH /_admin/repos/{owner}/{repo}/releases/{id}` with the REST update body: 200 with the
/// release.
async fn admin_update(
    State(sim): State<Simulator>,
    Path((owner, name, id)): Path<(String, String, u64)>,
    body: Bytes,
) -> Response {
    let value: Value = match crate::admin::parse(&body) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    match sim.update_release(&owner, &name, id, value) {
        Ok(()) => admin_answer(&sim, &owner, &name, id, StatusCode::OK),
        Err(e) => crate::admin::sim_error(e),
    }
}

/// `DELETE /_admin/repos/{owner}/{repo}/releases/{id}`: 204.
async fn admin_delete(
    State(sim): State<Simulator>,
    Path((owner, name, id)): Path<(String, String, u64)>,
) -> Response {
    match sim.delete_release(&owner, &name, id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => crate::admin::sim_error(e),
    }
}

/// `POST /_admin/repos/{owner}/{repo}/releases/{id}/assets?name=...` with the raw file: 201
/// with `{"id"}`.
async fn admin_upload(
    State(sim): State<Simulator>,
    Path((owner, name, id)): Path<(String, String, u64)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(file) = query.get("name") else {
        return crate::admin::error(StatusCode::UNPROCESSABLE_ENTITY, "name is required");
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream");
    match sim.upload_release_asset(&owner, &name, id, file, content_type, body.to_vec()) {
        Ok(asset) => crate::admin::ok_json(StatusCode::CREATED, &json!({ "id": asset })),
        Err(e) => crate::admin::sim_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RepoOptions;

    #[test]
    fn asset_names_are_sanitized() {
        assert_eq!(asset_name("LICENSE.txt"), "LICENSE.txt");
        assert_eq!(asset_name("my file (1).zip"), "my.file..1..zip");
        assert_eq!(asset_name(".hidden."), "hidden");
        assert_eq!(asset_name("..."), "");
    }

    #[test]
    fn release_lifecycle_events() {
        let mut st = SimState::new();
        st.create_repo("acme", "api", &RepoOptions::default(), Actor::Admin);
        let fields = parse_fields(&json!({ "tag_name": "v1", "draft": true }), true).unwrap();
        let (id, events) = st
            .create_release("acme", "api", fields, Actor::Api)
            .unwrap();
        let actions: Vec<_> = events.iter().map(|e| e.payload["action"].clone()).collect();
        assert_eq!(actions, [json!("created")]);
        assert_eq!(events[0].payload["release"]["tarball_url"], Value::Null);
        let dup = parse_fields(&json!({ "tag_name": "v1" }), true).unwrap();
        assert!(matches!(
            st.create_release("acme", "api", dup, Actor::Api),
            Err(Refusal::Errors(_))
        ));
        let publish = parse_fields(&json!({ "draft": false, "name": "One" }), false).unwrap();
        let events = st
            .update_release("acme", "api", id, publish, Actor::Api)
            .unwrap();
        let actions: Vec<_> = events.iter().map(|e| e.payload["action"].clone()).collect();
        assert_eq!(
            actions,
            [json!("edited"), json!("published"), json!("released")]
        );
        assert_eq!(
            events[0].payload["changes"],
            json!({ "name": { "from": null } })
        );
        let bad_target = parse_fields(
            &json!({ "tag_name": "v2", "target_commitish": "nope" }),
            true,
        )
        .unwrap();
        assert!(st
            .create_release("acme", "api", bad_target, Actor::Api)
            .is_err());
        let events = st.delete_release("acme", "api", id, Actor::Api).unwrap();
        assert_eq!(events[0].payload["action"], "deleted");
        assert!(st.repo("acme", "api").unwrap().1.releases.is_empty());
    }
}
