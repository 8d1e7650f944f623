//! The crate's integration tests, one module per area, built as one test binary (one link
//! and one executable instead of one per file: the suite's disk and link time).

mod app_auth;
mod conditional;
mod families;
mod rate_limits;
mod security;
