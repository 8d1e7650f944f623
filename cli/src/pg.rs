//! Finding a Postgres for `plumb dev`: a given URL, a local server, or a private cluster.

use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The local server `plumb dev` tries before starting its own.
pub const LOCAL_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A Postgres cluster `plumb dev` initialised and started; stopped (and removed) on drop.
pub struct PrivateCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_user: Option<String>,
}

impl PrivateCluster {
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `initdb` + `pg_ctl start` in a temporary folder. initdb refuses to run as root, so as
    /// root the cluster is run by the `postgres` system user.
    pub fn start() -> anyhow::Result<PrivateCluster> {
        let bin = find_pg_bin().context(
            "no PostgreSQL installation found: install it (Debian/Ubuntu: apt-get install -y postgresql) or pass --database-url",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("plumb-dev-pg-")
            .tempdir()
            .context("creating a temporary folder")?;
        let as_user = if is_root() {
            Some("postgres".to_string())
        } else {
            None
        };
        let data = dir.path().join("data");
        if let Some(u) = &as_user {
            // The unprivileged user must own the cluster's folder.
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{u}:{u}"))
                .arg(dir.path())
                .status()?;
            if !status.success() {
                bail!("chown of {} to {u} failed", dir.path().display());
            }
        }
        let port = free_port()?;
        let pc = PrivateCluster {
            dir,
            bin,
            port,
            as_user,
        };
        pc.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        )?;
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            pc.dir.path().display()
        );
        let log = pc.dir.path().join("postgres.log");
        pc.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &opts,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "start",
            ],
        )?;
        Ok(pc)
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let exe = self.bin.join(tool);
        let output = match &self.as_user {
            Some(u) => Command::new("runuser")
                .arg("-u")
                .arg(u)
                .arg("--")
                .arg(&exe)
                .args(args)
                .output(),
            None => Command::new(&exe).args(args).output(),
        }
        .with_context(|| format!("running {}", exe.display()))?;
        if !output.status.success() {
            bail!(
                "{tool} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        if let Err(e) = self.run(
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "-m", "fast", "-w", "stop"],
        ) {
            eprintln!("stopping the private postgres failed: {e}");
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The newest `/usr/lib/postgresql/N/bin` with initdb, or initdb on PATH.
fn find_pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths).find(|p| Path::new(p).join("initdb").exists())
        })
    })
}
