//! Sending messages, with group commit.
//!
//! Every message is written with its events in one transaction, as before; what this
//! module adds is that the sends waiting at the same moment share that transaction. A few
//! writer tasks take whatever sends are queued (up to [`MAX_BATCH`]) and write them
//! together: one query checks every sender's right to post, each message is one `INSERT`,
//! all their events are one `INSERT`, and there is one commit. A lone send goes out at
//! once, in a batch of one, so nothing waits for company; under load the per-message cost
//! falls to about one statement, which is where the throughput comes from.
//!
//! Each send still gets its own answer: a send that may not be made (not friends, not a
//! member) is refused without holding up the others, and should the batch fail as a
//! whole, its sends are retried one by one so that one bad send cannot sink the rest.

use std::{collections::HashMap, sync::Arc};

use sqlx::QueryBuilder;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{
    events::{NewEvent, Outbox},
    messages::{self, Conversation, Message, MessageId},
    rich::{RichIndex, RichSend},
    users::{UserId, UserSummary},
};
use crate::{
    db::{self, Db, InsertedId},
    db_tx,
    domain::MessageContent,
    error::{AppError, AppResult},
};

/// The most sends one transaction carries.
pub const MAX_BATCH: usize = 64;
/// Sends that may wait for a writer before callers wait to queue (backpressure).
const QUEUE_DEPTH: usize = 4 * MAX_BATCH;

/// A message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub sender: UserSummary,
    pub to: Conversation,
    pub content: MessageContent,
    /// The idempotency key: the same key from the same sender posts once.
    pub client_key: Option<String>,
    /// The message answered, and (once checked) whom it mentions: `store::rich`.
    pub rich: RichSend,
}

type Reply = oneshot::Sender<AppResult<Message>>;

/// The handle pages and API handlers send through; cheap to clone.
#[derive(Clone)]
pub struct SendQueue {
    jobs: mpsc::Sender<(Outgoing, Reply)>,
}

impl SendQueue {
    /// Starts `writers` writer tasks on `db`. More than one lets a batch be written while
    /// the next one gathers; they stop when the last handle is dropped.
    pub fn start(db: Db, writers: usize, consecutive_ids: bool) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_batches(db.clone(), queue.clone(), consecutive_ids));
        }
        Self { jobs }
    }

    /// Sends a message to a friend or a group the sender belongs to; `true` when it was
    /// posted now, `false` when its `client_key` had already posted it (a double click,
    /// a retry), which answers with the first message.
    pub async fn send(&self, db: &Db, mut outgoing: Outgoing) -> AppResult<(Message, bool)> {
        outgoing.client_key = outgoing
            .client_key
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty() && k.len() <= 64);
        let sender = outgoing.sender.user_id;
        let key = outgoing.client_key.clone();
        if let Some(key) = &key {
            if let Some(existing) = messages::by_client_key(db, sender, key).await? {
                return Ok((existing, false));
            }
        }
        // Replies and mentions are checked here, before the batch: a refused one is the
        // caller's own error and holds up nobody.
        outgoing.rich = super::rich::prepare_send(db, &outgoing).await?;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((outgoing, reply))
            .await
            .map_err(|_| anyhow::anyhow!("the message writers have stopped"))?;
        let result = answer
            .await
            .map_err(|_| anyhow::anyhow!("a message writer stopped mid-send"))?;
        match (result, key) {
            // The same key committed meanwhile (two sends racing): answer with that message.
            (Err(AppError::Conflict(_)), Some(key)) => {
                let existing = messages::by_client_key(db, sender, &key)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("duplicate key without a row"))?;
                Ok((existing, false))
            }
            (result, _) => result.map(|m| (m, true)),
        }
    }
}

/// One writer: waits for a send, takes every other one already queued, writes them all.
async fn write_batches(
    db: Db,
    queue: Arc<Mutex<mpsc::Receiver<(Outgoing, Reply)>>>,
    consecutive_ids: bool,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut queue = queue.lock().await;
            match queue.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        let (sends, replies): (Vec<Outgoing>, Vec<Reply>) = batch.into_iter().unzip();
        let results = match write(&db, &sends, consecutive_ids).await {
            Ok(results) => results,
            // The transaction failed as a whole: try each send alone, so that only the
            // one at fault (if any) fails.
            Err(_) if sends.len() > 1 => {
                let mut results = Vec::with_capacity(sends.len());
                for send in &sends {
                    results.push(
                        write(&db, std::slice::from_ref(send), consecutive_ids)
                            .await
                            .and_then(|mut r| r.pop().expect("one result per send")),
                    );
                }
                results
            }
            Err(e) => vec![Err(e)],
        };
        for (reply, result) in replies.into_iter().zip(results) {
            // The caller may have gone (a closed connection); the message stays sent.
            let _ = reply.send(result);
        }
    }
}

/// Whether the sender may post there, and who hears of it.
#[derive(Default)]
struct Rights {
    /// `friend_list.list` of (sender, other): `F` means friends.
    pairs: HashMap<(UserId, UserId), String>,
    /// The members of each group named.
    members: HashMap<messages::GroupId, Vec<UserId>>,
}

impl Rights {
    fn recipients(&self, send: &Outgoing) -> AppResult<Vec<UserId>> {
        let me = send.sender.user_id;
        match send.to {
            Conversation::Direct(other) => match self.pairs.get(&(me, other)).map(String::as_str) {
                Some("F") => Ok(vec![other, me]),
                None => Err(AppError::not_found("friendship was not found")),
                Some(_) => Err(AppError::bad_request(
                    "you cannot message this person if you are not their friend",
                )),
            },
            Conversation::Group(group) => match self.members.get(&group) {
                Some(members) if members.contains(&me) => Ok(members.clone()),
                _ => Err(AppError::not_found("user not found")),
            },
        }
    }
}

/// The `reciever_id` and `group_chat_id` columns of a message to `to`.
fn columns(to: Conversation) -> (Option<UserId>, Option<messages::GroupId>) {
    match to {
        Conversation::Direct(other) => (Some(other), None),
        Conversation::Group(group) => (None, Some(group)),
    }
}

/// Writes `sends` in one transaction: one answer per send, in order, or the error that
/// failed the transaction.
async fn write(
    db: &Db,
    sends: &[Outgoing],
    consecutive_ids: bool,
) -> AppResult<Vec<AppResult<Message>>> {
    let now = db::now();
    let mut pairs: Vec<(UserId, UserId)> = Vec::new();
    let mut groups: Vec<messages::GroupId> = Vec::new();
    for send in sends {
        match send.to {
            Conversation::Direct(other) => pairs.push((send.sender.user_id, other)),
            Conversation::Group(group) => groups.push(group),
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    groups.sort_unstable();
    groups.dedup();
    db_tx!(db, |tx| {
        let mut rights = Rights::default();
        if !pairs.is_empty() {
            // The pairs as a table of constants joined on the primary key: a lookup per
            // pair, with none of the range analysis that `OR`ed pairs cost on every batch.
            let mut q = QueryBuilder::new("SELECT fl.owner_id, fl.other_id, fl.list FROM (");
            for (i, (me, other)) in pairs.iter().enumerate() {
                q.push(if i == 0 {
                    "SELECT "
                } else {
                    " UNION ALL SELECT "
                })
                .push_bind(*me)
                .push(if i == 0 { " AS owner_id, " } else { ", " })
                .push_bind(*other)
                .push(if i == 0 { " AS other_id" } else { "" });
            }
            q.push(") pair JOIN friend_list fl ON fl.owner_id = pair.owner_id AND fl.other_id = pair.other_id");
            let rows: Vec<(UserId, UserId, String)> =
                q.build_query_as().fetch_all(&mut *tx).await?;
            rights.pairs = rows
                .into_iter()
                .map(|(me, other, list)| ((me, other), list))
                .collect();
        }
        if !groups.is_empty() {
            let mut q = QueryBuilder::new(
                "SELECT group_chat_id, member_id FROM group_chat_member WHERE group_chat_id IN (",
            );
            let mut list = q.separated(", ");
            for group in &groups {
                list.push_bind(*group);
            }
            q.push(")");
            let rows: Vec<(messages::GroupId, UserId)> =
                q.build_query_as().fetch_all(&mut *tx).await?;
            for (group, member) in rows {
                rights.members.entry(group).or_default().push(member);
            }
        }
        // Who may post and who hears it; then the ids: one multi-row INSERT for the sends
        // without an idempotency key where the ids come out consecutive, and a row at a
        // time for the rest (a repeated key must fail alone).
        let recipients: Vec<AppResult<Vec<UserId>>> =
            sends.iter().map(|s| rights.recipients(s)).collect();
        let mut ids: Vec<Option<AppResult<MessageId>>> = sends.iter().map(|_| None).collect();
        let together: Vec<usize> = (0..sends.len())
            .filter(|&i| recipients[i].is_ok() && sends[i].client_key.is_none())
            .collect();
        if consecutive_ids && together.len() > 1 {
            let mut insert = QueryBuilder::new(
                "INSERT INTO message (sender_id, reciever_id, content, created_date_time, group_chat_id, seen, client_key, reply_to_message_id) ",
            );
            insert.push_values(&together, |mut row, &i| {
                let (reciever_id, group_chat_id) = columns(sends[i].to);
                row.push_bind(sends[i].sender.user_id)
                    .push_bind(reciever_id)
                    .push_bind(sends[i].content.as_str())
                    .push_bind(now)
                    .push_bind(group_chat_id)
                    .push_bind(0)
                    .push_bind(None::<&str>)
                    .push_bind(sends[i].rich.reply_to);
            });
            let done = insert.build().execute(&mut *tx).await?;
            if done.rows_affected() != together.len() as u64 {
                return Err(anyhow::anyhow!(
                    "a multi-row insert wrote {} of {} rows",
                    done.rows_affected(),
                    together.len()
                )
                .into());
            }
            let first = done.first_inserted_id() as MessageId;
            for (n, &i) in together.iter().enumerate() {
                ids[i] = Some(Ok(first + n as MessageId));
            }
        }
        for (i, send) in sends.iter().enumerate() {
            if ids[i].is_some() || recipients[i].is_err() {
                continue;
            }
            let (reciever_id, group_chat_id) = columns(send.to);
            let inserted = sqlx::query(
                "INSERT INTO message (sender_id, reciever_id, content, created_date_time, group_chat_id, seen, client_key, reply_to_message_id) \
                 VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
            )
            .bind(send.sender.user_id)
            .bind(reciever_id)
            .bind(send.content.as_str())
            .bind(now)
            .bind(group_chat_id)
            .bind(send.client_key.as_deref())
            .bind(send.rich.reply_to)
            .execute(&mut *tx)
            .await;
            ids[i] = Some(match inserted {
                Ok(r) => Ok(r.inserted_id() as MessageId),
                // The same key committed meanwhile; only this statement failed, the
                // transaction goes on.
                Err(e) if db::is_unique_violation(&e) => {
                    Err(AppError::Conflict("duplicate send".into()))
                }
                Err(e) => return Err(e.into()),
            });
        }
        let mut results = Vec::with_capacity(sends.len());
        let mut sent: Vec<(Message, Vec<UserId>)> = Vec::new();
        for ((send, recipients), id) in sends.iter().zip(recipients).zip(ids) {
            match (recipients, id) {
                (Err(refused), _) => results.push(Err(refused)),
                (Ok(recipients), Some(Ok(message_id))) => {
                    let (reciever_id, group_chat_id) = columns(send.to);
                    let message = Message {
                        message_id,
                        sender_id: Some(send.sender.user_id),
                        sender_username: Some(send.sender.username.clone()),
                        reciever_id,
                        content: send.content.as_str().to_string(),
                        group_chat_id,
                        created_date_time: now,
                        last_edited_date_time: None,
                        seen: Some(false),
                        rich: send.rich.fields(),
                    };
                    sent.push((message.clone(), recipients));
                    results.push(Ok(message));
                }
                (Ok(_), Some(Err(e))) => results.push(Err(e)),
                (Ok(_), None) => unreachable!("every permitted send was inserted"),
            }
        }
        // Mentions and search postings, with the messages (`store::rich`).
        tx.index_messages(&sent.iter().map(|(m, _)| m).collect::<Vec<_>>())
            .await?;
        // Events in message order, so that every stream sees a conversation in id order.
        sent.sort_by_key(|(m, _)| m.message_id);
        let events: Vec<NewEvent> = sent
            .iter()
            .flat_map(|(m, recipients)| super::rich::message_events("message", recipients, m))
            .collect();
        tx.write_events(&events).await?;
        Ok::<_, AppError>(results)
    })
}

/// How many sends a database of this kind writes at once: SQLite has one writer anyway.
pub fn writers_for(db: &Db) -> usize {
    match db {
        Db::MySql(_) => 2,
        Db::Sqlite(_) => 1,
    }
}
