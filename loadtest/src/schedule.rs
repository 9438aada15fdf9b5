//! Pacing: a global schedule that any number of sending tasks share.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// Hands out message numbers on a global schedule (`start + n / rate`), so that any number
/// of tasks together keep the target rate.
pub struct Schedule {
    next: AtomicU64,
    pub start: Instant,
    end: Instant,
    rate: f64,
    max_lag_us: AtomicU64,
}

impl Schedule {
    pub fn new(rate: f64, duration: f64) -> Self {
        let start = Instant::now() + Duration::from_millis(50);
        Self {
            next: AtomicU64::new(0),
            start,
            end: start + Duration::from_secs_f64(duration),
            rate,
            max_lag_us: AtomicU64::new(0),
        }
    }

    /// The next message number once it is due, or `None` when the run is over.
    pub async fn next(&self) -> Option<u64> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if self.rate > 0.0 {
            let due = self.start + Duration::from_secs_f64(n as f64 / self.rate);
            if due >= self.end {
                return None;
            }
            tokio::time::sleep_until(due.into()).await;
            let lag = Instant::now().saturating_duration_since(due).as_micros() as u64;
            self.max_lag_us.fetch_max(lag, Ordering::Relaxed);
        } else {
            if Instant::now() < self.start {
                tokio::time::sleep_until(self.start.into()).await;
            }
            if Instant::now() >= self.end {
                return None;
            }
        }
        Some(n)
    }

    /// How late the most delayed send started against its schedule, in milliseconds.
    pub fn max_lag_ms(&self) -> f64 {
        self.max_lag_us.load(Ordering::Relaxed) as f64 / 1000.0
    }
}
