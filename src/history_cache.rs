//! Recent history from memory: each process keeps the latest page of the conversations
//! people open, so that opening a chat (the API's first page, the chat screen) does not
//! ask the database every time.
//!
//! # What is cached
//!
//! Per conversation (a direct chat's two users, or a group), the rows of the newest
//! page exactly as [`store::messages::history`](crate::store::messages::history) read
//! them: the messages with their attachments, replies' quotes, mentions and reactions
//! (all the same for every reader), and whether older messages exist. Not cached: who
//! may read the conversation. Every request still makes the access checks it made
//! before (a direct chat is always the reader's own; a group asks `require_member`);
//! the cache only answers what the database would have answered *after* them. The one
//! per-reader field, `mentioned`, is set again for each reader from the cached mentions.
//! Only the latest page comes from memory; a page with a cursor goes to the database.
//! Entries are weighed by their approximate size in bytes and the least recently useful
//! ones evicted beyond `HISTORY_CACHE_MB` (quick_cache); 0 turns the cache off.
//!
//! # How it stays in step with the database
//!
//! Entries are never updated in place; anything that may change a conversation's rows
//! *invalidates* it, and the next read goes to the database and fills it again.
//! - Writes made through this process (sends, edits, deletes, reactions, attachments
//!   linked, messages marked seen, an account deleted) invalidate their conversation
//!   right after they commit, before they answer: a reader on this process sees its own
//!   writes at once.
//! - Writes made by any process reach every process's event tailer
//!   ([`EventHub`](crate::events::EventHub)), which reads every user's events from the
//!   outbox table and hands each batch to [`HistoryCache::observe`]: `message`,
//!   `message_edited`, `message_deleted`, `reaction`, a direct chat's `seen`,
//!   `group_chat` (membership, renames, a member's account deleted) and `friendship`
//!   invalidate the conversation they name. Kinds that change no message (typing,
//!   presence, friend requests) are ignored; a kind this module does not know, or one
//!   whose payload it cannot read, empties the whole cache.
//!
//! Invalidation bumps a *generation* counter of the conversation (in a fixed table of
//! counters, conversations hashed onto them: a collision only costs a needless miss),
//! and emptying the cache bumps a global *epoch*. A database read notes both before it
//! starts ([`Ticket`]) and installs its rows tagged with them; an entry is served only
//! while both are unchanged. So a read that began before an invalidation can never make
//! its older rows current, whichever finishes first, and no lock is shared between
//! readers and writers.
//!
//! # When it falls back to the database
//!
//! A cold or evicted entry; one invalidated since it was read; a limit larger than the
//! entry holds; an entry older than [`MAX_AGE`] (a bound on staleness should an event
//! ever be missed); and whenever the tailer is not known to be current: before its first
//! tick, after a tick that failed (which also empties the cache), or when no tick has
//! completed for [`HistoryCache::new`]'s `stale_after`. Other processes' writes are
//! therefore seen within one tailer tick, as live events are.
//!
//! # The one known gap
//!
//! An account deleted through another process changes conversations that hear no event
//! of it: its direct chats with people who were no longer its friends (deleted), and
//! its reactions and mentions in groups it had already left (deleted with the account by
//! the foreign keys). The process that deletes it empties its own cache; the others
//! serve such an entry until it ages out ([`MAX_AGE`]), and only to people who could
//! already read it.

use std::{
    hash::{BuildHasher, Hash},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde::Deserialize;

use crate::store::{
    events::{Audience, StoredEvent},
    messages::{Conversation, GroupId, Message},
    users::UserId,
};

/// Generation counters; conversations share them by hash.
const GENERATIONS: usize = 4096;
/// An entry is read again from the database at least this often.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// What an entry costs beyond its messages (key, counters, the cache's own slot).
const ENTRY_OVERHEAD: u64 = 128;

/// Which conversation an entry holds: a direct chat by its two users (lower id first,
/// so both sides share it), or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    Direct(UserId, UserId),
    Group(GroupId),
}

impl Key {
    /// The conversation `me` opens.
    pub fn of(me: UserId, conversation: Conversation) -> Self {
        match conversation {
            Conversation::Direct(other) => Self::direct(me, other),
            Conversation::Group(group) => Self::Group(group),
        }
    }

    fn direct(a: UserId, b: UserId) -> Self {
        Self::Direct(a.min(b), a.max(b))
    }

    /// The conversation a message (or an event's message fields) belongs to.
    fn of_fields(
        group: Option<GroupId>,
        sender: Option<UserId>,
        reciever: Option<UserId>,
    ) -> Option<Self> {
        match (group, sender, reciever) {
            (Some(group), _, _) => Some(Self::Group(group)),
            (None, Some(sender), Some(reciever)) => Some(Self::direct(sender, reciever)),
            _ => None,
        }
    }

    pub fn of_message(m: &Message) -> Option<Self> {
        Self::of_fields(m.group_chat_id, m.sender_id, m.reciever_id)
    }
}

/// The latest rows of one conversation, newest first, as read at `generation`/`epoch`.
struct Entry {
    rows: Vec<Message>,
    /// The read asked for more rows than it got: there is nothing older.
    exhausted: bool,
    generation: u64,
    epoch: u64,
    read_at: Instant,
    weight: u64,
}

#[derive(Clone)]
struct ByBytes;

impl quick_cache::Weighter<Key, Arc<Entry>> for ByBytes {
    fn weight(&self, _key: &Key, entry: &Arc<Entry>) -> u64 {
        entry.weight
    }
}

/// A database read's claim to fill an entry: the counters as they were before it began.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    key: Key,
    generation: u64,
    epoch: u64,
}

/// The cache of one process; cheap to clone. [`HistoryCache::disabled`] caches nothing.
#[derive(Clone)]
pub struct HistoryCache {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    entries: quick_cache::sync::Cache<Key, Arc<Entry>, ByBytes>,
    generations: Box<[AtomicU64]>,
    hasher: std::hash::RandomState,
    epoch: AtomicU64,
    /// When the tailer last completed a tick without error (ms since `started`; 0: never).
    tailer_ok_ms: AtomicU64,
    started: Instant,
    stale_after: Duration,
}

impl HistoryCache {
    /// A cache of at most `budget_mb` MB (10^6 bytes) of messages; 0 disables it.
    /// Entries are served only while the tailer completed a tick within `stale_after`.
    pub fn new(budget_mb: u64, stale_after: Duration) -> Self {
        if budget_mb == 0 {
            return Self::disabled();
        }
        let bytes = budget_mb.saturating_mul(1_000_000);
        // About 20 KB for a conversation's page of 50 short messages.
        let estimated_items = (bytes / 20_000).clamp(16, 1 << 20) as usize;
        Self {
            inner: Some(Arc::new(Inner {
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

    /// The newest `limit + 1` rows (fewer when the conversation has fewer), newest first,
    /// when the cache is sure of them; `None` sends the caller to the database.
    pub fn latest(&self, key: Key, limit: usize) -> Option<Vec<Message>> {
        let inner = self.inner.as_ref()?;
        if !inner.tailer_is_current() {
            crate::monitoring::history_cache(false);
            return None;
        }
        let hit = inner.entries.get(&key).filter(|entry| {
            entry.epoch == inner.epoch.load(Ordering::SeqCst)
                && entry.generation == inner.generation(key).load(Ordering::SeqCst)
                && entry.read_at.elapsed() < MAX_AGE
                && (entry.exhausted || entry.rows.len() > limit)
        });
        crate::monitoring::history_cache(hit.is_some());
        hit.map(|entry| entry.rows.iter().take(limit + 1).cloned().collect())
    }

    /// Taken before reading the latest page from the database; `None` when disabled.
    pub fn ticket(&self, key: Key) -> Option<Ticket> {
        let inner = self.inner.as_ref()?;
        Some(Ticket {
            key,
            // The epoch first: emptying bumps it before anything else could be read.
            epoch: inner.epoch.load(Ordering::SeqCst),
            generation: inner.generation(key).load(Ordering::SeqCst),
        })
    }

    /// Keeps what a read made under `ticket` found: `rows` newest first, from asking for
    /// `asked` rows. Rows read before an invalidation are dropped here or never served.
    pub fn install(&self, ticket: Ticket, rows: &[Message], asked: usize) {
        let Some(inner) = &self.inner else { return };
        if ticket.epoch != inner.epoch.load(Ordering::SeqCst)
            || ticket.generation != inner.generation(ticket.key).load(Ordering::SeqCst)
        {
            return;
        }
        let rows: Vec<Message> = rows
            .iter()
            .map(|m| {
                let mut m = m.clone();
                // Per reader: set again on every hit.
                m.rich.mentioned = false;
                m.rich.html = None;
                m
            })
            .collect();
        let weight = ENTRY_OVERHEAD + rows.iter().map(approximate_size).sum::<u64>();
        inner.entries.insert(
            ticket.key,
            Arc::new(Entry {
                exhausted: rows.len() < asked,
                rows,
                generation: ticket.generation,
                epoch: ticket.epoch,
                read_at: Instant::now(),
                weight,
            }),
        );
    }

    /// Invalidates one conversation: called after a write to it commits.
    pub fn forget(&self, key: Key) {
        if let Some(inner) = &self.inner {
            inner.generation(key).fetch_add(1, Ordering::SeqCst);
            inner.entries.remove(&key);
        }
    }

    /// Invalidates the conversation of `message`; every conversation if it names none.
    pub fn forget_message(&self, message: &Message) {
        match Key::of_message(message) {
            Some(key) => self.forget(key),
            None => self.forget_all(),
        }
    }

    /// Invalidates everything: entries read before this are never served.
    pub fn forget_all(&self) {
        if let Some(inner) = &self.inner {
            inner.epoch.fetch_add(1, Ordering::SeqCst);
            inner.entries.clear();
        }
    }

    /// A batch of events the tailer read (every user's, in position order): invalidates
    /// the conversations they change.
    pub fn observe(&self, events: &[StoredEvent]) {
        if self.inner.is_none() {
            return;
        }
        for event in events {
            match affected(event) {
                Affects::Nothing => {}
                Affects::One(key) => self.forget(key),
                Affects::Unknown => {
                    tracing::debug!(kind = %event.kind, "an event the history cache cannot place; emptying it");
                    self.forget_all();
                }
            }
        }
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

impl Inner {
    fn generation(&self, key: Key) -> &AtomicU64 {
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

enum Affects {
    Nothing,
    One(Key),
    Unknown,
}

/// The message fields every message event carries (`message`, `message_edited`,
/// `message_deleted`, `reaction`), and those of `seen`, `group_chat` and `friendship`.
#[derive(Deserialize)]
struct Fields {
    group_chat_id: Option<GroupId>,
    sender_id: Option<UserId>,
    reciever_id: Option<UserId>,
    user_id: Option<UserId>,
}

/// Which conversation an event's change touches.
fn affected(event: &StoredEvent) -> Affects {
    let fields = || serde_json::from_str::<Fields>(&event.payload).ok();
    // A direct chat's events go to a user each: the recipient is one of its two sides.
    let recipient = match event.audience {
        Audience::User(id) => Some(id),
        Audience::Group { .. } => None,
    };
    match event.kind.as_str() {
        "typing" | "presence" | "status_ping" | "status_pong" | "friend_request" => {
            Affects::Nothing
        }
        "message" | "message_edited" | "message_deleted" | "reaction" => fields()
            .and_then(|f| Key::of_fields(f.group_chat_id, f.sender_id, f.reciever_id))
            .map_or(Affects::Unknown, Affects::One),
        // A group's read marker is the member's, not the messages'; a direct chat's
        // `seen` flags are on its messages (the reader is `user_id`, the other side hears).
        "seen" => match fields() {
            Some(Fields {
                group_chat_id: Some(_),
                ..
            }) => Affects::Nothing,
            Some(Fields {
                user_id: Some(reader),
                ..
            }) => recipient.map_or(Affects::Unknown, |to| Affects::One(Key::direct(reader, to))),
            _ => Affects::Unknown,
        },
        // Membership and renames change no message, but a member's account deleted
        // turns their messages into a deleted user's: invalidate the group.
        "group_chat" => fields()
            .and_then(|f| f.group_chat_id)
            .map_or(Affects::Unknown, |g| Affects::One(Key::Group(g))),
        // An account deleted takes its direct messages with it; its friends hear this.
        "friendship" => match (fields().and_then(|f| f.user_id), recipient) {
            (Some(other), Some(to)) => Affects::One(Key::direct(other, to)),
            _ => Affects::Unknown,
        },
        _ => Affects::Unknown,
    }
}

/// Roughly the bytes a cached message holds, for the memory budget.
fn approximate_size(m: &Message) -> u64 {
    let strings = m.content.len()
        + m.sender_username.as_ref().map_or(0, String::len)
        + m.attachments
            .iter()
            .map(|a| {
                std::mem::size_of_val(a)
                    + a.id.len() * 4
                    + a.name.len()
                    + a.content_type.len()
                    + a.kind.len()
                    + 80
            })
            .sum::<usize>()
        + m.rich
            .reactions
            .iter()
            .map(|r| {
                r.emoji.len() + 64 + r.users.iter().map(|u| u.username.len() + 40).sum::<usize>()
            })
            .sum::<usize>()
        + m.rich
            .mentions
            .iter()
            .map(|u| u.username.len() + 40)
            .sum::<usize>()
        + m.rich.reply_to.as_ref().map_or(0, |q| {
            q.excerpt.len() + q.sender_username.as_ref().map_or(0, String::len) + 64
        });
    (std::mem::size_of::<Message>() + strings) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: i32, group: Option<GroupId>) -> Message {
        Message {
            message_id: id,
            sender_id: Some(1),
            sender_username: Some("ann".into()),
            reciever_id: group.is_none().then_some(2),
            content: format!("message {id}"),
            group_chat_id: group,
            created_date_time: crate::db::now(),
            last_edited_date_time: None,
            seen: Some(false),
            attachments: Vec::new(),
            rich: Default::default(),
        }
    }

    fn cache() -> HistoryCache {
        let cache = HistoryCache::new(1, Duration::from_secs(60));
        cache.tailer_ok();
        cache
    }

    fn event(user_id: i32, kind: &str, payload: serde_json::Value) -> StoredEvent {
        StoredEvent {
            position: 1,
            audience: Audience::User(user_id),
            kind: kind.into(),
            payload: payload.to_string(),
        }
    }

    #[test]
    fn a_read_that_began_before_an_invalidation_is_never_served() {
        let cache = cache();
        let key = Key::Group(7);
        let ticket = cache.ticket(key).unwrap();
        cache.forget(key);
        cache.install(ticket, &[message(1, Some(7))], 51);
        assert!(cache.latest(key, 50).is_none());
        // Installed first, invalidated after: not served either.
        let ticket = cache.ticket(key).unwrap();
        cache.install(ticket, &[message(1, Some(7))], 51);
        assert!(cache.latest(key, 50).is_some());
        let ticket = cache.ticket(key).unwrap();
        cache.forget_all();
        cache.install(ticket, &[message(1, Some(7))], 51);
        assert!(cache.latest(key, 50).is_none());
    }

    #[test]
    fn a_page_larger_than_the_entry_goes_to_the_database() {
        let cache = cache();
        let key = Key::Direct(1, 2);
        let rows: Vec<Message> = (1..=11).rev().map(|id| message(id, None)).collect();
        cache.install(cache.ticket(key).unwrap(), &rows, 11);
        assert_eq!(cache.latest(key, 10).unwrap().len(), 11);
        assert_eq!(cache.latest(key, 5).unwrap().len(), 6);
        assert!(cache.latest(key, 20).is_none(), "older messages may exist");
        // Fewer rows than asked for: that is the whole conversation.
        cache.install(cache.ticket(key).unwrap(), &rows[..3], 11);
        assert_eq!(cache.latest(key, 50).unwrap().len(), 3);
    }

    #[test]
    fn nothing_is_served_unless_the_tailer_is_current() {
        let cache = HistoryCache::new(1, Duration::from_secs(60));
        let key = Key::Group(1);
        cache.install(cache.ticket(key).unwrap(), &[], 51);
        assert!(cache.latest(key, 50).is_none(), "before the first tick");
        cache.tailer_ok();
        cache.install(cache.ticket(key).unwrap(), &[], 51);
        assert!(cache.latest(key, 50).is_some());
        cache.tailer_failed();
        assert!(cache.latest(key, 50).is_none(), "after a failed tick");
        assert!(HistoryCache::new(0, Duration::from_secs(1))
            .ticket(key)
            .is_none());
    }

    #[test]
    fn events_invalidate_the_conversation_they_name() {
        let cache = cache();
        let direct = Key::of(2, Conversation::Direct(1));
        assert_eq!(direct, Key::Direct(1, 2));
        let fill = |key| cache.install(cache.ticket(key).unwrap(), &[], 51);
        let check = |ev: StoredEvent, key: Key, invalidated: bool| {
            fill(key);
            cache.observe(&[ev]);
            assert_eq!(cache.latest(key, 50).is_none(), invalidated, "{key:?}");
        };
        let edited = serde_json::to_value(message(3, None)).unwrap();
        check(event(2, "message_edited", edited), direct, true);
        check(event(9, "typing", serde_json::json!({})), direct, false);
        check(
            event(
                1,
                "seen",
                serde_json::json!({"message_id": 3, "user_id": 2}),
            ),
            direct,
            true,
        );
        check(
            event(
                5,
                "group_chat",
                serde_json::json!({"group_chat_id": 4, "change": "removed"}),
            ),
            Key::Group(4),
            true,
        );
        check(
            event(
                5,
                "reaction",
                serde_json::json!({"message_id": 3, "group_chat_id": 4}),
            ),
            Key::Group(4),
            true,
        );
        check(
            event(5, "something_new", serde_json::json!({})),
            Key::Group(4),
            true,
        );
    }
}
