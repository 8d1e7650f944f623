//! Shared pieces of the benchmark programs (each program is a binary in `src/bin`).

pub mod events;
pub mod http1;
