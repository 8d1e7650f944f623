//! A benchmark's evaluator as a process of its own: the benchmark binary started again with
//! [`ARG`], configured by its parent through the environment, so that its CPU and memory are
//! its own and several can form one consumer group.

use anyhow::Context as _;
use std::process::{Child, Command, Stdio};

/// The first argument that makes a benchmark binary run as its evaluator.
pub const ARG: &str = "--evaluator";

/// Whether this process was started as a benchmark's evaluator.
pub fn is_child() -> bool {
    std::env::args().nth(1).as_deref() == Some(ARG)
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

/// The evaluator's configuration as the parent gave it (`BENCH_BROKERS`, `BENCH_DATABASE_URL`,
/// `BENCH_GITHUB_URL`, `BENCH_PREFIX`); otherwise the defaults.
pub fn config() -> anyhow::Result<plumbline_evaluator::EvaluatorConfig> {
    let mut args = plumbline_runtime::ServiceArgs::local(
        &env("BENCH_BROKERS")?,
        &env("BENCH_DATABASE_URL")?,
        &env("BENCH_GITHUB_URL")?,
    );
    let prefix = env("BENCH_PREFIX")?;
    args.topic_prefix = prefix.clone();
    let mut config = plumbline_evaluator::EvaluatorConfig::new(args);
    config.consumer.group_id = format!("{prefix}plumbline-evaluator");
    Ok(config)
}

/// Runs the evaluator until SIGTERM.
pub async fn run(config: plumbline_evaluator::EvaluatorConfig) -> anyhow::Result<()> {
    let shutdown = plumbline_runtime::shutdown_on_signal();
    plumbline_evaluator::run(config, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The command that starts one, quiet, for the given broker, database, GitHub and topic prefix.
pub fn command(
    brokers: &str,
    database_url: &str,
    github_url: &str,
    prefix: &str,
) -> anyhow::Result<Command> {
    let mut c = Command::new(std::env::current_exe()?);
    c.arg(ARG)
        .env("BENCH_BROKERS", brokers)
        .env("BENCH_DATABASE_URL", database_url)
        .env("BENCH_GITHUB_URL", github_url)
        .env("BENCH_PREFIX", prefix)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Ok(c)
}

/// Started evaluators, stopped (TERM to all, then each waited for) when dropped.
pub struct Evaluators(pub Vec<Child>);

impl Drop for Evaluators {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}
