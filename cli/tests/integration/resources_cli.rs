//! `plumb ruletype|profile list|get|delete` and `plumb history|action list` against a running
//! control service: `get -o yaml` applies back unchanged, `-o json` is the same document, a
//! rule type in use is refused with the profile's name and exit code 5.

use plumbline_control::{start, ControlConfig};
use plumbline_runtime::ServiceArgs;
use plumbline_store::testing::TestDatabase;
use std::path::PathBuf;
use std::process::Command;
use tokio_util::sync::CancellationToken;

fn plumb(url: String, args: Vec<String>) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["--control-url", &url])
        .args(&args)
        .env_remove("PLUMB_PROJECT")
        // Hermetic: no developer's configuration file.
        .env("PLUMB_CONFIG", "/nonexistent/plumb-test-config.yaml")
        .env_remove("PLUMB_TOKEN")
        .output()
        .expect("run plumb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_read_back_apply_unchanged_and_in_use_deletes_are_refused() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let db = TestDatabase::new().await;
    let kafka =
        std::env::var("PLUMB_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let shutdown = CancellationToken::new();
    let running = start(
        ControlConfig::local(ServiceArgs::local(&kafka, &db.url, "http://127.0.0.1:9")),
        shutdown.clone(),
    )
    .await
    .expect("control starts");
    let url = format!("http://{}", running.addr);
    let run = |args: &[&str]| {
        let (url, args) = (
            url.clone(),
            args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        async move {
            tokio::task::spawn_blocking(move || plumb(url, args))
                .await
                .expect("plumb ran")
        }
    };
    let rule = root.join("rules/rule-types/github/branch_protection_enabled.yaml");
    let profile = root.join("rules/profiles/github/branch-protection.yaml");
    let (code, _, err) = run(&["ruletype", "apply", "-f", rule.to_str().expect("path")]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["profile", "apply", "-f", profile.to_str().expect("path")]).await;
    assert_eq!(code, 0, "{err}");

    let (code, out, _) = run(&["ruletype", "list"]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("branch_protection_enabled\t1\t"), "{out}");
    // -o yaml is the document as applied: it applies back unchanged.
    let (code, yaml, _) =
        run(&["ruletype", "get", "branch_protection_enabled", "-o", "yaml"]).await;
    assert_eq!(code, 0);
    assert_eq!(yaml, std::fs::read_to_string(&rule).expect("rule"));
    let dir = tempfile::tempdir().expect("tmp");
    let copy = dir.path().join("rule.yaml");
    std::fs::write(&copy, &yaml).expect("write");
    let (code, out, _) = run(&["ruletype", "apply", "-f", copy.to_str().expect("path")]).await;
    assert_eq!(
        (code, out.trim()),
        (
            0,
            "rule type branch_protection_enabled version 1 (unchanged)"
        )
    );
    // -o json is the same document.
    let (code, json, _) = run(&["profile", "get", "branch-protection", "-o", "json"]).await;
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(doc["name"], "branch-protection");
    assert_eq!(doc["repository"][0]["type"], "branch_protection_enabled");

    // In use: refused with the profile's name, exit code 5; then deleted in order.
    let (code, _, err) = run(&["ruletype", "delete", "branch_protection_enabled"]).await;
    assert_eq!(code, 5, "{err}");
    assert_eq!(
        err.trim(),
        "error: rule type branch_protection_enabled is used by profile branch-protection: remove it from there first"
    );
    let (code, out, _) = run(&["profile", "delete", "branch-protection"]).await;
    assert_eq!((code, out.trim()), (0, "profile branch-protection deleted"));
    let (code, _, _) = run(&["ruletype", "delete", "branch_protection_enabled"]).await;
    assert_eq!(code, 0);
    let (code, _, err) = run(&["ruletype", "get", "branch_protection_enabled"]).await;
    assert_eq!(code, 4, "{err}");
    // History and actions list (nothing evaluated yet) and statuses are words.
    let (code, out, _) = run(&["history", "list", "--status", "fail"]).await;
    assert_eq!((code, out.as_str()), (0, ""));
    let (code, out, _) = run(&["action", "list"]).await;
    assert_eq!((code, out.as_str()), (0, ""));

    shutdown.cancel();
    let _ = running.task.await;
}
