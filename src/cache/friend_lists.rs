//! Friend lists from memory: each process keeps the first page of the lists people open
//! (friends, requests either way, blocked), so that the friends list, the chat screen's
//! friends and the API's `GET /friends/` do not ask the database every time.
//!
//! # What is cached
//!
//! Per user and list, the first [`FIRST_ROWS`] rows in username order, exactly as
//! [`store::friends::list`](crate::store::friends::list) read them, and whether that is
//! the whole list. Only first pages come from memory; a page with a cursor goes to the
//! database (its order is the database's collation, which is not ours to copy).
//! Entries are weighed by their size and the least recently useful ones evicted beyond
//! `FRIEND_LIST_CACHE_MB`; 0 turns the cache off.
//!
//! # How it stays in step with the database
//!
//! As every cache here does (see [`crate::cache`]). A user's lists change only with a
//! friendship of theirs, and every such change writes an event to each user whose lists
//! it changes: `friend_request` and `friendship` to the other side, `friend_list` to the
//! one who acted (which their other tabs and devices use too). A change of an account
//! (deleted) writes `friendship` to everyone who listed it. So the tailer forgets a user's
//! lists when it reads one of those three kinds addressed to them, and the process that
//! made the change forgets both users' lists as it commits.

use std::time::Duration;

use super::{Fresh, Ticket};
use crate::store::{
    events::{Audience, StoredEvent},
    friends::ListKind,
    users::{UserId, UserSummary},
};

/// Rows an entry holds: the largest page (100) and one more, to know whether more exist.
pub const FIRST_ROWS: usize = 101;

/// The event kinds that tell a user their lists changed.
const LIST_CHANGES: [&str; 3] = ["friend_request", "friendship", "friend_list"];

/// The first rows of one list, in username order.
struct First {
    rows: Vec<UserSummary>,
    /// Fewer rows than asked for were found: this is the whole list.
    exhausted: bool,
}

/// The friend list cache of one process; cheap to clone.
#[derive(Clone)]
pub struct FriendListCache {
    fresh: Fresh<(UserId, ListKind), First>,
}

impl FriendListCache {
    /// At most `budget_mb` MB (10^6 bytes); 0 disables it. Entries are served only while
    /// the tailer completed a tick within `stale_after`.
    pub fn new(budget_mb: u64, stale_after: Duration) -> Self {
        // A list of about a dozen people.
        Self {
            fresh: Fresh::new("friend_lists", budget_mb, 600, stale_after),
        }
    }

    pub fn disabled() -> Self {
        Self {
            fresh: Fresh::disabled(),
        }
    }

    /// The first `limit + 1` rows of `owner`'s list (fewer when it is shorter) when the
    /// cache is sure of them; `None` sends the caller to the database.
    pub fn first_page(
        &self,
        owner: UserId,
        kind: ListKind,
        limit: usize,
    ) -> Option<Vec<UserSummary>> {
        self.fresh.get(&(owner, kind), |entry| {
            (entry.exhausted || entry.rows.len() > limit)
                .then(|| entry.rows.iter().take(limit + 1).cloned().collect())
        })
    }

    /// Taken before reading a first page from the database; `None` when disabled (the
    /// read then asks for only the rows it needs).
    pub fn ticket(&self, owner: UserId, kind: ListKind) -> Option<Ticket<(UserId, ListKind)>> {
        self.fresh.ticket((owner, kind))
    }

    /// Keeps what a read made under `ticket` found: `rows` in order, from asking for
    /// [`FIRST_ROWS`].
    pub fn install(&self, ticket: Ticket<(UserId, ListKind)>, rows: &[UserSummary]) {
        let bytes = rows
            .iter()
            .map(|u| (std::mem::size_of::<UserSummary>() + u.username.len()) as u64)
            .sum();
        let entry = First {
            exhausted: rows.len() < FIRST_ROWS,
            rows: rows.to_vec(),
        };
        self.fresh.install(ticket, entry, bytes);
    }

    /// Invalidates every list of `user`: called after a change of theirs commits.
    pub fn forget(&self, user: UserId) {
        for kind in ListKind::ALL {
            self.fresh.forget(&(user, kind));
        }
    }

    /// Invalidates every list of every user.
    pub fn forget_all(&self) {
        self.fresh.forget_all();
    }

    /// A batch of events the tailer read: forgets the lists of the users told that theirs
    /// changed. Other kinds, and group events, change no list.
    pub fn observe(&self, events: &[StoredEvent]) {
        if !self.fresh.is_enabled() {
            return;
        }
        for event in events {
            if let Audience::User(user) = event.audience {
                if LIST_CHANGES.contains(&event.kind.as_str()) {
                    self.forget(user);
                }
            }
        }
    }

    pub fn tailer_ok(&self) {
        self.fresh.tailer_ok();
    }

    pub fn tailer_failed(&self) {
        self.fresh.tailer_failed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> FriendListCache {
        let cache = FriendListCache::new(1, Duration::from_secs(60));
        cache.tailer_ok();
        cache
    }

    fn people(n: usize) -> Vec<UserSummary> {
        (0..n)
            .map(|i| UserSummary {
                user_id: i as UserId + 10,
                username: format!("user{i:03}"),
            })
            .collect()
    }

    fn event(user_id: UserId, kind: &str) -> StoredEvent {
        StoredEvent {
            position: 1,
            audience: Audience::User(user_id),
            kind: kind.into(),
            payload: "{}".into(),
        }
    }

    #[test]
    fn a_page_is_served_only_when_the_entry_holds_it() {
        let cache = cache();
        let short = people(3);
        cache.install(cache.ticket(1, ListKind::Friends).unwrap(), &short);
        assert_eq!(cache.first_page(1, ListKind::Friends, 50).unwrap().len(), 3);
        assert_eq!(cache.first_page(1, ListKind::Friends, 2).unwrap().len(), 3);
        assert!(
            cache.first_page(1, ListKind::Blocked, 50).is_none(),
            "another list"
        );
        assert!(
            cache.first_page(2, ListKind::Friends, 50).is_none(),
            "another user"
        );
        // A long list: the entry holds its first 101 rows, so pages up to 100 come from it.
        let long = people(FIRST_ROWS);
        cache.install(cache.ticket(1, ListKind::Friends).unwrap(), &long);
        assert_eq!(
            cache.first_page(1, ListKind::Friends, 100).unwrap().len(),
            101
        );
        assert!(cache.first_page(1, ListKind::Friends, 101).is_none());
    }

    #[test]
    fn list_events_forget_the_lists_of_the_user_they_reach() {
        let cache = cache();
        let fill = |user| {
            for kind in ListKind::ALL {
                cache.install(cache.ticket(user, kind).unwrap(), &people(2));
            }
        };
        for (kind, forgets) in [
            ("friend_request", true),
            ("friendship", true),
            ("friend_list", true),
            ("message", false),
            ("presence", false),
        ] {
            fill(1);
            fill(2);
            cache.observe(&[event(1, kind)]);
            for list in ListKind::ALL {
                assert_eq!(cache.first_page(1, list, 50).is_none(), forgets, "{kind}");
                assert!(cache.first_page(2, list, 50).is_some(), "{kind}: user 2");
            }
        }
    }

    #[test]
    fn a_read_that_began_before_a_change_is_never_served() {
        let cache = cache();
        let ticket = cache.ticket(1, ListKind::RequestsSent).unwrap();
        cache.forget(1);
        cache.install(ticket, &people(1));
        assert!(cache.first_page(1, ListKind::RequestsSent, 10).is_none());
        let ticket = cache.ticket(1, ListKind::RequestsSent).unwrap();
        cache.tailer_failed();
        cache.install(ticket, &people(1));
        cache.tailer_ok();
        assert!(cache.first_page(1, ListKind::RequestsSent, 10).is_none());
    }
}
