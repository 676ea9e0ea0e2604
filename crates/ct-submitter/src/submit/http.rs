//! One submission to one log over HTTP (`add-pre-chain` or `add-chain`), its answer verified
//! against the log's key, in a client span with per-log metrics.

use std::time::Duration;

use ct::{AddChainRequest, AddChainResponse, CtError, Sct};
use reqwest::header::CONTENT_TYPE;
use tokio::time::Instant;

use super::{CtLog, LogError};

/// What a log is asked to log, and so what its SCT must sign.
pub(super) enum Entry<'a> {
    Precert {
        tbs: Vec<u8>,
        issuer_key_hash: [u8; 32],
    },
    X509 {
        cert: &'a [u8],
    },
}

impl Entry<'_> {
    fn path(&self) -> &'static str {
        match self {
            Entry::Precert { .. } => "ct/v1/add-pre-chain",
            Entry::X509 { .. } => "ct/v1/add-chain",
        }
    }

    fn signed_data(&self, sct: &Sct) -> Result<Vec<u8>, CtError> {
        match self {
            Entry::Precert {
                tbs,
                issuer_key_hash,
            } => ct::precert_signed_data(sct.timestamp, issuer_key_hash, tbs, &sct.extensions),
            Entry::X509 { cert } => ct::x509_signed_data(sct.timestamp, cert, &sct.extensions),
        }
    }
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

/// `submit_to_log` in a client span, recording per log (a configured name,
/// so few series) `kiln_ct_submission_duration_seconds{log, entry}` and
/// `kiln_ct_submission_errors_total{log, entry, reason}` (every reason's
/// series at zero from the log's first submission on).
pub(super) async fn submit_to_log(
    client: &reqwest::Client,
    log: &CtLog,
    entry: &Entry<'_>,
    body: &[u8],
    timeout: Duration,
) -> Result<Sct, LogError> {
    use tracing::Instrument;
    let kind = match entry {
        Entry::Precert { .. } => "precert",
        Entry::X509 { .. } => "final",
    };
    let span = tracing::info_span!(
        "ct submit",
        otel.name = %format_args!("POST {}", entry.path()),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = "POST",
        url.full = %format_args!("{}/{}", log.url.trim_end_matches('/'), entry.path()),
        kiln.ct.log = %log.name,
        kiln.ct.entry = kind,
    );
    let started = Instant::now();
    let result = submit_to_log_unmetered(client, log, entry, body, timeout)
        .instrument(span.clone())
        .await;
    let name = log.name.clone();
    metrics::histogram!("kiln_ct_submission_duration_seconds", "log" => name.clone(), "entry" => kind)
        .record(started.elapsed().as_secs_f64());
    let failed = result.as_ref().err().map(|error| match error {
        LogError::Timeout | LogError::DeadlinePassed => "timeout",
        LogError::Transport(_) => "transport",
        LogError::Status { .. } => "status",
        LogError::BadResponse(_) => "bad_response",
        LogError::BadSct(_) => "bad_sct",
    });
    if failed.is_some() {
        span.record("otel.status_code", "error");
    }
    for reason in ["timeout", "transport", "status", "bad_response", "bad_sct"] {
        metrics::counter!(
            "kiln_ct_submission_errors_total",
            "log" => name.clone(),
            "entry" => kind,
            "reason" => reason
        )
        .increment(u64::from(failed == Some(reason)));
    }
    result
}

/// One submission to one log; a precertificate's SCT verified against that
/// log's key.
async fn submit_to_log_unmetered(
    client: &reqwest::Client,
    log: &CtLog,
    entry: &Entry<'_>,
    body: &[u8],
    timeout: Duration,
) -> Result<Sct, LogError> {
    let url = format!("{}/{}", log.url.trim_end_matches('/'), entry.path());
    let resp = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .timeout(timeout)
        .send()
        .await
        .map_err(LogError::from_reqwest)?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(LogError::from_reqwest)?;
    if !status.is_success() {
        return Err(LogError::Status {
            status: status.as_u16(),
            body: snippet(&bytes),
        });
    }
    let parsed: AddChainResponse =
        serde_json::from_slice(&bytes).map_err(|e| LogError::BadResponse(e.to_string()))?;
    let sct = Sct::try_from(&parsed).map_err(|e| LogError::BadResponse(e.to_string()))?;
    // Only a precertificate's SCTs are embedded, where relying parties check
    // them, so only those are verified; a final certificate's SCT is the
    // log's receipt, kept nowhere, and checking it cost an ECDSA
    // verification per log per order for nothing.
    if matches!(entry, Entry::Precert { .. }) {
        let data = entry.signed_data(&sct).map_err(LogError::BadSct)?;
        ct::verify_sct(&sct, &log.public_key_der, &data).map_err(LogError::BadSct)?;
    }
    Ok(sct)
}

/// The JSON body of `add-chain` / `add-pre-chain`: the certificate, then its issuer.
pub(super) fn chain_body(cert_der: &[u8], issuer_der: &[u8]) -> Vec<u8> {
    let request = AddChainRequest::from_der_chain(&[cert_der, issuer_der]);
    // Serializing a struct of strings cannot fail.
    serde_json::to_vec(&request).unwrap_or_default()
}
