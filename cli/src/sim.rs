//! `plumb sim`: the GitHub simulator on its own, so the five services can run as separate
//! processes against it on one machine (the production topology, for trying Plumbline out and
//! for fault tests that kill one service at a time).
//!
//! It prints where it listens and the flags each service needs, then serves until stopped.

use anyhow::Context as _;
use plumbline_github_sim::{SimConfig, Simulator};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to serve GitHub's REST API on (the admin API is under /_admin). Loopback by
    /// default: the simulator accepts any token and is no place for real data.
    #[arg(long, env = "PLUMB_SIM_LISTEN", default_value = "127.0.0.1:4010")]
    pub listen: SocketAddr,

    /// Organisation the seeded repositories belong to.
    #[arg(long, default_value = "acme")]
    pub org: String,

    /// Repositories to create at start ("service-001", ...).
    #[arg(long, default_value_t = 0)]
    pub seed_repos: usize,

    /// Fraction of the seeded repositories that start with their default branch protected.
    #[arg(long, default_value_t = 0.5)]
    pub protected_fraction: f64,

    /// Where to deliver webhooks (ingest's `POST /webhooks/github`); none when absent.
    #[arg(long, env = "PLUMB_SIM_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// File holding the webhook secret (one line). Read when it exists; otherwise a random
    /// secret is written to it (mode 0600), for ingest's `--webhook-secrets-file`.
    #[arg(
        long,
        env = "PLUMB_SIM_WEBHOOK_SECRET_FILE",
        default_value = "plumb-sim-webhook-secret"
    )]
    pub webhook_secret_file: PathBuf,
}

/// Reads the secret in `path`, or creates the file with a new random secret.
fn webhook_secret(path: &std::path::Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .unwrap_or_default()
                .to_string();
            anyhow::ensure!(
                secret.len() >= 16,
                "{}: the webhook secret must be at least 16 characters",
                path.display()
            );
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = format!("sim-{}", uuid::Uuid::new_v4().simple());
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            writeln!(file, "{secret}").with_context(|| format!("writing {}", path.display()))?;
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Starts the simulator; returns its address and the text telling operators how to use it.
pub async fn start(
    args: &SimArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, String)> {
    let secret = webhook_secret(&args.webhook_secret_file)?;
    let sim = Simulator::new(SimConfig {
        webhook_url: args.webhook_url.clone(),
        webhook_secret: secret,
        ..SimConfig::default()
    });
    let seeded = sim.seed(
        &args.org,
        args.seed_repos,
        "service",
        args.protected_fraction,
    );
    let addr = sim
        .serve(args.listen, shutdown)
        .await
        .with_context(|| format!("serving the simulator on {}", args.listen))?;
    let url = format!("http://{addr}");
    let secret_file = std::fs::canonicalize(&args.webhook_secret_file)
        .unwrap_or(args.webhook_secret_file.clone());
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(out, "GitHub simulator on {url} (admin API: {url}/_admin)");
    let _ = writeln!(out, "seeded {} repositories in {}", seeded.len(), args.org);
    let _ = match &args.webhook_url {
        Some(target) => writeln!(
            out,
            "webhooks: POST {target}, signed with the secret in {}",
            secret_file.display()
        ),
        None => writeln!(
            out,
            "webhooks: not delivered (give --webhook-url http://127.0.0.1:8080/webhooks/github)"
        ),
    };
    let _ = writeln!(out, "run the services against it with:");
    let _ = writeln!(
        out,
        "  every service:  PLUMB_GITHUB_API_URL={url}  (any token is accepted)"
    );
    let _ = writeln!(
        out,
        "  ingest:         PLUMB_WEBHOOK_SECRETS_FILE={}",
        secret_file.display()
    );
    Ok((addr, out))
}

/// Serves the simulator until `shutdown`, after printing how to use it.
pub async fn run(args: SimArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (_, banner) = start(&args, shutdown.clone()).await?;
    let mut stdout = std::io::stdout();
    stdout.write_all(banner.as_bytes())?;
    stdout.flush()?;
    shutdown.cancelled().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: test\r\nConnection: close\r\n\r\n").as_bytes()).await.expect("send");
        let mut body = String::new();
        conn.read_to_string(&mut body).await.expect("read");
        body
    }

    #[tokio::test]
    async fn serves_seeded_repositories_and_says_what_the_services_need() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret_file = dir.path().join("secret");
        let args = SimArgs {
            listen: "127.0.0.1:0".parse().expect("addr"),
            org: "acme".into(),
            seed_repos: 3,
            protected_fraction: 0.5,
            webhook_url: None,
            webhook_secret_file: secret_file.clone(),
        };
        let shutdown = CancellationToken::new();
        let (addr, banner) = start(&args, shutdown.clone()).await.expect("starts");
        assert!(
            banner.contains(&format!("GitHub simulator on http://{addr}")),
            "{banner}"
        );
        assert!(banner.contains("seeded 3 repositories in acme"), "{banner}");
        assert!(banner.contains("PLUMB_WEBHOOK_SECRETS_FILE="), "{banner}");
        let repos = get(addr, "/orgs/acme/repos").await;
        assert!(repos.starts_with("HTTP/1.1 200"), "{repos}");
        for name in ["service-001", "service-002", "service-003"] {
            assert!(repos.contains(name), "{name} served: {repos}");
        }
        let secret = std::fs::read_to_string(&secret_file).expect("secret");
        assert!(secret.trim().len() >= 16);
        assert!(
            !banner.contains(secret.trim()),
            "the secret itself is never printed"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&secret_file)
                    .expect("meta")
                    .permissions()
                    .mode()
                    & 0o777,
                0o600
            );
        }
        // Started again, it keeps the secret it wrote.
        shutdown.cancel();
        assert_eq!(webhook_secret(&secret_file).expect("reread"), secret.trim());
        // A short secret in an existing file is refused.
        std::fs::write(dir.path().join("short"), "abc\n").expect("write");
        assert!(webhook_secret(&dir.path().join("short")).is_err());
    }
}
