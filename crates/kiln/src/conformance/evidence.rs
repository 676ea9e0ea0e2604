//! What the client did in a scenario, measured from Kiln's records (its
//! request log, the order's timeline, the compat observations) and from
//! the client's exit: the facts each verdict rests on.

use super::client::ClientRun;
use super::server::Records;
use crate::knobs::SeenRequest;
use serde::Serialize;

/// The facts of one run. Times are milliseconds; `None`: not applicable
/// (no finalize, no fault, …).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Evidence {
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub took_ms: u64,
    /// Requests the client made to the ACME api.
    pub requests: usize,
    pub orders: usize,
    /// The status of the order the client finalized (else its last).
    pub order_status: Option<String>,
    /// That order's problem, if it ended `invalid`.
    pub order_error: Option<String>,
    /// The client's output names that problem (its detail).
    pub reported_problem: Option<bool>,
    /// finalize requests, the faulted ones included.
    pub finalize_requests: usize,
    /// Order polls (POST-as-GET to the order) after the accepted finalize.
    pub polls: usize,
    /// Of those, the ones answered `processing`.
    pub polls_while_processing: usize,
    /// Polls after the order became `invalid` (it never changes again).
    pub polls_after_invalid: usize,
    /// Between a `processing` answer (finalize or poll) and the next poll.
    pub shortest_gap_ms: Option<i64>,
    /// Between a finalize answered `processing` and the first poll.
    pub first_poll_gap_ms: Option<i64>,
    pub mean_gap_ms: Option<i64>,
    /// Polls per second while the order was `processing` (over a second
    /// or more).
    pub poll_rate_per_sec: Option<f64>,
    /// How long the order was `processing` (finalize to valid/invalid).
    pub processing_ms: Option<i64>,
    pub certificate_downloaded: bool,
    /// Certificate requests before the order was valid.
    pub early_certificate_requests: usize,
    /// Requests answered with an injected fault.
    pub faults_injected: usize,
    /// The faulted request was sent again afterwards.
    pub retried_after_fault: Option<bool>,
    /// From the first fault to the next request to that endpoint.
    pub retry_wait_ms: Option<i64>,
    /// Requests per second from the first fault to the client's exit.
    pub request_rate_after_fault: Option<f64>,
    /// From the accepted finalize to the client's exit.
    pub waited_after_finalize_ms: Option<i64>,
    /// How long Kiln was down, in `restart`.
    pub downtime_ms: Option<i64>,
    /// Requests the client made after Kiln came back, in `restart`.
    pub requests_after_restart: Option<usize>,
    /// An order was `processing` when Kiln went down, in `restart` (else
    /// the restart tested nothing).
    pub processing_at_restart: Option<bool>,
    /// The certificate profile the order named.
    pub profile: Option<String>,
    /// Certificate downloads (the alternate chains' included).
    pub certificate_requests: usize,
    /// The client's last error line, when it did not get its certificate.
    pub last_error_line: Option<String>,
    /// Requests missing from Kiln's request log, which keeps the latest
    /// [`crate::knobs::MAX_SEEN_REQUESTS`]: a log that dropped any is not
    /// judged from.
    pub requests_dropped: u64,
    /// The challenge types the authorizations offered, and those the
    /// client answered.
    pub challenges_offered: Vec<String>,
    pub challenges_answered: Vec<String>,
    /// `ari-renewal`, the second run: its exit, the renewalInfo requests it
    /// made, whether it downloaded a new certificate, the `replaces` its
    /// order named, and, unless it renewed, its last error line (else its
    /// last line).
    pub renewal_exit_code: Option<i32>,
    pub renewal_info_requests: Option<usize>,
    pub renewed: Option<bool>,
    pub renewal_replaces: Option<String>,
    pub renewal_said: Option<String>,
    /// Why the scenario could not be run to the end (Kiln did not start,
    /// the client could not be started, …): then nothing else is measured.
    pub error: Option<String>,
}

/// The distinct challenge types of `challenges`, in order.
fn kinds<'a>(challenges: impl Iterator<Item = &'a store::Challenge>) -> Vec<String> {
    let mut kinds: Vec<String> = challenges.map(|c| c.kind.as_str().to_string()).collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// The second run of `ari-renewal`, which started after `first_ended_ms`
/// (`second`: `None` when there was none) added to `e`.
pub fn with_renewal(
    mut e: Evidence,
    records: &Records,
    first_ended_ms: i64,
    second: Option<&ClientRun>,
) -> Evidence {
    let Some(second) = second else {
        return e;
    };
    let later = |at: i64| at > first_ended_ms;
    let renewals: Vec<&store::Order> = records
        .orders
        .iter()
        .filter(|o| later(o.created_at))
        .collect();
    let downloaded = renewals.iter().any(|o| {
        o.status.as_str() == "valid"
            && o.timeline.completed_at.is_some_and(|c| {
                of(&records.requests, "cert").any(|r| r.fault.is_none() && r.at_ms >= c)
            })
    });
    e.renewal_exit_code = second.exit_code;
    e.renewal_info_requests = Some(
        of(&records.requests, "renewal-info")
            .filter(|r| later(r.at_ms))
            .count(),
    );
    e.renewed = Some(downloaded);
    e.renewal_replaces = renewals.iter().find_map(|o| o.replaces.clone());
    // Why it did not renew, in its words.
    e.renewal_said = (!downloaded || second.exit_code != Some(0))
        .then(|| second.last_error_line())
        .flatten();
    e
}

fn of<'a>(requests: &'a [SeenRequest], endpoint: &'a str) -> impl Iterator<Item = &'a SeenRequest> {
    requests.iter().filter(move |r| r.endpoint == endpoint)
}

/// The facts of `run` from `records`.
pub fn measure(records: &Records, run: &ClientRun) -> Evidence {
    let requests = &records.requests;
    let finalized: Vec<&store::Order> = records
        .orders
        .iter()
        .filter(|o| o.processing_since.is_some())
        .collect();
    let order = finalized.last().copied().or(records.orders.last());
    let completed = order.and_then(|o| o.timeline.completed_at);
    // The finalize Kiln accepted: the last one not answered with a fault.
    let accepted = of(requests, "finalize")
        .filter(|r| r.fault.is_none())
        .map(|r| r.at_ms)
        .last();
    let polls: Vec<i64> = match accepted {
        Some(at) => of(requests, "order")
            .filter(|r| r.at_ms >= at)
            .map(|r| r.at_ms)
            .collect(),
        None => Vec::new(),
    };
    let answered_processing = |t: i64| completed.is_none_or(|c| t < c);
    // Kiln observes each finalize it answered `processing` (compat): only
    // then did the finalize answer carry a Retry-After to wait.
    let finalize_said_processing =
        order.is_some_and(|o| records.observations.iter().any(|ob| ob.order_id == o.id));
    let mut gaps = Vec::new();
    let mut previous = accepted.filter(|_| finalize_said_processing);
    let first_poll_gap = previous.zip(polls.first()).map(|(f, p)| p - f);
    for &poll in &polls {
        if let Some(p) = previous.filter(|p| answered_processing(*p)) {
            gaps.push(poll - p);
        }
        previous = Some(poll);
    }
    let polls_while_processing = polls.iter().filter(|t| answered_processing(**t)).count();
    let invalid_since = completed.filter(|_| order.is_some_and(|o| o.status.as_str() == "invalid"));
    let polls_after_invalid =
        invalid_since.map_or(0, |at| polls.iter().filter(|t| **t >= at).count());
    let processing_window = match (accepted, completed) {
        (Some(a), Some(c)) => Some(c - a),
        (Some(a), None) => Some(run.ended_ms - a),
        _ => None,
    };
    let certificates: Vec<&SeenRequest> =
        of(requests, "cert").filter(|r| r.fault.is_none()).collect();
    let faults: Vec<&SeenRequest> = requests.iter().filter(|r| r.fault.is_some()).collect();
    let first_fault = faults.first();
    let retry = first_fault.and_then(|f| {
        of(requests, &f.endpoint)
            .find(|r| r.at_ms >= f.at_ms && !std::ptr::eq(*r, *f))
            .map(|r| r.at_ms - f.at_ms)
    });
    let after_fault = first_fault.map(|f| {
        let later = requests.iter().filter(|r| r.at_ms > f.at_ms).count();
        let secs = ((run.ended_ms - f.at_ms).max(1) as f64) / 1000.0;
        round2(later as f64 / secs)
    });
    let restart = records.downtime;
    let downloaded = completed.is_some_and(|c| certificates.iter().any(|r| r.at_ms >= c))
        && order.is_some_and(|o| o.status.as_str() == "valid");
    Evidence {
        exit_code: run.exit_code,
        timed_out: run.timed_out,
        took_ms: run.took.as_millis() as u64,
        requests: requests.len(),
        orders: records.orders.len(),
        order_status: order.map(|o| o.status.as_str().to_string()),
        order_error: order.and_then(|o| o.error.as_ref()).map(|p| p.to_string()),
        reported_problem: order.and_then(|o| o.error.as_ref()).map(|p| {
            let detail = p.detail.to_ascii_lowercase();
            run.output.to_ascii_lowercase().contains(&detail)
        }),
        finalize_requests: of(requests, "finalize").count(),
        polls: polls.len(),
        polls_while_processing,
        polls_after_invalid,
        shortest_gap_ms: gaps.iter().min().copied(),
        first_poll_gap_ms: first_poll_gap,
        mean_gap_ms: (!gaps.is_empty()).then(|| gaps.iter().sum::<i64>() / gaps.len() as i64),
        poll_rate_per_sec: processing_window
            .filter(|w| *w >= 1000 && polls_while_processing > 0)
            .map(|w| round2(polls_while_processing as f64 * 1000.0 / w as f64)),
        processing_ms: order.and_then(|o| Some(o.timeline.completed_at? - o.processing_since?)),
        certificate_downloaded: completed
            .is_some_and(|c| certificates.iter().any(|r| r.at_ms >= c))
            && order.is_some_and(|o| o.status.as_str() == "valid"),
        early_certificate_requests: certificates
            .iter()
            .filter(|r| completed.is_none_or(|c| r.at_ms < c))
            .count(),
        faults_injected: faults.len(),
        retried_after_fault: first_fault.map(|_| retry.is_some()),
        retry_wait_ms: retry,
        request_rate_after_fault: after_fault,
        waited_after_finalize_ms: accepted.map(|a| run.ended_ms - a),
        downtime_ms: restart.map(|(down, up)| up - down),
        requests_after_restart: restart
            .map(|(_, up)| requests.iter().filter(|r| r.at_ms >= up).count()),
        processing_at_restart: restart.map(|(down, _)| {
            records.orders.iter().any(|o| {
                o.processing_since.is_some_and(|p| p <= down)
                    && o.timeline.completed_at.is_none_or(|c| c > down)
            })
        }),
        profile: order.map(|o| o.profile.name().to_string()),
        certificate_requests: certificates.len(),
        last_error_line: (run.exit_code != Some(0) || !downloaded)
            .then(|| run.last_error_line())
            .flatten(),
        requests_dropped: records.requests_dropped,
        challenges_offered: kinds(records.challenges.iter()),
        challenges_answered: kinds(
            records
                .challenges
                .iter()
                .filter(|c| c.status != domain::ChallengeStatus::Pending),
        ),
        ..Evidence::default()
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    pub fn seen(at_ms: i64, endpoint: &str, fault: Option<&str>) -> SeenRequest {
        SeenRequest {
            at_ms,
            endpoint: endpoint.into(),
            fault: fault.map(String::from),
        }
    }

    fn run_ending(ended_ms: i64, exit_code: i32) -> ClientRun {
        ClientRun {
            exit_code: Some(exit_code),
            timed_out: false,
            ended_ms,
            took: Duration::from_millis(ended_ms as u64),
            output: String::new(),
            masks: Vec::new(),
        }
    }

    #[test]
    fn gaps_count_only_after_processing_answers() {
        let records = Records {
            requests: vec![
                seen(0, "new-order", None),
                seen(100, "finalize", Some("503")),
                seen(1_100, "finalize", None),
                seen(3_100, "order", None),
                seen(6_100, "order", None),
                // Valid from 7 000: this poll's answer was `valid`.
                seen(9_100, "order", None),
                seen(9_200, "cert", None),
            ],
            ..Records::default()
        };
        let mut order = test_order();
        order.processing_since = Some(1_100);
        order.timeline.completed_at = Some(7_000);
        let records = Records {
            orders: vec![order],
            observations: vec![observed("o")],
            ..records
        };
        let e = measure(&records, &run_ending(9_500, 0));
        assert_eq!((e.polls, e.polls_while_processing), (3, 2));
        assert_eq!(e.shortest_gap_ms, Some(2_000));
        assert_eq!(e.first_poll_gap_ms, Some(2_000));
        assert_eq!(e.mean_gap_ms, Some((2_000 + 3_000 + 3_000) / 3));
        assert!(e.certificate_downloaded);
        assert_eq!(e.early_certificate_requests, 0);
        assert_eq!((e.faults_injected, e.retried_after_fault), (1, Some(true)));
        assert_eq!(e.retry_wait_ms, Some(1_000));
        assert_eq!(e.finalize_requests, 2);
        assert_eq!(e.processing_ms, Some(5_900));
        assert_eq!(e.waited_after_finalize_ms, Some(8_400));

        // A finalize answered `valid` (not observed) has no gap to wait.
        let sync = Records {
            observations: Vec::new(),
            ..records
        };
        let e = measure(&sync, &run_ending(9_500, 0));
        assert_eq!(e.shortest_gap_ms, Some(3_000));
    }

    #[test]
    fn a_certificate_fetched_before_valid_is_early_and_no_download() {
        let mut order = test_order();
        order.status = domain::OrderStatus::Processing;
        order.processing_since = Some(1_000);
        let records = Records {
            requests: vec![seen(1_000, "finalize", None), seen(1_010, "cert", None)],
            orders: vec![order],
            observations: vec![observed("o")],
            ..Records::default()
        };
        let e = measure(&records, &run_ending(1_100, 1));
        assert_eq!(e.early_certificate_requests, 1);
        assert!(!e.certificate_downloaded);
        assert_eq!(
            (e.polls, e.shortest_gap_ms, e.poll_rate_per_sec),
            (0, None, None)
        );
        assert_eq!(e.retried_after_fault, None);
    }

    #[test]
    fn a_restart_is_checked_against_the_order_it_came_upon() {
        let mut order = test_order();
        order.processing_since = Some(1_000);
        order.timeline.completed_at = Some(9_000);
        let at_restart = |down: i64| {
            let records = Records {
                requests: vec![seen(1_000, "finalize", None), seen(8_000, "order", None)],
                orders: vec![order.clone()],
                downtime: Some((down, down + 2_000)),
                ..Records::default()
            };
            let e = measure(&records, &run_ending(9_500, 0));
            (
                e.processing_at_restart,
                e.downtime_ms,
                e.requests_after_restart,
            )
        };
        assert_eq!(at_restart(1_500), (Some(true), Some(2_000), Some(1)));
        assert_eq!(at_restart(500).0, Some(false), "before the finalize");
        assert_eq!(at_restart(9_000).0, Some(false), "already valid");
        let unrestarted = Records {
            orders: vec![order],
            ..Records::default()
        };
        let e = measure(&unrestarted, &run_ending(9_500, 0));
        assert_eq!(e.processing_at_restart, None);
    }

    #[test]
    fn the_second_run_of_a_renewal_is_measured_apart() {
        let challenge = |kind: &str, status: &str| store::Challenge {
            id: kind.into(),
            authz_id: "z".into(),
            kind: kind.parse().unwrap(),
            token: String::new(),
            status: status.parse().unwrap(),
            validated_at: None,
            error: None,
        };
        let mut first = test_order();
        first.processing_since = Some(1_000);
        first.timeline.completed_at = Some(1_100);
        first.certificate_serial = Some("01".into());
        let mut renewal = test_order();
        renewal.id = "r".into();
        renewal.created_at = 6_000;
        renewal.processing_since = Some(6_500);
        renewal.timeline.completed_at = Some(6_600);
        renewal.replaces = Some("aki.serial".into());
        let records = Records {
            requests: vec![
                seen(900, "new-order", None),
                seen(1_000, "finalize", None),
                seen(1_200, "cert", None),
                seen(5_000, "renewal-info", None),
                seen(6_000, "new-order", None),
                seen(6_500, "finalize", None),
                seen(6_700, "cert", None),
            ],
            orders: vec![first, renewal],
            challenges: vec![
                challenge("http-01", "valid"),
                challenge("dns-persist-01", "pending"),
                challenge("dns-01", "pending"),
            ],
            ..Records::default()
        };
        let first_run = run_ending(2_000, 0);
        let e = measure(&records.until(first_run.ended_ms), &first_run);
        assert_eq!((e.orders, e.finalize_requests, e.requests), (1, 1, 3));
        assert!(e.certificate_downloaded);
        assert_eq!(e.challenges_answered, ["http-01"]);
        assert_eq!(
            e.challenges_offered,
            ["dns-01", "dns-persist-01", "http-01"]
        );
        let mut second = run_ending(7_000, 0);
        second.output = "renewing\n".into();
        let e = with_renewal(e, &records, first_run.ended_ms, Some(&second));
        assert_eq!(e.renewal_info_requests, Some(1));
        assert_eq!(e.renewed, Some(true));
        assert_eq!(e.renewal_replaces.as_deref(), Some("aki.serial"));
        assert_eq!((e.renewal_exit_code, e.renewal_said), (Some(0), None));
        // A client that never renews: what it said is kept.
        let no_renewal = Records {
            requests: records.requests[..3].to_vec(),
            orders: records.orders[..1].to_vec(),
            ..records.clone()
        };
        second.output = "Certificate not yet due for renewal\n".into();
        let e = measure(&no_renewal, &first_run);
        let e = with_renewal(e, &no_renewal, first_run.ended_ms, Some(&second));
        assert_eq!((e.renewal_info_requests, e.renewed), (Some(0), Some(false)));
        assert_eq!(
            e.renewal_said.as_deref(),
            Some("Certificate not yet due for renewal")
        );
        let e = with_renewal(Evidence::default(), &records, 2_000, None);
        assert_eq!((e.renewal_info_requests, e.renewed), (None, None));
    }

    fn observed(order_id: &str) -> store::FinalizeObservation {
        store::FinalizeObservation {
            order_id: order_id.into(),
            account_id: "a".into(),
            user_agent: String::new(),
            client_product: String::new(),
            client_version: String::new(),
            mode: "async".into(),
            finalized_at: 0,
            first_poll_at: None,
            polls: 0,
            downloaded_at: None,
        }
    }

    fn test_order() -> store::Order {
        store::Order {
            id: "o".into(),
            account_id: "a".into(),
            status: domain::OrderStatus::Valid,
            step: None,
            identifiers: Vec::new(),
            not_before: None,
            not_after: None,
            expires_at: 0,
            created_at: 0,
            csr: None,
            processing_since: None,
            step_deadline: None,
            finalize_deadline: None,
            error: None,
            certificate_serial: None,
            timeline: Default::default(),
            replaces: None,
            profile: Default::default(),
        }
    }
}
