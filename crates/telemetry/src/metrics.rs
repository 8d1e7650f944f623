//! A small Prometheus-text metrics registry.
//!
//! Label values must come from small fixed sets (event names, statuses, outcomes) — never a
//! repository name — so the series count stays bounded however large the fleet.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<RwLock<Registry>>,
}

/// Series by metric name, then by rendered label string. Two levels, so that a lookup borrows
/// the caller's strings and only a new series allocates: services update about thirty series
/// per event.
type Family<T> = BTreeMap<String, BTreeMap<String, T>>;

#[derive(Default)]
struct Registry {
    counters: Family<Arc<AtomicU64>>,
    gauges: Family<Arc<AtomicU64>>,
    help: BTreeMap<String, (&'static str, &'static str)>,
    histograms: Family<Arc<Mutex<Histogram>>>,
}

/// Latency histogram with fixed buckets in seconds.
struct Histogram {
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn label_string(labels: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(labels.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

/// Which series of which family: `name{labels}`, with the family's kind and help text.
struct Key<'a> {
    kind: &'static str,
    name: &'a str,
    help: &'static str,
    labels: &'a [(&'a str, &'a str)],
}

/// The series `key` of a family, created (with its help text) on first use.
fn series<T: Clone>(
    inner: &RwLock<Registry>,
    read: fn(&Registry) -> &Family<T>,
    write: fn(&mut Registry) -> &mut Family<T>,
    key: Key<'_>,
    new: impl FnOnce() -> T,
) -> Option<T> {
    let labels = label_string(key.labels);
    {
        let r = inner.read().ok()?;
        if let Some(s) = read(&r).get(key.name).and_then(|f| f.get(&labels)) {
            return Some(s.clone());
        }
    }
    let mut r = inner.write().ok()?;
    if !r.help.contains_key(key.name) {
        r.help.insert(key.name.to_string(), (key.kind, key.help));
    }
    Some(
        write(&mut r)
            .entry(key.name.to_string())
            .or_default()
            .entry(labels)
            .or_insert_with(new)
            .clone(),
    )
}

impl Metrics {
    pub fn new() -> Self {
        Metrics::default()
    }

    /// Adds `n` to a counter.
    pub fn inc(&self, name: &str, help: &'static str, labels: &[(&str, &str)], n: u64) {
        if let Some(c) = series(
            &self.inner,
            |r| &r.counters,
            |r| &mut r.counters,
            Key {
                kind: "counter",
                name,
                help,
                labels,
            },
            Default::default,
        ) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn set_gauge(&self, name: &str, help: &'static str, labels: &[(&str, &str)], v: u64) {
        if let Some(g) = series(
            &self.inner,
            |r| &r.gauges,
            |r| &mut r.gauges,
            Key {
                kind: "gauge",
                name,
                help,
                labels,
            },
            Default::default,
        ) {
            g.store(v, Ordering::Relaxed);
        }
    }

    pub fn observe(&self, name: &str, help: &'static str, labels: &[(&str, &str)], seconds: f64) {
        let new = || {
            Arc::new(Mutex::new(Histogram {
                buckets: BUCKETS.iter().map(|b| (*b, 0)).collect(),
                sum: 0.0,
                count: 0,
            }))
        };
        let Some(h) = series(
            &self.inner,
            |r| &r.histograms,
            |r| &mut r.histograms,
            Key {
                kind: "histogram",
                name,
                help,
                labels,
            },
            new,
        ) else {
            return;
        };
        if let Ok(mut h) = h.lock() {
            for (le, c) in h.buckets.iter_mut() {
                if seconds <= *le {
                    *c += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        };
    }

    /// Current value of a counter (for tests and `plumb dev`'s live count).
    pub fn counter_value(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let Ok(r) = self.inner.read() else { return 0 };
        r.counters
            .get(name)
            .and_then(|f| f.get(&label_string(labels)))
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0)
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
        let h = {
            let r = self.inner.read().ok()?;
            r.histograms.get(name)?.get(&label_string(labels))?.clone()
        };
        let h = h.lock().ok()?;
        if h.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * h.count as f64;
        let mut lower = (0.0, 0u64);
        for &(le, c) in &h.buckets {
            if c as f64 >= rank {
                let in_bucket = (c - lower.1) as f64;
                let frac = if in_bucket > 0.0 {
                    (rank - lower.1 as f64) / in_bucket
                } else {
                    1.0
                };
                return Some((lower.0 + (le - lower.0) * frac, h.count));
            }
            lower = (le, c);
        }
        Some((lower.0, h.count))
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let Ok(r) = self.inner.read() else {
            return String::new();
        };
        let mut out = String::new();
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        for (name, (kind, help)) in &r.help {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let values = |m: &Family<Arc<AtomicU64>>, out: &mut String| {
                for (l, v) in m.get(name).into_iter().flatten() {
                    let _ = writeln!(out, "{name}{} {}", braces(l), v.load(Ordering::Relaxed));
                }
            };
            match *kind {
                "counter" => values(&r.counters, &mut out),
                "gauge" => values(&r.gauges, &mut out),
                _ => {
                    for (l, h) in r.histograms.get(name).into_iter().flatten() {
                        let Ok(h) = h.lock() else { continue };
                        let sep = if l.is_empty() { "" } else { "," };
                        for (le, c) in &h.buckets {
                            let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"{le}\"}} {c}");
                        }
                        let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"+Inf\"}} {}", h.count);
                        let _ = writeln!(out, "{name}_sum{} {}", braces(l), h.sum);
                        let _ = writeln!(out, "{name}_count{} {}", braces(l), h.count);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantile_interpolates_within_buckets() {
        let m = Metrics::new();
        assert_eq!(m.histogram_quantile("plumbline_h_seconds", &[], 0.5), None);
        // 10 observations in (0.001, 0.0025], 10 in (0.01, 0.025].
        for _ in 0..10 {
            m.observe("plumbline_h_seconds", "h", &[("worker", "w")], 0.002);
            m.observe("plumbline_h_seconds", "h", &[("worker", "w")], 0.02);
        }
        let (p50, n) = m
            .histogram_quantile("plumbline_h_seconds", &[("worker", "w")], 0.5)
            .unwrap_or_default();
        assert_eq!(n, 20);
        assert!((p50 - 0.0025).abs() < 1e-9, "{p50}");
        let (p75, _) = m
            .histogram_quantile("plumbline_h_seconds", &[("worker", "w")], 0.75)
            .unwrap_or_default();
        assert!((p75 - 0.0175).abs() < 1e-9, "{p75}");
        // Past the last bucket: the last bound.
        m.observe("plumbline_h_seconds", "h", &[("worker", "w")], 60.0);
        let (max, _) = m
            .histogram_quantile("plumbline_h_seconds", &[("worker", "w")], 1.0)
            .unwrap_or_default();
        assert_eq!(max, 10.0);
        assert_eq!(
            m.histogram_quantile("plumbline_h_seconds", &[("worker", "other")], 0.5),
            None
        );
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.inc("plumbline_x_total", "xs", &[("outcome", "ok")], 2);
        m.inc("plumbline_x_total", "xs", &[("outcome", "ok")], 1);
        m.set_gauge("plumbline_g", "g", &[], 7);
        m.observe(
            "plumbline_latency_seconds",
            "lat",
            &[("event", "push")],
            0.004,
        );
        let t = m.render();
        assert!(t.contains("plumbline_x_total{outcome=\"ok\"} 3"), "{t}");
        assert!(t.contains("plumbline_g 7"), "{t}");
        assert!(
            t.contains("plumbline_latency_seconds_bucket{event=\"push\",le=\"0.005\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("plumbline_latency_seconds_count{event=\"push\"} 1"),
            "{t}"
        );
        assert_eq!(
            m.counter_value("plumbline_x_total", &[("outcome", "ok")]),
            3
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.inc(
            "plumbline_y_total",
            "ys",
            &[("a", "q\"b\\c"), ("b", "x")],
            1,
        );
        let t = m.render();
        assert!(
            t.contains("plumbline_y_total{a=\"q\\\"b\\\\c\",b=\"x\"} 1"),
            "{t}"
        );
    }
}
