use clap::Parser;

#[derive(Parser)]
#[command(name = "plumbline-reconciler", about = "Plumbline reconciler: periodic sweeps of every entity")]
struct Cli {
    #[command(flatten)]
    config: plumbline_reconciler::ReconcilerConfig,
    /// Log as JSON lines.
    #[arg(long, env = "PLUMB_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    plumbline_telemetry::init_logging(cli.log_json);
    let shutdown = plumbline_telemetry::shutdown_on_signal();
    plumbline_reconciler::run(cli.config, shutdown).await?;
    Ok(())
}
