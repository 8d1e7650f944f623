//! End-to-end tests live in `tests/`; this library is empty. See `Cargo.toml` for why the crate
//! exists.
