//! One service's metrics, on the `prometheus` crate (TiKV's client): typed vectors made from
//! the declarations in [`crate::catalog`] on first use, exposed in the Prometheus text format
//! (label values escaped by the encoder, `HELP` and `TYPE` on every family), with the process
//! collector (CPU, memory, file descriptors) and the async runtime's gauges.
//!
//! A handle per service rather than one process-wide registry: `plumb dev` and the end-to-end
//! tests run several services in one process, and each keeps its own counts.

use crate::catalog::{self, Def, Kind};
use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    vectors: RwLock<HashMap<&'static str, Vector>>,
}

#[derive(Clone)]
enum Vector {
    Counter(IntCounterVec),
    Gauge(IntGaugeVec),
    Histogram(HistogramVec),
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = registry.register(Box::new(process)) {
                tracing::warn!(error = %e, "process metrics not registered");
            }
        }
        Metrics {
            inner: Arc::new(Inner {
                registry,
                vectors: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The vector of `def`, made and registered on first use.
    fn vector(&self, def: &'static Def) -> Option<Vector> {
        if let Some(v) = self.inner.vectors.read().ok()?.get(def.name) {
            return Some(v.clone());
        }
        let mut vectors = self.inner.vectors.write().ok()?;
        if let Some(v) = vectors.get(def.name) {
            return Some(v.clone());
        }
        let made = match def.kind {
            Kind::Counter => {
                IntCounterVec::new(Opts::new(def.name, def.help), def.labels).map(Vector::Counter)
            }
            Kind::Gauge => {
                IntGaugeVec::new(Opts::new(def.name, def.help), def.labels).map(Vector::Gauge)
            }
            Kind::Histogram => HistogramVec::new(
                HistogramOpts::new(def.name, def.help).buckets(catalog::BUCKETS.to_vec()),
                def.labels,
            )
            .map(Vector::Histogram),
        };
        let vector = match made {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(metric = def.name, error = %e, "metric declaration refused");
                return None;
            }
        };
        let collector: Box<dyn Collector> = match &vector {
            Vector::Counter(c) => Box::new(c.clone()),
            Vector::Gauge(g) => Box::new(g.clone()),
            Vector::Histogram(h) => Box::new(h.clone()),
        };
        if let Err(e) = self.inner.registry.register(collector) {
            tracing::error!(metric = def.name, error = %e, "metric not registered");
            return None;
        }
        vectors.insert(def.name, vector.clone());
        Some(vector)
    }

    /// Adds `n` to a counter. `labels` name their label: values for labels the declaration
    /// does not have are dropped, missing ones are empty.
    pub fn inc(&self, def: &'static Def, labels: &[(&str, &str)], n: u64) {
        match self.vector(def) {
            Some(Vector::Counter(c)) => {
                if let Ok(c) = c.get_metric_with_label_values(&values(def, labels)) {
                    c.inc_by(n);
                }
            }
            other => misuse(def, "inc", other.is_some()),
        }
    }

    pub fn set_gauge(&self, def: &'static Def, labels: &[(&str, &str)], v: u64) {
        match self.vector(def) {
            Some(Vector::Gauge(g)) => {
                if let Ok(g) = g.get_metric_with_label_values(&values(def, labels)) {
                    g.set(i64::try_from(v).unwrap_or(i64::MAX));
                }
            }
            other => misuse(def, "set_gauge", other.is_some()),
        }
    }

    /// Removes one series of a gauge (a partition this member no longer owns).
    pub fn remove_gauge(&self, def: &'static Def, labels: &[(&str, &str)]) {
        if let Some(Vector::Gauge(g)) = self.vector(def) {
            let _ = g.remove_label_values(&values(def, labels));
        }
    }

    pub fn observe(&self, def: &'static Def, labels: &[(&str, &str)], seconds: f64) {
        match self.vector(def) {
            Some(Vector::Histogram(h)) => {
                if let Ok(h) = h.get_metric_with_label_values(&values(def, labels)) {
                    h.observe(seconds);
                }
            }
            other => misuse(def, "observe", other.is_some()),
        }
    }

    /// Current value of a counter (for tests and `plumb dev`'s live count); 0 when it has no
    /// such series.
    pub fn counter_value(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.collected(name, labels)
            .map(|m| m.get_counter().get_value() as u64)
            .unwrap_or(0)
    }

    /// Current value of a gauge (for benchmarks and tests); 0 when it has no such series.
    pub fn gauge_value(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.collected(name, labels)
            .map(|m| m.get_gauge().get_value() as u64)
            .unwrap_or(0)
    }

    /// One series of `name` as collected, matched on `labels`. Read from what the registry
    /// collects: asking a vector for a series would create it.
    fn collected(&self, name: &str, labels: &[(&str, &str)]) -> Option<prometheus::proto::Metric> {
        let def = catalog::find(name)?;
        let collector: Box<dyn Collector> =
            match self.inner.vectors.read().ok()?.get(def.name).cloned()? {
                Vector::Counter(c) => Box::new(c),
                Vector::Gauge(g) => Box::new(g),
                Vector::Histogram(h) => Box::new(h),
            };
        let want = values(def, labels);
        let families = collector.collect();
        families
            .first()?
            .get_metric()
            .iter()
            .find(|m| {
                def.labels.iter().zip(&want).all(|(name, value)| {
                    m.get_label()
                        .iter()
                        .any(|p| p.name() == *name && p.value() == *value)
                })
            })
            .cloned()
    }

    /// The `q` quantile of a histogram, estimated from its buckets the way Prometheus's
    /// `histogram_quantile` does (linear within the bucket), with the observation count; for
    /// benchmarks and tests. Above the last bucket it answers the last bound.
    pub fn histogram_quantile(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        q: f64,
    ) -> Option<(f64, u64)> {
        if catalog::find(name)?.kind != Kind::Histogram {
            return None;
        }
        let metric = self.collected(name, labels)?;
        let h = metric.get_histogram();
        let count = h.get_sample_count();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut lower = (0.0, 0u64);
        for b in h.get_bucket() {
            let (le, c) = (b.upper_bound(), b.cumulative_count());
            if c as f64 >= rank {
                let in_bucket = (c - lower.1) as f64;
                let frac = if in_bucket > 0.0 {
                    (rank - lower.1 as f64) / in_bucket
                } else {
                    1.0
                };
                return Some((lower.0 + (le - lower.0) * frac, count));
            }
            lower = (le, c);
        }
        Some((lower.0, count))
    }

    /// The Prometheus text exposition format, with the async runtime's gauges read now.
    pub fn render(&self) -> String {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let m = handle.metrics();
            self.set_gauge(&catalog::TOKIO_WORKERS, &[], m.num_workers() as u64);
            self.set_gauge(&catalog::TOKIO_ALIVE_TASKS, &[], m.num_alive_tasks() as u64);
            self.set_gauge(
                &catalog::TOKIO_GLOBAL_QUEUE_DEPTH,
                &[],
                m.global_queue_depth() as u64,
            );
        }
        let mut out = Vec::new();
        if let Err(e) =
            prometheus::TextEncoder::new().encode(&self.inner.registry.gather(), &mut out)
        {
            tracing::error!(error = %e, "metrics not encoded");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The label values of `labels` in the declaration's order.
fn values<'a>(def: &Def, labels: &[(&str, &'a str)]) -> Vec<&'a str> {
    def.labels
        .iter()
        .map(|name| {
            labels
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| *v)
                .unwrap_or("")
        })
        .collect()
}

fn misuse(def: &Def, call: &str, registered: bool) {
    if registered {
        tracing::error!(metric = def.name, kind = ?def.kind, call, "metric used as another kind");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{INGEST_DELIVERIES, RECONCILER_ACTIVE, WORKER_HANDLE_SECONDS};

    #[test]
    fn histogram_quantile_interpolates_within_buckets() {
        let m = Metrics::new();
        let name = WORKER_HANDLE_SECONDS.name;
        assert_eq!(m.histogram_quantile(name, &[], 0.5), None);
        // 10 observations in (0.001, 0.0025], 10 in (0.01, 0.025].
        for _ in 0..10 {
            m.observe(&WORKER_HANDLE_SECONDS, &[("worker", "w")], 0.002);
            m.observe(&WORKER_HANDLE_SECONDS, &[("worker", "w")], 0.02);
        }
        let (p50, n) = m
            .histogram_quantile(name, &[("worker", "w")], 0.5)
            .unwrap_or_default();
        assert_eq!(n, 20);
        assert!((p50 - 0.0025).abs() < 1e-9, "{p50}");
        let (p75, _) = m
            .histogram_quantile(name, &[("worker", "w")], 0.75)
            .unwrap_or_default();
        assert!((p75 - 0.0175).abs() < 1e-9, "{p75}");
        // Past the last bucket: the last bound.
        m.observe(&WORKER_HANDLE_SECONDS, &[("worker", "w")], 60_000.0);
        let (max, _) = m
            .histogram_quantile(name, &[("worker", "w")], 1.0)
            .unwrap_or_default();
        assert_eq!(max, 3600.0);
        assert_eq!(
            m.histogram_quantile(name, &[("worker", "other")], 0.5),
            None
        );
    }

    #[test]
    fn renders_prometheus_text_with_escaped_labels() {
        let m = Metrics::new();
        m.inc(
            &INGEST_DELIVERIES,
            &[("event", "push"), ("outcome", "ok")],
            2,
        );
        m.inc(
            &INGEST_DELIVERIES,
            &[("outcome", "ok"), ("event", "push")],
            1,
        );
        m.inc(
            &INGEST_DELIVERIES,
            &[("event", "q\"b\\c\nd"), ("outcome", "x")],
            1,
        );
        m.set_gauge(&RECONCILER_ACTIVE, &[], 7);
        m.observe(&WORKER_HANDLE_SECONDS, &[("worker", "w")], 0.004);
        // The wrong kind is refused, not a second family of the same name.
        m.set_gauge(&INGEST_DELIVERIES, &[], 1);
        let t = m.render();
        assert!(
            t.contains("plumbline_ingest_deliveries_total{event=\"push\",outcome=\"ok\"} 3"),
            "{t}"
        );
        assert!(
            t.contains(r#"plumbline_ingest_deliveries_total{event="q\"b\\c\nd",outcome="x"} 1"#),
            "{t}"
        );
        assert!(
            t.contains("# TYPE plumbline_ingest_deliveries_total counter"),
            "{t}"
        );
        assert!(t.contains("plumbline_reconciler_active 7"), "{t}");
        assert!(
            t.contains("plumbline_worker_handle_seconds_bucket{worker=\"w\",le=\"0.005\"} 1"),
            "{t}"
        );
        assert_eq!(
            m.counter_value(
                "plumbline_ingest_deliveries_total",
                &[("event", "push"), ("outcome", "ok")]
            ),
            3
        );
        assert_eq!(
            t.matches("# TYPE plumbline_ingest_deliveries_total")
                .count(),
            1
        );
    }
}
