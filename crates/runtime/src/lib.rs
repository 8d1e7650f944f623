//! What every service binary shares to start: its flags ([`ServiceArgs`], [`KafkaArgs`]), the
//! clients built from them (GitHub, data-source egress, Kafka properties), secrets read from
//! files that may change ([`secrets`]), the shutdown signal and the whole `main`
//! ([`service_main`]).
//!
//! Split from `plumbline-telemetry` so that logging, health and metrics (which the bus uses too)
//! do not carry the GitHub client and the command-line parser.

mod args;
mod consuming;
pub mod credentials;
pub mod quota;
pub mod sealed;
pub mod secrets;

pub use args::{
    ConsumerArgs, ConsumerDefaults, KafkaArgs, KafkaProtocol, KafkaSettingsError, SaslMechanism,
    ServiceArgs, DEFAULT_GITHUB_ETAG_CACHE_MIB,
};
pub use consuming::{Consuming, OpenError};

use tokio_util::sync::CancellationToken;

/// A token cancelled on SIGTERM or Ctrl-C (the first stage of a graceful shutdown); a second
/// signal ends the process at once.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let _ = signal().await;
        // Cancel before logging: if stdout and stderr are gone (a closed pipe), the logger's
        // fallback report panics, and that must not cost us the shutdown.
        t.cancel();
        tracing::info!("shutdown requested");
        // The second stage: a second signal while shutting down ends the process now (what a
        // person pressing Ctrl-C twice, or an orchestrator's second TERM, means).
        // (Destructors do not run: a private Postgres cluster `plumb dev` started is left to
        // its own shutdown. That is what a second signal asks for.)
        let code = signal().await;
        eprintln!("second signal while shutting down: exiting now");
        std::process::exit(code);
    });
    token
}

/// SIGTERM or Ctrl-C, whichever comes first; the exit status a shell gives a process that
/// signal ends (143 or 130).
async fn signal() -> i32 {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => 130,
                    _ = term.recv() => 143,
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
                130
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
        130
    }
}

/// Command-line shell shared by the service binaries: the service's own flags plus logging.
#[derive(clap::Parser)]
struct ServiceCli<C: clap::Args> {
    #[command(flatten)]
    config: C,
    /// Log as JSON lines.
    #[arg(long, env = "PLUMB_LOG_JSON")]
    log_json: bool,
}

/// The whole `main` of a service binary: parse flags (`--help` documents them), start
/// logging, run until SIGTERM or Ctrl-C. Exits non-zero with the error on failure.
pub fn service_main<C, F, Fut, E>(name: &'static str, about: &'static str, run: F)
where
    C: clap::Args + clap::FromArgMatches,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    use clap::{CommandFactory, FromArgMatches};
    let matches = ServiceCli::<C>::command()
        .name(name)
        .about(about)
        .get_matches();
    let cli = match ServiceCli::<C>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    // The OTLP exporter runs on the runtime: set up inside it.
    let tracing = {
        let _inside = runtime.enter();
        plumbline_telemetry::traces::init(&plumbline_telemetry::TracingConfig::new(
            name,
            cli.log_json,
        ))
    };
    let tracing = match tracing {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: tracing: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = shutdown_on_signal();
        run(cli.config, shutdown).await
    });
    // The last spans leave before the process does.
    tracing.shutdown();
    if let Err(e) = result {
        tracing::error!(error = %e, "{name} failed");
        eprintln!("{name}: {e}");
        std::process::exit(1);
    }
}

/// Whether `url` may carry credentials or trust: https, or plain http to a loopback address
/// (local identity providers and tests). Used for OIDC issuers by the control service and the
/// CLI alike.
pub fn https_or_loopback(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let host = uri.host().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") => uri.host().is_some(),
        Some("http") => loopback,
        _ => false,
    }
}
