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

/// One stream that should get a message once, and the copies it got.
struct Expected {
    user: u32,
    slot: u32,
    copies: u16,
}

struct Pending {
    sent_at: Instant,
    state: PostState,
    /// Every stream the message is for (each stream of each of its users).
    streams: Box<[Expected]>,
    /// Copies that arrived on a stream of a user the message is not for.
    misrouted: u32,
}

impl Pending {
    fn missing(&self) -> usize {
        self.streams.iter().filter(|e| e.copies == 0).count()
    }
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
    /// Deliveries still expected (streams that have not seen a message yet, of messages
    /// not known to have failed).
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

/// What one message's streams saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deliveries {
    /// Streams the message is for.
    pub expected: u64,
    /// Of those, streams that got it at least once.
    pub received: u64,
    /// Streams that got it more than once.
    pub duplicated: u64,
    /// Copies on streams of users it is not for.
    pub misrouted: u64,
}

impl Tracker {
    /// Expects message `n` once on each of the recipient's `streams` streams.
    pub fn register(&self, n: u64, recipient: usize, streams: usize, sent_at: Instant) {
        self.register_for(n, &[(recipient, streams)], sent_at);
    }

    /// Expects message `n` once on every stream of several users: `(user, streams)`.
    pub fn register_for(&self, n: u64, users: &[(usize, usize)], sent_at: Instant) {
        let mut streams: Box<[Expected]> = users
            .iter()
            .flat_map(|&(user, count)| {
                (0..count).map(move |slot| Expected {
                    user: user as u32,
                    slot: slot as u32,
                    copies: 0,
                })
            })
            .collect();
        // Sorted, so that a delivery finds its stream by binary search: a message for a
        // thousand members is looked up a thousand times.
        streams.sort_unstable_by_key(|e| (e.user, e.slot));
        self.outstanding
            .fetch_add(streams.len() as i64, Ordering::AcqRel);
        let pending = Pending {
            sent_at,
            state: PostState::InFlight,
            streams,
            misrouted: 0,
        };
        self.inner.lock().unwrap().pending.insert(n, pending);
    }

    /// The POST of message `n` succeeded (it is expected on its streams) or failed (it is
    /// not, unless a later call says it succeeded after all: a retry).
    pub fn posted(&self, n: u64, ok: bool) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(p) = inner.pending.get_mut(&n) {
            let was_expected = p.state != PostState::Failed;
            p.state = if ok { PostState::Ok } else { PostState::Failed };
            let missing = p.missing() as i64;
            match (was_expected, ok) {
                (true, false) => self.outstanding.fetch_sub(missing, Ordering::AcqRel),
                (false, true) => self.outstanding.fetch_add(missing, Ordering::AcqRel),
                _ => 0,
            };
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
        let key = (user as u32, slot as u32);
        let Ok(i) = p.streams.binary_search_by_key(&key, |e| (e.user, e.slot)) else {
            p.misrouted += 1;
            inner.misrouted += 1;
            return;
        };
        let e = &mut p.streams[i];
        e.copies = e.copies.saturating_add(1);
        if e.copies == 1 {
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

    /// Message events of this run for no registered message.
    pub fn unknown_count(&self) -> u64 {
        self.inner.lock().unwrap().unknown
    }

    pub fn outstanding(&self) -> i64 {
        self.outstanding.load(Ordering::Acquire)
    }

    /// What the streams saw of message `n` so far (`None`: never registered).
    pub fn deliveries(&self, n: u64) -> Option<Deliveries> {
        let inner = self.inner.lock().unwrap();
        let p = inner.pending.get(&n)?;
        Some(Deliveries {
            expected: p.streams.len() as u64,
            received: p.streams.iter().filter(|e| e.copies > 0).count() as u64,
            duplicated: p.streams.iter().filter(|e| e.copies > 1).count() as u64,
            misrouted: u64::from(p.misrouted),
        })
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
            let got = (p.streams.len() - p.missing()) as u64;
            match p.state {
                PostState::Ok | PostState::InFlight => {
                    t.sent_ok += 1;
                    t.expected += p.streams.len() as u64;
                    t.received += got;
                    t.lost += p.streams.len() as u64 - got;
                }
                PostState::Failed => {
                    t.failed += 1;
                    t.delivered_after_failure += got;
                }
            }
            for e in p.streams.iter().filter(|e| e.copies > 1) {
                t.duplicated += 1;
                t.duplicate_copies += u64::from(e.copies - 1);
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

    #[test]
    fn a_message_for_several_users_and_a_retry_that_succeeds() {
        let t = Tracker::default();
        let now = Instant::now();
        // For user 0 (one stream) and user 2 (two streams); user 1 is not a member.
        t.register_for(7, &[(0, 1), (2, 2)], now);
        assert_eq!(t.outstanding(), 3);
        t.posted(7, false);
        assert_eq!(t.outstanding(), 0);
        t.delivered(7, 2, 1, now);
        t.delivered(7, 1, 0, now);
        // A retry with the same key was acknowledged: the streams that still lack it count.
        t.posted(7, true);
        assert_eq!(t.outstanding(), 2);
        t.delivered(7, 0, 0, now);
        t.delivered(7, 0, 0, now);
        assert_eq!(t.outstanding(), 1);
        let d = t.deliveries(7).unwrap();
        assert_eq!(
            d,
            Deliveries {
                expected: 3,
                received: 2,
                duplicated: 1,
                misrouted: 1
            }
        );
        assert_eq!(t.deliveries(8), None);
    }
}
