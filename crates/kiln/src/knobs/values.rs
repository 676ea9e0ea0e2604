//! The knob values, and their one syntax, shared by the command-line
//! flags, the environment and the management API: parsing, printing, the
//! management API's document and partial updates.

use api::hooks::Fault;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How long an order stays `processing` before the pipeline runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FinalizeDelay {
    None,
    Fixed(Duration),
    Uniform(Duration, Duration),
    /// Exponentially distributed with this mean.
    Exponential(Duration),
    /// Stay `processing` until the client has polled the order K times.
    Polls(u32),
}

/// How `Retry-After` is written on `processing` resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfterFormat {
    /// Delay-seconds, e.g. `3`.
    Seconds,
    /// An HTTP-date that many seconds ahead.
    HttpDate,
    /// Delay-seconds, random between 1 and twice the value.
    Random,
    /// No header.
    Absent,
    /// An HTTP-date in the past.
    Past,
}

/// Where the pipeline fails (the order ends `invalid` with a matching
/// problem), or `Stall`: it never progresses, and the order stays
/// `processing` until the finalize deadline ends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedFailure {
    Caa,
    Precert,
    Ct,
    Final,
    Stall,
}

/// An HTTP fault for requests to one endpoint (or `*`), at a rate or for
/// the next N requests.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpFault {
    pub endpoint: String,
    pub fault: Fault,
    pub rate: f64,
    pub remaining: Option<u32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Knobs {
    pub finalize_delay: FinalizeDelay,
    /// Apply the finalize delay only to orders with an identifier matching
    /// this pattern (`*` matches any run of characters).
    pub delay_pattern: Option<String>,
    pub retry_after: RetryAfterFormat,
    /// Replaces the measured `Retry-After` seconds.
    pub retry_after_seconds: Option<u64>,
    pub fail: Option<InjectedFailure>,
    pub http_faults: Vec<HttpFault>,
    /// Seeds every random choice, for reproducible runs.
    pub seed: u64,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            finalize_delay: FinalizeDelay::None,
            delay_pattern: None,
            retry_after: RetryAfterFormat::Seconds,
            retry_after_seconds: None,
            fail: None,
            http_faults: Vec::new(),
            seed: 1,
        }
    }
}

/// The longest duration a knob (or `--finalize-timeout`) takes: far beyond
/// any test, and far from what `Duration`, `Instant` and `SystemTime`
/// arithmetic can overflow on.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The largest `Retry-After` seconds a knob takes (one year, as above).
pub const MAX_RETRY_AFTER_SECONDS: u64 = MAX_DURATION.as_secs();

/// `250ms`, `5s`, `2m`, or a bare number of seconds (decimals allowed, no
/// exponent), at most [`MAX_DURATION`]. Read exactly (to the nanosecond,
/// no floating point), so that what [`show_duration`] prints reads back as
/// the same duration: through an `f64`, `8428034712ms` came back a
/// millisecond short each round (found by the `knobs` fuzz target).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        _ if unit.starts_with(['e', 'E']) => {
            return Err(format!(
                "bad duration {s:?}: write the number without an exponent (e.g. 250ms, 5s, 2m)"
            ));
        }
        _ => return Err(format!("bad duration unit in {s:?} (ms, s or m)")),
    };
    let out_of_range = || {
        format!(
            "duration {s:?} is out of range (at most {} days)",
            MAX_DURATION.as_secs() / 86400
        )
    };
    let nanos = decimal_times(number, unit_nanos)
        .ok_or_else(|| format!("bad duration {s:?} (e.g. 250ms, 5s, 2m)"))?
        .ok_or_else(out_of_range)?;
    match u64::try_from(nanos).map(Duration::from_nanos) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(out_of_range()),
    }
}

/// `number` (digits with at most one `.`) times `unit` nanoseconds, the
/// fraction below a nanosecond dropped; `None` if it is not such a number,
/// `Some(None)` if it is too large to matter (beyond any duration).
fn decimal_times(number: &str, unit: u128) -> Option<Option<u128>> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let whole = whole.trim_start_matches('0');
    // 30 digits of whole units exceed every duration a knob allows.
    if whole.len() > 30 {
        return Some(None);
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    // Digits beyond the 18th are below a nanosecond of any unit here.
    let kept = &fraction[..fraction.len().min(18)];
    let scale = 10u128.pow(kept.len() as u32);
    let fraction: u128 = if kept.is_empty() {
        0
    } else {
        kept.parse().ok()?
    };
    Some(
        whole
            .checked_mul(unit)
            .and_then(|w| w.checked_add(fraction * unit / scale)),
    )
}

fn show_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl FromStr for FinalizeDelay {
    type Err = String;
    /// `none`, `5s`, `uniform:1s..5s`, `exp:2s`, `polls:3`.
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.split_once(':') {
            None if s == "none" || s == "0" => FinalizeDelay::None,
            None => FinalizeDelay::Fixed(parse_duration(s)?),
            Some(("uniform", range)) => {
                let (low, high) = range
                    .split_once("..")
                    .ok_or("uniform needs LOW..HIGH, e.g. uniform:1s..5s")?;
                let (low, high) = (parse_duration(low)?, parse_duration(high)?);
                if high < low {
                    return Err(format!("uniform:{range}: HIGH is below LOW"));
                }
                FinalizeDelay::Uniform(low, high)
            }
            Some(("exp", mean)) => FinalizeDelay::Exponential(parse_duration(mean)?),
            Some(("polls", k)) => {
                FinalizeDelay::Polls(k.parse().map_err(|_| format!("polls:{k}: not a count"))?)
            }
            Some((kind, _)) => {
                return Err(format!(
                    "unknown delay kind {kind:?}: use 5s, uniform:1s..5s, exp:2s or polls:3"
                ));
            }
        })
    }
}

impl fmt::Display for FinalizeDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FinalizeDelay::None => f.write_str("none"),
            FinalizeDelay::Fixed(d) => f.write_str(&show_duration(*d)),
            FinalizeDelay::Uniform(a, b) => {
                write!(f, "uniform:{}..{}", show_duration(*a), show_duration(*b))
            }
            FinalizeDelay::Exponential(m) => write!(f, "exp:{}", show_duration(*m)),
            FinalizeDelay::Polls(k) => write!(f, "polls:{k}"),
        }
    }
}

impl FromStr for RetryAfterFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "seconds" => RetryAfterFormat::Seconds,
            "http-date" => RetryAfterFormat::HttpDate,
            "random" => RetryAfterFormat::Random,
            "absent" => RetryAfterFormat::Absent,
            "past" => RetryAfterFormat::Past,
            other => {
                return Err(format!(
                    "unknown Retry-After format {other:?}: seconds, http-date, random, absent or past"
                ));
            }
        })
    }
}

impl fmt::Display for RetryAfterFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RetryAfterFormat::Seconds => "seconds",
            RetryAfterFormat::HttpDate => "http-date",
            RetryAfterFormat::Random => "random",
            RetryAfterFormat::Absent => "absent",
            RetryAfterFormat::Past => "past",
        })
    }
}

impl FromStr for InjectedFailure {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "caa" => InjectedFailure::Caa,
            "precert" => InjectedFailure::Precert,
            "ct" => InjectedFailure::Ct,
            "final" => InjectedFailure::Final,
            "stall" => InjectedFailure::Stall,
            other => {
                return Err(format!(
                    "unknown stage {other:?}: caa, precert, ct, final or stall"
                ));
            }
        })
    }
}

impl fmt::Display for InjectedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InjectedFailure::Caa => "caa",
            InjectedFailure::Precert => "precert",
            InjectedFailure::Ct => "ct",
            InjectedFailure::Final => "final",
            InjectedFailure::Stall => "stall",
        })
    }
}

impl FromStr for HttpFault {
    type Err = String;
    /// `ENDPOINT:KIND[:rate=R|:next=N]`, KIND one of `bad-nonce`, `429`,
    /// `503`, `500`, `slow=DURATION`; e.g. `new-order:bad-nonce:next=1`,
    /// `*:503:rate=0.1`, `finalize:slow=3s`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let endpoint = parts
            .next()
            .filter(|e| !e.is_empty())
            .ok_or("HTTP fault needs ENDPOINT:KIND")?;
        let kind = parts.next().ok_or("HTTP fault needs ENDPOINT:KIND")?;
        let fault = match kind {
            "bad-nonce" => Fault::BadNonce,
            "429" => Fault::RateLimited {
                retry_after_secs: 2,
            },
            "503" => Fault::Unavailable,
            "500" => Fault::Internal,
            slow if slow.starts_with("slow=") => Fault::Slow(parse_duration(&slow[5..])?),
            other => {
                return Err(format!(
                    "unknown HTTP fault {other:?}: bad-nonce, 429, 503, 500 or slow=DURATION"
                ));
            }
        };
        let (mut rate, mut remaining) = (1.0, None);
        for extra in parts {
            match extra.split_once('=') {
                Some(("rate", r)) => {
                    rate = r.parse().map_err(|_| format!("rate={r}: not a number"))?;
                    if !(0.0..=1.0).contains(&rate) {
                        return Err(format!("rate={r}: must be between 0 and 1"));
                    }
                }
                Some(("next", n)) => {
                    remaining = Some(n.parse().map_err(|_| format!("next={n}: not a count"))?)
                }
                _ => {
                    return Err(format!(
                        "unknown HTTP fault option {extra:?}: rate=R or next=N"
                    ));
                }
            }
        }
        Ok(HttpFault {
            endpoint: endpoint.to_string(),
            fault,
            rate,
            remaining,
        })
    }
}

/// A fault's KIND in the flags' syntax: `bad-nonce`, `429`, `slow=3000ms`, …
pub fn fault_kind(fault: &Fault) -> String {
    match fault {
        Fault::BadNonce => "bad-nonce".to_string(),
        Fault::RateLimited { .. } => "429".into(),
        Fault::Unavailable => "503".into(),
        Fault::Internal => "500".into(),
        Fault::Slow(d) => format!("slow={}", show_duration(*d)),
    }
}

impl fmt::Display for HttpFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.endpoint, fault_kind(&self.fault))?;
        // Both, when both are set: the management API's document is read
        // back with this (`to_doc`), so dropping one would change the fault.
        if self.rate < 1.0 {
            write!(f, ":rate={}", self.rate)?;
        }
        if let Some(n) = self.remaining {
            write!(f, ":next={n}")?;
        }
        Ok(())
    }
}

/// The knobs as the management API shows and takes them: every field in
/// the flags' syntax; in an update, absent fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnobsDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalize_delay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// A stage (`caa`, `precert`, `ct`, `final`), `stall`, or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_faults: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Knobs {
    pub fn to_doc(&self) -> KnobsDoc {
        KnobsDoc {
            finalize_delay: Some(self.finalize_delay.to_string()),
            delay_pattern: self.delay_pattern.clone(),
            retry_after: Some(self.retry_after.to_string()),
            retry_after_seconds: self.retry_after_seconds,
            fail: Some(self.fail.map_or("none".to_string(), |f| f.to_string())),
            http_faults: Some(self.http_faults.iter().map(|f| f.to_string()).collect()),
            seed: Some(self.seed),
        }
    }

    /// Applies an update; on an error nothing changes.
    pub fn apply(&self, doc: &KnobsDoc) -> Result<Knobs, String> {
        let mut next = self.clone();
        if let Some(d) = &doc.finalize_delay {
            next.finalize_delay = d.parse()?;
        }
        if let Some(p) = &doc.delay_pattern {
            next.delay_pattern = (!p.is_empty()).then(|| p.clone());
        }
        if let Some(r) = &doc.retry_after {
            next.retry_after = r.parse()?;
        }
        if let Some(secs) = doc.retry_after_seconds {
            if secs > MAX_RETRY_AFTER_SECONDS {
                return Err(format!(
                    "retry_after_seconds {secs} is out of range (at most {MAX_RETRY_AFTER_SECONDS})"
                ));
            }
            next.retry_after_seconds = Some(secs);
        }
        if let Some(f) = &doc.fail {
            next.fail = if f == "none" { None } else { Some(f.parse()?) };
        }
        if let Some(faults) = &doc.http_faults {
            next.http_faults = faults.iter().map(|f| f.parse()).collect::<Result<_, _>>()?;
        }
        if let Some(seed) = doc.seed {
            next.seed = seed;
        }
        Ok(next)
    }

    /// True when any knob differs from a plain Kiln.
    pub fn active(&self) -> bool {
        *self != Knobs::default()
    }

    /// One line per knob that is set, for start-up output.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.finalize_delay != FinalizeDelay::None {
            let only = self
                .delay_pattern
                .as_ref()
                .map(|p| format!(" (orders naming {p})"))
                .unwrap_or_default();
            lines.push(format!("finalize delay: {}{only}", self.finalize_delay));
        }
        if self.retry_after != RetryAfterFormat::Seconds || self.retry_after_seconds.is_some() {
            let secs = self
                .retry_after_seconds
                .map_or("measured".to_string(), |s| format!("{s} s"));
            lines.push(format!("Retry-After: {} ({secs})", self.retry_after));
        }
        if let Some(fail) = self.fail {
            lines.push(format!("injected failure: {fail}"));
        }
        for fault in &self.http_faults {
            lines.push(format!("HTTP fault: {fault}"));
        }
        if !lines.is_empty() {
            lines.push(format!("seed: {}", self.seed));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_parse_and_print_in_one_syntax() {
        for delay in [
            "none",
            "250ms",
            "uniform:1000ms..5000ms",
            "exp:2000ms",
            "polls:3",
        ] {
            assert_eq!(delay.parse::<FinalizeDelay>().unwrap().to_string(), delay);
        }
        assert_eq!(
            "5s".parse::<FinalizeDelay>().unwrap(),
            FinalizeDelay::Fixed(Duration::from_secs(5))
        );
        for fault in [
            "new-order:bad-nonce:next=1",
            "*:503:rate=0.1",
            "x:503:rate=0.5:next=3",
            "finalize:slow=3000ms",
            "order:429",
            "cert:500",
        ] {
            assert_eq!(fault.parse::<HttpFault>().unwrap().to_string(), fault);
        }
        // A number no Duration holds is refused, not a panic.
        let huge = format!("{}s", "9".repeat(30));
        assert!(parse_duration(&huge).unwrap_err().contains("out of range"));
        assert!(format!("exp:{huge}").parse::<FinalizeDelay>().is_err());
        for bad in [
            "uniform:5s..1s",
            "soon",
            "polls:x",
            "exp",
            "1e20s",
            "1E3",
            "NaN",
            "inf",
            "-5s",
            "1.5.5s",
            "366d",
            "525601m",
            "exp:31536001s",
            "uniform:1s..1e20s",
        ] {
            assert!(bad.parse::<FinalizeDelay>().is_err(), "{bad}");
        }
        assert!(parse_duration("1e20s").unwrap_err().contains("exponent"));
        // Exact, so that a printed duration reads back unchanged (a fuzz find).
        assert_eq!(
            parse_duration("8428034712ms"),
            Ok(Duration::from_millis(8_428_034_712))
        );
        let delay: FinalizeDelay = "exp:8428034712ms".parse().unwrap();
        assert_eq!(delay.to_string(), "exp:8428034712ms");
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        for bad in ["", ".", "1.2.3s", "ms", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_duration("525600m"), Ok(MAX_DURATION));
        for bad in [
            "x:slow=1e20s",
            "x:503:rate=NaN",
            "x:503:rate=inf",
            "x:503:next=-1",
        ] {
            assert!(bad.parse::<HttpFault>().is_err(), "{bad}");
        }
        for bad in ["new-order", "x:teapot", "x:503:rate=2", "x:503:often"] {
            assert!(bad.parse::<HttpFault>().is_err(), "{bad}");
        }
    }

    #[test]
    fn updates_are_partial_and_atomic() {
        let knobs = Knobs::default();
        let next = knobs
            .apply(&KnobsDoc {
                finalize_delay: Some("2s".into()),
                fail: Some("ct".into()),
                ..KnobsDoc::default()
            })
            .unwrap();
        assert_eq!(next.fail, Some(InjectedFailure::Ct));
        assert_eq!(next.retry_after, RetryAfterFormat::Seconds, "untouched");
        let bad = KnobsDoc {
            finalize_delay: Some("3s".into()),
            fail: Some("everything".into()),
            ..KnobsDoc::default()
        };
        assert!(next.apply(&bad).is_err());
        let huge = KnobsDoc {
            retry_after_seconds: Some(u64::MAX),
            ..KnobsDoc::default()
        };
        assert!(next.apply(&huge).unwrap_err().contains("out of range"));
    }
}
