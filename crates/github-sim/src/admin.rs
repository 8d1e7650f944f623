//! The admin API under `/_admin`: what a human would do in the GitHub UI (create repositories,
//! change protection), plus controls and introspection for tests and demos (webhook switch,
//! request counters). It needs no authentication, is not rate limited and is not logged, so
//! observing the simulator never disturbs what is being observed.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::state::Actor;
use crate::{protection, RepoOptions, SimError, Simulator};

/// Upper bound for `/_admin/seed`, so a typo cannot exhaust memory.
const MAX_SEED: usize = 100_000;

pub(crate) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/repos", post(create_repo))
        .route("/seed", post(seed))
        .route(
            "/repos/{owner}/{repo}/branches/{branch}/protection",
            put(put_protection).delete(delete_protection),
        )
        .route("/webhooks", put(put_webhooks).get(get_webhooks))
        .route("/rate_limit", put(put_rate_limit))
        .route("/requests", get(get_requests).delete(reset_requests))
        .route("/requests/log", get(get_request_log))
        .merge(crate::apps::admin_routes())
        .merge(crate::faults::admin_routes())
        .merge(crate::quota::admin_routes())
        // Endpoint families kept in their own modules.
        .merge(crate::actions_policy::admin_routes())
        .merge(crate::advisories::admin_routes())
        .merge(crate::issues::admin_routes())
        .merge(crate::rulesets::admin_routes())
        .merge(crate::vulnerability_reporting::admin_routes())
        .merge(crate::collaborators::admin_routes())
        .merge(crate::releases::admin_routes())
        .merge(crate::dependabot::admin_routes())
        .merge(crate::gitdata::admin_routes())
        .merge(crate::pulls::admin_routes())
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    crate::api::json_response(status, &json!({ "message": message.into() }))
}

pub(crate) fn ok_json(status: StatusCode, value: &Value) -> Response {
    crate::api::json_response(status, value)
}

/// The value, or 404 "Not Found" when there is none (it went away, or never was).
pub(crate) fn found(status: StatusCode, value: Option<Value>) -> Response {
    match value {
        Some(value) => ok_json(status, &value),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

pub(crate) fn sim_error(e: SimError) -> Response {
    match e {
        SimError::NotFound(message) => error(StatusCode::NOT_FOUND, message),
        SimError::Invalid(message) => error(StatusCode::UNPROCESSABLE_ENTITY, message),
    }
}

/// Parses a JSON body into `T`; the error is the 400 answer explaining why it does not fit
/// (boxed because a response is large compared with the happy path).
pub(crate) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("Problems parsing JSON: {e}"),
        ))
    })
}

/// Parses a JSON object body; the error is the 400 answer when it is not JSON, 422 when it is
/// not an object (boxed like [`parse`]).
pub(crate) fn parse_object(body: &Bytes) -> Result<Map<String, Value>, Box<Response>> {
    match parse(body)? {
        Value::Object(map) => Ok(map),
        _ => Err(Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "body must be an object",
        ))),
    }
}

/// Owner and repository names become URL path segments, so they must be non-empty and free of
/// slashes.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.chars().any(char::is_whitespace)
}

#[derive(Debug, Deserialize)]
struct CreateRepo {
    owner: String,
    name: String,
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    private: Option<bool>,
    #[serde(default)]
    protected: Option<bool>,
}

/// `POST /_admin/repos`: 201 with the new id, or 200 with the id of the existing repository.
async fn create_repo(State(sim): State<Simulator>, body: Bytes) -> Response {
    let request: CreateRepo = match parse(&body) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    if !valid_name(&request.owner) || !valid_name(&request.name) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "owner and name must be non-empty and contain no slashes or spaces",
        );
    }
    let defaults = RepoOptions::default();
    let opts = RepoOptions {
        default_branch: request
            .default_branch
            .filter(|b| !b.is_empty())
            .unwrap_or(defaults.default_branch),
        private: request.private.unwrap_or(defaults.private),
        protected: request.protected.unwrap_or(defaults.protected),
        files: Vec::new(),
    };
    let mut st = sim.lock();
    let (id, created, events) = st.create_repo(&request.owner, &request.name, &opts, Actor::Admin);
    sim.emit(&st, events);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    ok_json(
        status,
        &json!({
            "id": id,
            "owner": request.owner,
            "name": request.name,
            "full_name": format!("{}/{}", request.owner, request.name),
        }),
    )
}

#[derive(Debug, Deserialize)]
struct Seed {
    org: String,
    count: usize,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    protected_fraction: Option<f64>,
}

/// `POST /_admin/seed`: 201 with `[{"owner","name","id"}]`. A body naming `repos_per_org` seeds
/// a fleet in a posture instead (see `posture::seed_endpoint`).
async fn seed(State(sim): State<Simulator>, body: Bytes) -> Response {
    if serde_json::from_slice::<Value>(&body).is_ok_and(|v| crate::posture::is_posture_request(&v))
    {
        return crate::posture::seed_endpoint(&sim, &body);
    }
    let request: Seed = match parse(&body) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    let prefix = request.prefix.unwrap_or_else(|| "repo".to_owned());
    if !valid_name(&request.org) || !valid_name(&prefix) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "org and prefix must be non-empty and contain no slashes or spaces",
        );
    }
    if request.count > MAX_SEED {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("count must be at most {MAX_SEED}"),
        );
    }
    let created = sim.seed(
        &request.org,
        request.count,
        &prefix,
        request.protected_fraction.unwrap_or(0.0),
    );
    let list: Vec<Value> = created
        .into_iter()
        .map(|(owner, name, id)| json!({ "owner": owner, "name": name, "id": id }))
        .collect();
    ok_json(StatusCode::CREATED, &Value::Array(list))
}

/// `PUT /_admin/repos/{owner}/{repo}/branches/{branch}/protection`: 200 with the protection in
/// GitHub's GET shape.
async fn put_protection(
    State(sim): State<Simulator>,
    Path((owner, name, branch)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let value: Value = match parse(&body) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let parsed = match protection::parse_put(&value, true) {
        Ok(p) => p,
        Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    let mut st = sim.lock();
    match st.put_protection(&owner, &name, &branch, parsed, Actor::Admin) {
        Ok(events) => sim.emit(&st, events),
        Err(e) => return sim_error(e),
    }
    let base = st.base_url(crate::api::request_base(&headers).as_deref());
    match st.protection_view(&base, &owner, &name, &branch) {
        Ok(view) => ok_json(StatusCode::OK, &view),
        Err(e) => sim_error(e),
    }
}

/// `DELETE /_admin/repos/{owner}/{repo}/branches/{branch}/protection`: 204.
async fn delete_protection(
    State(sim): State<Simulator>,
    Path((owner, name, branch)): Path<(String, String, String)>,
) -> Response {
    match sim.remove_protection(&owner, &name, &branch) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => sim_error(e),
    }
}

/// `PUT /_admin/webhooks` with `{"enabled": bool, "url": string|null}`; both optional, a
/// present `url` (also null) replaces the receiver. 204.
async fn put_webhooks(State(sim): State<Simulator>, body: Bytes) -> Response {
    let value: Value = match parse(&body) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let Value::Object(obj) = value else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "body must be an object");
    };
    let enabled = match obj.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "enabled must be a boolean",
            )
        }
    };
    let url = match obj.get("url") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "url must be a string or null",
            )
        }
    };
    let mut st = sim.lock();
    if let Some(enabled) = enabled {
        st.webhooks_enabled = enabled;
    }
    if let Some(url) = url {
        st.webhook_url = url;
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_admin/webhooks`: current switch, receiver and delivery counters.
async fn get_webhooks(State(sim): State<Simulator>) -> Response {
    let (enabled, url) = {
        let st = sim.lock();
        (st.webhooks_enabled, st.webhook_url.clone())
    };
    ok_json(
        StatusCode::OK,
        &json!({
            "enabled": enabled,
            "url": url,
            "sent": sim.webhooks_sent(),
            "failed": sim.webhooks_failed(),
        }),
    )
}

/// `PUT /_admin/rate_limit` with `{"limit": n}`: changes the hourly budget per token. 204.
async fn put_rate_limit(State(sim): State<Simulator>, body: Bytes) -> Response {
    #[derive(Deserialize)]
    struct Limit {
        limit: u64,
    }
    match parse::<Limit>(&body) {
        Ok(request) => {
            sim.set_rate_limit(request.limit);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(response) => *response,
    }
}

/// `GET /_admin/requests`: `{"counts": {"METHOD route": n}, "total": n, "not_modified": n}`.
async fn get_requests(State(sim): State<Simulator>) -> Response {
    let st = sim.lock();
    ok_json(
        StatusCode::OK,
        &json!({
            "counts": st.counts,
            "total": st.total,
            "not_modified": st.not_modified,
        }),
    )
}

/// `DELETE /_admin/requests`: forgets counters and log. 204.
async fn reset_requests(State(sim): State<Simulator>) -> Response {
    sim.reset_request_log();
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_admin/requests/log`: the logged requests, oldest first.
async fn get_request_log(State(sim): State<Simulator>) -> Response {
    let log = sim.request_log();
    match serde_json::to_value(&log) {
        Ok(value) => ok_json(StatusCode::OK, &value),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
