//! The crate's integration tests, one module per area, built as one test binary (one link
//! and one executable instead of one per file: the suite's disk and link time).

mod bus;
mod tls;
