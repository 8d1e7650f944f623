//! `Cargo.lock`: every locked package that comes from crates.io.
//!
//! Each `[[package]]` with a `name`, a `version` and a crates.io `source`
//! (`registry+https://github.com/rust-lang/crates.io-index`, or crates.io's sparse index
//! `sparse+https://index.crates.io/`) is reported. Workspace and path packages (no `source`),
//! git packages and packages of other registries are not: their names are not crates.io's, so
//! crates.io advisories do not apply to them. Any lockfile version (1 to 4) reads the same way.
//! A package's line is the line of its `name = "…"`, from `toml`'s spanned document.

use super::{DepError, Dependency, Ecosystem, LineIndex};
use toml::de::{DeTable, DeValue};

const CRATES_IO: [&str; 2] = [
    "registry+https://github.com/rust-lang/crates.io-index",
    "sparse+https://index.crates.io/",
];

pub(super) fn parse(path: &str, text: &str) -> Result<Vec<Dependency>, DepError> {
    let doc = DeTable::parse(text).map_err(|source| DepError::Toml {
        path: path.to_string(),
        source: Box::new(source),
    })?;
    let lines = LineIndex::new(text);
    let Some((_, packages)) = doc
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == "package")
    else {
        return Ok(Vec::new());
    };
    let Some(packages) = packages.get_ref().as_array() else {
        return Err(DepError::Malformed {
            path: path.to_string(),
            line: lines.line(packages.span().start),
            what: "`package` is not an array of tables".into(),
        });
    };
    let mut out = Vec::new();
    for package in packages.iter() {
        let Some(table) = package.get_ref().as_table() else {
            return Err(DepError::Malformed {
                path: path.to_string(),
                line: lines.line(package.span().start),
                what: "a `package` entry is not a table".into(),
            });
        };
        let field = |name: &str| {
            table
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == name)
                .map(|(_, v)| v)
        };
        let string = |v: &toml::Spanned<DeValue<'_>>| v.get_ref().as_str().map(str::to_string);
        let from_crates_io = field("source")
            .and_then(string)
            .is_some_and(|s| CRATES_IO.contains(&s.as_str()));
        if !from_crates_io {
            continue;
        }
        let (Some(name), Some(version)) = (field("name"), field("version").and_then(string)) else {
            return Err(DepError::Malformed {
                path: path.to_string(),
                line: lines.line(package.span().start),
                what: "a crates.io package without a name or version".into(),
            });
        };
        let Some(name_str) = string(name) else {
            return Err(DepError::Malformed {
                path: path.to_string(),
                line: lines.line(name.span().start),
                what: "a package name that is not a string".into(),
            });
        };
        out.push(Dependency {
            ecosystem: Ecosystem::CratesIo,
            name: name_str,
            version,
            line: lines.line(name.span().start),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_declared, fixture, fixture_text};
    use super::super::{parse, DepError, Ecosystem};

    #[test]
    fn lockfile_of_prost_build() {
        let text = fixture_text("cargo/Cargo.lock");
        let deps = parse("Cargo.lock", text.as_bytes()).unwrap();
        assert!(deps.iter().all(|d| d.ecosystem == Ecosystem::CratesIo));
        // Every package but the root one (prost-build itself, which has no source).
        assert_eq!(deps.len(), text.matches("[[package]]").count() - 1);
        assert!(!deps.iter().any(|d| d.name == "prost-build"));
        for d in &deps {
            assert_declared(&text, d, &format!("name = \"{}\"", d.name));
            let next = text.lines().nth(d.line as usize).unwrap();
            assert_eq!(next, format!("version = \"{}\"", d.version));
        }
        let anyhow = deps.iter().find(|d| d.name == "anyhow").unwrap();
        assert_eq!(anyhow.version, "1.0.102");
    }

    #[test]
    fn only_crates_io_packages() {
        let text = r#"version = 4

[[package]]
name = "app"
version = "0.1.0"

[[package]]
name = "serde"
version = "1.0.200"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "00"

[[package]]
name = "forked"
version = "0.2.0"
source = "git+https://github.com/a/forked?branch=main#0123abc"

[[package]]
name = "internal"
version = "1.0.0"
source = "sparse+https://cargo.example.com/index/"

[[package]]
version = "2.0.0"
source = "sparse+https://index.crates.io/"
name = "sparse-one"
"#;
        let deps = parse("Cargo.lock", text.as_bytes()).unwrap();
        let got: Vec<(&str, &str, u64)> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.version.as_str(), d.line))
            .collect();
        assert_eq!(
            got,
            vec![("serde", "1.0.200", 8), ("sparse-one", "2.0.0", 26)]
        );
        assert!(parse("Cargo.lock", b"version = 4\n").unwrap().is_empty());
    }

    #[test]
    fn malformed_lockfiles_are_errors() {
        let e = parse("Cargo.lock", &fixture("cargo/malformed/Cargo.lock")).unwrap_err();
        assert!(matches!(e, DepError::Toml { .. }), "{e}");
        assert!(
            e.to_string().starts_with("Cargo.lock: invalid TOML: "),
            "{e}"
        );
        for (text, want) in [
            ("package = 3\n", "line 1: `package` is not an array of tables"),
            ("package = [1]\n", "line 1: a `package` entry is not a table"),
            (
                "[[package]]\nname = \"a\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
                "line 1: a crates.io package without a name or version",
            ),
            (
                "[[package]]\nname = 1\nversion = \"1\"\nsource = \"sparse+https://index.crates.io/\"\n",
                "line 2: a package name that is not a string",
            ),
        ] {
            let e = parse("Cargo.lock", text.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
    }
}
