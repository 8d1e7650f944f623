//! Every metric a Plumbline service exports, declared once: its name, kind, help and label
//! names. Call sites name the declaration ([`crate::Metrics::inc`] and friends), so a name
//! cannot be spelled two ways, a kind cannot change between call sites, and the dashboards and
//! alert rules in `k8s/monitoring` are checked against this list ([`ALL`]).
//!
//! Labels come from small fixed sets (events, statuses, outcomes, route templates, credential
//! digests, partitions), never a repository name, so series stay bounded however large the
//! fleet.

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Seconds, in [`BUCKETS`].
    Histogram,
}

/// One metric's declaration.
#[derive(Debug)]
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

/// Histogram buckets in seconds: 1 ms to 10 min finely, then to an hour (work parked behind a
/// rate limit), for a webhook's answer as for the time from a webhook to the fix it led to.
pub const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1800.0, 3600.0,
];

macro_rules! defs {
    ($($id:ident: $kind:ident $name:literal [$($label:literal),*] $help:literal;)*) => {
        $(
            #[doc = $help]
            pub static $id: Def = Def {
                name: $name,
                kind: Kind::$kind,
                help: $help,
                labels: &[$($label),*],
            };
        )*
        /// Every declaration.
        pub static ALL: &[&Def] = &[$(&$id),*];
    };
}

defs! {
    // Ingest.
    INGEST_DELIVERIES: Counter "plumbline_ingest_deliveries_total" ["event", "outcome"]
        "webhook deliveries by event and outcome";
    INGEST_LATENCY: Histogram "plumbline_ingest_latency_seconds" ["outcome"]
        "time from a webhook request to its answer";
    INGEST_SIGNATURE_FAILURES: Counter "plumbline_ingest_signature_failures_total" []
        "webhooks with a missing or wrong signature";
    INGEST_DEDUPE_ERRORS: Counter "plumbline_ingest_dedupe_errors_total" ["step"]
        "delivery dedupe steps that failed (claim or mark)";
    INGEST_REGISTRY_CHANGES: Counter "plumbline_ingest_registry_changes_total" ["change"]
        "entities enrolled by webhooks (retirements and renames are confirmed and counted by the evaluator)";
    INGEST_CONNECTIONS_REFUSED: Counter "plumbline_ingest_connections_refused_total" []
        "webhook connections closed on accept because the connection bound was reached";

    // Evaluator.
    EVALUATOR_EVENTS: Counter "plumbline_evaluator_events_total" ["outcome"]
        "entity events by outcome";
    EVALUATOR_EVALUATIONS: Counter "plumbline_evaluator_evaluations_total" ["rule_type", "status"]
        "rule evaluations by rule type (the first RULE_TYPE_LABELS names seen; later ones count as other) and status";
    EVALUATOR_REUSED: Counter "plumbline_evaluator_reused_total" []
        "rule verdicts reused because nothing they read changed";
    EVALUATOR_SWEEP_CHECKS: Counter "plumbline_evaluator_sweep_checks_total" ["outcome"]
        "sweep events checked against the entity's last reads with conditional requests, by outcome (unchanged: verdicts stand; changed: read and evaluated)";
    EVALUATOR_STATUS_WRITES: Counter "plumbline_evaluator_status_writes_total" []
        "transactions writing evaluations to Postgres (each carries the entities that were waiting: entities / writes is the batch size)";
    EVALUATOR_STATUS_WRITE_ENTITIES: Counter "plumbline_evaluator_status_write_entities_total" []
        "entities whose evaluations were written to Postgres";
    EVALUATOR_ENTITY_SECONDS: Histogram "plumbline_evaluator_entity_seconds" []
        "time to evaluate all rules of one entity event";
    WEBHOOK_TO_VERDICT: Histogram "plumbline_webhook_to_verdict_seconds" []
        "time from the webhook ingest accepted to the verdicts it led to being published";

    // Actuator.
    ACTUATOR_ACTIONS: Counter "plumbline_actuator_actions_total" ["kind", "type", "status"]
        "actions by kind, type and status";
    ACTUATOR_VERDICTS_REFUSED: Counter "plumbline_actuator_verdicts_refused_total" ["reason"]
        "verdicts not acted on because they do not fit the entity";
    ACTUATOR_DEFERRED: Counter "plumbline_actuator_deferred_total" ["reason"]
        "verdicts whose action was put off (cool-off, a fix that did not hold)";
    ACTUATOR_CLAIMS_HELD: Counter "plumbline_actuator_claims_held_total" []
        "verdicts left alone because another replica holds the action's claim";
    ACTUATOR_CONTENT_LAST_MINUTE: Gauge "plumbline_actuator_content_requests_last_minute" []
        "content-creating requests sent in the last minute (all replicas)";
    ACTUATOR_CONTENT_LAST_HOUR: Gauge "plumbline_actuator_content_requests_last_hour" []
        "content-creating requests sent in the last hour (all replicas)";
    ACTUATOR_CONTENT_RESERVED: Gauge "plumbline_actuator_content_requests_reserved" []
        "content-creating requests reserved and not yet finished (all replicas)";
    WEBHOOK_TO_ACTION: Histogram "plumbline_webhook_to_action_seconds" []
        "time from the webhook ingest accepted to the remediation it led to being applied";

    // Consumers (every service that consumes a topic).
    WORKER_IN_FLIGHT: Gauge "plumbline_worker_in_flight" ["worker"]
        "records being handled";
    WORKER_PARKED: Gauge "plumbline_worker_parked" ["worker"]
        "records parked until a rate limit or outage passes";
    WORKER_PARKED_TOTAL: Counter "plumbline_worker_parked_total" ["worker"]
        "records parked until a rate limit or outage passes";
    WORKER_COALESCED: Counter "plumbline_worker_coalesced_total" ["worker"]
        "records of one key handled together with a later record of the same key";
    WORKER_WAITS: Counter "plumbline_worker_waits_total" ["worker"]
        "times a record waited for an earlier one of its key";
    WORKER_REVOCATIONS: Counter "plumbline_worker_revocations_total" ["worker"]
        "partition revocations (rebalances) this member went through";
    WORKER_QUEUE_SECONDS: Histogram "plumbline_worker_queue_seconds" ["worker"]
        "time a record waited between being fetched and being handled";
    WORKER_HANDLE_SECONDS: Histogram "plumbline_worker_handle_seconds" ["worker"]
        "time to handle one record";
    DEAD_LETTERS: Counter "plumbline_dead_letters_total" ["worker"]
        "records sent to the dead-letter topic after their last attempt";
    POISON_RECORDS: Counter "plumbline_poison_records_total" ["worker"]
        "records that can never be handled (undecodable), sent to the dead-letter topic";
    CONSUMER_LAG: Gauge "plumbline_consumer_lag" ["group", "topic", "partition"]
        "records not yet consumed, per partition this member owns (high watermark minus position)";
    DLQ_DEPTH: Gauge "plumbline_dlq_depth" ["topic"]
        "records in the dead-letter topic (high minus low watermark over its partitions), measured by the reconciler every minute";

    // Reconciler.
    RECONCILER_SWEEPS: Counter "plumbline_reconciler_sweeps_total" []
        "sweeps over every registered entity";
    RECONCILER_EVENTS: Counter "plumbline_reconciler_events_total" []
        "entity events the sweeps published";
    RECONCILER_PUBLISH_FAILURES: Counter "plumbline_reconciler_publish_failures_total" []
        "entity events a sweep could not publish";
    RECONCILER_ACTIVE: Gauge "plumbline_reconciler_active" []
        "1 while this replica holds the sweep lock";
    RECONCILER_SWEEP_ENTITIES: Gauge "plumbline_reconciler_sweep_entities" []
        "entities the current (or last) sweep covers";
    RECONCILER_SWEEP_DONE: Gauge "plumbline_reconciler_sweep_entities_done" []
        "entities the current (or last) sweep has gone through so far (re-emitted or deferred)";
    RECONCILER_SWEEP_DEFERRED: Counter "plumbline_reconciler_sweep_deferred_total" []
        "entities a sweep left out because their credential's GitHub quota was at its reserve (the next sweep covers them)";
    RECONCILER_SWEEP_FINISH: Gauge "plumbline_reconciler_sweep_expected_finish_timestamp_seconds" []
        "when the current sweep is expected to finish (epoch seconds): sweeps are paced over 90% of the interval";
    HISTORY_PRUNED: Counter "plumbline_history_pruned_total" []
        "evaluation history rows removed by retention";

    // GitHub, per credential (a digest, never a token) and route template.
    GITHUB_REQUESTS: Counter "plumbline_github_requests_total" ["route", "status", "credential"]
        "GitHub API requests by route template, status (304: answered from the cache, free of quota) and credential";
    GITHUB_RATE_REMAINING: Gauge "plumbline_github_rate_remaining" ["credential"]
        "GitHub primary rate limit left to the credential, as its last answer said";
    GITHUB_RATE_RESET: Gauge "plumbline_github_rate_reset_timestamp_seconds" ["credential"]
        "when the credential's rate-limit window renews (epoch seconds), as its last answer said";
    GITHUB_ETAG_CACHE_HITS: Gauge "plumbline_github_etag_cache_hits" []
        "conditional GETs answered from the cache (304s, free of quota), since start";
    GITHUB_ETAG_CACHE_MISSES: Gauge "plumbline_github_etag_cache_misses" []
        "GETs that fetched a body, since start";

    // The process's async runtime.
    TOKIO_WORKERS: Gauge "plumbline_tokio_workers" []
        "worker threads of the async runtime";
    TOKIO_ALIVE_TASKS: Gauge "plumbline_tokio_alive_tasks" []
        "tasks alive in the async runtime";
    TOKIO_GLOBAL_QUEUE_DEPTH: Gauge "plumbline_tokio_global_queue_depth" []
        "tasks waiting in the async runtime's global queue";
}

/// Values of a label that come from outside (credential digests, rule type names, which
/// projects create): the first `cap` distinct values keep series of their own, later ones share
/// `other`, so no tenant can grow a service's series without bound.
pub struct BoundedLabel {
    cap: usize,
    seen: std::sync::LazyLock<std::sync::RwLock<std::collections::HashSet<String>>>,
}

impl BoundedLabel {
    pub const fn new(cap: usize) -> Self {
        BoundedLabel {
            cap,
            seen: std::sync::LazyLock::new(Default::default),
        }
    }

    /// `value`, or `other` once `cap` other values were seen.
    pub fn value<'a>(&self, value: &'a str) -> &'a str {
        if self.seen.read().is_ok_and(|s| s.contains(value)) {
            return value;
        }
        match self.seen.write() {
            Ok(mut s) if s.len() < self.cap => {
                s.insert(value.to_string());
                value
            }
            Ok(s) if s.contains(value) => value,
            _ => "other",
        }
    }
}

/// Credential digests as label values (process-wide).
pub static CREDENTIAL_LABELS: BoundedLabel = BoundedLabel::new(256);
/// Rule type names as label values (process-wide).
pub static RULE_TYPE_LABELS: BoundedLabel = BoundedLabel::new(500);

/// The declaration named `name`, if any.
pub fn find(name: &str) -> Option<&'static Def> {
    ALL.iter().copied().find(|d| d.name == name)
}

/// Names of the series the process collector adds on Linux.
pub const PROCESS: &[&str] = &[
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_values_beyond_the_cap_share_one_series() {
        let l = BoundedLabel::new(2);
        assert_eq!(l.value("a"), "a");
        assert_eq!(l.value("b"), "b");
        assert_eq!(l.value("c"), "other");
        assert_eq!(l.value("a"), "a", "a value seen keeps its series");
    }

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut names: Vec<&str> = ALL.iter().map(|d| d.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a name declared twice");
        for d in ALL {
            assert!(d.name.starts_with("plumbline_"), "{}", d.name);
            assert_eq!(
                d.kind == Kind::Counter,
                d.name.ends_with("_total"),
                "counters, and only counters, end in _total: {}",
                d.name
            );
            if d.kind == Kind::Histogram {
                assert!(d.name.ends_with("_seconds"), "{}", d.name);
            }
            assert!(!d.help.is_empty() && !d.help.contains('\n'), "{}", d.name);
        }
    }
}
