//! The simulator's mutable state: organizations, repositories, branches and their protection,
//! rate-limit budgets and the request log.
//!
//! Every operation here is synchronous and runs under the single state mutex; operations that
//! change something return the webhook events describing the change, which the caller queues
//! before releasing the lock so webhooks go out in the order the changes happened.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::protection::{self, Parsed, Protection, Settings};
use crate::webhooks::{self, Event};
use crate::{content, git, pulls};
use crate::{LoggedRequest, RepoOptions, SimError, WorkflowPermissions};

/// How many requests the log keeps; older entries are dropped so a long-running demo does not
/// grow without bound. Counters are not affected.
pub(crate) const LOG_CAPACITY: usize = 100_000;

/// Length of a rate-limit window, like GitHub's hourly budget.
const RATE_WINDOW_SECS: i64 = 3600;

/// Default hourly budget per token, GitHub's limit for authenticated requests.
pub(crate) const DEFAULT_RATE_LIMIT: u64 = 5000;

/// Used as base URL for rendered objects when neither a request Host nor a bound address is
/// known (the simulator embedded without `serve`).
const FALLBACK_BASE: &str = "https://api.github.com";

/// Who made a change; decides the webhook `sender`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Actor {
    /// A human in the UI (admin API and admin methods).
    Admin,
    /// A client of the REST API (e.g. Plumbline's actuator).
    Api,
}

/// An organization.
#[derive(Debug, Clone)]
pub(crate) struct Org {
    pub id: u64,
    pub login: String,
}

/// Security and analysis features of a repository (reported by `GET /repos/{owner}/{repo}`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Security {
    pub secret_scanning: bool,
    pub secret_scanning_push_protection: bool,
    pub dependabot_security_updates: bool,
}

/// GitHub Actions settings of a repository (`/actions/permissions/workflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Actions {
    pub default_workflow_permissions: WorkflowPermissions,
    pub can_approve_pull_request_reviews: bool,
}

impl Default for Actions {
    /// GitHub's legacy default for repositories: write access, no PR approvals.
    fn default() -> Self {
        Actions {
            default_workflow_permissions: WorkflowPermissions::Write,
            can_approve_pull_request_reviews: false,
        }
    }
}

/// The editable settings of `PATCH /repos/{owner}/{repo}` the simulator keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepoSettings {
    pub description: Option<String>,
    pub has_issues: bool,
    pub delete_branch_on_merge: bool,
    pub allow_forking: bool,
}

impl Default for RepoSettings {
    fn default() -> Self {
        RepoSettings {
            description: None,
            has_issues: true,
            delete_branch_on_merge: false,
            allow_forking: true,
        }
    }
}

/// A repository.
#[derive(Debug, Clone)]
pub(crate) struct Repo {
    pub id: u64,
    /// Lower-cased owner login, the key into `State::orgs`.
    pub owner_key: String,
    pub name: String,
    pub private: bool,
    pub default_branch: String,
    /// Branches by exact name (git branch names are case-sensitive).
    pub branches: BTreeMap<String, Branch>,
    pub security: Security,
    pub settings: RepoSettings,
    pub actions: Actions,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub pushed_at: DateTime<Utc>,
    /// Number of the next issue or pull request: GitHub numbers both from one sequence.
    pub next_issue_number: u64,
    /// Actions permissions policy (`/actions/permissions`, selected actions, access level).
    pub actions_policy: crate::actions_policy::Policy,
    /// Repository security advisories in creation order.
    pub advisories: Vec<crate::advisories::Advisory>,
    /// Issues by number.
    pub issues: BTreeMap<u64, crate::issues::Issue>,
    /// Repository rulesets in creation order.
    pub rulesets: Vec<crate::rulesets::Ruleset>,
    /// Whether private vulnerability reporting is enabled.
    pub private_vulnerability_reporting: bool,
    /// Collaborators in the order they were added.
    pub collaborators: Vec<crate::collaborators::Collaborator>,
    /// Releases in creation order.
    pub releases: Vec<crate::releases::Release>,
    /// Dependabot alerts and the pause flag of security updates (whether security updates are
    /// on is `security.dependabot_security_updates`).
    pub dependabot: crate::dependabot::Dependabot,
    /// The git objects (blobs, trees, commits) of all branches.
    pub git: git::Store,
    /// Pull requests by number.
    pub pulls: BTreeMap<u64, pulls::Pull>,
    /// Reviews and review comments of the pull requests.
    pub reviews: crate::reviews::Reviews,
    /// Commit statuses in creation order.
    pub statuses: Vec<crate::statuses::Status>,
}

impl Repo {
    pub(crate) fn visibility(&self) -> &'static str {
        if self.private {
            "private"
        } else {
            "public"
        }
    }
}

/// A branch and its protection.
#[derive(Debug, Clone)]
pub(crate) struct Branch {
    pub name: String,
    pub sha: String,
    pub protection: Option<Protection>,
}

/// Request budget of one token within the current window.
#[derive(Debug, Clone, Copy)]
struct Budget {
    used: u64,
    reset: i64,
}

/// What the rate-limit headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateSnapshot {
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    pub reset: i64,
}

/// All mutable simulator state.
pub(crate) struct State {
    /// Organizations by lower-cased login (GitHub logins are case-insensitive).
    pub orgs: BTreeMap<String, Org>,
    /// Repositories by id; ids increase, so iteration is creation order.
    pub repos: BTreeMap<u64, Repo>,
    /// (lower-cased owner, lower-cased name) -> repository id.
    index: HashMap<(String, String), u64>,
    next_org_id: u64,
    next_repo_id: u64,
    next_rule_id: u64,
    pub webhook_url: Option<String>,
    pub webhooks_enabled: bool,
    /// Base URL of the running server, set by `serve`; used where no request Host is at hand.
    pub public_base: Option<String>,
    pub rate_limit: u64,
    budgets: HashMap<String, Budget>,
    pub log: VecDeque<LoggedRequest>,
    pub counts: BTreeMap<String, u64>,
    pub total: u64,
    pub not_modified: u64,
    /// GitHub Apps, installations and minted installation tokens.
    pub apps: crate::apps::Apps,
    /// Quota accounting of the logged requests, reset with the log.
    pub quota: crate::quota::QuotaReport,
    /// Injected faults and the content-creation limit.
    pub faults: crate::faults::Faults,
    /// Next id for objects that live inside repositories (issues, comments, releases, assets,
    /// rulesets); one sequence, like GitHub's ids are unique per object type.
    pub next_object_id: u64,
    /// Container packages of all accounts.
    pub packages: crate::packages::Packages,
    /// Artifact attestations in creation order.
    pub attestations: Vec<crate::attestations::Attestation>,
}

fn key(s: &str) -> String {
    s.to_lowercase()
}

impl State {
    pub(crate) fn new() -> State {
        State {
            orgs: BTreeMap::new(),
            repos: BTreeMap::new(),
            index: HashMap::new(),
            next_org_id: 100,
            next_repo_id: 1000,
            next_rule_id: 1,
            webhook_url: None,
            webhooks_enabled: true,
            public_base: None,
            rate_limit: DEFAULT_RATE_LIMIT,
            budgets: HashMap::new(),
            log: VecDeque::new(),
            counts: BTreeMap::new(),
            total: 0,
            not_modified: 0,
            apps: Default::default(),
            quota: Default::default(),
            faults: Default::default(),
            next_object_id: 5_000_000,
            packages: Default::default(),
            attestations: Vec::new(),
        }
    }

    /// The base URL for rendered objects: the request's own origin if known, else the bound
    /// address, else api.github.com.
    pub(crate) fn base_url(&self, request_base: Option<&str>) -> String {
        request_base
            .map(str::to_owned)
            .or_else(|| self.public_base.clone())
            .unwrap_or_else(|| FALLBACK_BASE.to_owned())
    }

    pub(crate) fn ensure_org(&mut self, login: &str) -> &Org {
        let next_id = &mut self.next_org_id;
        self.orgs.entry(key(login)).or_insert_with(|| {
            let id = *next_id;
            *next_id += 1;
            Org {
                id,
                login: login.to_owned(),
            }
        })
    }

    pub(crate) fn org(&self, login: &str) -> Option<&Org> {
        self.orgs.get(&key(login))
    }

    pub(crate) fn repo(&self, owner: &str, name: &str) -> Option<(&Org, &Repo)> {
        let id = self.index.get(&(key(owner), key(name)))?;
        let repo = self.repos.get(id)?;
        let org = self.orgs.get(&repo.owner_key)?;
        Some((org, repo))
    }

    pub(crate) fn repo_id(&self, owner: &str, name: &str) -> Result<u64, SimError> {
        self.index
            .get(&(key(owner), key(name)))
            .copied()
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))
    }

    /// A repository by owner and name, for changing it; GitHub's 404 when missing.
    pub(crate) fn repo_mut(&mut self, owner: &str, name: &str) -> Result<&mut Repo, SimError> {
        let id = self.repo_id(owner, name)?;
        self.repos
            .get_mut(&id)
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))
    }

    /// Renames a repository within its owner (its id stays); GitHub's 422 when the new name is
    /// taken. Returns the `repository` "renamed" event.
    pub(crate) fn rename_repo(
        &mut self,
        owner: &str,
        name: &str,
        new_name: &str,
        actor: Actor,
    ) -> Result<Vec<Event>, SimError> {
        if self.repo_id(owner, new_name).is_ok() {
            return Err(SimError::Invalid(
                "name already exists on this account".to_owned(),
            ));
        }
        let id = self.repo_id(owner, name)?;
        let repo = self
            .repos
            .get_mut(&id)
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))?;
        repo.name = new_name.to_owned();
        repo.updated_at = Utc::now();
        let owner_key = repo.owner_key.clone();
        self.index.remove(&(owner_key.clone(), key(name)));
        self.index.insert((owner_key, key(new_name)), id);
        Ok(self
            .repository_event(id, "renamed", actor)
            .into_iter()
            .collect())
    }

    /// Deletes a repository: its name answers 404 from now on, and a new repository may take
    /// it. The `repository` "deleted" event is built while the repository still exists.
    pub(crate) fn delete_repo(
        &mut self,
        owner: &str,
        name: &str,
        actor: Actor,
    ) -> Result<Vec<Event>, SimError> {
        let id = self.repo_id(owner, name)?;
        let events = self
            .repository_event(id, "deleted", actor)
            .into_iter()
            .collect();
        if let Some(repo) = self.repos.remove(&id) {
            self.index.remove(&(repo.owner_key, key(&repo.name)));
        }
        Ok(events)
    }

    /// Repositories of an organization in creation order.
    pub(crate) fn org_repos(&self, owner_key: &str) -> Vec<&Repo> {
        self.repos
            .values()
            .filter(|r| r.owner_key == owner_key)
            .collect()
    }

    /// Creates a repository; returns (id, whether it was created, webhook events).
    pub(crate) fn create_repo(
        &mut self,
        owner: &str,
        name: &str,
        opts: &RepoOptions,
        actor: Actor,
    ) -> (u64, bool, Vec<Event>) {
        if let Ok(id) = self.repo_id(owner, name) {
            return (id, false, Vec::new());
        }
        let owner_key = key(owner);
        self.ensure_org(owner);
        let id = self.next_repo_id;
        self.next_repo_id += 1;
        let now = Utc::now();
        let default_branch = if opts.default_branch.is_empty() {
            "main".to_owned()
        } else {
            opts.default_branch.clone()
        };
        let (store, head) = content::initial_commit(&opts.files, now);
        let mut branches = BTreeMap::new();
        branches.insert(
            default_branch.clone(),
            Branch {
                name: default_branch.clone(),
                sha: head,
                protection: None,
            },
        );
        self.repos.insert(
            id,
            Repo {
                id,
                owner_key: owner_key.clone(),
                name: name.to_owned(),
                private: opts.private,
                default_branch: default_branch.clone(),
                branches,
                security: Security::default(),
                settings: RepoSettings::default(),
                actions: Actions::default(),
                created_at: now,
                updated_at: now,
                pushed_at: now,
                next_issue_number: 1,
                actions_policy: Default::default(),
                advisories: Vec::new(),
                issues: BTreeMap::new(),
                rulesets: Vec::new(),
                private_vulnerability_reporting: false,
                collaborators: Vec::new(),
                releases: Vec::new(),
                dependabot: Default::default(),
                git: store,
                pulls: BTreeMap::new(),
                reviews: Default::default(),
                statuses: Vec::new(),
            },
        );
        self.index.insert((owner_key, key(name)), id);
        let mut events = Vec::new();
        if let Some(event) = self.repository_event(id, "created", actor) {
            events.push(event);
        }
        if opts.protected {
            let parsed = Parsed {
                settings: Settings::typical(),
                required_signatures: None,
            };
            match self.put_protection(owner, name, &default_branch, parsed, actor) {
                Ok(more) => events.extend(more),
                Err(error) => tracing::warn!(%error, "failed to protect new repository"),
            }
        }
        (id, true, events)
    }

    /// Creates or replaces the protection of a branch.
    pub(crate) fn put_protection(
        &mut self,
        owner: &str,
        name: &str,
        branch: &str,
        parsed: Parsed,
        actor: Actor,
    ) -> Result<Vec<Event>, SimError> {
        let id = self.repo_id(owner, name)?;
        let rule_id = self.next_rule_id;
        let repo = self
            .repos
            .get_mut(&id)
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))?;
        let target = repo
            .branches
            .get_mut(branch)
            .ok_or_else(|| SimError::NotFound("Branch not found".to_owned()))?;
        let now = Utc::now();
        let (action, old_rule) = match &mut target.protection {
            Some(existing) => {
                let old_rule = protection::rule(existing, id, branch);
                existing.settings = parsed.settings;
                if let Some(signatures) = parsed.required_signatures {
                    existing.required_signatures = signatures;
                }
                existing.updated_at = now;
                ("edited", Some(old_rule))
            }
            None => {
                self.next_rule_id += 1;
                target.protection = Some(Protection {
                    rule_id,
                    created_at: now,
                    updated_at: now,
                    settings: parsed.settings,
                    required_signatures: parsed.required_signatures.unwrap_or(false),
                });
                ("created", None)
            }
        };
        Ok(self
            .rule_event(id, branch, action, old_rule, None, actor)
            .into_iter()
            .collect())
    }

    /// Removes the protection of a branch.
    pub(crate) fn delete_protection(
        &mut self,
        owner: &str,
        name: &str,
        branch: &str,
        actor: Actor,
    ) -> Result<Vec<Event>, SimError> {
        let repo = self.repo_mut(owner, name)?;
        let id = repo.id;
        let target = repo
            .branches
            .get_mut(branch)
            .ok_or_else(|| SimError::NotFound("Branch not found".to_owned()))?;
        let removed = target
            .protection
            .take()
            .ok_or_else(|| SimError::NotFound("Branch not protected".to_owned()))?;
        Ok(self
            .rule_event(id, branch, "deleted", None, Some(removed), actor)
            .into_iter()
            .collect())
    }

    /// The GET shape of a branch's protection, or the GitHub 404 message.
    pub(crate) fn protection_view(
        &self,
        base: &str,
        owner: &str,
        name: &str,
        branch: &str,
    ) -> Result<Value, SimError> {
        let (org, repo) = self
            .repo(owner, name)
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))?;
        let target = repo
            .branches
            .get(branch)
            .ok_or_else(|| SimError::NotFound("Branch not found".to_owned()))?;
        let current = target
            .protection
            .as_ref()
            .ok_or_else(|| SimError::NotFound("Branch not protected".to_owned()))?;
        let url = format!(
            "{base}/repos/{}/{}/branches/{branch}/protection",
            org.login, repo.name
        );
        Ok(protection::render(base, &org.login, &url, current))
    }

    /// Whether events are delivered anywhere (enabled, with a URL to send them to).
    pub(crate) fn delivers_webhooks(&self) -> bool {
        self.webhooks_enabled && self.webhook_url.is_some()
    }

    pub(crate) fn repository_event(
        &self,
        repo_id: u64,
        action: &str,
        actor: Actor,
    ) -> Option<Event> {
        let repo = self.repos.get(&repo_id)?;
        let org = self.orgs.get(&repo.owner_key)?;
        let base = self.base_url(None);
        Some(webhooks::repository_event(&base, org, repo, action, actor))
    }

    /// Builds a `branch_protection_rule` event. For "deleted" the removed protection is passed
    /// in because the branch no longer holds it; for "edited" the previous rule gives `changes`.
    fn rule_event(
        &self,
        repo_id: u64,
        branch: &str,
        action: &str,
        old_rule: Option<Value>,
        removed: Option<Protection>,
        actor: Actor,
    ) -> Option<Event> {
        // Nobody would receive it (`Simulator::emit` drops it): do not build the payload.
        if !self.delivers_webhooks() {
            return None;
        }
        let repo = self.repos.get(&repo_id)?;
        let org = self.orgs.get(&repo.owner_key)?;
        let current = match removed {
            Some(p) => p,
            None => repo.branches.get(branch)?.protection.clone()?,
        };
        let rule = protection::rule(&current, repo_id, branch);
        let changes = old_rule.map(|old| protection::rule_changes(&old, &rule));
        let base = self.base_url(None);
        Some(webhooks::rule_event(
            &base, org, repo, action, rule, changes, actor,
        ))
    }

    /// The budget of `token_key` at `now`, starting a new window when the old one ran out.
    fn budget(&mut self, token_key: &str, now: i64) -> &mut Budget {
        let budget = self.budgets.entry(token_key.to_owned()).or_insert(Budget {
            used: 0,
            reset: now + RATE_WINDOW_SECS,
        });
        if now >= budget.reset {
            *budget = Budget {
                used: 0,
                reset: now + RATE_WINDOW_SECS,
            };
        }
        budget
    }

    /// Current rate-limit figures of a token without spending anything.
    pub(crate) fn rate_snapshot(&mut self, token_key: &str, now: i64) -> RateSnapshot {
        let limit = self.rate_limit;
        let budget = *self.budget(token_key, now);
        RateSnapshot {
            limit,
            used: budget.used,
            remaining: limit.saturating_sub(budget.used),
            reset: budget.reset,
        }
    }

    /// Spends one request of a token's budget and returns the figures afterwards.
    pub(crate) fn rate_consume(&mut self, token_key: &str, now: i64) -> RateSnapshot {
        let budget = self.budget(token_key, now);
        budget.used += 1;
        self.rate_snapshot(token_key, now)
    }

    /// Sets what is left of a token's budget in its current window.
    pub(crate) fn set_remaining(&mut self, token_key: &str, remaining: u64, now: i64) {
        let limit = self.rate_limit;
        self.budget(token_key, now).used = limit.saturating_sub(remaining);
    }

    /// Starts a fresh window for a token now.
    pub(crate) fn reset_window(&mut self, token_key: &str, now: i64) {
        self.budgets.remove(token_key);
        self.budget(token_key, now);
    }

    /// Records an answered REST request.
    pub(crate) fn record(&mut self, entry: LoggedRequest) {
        self.quota.add(&entry);
        *self
            .counts
            .entry(format!("{} {}", entry.method, entry.route))
            .or_insert(0) += 1;
        self.total += 1;
        if entry.status == 304 {
            self.not_modified += 1;
        }
        if self.log.len() >= LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }

    pub(crate) fn reset_requests(&mut self) {
        self.log.clear();
        self.counts.clear();
        self.total = 0;
        self.not_modified = 0;
        self.quota = Default::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_resets_after_window() {
        let mut st = State::new();
        st.rate_limit = 2;
        assert_eq!(st.rate_consume("t", 0).remaining, 1);
        assert_eq!(st.rate_consume("t", 1).remaining, 0);
        assert_eq!(st.rate_snapshot("other", 1).remaining, 2);
        let after = st.rate_snapshot("t", RATE_WINDOW_SECS + 1);
        assert_eq!(after.remaining, 2);
        assert_eq!(after.reset, 2 * RATE_WINDOW_SECS + 1);
    }

    #[test]
    fn repos_are_case_insensitive_and_idempotent() {
        let mut st = State::new();
        let (a, created, events) =
            st.create_repo("Acme", "Api", &RepoOptions::default(), Actor::Admin);
        assert!(created);
        assert_eq!(events.len(), 1);
        let (b, created, _) = st.create_repo("acme", "api", &RepoOptions::default(), Actor::Admin);
        assert_eq!(a, b);
        assert!(!created);
        assert!(st.repo("ACME", "API").is_some());
    }

    #[test]
    fn protected_repo_emits_rule_created() {
        let mut st = State::new();
        st.webhook_url = Some("http://127.0.0.1:1/hook".into());
        let opts = RepoOptions {
            protected: true,
            ..RepoOptions::default()
        };
        let (_, _, events) = st.create_repo("acme", "api", &opts, Actor::Admin);
        let names: Vec<_> = events.iter().map(|e| e.name).collect();
        assert_eq!(names, ["repository", "branch_protection_rule"]);
        assert!(st
            .protection_view("http://x", "acme", "api", "main")
            .is_ok());
    }

    #[test]
    fn rule_events_are_not_built_when_nobody_receives_them() {
        let opts = RepoOptions {
            protected: true,
            ..RepoOptions::default()
        };
        // No webhook URL.
        let mut st = State::new();
        let (_, _, events) = st.create_repo("acme", "api", &opts, Actor::Admin);
        assert!(events.iter().all(|e| e.name != "branch_protection_rule"));
        // Switched off.
        let mut st = State::new();
        st.webhook_url = Some("http://127.0.0.1:1/hook".into());
        st.webhooks_enabled = false;
        let (_, _, events) = st.create_repo("acme", "api", &opts, Actor::Admin);
        assert!(events.iter().all(|e| e.name != "branch_protection_rule"));
        assert!(st
            .delete_protection("acme", "api", "main", Actor::Admin)
            .is_ok_and(|e| e.is_empty()));
    }
}
