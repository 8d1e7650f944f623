//! The crate's integration tests, one module per area, built as one test binary (one link
//! and one executable instead of one per file: the suite's disk and link time).

mod artifacts;
mod common;
mod compose;
mod control;
mod dev;
mod e2e;
mod layers;
mod manifests;
mod observability;
mod pull_requests;
mod remediation;
mod scale;
mod secrets_in_logs;
