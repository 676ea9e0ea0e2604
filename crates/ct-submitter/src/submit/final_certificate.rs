//! Logging a final certificate with every log that takes it, all at once, best effort: the
//! order is already `valid` whatever the logs answer.

use ct::Sct;
use futures::stream::{FuturesUnordered, StreamExt};

use super::http::{Entry, chain_body, submit_to_log};
use super::{CtLog, LogError, SubmitError, SubmitPolicy, validity};

/// The outcome of logging a final certificate with one log.
#[derive(Debug)]
pub struct FinalSubmission {
    pub log_name: String,
    pub operator: String,
    pub result: Result<Sct, LogError>,
}

/// Logs a final certificate with every log in `logs` that takes its notAfter, all at once,
/// best effort: results come back in `logs` order (logs whose notAfter interval excludes the
/// certificate are left out), and logs still pending at `policy.deadline` report
/// [`LogError::DeadlinePassed`].
pub async fn submit_final(
    client: &reqwest::Client,
    logs: &[CtLog],
    cert_der: &[u8],
    issuer_der: &[u8],
    policy: &SubmitPolicy,
) -> Result<Vec<FinalSubmission>, SubmitError> {
    if ct::is_precertificate(cert_der)? {
        return Err(SubmitError::PrecertificateGiven);
    }
    let (_, not_after) = validity(cert_der)?;
    let logs: Vec<&CtLog> = logs
        .iter()
        .filter(|log| log.accepts_not_after(not_after))
        .collect();
    let entry = Entry::X509 { cert: cert_der };
    let body = chain_body(cert_der, issuer_der);
    let mut results: Vec<Option<Result<Sct, LogError>>> = logs.iter().map(|_| None).collect();
    let mut in_flight: FuturesUnordered<_> = logs
        .iter()
        .enumerate()
        .map(|(index, &log)| {
            let (entry, body) = (&entry, &body);
            async move {
                let result =
                    submit_to_log(client, log, entry, body, policy.per_request_timeout).await;
                (index, result)
            }
        })
        .collect();
    let deadline = tokio::time::sleep(policy.deadline);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = in_flight.next() => match next {
                Some((index, result)) => {
                    if let Err(error) = &result {
                        tracing::info!(log = %logs[index].name, %error, "final certificate not logged");
                    }
                    results[index] = Some(result);
                }
                None => break,
            },
            () = &mut deadline => break,
        }
    }
    Ok(logs
        .iter()
        .zip(results)
        .map(|(log, result)| FinalSubmission {
            log_name: log.name.clone(),
            operator: log.operator.clone(),
            result: result.unwrap_or(Err(LogError::DeadlinePassed)),
        })
        .collect())
}
