//! Generated protobuf and gRPC code for Plumbline, and conversions to and from the domain types.

/// The encoded `FileDescriptorSet` of `proto/plumbline.proto`: every service, method and
/// message, for tests that must cover each RPC (and for reflection, should it be served).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/plumbline_descriptor.bin"));

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("plumbline.v1");
}

pub use prost::Message;
pub use prost_types::Timestamp;

use plumbline_domain as domain;

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("record has no entity reference")]
    MissingEntity,
    #[error("unspecified entity kind")]
    UnspecifiedKind,
    #[error("decode: {0}")]
    Decode(#[from] prost::DecodeError),
}

impl From<domain::EntityKind> for v1::EntityKind {
    fn from(k: domain::EntityKind) -> Self {
        match k {
            domain::EntityKind::Repository => v1::EntityKind::Repository,
            domain::EntityKind::PullRequest => v1::EntityKind::PullRequest,
            domain::EntityKind::Release => v1::EntityKind::Release,
            domain::EntityKind::Artifact => v1::EntityKind::Artifact,
        }
    }
}

impl TryFrom<v1::EntityKind> for domain::EntityKind {
    type Error = ProtoError;
    fn try_from(k: v1::EntityKind) -> Result<Self, ProtoError> {
        match k {
            v1::EntityKind::Repository => Ok(domain::EntityKind::Repository),
            v1::EntityKind::PullRequest => Ok(domain::EntityKind::PullRequest),
            v1::EntityKind::Release => Ok(domain::EntityKind::Release),
            v1::EntityKind::Artifact => Ok(domain::EntityKind::Artifact),
            v1::EntityKind::Unspecified => Err(ProtoError::UnspecifiedKind),
        }
    }
}

impl From<&domain::EntityRef> for v1::EntityRef {
    fn from(r: &domain::EntityRef) -> Self {
        v1::EntityRef {
            provider: r.provider.clone(),
            kind: v1::EntityKind::from(r.kind) as i32,
            upstream_id: r.upstream_id.clone(),
        }
    }
}

impl TryFrom<&v1::EntityRef> for domain::EntityRef {
    type Error = ProtoError;
    fn try_from(r: &v1::EntityRef) -> Result<Self, ProtoError> {
        let kind = v1::EntityKind::try_from(r.kind).unwrap_or(v1::EntityKind::Unspecified);
        Ok(domain::EntityRef {
            provider: r.provider.clone(),
            kind: kind.try_into()?,
            upstream_id: r.upstream_id.clone(),
        })
    }
}

impl From<domain::EvalStatus> for v1::EvalStatus {
    fn from(s: domain::EvalStatus) -> Self {
        match s {
            domain::EvalStatus::Pass => v1::EvalStatus::Pass,
            domain::EvalStatus::Fail => v1::EvalStatus::Fail,
            domain::EvalStatus::Skipped => v1::EvalStatus::Skipped,
            domain::EvalStatus::Error => v1::EvalStatus::Error,
        }
    }
}

impl v1::EvalStatus {
    pub fn to_domain(self) -> Option<domain::EvalStatus> {
        match self {
            v1::EvalStatus::Pass => Some(domain::EvalStatus::Pass),
            v1::EvalStatus::Fail => Some(domain::EvalStatus::Fail),
            v1::EvalStatus::Skipped => Some(domain::EvalStatus::Skipped),
            v1::EvalStatus::Error => Some(domain::EvalStatus::Error),
            v1::EvalStatus::Unspecified => None,
        }
    }
}

impl From<domain::Stage> for v1::WaitStage {
    fn from(s: domain::Stage) -> Self {
        match s {
            domain::Stage::Evaluation => v1::WaitStage::Evaluation,
            domain::Stage::Remediation => v1::WaitStage::Remediation,
        }
    }
}

impl v1::WaitStage {
    pub fn to_domain(self) -> Option<domain::Stage> {
        match self {
            v1::WaitStage::Evaluation => Some(domain::Stage::Evaluation),
            v1::WaitStage::Remediation => Some(domain::Stage::Remediation),
            v1::WaitStage::Unspecified => None,
        }
    }
}

impl From<domain::WaitCause> for v1::WaitCause {
    fn from(c: domain::WaitCause) -> Self {
        match c {
            domain::WaitCause::Dependency => v1::WaitCause::Dependency,
            domain::WaitCause::ProviderQuota => v1::WaitCause::ProviderQuota,
            domain::WaitCause::ContentBudget => v1::WaitCause::ContentBudget,
            domain::WaitCause::ActionLease => v1::WaitCause::ActionLease,
        }
    }
}

impl v1::WaitCause {
    pub fn to_domain(self) -> Option<domain::WaitCause> {
        match self {
            v1::WaitCause::Dependency => Some(domain::WaitCause::Dependency),
            v1::WaitCause::ProviderQuota => Some(domain::WaitCause::ProviderQuota),
            v1::WaitCause::ContentBudget => Some(domain::WaitCause::ContentBudget),
            v1::WaitCause::ActionLease => Some(domain::WaitCause::ActionLease),
            v1::WaitCause::Unspecified => None,
        }
    }
}

impl From<domain::Role> for v1::Role {
    fn from(r: domain::Role) -> Self {
        match r {
            domain::Role::Viewer => v1::Role::Viewer,
            domain::Role::Editor => v1::Role::Editor,
            domain::Role::Admin => v1::Role::Admin,
        }
    }
}

impl v1::Role {
    pub fn to_domain(self) -> Option<domain::Role> {
        match self {
            v1::Role::Viewer => Some(domain::Role::Viewer),
            v1::Role::Editor => Some(domain::Role::Editor),
            v1::Role::Admin => Some(domain::Role::Admin),
            v1::Role::Unspecified => None,
        }
    }
}

impl From<domain::EventReason> for v1::EventReason {
    fn from(r: domain::EventReason) -> Self {
        match r {
            domain::EventReason::Webhook => v1::EventReason::Webhook,
            domain::EventReason::Sweep => v1::EventReason::Sweep,
            domain::EventReason::Registered => v1::EventReason::Registered,
            domain::EventReason::ProfileChanged => v1::EventReason::ProfileChanged,
            domain::EventReason::Remediated => v1::EventReason::Remediated,
            domain::EventReason::Manual => v1::EventReason::Manual,
            domain::EventReason::Retired => v1::EventReason::Retired,
        }
    }
}

impl From<domain::ActionStatus> for v1::ActionStatus {
    fn from(s: domain::ActionStatus) -> Self {
        match s {
            domain::ActionStatus::Applied => v1::ActionStatus::Applied,
            domain::ActionStatus::Planned => v1::ActionStatus::Planned,
            domain::ActionStatus::Skipped => v1::ActionStatus::Skipped,
            domain::ActionStatus::Failed => v1::ActionStatus::Failed,
            domain::ActionStatus::Deferred => v1::ActionStatus::Deferred,
        }
    }
}

impl From<domain::ActionKind> for v1::ActionKind {
    fn from(k: domain::ActionKind) -> Self {
        match k {
            domain::ActionKind::Remediation => v1::ActionKind::Remediation,
            domain::ActionKind::Alert => v1::ActionKind::Alert,
        }
    }
}

impl v1::ActionStatus {
    pub fn to_domain(self) -> Option<domain::ActionStatus> {
        match self {
            v1::ActionStatus::Applied => Some(domain::ActionStatus::Applied),
            v1::ActionStatus::Planned => Some(domain::ActionStatus::Planned),
            v1::ActionStatus::Skipped => Some(domain::ActionStatus::Skipped),
            v1::ActionStatus::Failed => Some(domain::ActionStatus::Failed),
            v1::ActionStatus::Deferred => Some(domain::ActionStatus::Deferred),
            v1::ActionStatus::Unspecified => None,
        }
    }
}

/// An action status as sent, as the word people read (`applied`, `failed`, ...); an action
/// not finished yet is sent unspecified and reads `pending`.
pub fn action_status_word(status: i32) -> &'static str {
    v1::ActionStatus::try_from(status)
        .ok()
        .and_then(v1::ActionStatus::to_domain)
        .map_or("pending", domain::ActionStatus::as_str)
}

/// An evaluation status as sent, as a word (`pass`, `fail`, `skipped`, `error`).
pub fn eval_status_word(status: i32) -> &'static str {
    v1::EvalStatus::try_from(status)
        .ok()
        .and_then(v1::EvalStatus::to_domain)
        .map_or("unknown", domain::EvalStatus::as_str)
}

/// A protobuf timestamp for "now".
/// Seconds from `at` until now; 0 for a time in the future (two hosts' clocks).
pub fn seconds_since(at: &Timestamp) -> f64 {
    let then = std::time::UNIX_EPOCH
        + std::time::Duration::new(
            u64::try_from(at.seconds).unwrap_or(0),
            u32::try_from(at.nanos).unwrap_or(0),
        );
    std::time::SystemTime::now()
        .duration_since(then)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

impl v1::EntityEvent {
    /// A new event for `entity` with a fresh event id.
    pub fn new(entity: &domain::EntityRef, reason: domain::EventReason) -> Self {
        v1::EntityEvent {
            entity: Some(entity.into()),
            reason: v1::EventReason::from(reason) as i32,
            emitted_at: Some(now()),
            event_id: uuid_v4(),
            ..Default::default()
        }
    }

    pub fn entity_ref(&self) -> Result<domain::EntityRef, ProtoError> {
        self.entity
            .as_ref()
            .ok_or(ProtoError::MissingEntity)?
            .try_into()
    }
}

fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}
