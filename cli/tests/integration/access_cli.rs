//! `plumb project|token|role|audit` as an operator and a service account run them: the binary
//! against a running control service (Postgres behind it), its lines and its exit codes.

use plumbline_control::{start, ControlConfig};
use plumbline_runtime::ServiceArgs;
use plumbline_store::testing::TestDatabase;
use secrecy::SecretString;
use std::process::Command;
use tokio_util::sync::CancellationToken;

const OPERATOR: &str = "cli-operator-token-0123456789";

/// Runs `plumb ARGS` against `url` with `token`: (exit code, stdout, stderr).
fn plumb(url: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["--control-url", url, "--token", token])
        .args(args)
        .env_remove("PLUMB_PROJECT")
        // Hermetic: no developer's configuration file.
        .env("PLUMB_CONFIG", "/nonexistent/plumb-test-config.yaml")
        .output()
        .expect("run plumb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_sets_up_a_project_and_a_service_account_works_within_its_role() {
    let db = TestDatabase::new().await;
    let kafka =
        std::env::var("PLUMB_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let shutdown = CancellationToken::new();
    let running = start(
        ControlConfig {
            auth_tokens: vec![SecretString::from(OPERATOR)],
            ..ControlConfig::local(ServiceArgs::local(&kafka, &db.url, "http://127.0.0.1:9"))
        },
        shutdown.clone(),
    )
    .await
    .expect("control starts");
    let url = format!("http://{}", running.addr);
    let run = |token: &str, args: &[&str]| {
        let (url, token) = (url.clone(), token.to_string());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                plumb(&url, &token, &args)
            })
            .await
            .expect("plumb ran")
        }
    };

    let (code, out, err) = run(OPERATOR, &["project", "create", "payments"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "project payments created");
    let (code, out, err) = run(OPERATOR, &["token", "create", "ci"]).await;
    assert_eq!(code, 0, "{err}");
    let token = out.trim().to_string();
    assert!(
        token.starts_with("plb_sa_"),
        "only the token on stdout: {out}"
    );
    assert!(err.contains("shown once"), "{err}");
    let (code, out, _) = run(
        OPERATOR,
        &[
            "--project",
            "payments",
            "role",
            "grant",
            "serviceaccount:ci",
            "--role",
            "viewer",
        ],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        "serviceaccount:ci is viewer in project payments"
    );

    // The service account reads its project, and nothing else.
    let (code, out, err) = run(&token, &["project", "list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("payments\t") && out.lines().count() == 1,
        "{out}"
    );
    let (code, _, err) = run(&token, &["--project", "payments", "repo", "list"]).await;
    assert_eq!(code, 0, "{err}");
    // Refusals: one line, the API's words, exit code 3.
    let (code, _, err) = run(&token, &["--project", "payments", "reconcile"]).await;
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err.trim(),
        "error: serviceaccount:ci may not call Reconcile: it needs the editor role in project payments"
    );
    let (code, _, err) = run(&token, &["project", "create", "mine"]).await;
    assert_eq!((code, err.lines().count()), (3, 1), "{err}");
    let (code, _, err) = run(&token, &["--project", "default", "repo", "list"]).await;
    assert_eq!(code, 3, "{err}");
    // Not found and invalid input have codes of their own.
    let (code, _, err) = run(OPERATOR, &["--project", "nope", "repo", "list"]).await;
    assert_eq!(code, 4, "{err}");
    assert_eq!(err.trim(), "error: not found: project nope does not exist");
    let (code, _, err) = run(OPERATOR, &["project", "create", "Not_Valid"]).await;
    assert_eq!(code, 5, "{err}");

    // Providers: an installation is added and listed; the viewer may list but not add.
    let (code, out, err) = run(
        OPERATOR,
        &[
            "--project",
            "payments",
            "provider",
            "create",
            "app",
            "--installation-id",
            "42",
        ],
    )
    .await;
    assert_eq!(
        (code, out.trim()),
        (0, "provider app added to project payments"),
        "{err}"
    );
    let (code, out, _) = run(&token, &["--project", "payments", "provider", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with("app\tgithub-app-installation\tinstallation 42\t"),
        "{out}"
    );
    let (code, _, _) = run(
        &token,
        &[
            "--project",
            "payments",
            "provider",
            "create",
            "x",
            "--installation-id",
            "7",
        ],
    )
    .await;
    assert_eq!(code, 3);
    // Not even a project admin claims an App installation: which project an installation
    // serves is the operator's decision (the App's key acts for it).
    let grant = |role: &'static str| {
        run(
            OPERATOR,
            &[
                "--project",
                "payments",
                "role",
                "grant",
                "serviceaccount:ci",
                "--role",
                role,
            ],
        )
    };
    assert_eq!(grant("admin").await.0, 0);
    let (code, _, err) = run(
        &token,
        &[
            "--project",
            "payments",
            "provider",
            "create",
            "x",
            "--installation-id",
            "7",
        ],
    )
    .await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("only an operator may"), "{err}");

    // Every list prints in each format, with the same item: json lines and yaml documents
    // parse, wide shows more columns than table.
    let (code, out, err) = run(
        &token,
        &["--project", "payments", "provider", "list", "-o", "json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let item: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(
        (&item["name"], &item["kind"], &item["installation_id"]),
        (
            &serde_json::json!("app"),
            &serde_json::json!("github-app-installation"),
            &serde_json::json!(42)
        )
    );
    let (code, out, err) = run(
        &token,
        &["--project", "payments", "provider", "list", "-o", "yaml"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let item: serde_json::Value = serde_yaml_ng::from_str(&out).expect("a YAML document");
    assert_eq!(item["name"], "app", "{out}");
    let (code, wide, err) = run(
        &token,
        &["--project", "payments", "provider", "list", "-o", "wide"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(wide.trim().split('\t').count(), 7, "{wide}");
    for list in [
        &["project", "list"][..],
        &["--project", "payments", "role", "list"],
        &["--project", "payments", "audit", "list"],
        &["token", "list"],
    ] {
        let (code, out, err) = run(OPERATOR, &[list, &["-o", "json"]].concat()).await;
        assert_eq!(code, 0, "{list:?}: {err}");
        assert!(!out.trim().is_empty(), "{list:?}");
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON lines");
            assert!(v.is_object(), "{list:?}: {line}");
        }
        let (code, table, _) = run(OPERATOR, list).await;
        let (_, wide, _) = run(OPERATOR, &[list, &["-o", "wide"]].concat()).await;
        assert_eq!(code, 0);
        let columns = |s: &str| s.lines().next().map(|l| l.split('\t').count()).unwrap_or(0);
        assert!(
            columns(&wide) >= columns(&table),
            "{list:?}: {table} / {wide}"
        );
    }

    // The audit log shows the refusal, newest first.
    let (code, out, err) = run(
        OPERATOR,
        &["--project", "payments", "audit", "list", "--limit", "1"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let fields: Vec<&str> = out.trim().split('\t').collect();
    assert_eq!(
        fields[1..4],
        ["serviceaccount:ci", "CreateProvider", "denied"],
        "{out}"
    );

    // Revoked: the token no longer authenticates.
    let (code, _, _) = run(OPERATOR, &["token", "revoke", "ci"]).await;
    assert_eq!(code, 0);
    let (code, _, err) = run(&token, &["project", "list"]).await;
    assert_eq!(code, 3, "{err}");
    let (code, out, _) = run(OPERATOR, &["token", "list"]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("ci\t") && out.contains("revoked"), "{out}");
    let (code, _, err) = run(OPERATOR, &["project", "delete", "payments"]).await;
    assert_eq!(code, 1, "without --yes: {err}");
    let (code, out, _) = run(OPERATOR, &["project", "delete", "payments", "--yes"]).await;
    assert_eq!((code, out.trim()), (0, "project payments deleted"));

    shutdown.cancel();
    let _ = running.task.await;
}
