//! A full run logged at debug level (every crate, every service) contains no token, secret or
//! password: the GitHub token, the webhook secret, the database password and a control API
//! token are canaries that must not appear anywhere in the output.

use crate::common;

use common::*;
use plumb::stack::{Stack, StackConfig};
use plumb::{client, commands, shipped};
use plumbline_github_sim::RepoOptions;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const GITHUB_TOKEN: &str = "ghp_CANARYgithubTOKEN0123456789";
const WEBHOOK_SECRET: &str = "CANARY-webhook-SECRET-0123456789";
const DB_PASSWORD: &str = "CANARYdbPASSWORD0123456789";
const CONTROL_TOKEN: &str = "CANARY-control-TOKEN-0123456789";

/// Log output, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_debug_log_of_a_full_run_holds_no_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_writer(move || writer.clone())
        .try_init()
        .expect("this test binary installs the only subscriber");

    let db = TestDb::new().await;
    // Trust authentication ignores the password, but the URL carries it like a real one does:
    // the services' role with the canary as its password.
    let url = plumbline_store::testing::with_user(&db.url, "plumbline_app", DB_PASSWORD);
    assert!(url.contains(DB_PASSWORD));
    let (prefix, _topics) = topics(3).await;
    let mut cfg = StackConfig::local(&kafka(), &url, &prefix);
    cfg.github_token = Some(GITHUB_TOKEN.into());
    cfg.webhook_secret = WEBHOOK_SECRET.into();
    let stack = Stack::start(cfg).await.expect("stack starts");

    // A control API with a token, called with the right and a wrong one.
    let dir = tempfile::tempdir().expect("tmp");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{CONTROL_TOKEN}\n")).expect("write");
    let mut args = plumbline_runtime::ServiceArgs::local(&kafka(), &url, &stack.sim_url);
    args.topic_prefix = prefix.clone();
    args.github_token = Some(GITHUB_TOKEN.into());
    let control_stop = tokio_util::sync::CancellationToken::new();
    let control = plumbline_control::start(
        plumbline_control::ControlConfig {
            auth_token_file: Some(tokens),
            ..plumbline_control::ControlConfig::local(args)
        },
        control_stop.clone(),
    )
    .await
    .expect("control starts");
    let url_c = format!("http://{}", control.addr);
    let mut c = client::connect(&url_c, Some(CONTROL_TOKEN))
        .await
        .expect("control");
    for (_, yaml) in shipped::RULE_TYPES {
        commands::apply_rule_type(&mut c, "default", yaml)
            .await
            .expect("rule type");
    }
    for (_, yaml) in shipped::PROFILES {
        commands::apply_profile(&mut c, "default", yaml)
            .await
            .expect("profile");
    }
    let id = stack.sim.create_repo(
        "acme",
        "vault",
        RepoOptions {
            protected: true,
            ..Default::default()
        },
    );
    commands::register_repository(&mut c, "default", "acme/vault", vec![], "")
        .await
        .expect("register");
    let mut wrong = client::connect(&url_c, Some("not-the-token-0123456789"))
        .await
        .expect("control");
    assert!(
        commands::register_repository(&mut wrong, "default", "acme/vault", vec![], "")
            .await
            .is_err()
    );

    // A signed webhook (a human removes the protection) and the remediation it leads to.
    let store = db.store();
    let entity = format!("github/repository/{id}");
    let passes = || async {
        let rows = store
            .list_status("default", Some(&entity), None)
            .await
            .ok()?;
        rows.iter()
            .any(|r| r.status.as_str() == "pass")
            .then_some(())
    };
    eventually(Duration::from_secs(60), "the repository evaluated", passes).await;
    stack
        .sim
        .remove_protection("acme", "vault", "main")
        .expect("remove protection");
    eventually(Duration::from_secs(60), "protection restored", || async {
        stack.sim.protection("acme", "vault", "main").map(|_| ())
    })
    .await;
    control_stop.cancel();
    let _ = control.task.await;
    stack.stop().await;

    let log = String::from_utf8_lossy(&captured.0.lock().expect("log").clone()).to_string();
    assert!(
        log.lines().count() > 100,
        "the run was logged at debug level ({} lines)",
        log.lines().count()
    );
    assert!(log.contains("DEBUG"), "debug lines are in it");
    for (what, canary) in [
        ("GitHub token", GITHUB_TOKEN),
        ("webhook secret", WEBHOOK_SECRET),
        ("database password", DB_PASSWORD),
        ("control API token", CONTROL_TOKEN),
    ] {
        if let Some(line) = log.lines().find(|l| l.contains(canary)) {
            panic!("the {what} appears in the log: {line}");
        }
    }
}
