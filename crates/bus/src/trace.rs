//! W3C trace context and CloudEvents headers for Kafka records.
//!
//! Every record carries `traceparent` (and `tracestate` when present) so a webhook can be followed
//! through ingest, evaluator and actuator; and CloudEvents binary-mode headers (`ce_*`) so
//! analytics consumers can use any CloudEvents-aware Kafka client without knowing Plumbline.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rand::Rng;
use std::collections::BTreeMap;

/// The trace position of one record: its trace id and the span that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceContext {
    span: SpanContext,
}

impl TraceContext {
    /// A new trace (e.g. an incoming webhook, a sweep tick).
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        let trace_id = TraceId::from_bytes(rng.random::<[u8; 16]>());
        Self::with_trace(trace_id)
    }

    fn with_trace(trace_id: TraceId) -> Self {
        let mut rng = rand::rng();
        let mut span_bytes = rng.random::<[u8; 8]>();
        if span_bytes == [0; 8] {
            span_bytes[7] = 1;
        }
        TraceContext {
            span: SpanContext::new(
                trace_id,
                SpanId::from_bytes(span_bytes),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
        }
    }

    /// The current `tracing` span's place in its trace: what a record produced now carries,
    /// so its consumer's span is this span's child. A new root when there is no span (or no
    /// OpenTelemetry layer, as in a benchmark without a subscriber).
    pub fn current() -> Self {
        Self::of(&tracing::Span::current())
    }

    /// [`TraceContext::current`] of a given span.
    pub fn of(span: &tracing::Span) -> Self {
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let cx = span.context();
        let span = cx.span().span_context().clone();
        if span.is_valid() {
            TraceContext { span }
        } else {
            Self::new_root()
        }
    }

    /// Makes `span` a child of this context (a consumer's span of the record's producer).
    pub fn attach(&self, span: &tracing::Span) {
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let _ = span.set_parent(Context::new().with_remote_span_context(self.span.clone()));
    }

    /// Links `span` to this context (a sweep's entity traces to the sweep).
    pub fn link_from(&self, span: &tracing::Span) {
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        span.add_link(self.span.clone());
    }

    /// The span id the record's producer had.
    pub fn span_id(&self) -> String {
        self.span.span_id().to_string()
    }

    pub fn trace_id(&self) -> String {
        self.span.trace_id().to_string()
    }

    /// Reads `traceparent`/`tracestate`; `None` when absent or malformed.
    pub fn extract(headers: &BTreeMap<String, String>) -> Option<Self> {
        let cx = TraceContextPropagator::new().extract(&MapExtractor(headers));
        let span = cx.span().span_context().clone();
        span.is_valid().then_some(TraceContext { span })
    }

    /// Writes `traceparent` (and `tracestate` when non-empty) into `headers`.
    pub fn inject(&self, headers: &mut BTreeMap<String, String>) {
        let cx = Context::new().with_remote_span_context(self.span.clone());
        TraceContextPropagator::new().inject_context(&cx, &mut MapInjector(headers));
    }
}

struct MapExtractor<'a>(&'a BTreeMap<String, String>);
impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct MapInjector<'a>(&'a mut BTreeMap<String, String>);
impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.insert(key.to_string(), value);
        }
    }
}

/// CloudEvents binary-mode headers for one record.
#[derive(Debug, Clone)]
pub struct CloudEvent<'a> {
    /// e.g. `dev.plumbline.entity_event.v1`
    pub ce_type: &'a str,
    /// e.g. `/plumbline/ingest`
    pub source: &'a str,
    /// Unique per event (the record's event id).
    pub id: &'a str,
}

impl CloudEvent<'_> {
    pub fn write(&self, headers: &mut BTreeMap<String, String>) {
        headers.insert("ce_specversion".into(), "1.0".into());
        headers.insert("ce_id".into(), self.id.to_string());
        headers.insert("ce_type".into(), self.ce_type.to_string());
        headers.insert("ce_source".into(), self.source.to_string());
        headers.insert(
            "ce_time".into(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        );
        headers.insert("content-type".into(), "application/protobuf".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips() {
        let root = TraceContext::new_root();
        let mut h = BTreeMap::new();
        root.inject(&mut h);
        let tp = h.get("traceparent").cloned().unwrap_or_default();
        assert!(tp.starts_with("00-") && tp.ends_with("-01"), "{tp}");
        let back = TraceContext::extract(&h).expect("valid traceparent");
        assert_eq!(back.trace_id(), root.trace_id());
        assert_eq!(back.span_id(), root.span_id());
        assert_ne!(TraceContext::new_root().trace_id(), root.trace_id());
    }

    #[test]
    fn malformed_traceparent_is_ignored() {
        let mut h = BTreeMap::new();
        h.insert("traceparent".to_string(), "nonsense".to_string());
        assert!(TraceContext::extract(&h).is_none());
        assert!(TraceContext::extract(&BTreeMap::new()).is_none());
    }
}
