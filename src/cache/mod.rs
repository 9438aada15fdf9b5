//! Hot reads from memory, kept in step with every process's writes by the event tailer.
//!
//! Two caches share one discipline ([`Fresh`]):
//! - [`history`]: the latest page of the conversations people open;
//! - [`friend_lists`]: the first page of each of a user's friend lists.
//!
//! # How an entry stays as correct as the database
//!
//! Entries are never updated in place; anything that may change what an entry holds
//! *invalidates* it, and the next read goes to the database and fills it again.
//! - A write made through this process invalidates what it changed right after it
//!   commits, before it answers: a reader on this process sees its own writes at once.
//! - Writes made by any process reach every process's event tailer
//!   ([`EventHub`](crate::events::EventHub)), which reads every user's events from the
//!   outbox table and hands each batch to [`Caches::observe`]; each cache invalidates what
//!   the events name.
//!
//! Invalidation bumps a *generation* counter of the key (in a fixed table of counters,
//! keys hashed onto them: a collision only costs a needless miss), and emptying a cache
//! bumps a global *epoch*. A database read notes both before it starts ([`Ticket`]) and
//! installs its value tagged with them; an entry is served only while both are unchanged.
//! So a read that began before an invalidation can never make its older value current,
//! whichever finishes first, and no lock is shared between readers and writers.
//!
//! # When a cache falls back to the database
//!
//! A cold or evicted entry; one invalidated since it was read; an entry older than
//! [`MAX_AGE`] (a bound on staleness should an event ever be missed); and whenever the
//! tailer is not known to be current: before its first tick, after a tick that failed
//! (which also empties the caches), or when no tick has completed for `stale_after`.
//! Other processes' writes are therefore seen within one tailer tick, as live events are.

pub mod friend_lists;
pub mod history;

use std::{
    hash::{BuildHasher, Hash},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::store::events::StoredEvent;

/// Generation counters per cache; keys share them by hash.
const GENERATIONS: usize = 4096;
/// An entry is read again from the database at least this often.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// What an entry costs beyond its value (key, counters, the cache's own slot).
const ENTRY_OVERHEAD: u64 = 128;

/// One value as read at `generation`/`epoch`.
struct Entry<V> {
    value: V,
    generation: u64,
    epoch: u64,
    read_at: Instant,
    weight: u64,
}

#[derive(Clone)]
struct ByBytes;

impl<K, V> quick_cache::Weighter<K, Arc<Entry<V>>> for ByBytes {
    fn weight(&self, _key: &K, entry: &Arc<Entry<V>>) -> u64 {
        entry.weight
    }
}

/// A database read's claim to fill an entry: the counters as they were before it began.
#[derive(Debug, Clone, Copy)]
pub struct Ticket<K> {
    key: K,
    generation: u64,
    epoch: u64,
}

/// Values by key, served only while nothing may have changed them; cheap to clone.
/// A disabled one (a budget of 0) holds nothing.
pub struct Fresh<K, V> {
    inner: Option<Arc<Inner<K, V>>>,
}

impl<K, V> Clone for Fresh<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K, V> {
    /// For the metric: which cache this is.
    name: &'static str,
    entries: quick_cache::sync::Cache<K, Arc<Entry<V>>, ByBytes>,
    generations: Box<[AtomicU64]>,
    hasher: std::hash::RandomState,
    epoch: AtomicU64,
    /// When the tailer last completed a tick without error (ms since `started`; 0: never).
    tailer_ok_ms: AtomicU64,
    started: Instant,
    stale_after: Duration,
}

impl<K, V> Fresh<K, V>
where
    K: Eq + Hash + Clone,
{
    /// At most `budget_mb` MB (10^6 bytes) of entries of about `typical_bytes` each; 0
    /// disables it. Entries are served only while the tailer completed a tick within
    /// `stale_after`.
    pub fn new(
        name: &'static str,
        budget_mb: u64,
        typical_bytes: u64,
        stale_after: Duration,
    ) -> Self {
        if budget_mb == 0 {
            return Self::disabled();
        }
        let bytes = budget_mb.saturating_mul(1_000_000);
        let estimated_items = (bytes / typical_bytes.max(1)).clamp(16, 1 << 20) as usize;
        Self {
            inner: Some(Arc::new(Inner {
                name,
                entries: quick_cache::sync::Cache::with_weighter(estimated_items, bytes, ByBytes),
                generations: (0..GENERATIONS).map(|_| AtomicU64::new(0)).collect(),
                hasher: std::hash::RandomState::new(),
                epoch: AtomicU64::new(0),
                tailer_ok_ms: AtomicU64::new(0),
                started: Instant::now(),
                stale_after,
            })),
        }
    }

    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// What `read` makes of `key`'s value when the cache is sure of it (`read` may still
    /// decline, say for a page larger than the entry); `None` sends the caller to the
    /// database. Counted as a hit or a miss.
    pub fn get<R>(&self, key: &K, read: impl FnOnce(&V) -> Option<R>) -> Option<R> {
        let inner = self.inner.as_ref()?;
        let hit = inner
            .tailer_is_current()
            .then(|| inner.entries.get(key))
            .flatten()
            .filter(|entry| {
                entry.epoch == inner.epoch.load(Ordering::SeqCst)
                    && entry.generation == inner.generation(key).load(Ordering::SeqCst)
                    && entry.read_at.elapsed() < MAX_AGE
            })
            .and_then(|entry| read(&entry.value));
        crate::monitoring::cache_read(inner.name, hit.is_some());
        hit
    }

    /// Taken before reading `key`'s value from the database; `None` when disabled.
    pub fn ticket(&self, key: K) -> Option<Ticket<K>> {
        let inner = self.inner.as_ref()?;
        // The epoch first: emptying bumps it before anything else could be read.
        let epoch = inner.epoch.load(Ordering::SeqCst);
        let generation = inner.generation(&key).load(Ordering::SeqCst);
        Some(Ticket {
            key,
            generation,
            epoch,
        })
    }

    /// Keeps what a read made under `ticket` found, weighing `bytes`. A value read before
    /// an invalidation is dropped here or never served.
    pub fn install(&self, ticket: Ticket<K>, value: V, bytes: u64) {
        let Some(inner) = &self.inner else { return };
        if ticket.epoch != inner.epoch.load(Ordering::SeqCst)
            || ticket.generation != inner.generation(&ticket.key).load(Ordering::SeqCst)
        {
            return;
        }
        inner.entries.insert(
            ticket.key,
            Arc::new(Entry {
                value,
                generation: ticket.generation,
                epoch: ticket.epoch,
                read_at: Instant::now(),
                weight: ENTRY_OVERHEAD + bytes,
            }),
        );
    }

    /// Invalidates one key: called after a write to it commits, or when the tailer reads
    /// an event that changed it.
    pub fn forget(&self, key: &K) {
        if let Some(inner) = &self.inner {
            inner.generation(key).fetch_add(1, Ordering::SeqCst);
            inner.entries.remove(key);
        }
    }

    /// Invalidates everything: entries read before this are never served.
    pub fn forget_all(&self) {
        if let Some(inner) = &self.inner {
            inner.epoch.fetch_add(1, Ordering::SeqCst);
            inner.entries.clear();
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The tailer completed a tick: everything committed before it began has been observed.
    pub fn tailer_ok(&self) {
        if let Some(inner) = &self.inner {
            let ms = inner.started.elapsed().as_millis() as u64;
            inner.tailer_ok_ms.store(ms.max(1), Ordering::SeqCst);
        }
    }

    /// The tailer failed a query: events may have been missed or delayed.
    pub fn tailer_failed(&self) {
        if let Some(inner) = &self.inner {
            inner.tailer_ok_ms.store(0, Ordering::SeqCst);
        }
        self.forget_all();
    }
}

impl<K: Hash, V> Inner<K, V> {
    fn generation(&self, key: &K) -> &AtomicU64 {
        let slot = self.hasher.hash_one(key) as usize % GENERATIONS;
        &self.generations[slot]
    }

    fn tailer_is_current(&self) -> bool {
        let ok = self.tailer_ok_ms.load(Ordering::SeqCst);
        ok != 0
            && self
                .started
                .elapsed()
                .saturating_sub(Duration::from_millis(ok))
                < self.stale_after
    }
}

/// Every cache of a process, as the event tailer tells them what it reads.
#[derive(Clone)]
pub struct Caches {
    pub history: history::HistoryCache,
    pub friend_lists: friend_lists::FriendListCache,
}

impl Caches {
    /// A batch of events the tailer read (every user's, in position order).
    pub fn observe(&self, events: &[StoredEvent]) {
        self.history.observe(events);
        self.friend_lists.observe(events);
    }

    pub fn tailer_ok(&self) {
        self.history.tailer_ok();
        self.friend_lists.tailer_ok();
    }

    pub fn tailer_failed(&self) {
        self.history.tailer_failed();
        self.friend_lists.tailer_failed();
    }
}
