//! Webhook payloads and their delivery.
//!
//! Deliveries go through one queue drained by one task, so receivers see events in the order the
//! changes happened (in particular per repository), and the code that changes state never waits
//! for a receiver. Each delivery is retried a few times with a short backoff, then dropped, like
//! GitHub, which does not redeliver automatically either.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::render;
use crate::state::{Actor, Org, Repo};

/// Id of the (single, simulated) webhook, reported in `X-GitHub-Hook-ID`.
pub(crate) const HOOK_ID: u64 = 424_242;

/// Attempts per delivery before giving up.
const MAX_ATTEMPTS: u32 = 3;

/// Backoff after the first failed attempt; doubled after each further failure.
const BACKOFF: Duration = Duration::from_millis(200);

/// Upper bound for one attempt, so a hanging receiver cannot stall the queue for long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A webhook to send: the event name (`X-GitHub-Event`) and its payload.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub name: &'static str,
    pub payload: Value,
}

pub(crate) fn base_payload(
    base: &str,
    org: &Org,
    repo: &Repo,
    action: &str,
    actor: Actor,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("action".into(), Value::String(action.to_owned()));
    m.insert("repository".into(), render::repo_json(base, org, repo));
    m.insert("organization".into(), render::org_json(base, org));
    m.insert("sender".into(), render::sender_json(base, actor));
    m.insert("installation".into(), render::installation_json());
    m
}

/// A `repository` event (e.g. action "created").
pub(crate) fn repository_event(
    base: &str,
    org: &Org,
    repo: &Repo,
    action: &str,
    actor: Actor,
) -> Event {
    Event {
        name: "repository",
        payload: Value::Object(base_payload(base, org, repo, action, actor)),
    }
}

/// A `branch_protection_rule` event; `changes` is given for "edited".
pub(crate) fn rule_event(
    base: &str,
    org: &Org,
    repo: &Repo,
    action: &str,
    rule: Value,
    changes: Option<Value>,
    actor: Actor,
) -> Event {
    let mut m = base_payload(base, org, repo, action, actor);
    m.insert("rule".into(), rule);
    if let Some(changes) = changes {
        m.insert("changes".into(), changes);
    }
    Event {
        name: "branch_protection_rule",
        payload: Value::Object(m),
    }
}

/// A `push` event: `fields` holds the push-specific part (ref, before/after, commits, pusher);
/// the repository is rendered the way push payloads show it (timestamps as Unix seconds,
/// `stargazers` and `master_branch`).
pub(crate) fn push_event(base: &str, org: &Org, repo: &Repo, fields: Value, actor: Actor) -> Event {
    let mut m = base_payload(base, org, repo, "", actor);
    m.remove("action");
    if let Some(Value::Object(repository)) = m.get_mut("repository") {
        repository.insert(
            "created_at".into(),
            Value::from(repo.created_at.timestamp()),
        );
        repository.insert("pushed_at".into(), Value::from(repo.pushed_at.timestamp()));
        repository.insert("stargazers".into(), Value::from(0));
        repository.insert(
            "master_branch".into(),
            Value::String(repo.default_branch.clone()),
        );
        // Push payloads describe the owner like a git identity too (name and email); an
        // organization has no public email.
        if let Some(Value::Object(owner)) = repository.get_mut("owner") {
            let login = owner.get("login").cloned().unwrap_or(Value::Null);
            owner.insert("name".into(), login);
            owner.insert("email".into(), Value::Null);
        }
    }
    if let Value::Object(fields) = fields {
        m.extend(fields);
    }
    Event {
        name: "push",
        payload: Value::Object(m),
    }
}

/// A `repository` "edited" event with GitHub's `changes` (`{field: {"from": old}}`).
pub(crate) fn repository_edited_event(
    base: &str,
    org: &Org,
    repo: &Repo,
    changes: Value,
    actor: Actor,
) -> Event {
    let mut m = base_payload(base, org, repo, "edited", actor);
    m.insert("changes".into(), changes);
    Event {
        name: "repository",
        payload: Value::Object(m),
    }
}

/// A `security_and_analysis` event: no action, the full repository, and the previous settings
/// under `changes.from.security_and_analysis`.
pub(crate) fn security_and_analysis_event(
    base: &str,
    org: &Org,
    repo: &Repo,
    previous: Value,
    actor: Actor,
) -> Event {
    let mut m = base_payload(base, org, repo, "", actor);
    m.remove("action");
    m.insert("repository".into(), render::full_repo_json(base, org, repo));
    m.insert(
        "changes".into(),
        serde_json::json!({ "from": { "security_and_analysis": previous } }),
    );
    Event {
        name: "security_and_analysis",
        payload: Value::Object(m),
    }
}

/// `sha256=<hex>` HMAC of the raw body, the value of `X-Hub-Signature-256`.
pub(crate) fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail; the fallback only keeps the
    // function total.
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::from("sha256="),
    }
}

/// One queued delivery.
struct Delivery {
    event: &'static str,
    id: Uuid,
    url: String,
    body: Vec<u8>,
}

/// Counters shared between the simulator and the delivery task.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
}

/// Owns the delivery queue. The task draining it is started lazily on the first delivery,
/// because `Simulator::new` is synchronous and may run outside a tokio runtime.
pub(crate) struct Dispatcher {
    secret: String,
    counters: Arc<Counters>,
    queue: Mutex<Option<mpsc::UnboundedSender<Delivery>>>,
}

impl Dispatcher {
    pub(crate) fn new(secret: String) -> Dispatcher {
        Dispatcher {
            secret,
            counters: Arc::new(Counters::default()),
            queue: Mutex::new(None),
        }
    }

    pub(crate) fn sent(&self) -> u64 {
        self.counters.sent.load(Ordering::Relaxed)
    }

    pub(crate) fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Queues an event for delivery to `url`; never blocks.
    pub(crate) fn enqueue(&self, url: &str, event: Event) {
        let body = match serde_json::to_vec(&event.payload) {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(%error, event = event.name, "failed to serialize webhook payload");
                return;
            }
        };
        let mut delivery = Delivery {
            event: event.name,
            id: Uuid::new_v4(),
            url: url.to_owned(),
            body,
        };
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = queue.as_ref() {
            match sender.send(delivery) {
                Ok(()) => return,
                // The task is gone (its runtime shut down); start a new one below.
                Err(mpsc::error::SendError(returned)) => delivery = returned,
            }
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                event = delivery.event,
                "no tokio runtime to deliver webhooks, dropping delivery"
            );
            return;
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        runtime.spawn(deliver_all(
            receiver,
            self.secret.clone(),
            Arc::clone(&self.counters),
        ));
        if sender.send(delivery).is_err() {
            tracing::warn!("webhook delivery task stopped immediately, dropping delivery");
        }
        *queue = Some(sender);
    }
}

/// Drains the queue until the dispatcher (and with it the simulator) is dropped.
async fn deliver_all(
    mut queue: mpsc::UnboundedReceiver<Delivery>,
    secret: String,
    counters: Arc<Counters>,
) {
    let client = match reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build() {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(%error, "failed to build webhook client, using defaults");
            reqwest::Client::new()
        }
    };
    while let Some(delivery) = queue.recv().await {
        if deliver(&client, &secret, &delivery).await {
            counters.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends one delivery with retries; true on a 2xx answer. Retries keep the delivery id, like
/// GitHub redeliveries, so receivers can deduplicate.
async fn deliver(client: &reqwest::Client, secret: &str, delivery: &Delivery) -> bool {
    let signature = signature(secret, &delivery.body);
    let delivery_id = delivery.id.to_string();
    let mut backoff = BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        let result = client
            .post(&delivery.url)
            .header("Content-Type", "application/json")
            .header("User-Agent", "GitHub-Hookshot/sim")
            .header("X-GitHub-Event", delivery.event)
            .header("X-GitHub-Delivery", &delivery_id)
            .header("X-GitHub-Hook-ID", HOOK_ID.to_string())
            .header("X-GitHub-Hook-Installation-Target-Type", "integration")
            .header(
                "X-GitHub-Hook-Installation-Target-ID",
                render::INSTALLATION_ID.to_string(),
            )
            .header("X-Hub-Signature-256", &signature)
            .body(delivery.body.clone())
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(
                    event = delivery.event,
                    delivery = %delivery_id,
                    attempt,
                    "webhook delivered"
                );
                return true;
            }
            Ok(response) => tracing::warn!(
                event = delivery.event,
                delivery = %delivery_id,
                attempt,
                status = response.status().as_u16(),
                "webhook receiver rejected delivery"
            ),
            Err(error) => tracing::warn!(
                event = delivery.event,
                delivery = %delivery_id,
                attempt,
                %error,
                "webhook delivery failed"
            ),
        }
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    tracing::warn!(
        event = delivery.event,
        delivery = %delivery_id,
        "giving up on webhook delivery"
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_github_example() {
        // Example from GitHub's "Validating webhook deliveries" documentation.
        assert_eq!(
            signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
