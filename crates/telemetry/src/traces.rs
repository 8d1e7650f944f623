//! Logs and traces from one `tracing` subscriber: the log format (text or JSON, `RUST_LOG`)
//! plus OpenTelemetry, so every span has W3C trace and span ids, which Kafka records carry
//! (`plumbline_bus::TraceContext`) and which are exported over OTLP when configured.
//!
//! Export follows the standard environment: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns it on (gRPC, e.g. `http://collector:4317`),
//! `OTEL_SERVICE_NAME` names the service, `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`
//! choose the sampler (default `parentbased_always_on`), `OTEL_SDK_DISABLED=true` turns it off.
//! Without an endpoint nothing is exported, but spans still get ids, so the trace context that
//! crosses Kafka stays one trace for whoever does export.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The longest [`Tracing::shutdown`] waits for the last spans to leave.
pub const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The process's tracer provider: flush it before exit ([`Tracing::shutdown`]) so the last
/// spans are exported.
#[derive(Clone)]
pub struct Tracing {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Tracing {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Exports what the batch holds now (blocking: call it off the async threads).
    pub fn force_flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "spans not flushed");
        }
    }

    /// Flushes and stops exporting (blocking, at most [`SHUTDOWN_WAIT`]: an unreachable
    /// collector must not hold the process past its termination grace period).
    pub fn shutdown(&self) {
        let provider = self.provider.clone();
        let (done, wait) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("otel-shutdown".into())
            .spawn(move || {
                let _ = done.send(provider.shutdown());
            });
        if spawned.is_err() {
            return;
        }
        match wait.recv_timeout(SHUTDOWN_WAIT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "tracer provider shutdown"),
            Err(_) => tracing::warn!(
                "spans not all exported within {SHUTDOWN_WAIT:?} of shutdown; the rest are dropped"
            ),
        }
    }
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("{0}")]
    Sampler(String),
}

/// Settings read from the environment (see the module docs), with `otlp_endpoint` taking
/// precedence over `OTEL_EXPORTER_OTLP_ENDPOINT` (`plumb dev --otlp-endpoint`).
#[derive(Debug, Clone, Default)]
pub struct TracingConfig {
    pub service: String,
    pub otlp_endpoint: Option<String>,
    pub json: bool,
    /// Used when `RUST_LOG` is not set.
    pub default_filter: String,
    /// Whether the `OTEL_*` environment may turn export on (not for the CLI's own commands).
    pub from_env: bool,
}

impl TracingConfig {
    pub fn new(service: &str, json: bool) -> Self {
        TracingConfig {
            service: service.to_string(),
            otlp_endpoint: None,
            json,
            default_filter: "info,rdkafka=warn,hyper=warn,h2=warn,tower=warn".into(),
            from_env: true,
        }
    }

    /// The endpoint spans go to: the flag, else the environment; `None` when export is off.
    pub fn endpoint(&self) -> Option<String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        let flag = self.otlp_endpoint.clone().filter(|e| !e.is_empty());
        if flag.is_some() || !self.from_env {
            return flag;
        }
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
    }
}

/// The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` name (the specification's
/// values); `parentbased_always_on` when unset.
pub fn sampler_from_env() -> Result<Sampler, TracingError> {
    let name = std::env::var("OTEL_TRACES_SAMPLER").unwrap_or_default();
    let ratio = || -> Result<f64, TracingError> {
        match std::env::var("OTEL_TRACES_SAMPLER_ARG") {
            Err(_) => Ok(1.0),
            Ok(a) => a
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    TracingError::Sampler(format!(
                        "OTEL_TRACES_SAMPLER_ARG {a:?} is not a ratio between 0 and 1"
                    ))
                }),
        }
    };
    let parent = |s: Sampler| Sampler::ParentBased(Box::new(s));
    Ok(match name.trim() {
        "" | "parentbased_always_on" => parent(Sampler::AlwaysOn),
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "parentbased_always_off" => parent(Sampler::AlwaysOff),
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_traceidratio" => parent(Sampler::TraceIdRatioBased(ratio()?)),
        other => {
            return Err(TracingError::Sampler(format!(
                "OTEL_TRACES_SAMPLER {other:?} is not one Plumbline supports (always_on, always_off, traceidratio and their parentbased_ forms)"
            )))
        }
    })
}

/// Installs the process's subscriber once (later calls in the same process, as in tests that
/// start many services, keep the first) and returns the tracer provider. Export needs a Tokio
/// runtime: call it inside one.
pub fn init(config: &TracingConfig) -> Result<Tracing, TracingError> {
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| config.service.clone());
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(sampler_from_env()?)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        );
    let endpoint = config.endpoint();
    if let Some(endpoint) = &endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()?;
        let processor =
            opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .build();
        builder = builder.with_span_processor(processor);
    }
    let provider = builder.build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    // Each layer filters for itself: `RUST_LOG=warn` quiets the logs, not the spans (Plumbline's
    // spans are at INFO; dependencies' DEBUG and TRACE spans stay out of the traces).
    use tracing_subscriber::Layer as _;
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("plumbline"))
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.default_filter))
    };
    let fmt = tracing_subscriber::fmt::layer().with_target(true);
    let installed = if config.json {
        tracing_subscriber::registry()
            .with(otel)
            .with(fmt.json().with_filter(filter()))
            .try_init()
    } else {
        tracing_subscriber::registry()
            .with(otel)
            .with(fmt.with_filter(filter()))
            .try_init()
    };
    // A subscriber installed before (tests starting many services) keeps its own provider.
    let exporting = endpoint.is_some() && installed.is_ok();
    if let (true, Some(e)) = (exporting, &endpoint) {
        tracing::info!(endpoint = %e, "exporting traces over OTLP");
    }
    Ok(Tracing {
        provider,
        exporting,
    })
}

/// Records the current OpenTelemetry trace and span ids into `span`'s `trace_id` and
/// `span_id` fields (declared `tracing::field::Empty`), so every log line inside it names its
/// trace.
pub fn record_trace_ids(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.record("trace_id", tracing::field::display(sc.trace_id()));
        span.record("span_id", tracing::field::display(sc.span_id()));
    }
}
