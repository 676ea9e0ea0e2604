//! Trace context across the queue: one trace per order, across processes.
//!
//! W3C Trace Context (`traceparent`, `tracestate`) travels in
//! [`Message::headers`](crate::Message) — AMQP message headers in the
//! distributed mode, the message itself in-process. It is injected in **one
//! place**, [`Message::new`](crate::Message::new): a message created inside
//! a span (the api's finalize request, a stage's `process` span) carries
//! that span's context. The runner extracts it for each delivery and runs the
//! job in a `{stage} process` span whose parent is the publisher's span, or,
//! with [`Propagation::Link`], in a new trace linked to it.
//!
//! The propagator is OpenTelemetry's global one, which the binaries set to
//! W3C Trace Context (`service::telemetry::init`); without it (tests,
//! telemetry not initialised) nothing is injected and extraction yields an
//! empty context, so the queue works the same with tracing off.
//!
//! Attribute names follow the OpenTelemetry semantic conventions v1.27.0
//! (messaging: `messaging.system`, `messaging.operation.type`,
//! `messaging.operation.name`, `messaging.destination.name`), plus Kiln's
//! own `kiln.order.id`, `kiln.challenge.id`, `kiln.stage`, `kiln.job`,
//! `kiln.attempt`.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// How a stage's `process` span relates to the span that published its job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    /// A child of the publisher's span: one trace per order (the default).
    #[default]
    Parent,
    /// A new trace with a span link to the publisher's span (for tools or
    /// volumes where one long trace per order is unwanted).
    Link,
}

impl std::str::FromStr for Propagation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "parent" => Ok(Propagation::Parent),
            "link" => Ok(Propagation::Link),
            other => Err(format!(
                "propagation {other:?} is neither \"parent\" nor \"link\""
            )),
        }
    }
}

static PROPAGATION: AtomicU8 = AtomicU8::new(0);

/// Sets the process-wide propagation mode (telemetry init does, from config).
pub fn set_propagation(mode: Propagation) {
    PROPAGATION.store(mode as u8, Ordering::Relaxed);
}

pub fn propagation() -> Propagation {
    match PROPAGATION.load(Ordering::Relaxed) {
        1 => Propagation::Link,
        _ => Propagation::Parent,
    }
}

struct HeaderInjector<'a>(&'a mut BTreeMap<String, String>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

struct HeaderExtractor<'a>(&'a BTreeMap<String, String>);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Writes the current span's trace context into `headers` (nothing when
/// there is no current span or telemetry is off).
pub fn inject_current(headers: &mut BTreeMap<String, String>) {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

/// The trace context a message carries (an empty context if none).
pub fn extract(headers: &BTreeMap<String, String>) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}

/// The current span's trace id (32 hex digits), if tracing is on and there
/// is a span: what the api stores with a finalizing order.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let context = span.span_context();
    context.is_valid().then(|| context.trace_id().to_string())
}

/// The span a job runs in: `{stage} process`, a root span whose parent (or
/// link) is the publisher's context carried in `headers`.
pub(crate) fn process_span(
    stage: &'static str,
    system: &'static str,
    queue: &str,
    job: &proto::Job,
    attempt: u32,
    headers: &BTreeMap<String, String>,
) -> tracing::Span {
    use tracing::field::Empty;
    let span = tracing::info_span!(
        parent: None,
        "process",
        otel.name = %format_args!("{stage} process"),
        otel.kind = "consumer",
        otel.status_code = Empty,
        messaging.system = system,
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = queue,
        kiln.stage = stage,
        kiln.job = job.name(),
        kiln.attempt = i64::from(attempt),
        kiln.order.id = Empty,
        kiln.challenge.id = Empty,
    );
    match job {
        proto::Job::ValidateChallenge { challenge_id } => {
            span.record("kiln.challenge.id", challenge_id.as_str());
        }
        other => {
            span.record("kiln.order.id", other.subject_id());
        }
    }
    let publisher = extract(headers);
    let publisher_span = publisher.span().span_context().clone();
    if publisher_span.is_valid() {
        match propagation() {
            Propagation::Parent => {
                // Only fails when no OpenTelemetry layer is installed.
                let _ = span.set_parent(publisher);
            }
            Propagation::Link => span.add_link(publisher_span),
        }
    }
    span
}
