//! Friendships: one `friendship` row per pair, an append-only `friendship_status`
//! history, the latest status wins. Every change locks the pair's two user rows first
//! (MySQL) or takes SQLite's write lock, so crossing requests and double clicks queue up
//! and the loser sees the winner's state: a 4xx, never a second row or a 500.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::json;
use sqlx::{FromRow, QueryBuilder};
use time::PrimitiveDateTime;

use super::{
    events::{NewEvent, Outbox},
    users::{User, UserId, UserSummary},
};
use crate::{
    cache::friend_lists::{FriendListCache, FIRST_ROWS},
    db::Db,
    db_run, db_tx,
    domain::{
        cursor::{Cursor, Page},
        FriendshipStatus,
    },
    error::AppError,
};

/// The latest status of a pair, whichever way round the row is.
#[derive(Debug, Clone, FromRow)]
struct LatestRow {
    requester_id: UserId,
    addressee_id: UserId,
    status_code_id: String,
    specifier_id: UserId,
    specified_date_time: PrimitiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest {
    pub requester_id: UserId,
    pub addressee_id: UserId,
    pub status: FriendshipStatus,
    pub specifier_id: UserId,
    pub at: PrimitiveDateTime,
}

/// How another user stands with me, as the pages show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Relationship {
    None,
    /// I asked them; waiting.
    RequestSent,
    /// They asked me; I may accept.
    RequestReceived,
    Friends,
    /// I declined them, or they declined me: no new request until someone deletes it.
    Declined,
    /// I blocked them.
    BlockedByMe,
    /// They blocked me (never shown to me as such).
    BlockedMe,
}

impl Latest {
    fn from_row(r: LatestRow) -> Option<Self> {
        Some(Latest {
            requester_id: r.requester_id,
            addressee_id: r.addressee_id,
            status: FriendshipStatus::from_code(&r.status_code_id)?,
            specifier_id: r.specifier_id,
            at: r.specified_date_time,
        })
    }

    /// The `friend_list.list` code of this pair as `owner` sees it.
    fn list_code_for(&self, owner: UserId) -> &'static str {
        match self.relationship_for(owner) {
            Relationship::Friends => "F",
            Relationship::RequestReceived => "I",
            Relationship::RequestSent => "O",
            Relationship::Declined => "D",
            Relationship::BlockedByMe => "B",
            Relationship::BlockedMe => "X",
            Relationship::None => "",
        }
    }

    pub fn relationship_for(&self, me: UserId) -> Relationship {
        match self.status {
            FriendshipStatus::Requested if self.requester_id == me => Relationship::RequestSent,
            FriendshipStatus::Requested => Relationship::RequestReceived,
            FriendshipStatus::Accepted => Relationship::Friends,
            FriendshipStatus::Declined => Relationship::Declined,
            FriendshipStatus::Blocked if self.specifier_id == me => Relationship::BlockedByMe,
            FriendshipStatus::Blocked => Relationship::BlockedMe,
        }
    }
}

const LATEST_FOR_PAIR: &str = "SELECT s.requester_id, s.addressee_id, s.status_code_id, s.specifier_id, s.specified_date_time \
     FROM friendship_status s \
     WHERE (s.requester_id = ? AND s.addressee_id = ?) OR (s.requester_id = ? AND s.addressee_id = ?) \
     ORDER BY s.specified_date_time DESC LIMIT 1";

/// `SELECT … FOR UPDATE` on MySQL; SQLite's `BEGIN IMMEDIATE` already serializes writers.
const LOCK_PAIR_MYSQL: &str =
    "SELECT user_id FROM user WHERE user_id IN (?, ?) ORDER BY user_id FOR UPDATE";

/// The latest status between `a` and `b`, read inside a transaction of either backend.
macro_rules! latest_in_tx {
    ($tx:expr, $a:expr, $b:expr) => {
        sqlx::query_as::<_, LatestRow>(LATEST_FOR_PAIR)
            .bind($a)
            .bind($b)
            .bind($b)
            .bind($a)
            .fetch_optional(&mut *$tx)
            .await?
            .and_then(Latest::from_row)
    };
}

/// Locks the pair on MySQL (a no-op on SQLite, whose transaction is already exclusive).
macro_rules! lock_pair {
    ($db:expr, $tx:expr, $a:expr, $b:expr) => {
        if matches!($db, Db::MySql(_)) {
            sqlx::query(LOCK_PAIR_MYSQL)
                .bind($a)
                .bind($b)
                .fetch_all(&mut *$tx)
                .await?;
        }
    };
}

/// Appends a status to the pair's history. Two statuses in the same microsecond (or a
/// clock step backwards) still get distinct, ordered times.
macro_rules! append_status {
    ($tx:expr, $requester:expr, $addressee:expr, $status:expr, $specifier:expr, $previous:expr) => {{
        let mut at = crate::db::now();
        if let Some(prev) = $previous {
            if at <= prev {
                at = prev + time::Duration::microseconds(1);
            }
        }
        sqlx::query(
            "INSERT INTO friendship_status (requester_id, addressee_id, specified_date_time, status_code_id, specifier_id) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind($requester)
        .bind($addressee)
        .bind(at)
        .bind($status.code())
        .bind($specifier)
        .execute(&mut *$tx)
        .await?;
        at
    }};
}

/// Rewrites the pair's two `friend_list` rows from the latest status (none after a
/// delete), inside the transaction that changed it. Evaluates to the `friend_list` event
/// that tells `$x`, who acted, where `$y` now is in their lists.
macro_rules! sync_lists {
    ($tx:expr, $x:expr, $y:expr) => {{
        let (x, y): (&User, &User) = ($x, $y);
        sqlx::query("DELETE FROM friend_list WHERE (owner_id = ? AND other_id = ?) OR (owner_id = ? AND other_id = ?)")
            .bind(x.user_id)
            .bind(y.user_id)
            .bind(y.user_id)
            .bind(x.user_id)
            .execute(&mut *$tx)
            .await?;
        let latest = latest_in_tx!($tx, x.user_id, y.user_id);
        if let Some(l) = &latest {
            for (owner, other) in [(x, y), (y, x)] {
                sqlx::query("INSERT INTO friend_list (owner_id, other_id, other_username, list) VALUES (?, ?, ?, ?)")
                    .bind(owner.user_id)
                    .bind(other.user_id)
                    .bind(other.username.as_str())
                    .bind(l.list_code_for(owner.user_id))
                    .execute(&mut *$tx)
                    .await?;
            }
        }
        friend_list_event(x, y, latest.as_ref().map_or("", |l| l.list_code_for(x.user_id)))
    }};
}

/// Whether two users may talk: send each other direct messages, edit or delete the ones
/// sent, type, mark them seen, share a new group. The one rule, for every such path: they
/// are friends now. It is read from the sender's `friend_list` row, which every change of
/// the friendship rewrites in its own transaction, so it is never behind the status history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Talk {
    Friends,
    /// No friendship at all (never asked, or deleted).
    Strangers,
    /// A friendship that is not accepted: pending, declined, or blocked either way.
    NotFriends,
}

impl Talk {
    /// What a `friend_list.list` code means for talking.
    pub(crate) fn from_list_code(code: &str) -> Self {
        if code == "F" {
            Talk::Friends
        } else {
            Talk::NotFriends
        }
    }

    /// `Ok` for friends; otherwise the original service's answer to a send.
    pub fn require(self) -> Result<(), AppError> {
        match self {
            Talk::Friends => Ok(()),
            Talk::Strangers => Err(AppError::not_found("friendship was not found")),
            Talk::NotFriends => Err(AppError::bad_request(
                "you cannot message this person if you are not their friend",
            )),
        }
    }
}

/// [`Talk`] for each `(me, other)` pair, in one query on either backend's pool or open
/// transaction: `talk_rights!(executor, &pairs)` gives `Result<HashMap<(UserId, UserId),
/// Talk>, sqlx::Error>`. Pairs without a row are [`Talk::Strangers`] (see [`talk_of`]).
/// The pairs are a table of constants joined on the primary key: a lookup per pair, with
/// none of the range analysis that `OR`ed pairs would cost on every batch of sends.
macro_rules! talk_rights {
    ($exec:expr, $pairs:expr) => {{
        let pairs: &[(UserId, UserId)] = $pairs;
        let mut q = sqlx::QueryBuilder::new("SELECT fl.owner_id, fl.other_id, fl.list FROM (");
        for (i, (me, other)) in pairs.iter().enumerate() {
            q.push(if i == 0 { "SELECT " } else { " UNION ALL SELECT " })
                .push_bind(*me)
                .push(if i == 0 { " AS owner_id, " } else { ", " })
                .push_bind(*other)
                .push(if i == 0 { " AS other_id" } else { "" });
        }
        q.push(") pair JOIN friend_list fl ON fl.owner_id = pair.owner_id AND fl.other_id = pair.other_id");
        let rows: Result<Vec<(UserId, UserId, String)>, sqlx::Error> =
            q.build_query_as().fetch_all($exec).await;
        rows.map(|rows| {
            rows.into_iter()
                .map(|(me, other, list)| ((me, other), $crate::store::friends::Talk::from_list_code(&list)))
                .collect::<std::collections::HashMap<(UserId, UserId), $crate::store::friends::Talk>>()
        })
    }};
}
pub(crate) use talk_rights;

/// The [`Talk`] of one pair out of what [`talk_rights!`] found.
pub fn talk_of(rights: &HashMap<(UserId, UserId), Talk>, me: UserId, other: UserId) -> Talk {
    rights.get(&(me, other)).copied().unwrap_or(Talk::Strangers)
}

/// Whether `me` may talk to `other` now; see [`Talk`].
pub async fn may_talk(db: &Db, me: UserId, other: UserId) -> Result<Talk, sqlx::Error> {
    let rights = db_run!(db, |pool| talk_rights!(pool, &[(me, other)]))?;
    Ok(talk_of(&rights, me, other))
}

/// The latest status between two users, if they have a friendship.
pub async fn latest(db: &Db, a: UserId, b: UserId) -> Result<Option<Latest>, sqlx::Error> {
    let row = db_run!(db, |pool| {
        sqlx::query_as::<_, LatestRow>(LATEST_FOR_PAIR)
            .bind(a)
            .bind(b)
            .bind(b)
            .bind(a)
            .fetch_optional(pool)
            .await
    })?;
    Ok(row.and_then(Latest::from_row))
}

pub async fn relationship(db: &Db, me: UserId, other: UserId) -> Result<Relationship, sqlx::Error> {
    Ok(latest(db, me, other)
        .await?
        .map_or(Relationship::None, |l| l.relationship_for(me)))
}

/// How each of `others` stands with me, in one query.
pub async fn relationships(
    db: &Db,
    me: UserId,
    others: &[UserId],
) -> Result<HashMap<UserId, Relationship>, sqlx::Error> {
    if others.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<LatestRow> = db_run!(db, |pool| {
        // Two primary-key ranges: (me, them…) and (them…, me).
        let mut q = QueryBuilder::new(
            "SELECT s.requester_id, s.addressee_id, s.status_code_id, s.specifier_id, s.specified_date_time \
             FROM friendship_status s WHERE (s.requester_id = ",
        );
        q.push_bind(me).push(" AND s.addressee_id IN (");
        let mut ids = q.separated(", ");
        for id in others {
            ids.push_bind(*id);
        }
        q.push(")) OR (s.addressee_id = ")
            .push_bind(me)
            .push(" AND s.requester_id IN (");
        let mut ids = q.separated(", ");
        for id in others {
            ids.push_bind(*id);
        }
        q.push(")) ORDER BY s.specified_date_time");
        q.build_query_as::<LatestRow>().fetch_all(pool).await
    })?;
    let mut map = HashMap::new();
    for latest in rows.into_iter().filter_map(Latest::from_row) {
        let other = if latest.requester_id == me {
            latest.addressee_id
        } else {
            latest.requester_id
        };
        // Rows come oldest first, so the last one written per pair wins.
        map.insert(other, latest.relationship_for(me));
    }
    Ok(map)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedRequest {
    pub requester_id: UserId,
    pub addressee_id: UserId,
    /// UTC with microseconds and no offset (the original had whole seconds).
    #[schema(example = "2025-01-31T09:30:00.123456")]
    pub created_date_time: String,
}

/// Tells `me`, who changed a friendship (their other tabs and devices, and every process's
/// friend list cache), which of their lists `other` is in now: `friends`, `received`,
/// `sent`, `blocked`, or none (`null`).
fn friend_list_event(me: &User, other: &User, code: &str) -> NewEvent {
    let list = ListKind::from_code(code).map(ListKind::name);
    NewEvent::new(
        me.user_id,
        "friend_list",
        &json!({ "user_id": other.user_id, "username": other.username, "list": list }),
    )
}

/// Forgets both users' cached lists once a change of their friendship is over, whatever
/// its outcome (one that failed changed nothing, so forgetting costs a read at most).
fn forget_pair(lists: &FriendListCache, a: UserId, b: UserId) {
    lists.forget(a);
    lists.forget(b);
}

fn friendship_event(to: UserId, from: &User, status: &str) -> NewEvent {
    NewEvent::new(
        to,
        "friendship",
        &json!({ "user_id": from.user_id, "username": from.username, "status": status }),
    )
}

/// `me` asks `target` to be friends.
#[tracing::instrument(skip_all, fields(me = me.user_id, target = target.user_id))]
pub async fn request(
    db: &Db,
    lists: &FriendListCache,
    me: &User,
    target: &User,
) -> Result<CreatedRequest, AppError> {
    if me.user_id == target.user_id {
        return Err(AppError::bad_request(
            "cannot send friendship request to yourself",
        ));
    }
    let (a, b) = (me.user_id, target.user_id);
    let done = db_tx!(db, |tx| {
        lock_pair!(db, tx, a, b);
        match latest_in_tx!(tx, a, b) {
            Some(l) if l.status == FriendshipStatus::Requested => {
                return Err(AppError::bad_request(
                    "a friendship request was already sent",
                ))
            }
            Some(_) => {
                return Err(AppError::bad_request(
                    "you cannot send a friendship request",
                ))
            }
            None => {}
        }
        // A friendship row without statuses (never written by either service) is reused.
        sqlx::query("DELETE FROM friendship WHERE (requester_id = ? AND addressee_id = ?) OR (requester_id = ? AND addressee_id = ?)")
            .bind(a).bind(b).bind(b).bind(a)
            .execute(&mut *tx)
            .await?;
        let now = crate::db::now();
        sqlx::query("INSERT INTO friendship (requester_id, addressee_id, created_date_time) VALUES (?, ?, ?)")
            .bind(a)
            .bind(b)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        append_status!(
            tx,
            a,
            b,
            FriendshipStatus::Requested,
            a,
            None::<PrimitiveDateTime>
        );
        let mine = sync_lists!(tx, me, target);
        let event = NewEvent::new(
            b,
            "friend_request",
            &json!({ "user_id": a, "username": me.username }),
        );
        tx.write_events(&[mine, event]).await?;
        Ok(CreatedRequest {
            requester_id: a,
            addressee_id: b,
            created_date_time: format_time(now),
        })
    });
    forget_pair(lists, a, b);
    done
}

/// `me` answers `requester`'s pending request with accept or decline.
#[tracing::instrument(skip_all, fields(me = me.user_id, requester = requester.user_id))]
pub async fn answer(
    db: &Db,
    lists: &FriendListCache,
    me: &User,
    requester: &User,
    accept: bool,
) -> Result<(), AppError> {
    let (a, b) = (me.user_id, requester.user_id);
    let status = if accept {
        FriendshipStatus::Accepted
    } else {
        FriendshipStatus::Declined
    };
    let done = db_tx!(db, |tx| {
        lock_pair!(db, tx, a, b);
        let latest = latest_in_tx!(tx, a, b);
        let Some(l) = latest.filter(|l| l.requester_id == b && l.addressee_id == a) else {
            return Err(AppError::not_found("friendship was not found"));
        };
        match l.status {
            FriendshipStatus::Blocked => {
                return Err(AppError::bad_request("friendship is blocked"))
            }
            FriendshipStatus::Requested => {}
            _ => return Err(AppError::bad_request("friend request already addressed")),
        }
        append_status!(tx, b, a, status, a, Some(l.at));
        let mine = sync_lists!(tx, me, requester);
        let word = if accept { "accepted" } else { "declined" };
        tx.write_events(&[mine, friendship_event(b, me, word)])
            .await?;
        Ok(())
    });
    forget_pair(lists, a, b);
    done
}

/// `me` blocks `target`, with or without an existing friendship.
#[tracing::instrument(skip_all, fields(me = me.user_id, target = target.user_id))]
pub async fn block(
    db: &Db,
    lists: &FriendListCache,
    me: &User,
    target: &User,
) -> Result<(), AppError> {
    if me.user_id == target.user_id {
        return Err(AppError::bad_request("you cannot block yourself"));
    }
    let (a, b) = (me.user_id, target.user_id);
    let done = db_tx!(db, |tx| {
        lock_pair!(db, tx, a, b);
        let latest = latest_in_tx!(tx, a, b);
        let was_friend_or_pending = matches!(&latest, Some(l) if matches!(l.status, FriendshipStatus::Accepted | FriendshipStatus::Requested));
        match latest {
            Some(l) if l.status == FriendshipStatus::Blocked => {
                return Err(AppError::bad_request("friendship is blocked"))
            }
            Some(l) => {
                append_status!(
                    tx,
                    l.requester_id,
                    l.addressee_id,
                    FriendshipStatus::Blocked,
                    a,
                    Some(l.at)
                );
            }
            None => {
                sqlx::query("DELETE FROM friendship WHERE (requester_id = ? AND addressee_id = ?) OR (requester_id = ? AND addressee_id = ?)")
                    .bind(a).bind(b).bind(b).bind(a)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO friendship (requester_id, addressee_id, created_date_time) VALUES (?, ?, ?)")
                    .bind(a)
                    .bind(b)
                    .bind(crate::db::now())
                    .execute(&mut *tx)
                    .await?;
                append_status!(
                    tx,
                    a,
                    b,
                    FriendshipStatus::Blocked,
                    a,
                    None::<PrimitiveDateTime>
                );
            }
        }
        let mut events = vec![sync_lists!(tx, me, target)];
        // The blocked user is not told of the block; they see a friend or a request vanish.
        if was_friend_or_pending {
            events.push(friendship_event(b, me, "removed"));
        }
        tx.write_events(&events).await?;
        Ok(())
    });
    forget_pair(lists, a, b);
    done
}

/// Deletes the friendship and its history: cancels a request, unfriends, or (for the
/// user who blocked) unblocks. A user blocked by the other cannot lift the block this way,
/// and a declined requester cannot clear the refusal (to ask again, and again): only the
/// user who declined may.
#[tracing::instrument(skip_all, fields(me = me.user_id, other = other.user_id))]
pub async fn delete(
    db: &Db,
    lists: &FriendListCache,
    me: &User,
    other: &User,
    only_if_blocked_by_me: bool,
) -> Result<(), AppError> {
    let (a, b) = (me.user_id, other.user_id);
    let done = db_tx!(db, |tx| {
        lock_pair!(db, tx, a, b);
        let latest = latest_in_tx!(tx, a, b);
        let Some(l) = latest else {
            if only_if_blocked_by_me {
                return Err(AppError::bad_request("user is not blocked"));
            }
            return Err(AppError::not_found("friendship was not found"));
        };
        let relationship = l.relationship_for(a);
        if only_if_blocked_by_me && relationship != Relationship::BlockedByMe {
            return Err(AppError::bad_request("user is not blocked"));
        }
        if relationship == Relationship::BlockedMe {
            return Err(AppError::not_found("friendship was not found"));
        }
        if relationship == Relationship::Declined && l.specifier_id != a {
            return Err(AppError::bad_request(
                "only the user who declined the request can remove it",
            ));
        }
        sqlx::query("DELETE FROM friendship WHERE (requester_id = ? AND addressee_id = ?) OR (requester_id = ? AND addressee_id = ?)")
            .bind(a).bind(b).bind(b).bind(a)
            .execute(&mut *tx)
            .await?;
        let mut events = vec![sync_lists!(tx, me, other)];
        // Unblocking changes nothing the blocked user could see.
        if relationship != Relationship::BlockedByMe {
            events.push(friendship_event(b, me, "removed"));
        }
        tx.write_events(&events).await?;
        Ok(())
    });
    forget_pair(lists, a, b);
    done
}

/// Which list of users a page or API route shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// Latest status accepted, either direction.
    Friends,
    /// Pending requests to me.
    RequestsReceived,
    /// My pending requests.
    RequestsSent,
    /// Users I blocked.
    Blocked,
}

impl ListKind {
    pub const ALL: [ListKind; 4] = [
        ListKind::Friends,
        ListKind::RequestsReceived,
        ListKind::RequestsSent,
        ListKind::Blocked,
    ];

    /// Its `friend_list.list` code.
    fn code(self) -> &'static str {
        match self {
            ListKind::Friends => "F",
            ListKind::RequestsReceived => "I",
            ListKind::RequestsSent => "O",
            ListKind::Blocked => "B",
        }
    }

    /// The list a `friend_list.list` code puts a user in; none for the codes no list
    /// shows (declined, blocked by the other).
    fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.code() == code)
    }

    /// Its name in pages, counts and events: `friends`, `received`, `sent`, `blocked`.
    pub fn name(self) -> &'static str {
        match self {
            ListKind::Friends => "friends",
            ListKind::RequestsReceived => "received",
            ListKind::RequestsSent => "sent",
            ListKind::Blocked => "blocked",
        }
    }

    /// The list named `name`.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// One page of a list, ordered by username, keyed on it: one index range per page
/// (`friend_list_page`), as fast with 10,000 friends as with 10. A first page comes from
/// `cache` when it is sure of it, and fills it when not.
#[tracing::instrument(skip(db, cache))]
pub async fn list(
    db: &Db,
    cache: &FriendListCache,
    me: UserId,
    kind: ListKind,
    cursor: Option<&Cursor>,
    limit: u32,
) -> Result<Page<UserSummary>, sqlx::Error> {
    let limit = limit.clamp(1, 100) as usize;
    let key = |u: &UserSummary| u.username.clone();
    if cursor.is_some() {
        let rows = list_rows(db, me, kind, cursor, limit + 1).await?;
        return Ok(Page::from_rows(rows, limit, cursor, key));
    }
    if let Some(rows) = cache.first_page(me, kind, limit) {
        return Ok(Page::from_rows(rows, limit, None, key));
    }
    let rows = match cache.ticket(me, kind) {
        Some(ticket) => {
            let mut rows = list_rows(db, me, kind, None, FIRST_ROWS).await?;
            cache.install(ticket, &rows);
            rows.truncate(limit + 1);
            rows
        }
        None => list_rows(db, me, kind, None, limit + 1).await?,
    };
    Ok(Page::from_rows(rows, limit, None, key))
}

/// Up to `count` users of a list, in username order from `cursor` (backwards for a
/// previous page, but returned in order).
async fn list_rows(
    db: &Db,
    me: UserId,
    kind: ListKind,
    cursor: Option<&Cursor>,
    count: usize,
) -> Result<Vec<UserSummary>, sqlx::Error> {
    let code = kind.code();
    let mut rows: Vec<UserSummary> = db_run!(db, |pool| {
        let mut q = QueryBuilder::new(
            "SELECT other_id AS user_id, other_username AS username FROM friend_list WHERE owner_id = ",
        );
        q.push_bind(me).push(" AND list = ").push_bind(code);
        match cursor {
            Some(Cursor::Next(key)) => {
                q.push(" AND other_username > ")
                    .push_bind(key.as_str())
                    .push(" ORDER BY other_username ASC");
            }
            Some(Cursor::Prev(key)) => {
                q.push(" AND other_username < ")
                    .push_bind(key.as_str())
                    .push(" ORDER BY other_username DESC");
            }
            None => {
                q.push(" ORDER BY other_username ASC");
            }
        }
        q.push(" LIMIT ").push_bind(count as i64);
        q.build_query_as::<UserSummary>().fetch_all(pool).await
    })?;
    if matches!(cursor, Some(Cursor::Prev(_))) {
        rows.reverse();
    }
    Ok(rows)
}

/// How many users each list holds (the counts on the friends page): one index range.
pub async fn counts(db: &Db, me: UserId) -> Result<HashMap<&'static str, i64>, sqlx::Error> {
    let rows: Vec<(String, i64)> = db_run!(db, |pool| {
        sqlx::query_as("SELECT list, COUNT(*) FROM friend_list WHERE owner_id = ? GROUP BY list")
            .bind(me)
            .fetch_all(pool)
            .await
    })?;
    let mut counts: HashMap<&'static str, i64> =
        ListKind::ALL.iter().map(|kind| (kind.name(), 0)).collect();
    for (code, n) in rows {
        if let Some(kind) = ListKind::from_code(&code) {
            counts.insert(kind.name(), n);
        }
    }
    Ok(counts)
}

/// Ids of everyone whose latest status with `me` is accepted (presence goes to them).
pub async fn accepted_friend_ids(db: &Db, me: UserId) -> Result<Vec<UserId>, sqlx::Error> {
    db_run!(db, |pool| {
        sqlx::query_scalar("SELECT other_id FROM friend_list WHERE owner_id = ? AND list = 'F'")
            .bind(me)
            .fetch_all(pool)
            .await
    })
}

/// A `LIKE … ESCAPE '!'` pattern for values starting with `prefix`, its own `%`, `_` and
/// `!` taken literally.
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '!') {
            pattern.push('!');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// My friends whose name starts with `prefix` (any case), in name order.
#[tracing::instrument(skip(db))]
pub async fn friends_with_prefix(
    db: &Db,
    me: UserId,
    prefix: &str,
    limit: u32,
) -> Result<Vec<UserSummary>, sqlx::Error> {
    db_run!(db, |pool| {
        sqlx::query_as::<_, UserSummary>(
            "SELECT other_id AS user_id, other_username AS username FROM friend_list \
             WHERE owner_id = ? AND list = 'F' AND LOWER(other_username) LIKE LOWER(?) ESCAPE '!' \
             ORDER BY other_username LIMIT ?",
        )
        .bind(me)
        .bind(like_prefix(prefix))
        .bind(i64::from(limit.clamp(1, 100)))
        .fetch_all(pool)
        .await
    })
}

/// Users whose name starts with `prefix`, leaving out me and anyone who blocked me.
#[tracing::instrument(skip(db))]
pub async fn search(
    db: &Db,
    me: UserId,
    prefix: &str,
    limit: u32,
) -> Result<Vec<UserSummary>, sqlx::Error> {
    let pattern = like_prefix(prefix);
    // A prefix range on the username index; the blocker test is one primary-key lookup
    // per candidate.
    let sql = "SELECT u.user_id, u.username FROM user u \
         WHERE u.username LIKE ? ESCAPE '!' AND u.user_id <> ? \
         AND NOT EXISTS (SELECT 1 FROM friend_list fl WHERE fl.owner_id = ? AND fl.other_id = u.user_id AND fl.list = 'X') \
         ORDER BY u.username LIMIT ?";
    db_run!(db, |pool| {
        sqlx::query_as::<_, UserSummary>(sql)
            .bind(&pattern)
            .bind(me)
            .bind(me)
            .bind(limit.clamp(1, 50) as i64)
            .fetch_all(pool)
            .await
    })
}

pub use crate::db::format_time;
