//! Quota accounting: who spent how much of GitHub's primary rate limit on which route.
//!
//! Plumbline's promise is that a sweep over unchanged repositories costs no quota, because
//! every read is a conditional request answered 304. The request log alone cannot show that:
//! it needs, per route template and per credential, how many requests were made, how many were
//! 304s and how many were charged. This module keeps those counters next to the log (and they
//! are reset with it), and derives the credential labels the log records instead of tokens.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{LoggedRequest, Simulator};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

/// Label of requests that carry no credentials.
pub const ANONYMOUS_LABEL: &str = "anonymous";

/// The label under which requests with `token` are logged, counted and rate limited: the first
/// 12 hex digits of the token's SHA-256, or `"anonymous"` without a token. Requests authenticated
/// with a GitHub App JWT are labelled `"app-{app_id}"` instead, because an app signs a new JWT
/// every few minutes and GitHub budgets them per app. The token itself is never stored in the
/// log, so a log dump cannot leak credentials.
pub fn token_label(token: Option<&str>) -> String {
    match token {
        None => ANONYMOUS_LABEL.to_owned(),
        Some(token) => hex::encode(&Sha256::digest(token.as_bytes())[..6]),
    }
}

/// The label of requests authenticated as a GitHub App (with a JWT).
pub(crate) fn app_label(app_id: u64) -> String {
    format!("app-{app_id}")
}

/// Counters of one slice of the request log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUsage {
    /// Requests answered (or, for a timeout fault, left unanswered).
    pub requests: u64,
    /// Of those, 304 answers to conditional requests.
    pub not_modified: u64,
    /// Of those, requests that consumed primary rate limit (GitHub does not charge a 304 to a
    /// conditional request, nor requests rejected before they ran).
    pub charged: u64,
}

impl QuotaUsage {
    fn add(&mut self, entry: &LoggedRequest) {
        self.requests += 1;
        self.not_modified += u64::from(entry.not_modified);
        self.charged += u64::from(entry.charged);
    }
}

/// Quota accounting since the last reset of the request log. Routes are keyed like
/// [`Simulator::request_counts`] ("METHOD route-template"), tokens by [`token_label`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaReport {
    /// All requests.
    pub total: QuotaUsage,
    /// Per "METHOD route-template".
    pub by_route: BTreeMap<String, QuotaUsage>,
    /// Per token label.
    pub by_token: BTreeMap<String, QuotaUsage>,
    /// Per "METHOD route-template", then per token label.
    pub by_route_and_token: BTreeMap<String, BTreeMap<String, QuotaUsage>>,
}

impl QuotaReport {
    /// Counts one logged request.
    pub(crate) fn add(&mut self, entry: &LoggedRequest) {
        let route = format!("{} {}", entry.method, entry.route);
        self.total.add(entry);
        self.by_token
            .entry(entry.token_label.clone())
            .or_default()
            .add(entry);
        self.by_route_and_token
            .entry(route.clone())
            .or_default()
            .entry(entry.token_label.clone())
            .or_default()
            .add(entry);
        self.by_route.entry(route).or_default().add(entry);
    }

    /// The counters of one token label (zero if it made no request).
    pub fn token(&self, label: &str) -> QuotaUsage {
        self.by_token.get(label).copied().unwrap_or_default()
    }

    /// The counters of one "METHOD route-template" (zero if it saw no request).
    pub fn route(&self, method_and_route: &str) -> QuotaUsage {
        self.by_route
            .get(method_and_route)
            .copied()
            .unwrap_or_default()
    }
}

impl Simulator {
    /// Quota accounting of the REST requests since the last [`Simulator::reset_request_log`]:
    /// requests, 304s and charged requests per route template and per token label.
    pub fn quota(&self) -> QuotaReport {
        self.lock().quota.clone()
    }
}

/// Admin routes of this module, merged under `/_admin`.
pub(crate) fn admin_routes() -> Router<Simulator> {
    Router::new().route("/requests/quota", get(get_quota))
}

/// `GET /_admin/requests/quota`: the [`QuotaReport`].
async fn get_quota(State(sim): State<Simulator>) -> Response {
    match serde_json::to_value(sim.quota()) {
        Ok(value) => crate::api::json_response(StatusCode::OK, &value),
        Err(e) => crate::api::json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({ "message": e.to_string() }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(label: &str, status: u16, charged: bool) -> LoggedRequest {
        LoggedRequest {
            method: "GET".to_owned(),
            path: "/repos/acme/api".to_owned(),
            route: "/repos/{owner}/{repo}".to_owned(),
            status,
            token_label: label.to_owned(),
            not_modified: status == 304,
            charged,
            fault: None,
            at: chrono::Utc::now(),
        }
    }

    #[test]
    fn labels_are_short_stable_and_not_the_token() {
        let label = token_label(Some("ghp_secret"));
        assert_eq!(label.len(), 12);
        assert_eq!(label, token_label(Some("ghp_secret")));
        assert_ne!(label, token_label(Some("ghp_other")));
        assert!(!label.contains("secret"));
        assert_eq!(token_label(None), "anonymous");
    }

    #[test]
    fn usage_is_split_by_route_and_token() {
        let mut report = QuotaReport::default();
        report.add(&entry("a", 200, true));
        report.add(&entry("a", 304, false));
        report.add(&entry("b", 404, true));
        assert_eq!(
            report.total,
            QuotaUsage {
                requests: 3,
                not_modified: 1,
                charged: 2
            }
        );
        assert_eq!(report.token("a").not_modified, 1);
        assert_eq!(report.token("b").charged, 1);
        assert_eq!(report.token("c"), QuotaUsage::default());
        assert_eq!(report.route("GET /repos/{owner}/{repo}").requests, 3);
        assert_eq!(
            report.by_route_and_token["GET /repos/{owner}/{repo}"]["a"].requests,
            2
        );
    }
}
