//! `plumb config`: named contexts (control API URL, project, CA file, token) in a file, as
//! kubectl's are, so switching between installations and projects is one command.
//!
//! The file is `$PLUMB_CONFIG`, else `$XDG_CONFIG_HOME/plumb/config.yaml`, else
//! `~/.config/plumb/config.yaml`. It is written with mode 0600 (its folder 0700) through a
//! temporary file and a rename; a file that holds a token and that others may read is refused
//! rather than used. Flags and environment variables override the current context.

use anyhow::Context as _;
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One installation and project to talk to.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Context {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("control_url", &self.control_url)
            .field("project", &self.project)
            .field("control_ca_file", &self.control_ca_file)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Create or change a context; only the settings given change.
    SetContext {
        name: String,
        #[arg(long = "url")]
        control_url: Option<String>,
        #[arg(long = "project")]
        project: Option<String>,
        #[arg(long = "ca-file")]
        control_ca_file: Option<PathBuf>,
        /// Read the context's token from standard input (never from an argument, which other
        /// users can see in the process list).
        #[arg(long)]
        token_stdin: bool,
    },
    /// Make NAME the current context.
    UseContext { name: String },
    /// The contexts, the current one marked with `*` (tokens are never printed).
    GetContexts,
    /// The current context's name.
    CurrentContext,
    /// Remove a context.
    DeleteContext { name: String },
}

/// Where the configuration lives.
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("PLUMB_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("neither PLUMB_CONFIG nor HOME is set")?)
                .join(".config")
        }
    };
    Ok(base.join("plumb").join("config.yaml"))
}

/// The configuration at `path` (empty when there is none).
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let config: Config =
        serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if config.contexts.values().any(|c| c.token.is_some()) {
        check_private(path)?;
    }
    Ok(config)
}

#[cfg(unix)]
fn check_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)?.permissions().mode();
    anyhow::ensure!(
        mode & 0o077 == 0,
        "{} holds tokens and others may read it (mode {:o}): chmod 600 it",
        path.display(),
        mode & 0o777
    );
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Writes the configuration: folder 0700, file 0600, replaced atomically.
pub fn save(path: &Path, config: &Config) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = serde_yaml_ng::to_string(config)?;
    let tmp = dir.join(format!(".config.yaml.{}", std::process::id()));
    {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
            options.mode(0o600);
            let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
        }
        let mut f = options
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// The current context (or `name`'s), if there is one.
pub fn current(config: &Config, name: Option<&str>) -> anyhow::Result<Option<Context>> {
    match name.or(config.current_context.as_deref()) {
        None => Ok(None),
        Some(n) => config
            .contexts
            .get(n)
            .cloned()
            .map(Some)
            .with_context(|| format!("no context {n:?} in the configuration")),
    }
}

pub fn run(command: ConfigCommand) -> anyhow::Result<()> {
    let path = path()?;
    let mut config = load(&path)?;
    match command {
        ConfigCommand::SetContext {
            name,
            control_url,
            project,
            control_ca_file,
            token_stdin,
        } => {
            let context = config.contexts.entry(name.clone()).or_default();
            if control_url.is_some() {
                context.control_url = control_url;
            }
            if project.is_some() {
                context.project = project;
            }
            if control_ca_file.is_some() {
                context.control_ca_file = control_ca_file;
            }
            if token_stdin {
                let mut token = String::new();
                std::io::stdin().read_line(&mut token)?;
                let token = token.trim().to_string();
                anyhow::ensure!(!token.is_empty(), "no token on standard input");
                context.token = Some(token);
            }
            if config.current_context.is_none() {
                config.current_context = Some(name.clone());
            }
            save(&path, &config)?;
            println!("context {name} set");
        }
        ConfigCommand::UseContext { name } => {
            anyhow::ensure!(
                config.contexts.contains_key(&name),
                "no context {name:?} in {}",
                path.display()
            );
            config.current_context = Some(name.clone());
            save(&path, &config)?;
            println!("current context: {name}");
        }
        ConfigCommand::GetContexts => {
            for (name, c) in &config.contexts {
                let mark = if config.current_context.as_deref() == Some(name) {
                    "*"
                } else {
                    " "
                };
                println!(
                    "{mark} {name}\t{}\t{}\t{}",
                    c.control_url.as_deref().unwrap_or("-"),
                    c.project.as_deref().unwrap_or("-"),
                    if c.token.is_some() {
                        "token"
                    } else {
                        "no token"
                    }
                );
            }
        }
        ConfigCommand::CurrentContext => match &config.current_context {
            Some(n) => println!("{n}"),
            None => anyhow::bail!("no current context"),
        },
        ConfigCommand::DeleteContext { name } => {
            anyhow::ensure!(
                config.contexts.remove(&name).is_some(),
                "no context {name:?}"
            );
            if config.current_context.as_deref() == Some(name.as_str()) {
                config.current_context = None;
            }
            save(&path, &config)?;
            println!("context {name} deleted");
        }
    }
    Ok(())
}
