//! Shared test harness: a private database and topic namespace per test, on the real broker and
//! the real Postgres that `scripts/test.sh` makes sure are running.
#![allow(dead_code, unused_imports)]

pub use plumbline_bus::testing::{eventually, kafka, topics, unique, Reader};
pub use plumbline_store::testing::TestDatabase as TestDb;

/// Signs a webhook body as GitHub does.
pub fn sign(secret: &str, body: &[u8]) -> String {
    plumbline_github::webhook::sign(secret.as_bytes(), body)
}

/// Applies the shipped rule types and profiles to project `default` and registers the repositories, through the
/// control API, the way an operator would.
pub async fn enroll(stack: &plumb::stack::Stack, repos: &[(&str, &str)]) {
    let mut c = plumb::client::connect(&stack.control_url(), None)
        .await
        .expect("control api");
    for (_, yaml) in plumb::shipped::RULE_TYPES {
        plumb::commands::apply_rule_type(&mut c, "default", yaml)
            .await
            .expect("apply rule type");
    }
    for (_, yaml) in plumb::shipped::PROFILES {
        plumb::commands::apply_profile(&mut c, "default", yaml)
            .await
            .expect("apply profile");
    }
    for (o, n) in repos {
        plumb::commands::register_repository(&mut c, "default", &format!("{o}/{n}"), vec![], "")
            .await
            .expect("register");
    }
}

/// Waits until the newest entity event of `entity` has been evaluated: a verdict of `rule`
/// names it as its cause. Until then a queued event (enrolment sends several) may still read
/// the live state a test is about to change, and act on it under its own trace. Events that
/// wait together are coalesced into the newest, so only the newest is sure to have a verdict.
pub async fn wait_settled(topics: &plumbline_bus::Topics, entity: &str, rule: &str) {
    use plumbline_proto::v1::{EntityEvent, Verdict};
    use plumbline_proto::Message as _;
    use std::time::Duration;
    let mut events = Reader::new(&topics.entity_events);
    let mut verdicts = Reader::new(&topics.verdicts);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        events.drain(Duration::from_millis(500)).await;
        verdicts.drain(Duration::from_millis(500)).await;
        let newest = events
            .records
            .iter()
            .filter(|r| r.key.as_deref() == Some(entity))
            .filter_map(|r| EntityEvent::decode(r.payload.as_slice()).ok())
            .next_back()
            .map(|e| e.event_id);
        if let Some(id) = newest {
            let evaluated = verdicts
                .records
                .iter()
                .filter(|r| r.key.as_deref() == Some(entity))
                .filter_map(|r| Verdict::decode(r.payload.as_slice()).ok())
                .any(|v| v.rule_name == rule && v.cause_event_id == id);
            if evaluated {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the newest event of {entity} was not evaluated within 60 s"
        );
    }
}

/// Asserts that a checker reported every problem in `wanted` (each a part of one of its lines):
/// the tests that weaken a shipped file show each rule can fail.
pub fn assert_reported(found: &[String], wanted: &[&str]) {
    for want in wanted {
        assert!(found.iter().any(|p| p.contains(want)), "{want}: {found:?}");
    }
}
