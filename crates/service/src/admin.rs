//! The admin port: `/healthz` (the process answers), `/readyz` (it can do
//! its work: database reachable, broker connected, consumer registered) and
//! `/metrics` (Prometheus text). Separate from the ACME port so it is never
//! exposed to clients.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

type CheckFuture = Pin<Box<dyn Future<Output = bool> + Send>>;
/// A named readiness check.
pub type Check = (&'static str, Arc<dyn Fn() -> CheckFuture + Send + Sync>);

/// Makes a readiness check from an async closure.
pub fn check<F, Fut>(name: &'static str, f: F) -> Check
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    (name, Arc::new(move || Box::pin(f()) as CheckFuture))
}

struct AdminState {
    checks: Vec<Check>,
    metrics: PrometheusHandle,
}

/// The process-wide Prometheus recorder, installed on first use (tests may
/// start several embedded Kilns in one process; they share it).
pub fn install_metrics() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .expect("static buckets")
                // Finalize→valid spans the whole pipeline (CT logs retried
                // up to the finalize deadline).
                .set_buckets_for_metric(
                    Matcher::Full("kiln_finalize_duration_seconds".into()),
                    &[
                        0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                    ],
                )
                .expect("static buckets")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe_metrics();
            handle
        })
        .clone()
}

/// The HELP text of every `kiln_` series (README.md, "Observability",
/// lists them with their labels).
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "kiln_jobs_total",
        "Jobs handled, by stage, job and outcome (ok, retry, gave_up)."
    );
    describe_histogram!(
        "kiln_job_duration_seconds",
        "Time to handle one job, by stage and job."
    );
    describe_counter!(
        "kiln_job_retries_total",
        "Jobs put back for a retry, by stage."
    );
    describe_counter!(
        "kiln_dead_letters_total",
        "Jobs that left the pipeline for good, by stage and reason (undecodable, attempts_exhausted, permanent)."
    );
    describe_histogram!(
        "kiln_finalize_duration_seconds",
        "Finalize request to order valid or invalid, by outcome (from the order's timeline)."
    );
    describe_gauge!("kiln_orders_processing", "Orders being finalized now.");
    describe_gauge!(
        "kiln_orders_stuck",
        "Processing orders past their step or finalize deadline, by deadline."
    );
    describe_counter!(
        "kiln_sweeper_redriven_total",
        "Jobs the sweeper published again for overdue orders and challenges, by kind and step."
    );
    describe_counter!(
        "kiln_orders_expired_total",
        "Orders ended invalid because finalization passed its deadline."
    );
    describe_gauge!(
        "kiln_queue_depth",
        "Messages ready in a queue (not counting those being handled), by queue."
    );
    describe_gauge!(
        "kiln_queue_consumers",
        "Consumers attached to a queue, by queue."
    );
    describe_histogram!(
        "kiln_ct_submission_duration_seconds",
        "One submission to one CT log, by log and entry (precert, final)."
    );
    describe_counter!(
        "kiln_ct_submission_errors_total",
        "Failed CT log submissions, by log, entry and reason."
    );
    describe_counter!(
        "kiln_ct_sct_wins_total",
        "Verified SCTs embedded in certificates, by log."
    );
    describe_counter!(
        "kiln_caa_rechecks_total",
        "Orders whose stale authorizations had CAA rechecked, by result (allowed, forbidden, dns_error)."
    );
    describe_counter!(
        "kiln_caa_recheck_names_total",
        "Names looked up by CAA rechecks."
    );
    describe_counter!(
        "kiln_lint_failures_total",
        "Certificates the pre-signing lint refused, by certificate (precert, final) and check."
    );
}

/// Serves the admin endpoints (plus `extra` routes, e.g. the api's
/// compatibility page) on `listen` until `shutdown`.
pub async fn serve(
    listen: SocketAddr,
    checks: Vec<Check>,
    metrics: PrometheusHandle,
    extra: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    serve_on(listener, checks, metrics, extra, shutdown).await
}

/// `serve` on a listener already bound (port 0 in tests).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    checks: Vec<Check>,
    metrics: PrometheusHandle,
    extra: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = Arc::new(AdminState { checks, metrics });
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
        .merge(extra);
    tracing::info!(listen = %listener.local_addr()?, "admin endpoints listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn readyz(State(state): State<Arc<AdminState>>) -> (StatusCode, String) {
    let mut report = serde_json::Map::new();
    let mut ready = true;
    for (name, check) in &state.checks {
        let ok = check().await;
        ready &= ok;
        report.insert((*name).to_string(), json!(ok));
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, serde_json::Value::Object(report).to_string())
}

async fn metrics_text(State(state): State<Arc<AdminState>>) -> String {
    state.metrics.render()
}
