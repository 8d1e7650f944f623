//! Plumbline's vocabulary: entity identities, evaluation outcomes, remediation modes.
//!
//! This crate has no I/O on purpose: every other crate agrees on these types, so they must be
//! cheap to depend on and impossible to misuse across a service boundary.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The project every entity belongs to until multi-project support lands in the control API.
pub const DEFAULT_PROJECT: &str = "default";

/// The kinds of entity a rule can be written for (Minder's `def.in_entity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Repository,
    PullRequest,
    Release,
    Artifact,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Repository => "repository",
            EntityKind::PullRequest => "pull_request",
            EntityKind::Release => "release",
            EntityKind::Artifact => "artifact",
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DomainError {
    #[error("unknown entity kind {0:?}")]
    UnknownKind(String),
    #[error("malformed entity id {0:?}: want provider/kind/upstream-id")]
    MalformedEntityId(String),
    #[error("unknown evaluation status {0:?}")]
    UnknownStatus(String),
    #[error("unknown action mode {0:?}: want on, off or dry_run")]
    UnknownMode(String),
    #[error("unknown action kind {0:?}: want remediation or alert")]
    UnknownActionKind(String),
    #[error("unknown action operation {0:?}: want apply, open or close")]
    UnknownOperation(String),
    #[error("unknown role {0:?}: want admin, editor or viewer")]
    UnknownRole(String),
    #[error("malformed principal {0:?}: want user:SUBJECT or serviceaccount:NAME")]
    MalformedPrincipal(String),
    #[error("malformed project name {0:?}: 1-63 lowercase letters, digits and '-', starting with a letter")]
    MalformedProject(String),
    #[error(
        "malformed GitHub account name {0:?}: letters, digits, '-' and '_', not starting with either"
    )]
    MalformedOwner(String),
    #[error(
        "malformed repository name {0:?}: 1-100 letters, digits, '.', '-' and '_' (not . or ..)"
    )]
    MalformedRepositoryName(String),
    #[error("unknown wait cause {0:?}")]
    UnknownWaitCause(String),
    #[error("unknown stage {0:?}: want evaluation or remediation")]
    UnknownStage(String),
}

/// `error` and each of its sources, as one line (`outer: inner: innermost`): what a log or a
/// verdict's message carries, since an error's own text rarely says the cause.
pub fn describe_error(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

/// A project's name: what every rule type, profile, entity, status and action belongs to.
/// DNS-label shaped, so it is safe in URLs, metric labels and file names.
pub fn check_project_name(name: &str) -> Result<(), DomainError> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        // Quoted back at the caller, so cut: a name can be megabytes long.
        Err(DomainError::MalformedProject(
            name.chars().take(80).collect(),
        ))
    }
}

/// What a member may do in a project. Each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read only: rule types, profiles, repositories, statuses, history, actions.
    Viewer,
    /// Also rule types, data sources, profiles, repositories and reconciling.
    Editor,
    /// Everything in the project, roles and the audit log included.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            other => Err(DomainError::UnknownRole(other.to_string())),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who calls the control API: an OIDC user (the token's `sub`) or a service account (its
/// name). Written `user:SUBJECT` / `serviceaccount:NAME`, so the two never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    User(String),
    ServiceAccount(String),
}

impl Principal {
    pub fn name(&self) -> &str {
        match self {
            Principal::User(s) | Principal::ServiceAccount(s) => s,
        }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::User(s) => write!(f, "user:{s}"),
            Principal::ServiceAccount(s) => write!(f, "serviceaccount:{s}"),
        }
    }
}

impl FromStr for Principal {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || DomainError::MalformedPrincipal(s.chars().take(80).collect());
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(bad());
        }
        match kind {
            "user" => Ok(Principal::User(name.to_string())),
            "serviceaccount" => Ok(Principal::ServiceAccount(name.to_string())),
            _ => Err(bad()),
        }
    }
}

impl FromStr for EntityKind {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "repository" => Ok(EntityKind::Repository),
            "pull_request" => Ok(EntityKind::PullRequest),
            "release" => Ok(EntityKind::Release),
            "artifact" => Ok(EntityKind::Artifact),
            other => Err(DomainError::UnknownKind(other.to_string())),
        }
    }
}

/// A stable identity for an entity: which provider, which kind, and the provider's own id.
///
/// The id is derived from the provider's immutable id (GitHub's numeric repository id), not from
/// the name, so a rename does not create a second entity, and ingest can key Kafka records by it
/// without a database lookup. Its string form `provider/kind/upstream_id` is the Kafka key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    pub provider: String,
    pub kind: EntityKind,
    pub upstream_id: String,
}

impl EntityRef {
    pub fn repository(provider: impl Into<String>, repo_id: u64) -> Self {
        EntityRef {
            provider: provider.into(),
            kind: EntityKind::Repository,
            upstream_id: repo_id.to_string(),
        }
    }

    /// The canonical string id, used as the Kafka key and the primary key in Postgres.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.provider, self.kind, self.upstream_id)
    }

    pub fn parse(id: &str) -> Result<Self, DomainError> {
        let mut parts = id.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(p), Some(k), Some(u)) if !p.is_empty() && !u.is_empty() => Ok(EntityRef {
                provider: p.to_string(),
                kind: k.parse()?,
                upstream_id: u.to_string(),
            }),
            _ => Err(DomainError::MalformedEntityId(id.to_string())),
        }
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.provider, self.kind, self.upstream_id)
    }
}

/// A registered entity as the evaluator sees it: identity plus what templates and selectors read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub entity_ref: EntityRef,
    pub project: String,
    /// Owner (organisation or user login) for repositories.
    pub owner: String,
    pub name: String,
    /// Kind-specific properties (default branch, visibility, ...), as observed at registration.
    pub properties: serde_json::Value,
    pub labels: Vec<String>,
    /// Which of its project's providers it is acted on with (`None`: the services' own
    /// credential, which only the operator's project may use).
    pub credential: Option<String>,
}

impl Entity {
    pub fn id(&self) -> String {
        self.entity_ref.id()
    }

    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    pub fn default_branch(&self) -> Option<&str> {
        self.properties
            .get("default_branch")
            .and_then(|v| v.as_str())
    }
}

/// The outcome of evaluating one rule against one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalStatus {
    Pass,
    Fail,
    Skipped,
    Error,
}

impl EvalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EvalStatus::Pass => "pass",
            EvalStatus::Fail => "fail",
            EvalStatus::Skipped => "skipped",
            EvalStatus::Error => "error",
        }
    }
}

impl fmt::Display for EvalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EvalStatus {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pass" => Ok(EvalStatus::Pass),
            "fail" => Ok(EvalStatus::Fail),
            "skipped" | "skip" => Ok(EvalStatus::Skipped),
            "error" => Ok(EvalStatus::Error),
            other => Err(DomainError::UnknownStatus(other.to_string())),
        }
    }
}

/// A GitHub account (user or organisation) name as GitHub allows it: letters, digits and '-',
/// and '_' for the accounts of Enterprise Managed Users (`login_shortcode`, longer than the
/// 39 characters of other logins). Names go into request paths, so anything else (a '/', '?',
/// "..") is refused before it can steer a request made with a credential to another resource.
pub fn check_owner_name(name: &str) -> Result<(), DomainError> {
    let ok = (1..=50).contains(&name.len())
        && !name.starts_with('-')
        && !name.starts_with('_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(DomainError::MalformedOwner(name.to_string()))
    }
}

/// A repository name as GitHub allows it (see [`check_owner_name`] for why it is checked).
pub fn check_repository_name(name: &str) -> Result<(), DomainError> {
    let ok = (1..=100).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(DomainError::MalformedRepositoryName(name.to_string()))
    }
}

/// `owner/name` of a repository, both as GitHub allows them (see [`check_owner_name`]).
pub fn check_repository_full_name(owner: &str, name: &str) -> Result<(), DomainError> {
    check_owner_name(owner).and_then(|()| check_repository_name(name))
}

/// Why work on an entity waits instead of running: what `plumb status` says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitCause {
    /// A dependency is down or overloaded (Postgres, the broker, GitHub answering 5xx).
    #[default]
    Dependency,
    /// The credential's GitHub quota is spent (primary or secondary rate limit) until a time
    /// GitHub named.
    ProviderQuota,
    /// GitHub's content-creation limit, kept on our side, is spent until the window refills.
    ContentBudget,
    /// Another actuator replica holds the action's lease.
    ActionLease,
}

impl WaitCause {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitCause::Dependency => "dependency",
            WaitCause::ProviderQuota => "provider_quota",
            WaitCause::ContentBudget => "content_budget",
            WaitCause::ActionLease => "action_lease",
        }
    }

    /// What waiting on a provider is: a limit when it named a time to come back (a spent
    /// quota, a secondary limit), a dependency down otherwise.
    pub fn of_provider(names_a_time: bool) -> WaitCause {
        if names_a_time {
            WaitCause::ProviderQuota
        } else {
            WaitCause::Dependency
        }
    }

    /// What a person reads in `plumb status`.
    pub fn describe(self) -> &'static str {
        match self {
            WaitCause::Dependency => "a dependency is unavailable",
            WaitCause::ProviderQuota => "the GitHub quota of its credential is spent",
            WaitCause::ContentBudget => "the content-creation budget is spent",
            WaitCause::ActionLease => "another actuator replica holds the action",
        }
    }
}

impl fmt::Display for WaitCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WaitCause {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dependency" => Ok(WaitCause::Dependency),
            "provider_quota" => Ok(WaitCause::ProviderQuota),
            "content_budget" => Ok(WaitCause::ContentBudget),
            "action_lease" => Ok(WaitCause::ActionLease),
            other => Err(DomainError::UnknownWaitCause(other.to_string())),
        }
    }
}

/// The pipeline stage an entity's work waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Its rules are evaluated (the evaluator).
    Evaluation,
    /// Its failing rules are fixed or alerted on (the actuator).
    Remediation,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Evaluation => "evaluation",
            Stage::Remediation => "remediation",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "evaluation" => Ok(Stage::Evaluation),
            "remediation" => Ok(Stage::Remediation),
            other => Err(DomainError::UnknownStage(other.to_string())),
        }
    }
}

/// A profile's remediation or alert switch (Minder: `on`, `off`, `dry_run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionMode {
    On,
    #[default]
    Off,
    DryRun,
}

impl ActionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionMode::On => "on",
            ActionMode::Off => "off",
            ActionMode::DryRun => "dry_run",
        }
    }
}

impl FromStr for ActionMode {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(ActionMode::On),
            "off" | "" => Ok(ActionMode::Off),
            "dry_run" | "dry-run" => Ok(ActionMode::DryRun),
            other => Err(DomainError::UnknownMode(other.to_string())),
        }
    }
}

/// Why an entity event was emitted. The evaluator treats them all alike (level-triggered); the
/// reason is kept for observability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventReason {
    Webhook,
    Sweep,
    Registered,
    ProfileChanged,
    Remediated,
    Manual,
    Retired,
}

/// The outcome of an actuator action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    Applied,
    Planned,
    Skipped,
    Failed,
    /// Not tried now: the same fix was applied before and the rule failed again without
    /// passing in between, so it is retried only after a growing back-off.
    Deferred,
}

impl ActionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Applied => "applied",
            ActionStatus::Planned => "planned",
            ActionStatus::Skipped => "skipped",
            ActionStatus::Failed => "failed",
            ActionStatus::Deferred => "deferred",
        }
    }
}

impl FromStr for ActionStatus {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            ActionStatus::Applied,
            ActionStatus::Planned,
            ActionStatus::Skipped,
            ActionStatus::Failed,
            ActionStatus::Deferred,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or_else(|| DomainError::UnknownStatus(s.to_string()))
    }
}

/// What an action is: a remediation (a fix applied to the provider) or an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Remediation,
    Alert,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Remediation => "remediation",
            ActionKind::Alert => "alert",
        }
    }
}

impl FromStr for ActionKind {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "remediation" => Ok(ActionKind::Remediation),
            "alert" => Ok(ActionKind::Alert),
            other => Err(DomainError::UnknownActionKind(other.to_string())),
        }
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an action does: apply a remediation, open or close an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionOperation {
    Apply,
    Open,
    Close,
}

impl ActionOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionOperation::Apply => "apply",
            ActionOperation::Open => "open",
            ActionOperation::Close => "close",
        }
    }
}

impl FromStr for ActionOperation {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "apply" => Ok(ActionOperation::Apply),
            "open" => Ok(ActionOperation::Open),
            "close" => Ok(ActionOperation::Close),
            other => Err(DomainError::UnknownOperation(other.to_string())),
        }
    }
}

impl std::fmt::Display for ActionOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request the actuator sent to the provider (or, in dry run, would have sent), values
/// resolved: what operators read back in an action's record and outcome.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PlannedRequest {
    pub method: String,
    pub url: String,
    pub body: String,
}

impl PlannedRequest {
    pub fn new(method: impl Into<String>, url: impl Into<String>, body: impl Into<String>) -> Self {
        PlannedRequest {
            method: method.into(),
            url: url.into(),
            body: body.into(),
        }
    }
}

#[cfg(test)]
mod describe_tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn errors_are_described_with_their_sources() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(super::describe_error(&e), "outer: inner");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_principals_and_project_names_parse_strictly() {
        for r in [Role::Viewer, Role::Editor, Role::Admin] {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!(Role::Viewer < Role::Editor && Role::Editor < Role::Admin);
        assert!("owner".parse::<Role>().is_err());
        for p in ["user:alice@example.com", "serviceaccount:ci"] {
            assert_eq!(
                p.parse::<Principal>().map(|p| p.to_string()),
                Ok(p.to_string())
            );
        }
        for bad in ["alice", "user:", "group:x", "user:a\nb", ":x"] {
            assert!(bad.parse::<Principal>().is_err(), "{bad}");
        }
        for ok in ["default", "team-a", "a1"] {
            assert_eq!(check_project_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Team",
            "1team",
            "team-",
            "team_a",
            "a/b",
            &"a".repeat(64),
        ] {
            assert!(check_project_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn owner_and_repository_names_are_githubs_and_nothing_that_steers_a_path() {
        for ok in ["acme", "a", "Acme-Corp", "a1-b2", "octocat_acme"] {
            assert_eq!(check_owner_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-acme",
            "_acme",
            "ac/me",
            "acme?x",
            "..",
            "a b",
            "ä",
            &"a".repeat(51),
        ] {
            assert!(check_owner_name(bad).is_err(), "{bad}");
        }
        for ok in ["repo", "my.repo", "a_b-c", ".github", "..x"] {
            assert_eq!(check_repository_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a?b",
            "a#b",
            "a%2F",
            "a b",
            &"r".repeat(101),
        ] {
            assert!(check_repository_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wait_causes_and_stages_round_trip_and_refuse_the_unknown() {
        for c in [
            WaitCause::Dependency,
            WaitCause::ProviderQuota,
            WaitCause::ContentBudget,
            WaitCause::ActionLease,
        ] {
            assert_eq!(c.as_str().parse::<WaitCause>(), Ok(c));
            assert!(!c.describe().is_empty());
        }
        for s in [Stage::Evaluation, Stage::Remediation] {
            assert_eq!(s.as_str().parse::<Stage>(), Ok(s));
        }
        assert!("quota".parse::<WaitCause>().is_err());
        assert!("actuation".parse::<Stage>().is_err());
    }

    #[test]
    fn entity_id_round_trips() {
        let r = EntityRef::repository("github", 42);
        assert_eq!(r.id(), "github/repository/42");
        assert_eq!(EntityRef::parse(&r.id()), Ok(r));
    }

    #[test]
    fn malformed_entity_ids_are_rejected() {
        for bad in [
            "",
            "github",
            "github/repository",
            "github/widget/1",
            "/repository/1",
        ] {
            assert!(EntityRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_and_statuses_parse() {
        assert_eq!("dry_run".parse::<ActionMode>(), Ok(ActionMode::DryRun));
        assert_eq!("on".parse::<ActionMode>(), Ok(ActionMode::On));
        assert!("maybe".parse::<ActionMode>().is_err());
        assert_eq!("skip".parse::<EvalStatus>(), Ok(EvalStatus::Skipped));
        assert_eq!("applied".parse::<ActionStatus>(), Ok(ActionStatus::Applied));
        assert!("pending".parse::<ActionStatus>().is_err());
    }
}
