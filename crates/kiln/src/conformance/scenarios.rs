//! The scenarios: what Kiln does to the client in each (knobs, finalize
//! mode, deadlines, a restart), where the behaviour comes from, and the
//! rule the client's run is judged by (`judge`).

use crate::knobs::{FinalizeDelay, InjectedFailure, Knobs, RetryAfterFormat};
use domain::ChallengeType;
use std::time::Duration;

/// What a scenario asks of the client; `judge` applies it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Exit 0 having downloaded the certificate.
    Issues,
    /// Issues, and Kiln's restart came while the order was `processing`
    /// (else the restart tested nothing: INFO, or FAIL if it did not issue).
    IssuesAcrossRestart,
    /// Issues through a challenge it knows although the authorization
    /// also offers one it may not (dns-persist-01, which has no token).
    IssuesDespiteNewChallenge,
    /// Issues, polling the order at least `min_polls` times after finalize,
    /// finalizing once and fetching no certificate before the order is valid.
    PollsThrough { min_polls: usize },
    /// Issues, never polling sooner than `Retry-After` (less `slack_ms`,
    /// an HTTP-date has one-second resolution) after a `processing` answer.
    HonoursRetryAfter { secs: u64, slack_ms: i64 },
    /// Issues, polling no faster than `max_per_sec` on average.
    BacksOff { max_per_sec: f64 },
    /// Issues after retrying the request answered with the injected fault.
    RetriesFault,
    /// After the injected 429, no retry before its `Retry-After`; then
    /// either issues, or stops cleanly (non-zero exit within the limit).
    WaitsOrStops { retry_after_secs: u64 },
    /// Exits non-zero within the limit, its output naming the order's
    /// problem, having polled the `invalid` order at most
    /// `max_polls_after` times more.
    ReportsFailure { max_polls_after: usize },
    /// Exits non-zero within the limit: it gave up (on its own deadline or
    /// on the order turning `invalid`) instead of hanging or claiming success.
    GivesUp,
    /// Reported, not judged: whether the client's second run, after Kiln
    /// moved the certificate's ARI window to the past, asked renewalInfo,
    /// renewed, and named the certificate in `replaces`.
    RenewsOnAri,
    /// Reported, not judged.
    Info,
}

impl Rule {
    /// Reported only: the scenario is not required.
    pub fn informational(self) -> bool {
        matches!(self, Rule::Info | Rule::RenewsOnAri)
    }
}

/// What Kiln does differently in a scenario.
#[derive(Clone, Debug)]
pub struct Setup {
    pub knobs: Knobs,
    /// Finalize waits for the pipeline (`sync`) instead of answering
    /// `processing` at once.
    pub sync_finalize: bool,
    /// The server's deadline for a finalized order (`--finalize-timeout`).
    pub finalize_timeout: Duration,
    /// How soon the sweeper looks at a step that made no progress (and
    /// so finds an order past its deadline).
    pub step_timeout: Duration,
    /// Restart Kiln once the order is `processing`, with these knobs after.
    pub restart_with: Option<Knobs>,
    pub alternate_chain: bool,
    /// The challenge types offered, if not Kiln's default.
    pub challenge_types: Option<Vec<ChallengeType>>,
    /// Run the client a second time (same placeholders, same workdir)
    /// after moving the first certificate's ARI window to the past.
    pub renewal_run: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            knobs: Knobs::default(),
            sync_finalize: false,
            finalize_timeout: Duration::from_secs(600),
            step_timeout: Duration::from_secs(30),
            restart_with: None,
            alternate_chain: false,
            challenge_types: None,
            renewal_run: false,
        }
    }
}

/// One behaviour a real CA can show, and how a client must cope.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    /// Counts towards the exit status; INFO scenarios only report.
    pub required: bool,
    /// What Kiln does, in one line.
    pub does: &'static str,
    /// The RFC section or the incident it comes from.
    pub source: &'static str,
    pub rule: Rule,
    pub setup: Setup,
}

/// The finalize delay of the Retry-After scenarios: long enough for
/// several polls at the announced interval.
const SLOW: Duration = Duration::from_secs(6);

/// How long Kiln's server-side deadline is in `stall`.
pub const STALL_DEADLINE: Duration = Duration::from_secs(20);

/// The 429's `Retry-After` (the knobs' `429` fault: 2 s).
const RATE_LIMIT_RETRY_AFTER: u64 = 2;

fn knobs(f: impl FnOnce(&mut Knobs)) -> Knobs {
    let mut k = Knobs::default();
    f(&mut k);
    k
}

fn fault(spec: &str) -> Knobs {
    knobs(|k| k.http_faults = vec![spec.parse().expect("a valid fault")])
}

/// Every scenario, in the order they run.
pub fn all() -> Vec<Scenario> {
    let required = |name, does, source, rule, setup| Scenario {
        name,
        required: true,
        does,
        source,
        rule,
        setup,
    };
    let delayed = |format, secs| Setup {
        knobs: knobs(|k| {
            k.finalize_delay = FinalizeDelay::Fixed(SLOW);
            k.retry_after = format;
            k.retry_after_seconds = secs;
        }),
        ..Setup::default()
    };
    vec![
        required(
            "baseline",
            "finalize waits for issuance and answers `valid` (Pebble-like fast path)",
            "RFC 8555 §7.4",
            Rule::Issues,
            Setup {
                sync_finalize: true,
                ..Setup::default()
            },
        ),
        required(
            "processing-polls",
            "the order stays `processing` until the client has polled it 3 times",
            "RFC 8555 §7.1.6, §7.4; Let's Encrypt's async-finalization brownout (April 2023)",
            Rule::PollsThrough { min_polls: 3 },
            Setup {
                knobs: knobs(|k| k.finalize_delay = FinalizeDelay::Polls(3)),
                ..Setup::default()
            },
        ),
        required(
            "retry-after-seconds",
            "issuance takes 6 s; `Retry-After: 2` (delay-seconds)",
            "RFC 8555 §7.4 (poll after Retry-After); RFC 9110 §10.2.3",
            Rule::HonoursRetryAfter {
                secs: 2,
                slack_ms: 100,
            },
            delayed(RetryAfterFormat::Seconds, Some(2)),
        ),
        required(
            "retry-after-http-date",
            "issuance takes 6 s; `Retry-After` is an HTTP-date 3 s ahead",
            "RFC 9110 §10.2.3 (Retry-After = HTTP-date / delay-seconds)",
            Rule::HonoursRetryAfter {
                secs: 3,
                slack_ms: 1100,
            },
            delayed(RetryAfterFormat::HttpDate, Some(3)),
        ),
        required(
            "retry-after-too-short",
            "issuance takes 6 s but `Retry-After` says 1 s",
            "RFC 8555 §7.4; clients that polled exactly once in Let's Encrypt's brownout",
            Rule::PollsThrough { min_polls: 2 },
            delayed(RetryAfterFormat::Seconds, Some(1)),
        ),
        required(
            "retry-after-absent",
            "issuance takes 6 s and no `Retry-After` is sent",
            "RFC 8555 §7.4 (Retry-After \"if any\"), §8.2",
            Rule::BacksOff { max_per_sec: 2.5 },
            delayed(RetryAfterFormat::Absent, None),
        ),
        required(
            "bad-nonce",
            "the first newAccount JWS is refused with `badNonce`",
            "RFC 8555 §6.5 (a client SHOULD retry with the fresh nonce)",
            Rule::RetriesFault,
            Setup {
                knobs: fault("new-account:bad-nonce:next=1"),
                ..Setup::default()
            },
        ),
        required(
            "rate-limited",
            "the first newOrder is answered 429 `rateLimited`, `Retry-After: 2`",
            "RFC 8555 §6.6; RFC 6585 §4",
            Rule::WaitsOrStops {
                retry_after_secs: RATE_LIMIT_RETRY_AFTER,
            },
            Setup {
                knobs: fault("new-order:429:next=1"),
                ..Setup::default()
            },
        ),
        required(
            "unavailable",
            "the first finalize is answered 503 with `Retry-After: 1`",
            "RFC 9110 §15.6.4; CA maintenance windows and overload",
            Rule::RetriesFault,
            Setup {
                knobs: fault("finalize:503:next=1"),
                ..Setup::default()
            },
        ),
        required(
            "order-invalid",
            "the pipeline fails after `processing` (CAA recheck forbids issuance)",
            "RFC 8555 §7.1.6 (processing → invalid), §7.1.3 (order error); RFC 8659",
            Rule::ReportsFailure { max_polls_after: 3 },
            Setup {
                knobs: knobs(|k| k.fail = Some(InjectedFailure::Caa)),
                ..Setup::default()
            },
        ),
        required(
            "stall",
            "the order stays `processing` until Kiln's 20 s deadline, then `invalid`",
            "RFC 8555 §7.1.6; stuck orders during CT log outages",
            Rule::GivesUp,
            Setup {
                knobs: knobs(|k| k.fail = Some(InjectedFailure::Stall)),
                finalize_timeout: STALL_DEADLINE,
                step_timeout: Duration::from_secs(4),
                ..Setup::default()
            },
        ),
        required(
            "restart",
            "Kiln restarts (2 s down) while the order is `processing`",
            "RFC 8555 §7.4; CA deploys and failovers mid-issuance",
            Rule::IssuesAcrossRestart,
            Setup {
                knobs: knobs(|k| k.finalize_delay = FinalizeDelay::Fixed(Duration::from_secs(4))),
                restart_with: Some(Knobs::default()),
                ..Setup::default()
            },
        ),
        required(
            "dns-persist-01",
            "each authorization also offers dns-persist-01, a challenge without a token",
            "RFC 8555 §7.1.4, §8 (the client picks a challenge it can fulfil); \
             draft-ietf-acme-dns-persist; Kiln offering it by default made uacme 1.7 fail \
             every order",
            Rule::IssuesDespiteNewChallenge,
            Setup {
                challenge_types: Some(
                    api::DEFAULT_CHALLENGE_TYPES
                        .into_iter()
                        .chain([ChallengeType::DnsPersist01])
                        .collect(),
                ),
                ..Setup::default()
            },
        ),
        Scenario {
            name: "alternate-chain",
            required: false,
            does: "every certificate has an alternate chain (Link rel=\"alternate\")",
            source: "RFC 8555 §7.4.2",
            rule: Rule::Info,
            setup: Setup {
                alternate_chain: true,
                ..Setup::default()
            },
        },
        Scenario {
            name: "profile",
            required: false,
            does: "the directory offers certificate profiles; which did the order name?",
            source: "draft-ietf-acme-profiles",
            rule: Rule::Info,
            setup: Setup::default(),
        },
        Scenario {
            name: "ari-renewal",
            required: false,
            does: "after the first run, the certificate's ARI window moves to the past \
                   (`kiln ari renew-now`); the client runs again",
            source: "RFC 9773 §4.2 (renew once the window has passed), §5 (`replaces`); \
                     mass revocations such as Let's Encrypt's CAA-recheck bug (March 2020)",
            rule: Rule::RenewsOnAri,
            setup: Setup {
                renewal_run: true,
                ..Setup::default()
            },
        },
    ]
}

/// The scenarios named (all when none is), or the unknown names.
pub fn select(names: &[String]) -> Result<Vec<Scenario>, String> {
    let all = all();
    if names.is_empty() {
        return Ok(all);
    }
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| !all.iter().any(|s| s.name == n.as_str()))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = all.iter().map(|s| s.name).collect();
        return Err(format!(
            "unknown scenario {}; the scenarios are {}",
            unknown.join(", "),
            known.join(", ")
        ));
    }
    Ok(all
        .into_iter()
        .filter(|s| names.iter().any(|n| n == s.name))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_selection_keeps_the_run_order() {
        let all = all();
        let mut names: Vec<&str> = all.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        let picked = select(&["stall".into(), "baseline".into()]).unwrap();
        let picked: Vec<&str> = picked.iter().map(|s| s.name).collect();
        assert_eq!(picked, ["baseline", "stall"]);
        assert_eq!(select(&[]).unwrap().len(), all.len());
        let err = select(&["baseline".into(), "nope".into()]).unwrap_err();
        assert!(
            err.contains("nope") && err.contains("processing-polls"),
            "{err}"
        );
    }

    #[test]
    fn informational_scenarios_are_not_required() {
        for s in all() {
            assert_eq!(s.required, !s.rule.informational(), "{}", s.name);
        }
        let persist = select(&["dns-persist-01".into()]).unwrap();
        let offered = persist[0].setup.challenge_types.clone().unwrap();
        assert!(offered.contains(&ChallengeType::DnsPersist01));
        assert!(offered.contains(&ChallengeType::Http01));
        assert!(
            !api::DEFAULT_CHALLENGE_TYPES.contains(&ChallengeType::DnsPersist01),
            "the scenario adds what Kiln does not offer by default"
        );
    }
}
