//! Bearer-token authentication for the control API.
//!
//! Tokens are held only as SHA-256 digests, and a presented token is hashed and compared with
//! each digest in constant time: the process never keeps a token it could leak in a dump or a
//! log, and the comparison time says nothing about how much of a guess was right (a digest
//! comparison also has a fixed length, which a comparison of raw tokens of different lengths
//! does not).
//!
//! Tokens come from flags/environment (fixed for the process's life) and from a file, one token
//! per line (`#` comments and blank lines ignored), which is re-read whenever its modification
//! time or size changes, so a token can be rotated (add the new one, roll the clients, remove
//! the old one) without a restart. A file that becomes unreadable or invalid keeps the last good
//! set and logs why: rotation mistakes must not lock every operator out, nor let anyone in.

use plumbline_runtime::secrets::{secret_lines, SecretFile, SecretFileError};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Shortest token accepted: a guessable token is no authentication.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("an empty control API token was given (an empty secret would mean no authentication)")]
    Empty,
    #[error("a control API token is {0} characters long; at least {MIN_TOKEN_LEN} are required")]
    TooShort(usize),
    #[error("a control API token contains characters that cannot be sent in an HTTP header")]
    NotHeaderText,
    #[error(transparent)]
    File(#[from] SecretFileError),
}

type TokenDigest = [u8; 32];

fn token_digest(token: &[u8]) -> TokenDigest {
    Sha256::digest(token).into()
}

fn check_token(t: &str) -> Result<TokenDigest, AuthConfigError> {
    if t.is_empty() {
        return Err(AuthConfigError::Empty);
    }
    if t.chars().count() < MIN_TOKEN_LEN {
        return Err(AuthConfigError::TooShort(t.chars().count()));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthConfigError::NotHeaderText);
    }
    Ok(token_digest(t.as_bytes()))
}

/// Why a token file does not load (the last good one stays in service).
#[derive(Debug, thiserror::Error)]
enum TokenFileError {
    #[error("token {index}: {source}")]
    Token {
        index: usize,
        #[source]
        source: AuthConfigError,
    },
    #[error("holds no control API token")]
    Empty,
}

/// Parses a token file: one token per line (`#` comments), each checked, kept as digests.
fn parse_token_file(text: &SecretString) -> Result<Vec<TokenDigest>, TokenFileError> {
    let mut digests = Vec::new();
    for (i, line) in secret_lines(text).iter().enumerate() {
        digests.push(check_token(line.expose_secret()).map_err(|source| {
            TokenFileError::Token {
                index: i + 1,
                source,
            }
        })?);
    }
    if digests.is_empty() {
        return Err(TokenFileError::Empty);
    }
    Ok(digests)
}

/// Who may call the control API.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    fixed: Vec<TokenDigest>,
    file: Option<SecretFile<Vec<TokenDigest>>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("fixed_tokens", &self.inner.fixed.len())
            .field(
                "token_file",
                &self
                    .inner
                    .file
                    .as_ref()
                    .map(|f| f.path().display().to_string()),
            )
            .finish()
    }
}

impl Authenticator {
    /// `None` when no token source is configured (the caller decides whether running open is
    /// allowed); an error for an unusable token or file.
    pub fn new(
        tokens: &[SecretString],
        file: Option<&Path>,
    ) -> Result<Option<Self>, AuthConfigError> {
        let fixed = tokens
            .iter()
            .map(|t| check_token(t.expose_secret()))
            .collect::<Result<Vec<_>, _>>()?;
        let file = file
            .map(|p| SecretFile::open(p, "control API tokens", parse_token_file))
            .transpose()?;
        if fixed.is_empty() && file.is_none() {
            return Ok(None);
        }
        Ok(Some(Authenticator {
            inner: Arc::new(AuthInner { fixed, file }),
        }))
    }

    /// Whether `presented` is one of the tokens.
    pub fn accepts(&self, presented: &str) -> bool {
        let d = token_digest(presented.as_bytes());
        let mut ok = subtle::Choice::from(0u8);
        let from_file = self.inner.file.as_ref().map(|f| f.get());
        for t in self
            .inner
            .fixed
            .iter()
            .chain(from_file.iter().flat_map(|v| v.iter()))
        {
            ok |= t.ct_eq(&d);
        }
        bool::from(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_and_compared_as_digests() {
        let good = SecretString::from("0123456789abcdef-good");
        assert!(
            Authenticator::new(&[], None).expect("ok").is_none(),
            "nothing configured"
        );
        assert!(matches!(
            Authenticator::new(&[SecretString::from("")], None),
            Err(AuthConfigError::Empty)
        ));
        assert!(matches!(
            Authenticator::new(&[SecretString::from("short")], None),
            Err(AuthConfigError::TooShort(5))
        ));
        assert!(matches!(
            Authenticator::new(&[SecretString::from("0123456789abcdef\n")], None),
            Err(AuthConfigError::NotHeaderText)
        ));
        let a = Authenticator::new(&[good], None)
            .expect("ok")
            .expect("configured");
        assert!(a.accepts("0123456789abcdef-good"));
        assert!(!a.accepts("0123456789abcdef-goo"));
        assert!(!a.accepts(""));
        assert!(!format!("{a:?}").contains("good"), "Debug shows no token");
    }

    #[test]
    fn the_token_file_is_reloaded_when_it_changes_and_a_bad_edit_keeps_the_old_set() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# operators\nfirst-token-0123456789\n\n").expect("write");
        let a = Authenticator::new(&[], Some(&path))
            .expect("ok")
            .expect("configured");
        assert!(a.accepts("first-token-0123456789"));
        // Rotation: a different length changes the stamp even within the mtime granularity.
        std::fs::write(&path, "second-token-0123456789\n").expect("write");
        assert!(a.accepts("second-token-0123456789"));
        assert!(
            !a.accepts("first-token-0123456789"),
            "removed token refused at once"
        );
        // A broken edit keeps the last good tokens.
        std::fs::write(&path, "tiny\n").expect("write");
        assert!(a.accepts("second-token-0123456789"));
        assert!(!a.accepts("tiny"));
        std::fs::remove_file(&path).expect("rm");
        assert!(
            a.accepts("second-token-0123456789"),
            "a vanished file keeps the last good set"
        );
        assert!(
            matches!(
                Authenticator::new(&[], Some(&path)),
                Err(AuthConfigError::File(_))
            ),
            "but must exist at start"
        );
        std::fs::write(&path, "# none\n").expect("write");
        assert!(matches!(
            Authenticator::new(&[], Some(&path)),
            Err(AuthConfigError::File(_))
        ));
    }
}
