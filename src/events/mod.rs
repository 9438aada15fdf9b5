//! Live events: every process tails the outbox table and hands each new event to the
//! streams it holds for that event's user.
//!
//! # What a stream's `id:` promises
//!
//! Every event has a *position*, and a stream sends a user's events in position order,
//! each with its position as `id:`. Positions follow commit order: an event gets one only
//! once its transaction has committed, and no event is ever given a position below one
//! already given. So whoever has seen position `n` has seen every event of theirs up to
//! `n`, and resuming from `n` (`Last-Event-ID`) replays exactly the rest: nothing lost,
//! nothing repeated, however late a transaction commits.
//!
//! Why not the row's auto-increment id: it is taken at `INSERT`, and with concurrent
//! transactions an id can commit after higher ones (a slow transaction; a rolled-back one
//! never commits at all). A tailer that advances over the ids must then either wait at
//! every gap (and a rolled-back id would stall everyone) or skip it (and the event, when
//! it commits, is lost for live delivery and for resuming clients, already past it). The
//! earlier design waited three seconds and then skipped.
//!
//! * SQLite has one writer at a time and takes the id inside its transaction: ids become
//!   visible in the order they were taken and a rolled-back id is reused, so `event_id`
//!   *is* the position and no gap can occur.
//! * MySQL: rows are written without a position; each tailer tick first numbers the rows
//!   committed since (`store::events::assign_positions`: one short transaction, the
//!   `event_sequence` row as lock and counter, rows read with a non-locking read and
//!   updated by primary key in one statement), then reads the next positions. A
//!   transaction that holds an event row open holds no position: everyone else's events
//!   go out at the next tick, and its own when it commits, with a position above
//!   everything sent so far. A rolled-back row never gets one.
//!
//! Both polls are ranges of an index on the position; numbering is one statement per
//! batch, never a query per event.
//!
//! # Groups: fan-out on read
//!
//! An event of a group (a message, an edit, a reaction, a read marker, typing, a rename, a
//! member joining or leaving) is one row naming the group, however many members it has, so
//! a send to a thousand members stays one short transaction. Each process routes such a
//! row to the streams it holds of the group's members ([`store::events::Audience::Group`]),
//! from a map of group members it loads when a group first speaks (one query for every
//! group of a batch). A membership change is a `group_chat` event (to the group, and to
//! the member added or removed in a row of their own); the tailer drops the group's entry
//! when it reads one, before it routes anything after it, so a member added hears the next
//! message and a member removed does not. An event routed with members loaded a moment
//! after a change (before the tailer reached it) can reach a member just added, who may
//! read the group's history anyway, or miss one just removed, who no longer may. A
//! resuming stream reads its own rows and those of the groups it is a member of now.
//!
//! A direct chat's events are one row for both sides likewise
//! ([`store::events::Audience::Pair`]): routed to both users' streams, and replayed to
//! each from an index of its own.
//!
//! # Subscribing without a race
//!
//! A stream registers and learns its starting point in one step ([`EventHub::subscribe`]),
//! under the same lock under which the tailer hands out events and advances
//! [`EventHub::watermark`]: every event at or below the position a stream starts from was
//! dispatched before it registered (its replay reads those from the table), every one
//! above reaches its channel.

pub mod presence;
pub mod stream;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::{
    cache::Caches,
    db::Db,
    store::{
        self,
        account_data::ACCOUNT_DELETED,
        events::{self as event_store, Audience, GroupDelivery, StoredEvent},
    },
};

/// Events a slow stream may have queued before it is disconnected (it then resumes). More
/// than one tailer batch: a batch is handed out at once, and may be all one user's (a
/// thousand friends' streams opening after a deploy, each telling them "online"), which a
/// stream that reads at once must not be dropped for. A channel allocates as it fills, so
/// an idle stream costs no more for it.
pub const STREAM_BUFFER: usize = 2 * TAIL_BATCH as usize;
/// Events read per query by the tailer.
pub const TAIL_BATCH: i64 = 1000;
/// Events numbered per statement on MySQL.
const NUMBERING_BATCH: i64 = 500;

/// MySQL: gives every event committed since the last call its position, a batch per
/// statement; returns how many (nothing to do on SQLite). The first half of a tailer tick.
/// At most [`NUMBERING_PER_TICK`] at a time, so that a backlog (the database was slow
/// or away) does not hold up delivering what is already numbered.
pub async fn number_committed(db: &Db) -> Result<usize, sqlx::Error> {
    let mut numbered = 0;
    while numbered < NUMBERING_PER_TICK {
        let n = event_store::assign_positions(db, NUMBERING_BATCH).await?;
        numbered += n;
        if (n as i64) < NUMBERING_BATCH {
            break;
        }
    }
    Ok(numbered)
}

/// The most events [`number_committed`] numbers in one call; a tailer that reached it
/// ticks again at once.
pub const NUMBERING_PER_TICK: usize = 20 * NUMBERING_BATCH as usize;

/// How often a process prunes the outbox.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Which events are kept for streams that resume: the younger than `max_age`, and of
/// those at most the newest `max_rows` (`EVENT_RETENTION_HOURS`, `EVENT_RETENTION_ROWS`).
/// A stream further behind is told to reload.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_rows: u32,
}

#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Arc<StoredEvent>>,
}

/// The streams of this process and how far events have been handed to them, behind one
/// lock, so that registering and dispatching cannot interleave.
struct Registry {
    streams: HashMap<i32, Vec<Subscriber>>,
    /// Every event up to this position has been handed to the streams registered then.
    dispatched: i64,
    /// The members of the groups whose events were routed lately, kept in step by the
    /// tailer (see "Groups" above); bounded by [`GROUPS_REMEMBERED`].
    group_members: HashMap<i32, Arc<[i32]>>,
}

/// How long a process trusts the group members it loaded without reading them again.
const GROUP_MEMBERS_TTL: Duration = Duration::from_secs(60);
/// The most groups whose members a process keeps in memory; past it, it forgets them all
/// and loads again those that speak.
const GROUPS_REMEMBERED: usize = 10_000;

struct Inner {
    db: Db,
    registry: Mutex<Registry>,
    next_subscriber: AtomicU64,
    wake: Notify,
    shutdown: CancellationToken,
    presence: presence::Presence,
    /// Told of every event read and of every failed tick, to stay in step.
    caches: Caches,
    /// Test knob: the tailer skips its ticks while set ([`EventHub::hold_tailer`]).
    held: AtomicBool,
}

/// A stream's registration; dropping it unregisters (and may start the offline timer).
pub struct Subscription {
    pub events: mpsc::Receiver<Arc<StoredEvent>>,
    /// Every event above this position reaches `events`; every one up to it was
    /// dispatched before this subscription existed.
    pub live_after: i64,
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
        retention: Retention,
        poll_interval: Duration,
        presence_grace: Duration,
        caches: Caches,
        shutdown: CancellationToken,
    ) -> Result<Self, sqlx::Error> {
        // Events committed but not yet numbered get positions above this one.
        let start = event_store::max_position(&db).await?;
        let process_id = uuid::Uuid::new_v4().to_string();
        let hub = EventHub {
            inner: Arc::new(Inner {
                db: db.clone(),
                presence: presence::Presence::new(db, process_id, presence_grace),
                registry: Mutex::new(Registry {
                    streams: HashMap::new(),
                    dispatched: start,
                    group_members: HashMap::new(),
                }),
                next_subscriber: AtomicU64::new(1),
                wake: Notify::new(),
                shutdown,
                caches,
                held: AtomicBool::new(false),
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

    /// The position up to which this process has handed out events: where a page
    /// rendered now starts its stream.
    pub fn watermark(&self) -> i64 {
        self.registry().dispatched
    }

    /// A test knob (the integration suite drives the real server): while held, the
    /// tailer reads nothing, so what a test sees next comes from the request path alone
    /// (a write's own invalidation of the history cache, not the tailer's).
    #[doc(hidden)]
    pub fn hold_tailer(&self, held: bool) {
        self.inner.held.store(held, Ordering::SeqCst);
    }

    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.registry.lock().expect("hub lock")
    }

    /// How many streams this process holds.
    pub fn stream_count(&self) -> usize {
        self.registry().streams.values().map(Vec::len).sum()
    }

    /// Registers a stream for `user_id`, and tells it from which position on events will
    /// reach it ([`Subscription::live_after`]), in the same step.
    pub fn subscribe(&self, user_id: i32) -> Subscription {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let id = self.inner.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let (first, live_after) = {
            let mut registry = self.registry();
            let live_after = registry.dispatched;
            let list = registry.streams.entry(user_id).or_default();
            list.push(Subscriber { id, tx });
            (list.len() == 1, live_after)
        };
        if first {
            self.inner.presence.stream_opened(user_id, self.clone());
        }
        Subscription {
            events: rx,
            live_after,
            hub: self.clone(),
            user_id,
            id,
        }
    }

    fn unsubscribe(&self, user_id: i32, id: u64) {
        let last = {
            let mut registry = self.registry();
            let Some(list) = registry.streams.get_mut(&user_id) else {
                return;
            };
            list.retain(|s| s.id != id);
            if list.is_empty() {
                registry.streams.remove(&user_id);
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
        self.registry().streams.contains_key(&user_id)
    }

    pub(crate) fn users_with_streams(&self) -> Vec<i32> {
        self.registry().streams.keys().copied().collect()
    }

    /// Hands a batch of events, in position order, to their users' streams, and advances
    /// the watermark with them under the same lock; a group's event goes to the streams of
    /// its members, who must be known (see [`Self::route`]). A stream whose buffer is full
    /// is dropped: its client reconnects and resumes from its last id instead of growing
    /// memory.
    fn dispatch(&self, batch: Vec<StoredEvent>) {
        let mut registry = self.registry();
        let Registry {
            streams,
            dispatched,
            group_members,
        } = &mut *registry;
        for event in batch {
            let position = event.position;
            match event.audience {
                Audience::Pair(a, b) => {
                    let event = Arc::new(event);
                    for user_id in [a, b] {
                        if let Some(list) = streams.get_mut(&user_id) {
                            deliver(user_id, list, event.clone());
                        }
                    }
                }
                Audience::User(user_id) => {
                    let deleted = event.kind == ACCOUNT_DELETED;
                    if let Some(list) = streams.get_mut(&user_id) {
                        deliver(user_id, list, Arc::new(event));
                    }
                    // The account is gone: its streams end here, after this last event.
                    if deleted {
                        streams.remove(&user_id);
                    }
                }
                Audience::Group { group_chat_id, .. } => {
                    let members = group_members.get(&group_chat_id);
                    if members.is_none() {
                        // `route` loads every group of a batch first: cannot happen.
                        tracing::error!(group_chat_id, "a group event with its members unknown");
                    }
                    let delivery = GroupDelivery::new(event);
                    for &member in members.iter().flat_map(|m| m.iter()) {
                        if let Some(list) = streams.get_mut(&member) {
                            if let Some(event) = delivery.for_member(member) {
                                deliver(member, list, event);
                            }
                        }
                    }
                }
            }
            // Dropping the last subscriber here leaves presence to the Subscription's drop.
            *dispatched = (*dispatched).max(position);
        }
    }

    /// Dispatches a batch in order, loading the members of its groups first, and
    /// forgetting a group's members at each membership change, so that what follows it is
    /// routed to the members after the change. Returns how far it got: on a database error
    /// the events from the failed load on are left for the next tick.
    async fn route(&self, mut batch: Vec<StoredEvent>) -> Result<(), (i64, sqlx::Error)> {
        while !batch.is_empty() {
            // Up to and including the next membership change.
            let cut = batch
                .iter()
                .position(|e| e.kind == "group_chat")
                .map_or(batch.len(), |i| i + 1);
            let rest = batch.split_off(cut);
            let first = batch[0].position;
            if let Err(e) = self.load_members(&batch).await {
                return Err((first - 1, e));
            }
            let changed = batch.last().and_then(group_changed);
            self.dispatch(batch);
            if let Some(group) = changed {
                self.registry().group_members.remove(&group);
            }
            batch = rest;
        }
        Ok(())
    }

    /// Loads the members of the groups `events` speak to that are not known yet: one
    /// query for all of them. Only the tailer changes the map, so what this loads is there
    /// when the batch is dispatched.
    async fn load_members(&self, events: &[StoredEvent]) -> Result<(), sqlx::Error> {
        let mut speaking: Vec<i32> = events
            .iter()
            .filter_map(|e| match e.audience {
                Audience::Group { group_chat_id, .. } => Some(group_chat_id),
                Audience::User(_) | Audience::Pair(..) => None,
            })
            .collect();
        speaking.sort_unstable();
        speaking.dedup();
        let missing: Vec<i32> = {
            let mut registry = self.registry();
            let known = &mut registry.group_members;
            let missing: Vec<i32> = speaking
                .iter()
                .copied()
                .filter(|g| !known.contains_key(g))
                .collect();
            if known.len() + missing.len() <= GROUPS_REMEMBERED {
                missing
            } else {
                known.clear();
                speaking
            }
        };
        if missing.is_empty() {
            return Ok(());
        }
        let loaded = store::messages::members_of_groups(&self.inner.db, &missing).await?;
        let mut registry = self.registry();
        for group in missing {
            let members = loaded.get(&group).map_or(&[][..], Vec::as_slice);
            registry.group_members.insert(group, members.into());
        }
        Ok(())
    }

    /// Forgets every group's members, to be loaded again as they speak: a safety net for a
    /// membership change whose event never reached the tailer (pruned while it was far
    /// behind, or a row changed by hand).
    fn forget_group_members(&self) {
        self.registry().group_members.clear();
    }

    async fn tail(self, mut cursor: i64, poll_interval: Duration) {
        let mut members_loaded = Instant::now();
        loop {
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(poll_interval) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            if self.inner.held.load(Ordering::SeqCst) {
                continue;
            }
            let tick = Instant::now();
            if tick.duration_since(members_loaded) > GROUP_MEMBERS_TTL {
                self.forget_group_members();
                members_loaded = tick;
            }
            let mut behind = 0i64;
            let mut failed = false;
            // MySQL: number what has committed since the last tick (nothing on SQLite).
            let caught_up = match number_committed(&self.inner.db).await {
                Ok(NUMBERING_PER_TICK) => {
                    self.wake(); // more to number: again at once
                    false
                }
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "numbering committed events failed; retrying");
                    failed = true;
                    false
                }
            };
            loop {
                let batch = match event_store::after(&self.inner.db, cursor, TAIL_BATCH).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::warn!(error = %e, "event tailer query failed; retrying");
                        failed = true;
                        break;
                    }
                };
                let full = batch.len() as i64 == TAIL_BATCH;
                let Some(last) = batch.last() else { break };
                // Positions have no gaps but for pruned or deleted rows: nothing to wait for.
                let last = last.position;
                behind += batch.len() as i64;
                crate::monitoring::tailer_lag(behind, tick.elapsed());
                self.inner.caches.observe(&batch);
                if let Err((reached, e)) = self.route(batch).await {
                    tracing::warn!(error = %e, "loading group members failed; retrying");
                    cursor = reached;
                    failed = true;
                    break;
                }
                cursor = last;
                if !full {
                    break;
                }
            }
            // The caches serve only while every event committed is being seen: not
            // while numbering is behind either.
            if failed {
                self.inner.caches.tailer_failed();
            } else if caught_up {
                self.inner.caches.tailer_ok();
            }
        }
    }

    /// Background upkeep: presence heartbeats and expiry, and pruning old events (every
    /// minute, so that each run deletes a minute's worth, in batches).
    async fn maintain(self, retention: Retention) {
        let mut heartbeat = tokio::time::interval(presence::HEARTBEAT);
        let mut prune = tokio::time::interval(PRUNE_INTERVAL);
        loop {
            tokio::select! {
                _ = heartbeat.tick() => self.inner.presence.heartbeat(&self).await,
                _ = prune.tick() => {
                    let cutoff = crate::db::now() - retention.max_age;
                    match event_store::prune(&self.inner.db, cutoff, retention.max_rows.into()).await {
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

/// Hands `event` to each of `user_id`'s streams, dropping those that are full or gone.
fn deliver(user_id: i32, streams: &mut Vec<Subscriber>, event: Arc<StoredEvent>) {
    streams.retain(|s| match s.tx.try_send(event.clone()) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!(user_id, "event stream too slow; disconnecting it");
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    });
}

/// The group whose membership (or existence) a `group_chat` event reports.
fn group_changed(event: &StoredEvent) -> Option<i32> {
    #[derive(serde::Deserialize)]
    struct Change {
        group_chat_id: i32,
    }
    (event.kind == "group_chat")
        .then(|| serde_json::from_str::<Change>(&event.payload).ok())
        .flatten()
        .map(|c| c.group_chat_id)
}
