//! Observability end to end (issue 6): traces, metrics and logs of a real
//! finalization.
//!
//! 1. `distributed_one_finalize_is_one_trace_with_metrics_and_joined_logs`:
//!    Kiln distributed (`kiln_tests::cluster`: one replica of each worker, a
//!    fresh PostgreSQL database and queue prefix, free ports) with
//!    `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a small OTLP/HTTP receiver in
//!    this test. One certificate is ordered with instant-acme; then:
//!    - every `kiln_` series an operator relies on is on the admin ports'
//!      `/metrics` with plausible values;
//!    - after `cluster.sh down`, the receiver holds one trace for the order
//!      whose root is the api's finalize span and whose stage spans come from
//!      `caa-checker`, `signer` (twice) and `ct-submitter`, each the child of
//!      the span that published its job (so spans are flushed on shutdown:
//!      the batch delay is set far beyond the test's length);
//!    - the database has the trace id with the order (`kiln order show`
//!      prints it), and a stage's JSON log line carries it.
//! 2. `embedded_kiln_exports_the_same_trace`: the all-in-one `kiln` binary
//!    with the same environment variables produces the same trace shape
//!    through the in-process queue.
//!
//! Needs RabbitMQ (`AMQP_URL`, default 127.0.0.1:5672, and `rabbitmqctl`)
//! and PostgreSQL on 127.0.0.1:5432 (trust), like `distributed.rs`.

use axum::body::Bytes;
use axum::extract::State;
use instant_acme::{
    AuthorizationStatus, ChallengeStatus, ChallengeType, Identifier, NewOrder, OrderStatus,
};
use kiln_tests::cluster::{Cluster, binary, ensure_binaries_built};
use kiln_tests::instant::new_account;
use kiln_tests::metrics::{Scrape, scrape};
use kiln_tests::{Http01Responder, csr_der, free_port};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Store;

/// Nothing is exported on a timer during the test: what the receiver gets,
/// it gets from the flush at shutdown (or a full batch).
const BATCH_DELAY_MS: &str = "600000";

/// The tests here start many processes each: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- the OTLP/HTTP receiver -----------------------------------------------------

/// One received span, flattened.
#[derive(Clone, Debug)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_span_id: String,
    /// OTLP `SpanKind`: 2 server, 3 client, 5 consumer.
    kind: i32,
    attributes: BTreeMap<String, String>,
    links: Vec<(String, String)>,
}

/// Accepts `POST /v1/traces` (protobuf) and keeps every span.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    requests: Arc<AtomicUsize>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn any_value(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

async fn export(State(receiver): State<Receiver>, body: Bytes) -> Vec<u8> {
    receiver.requests.fetch_add(1, Ordering::SeqCst);
    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf decodes");
    let mut spans = receiver.spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .map(|kv| any_value(kv.value.as_ref()))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: span.kind,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), any_value(kv.value.as_ref())))
                        .collect(),
                    links: span
                        .links
                        .iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                });
            }
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

impl Receiver {
    /// Listens on a free loopback port; returns the OTLP base URL.
    async fn start(&self) -> String {
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }

    /// The spans of `trace_id`, once `complete` says they are all there
    /// (or after `within`, whatever arrived).
    async fn wait_for_trace(
        &self,
        trace_id: &str,
        within: Duration,
        complete: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let until = Instant::now() + within;
        loop {
            let spans = self.trace(trace_id);
            if complete(&spans) || Instant::now() > until {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn describe(spans: &[ReceivedSpan]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "  {} / {:?} span {} parent {:?}",
                s.service, s.name, s.span_id, s.parent_span_id
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the order's trace must be: rooted at the api's finalize span, one
/// `process` span per pipeline job from the right service, each the child
/// of a span of the same trace.
fn check_trace(spans: &[ReceivedSpan], order_id: &str, services: [&str; 4], system: &str) {
    let all = describe(spans);
    let [api, caa, signer, ct] = services;
    let root = spans
        .iter()
        .find(|s| s.name == "POST /acme/finalize/{id}")
        .unwrap_or_else(|| panic!("no api finalize span in the trace:\n{all}"));
    assert_eq!(root.service, api, "{all}");
    assert!(
        root.parent_span_id.is_empty(),
        "the finalize span is the root"
    );
    assert_eq!(root.kind, 2, "a server span");
    assert_eq!(root.attributes["http.request.method"], "POST");
    assert_eq!(root.attributes["http.route"], "/acme/finalize/{id}");
    assert_eq!(
        root.attributes["url.path"],
        format!("/acme/finalize/{order_id}")
    );
    assert_eq!(root.attributes["http.response.status_code"], "200");
    assert_eq!(root.attributes["kiln.order.id"], order_id);
    let roots: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 1, "one root:\n{all}");

    let ids: HashMap<&str, &ReceivedSpan> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let process = |name: &str| -> Vec<&ReceivedSpan> {
        spans
            .iter()
            .filter(|s| s.name == format!("{name} process"))
            .collect()
    };
    let caa_spans = process("caa-checker");
    let signer_spans = process("signer");
    let ct_spans = process("ct-submitter");
    assert_eq!(caa_spans.len(), 1, "one CAA check:\n{all}");
    assert_eq!(signer_spans.len(), 2, "the signer twice:\n{all}");
    assert!(!ct_spans.is_empty(), "CT submission:\n{all}");
    let parent_of = |s: &ReceivedSpan| -> &ReceivedSpan {
        ids.get(s.parent_span_id.as_str())
            .copied()
            .unwrap_or_else(|| {
                panic!(
                    "the parent of {} ({}) is not in the trace:\n{all}",
                    s.name, s.span_id
                )
            })
    };
    // caa-checker's span is the child of the finalize request's.
    assert_eq!(caa_spans[0].service, caa);
    assert_eq!(parent_of(caa_spans[0]).span_id, root.span_id);
    for (span, service) in signer_spans
        .iter()
        .map(|s| (s, signer))
        .chain(ct_spans.iter().map(|s| (s, ct)))
        .chain([(&caa_spans[0], caa)])
    {
        assert_eq!(span.service, service, "{all}");
        assert_eq!(span.kind, 5, "a consumer span");
        assert_eq!(span.attributes["messaging.system"], system);
        assert_eq!(span.attributes["messaging.operation.type"], "process");
        assert_eq!(span.attributes["kiln.order.id"], order_id);
        assert_eq!(span.attributes["kiln.attempt"], "1");
        assert!(
            span.attributes["messaging.destination.name"].starts_with("kiln."),
            "{:?}",
            span.attributes
        );
        assert!(span.links.is_empty(), "parent mode, no links");
    }
    // The chain of stages: each published by the one before it.
    let job = |s: &ReceivedSpan| s.attributes["kiln.job"].clone();
    let precert = signer_spans
        .iter()
        .find(|s| job(s) == "sign-precert")
        .expect("sign-precert span");
    let final_ = signer_spans
        .iter()
        .find(|s| job(s) == "sign-final")
        .expect("sign-final span");
    let submit_ct = ct_spans
        .iter()
        .find(|s| job(s) == "submit-ct")
        .expect("submit-ct span");
    assert_eq!(parent_of(precert).span_id, caa_spans[0].span_id, "{all}");
    assert_eq!(parent_of(submit_ct).span_id, precert.span_id, "{all}");
    assert_eq!(parent_of(final_).span_id, submit_ct.span_id, "{all}");
    // Below submit-ct: one client span per CT log asked.
    let ct_requests: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "POST ct/v1/add-pre-chain")
        .collect();
    assert!(ct_requests.len() >= 2, "{all}");
    for request in ct_requests {
        assert_eq!(request.kind, 3, "a client span");
        assert_eq!(parent_of(request).span_id, submit_ct.span_id);
    }
}

fn trace_complete(spans: &[ReceivedSpan]) -> bool {
    let count = |name: &str| spans.iter().filter(|s| s.name == name).count();
    count("POST /acme/finalize/{id}") == 1
        && count("caa-checker process") == 1
        && count("signer process") == 2
        && count("ct-submitter process") >= 2
}

// ---- metrics -------------------------------------------------------------------

/// The `/metrics` of `addr` once they count the order's finalization as
/// `valid` (or after 30 s, whatever they say): the sweeper, which reads
/// finished orders, runs every 5 s.
async fn scrape_once_finalized(addr: &str) -> Scrape {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = scrape(addr).await;
        let done: f64 = metrics
            .values(
                "kiln_finalize_duration_seconds_count",
                &[("outcome", "valid")],
            )
            .iter()
            .sum();
        if done >= 1.0 || Instant::now() > until {
            return metrics;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---- logs ----------------------------------------------------------------------

/// JSON log lines of `file` that mention `order_id`.
fn log_lines_of(file: &Path, order_id: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(order_id))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

// ---- ACME ----------------------------------------------------------------------

/// One certificate for `name`, the way a careful client gets it; returns
/// the order id.
async fn order_one_certificate(
    directory_url: &str,
    root: &Path,
    http01: &Http01Responder,
) -> String {
    let account = new_account(root, directory_url, &["mailto:o11y@kiln.test"]).await;
    let name = "traced.kiln-o11y.test";
    let mut order = account
        .new_order(&NewOrder::new(&[Identifier::Dns(name.into())]))
        .await
        .expect("order created");
    let order_id = order.url().rsplit('/').next().unwrap().to_string();
    let csr = csr_der(&[name]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "order not valid in time");
        match order.state().status {
            OrderStatus::Pending => {
                let mut authzs = order.authorizations();
                while let Some(authz) = authzs.next().await {
                    let mut authz = authz.expect("authorization");
                    if authz.status != AuthorizationStatus::Pending {
                        continue;
                    }
                    let mut challenge = authz.challenge(ChallengeType::Http01).expect("http-01");
                    http01.set(&challenge.token, challenge.key_authorization().as_str());
                    if challenge.status == ChallengeStatus::Pending {
                        challenge.set_ready().await.expect("challenge ready");
                    }
                }
            }
            OrderStatus::Ready => order.finalize_csr(&csr).await.expect("finalize"),
            OrderStatus::Processing => {}
            OrderStatus::Valid => {
                let pem = order.certificate().await.expect("download");
                assert!(pem.is_some_and(|p| p.contains("BEGIN CERTIFICATE")));
                return order_id;
            }
            OrderStatus::Invalid => panic!("order invalid: {:?}", order.state().error),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        order.refresh().await.expect("poll order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_one_finalize_is_one_trace_with_metrics_and_joined_logs() {
    let _one = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let mut cluster = Cluster::start(
        "observability",
        1,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", BATCH_DELAY_MS),
            // Every finalize rechecks CAA, so the recheck metrics move.
            ("KILN_CAA_RECHECK_AFTER_SECS", "0"),
        ],
    )
    .await;

    let order_id = order_one_certificate(
        &cluster.directory_url,
        &cluster.root_pem_path,
        &cluster.http01,
    )
    .await;

    // The trace id is stored with the order, and `kiln order show` says it.
    let order = cluster
        .store
        .order(&order_id)
        .await
        .expect("read the order")
        .expect("the order exists");
    let trace_id = order
        .timeline
        .trace_id
        .clone()
        .expect("the finalize request stored its trace id");
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    let shown = Command::new(binary("kiln"))
        .args([
            "order",
            "show",
            &order_id,
            "--database-url",
            &cluster.db_url,
        ])
        .output()
        .expect("kiln order show");
    let shown_text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{shown:?}");
    assert!(
        shown_text.contains(&format!("trace id:    {trace_id}")),
        "{shown_text}"
    );

    // ---- metrics, while everything runs ----
    let ports = cluster.admin_ports();
    let addr = |name: &str| {
        ports
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no admin port for {name}: {ports:?}"))
            .1
            .clone()
    };
    let api = scrape_once_finalized(&addr("api")).await;
    let who = "api";
    assert_eq!(
        api.sum(
            who,
            "kiln_finalize_duration_seconds_count",
            &[("outcome", "valid")]
        ),
        1.0
    );
    let latency = api.sum(
        who,
        "kiln_finalize_duration_seconds_sum",
        &[("outcome", "valid")],
    );
    assert!(
        latency > 0.0 && latency < 120.0,
        "finalize→valid {latency} s"
    );
    assert_eq!(api.sum(who, "kiln_orders_processing", &[]), 0.0);
    assert_eq!(
        api.sum(who, "kiln_orders_stuck", &[("deadline", "step")]),
        0.0
    );
    assert_eq!(
        api.sum(who, "kiln_orders_stuck", &[("deadline", "finalize")]),
        0.0
    );
    for queue in [
        "kiln.validator",
        "kiln.caa-checker",
        "kiln.signer",
        "kiln.ct-submitter",
    ] {
        assert_eq!(api.sum(who, "kiln_queue_depth", &[("queue", queue)]), 0.0);
        assert_eq!(
            api.sum(who, "kiln_queue_consumers", &[("queue", queue)]),
            1.0,
            "one replica consumes {queue}"
        );
    }
    assert_eq!(
        api.sum(who, "kiln_queue_depth", &[("queue", "kiln.dead")]),
        0.0
    );

    for (stage, jobs) in [
        ("validator", &["validate-challenge"][..]),
        ("caa-checker", &["check-caa"][..]),
        ("signer", &["sign-precert", "sign-final"][..]),
        ("ct-submitter", &["submit-ct", "submit-final"][..]),
    ] {
        let who = format!("{stage}-1");
        let metrics = scrape(&addr(&who)).await;
        for job in jobs {
            let labels = [("stage", stage), ("job", *job)];
            assert!(
                metrics.sum(
                    &who,
                    "kiln_jobs_total",
                    &[labels[0], labels[1], ("outcome", "ok")]
                ) >= 1.0,
                "{who}: {job} handled"
            );
            assert!(metrics.sum(&who, "kiln_job_duration_seconds_count", &labels) >= 1.0);
            let seconds = metrics.sum(&who, "kiln_job_duration_seconds_sum", &labels);
            assert!((0.0..60.0).contains(&seconds), "{who} {job}: {seconds} s");
        }
        assert_eq!(
            metrics.sum(&who, "kiln_job_retries_total", &[("stage", stage)]),
            0.0
        );
        for reason in ["undecodable", "attempts_exhausted", "permanent"] {
            assert_eq!(
                metrics.sum(
                    &who,
                    "kiln_dead_letters_total",
                    &[("stage", stage), ("reason", reason)]
                ),
                0.0
            );
        }
        match stage {
            "caa-checker" => {
                assert_eq!(
                    metrics.sum(&who, "kiln_caa_rechecks_total", &[("result", "allowed")]),
                    1.0
                );
                for failed in ["forbidden", "dns_error"] {
                    assert_eq!(
                        metrics.sum(&who, "kiln_caa_rechecks_total", &[("result", failed)]),
                        0.0
                    );
                }
                assert!(metrics.sum(&who, "kiln_caa_recheck_names_total", &[]) >= 1.0);
            }
            "signer" => {
                for certificate in ["precert", "final"] {
                    assert_eq!(
                        metrics.sum(
                            &who,
                            "kiln_lint_failures_total",
                            &[("certificate", certificate)]
                        ),
                        0.0
                    );
                }
            }
            "ct-submitter" => {
                let wins = metrics.sum(&who, "kiln_ct_sct_wins_total", &[]);
                assert!(wins >= 2.0, "{who}: {wins} SCTs embedded");
                let asked = metrics.sum(
                    &who,
                    "kiln_ct_submission_duration_seconds_count",
                    &[("entry", "precert")],
                );
                assert!(asked >= wins, "{who}: {asked} submissions for {wins} SCTs");
                // add-chain of the final certificate, to every log.
                assert!(
                    metrics.sum(
                        &who,
                        "kiln_ct_submission_duration_seconds_count",
                        &[("entry", "final")]
                    ) >= 1.0
                );
                for log in ["fake-log-0", "fake-log-1", "fake-log-2"] {
                    let errors = metrics.sum(
                        &who,
                        "kiln_ct_submission_errors_total",
                        &[("log", log), ("entry", "final")],
                    );
                    assert_eq!(errors, 0.0, "{who}: {log} errors");
                }
            }
            _ => {}
        }
    }

    // ---- traces, flushed at shutdown ----
    let before_down = receiver.requests.load(Ordering::SeqCst);
    cluster.down().await;
    let spans = receiver
        .wait_for_trace(&trace_id, Duration::from_secs(10), trace_complete)
        .await;
    assert!(
        receiver.requests.load(Ordering::SeqCst) > before_down,
        "the processes exported at shutdown"
    );
    check_trace(
        &spans,
        &order_id,
        ["api", "caa-checker", "signer", "ct-submitter"],
        "rabbitmq",
    );

    // ---- logs join the trace ----
    let logs = cluster.data().join("logs");
    for (file, message) in [
        ("signer-1.log", "precertificate signed"),
        ("api.log", "order finalizing"),
    ] {
        let lines = log_lines_of(&logs.join(file), &order_id);
        let line = lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in {file}: {lines:?}"));
        assert_eq!(line["trace_id"], trace_id, "{file}: {line}");
        assert_eq!(line["order_id"], order_id.as_str(), "{file}: {line}");
        let span_id = line["span_id"].as_str().expect("span_id");
        assert!(
            spans.iter().any(|s| s.span_id == span_id),
            "{file}: the line's span {span_id} is one of the trace's"
        );
    }
    let line = log_lines_of(&logs.join("signer-1.log"), &order_id)
        .into_iter()
        .find(|l| l["message"] == "precertificate signed")
        .expect("signer line");
    assert_eq!(line["stage"], "signer");
}

// ---- embedded --------------------------------------------------------------------

/// The all-in-one binary as a child process (killed when dropped), its data
/// directory (stderr goes to `kiln.log` there) and addresses.
struct Embedded {
    child: std::process::Child,
    data: tempfile::TempDir,
    directory_url: String,
    admin: String,
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Embedded {
    /// Starts `kiln` with `env` (every other `OTEL_*` variable removed) and
    /// waits for its directory.
    async fn start(env: &[(&str, &str)], http01: &Http01Responder) -> Embedded {
        ensure_binaries_built().await;
        let data = tempfile::tempdir().expect("temp dir");
        let listen = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(data.path().join("kiln.log")).expect("log file");
        let mut command = Command::new(binary("kiln"));
        command
            .args(["--data-dir", &data.path().display().to_string()])
            .args(["--listen", &listen])
            .args([
                "--public-http-listen",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .args(["--http01-port", &http01.port.to_string()])
            .args(["--tlsalpn01-port", &free_port().to_string()])
            .args(["--admin-listen", &admin])
            .stdout(std::process::Stdio::null())
            .stderr(log);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")) {
            command.env_remove(key);
        }
        command.envs(env.iter().copied());
        let mut kiln = Embedded {
            child: command.spawn().expect("start kiln"),
            data,
            directory_url: format!("https://{listen}/directory"),
            admin,
        };
        let root = kiln.root();
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let up = std::fs::read(&root).ok().and_then(|pem| {
                reqwest::Certificate::from_pem(&pem).ok().and_then(|ca| {
                    reqwest::Client::builder()
                        .add_root_certificate(ca)
                        .build()
                        .ok()
                })
            });
            if let Some(client) = up
                && client.get(&kiln.directory_url).send().await.is_ok()
            {
                return kiln;
            }
            assert!(Instant::now() < until, "kiln did not come up");
            assert!(kiln.child.try_wait().unwrap().is_none(), "kiln exited");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn root(&self) -> PathBuf {
        self.data.path().join("root.pem")
    }

    /// SIGTERM, and wait for the exit (spans are flushed on the way out).
    async fn stop(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let until = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < until, "kiln did not stop on SIGTERM");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The trace id stored with `order_id`.
    async fn trace_id(&self, order_id: &str) -> Option<String> {
        let store = Store::connect(&format!(
            "sqlite://{}",
            self.data.path().join("kiln.db").display()
        ))
        .await
        .expect("open the embedded database");
        let order = store.order(order_id).await.unwrap().expect("order");
        store.close().await;
        order.timeline.trace_id
    }

    fn log_lines(&self, order_id: &str) -> Vec<serde_json::Value> {
        log_lines_of(&self.data.path().join("kiln.log"), order_id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_kiln_exports_the_same_trace() {
    let _one = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let http01 = Http01Responder::start().await;
    let mut kiln = Embedded::start(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", BATCH_DELAY_MS),
        ],
        &http01,
    )
    .await;
    let admin = kiln.admin.clone();
    let order_id = order_one_certificate(&kiln.directory_url, &kiln.root(), &http01).await;

    // The same series on the one admin port, the queue gauges from the
    // in-process queue.
    let metrics = scrape_once_finalized(&admin).await;
    let who = "kiln";
    assert_eq!(
        metrics.sum(
            who,
            "kiln_finalize_duration_seconds_count",
            &[("outcome", "valid")]
        ),
        1.0
    );
    assert_eq!(metrics.sum(who, "kiln_orders_processing", &[]), 0.0);
    for queue in [
        "kiln.validator",
        "kiln.caa-checker",
        "kiln.signer",
        "kiln.ct-submitter",
    ] {
        assert_eq!(
            metrics.sum(who, "kiln_queue_depth", &[("queue", queue)]),
            0.0
        );
        assert_eq!(
            metrics.sum(who, "kiln_queue_consumers", &[("queue", queue)]),
            1.0
        );
    }
    for stage in ["validator", "caa-checker", "signer", "ct-submitter"] {
        assert!(
            metrics.sum(
                who,
                "kiln_jobs_total",
                &[("stage", stage), ("outcome", "ok")]
            ) >= 1.0
        );
        assert_eq!(
            metrics.sum(who, "kiln_job_retries_total", &[("stage", stage)]),
            0.0
        );
    }
    assert!(metrics.sum(who, "kiln_ct_sct_wins_total", &[]) >= 2.0);

    // SIGTERM: kiln shuts down and flushes its spans.
    kiln.stop().await;
    let trace_id = kiln.trace_id(&order_id).await.expect("trace id stored");
    let spans = receiver
        .wait_for_trace(&trace_id, Duration::from_secs(10), trace_complete)
        .await;
    check_trace(&spans, &order_id, ["kiln"; 4], "in-process");

    // Its log (JSON: stderr is a file) joins the trace as well.
    let lines = kiln.log_lines(&order_id);
    let line = lines
        .iter()
        .find(|l| l["message"] == "precertificate signed")
        .unwrap_or_else(|| panic!("no signer line: {lines:?}"));
    assert_eq!(line["trace_id"], trace_id);
    assert_eq!(line["stage"], "signer");
}

/// Without an OTLP endpoint the embedded Kiln exports nothing, yet orders
/// and log lines still carry their trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_kiln_exports_nothing_unless_configured() {
    let _one = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::default();
    let _unused = receiver.start().await;
    let http01 = Http01Responder::start().await;
    let mut kiln = Embedded::start(&[], &http01).await;
    let order_id = order_one_certificate(&kiln.directory_url, &kiln.root(), &http01).await;
    kiln.stop().await;
    let trace_id = kiln.trace_id(&order_id).await.expect("trace id stored");
    assert_eq!(trace_id.len(), 32);
    let lines = kiln.log_lines(&order_id);
    let line = lines
        .iter()
        .find(|l| l["message"] == "precertificate signed")
        .unwrap_or_else(|| panic!("no signer line: {lines:?}"));
    assert_eq!(line["trace_id"], trace_id);
    let ready = kiln
        .log_lines("telemetry ready")
        .into_iter()
        .next()
        .expect("a telemetry line");
    assert_eq!(ready["exporting"], false);
    assert_eq!(receiver.requests.load(Ordering::SeqCst), 0);
}
