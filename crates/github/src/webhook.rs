//! GitHub webhook signature verification (`X-Hub-Signature-256`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing signature header")]
    Missing,
    #[error("malformed signature header")]
    Malformed,
    #[error("signature does not match any configured secret")]
    Mismatch,
}

/// Computes the `X-Hub-Signature-256` header value for `body` (used by the simulator and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Verifies `header` against every secret (current first, then previous ones during rotation).
///
/// The comparison is constant-time (`Mac::verify_slice`), so the time taken does not reveal how
/// many leading bytes matched.
pub fn verify<S: AsRef<[u8]>>(
    secrets: &[S],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_sig = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let sig = hex::decode(hex_sig.trim()).map_err(|_| SignatureError::Malformed)?;
    if sig.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_ref()) else {
            continue;
        };
        mac.update(body);
        if mac.verify_slice(&sig).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_documented_example() {
        // From GitHub's "Validating webhook deliveries" documentation.
        let sig = sign(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            sig,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn rotation_and_rejections() {
        let body = br#"{"zen":"x"}"#;
        let old = sign(b"old", body);
        assert_eq!(verify(&["new", "old"], body, Some(&old)), Ok(()));
        assert_eq!(
            verify(&["new"], body, Some(&old)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(&["new"], body, None), Err(SignatureError::Missing));
        assert_eq!(
            verify(&["new"], body, Some("sha1=abc")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&["new"], body, Some("sha256=zz")),
            Err(SignatureError::Malformed)
        );
        let truncated = &old[..old.len() - 2];
        assert_eq!(
            verify(&["old"], body, Some(truncated)),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&["old"], b"{\"zen\":\"y\"}", Some(&old)),
            Err(SignatureError::Mismatch)
        );
    }
}
