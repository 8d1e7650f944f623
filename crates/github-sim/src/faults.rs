//! Fault injection and GitHub's secondary rate limits.
//!
//! Plumbline's GitHub provider must behave under GitHub's limits and failures: slow answers,
//! 5xx, requests that never return, secondary rate limits (403 or 429 with `retry-after`) and an
//! exhausted primary budget. Tests inject those here (admin methods and `/_admin/faults`). Faults
//! are applied by the GitHub middleware before the route's handler runs, so a faulted request
//! changes no state; every faulted request is logged with its status like any other.
//!
//! The content-creation limit is not a fault but GitHub behaviour: at most 80 content-creating
//! requests per minute and 500 per hour per credential (configurable, can be disabled). The
//! mutating methods on `/repos/...` routes count, which covers every family of routes without
//! naming them. Anonymous requests (accepted in open mode only; GitHub lets no anonymous request
//! create content) are not limited.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::{SimError, Simulator};

/// How long a timeout fault hangs unless told otherwise: longer than any sensible client
/// timeout.
pub const DEFAULT_TIMEOUT_HANG: Duration = Duration::from_secs(300);

const DOCS_SECONDARY: &str = "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits";

/// What a fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Delays the request by `millis`, then serves it normally. Concurrent requests are delayed
    /// concurrently (the delay never holds a lock).
    Latency { millis: u64 },
    /// Answers `status` (500, 502 or 503) with GitHub's error body instead of serving.
    ServerError { status: u16 },
    /// Never answers: hangs until the client gives up, or for `millis` (default
    /// [`DEFAULT_TIMEOUT_HANG`]) after which the connection is closed without an answer.
    Timeout {
        #[serde(default)]
        millis: Option<u64>,
    },
    /// GitHub's secondary rate limit: `status` 403 or 429 with `retry-after: <retry_after>` and
    /// GitHub's "You have exceeded a secondary rate limit" message.
    SecondaryRateLimit { status: u16, retry_after: u64 },
}

impl FaultKind {
    /// The name recorded in [`crate::LoggedRequest::fault`].
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Latency { .. } => "latency",
            FaultKind::ServerError { .. } => "server_error",
            FaultKind::Timeout { .. } => "timeout",
            FaultKind::SecondaryRateLimit { .. } => "secondary_rate_limit",
        }
    }
}

/// A fault and the requests it applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Route template (e.g. "/repos/{owner}/{repo}"); None = every route.
    #[serde(default)]
    pub route: Option<String>,
    /// HTTP method (e.g. "PUT"); None = every method.
    #[serde(default)]
    pub method: Option<String>,
    /// Token label (see [`crate::token_label`]); None = every credential.
    #[serde(default)]
    pub token_label: Option<String>,
    /// What happens.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Applies to the next `times` matching requests; None = until cleared.
    #[serde(default)]
    pub times: Option<u64>,
}

impl Fault {
    fn new(kind: FaultKind) -> Fault {
        Fault {
            route: None,
            method: None,
            token_label: None,
            kind,
            times: None,
        }
    }

    /// Delays matching requests by `delay`.
    pub fn latency(delay: Duration) -> Fault {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        Fault::new(FaultKind::Latency { millis })
    }

    /// Answers matching requests with `status` (500, 502 or 503).
    pub fn server_error(status: u16) -> Fault {
        Fault::new(FaultKind::ServerError { status })
    }

    /// Leaves matching requests unanswered, for `hang` or [`DEFAULT_TIMEOUT_HANG`].
    pub fn timeout(hang: Option<Duration>) -> Fault {
        let millis = hang.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Fault::new(FaultKind::Timeout { millis })
    }

    /// Answers matching requests with GitHub's secondary rate limit (`status` 403 or 429).
    pub fn secondary_rate_limit(status: u16, retry_after_secs: u64) -> Fault {
        Fault::new(FaultKind::SecondaryRateLimit {
            status,
            retry_after: retry_after_secs,
        })
    }

    /// Only requests to this route template.
    pub fn on_route(mut self, route: impl Into<String>) -> Fault {
        self.route = Some(route.into());
        self
    }

    /// Only requests with this method.
    pub fn on_method(mut self, method: impl Into<String>) -> Fault {
        self.method = Some(method.into());
        self
    }

    /// Only requests with this token label.
    pub fn for_token_label(mut self, label: impl Into<String>) -> Fault {
        self.token_label = Some(label.into());
        self
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: u64) -> Fault {
        self.times = Some(n);
        self
    }

    fn validate(&self) -> Result<(), SimError> {
        match self.kind {
            FaultKind::ServerError { status } if ![500, 502, 503].contains(&status) => {
                Err(SimError::Invalid(format!(
                    "server_error status must be 500, 502 or 503, not {status}"
                )))
            }
            FaultKind::SecondaryRateLimit { status, .. } if ![403, 429].contains(&status) => {
                Err(SimError::Invalid(format!(
                    "secondary_rate_limit status must be 403 or 429, not {status}"
                )))
            }
            _ if self.times == Some(0) => Err(SimError::Invalid("times must be at least 1".into())),
            _ => Ok(()),
        }
    }

    fn matches(&self, route: &str, method: &str, label: &str) -> bool {
        self.route.as_deref().is_none_or(|r| r == route)
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.token_label.as_deref().is_none_or(|l| l == label)
    }
}

/// GitHub's limit on content-creating requests per credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentLimits {
    pub per_minute: u32,
    pub per_hour: u32,
    /// The length of the "minute" (GitHub's: 60,000 ms). Tests shorten both windows to prove in
    /// seconds what GitHub enforces over minutes.
    #[serde(default = "minute_ms")]
    pub minute_ms: u64,
    /// The length of the "hour" (GitHub's: 3,600,000 ms).
    #[serde(default = "hour_ms")]
    pub hour_ms: u64,
}

fn minute_ms() -> u64 {
    60_000
}

fn hour_ms() -> u64 {
    3_600_000
}

impl Default for ContentLimits {
    /// GitHub's documented limits: 80 per minute, 500 per hour.
    fn default() -> Self {
        ContentLimits::new(80, 500)
    }
}

impl ContentLimits {
    /// `per_minute` and `per_hour` over GitHub's windows.
    pub fn new(per_minute: u32, per_hour: u32) -> Self {
        ContentLimits {
            per_minute,
            per_hour,
            minute_ms: minute_ms(),
            hour_ms: hour_ms(),
        }
    }

    /// The same limits over shorter (or longer) windows.
    pub fn with_windows(self, minute: std::time::Duration, hour: std::time::Duration) -> Self {
        ContentLimits {
            minute_ms: u64::try_from(minute.as_millis()).unwrap_or(u64::MAX).max(1),
            hour_ms: u64::try_from(hour.as_millis()).unwrap_or(u64::MAX).max(1),
            ..self
        }
    }
}

/// An injected fault with its id and what is left of it.
#[derive(Debug, Clone)]
struct Active {
    id: u64,
    fault: Fault,
    remaining: Option<u64>,
}

/// Fault state inside the simulator state.
pub(crate) struct Faults {
    next_id: u64,
    active: Vec<Active>,
    content_limits: Option<ContentLimits>,
    /// Arrival times (ms since the epoch) of content-creating requests in the last hour, per
    /// token label.
    content: HashMap<String, VecDeque<i64>>,
    /// Cancelled to release hanging requests (clearing faults, stopping the server).
    release: CancellationToken,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            next_id: 1,
            active: Vec::new(),
            content_limits: Some(ContentLimits::default()),
            content: HashMap::new(),
            release: CancellationToken::new(),
        }
    }
}

/// How a fault answers instead of the route's handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    ServerError { status: u16 },
    Timeout { millis: Option<u64> },
    SecondaryRateLimit { status: u16, retry_after: u64 },
}

impl Answer {
    fn name(self) -> &'static str {
        match self {
            Answer::ServerError { .. } => "server_error",
            Answer::Timeout { .. } => "timeout",
            Answer::SecondaryRateLimit { .. } => "secondary_rate_limit",
        }
    }
}

/// What the faults do to one request.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Sum of the matching latency faults.
    pub delay: Duration,
    /// The first matching fault that answers (or does not answer) instead of the handler.
    pub answer: Option<Answer>,
}

impl Plan {
    /// The name to log: the answering fault, else "latency" if delayed.
    pub(crate) fn name(&self) -> Option<&'static str> {
        match self.answer {
            Some(answer) => Some(answer.name()),
            None if !self.delay.is_zero() => Some("latency"),
            None => None,
        }
    }
}

impl Faults {
    pub(crate) fn set_content_limits(&mut self, limits: Option<ContentLimits>) {
        self.content_limits = limits;
    }

    /// Releases hanging requests when `shutdown` is cancelled too (the server stops).
    pub(crate) fn release_on(&self, shutdown: CancellationToken) {
        let release = self.release.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => release.cancel(),
                () = release.cancelled() => {}
            }
        });
    }

    /// The token that ends the hang of timeout faults.
    pub(crate) fn release_token(&self) -> CancellationToken {
        self.release.clone()
    }

    /// Finds the faults matching a request and uses them up.
    pub(crate) fn plan(&mut self, route: &str, method: &str, label: &str) -> Plan {
        let mut plan = Plan::default();
        for active in &mut self.active {
            if !active.fault.matches(route, method, label) {
                continue;
            }
            let answer = match active.fault.kind {
                FaultKind::Latency { millis } => {
                    plan.delay += Duration::from_millis(millis);
                    None
                }
                FaultKind::ServerError { status } => Some(Answer::ServerError { status }),
                FaultKind::Timeout { millis } => Some(Answer::Timeout { millis }),
                FaultKind::SecondaryRateLimit {
                    status,
                    retry_after,
                } => Some(Answer::SecondaryRateLimit {
                    status,
                    retry_after,
                }),
            };
            let used = match answer {
                None => true,
                Some(answer) if plan.answer.is_none() => {
                    plan.answer = Some(answer);
                    true
                }
                Some(_) => false,
            };
            if let (true, Some(remaining)) = (used, active.remaining.as_mut()) {
                *remaining = remaining.saturating_sub(1);
            }
        }
        self.active.retain(|a| a.remaining != Some(0));
        plan
    }

    /// Admits a content-creating request of `label` at `now_ms`, or returns the seconds until
    /// it would be admitted.
    pub(crate) fn admit_content(&mut self, label: &str, now_ms: i64) -> Result<(), u64> {
        let Some(limits) = self.content_limits else {
            return Ok(());
        };
        let minute = i64::try_from(limits.minute_ms).unwrap_or(i64::MAX);
        let hour = i64::try_from(limits.hour_ms).unwrap_or(i64::MAX);
        let times = self.content.entry(label.to_owned()).or_default();
        while times.front().is_some_and(|t| now_ms - t >= hour) {
            times.pop_front();
        }
        let wait = |since: i64, window: i64| {
            let ms = (since + window - now_ms).max(1);
            u64::try_from((ms + 999) / 1000).unwrap_or(1)
        };
        if times.len() >= limits.per_hour as usize {
            let oldest = times.front().copied().unwrap_or(now_ms);
            return Err(wait(oldest, hour));
        }
        let last_minute: Vec<i64> = times
            .iter()
            .copied()
            .filter(|t| now_ms - t < minute)
            .collect();
        if last_minute.len() >= limits.per_minute as usize {
            let oldest = last_minute.first().copied().unwrap_or(now_ms);
            return Err(wait(oldest, minute));
        }
        times.push_back(now_ms);
        Ok(())
    }

    /// Forgets the content-creation history of a label ("the hour passed").
    pub(crate) fn forget_content(&mut self, label: &str) {
        self.content.remove(label);
    }
}

/// Whether a request counts against the content-creation limit: a mutating method on a
/// repository route.
pub(crate) fn creates_content(method: &Method, route: &str) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) && route.starts_with("/repos/")
}

/// GitHub's secondary rate limit answer.
pub(crate) fn secondary_limit_response(
    status: u16,
    retry_after: u64,
    request_id: &str,
) -> Response {
    let message = format!(
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try \
         again. If you reach out to GitHub Support for help, please include the request ID \
         {request_id}."
    );
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let mut response = api::json_response(
        status,
        &json!({ "message": message, "documentation_url": DOCS_SECONDARY }),
    );
    if let Ok(value) = HeaderValue::try_from(retry_after.to_string()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("retry-after"), value);
    }
    response
}

/// GitHub's answer of a 5xx fault.
pub(crate) fn server_error_response(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = if status == StatusCode::SERVICE_UNAVAILABLE {
        "Service Unavailable"
    } else {
        "Server Error"
    };
    api::json_response(status, &json!({ "message": message }))
}

/// Hangs like a request GitHub never answers, then closes the connection without an answer (a
/// body that fails before its first byte makes the server drop the connection).
pub(crate) async fn hang(millis: Option<u64>, release: CancellationToken) -> Response {
    let hang = millis.map_or(DEFAULT_TIMEOUT_HANG, Duration::from_millis);
    tokio::select! {
        () = tokio::time::sleep(hang) => {}
        () = release.cancelled() => {}
    }
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("timeout fault: no answer"))
    });
    Response::new(Body::from_stream(failing))
}

impl Simulator {
    /// Injects a fault; returns its id (for [`Simulator::remove_fault`]). An invalid status or
    /// `times` of zero is `SimError::Invalid`.
    pub fn add_fault(&self, fault: Fault) -> Result<u64, SimError> {
        fault.validate()?;
        let mut st = self.lock();
        let id = st.faults.next_id;
        st.faults.next_id += 1;
        let remaining = fault.times;
        st.faults.active.push(Active {
            id,
            fault,
            remaining,
        });
        Ok(id)
    }

    /// Removes one fault; false if it is gone (used up or removed).
    pub fn remove_fault(&self, id: u64) -> bool {
        let mut st = self.lock();
        let before = st.faults.active.len();
        st.faults.active.retain(|a| a.id != id);
        st.faults.active.len() != before
    }

    /// Removes every fault and releases requests hanging in a timeout fault.
    pub fn clear_faults(&self) {
        let mut st = self.lock();
        st.faults.active.clear();
        st.faults.release.cancel();
        st.faults.release = CancellationToken::new();
    }

    /// The active faults with their ids; `times` shows what is left of each.
    pub fn faults(&self) -> Vec<(u64, Fault)> {
        self.lock()
            .faults
            .active
            .iter()
            .map(|a| {
                let mut fault = a.fault.clone();
                fault.times = a.remaining;
                (a.id, fault)
            })
            .collect()
    }

    /// Sets (Some) or disables (None) the content-creation secondary limit.
    pub fn set_content_limits(&self, limits: Option<ContentLimits>) {
        self.lock().faults.set_content_limits(limits);
    }

    /// Sets how much primary budget a token label has left in its current window, e.g. 0 to
    /// make its next request a "rate limit exceeded".
    pub fn set_rate_remaining(&self, token_label: &str, remaining: u64) {
        let now = chrono::Utc::now().timestamp();
        self.lock().set_remaining(token_label, remaining, now);
    }

    /// Lets "the hour pass" for a token label: a fresh primary budget window starting now, and
    /// an empty content-creation history.
    pub fn reset_rate_window(&self, token_label: &str) {
        let now = chrono::Utc::now().timestamp();
        let mut st = self.lock();
        st.reset_window(token_label, now);
        st.faults.forget_content(token_label);
    }
}

// ---------------------------------------------------------------------------------------------
// Admin API
// ---------------------------------------------------------------------------------------------

/// Admin routes of this module, merged under `/_admin`.
pub(crate) fn admin_routes() -> Router<Simulator> {
    Router::new()
        .route(
            "/faults",
            post(admin_add_fault)
                .get(admin_list_faults)
                .delete(admin_clear_faults),
        )
        .route("/faults/{id}", delete(admin_remove_fault))
        .route(
            "/faults/content_limits",
            put(admin_content_limits).get(admin_get_content_limits),
        )
        .route("/rate_limit/tokens/{label}", put(admin_set_remaining))
        .route("/rate_limit/tokens/{label}/reset", post(admin_reset_window))
}

fn fault_json(id: u64, fault: &Fault) -> Value {
    let mut value = serde_json::to_value(fault).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut value {
        fields.insert("id".into(), json!(id));
    }
    value
}

/// `POST /_admin/faults` with a fault (`{"kind": "latency"|"server_error"|"timeout"|
/// "secondary_rate_limit", ...kind fields, "route"?, "method"?, "token_label"?, "times"?}`):
/// 201 with the fault and its id.
async fn admin_add_fault(State(sim): State<Simulator>, body: Bytes) -> Response {
    let fault: Fault = match crate::admin::parse(&body) {
        Ok(f) => f,
        Err(response) => return *response,
    };
    match sim.add_fault(fault.clone()) {
        Ok(id) => api::json_response(StatusCode::CREATED, &fault_json(id, &fault)),
        Err(SimError::Invalid(m) | SimError::NotFound(m)) => {
            crate::admin::error(StatusCode::UNPROCESSABLE_ENTITY, m)
        }
    }
}

/// `GET /_admin/faults`: the active faults.
async fn admin_list_faults(State(sim): State<Simulator>) -> Response {
    let list: Vec<Value> = sim
        .faults()
        .iter()
        .map(|(id, fault)| fault_json(*id, fault))
        .collect();
    api::json_response(StatusCode::OK, &Value::Array(list))
}

/// `DELETE /_admin/faults`: removes all faults, releases hanging requests. 204.
async fn admin_clear_faults(State(sim): State<Simulator>) -> Response {
    sim.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

/// `DELETE /_admin/faults/{id}`: 204, or 404 if there is no such fault.
async fn admin_remove_fault(State(sim): State<Simulator>, Path(id): Path<u64>) -> Response {
    if sim.remove_fault(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        crate::admin::error(StatusCode::NOT_FOUND, "no such fault")
    }
}

/// `PUT /_admin/faults/content_limits` with `{"per_minute", "per_hour"}` (and optionally
/// `"minute_ms"`, `"hour_ms"`: shorter windows for tests) or `{"enabled": false}`: 204.
async fn admin_content_limits(State(sim): State<Simulator>, body: Bytes) -> Response {
    #[derive(Deserialize)]
    struct Limits {
        #[serde(default)]
        enabled: Option<bool>,
        #[serde(default)]
        per_minute: Option<u32>,
        #[serde(default)]
        per_hour: Option<u32>,
        #[serde(default)]
        minute_ms: Option<u64>,
        #[serde(default)]
        hour_ms: Option<u64>,
    }
    let request: Limits = match crate::admin::parse(&body) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    if request.enabled == Some(false) {
        sim.set_content_limits(None);
    } else {
        let defaults = ContentLimits::default();
        sim.set_content_limits(Some(ContentLimits {
            per_minute: request.per_minute.unwrap_or(defaults.per_minute),
            per_hour: request.per_hour.unwrap_or(defaults.per_hour),
            minute_ms: request.minute_ms.unwrap_or(defaults.minute_ms).max(1),
            hour_ms: request.hour_ms.unwrap_or(defaults.hour_ms).max(1),
        }));
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_admin/faults/content_limits`: the limits, or `{"enabled": false}`.
async fn admin_get_content_limits(State(sim): State<Simulator>) -> Response {
    let limits = sim.lock().faults.content_limits;
    let body = match limits {
        Some(l) => {
            json!({ "enabled": true, "per_minute": l.per_minute, "per_hour": l.per_hour, "minute_ms": l.minute_ms, "hour_ms": l.hour_ms })
        }
        None => json!({ "enabled": false }),
    };
    api::json_response(StatusCode::OK, &body)
}

/// `PUT /_admin/rate_limit/tokens/{label}` with `{"remaining": n}`: 204.
async fn admin_set_remaining(
    State(sim): State<Simulator>,
    Path(label): Path<String>,
    body: Bytes,
) -> Response {
    #[derive(Deserialize)]
    struct Remaining {
        remaining: u64,
    }
    match crate::admin::parse::<Remaining>(&body) {
        Ok(request) => {
            sim.set_rate_remaining(&label, request.remaining);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(response) => *response,
    }
}

/// `POST /_admin/rate_limit/tokens/{label}/reset`: a fresh window for the label. 204.
async fn admin_reset_window(State(sim): State<Simulator>, Path(label): Path<String>) -> Response {
    sim.reset_rate_window(&label);
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_match_and_run_out() {
        let mut faults = Faults::default();
        faults.active.push(Active {
            id: 1,
            fault: Fault::secondary_rate_limit(429, 7)
                .on_route("/repos/{owner}/{repo}")
                .on_method("get")
                .times(1),
            remaining: Some(1),
        });
        faults.active.push(Active {
            id: 2,
            fault: Fault::latency(Duration::from_millis(5)),
            remaining: None,
        });
        let other = faults.plan("/orgs/{org}/repos", "GET", "anonymous");
        assert!(other.answer.is_none());
        assert_eq!(other.delay, Duration::from_millis(5));
        let hit = faults.plan("/repos/{owner}/{repo}", "GET", "anonymous");
        assert_eq!(hit.name(), Some("secondary_rate_limit"));
        let after = faults.plan("/repos/{owner}/{repo}", "GET", "anonymous");
        assert!(after.answer.is_none());
        assert_eq!(faults.active.len(), 1);
    }

    #[test]
    fn faults_deserialize_from_admin_json() {
        let fault: Fault = serde_json::from_value(json!({
            "kind": "server_error", "status": 502, "method": "PUT", "times": 2
        }))
        .unwrap();
        assert_eq!(fault, Fault::server_error(502).on_method("PUT").times(2));
        assert!(Fault::server_error(404).validate().is_err());
        assert!(Fault::secondary_rate_limit(500, 1).validate().is_err());
        let timeout: Fault = serde_json::from_value(json!({ "kind": "timeout" })).unwrap();
        assert_eq!(timeout.kind, FaultKind::Timeout { millis: None });
    }

    #[test]
    fn content_limit_windows_can_be_shortened() {
        let mut faults = Faults::default();
        faults.set_content_limits(Some(
            ContentLimits::new(2, 3).with_windows(Duration::from_secs(3), Duration::from_secs(10)),
        ));
        assert!(faults.admit_content("a", 0).is_ok());
        assert!(faults.admit_content("a", 500).is_ok());
        assert_eq!(
            faults.admit_content("a", 1_000),
            Err(2),
            "until the 3 s window has passed the first"
        );
        assert!(faults.admit_content("a", 3_000).is_ok());
        assert_eq!(
            faults.admit_content("a", 6_000),
            Err(4),
            "the 10 s window holds three"
        );
        assert!(faults.admit_content("a", 10_000).is_ok());
    }

    #[test]
    fn content_limit_counts_per_minute_and_hour() {
        let mut faults = Faults::default();
        faults.set_content_limits(Some(ContentLimits::new(2, 3)));
        assert!(faults.admit_content("a", 0).is_ok());
        assert!(faults.admit_content("a", 1_000).is_ok());
        assert_eq!(faults.admit_content("a", 2_000), Err(58));
        assert!(faults.admit_content("b", 2_000).is_ok());
        assert!(faults.admit_content("a", 60_000).is_ok());
        assert_eq!(faults.admit_content("a", 130_000), Err(3_600 - 130));
        faults.forget_content("a");
        assert!(faults.admit_content("a", 130_000).is_ok());
        faults.set_content_limits(None);
        for t in 0..10 {
            assert!(faults.admit_content("c", t).is_ok());
        }
    }
}
