//! Secrets read from files and re-read when the file changes, so rotating one (a Kubernetes
//! Secret volume, Vault agent, a file an operator edits) needs no restart.
//!
//! Each read checks the file's modification time and size (one `stat`); only a change re-reads
//! and re-parses it. A file that becomes unreadable or unparsable keeps the last good value in
//! service and logs why once per change: a botched rotation must neither lock everyone out nor
//! let anyone in. The first read at start-up must succeed.

use secrecy::SecretString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

type Stamp = (Option<SystemTime>, u64);

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok((m.modified().ok(), m.len()))
}

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A value parsed from a secret file, kept current. Cheap to clone.
pub struct SecretFile<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for SecretFile<T> {
    fn clone(&self) -> Self {
        SecretFile {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<T> {
    path: PathBuf,
    what: &'static str,
    parse: fn(&SecretString) -> Result<T, String>,
    state: RwLock<(Stamp, Arc<T>)>,
}

impl<T> std::fmt::Debug for SecretFile<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("what", &self.inner.what)
            .field("path", &self.inner.path)
            .finish()
    }
}

fn load<T>(
    path: &Path,
    parse: fn(&SecretString) -> Result<T, String>,
) -> Result<(Stamp, T), SecretFileError> {
    let read = |source| SecretFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let st = stamp(path).map_err(read)?;
    let text = SecretString::from(std::fs::read_to_string(path).map_err(read)?);
    let value = parse(&text).map_err(|reason| SecretFileError::Invalid {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok((st, value))
}

impl<T> SecretFile<T> {
    /// Reads and parses `path` now (an error if that fails); `what` names it in logs.
    pub fn open(
        path: &Path,
        what: &'static str,
        parse: fn(&SecretString) -> Result<T, String>,
    ) -> Result<Self, SecretFileError> {
        let (st, value) = load(path, parse)?;
        Ok(SecretFile {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                what,
                parse,
                state: RwLock::new((st, Arc::new(value))),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The current value, re-read when the file changed.
    pub fn get(&self) -> Arc<T> {
        let i = &self.inner;
        let now = stamp(&i.path).ok();
        let (then, value) = match i.state.read() {
            Ok(s) => (s.0, s.1.clone()),
            Err(p) => (p.get_ref().0, p.get_ref().1.clone()),
        };
        if now == Some(then) {
            return value;
        }
        match load(&i.path, i.parse) {
            Ok((st, v)) => {
                tracing::info!(what = i.what, path = %i.path.display(), "secret reloaded");
                let v = Arc::new(v);
                if let Ok(mut s) = i.state.write() {
                    *s = (st, v.clone());
                }
                v
            }
            Err(e) => {
                tracing::warn!(what = i.what, error = %e, "secret file unusable; keeping the value read before");
                if let (Some(now), Ok(mut s)) = (now, i.state.write()) {
                    s.0 = now;
                }
                value
            }
        }
    }
}

/// Non-empty, trimmed lines that are not `#` comments: the shape of token and secret lists.
pub fn secret_lines(text: &SecretString) -> Vec<SecretString> {
    use secrecy::ExposeSecret;
    text.expose_secret()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| SecretString::from(l.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn parse(text: &SecretString) -> Result<Vec<String>, String> {
        let lines: Vec<String> = secret_lines(text)
            .iter()
            .map(|s| s.expose_secret().to_string())
            .collect();
        if lines.is_empty() {
            Err("no secret in it".into())
        } else {
            Ok(lines)
        }
    }

    #[test]
    fn a_changed_file_is_reread_and_a_broken_one_keeps_the_last_good_value() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("s");
        std::fs::write(&path, "# current first\none\ntwo\n").expect("write");
        let f = SecretFile::open(&path, "test secret", parse).expect("opens");
        assert_eq!(*f.get(), vec!["one", "two"]);
        std::fs::write(&path, "three\n").expect("write");
        assert_eq!(*f.get(), vec!["three"]);
        std::fs::write(&path, "# nothing\n").expect("write");
        assert_eq!(*f.get(), vec!["three"], "kept");
        std::fs::remove_file(&path).expect("rm");
        assert_eq!(*f.get(), vec!["three"], "kept");
        assert!(!format!("{f:?}").contains("three"));
        assert!(
            SecretFile::open(&path, "test secret", parse).is_err(),
            "must exist at start"
        );
    }
}
