//! remediation_latency: from a webhook sent to the remediation applied on GitHub, at a steady
//! 500 events/s, with GitHub (the simulator) answering at once.
//!
//! Starts what it needs: a private tansu broker, a fresh database on the local Postgres, and the
//! whole stack in this process (`plumb::stack`: simulator, ingest, evaluator, actuator, control)
//! with `BENCH_REPOS` (default 10,000) protected repositories under the shipped
//! `branch-protection` profile.
//!
//! Each event is a human switching one repository's protection off: the protection is removed
//! in the simulator and the load generator posts GitHub's `branch_protection_rule` "deleted"
//! webhook (a real payload from `../shared/github-webhooks`, pointed at that repository) to
//! ingest, `BENCH_RATE` (default 500) per second for `BENCH_SECONDS` (default 20), each repository
//! once. GitHub delivers webhooks concurrently, so the generator does too (the simulator's own
//! dispatcher, one delivery at a time, is switched off). The latency of an event is from just
//! before its webhook is posted to the moment the actuator's `applied` outcome for the
//! repository is published (after the PUT was answered and recorded), which is later than the
//! simulator applying it: the figure errs high.
//!
//! The content-creation budget is lifted for the run (10,000 protection changes in 20 s are far
//! past GitHub's 80 a minute; the budget's behaviour is the actuator tests' business, the
//! pipeline's latency is this benchmark's).
//!
//! Before the measured run, 200 remediations on repositories of their own warm the pipeline
//! up (the consumer groups' first assignment, connection pools, compiled rule types, caches);
//! they are not counted. Besides the figures, stderr shows the GitHub requests per event, the
//! worst latency of each second of sending (a rising line means the pipeline fell behind the
//! offered rate) and p90/p95/max.
//!
//! Baseline, same run: the GitHub call alone, the same PUT sent straight to the simulator,
//! 1,000 times. Prints `p50_ms`, `p99_ms`, `remediations`, `baseline_put_p50_ms`,
//! `baseline_put_p99_ms`.
//!
//! Before the main run, a ladder on the same stack, drained before each step (no record in
//! flight in the evaluator or the actuator): 100, 200, 300, 400, 500, 750 and 1,000 events/s,
//! each for `BENCH_LADDER_SECONDS` (default 5) on repositories of its own, stopping at the
//! first rate whose p99 reaches 1 s (or that loses an event). `max_rate_p99_under_1s` is the
//! highest rate that stayed under (0: none did).

use anyhow::{bail, Context as _};
use plumb::stack::{Stack, StackConfig};
use plumbline_bench::http1::Pool;
use plumbline_bus::testing::{free_port, topics_on, Tansu};
use plumbline_domain::EntityRef;
use plumbline_proto::v1::ActionStatus;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROJECT: &str = "default";
/// Remediations before the measured run, on repositories of their own.
const WARM_UP: usize = 200;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// GitHub's `branch_protection_rule` "deleted" payload, from the corpus.
fn deleted_payload() -> anyhow::Result<serde_json::Value> {
    for root in [
        "../shared/github-webhooks/api.github.com",
        "../../shared/github-webhooks/api.github.com",
    ] {
        let p = std::path::Path::new(root).join("branch_protection_rule/deleted.payload.json");
        if let Ok(text) = std::fs::read_to_string(&p) {
            return serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()));
        }
    }
    bail!("the webhook corpus (../shared/github-webhooks) is not beside this checkout; run from the repository root")
}

/// The payload pointed at one repository.
fn payload_for(template: &serde_json::Value, owner: &str, name: &str, id: u64) -> Vec<u8> {
    let mut v = template.clone();
    if let Some(repo) = v.get_mut("repository") {
        repo["id"] = id.into();
        repo["name"] = name.into();
        repo["full_name"] = format!("{owner}/{name}").into();
        repo["default_branch"] = "main".into();
        if let Some(o) = repo.get_mut("owner") {
            o["login"] = owner.into();
        }
    }
    if let Some(rule) = v.get_mut("rule") {
        rule["name"] = "main".into();
        rule["repository_id"] = id.into();
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Posts the webhooks: a human switched each repository's protection off.
struct Generator<'a> {
    stack: &'a Stack,
    /// Keep-alive connections to ingest (a lean client, see `plumbline_bench::http1`).
    pool: &'a Arc<Pool>,
    template: &'a serde_json::Value,
    /// When each entity's event was sent, until its remediation is seen.
    sent: &'a Mutex<HashMap<String, Instant>>,
}

impl Generator<'_> {
    /// One event per repository, `rate` per second; the posts run concurrently, as GitHub's
    /// deliveries do.
    async fn send(
        &self,
        repos: &[(String, String, u64)],
        rate: u64,
        tag: &str,
    ) -> anyhow::Result<Vec<tokio::task::JoinHandle<u16>>> {
        let secret = self.stack.config.webhook_secret.clone();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut posts = Vec::with_capacity(repos.len());
        for (i, (owner, name, id)) in repos.iter().enumerate() {
            tick.tick().await;
            self.stack
                .sim
                .remove_protection(owner, name, "main")
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let body = payload_for(self.template, owner, name, *id);
            let sig = plumbline_github::webhook::sign(secret.as_bytes(), &body);
            let entity = EntityRef::repository("github", *id).id();
            self.sent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(entity, Instant::now());
            let delivery = format!("{tag}-{i}-{}", uuid::Uuid::new_v4().simple());
            let pool = self.pool.clone();
            posts.push(tokio::spawn(async move {
                let headers = [
                    ("x-github-event", "branch_protection_rule"),
                    ("x-github-delivery", delivery.as_str()),
                    ("x-hub-signature-256", sig.as_str()),
                    ("content-type", "application/json"),
                ];
                pool.post("/webhooks/github", &headers, &body).await
            }));
        }
        Ok(posts)
    }

    /// Waits until every event sent has its remediation seen, at most `timeout`; returns how
    /// many are still missing.
    async fn wait_for_remediations(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let missing = self.sent.lock().unwrap_or_else(|p| p.into_inner()).len();
            if missing == 0 || Instant::now() >= deadline {
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// CPU seconds the whole machine spent busy, and in all, since boot (`/proc/stat`; Linux only).
fn machine_cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let all: f64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0.0);
    let hz = 100.0; // USER_HZ, 100 on every Linux architecture Rust targets here
    Some(((all - idle) / hz, all / hz))
}

async fn count_not_2xx(posts: Vec<tokio::task::JoinHandle<u16>>) -> usize {
    let mut n = 0;
    for p in posts {
        if !(200..300).contains(&p.await.unwrap_or(0)) {
            n += 1;
        }
    }
    n
}

/// Rates the ladder tries, in order.
const LADDER: [u64; 7] = [100, 200, 300, 400, 500, 750, 1000];

/// Waits (at most 120 s) until neither the evaluator nor the actuator has had a record in
/// flight for 1.5 s: what an earlier step left behind must not load the next.
async fn drain(stack: &Stack) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut idle = 0;
    while idle < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let busy = [
            ("evaluator", stack.evaluator_metrics.as_ref()),
            ("actuator", Some(&stack.actuator_metrics)),
        ]
        .into_iter()
        .any(|(worker, m)| {
            m.is_some_and(|m| {
                m.gauge_value("plumbline_worker_in_flight", &[("worker", worker)]) > 0
            })
        });
        idle = if busy { 0 } else { idle + 1 };
    }
}

/// The ladder (see the module's doc): the highest rate whose p99 stayed under 1 s.
async fn ladder(
    gen: &Generator<'_>,
    store: &plumbline_store::Store,
    latencies: &Mutex<Vec<(Instant, f64)>>,
    secs: u64,
) -> anyhow::Result<u64> {
    let mut best = 0;
    for rate in LADDER {
        let fleet = gen.stack.sim.seed(
            "acme",
            (rate * secs) as usize,
            &format!("ladder{rate}"),
            1.0,
        );
        plumbline_bench::fleet::register(store, PROJECT, &fleet).await?;
        drain(gen.stack).await;
        latencies.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let posts = gen.send(&fleet, rate, &format!("ladder{rate}")).await?;
        let not_2xx = count_not_2xx(posts).await;
        let missing = gen.wait_for_remediations(Duration::from_secs(60)).await;
        // Forget what never came, so the next step starts clean.
        gen.sent.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let mut l: Vec<f64> = latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, ms)| *ms)
            .collect();
        l.sort_by(|a, b| a.total_cmp(b));
        let p99 = percentile(&l, 0.99);
        eprintln!(
            "ladder {rate}/s for {secs} s: p50 {:.0} ms, p99 {p99:.0} ms, {missing} not remediated, {not_2xx} refused",
            percentile(&l, 0.50)
        );
        if missing > 0 || not_2xx > 0 || p99 >= 1000.0 {
            break;
        }
        best = rate;
    }
    Ok(best)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = env_u64("BENCH_REPOS", 10_000) as usize;
    let rate = env_u64("BENCH_RATE", 500).max(1);
    let secs = env_u64("BENCH_SECONDS", 20);
    let events = (rate * secs) as usize;
    if events > n {
        bail!("{events} events need as many repositories, BENCH_REPOS is {n}");
    }
    let template = deleted_payload()?;

    let broker_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _tansu =
        tokio::task::spawn_blocking(move || Tansu::start(broker_addr, broker_addr)).await??;
    let brokers = broker_addr.to_string();
    let db = plumbline_store::testing::TestDatabase::new().await;
    let store = db.store();
    let (prefix, _topics) = topics_on(&brokers, 12).await;
    let mut cfg = StackConfig::local(&brokers, &db.url, &prefix);
    cfg.reconcile_interval = Duration::from_secs(24 * 3600);
    cfg.content_per_minute = u32::MAX;
    cfg.content_per_hour = u32::MAX;
    let stack = Stack::start(cfg).await?;
    stack.sim.set_rate_limit(1_000_000_000);
    stack.sim.set_webhooks_enabled(false);
    let fleet = stack.sim.seed("acme", events + WARM_UP, "svc", 1.0);

    let rule = std::fs::read_to_string("rules/rule-types/github/branch_protection_enabled.yaml")
        .context("run from the repository root")?;
    let profile = std::fs::read_to_string("rules/profiles/github/branch-protection.yaml")?;
    let rule_name = plumbline_engine::RuleType::from_yaml(&rule)?.name;
    let profile_name = plumbline_engine::Profile::from_yaml(&profile)?.name;
    store
        .upsert_rule_type(
            PROJECT,
            &rule_name,
            &plumbline_engine::digest(rule.as_bytes()),
            &rule,
        )
        .await?;
    store
        .upsert_profile(
            PROJECT,
            &profile_name,
            &plumbline_engine::digest(profile.as_bytes()),
            &profile,
        )
        .await?;
    plumbline_bench::fleet::register(&store, PROJECT, &fleet).await?;
    eprintln!("remediation_latency: {n} protected repositories, {events} events at {rate}/s");

    // Baseline: the remediation's GitHub call alone.
    let github =
        plumbline_github::GitHub::new(&plumbline_github::GitHubConfig::new(&stack.sim_url, None))?;
    let body = serde_json::json!({
        "required_status_checks": null, "enforce_admins": null, "restrictions": null,
        "required_pull_request_reviews": {"required_approving_review_count": 1, "dismiss_stale_reviews": true},
        "allow_force_pushes": false, "allow_deletions": false
    });
    let mut base = Vec::new();
    for i in 0..1000 {
        let (owner, name, _) = &fleet[i % fleet.len()];
        let t = Instant::now();
        let r = github
            .request(
                plumbline_github::Method::PUT,
                &format!("/repos/{owner}/{name}/branches/main/protection"),
                Some(&body),
            )
            .await?;
        if r.status != 200 {
            bail!("baseline PUT answered {}", r.status);
        }
        base.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    base.sort_by(|a, b| a.total_cmp(b));

    // Outcomes: the first applied remediation per repository after its event.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let latencies: Arc<Mutex<Vec<(Instant, f64)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut outcomes = stack.outcomes.subscribe();
    let collector = {
        let (sent, latencies) = (sent.clone(), latencies.clone());
        tokio::spawn(async move {
            let mut lagged = 0u64;
            loop {
                match outcomes.recv().await {
                    Ok(o) => {
                        if o.status != ActionStatus::Applied as i32 {
                            continue;
                        }
                        let Some(id) = o
                            .entity
                            .as_ref()
                            .and_then(|r| EntityRef::try_from(r).ok())
                            .map(|r| r.id())
                        else {
                            continue;
                        };
                        let start = sent.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                        if let Some(start) = start {
                            latencies
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((start, start.elapsed().as_secs_f64() * 1000.0));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => lagged += k,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
            lagged
        })
    };

    let pool = Arc::new(Pool::new(stack.ingest_addr));
    let gen = Generator {
        stack: &stack,
        pool: &pool,
        template: &template,
        sent: &sent,
    };

    // Warm-up, not measured: the consumer groups' first assignment, connection pools, compiled
    // rule types and the provider's caches, on repositories of their own.
    let warm_started = Instant::now();
    let warm_posts = gen.send(&fleet[events..], 100, "warm").await?;
    let not_2xx_warm = count_not_2xx(warm_posts).await;
    if not_2xx_warm > 0 || gen.wait_for_remediations(Duration::from_secs(60)).await > 0 {
        bail!("the warm-up did not complete: {not_2xx_warm} webhooks refused");
    }
    eprintln!(
        "warm-up: {WARM_UP} remediations in {:.1} s",
        warm_started.elapsed().as_secs_f64()
    );
    let max_rate = ladder(
        &gen,
        &store,
        &latencies,
        env_u64("BENCH_LADDER_SECONDS", 5).max(1),
    )
    .await?;
    drain(&stack).await;
    latencies.lock().unwrap_or_else(|p| p.into_inner()).clear();
    stack.sim.reset_request_log();

    let cpu_before = machine_cpu_seconds();
    let run_started = Instant::now();
    let posts = gen.send(&fleet[..events], rate, "bench").await?;
    let offered = events as f64 / run_started.elapsed().as_secs_f64();
    let not_2xx = count_not_2xx(posts).await;
    // Wait for the stragglers (bounded).
    let missing = gen.wait_for_remediations(Duration::from_secs(60)).await;
    // Everything on the machine (stack, broker, Postgres, this generator) per event, until the
    // last remediation was seen: the verification evaluations still running then are left out.
    let cpu_per_event_ms = match (cpu_before, machine_cpu_seconds()) {
        (Some((busy0, all0)), Some((busy1, all1))) => Some((
            (busy1 - busy0) * 1000.0 / events as f64,
            (busy1 - busy0) / (all1 - all0).max(1e-9),
        )),
        _ => None,
    };
    let counts = stack.sim.request_counts();
    let puts = counts
        .get("PUT /repos/{owner}/{repo}/branches/{branch}/protection")
        .copied()
        .unwrap_or(0);
    let per_event: Vec<String> = counts
        .iter()
        .map(|(op, k)| format!("{op}: {:.2}", *k as f64 / events as f64))
        .collect();
    eprintln!("GitHub requests per event: {}", per_event.join(", "));
    // Where the time goes: each worker's wait for a slot and its handling (warm-up included).
    for (worker, metrics) in [
        ("evaluator", stack.evaluator_metrics.as_ref()),
        ("actuator", Some(&stack.actuator_metrics)),
    ] {
        let Some(m) = metrics else { continue };
        let q = |name: &str, p: f64| {
            m.histogram_quantile(name, &[("worker", worker)], p)
                .map(|(s, n)| (s * 1000.0, n))
                .unwrap_or_default()
        };
        let ((qp50, n), (qp99, _), (hp50, _), (hp99, _)) = (
            q("plumbline_worker_queue_seconds", 0.5),
            q("plumbline_worker_queue_seconds", 0.99),
            q("plumbline_worker_handle_seconds", 0.5),
            q("plumbline_worker_handle_seconds", 0.99),
        );
        eprintln!("{worker}: {n} records; queued p50 {qp50:.1} ms, p99 {qp99:.1} ms; handling p50 {hp50:.1} ms, p99 {hp99:.1} ms");
    }
    let timed = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    stack.stop().await;
    let lagged = collector.await.unwrap_or(0);
    // Where the tail lies in the run: the worst latency of each second of sending.
    let mut worst_by_second: std::collections::BTreeMap<u64, f64> = Default::default();
    for (start, ms) in &timed {
        let s = start.saturating_duration_since(run_started).as_secs();
        let w = worst_by_second.entry(s).or_insert(0.0);
        *w = w.max(*ms);
    }
    let line: Vec<String> = worst_by_second
        .iter()
        .map(|(s, ms)| format!("{s}s:{ms:.0}"))
        .collect();
    eprintln!(
        "worst latency (ms) by second of sending: {}",
        line.join(" ")
    );
    let mut l: Vec<f64> = timed.iter().map(|(_, ms)| *ms).collect();
    l.sort_by(|a, b| a.total_cmp(b));
    eprintln!(
        "p90 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        percentile(&l, 0.90),
        percentile(&l, 0.95),
        percentile(&l, 1.0)
    );
    if let Some((ms, busy)) = cpu_per_event_ms {
        eprintln!(
            "machine CPU per event {ms:.2} ms (both cores busy {:.0}% while it ran)",
            busy * 100.0
        );
    }
    eprintln!(
        "offered {offered:.0} events/s; {not_2xx} webhooks not answered 2xx; {missing} repositories not remediated within 60 s of the last event; {puts} protection PUTs; {lagged} outcomes missed by the observer"
    );
    println!("p50_ms = {:.1}", percentile(&l, 0.50));
    println!("p99_ms = {:.1}", percentile(&l, 0.99));
    println!("remediations = {}", l.len());
    println!("baseline_put_p50_ms = {:.2}", percentile(&base, 0.50));
    println!("baseline_put_p99_ms = {:.2}", percentile(&base, 0.99));
    println!("max_rate_p99_under_1s = {max_rate}");
    println!(
        "machine_cpu_ms_per_event = {:.2}",
        cpu_per_event_ms.map(|(ms, _)| ms).unwrap_or(0.0)
    );
    if missing > 0 || not_2xx > 0 {
        bail!("{missing} of {events} events were not remediated, {not_2xx} webhooks refused");
    }
    Ok(())
}
