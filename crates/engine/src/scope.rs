//! Confinement of rule-built API paths to the entity they were built for.
//!
//! A rule type's rest ingest and remediation endpoints, and the data-source calls sent with
//! the provider's credentials, are templates written by rule authors and filled with values
//! from the entity, the profile and the policy. Escaping the values (see
//! [`Template::render_url`](crate::template::Template::render_url)) keeps a value inside its
//! segment; this check holds the finished path, template text included, under the entity's
//! own API root (`/repos/{owner}/{name}` on GitHub), so that no rule can read or change another
//! repository with a credential that could.
//!
//! The check runs on two readings of the path and both must stay inside: the path with its dot
//! segments resolved as a URL parser resolves them (`..`, `.%2e`, `%2e%2e` alike), and the same
//! path fully percent-decoded and then resolved, which is how a server that decodes before
//! routing would see it. Backslashes are refused outright (some servers treat them as `/`).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `value` percent-encoded as one URL path segment (or query component): it cannot add
/// segments, a query or a fragment.
pub fn encode_segment(value: &str) -> String {
    utf8_percent_encode(value, NOT_UNRESERVED).to_string()
}

/// The API root of an entity's repository on GitHub: what its rules may address.
pub fn repository_root(entity: &plumbline_domain::Entity) -> String {
    format!("/repos/{}/{}", entity.owner, entity.name)
}

/// Resolves `.` and `..` segments (and their percent-encoded spellings) of an absolute path.
fn resolve_dots(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/').skip(1) {
        match seg.to_ascii_lowercase().as_str() {
            "." | "%2e" => {}
            ".." | ".%2e" | "%2e." | "%2e%2e" => {
                out.pop();
            }
            _ => out.push(seg),
        }
    }
    format!("/{}", out.join("/"))
}

fn under(path: &str, root: &str) -> bool {
    let (p, r) = (path.as_bytes(), root.as_bytes());
    p.len() >= r.len()
        && p[..r.len()].eq_ignore_ascii_case(r)
        && (p.len() == r.len() || p[r.len()] == b'/')
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    NotAbsolute,
    Backslash,
    LeavesEntity,
}

impl Escape {
    fn as_str(self) -> &'static str {
        match self {
            Escape::NotAbsolute => "is not an absolute path",
            Escape::Backslash => "contains a backslash",
            Escape::LeavesEntity => "leaves the entity",
        }
    }
}

/// A path a rule may not address: it names the path and the roots it had to stay under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path:?} {}; a rule may only address {}", .why.as_str(), .roots.join(" or "))]
pub struct Refused {
    pub path: String,
    pub why: Escape,
    pub roots: Vec<String>,
}

/// Checks that `path` (a path with an optional query) stays under one of `roots`.
pub fn confine(path: &str, roots: &[String]) -> Result<(), Refused> {
    let refuse = |why: Escape| {
        Err(Refused {
            path: path.to_string(),
            why,
            roots: roots.to_vec(),
        })
    };
    if !path.starts_with('/') {
        return refuse(Escape::NotAbsolute);
    }
    let bare = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode_str(bare).decode_utf8_lossy();
    if bare.contains('\\') || decoded.contains('\\') {
        return refuse(Escape::Backslash);
    }
    let readings = [resolve_dots(bare), resolve_dots(&decoded)];
    if readings.iter().all(|p| roots.iter().any(|r| under(p, r))) {
        Ok(())
    } else {
        refuse(Escape::LeavesEntity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Vec<String> {
        vec!["/repos/acme/widget".to_string()]
    }

    #[test]
    fn paths_under_the_entity_pass() {
        for p in [
            "/repos/acme/widget",
            "/repos/acme/widget/branches/main/protection",
            "/repos/ACME/Widget/license",
            "/repos/acme/widget/branches/release%2F1.0/protection",
            "/repos/acme/widget/security-advisories?per_page=100&sort=updated",
            "/repos/acme/widget/./branches/x/../main",
        ] {
            assert_eq!(confine(p, &roots()), Ok(()), "{p}");
        }
    }

    #[test]
    fn paths_that_leave_the_entity_are_refused() {
        for p in [
            "/repos/acme/widget-other",
            "/repos/acme/widget/../other",
            "/repos/acme/widget/%2e%2e/other",
            "/repos/acme/widget/.%2E/other",
            "/repos/acme/widget/branches/..%2F..%2F..%2Fother/protection",
            "/repos/acme/widget%2F..%2Fother",
            "/repos/acme/widget/..\\other",
            "/orgs/acme/members",
            "/user",
            "repos/acme/widget",
            "/repos/acme/other?x=/repos/acme/widget",
        ] {
            assert!(confine(p, &roots()).is_err(), "{p} must be refused");
        }
    }
}
