//! The simulator's integration tests, one binary: the API contract, and the engine's
//! vulnerability check run against the simulator over HTTP.

mod contract;
mod osv_vulnerabilities;
mod support;
mod vulncheck;
