//! The pipeline's recent finalize→valid latency, read from the shared
//! database so every replica sees the same figures: its p90 sets
//! `Retry-After` on `processing` orders, its p95 the hybrid mode's wait.

use std::sync::{RwLock, Weak};
use std::time::Duration;
use store::Store;

/// Orders the percentiles are taken over.
const SAMPLE: i64 = 200;
const REFRESH: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Latency {
    percentiles: RwLock<Option<Percentiles>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Percentiles {
    p90: Duration,
    p95: Duration,
}

impl Latency {
    pub fn p90(&self) -> Option<Duration> {
        self.read().map(|p| p.p90)
    }

    pub fn p95(&self) -> Option<Duration> {
        self.read().map(|p| p.p95)
    }

    fn read(&self) -> Option<Percentiles> {
        *self.percentiles.read().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn refresh(&self, store: &Store) {
        match store.recent_finalize_latencies(SAMPLE).await {
            Ok(mut ms) if !ms.is_empty() => {
                ms.sort_unstable();
                let at = |q: usize| {
                    Duration::from_millis(ms[(ms.len() * q / 100).min(ms.len() - 1)].max(0) as u64)
                };
                *self.percentiles.write().unwrap_or_else(|e| e.into_inner()) = Some(Percentiles {
                    p90: at(90),
                    p95: at(95),
                });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading finalize latencies failed"),
        }
    }

    /// `Retry-After` seconds: the recent p90, clamped to 1–60 s; `fallback`
    /// until there is data.
    pub fn retry_after_secs(&self, fallback: Duration) -> u64 {
        self.p90()
            .map_or(fallback, |p90| p90.max(Duration::from_millis(1)))
            .as_secs_f64()
            .ceil()
            .clamp(1.0, 60.0) as u64
    }
}

/// Refreshes the figures every few seconds while the api lives.
pub fn spawn_refresh(api: Weak<crate::Api>) {
    tokio::spawn(async move {
        loop {
            let Some(api) = api.upgrade() else { return };
            api.latency.refresh(&api.store).await;
            drop(api);
            tokio::time::sleep(REFRESH).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_the_clamped_p90() {
        let latency = Latency::default();
        assert_eq!(
            latency.retry_after_secs(Duration::from_secs(3)),
            3,
            "fallback without data"
        );
        let set = |p90_ms| {
            *latency.percentiles.write().unwrap() = Some(Percentiles {
                p90: Duration::from_millis(p90_ms),
                p95: Duration::from_millis(p90_ms),
            })
        };
        set(40);
        assert_eq!(latency.retry_after_secs(Duration::from_secs(3)), 1);
        set(2_300);
        assert_eq!(latency.retry_after_secs(Duration::from_secs(3)), 3);
        set(600_000);
        assert_eq!(latency.retry_after_secs(Duration::from_secs(3)), 60);
    }
}
