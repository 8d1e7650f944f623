//! pip requirements files: the packages pinned with `==` (or `===`).
//!
//! OSV is asked about versions, and only a pin names one: a requirement with a range, a
//! wildcard (`==1.2.*`) or no version, a URL (`name @ https://…`), a path or an archive is not
//! reported. Markers are kept out of the decision (the environment is unknown), so
//! `x==1.0; python_version < "3.8"` is reported. Names are normalized (PEP 503); `==` versions
//! are PEP 440's normal form (`1.0.0-RC1` is `1.0.0rc1`), `===` ones are as written. A
//! requirement pinned among other specifiers (`a>=1,==1.2`) is reported with its `==` version.
//!
//! Lines are read as pip reads them: `\` at the end of a line continues it (a whole-line
//! comment ends a continuation), `#` at the start or after whitespace starts a comment, the
//! requirement ends at the first ` -` option (`--hash=…`), and lines that are options
//! (`-r`, `-c`, `-e`, `-i`, `--hash` …) are skipped. A dependency's line is the first line of
//! its (possibly continued) requirement.
//!
//! Each requirement is read as PEP 508 by `requirement`, by hand: the `pep508_rs` crate
//! (0.9.2, the latest) panics on names such as `a.` followed by a specifier (found by this
//! module's no-panic test), and uv's maintained fork is published only as an internal crate.
//! Name, extras, specifiers and URL are checked; a marker (after `;`) is only required to be
//! there, since it decides nothing here. Versions are checked and normalized by `pep440_rs`.
//! What is not PEP 508 is an error naming the line, except lines pip reads as a URL, path or
//! archive, which are skipped.

use super::{normalize_pypi_name, DepError, Dependency, Ecosystem};
use pep440_rs::{Version, VersionParseError};
use std::str::FromStr;

pub(super) fn parse(path: &str, text: &str) -> Result<Vec<Dependency>, DepError> {
    let mut out = Vec::new();
    for (line, logical) in logical_lines(text) {
        let text = requirement_part(strip_comment(&logical));
        if text.is_empty() || text.starts_with('-') {
            continue;
        }
        match requirement(text) {
            Ok(req) => out.extend(req.pin().map(|version| Dependency {
                ecosystem: Ecosystem::PyPI,
                name: req.name,
                version,
                line,
            })),
            Err(_) if looks_like_url_or_path(text) => {}
            Err(e) => return Err(e.at(path, line, text)),
        }
    }
    Ok(out)
}

/// A PEP 508 requirement, as much of it as decides what is pinned.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Requirement {
    /// Normalized (PEP 503).
    pub name: String,
    /// Operator and version of each specifier, in order; `==` versions normalized.
    pub specifiers: Vec<(&'static str, String)>,
}

impl Requirement {
    /// The version pinned with `==` (no wildcard) or `===`, if one is.
    pub fn pin(&self) -> Option<String> {
        self.specifiers
            .iter()
            .find(|(op, v)| (*op == "==" && !v.ends_with(".*")) || *op == "===")
            .map(|(_, v)| v.clone())
    }
}

/// Why a requirement is not PEP 508.
#[derive(Debug)]
pub(super) struct RequirementError {
    what: String,
    source: Option<VersionParseError>,
}

impl RequirementError {
    fn new(what: impl Into<String>) -> Self {
        RequirementError {
            what: what.into(),
            source: None,
        }
    }

    pub fn at(self, path: &str, line: u64, text: &str) -> DepError {
        DepError::Requirement {
            path: path.to_string(),
            line,
            text: text.to_string(),
            what: self.what,
            source: self.source,
        }
    }
}

/// Operators, longest first so `===` is not read as `==`.
const OPERATORS: [&str; 8] = ["===", "==", "!=", "~=", "<=", ">=", "<", ">"];

/// Reads a PEP 508 requirement (`name [extras] (specifiers | @ url) ; marker`).
pub(super) fn requirement(s: &str) -> Result<Requirement, RequirementError> {
    let s = s.trim();
    let (name, rest) = identifier(s).ok_or_else(|| {
        RequirementError::new(format!(
            "expected a package name (letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit) at {}",
            head(s)
        ))
    })?;
    let mut rest = rest.trim_start();
    if let Some(extras) = rest.strip_prefix('[') {
        let Some((list, after)) = extras.split_once(']') else {
            return Err(RequirementError::new("`[` of the extras is not closed"));
        };
        for extra in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if identifier(extra).is_none_or(|(_, tail)| !tail.is_empty()) {
                return Err(RequirementError::new(format!("invalid extra {extra:?}")));
            }
        }
        rest = after.trim_start();
    }
    let mut req = Requirement {
        name: normalize_pypi_name(name),
        specifiers: Vec::new(),
    };
    if let Some(url) = rest.strip_prefix('@') {
        let url = url.trim_start();
        let url_end = url.find(char::is_whitespace).unwrap_or(url.len());
        if url_end == 0 {
            return Err(RequirementError::new("`@` without a URL"));
        }
        return marker(&url[url_end..]).map(|()| req);
    }
    let (specs, after) = match rest.strip_prefix('(') {
        Some(inner) => {
            let Some((specs, after)) = inner.split_once(')') else {
                return Err(RequirementError::new("`(` of the specifiers is not closed"));
            };
            if specs.trim().is_empty() {
                return Err(RequirementError::new("empty `()`"));
            }
            (specs, after)
        }
        None => {
            let end = rest.find(';').unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        }
    };
    if !specs.trim().is_empty() {
        for spec in specs.split(',') {
            req.specifiers.push(specifier(spec.trim())?);
        }
    }
    marker(after).map(|()| req)
}

/// What follows a requirement: nothing, or `;` and a marker.
fn marker(after: &str) -> Result<(), RequirementError> {
    let after = after.trim();
    match after.strip_prefix(';') {
        None if after.is_empty() => Ok(()),
        None => Err(RequirementError::new(format!("unexpected {}", head(after)))),
        Some(m) if m.trim().is_empty() => Err(RequirementError::new("`;` without a marker")),
        Some(_) => Ok(()),
    }
}

/// One specifier: an operator and a version (`*` only as `==` / `!=` `X.*`).
fn specifier(spec: &str) -> Result<(&'static str, String), RequirementError> {
    let Some(op) = OPERATORS.iter().find(|op| spec.starts_with(**op)) else {
        return Err(RequirementError::new(format!(
            "expected a version operator (==, !=, <=, >=, <, >, ~=, ===) at {}",
            head(spec)
        )));
    };
    let version = spec[op.len()..].trim();
    let valid_chars = |v: &str| {
        !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.*+!-".contains(c))
    };
    if !valid_chars(version) {
        return Err(RequirementError::new(format!(
            "expected a version after {op} at {}",
            head(version)
        )));
    }
    if *op == "===" {
        return Ok((op, version.to_string()));
    }
    let (release, star) = match version.strip_suffix(".*") {
        Some(r) if matches!(*op, "==" | "!=") => (r, ".*"),
        _ => (version, ""),
    };
    let parsed = Version::from_str(release).map_err(|e| RequirementError {
        what: format!("invalid version {version:?}: {e}"),
        source: Some(e),
    })?;
    Ok((op, format!("{parsed}{star}")))
}

/// A PEP 508 name at the start of `s`, and what follows it.
fn identifier(s: &str) -> Option<(&str, &str)> {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(s.len());
    let name = &s[..end];
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    (alnum(name.chars().next()) && alnum(name.chars().next_back())).then_some((name, &s[end..]))
}

/// The start of `s`, quoted, for an error message.
fn head(s: &str) -> String {
    let h: String = s.chars().take(20).collect();
    if h.is_empty() {
        "the end".into()
    } else {
        format!("{h:?}")
    }
}

/// Lines with `\` continuations joined, each with the number of its first line.
fn logical_lines(text: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(u64, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        let is_comment = line.trim_start().starts_with('#');
        if line.ends_with('\\') && !is_comment {
            let part = line.trim_matches('\\');
            match &mut pending {
                Some((_, joined)) => joined.push_str(part),
                None => pending = Some((n, part.to_string())),
            }
            continue;
        }
        match pending.take() {
            Some((first, mut joined)) => {
                if is_comment {
                    // pip's `join_lines` sets a comment off so it is still read as one.
                    joined.push(' ');
                }
                joined.push_str(line);
                out.push((first, joined));
            }
            None => out.push((n, line.to_string())),
        }
    }
    out.extend(pending);
    out
}

/// The line before a comment: `#` at the start or after whitespace (a URL's `#egg=` stays).
fn strip_comment(line: &str) -> &str {
    let mut prev_ws = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_ws {
            return &line[..i];
        }
        prev_ws = c.is_whitespace();
    }
    line
}

/// The requirement before its per-requirement options, trimmed: pip splits the line on
/// spaces and stops at the first word that starts with `-`.
fn requirement_part(line: &str) -> &str {
    let line = line.trim();
    let mut end = 0;
    let mut offset = 0;
    for word in line.split(' ') {
        if word.starts_with('-') && offset > 0 {
            break;
        }
        offset += word.len() + 1;
        end = offset - 1;
    }
    line[..end.min(line.len())].trim()
}

/// What pip takes as a URL, a path or an archive rather than a name.
fn looks_like_url_or_path(s: &str) -> bool {
    s.contains("://")
        || s.starts_with('.')
        || s.contains('/')
        || s.contains('\\')
        || [".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar"]
            .iter()
            .any(|ext| s.ends_with(ext))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_declared, fixture, fixture_text};
    use super::super::{parse, DepError, Ecosystem};
    use super::requirement;

    fn pins(text: &str) -> Vec<(String, String, u64)> {
        parse("requirements.txt", text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|d| (d.name, d.version, d.line))
            .collect()
    }

    #[test]
    fn compiled_requirements_with_hashes() {
        let text = fixture_text("python/requirements.txt");
        let deps = parse("requirements.txt", text.as_bytes()).unwrap();
        assert!(deps.iter().all(|d| d.ecosystem == Ecosystem::PyPI));
        // pip-compile writes one pinned requirement per package, each on a line of its own.
        let expected = text
            .lines()
            .filter(|l| !l.starts_with([' ', '#', '-']) && l.contains("=="))
            .count();
        assert_eq!(deps.len(), expected);
        for d in &deps {
            assert_declared(&text, d, "==");
            let line = text.lines().nth(d.line as usize - 1).unwrap();
            assert_eq!(
                super::super::normalize_pypi_name(line.split(['=', '[']).next().unwrap()),
                d.name,
                "{line}"
            );
        }
        let flask = deps.iter().find(|d| d.name == "flask").unwrap();
        assert_eq!(flask.version, "2.0.1");
        assert_declared(&text, flask, "flask==2.0.1");
        let yaml = deps.iter().find(|d| d.name == "pyyaml").unwrap();
        assert_declared(&text, yaml, "pyyaml==");
    }

    #[test]
    fn pins_extras_markers_comments_continuations_and_options() {
        let text = fixture_text("python/edge-requirements.txt");
        let got = pins(&text);
        let names: Vec<&str> = got.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "requests",
                "zope-interface",
                "django",
                "urllib3",
                "importlib-metadata",
                "numpy",
                "pytz",
                "pinned-twice",
                "legacy",
            ],
            "{got:?}"
        );
        let by = |n: &str| got.iter().find(|(name, _, _)| name == n).unwrap().clone();
        assert_eq!(by("requests").1, "2.31.0");
        assert_eq!(by("zope-interface").1, "5.4.0");
        assert_eq!(by("numpy").1, "1.26.0rc1");
        assert_eq!(by("pinned-twice").1, "1.2");
        assert_eq!(by("legacy").1, "1.0");
        for (name, _, line) in &got {
            let l = text.lines().nth(*line as usize - 1).unwrap().to_lowercase();
            let raw = name.replace('-', "");
            assert!(
                l.replace(['-', '_', '.'], "").contains(&raw),
                "{name} at {line}: {l}"
            );
        }
        // The continued requirement is reported at its first line.
        let django = by("django");
        assert!(text
            .lines()
            .nth(django.2 as usize - 1)
            .unwrap()
            .ends_with('\\'));
    }

    #[test]
    fn what_is_not_a_pin_is_not_reported() {
        let text = "a\nb>=1\nc~=1.2\nd==1.*\ne @ https://x/e-1.0.tar.gz\n./local\n\
                    https://x/f-1.0.whl\n-e git+https://x/g.git#egg=g\n-r other.txt\n\
                    --index-url https://pypi.org/simple\nh!=1.0\n";
        assert!(pins(text).is_empty(), "{:?}", pins(text));
    }

    #[test]
    fn garbage_is_an_error_naming_the_line() {
        let e = parse(
            "svc/requirements.txt",
            &fixture("python/malformed/requirements.txt"),
        )
        .unwrap_err();
        match &e {
            DepError::Requirement { line, text, .. } => {
                assert_eq!(*line, 3);
                assert_eq!(text, "flask=2.0.1");
            }
            other => panic!("{other}"),
        }
        let msg = e.to_string();
        assert_eq!(
            msg,
            "svc/requirements.txt: line 3: invalid requirement \"flask=2.0.1\": expected a \
             version operator (==, !=, <=, >=, <, >, ~=, ===) at \"=2.0.1\""
        );
        for garbage in [
            "==1.0",
            "a===",
            "[x]==1",
            "a==1.0 ;",
            "é==1",
            "a(",
            "a b c",
            "a. ==1",
            "a[x==1",
            "a (==1",
            "a ()",
            "a==1,",
            "a==1 b",
            "a==",
            "a @",
            "a[x y]==1",
            "-a==1 x",
        ] {
            let e = parse("requirements.txt", format!("\n{garbage}").as_bytes());
            if garbage.starts_with('-') {
                assert!(e.unwrap().is_empty());
                continue;
            }
            let e = e.unwrap_err();
            assert!(e.to_string().contains("line 2"), "{e}");
        }
        // A version that is not PEP 440 keeps the version parser's error as its source.
        let e = parse("requirements.txt", b"a==1.0.0.dev1.post.x").unwrap_err();
        assert!(std::error::Error::source(&e).is_some(), "{e}");
    }

    #[test]
    fn requirements_are_read_as_pep_508() {
        let r = requirement("Foo.Bar [a, b-c] (>= 1.0, == 1.2.3) ; os_name == 'nt'").unwrap();
        assert_eq!(r.name, "foo-bar");
        assert_eq!(
            r.specifiers,
            vec![(">=", "1.0".to_string()), ("==", "1.2.3".to_string())]
        );
        assert_eq!(r.pin().as_deref(), Some("1.2.3"));
        let r = requirement("a==1.*").unwrap();
        assert_eq!(r.pin(), None);
        let r = requirement("a===1.0-foo").unwrap();
        assert_eq!(r.pin().as_deref(), Some("1.0-foo"));
        let r = requirement("a==1!2.0.post1+local.7").unwrap();
        assert_eq!(r.pin().as_deref(), Some("1!2.0.post1+local.7"));
        let r = requirement("a @ https://x/a-1.0.tar.gz ; python_version < '3'").unwrap();
        assert_eq!((r.name.as_str(), r.pin()), ("a", None));
        assert!(requirement("a[]").is_ok());
        assert!(requirement("a;python_version<'3'").is_ok());
        assert!(requirement("a.>=1").is_err());
        assert!(requirement("a>=1.*").is_err());
    }
}
