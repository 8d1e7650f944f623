//! `package-lock.json` and `npm-shrinkwrap.json`: every package the lockfile installs from the
//! registry.
//!
//! - Lockfile v2 and v3: the `packages` map, keyed by install path. A key's package is the name
//!   after its last `node_modules/` (`node_modules/a/node_modules/@s/b` is `@s/b`), or the
//!   entry's `name` when it has one (an alias `"x": "npm:y@1"` installs `y` at
//!   `node_modules/x`). Skipped: the root `""` entry and other keys outside `node_modules/`
//!   (workspace folders), `link: true` entries (symlinks to those folders), entries without a
//!   `version`, and entries `resolved` from anything but an `http(s)` tarball (git, `file:`),
//!   whose version is no registry version.
//! - Lockfile v1 (and a v2 file without `packages`): the `dependencies` map, recursively
//!   through each entry's own `dependencies`. An alias's version `npm:y@1.2.3` is package `y`,
//!   version `1.2.3`; a version that is a URL or path (`git+…`, `file:…`) is skipped.
//!
//! Versions are the installed (exact) versions. Each package's line is the line of its key in
//! the text: `"node_modules/<path>": {` in `packages`, or the `"<name>": {` key at its nesting
//! in v1 `dependencies` (see [`super::json_lines`]); a nested package installed in several
//! places is reported once per place.

use super::json_lines::{key_lines, KeyPath};
use super::{DepError, Dependency, Ecosystem};
use serde_json::{Map, Value};
use std::collections::HashMap;

pub(super) fn parse(path: &str, text: &str) -> Result<Vec<Dependency>, DepError> {
    let doc: Value = serde_json::from_str(text).map_err(|source| DepError::Json {
        path: path.to_string(),
        source,
    })?;
    let Value::Object(doc) = doc else {
        return Err(DepError::Invalid {
            path: path.to_string(),
            what: "a lockfile is a JSON object".into(),
        });
    };
    match doc.get("lockfileVersion") {
        None => {}
        Some(v) if v.as_u64().is_some_and(|v| (1..=3).contains(&v)) => {}
        Some(v) => {
            return Err(DepError::Invalid {
                path: path.to_string(),
                what: format!("lockfileVersion {v} is not one Plumbline reads (1, 2, 3)"),
            })
        }
    }
    let section = |name: &str| -> Result<Option<&Map<String, Value>>, DepError> {
        match doc.get(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(DepError::Invalid {
                path: path.to_string(),
                what: format!("`{name}` is not an object"),
            }),
        }
    };
    if let Some(packages) = section("packages")? {
        let lines = key_lines(text, |p| {
            p.len() == 2 && p.first() == Some(&Some("packages"))
        })
        .ok_or_else(|| super::json_lines::too_many_keys(path))?;
        packages_v2(path, packages, &lines)
    } else if let Some(deps) = section("dependencies")? {
        let lines = key_lines(text, |p| {
            p.len() % 2 == 0 && p.iter().step_by(2).all(|s| *s == Some("dependencies"))
        })
        .ok_or_else(|| super::json_lines::too_many_keys(path))?;
        let mut out = Vec::new();
        let mut key = vec![Some("dependencies".to_string())];
        dependencies_v1(path, deps, &lines, &mut key, &mut out)?;
        Ok(out)
    } else {
        Ok(Vec::new())
    }
}

fn line_of(path: &str, lines: &HashMap<KeyPath, u64>, key: &KeyPath) -> Result<u64, DepError> {
    lines.get(key).copied().ok_or_else(|| DepError::Invalid {
        path: path.to_string(),
        what: format!("key {key:?} was parsed but not found in the text"),
    })
}

fn packages_v2(
    path: &str,
    packages: &Map<String, Value>,
    lines: &HashMap<KeyPath, u64>,
) -> Result<Vec<Dependency>, DepError> {
    let mut out = Vec::new();
    for (key, entry) in packages {
        let Some(idx) = key.rfind("node_modules/") else {
            continue; // the root package, workspace folders
        };
        if !(idx == 0 || key[..idx].ends_with('/')) {
            continue;
        }
        let Some(entry) = entry.as_object() else {
            continue;
        };
        if entry.get("link").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let Some(version) = entry.get("version").and_then(Value::as_str) else {
            continue;
        };
        if entry
            .get("resolved")
            .and_then(Value::as_str)
            .is_some_and(|r| !(r.starts_with("https://") || r.starts_with("http://")))
        {
            continue;
        }
        let name = entry
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&key[idx + "node_modules/".len()..]);
        if name.is_empty() {
            continue;
        }
        let line = line_of(
            path,
            lines,
            &vec![Some("packages".to_string()), Some(key.clone())],
        )?;
        out.push(Dependency {
            ecosystem: Ecosystem::Npm,
            name: name.to_string(),
            version: version.to_string(),
            line,
        });
    }
    Ok(out)
}

/// v1's `dependencies`, depth first; `key` is the path of the map being read.
fn dependencies_v1(
    path: &str,
    deps: &Map<String, Value>,
    lines: &HashMap<KeyPath, u64>,
    key: &mut KeyPath,
    out: &mut Vec<Dependency>,
) -> Result<(), DepError> {
    for (name, entry) in deps {
        let Some(entry) = entry.as_object() else {
            continue;
        };
        key.push(Some(name.clone()));
        if let Some(version) = entry.get("version").and_then(Value::as_str) {
            let (name, version) = match version.strip_prefix("npm:") {
                // An alias: `npm:<name>@<version>`, the name possibly scoped (`@s/y@1.0.0`).
                Some(alias) => match alias.rsplit_once('@') {
                    Some((n, v)) if !n.is_empty() => (n, v),
                    _ => (name.as_str(), ""),
                },
                None => (name.as_str(), version),
            };
            if !version.is_empty() && !version.contains(':') {
                out.push(Dependency {
                    ecosystem: Ecosystem::Npm,
                    name: name.to_string(),
                    version: version.to_string(),
                    line: line_of(path, lines, key)?,
                });
            }
        }
        match entry.get("dependencies") {
            Some(Value::Object(nested)) => {
                key.push(Some("dependencies".to_string()));
                // serde_json's recursion limit (128) bounds the depth of this recursion.
                dependencies_v1(path, nested, lines, key, out)?;
                key.pop();
            }
            None => {}
            Some(_) => {
                return Err(DepError::Invalid {
                    path: path.to_string(),
                    what: format!("`dependencies` of {name:?} is not an object"),
                })
            }
        }
        key.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_declared, fixture, fixture_text};
    use super::super::{parse, DepError, Ecosystem};

    fn find<'a>(deps: &'a [super::Dependency], name: &str) -> Vec<&'a super::Dependency> {
        deps.iter().filter(|d| d.name == name).collect()
    }

    #[test]
    fn lockfile_v3_from_npm() {
        let fx = "npm/v3/package-lock.json";
        let text = fixture_text(fx);
        let deps = parse("package-lock.json", text.as_bytes()).unwrap();
        assert!(deps.iter().all(|d| d.ecosystem == Ecosystem::Npm));
        assert_eq!(deps.len(), text.matches("\"node_modules/").count());
        for d in &deps {
            assert_declared(&text, d, "\"node_modules/");
        }
        let lodash = find(&deps, "lodash");
        assert_eq!(lodash.len(), 1);
        assert_eq!(lodash[0].version, "4.17.20");
        assert_declared(&text, lodash[0], "\"node_modules/lodash\": {");
        // The nested copy of ms under send, and the top-level one: both, each at its key.
        let ms = find(&deps, "ms");
        assert_eq!(ms.len(), 2, "{ms:?}");
        assert!(ms.iter().any(|d| text
            .lines()
            .nth(d.line as usize - 1)
            .is_some_and(|l| l.contains("\"node_modules/send/node_modules/ms\""))));
        // The alias string-width-cjs installs string-width.
        let sw = find(&deps, "string-width");
        assert!(sw.iter().any(|d| text
            .lines()
            .nth(d.line as usize - 1)
            .is_some_and(|l| l.contains("\"node_modules/string-width-cjs\""))));
        assert!(find(&deps, "string-width-cjs").is_empty());
        assert!(find(&deps, "").is_empty() && find(&deps, "v3").is_empty());
        // Dev dependencies are installed packages too.
        assert_eq!(find(&deps, "typescript")[0].version, "5.4.5");
    }

    #[test]
    fn lockfile_v2_and_v1_from_npm_agree_with_v3() {
        let names = |fx: &str| {
            let mut v: Vec<(String, String)> = parse("package-lock.json", &fixture(fx))
                .unwrap()
                .into_iter()
                .map(|d| (d.name, d.version))
                .collect();
            v.sort();
            v
        };
        let v3 = names("npm/v3/package-lock.json");
        assert_eq!(names("npm/v2/package-lock.json"), v3);
        assert_eq!(names("npm/v1/package-lock.json"), v3);
    }

    #[test]
    fn lockfile_v1_lines_are_the_keys_at_their_nesting() {
        let fx = "npm/v1/package-lock.json";
        let text = fixture_text(fx);
        let deps = parse("package-lock.json", text.as_bytes()).unwrap();
        for d in &deps {
            let line = text.lines().nth(d.line as usize - 1).unwrap();
            assert!(
                line.trim_start().starts_with('"') && line.ends_with(": {"),
                "{line}"
            );
        }
        let ms = find(&deps, "ms");
        assert_eq!(ms.len(), 2);
        // The nested ms is indented deeper than the top-level one.
        let indents: Vec<usize> = ms
            .iter()
            .map(|d| {
                let l = text.lines().nth(d.line as usize - 1).unwrap();
                l.len() - l.trim_start().len()
            })
            .collect();
        assert_ne!(indents[0], indents[1]);
        let sw = find(&deps, "string-width");
        assert!(sw.iter().any(|d| text
            .lines()
            .nth(d.line as usize - 1)
            .is_some_and(|l| l.contains("\"string-width-cjs\": {"))));
    }

    #[test]
    fn links_workspaces_git_and_escaped_keys() {
        let text = r#"{
  "lockfileVersion": 3,
  "packages": {
    "": {"name": "root", "version": "1.0.0"},
    "packages/app": {"name": "app", "version": "0.1.0"},
    "node_modules/app": {"resolved": "packages/app", "link": true},
    "node_modules/from-git": {"version": "1.0.0", "resolved": "git+ssh://git@github.com/a/b.git#abc"},
    "node_modules/@scope\/pkg": {"version": "2.0.0", "resolved": "https://registry.npmjs.org/@scope/pkg/-/pkg-2.0.0.tgz"},
    "packages/app/node_modules/@scope/inner": {"version": "3.0.0"},
    "node_modules/no-version": {}
  }
}"#;
        let deps = parse("package-lock.json", text.as_bytes()).unwrap();
        let got: Vec<(&str, &str, u64)> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.version.as_str(), d.line))
            .collect();
        assert_eq!(
            got,
            vec![("@scope/pkg", "2.0.0", 8), ("@scope/inner", "3.0.0", 9)]
        );
    }

    #[test]
    fn malformed_lockfiles_are_errors() {
        let text = fixture_text("npm/v3/package-lock.json");
        let truncated = &text[..text.len() / 2];
        let e = parse("web/package-lock.json", truncated.as_bytes()).unwrap_err();
        assert!(matches!(e, DepError::Json { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("web/package-lock.json: invalid JSON: "),
            "{e}"
        );
        let e = parse(
            "package-lock.json",
            &fixture("npm/malformed/package-lock.json"),
        )
        .unwrap_err();
        assert!(matches!(e, DepError::Json { .. }), "{e}");
        for (text, want) in [
            ("[]", "a lockfile is a JSON object"),
            (r#"{"lockfileVersion": 9}"#, "lockfileVersion 9"),
            (r#"{"packages": []}"#, "`packages` is not an object"),
            (
                r#"{"dependencies": {"a": {"version": "1.0.0", "dependencies": 3}}}"#,
                "`dependencies` of \"a\" is not an object",
            ),
        ] {
            let e = parse("package-lock.json", text.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
        assert!(parse("package-lock.json", b"{}").unwrap().is_empty());
    }
}
