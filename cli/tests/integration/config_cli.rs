//! `plumb config`: a context carries the URL, project and token; flags override it; the file
//! is private and a readable one holding a token is refused.

use plumbline_control::{start, ControlConfig};
use plumbline_runtime::ServiceArgs;
use plumbline_store::testing::TestDatabase;
use secrecy::SecretString;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use tokio_util::sync::CancellationToken;

const OPERATOR: &str = "config-operator-token-0123456789";

/// `plumb ARGS` with only the configuration file to go on: (code, stdout, stderr).
fn plumb(config: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(args)
        .env("PLUMB_CONFIG", config)
        .env_remove("PLUMB_PROJECT")
        .env_remove("PLUMB_TOKEN")
        .env_remove("PLUMB_CONTROL_URL")
        .env_remove("PLUMB_CONTEXT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run plumb");
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes()).expect("stdin");
    }
    let out = child.wait_with_output().expect("plumb ran");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_context_carries_url_project_and_token_and_stays_private() {
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
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("plumb").join("config.yaml");
    let run = |args: Vec<String>, stdin: Option<String>| {
        let config = config.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                plumb(&config, &args, stdin.as_deref())
            })
            .await
            .expect("plumb ran")
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // Without a context: the default URL, nobody listening there with this token.
    let (code, out, err) = run(
        args(&[
            "config",
            "set-context",
            "ops",
            "--url",
            &url,
            "--project",
            "payments",
            "--token-stdin",
        ]),
        Some(format!("{OPERATOR}\n")),
    )
    .await;
    assert_eq!((code, out.trim()), (0, "context ops set"), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&config)
            .expect("config")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (code, out, _) = run(args(&["config", "get-contexts"]), None).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("* ops\t") && out.contains("token"), "{out}");
    assert!(!out.contains(OPERATOR), "tokens are never printed");

    // The context's URL and token are used; its project too.
    let (code, out, err) = run(args(&["project", "create", "payments"]), None).await;
    assert_eq!((code, out.trim()), (0, "project payments created"), "{err}");
    let (code, out, err) = run(args(&["repo", "list"]), None).await;
    assert_eq!(
        (code, out.as_str()),
        (0, ""),
        "the context's project exists: {err}"
    );
    // Flags override it.
    let (code, _, err) = run(args(&["--project", "nope", "repo", "list"]), None).await;
    assert_eq!(code, 4, "{err}");
    let (code, _, err) = run(
        args(&["--token", "wrong-token-0123456789", "project", "list"]),
        None,
    )
    .await;
    assert_eq!(code, 3, "{err}");
    // Unknown contexts are errors.
    let (code, _, err) = run(args(&["config", "use-context", "nope"]), None).await;
    assert_eq!(code, 1);
    assert!(err.contains("no context"), "{err}");
    let (code, _, err) = run(args(&["--context", "nope", "project", "list"]), None).await;
    assert_eq!(code, 1, "{err}");

    // A configuration holding a token that others may read is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let (code, _, err) = run(args(&["project", "list"]), None).await;
        assert_eq!(code, 1);
        assert!(err.contains("chmod 600"), "{err}");
        // Commands that do not talk to the API do not read it.
        let (code, _, _) = run(args(&["completion", "bash"]), None).await;
        assert_eq!(code, 0);
    }

    shutdown.cancel();
    let _ = running.task.await;
}
