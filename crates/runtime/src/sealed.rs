//! Credentials sealed for storage: AES-256-GCM (RustCrypto's `aes-gcm`) under keys read from a
//! file, each sealed value carrying the id of the key that sealed it so keys rotate.
//!
//! The key file holds one key per line, `KEY-ID HEX` (32 bytes as 64 hex digits; `#`
//! comments). The first key seals; every key opens. It is re-read when it changes (see
//! [`SecretFile`]): to rotate, put a new key first, re-seal what is stored (`plumb provider
//! rotate-key`), then remove the old key. Each value is sealed with a fresh random 96-bit nonce
//! and bound to where it is stored (the associated data, e.g. its project and name), so a
//! sealed value copied to another row does not open there.

use crate::secrets::{secret_lines, SecretFile, SecretFileError};
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use secrecy::{ExposeSecret, SecretString};
use std::path::Path;

/// A value as stored: which key sealed it, the nonce, and the ciphertext with its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("credentials key file: {0}")]
    File(#[from] SecretFileError),
    #[error("line {line}: {why}")]
    BadKey { line: usize, why: &'static str },
    #[error("the credentials key file holds no key")]
    NoKey,
    #[error("no key {0:?} in the credentials key file (it was removed before everything it sealed was re-sealed)")]
    UnknownKey(String),
    #[error("a sealed value does not open: altered, or stored elsewhere than where it was sealed")]
    Open,
    #[error("sealing failed")]
    Seal,
}

struct KeyRing {
    /// (id, key); the first seals.
    keys: Vec<(String, Key<Aes256Gcm>)>,
}

fn parse(text: &SecretString) -> Result<KeyRing, SealError> {
    let mut keys = Vec::new();
    for (i, line) in secret_lines(text).iter().enumerate() {
        let bad = |why| SealError::BadKey { line: i + 1, why };
        let (id, hex_key) = line
            .expose_secret()
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad("want KEY-ID HEX"))?;
        if id.is_empty()
            || id.len() > 32
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad("a key id is 1-32 letters, digits, '-' or '_'"));
        }
        let bytes = hex::decode(hex_key.trim()).map_err(|_| bad("the key is not hex"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad("a key is 32 bytes (64 hex digits)"))?;
        if keys.iter().any(|(k, _)| k == id) {
            return Err(bad("a key id appears twice"));
        }
        keys.push((id.to_string(), Key::<Aes256Gcm>::from(bytes)));
    }
    if keys.is_empty() {
        return Err(SealError::NoKey);
    }
    Ok(KeyRing { keys })
}

/// Seals and opens with the keys of a key file.
#[derive(Clone)]
pub struct Sealer {
    file: SecretFile<KeyRing>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key_file", &self.file.path())
            .finish()
    }
}

impl Sealer {
    /// Reads the key file now; an error when it is unreadable or holds no valid key.
    pub fn open_file(path: &Path) -> Result<Self, SealError> {
        Ok(Sealer {
            file: SecretFile::open(path, "credentials keys", parse)?,
        })
    }

    /// The id of the key new values are sealed with.
    pub fn current_key_id(&self) -> Result<String, SealError> {
        let ring = self.file.get();
        ring.keys
            .first()
            .map(|(id, _)| id.clone())
            .ok_or(SealError::NoKey)
    }

    /// Seals `plaintext`, bound to `aad` (where it will be stored).
    pub fn seal(&self, plaintext: &SecretString, aad: &[u8]) -> Result<Sealed, SealError> {
        let ring = self.file.get();
        let (id, key) = ring.keys.first().ok_or(SealError::NoKey)?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = Aes256Gcm::new(key)
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.expose_secret().as_bytes(),
                    aad,
                },
            )
            .map_err(|_| SealError::Seal)?;
        Ok(Sealed {
            key_id: id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Opens a sealed value stored at `aad`.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<SecretString, SealError> {
        let ring = self.file.get();
        let (_, key) = ring
            .keys
            .iter()
            .find(|(id, _)| *id == sealed.key_id)
            .ok_or_else(|| SealError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.nonce.len() != 12 {
            return Err(SealError::Open);
        }
        let plaintext = Aes256Gcm::new(key)
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plaintext)
            .map(SecretString::from)
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const K2: &str = "0202020202020202020202020202020202020202020202020202020202020202";

    #[test]
    fn values_open_only_where_they_were_sealed_and_keys_rotate() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("# keys\nfirst {K1}\n")).expect("write");
        let sealer = Sealer::open_file(&path).expect("keys");
        let secret = SecretString::from("ghp_secret-token");
        let sealed = sealer.seal(&secret, b"default/github").expect("seal");
        assert_eq!(sealed.key_id, "first");
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            sealer
                .open(&sealed, b"default/github")
                .expect("open")
                .expose_secret(),
            "ghp_secret-token"
        );
        // Another row's place, or an altered byte: does not open.
        assert!(matches!(
            sealer.open(&sealed, b"other/github"),
            Err(SealError::Open)
        ));
        let mut altered = sealed.clone();
        altered.ciphertext[0] ^= 1;
        assert!(matches!(
            sealer.open(&altered, b"default/github"),
            Err(SealError::Open)
        ));
        // Two seals of one value differ (fresh nonces).
        assert_ne!(
            sealer.seal(&secret, b"x").expect("seal"),
            sealer.seal(&secret, b"x").expect("seal")
        );
        // Rotation: a new key first seals; the old one still opens until removed.
        std::fs::write(&path, format!("second {K2}\nfirst {K1}\n")).expect("write");
        assert_eq!(sealer.current_key_id().expect("id"), "second");
        assert!(sealer.open(&sealed, b"default/github").is_ok());
        std::fs::write(&path, format!("second {K2}\n")).expect("write");
        assert!(matches!(
            sealer.open(&sealed, b"default/github"),
            Err(SealError::UnknownKey(id)) if id == "first"
        ));
    }

    #[test]
    fn bad_key_files_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("keys");
        for bad in [
            "",
            "# only a comment\n",
            "k 0102\n",
            "k zz\n",
            &format!("bad/id {K1}\n"),
            &format!("k {K1}\nk {K2}\n"),
        ] {
            std::fs::write(&path, bad).expect("write");
            assert!(Sealer::open_file(&path).is_err(), "{bad:?}");
        }
    }
}
