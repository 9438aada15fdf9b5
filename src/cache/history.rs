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
//! As every cache here does (see [`crate::cache`]): writes made through this process
//! (sends, edits, deletes, reactions, attachments linked, messages marked seen, an
//! account deleted) invalidate their conversation right after they commit; the tailer's
//! events invalidate what other processes changed: `message`, `message_edited`,
//! `message_deleted`, `reaction`, a direct chat's `seen`, `group_chat` (membership,
//! renames, a member's account deleted) and `friendship` invalidate the conversation they
//! name. Kinds that change no message (typing, presence, friend requests, friend lists)
//! are ignored; a kind this module does not know, or one whose payload it cannot read,
//! empties the whole cache. Beyond that, an entry is served only when it holds at least
//! the page asked for.
//!
//! # An account deleted
//!
//! An account deleted changes conversations that hear no event of their own: its direct
//! chats with people who were no longer its friends (deleted), and its reactions and
//! mentions in groups it had already left (deleted with the account by the foreign keys).
//! So its deletion writes `account_deleted`, and every process empties its cache when its
//! tailer reads it (the one that deleted it, at once). Deletions are rare; a full refill
//! costs a database read per open conversation.

use std::time::Duration;

use serde::Deserialize;

use super::{Fresh, Ticket as FreshTicket};
use crate::store::{
    account_data::ACCOUNT_DELETED,
    events::{Audience, StoredEvent},
    messages::{Conversation, GroupId, Message},
    users::UserId,
};

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

/// The latest rows of one conversation, newest first.
struct Latest {
    rows: Vec<Message>,
    /// The read asked for more rows than it got: there is nothing older.
    exhausted: bool,
}

/// A database read's claim to fill a conversation's entry.
pub type Ticket = FreshTicket<Key>;

/// The history cache of one process; cheap to clone. [`HistoryCache::disabled`] caches
/// nothing.
#[derive(Clone)]
pub struct HistoryCache {
    fresh: Fresh<Key, Latest>,
}

impl HistoryCache {
    /// A cache of at most `budget_mb` MB (10^6 bytes) of messages; 0 disables it.
    /// Entries are served only while the tailer completed a tick within `stale_after`.
    pub fn new(budget_mb: u64, stale_after: Duration) -> Self {
        // About 20 KB for a conversation's page of 50 short messages.
        Self {
            fresh: Fresh::new("history", budget_mb, 20_000, stale_after),
        }
    }

    pub fn disabled() -> Self {
        Self {
            fresh: Fresh::disabled(),
        }
    }

    /// The newest `limit + 1` rows (fewer when the conversation has fewer), newest first,
    /// when the cache is sure of them; `None` sends the caller to the database.
    pub fn latest(&self, key: Key, limit: usize) -> Option<Vec<Message>> {
        self.fresh.get(&key, |entry| {
            (entry.exhausted || entry.rows.len() > limit)
                .then(|| entry.rows.iter().take(limit + 1).cloned().collect())
        })
    }

    /// Taken before reading the latest page from the database; `None` when disabled.
    pub fn ticket(&self, key: Key) -> Option<Ticket> {
        self.fresh.ticket(key)
    }

    /// Keeps what a read made under `ticket` found: `rows` newest first, from asking for
    /// `asked` rows. Rows read before an invalidation are dropped here or never served.
    pub fn install(&self, ticket: Ticket, rows: &[Message], asked: usize) {
        if !self.fresh.is_enabled() {
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
        let bytes = rows.iter().map(approximate_size).sum::<u64>();
        let entry = Latest {
            exhausted: rows.len() < asked,
            rows,
        };
        self.fresh.install(ticket, entry, bytes);
    }

    /// Invalidates one conversation: called after a write to it commits.
    pub fn forget(&self, key: Key) {
        self.fresh.forget(&key);
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
        self.fresh.forget_all();
    }

    /// A batch of events the tailer read (every user's, in position order): invalidates
    /// the conversations they change.
    pub fn observe(&self, events: &[StoredEvent]) {
        if !self.fresh.is_enabled() {
            return;
        }
        for event in events {
            match affected(event) {
                Affects::Nothing => {}
                Affects::One(key) => self.forget(key),
                Affects::Everything => self.forget_all(),
                Affects::Unknown => {
                    tracing::debug!(kind = %event.kind, "an event the history cache cannot place; emptying it");
                    self.forget_all();
                }
            }
        }
    }

    /// The tailer completed a tick: everything committed before it began has been observed.
    pub fn tailer_ok(&self) {
        self.fresh.tailer_ok();
    }

    /// The tailer failed a query: events may have been missed or delayed.
    pub fn tailer_failed(&self) {
        self.fresh.tailer_failed();
    }
}

enum Affects {
    Nothing,
    One(Key),
    Everything,
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
    // A direct chat's events name both sides (or, written before that, one row per side:
    // the recipient is one of the two).
    let recipient = match event.audience {
        Audience::User(id) => Some(id),
        Audience::Pair(..) | Audience::Group { .. } => None,
    };
    match event.kind.as_str() {
        "typing" | "presence" | "status_ping" | "status_pong" | "friend_request"
        | "friend_list" => Affects::Nothing,
        // Its reactions and mentions went with it, in groups no other event names.
        ACCOUNT_DELETED => Affects::Everything,
        "message" | "message_edited" | "message_deleted" | "reaction" => fields()
            .and_then(|f| Key::of_fields(f.group_chat_id, f.sender_id, f.reciever_id))
            .map_or(Affects::Unknown, Affects::One),
        // A group's read marker is the member's, not the messages'; a direct chat's
        // `seen` flags are on its messages (the reader is `user_id`, the other side hears).
        "seen" => match (fields(), event.audience) {
            (
                Some(Fields {
                    group_chat_id: Some(_),
                    ..
                }),
                _,
            ) => Affects::Nothing,
            (_, Audience::Pair(a, b)) => Affects::One(Key::direct(a, b)),
            (
                Some(Fields {
                    user_id: Some(reader),
                    ..
                }),
                _,
            ) => recipient.map_or(Affects::Unknown, |to| Affects::One(Key::direct(reader, to))),
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
        check(
            event(8, ACCOUNT_DELETED, serde_json::json!({"user_id": 8})),
            Key::Group(4),
            true,
        );
    }
}
