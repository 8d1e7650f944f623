//! The crate's one error type: what can fail outside verification itself.
//!
//! Verification never fails with an `Error`: a signature that does not verify is an answer
//! ([`crate::Verification`] with `is_verified == false`), not an error. Errors are for a trust
//! root that cannot be used, an image reference that is not one, and a registry that cannot be
//! read.
//!
//! Much of what ends up in a message (an error here, or the reason a signature did not verify)
//! comes from a registry or a signature a repository pushed: [`untrusted`] bounds and cleans such
//! text, so a message cannot carry megabytes or forge a log line.

/// Why a trust root, an image reference or a registry read was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The trusted root is not JSON of the Sigstore `TrustedRoot` shape.
    #[error("trust root is not a Sigstore trusted_root.json")]
    TrustRootJson(#[source] serde_json::Error),
    /// The trusted root parsed but cannot be used (no CA, no log key, a broken certificate...).
    #[error("trust root refused: {0}")]
    TrustRoot(String),
    /// A certificate of the trusted root does not parse.
    #[error("trust root certificate authority {index}: certificate does not parse")]
    TrustRootCertificate {
        index: usize,
        #[source]
        source: x509_cert::der::Error,
    },
    /// A transparency-log key of the trusted root is not a key sigstore-rs can use.
    #[error("trust root transparency log {log}: key refused")]
    TrustRootKey {
        log: String,
        #[source]
        source: sigstore::errors::SigstoreError,
    },
    /// The repository or digest of an image reference is not well formed.
    #[error("invalid image reference: {0}")]
    ImageRef(String),
    /// The registry options cannot make a client.
    #[error("registry options: {0}")]
    Options(String),
    /// The HTTP client could not be built.
    #[error("registry client")]
    Client(#[source] reqwest::Error),
    /// A registry request failed (connection refused, timeout, TLS...).
    #[error("registry request to {url} failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with a status that means it cannot be read.
    #[error("registry answered {status} to {url}")]
    Status { url: String, status: u16 },
    /// A token answer is larger than `max_manifest_bytes`. (Signature content over its cap is
    /// evidence that does not verify, never this error: a repository controls that content.)
    #[error("registry body from {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    /// A token answer does not parse. (Signature content that does not parse is evidence that
    /// does not verify, never this error.)
    #[error("registry answer from {url} does not parse")]
    Manifest {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    /// The registry asked for an authentication this client will not do.
    #[error("registry authentication: {0}")]
    Auth(String),
    /// The trust root could not be refreshed from a TUF repository (see [`crate::TufSource`]).
    #[error("trust root refresh from TUF repository failed")]
    Tuf(#[source] crate::tuf::TufError),
}

/// The longest piece of untrusted text kept in a message, in characters.
pub(crate) const UNTRUSTED_CHARS: usize = 200;

/// Text a repository or registry chose (a payload type, a digest it names, a parse error quoting
/// its input), cut to [`UNTRUSTED_CHARS`] characters (then `…`) with control and bidirectional
/// formatting characters replaced: safe to put inside a one-line message.
pub(crate) fn untrusted(text: &str) -> String {
    clip(text, UNTRUSTED_CHARS)
}

/// `text` cut to `max_chars` characters (then `…`), on one line: line breaks and tabs become
/// spaces, other control characters and bidirectional overrides become U+FFFD.
pub(crate) fn clip(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(4)));
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push('\u{2026}');
            break;
        }
        out.push(match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() || is_bidi_control(c) => '\u{FFFD}',
            c => c,
        });
    }
    out
}

/// Unicode's bidirectional formatting characters (they reorder what a terminal shows).
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_bounds_and_cleans() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc\u{2026}");
        assert_eq!(clip("a\nb\r\tc", 10), "a b  c");
        assert_eq!(clip("a\u{1b}[31mb\u{202E}c", 20), "a\u{FFFD}[31mb\u{FFFD}c");
        assert_eq!(
            untrusted(&"é".repeat(1000)).chars().count(),
            UNTRUSTED_CHARS + 1
        );
    }
}
