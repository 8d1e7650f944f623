//! Shared pieces of the benchmark programs (each program is a binary in `src/bin`).

pub mod evaluator_process;
pub mod events;
pub mod fleet;
pub mod http1;
