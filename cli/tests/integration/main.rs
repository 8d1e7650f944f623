//! The crate's integration tests, one module per area, built as one test binary (one link
//! and one executable instead of one per file: the suite's disk and link time).

mod access_cli;
mod config_cli;
mod login_cli;
mod resources_cli;
mod ruletype_test;
