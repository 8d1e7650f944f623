//! `go.mod`: the modules a module requires, with its `replace` directives applied.
//!
//! Hand-parsed: the one go.mod parser on crates.io (`gomod-rs` 0.1) is a single early release
//! that knows no `tool` or `ignore` directive and returns what it parsed up to the first thing
//! it does not know without saying where it stopped, so a file it half reads would pass for a
//! complete one. The grammar (<https://go.dev/ref/mod#go-mod-file-grammar>) is line-based and
//! small, and is read here as Go's `modfile` lexes it: `//` comments, identifiers, `"…"` and
//! `` `…` `` strings, `(` `)` blocks opened at the end of a directive's line and closed by a
//! line of their own.
//!
//! Reported: each `require` (single-line or in a block), `// indirect` ones included, with the
//! version as written (`v1.2.3`, pseudo-versions). A `replace` applies to a required module
//! (`old v1 =>` to that version only, and before `old =>`, which applies to all); replaced by
//! another module and version, the dependency is that module at that version, at the line of
//! the `replace` (where what is built is declared); replaced by a directory, it is local code
//! and not reported. Other directives (`module`, `go`, `toolchain`, `godebug`, `exclude`,
//! `retract`, `tool`, `ignore`, and ones Go may add) are read for structure only.
//!
//! Errors, with their line: an unterminated string, a block not closed (or a `)` with none
//! open), a block opened anywhere but at the end of its line, a `require` that is not a
//! module path and a `v` version, a `replace` that is not `old [version] => new [version]`.

use super::{DepError, Dependency, Ecosystem};
use std::collections::HashMap;

/// One `require`: module, version, line.
struct Require {
    module: String,
    version: String,
    line: u64,
}

enum Replacement {
    Module {
        module: String,
        version: String,
        line: u64,
    },
    Directory,
}

pub(super) fn parse(path: &str, text: &str) -> Result<Vec<Dependency>, DepError> {
    let malformed = |line: u64, what: String| DepError::Malformed {
        path: path.to_string(),
        line,
        what,
    };
    let mut requires = Vec::new();
    // (module, Some(version) | None for all versions) → replacement
    let mut replaces: HashMap<(String, Option<String>), Replacement> = HashMap::new();
    let mut block: Option<(String, u64)> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i as u64 + 1;
        let tokens = lex(raw).map_err(|what| malformed(n, what))?;
        let Some(first) = tokens.first() else {
            continue;
        };
        let stmt: (&str, &[String]) = match &block {
            Some((verb, _)) => {
                if first == ")" {
                    if tokens.len() > 1 {
                        return Err(malformed(n, "unexpected tokens after `)`".into()));
                    }
                    block = None;
                    continue;
                }
                (verb.as_str(), &tokens[..])
            }
            None => {
                if first == ")" {
                    return Err(malformed(n, "`)` without an open block".into()));
                }
                if tokens.len() == 2 && tokens[1] == "(" {
                    block = Some((first.clone(), n));
                    continue;
                }
                (first.as_str(), &tokens[1..])
            }
        };
        let (verb, args) = stmt;
        if args.iter().any(|t| t == "(" || t == ")") {
            return Err(malformed(
                n,
                format!("{verb}: a block opens with `(` at the end of its line and closes with `)` on a line of its own"),
            ));
        }
        match verb {
            "require" => match args {
                [module, version] if valid_version(version) => requires.push(Require {
                    module: module.clone(),
                    version: version.clone(),
                    line: n,
                }),
                _ => {
                    return Err(malformed(
                        n,
                        format!("require: want a module path and a version, got {args:?}"),
                    ))
                }
            },
            "replace" => {
                let arrow = args.iter().position(|t| t == "=>");
                let (old, new) = match arrow {
                    Some(a @ (1 | 2)) => (&args[..a], &args[a + 1..]),
                    _ => {
                        return Err(malformed(
                            n,
                            format!(
                                "replace: want `module [version] => replacement`, got {args:?}"
                            ),
                        ))
                    }
                };
                let old_version = match old {
                    [_, v] if valid_version(v) => Some(v.clone()),
                    [_] => None,
                    _ => return Err(malformed(n, format!("replace: invalid version in {old:?}"))),
                };
                let replacement = match new {
                    [dir] => {
                        if !is_directory(dir) {
                            return Err(malformed(
                                n,
                                format!("replace: {dir:?} has no version and is not a directory path"),
                            ));
                        }
                        Replacement::Directory
                    }
                    [module, version] if valid_version(version) => Replacement::Module {
                        module: module.clone(),
                        version: version.clone(),
                        line: n,
                    },
                    _ => {
                        return Err(malformed(
                            n,
                            format!("replace: want a module and version or a directory after `=>`, got {new:?}"),
                        ))
                    }
                };
                replaces.insert((old[0].clone(), old_version), replacement);
            }
            _ => {}
        }
    }
    if let Some((verb, line)) = block {
        return Err(malformed(
            line,
            format!("{verb} block opened here is not closed"),
        ));
    }
    let mut out = Vec::new();
    for r in requires {
        let replacement = replaces
            .get(&(r.module.clone(), Some(r.version.clone())))
            .or_else(|| replaces.get(&(r.module.clone(), None)));
        match replacement {
            None => out.push(Dependency {
                ecosystem: Ecosystem::Go,
                name: r.module,
                version: r.version,
                line: r.line,
            }),
            Some(Replacement::Module {
                module,
                version,
                line,
            }) => out.push(Dependency {
                ecosystem: Ecosystem::Go,
                name: module.clone(),
                version: version.clone(),
                line: *line,
            }),
            Some(Replacement::Directory) => {}
        }
    }
    Ok(out)
}

/// A module version as go.mod writes it: `v` and a digit (`v1.2.3`, `v0.0.0-2022…-abcdef`).
fn valid_version(v: &str) -> bool {
    v.strip_prefix('v')
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// What Go takes as a directory replacement: a rooted or `./` / `../` relative path.
fn is_directory(p: &str) -> bool {
    p.starts_with('/')
        || p.starts_with("./")
        || p.starts_with("../")
        || p == "."
        || p == ".."
        || p.starts_with(".\\")
        || p.starts_with("..\\")
        || p.get(1..3).is_some_and(|s| s == ":\\" || s == ":/")
}

/// The tokens of one line, without its comment: identifiers, strings (unquoted), and the
/// punctuation Go's lexer makes tokens of: `(` `)` `[` `]` `{` `}` `,`.
fn lex(line: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '/' if line[i..].starts_with("//") => break,
            '(' | ')' | '[' | ']' | '{' | '}' | ',' => {
                tokens.push(c.to_string());
                chars.next();
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, e)) => s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                other => other,
                            }),
                            None => break,
                        },
                        c => s.push(c),
                    }
                }
                if !closed {
                    return Err("unterminated string".into());
                }
                tokens.push(s);
            }
            '`' => {
                chars.next();
                let start = i + 1;
                let end = line[start..].find('`').map(|e| start + e);
                let Some(end) = end else {
                    return Err("unterminated raw string".into());
                };
                tokens.push(line[start..end].to_string());
                while chars.next_if(|&(j, _)| j <= end).is_some() {}
            }
            _ => {
                let start = i;
                let mut end = line.len();
                while let Some(&(j, c)) = chars.peek() {
                    if c.is_whitespace() || "()[]{},".contains(c) {
                        end = j;
                        break;
                    }
                    chars.next();
                }
                tokens.push(line[start..end].to_string());
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_declared, fixture, fixture_text};
    use super::super::{parse, DepError, Ecosystem};
    use super::lex;

    fn triples(path: &str, text: &str) -> Vec<(String, String, u64)> {
        parse(path, text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|d| (d.name, d.version, d.line))
            .collect()
    }

    #[test]
    fn go_mod_of_prometheus_client_golang() {
        let text = fixture_text("go/prometheus-client_golang/go.mod");
        let deps = parse("go.mod", text.as_bytes()).unwrap();
        assert!(deps.iter().all(|d| d.ecosystem == Ecosystem::Go));
        assert_eq!(deps.len(), 20);
        for d in &deps {
            assert_declared(&text, d, &format!("\t{} {}", d.name, d.version));
        }
        let sys = deps.iter().find(|d| d.name == "golang.org/x/sys").unwrap();
        assert_eq!(sys.version, "v0.0.0-20220520151302-bc2c85ada10a");
        let backoff = deps
            .iter()
            .find(|d| d.name == "github.com/jpillora/backoff")
            .unwrap();
        assert_declared(&text, backoff, "// indirect");
        // `exclude` names a version that is not required.
        assert!(!deps
            .iter()
            .any(|d| d.name == "github.com/prometheus/client_golang"));
    }

    #[test]
    fn go_mod_of_cobra() {
        let got = triples("go.mod", &fixture_text("go/spf13-cobra/go.mod"));
        assert_eq!(
            got[0],
            (
                "github.com/cpuguy83/go-md2man/v2".to_string(),
                "v2.0.2".to_string(),
                6
            )
        );
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn replace_strings_tools_and_single_line_requires() {
        let text = fixture_text("go/edge/go.mod");
        let deps = parse("go.mod", text.as_bytes()).unwrap();
        let got: Vec<(&str, &str)> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.version.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("golang.org/x/mod", "v0.17.0"),
                ("github.com/google/uuid", "v1.6.0"),
                ("gopkg.in/yaml.v3", "v3.0.1"),
                ("golang.org/x/tools", "v0.21.0"),
                ("github.com/fork/errors", "v0.9.2"),
                (
                    "github.com/sirupsen/logrus",
                    "v1.9.4-0.20230606125235-dd1b4c2e81af"
                ),
            ]
        );
        let line = |name: &str| {
            let d = deps.iter().find(|d| d.name == name).unwrap();
            text.lines().nth(d.line as usize - 1).unwrap()
        };
        assert!(line("golang.org/x/mod").starts_with("require golang.org/x/mod"));
        assert!(line("github.com/google/uuid").contains("\"github.com/google/uuid\""));
        assert!(line("github.com/fork/errors").starts_with("replace github.com/pkg/errors"));
        assert!(line("github.com/sirupsen/logrus").contains("=> github.com/sirupsen/logrus"));
        // Replaced by a directory: local code, not reported.
        assert!(!deps.iter().any(|d| d.name.contains("example.com/local")));
    }

    #[test]
    fn broken_go_mods_are_errors_at_their_line() {
        let e = parse("svc/go.mod", &fixture("go/malformed/go.mod")).unwrap_err();
        assert!(matches!(e, DepError::Malformed { line: 5, .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("svc/go.mod: line 5: require block opened here"),
            "{e}"
        );
        for (text, line, what) in [
            (
                "module x\nrequire (\n  a v1.0.0\n  b\n)\n",
                4,
                "require: want a module path",
            ),
            ("require a 1.0.0\n", 1, "require: want a module path"),
            ("require a v1.0.0 extra\n", 1, "require: want a module path"),
            ("module x\n)\n", 2, "`)` without an open block"),
            ("require ( a v1.0.0 )\n", 1, "a block opens"),
            ("require (\n) x\n", 2, "unexpected tokens after"),
            ("require \"a v1.0.0\n", 1, "unterminated string"),
            ("require `a v1.0.0\n", 1, "unterminated raw string"),
            ("replace a => b\n", 1, "not a directory path"),
            ("replace a v1 x => b v1.0.0\n", 1, "replace: want"),
            (
                "replace a => b v1 c\n",
                1,
                "replace: want a module and version",
            ),
            ("replace a x => ./b\n", 1, "replace: invalid version"),
        ] {
            let e = parse("go.mod", text.as_bytes()).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("go.mod: line {line}: ")) && msg.contains(what),
                "{text:?}: {msg}"
            );
        }
    }

    #[test]
    fn lexing_follows_go() {
        assert_eq!(
            lex("require (// c").unwrap(),
            vec!["require".to_string(), "(".to_string()]
        );
        assert_eq!(
            lex(r#"  "a\"b" `c d` e//f // g"#).unwrap(),
            vec!["a\"b", "c d", "e//f"]
        );
        assert_eq!(lex("retract [v1.0.0, v1.1.0]").unwrap().len(), 6);
        assert!(lex("   // only a comment").unwrap().is_empty());
    }
}
