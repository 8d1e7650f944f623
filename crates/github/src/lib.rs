//! Plumbline's GitHub provider: the only crate that links octocrab.
//!
//! Everything Plumbline asks of GitHub goes through [`GitHub::request`], so that rate limits,
//! timeouts and (later) the conditional-request cache are handled in one place. Typed helpers
//! sit on top for the calls services make themselves (repository lookup, listing).

pub mod cache;
mod client;
pub mod egress;
pub mod limits;
mod ops;
pub mod packages;
pub mod reads;
pub mod route;
pub mod webhook;

pub use cache::CacheStats;
pub use client::{ApiResponse, AppCredentials, GitHub, GitHubConfig, NameCheck, Quota, Repository};
pub use http::Method;
pub use ops::{
    Advisory, FileChange, GitRef, Installation, Issue, Label, NewAdvisory, PullRequest,
    SideRepository, User,
};
pub use packages::{Package, PackageOwner, PackageVersion};
pub use reads::{Reads, Validator};

/// Provider errors, typed so callers can tell "try later" from "give up".
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("github client configuration: {0}")]
    Config(String),
    /// Network failure, timeout, or 5xx: retryable.
    #[error("github unavailable: {0}")]
    Transient(String),
    /// Primary or secondary rate limit; work needing this credential should pause until then.
    #[error("github rate limited until {until_epoch_secs} (epoch seconds)")]
    RateLimited { until_epoch_secs: u64 },
    /// A final HTTP error (4xx other than rate limits).
    #[error("github answered {status} for {method} {path}: {message}")]
    Status {
        status: u16,
        method: String,
        path: String,
        message: String,
    },
    #[error("github response for {path} could not be decoded: {reason}")]
    Decode { path: String, reason: String },
}

impl GitHubError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            GitHubError::Transient(_) | GitHubError::RateLimited { .. }
        )
    }
}
