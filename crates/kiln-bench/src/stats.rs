//! Latency summaries (nearest-rank percentiles, milliseconds).

use serde::Serialize;
use std::time::Duration;

#[derive(Serialize, Default, Clone, Copy)]
pub struct Summary {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &mut [Duration]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let total: f64 = samples.iter().map(|d| ms(*d)).sum();
        Summary {
            count: samples.len(),
            mean: total / samples.len() as f64,
            p50: ms(percentile(samples, 50.0)),
            p95: ms(percentile(samples, 95.0)),
            p99: ms(percentile(samples, 99.0)),
            max: ms(samples[samples.len() - 1]),
        }
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::of(&mut v);
        assert_eq!(s.p50, 50.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.max, 100.0);
        let one = [Duration::from_millis(7)];
        assert_eq!(percentile(&one, 99.0), Duration::from_millis(7));
    }
}
