//! The report of a run: what was asked, what the issuances measured, and
//! the errors by kind; as JSON (bench/*.sh and bench/summarize.py read its
//! field names) or as a text summary.

use crate::args::Args;
use crate::issue::{Failure, PollPolicy, Sample};
use crate::run::RunTimes;
use crate::stats::Summary;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Serialize)]
pub struct Report {
    label: String,
    directory: String,
    challenge: String,
    poll: String,
    orders: usize,
    concurrency: usize,
    accounts: usize,
    names_per_order: usize,
    warmup: usize,
    /// Accounts and CSRs, before the clock.
    setup_s: f64,
    ok: usize,
    failed: usize,
    wall_s: f64,
    orders_per_s: f64,
    /// From the first start to the last successful issuance.
    until_last_issued_s: f64,
    /// `ok` over `until_last_issued_s`: the rate while the server was
    /// issuing, the one figure a run that stalled part-way still has.
    orders_per_s_while_issuing: f64,
    finalize_post_ms: Summary,
    /// Every answered finalize POST, including orders that failed later.
    finalize_post_all_ms: Summary,
    finalize_to_valid_ms: Summary,
    /// Challenge POSTs to order `ready`.
    validation_ms: Summary,
    /// New order to certificate downloaded.
    issuance_ms: Summary,
    polls_per_order: f64,
    /// The order status the finalize POST answered with.
    finalize_status: BTreeMap<String, usize>,
    errors: BTreeMap<String, usize>,
}

impl Report {
    /// Sums up `results` of the timed part of a run (`wall` long); planned
    /// orders that never started count as errors.
    pub fn new(
        args: &Args,
        poll: PollPolicy,
        accounts: usize,
        setup: Duration,
        times: RunTimes,
        results: &[Result<Sample, Failure>],
    ) -> Report {
        let mut errors: BTreeMap<String, usize> = BTreeMap::new();
        let mut finalize_status: BTreeMap<String, usize> = BTreeMap::new();
        let (mut fin_post, mut fin_valid, mut validation, mut issuance) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut polls = 0u64;
        let mut fin_post_failed = Vec::new();
        for r in results {
            match r {
                Ok(s) => {
                    fin_post.push(s.finalize_post);
                    fin_valid.push(s.finalize_to_valid);
                    validation.push(s.validation);
                    issuance.push(s.issuance);
                    polls += u64::from(s.polls);
                    *finalize_status
                        .entry(s.finalize_status.to_string())
                        .or_default() += 1;
                }
                Err(f) => {
                    *errors.entry(f.kind()).or_default() += 1;
                    if let Some(d) = f.finalize_post {
                        fin_post_failed.push(d);
                    }
                }
            }
        }
        let ok = fin_post.len();
        let mut fin_post_all: Vec<Duration> =
            fin_post.iter().chain(&fin_post_failed).copied().collect();
        let not_run = args.orders.saturating_sub(results.len());
        if not_run > 0 {
            *errors
                .entry("run: timeout before start".into())
                .or_default() += not_run;
        }
        Report {
            label: args.label.clone(),
            directory: args.directory.clone(),
            challenge: args.challenge.name().into(),
            poll: poll.describe(),
            orders: args.orders,
            concurrency: args.concurrency,
            accounts,
            names_per_order: args.names_per_order,
            warmup: args.warmup,
            setup_s: setup.as_secs_f64(),
            ok,
            failed: args.orders - ok,
            wall_s: times.wall.as_secs_f64(),
            orders_per_s: rate(ok, times.wall),
            until_last_issued_s: times.until_last_issued.as_secs_f64(),
            orders_per_s_while_issuing: rate(ok, times.until_last_issued),
            finalize_post_ms: Summary::of(&mut fin_post),
            finalize_post_all_ms: Summary::of(&mut fin_post_all),
            finalize_to_valid_ms: Summary::of(&mut fin_valid),
            validation_ms: Summary::of(&mut validation),
            issuance_ms: Summary::of(&mut issuance),
            polls_per_order: if ok == 0 {
                0.0
            } else {
                polls as f64 / ok as f64
            },
            finalize_status,
            errors,
        }
    }

    /// The summary a person reads.
    pub fn text(&self) -> String {
        let mut out = String::new();
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "kiln-bench {}{}  {}  {}  poll: {}",
            self.label,
            if self.label.is_empty() { "" } else { " " },
            self.directory,
            self.challenge,
            self.poll
        );
        let _ = writeln!(
            out,
            "  issued {}/{} at C={} ({} accounts) in {:.2} s: {:.1} orders/s",
            self.ok, self.orders, self.concurrency, self.accounts, self.wall_s, self.orders_per_s
        );
        if self.ok < self.orders && self.ok > 0 {
            let _ = writeln!(
                out,
                "  stalled: {} issued in the first {:.2} s, {:.1} orders/s while issuing",
                self.ok, self.until_last_issued_s, self.orders_per_s_while_issuing
            );
        }
        let line = |out: &mut String, name: &str, s: &Summary| {
            let _ = writeln!(
                out,
                "  {name:<20} p50 {:>8.1}  p95 {:>8.1}  p99 {:>8.1}  max {:>8.1} ms",
                s.p50, s.p95, s.p99, s.max
            );
        };
        line(&mut out, "finalize POST", &self.finalize_post_ms);
        if self.finalize_post_all_ms.count > self.finalize_post_ms.count {
            line(&mut out, "finalize POST (all)", &self.finalize_post_all_ms);
        }
        line(&mut out, "finalize→valid", &self.finalize_to_valid_ms);
        line(&mut out, "challenge→ready", &self.validation_ms);
        line(&mut out, "whole issuance", &self.issuance_ms);
        let statuses: Vec<String> = self
            .finalize_status
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            out,
            "  finalize answered: {}; {:.1} polls/order",
            statuses.join(", "),
            self.polls_per_order
        );
        if self.errors.is_empty() {
            let _ = writeln!(out, "  errors: none");
        } else {
            let _ = writeln!(out, "  errors:");
            for (k, v) in &self.errors {
                let _ = writeln!(out, "    {v:>6}  {k}");
            }
        }
        out
    }
}

/// `count` per second over `time`; 0 for no time.
fn rate(count: usize, time: Duration) -> f64 {
    if time.is_zero() {
        0.0
    } else {
        count as f64 / time.as_secs_f64()
    }
}
