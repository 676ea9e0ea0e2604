//! The knobs at run time: the live values and their seeded random source,
//! shared by the api's client-testing hooks (implemented here), the
//! pipeline decorators and the management API; and the log of the
//! requests the hooks saw, which `kiln conformance` judges clients by.

use super::values::{FinalizeDelay, Knobs, MAX_RETRY_AFTER_SECONDS, RetryAfterFormat, fault_kind};
use api::hooks::{ClientTestHooks, Fault};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// One request the api received. Every request passes the fault hook
/// before it is handled, so these are the client's requests in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeenRequest {
    /// When it arrived, unix milliseconds.
    pub at_ms: i64,
    /// `new-order`, `finalize`, `order`, `cert`, … (`api::hooks::endpoint_of`).
    pub endpoint: String,
    /// The fault it was answered with instead of being handled (`bad-nonce`,
    /// `429`, `503`, `500`; `slow=…` was handled, late).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// The request log keeps the latest this many.
pub const MAX_SEEN_REQUESTS: usize = 10_000;

/// The request log as the management API's `GET /requests` serves it: the
/// latest [`MAX_SEEN_REQUESTS`] requests, oldest first, and how many older
/// ones it no longer holds, so that a reader (`kiln conformance`) never
/// takes a truncated log for the whole.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestLog {
    pub requests: Vec<SeenRequest>,
    /// Requests dropped from the front of the log when it was full.
    #[serde(default)]
    pub dropped: u64,
}

#[derive(Default)]
struct Seen {
    log: VecDeque<SeenRequest>,
    dropped: u64,
}

/// The live knobs and their random source, shared by the api hooks, the
/// pipeline decorators and the management API.
pub struct KnobState {
    knobs: Mutex<Knobs>,
    initial: Knobs,
    rng: Mutex<SplitMix64>,
    seen: Mutex<Seen>,
}

impl KnobState {
    pub fn new(knobs: Knobs) -> Arc<KnobState> {
        Arc::new(KnobState {
            rng: Mutex::new(SplitMix64(knobs.seed)),
            initial: knobs.clone(),
            knobs: Mutex::new(knobs),
            seen: Mutex::new(Seen::default()),
        })
    }

    /// The requests received so far (the latest [`MAX_SEEN_REQUESTS`]),
    /// oldest first, and how many were dropped to keep it at that.
    pub fn requests(&self) -> RequestLog {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        RequestLog {
            requests: seen.log.iter().cloned().collect(),
            dropped: seen.dropped,
        }
    }

    fn record(&self, endpoint: &str, fault: Option<Fault>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.log.len() == MAX_SEEN_REQUESTS {
            seen.log.pop_front();
            seen.dropped += 1;
        }
        seen.log.push_back(SeenRequest {
            at_ms: store::now_ms(),
            endpoint: endpoint.to_string(),
            fault: fault.map(|f| fault_kind(&f)),
        });
    }

    pub fn get(&self) -> Knobs {
        self.knobs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, knobs: Knobs) {
        *self.rng.lock().unwrap_or_else(|e| e.into_inner()) = SplitMix64(knobs.seed);
        *self.knobs.lock().unwrap_or_else(|e| e.into_inner()) = knobs;
    }

    /// Back to the knobs Kiln started with.
    pub fn reset(&self) {
        self.set(self.initial.clone());
    }

    fn uniform(&self) -> f64 {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_f64()
    }

    /// The fault due for a request to `endpoint`, if one is.
    fn draw_fault(&self, endpoint: &str) -> Option<Fault> {
        let mut knobs = self.knobs.lock().unwrap_or_else(|e| e.into_inner());
        let draw = self.uniform();
        let rule = knobs
            .http_faults
            .iter_mut()
            .find(|r| (r.endpoint == "*" || r.endpoint == endpoint) && r.remaining != Some(0))?;
        if draw >= rule.rate {
            return None;
        }
        if let Some(n) = &mut rule.remaining {
            *n -= 1;
        }
        Some(rule.fault)
    }

    /// A sample of the finalize delay, if one applies to time-based delays.
    pub fn sample_delay(&self) -> Option<Duration> {
        match self.get().finalize_delay {
            FinalizeDelay::None | FinalizeDelay::Polls(_) => None,
            FinalizeDelay::Fixed(d) => Some(d),
            FinalizeDelay::Uniform(low, high) => Some(low + (high - low).mul_f64(self.uniform())),
            FinalizeDelay::Exponential(mean) => Some(mean.mul_f64(-(1.0 - self.uniform()).ln())),
        }
    }
}

/// A small seeded generator (SplitMix64): reproducible runs need no crate.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn http_date(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&format).unwrap_or_default()
}

impl ClientTestHooks for KnobState {
    fn retry_after(&self, computed_secs: u64) -> Option<String> {
        let knobs = self.get();
        // Bounded, whichever way the value came (the management API refuses
        // larger ones; a flag is not checked): no date arithmetic overflows.
        let secs = knobs
            .retry_after_seconds
            .unwrap_or(computed_secs)
            .min(MAX_RETRY_AFTER_SECONDS);
        match knobs.retry_after {
            RetryAfterFormat::Seconds => Some(secs.to_string()),
            RetryAfterFormat::HttpDate => {
                Some(http_date(SystemTime::now() + Duration::from_secs(secs)))
            }
            RetryAfterFormat::Random => {
                let high = (2 * secs).max(1) as f64;
                Some((1.0 + (high - 1.0) * self.uniform()).round().to_string())
            }
            RetryAfterFormat::Absent => None,
            RetryAfterFormat::Past => {
                Some(http_date(SystemTime::now() - Duration::from_secs(3600)))
            }
        }
    }

    fn fault(&self, endpoint: &str) -> Option<Fault> {
        let fault = self.draw_fault(endpoint);
        self.record(endpoint, fault);
        fault
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_delays_are_reproducible_and_in_range() {
        let knobs = |delay: &str| Knobs {
            finalize_delay: delay.parse().unwrap(),
            seed: 7,
            ..Knobs::default()
        };
        let draw = |state: &KnobState| {
            (0..50)
                .map(|_| state.sample_delay().unwrap())
                .collect::<Vec<_>>()
        };
        let a = draw(&KnobState::new(knobs("uniform:1s..2s")));
        assert_eq!(
            a,
            draw(&KnobState::new(knobs("uniform:1s..2s"))),
            "same seed, same run"
        );
        assert!(
            a.iter()
                .all(|d| (Duration::from_secs(1)..=Duration::from_secs(2)).contains(d))
        );
        let e = draw(&KnobState::new(knobs("exp:1s")));
        let mean = e.iter().sum::<Duration>() / e.len() as u32;
        assert!(
            mean > Duration::from_millis(500) && mean < Duration::from_millis(2000),
            "{mean:?}"
        );
    }

    #[test]
    fn faults_fire_for_the_next_n_requests_only() {
        let state = KnobState::new(Knobs {
            http_faults: vec!["new-order:bad-nonce:next=2".parse().unwrap()],
            ..Knobs::default()
        });
        assert_eq!(state.fault("order"), None);
        assert_eq!(state.fault("new-order"), Some(Fault::BadNonce));
        assert_eq!(state.fault("new-order"), Some(Fault::BadNonce));
        assert_eq!(state.fault("new-order"), None);
        state.reset();
        assert_eq!(
            state.fault("new-order"),
            Some(Fault::BadNonce),
            "reset restores the start-up knobs"
        );
    }

    #[test]
    fn every_request_is_logged_with_its_fault() {
        let state = KnobState::new(Knobs {
            http_faults: vec!["finalize:503:next=1".parse().unwrap()],
            ..Knobs::default()
        });
        for endpoint in ["new-order", "finalize", "finalize", "order"] {
            state.fault(endpoint);
        }
        let seen = state.requests().requests;
        let shown: Vec<(&str, Option<&str>)> = seen
            .iter()
            .map(|r| (r.endpoint.as_str(), r.fault.as_deref()))
            .collect();
        assert_eq!(
            shown,
            [
                ("new-order", None),
                ("finalize", Some("503")),
                ("finalize", None),
                ("order", None)
            ]
        );
        assert!(seen.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert_eq!(state.requests().dropped, 0);
        for _ in 0..MAX_SEEN_REQUESTS {
            state.fault("order");
        }
        let log = state.requests();
        assert_eq!(log.requests.len(), MAX_SEEN_REQUESTS, "bounded");
        assert!(
            log.requests.iter().all(|r| r.endpoint == "order"),
            "oldest dropped"
        );
        assert_eq!(log.dropped, 4, "and counted");
        // As `GET /requests` serves it, and as a reader without the count
        // (an older Kiln's) reads it.
        let served: RequestLog =
            serde_json::from_str(&serde_json::to_string(&log).unwrap()).unwrap();
        assert_eq!(served, log);
        let older: RequestLog = serde_json::from_str(r#"{"requests": []}"#).unwrap();
        assert_eq!(older.dropped, 0);
    }

    #[test]
    fn retry_after_formats() {
        let state = KnobState::new(Knobs::default());
        let with = |format: &str, secs: Option<u64>| {
            state.set(Knobs {
                retry_after: format.parse().unwrap(),
                retry_after_seconds: secs,
                ..Knobs::default()
            });
            state.retry_after(3)
        };
        assert_eq!(with("seconds", None).as_deref(), Some("3"));
        assert_eq!(with("seconds", Some(9)).as_deref(), Some("9"));
        // A flag's value is not range-checked: the hook bounds it.
        assert!(with("http-date", Some(u64::MAX)).is_some());
        assert!(with("random", Some(u64::MAX)).is_some());
        assert_eq!(with("absent", None), None);
        let date = with("http-date", Some(60)).unwrap();
        assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
        let past = with("past", None).unwrap();
        assert!(past.ends_with(" GMT"), "{past}");
        for _ in 0..20 {
            let r: u64 = with("random", Some(4)).unwrap().parse().unwrap();
            assert!((1..=8).contains(&r), "{r}");
        }
    }
}
