//! Secrets read from files and re-read when the file changes, so rotating one (a Kubernetes
//! Secret volume, Vault agent, a file an operator edits) needs no restart.
//!
//! Re-reading is [`plumbline_reload`]'s: one `stat` per read, a re-read only after a change,
//! and a file that becomes unreadable or unparsable keeps the last good value in service (a
//! botched rotation must neither lock everyone out nor let anyone in). The first read at
//! start-up must succeed.

use plumbline_reload::Reloading;
use secrecy::SecretString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A secret (or a list of them) parsed from a file, re-read when the file changes (see
/// [`plumbline_reload`]). Cloning shares the file.
pub struct SecretFile<T> {
    path: PathBuf,
    inner: Arc<Reloading<T, SecretFileError>>,
}

impl<T> Clone for SecretFile<T> {
    fn clone(&self) -> Self {
        SecretFile {
            path: self.path.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for SecretFile<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the value.
        f.debug_struct("SecretFile")
            .field("file", &self.inner)
            .finish()
    }
}

impl<T: 'static> SecretFile<T> {
    /// Reads and parses `path` now (an error when it is unreadable or does not parse).
    pub fn open<E: std::error::Error + Send + Sync + 'static>(
        path: &Path,
        what: &'static str,
        parse: fn(&SecretString) -> Result<T, E>,
    ) -> Result<Self, SecretFileError> {
        let load = move |paths: &[PathBuf]| -> Result<T, SecretFileError> {
            let path = paths.first().cloned().unwrap_or_default();
            let text = std::fs::read_to_string(&path).map_err(|source| SecretFileError::Read {
                path: path.clone(),
                source,
            })?;
            parse(&SecretString::from(text)).map_err(|e| SecretFileError::Invalid {
                path,
                source: Box::new(e),
            })
        };
        Ok(SecretFile {
            path: path.to_path_buf(),
            inner: Arc::new(Reloading::open(vec![path.to_path_buf()], what, load)?),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current value, re-read first if the file changed.
    pub fn get(&self) -> Arc<T> {
        self.inner.get()
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

    #[derive(Debug, thiserror::Error)]
    #[error("no secret in it")]
    struct NoSecret;

    fn parse(text: &SecretString) -> Result<Vec<String>, NoSecret> {
        let lines: Vec<String> = secret_lines(text)
            .iter()
            .map(|s| s.expose_secret().to_string())
            .collect();
        if lines.is_empty() {
            Err(NoSecret)
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
