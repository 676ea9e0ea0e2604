//! The verdict of one run: the scenario's rule applied to the evidence,
//! with the reason in words.

use super::evidence::Evidence;
use super::scenarios::Rule;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Fail,
    Info,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Info => "INFO",
        }
    }
}

/// A client told to wait by a 429 that stops instead may still fetch the
/// directory or a nonce; more than this per second is hammering.
const MAX_REQUESTS_PER_SEC_AFTER_429: f64 = 2.0;

/// The verdict and why.
pub fn judge(rule: Rule, e: &Evidence) -> (Verdict, String) {
    let (verdict, why) = match check(rule, e) {
        Ok(why) if rule.informational() => (Verdict::Info, why),
        Ok(why) => (Verdict::Pass, why),
        Err(why) => (Verdict::Fail, why),
    };
    if e.requests_dropped > 0 && !rule.informational() {
        // Every rule counts requests: from a truncated log a PASS could be
        // as wrong as a FAIL. A required scenario left INFO fails the run.
        return (
            Verdict::Info,
            format!(
                "not judged: Kiln's request log overflowed ({} oldest requests dropped; it \
                 keeps the latest {}), so the rule's \"{why}\" rests on part of the run",
                e.requests_dropped,
                crate::knobs::MAX_SEEN_REQUESTS
            ),
        );
    }
    if rule == Rule::IssuesAcrossRestart && e.processing_at_restart != Some(true) {
        let what = match e.processing_at_restart {
            None => "Kiln was never restarted: the client finished before its finalize was seen",
            Some(_) => "no order was processing when Kiln went down, so the restart tested nothing",
        };
        return match verdict {
            Verdict::Fail => (Verdict::Fail, format!("{why}; {what}")),
            _ => (Verdict::Info, format!("{why}, but {what}")),
        };
    }
    (verdict, why)
}

fn secs(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The client exited 0 with the certificate, or why not.
fn issued(e: &Evidence) -> Result<(), String> {
    if e.timed_out {
        return Err("did not finish within the time limit (killed)".into());
    }
    match (e.exit_code, e.certificate_downloaded) {
        (Some(0), true) => Ok(()),
        (Some(0), false) => Err("exited 0 without downloading a certificate".into()),
        (code, _) => Err(format!(
            "exited {} without a certificate{}",
            code.map_or("by a signal".into(), |c| c.to_string()),
            e.order_error
                .as_ref()
                .map(|p| format!(" (order: {p})"))
                .unwrap_or_default()
        )),
    }
}

fn check(rule: Rule, e: &Evidence) -> Result<String, String> {
    match rule {
        Rule::Issues | Rule::IssuesAcrossRestart => {
            issued(e).map(|()| "downloaded the certificate".into())
        }
        Rule::IssuesDespiteNewChallenge => {
            let answered = match e.challenges_answered.as_slice() {
                [] => "no challenge".to_string(),
                kinds => kinds.join(", "),
            };
            match issued(e) {
                Ok(()) => Ok(format!(
                    "downloaded the certificate, answering {answered} (offered: {})",
                    e.challenges_offered.join(", ")
                )),
                Err(why) => Err(format!(
                    "{why} with dns-persist-01 offered too; answered {answered}"
                )),
            }
        }
        Rule::RenewsOnAri => Ok(renewal(e)),
        Rule::PollsThrough { min_polls } => {
            if e.early_certificate_requests > 0 {
                return Err(format!(
                    "fetched a certificate {} time(s) before the order was valid",
                    e.early_certificate_requests
                ));
            }
            if e.finalize_requests > 1 {
                return Err(format!(
                    "re-POSTed finalize ({} finalizes)",
                    e.finalize_requests
                ));
            }
            if e.polls < min_polls {
                issued(e).map_err(|why| format!("{why}; polled {} time(s)", e.polls))?;
                return Err(format!(
                    "polled the order {} time(s), fewer than the {min_polls} needed",
                    e.polls
                ));
            }
            issued(e)?;
            Ok(format!("polled {} time(s) through processing", e.polls))
        }
        Rule::HonoursRetryAfter {
            secs: wait,
            slack_ms,
        } => {
            issued(e)?;
            let shortest = e
                .shortest_gap_ms
                .ok_or("never polled after a processing answer")?;
            if shortest < wait as i64 * 1000 - slack_ms {
                let which = match e.first_poll_gap_ms {
                    Some(first) if first == shortest => "first polled",
                    _ => "polled",
                };
                return Err(format!(
                    "{which} {} after a Retry-After of {wait} s",
                    secs(shortest)
                ));
            }
            let slack = match slack_ms {
                0..=200 => String::new(),
                ms => format!(", less {} for the date's resolution", secs(ms)),
            };
            Ok(format!(
                "shortest gap {} against Retry-After {wait} s{slack}",
                secs(shortest)
            ))
        }
        Rule::BacksOff { max_per_sec } => {
            issued(e)?;
            let rate = e.poll_rate_per_sec.unwrap_or(0.0);
            if rate > max_per_sec {
                return Err(format!(
                    "polled {rate:.1}/s without Retry-After (more than {max_per_sec}/s)"
                ));
            }
            Ok(format!("polled {rate:.2}/s without Retry-After"))
        }
        Rule::RetriesFault => {
            if e.faults_injected == 0 {
                return Err("the fault was never injected (no such request)".into());
            }
            if e.retried_after_fault != Some(true) {
                issued(e).map_err(|why| format!("did not retry: {why}"))?;
                return Err("did not retry the refused request".into());
            }
            issued(e)?;
            Ok(format!(
                "retried after {}",
                secs(e.retry_wait_ms.unwrap_or_default())
            ))
        }
        Rule::WaitsOrStops { retry_after_secs } => {
            if e.faults_injected == 0 {
                return Err("the 429 was never injected (no newOrder)".into());
            }
            let rate = e.request_rate_after_fault.unwrap_or(0.0);
            if let Some(wait) = e.retry_wait_ms {
                // 100 ms of slack for clocks read at second resolution.
                if wait < retry_after_secs as i64 * 1000 - 100 {
                    return Err(format!(
                        "retried {} after a 429 with Retry-After {retry_after_secs} s",
                        secs(wait)
                    ));
                }
                issued(e)?;
                return Ok(format!("waited {} and retried", secs(wait)));
            }
            if issued(e).is_ok() {
                return Ok("issued without retrying newOrder".into());
            }
            if e.timed_out {
                return Err(format!("hung after the 429 ({rate:.1} requests/s)"));
            }
            if rate > MAX_REQUESTS_PER_SEC_AFTER_429 {
                return Err(format!("hammered after the 429: {rate:.1} requests/s"));
            }
            if e.exit_code == Some(0) {
                return Err("exited 0 without a certificate after the 429".into());
            }
            Ok(format!(
                "stopped cleanly (exit {}) without retrying",
                e.exit_code.unwrap_or(-1)
            ))
        }
        Rule::ReportsFailure { max_polls_after } => {
            if e.timed_out {
                return Err("hung on the invalid order (killed at the time limit)".into());
            }
            if e.exit_code == Some(0) {
                return Err("exited 0 although the order is invalid".into());
            }
            if e.polls_after_invalid > max_polls_after {
                return Err(format!(
                    "kept polling the invalid order ({} polls, exited after {})",
                    e.polls_after_invalid,
                    secs(e.took_ms as i64)
                ));
            }
            if e.reported_problem != Some(true) {
                return Err(format!(
                    "exited {} without naming the problem ({})",
                    e.exit_code.unwrap_or(-1),
                    e.order_error.as_deref().unwrap_or("the order has none")
                ));
            }
            Ok(format!(
                "exited {} naming the problem",
                e.exit_code.unwrap_or(-1)
            ))
        }
        Rule::GivesUp => {
            let Some(waited) = e.waited_after_finalize_ms.map(secs) else {
                return Err(match issued(e) {
                    Err(why) => format!("never finalized: {why}"),
                    Ok(()) => "never finalized".into(),
                });
            };
            if e.timed_out {
                return Err(format!(
                    "still waiting at the time limit ({waited}); killed"
                ));
            }
            if e.exit_code == Some(0) {
                return Err(format!("exited 0 after {waited} without a valid order"));
            }
            // Quitting on the first `processing` is the brownout failure,
            // not giving up on a stalled order.
            if e.polls == 0 {
                return Err(format!(
                    "gave up after {waited} without polling the processing order"
                ));
            }
            Ok(format!(
                "gave up after {waited} (exit {})",
                e.exit_code.unwrap_or(-1)
            ))
        }
        Rule::Info => Ok(match issued(e) {
            Ok(()) => format!(
                "issued; profile {}, {} certificate download(s)",
                e.profile.as_deref().unwrap_or("none"),
                e.certificate_requests
            ),
            Err(why) => why,
        }),
    }
}

/// What the client did in `ari-renewal`'s second run.
fn renewal(e: &Evidence) -> String {
    if let Err(why) = issued(e) {
        return format!("the first run did not issue ({why}): no renewal to look at");
    }
    let (Some(asked), Some(renewed)) = (e.renewal_info_requests, e.renewed) else {
        return "issued; no second run".into();
    };
    let exit = match e.renewal_exit_code {
        Some(code) => format!("exit {code}"),
        None => "killed".into(),
    };
    let said = e
        .renewal_said
        .as_ref()
        .map(|l| format!(", said \"{l}\""))
        .unwrap_or_default();
    let replaces = match &e.renewal_replaces {
        Some(_) => "naming the old certificate in `replaces`",
        None => "without `replaces`",
    };
    match (asked > 0, renewed) {
        (true, true) => {
            format!("asked renewalInfo ({asked}×) and renewed at once, {replaces} ({exit})")
        }
        (true, false) => format!(
            "asked renewalInfo ({asked}×) but did not renew, the window being past ({exit}{said})"
        ),
        (false, true) => {
            format!("never asked renewalInfo; issued again anyway, {replaces} ({exit})")
        }
        (false, false) => format!("never asked renewalInfo and did not renew ({exit}{said})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued_with(f: impl FnOnce(&mut Evidence)) -> Evidence {
        let mut e = Evidence {
            exit_code: Some(0),
            certificate_downloaded: true,
            finalize_requests: 1,
            ..Evidence::default()
        };
        f(&mut e);
        e
    }

    #[test]
    fn polling_through_processing() {
        let rule = Rule::PollsThrough { min_polls: 3 };
        assert_eq!(judge(rule, &issued_with(|e| e.polls = 3)).0, Verdict::Pass);
        let (v, why) = judge(rule, &issued_with(|e| e.polls = 1));
        assert_eq!(v, Verdict::Fail);
        assert!(why.contains("fewer"), "{why}");
        // The broken client: finalize, then no poll and no certificate.
        let broken = issued_with(|e| {
            e.exit_code = Some(1);
            e.certificate_downloaded = false;
        });
        let (v, why) = judge(rule, &broken);
        assert_eq!(v, Verdict::Fail);
        assert!(
            why.contains("exited 1") && why.contains("polled 0"),
            "{why}"
        );
        let again = issued_with(|e| {
            e.polls = 4;
            e.finalize_requests = 2;
        });
        assert!(judge(rule, &again).1.contains("re-POSTed"));
        let early = issued_with(|e| {
            e.polls = 4;
            e.early_certificate_requests = 1;
        });
        assert_eq!(judge(rule, &early).0, Verdict::Fail);
    }

    #[test]
    fn retry_after_is_honoured_within_the_slack() {
        let rule = Rule::HonoursRetryAfter {
            secs: 2,
            slack_ms: 100,
        };
        let gap = |ms| issued_with(|e| e.shortest_gap_ms = Some(ms));
        assert_eq!(judge(rule, &gap(1_950)).0, Verdict::Pass);
        assert_eq!(judge(rule, &gap(1_000)).0, Verdict::Fail);
        let mut first = gap(250);
        first.first_poll_gap_ms = Some(250);
        assert!(judge(rule, &first).1.starts_with("first polled 0.2 s"));
        assert_eq!(
            judge(rule, &issued_with(|_| {})).0,
            Verdict::Fail,
            "no poll"
        );
    }

    #[test]
    fn rate_limits_are_waited_out_or_stopped_at() {
        let rule = Rule::WaitsOrStops {
            retry_after_secs: 2,
        };
        let faulted = |f: fn(&mut Evidence)| {
            issued_with(|e| {
                e.faults_injected = 1;
                f(e)
            })
        };
        assert_eq!(
            judge(rule, &faulted(|e| e.retry_wait_ms = Some(2_100))).0,
            Verdict::Pass
        );
        assert_eq!(
            judge(rule, &faulted(|e| e.retry_wait_ms = Some(50))).0,
            Verdict::Fail
        );
        let stopped = faulted(|e| {
            e.exit_code = Some(1);
            e.certificate_downloaded = false;
        });
        assert_eq!(judge(rule, &stopped).0, Verdict::Pass);
        let hammering = faulted(|e| {
            e.exit_code = Some(1);
            e.certificate_downloaded = false;
            e.request_rate_after_fault = Some(40.0);
        });
        assert!(judge(rule, &hammering).1.starts_with("hammered"));
        let claims_success = faulted(|e| e.certificate_downloaded = false);
        assert_eq!(judge(rule, &claims_success).0, Verdict::Fail, "exit 0");
        let hung = faulted(|e| {
            e.exit_code = None;
            e.timed_out = true;
        });
        assert_eq!(judge(rule, &hung).0, Verdict::Fail);
    }

    #[test]
    fn failures_must_be_reported_and_stalls_given_up_on() {
        let rule = Rule::ReportsFailure { max_polls_after: 3 };
        let failed = |reported: bool| {
            issued_with(|e| {
                e.exit_code = Some(1);
                e.certificate_downloaded = false;
                e.order_error = Some("caa: CAA forbids".into());
                e.reported_problem = Some(reported);
            })
        };
        assert_eq!(judge(rule, &failed(true)).0, Verdict::Pass);
        assert_eq!(judge(rule, &failed(false)).0, Verdict::Fail);
        assert_eq!(judge(rule, &issued_with(|_| {})).0, Verdict::Fail, "exit 0");
        let mut lingering = failed(true);
        lingering.polls_after_invalid = 60;
        let (v, why) = judge(rule, &lingering);
        assert_eq!(v, Verdict::Fail);
        assert!(why.contains("kept polling"), "{why}");
        let hung = issued_with(|e| {
            e.exit_code = None;
            e.timed_out = true;
        });
        assert_eq!(judge(Rule::GivesUp, &hung).0, Verdict::Fail);
        let mut gave_up = failed(false);
        gave_up.waited_after_finalize_ms = Some(20_000);
        let mut at_once = gave_up.clone();
        at_once.waited_after_finalize_ms = Some(50);
        let (v, why) = judge(Rule::GivesUp, &at_once);
        assert_eq!(v, Verdict::Fail, "quit on the first processing");
        assert!(why.contains("without polling"), "{why}");
        gave_up.polls = 9;
        let (v, why) = judge(Rule::GivesUp, &gave_up);
        assert_eq!(
            (v, why.as_str()),
            (Verdict::Pass, "gave up after 20.0 s (exit 1)")
        );
        let (v, why) = judge(Rule::GivesUp, &failed(false));
        assert_eq!(v, Verdict::Fail, "it failed before the stall");
        assert!(why.starts_with("never finalized"), "{why}");
        assert_eq!(judge(Rule::Info, &hung).0, Verdict::Info);
    }

    #[test]
    fn a_truncated_request_log_is_not_judged_from() {
        let truncated = issued_with(|e| {
            e.polls = 4;
            e.requests_dropped = 12;
        });
        let (v, why) = judge(Rule::PollsThrough { min_polls: 3 }, &truncated);
        assert_eq!(v, Verdict::Info, "{why}");
        assert!(
            why.starts_with("not judged") && why.contains("12 oldest"),
            "{why}"
        );
        let mut failing = truncated.clone();
        failing.polls = 0;
        assert_eq!(
            judge(Rule::PollsThrough { min_polls: 3 }, &failing).0,
            Verdict::Info
        );
        assert_eq!(judge(Rule::Info, &truncated).0, Verdict::Info);
    }

    #[test]
    fn a_restart_counts_only_while_the_order_is_processing() {
        let restarted = |processing: Option<bool>| {
            issued_with(|e| {
                e.downtime_ms = processing.map(|_| 2_000);
                e.processing_at_restart = processing;
            })
        };
        let rule = Rule::IssuesAcrossRestart;
        assert_eq!(judge(rule, &restarted(Some(true))).0, Verdict::Pass);
        let (v, why) = judge(rule, &restarted(Some(false)));
        assert_eq!(v, Verdict::Info);
        assert!(why.contains("no order was processing"), "{why}");
        let (v, why) = judge(rule, &restarted(None));
        assert_eq!(v, Verdict::Info);
        assert!(why.contains("never restarted"), "{why}");
        let mut failed = restarted(Some(false));
        failed.exit_code = Some(1);
        failed.certificate_downloaded = false;
        let (v, why) = judge(rule, &failed);
        assert_eq!(v, Verdict::Fail);
        assert!(
            why.contains("exited 1") && why.contains("tested nothing"),
            "{why}"
        );
        let mut failed = restarted(Some(true));
        failed.exit_code = Some(1);
        assert_eq!(judge(rule, &failed).0, Verdict::Fail);
    }

    #[test]
    fn a_new_challenge_type_must_not_stop_issuance() {
        let rule = Rule::IssuesDespiteNewChallenge;
        let offered = |e: &mut Evidence| {
            e.challenges_offered = ["dns-01", "dns-persist-01", "http-01"]
                .map(String::from)
                .into();
            e.challenges_answered = vec!["http-01".into()];
        };
        let (v, why) = judge(rule, &issued_with(offered));
        assert_eq!(v, Verdict::Pass);
        assert!(why.contains("answering http-01"), "{why}");
        let broke = issued_with(|e| {
            offered(e);
            e.challenges_answered.clear();
            e.exit_code = Some(2);
            e.certificate_downloaded = false;
        });
        let (v, why) = judge(rule, &broke);
        assert_eq!(v, Verdict::Fail);
        assert!(
            why.contains("dns-persist-01 offered") && why.contains("no challenge"),
            "{why}"
        );
    }

    #[test]
    fn the_renewal_is_reported_as_the_client_did_it() {
        let second = |asked: usize, renewed: bool, replaces: bool| {
            issued_with(|e| {
                e.renewal_exit_code = Some(0);
                e.renewal_info_requests = Some(asked);
                e.renewed = Some(renewed);
                e.renewal_replaces = replaces.then(|| "aki.serial".to_string());
                e.renewal_said = Some("Certificate not yet due for renewal".into());
            })
        };
        let rule = Rule::RenewsOnAri;
        let why = |e: &Evidence| {
            let (v, why) = judge(rule, e);
            assert_eq!(v, Verdict::Info, "{why}");
            why
        };
        assert!(why(&second(1, true, true)).contains("renewed at once, naming"));
        assert!(why(&second(2, true, false)).contains("without `replaces`"));
        assert!(why(&second(1, false, false)).contains("did not renew"));
        let never = why(&second(0, false, false));
        assert!(never.starts_with("never asked renewalInfo"), "{never}");
        assert!(never.contains("not yet due"), "{never}");
        assert!(why(&second(0, true, false)).contains("issued again anyway"));
        let failed = issued_with(|e| e.exit_code = Some(1));
        assert!(why(&failed).starts_with("the first run did not issue"));
    }
}
