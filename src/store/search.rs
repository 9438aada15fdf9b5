//! Search across every message a user can read now: their direct conversations and the
//! groups they are a member of at the moment of searching (a group left is no longer
//! searched, as its history can no longer be opened either).
//!
//! # Design: an inverted index of our own, the same on every database
//!
//! `message_search (term, owner_id, message_id, sender_id)` holds one posting per
//! distinct term of a message and per *owner*: the sender and the recipient of a direct
//! message, or the group (as minus its id) of a group message. The sender is there too,
//! so that "from a person" is decided within the postings, without reading messages. Terms come from the application's
//! tokenizer (`rich::tokens`): Unicode words, case- and width-folded; scripts written
//! without spaces (Chinese, Japanese, Korean, Thai…) as single characters and character
//! pairs. A term is stored as a 64-bit hash. A query is the postings of its terms for
//! the owners the searcher is now (themself and their groups), joined on the message,
//! newest first; the primary key `(term, owner_id, message_id)` answers each term as a
//! few index ranges, however large the whole table grows.
//!
//! Why not the engines' own full-text search: SQLite's FTS5 and InnoDB's `FULLTEXT` would
//! be two designs with two behaviours, and neither filters by reader inside the index: a
//! common word would be looked up in every conversation of every user and then filtered,
//! which is what makes a search slow on a large database. MariaDB has no n-gram parser,
//! so Chinese and Japanese would need tokens made by the application anyway, and
//! InnoDB's minimum word length and stop words would drop two-character pairs and short
//! words. With terms hashed to integers, the index is the same table on SQLite, MariaDB
//! and MySQL 8, matches the same way everywhere, and is tested once.
//!
//! The index is kept in step in the transactions that change messages: a send writes
//! its postings (`store::sending`), an edit replaces them (`store::messages::edit`), and
//! a deleted message's postings go with it (`ON DELETE CASCADE`). Messages written
//! before the index existed are indexed in the background after start-up ([`backfill`]).

use serde::Serialize;
use sqlx::{FromRow, QueryBuilder};
use time::PrimitiveDateTime;

use super::{
    messages::{self, Conversation, GroupId, Message, MESSAGE_COLUMNS},
    rich,
    users::UserId,
};
use crate::{
    db::Db,
    db_run,
    domain::cursor::{Cursor, Page},
    error::{AppError, AppResult},
    rich::{format::escape, tokens},
};

/// The longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;

/// A query's text, checked: not empty, not too long, with something to search for.
#[derive(Debug, Clone)]
pub struct SearchText {
    text: String,
    terms: Vec<String>,
}

impl SearchText {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let text = raw.trim();
        if text.is_empty() {
            return Err("the search query cannot be empty".into());
        }
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(format!(
                "the search query is longer than {MAX_QUERY_CHARS} characters"
            ));
        }
        let terms = tokens::query_terms(text);
        if terms.is_empty() {
            return Err("the search query has no words to search for".into());
        }
        Ok(Self {
            text: text.to_string(),
            terms,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// What to search, and where.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub text: SearchText,
    /// Only this conversation.
    pub conversation: Option<Conversation>,
    /// Only messages this user sent.
    pub from: Option<UserId>,
    /// Only messages written at or after this time (UTC).
    pub after: Option<PrimitiveDateTime>,
    /// Only messages written before this time (UTC).
    pub before: Option<PrimitiveDateTime>,
}

/// Where a hit was written.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HitConversation {
    /// `direct` or `group`.
    pub kind: &'static str,
    /// The other user's id, or the group's.
    pub id: i32,
    /// The other user's name, or the group's.
    pub name: String,
}

/// One result: the message, its conversation, a link that opens the conversation at
/// the message, and the text with the matches marked (`<mark>`, everything else escaped).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SearchHit {
    #[serde(flatten)]
    pub message: Message,
    pub conversation: HitConversation,
    pub path: String,
    pub highlight: String,
}

#[derive(FromRow)]
struct HitRow {
    #[sqlx(flatten)]
    message: Message,
    group_name: Option<String>,
    other_id: Option<UserId>,
    other_username: Option<String>,
}

/// One page of `me`'s matches, newest first; `next___<message id>` goes on.
#[tracing::instrument(skip(db))]
pub async fn search(
    db: &Db,
    me: UserId,
    query: &SearchQuery,
    cursor: Option<&Cursor>,
    limit: u32,
) -> AppResult<Page<SearchHit>> {
    let limit = limit.clamp(1, 100) as usize;
    // Only onwards (older): a search has no "newer" pages to go back to.
    let before_id = match cursor {
        None => None,
        Some(next @ Cursor::Next(_)) => Some(next.numeric().map_err(AppError::bad_request)?.1),
        Some(Cursor::Prev(_)) => return Err(AppError::bad_request("invalid cursor")),
    };
    let owners: Vec<i64> = match query.conversation {
        Some(Conversation::Group(g)) => {
            messages::require_member(db, me, g).await?;
            vec![-i64::from(g)]
        }
        Some(Conversation::Direct(_)) => vec![i64::from(me)],
        None => {
            let groups: Vec<GroupId> = db_run!(db, |pool| {
                sqlx::query_scalar(
                    "SELECT group_chat_id FROM group_chat_member WHERE member_id = ?",
                )
                .bind(me)
                .fetch_all(pool)
                .await
            })?;
            std::iter::once(i64::from(me))
                .chain(groups.into_iter().map(|g| -i64::from(g)))
                .collect()
        }
    };
    // Dates as message ids too, so that they narrow the postings' ranges themselves.
    let after_id = match query.after {
        Some(t) => Some(first_id_from(db, t).await?),
        None => None,
    };
    let before_id = match (query.before, before_id) {
        (Some(t), cursor) => {
            let bound = first_id_from(db, t).await?;
            Some(cursor.map_or(bound, |c| c.min(bound)))
        }
        (None, cursor) => cursor,
    };
    // The longest term first: usually the rarest, so the fewest postings to walk.
    let mut terms = query.text.terms.clone();
    terms.sort_by_key(|t| std::cmp::Reverse(t.chars().count()));
    let keys: Vec<i64> = terms.iter().map(|t| tokens::term_key(t)).collect();
    let fetch = (limit + 1) as i64;
    // MariaDB, seeing `ORDER BY message_id LIMIT`, may walk the whole index on message_id
    // instead of the few postings of the first term (seconds, not milliseconds, on a
    // million messages): the plan is pinned, postings of the first term first. SQLite's
    // planner takes that plan by itself.
    let (straight, by_term) = match db {
        Db::MySql(_) => ("STRAIGHT_JOIN ", " FORCE INDEX (PRIMARY)"),
        Db::Sqlite(_) => ("", ""),
    };
    let rows: Vec<HitRow> = db_run!(db, |pool| {
        let mut q = QueryBuilder::new(format!(
            "SELECT {straight}{MESSAGE_COLUMNS}, g.name AS group_name, ou.user_id AS other_id, ou.username AS other_username \
             FROM message_search s0{by_term} "
        ));
        for (i, key) in keys.iter().enumerate().skip(1) {
            q.push(format!(" JOIN message_search s{i} ON s{i}.term = "))
                .push_bind(*key)
                .push(format!(
                    " AND s{i}.owner_id = s0.owner_id AND s{i}.message_id = s0.message_id"
                ));
        }
        q.push(
            " JOIN message m ON m.message_id = s0.message_id \
             LEFT JOIN user su ON su.user_id = m.sender_id \
             LEFT JOIN group_chat g ON g.group_chat_id = m.group_chat_id \
             LEFT JOIN user ou ON m.group_chat_id IS NULL AND ou.user_id = \
               CASE WHEN m.sender_id = ",
        )
        .push_bind(me)
        .push(" THEN m.reciever_id ELSE m.sender_id END WHERE s0.term = ")
        .push_bind(keys[0])
        .push(" AND s0.owner_id IN (");
        for (i, owner) in owners.iter().enumerate() {
            q.push(if i == 0 { "" } else { ", " })
                .push(owner.to_string());
        }
        q.push(")");
        if let Some(id) = before_id {
            q.push(" AND s0.message_id < ").push_bind(id);
        }
        if let Some(id) = after_id {
            q.push(" AND s0.message_id >= ").push_bind(id);
        }
        if let Some(Conversation::Direct(other)) = query.conversation {
            q.push(" AND m.group_chat_id IS NULL AND ((m.sender_id = ")
                .push_bind(me)
                .push(" AND m.reciever_id = ")
                .push_bind(other)
                .push(") OR (m.sender_id = ")
                .push_bind(other)
                .push(" AND m.reciever_id = ")
                .push_bind(me)
                .push("))");
        }
        if let Some(from) = query.from {
            q.push(" AND s0.sender_id = ").push_bind(from);
        }
        if let Some(after) = query.after {
            q.push(" AND m.created_date_time >= ").push_bind(after);
        }
        if let Some(before) = query.before {
            q.push(" AND m.created_date_time < ").push_bind(before);
        }
        q.push(" ORDER BY s0.message_id DESC LIMIT ")
            .push_bind(fetch);
        q.build_query_as::<HitRow>().fetch_all(pool).await
    })?;
    let mut found: Vec<Message> = Vec::with_capacity(rows.len());
    let mut places = Vec::with_capacity(rows.len());
    for row in rows {
        let place = match row.message.group_chat_id {
            Some(g) => (
                HitConversation {
                    kind: "group",
                    id: g,
                    name: row.group_name.unwrap_or_default(),
                },
                format!("/chats/g/{g}"),
            ),
            None => {
                let name = row.other_username.unwrap_or_default();
                (
                    HitConversation {
                        kind: "direct",
                        id: row.other_id.unwrap_or(0),
                        name: name.clone(),
                    },
                    format!("/chats/@{name}"),
                )
            }
        };
        places.push(place);
        found.push(row.message);
    }
    rich::fill(db, me, &mut found).await?;
    let hits: Vec<SearchHit> = found
        .into_iter()
        .zip(places)
        .map(|(message, (conversation, path))| SearchHit {
            highlight: highlight(&message.content, query.text.as_str()),
            path: format!("{path}#msg-{}", message.message_id),
            message,
            conversation,
        })
        .collect();
    Ok(Page::from_rows(hits, limit, cursor, |h| {
        h.message.message_id.to_string()
    }))
}

/// The first message id written at or after `t`: ids grow with time, so a bisection over
/// the primary key finds it in about 20 lookups, without an index on the time. (Sends
/// committed in the same milliseconds by two writers may be out of order by that much;
/// the exact time is checked on the messages as well.)
async fn first_id_from(db: &Db, t: PrimitiveDateTime) -> AppResult<i64> {
    let max: Option<i64> = db_run!(db, |pool| {
        sqlx::query_scalar("SELECT CAST(MAX(message_id) AS SIGNED) FROM message")
            .fetch_one(pool)
            .await
    })?;
    let (mut lo, mut hi) = (0_i64, max.unwrap_or(0) + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let created: Option<PrimitiveDateTime> = db_run!(db, |pool| {
            sqlx::query_scalar(
                "SELECT created_date_time FROM message WHERE message_id >= ? ORDER BY message_id LIMIT 1",
            )
            .bind(mid)
            .fetch_optional(pool)
            .await
        })?;
        match created {
            Some(c) if c < t => lo = mid + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// Messages per backfill transaction.
const BACKFILL_BATCH: i64 = 500;

/// Indexes the messages written before the search index existed, a batch per short
/// transaction, until done (then it costs one query per start). Several processes may
/// run it at once: each batch takes the progress row's lock first.
pub async fn backfill(db: &Db) -> AppResult<u64> {
    let peek = "SELECT done_to, up_to FROM search_backfill WHERE id = 1";
    let (lock, rows) = match db {
        Db::MySql(_) => (format!("{peek} FOR UPDATE"), "FOR UPDATE"),
        Db::Sqlite(_) => (peek.to_string(), ""),
    };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM message m LEFT JOIN user su ON su.user_id = m.sender_id \
         WHERE m.message_id > ? AND m.message_id <= ? ORDER BY m.message_id {rows}"
    );
    let mut indexed = 0;
    loop {
        let progress: Option<(i32, i32)> = db_run!(db, |pool| {
            sqlx::query_as(peek).fetch_optional(pool).await
        })?;
        match progress {
            Some((done, up_to)) if done < up_to => {}
            _ => return Ok(indexed),
        }
        let step: u64 = crate::db_tx!(db, |tx| {
            let Some((done, up_to)): Option<(i32, i32)> =
                sqlx::query_as(&lock).fetch_optional(&mut *tx).await?
            else {
                return Ok::<_, AppError>(0);
            };
            if done >= up_to {
                return Ok(0);
            }
            let end = (i64::from(done) + BACKFILL_BATCH).min(i64::from(up_to));
            let batch: Vec<Message> = sqlx::query_as(&sql)
                .bind(done)
                .bind(end)
                .fetch_all(&mut *tx)
                .await?;
            // An edit may have indexed some of them already: postings that exist stay.
            let (_, postings) = rich::index_rows(&batch.iter().collect::<Vec<_>>());
            for chunk in postings.chunks(2000) {
                let insert = match db {
                    Db::MySql(_) => "INSERT IGNORE INTO",
                    Db::Sqlite(_) => "INSERT OR IGNORE INTO",
                };
                let statement = format!(
                    "{insert} message_search (term, owner_id, message_id, sender_id) VALUES {}",
                    chunk.join(", ")
                );
                sqlx::Executor::execute(&mut *tx, statement.as_str()).await?;
            }
            sqlx::query("UPDATE search_backfill SET done_to = ? WHERE id = 1")
                .bind(end)
                .execute(&mut *tx)
                .await?;
            Ok(batch.len() as u64)
        })?;
        indexed += step;
    }
}

/// Characters of context a long message keeps around its first match.
const SNIPPET_CHARS: usize = 240;

/// The text, escaped, with the query's matches in `<mark>`; a long text is cut to a
/// window around its first match.
pub fn highlight(text: &str, query: &str) -> String {
    let ranges = tokens::match_ranges(text, query);
    let (start, end) = if text.chars().count() <= SNIPPET_CHARS {
        (0, text.len())
    } else {
        let first = ranges.first().map_or(0, |r| r.start);
        let before: Vec<(usize, char)> = text[..first].char_indices().collect();
        let start = before
            .len()
            .checked_sub(SNIPPET_CHARS / 3)
            .map_or(0, |i| before[i].0);
        let end = text[start..]
            .char_indices()
            .nth(SNIPPET_CHARS)
            .map_or(text.len(), |(i, _)| start + i);
        (start, end)
    };
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut at = start;
    for r in ranges {
        if r.end <= at || r.start >= end {
            continue;
        }
        let (s, e) = (r.start.max(at), r.end.min(end));
        out.push_str(&escape(&text[at..s]));
        out.push_str("<mark>");
        out.push_str(&escape(&text[s..e]));
        out.push_str("</mark>");
        at = e;
    }
    out.push_str(&escape(&text[at..end]));
    if end < text.len() {
        out.push('…');
    }
    out
}

/// A date (`2026-11-28`, midnight UTC) or a time (`2026-11-28T09:30:00`, optionally with
/// fractions and a `Z`), for the date filters.
pub fn parse_time(raw: &str) -> Result<PrimitiveDateTime, String> {
    use time::macros::format_description;
    let raw = raw.trim().trim_end_matches('Z');
    let bad = || format!("{raw:?} is not a date (YYYY-MM-DD) or a time (YYYY-MM-DDTHH:MM:SS)");
    if let Ok(date) = time::Date::parse(raw, format_description!("[year]-[month]-[day]")) {
        return Ok(date.midnight());
    }
    for format in [
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    ] {
        if let Ok(t) = PrimitiveDateTime::parse(raw, format) {
            return Ok(t);
        }
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_checked() {
        assert!(SearchText::parse("  ").is_err());
        assert!(SearchText::parse(&"a".repeat(500)).is_err());
        assert!(SearchText::parse("?!").is_err());
        assert!(SearchText::parse("hello").is_ok());
    }

    #[test]
    fn highlights_escape_and_mark() {
        assert_eq!(
            highlight("<b>Grüße</b> aus München", "münchen"),
            "&lt;b&gt;Grüße&lt;/b&gt; aus <mark>München</mark>"
        );
        let long = format!("{} needle {}", "x ".repeat(300), "y ".repeat(300));
        let h = highlight(&long, "needle");
        assert!(h.starts_with('…') && h.ends_with('…') && h.contains("<mark>needle</mark>"));
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(
            parse_time("2026-11-28").unwrap(),
            time::macros::datetime!(2026-11-28 0:00)
        );
        assert_eq!(
            parse_time("2026-11-28T09:30:00Z").unwrap(),
            time::macros::datetime!(2026-11-28 9:30)
        );
        assert!(parse_time("yesterday").is_err());
    }
}
