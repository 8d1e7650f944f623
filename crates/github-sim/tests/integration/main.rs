//! The crate's integration tests, one module per area, built as one test binary (one link
//! and one executable instead of one per file: the suite's disk and link time).

mod apps;
mod contract;
mod contract_apps;
mod contract_git;
mod contract_packages;
mod contract_pulls;
mod contract_settings_security;
mod faults;
mod git;
mod helpers;
mod packages;
mod posture;
mod pull_reviews;
mod quota;
mod settings_security;
mod sim;
mod support;
