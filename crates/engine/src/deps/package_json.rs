//! `package.json`: the packages a project asks for in `dependencies`, `devDependencies`,
//! `optionalDependencies` and `peerDependencies`.
//!
//! The version is the spec as written (`^4.17.1`, `4.17.1`, `npm:y@1`, a URL): a manifest
//! declares ranges, and which version a range resolves to is the lockfile's business. The
//! vulnerability check decides what to do with a range; [`super::exact_version`] tells it the
//! specs that pin one version. A name in several sections is reported once per section. A
//! value that is not a string is skipped. Each dependency's line is the line of its key in
//! its section (see [`super::json_lines`]).

use super::json_lines::key_lines;
use super::{DepError, Dependency, Ecosystem};
use serde_json::Value;

const SECTIONS: [&str; 4] = [
    "dependencies",
    "devDependencies",
    "optionalDependencies",
    "peerDependencies",
];

pub(super) fn parse(path: &str, text: &str) -> Result<Vec<Dependency>, DepError> {
    let doc: Value = serde_json::from_str(text).map_err(|source| DepError::Json {
        path: path.to_string(),
        source,
    })?;
    let Value::Object(doc) = doc else {
        return Err(DepError::Invalid {
            path: path.to_string(),
            what: "package.json is a JSON object".into(),
        });
    };
    let lines = key_lines(text, |p| {
        p.len() == 2
            && p.first()
                .is_some_and(|s| SECTIONS.contains(&s.unwrap_or_default()))
    })
    .ok_or_else(|| super::json_lines::too_many_keys(path))?;
    let mut out = Vec::new();
    for section in SECTIONS {
        let deps = match doc.get(section) {
            None => continue,
            Some(Value::Object(deps)) => deps,
            Some(_) => {
                return Err(DepError::Invalid {
                    path: path.to_string(),
                    what: format!("`{section}` is not an object"),
                })
            }
        };
        for (name, spec) in deps {
            let Some(spec) = spec.as_str() else {
                continue;
            };
            let key = vec![Some(section.to_string()), Some(name.clone())];
            let line = lines.get(&key).copied().ok_or_else(|| DepError::Invalid {
                path: path.to_string(),
                what: format!("key {key:?} was parsed but not found in the text"),
            })?;
            out.push(Dependency {
                ecosystem: Ecosystem::Npm,
                name: name.clone(),
                version: spec.to_string(),
                line,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_declared, fixture, fixture_text};
    use super::super::{exact_version, parse, DepError};

    #[test]
    fn manifest_from_npm() {
        let text = fixture_text("npm/v3/package.json");
        let deps = parse("package.json", text.as_bytes()).unwrap();
        let got: Vec<(&str, &str)> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.version.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("express", "^4.17.1"),
                ("left-pad", "^1.1.0"),
                ("lodash", "4.17.20"),
                ("string-width-cjs", "npm:string-width@^4.2.3"),
                ("typescript", "^5.4.5"),
            ]
        );
        for d in &deps {
            assert_declared(&text, d, &format!("\"{}\": \"{}\"", d.name, d.version));
        }
        assert_eq!(exact_version(&deps[2].version).as_deref(), Some("4.17.20"));
        assert_eq!(exact_version(&deps[0].version), None);
    }

    #[test]
    fn every_section_and_only_dependency_sections() {
        let text = r#"{
  "name": "x",
  "scripts": {"lodash": "echo"},
  "peerDependencies": {"react": ">=16"},
  "optionalDependencies": {"fsevents": "2.3.3"},
  "devDependencies": {"jest": "29.7.0", "bad": 5},
  "dependencies": {"lodash": "4.17.21"},
  "overrides": {"lodash": "4.17.20"}
}"#;
        let deps = parse("package.json", text.as_bytes()).unwrap();
        let got: Vec<(&str, &str, u64)> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.version.as_str(), d.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("react", ">=16", 4),
                ("fsevents", "2.3.3", 5),
                ("jest", "29.7.0", 6),
                ("lodash", "4.17.21", 7),
            ]
        );
    }

    #[test]
    fn malformed_manifests_are_errors() {
        let e = parse("app/package.json", &fixture("npm/malformed/package.json")).unwrap_err();
        assert!(matches!(e, DepError::Json { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("app/package.json: invalid JSON: "),
            "{e}"
        );
        let e = parse("package.json", br#"{"dependencies": ["a"]}"#).unwrap_err();
        assert!(
            e.to_string().contains("`dependencies` is not an object"),
            "{e}"
        );
        let e = parse("package.json", b"\"x\"").unwrap_err();
        assert!(matches!(e, DepError::Invalid { .. }), "{e}");
    }
}
