//! Replies, mentions and reactions: what a message carries beyond its text.
//!
//! A page of messages gets all of it in one query ([`fill`]): the reactions and mentions
//! of the page's messages and the originals its replies quote, as one `UNION ALL`, run
//! whether or not the page has any, so a page with replies and reactions costs exactly
//! as many queries as one without. Sends check a reply's original and a group message's
//! mentions before they are queued ([`prepare_send`]); the send's transaction then
//! writes the mentions and the search postings with the message ([`RichIndex`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{FromRow, QueryBuilder};

use super::{
    events::{NewEvent, Outbox},
    messages::{self, Conversation, Message, MessageEvent, MessageId},
    sending::Outgoing,
    users::UserId,
};
use crate::{
    db::{self, Db},
    db_run, db_tx,
    error::{AppError, AppResult},
    rich::{emoji::ReactionEmoji, format, mentions, tokens},
};

/// The additive fields of a message object (flattened into it): every message has
/// `reply_to_message_id`, `mentions`, `mentioned` and `reactions`; `reply_to` when it
/// answers another, `html` when the caller asked for rendered text.
#[derive(Debug, Clone, Default, FromRow, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RichFields {
    pub reply_to_message_id: Option<MessageId>,
    /// The quoted original; `deleted` when it is gone.
    #[sqlx(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyPreview>,
    /// Who the message mentions (group messages only).
    #[sqlx(skip)]
    #[serde(default)]
    pub mentions: Vec<Mention>,
    /// Whether the reader is among `mentions`.
    #[sqlx(skip)]
    #[serde(default)]
    pub mentioned: bool,
    #[sqlx(skip)]
    #[serde(default)]
    pub reactions: Vec<ReactionSummary>,
    /// The text as safe HTML (the small Markdown subset), on request (`?render=html`).
    #[sqlx(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Mention {
    pub user_id: UserId,
    pub username: String,
}

/// A reply's quote of its original: sender and first line, or `deleted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplyPreview {
    pub message_id: MessageId,
    pub deleted: bool,
    pub sender_id: Option<UserId>,
    pub sender_username: Option<String>,
    /// The first line of the original's text, shortened.
    pub excerpt: String,
}

impl ReplyPreview {
    fn deleted(message_id: MessageId) -> Self {
        Self {
            message_id,
            deleted: true,
            sender_id: None,
            sender_username: None,
            excerpt: String::new(),
        }
    }
}

/// One emoji on a message: how many, and who.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReactionSummary {
    pub emoji: String,
    pub count: usize,
    pub users: Vec<Mention>,
}

const EXCERPT_CHARS: usize = 100;

/// A send's reply and mentions, checked before it is queued.
#[derive(Debug, Clone, Default)]
pub struct RichSend {
    /// The message answered, as the sender asked.
    pub reply_to: Option<MessageId>,
    /// Filled by [`prepare_send`].
    pub reply_preview: Option<ReplyPreview>,
    pub mentions: Vec<Mention>,
}

impl RichSend {
    pub fn replying_to(reply_to: Option<MessageId>) -> Self {
        Self {
            reply_to,
            ..Self::default()
        }
    }

    /// The fields of the message this send becomes.
    pub fn fields(&self) -> RichFields {
        RichFields {
            reply_to_message_id: self.reply_to,
            reply_to: self.reply_preview.clone(),
            mentions: self.mentions.clone(),
            ..RichFields::default()
        }
    }
}

/// Who hears of a message in a conversation, for the search index: a direct message's
/// two sides, or the group (as minus its id: membership is checked when searching).
pub fn owners(m: &Message) -> Vec<i64> {
    match m.group_chat_id {
        Some(g) => vec![-i64::from(g)],
        None => {
            let mut o: Vec<i64> = [m.sender_id, m.reciever_id]
                .into_iter()
                .flatten()
                .map(i64::from)
                .collect();
            o.dedup();
            o
        }
    }
}

/// A row of [`fill`]'s query: `r` a reaction, `m` a mention, `q` a quoted original.
/// `text` is read as bytes: sqlx will not read MySQL's binary-collated emoji column
/// (and the union's column with it) as a string.
#[derive(FromRow)]
struct RichRow {
    kind: String,
    message_id: MessageId,
    text: Option<Vec<u8>>,
    user_id: Option<UserId>,
    name: Option<String>,
}

/// Adds replies' quotes, mentions and reactions to `messages`, in one query; `viewer`
/// decides `mentioned`.
pub async fn fill(db: &Db, viewer: UserId, messages: &mut [Message]) -> AppResult<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<MessageId> = messages.iter().map(|m| m.message_id).collect();
    let mut originals: Vec<MessageId> = messages
        .iter()
        .filter_map(|m| m.rich.reply_to_message_id)
        .collect();
    originals.sort_unstable();
    originals.dedup();
    // The emoji column compares bytes; MySQL wants one collation for the union's column.
    let content = match db {
        Db::MySql(_) => "o.content COLLATE utf8mb4_bin",
        Db::Sqlite(_) => "o.content",
    };
    let rows: Vec<RichRow> = db_run!(db, |pool| {
        let mut q = QueryBuilder::new(
            "SELECT 'r' AS kind, r.message_id AS message_id, r.emoji AS text, r.user_id AS user_id, \
             u.username AS name, r.created_date_time AS at \
             FROM message_reaction r JOIN user u ON u.user_id = r.user_id WHERE r.message_id IN (",
        );
        push_ids(&mut q, &ids);
        q.push(
            ") UNION ALL SELECT 'm', mm.message_id, NULL, mm.user_id, u.username, NULL \
             FROM message_mention mm JOIN user u ON u.user_id = mm.user_id WHERE mm.message_id IN (",
        );
        push_ids(&mut q, &ids);
        q.push(format!(
            ") UNION ALL SELECT 'q', o.message_id, {content}, o.sender_id, su.username, o.created_date_time \
             FROM message o LEFT JOIN user su ON su.user_id = o.sender_id WHERE o.message_id IN ("
        ));
        push_ids(&mut q, &originals);
        q.push(") ORDER BY 1, 2, 6, 4");
        q.build_query_as::<RichRow>().fetch_all(pool).await
    })?;
    let mut reactions: HashMap<MessageId, Vec<ReactionSummary>> = HashMap::new();
    let mut mentions: HashMap<MessageId, Vec<Mention>> = HashMap::new();
    let mut quoted: HashMap<MessageId, ReplyPreview> = HashMap::new();
    for row in rows {
        match row.kind.as_str() {
            "r" => {
                let list = reactions.entry(row.message_id).or_default();
                let user = Mention {
                    user_id: row.user_id.unwrap_or(0),
                    username: row.name.unwrap_or_default(),
                };
                add_reaction(list, utf8(row.text), user);
            }
            "m" => mentions.entry(row.message_id).or_default().push(Mention {
                user_id: row.user_id.unwrap_or(0),
                username: row.name.unwrap_or_default(),
            }),
            _ => {
                quoted.insert(
                    row.message_id,
                    ReplyPreview {
                        message_id: row.message_id,
                        deleted: false,
                        sender_id: row.user_id,
                        sender_username: row.name,
                        excerpt: format::first_line(&utf8(row.text), EXCERPT_CHARS),
                    },
                );
            }
        }
    }
    for m in messages.iter_mut() {
        let id = m.message_id;
        m.rich.reactions = reactions.remove(&id).unwrap_or_default();
        m.rich.mentions = mentions.remove(&id).unwrap_or_default();
        m.rich.mentioned = m.rich.mentions.iter().any(|u| u.user_id == viewer);
        m.rich.reply_to = m.rich.reply_to_message_id.map(|original| {
            quoted
                .get(&original)
                .cloned()
                .unwrap_or_else(|| ReplyPreview::deleted(original))
        });
    }
    Ok(())
}

fn utf8(bytes: Option<Vec<u8>>) -> String {
    String::from_utf8(bytes.unwrap_or_default())
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `IN (…)` of ids; an empty list is `IN (NULL)`, which matches nothing, so the query
/// keeps its shape.
fn push_ids<DB: sqlx::Database>(q: &mut QueryBuilder<'_, DB>, ids: &[MessageId]) {
    if ids.is_empty() {
        q.push("NULL");
        return;
    }
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        // Integers: written into the statement rather than bound, so that pages of any
        // size do not each prepare a statement of their own shape.
        q.push(id.to_string());
    }
}

/// Rows come ordered by message, emoji's first use and user; emoji keep that order.
fn add_reaction(list: &mut Vec<ReactionSummary>, emoji: String, user: Mention) {
    match list.iter_mut().find(|r| r.emoji == emoji) {
        Some(r) => {
            r.count += 1;
            r.users.push(user);
        }
        None => list.push(ReactionSummary {
            emoji,
            count: 1,
            users: vec![user],
        }),
    }
}

/// Sets `mentioned` for `viewer` and, on request, the rendered HTML.
pub fn for_viewer(messages: &mut [Message], viewer: UserId, with_html: bool) {
    for m in messages {
        m.rich.mentioned = m.rich.mentions.iter().any(|u| u.user_id == viewer);
        if with_html {
            m.rich.html = Some(html_for(m, viewer));
        }
    }
}

/// A message's text as the pages show it to `viewer`: formatted, mentions highlighted.
pub fn html_for(m: &Message, viewer: UserId) -> String {
    let marks: Vec<format::MentionMark> = m
        .rich
        .mentions
        .iter()
        .map(|u| format::MentionMark {
            username: u.username.clone(),
            me: u.user_id == viewer,
        })
        .collect();
    format::to_html(&m.content, &marks)
}

/// Checks a send's reply (an original in the same conversation, else 404) and a group
/// message's mentions (members only, else 422), before anything is written.
pub async fn prepare_send(db: &Db, outgoing: &Outgoing) -> AppResult<RichSend> {
    let me = outgoing.sender.user_id;
    let mut rich = RichSend::replying_to(outgoing.rich.reply_to);
    if let Some(original) = rich.reply_to {
        rich.reply_preview = Some(reply_target(db, me, outgoing.to, original).await?);
    }
    if let Conversation::Group(group) = outgoing.to {
        rich.mentions = group_mentions(db, me, group, outgoing.content.as_str()).await?;
    }
    Ok(rich)
}

/// The original a reply quotes: a message of the conversation the reply goes to.
async fn reply_target(
    db: &Db,
    me: UserId,
    to: Conversation,
    original: MessageId,
) -> AppResult<ReplyPreview> {
    let not_found = || AppError::not_found("the message to reply to was not found");
    let m = messages::visible_message(db, me, original)
        .await
        .map_err(|_| not_found())?;
    let same = match to {
        Conversation::Group(g) => m.group_chat_id == Some(g),
        Conversation::Direct(other) => {
            m.group_chat_id.is_none()
                && ((m.sender_id == Some(me) && m.reciever_id == Some(other))
                    || (m.sender_id == Some(other) && m.reciever_id == Some(me)))
        }
    };
    if !same {
        return Err(not_found());
    }
    Ok(ReplyPreview {
        message_id: m.message_id,
        deleted: false,
        sender_id: m.sender_id,
        sender_username: m.sender_username,
        excerpt: format::first_line(&m.content, EXCERPT_CHARS),
    })
}

/// The members a group message mentions; 422 naming the first `@name` that is not one.
/// A sender outside the group gets the send's own 404.
async fn group_mentions(
    db: &Db,
    me: UserId,
    group: messages::GroupId,
    content: &str,
) -> AppResult<Vec<Mention>> {
    let names = mentions::names(content);
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let members = messages::members(db, group).await?;
    if !members.iter().any(|m| m.user_id == me) {
        return Err(AppError::not_found("user not found"));
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        match members
            .iter()
            .find(|m| m.username.eq_ignore_ascii_case(&name))
        {
            Some(m) => out.push(Mention {
                user_id: m.user_id,
                username: m.username.clone(),
            }),
            None => {
                return Err(AppError::unprocessable(
                    &["body", "content"],
                    format!("@{name} is not a member of this group chat"),
                ))
            }
        }
    }
    Ok(out)
}

/// Mentions of an edited text: the same rule as a send's.
pub async fn prepare_edit(db: &Db, me: UserId, message: &Message) -> AppResult<Vec<Mention>> {
    match message.group_chat_id {
        Some(group) => group_mentions(db, me, group, &message.content).await,
        None => Ok(Vec::new()),
    }
}

/// The `message` or `message_edited` events of a message, with the sender's
/// `client_key` when it gave one: one row for a group (a member it mentions hears it with
/// `mentioned` set, `store::events::GroupDelivery`), one per side of a direct chat.
pub fn message_events(kind: &'static str, m: &Message, client_key: Option<&str>) -> Vec<NewEvent> {
    let mut plain = m.clone();
    plain.rich.mentioned = false;
    plain.rich.html = None;
    messages::conversation_events(
        kind,
        m,
        &MessageEvent {
            message: &plain,
            client_key,
        },
    )
}

/// Writes what a message adds to the index tables (mentions, search postings), on an
/// open transaction of either backend.
pub trait RichIndex {
    /// Indexes new (or re-indexes edited) messages; `messages` carry their mentions.
    fn index_messages(
        &mut self,
        messages: &[&Message],
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;

    /// Removes a message's mentions and postings (before an edit re-indexes it).
    fn unindex_message(
        &mut self,
        message_id: MessageId,
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;
}

/// Rows per multi-row `INSERT`.
const INSERT_CHUNK: usize = 2000;

/// The `VALUES` lists of the mention and posting rows of `messages`. Only integers go
/// into the statements (user ids, message ids, term hashes), written as literals: the
/// row count varies with every message, and bound parameters would hit the engines'
/// limits on long texts.
pub fn index_rows(messages: &[&Message]) -> (Vec<String>, Vec<String>) {
    let mut mention_rows = Vec::new();
    let mut posting_rows = Vec::new();
    for m in messages {
        for u in &m.rich.mentions {
            mention_rows.push(format!("({}, {})", m.message_id, u.user_id));
        }
        let mut keys: Vec<i64> = tokens::index_terms(&m.content)
            .iter()
            .map(|t| tokens::term_key(t))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let sender = m.sender_id.map_or("NULL".to_string(), |s| s.to_string());
        for owner in owners(m) {
            for key in &keys {
                posting_rows.push(format!("({key}, {owner}, {}, {sender})", m.message_id));
            }
        }
    }
    (mention_rows, posting_rows)
}

macro_rules! impl_rich_index {
    ($conn:ty) => {
        impl RichIndex for $conn {
            async fn index_messages(&mut self, messages: &[&Message]) -> Result<(), sqlx::Error> {
                let (mention_rows, posting_rows) = index_rows(messages);
                for chunk in mention_rows.chunks(INSERT_CHUNK) {
                    let sql = format!(
                        "INSERT INTO message_mention (message_id, user_id) VALUES {}",
                        chunk.join(", ")
                    );
                    sqlx::Executor::execute(&mut *self, sql.as_str()).await?;
                }
                for chunk in posting_rows.chunks(INSERT_CHUNK) {
                    let sql = format!(
                        "INSERT INTO message_search (term, owner_id, message_id, sender_id) VALUES {}",
                        chunk.join(", ")
                    );
                    sqlx::Executor::execute(&mut *self, sql.as_str()).await?;
                }
                Ok(())
            }

            async fn unindex_message(&mut self, message_id: MessageId) -> Result<(), sqlx::Error> {
                sqlx::query("DELETE FROM message_mention WHERE message_id = ?")
                    .bind(message_id)
                    .execute(&mut *self)
                    .await?;
                sqlx::query("DELETE FROM message_search WHERE message_id = ?")
                    .bind(message_id)
                    .execute(&mut *self)
                    .await?;
                Ok(())
            }
        }
    };
}

impl_rich_index!(sqlx::MySqlConnection);
impl_rich_index!(sqlx::SqliteConnection);

// ---- reactions ----

/// What a reaction request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactOp {
    Add,
    Remove,
    /// Add when I have not reacted so, else remove (the pages' button).
    Toggle,
}

macro_rules! reaction_summary {
    ($exec:expr, $id:expr) => {{
        let rows: Vec<(Vec<u8>, UserId, String)> = sqlx::query_as(
            "SELECT r.emoji, r.user_id, u.username FROM message_reaction r \
             JOIN user u ON u.user_id = r.user_id WHERE r.message_id = ? \
             ORDER BY r.created_date_time, r.user_id",
        )
        .bind($id)
        .fetch_all($exec)
        .await?;
        let mut list: Vec<ReactionSummary> = Vec::new();
        for (emoji, user_id, username) in rows {
            add_reaction(&mut list, utf8(Some(emoji)), Mention { user_id, username });
        }
        list
    }};
}

/// The reactions on a message `me` can see (404 otherwise).
pub async fn reactions(
    db: &Db,
    me: UserId,
    message_id: MessageId,
) -> AppResult<Vec<ReactionSummary>> {
    messages::visible_message(db, me, message_id).await?;
    Ok(db_run!(db, |pool| Ok::<_, sqlx::Error>(
        reaction_summary!(pool, message_id)
    ))?)
}

/// Adds, removes or toggles `me`'s reaction on a message `me` can see (404 otherwise);
/// everyone in the conversation hears `reaction` when something changed. A message takes
/// at most [`MAX_DISTINCT_PER_MESSAGE`](crate::rich::emoji::MAX_DISTINCT_PER_MESSAGE)
/// different emoji (422 beyond).
#[tracing::instrument(skip(db, history))]
pub async fn react(
    db: &Db,
    history: &crate::cache::history::HistoryCache,
    me: &super::users::UserSummary,
    message_id: MessageId,
    emoji: &ReactionEmoji,
    op: ReactOp,
) -> AppResult<(Vec<ReactionSummary>, bool)> {
    let message = messages::visible_message(db, me.user_id, message_id).await?;
    // As for edits: nothing reaches a direct chat's other side once they may not talk.
    messages::require_talk(db, me.user_id, &message).await?;
    // Reactions on one message are serialized on its row (SQLite's write lock does it).
    let lock = match db {
        Db::MySql(_) => "SELECT message_id FROM message WHERE message_id = ? FOR UPDATE",
        Db::Sqlite(_) => "SELECT message_id FROM message WHERE message_id = ?",
    };
    let emoji = emoji.as_str();
    let now = db::now();
    let written = db_tx!(db, |tx| {
        let exists: Option<MessageId> = sqlx::query_scalar(lock)
            .bind(message_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(AppError::not_found("message not found"));
        }
        let (mine, distinct, this_one): (i64, i64, i64) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(CASE WHEN emoji = ? AND user_id = ? THEN 1 ELSE 0 END), 0) AS SIGNED), \
                    COUNT(DISTINCT emoji), \
                    CAST(COALESCE(SUM(CASE WHEN emoji = ? THEN 1 ELSE 0 END), 0) AS SIGNED) \
             FROM message_reaction WHERE message_id = ?",
        )
        .bind(emoji)
        .bind(me.user_id)
        .bind(emoji)
        .bind(message_id)
        .fetch_one(&mut *tx)
        .await?;
        let add = match op {
            ReactOp::Add => true,
            ReactOp::Remove => false,
            ReactOp::Toggle => mine == 0,
        };
        let changed = if add && mine == 0 {
            if this_one == 0 && distinct >= crate::rich::emoji::MAX_DISTINCT_PER_MESSAGE {
                return Err(AppError::unprocessable(
                    &["body", "emoji"],
                    format!(
                        "a message can have at most {} different reactions",
                        crate::rich::emoji::MAX_DISTINCT_PER_MESSAGE
                    ),
                ));
            }
            sqlx::query(
                "INSERT INTO message_reaction (message_id, emoji, user_id, created_date_time) VALUES (?, ?, ?, ?)",
            )
            .bind(message_id)
            .bind(emoji)
            .bind(me.user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            true
        } else if !add && mine > 0 {
            sqlx::query(
                "DELETE FROM message_reaction WHERE message_id = ? AND emoji = ? AND user_id = ?",
            )
            .bind(message_id)
            .bind(emoji)
            .bind(me.user_id)
            .execute(&mut *tx)
            .await?;
            true
        } else {
            false
        };
        let summary = reaction_summary!(&mut *tx, message_id);
        if changed {
            let payload = json!({
                "message_id": message_id,
                "group_chat_id": message.group_chat_id,
                "sender_id": message.sender_id,
                "reciever_id": message.reciever_id,
                "user_id": me.user_id,
                "username": me.username,
                "emoji": emoji,
                "change": if add { "added" } else { "removed" },
                "reactions": summary,
            });
            tx.write_events(&messages::conversation_events(
                "reaction", &message, &payload,
            ))
            .await?;
        }
        Ok::<_, AppError>((summary, changed))
    });
    if !matches!(written, Ok((_, false))) {
        history.forget_message(&message);
    }
    written
}
