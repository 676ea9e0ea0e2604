//! Trace context through the in-process queue and the stage runner, with
//! OpenTelemetry's in-memory exporter: a job published inside a span runs in
//! a `{stage} process` span that is its child (or, in link mode, the root of
//! a new trace linked to it), and the jobs a stage emits carry its context.

use async_trait::async_trait;
use opentelemetry::trace::{SpanKind, TraceContextExt, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use proto::Job;
use queue::{Handler, MemoryQueue, Message, Propagation, Queue, RunnerConfig, StageError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// caa-checker → signer (precert) → nothing.
struct Stage {
    name: &'static str,
    next: Option<fn(String) -> Job>,
}

#[async_trait]
impl Handler for Stage {
    fn stage(&self) -> &'static str {
        self.name
    }
    async fn handle(&self, job: &Job, _attempt: u32) -> Result<Vec<Job>, StageError> {
        tracing::info!("handled");
        Ok(self
            .next
            .map(|next| vec![next(job.subject_id().to_string())])
            .unwrap_or_default())
    }
    async fn give_up(&self, _job: &Job, _reason: &str) {}
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {:?}", names(spans)))
}

fn names(spans: &[SpanData]) -> Vec<String> {
    spans.iter().map(|s| s.name.to_string()).collect()
}

/// Publishes a CheckCaa inside an "api" span and runs two stages until the
/// signer has handled the job; returns the finished spans.
async fn run_pipeline(mode: Propagation) -> (Vec<SpanData>, Message) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    // Current-thread runtime: spawned tasks run on this thread, under this
    // default subscriber.
    let _default = tracing::subscriber::set_default(subscriber);
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    queue::trace::set_propagation(mode);

    let queue = MemoryQueue::new();
    let shared: Arc<dyn Queue> = Arc::new(queue.clone());
    let io = queue::StageIo {
        queue: shared.clone(),
        dead_letters: Arc::new(queue::MemoryDeadLetters::default()),
    };
    let shutdown = CancellationToken::new();
    let config = RunnerConfig {
        concurrency: 1,
        ..RunnerConfig::default()
    };
    let caa = tokio::spawn(queue::run_stage(
        io.clone(),
        proto::queues::CAA_CHECKER,
        Arc::new(Stage {
            name: "caa-checker",
            next: Some(|order_id| Job::SignPrecert { order_id }),
        }),
        config.clone(),
        shutdown.clone(),
    ));
    let signer = tokio::spawn(queue::run_stage(
        io.clone(),
        proto::queues::SIGNER,
        Arc::new(Stage {
            name: "signer",
            next: Some(|order_id| Job::SubmitCt { order_id }),
        }),
        config,
        shutdown.clone(),
    ));

    let published = {
        let api = tracing::info_span!("POST /acme/finalize/{id}");
        let _entered = api.enter();
        let message = Message::new(Job::CheckCaa {
            order_id: "ord_1".into(),
        });
        assert!(
            message.headers.contains_key("traceparent"),
            "a message created in a span carries its context: {:?}",
            message.headers
        );
        assert_eq!(
            message.headers["traceparent"].split('-').nth(1),
            queue::trace::current_trace_id().as_deref()
        );
        message
    };
    shared.publish(published.clone()).await.unwrap();

    // The signer's follow-up lands on the ct-submitter queue (not consumed).
    let mut consumer = queue.consume(proto::queues::CT_SUBMITTER, 1).await.unwrap();
    let handed_on = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("the pipeline hands the order on")
        .unwrap()
        .unwrap()
        .message
        .unwrap();
    shutdown.cancel();
    caa.await.unwrap().unwrap();
    signer.await.unwrap().unwrap();
    provider.force_flush().unwrap();
    queue::trace::set_propagation(Propagation::Parent);
    (exporter.get_finished_spans().unwrap(), handed_on)
}

#[tokio::test]
async fn stage_spans_are_children_of_the_publisher_or_linked_to_it() {
    // Parent mode: one trace, api → caa-checker → signer.
    let (spans, handed_on) = run_pipeline(Propagation::Parent).await;
    let api = named(&spans, "POST /acme/finalize/{id}");
    let caa = named(&spans, "caa-checker process");
    let signer = named(&spans, "signer process");
    let trace_id = api.span_context.trace_id();
    assert_eq!(caa.span_context.trace_id(), trace_id);
    assert_eq!(signer.span_context.trace_id(), trace_id);
    assert_eq!(caa.parent_span_id, api.span_context.span_id());
    assert!(caa.parent_span_is_remote);
    assert_eq!(signer.parent_span_id, caa.span_context.span_id());
    assert_eq!(caa.span_kind, SpanKind::Consumer);
    for (key, value) in [
        ("messaging.system", "in-process"),
        ("messaging.operation.type", "process"),
        ("messaging.destination.name", proto::queues::CAA_CHECKER),
        ("kiln.order.id", "ord_1"),
        ("kiln.stage", "caa-checker"),
        ("kiln.job", "check-caa"),
    ] {
        assert_eq!(
            attribute(caa, key).map(|v| v.as_str().to_string()),
            Some(value.to_string()),
            "{key} of {caa:?}"
        );
    }
    assert_eq!(attribute(caa, "kiln.attempt"), Some(&Value::I64(1)));
    // The signer's job carries the signer span's context, not the input's.
    let traceparent = &handed_on.headers["traceparent"];
    assert!(
        traceparent.contains(&format!("{}-{}", trace_id, signer.span_context.span_id())),
        "{traceparent}"
    );
    // The handler's log event is recorded on its stage's span.
    assert!(caa.events.iter().any(|e| e.name == "handled"));

    // Link mode: each stage span starts a trace of its own, linked to the
    // publisher's span.
    let (spans, _) = run_pipeline(Propagation::Link).await;
    let api = named(&spans, "POST /acme/finalize/{id}");
    let caa = named(&spans, "caa-checker process");
    let signer = named(&spans, "signer process");
    assert_ne!(caa.span_context.trace_id(), api.span_context.trace_id());
    assert_eq!(caa.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    let same = |a: &opentelemetry::trace::SpanContext, b: &opentelemetry::trace::SpanContext| {
        a.trace_id() == b.trace_id() && a.span_id() == b.span_id()
    };
    let link = caa.links.iter().next().expect("a link to the publisher");
    assert!(same(&link.span_context, &api.span_context));
    let link = signer.links.iter().next().expect("a link to caa-checker");
    assert!(same(&link.span_context, &caa.span_context));
    assert_ne!(signer.span_context.trace_id(), caa.span_context.trace_id());
}

#[tokio::test]
async fn without_a_span_no_context_is_injected() {
    let message = Message::new(Job::CheckCaa {
        order_id: "o".into(),
    });
    assert!(message.headers.is_empty());
    assert_eq!(queue::trace::current_trace_id(), None);
    let cx = queue::trace::extract(&message.headers);
    assert!(!cx.span().span_context().is_valid());
    // A span without an OpenTelemetry layer has no context either.
    let span = tracing::info_span!("x");
    assert!(!span.context().span().span_context().is_valid());
}
