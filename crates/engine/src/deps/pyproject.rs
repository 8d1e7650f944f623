//! `pyproject.toml`: exact pins among the project's declared dependencies.
//!
//! Read: `[project].dependencies` and `[project.optional-dependencies]` (PEP 621),
//! `[dependency-groups]` (PEP 735; `{include-group = …}` entries skipped), and Poetry's
//! `[tool.poetry.dependencies]`, `[tool.poetry.dev-dependencies]` and
//! `[tool.poetry.group.<name>.dependencies]`. `[build-system]` and tool settings are not
//! dependencies of the project and are not read.
//!
//! As for requirements files (see [`super::requirements`]), only pins are reported, since OSV
//! is asked about versions: a PEP 508 string with `==` / `===`, a Poetry constraint that is a
//! bare version (`"1.9.0"`, Poetry's exact pin) or `==` / `=` one version, as a string, in a
//! table's `version`, or in each table of a multiple-constraints array. Poetry's `python`
//! entry and git, path and URL dependencies are not packages to look up. Names are normalized
//! (PEP 503), versions are PEP 440's normal form.
//!
//! The TOML is parsed with `toml`'s spanned document, so lines come from the parser: a PEP 508
//! string's line is the line its string starts on, a Poetry dependency's the line of its key.

use super::requirements::requirement;
use super::{normalize_pypi_name, DepError, Dependency, Ecosystem, LineIndex};
use pep440_rs::Version;
use std::str::FromStr;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

pub(super) fn parse(path: &str, text: &str) -> Result<Vec<Dependency>, DepError> {
    let doc = DeTable::parse(text).map_err(|source| DepError::Toml {
        path: path.to_string(),
        source: Box::new(source),
    })?;
    let doc = doc.get_ref();
    let lines = LineIndex::new(text);
    let mut reader = Reader {
        path,
        lines: &lines,
        out: Vec::new(),
    };

    let project = table(doc, "project");
    if let Some(deps) = project.and_then(|p| get(p, "dependencies")) {
        reader.pep508_list(deps, "project.dependencies")?;
    }
    if let Some(extras) = project.and_then(|p| table(p, "optional-dependencies")) {
        for (extra, deps) in extras.iter() {
            let what = format!("project.optional-dependencies.{}", extra.get_ref());
            reader.pep508_list(deps, &what)?;
        }
    }
    if let Some(groups) = table(doc, "dependency-groups") {
        for (group, deps) in groups.iter() {
            reader.pep508_list(deps, &format!("dependency-groups.{}", group.get_ref()))?;
        }
    }

    let poetry = table(doc, "tool").and_then(|t| table(t, "poetry"));
    if let Some(poetry) = poetry {
        for section in ["dependencies", "dev-dependencies"] {
            if let Some(deps) = table(poetry, section) {
                reader.poetry_table(deps);
            }
        }
        if let Some(groups) = table(poetry, "group") {
            for (_, group) in groups.iter() {
                if let Some(deps) = group
                    .get_ref()
                    .as_table()
                    .and_then(|g| table(g, "dependencies"))
                {
                    reader.poetry_table(deps);
                }
            }
        }
    }
    Ok(reader.out)
}

fn get<'a, 'i>(t: &'a DeTable<'i>, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
    t.iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v)
}

fn table<'a, 'i>(t: &'a DeTable<'i>, key: &str) -> Option<&'a DeTable<'i>> {
    get(t, key).and_then(|v| v.get_ref().as_table())
}

struct Reader<'a> {
    path: &'a str,
    lines: &'a LineIndex,
    out: Vec<Dependency>,
}

impl Reader<'_> {
    /// An array of PEP 508 strings; a string that is not PEP 508 is an error at its line.
    fn pep508_list(&mut self, value: &Spanned<DeValue<'_>>, what: &str) -> Result<(), DepError> {
        let Some(items) = value.get_ref().as_array() else {
            return Err(DepError::Malformed {
                path: self.path.to_string(),
                line: self.lines.line(value.span().start),
                what: format!("{what} is not an array"),
            });
        };
        for item in items.iter() {
            let line = self.lines.line(item.span().start);
            let Some(spec) = item.get_ref().as_str() else {
                continue; // PEP 735's {include-group = "…"}
            };
            let req = requirement(spec).map_err(|e| e.at(self.path, line, spec))?;
            if let Some(version) = req.pin() {
                self.out.push(Dependency {
                    ecosystem: Ecosystem::PyPI,
                    name: req.name,
                    version,
                    line,
                });
            }
        }
        Ok(())
    }

    /// A Poetry dependency table: `name = constraint`, `name = {version = …}`, or an array of
    /// such tables.
    fn poetry_table(&mut self, deps: &DeTable<'_>) {
        for (name, spec) in deps.iter() {
            if name.get_ref().as_ref() == "python" {
                continue;
            }
            let versions: Vec<&str> = match spec.get_ref() {
                DeValue::String(s) => vec![s.as_ref()],
                DeValue::Table(t) => poetry_version(t).into_iter().collect(),
                DeValue::Array(a) => a
                    .iter()
                    .filter_map(|v| v.get_ref().as_table().and_then(poetry_version))
                    .collect(),
                _ => Vec::new(),
            };
            for version in versions.into_iter().filter_map(poetry_pin) {
                self.out.push(Dependency {
                    ecosystem: Ecosystem::PyPI,
                    name: normalize_pypi_name(name.get_ref()),
                    version,
                    line: self.lines.line(name.span().start),
                });
            }
        }
    }
}

/// A dependency table's `version`, unless it comes from git, a path or a URL.
fn poetry_version<'a>(t: &'a DeTable<'_>) -> Option<&'a str> {
    if ["git", "path", "url"].iter().any(|k| get(t, k).is_some()) {
        return None;
    }
    get(t, "version").and_then(|v| v.get_ref().as_str())
}

/// The version a Poetry constraint pins: `1.2.3`, `==1.2.3`, `=1.2.3`.
fn poetry_pin(constraint: &str) -> Option<String> {
    let c = constraint.trim();
    let c = c
        .strip_prefix("==")
        .or_else(|| c.strip_prefix('='))
        .unwrap_or(c)
        .trim();
    if c.is_empty() || !c.starts_with(|ch: char| ch.is_ascii_digit()) {
        return None; // ^, ~, >=, *, a leading `v` Poetry would not take as a pin either
    }
    Version::from_str(c).ok().map(|v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_declared, fixture, fixture_text};
    use super::super::{parse, DepError};
    use super::poetry_pin;

    #[test]
    fn pep621_dependencies_of_poetry_2() {
        let text = fixture_text("python/poetry-2.1.3/pyproject.toml");
        let deps = parse("pyproject.toml", text.as_bytes()).unwrap();
        let got: Vec<(&str, &str)> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.version.as_str()))
            .collect();
        assert_eq!(got, vec![("poetry-core", "2.1.3")]);
        assert_declared(&text, &deps[0], "\"poetry-core (==2.1.3)\",");
    }

    #[test]
    fn poetry_tables_of_poetry_1() {
        let text = fixture_text("python/poetry-1.8.3/pyproject.toml");
        let deps = parse("pyproject.toml", text.as_bytes()).unwrap();
        let got: Vec<(&str, &str)> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.version.as_str()))
            .collect();
        assert_eq!(got, vec![("poetry-core", "1.9.0")]);
        assert_declared(&text, &deps[0], "poetry-core = \"1.9.0\"");
    }

    #[test]
    fn every_section_and_form() {
        let text = r#"[build-system]
requires = ["setuptools==69.0.0"]

[project]
name = "x"
dependencies = [
  "Requests[socks] == 2.31.0 ; python_version >= '3.8'",
  "click>=8",
]

[project.optional-dependencies]
test = ["pytest==8.0.0"]

[dependency-groups]
dev = ["ruff===0.4.0", {include-group = "test"}]

[tool.poetry.dependencies]
python = "3.11"
Zope_Interface = { version = "==5.4.0", extras = ["x"] }
numpy = [
  { version = "1.26.0", python = ">=3.9" },
  { version = "^1.24", python = "<3.9" },
]
gitdep = { git = "https://github.com/a/b.git", version = "1.0.0" }
ranged = "^1.0"

[tool.poetry.dev-dependencies]
black = "=24.1.0"

[tool.poetry.group.docs.dependencies]
sphinx = "7.2.6"
"#;
        let deps = parse("pyproject.toml", text.as_bytes()).unwrap();
        let got: Vec<(&str, &str, u64)> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.version.as_str(), d.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("requests", "2.31.0", 7),
                ("pytest", "8.0.0", 12),
                ("ruff", "0.4.0", 15),
                ("zope-interface", "5.4.0", 19),
                ("numpy", "1.26.0", 20),
                ("black", "24.1.0", 28),
                ("sphinx", "7.2.6", 31),
            ]
        );
    }

    #[test]
    fn poetry_pins() {
        for (c, want) in [
            ("1.2.3", Some("1.2.3")),
            ("==1.2.3", Some("1.2.3")),
            ("= 1.2", Some("1.2")),
            ("1.0.0-RC1", Some("1.0.0rc1")),
            ("^1.2.3", None),
            ("~1.2", None),
            (">=1.2,<2", None),
            ("1.2.*", None),
            ("*", None),
            ("", None),
            ("===1.0", None),
            ("1.2 || 1.3", None),
        ] {
            assert_eq!(poetry_pin(c).as_deref(), want, "{c:?}");
        }
    }

    #[test]
    fn malformed_pyprojects_are_errors() {
        let e = parse(
            "py/pyproject.toml",
            &fixture("python/malformed/pyproject.toml"),
        )
        .unwrap_err();
        assert!(matches!(e, DepError::Toml { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("py/pyproject.toml: invalid TOML: "),
            "{e}"
        );
        let text = fixture_text("python/poetry-2.1.3/pyproject.toml");
        let truncated = &text[..text.find("\"cleo").unwrap()];
        assert!(matches!(
            parse("pyproject.toml", truncated.as_bytes()),
            Err(DepError::Toml { .. })
        ));
        let e = parse("pyproject.toml", b"[project]\ndependencies = \"a==1\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "pyproject.toml: line 2: project.dependencies is not an array"
        );
        let e = parse(
            "pyproject.toml",
            b"[project]\ndependencies = [\n  \"a==1\",\n  \"b=1\",\n]\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("pyproject.toml: line 4: invalid requirement \"b=1\": "),
            "{e}"
        );
    }
}
