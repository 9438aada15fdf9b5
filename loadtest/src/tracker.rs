//! Delivery tracking: every message carries a unique token (`lt:{run}:{n}`); the tracker
//! matches its arrivals on the recipient's streams and counts what was lost or duplicated.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

pub fn content_for(run: &str, n: u64, pad_to: usize) -> String {
    let mut s = format!("lt:{run}:{n}");
    if pad_to > s.len() {
        s.push(':');
        while s.len() < pad_to.min(2000) {
            s.push('x');
        }
    }
    s
}

pub fn token_of(content: &str, run: &str) -> Option<u64> {
    let rest = content.strip_prefix("lt:")?;
    let (r, rest) = rest.split_once(':')?;
    if r != run {
        return None;
    }
    rest.split(':').next()?.parse().ok()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PostState {
    InFlight,
    Ok,
    Failed,
}

struct Pending {
    sent_at: Instant,
    recipient: u32,
    state: PostState,
    /// Copies received, one counter per stream of the recipient.
    counts: Box<[u16]>,
}

#[derive(Default)]
struct TrackInner {
    pending: HashMap<u64, Pending>,
    delivery: Vec<Duration>,
    unknown: u64,
    misrouted: u64,
}

#[derive(Default)]
pub struct Tracker {
    inner: Mutex<TrackInner>,
    /// Deliveries still expected (recipient streams that have not seen a message yet).
    outstanding: AtomicI64,
}

/// The end-of-run counts; deliveries are (message, recipient stream) pairs.
pub struct Tally {
    pub sent_ok: u64,
    pub failed: u64,
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    /// Pairs that arrived more than once, and how many extra copies they had.
    pub duplicated: u64,
    pub duplicate_copies: u64,
    pub delivered_after_failure: u64,
    pub unknown: u64,
    pub misrouted: u64,
    /// One latency per first arrival.
    pub delivery: Vec<Duration>,
}

impl Tracker {
    /// Expects message `n` once on each of the recipient's `streams` streams.
    pub fn register(&self, n: u64, recipient: usize, streams: usize, sent_at: Instant) {
        let mut inner = self.inner.lock().unwrap();
        inner.pending.insert(
            n,
            Pending {
                sent_at,
                recipient: recipient as u32,
                state: PostState::InFlight,
                counts: vec![0u16; streams].into_boxed_slice(),
            },
        );
        self.outstanding.fetch_add(streams as i64, Ordering::AcqRel);
    }

    pub fn posted(&self, n: u64, ok: bool) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(p) = inner.pending.get_mut(&n) {
            if ok {
                p.state = PostState::Ok;
            } else {
                p.state = PostState::Failed;
                let missing = p.counts.iter().filter(|c| **c == 0).count();
                self.outstanding.fetch_sub(missing as i64, Ordering::AcqRel);
            }
        }
    }

    /// Message `n` arrived on stream `slot` of `user` at `at`.
    pub fn delivered(&self, n: u64, user: usize, slot: usize, at: Instant) {
        let mut inner = self.inner.lock().unwrap();
        let inner = &mut *inner;
        let Some(p) = inner.pending.get_mut(&n) else {
            inner.unknown += 1;
            return;
        };
        if p.recipient as usize != user || slot >= p.counts.len() {
            inner.misrouted += 1;
            return;
        }
        let c = &mut p.counts[slot];
        *c = c.saturating_add(1);
        if *c == 1 {
            inner.delivery.push(at.saturating_duration_since(p.sent_at));
            if p.state != PostState::Failed {
                self.outstanding.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// A message event of this run whose token could not be read.
    pub fn unknown(&self) {
        self.inner.lock().unwrap().unknown += 1;
    }

    pub fn outstanding(&self) -> i64 {
        self.outstanding.load(Ordering::Acquire)
    }

    /// Counts every registered message; takes the delivery latencies out.
    pub fn tally(&self) -> Tally {
        let mut inner = self.inner.lock().unwrap();
        let mut t = Tally {
            sent_ok: 0,
            failed: 0,
            expected: 0,
            received: 0,
            lost: 0,
            duplicated: 0,
            duplicate_copies: 0,
            delivered_after_failure: 0,
            unknown: inner.unknown,
            misrouted: inner.misrouted,
            delivery: std::mem::take(&mut inner.delivery),
        };
        for p in inner.pending.values() {
            let got = p.counts.iter().filter(|c| **c > 0).count() as u64;
            match p.state {
                PostState::Ok | PostState::InFlight => {
                    t.sent_ok += 1;
                    t.expected += p.counts.len() as u64;
                    t.received += got;
                    t.lost += p.counts.len() as u64 - got;
                }
                PostState::Failed => {
                    t.failed += 1;
                    t.delivered_after_failure += got;
                }
            }
            for c in p.counts.iter().filter(|c| **c > 1) {
                t.duplicated += 1;
                t.duplicate_copies += u64::from(*c - 1);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_survives_padding_and_ignores_other_runs() {
        let padded = content_for("abc123", 42, 64);
        assert_eq!(padded.len(), 64);
        assert_eq!(token_of(&padded, "abc123"), Some(42));
        assert_eq!(token_of(&content_for("abc123", 7, 0), "abc123"), Some(7));
        assert_eq!(token_of(&content_for("other", 7, 0), "abc123"), None);
        assert_eq!(token_of("hello", "abc123"), None);
    }

    #[test]
    fn counts_lost_duplicated_misrouted_and_failed() {
        let t = Tracker::default();
        let now = Instant::now();
        // 0: delivered on both of user 1's streams; 1: one of two streams lost;
        // 2: three copies on one stream; 3: POST failed, arrived anyway.
        for n in 0..4 {
            t.register(n, 1, 2, now);
        }
        assert_eq!(t.outstanding(), 8);
        for n in 0..3 {
            t.posted(n, true);
        }
        t.posted(3, false);
        assert_eq!(t.outstanding(), 6);
        t.delivered(0, 1, 0, now);
        t.delivered(0, 1, 1, now);
        t.delivered(1, 1, 0, now);
        for _ in 0..3 {
            t.delivered(2, 1, 0, now);
        }
        t.delivered(2, 1, 1, now);
        t.delivered(3, 1, 0, now);
        t.delivered(0, 0, 0, now); // on the sender's stream: not its recipient
        t.delivered(99, 1, 0, now); // never sent
        assert_eq!(t.outstanding(), 1);

        let tally = t.tally();
        assert_eq!((tally.sent_ok, tally.failed), (3, 1));
        assert_eq!((tally.expected, tally.received, tally.lost), (6, 5, 1));
        assert_eq!((tally.duplicated, tally.duplicate_copies), (1, 2));
        assert_eq!(tally.delivered_after_failure, 1);
        assert_eq!((tally.misrouted, tally.unknown), (1, 1));
        assert_eq!(tally.delivery.len(), 6);
    }
}
