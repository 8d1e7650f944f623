//! Every real GitHub payload in `../shared/github-webhooks` (the folder is the X-GitHub-Event),
//! signed and posted to a running ingest: each yields exactly the records the table below says,
//! or is explicitly ignored; none gets a 5xx.

use crate::support;

use plumbline_proto::v1::{EntityKind, EventReason};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use support::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// One record per named repository, of this kind and reason; the store is changed as said.
    Records {
        kind: EntityKind,
        reason: EventReason,
        registry: Registry,
    },
    /// Understood, deliberately not acted on (200, nothing published).
    Ignored,
    /// An event Plumbline does not use (200, nothing published, counted as unknown).
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Registry {
    Unchanged,
    Enrolled,
    /// A removal: announced by a `RETIRED` record, the store unchanged (the evaluator retires
    /// the repository once GitHub confirms it is gone).
    Announced,
}

use Expect::*;

const REPO: Expect = Records {
    kind: EntityKind::Repository,
    reason: EventReason::Webhook,
    registry: Registry::Unchanged,
};
const ENROLL: Expect = Records {
    kind: EntityKind::Repository,
    reason: EventReason::Registered,
    registry: Registry::Enrolled,
};
const RETIRE: Expect = Records {
    kind: EntityKind::Repository,
    reason: EventReason::Retired,
    registry: Registry::Announced,
};
const PULL: Expect = Records {
    kind: EntityKind::PullRequest,
    reason: EventReason::Webhook,
    registry: Registry::Unchanged,
};
const RELEASE: Expect = Records {
    kind: EntityKind::Release,
    reason: EventReason::Webhook,
    registry: Registry::Unchanged,
};
const RELEASE_GONE: Expect = Records {
    kind: EntityKind::Release,
    reason: EventReason::Retired,
    registry: Registry::Unchanged,
};

/// (event folder, file name prefix, expectation): the first matching row wins; a folder not
/// listed is an event Plumbline does not use.
const TABLE: &[(&str, &str, Expect)] = &[
    ("ping", "", Ignored),
    ("branch_protection_rule", "", REPO),
    ("code_scanning_alert", "", REPO),
    ("create", "", REPO),
    ("dependabot_alert", "", REPO),
    ("deploy_key", "", REPO),
    ("member", "", REPO),
    // Plumbline's own webhook on the repository was deleted: re-evaluate it.
    ("meta", "", REPO),
    ("public", "", REPO),
    ("repository_vulnerability_alert", "", REPO),
    ("secret_scanning_alert", "", REPO),
    ("team_add", "", REPO),
    // Pushes to the default branch only; the corpus also pushes tags.
    ("push", "with-new-branch", REPO),
    ("push", "with-no-username-committer", REPO),
    ("push", "", Ignored),
    ("repository", "created", ENROLL),
    ("repository", "transferred", RETIRE),
    ("repository", "", REPO),
    // GitHub's global advisory database: no repository.
    ("security_advisory", "", Ignored),
    ("installation", "created", ENROLL),
    ("installation", "deleted", RETIRE),
    ("installation", "new_permissions_accepted", REPO),
    ("installation", "suspend", Ignored),
    ("installation", "unsuspend", Ignored),
    ("installation_repositories", "added", ENROLL),
    ("installation_repositories", "removed", RETIRE),
    ("pull_request", "", PULL),
    ("release", "deleted", RELEASE_GONE),
    ("release", "", RELEASE),
    // The corpus's package examples are typed `npm` (even the one named docker): only container
    // images are artifacts. Container packages are mapped in the unit tests and end to end.
    ("package", "", Ignored),
    ("registry_package", "", Ignored),
];

fn expectation(event: &str, file: &str) -> Expect {
    TABLE
        .iter()
        .find(|(e, prefix, _)| *e == event && file.starts_with(prefix))
        .map(|(_, _, x)| *x)
        .unwrap_or(Unknown)
}

fn corpus() -> Vec<(String, String, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/github-webhooks/api.github.com");
    let mut out = vec![];
    for dir in
        std::fs::read_dir(&root).unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
    {
        let dir = dir.expect("entry").path();
        let event = dir.file_name().expect("name").to_string_lossy().to_string();
        for f in std::fs::read_dir(&dir).expect("event folder") {
            let f = f.expect("entry").path();
            let file = f.file_name().expect("name").to_string_lossy().to_string();
            out.push((event.clone(), file, std::fs::read(&f).expect("payload")));
        }
    }
    out.sort();
    out
}

/// The repositories a payload names (what the records must be about).
fn repositories(event: &str, payload: &serde_json::Value) -> Vec<u64> {
    let ids = |key: &str| -> Vec<u64> {
        payload[key]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["id"].as_u64()).collect())
            .unwrap_or_default()
    };
    match event {
        "installation" => ids("repositories"),
        "installation_repositories" => {
            [ids("repositories_added"), ids("repositories_removed")].concat()
        }
        _ => payload["repository"]["id"].as_u64().into_iter().collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_corpus_payload_is_mapped_as_the_table_says() {
    let h = Harness::start().await;
    let corpus = corpus();
    assert_eq!(corpus.len(), 273, "the whole corpus is read");
    let store = h.db.store();
    // delivery id -> (file, expectation, payload)
    let mut sent = BTreeMap::new();
    let mut expected_records = 0;
    let mut unknown = 0;
    for (event, file, body) in &corpus {
        let expect = expectation(event, file);
        let payload: serde_json::Value = serde_json::from_slice(body).expect("corpus is json");
        let d = delivery();
        let mut before = BTreeMap::new();
        if matches!(
            expect,
            Records {
                registry: Registry::Announced,
                ..
            }
        ) {
            for id in repositories(event, &payload) {
                let active = store
                    .get_entity(&format!("github/repository/{id}"))
                    .await
                    .expect("store")
                    .is_some();
                before.insert(id, active);
            }
        }
        let answer = h.post(event, &d, body).await;
        let what = format!("{event}/{file}");
        match expect {
            Records { registry, .. } => {
                assert_eq!(answer.status, 202, "{what}: {}", answer.body);
                let repos = repositories(event, &payload);
                assert!(
                    !repos.is_empty(),
                    "{what}: the table expects records, the payload names no repository"
                );
                assert_eq!(answer.body["entity_events"], repos.len(), "{what}");
                // The registry change is done before the 2xx.
                for id in &repos {
                    let active = store
                        .get_entity(&format!("github/repository/{id}"))
                        .await
                        .expect("store")
                        .is_some();
                    match registry {
                        Registry::Enrolled => assert!(active, "{what}: repository {id} enrolled"),
                        Registry::Announced => assert_eq!(
                            Some(&active),
                            before.get(id),
                            "{what}: repository {id} announced, not retired by ingest"
                        ),
                        Registry::Unchanged => {}
                    }
                }
                expected_records += repos.len();
            }
            Ignored => {
                assert_eq!(answer.status, 200, "{what}: {}", answer.body);
                assert!(
                    answer.body["ignored"].is_string(),
                    "{what}: {}",
                    answer.body
                );
            }
            Unknown => {
                assert_eq!(answer.status, 200, "{what}: {}", answer.body);
                unknown += 1;
            }
        }
        sent.insert(d, (what, expect, event.clone(), payload));
    }

    let records = h.records(expected_records, Duration::from_secs(60)).await;
    assert_eq!(
        records.len(),
        expected_records,
        "exactly the records the table expects"
    );
    let mut per_delivery: BTreeMap<String, usize> = BTreeMap::new();
    for (record, ev) in &records {
        let (what, expect, event, payload) = sent
            .get(&ev.delivery_id)
            .expect("record of a delivery that was sent");
        let Records { kind, reason, .. } = *expect else {
            panic!("{what}: published although the table says {expect:?}");
        };
        let entity = ev.entity.as_ref().expect("entity");
        assert_eq!(
            (entity.kind, ev.reason),
            (kind as i32, reason as i32),
            "{what}"
        );
        assert_eq!(
            record.key.as_deref(),
            Some(ev.entity_ref().expect("ref").id().as_str()),
            "{what}: keyed by entity id"
        );
        assert_eq!(&ev.source_event, event, "{what}");
        let repo_id = match kind {
            EntityKind::Repository => entity.upstream_id.clone(),
            _ => ev
                .parent
                .as_ref()
                .expect("child entities name their repository")
                .upstream_id
                .clone(),
        };
        assert!(
            repositories(event, payload)
                .iter()
                .any(|id| id.to_string() == repo_id),
            "{what}: about a repository the payload names"
        );
        if kind == EntityKind::PullRequest {
            assert_eq!(
                entity.upstream_id,
                payload["pull_request"]["id"]
                    .as_u64()
                    .expect("pr id")
                    .to_string(),
                "{what}"
            );
            assert_eq!(
                Some(ev.number),
                payload["pull_request"]["number"].as_i64(),
                "{what}"
            );
        }
        assert!(
            record.headers.contains_key("traceparent") && record.headers.contains_key("ce_type"),
            "{what}: headers"
        );
        *per_delivery.entry(ev.delivery_id.clone()).or_default() += 1;
    }
    let m = &h.ingest.metrics;
    assert_eq!(
        m.counter_value(
            "plumbline_ingest_deliveries_total",
            &[("event", "other"), ("outcome", "unknown")]
        ),
        unknown,
        "unknown events are counted"
    );
    assert_eq!(
        m.counter_value(
            "plumbline_ingest_deliveries_total",
            &[("event", "pull_request"), ("outcome", "published")]
        ),
        28
    );
    eprintln!(
        "corpus: {} payloads, {} published deliveries, {} records, {unknown} unknown",
        corpus.len(),
        per_delivery.len(),
        records.len()
    );
    h.stop().await;
}

#[test]
fn every_event_the_issue_names_is_understood() {
    for e in [
        "repository",
        "meta",
        "branch_protection_rule",
        "branch_protection_configuration",
        "repository_ruleset",
        "push",
        "create",
        "member",
        "public",
        "team_add",
        "security_and_analysis",
        "secret_scanning_alert",
        "code_scanning_alert",
        "repository_vulnerability_alert",
        "repository_advisory",
        "security_advisory",
        "installation",
        "installation_repositories",
        "pull_request",
        "release",
        "package",
        "registry_package",
        "ping",
    ] {
        assert!(plumbline_ingest::is_known_event(e), "{e}");
    }
}

/// What the fuzz target checks, over a fixed set of mangled real payloads so it runs in CI:
/// every corpus payload under every event name, truncated at several points and with bytes
/// flipped, maps or is refused — no panic.
#[test]
fn mangled_corpus_payloads_never_panic() {
    let events: Vec<&str> = plumbline_ingest::REPOSITORY_EVENTS
        .iter()
        .chain(plumbline_ingest::OTHER_KNOWN_EVENTS)
        .copied()
        .collect();
    let mut inputs = 0;
    for (_, _, body) in corpus() {
        let mut variants = vec![body.clone()];
        for cut in [
            1,
            body.len() / 3,
            body.len() / 2,
            body.len().saturating_sub(1),
        ] {
            variants.push(body[..cut.min(body.len())].to_vec());
        }
        for at in [0, body.len() / 7, body.len() / 5, body.len() / 2] {
            let mut v = body.clone();
            if let Some(b) = v.get_mut(at) {
                *b ^= 0x5a;
            }
            variants.push(v);
        }
        // Types swapped where ingest looks: ids as strings, objects as arrays.
        let text = String::from_utf8_lossy(&body).to_string();
        variants.push(
            text.replacen("\"id\":", "\"id\":\"x\",\"was\":", 1)
                .into_bytes(),
        );
        variants.push(
            text.replacen("\"repository\":{", "\"repository\":[{", 1)
                .into_bytes(),
        );
        for v in &variants {
            for e in &events {
                let _ = plumbline_ingest::parse_and_map("github", e, "d", v);
                inputs += 1;
            }
        }
    }
    assert!(inputs > 50_000, "{inputs} inputs tried");
}
