//! The actuator end to end: the whole stack (simulated GitHub, ingest, evaluator, actuator) on
//! the real broker and a real Postgres, one test per remediation type, plus redelivery with a
//! crash, dry run and the content-creation budget.
//!
//! GitHub is the simulator over HTTP with a token, so GitHub's per-credential content-creation
//! limit (80/min, 500/h) is enforced on the simulator's side too.

use plumb::stack::{Stack, StackConfig};
use plumb::{client, commands, shipped};
use plumbline_bus::testing::{eventually, kafka, topics, Reader, ServiceProcess};
use plumbline_bus::{Producer, ProducerConfig, TraceContext};
use plumbline_github::{GitHub, GitHubConfig, Method};
use plumbline_github_sim::{ContentLimits, LoggedRequest, RepoOptions};
use plumbline_proto::v1::{ActionKind, ActionOutcome, ActionStatus, EvalStatus, Verdict};
use plumbline_proto::Message as _;
use plumbline_store::testing::TestDatabase as TestDb;
use plumbline_store::Store;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const PROJECT: &str = "default";
const TOKEN: &str = "ghp_plumbline_actuator_tests";
const PUT_PROTECTION: &str = "PUT /repos/{owner}/{repo}/branches/{branch}/protection";
const POST_PULLS: &str = "POST /repos/{owner}/{repo}/pulls";
const POST_ADVISORIES: &str = "POST /repos/{owner}/{repo}/security-advisories";
const PATCH_REPO: &str = "PATCH /repos/{owner}/{repo}";

fn profile(name: &str, remediate: &str, alert: &str, rules: &str) -> String {
    format!(
        "version: v1\ntype: profile\nname: {name}\ncontext:\n  provider: github\nalert: \"{alert}\"\nremediate: \"{remediate}\"\nrepository:\n{rules}"
    )
}

const SECRET_SCANNING: &str =
    "  - type: secret_scanning_enabled\n    params: {}\n    def:\n      skip_private_repos: true\n";
const DEPENDABOT: &str = "  - type: dependabot_configured\n    params: {}\n    def:\n      package_ecosystem: github-actions\n      schedule_interval: weekly\n";
const PROTECTION: &str =
    "  - type: branch_protection_enabled\n    params:\n      branch: \"\"\n    def: {}\n";

/// A stack on a fresh database and topic namespace, GitHub reached with a token.
async fn start(db: &TestDb, tune: impl FnOnce(&mut StackConfig)) -> (Stack, plumbline_bus::Topics) {
    let (prefix, topics) = topics(3).await;
    let mut cfg = StackConfig::local(&kafka(), &db.url, &prefix);
    cfg.github_token = Some(TOKEN.into());
    tune(&mut cfg);
    let stack = Stack::start(cfg).await.expect("stack starts");
    stack.sim.set_rate_limit(1_000_000);
    (stack, topics)
}

/// Applies Plumbline's shipped rule types and the given profiles, then registers the
/// repositories, through the control API.
async fn enroll(stack: &Stack, profiles: &[String], repos: &[(&str, &str)]) {
    let mut c = client::connect(&stack.control_url(), None)
        .await
        .expect("control api");
    for (_, yaml) in shipped::RULE_TYPES {
        commands::apply_rule_type(&mut c, PROJECT, yaml)
            .await
            .expect("apply rule type");
    }
    for p in profiles {
        commands::apply_profile(&mut c, PROJECT, p)
            .await
            .expect("apply profile");
    }
    for (o, n) in repos {
        commands::register_repository(&mut c, PROJECT, &format!("{o}/{n}"), vec![], "")
            .await
            .expect("register");
    }
}

/// A GitHub client as a human would use it, to read what the simulator's API shows.
fn github(stack: &Stack) -> GitHub {
    GitHub::new(&GitHubConfig::new(&stack.sim_url, Some(TOKEN.into()))).expect("github client")
}

async fn get_json(gh: &GitHub, path: &str) -> Value {
    let r = gh
        .request(Method::GET, path, None)
        .await
        .expect("github answers");
    assert_eq!(r.status, 200, "GET {path}: {}", r.message());
    r.json().expect("json")
}

fn count(stack: &Stack, route: &str) -> u64 {
    stack.sim.request_counts().get(route).copied().unwrap_or(0)
}

/// The requests that change something (GitHub's content-creating requests).
fn writes(log: &[LoggedRequest]) -> Vec<&LoggedRequest> {
    log.iter()
        .filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD"))
        .collect()
}

async fn entity_status(store: &Store, entity: &str, rule: &str) -> Option<String> {
    let rows = store
        .list_status(PROJECT, Some(entity), None)
        .await
        .expect("status");
    rows.into_iter()
        .find(|r| r.rule_name == rule)
        .map(|r| r.status.as_str().to_string())
}

async fn wait_status(store: &Store, entity: &str, rule: &str, want: &str, timeout: Duration) {
    eventually(timeout, &format!("{entity} {rule} = {want}"), || async {
        (entity_status(store, entity, rule).await.as_deref() == Some(want)).then_some(())
    })
    .await;
}

fn outcomes(records: &[plumbline_bus::Record]) -> Vec<ActionOutcome> {
    records
        .iter()
        .filter_map(|r| ActionOutcome::decode(r.payload.as_slice()).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rest_remediation_turns_secret_scanning_on() {
    let db = TestDb::new().await;
    let (stack, topics) = start(&db, |_| {}).await;
    let store = db.store();
    let id = stack
        .sim
        .create_repo("acme", "vault", RepoOptions::default());
    stack
        .sim
        .set_secret_scanning("acme", "vault", false)
        .expect("secret scanning off");
    let entity = format!("github/repository/{id}");
    let mut actions = Reader::new(&topics.actions);
    enroll(
        &stack,
        &[profile("secrets", "on", "off", SECRET_SCANNING)],
        &[("acme", "vault")],
    )
    .await;

    // Failing, fixed by one PATCH, verified by the evaluation the actuator asks for.
    wait_status(
        &store,
        &entity,
        "secret_scanning_enabled",
        "pass",
        Duration::from_secs(60),
    )
    .await;
    let repo = get_json(&github(&stack), "/repos/acme/vault").await;
    assert_eq!(
        repo["security_and_analysis"]["secret_scanning"]["status"],
        "enabled"
    );
    assert_eq!(count(&stack, PATCH_REPO), 1, "one remediation request");

    let recorded = store.list_actions(&entity).await.expect("actions");
    let applied: Vec<_> = recorded
        .iter()
        .filter(|a| a.status.as_str() == "applied")
        .collect();
    assert_eq!(applied.len(), 1, "{recorded:?}");
    let a = applied[0];
    assert_eq!(
        (
            a.kind.as_str(),
            a.action_type.as_str(),
            a.operation.as_str(),
            a.method.as_str()
        ),
        ("remediation", "rest", "apply", "PATCH")
    );
    assert!(a.url.ends_with("/repos/acme/vault"), "{}", a.url);
    let body: Value = serde_json::from_str(&a.body).expect("recorded body is json");
    assert_eq!(
        body,
        json!({"security_and_analysis": {"secret_scanning": {"status": "enabled"}}})
    );
    assert_eq!(a.rule_name, "secret_scanning_enabled");

    assert!(
        actions
            .read_until(Duration::from_secs(20), |rs| outcomes(rs)
                .iter()
                .any(|o| o.status == ActionStatus::Applied as i32))
            .await
    );
    let o = outcomes(&actions.records)
        .into_iter()
        .find(|o| o.status == ActionStatus::Applied as i32)
        .expect("applied outcome");
    assert_eq!(
        (o.kind, o.action_type.as_str(), o.rule_name.as_str()),
        (
            ActionKind::Remediation as i32,
            "rest",
            "secret_scanning_enabled"
        )
    );
    assert_eq!(o.requests.len(), 1);
    assert_eq!(o.requests[0].method, "PATCH");
    assert_eq!(o.idempotency_key, a.idempotency_key);
    stack.stop().await;
}

/// A rule type of the test's own: the default branch must require two approving reviews. Its
/// remediation patches only the reviews, so what else the protection had must survive.
const TWO_REVIEWS: &str = r#"
version: v1
type: rule-type
name: two_reviews
context:
  provider: github
def:
  in_entity: repository
  rule_schema: {}
  ingest:
    type: rest
    rest:
      endpoint: "/repos/{{ .Entity.Owner }}/{{ .Entity.Name }}/branches/main/protection"
      parse: json
      fallback:
        - http_code: 404
          body: '{"message": "Not Protected"}'
  eval:
    type: jq
    jq:
      - ingested:
          def: ".required_pull_request_reviews.required_approving_review_count"
        constant: 2
  remediate:
    type: gh_branch_protection
    gh_branch_protection:
      patch: |
        {"required_pull_request_reviews": {"required_approving_review_count": 2, "dismiss_stale_reviews": true}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn branch_protection_remediation_merges_its_patch_into_live_protection() {
    let db = TestDb::new().await;
    let (stack, _topics) = start(&db, |_| {}).await;
    let store = db.store();
    let id = stack
        .sim
        .create_repo("acme", "ledger", RepoOptions::default());
    stack
        .sim
        .set_protection(
            "acme",
            "ledger",
            "main",
            json!({
                "required_status_checks": {"strict": true, "contexts": ["ci/build"]},
                "enforce_admins": true,
                "required_pull_request_reviews": {"required_approving_review_count": 1},
                "restrictions": null,
                "allow_force_pushes": false
            }),
        )
        .expect("protection");
    let entity = format!("github/repository/{id}");
    let mut c = client::connect(&stack.control_url(), None)
        .await
        .expect("control api");
    commands::apply_rule_type(&mut c, PROJECT, TWO_REVIEWS)
        .await
        .expect("apply rule type");
    let rules = "  - type: two_reviews\n    params: {}\n    def: {}\n";
    commands::apply_profile(&mut c, PROJECT, &profile("reviews", "on", "off", rules))
        .await
        .expect("profile");
    commands::register_repository(&mut c, PROJECT, "acme/ledger", vec![], "")
        .await
        .expect("register");

    wait_status(
        &store,
        &entity,
        "two_reviews",
        "pass",
        Duration::from_secs(60),
    )
    .await;
    let p = stack
        .sim
        .protection("acme", "ledger", "main")
        .expect("protected");
    assert_eq!(
        p["required_pull_request_reviews"]["required_approving_review_count"],
        2
    );
    assert_eq!(
        p["required_pull_request_reviews"]["dismiss_stale_reviews"],
        true
    );
    // Untouched by the patch, kept from live state.
    assert_eq!(p["required_status_checks"]["contexts"], json!(["ci/build"]));
    assert_eq!(p["required_status_checks"]["strict"], true);
    assert_eq!(p["enforce_admins"]["enabled"], true);
    assert_eq!(p["allow_force_pushes"]["enabled"], false);
    assert_eq!(count(&stack, PUT_PROTECTION), 1);
    let recorded = store.list_actions(&entity).await.expect("actions");
    assert!(
        recorded.iter().any(|a| a.status.as_str() == "applied"
            && a.action_type == "gh_branch_protection"
            && a.method == "PUT"),
        "{recorded:?}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pull_request_remediation_opens_one_pull_request_and_the_advisory_closes_on_pass() {
    let db = TestDb::new().await;
    let (stack, topics) = start(&db, |_| {}).await;
    let store = db.store();
    let id = stack.sim.create_repo("acme", "web", RepoOptions::default());
    let entity = format!("github/repository/{id}");
    let mut actions = Reader::new(&topics.actions);
    enroll(
        &stack,
        &[profile("deps", "on", "on", DEPENDABOT)],
        &[("acme", "web")],
    )
    .await;

    // The rule fails: a pull request proposes the file, and (a pull request fixes nothing until
    // merged) an advisory says so.
    let pulls = eventually(Duration::from_secs(60), "a pull request", || async {
        let p = stack.sim.pull_requests("acme", "web");
        (!p.is_empty()).then_some(p)
    })
    .await;
    assert_eq!(pulls.len(), 1);
    let number = *pulls.keys().next().expect("one");
    let pr = stack
        .sim
        .pull_request("acme", "web", number)
        .expect("pull request");
    assert_eq!(pr["head"]["ref"], "plumbline/dependabot_configured");
    assert_eq!(pr["base"]["ref"], "main");
    assert_eq!(
        pr["title"],
        "Configure Dependabot updates for github-actions"
    );
    assert!(
        pr["body"]
            .as_str()
            .unwrap_or_default()
            .contains("`github-actions` ecosystem"),
        "{}",
        pr["body"]
    );
    let file = stack
        .sim
        .file(
            "acme",
            "web",
            "plumbline/dependabot_configured",
            ".github/dependabot.yml",
        )
        .expect("file on the branch");
    let file = String::from_utf8(file).expect("utf-8");
    assert!(
        file.contains("package-ecosystem: \"github-actions\"")
            && file.contains("interval: \"weekly\""),
        "{file}"
    );
    let gh = github(&stack);
    let tree = get_json(
        &gh,
        &format!(
            "/repos/acme/web/git/trees/{}?recursive=1",
            pr["head"]["sha"].as_str().unwrap_or_default()
        ),
    )
    .await;
    let entry = tree["tree"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["path"] == ".github/dependabot.yml")
        .expect("tree entry");
    assert_eq!(entry["mode"], "100644");

    let advisory = eventually(Duration::from_secs(30), "an advisory opened", || async {
        let recorded = store.list_actions(&entity).await.expect("actions");
        recorded.into_iter().find(|a| {
            a.kind.as_str() == "alert"
                && a.operation.as_str() == "open"
                && a.status.as_str() == "applied"
        })
    })
    .await;
    assert_eq!(advisory.action_type, "security_advisory");
    let ghsa = advisory
        .provider_ref
        .strip_prefix("advisory:")
        .expect("advisory reference")
        .to_string();
    let opened = stack
        .sim
        .advisory("acme", "web", &ghsa)
        .expect("advisory exists");
    assert_eq!(opened["state"], "draft");
    assert!(
        opened["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("dependabot_configured"),
        "{}",
        opened["summary"]
    );

    // Evaluated again while still failing: the open pull request and advisory are reused.
    let mut c = client::connect(&stack.control_url(), None)
        .await
        .expect("control api");
    let before = store.list_actions(&entity).await.expect("actions").len();
    c.reconcile(plumbline_proto::v1::ReconcileRequest {
        project: PROJECT.into(),
        entity_id: entity.clone(),
    })
    .await
    .expect("reconcile");
    eventually(
        Duration::from_secs(30),
        "the second failing verdict handled",
        || async {
            let recorded = store.list_actions(&entity).await.expect("actions");
            (recorded.len() > before && recorded.iter().all(|a| a.status.as_str() != "pending"))
                .then_some(())
        },
    )
    .await;
    let reuse = store
        .list_actions(&entity)
        .await
        .expect("actions")
        .into_iter()
        .last()
        .expect("an action");
    assert_eq!(
        (reuse.action_type.as_str(), reuse.status.as_str()),
        ("pull_request", "applied"),
        "{reuse:?}"
    );
    assert!(reuse.message.contains("reused"), "{}", reuse.message);
    assert_eq!(
        stack.sim.pull_requests("acme", "web").len(),
        1,
        "never a second pull request"
    );
    assert_eq!(count(&stack, POST_PULLS), 1);
    assert_eq!(count(&stack, POST_ADVISORIES), 1);

    // A human merges the file into main: the rule passes and the advisory is closed.
    let content = file.clone();
    stack
        .sim
        .put_file(
            "acme",
            "web",
            "main",
            ".github/dependabot.yml",
            content.into_bytes(),
        )
        .expect("merge");
    wait_status(
        &store,
        &entity,
        "dependabot_configured",
        "pass",
        Duration::from_secs(60),
    )
    .await;
    eventually(Duration::from_secs(30), "the advisory closed", || async {
        let a = stack.sim.advisory("acme", "web", &ghsa)?;
        (a["state"] == "closed").then_some(())
    })
    .await;
    let closed = store
        .list_actions(&entity)
        .await
        .expect("actions")
        .into_iter()
        .find(|a| a.operation.as_str() == "close")
        .expect("close recorded");
    assert_eq!(
        (closed.status.as_str(), closed.provider_ref.as_str()),
        ("applied", advisory.provider_ref.as_str())
    );
    assert!(
        actions
            .read_until(Duration::from_secs(20), |rs| outcomes(rs)
                .iter()
                .any(
                    |o| o.kind == ActionKind::Alert as i32 && o.operation == "close"
                ))
            .await
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dry_run_publishes_the_planned_requests_and_changes_nothing() {
    let db = TestDb::new().await;
    let (stack, topics) = start(&db, |_| {}).await;
    let store = db.store();
    let id = stack
        .sim
        .create_repo("acme", "quiet", RepoOptions::default());
    stack
        .sim
        .set_secret_scanning("acme", "quiet", false)
        .expect("secret scanning off");
    let entity = format!("github/repository/{id}");
    stack.sim.reset_request_log();
    let mut actions = Reader::new(&topics.actions);
    let rules = format!("{SECRET_SCANNING}{PROTECTION}{DEPENDABOT}");
    enroll(
        &stack,
        &[profile("rehearsal", "dry_run", "dry_run", &rules)],
        &[("acme", "quiet")],
    )
    .await;

    // Three remediations planned; the two that stay failing also plan an advisory.
    let seen = actions
        .read_until(Duration::from_secs(60), |rs| {
            let os = outcomes(rs);
            let planned = |kind: ActionKind, t: &str| {
                os.iter().any(|o| {
                    o.kind == kind as i32
                        && o.action_type == t
                        && o.status == ActionStatus::Planned as i32
                })
            };
            planned(ActionKind::Remediation, "rest")
                && planned(ActionKind::Remediation, "gh_branch_protection")
                && planned(ActionKind::Remediation, "pull_request")
                && planned(ActionKind::Alert, "security_advisory")
        })
        .await;
    assert!(seen, "planned outcomes: {:?}", outcomes(&actions.records));
    let os = outcomes(&actions.records);
    let rest = os
        .iter()
        .find(|o| o.action_type == "rest")
        .expect("rest plan");
    assert_eq!(rest.requests.len(), 1);
    assert_eq!(rest.requests[0].method, "PATCH");
    assert_eq!(
        rest.requests[0].url,
        format!("{}/repos/acme/quiet", stack.sim_url)
    );
    let body: Value = serde_json::from_str(&rest.requests[0].body).expect("json body");
    assert_eq!(
        body["security_and_analysis"]["secret_scanning"]["status"],
        "enabled"
    );
    let protection = os
        .iter()
        .find(|o| o.action_type == "gh_branch_protection")
        .expect("protection plan");
    assert_eq!(
        (
            protection.requests[0].method.as_str(),
            protection.requests[0].url.as_str()
        ),
        (
            "PUT",
            format!(
                "{}/repos/acme/quiet/branches/main/protection",
                stack.sim_url
            )
            .as_str()
        )
    );
    let body: Value = serde_json::from_str(&protection.requests[0].body).expect("json body");
    assert_eq!(
        body["required_pull_request_reviews"]["required_approving_review_count"],
        1
    );
    let pr = os
        .iter()
        .find(|o| o.action_type == "pull_request")
        .expect("pull request plan");
    let planned: Vec<(&str, &str)> = pr
        .requests
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.url
                    .rsplit_once("/repos/acme/quiet")
                    .map(|x| x.1)
                    .unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        planned,
        vec![
            ("POST", "/git/trees"),
            ("POST", "/git/commits"),
            ("POST", "/git/refs"),
            ("POST", "/pulls")
        ]
    );
    assert!(pr.requests[0].body.contains(".github/dependabot.yml"));

    // Recorded as planned, and GitHub saw only reads.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let recorded = store.list_actions(&entity).await.expect("actions");
    assert!(
        recorded.iter().all(|a| a.status.as_str() == "planned"),
        "{recorded:?}"
    );
    let log = stack.sim.request_log();
    assert!(
        writes(&log).is_empty(),
        "no writes in dry run: {:?}",
        writes(&log)
    );
    assert!(stack.sim.pull_requests("acme", "quiet").is_empty());
    assert!(stack.sim.protection("acme", "quiet", "main").is_none());
    assert_eq!(
        entity_status(&store, &entity, "secret_scanning_enabled")
            .await
            .as_deref(),
        Some("fail")
    );
    stack.stop().await;
}

/// An actuator as SREs run it: its own process, killable with SIGKILL.
fn actuator_process(stack: &Stack) -> ServiceProcess {
    let ac = stack.actuator_config();
    ServiceProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_e2e-actuator"))
            .env("PLUMB_KAFKA_BROKERS", kafka())
            .env("PLUMB_TOPIC_PREFIX", &stack.config.topic_prefix)
            .env("PLUMB_DATABASE_URL", &stack.config.database_url)
            .env("PLUMB_GITHUB_API_URL", &stack.sim_url)
            .env("PLUMB_GITHUB_TOKEN", TOKEN)
            .env("PLUMB_ACTUATOR_GROUP", &ac.consumer.group_id)
            .env("PLUMB_KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("PLUMB_HEALTH_LISTEN", "127.0.0.1:0")
            .env(
                "PLUMB_CONTENT_PER_MINUTE",
                ac.content_per_minute.to_string(),
            )
            .env("PLUMB_CONTENT_PER_HOUR", ac.content_per_hour.to_string())
            .env("PLUMB_CONTENT_MINUTE_MS", ac.content_minute_ms.to_string())
            .env("PLUMB_CONTENT_HOUR_MS", ac.content_hour_ms.to_string())
            // A killed replica's claims are taken over once their lease runs out.
            .env("PLUMB_ACTUATOR_CLAIM_LEASE_SECS", "5")
            .env("RUST_LOG", "warn"),
    )
}

/// Every failing verdict delivered six times, and the actuator killed after GitHub applied a
/// change but before it was recorded (so before the verdict's offset was committed): GitHub
/// sees one protection change, one pull request and one advisory.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivered_verdicts_and_a_crash_between_apply_and_commit_change_github_once() {
    let db = TestDb::new().await;
    let (stack, topics) = start(&db, |c| c.run_actuator = false).await;
    let store = db.store();
    let id = stack.sim.create_repo("acme", "api", RepoOptions::default());
    let entity = format!("github/repository/{id}");
    // Recording an applied action stalls for 5 s and then fails: the window in which the
    // actuator is killed, with GitHub changed and nothing recorded or committed.
    db.batch(
        "CREATE FUNCTION stall_applied() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.status = 'applied' THEN PERFORM pg_sleep(5); RAISE EXCEPTION 'actuator outlived its kill'; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER stall_applied BEFORE UPDATE ON actions FOR EACH ROW EXECUTE FUNCTION stall_applied();",
    )
    .await;
    let mut first = actuator_process(&stack);
    let mut verdicts = Reader::new(&topics.verdicts);
    let mut actions = Reader::new(&topics.actions);
    let rules = format!("{PROTECTION}{DEPENDABOT}");
    enroll(
        &stack,
        &[profile("guard", "on", "on", &rules)],
        &[("acme", "api")],
    )
    .await;

    let got = verdicts
        .read_until(Duration::from_secs(30), |rs| {
            rs.iter()
                .filter(|r| r.key.as_deref() == Some(entity.as_str()))
                .count()
                >= 2
        })
        .await;
    assert!(got, "failing verdicts published");
    eventually(
        Duration::from_secs(60),
        "a change applied on GitHub",
        || async { (count(&stack, PUT_PROTECTION) + count(&stack, POST_PULLS) > 0).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.kill_9();
    db.batch("DROP TRIGGER stall_applied ON actions;").await;
    let pending = store.list_actions(&entity).await.expect("actions");
    assert!(
        pending.iter().any(|a| a.status.as_str() == "pending"),
        "the crash left the action unrecorded: {pending:?}"
    );

    // The failing verdicts so far (every evaluation has its own), delivered five more times.
    verdicts.drain(Duration::from_secs(2)).await;
    let failing = failing_verdicts(&verdicts.records, &entity);
    assert!(
        failing
            .iter()
            .any(|v| v.rule_name == "branch_protection_enabled")
            && failing
                .iter()
                .any(|v| v.rule_name == "dependabot_configured"),
        "{failing:?}"
    );
    let producer =
        Producer::new(&ProducerConfig::new(kafka(), "redelivery-test")).expect("producer");
    for _ in 0..5 {
        for v in &failing {
            producer
                .publish(
                    &topics.verdicts,
                    &entity,
                    &v.encode_to_vec(),
                    "dev.plumbline.verdict.v1",
                    &uuid::Uuid::new_v4().to_string(),
                    &TraceContext::new_root(),
                    &BTreeMap::new(),
                )
                .await
                .expect("republish");
        }
    }
    let _second = actuator_process(&stack);

    // Every delivery of both remediations is answered (the redeliveries announce the action
    // already taken), and the protection passes.
    let keys_answered = |rs: &[plumbline_bus::Record]| {
        let os = outcomes(rs);
        ["gh_branch_protection", "pull_request"].iter().all(|t| {
            os.iter()
                .filter(|o| o.kind == ActionKind::Remediation as i32 && o.action_type == *t)
                .count()
                >= 5
        })
    };
    assert!(
        actions
            .read_until(Duration::from_secs(90), keys_answered)
            .await,
        "outcomes: {:?}",
        outcomes(&actions.records)
    );
    wait_status(
        &store,
        &entity,
        "branch_protection_enabled",
        "pass",
        Duration::from_secs(30),
    )
    .await;
    let advisory_opened = || async {
        store
            .list_actions(&entity)
            .await
            .expect("actions")
            .into_iter()
            .any(|a| a.kind.as_str() == "alert" && a.status.as_str() == "applied")
            .then_some(())
    };
    eventually(
        Duration::from_secs(30),
        "the advisory opened",
        advisory_opened,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_eq!(count(&stack, PUT_PROTECTION), 1, "one protection change");
    assert_eq!(count(&stack, POST_PULLS), 1, "one pull request");
    assert_eq!(stack.sim.pull_requests("acme", "api").len(), 1);
    assert_eq!(count(&stack, POST_ADVISORIES), 1, "one advisory");
    let recorded = store.list_actions(&entity).await.expect("actions");
    assert!(
        recorded
            .iter()
            .all(|a| a.status.as_str() != "pending" && a.status.as_str() != "failed"),
        "{recorded:?}"
    );
    // One action per evaluation and rule: the redeliveries found theirs taken and claimed
    // nothing new. An evaluation after the crash planned against live state: protection in
    // place (skipped), the pull request open (reused).
    verdicts.drain(Duration::from_secs(2)).await;
    let evaluations: std::collections::BTreeSet<(String, String)> =
        failing_verdicts(&verdicts.records, &entity)
            .into_iter()
            .map(|v| (v.rule_name, v.evaluation_id))
            .collect();
    let mut keys = std::collections::BTreeSet::new();
    for a in recorded.iter().filter(|a| a.kind.as_str() == "remediation") {
        let evaluation = a.evaluation_id.map(|u| u.to_string()).unwrap_or_default();
        assert!(
            evaluations.contains(&(a.rule_name.clone(), evaluation.clone())),
            "{a:?} answers no failing verdict"
        );
        assert!(
            keys.insert((a.rule_name.clone(), evaluation)),
            "two actions for one verdict: {recorded:?}"
        );
    }
    let protection: Vec<_> = recorded
        .iter()
        .filter(|a| a.action_type == "gh_branch_protection")
        .collect();
    assert!(
        protection
            .iter()
            .all(|a| a.status.as_str() == "skipped" || a.status.as_str() == "applied"),
        "{protection:?}"
    );
    let pulls: Vec<_> = recorded
        .iter()
        .filter(|a| a.action_type == "pull_request")
        .collect();
    assert!(
        pulls
            .iter()
            .all(|a| a.status.as_str() == "applied" && a.provider_ref == pulls[0].provider_ref),
        "{pulls:?}"
    );
    stack.stop().await;
}

/// The failing verdicts for `entity`, one per evaluation and rule.
fn failing_verdicts(records: &[plumbline_bus::Record], entity: &str) -> Vec<Verdict> {
    let mut seen = std::collections::BTreeSet::new();
    records
        .iter()
        .filter(|r| r.key.as_deref() == Some(entity))
        .filter_map(|r| Verdict::decode(r.payload.as_slice()).ok())
        .filter(|v| v.status == EvalStatus::Fail as i32)
        .filter(|v| seen.insert((v.rule_name.clone(), v.evaluation_id.clone())))
        .collect()
}

/// 200 repositories lack a Dependabot configuration: 200 pull requests of four writes each,
/// 800 content-creating requests, made by three actuator replicas (processes of their own)
/// sharing one credential. GitHub allows 80 a minute per credential, whoever sends them; here
/// the "minute" is 3 s and the "hour" 60 s, on both sides (the simulator enforces the limit: a
/// request past it is refused and logged as such), so the same logic is proven in well under a
/// minute instead of ten. None is refused, the log shows at most 80 writes in any window, and
/// every pull request is opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_pull_requests_stay_within_the_content_creation_limit() {
    const REPOS: usize = 200;
    let (minute, hour) = (Duration::from_secs(3), Duration::from_secs(60));
    let db = TestDb::new().await;
    let (stack, _topics) = start(&db, |c| {
        c.content_per_minute = 80;
        c.content_per_hour = 1_000;
        c.content_windows = (minute, hour);
        c.run_actuator = false;
    })
    .await;
    let _replicas: Vec<ServiceProcess> = (0..3).map(|_| actuator_process(&stack)).collect();
    stack.sim.set_content_limits(Some(
        ContentLimits::new(80, 1_000).with_windows(minute, hour),
    ));
    let store = db.store();
    let names: Vec<String> = (0..REPOS).map(|i| format!("svc-{i:03}")).collect();
    let ids: Vec<u64> = names
        .iter()
        .map(|n| stack.sim.create_repo("acme", n, RepoOptions::default()))
        .collect();
    stack.sim.reset_request_log();
    let started = chrono::Utc::now();
    let repos: Vec<(&str, &str)> = names.iter().map(|n| ("acme", n.as_str())).collect();
    enroll(&stack, &[profile("deps", "on", "off", DEPENDABOT)], &repos).await;

    let last_report = std::sync::atomic::AtomicUsize::new(0);
    eventually(
        Duration::from_secs(5 * 60),
        "200 pull requests opened",
        || async {
            let opened = count(&stack, POST_PULLS) as usize;
            if opened / 20 != last_report.swap(opened, std::sync::atomic::Ordering::Relaxed) / 20 {
                eprintln!(
                    "budget test: {opened} pull requests after {}s",
                    (chrono::Utc::now() - started).num_seconds()
                );
            }
            (opened >= REPOS).then_some(())
        },
    )
    .await;
    for n in &names {
        assert_eq!(stack.sim.pull_requests("acme", n).len(), 1, "{n}");
    }
    // Counted before the log is read: the log only grows meanwhile (evaluations may still run).
    let total: u64 = stack.sim.request_counts().values().sum();
    let log = stack.sim.request_log();
    assert!(
        log.first().is_some_and(|r| r.at >= started),
        "the request log kept the whole run"
    );
    assert!(
        log.len() as u64 >= total,
        "the request log kept every request of the run ({} of {total})",
        log.len()
    );
    let w = writes(&log);
    assert!(
        w.iter().all(|r| r.fault.is_none()),
        "GitHub refused: {:?}",
        w.iter().find(|r| r.fault.is_some())
    );
    assert_eq!(
        w.len(),
        4 * REPOS,
        "tree, commit, ref and pull request per repository"
    );
    let mut busiest = 0;
    for (i, r) in w.iter().enumerate() {
        let within = w[i..]
            .iter()
            .take_while(|x| (x.at - r.at).to_std().is_ok_and(|d| d < minute))
            .count();
        busiest = busiest.max(within);
    }
    eprintln!(
        "budget test: {} writes, at most {busiest} in any {minute:?} window, {}s",
        w.len(),
        (chrono::Utc::now() - started).num_seconds()
    );
    assert!(
        busiest <= 80,
        "{busiest} content-creating requests within one window"
    );
    let slowest = w.len() / 80;
    assert!(
        (chrono::Utc::now() - started).num_seconds() as u64
            >= (slowest as u64 - 1) * minute.as_secs(),
        "the budget held writes back: {slowest} windows' worth"
    );
    // Each recorded once as applied, none failed: the parked ones waited, none was dropped.
    for id in &ids {
        // Later evaluations of the same failing rule (the `create` webhook of the pull
        // request's branch, say) reuse the one pull request; one may still be in flight.
        let recorded = eventually(Duration::from_secs(120), "no action in flight", || async {
            let recorded = store
                .list_actions(&format!("github/repository/{id}"))
                .await
                .expect("actions");
            recorded
                .iter()
                .all(|a| a.status.as_str() != "pending")
                .then_some(recorded)
        })
        .await;
        assert!(
            !recorded.is_empty()
                && recorded.iter().all(|a| a.status.as_str() == "applied"
                    && a.provider_ref == recorded[0].provider_ref),
            "{recorded:?}"
        );
    }
    stack.stop().await;
}

/// A rule type of the test's own that never passes, with a remediation GitHub accepts and that
/// changes nothing the rule reads: a fix that does not hold.
const NEVER_HOLDS: &str = r#"
version: v1
type: rule-type
name: never_holds
def:
  in_entity: repository
  rule_schema: {}
  ingest:
    type: rest
    rest:
      endpoint: "/repos/{{.Entity.Owner}}/{{.Entity.Name}}"
      parse: json
  eval:
    type: rego
    rego:
      type: deny-by-default
      def: |
        package minder
        default allow := false
  remediate:
    type: rest
    rest:
      method: PATCH
      endpoint: "/repos/{{.Entity.Owner}}/{{.Entity.Name}}"
      body: '{"description": "touched by plumbline"}'
"#;

/// The fix is applied, the verification evaluation still fails, and instead of applying it
/// again at once (a loop as fast as the pipeline) the actuator records and announces the
/// verdict as `deferred`, backing off exponentially per rule and entity.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fix_that_does_not_hold_backs_off_and_is_reported() {
    let db = TestDb::new().await;
    let (stack, topics) = start(&db, |c| c.fix_backoff = Duration::from_secs(3)).await;
    let store = db.store();
    let id = stack
        .sim
        .create_repo("acme", "stubborn", RepoOptions::default());
    let entity = format!("github/repository/{id}");
    let mut actions = Reader::new(&topics.actions);
    let mut c = client::connect(&stack.control_url(), None)
        .await
        .expect("control api");
    commands::apply_rule_type(&mut c, PROJECT, NEVER_HOLDS)
        .await
        .expect("rule type");
    commands::apply_profile(
        &mut c,
        PROJECT,
        &profile(
            "stubborn",
            "on",
            "off",
            "  - type: never_holds\n    def: {}\n",
        ),
    )
    .await
    .expect("profile");
    commands::register_repository(&mut c, PROJECT, "acme/stubborn", vec![], "")
        .await
        .expect("register");

    let deferred = |n: usize| {
        move |rs: &[plumbline_bus::Record]| {
            outcomes(rs)
                .iter()
                .filter(|o| o.status == ActionStatus::Deferred as i32)
                .count()
                >= n
        }
    };
    assert!(
        actions
            .read_until(Duration::from_secs(60), deferred(1))
            .await,
        "a deferred outcome announced: {:?}",
        outcomes(&actions.records)
    );
    // Let any loop show itself.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        count(&stack, PATCH_REPO),
        1,
        "the fix was applied once, then held back"
    );
    let o = outcomes(&actions.records)
        .into_iter()
        .find(|o| o.status == ActionStatus::Deferred as i32)
        .expect("deferred");
    assert!(
        o.message.contains("did not hold") && o.message.contains("1 in a row"),
        "{}",
        o.message
    );

    // After the back-off a new failing evaluation tries once more, and the next wait doubles.
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.reconcile(plumbline_proto::v1::ReconcileRequest {
        project: PROJECT.into(),
        entity_id: entity.clone(),
    })
    .await
    .expect("reconcile");
    eventually(
        Duration::from_secs(30),
        "the fix tried again after the back-off",
        || async { (count(&stack, PATCH_REPO) == 2).then_some(()) },
    )
    .await;
    let twice = |n: usize| {
        move |rs: &[plumbline_bus::Record]| {
            outcomes(rs)
                .iter()
                .filter(|o| {
                    o.status == ActionStatus::Deferred as i32 && o.message.contains("2 in a row")
                })
                .count()
                >= n
        }
    };
    assert!(
        actions.read_until(Duration::from_secs(30), twice(1)).await,
        "{:?}",
        outcomes(&actions.records)
    );
    // Within the doubled wait, another failing evaluation changes nothing on GitHub.
    let before = outcomes(&actions.records)
        .iter()
        .filter(|o| o.status == ActionStatus::Deferred as i32 && o.message.contains("2 in a row"))
        .count();
    c.reconcile(plumbline_proto::v1::ReconcileRequest {
        project: PROJECT.into(),
        entity_id: entity.clone(),
    })
    .await
    .expect("reconcile");
    assert!(
        actions
            .read_until(Duration::from_secs(30), twice(before + 1))
            .await,
        "{:?}",
        outcomes(&actions.records)
    );
    assert_eq!(count(&stack, PATCH_REPO), 2);
    let recorded = store.list_actions(&entity).await.expect("actions");
    assert_eq!(
        recorded
            .iter()
            .filter(|a| a.status.as_str() == "applied")
            .count(),
        2,
        "{recorded:?}"
    );
    assert!(
        recorded
            .iter()
            .filter(|a| a.status.as_str() == "deferred")
            .count()
            >= 3,
        "{recorded:?}"
    );
    stack.stop().await;
}

/// The same failing verdict handled by two actuator replicas at once (what a rebalance
/// produces: the new owner of the partition receives what the old one has not committed) while
/// the first one's write is still in flight: the second finds the claim held under a live
/// lease and waits for it instead of applying the fix a second time; once the lease is over it
/// finds the action finished and only announces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_actuators_racing_on_one_verdict_apply_it_once() {
    let db = TestDb::new().await;
    let (stack, topics) = start(&db, |c| c.run_actuator = false).await;
    let id = stack
        .sim
        .create_repo("acme", "contested", RepoOptions::default());
    let entity = format!("github/repository/{id}");
    // The protection PUT takes 4 s: the window in which the other replica gets the verdict.
    stack
        .sim
        .add_fault(
            plumbline_github_sim::Fault::latency(Duration::from_secs(4))
                .on_route("/repos/{owner}/{repo}/branches/{branch}/protection")
                .on_method("PUT"),
        )
        .expect("fault");
    let mut replicas = Vec::new();
    for group in ["a", "b"] {
        let mut ac = stack.actuator_config();
        // Two groups, so both replicas certainly receive the verdict.
        ac.consumer.group_id = format!("{}-{group}", ac.consumer.group_id);
        ac.claim_lease_secs = 8;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let running = plumbline_actuator::start(ac, shutdown.clone())
            .await
            .expect("actuator");
        replicas.push((shutdown, running));
    }
    let mut actions = Reader::new(&topics.actions);
    enroll(
        &stack,
        &[profile("guard", "on", "off", PROTECTION)],
        &[("acme", "contested")],
    )
    .await;

    // Both replicas answer the verdict: one applied it, the other announces that action.
    let answered = |rs: &[plumbline_bus::Record]| {
        let os = outcomes(rs);
        let applied: Vec<_> = os
            .iter()
            .filter(|o| {
                o.kind == ActionKind::Remediation as i32 && o.status == ActionStatus::Applied as i32
            })
            .collect();
        applied.len() >= 2
            && applied
                .iter()
                .all(|o| o.idempotency_key == applied[0].idempotency_key)
    };
    assert!(
        actions.read_until(Duration::from_secs(60), answered).await,
        "outcomes: {:?}",
        outcomes(&actions.records)
    );
    assert_eq!(count(&stack, PUT_PROTECTION), 1, "the fix was applied once");
    let recorded = db.store().list_actions(&entity).await.expect("actions");
    assert_eq!(
        recorded
            .iter()
            .filter(|a| a.kind.as_str() == "remediation" && a.status.as_str() == "applied")
            .count(),
        1,
        "{recorded:?}"
    );
    for (shutdown, running) in replicas {
        shutdown.cancel();
        let _ = running.task.await;
    }
    stack.stop().await;
}

/// A rename whose webhook was lost, then a new repository under the old name: the entity still
/// names the old one. The evaluator reads the name back and judges nothing on the newcomer's
/// state (an error verdict says why); and a failing verdict that reaches the actuator anyway (one
/// published before, a replay) is not acted on either: the actuator reads the name back too,
/// finds another repository id behind it, sends nothing and records why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_is_never_sent_to_a_name_that_now_belongs_to_another_repository() {
    let db = TestDb::new().await;
    let (stack, topics) = start(&db, |_| {}).await;
    let store = db.store();
    let id = stack.sim.create_repo(
        "acme",
        "billing",
        RepoOptions {
            protected: true,
            ..RepoOptions::default()
        },
    );
    let entity = format!("github/repository/{id}");
    let mut verdicts = Reader::new(&topics.verdicts);
    enroll(
        &stack,
        &[profile("guard", "on", "off", PROTECTION)],
        &[("acme", "billing")],
    )
    .await;
    wait_status(
        &store,
        &entity,
        "branch_protection_enabled",
        "pass",
        Duration::from_secs(60),
    )
    .await;

    // GitHub's webhooks stop reaching ingest; the repository is renamed and a new, unprotected
    // repository takes the old name.
    stack.sim.set_webhook_url(None);
    stack
        .sim
        .rename_repo("acme", "billing", "billing-archive")
        .expect("rename");
    let newcomer = stack
        .sim
        .create_repo("acme", "billing", RepoOptions::default());
    assert_ne!(newcomer, id);
    let mut actions = Reader::new(&topics.actions);
    let mut c = client::connect(&stack.control_url(), None)
        .await
        .expect("control api");
    c.reconcile(plumbline_proto::v1::ReconcileRequest {
        project: PROJECT.into(),
        entity_id: entity.clone(),
    })
    .await
    .expect("reconcile");
    wait_status(
        &store,
        &entity,
        "branch_protection_enabled",
        "error",
        Duration::from_secs(60),
    )
    .await;
    let rows = store
        .list_status(PROJECT, Some(&entity), None)
        .await
        .expect("status");
    assert!(
        rows.iter()
            .all(|r| r.message.contains("now names repository")),
        "{rows:?}"
    );

    // A failing verdict for the entity arrives anyway.
    assert!(
        verdicts
            .read_until(Duration::from_secs(10), |rs| rs
                .iter()
                .any(|r| r.key.as_deref() == Some(entity.as_str())))
            .await
    );
    let mut v = verdicts
        .records
        .iter()
        .filter(|r| r.key.as_deref() == Some(entity.as_str()))
        .find_map(|r| Verdict::decode(r.payload.as_slice()).ok())
        .expect("a verdict of the entity");
    v.status = EvalStatus::Fail as i32;
    v.remediate = "on".into();
    v.evaluation_id = uuid::Uuid::new_v4().to_string();
    let producer = Producer::new(&ProducerConfig::new(kafka(), "identity-test")).expect("producer");
    producer
        .publish(
            &topics.verdicts,
            &entity,
            &v.encode_to_vec(),
            "dev.plumbline.verdict.v1",
            &uuid::Uuid::new_v4().to_string(),
            &TraceContext::new_root(),
            &BTreeMap::new(),
        )
        .await
        .expect("publish");

    let refused = |rs: &[plumbline_bus::Record]| {
        outcomes(rs).iter().any(|o| {
            o.status == ActionStatus::Failed as i32 && o.message.contains("now names repository")
        })
    };
    assert!(
        actions.read_until(Duration::from_secs(60), refused).await,
        "outcomes: {:?}",
        outcomes(&actions.records)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        count(&stack, PUT_PROTECTION),
        0,
        "nothing was written to the newcomer"
    );
    assert!(
        stack.sim.protection("acme", "billing", "main").is_none(),
        "the newcomer was left as it was"
    );
    let o = outcomes(&actions.records)
        .into_iter()
        .find(|o| o.status == ActionStatus::Failed as i32)
        .expect("failed outcome");
    assert!(
        o.message.contains(&newcomer.to_string()) && o.message.contains(&id.to_string()),
        "{}",
        o.message
    );
    stack.stop().await;
}
