//! An image as the registry names it: repository and manifest digest, checked strictly.
//!
//! Both parts end up in registry URLs and tag names, so they are validated here once, with no
//! room for path tricks (`..`, empty segments, percent signs) or digest look-alikes.

use crate::Error;

/// One image manifest: `owner/name` (lower case) and its `sha256:` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The repository inside the registry, `owner/name` (more segments allowed), lower case.
    pub repository: String,
    /// The manifest digest, `sha256:` and 64 lower-case hex digits.
    pub digest: String,
}

/// The longest repository name accepted (the distribution spec's practical limit).
const MAX_REPOSITORY_LEN: usize = 255;

impl ImageRef {
    /// Validates `repository` (lower-cased first: registry names are case-insensitive on GitHub)
    /// and `digest` (taken as given: an upper-case digest is refused, not folded).
    pub fn new(repository: &str, digest: &str) -> Result<ImageRef, Error> {
        let repository = repository.to_ascii_lowercase();
        validate_repository(&repository)?;
        validate_digest(digest)?;
        Ok(ImageRef {
            repository,
            digest: digest.to_string(),
        })
    }

    /// The 64 hex digits of the digest.
    pub(crate) fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }

    /// The digest's 32 bytes.
    pub(crate) fn digest_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        // Validated in `new`: 64 lower-case hex digits.
        if hex::decode_to_slice(self.hex(), &mut out).is_err() {
            return [0u8; 32];
        }
        out
    }
}

/// One path component of the distribution spec: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or one or more `-`, always between alphanumerics.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn validate_repository(repository: &str) -> Result<(), Error> {
    if repository.is_empty() || repository.len() > MAX_REPOSITORY_LEN {
        return Err(Error::ImageRef(format!(
            "repository must be 1 to {MAX_REPOSITORY_LEN} characters"
        )));
    }
    let components: Vec<&str> = repository.split('/').collect();
    if components.len() < 2 {
        return Err(Error::ImageRef(format!(
            "repository {repository:?} is not owner/name"
        )));
    }
    if let Some(bad) = components.iter().find(|c| !valid_component(c)) {
        return Err(Error::ImageRef(format!(
            "repository {repository:?}: component {bad:?} is not a registry name component"
        )));
    }
    Ok(())
}

fn validate_digest(digest: &str) -> Result<(), Error> {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return Err(Error::ImageRef(format!(
            "digest {digest:?} is not sha256:<64 hex digits>"
        )));
    };
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Error::ImageRef(format!(
            "digest {digest:?} is not sha256:<64 lower-case hex digits>"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn accepts_owner_name_and_lower_cases_it() {
        let r = ImageRef::new("Octo-Org/My_Image.x", D).unwrap();
        assert_eq!(r.repository, "octo-org/my_image.x");
        assert!(ImageRef::new("o/a/b", D).is_ok());
    }

    #[test]
    fn refuses_path_tricks() {
        for bad in [
            "../x", "x/..", "o/../x", "/o/x", "o/x/", "o//x", "x", "o/.x", "o/x%2f", "o/x?y",
            "o/x#", "o/ x", "o/x\n", "",
        ] {
            assert!(ImageRef::new(bad, D).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn refuses_bad_digests() {
        let upper = D.to_ascii_uppercase().replace("SHA256", "sha256");
        for bad in [
            upper.as_str(),
            "sha256:abc",
            &D[..D.len() - 1],
            "sha512:0123",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            &format!("{D}0"),
            "sha256:../../0123456789abcdef0123456789abcdef0123456789abcdef012345678",
        ] {
            assert!(ImageRef::new("o/x", bad).is_err(), "{bad:?} accepted");
        }
    }
}
