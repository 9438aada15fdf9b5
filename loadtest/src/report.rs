//! Latency percentiles and error tallies, as text and as JSON.

use std::{collections::BTreeMap, sync::Mutex, time::Duration};

use serde_json::{json, Value};

#[derive(Clone, Copy, Default)]
pub struct Summary {
    pub count: usize,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    mean: Duration,
}

/// Nearest-rank percentiles: p99 of 100 samples is the 99th smallest.
pub fn summarize(mut v: Vec<Duration>) -> Summary {
    if v.is_empty() {
        return Summary::default();
    }
    v.sort_unstable();
    let n = v.len();
    let pct = |p: f64| v[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    let total: Duration = v.iter().sum();
    Summary {
        count: n,
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: v[n - 1],
        mean: total / n as u32,
    }
}

/// Milliseconds, rounded to the microsecond.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Summary {
    pub fn text(&self) -> String {
        if self.count == 0 {
            return "n/a".into();
        }
        format!(
            "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (mean {:.2} ms, n={})",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            ms(self.mean),
            self.count
        )
    }
    pub fn json(&self) -> Value {
        json!({
            "count": self.count,
            "p50": ms(self.p50),
            "p90": ms(self.p90),
            "p99": ms(self.p99),
            "max": ms(self.max),
            "mean": ms(self.mean),
        })
    }
}

/// Failed requests counted by kind (status and `detail`, or the transport error).
#[derive(Default)]
pub struct Errors(Mutex<BTreeMap<String, u64>>);

impl Errors {
    pub fn add(&self, e: String) {
        *self.0.lock().unwrap().entry(e).or_default() += 1;
    }
    pub fn total(&self) -> u64 {
        self.0.lock().unwrap().values().sum()
    }
    pub fn json(&self) -> Value {
        json!(self.0.lock().unwrap().clone())
    }
    pub fn text(&self) -> String {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{v} x {k}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// "{target} msg/s" (or req/s), or "max rate" for an unpaced run.
pub fn rate_text(rate: f64, unit: &str) -> String {
    if rate > 0.0 {
        format!("{rate} {unit}")
    } else {
        "max rate".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples = (1..=100).rev().map(Duration::from_millis).collect();
        let s = summarize(samples);
        assert_eq!(s.count, 100);
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p90, Duration::from_millis(90));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(s.json()["mean"], json!(50.5));
    }

    #[test]
    fn one_sample_is_every_percentile_and_none_is_na() {
        let s = summarize(vec![Duration::from_micros(1500)]);
        assert_eq!(
            (s.p50, s.p99, s.max),
            (s.max, s.max, Duration::from_micros(1500))
        );
        assert_eq!(summarize(Vec::new()).text(), "n/a");
    }
}
