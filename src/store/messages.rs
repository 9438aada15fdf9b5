//! Messages and group chats. Sending is one short transaction: the message row and its
//! events (one per side of a direct chat, one for a whole group). History is paged on the message id (unique and ordered), newest
//! first, with the original's cursor format.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{FromRow, QueryBuilder};
use time::PrimitiveDateTime;

use super::{
    events::{NewEvent, Outbox},
    friends::{self, Talk},
    rich::RichIndex,
    users::{User, UserId, UserSummary},
};
use crate::{
    cache::history::{HistoryCache, Key},
    db::{self, Db, InsertedId},
    db_run, db_tx,
    domain::{
        cursor::{Cursor, Page},
        GroupName, MessageContent,
    },
    error::{AppError, AppResult},
};

pub type MessageId = i32;
pub type GroupId = i32;

/// A message as the API answers it (the original's fields, plus the sender's name).
/// Times are UTC with microseconds and no offset (the original had whole seconds).
#[derive(Debug, Clone, FromRow, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Message {
    pub message_id: MessageId,
    /// Null for a deleted account's message in a group.
    pub sender_id: Option<UserId>,
    /// Additive: the sender's username (null for a deleted account).
    pub sender_username: Option<String>,
    /// (sic: the original's spelling) The addressee of a direct message; null in a group.
    pub reciever_id: Option<UserId>,
    pub content: String,
    pub group_chat_id: Option<GroupId>,
    #[serde(with = "db::serde_time")]
    #[schema(value_type = String, example = "2025-01-31T09:30:00.123456")]
    pub created_date_time: PrimitiveDateTime,
    #[serde(with = "db::serde_time::option")]
    #[schema(value_type = Option<String>, example = "2025-01-31T09:30:00.123456")]
    pub last_edited_date_time: Option<PrimitiveDateTime>,
    pub seen: Option<bool>,
    /// Additive: the files sent with the message, in order; absent when there are none,
    /// so a message without files reads exactly as the original's.
    #[sqlx(skip)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<super::attachments::Attachment>,
    /// Additive: replies, mentions, reactions (`store::rich`).
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub rich: super::rich::RichFields,
}

/// The payload of a `message` event: the message, and the sender's idempotency key when
/// it gave one, so that its clients can match the event to the send they made (socket.io
/// answers it as the original's `message_tracking_id`).
#[derive(Debug, Serialize, Deserialize)]
pub struct MessageEvent<M = Message, K = String> {
    #[serde(flatten)]
    pub message: M,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<K>,
}

pub(crate) const MESSAGE_COLUMNS: &str =
    "m.message_id, m.sender_id, su.username AS sender_username, m.reciever_id, m.content, \
     m.group_chat_id, m.created_date_time, m.last_edited_date_time, m.seen, m.reply_to_message_id";

/// Which conversation: a direct one with a user, or a group chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversation {
    Direct(UserId),
    Group(GroupId),
}

#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct GroupChat {
    pub group_chat_id: GroupId,
    pub name: String,
    pub creator_id: Option<UserId>,
}

const NOT_A_MEMBER: &str = "group chat not found";

macro_rules! fetch_message {
    ($exec:expr, $id:expr) => {
        sqlx::query_as::<_, Message>(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM message m LEFT JOIN user su ON su.user_id = m.sender_id WHERE m.message_id = ?"
        ))
        .bind($id)
        .fetch_optional($exec)
        .await?
    };
}

macro_rules! group_member_ids {
    ($exec:expr, $group:expr) => {
        sqlx::query_scalar::<_, UserId>(
            "SELECT member_id FROM group_chat_member WHERE group_chat_id = ?",
        )
        .bind($group)
        .fetch_all($exec)
        .await?
    };
}

/// The message `sender` posted with this idempotency key, if any.
pub async fn by_client_key(db: &Db, sender: UserId, key: &str) -> AppResult<Option<Message>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM message m LEFT JOIN user su ON su.user_id = m.sender_id \
         WHERE m.sender_id = ? AND m.client_key = ?"
    );
    let found = db_run!(db, |pool| sqlx::query_as::<_, Message>(&sql)
        .bind(sender)
        .bind(key)
        .fetch_optional(pool)
        .await)?;
    let mut found: Vec<Message> = found.into_iter().collect();
    super::attachments::fill(db, &mut found).await?;
    super::rich::fill(db, sender, &mut found).await?;
    Ok(found.pop())
}

/// One page of a conversation, newest first. `next___<id>` goes to older messages,
/// `prev___<id>` back to newer ones. The latest page (no cursor) comes from `cache` when
/// it is sure of it (`crate::cache::history`); the caller has checked that `me` may read
/// the conversation, as for the database.
#[tracing::instrument(skip(db, cache))]
pub async fn history(
    db: &Db,
    cache: &HistoryCache,
    me: UserId,
    conversation: Conversation,
    cursor: Option<&Cursor>,
    limit: u32,
) -> AppResult<Page<Message>> {
    let limit = limit.clamp(1, 100) as usize;
    let key = Key::of(me, conversation);
    if cursor.is_none() {
        if let Some(mut rows) = cache.latest(key, limit) {
            super::rich::for_viewer(&mut rows, me, false);
            return Ok(Page::from_rows(rows, limit, None, |m| {
                m.message_id.to_string()
            }));
        }
    }
    // Before the read: an invalidation from here on keeps its rows out of the cache.
    let ticket = cursor.is_none().then(|| cache.ticket(key)).flatten();
    let bound = match cursor {
        Some(c) => Some(c.numeric().map_err(AppError::bad_request)?),
        None => None,
    };
    let (comparison, order) = match bound {
        Some((false, _)) => (">", "ASC"),
        Some((true, _)) => ("<", "DESC"),
        None => ("<", "DESC"),
    };
    let key = bound.map_or(i64::from(i32::MAX), |(_, k)| k);
    let fetch = (limit + 1) as i64;
    // No derived table of whole rows: MariaDB would copy every candidate's `content` (up
    // to 8 KB) into a temporary table, and spent most of its time doing so. A direct
    // conversation is two index ranges (my messages to them, theirs to me), read as one
    // `UNION ALL` that MySQL streams (its members in parentheses) and merged here; SQLite
    // has no parenthesized members, so there each half is a subquery.
    let from = format!("SELECT {MESSAGE_COLUMNS} FROM message m LEFT JOIN user su ON su.user_id = m.sender_id WHERE ");
    let mysql = matches!(db, Db::MySql(_));
    let mut rows: Vec<Message> = db_run!(db, |pool| {
        let mut q = QueryBuilder::new("");
        match conversation {
            Conversation::Direct(other) => {
                for (i, (sender, reciever)) in [(me, other), (other, me)].into_iter().enumerate() {
                    if i > 0 {
                        q.push(" UNION ALL ");
                    }
                    q.push(if mysql { "(" } else { "SELECT * FROM (" })
                        .push(&from)
                        .push("m.sender_id = ")
                        .push_bind(sender)
                        .push(" AND m.reciever_id = ")
                        .push_bind(reciever)
                        .push(format!(
                            " AND m.group_chat_id IS NULL AND m.message_id {comparison} "
                        ))
                        .push_bind(key)
                        .push(format!(" ORDER BY m.message_id {order} LIMIT "))
                        .push_bind(fetch)
                        .push(if mysql {
                            ")".to_string()
                        } else {
                            format!(") half{i}")
                        });
                }
            }
            Conversation::Group(group) => {
                q.push(&from)
                    .push("m.group_chat_id = ")
                    .push_bind(group)
                    .push(format!(" AND m.message_id {comparison} "))
                    .push_bind(key)
                    .push(format!(" ORDER BY m.message_id {order} LIMIT "))
                    .push_bind(fetch);
            }
        }
        q.build_query_as::<Message>().fetch_all(pool).await
    })?;
    // Nearest the cursor first, keep a page and one more, then newest first.
    rows.sort_unstable_by_key(|m| m.message_id);
    if order == "DESC" {
        rows.reverse();
    }
    rows.truncate(fetch as usize);
    if order == "ASC" {
        rows.reverse();
    }
    super::attachments::fill(db, &mut rows).await?;
    super::rich::fill(db, me, &mut rows).await?;
    if let Some(ticket) = ticket {
        cache.install(ticket, &rows, fetch as usize);
    }
    Ok(Page::from_rows(rows, limit, cursor, |m| {
        m.message_id.to_string()
    }))
}

/// Checks that `me` belongs to the group; 404 otherwise, so nobody learns it exists.
pub async fn require_member(db: &Db, me: UserId, group: GroupId) -> AppResult<GroupChat> {
    let row: Option<GroupChat> = db_run!(db, |pool| {
        sqlx::query_as::<_, GroupChat>(
            "SELECT g.group_chat_id, g.name, g.creator_id FROM group_chat g \
             JOIN group_chat_member gm ON gm.group_chat_id = g.group_chat_id AND gm.member_id = ? \
             WHERE g.group_chat_id = ?",
        )
        .bind(me)
        .bind(group)
        .fetch_optional(pool)
        .await
    })?;
    row.ok_or_else(|| AppError::not_found(NOT_A_MEMBER))
}

/// A message `me` may see (theirs, to them, or in their group), or 404.
pub(crate) async fn visible_message(
    db: &Db,
    me: UserId,
    message_id: MessageId,
) -> AppResult<Message> {
    let not_found = || AppError::not_found("message not found");
    let message = db_run!(db, |pool| Ok::<_, sqlx::Error>(fetch_message!(
        pool, message_id
    )))?
    .ok_or_else(not_found)?;
    let visible = match message.group_chat_id {
        Some(group) => is_member(db, me, group).await?,
        None => message.sender_id == Some(me) || message.reciever_id == Some(me),
    };
    if !visible {
        return Err(not_found());
    }
    Ok(message)
}

/// Whether `user` is a member of `group` (one lookup of the membership's key).
async fn is_member(db: &Db, user: UserId, group: GroupId) -> Result<bool, sqlx::Error> {
    let found: Option<i32> = db_run!(db, |pool| {
        sqlx::query_scalar(
            "SELECT 1 FROM group_chat_member WHERE group_chat_id = ? AND member_id = ?",
        )
        .bind(group)
        .bind(user)
        .fetch_optional(pool)
        .await
    })?;
    Ok(found.is_some())
}

/// The events that tell a message's conversation of a change to it: one row for a
/// group, which its members hear on delivery (fan-out on read, `crate::events`), or one
/// for each side of a direct chat.
pub(crate) fn conversation_events(
    kind: &'static str,
    message: &Message,
    payload: &impl Serialize,
) -> Vec<NewEvent> {
    match message.group_chat_id {
        Some(group) => vec![NewEvent::to_group(group, kind, payload)],
        None => match (message.reciever_id, message.sender_id) {
            // One row for both sides.
            (Some(reciever), Some(sender)) if reciever != sender => {
                vec![NewEvent::to_pair(reciever, sender, kind, payload)]
            }
            // A side whose account was deleted hears nothing.
            (reciever, sender) => {
                let sides: Vec<UserId> = reciever.into_iter().chain(sender).collect();
                NewEvent::to_each(kind, &sides, payload)
            }
        },
    }
}

/// A direct message's two sides may only touch it (edit, delete) while they may talk:
/// nothing reaches a user who blocked the other, or was blocked, or unfriended.
pub(crate) async fn require_talk(db: &Db, me: UserId, message: &Message) -> AppResult<()> {
    if let (None, Some(reciever)) = (message.group_chat_id, message.reciever_id) {
        let other = if reciever == me {
            message.sender_id.unwrap_or(reciever)
        } else {
            reciever
        };
        friends::may_talk(db, me, other).await?.require()?;
    }
    Ok(())
}

/// One message `me` may see (theirs, to them, or in their group), or 404.
pub async fn visible(db: &Db, me: UserId, message_id: MessageId) -> AppResult<Message> {
    visible_message(db, me, message_id).await
}

/// The id of the last group message `me` has read (0 before the first).
pub async fn last_read(db: &Db, me: UserId, group: GroupId) -> AppResult<MessageId> {
    let id: Option<MessageId> = db_run!(db, |pool| {
        sqlx::query_scalar(
            "SELECT last_read_message_id FROM group_chat_member WHERE group_chat_id = ? AND member_id = ?",
        )
        .bind(group)
        .bind(me)
        .fetch_optional(pool)
        .await
    })?;
    Ok(id.unwrap_or(0))
}

/// Edits my own message; everyone in the conversation hears `message_edited`.
#[tracing::instrument(skip(db, history, content))]
pub async fn edit(
    db: &Db,
    history: &HistoryCache,
    me: &User,
    message_id: MessageId,
    content: &MessageContent,
) -> AppResult<Message> {
    let mut message = visible_message(db, me.user_id, message_id).await?;
    if message.sender_id != Some(me.user_id) {
        return Err(AppError::Forbidden(
            "you can only edit your own messages".into(),
        ));
    }
    require_talk(db, me.user_id, &message).await?;
    let now = db::now();
    message.content = content.as_str().to_string();
    message.last_edited_date_time = Some(now);
    // The event replaces the message on every page: with its files, reply, reactions.
    super::attachments::fill(db, std::slice::from_mut(&mut message)).await?;
    // Mentions checked again and the search postings replaced, in the edit's transaction.
    super::rich::fill(db, me.user_id, std::slice::from_mut(&mut message)).await?;
    message.rich.mentions = super::rich::prepare_edit(db, me.user_id, &message).await?;
    let written = db_tx!(db, |tx| {
        let updated = sqlx::query("UPDATE message SET content = ?, last_edited_date_time = ? WHERE message_id = ? AND sender_id = ?")
            .bind(content.as_str())
            .bind(now)
            .bind(message_id)
            .bind(me.user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Deleted meanwhile (another tab, another process): nothing to edit or index.
        if updated == 0 {
            return Err(AppError::not_found("message not found"));
        }
        tx.unindex_message(message_id).await?;
        tx.index_messages(&[&message]).await?;
        tx.write_events(&super::rich::message_events(
            "message_edited",
            &message,
            None,
        ))
        .await?;
        Ok::<_, AppError>(())
    });
    // Whatever the outcome (a failed COMMIT may have written it): read it again.
    history.forget_message(&message);
    written?;
    Ok(message)
}

/// Deletes my own message for everyone; they hear `message_deleted`.
#[tracing::instrument(skip(db, history))]
pub async fn delete(
    db: &Db,
    history: &HistoryCache,
    me: &User,
    message_id: MessageId,
) -> AppResult<Message> {
    let message = visible_message(db, me.user_id, message_id).await?;
    if message.sender_id != Some(me.user_id) {
        return Err(AppError::Forbidden(
            "you can only delete your own messages".into(),
        ));
    }
    require_talk(db, me.user_id, &message).await?;
    let payload = json!({ "message_id": message_id, "group_chat_id": message.group_chat_id, "sender_id": message.sender_id, "reciever_id": message.reciever_id });
    let written = db_tx!(db, |tx| {
        sqlx::query("DELETE FROM message WHERE message_id = ? AND sender_id = ?")
            .bind(message_id)
            .bind(me.user_id)
            .execute(&mut *tx)
            .await?;
        tx.write_events(&conversation_events("message_deleted", &message, &payload))
            .await?;
        Ok::<_, AppError>(())
    });
    history.forget_message(&message);
    written?;
    Ok(message)
}

/// Marks messages up to `up_to` as seen by `me`. Direct: the `seen` flag of what the
/// other sent me; group: my read marker. The others hear `seen` when anything changed.
#[tracing::instrument(skip(db, history))]
pub async fn mark_seen(
    db: &Db,
    history: &HistoryCache,
    me: UserId,
    conversation: Conversation,
    up_to: MessageId,
) -> AppResult<bool> {
    match conversation {
        Conversation::Group(group) => {
            require_member(db, me, group).await?;
        }
        Conversation::Direct(other) => friends::may_talk(db, me, other).await?.require()?,
    }
    // No further than the conversation's newest message: a mark past it (i32::MAX) would
    // make every future message arrive already read.
    let newest: Option<MessageId> = db_run!(db, |pool| {
        match conversation {
            Conversation::Direct(other) => sqlx::query_scalar(
                "SELECT MAX(message_id) FROM message WHERE sender_id = ? AND reciever_id = ? AND group_chat_id IS NULL",
            )
            .bind(other)
            .bind(me),
            Conversation::Group(group) => {
                sqlx::query_scalar("SELECT MAX(message_id) FROM message WHERE group_chat_id = ?")
                    .bind(group)
            }
        }
        .fetch_one(pool)
        .await
    })?;
    let up_to = up_to.min(newest.unwrap_or(0));
    if up_to <= 0 {
        return Ok(false);
    }
    let written = db_tx!(db, |tx| {
        let changed = match conversation {
            Conversation::Direct(other) => {
                let r = sqlx::query(
                    "UPDATE message SET seen = 1 WHERE sender_id = ? AND reciever_id = ? AND group_chat_id IS NULL \
                     AND message_id <= ? AND (seen = 0 OR seen IS NULL)",
                )
                .bind(other)
                .bind(me)
                .bind(up_to)
                .execute(&mut *tx)
                .await?;
                r.rows_affected() > 0
            }
            Conversation::Group(group) => {
                let r = sqlx::query(
                    "UPDATE group_chat_member SET last_read_message_id = ? \
                     WHERE group_chat_id = ? AND member_id = ? AND last_read_message_id < ?",
                )
                .bind(up_to)
                .bind(group)
                .bind(me)
                .bind(up_to)
                .execute(&mut *tx)
                .await?;
                r.rows_affected() > 0
            }
        };
        if changed {
            let events = match conversation {
                Conversation::Direct(other) => vec![NewEvent::to_pair(
                    other,
                    me,
                    "seen",
                    &json!({ "message_id": up_to, "user_id": me }),
                )],
                Conversation::Group(g) => vec![NewEvent::to_group(
                    g,
                    "seen",
                    &json!({ "message_id": up_to, "user_id": me, "group_chat_id": g }),
                )],
            };
            tx.write_events(&events).await?;
        }
        Ok::<_, AppError>(changed)
    });
    // A direct chat's `seen` flags are its messages'; a group's marker is the member's.
    if let (Conversation::Direct(_), Ok(true) | Err(_)) = (conversation, &written) {
        history.forget(Key::of(me, conversation));
    }
    written
}

/// One row of the chats list.
#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct ConversationSummary {
    /// `direct` or `group`.
    pub kind: String,
    /// The other user's id, or the group's.
    pub id: i32,
    /// The other user's name, or the group's.
    pub name: String,
    /// The other user's display name, if they set one.
    pub display_name: Option<String>,
    pub last_message_id: Option<i32>,
    pub last_message: Option<String>,
    pub last_sender_id: Option<i32>,
    #[serde(with = "db::serde_time::option")]
    #[schema(value_type = Option<String>, example = "2025-01-31T09:30:00.123456")]
    pub last_message_at: Option<PrimitiveDateTime>,
    pub unread: i64,
}

/// One side of `me`'s direct chats as [`conversations`] reads it: the people found
/// (`people`, a CTE's name), the column naming `me` and the one naming them, and the index
/// that starts with `me`'s column (with its hint).
struct DirectSide {
    people: &'static str,
    mine: &'static str,
    theirs: &'static str,
    index: String,
}

impl DirectSide {
    /// The CTE of the people on the other side, one index seek each: MySQL's loose index
    /// scan (its `GROUP BY` names the constant prefix too, or MariaDB never picks it), or on
    /// SQLite, which has none, a recursive walk that seeks the next id after the last (and
    /// ends on NULL).
    fn push_people<'a, DB: sqlx::Database>(
        &self,
        q: &mut QueryBuilder<'a, DB>,
        mysql: bool,
        me: UserId,
    ) where
        UserId: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    {
        let DirectSide {
            people,
            mine,
            theirs,
            index,
        } = self;
        if mysql {
            q.push(format!(
                "{people} (id) AS (SELECT m.{theirs} FROM message m {index} WHERE m.{mine} = "
            ))
            .push_bind(me)
            .push(format!(
                " AND m.{theirs} IS NOT NULL GROUP BY m.{mine}, m.{theirs})"
            ));
        } else {
            q.push(format!(
                "{people} (id) AS (SELECT (SELECT m.{theirs} FROM message m {index} WHERE m.{mine} = "
            ))
            .push_bind(me)
            .push(format!(
                " AND m.{theirs} IS NOT NULL ORDER BY m.{theirs} LIMIT 1) \
                 UNION ALL SELECT (SELECT m.{theirs} FROM message m {index} WHERE m.{mine} = "
            ))
            .push_bind(me)
            .push(format!(
                " AND m.{theirs} > w.id ORDER BY m.{theirs} LIMIT 1) \
                 FROM {people} w WHERE w.id IS NOT NULL)"
            ));
        }
    }

    /// A row per person of [`Self::push_people`] with the last direct message between
    /// them this way: one backward step in the index.
    fn push_last_message<'a, DB: sqlx::Database>(&self, q: &mut QueryBuilder<'a, DB>, me: UserId)
    where
        UserId: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    {
        let DirectSide {
            people,
            mine,
            theirs,
            index,
        } = self;
        q.push(format!(
            " SELECT w.id, (SELECT m.message_id FROM message m {index} WHERE m.{mine} = "
        ))
        .push_bind(me)
        .push(format!(
            " AND m.{theirs} = w.id AND m.group_chat_id IS NULL ORDER BY m.message_id DESC LIMIT 1) AS last_id \
             FROM {people} w WHERE w.id IS NOT NULL"
        ));
    }
}

/// Every conversation of `me`, most recent first, with unread counts.
///
/// Its cost follows the number of conversations and of unread messages, not of all the
/// messages ever sent: every lookup is an index seek or a short index range.
/// - The people `me` wrote to or heard from are walked along `message_direct_pair`
///   (sender, recipient) and `message_received` (recipient, sender), one seek per person.
///   MySQL: a loose index scan, which the optimizer picks once a user's messages far
///   outnumber the people (a short history is read whole, as cheaply); its `GROUP BY`
///   names the constant prefix too, without which MariaDB never picked it. SQLite has
///   no loose index scan: a recursive CTE seeks the next id after the last one.
/// - The last message each way is one backward step in the index that starts with `me`.
/// - Direct unread counts are one range of `message_unseen` (recipient, seen, ...): only
///   the unseen messages. `seen = 0` and `seen IS NULL` are two ranges, written apart so
///   that SQLite's planner uses the index for both.
/// - Every message index is named (`FORCE INDEX`, `INDEXED BY`): left to choose, MariaDB
///   took `message_unseen` for the last message (it covers the query) and sorted the
///   pair's every message, or intersected `message_group_chat_id_FK` for
///   `group_chat_id IS NULL`, which every direct message matches (20 to 45 ms a list
///   under load, in the read benchmark).
/// - A group's last message is one step back in `message_group_history`, its unread
///   count the range after the member's read marker. SQLite seeks that range from the
///   correlated marker; MySQL and MariaDB do not (they read the group's whole index range
///   and filter), except from a constant: there each group is a branch of its own whose
///   membership row is found by its primary key, a const table whose marker the optimizer
///   reads before planning the range. That needs the group ids first: one more query.
#[tracing::instrument(skip(db))]
pub async fn conversations(db: &Db, me: UserId) -> AppResult<Vec<ConversationSummary>> {
    let mysql = matches!(db, Db::MySql(_));
    let groups: Vec<GroupId> = if mysql {
        db_run!(db, |pool| {
            sqlx::query_scalar(
                "SELECT group_chat_id FROM group_chat_member WHERE member_id = ? ORDER BY group_chat_id",
            )
            .bind(me)
            .fetch_all(pool)
            .await
        })?
    } else {
        Vec::new()
    };
    let [by_pair, by_recipient, unseen, by_group] = [
        "message_direct_pair",
        "message_received",
        "message_unseen",
        "message_group_history",
    ]
    .map(|index| {
        if mysql {
            format!("FORCE INDEX ({index})")
        } else {
            format!("INDEXED BY {index}")
        }
    });
    // The two sides of a direct chat, each walked along the index that starts with `me`.
    let sides = [
        DirectSide {
            people: "sent_to",
            mine: "sender_id",
            theirs: "reciever_id",
            index: by_pair,
        },
        DirectSide {
            people: "heard_from",
            mine: "reciever_id",
            theirs: "sender_id",
            index: by_recipient,
        },
    ];
    let rows = db_run!(db, |pool| {
        let mut q = QueryBuilder::new(if mysql { "WITH " } else { "WITH RECURSIVE " });
        // The people `me` wrote to (`sent_to`) and heard from (`heard_from`): direct
        // messages, and any other row naming both (filtered out below by `last_id`).
        for (n, side) in sides.iter().enumerate() {
            if n > 0 {
                q.push(", ");
            }
            side.push_people(&mut q, mysql, me);
        }
        q.push(
            " SELECT conv.kind, conv.id, COALESCE(u.username, g.name, '') AS name, u.display_name, \
               conv.last_id AS last_message_id, lm.content AS last_message, lm.sender_id AS last_sender_id, \
               lm.created_date_time AS last_message_at, CAST(COALESCE(conv.unread, un.n, 0) AS SIGNED) AS unread \
             FROM ( \
               SELECT 'direct' AS kind, d.id, MAX(d.last_id) AS last_id, NULL AS unread FROM (",
        );
        for (n, side) in sides.iter().enumerate() {
            if n > 0 {
                q.push(" UNION ALL");
            }
            side.push_last_message(&mut q, me);
        }
        q.push(" ) d GROUP BY d.id HAVING MAX(d.last_id) IS NOT NULL");
        // SQLite: one branch for every group; MySQL: one per group, by its key.
        let branches: Vec<Option<GroupId>> = if mysql {
            groups.iter().copied().map(Some).collect()
        } else {
            vec![None]
        };
        for group in branches {
            q.push(format!(
                " UNION ALL SELECT 'group', gm.group_chat_id, \
                   (SELECT m.message_id FROM message m {by_group} WHERE m.group_chat_id = gm.group_chat_id \
                    ORDER BY m.message_id DESC LIMIT 1), \
                   (SELECT COUNT(*) FROM message m {by_group} WHERE m.group_chat_id = gm.group_chat_id \
                    AND m.message_id > gm.last_read_message_id AND (m.sender_id IS NULL OR m.sender_id <> "
            ))
            .push_bind(me)
            .push(")) FROM group_chat_member gm WHERE gm.member_id = ")
            .push_bind(me);
            if let Some(group) = group {
                q.push(" AND gm.group_chat_id = ").push_bind(group);
            }
        }
        // Unread: `seen = 0` and `seen IS NULL` as two ranges of `message_unseen`.
        q.push(") conv LEFT JOIN (SELECT x.sender_id, COUNT(*) AS n FROM (");
        for (n, unseen_is) in ["m.seen = 0", "m.seen IS NULL"].into_iter().enumerate() {
            if n > 0 {
                q.push(" UNION ALL");
            }
            q.push(format!(
                " SELECT m.sender_id FROM message m {unseen} WHERE m.reciever_id = "
            ))
            .push_bind(me)
            .push(format!(" AND {unseen_is} AND m.group_chat_id IS NULL"));
        }
        q.push(
            " \
             ) x GROUP BY x.sender_id) un ON conv.kind = 'direct' AND un.sender_id = conv.id \
             LEFT JOIN message lm ON lm.message_id = conv.last_id \
             LEFT JOIN user u ON conv.kind = 'direct' AND u.user_id = conv.id \
             LEFT JOIN group_chat g ON conv.kind = 'group' AND g.group_chat_id = conv.id \
             ORDER BY COALESCE(conv.last_id, 0) DESC, conv.id DESC",
        );
        q.build_query_as::<ConversationSummary>()
            .fetch_all(pool)
            .await
    })?;
    Ok(rows)
}

/// The answer when a group would have more than `max` members.
fn group_full(max: u32) -> AppError {
    AppError::Conflict(format!("the group is full: at most {max} members"))
}

/// Creates a group of `me` and some of my friends, at most `max_members` in all.
#[tracing::instrument(skip(db))]
pub async fn create_group(
    db: &Db,
    me: &User,
    name: &GroupName,
    members: &[User],
    max_members: u32,
) -> AppResult<GroupChat> {
    // Every named member must be my friend: one query for all of them.
    let pairs: Vec<(UserId, UserId)> = members
        .iter()
        .filter(|m| m.user_id != me.user_id)
        .map(|m| (me.user_id, m.user_id))
        .collect();
    if !pairs.is_empty() {
        let rights = db_run!(db, |pool| friends::talk_rights!(pool, &pairs))?;
        if let Some(stranger) = members.iter().find(|m| {
            m.user_id != me.user_id
                && friends::talk_of(&rights, me.user_id, m.user_id) != Talk::Friends
        }) {
            return Err(not_your_friend(stranger));
        }
    }
    let now = db::now();
    let mut ids: Vec<UserId> = members
        .iter()
        .map(|m| m.user_id)
        .chain([me.user_id])
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() > max_members as usize {
        return Err(group_full(max_members));
    }
    db_tx!(db, |tx| {
        let group_chat_id = sqlx::query(
            "INSERT INTO group_chat (name, creator_id, created_date_time) VALUES (?, ?, ?)",
        )
        .bind(name.as_str())
        .bind(me.user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .inserted_id() as GroupId;
        let mut insert =
            QueryBuilder::new("INSERT INTO group_chat_member (group_chat_id, member_id) ");
        insert.push_values(&ids, |mut row, id| {
            row.push_bind(group_chat_id).push_bind(*id);
        });
        insert.build().execute(&mut *tx).await?;
        let payload =
            json!({ "group_chat_id": group_chat_id, "name": name.as_str(), "change": "added" });
        tx.write_events(&[NewEvent::to_group(group_chat_id, "group_chat", &payload)])
            .await?;
        Ok(GroupChat {
            group_chat_id,
            name: name.as_str().to_string(),
            creator_id: Some(me.user_id),
        })
    })
}

async fn require_friend(db: &Db, me: UserId, other: &User) -> AppResult<()> {
    match friends::may_talk(db, me, other.user_id).await? {
        Talk::Friends => Ok(()),
        _ => Err(not_your_friend(other)),
    }
}

fn not_your_friend(other: &User) -> AppError {
    AppError::bad_request(format!("{} is not your friend", other.username))
}

/// The groups `me` belongs to.
pub async fn my_groups(db: &Db, me: UserId) -> AppResult<Vec<GroupChat>> {
    Ok(db_run!(db, |pool| {
        sqlx::query_as::<_, GroupChat>(
            "SELECT g.group_chat_id, g.name, g.creator_id FROM group_chat g \
             JOIN group_chat_member gm ON gm.group_chat_id = g.group_chat_id WHERE gm.member_id = ? ORDER BY g.name, g.group_chat_id",
        )
        .bind(me)
        .fetch_all(pool)
        .await
    })?)
}

/// The member ids of each of `groups` (one query; a group with no members, or gone, is
/// missing): what the event tailer routes group events by.
pub async fn members_of_groups(
    db: &Db,
    groups: &[GroupId],
) -> Result<std::collections::HashMap<GroupId, Vec<UserId>>, sqlx::Error> {
    let mut members: std::collections::HashMap<GroupId, Vec<UserId>> = Default::default();
    for chunk in groups.chunks(500) {
        let rows: Vec<(GroupId, UserId)> = db_run!(db, |pool| {
            let mut q = QueryBuilder::new(
                "SELECT group_chat_id, member_id FROM group_chat_member WHERE group_chat_id IN (",
            );
            let mut list = q.separated(", ");
            for group in chunk {
                list.push_bind(*group);
            }
            q.push(")");
            q.build_query_as().fetch_all(pool).await
        })?;
        for (group, member) in rows {
            members.entry(group).or_default().push(member);
        }
    }
    Ok(members)
}

pub async fn members(db: &Db, group: GroupId) -> AppResult<Vec<UserSummary>> {
    Ok(db_run!(db, |pool| {
        sqlx::query_as::<_, UserSummary>(
            "SELECT u.user_id, u.username FROM group_chat_member gm JOIN user u ON u.user_id = gm.member_id \
             WHERE gm.group_chat_id = ? ORDER BY u.username",
        )
        .bind(group)
        .fetch_all(pool)
        .await
    })?)
}

/// A member adds one of their friends, while the group has fewer than `max_members`.
pub async fn add_member(
    db: &Db,
    me: &User,
    group: GroupId,
    new_member: &User,
    max_members: u32,
) -> AppResult<()> {
    let chat = require_member(db, me.user_id, group).await?;
    require_friend(db, me.user_id, new_member).await?;
    db_tx!(db, |tx| {
        let existing = group_member_ids!(&mut *tx, group);
        if existing.contains(&new_member.user_id) {
            return Err(AppError::bad_request("already a member"));
        }
        if existing.len() >= max_members as usize {
            return Err(group_full(max_members));
        }
        // Two members adding the same friend at once: both read the list before either
        // wrote; the second insert hits the key (MySQL) and is the same 400.
        sqlx::query("INSERT INTO group_chat_member (group_chat_id, member_id) VALUES (?, ?)")
            .bind(group)
            .bind(new_member.user_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| match db::is_unique_violation(&e) {
                true => AppError::bad_request("already a member"),
                false => AppError::from(e),
            })?;
        let mut events = vec![NewEvent::new(
            new_member.user_id,
            "group_chat",
            &json!({ "group_chat_id": group, "name": chat.name, "change": "added" }),
        )];
        // The others hear one row; the one who joined heard `added`.
        let joined = json!({ "group_chat_id": group, "name": chat.name, "change": "member_joined", "user_id": new_member.user_id, "username": new_member.username });
        events.push(NewEvent::to_group(group, "group_chat", &joined).except(new_member.user_id));
        tx.write_events(&events).await?;
        Ok(())
    })
}

/// Takes `member` out of the group: the creator removing someone, or anyone leaving.
/// A group with nobody left is deleted.
pub async fn remove_member(db: &Db, me: &User, group: GroupId, member: &User) -> AppResult<()> {
    let chat = require_member(db, me.user_id, group).await?;
    let leaving = member.user_id == me.user_id;
    if !leaving && chat.creator_id != Some(me.user_id) {
        return Err(AppError::Forbidden(
            "only the group's creator can remove members".into(),
        ));
    }
    db_tx!(db, |tx| {
        let removed =
            sqlx::query("DELETE FROM group_chat_member WHERE group_chat_id = ? AND member_id = ?")
                .bind(group)
                .bind(member.user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if removed == 0 {
            return Err(AppError::not_found("not a member of this group chat"));
        }
        let remaining = group_member_ids!(&mut *tx, group);
        if remaining.is_empty() {
            sqlx::query("DELETE FROM group_chat WHERE group_chat_id = ?")
                .bind(group)
                .execute(&mut *tx)
                .await?;
        }
        let mut events = Vec::new();
        if !leaving {
            events.push(NewEvent::new(
                member.user_id,
                "group_chat",
                &json!({ "group_chat_id": group, "name": chat.name, "change": "removed" }),
            ));
        }
        // Those who remain hear one row (a group nobody is left in has nobody to tell).
        if !remaining.is_empty() {
            let left = json!({ "group_chat_id": group, "name": chat.name, "change": "member_left", "user_id": member.user_id, "username": member.username });
            events.push(NewEvent::to_group(group, "group_chat", &left));
        }
        tx.write_events(&events).await?;
        Ok(())
    })
}

pub async fn rename(db: &Db, me: &User, group: GroupId, name: &GroupName) -> AppResult<GroupChat> {
    let mut chat = require_member(db, me.user_id, group).await?;
    db_tx!(db, |tx| {
        sqlx::query("UPDATE group_chat SET name = ? WHERE group_chat_id = ?")
            .bind(name.as_str())
            .bind(group)
            .execute(&mut *tx)
            .await?;
        let payload = json!({ "group_chat_id": group, "name": name.as_str(), "change": "renamed" });
        tx.write_events(&[NewEvent::to_group(group, "group_chat", &payload)])
            .await?;
        Ok::<_, AppError>(())
    })?;
    chat.name = name.as_str().to_string();
    Ok(chat)
}

/// Tells the other side of a conversation that `me` is typing. Live only: typing events
/// are not replayed to a stream that resumes.
pub async fn typing(db: &Db, me: &User, conversation: Conversation) -> AppResult<()> {
    let event = match conversation {
        Conversation::Direct(other) => {
            // The one rule; typing's own answer (400 whatever the reason) is its original one.
            if friends::may_talk(db, me.user_id, other).await? != Talk::Friends {
                return Err(AppError::bad_request(
                    "you cannot message this person if you are not their friend",
                ));
            }
            NewEvent::new(
                other,
                "typing",
                &json!({ "user_id": me.user_id, "username": me.username, "friend_username": me.username }),
            )
        }
        Conversation::Group(group) => {
            require_member(db, me.user_id, group).await?;
            // One row, heard by every member but the one typing.
            NewEvent::to_group(
                group,
                "typing",
                &json!({ "user_id": me.user_id, "username": me.username, "group_chat_id": group }),
            )
            .except(me.user_id)
        }
    };
    super::events::write(db, &[event]).await?;
    Ok(())
}

/// Whether my message `message_id` has been read: by the other side of a direct chat, or
/// by some other member of a group.
pub async fn seen_by_others(
    db: &Db,
    me: UserId,
    conversation: Conversation,
    message_id: MessageId,
) -> AppResult<bool> {
    let n: i64 = db_run!(db, |pool| {
        match conversation {
            Conversation::Direct(_) => sqlx::query_scalar(
                "SELECT COUNT(*) FROM message WHERE message_id = ? AND sender_id = ? AND seen = 1",
            )
            .bind(message_id)
            .bind(me),
            Conversation::Group(group) => sqlx::query_scalar(
                "SELECT COUNT(*) FROM group_chat_member \
                 WHERE group_chat_id = ? AND member_id <> ? AND last_read_message_id >= ?",
            )
            .bind(group)
            .bind(me)
            .bind(message_id),
        }
        .fetch_one(pool)
        .await
    })?;
    Ok(n > 0)
}
