//! Logs and traces for every Kiln binary: `init` once at start, keep the
//! guard until exit.
//!
//! - **Logs** go to stderr: human-readable on a terminal, otherwise one JSON
//!   object per line with `timestamp`, `level`, `target`, `message`, the
//!   event's fields, `span`, and — from the enclosing spans — `trace_id`,
//!   `span_id`, `order_id`, `challenge_id` and `stage`, so a log line leads to
//!   its trace. `RUST_LOG` filters.
//! - **Traces** come from `tracing` spans through `tracing-opentelemetry`.
//!   Trace ids always exist (logs and `kiln order show` carry them); spans
//!   are exported over OTLP/HTTP (protobuf) only when an endpoint is
//!   configured. W3C Trace Context is the propagator (see `queue::trace`).
//!
//! Settings (`[telemetry]`, see `config::Telemetry`), each falling back to
//! the standard OpenTelemetry environment variable, then to a default:
//!
//! | setting | config key | environment | default |
//! |---|---|---|---|
//! | collector | `otlp_endpoint` (base URL) | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (full URL), `OTEL_EXPORTER_OTLP_ENDPOINT` (base URL) | no export |
//! | `service.name` | `service_name` | `OTEL_SERVICE_NAME` | the binary's name |
//! | sampling | `sampling_ratio` (parent-based ratio) | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | `parentbased_always_on` (nothing recorded when not exporting) |
//! | parent or link | `propagation` | — | `parent` |
//!
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn export off.
//! Other `OTEL_EXPORTER_OTLP_*` variables (headers, timeout, compression)
//! and `OTEL_BSP_*` (batching) are read by the OpenTelemetry SDK itself.

use crate::config::Telemetry;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context as OtelContext, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::{Arc, OnceLock};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use queue::trace::current_trace_id;

/// The log filter unless `RUST_LOG` says otherwise: the OpenTelemetry
/// crates' own diagnostics only from warnings up.
const DEFAULT_FILTER: &str = "info,sqlx=warn,hyper=warn,lapin=warn,\
    opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry_otlp=warn";

/// Targets never turned into spans or span events: dependencies' internals
/// and the exporter's own diagnostics (which would feed on themselves).
const NOT_TRACED: &[&str] = &[
    "opentelemetry",
    "reqwest",
    "hyper",
    "h2",
    "tower",
    "lapin",
    "amq_protocol",
    "sqlx",
];

/// Keeps the tracer provider; dropping it flushes the spans not yet
/// exported and shuts the exporter down. Hold it until `main` returns.
#[must_use = "dropping the guard shuts tracing down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    exporting: bool,
}

impl TelemetryGuard {
    /// Whether spans are exported (an OTLP endpoint is configured).
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Exports every finished span now.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(e) = provider.force_flush()
        {
            eprintln!("telemetry: flushing spans failed: {e}");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // shutdown() flushes the batch processor first.
            if let Err(e) = provider.shutdown() {
                eprintln!("telemetry: shutting the tracer provider down failed: {e}");
            }
        }
    }
}

/// The provider of the first `init`, for `flush`.
static INSTALLED: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Exports every finished span now (no-op before `init`). A binary calls it
/// once its work is drained, before closing connections that might hang on
/// a broker going away: its spans are out even if it is killed then.
pub fn flush() {
    if let Some(provider) = INSTALLED.get()
        && let Err(e) = provider.force_flush()
    {
        tracing::warn!(error = %e, "flushing spans failed");
    }
}

/// The resolved settings (config first, then environment, then defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub service_name: String,
    /// `Some(url)`: export to this full URL; `Some("")`: export where the
    /// OTLP environment variables say; `None`: no export.
    pub endpoint: Option<String>,
    pub sampling_ratio: Option<f64>,
    pub propagation: queue::Propagation,
}

impl Settings {
    pub fn resolve(binary: &str, config: &Telemetry) -> Settings {
        Settings::resolve_with(binary, config, |name| {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty())
        })
    }

    fn resolve_with(
        binary: &str,
        config: &Telemetry,
        env: impl Fn(&str) -> Option<String>,
    ) -> Settings {
        let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        let endpoint = match config.otlp_endpoint.as_deref().map(str::trim) {
            _ if disabled => None,
            Some(base) if !base.is_empty() => Some(traces_url(base)),
            // The exporter reads the variables itself (spec rules for the
            // signal path).
            _ if env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
                || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() =>
            {
                Some(String::new())
            }
            _ => None,
        };
        let service_name = config
            .service_name
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| binary.to_string());
        Settings {
            service_name,
            endpoint,
            sampling_ratio: config.sampling_ratio.map(|r| r.clamp(0.0, 1.0)),
            propagation: config.propagation.into(),
        }
    }
}

/// `{base}/v1/traces`, unless `base` already names the traces path.
fn traces_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// Sets up logging and tracing for `binary` (its default `service.name`).
/// Call once, early in `main`, inside the Tokio runtime or not; keep the
/// guard until exit. A second call (tests) keeps the first subscriber.
pub fn init(binary: &str, config: &Telemetry) -> TelemetryGuard {
    let settings = Settings::resolve(binary, config);
    let (provider, export_error) = build_provider(&settings);
    let guard = TelemetryGuard {
        exporting: settings.endpoint.is_some() && export_error.is_none(),
        provider: Some(provider.clone()),
    };
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    queue::trace::set_propagation(settings.propagation);
    let _ = INSTALLED.set(provider.clone());

    let tracer = provider.tracer("kiln");
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            !NOT_TRACED.iter().any(|t| meta.target().starts_with(t))
        }));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| DEFAULT_FILTER.into());
    let (fields, dispatch) = SpanFieldsLayer::new();
    use std::io::IsTerminal;
    let fmt_layer = if std::io::stderr().is_terminal() {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .event_format(JsonLines { dispatch })
            .boxed()
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fields)
        .with(fmt_layer)
        .with(otel)
        .try_init()
        .is_ok();
    if installed {
        tracing::info!(
            service_name = %settings.service_name,
            exporting = guard.exporting,
            propagation = ?settings.propagation,
            "telemetry ready"
        );
    }
    if let Some(e) = export_error {
        tracing::warn!(error = %e, "the OTLP exporter could not be built; spans are not exported");
    }
    guard
}

fn build_provider(settings: &Settings) -> (SdkTracerProvider, Option<String>) {
    let instance = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
        std::process::id()
    );
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attributes([
            KeyValue::new("service.instance.id", instance),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(ratio) = settings.sampling_ratio {
        builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))));
    } else if settings.endpoint.is_none() {
        // Nothing is exported: record nothing either. Spans still get trace
        // and span ids (logs, `kiln order show`, propagation) at little cost;
        // a sampled parent from another process is still followed.
        builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)));
    }
    let mut error = None;
    if let Some(endpoint) = &settings.endpoint {
        use opentelemetry_otlp::{Protocol, WithExportConfig};
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if !endpoint.is_empty() {
            exporter = exporter.with_endpoint(endpoint.clone());
        }
        match exporter.build() {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(e) => error = Some(e.to_string()),
        }
    }
    (builder.build(), error)
}

// ---- JSON log lines that join traces ---------------------------------------

/// What log lines take from their enclosing spans.
#[derive(Clone, Debug, Default)]
struct LogFields {
    order_id: Option<String>,
    challenge_id: Option<String>,
    stage: Option<String>,
}

impl Visit for LogFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "order_id" | "kiln.order.id" => &mut self.order_id,
            "challenge_id" | "kiln.challenge.id" => &mut self.challenge_id,
            "stage" | "kiln.stage" => &mut self.stage,
            _ => return,
        };
        *slot = Some(value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields arrive here, printing their Display form.
        self.record_str(field, &format!("{value:?}"));
    }
}

/// Records `LogFields` in each span's extensions, and hands the log format
/// the dispatcher (to read OpenTelemetry contexts, which needs it).
struct SpanFieldsLayer {
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

impl SpanFieldsLayer {
    fn new() -> (Self, Arc<OnceLock<WeakDispatch>>) {
        let dispatch = Arc::new(OnceLock::new());
        (
            SpanFieldsLayer {
                dispatch: dispatch.clone(),
            },
            dispatch,
        )
    }
}

impl<S> Layer<S> for SpanFieldsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = LogFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(fields) = extensions.get_mut::<LogFields>() {
                values.record(fields);
            }
        }
    }
}

/// One JSON object per event (see the module docs for its keys).
struct JsonLines {
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let mut timestamp = String::new();
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.insert("timestamp".into(), Value::String(timestamp));
        let meta = event.metadata();
        line.insert("level".into(), Value::String(meta.level().to_string()));
        line.insert("target".into(), Value::String(meta.target().to_string()));
        event.record(&mut JsonVisitor(&mut line));

        let scope: Vec<(Id, &'static str)> = ctx
            .event_scope()
            .map(|scope| scope.map(|span| (span.id(), span.name())).collect())
            .unwrap_or_default();
        if let Some((_, name)) = scope.first() {
            line.insert("span".into(), Value::String((*name).to_string()));
        }
        // The innermost span OpenTelemetry knows gives trace and span id.
        // (No span extensions may be held while asking: it locks them.)
        let dispatch = self.dispatch.get().and_then(WeakDispatch::upgrade);
        if let Some(dispatch) = dispatch {
            let context = scope
                .iter()
                .filter_map(|(id, _)| tracing_opentelemetry::get_otel_context(id, &dispatch))
                .map(|cx: OtelContext| cx.span().span_context().clone())
                .find(|sc| sc.is_valid());
            if let Some(sc) = context {
                line.insert("trace_id".into(), Value::String(sc.trace_id().to_string()));
                line.insert("span_id".into(), Value::String(sc.span_id().to_string()));
            }
        }
        // The nearest span's order id, challenge id and stage, unless the
        // event has its own.
        if let Some(scope) = ctx.event_scope() {
            for span in scope {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<LogFields>() else {
                    continue;
                };
                for (key, value) in [
                    ("order_id", &fields.order_id),
                    ("challenge_id", &fields.challenge_id),
                    ("stage", &fields.stage),
                ] {
                    if let Some(value) = value
                        && !line.contains_key(key)
                    {
                        line.insert(key.into(), Value::String(value.clone()));
                    }
                }
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// An event's fields as JSON values.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::Mutex;

    fn settings(config: &Telemetry, env: &[(&str, &str)]) -> Settings {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::resolve_with("signer", config, |k| env.get(k).cloned())
    }

    #[test]
    fn config_then_environment_then_defaults() {
        let none = Telemetry::default();
        let s = settings(&none, &[]);
        assert_eq!(s.endpoint, None, "off unless configured");
        assert_eq!(s.service_name, "signer");
        assert_eq!(s.propagation, queue::Propagation::Parent);

        let s = settings(
            &none,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SERVICE_NAME", "kiln-signer"),
            ],
        );
        assert_eq!(s.endpoint.as_deref(), Some(""), "the exporter reads it");
        assert_eq!(s.service_name, "kiln-signer");

        let configured = Telemetry {
            otlp_endpoint: Some("http://collector:4318/".into()),
            service_name: Some("signer-eu".into()),
            sampling_ratio: Some(2.0),
            propagation: crate::config::PropagationSetting::Link,
        };
        let s = settings(&configured, &[("OTEL_SERVICE_NAME", "env")]);
        assert_eq!(
            s.endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(s.service_name, "signer-eu");
        assert_eq!(s.sampling_ratio, Some(1.0));
        assert_eq!(s.propagation, queue::Propagation::Link);

        let s = settings(&configured, &[("OTEL_TRACES_EXPORTER", "none")]);
        assert_eq!(s.endpoint, None);
        assert_eq!(traces_url("http://c/v1/traces"), "http://c/v1/traces");
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The JSON line of an event inside a stage's span carries that span's
    /// trace and span id, order id and stage.
    #[test]
    fn json_lines_carry_trace_ids_and_span_fields() {
        json_lines_with(Sampler::AlwaysOn);
        // Telemetry without export samples nothing; ids are there all the same.
        json_lines_with(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)));
    }

    fn json_lines_with(sampler: Sampler) {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let provider = SdkTracerProvider::builder().with_sampler(sampler).build();
        let (fields, dispatch) = SpanFieldsLayer::new();
        let subscriber = tracing_subscriber::registry()
            .with(fields)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || writer.clone())
                    .event_format(JsonLines { dispatch }),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")));
        let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let span =
                tracing::info_span!("process", kiln.order.id = "ord_7", kiln.stage = "signer");
            let _entered = span.enter();
            let inner = tracing::info_span!("inner", order_id = tracing::field::Empty);
            let _inner = inner.enter();
            tracing::info!(serial = "01ab", "precertificate signed");
            tracing::info!(stage = "own", "an event's own field wins");
            let cx = span.context();
            let sc = cx.span().span_context().clone();
            let inner_cx = inner.context();
            (sc.trace_id(), inner_cx.span().span_context().span_id())
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = &lines[0];
        assert_eq!(first["message"], "precertificate signed");
        assert_eq!(first["serial"], "01ab");
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["span"], "inner");
        assert_eq!(first["trace_id"], trace_id.to_string());
        assert_eq!(first["span_id"], span_id.to_string());
        assert_eq!(first["order_id"], "ord_7");
        assert_eq!(first["stage"], "signer");
        assert_eq!(lines[1]["stage"], "own");
        assert_ne!(trace_id, opentelemetry::trace::TraceId::INVALID);
    }
}
