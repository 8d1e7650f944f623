use clap::Parser;

#[derive(Parser)]
#[command(name = "plumbline-control", about = "Plumbline control plane (gRPC)")]
struct Cli {
    #[command(flatten)]
    config: plumbline_control::ControlConfig,
    /// Log as JSON lines.
    #[arg(long, env = "PLUMB_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    plumbline_telemetry::init_logging(cli.log_json);
    let shutdown = plumbline_telemetry::shutdown_on_signal();
    plumbline_control::run(cli.config, shutdown).await?;
    Ok(())
}
