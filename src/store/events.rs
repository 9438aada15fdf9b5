//! The outbox: one `event` row per recipient, one for both sides of a direct chat, or one
//! for a whole group ([`Audience`]), written in the same transaction as the change it reports, and read back by every process's tailer and by resuming streams.
//!
//! Rows are read by their stream *position* (see [`crate::events`]): on SQLite that is
//! `event_id` itself, on MySQL the `seq` the tailers give rows once they are committed
//! ([`assign_positions`]).

use serde::Serialize;
use sqlx::{FromRow, QueryBuilder};

use crate::{db::Db, db_run};

/// Who hears an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// One user (a row per recipient: friendships, presence, typing).
    User(i32),
    /// Both sides of a direct chat (messages, edits, deletes, reactions, read markers):
    /// one row, its `user_id` the first and `also_user_id` the second.
    Pair(i32, i32),
    /// Every member of a group at the time the event is delivered, but `except` (the
    /// member typing): one row for the whole group, routed to members' streams by each
    /// process (fan-out on read, [`crate::events`]).
    Group {
        group_chat_id: i32,
        except: Option<i32>,
    },
}

/// The `user_id` of a group event's row: no user has it.
const GROUP_ROW_USER: i32 = 0;

impl Audience {
    /// Whether `user_id`, a member of the group when the audience is a group, hears it.
    pub fn includes_member(&self, user_id: i32) -> bool {
        match *self {
            Audience::User(id) => id == user_id,
            Audience::Pair(a, b) => a == user_id || b == user_id,
            Audience::Group { except, .. } => except != Some(user_id),
        }
    }

    /// The row's `user_id`, `group_chat_id`, `except_user_id` and `also_user_id`.
    fn columns(&self) -> (i32, Option<i32>, Option<i32>, Option<i32>) {
        match *self {
            Audience::User(id) => (id, None, None, None),
            Audience::Pair(a, b) => (a, None, None, Some(b)),
            Audience::Group {
                group_chat_id,
                except,
            } => (GROUP_ROW_USER, Some(group_chat_id), except, None),
        }
    }
}

/// An event as stored and delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Its place in the stream of events, in commit order: what a stream's `id:` carries
    /// and a client resumes from.
    pub position: i64,
    pub audience: Audience,
    pub kind: String,
    pub payload: String,
}

/// An `event` row as read.
#[derive(FromRow)]
struct EventRow {
    position: i64,
    user_id: i32,
    group_chat_id: Option<i32>,
    except_user_id: Option<i32>,
    also_user_id: Option<i32>,
    kind: String,
    payload: String,
}

impl From<EventRow> for StoredEvent {
    fn from(row: EventRow) -> Self {
        let audience = match (row.group_chat_id, row.also_user_id) {
            (Some(group_chat_id), _) => Audience::Group {
                group_chat_id,
                except: row.except_user_id,
            },
            (None, Some(other)) => Audience::Pair(row.user_id, other),
            (None, None) => Audience::User(row.user_id),
        };
        StoredEvent {
            position: row.position,
            audience,
            kind: row.kind,
            payload: row.payload,
        }
    }
}

/// The columns an [`EventRow`] reads, the position named as in `db`'s dialect.
fn row_columns(db: &Db, table: &str) -> String {
    format!(
        "{table}{p} AS position, {table}user_id, {table}group_chat_id, {table}except_user_id, {table}also_user_id, {table}kind, {table}payload",
        p = position(db)
    )
}

/// An event to write: who hears it, what kind, and its JSON data.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub audience: Audience,
    pub kind: &'static str,
    pub payload: String,
}

impl NewEvent {
    pub fn new(user_id: i32, kind: &'static str, payload: &impl Serialize) -> Self {
        Self {
            audience: Audience::User(user_id),
            kind,
            payload: serde_json::to_string(payload).expect("event payloads serialize"),
        }
    }

    /// One event for both sides of a direct chat (one row).
    pub fn to_pair(a: i32, b: i32, kind: &'static str, payload: &impl Serialize) -> Self {
        Self {
            audience: Audience::Pair(a, b),
            kind,
            payload: serde_json::to_string(payload).expect("event payloads serialize"),
        }
    }

    /// One event for every member of `group_chat_id` (one row, however many members).
    pub fn to_group(group_chat_id: i32, kind: &'static str, payload: &impl Serialize) -> Self {
        Self {
            audience: Audience::Group {
                group_chat_id,
                except: None,
            },
            kind,
            payload: serde_json::to_string(payload).expect("event payloads serialize"),
        }
    }

    /// The same group event, not heard by `user_id` (the member it is about).
    pub fn except(mut self, user_id: i32) -> Self {
        if let Audience::Group { except, .. } = &mut self.audience {
            *except = Some(user_id);
        }
        self
    }

    /// The same event for each of `recipients`, serialized once.
    pub fn to_each(kind: &'static str, recipients: &[i32], payload: &impl Serialize) -> Vec<Self> {
        let payload = serde_json::to_string(payload).expect("event payloads serialize");
        recipients
            .iter()
            .map(|&user_id| Self {
                audience: Audience::User(user_id),
                kind,
                payload: payload.clone(),
            })
            .collect()
    }
}

/// Kinds whose payload is a message that may mention members (`mentions`); each member
/// mentioned hears it with `mentioned: true` ([`for_member`]).
const MESSAGE_KINDS: &[&str] = &["message", "message_edited"];

/// The users a message event's payload mentions.
fn mentioned_in(event: &StoredEvent) -> Vec<i32> {
    #[derive(serde::Deserialize)]
    struct Mention {
        user_id: i32,
    }
    #[derive(serde::Deserialize)]
    struct Mentions {
        #[serde(default)]
        mentions: Vec<Mention>,
    }
    if !MESSAGE_KINDS.contains(&event.kind.as_str()) {
        return Vec::new();
    }
    serde_json::from_str::<Mentions>(&event.payload)
        .map(|m| m.mentions.into_iter().map(|m| m.user_id).collect())
        .unwrap_or_default()
}

/// A group event as one member hears it: a message that mentions them says so
/// (`mentioned`, which the row, written once for everyone, leaves false). Who it mentions
/// is read from the payload, and the copy for them made, only when a member it reaches is
/// on this process.
pub struct GroupDelivery {
    pub plain: std::sync::Arc<StoredEvent>,
    mentioned: std::sync::OnceLock<Vec<i32>>,
    for_mentioned: std::sync::OnceLock<std::sync::Arc<StoredEvent>>,
}

impl GroupDelivery {
    pub fn new(event: StoredEvent) -> Self {
        Self {
            plain: std::sync::Arc::new(event),
            mentioned: std::sync::OnceLock::new(),
            for_mentioned: std::sync::OnceLock::new(),
        }
    }

    /// What member `user_id` hears, or nothing (the member it excepts).
    pub fn for_member(&self, user_id: i32) -> Option<std::sync::Arc<StoredEvent>> {
        if !self.plain.audience.includes_member(user_id) {
            return None;
        }
        let mentioned = self.mentioned.get_or_init(|| mentioned_in(&self.plain));
        if !mentioned.contains(&user_id) {
            return Some(self.plain.clone());
        }
        Some(
            self.for_mentioned
                .get_or_init(|| std::sync::Arc::new(with_mentioned(&self.plain)))
                .clone(),
        )
    }
}

/// The event with its payload's `mentioned` set.
fn with_mentioned(event: &StoredEvent) -> StoredEvent {
    let mut event = event.clone();
    if let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(&event.payload) {
        fields.insert("mentioned".into(), serde_json::Value::Bool(true));
        event.payload = serde_json::Value::Object(fields).to_string();
    }
    event
}

/// A group event read for one member (a resuming stream's replay): as [`GroupDelivery`].
fn for_member(event: StoredEvent, user_id: i32) -> StoredEvent {
    match event.audience {
        Audience::Group { .. } if mentioned_in(&event).contains(&user_id) => with_mentioned(&event),
        _ => event,
    }
}

/// Kinds that are live-only: not replayed to a stream that resumes. `status_ping` and
/// `status_pong` are the original client's presence questions and answers, relayed
/// between friends by socket.io (`crate::socketio`).
pub const EPHEMERAL_KINDS: &[&str] = &["typing", "status_ping", "status_pong"];

/// Writes events on an open connection or transaction of either backend.
pub trait Outbox {
    fn write_events(
        &mut self,
        events: &[NewEvent],
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;
}

macro_rules! impl_outbox {
    ($conn:ty) => {
        impl Outbox for $conn {
            async fn write_events(&mut self, events: &[NewEvent]) -> Result<(), sqlx::Error> {
                if events.is_empty() {
                    return Ok(());
                }
                let now = crate::db::now();
                let mut insert = QueryBuilder::new(
                    "INSERT INTO event (user_id, group_chat_id, except_user_id, also_user_id, kind, payload, created_date_time) ",
                );
                insert.push_values(events, |mut row, e| {
                    let (user_id, group_chat_id, except_user_id, also_user_id) =
                        e.audience.columns();
                    row.push_bind(user_id)
                        .push_bind(group_chat_id)
                        .push_bind(except_user_id)
                        .push_bind(also_user_id)
                        .push_bind(e.kind)
                        .push_bind(e.payload.as_str())
                        .push_bind(now);
                });
                insert.build().execute(&mut *self).await?;
                Ok(())
            }
        }
    };
}

impl_outbox!(sqlx::MySqlConnection);
impl_outbox!(sqlx::SqliteConnection);

/// Writes events in a transaction of their own (for changes that have no rows of their
/// own, such as presence and typing).
pub async fn write(db: &Db, events: &[NewEvent]) -> Result<(), sqlx::Error> {
    db_run!(db, |pool| {
        let mut conn = pool.acquire().await?;
        conn.write_events(events).await
    })
}

/// The column that holds an event's stream position in `db`'s dialect.
fn position(db: &Db) -> &'static str {
    match db {
        Db::MySql(_) => "seq",
        Db::Sqlite(_) => "event_id",
    }
}

/// The next events of every user after position `after`, in order: the tailer's one
/// query, a range of the position index.
pub async fn after(db: &Db, after: i64, limit: i64) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {} FROM event WHERE {p} > ? ORDER BY {p} LIMIT ?",
        row_columns(db, ""),
        p = position(db)
    );
    let rows = db_run!(db, |pool| sqlx::query_as::<_, EventRow>(&sql)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
    Ok(rows.into_iter().map(StoredEvent::from).collect())
}

/// The kinds a resuming stream is not sent (see [`EPHEMERAL_KINDS`]).
const REPLAYED: &str = "kind NOT IN ('typing', 'status_ping', 'status_pong')";

/// Up to `limit` of one user's replayable events in positions `(after, up_to]`, in order,
/// for a resuming stream: their own rows (a range of the `(user_id, position)` index), the
/// direct chats' rows that name them second (a range of `(also_user_id, position)`), and
/// those of the groups they are a member of now (a range of `(group_chat_id, position)`
/// per group), each as the user hears it.
pub async fn for_user_between(
    db: &Db,
    user_id: i32,
    after: i64,
    up_to: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT * FROM (SELECT {own} FROM event \
           WHERE user_id = ? AND {p} > ? AND {p} <= ? AND {REPLAYED} ORDER BY {p} LIMIT ?) own \
         UNION ALL \
         SELECT * FROM (SELECT {own} FROM event \
           WHERE also_user_id = ? AND {p} > ? AND {p} <= ? AND {REPLAYED} ORDER BY {p} LIMIT ?) also \
         UNION ALL \
         SELECT * FROM (SELECT {grouped} FROM group_chat_member gm \
           JOIN event e ON e.group_chat_id = gm.group_chat_id \
           WHERE gm.member_id = ? AND e.{p} > ? AND e.{p} <= ? AND e.{REPLAYED} \
           AND (e.except_user_id IS NULL OR e.except_user_id <> ?) ORDER BY e.{p} LIMIT ?) grouped \
         ORDER BY position LIMIT ?",
        own = row_columns(db, ""),
        grouped = row_columns(db, "e."),
        p = position(db)
    );
    let rows = db_run!(db, |pool| {
        sqlx::query_as::<_, EventRow>(&sql)
            .bind(user_id)
            .bind(after)
            .bind(up_to)
            .bind(limit)
            .bind(user_id)
            .bind(after)
            .bind(up_to)
            .bind(limit)
            .bind(user_id)
            .bind(after)
            .bind(up_to)
            .bind(user_id)
            .bind(limit)
            .bind(limit)
            .fetch_all(pool)
            .await
    })?;
    Ok(rows
        .into_iter()
        .map(|row| for_member(row.into(), user_id))
        .collect())
}

/// Whether `user_id` has more than `cap` events in positions `(after, up_to]` (typing
/// counted too: an upper bound, read from the indexes alone).
pub async fn more_than(
    db: &Db,
    user_id: i32,
    after: i64,
    up_to: i64,
    cap: i64,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM (SELECT 1 AS one FROM event \
                  WHERE user_id = ? AND {p} > ? AND {p} <= ? LIMIT ?) own) \
              + (SELECT COUNT(*) FROM (SELECT 1 AS one FROM event \
                  WHERE also_user_id = ? AND {p} > ? AND {p} <= ? LIMIT ?) also) \
              + (SELECT COUNT(*) FROM (SELECT 1 AS one FROM group_chat_member gm \
                  JOIN event e ON e.group_chat_id = gm.group_chat_id \
                  WHERE gm.member_id = ? AND e.{p} > ? AND e.{p} <= ? LIMIT ?) grouped)",
        p = position(db)
    );
    let count: i64 = db_run!(db, |pool| {
        sqlx::query_scalar(&sql)
            .bind(user_id)
            .bind(after)
            .bind(up_to)
            .bind(cap + 1)
            .bind(user_id)
            .bind(after)
            .bind(up_to)
            .bind(cap + 1)
            .bind(user_id)
            .bind(after)
            .bind(up_to)
            .bind(cap + 1)
            .fetch_one(pool)
            .await
    })?;
    Ok(count > cap)
}

/// The highest position so far (0 when there is none).
pub async fn max_position(db: &Db) -> Result<i64, sqlx::Error> {
    let sql = format!("SELECT MAX({}) FROM event", position(db));
    db_run!(db, |pool| {
        sqlx::query_scalar::<_, Option<i64>>(&sql)
            .fetch_one(pool)
            .await
            .map(|m| m.unwrap_or(0))
    })
}

/// The oldest position still retained, if any.
pub async fn min_position(db: &Db) -> Result<Option<i64>, sqlx::Error> {
    let sql = format!("SELECT MIN({}) FROM event", position(db));
    db_run!(db, |pool| sqlx::query_scalar::<_, Option<i64>>(&sql)
        .fetch_one(pool)
        .await)
}

/// MySQL: gives up to `limit` events committed since the last call their positions, in
/// event-id order, and returns how many it numbered. On SQLite positions need no
/// numbering (ids are taken in commit order) and this does nothing.
///
/// One tailer at a time numbers (the `event_sequence` row is locked until commit), so
/// positions are given without gaps, and each numbering becomes visible at once, after
/// every lower one. Only committed rows are read and updated, by primary key, so a
/// transaction still holding an event row blocks neither this nor anyone's delivery.
pub async fn assign_positions(db: &Db, limit: i64) -> Result<usize, sqlx::Error> {
    let Db::MySql(pool) = db else {
        return Ok(0);
    };
    // The common case, nothing new, costs one index lookup and takes no lock.
    let pending: Option<i64> =
        sqlx::query_scalar("SELECT event_id FROM event WHERE seq IS NULL LIMIT 1")
            .fetch_optional(pool)
            .await?;
    if pending.is_none() {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    // The session is READ COMMITTED (see `db`): each read below sees every numbering
    // committed before this lock was granted.
    let last: i64 =
        sqlx::query_scalar("SELECT last_seq FROM event_sequence WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    // The first unnumbered rows of the `seq` index, which holds them in `event_id` order
    // (an index entry is its key and then the primary key). Asked for with `ORDER BY
    // event_id`, MariaDB chose to walk the primary key from the table's first row, past
    // every numbered one: with ten million rows, a second or more per tick, and a backlog
    // that never caught up (`examples/outbox_bench.rs`, `docs/loadtest.md`). Forced onto
    // the index, with `ORDER BY` it sorted every unnumbered row instead; without it, the
    // read costs the batch alone. Sorted here, the batch is numbered in id order.
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "SELECT event_id FROM event FORCE INDEX (event_seq) WHERE seq IS NULL LIMIT ?",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    ids.sort_unstable();
    if ids.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let mut update = QueryBuilder::new("UPDATE event SET seq = CASE event_id");
    for (n, id) in ids.iter().enumerate() {
        update
            .push(" WHEN ")
            .push_bind(*id)
            .push(" THEN ")
            .push_bind(last + 1 + n as i64);
    }
    update.push(" END WHERE seq IS NULL AND event_id IN (");
    let mut list = update.separated(", ");
    for id in &ids {
        list.push_bind(*id);
    }
    update.push(")");
    let numbered = update.build().execute(&mut *tx).await?.rows_affected();
    if numbered != ids.len() as u64 {
        // Cannot happen while every numbering holds the lock; never give a position twice.
        tx.rollback().await?;
        return Err(sqlx::Error::Protocol(format!(
            "numbered {numbered} of {} events",
            ids.len()
        )));
    }
    sqlx::query("UPDATE event_sequence SET last_seq = ? WHERE id = 1")
        .bind(last + ids.len() as i64)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ids.len())
}

/// Runs a prune statement (`?` the bound, `?` the batch size) on `$conn` until it deletes
/// less than a batch, pausing between batches; the rows deleted in all.
macro_rules! delete_in_batches {
    ($conn:ident, $sql:expr, $bound:expr) => {{
        let mut deleted = 0u64;
        loop {
            let batch = sqlx::query($sql)
                .bind($bound)
                .bind(PRUNE_BATCH)
                .execute(&mut *$conn)
                .await?
                .rows_affected();
            deleted += batch;
            if batch < PRUNE_BATCH as u64 {
                break deleted;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }};
}

/// Rows deleted per statement when pruning: each delete is a short transaction, so the
/// tailers' reads and the sends' inserts never wait long behind one, and the database's
/// undo and purge work stays small.
const PRUNE_BATCH: i64 = 5_000;

/// Deletes the events a resuming stream may no longer ask for: those created before
/// `older_than`, and all but the newest `keep_rows` positions. Batches of
/// [`PRUNE_BATCH`], oldest first, with a pause between them; returns how many went. On
/// MySQL one process at a time prunes (a named lock, released with its connection should
/// the process die); the others return 0 at once.
pub async fn prune(
    db: &Db,
    older_than: time::PrimitiveDateTime,
    keep_rows: i64,
) -> Result<u64, sqlx::Error> {
    let below = max_position(db).await?.saturating_sub(keep_rows);
    match db {
        Db::MySql(pool) => {
            let mut conn = pool.acquire().await?;
            let locked: Option<i64> =
                sqlx::query_scalar("SELECT GET_LOCK('messenger.prune_events', 0)")
                    .fetch_one(&mut *conn)
                    .await?;
            if locked != Some(1) {
                return Ok(0);
            }
            let pruned = async {
                Ok::<_, sqlx::Error>(
                    delete_in_batches!(conn, "DELETE FROM event WHERE created_date_time < ? ORDER BY created_date_time LIMIT ?", older_than)
                        + delete_in_batches!(conn, "DELETE FROM event WHERE seq <= ? ORDER BY seq LIMIT ?", below),
                )
            }
            .await;
            sqlx::query("DO RELEASE_LOCK('messenger.prune_events')")
                .execute(&mut *conn)
                .await?;
            pruned
        }
        Db::Sqlite(pool) => {
            let mut conn = pool.acquire().await?;
            // SQLite has no `DELETE … LIMIT` (unless built for it): the rows by subquery.
            Ok(delete_in_batches!(conn, "DELETE FROM event WHERE event_id IN (SELECT event_id FROM event WHERE created_date_time < ? ORDER BY created_date_time LIMIT ?)", older_than)
                + delete_in_batches!(conn, "DELETE FROM event WHERE event_id IN (SELECT event_id FROM event WHERE event_id <= ? ORDER BY event_id LIMIT ?)", below))
        }
    }
}

// ---- presence: which process holds a stream of which user ----

/// Marks `user_id` online on this process until `expires`; true when no live row
/// existed (on any process, this one included), i.e. the user just came online.
pub async fn presence_claim(
    db: &Db,
    user_id: i32,
    process_id: &str,
    expires: time::PrimitiveDateTime,
) -> Result<bool, sqlx::Error> {
    let now = crate::db::now();
    let others: i64 = db_run!(db, |pool| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM presence WHERE user_id = ? AND expires_date_time > ?",
        )
        .bind(user_id)
        .bind(now)
        .fetch_one(pool)
        .await
    })?;
    let upsert = match db {
        Db::MySql(_) => "INSERT INTO presence (user_id, process_id, expires_date_time) VALUES (?, ?, ?) \
                         ON DUPLICATE KEY UPDATE expires_date_time = VALUES(expires_date_time)",
        Db::Sqlite(_) => "INSERT INTO presence (user_id, process_id, expires_date_time) VALUES (?, ?, ?) \
                          ON CONFLICT (user_id, process_id) DO UPDATE SET expires_date_time = excluded.expires_date_time",
    };
    db_run!(db, |pool| sqlx::query(upsert)
        .bind(user_id)
        .bind(process_id)
        .bind(expires)
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(others == 0)
}

/// Renews this process's rows for the users it still holds streams of.
pub async fn presence_renew(
    db: &Db,
    process_id: &str,
    user_ids: &[i32],
    expires: time::PrimitiveDateTime,
) -> Result<(), sqlx::Error> {
    if user_ids.is_empty() {
        return Ok(());
    }
    for chunk in user_ids.chunks(500) {
        db_run!(db, |pool| {
            let mut q = QueryBuilder::new("UPDATE presence SET expires_date_time = ");
            q.push_bind(expires)
                .push(" WHERE process_id = ")
                .push_bind(process_id)
                .push(" AND user_id IN (");
            let mut ids = q.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            q.push(")");
            q.build().execute(pool).await.map(|_| ())
        })?;
    }
    Ok(())
}

/// Removes this process's row for a user; true when no other live row remains, i.e. the
/// user just went offline.
pub async fn presence_release(
    db: &Db,
    user_id: i32,
    process_id: &str,
) -> Result<bool, sqlx::Error> {
    let deleted = db_run!(db, |pool| {
        sqlx::query("DELETE FROM presence WHERE user_id = ? AND process_id = ?")
            .bind(user_id)
            .bind(process_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(deleted > 0 && !is_online(db, user_id).await?)
}

/// Deletes rows whose process stopped renewing them (it died); returns the users that
/// this call took offline.
pub async fn presence_expire(db: &Db) -> Result<Vec<i32>, sqlx::Error> {
    let now = crate::db::now();
    let expired: Vec<(i32, String)> = db_run!(db, |pool| {
        sqlx::query_as(
            "SELECT user_id, process_id FROM presence WHERE expires_date_time <= ? LIMIT 1000",
        )
        .bind(now)
        .fetch_all(pool)
        .await
    })?;
    let mut offline = Vec::new();
    for (user_id, process_id) in expired {
        let deleted = db_run!(db, |pool| {
            sqlx::query("DELETE FROM presence WHERE user_id = ? AND process_id = ? AND expires_date_time <= ?")
                .bind(user_id)
                .bind(&process_id)
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        if deleted > 0 && !is_online(db, user_id).await? {
            offline.push(user_id);
        }
    }
    Ok(offline)
}

pub async fn is_online(db: &Db, user_id: i32) -> Result<bool, sqlx::Error> {
    let now = crate::db::now();
    let n: i64 = db_run!(db, |pool| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM presence WHERE user_id = ? AND expires_date_time > ?",
        )
        .bind(user_id)
        .bind(now)
        .fetch_one(pool)
        .await
    })?;
    Ok(n > 0)
}

/// Which of `user_ids` are online now (one query).
pub async fn online_among(
    db: &Db,
    user_ids: &[i32],
) -> Result<std::collections::HashSet<i32>, sqlx::Error> {
    if user_ids.is_empty() {
        return Ok(Default::default());
    }
    let now = crate::db::now();
    let rows: Vec<i32> = db_run!(db, |pool| {
        let mut q =
            QueryBuilder::new("SELECT DISTINCT user_id FROM presence WHERE expires_date_time > ");
        q.push_bind(now).push(" AND user_id IN (");
        let mut ids = q.separated(", ");
        for id in user_ids {
            ids.push_bind(*id);
        }
        q.push(")");
        q.build_query_scalar().fetch_all(pool).await
    })?;
    Ok(rows.into_iter().collect())
}
