//! A small Prometheus-text metrics registry.
//!
//! Label values must come from small fixed sets (event names, statuses, outcomes) — never a
//! repository name — so the series count stays bounded however large the fleet.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<(String, String), Arc<AtomicU64>>,
    gauges: BTreeMap<(String, String), Arc<AtomicU64>>,
    help: BTreeMap<String, (&'static str, &'static str)>,
    histograms: BTreeMap<(String, String), Arc<Mutex<Histogram>>>,
}

/// Latency histogram with fixed buckets in seconds.
struct Histogram {
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

fn label_string(labels: &[(&str, &str)]) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    parts.join(",")
}

impl Metrics {
    pub fn new() -> Self {
        Metrics::default()
    }

    /// Adds `n` to a counter.
    pub fn inc(&self, name: &str, help: &'static str, labels: &[(&str, &str)], n: u64) {
        let c = {
            let Ok(mut r) = self.inner.lock() else { return };
            r.help.entry(name.to_string()).or_insert(("counter", help));
            r.counters
                .entry((name.to_string(), label_string(labels)))
                .or_default()
                .clone()
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set_gauge(&self, name: &str, help: &'static str, labels: &[(&str, &str)], v: u64) {
        let g = {
            let Ok(mut r) = self.inner.lock() else { return };
            r.help.entry(name.to_string()).or_insert(("gauge", help));
            r.gauges
                .entry((name.to_string(), label_string(labels)))
                .or_default()
                .clone()
        };
        g.store(v, Ordering::Relaxed);
    }

    pub fn observe(&self, name: &str, help: &'static str, labels: &[(&str, &str)], seconds: f64) {
        let h = {
            let Ok(mut r) = self.inner.lock() else { return };
            r.help.entry(name.to_string()).or_insert(("histogram", help));
            r.histograms
                .entry((name.to_string(), label_string(labels)))
                .or_insert_with(|| {
                    Arc::new(Mutex::new(Histogram {
                        buckets: BUCKETS.iter().map(|b| (*b, 0)).collect(),
                        sum: 0.0,
                        count: 0,
                    }))
                })
                .clone()
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
        let Ok(r) = self.inner.lock() else { return 0 };
        r.counters
            .get(&(name.to_string(), label_string(labels)))
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let Ok(r) = self.inner.lock() else { return String::new() };
        let mut out = String::new();
        for (name, (kind, help)) in &r.help {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let series = |m: &BTreeMap<(String, String), Arc<AtomicU64>>, out: &mut String| {
                for ((n, l), v) in m.range((name.clone(), String::new())..) {
                    if n != name {
                        break;
                    }
                    let braces = if l.is_empty() { String::new() } else { format!("{{{l}}}") };
                    let _ = writeln!(out, "{n}{braces} {}", v.load(Ordering::Relaxed));
                }
            };
            match *kind {
                "counter" => series(&r.counters, &mut out),
                "gauge" => series(&r.gauges, &mut out),
                _ => {
                    for ((n, l), h) in r.histograms.range((name.clone(), String::new())..) {
                        if n != name {
                            break;
                        }
                        let Ok(h) = h.lock() else { continue };
                        let sep = if l.is_empty() { "" } else { "," };
                        for (le, c) in &h.buckets {
                            let _ = writeln!(out, "{n}_bucket{{{l}{sep}le=\"{le}\"}} {c}");
                        }
                        let _ = writeln!(out, "{n}_bucket{{{l}{sep}le=\"+Inf\"}} {}", h.count);
                        let braces = if l.is_empty() { String::new() } else { format!("{{{l}}}") };
                        let _ = writeln!(out, "{n}_sum{braces} {}", h.sum);
                        let _ = writeln!(out, "{n}_count{braces} {}", h.count);
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
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.inc("plumbline_x_total", "xs", &[("outcome", "ok")], 2);
        m.inc("plumbline_x_total", "xs", &[("outcome", "ok")], 1);
        m.set_gauge("plumbline_g", "g", &[], 7);
        m.observe("plumbline_latency_seconds", "lat", &[("event", "push")], 0.004);
        let t = m.render();
        assert!(t.contains("plumbline_x_total{outcome=\"ok\"} 3"), "{t}");
        assert!(t.contains("plumbline_g 7"), "{t}");
        assert!(t.contains("plumbline_latency_seconds_bucket{event=\"push\",le=\"0.005\"} 1"), "{t}");
        assert!(t.contains("plumbline_latency_seconds_count{event=\"push\"} 1"), "{t}");
        assert_eq!(m.counter_value("plumbline_x_total", &[("outcome", "ok")]), 3);
    }
}
