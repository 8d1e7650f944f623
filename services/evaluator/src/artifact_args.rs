//! Where artifact rules read container images' signatures, and which Sigstore roots those
//! signatures may chain to.
//!
//! Fail closed: a registry that cannot be configured stops the evaluator at start-up, plain
//! HTTP is refused for anything but a loopback address, and a rule's `sigstore` param can only
//! name a root configured here (a root a rule author could bring would make anything verify).

use plumbline_github_provider::Artifacts;
use plumbline_sigstore::{Registry, RegistryAuth, RegistryOptions, TrustRoot, TufSource, TufState};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The name Minder's rule types give Sigstore's public-good instance (their `sigstore` param's
/// default).
pub const PUBLIC_GOOD_ROOT: &str = plumbline_engine::artifact::PUBLIC_GOOD;

/// Artifact rules' registry and trust roots.
#[derive(clap::Args, Debug, Clone)]
pub struct ArtifactArgs {
    /// The container registry the provider's packages are published to (host or host:port).
    /// Signatures are read from it: cosign's `sha256-<digest>.sig` tag and OCI referrers.
    #[arg(long, env = "PLUMB_ARTIFACT_REGISTRY", default_value = "ghcr.io")]
    pub artifact_registry: String,

    /// Speak plain HTTP to the registry. Refused unless the registry is a loopback address
    /// (a test registry); anything else is read over HTTPS.
    #[arg(
        long,
        env = "PLUMB_ARTIFACT_REGISTRY_PLAIN_HTTP",
        default_value_t = false
    )]
    pub artifact_registry_plain_http: bool,

    /// User name for the registry (with `--artifact-registry-password-file`). GitHub App
    /// installation tokens cannot read GitHub Packages, so private images on ghcr.io need a
    /// token with `read:packages` here. Sent to the configured host only. Empty: anonymous.
    #[arg(long, env = "PLUMB_ARTIFACT_REGISTRY_USERNAME", default_value = "")]
    pub artifact_registry_username: String,

    /// File holding the registry password or token (read at start).
    #[arg(long, env = "PLUMB_ARTIFACT_REGISTRY_PASSWORD_FILE")]
    pub artifact_registry_password_file: Option<PathBuf>,

    /// Time limit of each registry request, in seconds.
    #[arg(
        long,
        env = "PLUMB_ARTIFACT_REGISTRY_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub artifact_registry_timeout_secs: u64,

    /// A private Sigstore trust root, as `NAME=PATH` of a `trusted_root.json` (Sigstore's
    /// TrustedRoot format); rules choose it with `params.sigstore: NAME`. Repeatable.
    #[arg(
        long = "sigstore-trusted-root",
        env = "PLUMB_SIGSTORE_TRUSTED_ROOTS",
        value_delimiter = ','
    )]
    pub sigstore_trusted_roots: Vec<String>,

    /// Leave out Sigstore's public-good root (shipped in the binary, named
    /// `tuf-repo-cdn.sigstore.dev`), so only private roots are trusted.
    #[arg(long, env = "PLUMB_SIGSTORE_NO_PUBLIC_GOOD", default_value_t = false)]
    pub sigstore_no_public_good: bool,

    /// Refresh the public-good root from Sigstore's TUF repository
    /// (https://tuf-repo-cdn.sigstore.dev, trusted from the TUF root shipped in the binary) at
    /// start and every `--sigstore-tuf-refresh-hours`; until a refresh succeeds, and whenever
    /// one fails, the shipped (or last refreshed) root stays in use. Off by default: an
    /// evaluator without internet access would only log failures.
    #[arg(
        long,
        env = "PLUMB_SIGSTORE_REFRESH_PUBLIC_GOOD",
        default_value_t = false
    )]
    pub sigstore_refresh_public_good: bool,

    /// A private Sigstore root kept current from a TUF repository, as `NAME=URL` (the
    /// repository's metadata base URL; targets under `URL/targets`). Each needs its pinned TUF
    /// root in `--sigstore-tuf-root NAME=PATH`. The name is usable by rules once the first
    /// refresh succeeded. Repeatable.
    #[arg(
        long = "sigstore-tuf",
        env = "PLUMB_SIGSTORE_TUF",
        value_delimiter = ','
    )]
    pub sigstore_tuf: Vec<String>,

    /// The pinned TUF `root.json` of a `--sigstore-tuf` repository, as `NAME=PATH`. Repeatable.
    #[arg(
        long = "sigstore-tuf-root",
        env = "PLUMB_SIGSTORE_TUF_ROOTS",
        value_delimiter = ','
    )]
    pub sigstore_tuf_roots: Vec<String>,

    /// How often TUF-backed roots are refreshed, in hours.
    #[arg(long, env = "PLUMB_SIGSTORE_TUF_REFRESH_HOURS", default_value_t = 24)]
    pub sigstore_tuf_refresh_hours: u64,
}

impl Default for ArtifactArgs {
    fn default() -> Self {
        ArtifactArgs {
            artifact_registry: "ghcr.io".into(),
            artifact_registry_plain_http: false,
            artifact_registry_username: String::new(),
            artifact_registry_password_file: None,
            artifact_registry_timeout_secs: 30,
            sigstore_trusted_roots: Vec::new(),
            sigstore_no_public_good: false,
            sigstore_refresh_public_good: false,
            sigstore_tuf: Vec::new(),
            sigstore_tuf_roots: Vec::new(),
            sigstore_tuf_refresh_hours: 24,
        }
    }
}

/// Why the artifact settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactArgsError {
    #[error("--artifact-registry-plain-http is allowed for a loopback registry only, not {0:?}")]
    PlainHttp(String),
    #[error("--artifact-registry-username and --artifact-registry-password-file go together")]
    HalfCredential,
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--sigstore-trusted-root {0:?}: want NAME=PATH")]
    RootSyntax(String),
    #[error("--sigstore-trusted-root: the name {0:?} is given twice")]
    RootTwice(String),
    #[error("Sigstore trust root {name:?}")]
    Root {
        name: String,
        #[source]
        source: plumbline_sigstore::Error,
    },
    #[error("container registry")]
    Registry(#[source] plumbline_sigstore::Error),
    #[error("--sigstore-tuf {0:?}: want NAME=URL, with --sigstore-tuf-root NAME=PATH")]
    TufSyntax(String),
    #[error("--sigstore-tuf {0:?}: no --sigstore-tuf-root names its pinned TUF root")]
    TufUnpinned(String),
    #[error("--sigstore-tuf-root {0:?}: no --sigstore-tuf names that repository")]
    TufUnused(String),
    #[error(
        "--sigstore-refresh-public-good needs the public-good root (not --sigstore-no-public-good)"
    )]
    RefreshWithoutPublicGood,
}

/// `NAME=VALUE` pairs of a repeatable flag, names unique.
fn pairs(specs: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for spec in specs.iter().filter(|s| !s.trim().is_empty()) {
        let (name, value) = spec
            .split_once('=')
            .map(|(n, v)| (n.trim(), v.trim()))
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .ok_or_else(|| spec.clone())?;
        if out.iter().any(|(n, _)| n == name) {
            return Err(spec.clone());
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

impl ArtifactArgs {
    /// The TUF repositories roots are refreshed from, by root name, checked (the pinned roots
    /// are read now; whether they are TUF roots is checked at each refresh).
    pub fn tuf_sources(&self) -> Result<Vec<(String, TufSource)>, ArtifactArgsError> {
        let mut sources = Vec::new();
        if self.sigstore_refresh_public_good {
            if self.sigstore_no_public_good {
                return Err(ArtifactArgsError::RefreshWithoutPublicGood);
            }
            sources.push((PUBLIC_GOOD_ROOT.to_string(), TufSource::public_good()));
        }
        let repos = pairs(&self.sigstore_tuf).map_err(ArtifactArgsError::TufSyntax)?;
        let pinned = pairs(&self.sigstore_tuf_roots).map_err(ArtifactArgsError::RootSyntax)?;
        if let Some((name, _)) = pinned
            .iter()
            .find(|(n, _)| !repos.iter().any(|(r, _)| r == n))
        {
            return Err(ArtifactArgsError::TufUnused(name.clone()));
        }
        for (name, url) in repos {
            if name == PUBLIC_GOOD_ROOT
                || self
                    .sigstore_trusted_roots
                    .iter()
                    .any(|r| r.split_once('=').is_some_and(|(n, _)| n.trim() == name))
            {
                return Err(ArtifactArgsError::RootTwice(name));
            }
            let Some((_, path)) = pinned.iter().find(|(n, _)| *n == name) else {
                return Err(ArtifactArgsError::TufUnpinned(name));
            };
            let root_json = std::fs::read(path).map_err(|source| ArtifactArgsError::Read {
                path: path.into(),
                source,
            })?;
            let base = url.trim_end_matches('/').to_string();
            sources.push((
                name,
                TufSource {
                    targets_url: format!("{base}/targets"),
                    metadata_url: base,
                    root_json,
                    ..TufSource::public_good()
                },
            ));
        }
        Ok(sources)
    }

    /// The registry client and the roots, checked.
    pub fn open(&self) -> Result<Artifacts, ArtifactArgsError> {
        let host = self.artifact_registry.trim().to_ascii_lowercase();
        if self.artifact_registry_plain_http && !is_loopback(&host) {
            return Err(ArtifactArgsError::PlainHttp(host));
        }
        let auth = match (
            self.artifact_registry_username.trim(),
            &self.artifact_registry_password_file,
        ) {
            ("", None) => RegistryAuth::Anonymous,
            ("", Some(_)) | (_, None) => return Err(ArtifactArgsError::HalfCredential),
            (user, Some(path)) => RegistryAuth::Basic {
                username: user.to_string(),
                password: std::fs::read_to_string(path)
                    .map_err(|source| ArtifactArgsError::Read {
                        path: path.clone(),
                        source,
                    })?
                    .trim()
                    .to_string()
                    .into(),
            },
        };
        let mut opts = RegistryOptions::new(host);
        opts.plain_http = self.artifact_registry_plain_http;
        opts.timeout = Duration::from_secs(self.artifact_registry_timeout_secs.max(1));
        let registry = Registry::new(opts).map_err(ArtifactArgsError::Registry)?;
        let mut roots = HashMap::new();
        if !self.sigstore_no_public_good {
            roots.insert(
                PUBLIC_GOOD_ROOT.to_string(),
                Arc::new(
                    TrustRoot::public_good().map_err(|source| ArtifactArgsError::Root {
                        name: PUBLIC_GOOD_ROOT.into(),
                        source,
                    })?,
                ),
            );
        }
        for spec in self
            .sigstore_trusted_roots
            .iter()
            .filter(|s| !s.trim().is_empty())
        {
            let (name, path) = spec
                .split_once('=')
                .map(|(n, p)| (n.trim(), p.trim()))
                .filter(|(n, p)| !n.is_empty() && !p.is_empty())
                .ok_or_else(|| ArtifactArgsError::RootSyntax(spec.clone()))?;
            // The public-good name stands for the shipped root unless it is left out.
            if roots.contains_key(name) {
                return Err(ArtifactArgsError::RootTwice(name.into()));
            }
            let bytes = std::fs::read(path).map_err(|source| ArtifactArgsError::Read {
                path: path.into(),
                source,
            })?;
            let root = TrustRoot::from_trusted_root_json(&bytes).map_err(|source| {
                ArtifactArgsError::Root {
                    name: name.into(),
                    source,
                }
            })?;
            roots.insert(name.to_string(), Arc::new(root));
        }
        Ok(Artifacts::new(registry, auth, roots))
    }
}

/// Keeps the TUF-backed roots current: each is refreshed now and then every `every`; a
/// refresh that fails leaves the root in use as it was (the shipped one, or the last good
/// refresh) and is logged, so a repository that is down never removes a root, and one that
/// serves bad or older metadata never replaces it (each refresh starts from what the last one
/// verified: see [`TufState`]).
pub async fn refresh_roots(
    artifacts: Arc<Artifacts>,
    sources: Vec<(String, TufSource)>,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    if sources.is_empty() {
        return;
    }
    let mut states: Vec<TufState> = vec![TufState::default(); sources.len()];
    loop {
        for ((name, source), state) in sources.iter().zip(states.iter_mut()) {
            refresh_once(&artifacts, name, source, state).await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One refresh of root `name` from what `state` says was verified before; whether it
/// replaced the root (and `state` with it).
pub async fn refresh_once(
    artifacts: &Artifacts,
    name: &str,
    source: &TufSource,
    state: &mut TufState,
) -> bool {
    match TrustRoot::from_tuf_after(source, state).await {
        Ok((root, verified)) => {
            artifacts.set_root(name, root);
            tracing::info!(root = name, url = %source.metadata_url, targets_version = verified.targets_version(), "Sigstore trust root refreshed from its TUF repository");
            *state = verified;
            true
        }
        Err(e) => {
            let message = plumbline_domain::describe_error(&e);
            tracing::warn!(root = name, url = %source.metadata_url, error = %message, kept = artifacts.root(name).is_some(), "Sigstore trust root not refreshed: the root in use stays");
            false
        }
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback(host: &str) -> bool {
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        for h in [
            "127.0.0.1:5000",
            "localhost:5000",
            "[::1]:5000",
            "127.0.0.2",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "ghcr.io",
            "10.0.0.1:5000",
            "registry.internal",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
        let args = ArtifactArgs {
            artifact_registry: "ghcr.io".into(),
            artifact_registry_plain_http: true,
            ..ArtifactArgs::default()
        };
        assert!(matches!(args.open(), Err(ArtifactArgsError::PlainHttp(_))));
    }

    #[test]
    fn roots_are_named_once_and_checked() {
        let args = |roots: &[&str]| ArtifactArgs {
            sigstore_trusted_roots: roots.iter().map(|s| s.to_string()).collect(),
            ..ArtifactArgs::default()
        };
        assert!(args(&[])
            .open()
            .expect("public good")
            .root(PUBLIC_GOOD_ROOT)
            .is_some());
        assert!(matches!(
            args(&["no-equals"]).open(),
            Err(ArtifactArgsError::RootSyntax(_))
        ));
        assert!(matches!(
            args(&["tuf-repo-cdn.sigstore.dev=/x"]).open(),
            Err(ArtifactArgsError::RootTwice(_))
        ));
        assert!(matches!(
            args(&["mine=/nonexistent/trusted_root.json"]).open(),
            Err(ArtifactArgsError::Read { .. })
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = dir.path().join("root.json");
        std::fs::write(&garbage, "{}").expect("write");
        assert!(matches!(
            args(&[&format!("mine={}", garbage.display())]).open(),
            Err(ArtifactArgsError::Root { .. })
        ));
        let half = ArtifactArgs {
            artifact_registry_username: "me".into(),
            ..ArtifactArgs::default()
        };
        assert!(matches!(
            half.open(),
            Err(ArtifactArgsError::HalfCredential)
        ));
    }

    #[test]
    fn tuf_repositories_are_pinned_and_named_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pinned = dir.path().join("root.json");
        std::fs::write(&pinned, "{}").expect("write");
        let args = |tuf: &[&str], roots: &[&str]| ArtifactArgs {
            sigstore_tuf: tuf.iter().map(|s| s.to_string()).collect(),
            sigstore_tuf_roots: roots.iter().map(|s| s.to_string()).collect(),
            ..ArtifactArgs::default()
        };
        let pin = format!("corp={}", pinned.display());
        let sources = args(&["corp=https://tuf.example.com/"], &[&pin])
            .tuf_sources()
            .expect("sources");
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].1.metadata_url, "https://tuf.example.com");
        assert_eq!(sources[0].1.targets_url, "https://tuf.example.com/targets");
        assert!(matches!(
            args(&["corp=https://tuf.example.com"], &[]).tuf_sources(),
            Err(ArtifactArgsError::TufUnpinned(_))
        ));
        assert!(matches!(
            args(&[], &[&pin]).tuf_sources(),
            Err(ArtifactArgsError::TufUnused(_))
        ));
        assert!(matches!(
            args(&["corp=a", "corp=b"], &[&pin]).tuf_sources(),
            Err(ArtifactArgsError::TufSyntax(_))
        ));
        assert!(matches!(
            args(
                &[&format!("{PUBLIC_GOOD_ROOT}=https://x")],
                &[&format!("{PUBLIC_GOOD_ROOT}=/x")]
            )
            .tuf_sources(),
            Err(ArtifactArgsError::RootTwice(_))
        ));
        let off = ArtifactArgs {
            sigstore_refresh_public_good: true,
            sigstore_no_public_good: true,
            ..ArtifactArgs::default()
        };
        assert!(matches!(
            off.tuf_sources(),
            Err(ArtifactArgsError::RefreshWithoutPublicGood)
        ));
        let on = ArtifactArgs {
            sigstore_refresh_public_good: true,
            ..ArtifactArgs::default()
        };
        assert_eq!(on.tuf_sources().expect("sources")[0].0, PUBLIC_GOOD_ROOT);
    }

    /// A repository that cannot be read leaves the root in use as it was.
    #[tokio::test]
    async fn a_failed_refresh_keeps_the_root_in_use() {
        let artifacts = ArtifactArgs::default().open().expect("artifacts");
        let before = artifacts.root(PUBLIC_GOOD_ROOT).expect("shipped root");
        let down = TufSource {
            metadata_url: "http://127.0.0.1:9".into(),
            targets_url: "http://127.0.0.1:9/targets".into(),
            timeout: Duration::from_secs(2),
            ..TufSource::public_good()
        };
        let mut state = TufState::default();
        assert!(!refresh_once(&artifacts, PUBLIC_GOOD_ROOT, &down, &mut state).await);
        let after = artifacts.root(PUBLIC_GOOD_ROOT).expect("still there");
        assert!(Arc::ptr_eq(&before, &after));
        assert!(!refresh_once(&artifacts, "corp", &down, &mut state).await);
        assert!(
            artifacts.root("corp").is_none(),
            "no root until a refresh succeeds"
        );
    }
}
