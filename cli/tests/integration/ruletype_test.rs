//! `plumb ruletype test` as rule authors and CI run it: the binary, its lines, its exit code.

use std::path::PathBuf;
use std::process::Command;

fn plumb(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(args)
        .output()
        .expect("run plumb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn shipped_rules_pass_their_suites() {
    let rules = root().join("rules");
    let (code, out) = plumb(&["ruletype", "test", rules.to_str().expect("path")]);
    assert_eq!(code, 0, "{out}");
    let last = out.lines().last().unwrap_or_default();
    let passed: usize = last
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        passed >= 33 && last.ends_with(" passed, 0 failed"),
        "{last}"
    );
    for rule in [
        "branch_protection_enabled",
        "secret_scanning_enabled",
        "dependabot_configured",
        "default_workflow_permissions",
        "security_policy_present",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("PASS {rule}/"))),
            "{rule} has cases: {out}"
        );
    }
}

#[test]
fn the_minder_corpus_passes_through_the_cli() {
    let corpus = root().join("../shared/minder-rules");
    let (code, out) = plumb(&["ruletype", "test", corpus.to_str().expect("path")]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().last(), Some("96 passed, 0 failed"));
}

#[test]
fn a_failing_case_fails_the_run_and_tests_can_live_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rule = root().join("rules/rule-types/github/branch_protection_enabled.yaml");
    // A suite kept elsewhere, with one right and one wrong expectation.
    let tests = dir.path().join("mine.test.yaml");
    std::fs::write(
        &tests,
        r#"tests:
  - name: "protected"
    def: {}
    params: {}
    expect: "pass"
    http: {status: 200, body_file: protected.json}
  - name: "wrongly expected to pass"
    def: {}
    params: {}
    expect: "pass"
    http: {status: 404, body: '{}'}
"#,
    )
    .expect("write tests");
    std::fs::create_dir(dir.path().join("mine.testdata")).expect("mkdir");
    std::fs::write(
        dir.path().join("mine.testdata/protected.json"),
        r#"{"url": "https://x/protection"}"#,
    )
    .expect("write fixture");
    let (code, out) = plumb(&[
        "ruletype",
        "test",
        rule.to_str().expect("path"),
        "--tests",
        tests.to_str().expect("path"),
    ]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "PASS branch_protection_enabled/protected (expected pass, got pass)"
    );
    assert!(
        lines[1].starts_with(
            "FAIL branch_protection_enabled/wrongly expected to pass (expected pass, got fail)"
        ),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "1 passed, 1 failed");
    // A path without suites is a clear error, not "0 passed".
    let (code, _) = plumb(&[
        "ruletype",
        "test",
        dir.path().join("nothing").to_str().expect("path"),
    ]);
    assert_ne!(code, 0);
}

#[test]
fn completion_scripts_cover_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out) = plumb(&["completion", shell]);
        assert_eq!(code, 0, "{shell}");
        for word in ["ruletype", "project", "token", "audit", "history"] {
            assert!(out.contains(word), "{shell} completion lacks {word}");
        }
    }
}
