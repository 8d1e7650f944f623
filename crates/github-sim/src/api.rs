//! The REST API: GitHub's routes, plus one middleware that gives every answer GitHub's
//! cross-cutting behaviour (authentication, rate-limit budget and headers, ETag / 304, request id,
//! content type) and records it in the request log.
//!
//! The workspace builds axum without its `matched-path` feature, so each route is wrapped in its
//! own instance of the middleware that carries the route template; the template is therefore
//! exactly the path the route was registered with.

use std::collections::{BTreeMap, HashMap};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, MethodRouter};
use axum::{Extension, Router};
use chrono::Utc;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::apps::{Credential, Identity};
use crate::faults::{self, Answer};
use crate::state::{Actor, Org, RateSnapshot, Repo, State as SimState};
use crate::{protection, render, settings, token_label, LoggedRequest, SimError, Simulator};

/// Route recorded for requests no route (or no method of a route) answers.
pub(crate) const UNMATCHED: &str = "(unmatched)";

/// Largest response body the middleware buffers to compute an ETag; far above any response here.
const MAX_BODY: usize = 64 * 1024 * 1024;

const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

const ROUTE_REPO: &str = "/repos/{owner}/{repo}";
const ROUTE_BRANCH: &str = "/repos/{owner}/{repo}/branches/{branch}";
const ROUTE_PROTECTION: &str = "/repos/{owner}/{repo}/branches/{branch}/protection";
const ROUTE_ORG_REPOS: &str = "/orgs/{org}/repos";
const ROUTE_INSTALLATION_REPOS: &str = "/installation/repositories";
const ROUTE_RATE_LIMIT: &str = "/rate_limit";
const ROUTE_TARBALL: &str = "/repos/{owner}/{repo}/tarball/{ref}";
const ROUTE_WORKFLOW: &str = "/repos/{owner}/{repo}/actions/permissions/workflow";
/// Where the tarball redirect leads (GitHub's codeload.github.com). Not a REST API route: it
/// needs no token, is not rate limited and answers the archive itself, not JSON. Requests to it
/// are logged and counted under this template (it is never "(unmatched)").
pub(crate) const ROUTE_DOWNLOAD: &str = "/_download/tarball/{owner}/{repo}/{ref}";

const DOCS_REST: &str = "https://docs.github.com/rest";
const DOCS_GET_REPO: &str = "https://docs.github.com/rest/repos/repos#get-a-repository";
const DOCS_GET_BRANCH: &str = "https://docs.github.com/rest/branches/branches#get-a-branch";
const DOCS_GET_PROTECTION: &str =
    "https://docs.github.com/rest/branches/branch-protection#get-branch-protection";
const DOCS_PUT_PROTECTION: &str =
    "https://docs.github.com/rest/branches/branch-protection#update-branch-protection";
const DOCS_DELETE_PROTECTION: &str =
    "https://docs.github.com/rest/branches/branch-protection#delete-branch-protection";
const DOCS_ORG_REPOS: &str =
    "https://docs.github.com/rest/repos/repos#list-organization-repositories";
const DOCS_UPDATE_REPO: &str = "https://docs.github.com/rest/repos/repos#update-a-repository";
const DOCS_TARBALL: &str =
    "https://docs.github.com/rest/repos/contents#download-a-repository-archive-tar";
const DOCS_GET_WORKFLOW: &str = "https://docs.github.com/rest/actions/permissions#get-default-workflow-permissions-for-a-repository";
const DOCS_SET_WORKFLOW: &str = "https://docs.github.com/rest/actions/permissions#set-default-workflow-permissions-for-a-repository";
const DOCS_RATE_LIMIT: &str =
    "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api";

/// Response extension set by the not-found fallbacks, so the log records the request as
/// unmatched even when it reached a known path with an unsupported method.
#[derive(Debug, Clone, Copy)]
struct Unmatched;

/// Response extension of answers in one of GitHub's non-JSON media types (`Accept:
/// application/vnd.github.raw`, `.sha`, ...): the middleware keeps the handler's content type
/// and reports this value (e.g. "github.v3; param=raw") in `X-GitHub-Media-Type`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MediaType(pub &'static str);

/// State of one middleware instance: the simulator and the template of the wrapped route.
#[derive(Clone)]
struct RouteTag {
    sim: Simulator,
    route: &'static str,
}

/// A GitHub error answer (`{"message", "documentation_url", "status"}`).
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    documentation_url: &'static str,
    /// Newer GitHub errors repeat the status code as a string; a few (unknown route, rate
    /// limit) do not.
    with_status: bool,
    /// The `errors` list of GitHub's "Validation Failed" answers, when there is one.
    errors: Option<Value>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        message: impl Into<String>,
        documentation_url: &'static str,
    ) -> Self {
        ApiError {
            status,
            message: message.into(),
            documentation_url,
            with_status: true,
            errors: None,
        }
    }

    /// GitHub's 422 "Validation Failed" with its `errors` list (objects with at least `code`).
    pub(crate) fn validation(errors: Value, documentation_url: &'static str) -> Self {
        ApiError {
            errors: Some(errors),
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Validation Failed",
                documentation_url,
            )
        }
    }

    pub(crate) fn not_found(message: impl Into<String>, documentation_url: &'static str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message, documentation_url)
    }

    /// The older error shape without the repeated `status`.
    pub(crate) fn without_status(self) -> Self {
        ApiError {
            with_status: false,
            ..self
        }
    }

    pub(crate) fn from_sim(error: SimError, documentation_url: &'static str) -> Self {
        match error {
            SimError::NotFound(message) => ApiError::not_found(message, documentation_url),
            SimError::Invalid(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message, documentation_url)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "message": self.message,
            "documentation_url": self.documentation_url,
        });
        if let Some(errors) = self.errors {
            body["errors"] = errors;
        }
        if self.with_status {
            body["status"] = Value::String(self.status.as_u16().to_string());
        }
        json_response(self.status, &body)
    }
}

/// Serializes a JSON answer; the middleware adds GitHub's headers.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(JSON_CONTENT_TYPE),
            );
            response
        }
        Err(error) => {
            tracing::warn!(%error, "failed to serialize response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Wraps a route's methods in the GitHub middleware under the given route template; endpoint
/// families register their routes through it (see [`routes`]).
pub(crate) type Tag<'a> =
    &'a dyn Fn(&'static str, MethodRouter<Simulator>) -> MethodRouter<Simulator>;

/// Wraps a route's handlers in the GitHub middleware, logging requests under `route`: the
/// OpenAPI path template, which differs from the axum path where a parameter may span several
/// segments (`{path}` of the contents API is registered as `{*path}`).
pub(crate) fn tagged(
    sim: &Simulator,
    route: &'static str,
    methods: MethodRouter<Simulator>,
) -> MethodRouter<Simulator> {
    methods
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            RouteTag {
                sim: sim.clone(),
                route,
            },
            github_layer,
        ))
}

/// The REST routes, each wrapped in the GitHub middleware; unknown paths answer GitHub's 404.
pub(crate) fn routes(sim: &Simulator) -> Router<Simulator> {
    let tag = |route: &'static str, methods: MethodRouter<Simulator>| tagged(sim, route, methods);
    let router = Router::new()
        .route(ROUTE_REPO, tag(ROUTE_REPO, get(get_repo).patch(patch_repo)))
        // Branch names may contain slashes, so the ref spans the rest of the path.
        .route(
            "/repos/{owner}/{repo}/tarball/{*ref}",
            tag(ROUTE_TARBALL, get(get_tarball)),
        )
        .route(
            ROUTE_WORKFLOW,
            tag(ROUTE_WORKFLOW, get(get_workflow).put(put_workflow)),
        )
        .route(ROUTE_DOWNLOAD, get(download_tarball).fallback(not_found))
        .route(ROUTE_BRANCH, tag(ROUTE_BRANCH, get(get_branch)))
        .route(
            ROUTE_PROTECTION,
            tag(
                ROUTE_PROTECTION,
                get(get_protection)
                    .put(put_protection)
                    .delete(delete_protection),
            ),
        )
        .route(ROUTE_ORG_REPOS, tag(ROUTE_ORG_REPOS, get(list_org_repos)))
        .route(
            ROUTE_INSTALLATION_REPOS,
            tag(ROUTE_INSTALLATION_REPOS, get(list_installation_repos)),
        )
        .route(ROUTE_RATE_LIMIT, tag(ROUTE_RATE_LIMIT, get(rate_limit)))
        .merge(crate::contents_api::routes(sim))
        .merge(crate::gitdata::routes(sim))
        .merge(crate::pulls::routes(sim))
        .merge(crate::license::routes(sim));
    let router = crate::apps::register(router, &tag);
    // Endpoint families kept in their own modules.
    let router = crate::actions_policy::register(router, &tag);
    let router = crate::advisories::register(router, &tag);
    let router = crate::issues::register(router, &tag);
    let router = crate::rulesets::register(router, &tag);
    let router = crate::vulnerability_reporting::register(router, &tag);
    let router = crate::collaborators::register(router, &tag);
    let router = crate::releases::register(router, &tag);
    let router = crate::dependabot::register(router, &tag);
    let router = crate::pull_files::register(router, &tag);
    let router = crate::reviews::register(router, &tag);
    let router = crate::statuses::register(router, &tag);
    let router = crate::packages::register(router, &tag);
    let router = crate::attestations::register(router, &tag);
    router.fallback_service(tag(UNMATCHED, any(not_found)).with_state(sim.clone()))
}

pub(crate) async fn not_found() -> Response {
    let mut response = ApiError {
        with_status: false,
        ..ApiError::not_found("Not Found", DOCS_REST)
    }
    .into_response();
    response.extensions_mut().insert(Unmatched);
    response
}

/// The token of an `Authorization: Bearer X` or `Authorization: token X` header. Other schemes
/// are taken verbatim so they fail authentication instead of passing as anonymous.
pub(crate) fn request_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let token = match value.split_once(' ') {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") =>
        {
            rest.trim()
        }
        _ => value,
    };
    (!token.is_empty()).then(|| token.to_owned())
}

/// The origin the client used to reach us, so URLs in answers (and `Link` headers) lead back
/// here whatever name or port the simulator is reached under.
pub(crate) fn request_base(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    Some(format!("{scheme}://{host}"))
}

/// A request id in GitHub's `XXXX:XXXX:XXXXXX:XXXXXXX:XXXXXXXX` shape.
fn request_id() -> String {
    let hex = Uuid::new_v4().simple().to_string().to_uppercase();
    format!(
        "{}:{}:{}:{}:{}",
        &hex[0..4],
        &hex[4..8],
        &hex[8..14],
        &hex[14..21],
        &hex[21..29]
    )
}

/// Whether an `If-None-Match` header matches an ETag (weak comparison, as for GET).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

pub(crate) fn set_header(headers: &mut HeaderMap, name: &'static str, value: String) {
    match HeaderValue::try_from(value) {
        Ok(value) => {
            headers.insert(HeaderName::from_static(name), value);
        }
        Err(error) => tracing::warn!(header = name, %error, "invalid response header value"),
    }
}

/// GitHub's cross-cutting behaviour around every REST route (see the module docs). In order:
/// authentication (tokens, installation tokens, app JWTs), injected faults, the primary rate
/// limit, the content-creation limit, the installation's repository scope, then the handler.
/// Faults answer before anything else so a faulted request never reaches state.
async fn github_layer(State(tag): State<RouteTag>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    // Unknown admin paths reach the REST fallback; they are not API traffic.
    if path == "/_admin" || path.starts_with("/_admin/") {
        return next.run(request).await;
    }
    let sim = &tag.sim;
    let method = request.method().clone();
    let at = Utc::now();
    let now = at.timestamp();
    let request_id = request_id();
    let token = request_token(request.headers());
    let if_none_match = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let (identity, auth_error, plan, release) = {
        let mut st = sim.lock();
        let (identity, auth_error) = st.identify(tag.route, token.as_deref(), sim.tokens(), at);
        let plan = st.faults.plan(tag.route, method.as_str(), &identity.label);
        (identity, auth_error, plan, st.faults.release_token())
    };
    let mut fault = plan.name();
    if !plan.delay.is_zero() {
        // Sleeping outside the lock delays concurrent requests concurrently.
        tokio::time::sleep(plan.delay).await;
    }
    if let Some(Answer::Timeout { millis }) = plan.answer {
        // Logged on arrival: the client may give up (and the connection close) at any time.
        sim.lock().record(LoggedRequest {
            method: method.to_string(),
            path,
            route: tag.route.to_owned(),
            status: 0,
            token_label: identity.label.clone(),
            not_modified: false,
            charged: false,
            fault: fault.map(str::to_owned),
            at,
        });
        return faults::hang(millis, release).await;
    }

    let budget_key = identity.budget_key().to_owned();
    // GitHub does not charge for asking about the rate limit.
    let free = tag.route == ROUTE_RATE_LIMIT;
    let before = sim.lock().rate_snapshot(&budget_key, now);

    let mut ran_handler = false;
    let response = match (plan.answer, auth_error) {
        (Some(Answer::ServerError { status }), _) => faults::server_error_response(status),
        (
            Some(Answer::SecondaryRateLimit {
                status,
                retry_after,
            }),
            _,
        ) => faults::secondary_limit_response(status, retry_after, &request_id),
        (_, Some(error)) => error.into_response(),
        _ if !free && before.remaining == 0 => {
            let who = match &identity.credential {
                Credential::Installation {
                    installation_id, ..
                } => format!("installation ID {installation_id}"),
                Credential::App { app_id } => format!("app ID {app_id}"),
                Credential::Token => format!("installation ID {}", render::INSTALLATION_ID),
                Credential::Anonymous => "anonymous requests".to_owned(),
            };
            ApiError::new(
                StatusCode::FORBIDDEN,
                format!("API rate limit exceeded for {who}."),
                DOCS_RATE_LIMIT,
            )
            .without_status()
            .into_response()
        }
        _ => {
            // GitHub lets no anonymous request create content, so the limit (per user or app)
            // has nothing to say about the simulator's open-mode anonymous writes.
            let limited = identity.credential != Credential::Anonymous;
            let waiting = if limited && faults::creates_content(&method, tag.route) {
                sim.lock()
                    .faults
                    .admit_content(&identity.label, at.timestamp_millis())
                    .err()
            } else {
                None
            };
            match waiting {
                Some(retry_after) => {
                    fault = Some("content_creation_limit");
                    faults::secondary_limit_response(403, retry_after, &request_id)
                }
                None => {
                    ran_handler = true;
                    let hidden = sim.lock().hides_repo_path(&identity, &path);
                    if hidden {
                        ApiError::not_found("Not Found", DOCS_REST).into_response()
                    } else {
                        request.extensions_mut().insert(identity.clone());
                        next.run(request).await
                    }
                }
            }
        }
    };

    let (mut parts, body) = response.into_parts();
    let unmatched = parts.extensions.get::<Unmatched>().is_some();
    let media_type = parts.extensions.get::<MediaType>().copied();
    let mut body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, "failed to buffer response body");
            parts.status = StatusCode::INTERNAL_SERVER_ERROR;
            Bytes::from_static(br#"{"message":"Server Error"}"#)
        }
    };

    let mut etag = None;
    if method == Method::GET && parts.status == StatusCode::OK {
        let value = format!("\"{}\"", hex::encode(Sha256::digest(&body)));
        if if_none_match
            .as_deref()
            .is_some_and(|header| etag_matches(header, &value))
        {
            parts.status = StatusCode::NOT_MODIFIED;
            body = Bytes::new();
        }
        etag = Some(value);
    }
    // Conditional hits are free on GitHub; that is the point of sending If-None-Match.
    let not_modified = parts.status == StatusCode::NOT_MODIFIED;
    let spend = ran_handler && !free && !not_modified;

    let rate = {
        let mut st = sim.lock();
        let rate = if spend {
            st.rate_consume(&budget_key, now)
        } else {
            st.rate_snapshot(&budget_key, now)
        };
        st.record(LoggedRequest {
            method: method.to_string(),
            path,
            route: if unmatched { UNMATCHED } else { tag.route }.to_owned(),
            status: parts.status.as_u16(),
            token_label: identity.label,
            not_modified,
            charged: spend,
            fault: fault.map(str::to_owned),
            at,
        });
        rate
    };

    let headers = &mut parts.headers;
    if body.is_empty() {
        headers.remove(header::CONTENT_TYPE);
    } else if media_type.is_none() || parts.status != StatusCode::OK {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        );
    }
    if let Some(etag) = etag {
        set_header(headers, "etag", etag);
    }
    if method == Method::GET {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=60, s-maxage=60"),
        );
        headers.insert(
            header::VARY,
            HeaderValue::from_static("Accept, Authorization, Cookie, X-GitHub-OTP"),
        );
    }
    set_rate_headers(headers, &rate);
    set_header(headers, "x-github-request-id", request_id);
    headers.insert(
        HeaderName::from_static("x-github-media-type"),
        HeaderValue::from_static(media_type.map_or("github.v3; format=json", |m| m.0)),
    );
    headers.insert(
        HeaderName::from_static("x-github-api-version-selected"),
        HeaderValue::from_static("2022-11-28"),
    );
    Response::from_parts(parts, Body::from(body))
}

fn set_rate_headers(headers: &mut HeaderMap, rate: &RateSnapshot) {
    set_header(headers, "x-ratelimit-limit", rate.limit.to_string());
    set_header(headers, "x-ratelimit-remaining", rate.remaining.to_string());
    set_header(headers, "x-ratelimit-used", rate.used.to_string());
    set_header(headers, "x-ratelimit-reset", rate.reset.to_string());
    headers.insert(
        HeaderName::from_static("x-ratelimit-resource"),
        HeaderValue::from_static("core"),
    );
}

pub(crate) fn base_of(st: &SimState, headers: &HeaderMap) -> String {
    st.base_url(request_base(headers).as_deref())
}

/// The repository or GitHub's 404 "Not Found".
pub(crate) fn find_repo<'a>(
    st: &'a SimState,
    owner: &str,
    name: &str,
    documentation_url: &'static str,
) -> Result<(&'a Org, &'a Repo), ApiError> {
    st.repo(owner, name)
        .ok_or_else(|| ApiError::not_found("Not Found", documentation_url))
}

async fn get_repo(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_GET_REPO)?;
    Ok(json_response(
        StatusCode::OK,
        &render::full_repo_json(&base, org, repo),
    ))
}

/// Parses a JSON request body; the error is GitHub's 400.
pub(crate) fn parse_json(body: &Bytes, documentation_url: &'static str) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Problems parsing JSON",
            documentation_url,
        )
    })
}

async fn patch_repo(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    // Like GitHub, a missing repository wins over a bad body.
    find_repo(&st, &owner, &name, DOCS_UPDATE_REPO)?;
    let value = parse_json(&body, DOCS_UPDATE_REPO)?;
    let patch = settings::parse_patch(&value).map_err(|message| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message, DOCS_UPDATE_REPO)
    })?;
    let events = st
        .update_repo(&owner, &name, patch, Actor::Api)
        .map_err(|e| ApiError::from_sim(e, DOCS_UPDATE_REPO))?;
    sim.emit(&st, events);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_UPDATE_REPO)?;
    Ok(json_response(
        StatusCode::OK,
        &render::full_repo_json(&base, org, repo),
    ))
}

/// `GET /repos/{owner}/{repo}/tarball/{ref}`: like GitHub, a 302 to a download URL (here the
/// simulator's own `/_download/tarball/...`) once the ref resolves; 404 otherwise.
async fn get_tarball(
    State(sim): State<Simulator>,
    Path((owner, name, reference)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    // Resolving here (and archiving again on download) keeps a bad ref a 404 of the API call,
    // as on GitHub; repositories in tests are small.
    st.tarball(&owner, &name, &reference)
        .map_err(|e| ApiError::from_sim(e, DOCS_TARBALL))?;
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_TARBALL)?;
    let location = format!(
        "{base}/_download/tarball/{}/{}/{}",
        encode_query_component(&org.login),
        encode_query_component(&repo.name),
        encode_query_component(&reference)
    );
    let mut response = StatusCode::FOUND.into_response();
    set_header(response.headers_mut(), "location", location);
    Ok(response)
}

/// The download behind the tarball redirect (see [`ROUTE_DOWNLOAD`]): the gzip'd tar, or a
/// GitHub-style JSON 404. Logged under its own template, never charged.
async fn download_tarball(
    State(sim): State<Simulator>,
    Path((owner, name, reference)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let at = Utc::now();
    let mut st = sim.lock();
    let response = match st.tarball(&owner, &name, &reference) {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-gzip"),
            );
            let disposition = format!(
                "attachment; filename={}-{}-{}.tar.gz",
                owner.replace(['"', '/', '\\'], "_"),
                name.replace(['"', '/', '\\'], "_"),
                reference.replace(['"', '/', '\\'], "_"),
            );
            set_header(headers, "content-disposition", disposition);
            response
        }
        Err(error) => ApiError::from_sim(error, DOCS_TARBALL).into_response(),
    };
    st.record(LoggedRequest {
        method: Method::GET.to_string(),
        path: format!("/_download/tarball/{owner}/{name}/{reference}"),
        route: ROUTE_DOWNLOAD.to_owned(),
        status: response.status().as_u16(),
        token_label: token_label(request_token(&headers).as_deref()),
        not_modified: false,
        charged: false,
        fault: None,
        at,
    });
    response
}

async fn get_workflow(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let (_, repo) = find_repo(&st, &owner, &name, DOCS_GET_WORKFLOW)?;
    Ok(json_response(
        StatusCode::OK,
        &settings::workflow_json(&repo.actions),
    ))
}

async fn put_workflow(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let current = find_repo(&st, &owner, &name, DOCS_SET_WORKFLOW)?.1.actions;
    let value = parse_json(&body, DOCS_SET_WORKFLOW)?;
    let next = settings::parse_workflow(&value, current).map_err(|message| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message, DOCS_SET_WORKFLOW)
    })?;
    st.set_actions(&owner, &name, next)
        .map_err(|e| ApiError::from_sim(e, DOCS_SET_WORKFLOW))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_branch(
    State(sim): State<Simulator>,
    Path((owner, name, branch)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_GET_BRANCH)?;
    let branch = repo
        .branches
        .get(&branch)
        .ok_or_else(|| ApiError::not_found("Branch not found", DOCS_GET_BRANCH))?;
    Ok(json_response(
        StatusCode::OK,
        &render::branch_json(&base, org, repo, branch),
    ))
}

async fn get_protection(
    State(sim): State<Simulator>,
    Path((owner, name, branch)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let view = st
        .protection_view(&base, &owner, &name, &branch)
        .map_err(|e| ApiError::from_sim(e, DOCS_GET_PROTECTION))?;
    Ok(json_response(StatusCode::OK, &view))
}

async fn put_protection(
    State(sim): State<Simulator>,
    Path((owner, name, branch)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    // Like GitHub, a missing repository or branch wins over a bad body.
    let (_, repo) = find_repo(&st, &owner, &name, DOCS_PUT_PROTECTION)?;
    if !repo.branches.contains_key(&branch) {
        return Err(ApiError::not_found("Branch not found", DOCS_PUT_PROTECTION));
    }
    let value = parse_json(&body, DOCS_PUT_PROTECTION)?;
    let parsed = protection::parse_put(&value, false).map_err(|message| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            message,
            DOCS_PUT_PROTECTION,
        )
    })?;
    let events = st
        .put_protection(&owner, &name, &branch, parsed, Actor::Api)
        .map_err(|e| ApiError::from_sim(e, DOCS_PUT_PROTECTION))?;
    sim.emit(&st, events);
    let view = st
        .protection_view(&base, &owner, &name, &branch)
        .map_err(|e| ApiError::from_sim(e, DOCS_PUT_PROTECTION))?;
    Ok(json_response(StatusCode::OK, &view))
}

async fn delete_protection(
    State(sim): State<Simulator>,
    Path((owner, name, branch)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let events = st
        .delete_protection(&owner, &name, &branch, Actor::Api)
        .map_err(|e| ApiError::from_sim(e, DOCS_DELETE_PROTECTION))?;
    sim.emit(&st, events);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `per_page` / `page` with GitHub's defaults and bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageParams {
    pub per_page: usize,
    pub page: usize,
}

impl PageParams {
    pub(crate) fn from_query(query: &HashMap<String, String>) -> PageParams {
        let number = |key: &str| {
            query
                .get(key)
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|n| *n > 0)
        };
        PageParams {
            per_page: number("per_page").unwrap_or(30).min(100),
            page: number("page").unwrap_or(1),
        }
    }
}

pub(crate) fn encode_query_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Cuts one page out of `items` and builds GitHub's `Link` header (prev, next, last, first),
/// keeping the client's other query parameters so following `next` repeats the same query.
pub(crate) fn paginate<T: Clone>(
    items: &[T],
    params: PageParams,
    url: &str,
    query: &HashMap<String, String>,
) -> (Vec<T>, Option<String>) {
    let last = items.len().div_ceil(params.per_page).max(1);
    let start = (params.page - 1).saturating_mul(params.per_page);
    let page_items = items
        .iter()
        .skip(start)
        .take(params.per_page)
        .cloned()
        .collect();
    let kept: BTreeMap<&String, &String> = query
        .iter()
        .filter(|(k, _)| k.as_str() != "page" && k.as_str() != "per_page")
        .collect();
    let mut prefix = String::new();
    for (k, v) in kept {
        prefix.push_str(&format!(
            "{}={}&",
            encode_query_component(k),
            encode_query_component(v)
        ));
    }
    let link = |page: usize, rel: &str| {
        format!(
            "<{url}?{prefix}per_page={}&page={page}>; rel=\"{rel}\"",
            params.per_page
        )
    };
    let mut links = Vec::new();
    if params.page > 1 {
        links.push(link(params.page - 1, "prev"));
    }
    if params.page < last {
        links.push(link(params.page + 1, "next"));
        links.push(link(last, "last"));
    }
    if params.page > 1 {
        links.push(link(1, "first"));
    }
    let header = (!links.is_empty()).then(|| links.join(", "));
    (page_items, header)
}

pub(crate) fn with_link(mut response: Response, link: Option<String>) -> Response {
    if let Some(link) = link {
        set_header(response.headers_mut(), "link", link);
    }
    response
}

async fn list_org_repos(
    State(sim): State<Simulator>,
    Path(org): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let org = st
        .org(&org)
        .ok_or_else(|| ApiError::not_found("Not Found", DOCS_ORG_REPOS))?;
    let mut repos = st.org_repos(&org.login.to_lowercase());
    match query.get("type").map(String::as_str) {
        Some("public") => repos.retain(|r| !r.private),
        Some("private") => repos.retain(|r| r.private),
        // Simulated repositories are never forks.
        Some("forks") => repos.clear(),
        _ => {}
    }
    // Creation order (ascending) unless asked otherwise; stable pages are what matters here.
    if query.get("sort").map(String::as_str) == Some("full_name") {
        repos.sort_by_key(|r| r.name.to_lowercase());
    }
    if query.get("direction").map(String::as_str) == Some("desc") {
        repos.reverse();
    }
    let params = PageParams::from_query(&query);
    let url = format!("{base}/orgs/{}/repos", org.login);
    let (page, link) = paginate(&repos, params, &url, &query);
    let body = Value::Array(
        page.iter()
            .map(|repo| render::repo_json(&base, org, repo))
            .collect(),
    );
    Ok(with_link(json_response(StatusCode::OK, &body), link))
}

async fn list_installation_repos(
    State(sim): State<Simulator>,
    identity: Option<Extension<Identity>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    // An installation token sees its installation's repositories, other credentials all.
    let (all, selection) = st.installation_listing(identity.as_ref().map(|Extension(i)| i));
    let params = PageParams::from_query(&query);
    let url = format!("{base}/installation/repositories");
    let (page, link) = paginate(&all, params, &url, &query);
    let body = json!({
        "total_count": all.len(),
        "repository_selection": selection,
        "repositories": page
            .iter()
            .map(|(org, repo)| render::repo_json(&base, org, repo))
            .collect::<Vec<_>>(),
    });
    with_link(json_response(StatusCode::OK, &body), link)
}

async fn rate_limit(
    State(sim): State<Simulator>,
    identity: Option<Extension<Identity>>,
) -> Response {
    // Authentication already passed in the middleware, so the identity is the caller's.
    let key = identity.map_or_else(
        || crate::ANONYMOUS_LABEL.to_owned(),
        |Extension(i)| i.budget_key().to_owned(),
    );
    let rate = sim.lock().rate_snapshot(&key, Utc::now().timestamp());
    let core = json!({
        "limit": rate.limit,
        "used": rate.used,
        "remaining": rate.remaining,
        "reset": rate.reset,
        "resource": "core",
    });
    // Only the core budget is simulated; search is reported as GitHub's untouched default.
    let search = json!({
        "limit": 30,
        "used": 0,
        "remaining": 30,
        "reset": rate.reset,
        "resource": "search",
    });
    json_response(
        StatusCode::OK,
        &json!({ "resources": { "core": core, "search": search }, "rate": core }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn page_params_follow_github_bounds() {
        assert_eq!(
            PageParams::from_query(&query(&[])),
            PageParams {
                per_page: 30,
                page: 1
            }
        );
        assert_eq!(
            PageParams::from_query(&query(&[("per_page", "500"), ("page", "0")])),
            PageParams {
                per_page: 100,
                page: 1
            }
        );
    }

    #[test]
    fn link_header_has_prev_next_last_first() {
        let items: Vec<u32> = (0..25).collect();
        let params = PageParams {
            per_page: 10,
            page: 2,
        };
        let (page, link) = paginate(&items, params, "http://h/x", &query(&[("type", "all")]));
        assert_eq!(page, (10..20).collect::<Vec<_>>());
        assert_eq!(
            link.unwrap(),
            "<http://h/x?type=all&per_page=10&page=1>; rel=\"prev\", \
             <http://h/x?type=all&per_page=10&page=3>; rel=\"next\", \
             <http://h/x?type=all&per_page=10&page=3>; rel=\"last\", \
             <http://h/x?type=all&per_page=10&page=1>; rel=\"first\""
        );
        let (_, link) = paginate(&items[..5], params, "http://h/x", &query(&[]));
        assert!(link.unwrap().contains("rel=\"prev\""));
        let single = PageParams {
            per_page: 10,
            page: 1,
        };
        assert_eq!(
            paginate(&items[..5], single, "http://h/x", &query(&[])).1,
            None
        );
    }

    #[test]
    fn tokens_and_etags_parse() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(request_token(&headers).as_deref(), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("token xyz"));
        assert_eq!(request_token(&headers).as_deref(), Some("xyz"));
        assert!(etag_matches("W/\"a\", \"b\"", "\"a\""));
        assert!(!etag_matches("\"c\"", "\"a\""));
        assert_eq!(request_id().len(), 4 + 4 + 6 + 7 + 8 + 4);
    }
}
