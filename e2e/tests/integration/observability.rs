//! What an SRE sees: one webhook's journey as one trace across both Kafka hops (received by
//! an OTLP trace service this test serves), every service's `/metrics` through `promtool check
//! metrics` and a parser, and the alert rules and dashboard operators install checked against
//! the metrics the services export.

use crate::common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use plumb::stack::{Stack, StackConfig};
use plumbline_github_sim::RepoOptions;
use plumbline_telemetry::catalog;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: BTreeMap<String, String>,
}

/// The OTLP trace service: keeps what it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = Vec::new();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let attributes = s
                        .attributes
                        .iter()
                        .map(|kv| {
                            let v = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                                Some(AnyValue::StringValue(s)) => s,
                                Some(AnyValue::IntValue(i)) => i.to_string(),
                                Some(AnyValue::BoolValue(b)) => b.to_string(),
                                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                                _ => String::new(),
                            };
                            (kv.key.clone(), v)
                        })
                        .collect();
                    got.push(Span {
                        trace: hex(&s.trace_id),
                        id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        name: s.name,
                        attributes,
                    });
                }
            }
        }
        if let Ok(mut spans) = self.spans.lock() {
            spans.extend(got);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn serve_collector() -> (Collector, String) {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let svc = TraceServiceServer::new(collector.clone());
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    (collector, format!("http://{addr}"))
}

const PROJECT: &str = "default";
const RULE: &str = "branch_protection_enabled";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_webhook_is_one_trace_and_every_service_exports_valid_metrics() {
    let (collector, endpoint) = serve_collector().await;
    let tracing = plumbline_telemetry::traces::init(&plumbline_telemetry::TracingConfig {
        otlp_endpoint: Some(endpoint),
        ..plumbline_telemetry::TracingConfig::new("plumbline-e2e", false)
    })
    .expect("tracing");
    assert!(tracing.exporting());

    let db = TestDb::new().await;
    let (prefix, topics) = topics(3).await;
    let stack = Stack::start(StackConfig::local(&kafka(), &db.url, &prefix))
        .await
        .expect("stack");
    let store = db.store();
    let id = stack.sim.create_repo(
        "acme",
        "payments",
        RepoOptions {
            protected: true,
            ..Default::default()
        },
    );
    let entity = format!("github/repository/{id}");
    enroll(&stack, &[("acme", "payments")]).await;
    let status = |want: &'static str| {
        let (store, entity) = (store.clone(), entity.clone());
        async move {
            let rows = store
                .list_status(PROJECT, Some(&entity), None)
                .await
                .expect("status");
            rows.iter()
                .any(|r| r.rule_name == RULE && r.status.as_str() == want)
                .then_some(())
        }
    };
    eventually(Duration::from_secs(60), "passing", || status("pass")).await;
    // Enrolment's events are all evaluated: a queued one must not read the switched-off state
    // and carry the fix under its own trace instead of the webhook's.
    wait_settled(&topics, &entity, RULE).await;

    // A human switches protection off; GitHub's webhook starts the journey.
    stack
        .sim
        .remove_protection("acme", "payments", "main")
        .expect("remove protection");
    eventually(Duration::from_secs(90), "protection restored", || {
        let store = store.clone();
        let entity = entity.clone();
        async move {
            let actions = store.list_actions(&entity).await.expect("actions");
            actions
                .iter()
                .any(|a| a.status.as_str() == "applied")
                .then_some(())
        }
    })
    .await;
    // The verification evaluation after the fix.
    eventually(Duration::from_secs(60), "passing again", || status("pass")).await;

    // The spans leave the batch; the consumer spans of the last hop may still be ending.
    let mut trace_spans = Vec::new();
    for _ in 0..40 {
        let t = tracing.clone();
        tokio::task::spawn_blocking(move || t.force_flush())
            .await
            .expect("flush");
        let spans = collector
            .spans
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        if let Some(found) = journey(&spans) {
            trace_spans = found;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        !trace_spans.is_empty(),
        "no trace from the protection webhook to the applied fix; names seen: {:?}",
        collector
            .spans
            .lock()
            .map(|s| s.iter().map(|s| s.name.clone()).collect::<BTreeSet<_>>())
            .unwrap_or_default()
    );
    // Parent links intact: every span of the trace but its root has its parent in it.
    let ids: BTreeSet<&str> = trace_spans.iter().map(|s| s.id.as_str()).collect();
    let roots: Vec<&Span> = trace_spans.iter().filter(|s| s.parent.is_empty()).collect();
    assert_eq!(roots.len(), 1, "one root: {roots:?}");
    assert_eq!(roots[0].name, WEBHOOK_SPAN);
    for s in &trace_spans {
        assert!(
            s.parent.is_empty() || ids.contains(s.parent.as_str()),
            "{} ({}) has a parent outside the trace",
            s.name,
            s.id
        );
    }
    let by_id: BTreeMap<&str, &Span> = trace_spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let ancestors = |s: &Span| {
        let mut names = Vec::new();
        let mut at = s.parent.as_str();
        while let Some(p) = by_id.get(at) {
            names.push(p.name.clone());
            at = p.parent.as_str();
        }
        names
    };
    // Both Kafka hops (webhook → evaluator, verdict → actuator) and the verification event.
    let consumed: Vec<&Span> = trace_spans.iter().filter(|s| is_consume(s)).collect();
    let on = |topic_part: &str| {
        consumed
            .iter()
            .filter(|s| {
                s.attributes
                    .get("messaging.destination.name")
                    .is_some_and(|t| t.contains(topic_part))
            })
            .count()
    };
    assert!(
        on("entity") >= 2,
        "the webhook's event and the verification event: {consumed:?}"
    );
    assert!(on("verdict") >= 1, "the actuator's hop: {consumed:?}");
    // The GitHub calls are children: the evaluator's reads and the actuator's write.
    let put = trace_spans
        .iter()
        .find(|s| {
            s.name == "github.request"
                && s.attributes.get("http.request.method").map(String::as_str) == Some("PUT")
        })
        .expect("the fix's PUT in the trace");
    assert_eq!(
        put.attributes.get("url.template").map(String::as_str),
        Some("/repos/{owner}/{repo}/branches/{branch}/protection")
    );
    let chain = ancestors(put);
    assert!(
        chain.iter().any(|n| n == "action.remediate")
            && chain.iter().any(|n| n.ends_with(" process")),
        "{chain:?}"
    );
    let read = trace_spans
        .iter()
        .find(|s| s.name == "github.request" && ancestors(s).iter().any(|n| n == "evaluate_rule"))
        .expect("an evaluator read in the trace");
    assert!(read.attributes.contains_key("http.response.status_code"));
    assert!(trace_spans.iter().any(|s| s.name.starts_with("db.")));

    // Every service's /metrics passes promtool and the exposition-format checks.
    let http = reqwest::Client::new();
    for service in stack.health.keys() {
        let text = scrape(&http, &stack, service).await;
        check_exposition(service, &text);
        promtool(&["check", "metrics"], Some(&text));
    }
    let evaluator = scrape(&http, &stack, "evaluator").await;
    assert!(
        evaluator.contains("plumbline_github_requests_total{credential=")
            && evaluator.contains("route=\"/repos/{owner}/{repo}/branches/{branch}/protection\""),
        "{evaluator}"
    );
    // Lag is measured every 10 s once the group assigned partitions.
    let lag = eventually(Duration::from_secs(30), "consumer lag reported", || {
        let http = http.clone();
        let stack = &stack;
        async move {
            let text = scrape(&http, stack, "evaluator").await;
            text.lines()
                .find(|l| l.starts_with("plumbline_consumer_lag{"))
                .map(str::to_string)
        }
    })
    .await;
    assert!(
        lag.contains("group=") && lag.contains("partition="),
        "{lag}"
    );
    assert!(
        evaluator.contains("plumbline_webhook_to_verdict_seconds_count"),
        "{evaluator}"
    );
    let actuator = scrape(&http, &stack, "actuator").await;
    assert!(
        actuator.contains("plumbline_webhook_to_action_seconds_count 1"),
        "{actuator}"
    );
    assert!(
        actuator.contains("process_resident_memory_bytes"),
        "{actuator}"
    );
    stack.stop().await;
    let t = tracing.clone();
    let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
}

/// The name ingest's span of a webhook has (its `otel.name`).
const WEBHOOK_SPAN: &str = "POST /webhooks/github";

/// A consumer's span of one record (named `<topic> process`).
fn is_consume(s: &Span) -> bool {
    s.name.ends_with(" process")
}

/// The spans of the trace that runs from the protection webhook to the applied fix's PUT and
/// the verification evaluation after it, once all of them arrived.
fn journey(spans: &[Span]) -> Option<Vec<Span>> {
    let traces: BTreeSet<&str> = spans
        .iter()
        .filter(|s| {
            s.name == WEBHOOK_SPAN
                && s.attributes.get("github.event").map(String::as_str)
                    == Some("branch_protection_rule")
        })
        .map(|s| s.trace.as_str())
        .collect();
    traces.into_iter().find_map(|t| {
        let in_trace: Vec<Span> = spans.iter().filter(|s| s.trace == t).cloned().collect();
        let has = |name: &str| in_trace.iter().any(|s| s.name == name);
        let put = in_trace.iter().any(|s| {
            s.name == "github.request"
                && s.attributes.get("http.request.method").map(String::as_str) == Some("PUT")
        });
        let consumes = in_trace.iter().filter(|s| is_consume(s)).count();
        (has("action.remediate") && put && has("evaluate_rule") && consumes >= 3)
            .then_some(in_trace)
    })
}

async fn scrape(http: &reqwest::Client, stack: &Stack, service: &str) -> String {
    let addr = stack.health.get(service).expect("service runs");
    http.get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body")
}

/// The exposition format as a parser reads it: every sample of a family with HELP and TYPE
/// first, no series twice, label values well escaped.
fn check_exposition(service: &str, text: &str) {
    let mut help = BTreeSet::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut series = BTreeSet::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            assert!(
                help.insert(name.to_string()),
                "{service}: HELP twice for {name}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{service}: TYPE twice for {name}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "{service}: stray comment {line}");
        let (name, labels) = match line.find('{') {
            Some(i) => (&line[..i], parse_labels(service, &line[i + 1..])),
            None => (line.split(' ').next().unwrap_or(""), String::new()),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|base| types.get(*base).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(
            help.contains(family) && types.contains_key(family),
            "{service}: {name} has no HELP or TYPE before it"
        );
        assert!(
            series.insert(format!("{name}{{{labels}}}")),
            "{service}: series twice: {line}"
        );
    }
}

/// Reads `a="x",b="y\"z"} value` up to the closing brace, checking escapes; returns the labels
/// as read (unescaped), for the duplicate check.
fn parse_labels(service: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut chars = rest.chars();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{service}: label name {name:?} in {rest}"
        );
        assert_eq!(chars.next(), Some('"'), "{service}: {rest}");
        out.push_str(&name);
        out.push('=');
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some(c @ ('\\' | '"')) => out.push(c),
                    Some('n') => out.push('\n'),
                    other => panic!("{service}: bad escape {other:?} in {rest}"),
                },
                Some('"') => break,
                Some('\n') | None => panic!("{service}: unterminated label value in {rest}"),
                Some(c) => out.push(c),
            }
        }
        out.push(',');
        match chars.next() {
            Some(',') => continue,
            Some('}') => return out,
            other => panic!("{service}: {other:?} after a label value in {rest}"),
        }
    }
}

/// Runs promtool (installed by scripts/test.sh) and asserts it succeeds.
fn promtool(args: &[&str], stdin: Option<&str>) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(args)
        .current_dir(root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (scripts/test.sh installs Debian's prometheus package when it is absent)");
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes()).expect("stdin");
    }
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The names of metrics an expression reads (Plumbline's, the process collector's, `up`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if word.starts_with("plumbline_") || word.starts_with("process_") || word == "up" {
            names.insert(word.clone());
        }
        word.clear();
    }
    names
}

/// Whether the services export `name` (a histogram's `_bucket`, `_sum` and `_count` too).
fn exported(name: &str) -> bool {
    if name == "up" || catalog::PROCESS.contains(&name) || catalog::find(name).is_some() {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|s| {
        name.strip_suffix(s)
            .and_then(catalog::find)
            .is_some_and(|d| d.kind == catalog::Kind::Histogram)
    })
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn alert_rules_pass_promtool_and_dashboards_read_only_exported_metrics() {
    promtool(
        &["check", "rules", "k8s/monitoring/alerts.rules.yaml"],
        None,
    );
    promtool(&["test", "rules", "k8s/monitoring/alerts.test.yaml"], None);
    let read = |p: &str| std::fs::read_to_string(root().join(p)).expect(p);
    let rules: serde_json::Value =
        serde_yaml_ng::from_str(&read("k8s/monitoring/alerts.rules.yaml")).expect("rules yaml");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("k8s/monitoring/grafana-dashboard.json")).expect("dashboard");
    let mut all = Vec::new();
    exprs(&rules, &mut all);
    let from_rules = all.len();
    exprs(&dashboard, &mut all);
    assert!(from_rules >= 6 && all.len() > from_rules + 10, "{all:?}");
    let mut unknown = BTreeSet::new();
    for e in &all {
        for name in metric_names(e) {
            if !exported(&name) {
                unknown.insert(name);
            }
        }
    }
    assert!(unknown.is_empty(), "read but never exported: {unknown:?}");
    // The Kubernetes PrometheusRule carries exactly the rules promtool checked.
    let crd: serde_json::Value =
        serde_yaml_ng::from_str(&read("k8s/monitoring/prometheusrule.yaml")).expect("crd");
    assert_eq!(crd["spec"]["groups"], rules["groups"]);
}
