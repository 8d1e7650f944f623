//! Dependabot settings of a repository: alerts (`/vulnerability-alerts`) and security updates
//! (`/automated-security-fixes`).
//!
//! Security updates build on alerts, as on GitHub: turning security updates on turns alerts on
//! (the settings page does the same), turning alerts off turns security updates off, and while
//! alerts are off the security updates check answers 404. Whether security updates are on is
//! the repository's `security_and_analysis.dependabot_security_updates`, so `GET /repos/...`
//! always agrees with `/automated-security-fixes`; a change of it sends the
//! `security_and_analysis` webhook, like every change of that object. Alerts have no webhook of
//! their own.
//!
//! The two check endpoints answer "off" with a bare 404 (no body), which is what the document
//! declares for them; an unknown repository is GitHub's usual JSON 404.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use crate::api::{json_response, ApiError, Tag};
use crate::render;
use crate::state::{Actor, State as SimState};
use crate::webhooks::{self, Event};
use crate::{SimError, Simulator};

const ROUTE_ALERTS: &str = "/repos/{owner}/{repo}/vulnerability-alerts";
const ROUTE_FIXES: &str = "/repos/{owner}/{repo}/automated-security-fixes";

const DOCS_CHECK_ALERTS: &str = "https://docs.github.com/rest/repos/repos#check-if-vulnerability-alerts-are-enabled-for-a-repository";
const DOCS_ENABLE_ALERTS: &str =
    "https://docs.github.com/rest/repos/repos#enable-vulnerability-alerts";
const DOCS_DISABLE_ALERTS: &str =
    "https://docs.github.com/rest/repos/repos#disable-vulnerability-alerts";
const DOCS_CHECK_FIXES: &str = "https://docs.github.com/rest/repos/repos#check-if-dependabot-security-updates-are-enabled-for-a-repository";
const DOCS_ENABLE_FIXES: &str =
    "https://docs.github.com/rest/repos/repos#enable-dependabot-security-updates";
const DOCS_DISABLE_FIXES: &str =
    "https://docs.github.com/rest/repos/repos#disable-dependabot-security-updates";

/// Dependabot state besides `security.dependabot_security_updates`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Dependabot {
    /// Dependabot alerts (and the dependency graph they need).
    pub alerts: bool,
    /// GitHub pauses security updates of inactive repositories; only the admin side sets it.
    pub paused: bool,
}

/// A wanted change; None keeps the current value.
#[derive(Debug, Clone, Copy, Default)]
struct Change {
    alerts: Option<bool>,
    security_updates: Option<bool>,
    paused: Option<bool>,
}

impl SimState {
    /// Applies a change, keeping the dependencies between the settings, and returns the
    /// `security_and_analysis` event when security updates were switched.
    fn change_dependabot(
        &mut self,
        owner: &str,
        name: &str,
        change: Change,
        actor: Actor,
    ) -> Result<Vec<Event>, SimError> {
        let repo = self.repo_mut(owner, name)?;
        let id = repo.id;
        let previous = render::security_json(repo);
        let was_on = repo.security.dependabot_security_updates;
        let mut alerts = change.alerts.unwrap_or(repo.dependabot.alerts);
        let mut updates = change.security_updates.unwrap_or(was_on);
        if change.security_updates == Some(true) {
            alerts = true;
        }
        if !alerts {
            updates = false;
        }
        let paused = updates && change.paused.unwrap_or(repo.dependabot.paused);
        repo.dependabot = Dependabot { alerts, paused };
        repo.security.dependabot_security_updates = updates;
        if updates == was_on {
            return Ok(Vec::new());
        }
        repo.updated_at = chrono::Utc::now();
        let Some(repo) = self.repos.get(&id) else {
            return Ok(Vec::new());
        };
        let Some(org) = self.orgs.get(&repo.owner_key) else {
            return Ok(Vec::new());
        };
        let base = self.base_url(None);
        Ok(vec![webhooks::security_and_analysis_event(
            &base, org, repo, previous, actor,
        )])
    }

    /// (alerts, security updates, paused) of a repository.
    fn dependabot(&self, owner: &str, name: &str) -> Result<(bool, bool, bool), SimError> {
        let (_, repo) = self
            .repo(owner, name)
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))?;
        Ok((
            repo.dependabot.alerts,
            repo.security.dependabot_security_updates,
            repo.dependabot.paused,
        ))
    }
}

pub(crate) fn register(router: Router<Simulator>, tag: Tag<'_>) -> Router<Simulator> {
    router
        .route(
            ROUTE_ALERTS,
            tag(
                ROUTE_ALERTS,
                get(check_alerts).put(enable_alerts).delete(disable_alerts),
            ),
        )
        .route(
            ROUTE_FIXES,
            tag(
                ROUTE_FIXES,
                get(check_fixes).put(enable_fixes).delete(disable_fixes),
            ),
        )
}

/// Runs a change from the REST API and answers 204.
fn rest_change(
    sim: &Simulator,
    owner: &str,
    name: &str,
    change: Change,
    docs: &'static str,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let events = st
        .change_dependabot(owner, name, change, Actor::Api)
        .map_err(|e| ApiError::from_sim(e, docs))?;
    sim.emit(&st, events);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn check_alerts(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (alerts, _, _) = sim
        .lock()
        .dependabot(&owner, &name)
        .map_err(|e| ApiError::from_sim(e, DOCS_CHECK_ALERTS))?;
    Ok(if alerts {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    })
}

async fn enable_alerts(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let change = Change {
        alerts: Some(true),
        ..Change::default()
    };
    rest_change(&sim, &owner, &name, change, DOCS_ENABLE_ALERTS)
}

async fn disable_alerts(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let change = Change {
        alerts: Some(false),
        ..Change::default()
    };
    rest_change(&sim, &owner, &name, change, DOCS_DISABLE_ALERTS)
}

async fn check_fixes(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (alerts, updates, paused) = sim
        .lock()
        .dependabot(&owner, &name)
        .map_err(|e| ApiError::from_sim(e, DOCS_CHECK_FIXES))?;
    if !alerts {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "enabled": updates, "paused": paused }),
    ))
}

async fn enable_fixes(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let change = Change {
        security_updates: Some(true),
        ..Change::default()
    };
    rest_change(&sim, &owner, &name, change, DOCS_ENABLE_FIXES)
}

async fn disable_fixes(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let change = Change {
        security_updates: Some(false),
        ..Change::default()
    };
    rest_change(&sim, &owner, &name, change, DOCS_DISABLE_FIXES)
}

impl Simulator {
    fn admin_dependabot(&self, owner: &str, repo: &str, change: Change) -> Result<(), SimError> {
        let mut st = self.lock();
        let events = st.change_dependabot(owner, repo, change, Actor::Admin)?;
        self.emit(&st, events);
        Ok(())
    }

    /// Turns Dependabot alerts on or off, as on the "Code security" settings page. Turning them
    /// off also turns security updates off (with a `security_and_analysis` webhook if they were
    /// on).
    pub fn set_vulnerability_alerts(
        &self,
        owner: &str,
        repo: &str,
        enabled: bool,
    ) -> Result<(), SimError> {
        let change = Change {
            alerts: Some(enabled),
            ..Change::default()
        };
        self.admin_dependabot(owner, repo, change)
    }

    /// Turns Dependabot security updates on (which turns alerts on too) or off, and sets
    /// whether they are paused (only meaningful while on). Sends `security_and_analysis` when
    /// security updates were switched.
    pub fn set_automated_security_fixes(
        &self,
        owner: &str,
        repo: &str,
        enabled: bool,
        paused: bool,
    ) -> Result<(), SimError> {
        let change = Change {
            security_updates: Some(enabled),
            paused: Some(paused),
            ..Change::default()
        };
        self.admin_dependabot(owner, repo, change)
    }

    /// (alerts enabled, security updates enabled, security updates paused); None if the
    /// repository does not exist.
    pub fn dependabot_settings(&self, owner: &str, repo: &str) -> Option<(bool, bool, bool)> {
        self.lock().dependabot(owner, repo).ok()
    }
}

pub(crate) fn admin_routes() -> Router<Simulator> {
    Router::new().route("/repos/{owner}/{repo}/dependabot", put(admin_put))
}

#[derive(Debug, Deserialize)]
struct AdminChange {
    #[serde(default)]
    alerts: Option<bool>,
    #[serde(default)]
    security_updates: Option<bool>,
    #[serde(default)]
    paused: Option<bool>,
}

/// `PUT /_admin/repos/{owner}/{repo}/dependabot` with any of `alerts`, `security_updates`,
/// `paused` (booleans): 200 with the resulting three.
async fn admin_put(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let request: AdminChange = match crate::admin::parse(&body) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    let change = Change {
        alerts: request.alerts,
        security_updates: request.security_updates,
        paused: request.paused,
    };
    if let Err(e) = sim.admin_dependabot(&owner, &name, change) {
        return crate::admin::sim_error(e);
    }
    match sim.dependabot_settings(&owner, &name) {
        Some((alerts, updates, paused)) => crate::admin::ok_json(
            StatusCode::OK,
            &json!({ "alerts": alerts, "security_updates": updates, "paused": paused }),
        ),
        None => crate::admin::error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RepoOptions;
    use serde_json::Value;

    fn settings(st: &SimState) -> (bool, bool, bool) {
        st.dependabot("acme", "api").unwrap()
    }

    #[test]
    fn security_updates_depend_on_alerts() {
        let mut st = SimState::new();
        st.create_repo("acme", "api", &RepoOptions::default(), Actor::Admin);
        let on = Change {
            security_updates: Some(true),
            ..Change::default()
        };
        let events = st.change_dependabot("acme", "api", on, Actor::Api).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].name, "security_and_analysis");
        assert_eq!(settings(&st), (true, true, false));
        assert!(st
            .change_dependabot("acme", "api", on, Actor::Api)
            .unwrap()
            .is_empty());
        let pause = Change {
            paused: Some(true),
            ..Change::default()
        };
        st.change_dependabot("acme", "api", pause, Actor::Admin)
            .unwrap();
        assert_eq!(settings(&st), (true, true, true));
        let alerts_off = Change {
            alerts: Some(false),
            ..Change::default()
        };
        let events = st
            .change_dependabot("acme", "api", alerts_off, Actor::Api)
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(settings(&st), (false, false, false));
        let value: Value = events[0].payload["changes"]["from"]["security_and_analysis"]
            ["dependabot_security_updates"]["status"]
            .clone();
        assert_eq!(value, "enabled");
    }
}
