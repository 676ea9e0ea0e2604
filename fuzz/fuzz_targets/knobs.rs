//! The all-in-one's client-testing knobs and the api's finalize schedule:
//! `kiln::knobs` (`parse_duration`, `FinalizeDelay`, `RetryAfterFormat`,
//! `InjectedFailure`, `HttpFault`, the management API's `KnobsDoc` and
//! `Knobs::apply`, the `Retry-After` value `KnobState` writes),
//! `kiln::perspectives::PerspectiveSpec`, `api::finalize_policy`
//! (`FinalizeMode`, `FinalizePolicy::from_toml`, `mode_for`,
//! `hybrid_budget`) and `api::hooks::endpoint_of`. Every parser reads the
//! whole input. Properties: what a knob prints parses again and prints the
//! same (the management API shows knobs in the syntax it takes); `Retry-After` is
//! delay-seconds or an IMF-fixdate; the hybrid budget stays in its bounds.
#![no_main]

use api::finalize_policy::{FinalizeMode, FinalizePolicy};
use api::hooks::ClientTestHooks;
use kiln::knobs::{
    FinalizeDelay, HttpFault, InjectedFailure, KnobState, Knobs, KnobsDoc, RetryAfterFormat,
    parse_duration,
};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

/// One year, `kiln::knobs`' `MAX_DURATION` (not exported).
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

fn strings(s: &str) {
    if let Ok(d) = parse_duration(s) {
        assert!(d <= MAX_DURATION);
    }
    if let Ok(delay) = s.parse::<FinalizeDelay>() {
        let shown = delay.to_string();
        let again: FinalizeDelay = shown.parse().expect("a printed finalize delay parses");
        assert_eq!(
            std::mem::discriminant(&again),
            std::mem::discriminant(&delay)
        );
        assert_eq!(
            again.to_string(),
            shown,
            "printing is stable after one round"
        );
    }
    if let Ok(format) = s.parse::<RetryAfterFormat>() {
        assert_eq!(format.to_string().parse::<RetryAfterFormat>(), Ok(format));
    }
    if let Ok(stage) = s.parse::<InjectedFailure>() {
        assert_eq!(stage.to_string().parse::<InjectedFailure>(), Ok(stage));
    }
    if let Ok(fault) = s.parse::<HttpFault>() {
        let shown = fault.to_string();
        let again: HttpFault = shown.parse().expect("a printed HTTP fault parses");
        assert_eq!(again.endpoint, fault.endpoint);
        assert_eq!(again.remaining, fault.remaining);
        assert_eq!(
            again.to_string(),
            shown,
            "printing is stable after one round"
        );
    }
    if let Ok(mode) = s.parse::<FinalizeMode>() {
        assert_eq!(mode.as_str(), s);
    }
    let _ = s.parse::<kiln::perspectives::PerspectiveSpec>();
    let _ = api::hooks::endpoint_of(s);
}

fn retry_after(knobs: &Knobs) {
    let state = KnobState::new(knobs.clone());
    for _ in 0..3 {
        let _ = state.sample_delay();
    }
    for computed in [0, 1, 30, u64::MAX] {
        let Some(value) = state.retry_after(computed) else {
            assert_eq!(knobs.retry_after, RetryAfterFormat::Absent);
            continue;
        };
        match knobs.retry_after {
            RetryAfterFormat::Seconds | RetryAfterFormat::Random => {
                value.parse::<u64>().expect("Retry-After delay-seconds");
            }
            RetryAfterFormat::HttpDate | RetryAfterFormat::Past => {
                assert!(value.len() == 29 && value.ends_with(" GMT"), "{value:?}");
            }
            RetryAfterFormat::Absent => panic!("Absent wrote {value:?}"),
        }
    }
    let _ = state.fault("new-order");
}

fn doc(bytes: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<KnobsDoc>(bytes) else {
        return;
    };
    let Ok(knobs) = Knobs::default().apply(&doc) else {
        return;
    };
    let shown = knobs.to_doc();
    let again = Knobs::default()
        .apply(&shown)
        .expect("the management API takes back the knobs it shows");
    assert_eq!(again.to_doc().fail, shown.fail);
    let _ = (knobs.describe(), knobs.active());
    retry_after(&knobs);
}

fn schedule(text: &str) {
    let Ok(policy) = FinalizePolicy::from_toml(text) else {
        return;
    };
    for now in [
        time::OffsetDateTime::UNIX_EPOCH,
        time::macros::datetime!(2023-03-15 12:00 UTC),
    ] {
        for (account, agent) in [("pinned", "OldClient/1.2 (linux)"), ("acct", text)] {
            let _ = policy.mode_for(now, account, agent);
        }
    }
    for p95 in [None, Some(Duration::ZERO), Some(Duration::from_secs(60))] {
        let budget = policy.hybrid_budget(p95);
        assert!(policy.hybrid_budget_min <= budget && budget <= policy.hybrid_budget_max);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        strings(text);
        schedule(text);
    }
    doc(data);
});
