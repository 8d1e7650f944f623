use clap::Parser;

#[derive(Parser)]
#[command(name = "plumbline-evaluator", about = "Plumbline evaluator: entity events to verdicts")]
struct Cli {
    #[command(flatten)]
    config: plumbline_evaluator::EvaluatorConfig,
    /// Log as JSON lines.
    #[arg(long, env = "PLUMB_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    plumbline_telemetry::init_logging(cli.log_json);
    let shutdown = plumbline_telemetry::shutdown_on_signal();
    plumbline_evaluator::run(cli.config, shutdown).await?;
    Ok(())
}
