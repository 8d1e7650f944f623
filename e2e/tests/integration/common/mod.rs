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
