//! Live events: every process tails the outbox table and hands each new event to the
//! streams it holds for that event's user.
//!
//! Ordering and the outbox hazard: with concurrent transactions an id can commit after
//! a higher one. The tailer therefore advances only through contiguous ids; when it meets
//! a gap it waits for the missing id (a transaction still in flight) up to
//! [`GAP_GRACE`], after which the id is taken as rolled back and skipped. Every stream
//! thus sees its events in id order, once, and a resume from any delivered id is exact.

pub mod presence;
pub mod stream;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::{
    db::Db,
    store::events::{self as event_store, StoredEvent},
};

/// How long a missing id may be awaited before it is taken as rolled back.
pub const GAP_GRACE: Duration = Duration::from_secs(3);
/// Events a slow stream may have queued before it is disconnected (it then resumes).
pub const STREAM_BUFFER: usize = 512;
const TAIL_BATCH: i64 = 1000;

#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Arc<StoredEvent>>,
}

struct Inner {
    db: Db,
    subscribers: Mutex<HashMap<i32, Vec<Subscriber>>>,
    next_subscriber: AtomicU64,
    /// Every event with an id up to here has been handed to the streams.
    watermark: AtomicI64,
    wake: Notify,
    shutdown: CancellationToken,
    presence: presence::Presence,
}

/// A stream's registration; dropping it unregisters (and may start the offline timer).
pub struct Subscription {
    pub events: mpsc::Receiver<Arc<StoredEvent>>,
    hub: EventHub,
    user_id: i32,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.user_id, self.id);
    }
}

impl EventHub {
    /// Starts the tailer, presence heartbeat and pruning for this process.
    pub async fn start(
        db: Db,
        retention: Duration,
        poll_interval: Duration,
        presence_grace: Duration,
        shutdown: CancellationToken,
    ) -> Result<Self, sqlx::Error> {
        let start = event_store::max_id(&db).await?;
        let process_id = uuid::Uuid::new_v4().to_string();
        let hub = EventHub {
            inner: Arc::new(Inner {
                db: db.clone(),
                presence: presence::Presence::new(db, process_id, presence_grace),
                subscribers: Mutex::new(HashMap::new()),
                next_subscriber: AtomicU64::new(1),
                watermark: AtomicI64::new(start),
                wake: Notify::new(),
                shutdown,
            }),
        };
        tokio::spawn(hub.clone().tail(start, poll_interval));
        tokio::spawn(hub.clone().maintain(retention));
        Ok(hub)
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Tells the tailer that this process just committed events, so they go out now
    /// rather than at the next poll.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    pub fn watermark(&self) -> i64 {
        self.inner.watermark.load(Ordering::Acquire)
    }

    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// How many streams this process holds.
    pub fn stream_count(&self) -> usize {
        self.inner
            .subscribers
            .lock()
            .expect("hub lock")
            .values()
            .map(Vec::len)
            .sum()
    }

    /// Registers a stream for `user_id`. Register before reading the watermark: every
    /// event above the watermark read afterwards will then reach the receiver.
    pub fn subscribe(&self, user_id: i32) -> Subscription {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let id = self.inner.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let first = {
            let mut subs = self.inner.subscribers.lock().expect("hub lock");
            let list = subs.entry(user_id).or_default();
            list.push(Subscriber { id, tx });
            list.len() == 1
        };
        if first {
            self.inner.presence.stream_opened(user_id, self.clone());
        }
        Subscription {
            events: rx,
            hub: self.clone(),
            user_id,
            id,
        }
    }

    fn unsubscribe(&self, user_id: i32, id: u64) {
        let last = {
            let mut subs = self.inner.subscribers.lock().expect("hub lock");
            let Some(list) = subs.get_mut(&user_id) else {
                return;
            };
            list.retain(|s| s.id != id);
            if list.is_empty() {
                subs.remove(&user_id);
                true
            } else {
                false
            }
        };
        if last {
            self.inner.presence.stream_closed(user_id, self.clone());
        }
    }

    pub(crate) fn has_streams(&self, user_id: i32) -> bool {
        self.inner
            .subscribers
            .lock()
            .expect("hub lock")
            .contains_key(&user_id)
    }

    pub(crate) fn users_with_streams(&self) -> Vec<i32> {
        self.inner
            .subscribers
            .lock()
            .expect("hub lock")
            .keys()
            .copied()
            .collect()
    }

    /// Hands one event to its user's streams. A stream whose buffer is full is dropped:
    /// its client reconnects and resumes from its last id instead of growing memory.
    fn dispatch(&self, event: StoredEvent) {
        let mut subs = self.inner.subscribers.lock().expect("hub lock");
        let Some(list) = subs.get_mut(&event.user_id) else {
            return;
        };
        let event = Arc::new(event);
        list.retain(|s| match s.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    user_id = event.user_id,
                    "event stream too slow; disconnecting it"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        // Dropping the last subscriber here leaves presence to the Subscription's drop.
    }

    async fn tail(self, mut cursor: i64, poll_interval: Duration) {
        let mut gap: Option<(i64, Instant)> = None;
        loop {
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(poll_interval) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            loop {
                let batch = match event_store::after(&self.inner.db, cursor, TAIL_BATCH).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::warn!(error = %e, "event tailer query failed; retrying");
                        break;
                    }
                };
                let full = batch.len() as i64 == TAIL_BATCH;
                let newest = batch.last().map_or(cursor, |e| e.event_id);
                let mut stalled = false;
                for event in batch {
                    if event.event_id != cursor + 1 {
                        let waited_out = matches!(gap, Some((at, since)) if at == cursor && since.elapsed() >= GAP_GRACE);
                        if !waited_out {
                            if !matches!(gap, Some((at, _)) if at == cursor) {
                                gap = Some((cursor, Instant::now()));
                            }
                            stalled = true;
                            break;
                        }
                        tracing::debug!(
                            from = cursor + 1,
                            to = event.event_id - 1,
                            "skipping event ids never committed"
                        );
                    }
                    cursor = event.event_id;
                    self.dispatch(event);
                }
                self.inner.watermark.store(cursor, Ordering::Release);
                crate::monitoring::tailer_lag(
                    newest - cursor,
                    gap.filter(|_| stalled).map(|(_, since)| since.elapsed()),
                );
                if stalled || !full {
                    break;
                }
            }
        }
    }

    /// Background upkeep: presence heartbeats and expiry, and pruning old events.
    async fn maintain(self, retention: Duration) {
        let mut heartbeat = tokio::time::interval(presence::HEARTBEAT);
        let mut prune = tokio::time::interval(Duration::from_secs(600));
        loop {
            tokio::select! {
                _ = heartbeat.tick() => self.inner.presence.heartbeat(&self).await,
                _ = prune.tick() => {
                    let cutoff = crate::db::now() - retention;
                    match event_store::prune_older_than(&self.inner.db, cutoff).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "pruned old events"),
                        Err(e) => tracing::warn!(error = %e, "pruning events failed"),
                    }
                }
                // This process's presence rows are left to expire: its clients reconnect to
                // another process within the TTL, and nobody sees them flicker offline.
                _ = self.inner.shutdown.cancelled() => return,
            }
        }
    }
}
