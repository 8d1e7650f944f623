//! Dependencies declared in dependency files, each with the line a review comment should point
//! at: what a pull request adds or changes (to check against OSV) and everything a repository
//! depends on (Minder's `deps` ingest).
//!
//! One parser per format, picked by file name ([`kind_of`]), any directory but `node_modules/`
//! (vendored packages' own manifests are not the repository's declarations):
//!
//! | file | ecosystem | what is reported |
//! | --- | --- | --- |
//! | `package-lock.json`, `npm-shrinkwrap.json` | npm | every installed registry package ([`npm_lock`]) |
//! | `package.json` | npm | `dependencies`, `devDependencies`, `optionalDependencies`, `peerDependencies`, each with its range as written ([`package_json`]) |
//! | `requirements.txt`, `requirements-*.txt`, `*-requirements.txt`, `requirements/*.txt` | PyPI | `==` / `===` pins ([`requirements`]) |
//! | `pyproject.toml` | PyPI | exact pins of PEP 621, PEP 735 and Poetry dependencies ([`pyproject`]) |
//! | `go.mod` | Go | `require`d modules, `replace` applied ([`gomod`]) |
//! | `Cargo.lock` | crates.io | packages from crates.io ([`cargo_lock`]) |
//!
//! Syntax is left to maintained parsers (`serde_json`, `toml`'s spanned document, `pep440_rs`,
//! `semver`); only line finding is hand-written, except for PEP 508 requirements and `go.mod`,
//! whose small grammars are read here (see [`requirements`] and [`gomod`] for why). Every
//! parser is total: malformed input is a [`DepError`], never a panic, and a file larger than
//! [`MAX_FILE_BYTES`] or not UTF-8 is refused before parsing.

pub mod cargo_lock;
pub mod gomod;
mod json_lines;
pub mod npm_lock;
pub mod package_json;
pub mod pyproject;
pub mod requirements;

use std::collections::HashSet;

/// The largest dependency file [`parse`] reads (32 MiB: well above real lockfiles, bounded so
/// one file cannot exhaust an evaluator).
pub const MAX_FILE_BYTES: usize = 32 * 1024 * 1024;

/// A package ecosystem, named as OSV names it (also when serialized).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Ecosystem {
    #[serde(rename = "npm")]
    Npm,
    #[serde(rename = "PyPI")]
    PyPI,
    #[serde(rename = "Go")]
    Go,
    #[serde(rename = "crates.io")]
    CratesIo,
}

impl Ecosystem {
    /// OSV's name for the ecosystem.
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Npm => "npm",
            Ecosystem::PyPI => "PyPI",
            Ecosystem::Go => "Go",
            Ecosystem::CratesIo => "crates.io",
        }
    }
}

impl std::fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One dependency as a file declares it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dependency {
    pub ecosystem: Ecosystem,
    /// The package name: npm's as written, PyPI's normalized (PEP 503), the Go module path,
    /// the crate name.
    pub name: String,
    /// An exact version, except for `package.json`, whose ranges are reported as written.
    pub version: String,
    /// 1-based line in the file where it is declared (what a review comment should point at).
    pub line: u64,
}

/// The formats [`parse`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DepFile {
    /// `package-lock.json` (lockfile v1, v2, v3) or `npm-shrinkwrap.json` (the same format).
    PackageLock,
    PackageJson,
    /// A pip requirements file.
    Requirements,
    PyProject,
    GoMod,
    CargoLock,
}

impl DepFile {
    pub fn ecosystem(self) -> Ecosystem {
        match self {
            DepFile::PackageLock | DepFile::PackageJson => Ecosystem::Npm,
            DepFile::Requirements | DepFile::PyProject => Ecosystem::PyPI,
            DepFile::GoMod => Ecosystem::Go,
            DepFile::CargoLock => Ecosystem::CratesIo,
        }
    }
}

/// Why a dependency file could not be read. Each names the file; line numbers are 1-based.
#[derive(Debug, thiserror::Error)]
pub enum DepError {
    #[error("{path}: not a dependency file Plumbline reads")]
    Unsupported { path: String },
    #[error("{path}: {size} bytes, over the {limit}-byte limit for a dependency file")]
    TooLarge {
        path: String,
        size: usize,
        limit: usize,
    },
    #[error("{path}: not UTF-8: {source}")]
    NotUtf8 {
        path: String,
        #[source]
        source: std::str::Utf8Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: invalid TOML: {source}")]
    Toml {
        path: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A requirement that is not PEP 508 (`requirements.txt`, `pyproject.toml`); the source is
    /// the version parser's error when the version is what is wrong.
    #[error("{path}: line {line}: invalid requirement {text:?}: {what}")]
    Requirement {
        path: String,
        line: u64,
        text: String,
        what: String,
        #[source]
        source: Option<pep440_rs::VersionParseError>,
    },
    /// Well-formed syntax that is not what the format allows there.
    #[error("{path}: line {line}: {what}")]
    Malformed {
        path: String,
        line: u64,
        what: String,
    },
    /// Like [`DepError::Malformed`], for what no single line is to blame.
    #[error("{path}: {what}")]
    Invalid { path: String, what: String },
}

/// Which parser a path gets, by its file name (in any directory; paths use `/`). `None` for
/// other files and for anything under a `node_modules/` directory.
///
/// Requirements files: `requirements.txt`, `requirements<sep>*.txt` and `*<sep>requirements.txt`
/// (`<sep>` one of `-`, `_`, `.`: `requirements-dev.txt`, `dev-requirements.txt`), and any
/// `.txt` directly in a `requirements/` directory (`requirements/base.txt`), the common
/// layouts; `requirements.in`, constraints files and other `.txt` files are not read.
/// Names are matched case-sensitively, as npm, Go and Cargo name their files.
pub fn kind_of(path: &str) -> Option<DepFile> {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let file = segments.next_back()?;
    let dir = segments.next_back();
    if path.split('/').any(|s| s == "node_modules") {
        return None;
    }
    Some(match file {
        "package-lock.json" | "npm-shrinkwrap.json" => DepFile::PackageLock,
        "package.json" => DepFile::PackageJson,
        "pyproject.toml" => DepFile::PyProject,
        "go.mod" => DepFile::GoMod,
        "Cargo.lock" => DepFile::CargoLock,
        f if is_requirements_file(dir, f) => DepFile::Requirements,
        _ => return None,
    })
}

fn is_requirements_file(dir: Option<&str>, file: &str) -> bool {
    let Some(stem) = file.strip_suffix(".txt") else {
        return false;
    };
    let sep = |c: char| matches!(c, '-' | '_' | '.');
    stem == "requirements"
        || dir == Some("requirements")
        || stem
            .strip_prefix("requirements")
            .is_some_and(|rest| rest.starts_with(sep))
        || stem
            .strip_suffix("requirements")
            .is_some_and(|rest| rest.ends_with(sep))
}

/// The dependencies `contents` declares, in file order, for the format [`kind_of`] gives
/// `path`. A leading UTF-8 byte-order mark is ignored.
pub fn parse(path: &str, contents: &[u8]) -> Result<Vec<Dependency>, DepError> {
    let kind = kind_of(path).ok_or_else(|| DepError::Unsupported {
        path: path.to_string(),
    })?;
    if contents.len() > MAX_FILE_BYTES {
        return Err(DepError::TooLarge {
            path: path.to_string(),
            size: contents.len(),
            limit: MAX_FILE_BYTES,
        });
    }
    let text = std::str::from_utf8(contents).map_err(|source| DepError::NotUtf8 {
        path: path.to_string(),
        source,
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut deps = match kind {
        DepFile::PackageLock => npm_lock::parse(path, text)?,
        DepFile::PackageJson => package_json::parse(path, text)?,
        DepFile::Requirements => requirements::parse(path, text)?,
        DepFile::PyProject => pyproject::parse(path, text)?,
        DepFile::GoMod => gomod::parse(path, text)?,
        DepFile::CargoLock => cargo_lock::parse(path, text)?,
    };
    deps.sort_by_key(|d| d.line);
    Ok(deps)
}

/// What `head` declares that `base` did not: a dependency whose (ecosystem, name, version) is
/// nowhere in `base` (a new name, or a name `base` had with other versions only), each with its
/// head line. Removed and unchanged dependencies are not reported; a name and version declared
/// more than once in `head` (a lockfile's nested copies) is reported once, at its first
/// occurrence. For a file that `base` did not have, pass an empty `base`: every head
/// dependency is reported.
pub fn added_or_changed(base: &[Dependency], head: &[Dependency]) -> Vec<Dependency> {
    let known: HashSet<(Ecosystem, &str, &str)> = base
        .iter()
        .map(|d| (d.ecosystem, d.name.as_str(), d.version.as_str()))
        .collect();
    let mut seen = HashSet::new();
    head.iter()
        .filter(|d| {
            let key = (d.ecosystem, d.name.as_str(), d.version.as_str());
            !known.contains(&key) && seen.insert(key)
        })
        .cloned()
        .collect()
}

/// The version an npm range spec pins exactly (`1.2.3`, `=1.2.3`, `v1.2.3`, `=v1.2.3`, with
/// prerelease and build parts), else `None` (ranges, tags, URLs, aliases, partial versions).
///
/// `package.json` dependencies are reported with their spec as written; this is for the
/// vulnerability check to tell the specs it can look up as versions from those it cannot.
pub fn exact_version(spec: &str) -> Option<String> {
    let s = spec.trim();
    let s = s.strip_prefix('=').map_or(s, str::trim_start);
    let s = s.strip_prefix('v').unwrap_or(s);
    semver::Version::parse(s).ok().map(|v| v.to_string())
}

/// PEP 503 normalization of a Python package name: lowercase, each run of `-`, `_` and `.`
/// one `-`.
pub fn normalize_pypi_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// Byte offsets to 1-based line numbers.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    fn line(&self, offset: usize) -> u64 {
        self.starts.partition_point(|&s| s <= offset) as u64
    }
}

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod tests {
    use super::test_support::{fixture, mangle};
    use super::*;

    fn dep(eco: Ecosystem, name: &str, version: &str, line: u64) -> Dependency {
        Dependency {
            ecosystem: eco,
            name: name.into(),
            version: version.into(),
            line,
        }
    }

    #[test]
    fn files_are_recognised_by_name_in_any_directory() {
        let cases = [
            ("package-lock.json", Some(DepFile::PackageLock)),
            ("web/npm-shrinkwrap.json", Some(DepFile::PackageLock)),
            ("a/b/package.json", Some(DepFile::PackageJson)),
            ("requirements.txt", Some(DepFile::Requirements)),
            ("svc/requirements-dev.txt", Some(DepFile::Requirements)),
            ("dev-requirements.txt", Some(DepFile::Requirements)),
            ("requirements_test.txt", Some(DepFile::Requirements)),
            ("requirements/base.txt", Some(DepFile::Requirements)),
            ("x/requirements/prod.txt", Some(DepFile::Requirements)),
            ("pyproject.toml", Some(DepFile::PyProject)),
            ("tools/go.mod", Some(DepFile::GoMod)),
            ("Cargo.lock", Some(DepFile::CargoLock)),
            ("requirements.in", None),
            ("myrequirements.txt", None),
            ("requirementsfoo.txt", None),
            ("docs/notes.txt", None),
            ("go.sum", None),
            ("cargo.lock", None),
            ("Cargo.toml", None),
            ("package.json.bak", None),
            ("node_modules/lodash/package.json", None),
            ("web/node_modules/a/package-lock.json", None),
            ("", None),
            ("dir/", None),
        ];
        for (path, want) in cases {
            assert_eq!(kind_of(path), want, "{path}");
        }
        assert_eq!(DepFile::GoMod.ecosystem(), Ecosystem::Go);
    }

    #[test]
    fn ecosystems_are_named_as_osv_names_them() {
        for (e, s) in [
            (Ecosystem::Npm, "npm"),
            (Ecosystem::PyPI, "PyPI"),
            (Ecosystem::Go, "Go"),
            (Ecosystem::CratesIo, "crates.io"),
        ] {
            assert_eq!(e.as_str(), s);
            assert_eq!(serde_json::to_value(e).unwrap(), serde_json::json!(s));
        }
    }

    #[test]
    fn added_or_changed_reports_new_and_bumped_only() {
        let npm = Ecosystem::Npm;
        let base = vec![
            dep(npm, "kept", "1.0.0", 3),
            dep(npm, "bumped", "1.0.0", 4),
            dep(npm, "removed", "2.0.0", 5),
        ];
        let head = vec![
            dep(npm, "kept", "1.0.0", 3),
            dep(npm, "bumped", "1.0.1", 4),
            dep(npm, "new", "0.1.0", 9),
            dep(npm, "new", "0.1.0", 20),
        ];
        assert_eq!(
            added_or_changed(&base, &head),
            vec![dep(npm, "bumped", "1.0.1", 4), dep(npm, "new", "0.1.0", 9)]
        );
        // A file base did not have: everything, once per name and version.
        assert_eq!(added_or_changed(&[], &head).len(), 3);
        // Same name and version in another ecosystem is another package.
        let other = vec![dep(Ecosystem::PyPI, "kept", "1.0.0", 1)];
        assert_eq!(added_or_changed(&base, &other), other);
        // A second version of a name base has is a change.
        let two = vec![dep(npm, "kept", "1.0.0", 3), dep(npm, "kept", "2.0.0", 8)];
        assert_eq!(
            added_or_changed(&base, &two),
            vec![dep(npm, "kept", "2.0.0", 8)]
        );
    }

    #[test]
    fn added_or_changed_between_real_lockfile_revisions() {
        // v1 and v3 lockfiles of the same install: nothing changed but the format.
        let v1 = parse("package-lock.json", &fixture("npm/v1/package-lock.json")).unwrap();
        let v3 = parse("package-lock.json", &fixture("npm/v3/package-lock.json")).unwrap();
        assert!(added_or_changed(&v1, &v3).is_empty());
        // Bump one package in the text: exactly that one is reported, at its line.
        let text = String::from_utf8(fixture("npm/v3/package-lock.json")).unwrap();
        let bumped = text.replacen(
            "\"node_modules/left-pad\": {\n      \"version\": \"1.1.0\"",
            "\"node_modules/left-pad\": {\n      \"version\": \"1.1.1\"",
            1,
        );
        assert_ne!(bumped, text);
        let head = parse("package-lock.json", bumped.as_bytes()).unwrap();
        let changed = added_or_changed(&v3, &head);
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(changed[0].name, "left-pad");
        assert_eq!(changed[0].version, "1.1.1");
        let line = bumped.lines().nth(changed[0].line as usize - 1).unwrap();
        assert!(line.contains("\"node_modules/left-pad\""), "{line}");
    }

    #[test]
    fn exact_versions_of_npm_specs() {
        for (spec, want) in [
            ("1.2.3", Some("1.2.3")),
            ("=1.2.3", Some("1.2.3")),
            ("v1.2.3", Some("1.2.3")),
            ("= v1.2.3", Some("1.2.3")),
            (" 1.2.3 ", Some("1.2.3")),
            ("1.2.3-beta.1+build.5", Some("1.2.3-beta.1+build.5")),
            ("^1.2.3", None),
            ("~1.2.3", None),
            (">=1.2.3", None),
            ("1.2", None),
            ("1.2.x", None),
            ("*", None),
            ("latest", None),
            ("", None),
            ("1.2.3 - 2.0.0", None),
            ("1.2.3 || 2.0.0", None),
            ("npm:lodash@4.17.21", None),
            ("git+https://github.com/a/b.git#v1.2.3", None),
            ("file:../x", None),
        ] {
            assert_eq!(exact_version(spec).as_deref(), want, "{spec:?}");
        }
    }

    #[test]
    fn pypi_names_are_normalized() {
        assert_eq!(normalize_pypi_name("Flask"), "flask");
        assert_eq!(normalize_pypi_name("zope.interface"), "zope-interface");
        assert_eq!(normalize_pypi_name("A__b-._C"), "a-b-c");
        assert_eq!(
            normalize_pypi_name("typing_extensions"),
            "typing-extensions"
        );
    }

    #[test]
    fn unknown_oversized_and_non_utf8_files_are_errors() {
        let e = parse("README.md", b"x").unwrap_err();
        assert!(matches!(e, DepError::Unsupported { .. }), "{e}");
        let big = vec![b' '; MAX_FILE_BYTES + 1];
        let e = parse("package.json", &big).unwrap_err();
        assert!(matches!(e, DepError::TooLarge { .. }), "{e}");
        assert!(e.to_string().starts_with("package.json: "), "{e}");
        let e = parse("go.mod", b"module x\nrequire a v1.0.0 \xff\n").unwrap_err();
        assert!(matches!(e, DepError::NotUtf8 { .. }), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn errors_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<DepError>();
        send_sync::<Dependency>();
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let deps = parse(
            "package.json",
            b"\xef\xbb\xbf{\"dependencies\": {\"a\": \"1.0.0\"}}",
        )
        .unwrap();
        assert_eq!(deps, vec![dep(Ecosystem::Npm, "a", "1.0.0", 1)]);
    }

    #[test]
    fn line_index_counts_from_one() {
        let idx = LineIndex::new("ab\ncd\n\ne");
        assert_eq!(
            [0, 2, 3, 5, 6, 7, 100].map(|o| idx.line(o)),
            [1, 1, 2, 2, 3, 4, 4]
        );
    }

    /// Every parser on mangled real fixtures and on random bytes: an answer or an error,
    /// never a panic, and every error displays (with its sources).
    #[test]
    fn no_input_panics_any_parser() {
        let cases = [
            ("package-lock.json", "npm/v3/package-lock.json"),
            ("package-lock.json", "npm/v1/package-lock.json"),
            ("package.json", "npm/v3/package.json"),
            ("requirements.txt", "python/requirements.txt"),
            ("requirements.txt", "python/edge-requirements.txt"),
            ("pyproject.toml", "python/poetry-2.1.3/pyproject.toml"),
            ("pyproject.toml", "python/poetry-1.8.3/pyproject.toml"),
            ("go.mod", "go/prometheus-client_golang/go.mod"),
            ("go.mod", "go/edge/go.mod"),
            ("Cargo.lock", "cargo/Cargo.lock"),
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for (name, fx) in cases {
            let original = fixture(fx);
            for round in 0..300 {
                let input = mangle(&original, &mut seed, round);
                match parse(name, &input) {
                    Ok(deps) => {
                        for d in deps {
                            assert!(d.line >= 1, "{fx} round {round}: {d:?}");
                        }
                    }
                    Err(e) => {
                        let mut err: Option<&dyn std::error::Error> = Some(&e);
                        while let Some(x) = err {
                            assert!(!x.to_string().is_empty());
                            err = x.source();
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = |open: &str, n| open.repeat(n);
        for (name, text) in [
            ("package.json", deep("[", 100_000)),
            (
                "package-lock.json",
                format!("{{\"a\":{}", deep("{\"b\":", 100_000)),
            ),
            ("pyproject.toml", format!("a = {}", deep("[", 100_000))),
            ("Cargo.lock", format!("a = {}", deep("{b=", 100_000))),
        ] {
            assert!(parse(name, text.as_bytes()).is_err(), "{name}");
        }
    }
}
