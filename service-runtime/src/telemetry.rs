//! Telemetry set-up shared by every service: logs (`RUST_LOG`, `LOG_FORMAT=json`), traces and
//! metrics through OpenTelemetry, exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set, metrics also rendered in Prometheus text format for `/metrics`, and W3C `traceparent`
//! propagation helpers for every hop: [`set_parent_from`] continues a caller's trace inside the
//! system, [`link_from`] starts a new one at its edge (a browser chooses nothing inside it).
//!
//! Spans always get real trace ids (a tracer provider is installed even without an exporter), so
//! `traceparent` flows between services whether or not anything is exported.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{Arc, OnceLock, Weak},
    time::Duration,
};

use opentelemetry::{
    Context, KeyValue, global,
    metrics::MeterProvider as _,
    propagation::{Injector, TextMapPropagator as _},
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    metrics::{
        InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
        data::{AggregatedMetrics, MetricData, ResourceMetrics},
        reader::MetricReader,
    },
    propagation::TraceContextPropagator,
    trace::SdkTracerProvider,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// The handle `main` keeps until exit; [`Telemetry::shutdown`] flushes what is buffered.
#[derive(Debug)]
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
}

static PROMETHEUS: OnceLock<Arc<ManualReader>> = OnceLock::new();

/// Installs logging, tracing and metrics for `service` (overridden by `OTEL_SERVICE_NAME`).
/// Must be called inside the Tokio runtime (the OTLP exporter is a tonic client).
pub fn init(service: &str, default_filter: &str) -> Telemetry {
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| service.to_owned());
    let resource = Resource::builder().with_service_name(name.clone()).build();
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|s| !s.trim().is_empty());

    global::set_text_map_propagator(TraceContextPropagator::new());

    let mut tracing_builder = SdkTracerProvider::builder().with_resource(resource.clone());
    let mut meter_builder = SdkMeterProvider::builder().with_resource(resource);
    let mut export_error = None;
    if endpoint.is_some() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => tracing_builder = tracing_builder.with_batch_exporter(exporter),
            Err(e) => export_error = Some(format!("span exporter: {e}")),
        }
        match opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => {
                let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
                    .with_interval(export_interval())
                    .build();
                meter_builder = meter_builder.with_reader(reader);
            }
            Err(e) => export_error = Some(format!("metric exporter: {e}")),
        }
    }
    let prometheus =
        Arc::clone(PROMETHEUS.get_or_init(|| Arc::new(ManualReader::builder().build())));
    let meter_provider = meter_builder.with_reader(SharedReader(prometheus)).build();
    let tracer_provider = tracing_builder.build();
    global::set_meter_provider(meter_provider.clone());
    global::set_tracer_provider(tracer_provider.clone());

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let otel_layer =
        tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer(name.clone()));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let _ = if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true),
            )
            .try_init()
    } else {
        registry.with(fmt::layer()).try_init()
    };
    if demo_mode() {
        tracing::warn!(service = %name, "DEMO MODE: talking to fake-snyk with demo secrets; not for real installs");
    }
    match (endpoint, export_error) {
        (Some(e), None) => {
            tracing::info!(endpoint = %e, service = %name, "exporting traces and metrics over OTLP")
        }
        (Some(_), Some(err)) => {
            tracing::error!(error = %err, "OTLP export is configured but could not start")
        }
        (None, _) => tracing::debug!("OTEL_EXPORTER_OTLP_ENDPOINT not set: no OTLP export"),
    }
    // After the subscriber, so a series left out is logged.
    crate::process_metrics::register(&meter_provider.meter("process"));
    Telemetry {
        tracer_provider,
        meter_provider,
    }
}

/// `DEMO_MODE=true` (set by the demo compose stack and `scripts/dev-stack`).
pub fn demo_mode() -> bool {
    // Settings already refused an unreadable value at start-up (`Env::demo_mode`).
    crate::demo::parse(std::env::var(crate::demo::DEMO_MODE).ok().as_deref()).unwrap_or(false)
}

fn export_interval() -> Duration {
    std::env::var("OTEL_METRIC_EXPORT_INTERVAL")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::from_secs(60), Duration::from_millis)
}

impl Telemetry {
    /// Flushes spans and metrics still buffered. Call last, after the server stopped.
    pub fn shutdown(self) {
        if let Err(e) = self.tracer_provider.shutdown() {
            eprintln!("telemetry: flushing traces failed: {e}");
        }
        if let Err(e) = self.meter_provider.shutdown() {
            eprintln!("telemetry: flushing metrics failed: {e}");
        }
    }
}

/// Lets the process-wide [`ManualReader`] be both registered with the meter provider and read by
/// `/metrics` (the SDK takes readers by value).
#[derive(Debug)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// A meter provider of its own whose metrics render as `/metrics` renders the process-wide ones:
/// for tests of code that records metrics, apart from the process-wide provider.
#[derive(Debug)]
pub struct ScrapedProvider {
    provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
}

impl Default for ScrapedProvider {
    fn default() -> Self {
        let reader = Arc::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder()
            .with_reader(SharedReader(Arc::clone(&reader)))
            .build();
        ScrapedProvider { provider, reader }
    }
}

impl ScrapedProvider {
    pub fn meter(&self, name: &'static str) -> opentelemetry::metrics::Meter {
        self.provider.meter(name)
    }

    /// What was recorded so far, in Prometheus text exposition format.
    pub fn scrape(&self) -> String {
        scrape(&self.reader).unwrap_or_else(|e| panic!("collecting metrics failed: {e}"))
    }
}

/// What `reader` collects now, in Prometheus text exposition format.
fn scrape(reader: &ManualReader) -> Result<String, OTelSdkError> {
    let mut rm = ResourceMetrics::default();
    reader.collect(&mut rm)?;
    Ok(render_prometheus(&rm))
}

/// Every metric of this process in Prometheus text exposition format (empty before [`init`]).
pub fn prometheus_text() -> String {
    PROMETHEUS
        .get()
        .and_then(|reader| scrape(reader).ok())
        .unwrap_or_default()
}

pub(crate) fn render_prometheus(rm: &ResourceMetrics) -> String {
    let mut out = String::new();
    for scope in rm.scope_metrics() {
        for metric in scope.metrics() {
            let name = sanitize(metric.name());
            let help = metric.description().replace('\n', " ");
            match metric.data() {
                AggregatedMetrics::U64(d) => render_data(&mut out, &name, &help, d, |v| v as f64),
                AggregatedMetrics::I64(d) => render_data(&mut out, &name, &help, d, |v| v as f64),
                AggregatedMetrics::F64(d) => render_data(&mut out, &name, &help, d, |v| v),
            }
        }
    }
    out
}

fn render_data<T: Copy>(
    out: &mut String,
    name: &str,
    help: &str,
    data: &MetricData<T>,
    f: impl Fn(T) -> f64,
) {
    match data {
        MetricData::Sum(sum) => {
            let (name, kind) = if sum.is_monotonic() {
                (format!("{name}_total"), "counter")
            } else {
                (name.to_owned(), "gauge")
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for p in sum.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(p.attributes(), None),
                    f(p.value())
                );
            }
        }
        MetricData::Gauge(g) => {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for p in g.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(p.attributes(), None),
                    f(p.value())
                );
            }
        }
        MetricData::Histogram(h) => {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for p in h.data_points() {
                let attrs: Vec<&KeyValue> = p.attributes().collect();
                let mut cumulative = 0;
                for (bound, count) in p.bounds().zip(p.bucket_counts()) {
                    cumulative += count;
                    let le = bound.to_string();
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {cumulative}",
                        labels(attrs.iter().copied(), Some(&le))
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    labels(attrs.iter().copied(), Some("+Inf")),
                    p.count()
                );
                let _ = writeln!(
                    out,
                    "{name}_sum{} {}",
                    labels(attrs.iter().copied(), None),
                    f(p.sum())
                );
                let _ = writeln!(
                    out,
                    "{name}_count{} {}",
                    labels(attrs.iter().copied(), None),
                    p.count()
                );
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn labels<'a>(attrs: impl Iterator<Item = &'a KeyValue>, le: Option<&str>) -> String {
    let mut parts: Vec<String> = attrs
        .map(|kv| {
            let v = kv
                .value
                .to_string()
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{}=\"{v}\"", sanitize(kv.key.as_str()))
        })
        .collect();
    // Sorted, so a series always prints the same way whatever order its attributes came in.
    parts.sort();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Sets the parent of `span` from incoming headers (`traceparent`, `tracestate`) read through
/// `get`; without them the span starts a new trace.
pub fn set_parent_from(span: &tracing::Span, get: impl Fn(&str) -> Option<String>) {
    let carrier: HashMap<String, String> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|k| get(k).map(|v| (k.to_owned(), v)))
        .collect();
    if carrier.is_empty() {
        return;
    }
    let cx = global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(cx);
}

/// Makes `span` the root of a new trace, linked to the trace of the incoming `traceparent` (read
/// through `get`) when that is valid: for requests from outside the system, a browser's, whose
/// sender must not pick the trace ids, parent or sampling decision of the work done inside it.
/// `tracestate` is not read at all: it would travel to every hop behind this one. The link keeps
/// the browser's trace findable from ours. Calls made under `span` carry the new trace
/// ([`current_context_headers`]).
pub fn link_from(span: &tracing::Span, get: impl Fn(&str) -> Option<String>) {
    // A root, whatever span or context is current where `span` was made.
    let _ = span.set_parent(Context::new());
    let Some(traceparent) = get("traceparent") else {
        return;
    };
    // W3C's own propagator, not the global one: the header is W3C's whatever else is set up.
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent)]);
    let outside = TraceContextPropagator::new().extract(&carrier);
    // `add_link` drops an invalid span context (a malformed header): no link then.
    span.add_link(outside.span().span_context().clone());
}

/// The headers (`traceparent`, `tracestate`) that carry the current span's context to the next hop.
pub fn current_context_headers() -> Vec<(&'static str, String)> {
    struct Collect(Vec<(&'static str, String)>);
    impl Injector for Collect {
        fn set(&mut self, key: &str, value: String) {
            let key = match key {
                "traceparent" => "traceparent",
                "tracestate" => "tracestate",
                _ => return,
            };
            self.0.push((key, value));
        }
    }
    let cx = tracing::Span::current().context();
    let mut c = Collect(Vec::new());
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut c));
    c.0
}

/// Adds the current span's `traceparent`/`tracestate` to an outgoing gRPC request.
pub fn inject_into_metadata(metadata: &mut tonic::metadata::MetadataMap) {
    for (key, value) in current_context_headers() {
        if let Ok(value) = value.parse() {
            metadata.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn renders_counters_and_histograms_in_prometheus_format() {
        let reader = Arc::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder()
            .with_reader(SharedReader(Arc::clone(&reader)))
            .build();
        let meter = provider.meter("test");
        let c = meter
            .u64_counter("token_requests")
            .with_description("Token requests")
            .build();
        c.add(2, &[KeyValue::new("outcome", "cached")]);
        c.add(1, &[KeyValue::new("outcome", "refreshed")]);
        let h = meter
            .f64_histogram("rpc.duration")
            .with_boundaries(vec![0.001, 0.01])
            .build();
        h.record(0.0005, &[]);
        h.record(0.005, &[]);
        h.record(1.0, &[]);
        let mut rm = ResourceMetrics::default();
        reader.collect(&mut rm).expect("collects");
        let text = render_prometheus(&rm);
        assert!(
            text.contains("# TYPE token_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains("token_requests_total{outcome=\"cached\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("token_requests_total{outcome=\"refreshed\"} 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE rpc_duration histogram"), "{text}");
        assert!(
            text.contains("rpc_duration_bucket{le=\"0.001\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rpc_duration_bucket{le=\"0.01\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("rpc_duration_bucket{le=\"+Inf\"} 3"),
            "{text}"
        );
        assert!(text.contains("rpc_duration_count 3"), "{text}");
    }

    /// Spans a test's own tracer provider ended, in the order they ended.
    #[derive(Debug, Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

    impl opentelemetry_sdk::trace::SpanExporter for Captured {
        async fn export(&self, batch: Vec<opentelemetry_sdk::trace::SpanData>) -> OTelSdkResult {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(batch);
            Ok(())
        }
    }

    /// A subscriber whose spans end up in the returned [`Captured`] (once `provider` is dropped,
    /// which flushes them).
    fn capturing() -> (
        Captured,
        SdkTracerProvider,
        impl tracing::Subscriber + Send + Sync,
    ) {
        let captured = Captured::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(captured.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        (captured, provider, subscriber)
    }

    #[test]
    fn a_request_from_outside_starts_a_new_trace_linked_to_the_senders() {
        use opentelemetry::trace::{SpanId, TraceId, TraceState};
        global::set_text_map_propagator(TraceContextPropagator::new());
        let (captured, provider, subscriber) = capturing();
        let browser_trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let browser_span = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        let headers = HashMap::from([
            (
                "traceparent",
                format!("00-{browser_trace}-{browser_span}-00"),
            ),
            ("tracestate", "vendor=chosen-by-the-browser".to_owned()),
        ]);

        let (outgoing, own_trace) = tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("a span already current");
            let _outer = outer.enter();
            let root = tracing::info_span!("HTTP request");
            link_from(&root, |k| headers.get(k).cloned());
            let own_trace = root.context().span().span_context().trace_id();
            let outgoing =
                root.in_scope(|| tracing::info_span!("call").in_scope(current_context_headers));
            (outgoing, own_trace)
        });
        drop(provider);

        assert_ne!(own_trace, browser_trace, "the browser's trace was adopted");
        assert_ne!(own_trace, TraceId::INVALID);
        // The next hop continues our trace, sampled by our decision, with an empty tracestate.
        let header = |name| {
            outgoing
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("tracestate").unwrap_or(""), "", "{outgoing:?}");
        let value = header("traceparent").expect("a traceparent");
        assert!(value.starts_with(&format!("00-{own_trace}-")), "{value}");
        assert!(
            value.ends_with("-01"),
            "sampled although the browser said not: {value}"
        );

        let spans = captured.0.lock().unwrap().clone();
        let root = spans
            .iter()
            .find(|s| s.name == "HTTP request")
            .expect("exported");
        assert_eq!(root.span_context.trace_id(), own_trace);
        assert_eq!(root.parent_span_id, SpanId::INVALID, "a root: {root:?}");
        assert_eq!(root.span_context.trace_state(), &TraceState::default());
        let links: Vec<_> = root.links.iter().collect();
        assert_eq!(links.len(), 1, "{root:?}");
        assert_eq!(links[0].span_context.trace_id(), browser_trace);
        assert_eq!(links[0].span_context.span_id(), browser_span);
        assert_eq!(links[0].span_context.trace_state(), &TraceState::default());
    }

    #[test]
    fn a_malformed_or_missing_traceparent_starts_a_trace_without_a_link() {
        let (captured, provider, subscriber) = capturing();
        tracing::subscriber::with_default(subscriber, || {
            for header in [Some("00-zz-00f067aa0ba902b7-01"), Some(""), None] {
                let root = tracing::info_span!("HTTP request");
                link_from(&root, |_| header.map(str::to_owned));
            }
        });
        drop(provider);
        let spans = captured.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 3);
        for span in &spans {
            assert_eq!(span.links.len(), 0, "{span:?}");
            assert!(span.span_context.is_valid(), "{span:?}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let kv = [KeyValue::new("k", "a\"b\\c")];
        assert_eq!(labels(kv.iter(), None), "{k=\"a\\\"b\\\\c\"}");
    }
}
