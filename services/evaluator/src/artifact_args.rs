//! Where artifact rules read container images' signatures, and which Sigstore roots those
//! signatures may chain to.
//!
//! Fail closed: a registry that cannot be configured stops the evaluator at start-up, plain
//! HTTP is refused for anything but a loopback address, and a rule's `sigstore` param can only
//! name a root configured here (a root a rule author could bring would make anything verify).

use plumbline_github_provider::Artifacts;
use plumbline_sigstore::{Registry, RegistryAuth, RegistryOptions, TrustRoot};
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
}

impl ArtifactArgs {
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
        Ok(Artifacts {
            registry,
            auth,
            roots,
        })
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
            .roots
            .contains_key(PUBLIC_GOOD_ROOT));
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
}
