//! Sending messages, with group commit, under faults.
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
//! member) is refused without holding up the others, and should the batch fail on a
//! statement, its sends are retried one by one so that one bad send cannot sink the rest.
//!
//! The promise to a caller: a 201 means the message is committed; a 4xx or a 503 means
//! it is not and never will be; only a 500 after a failed `COMMIT` leaves it open. So:
//! - a writer waits at most [`ACQUIRE_TIMEOUT`] for a connection, and not at all while
//!   the database is known to be down (the [`Circuit`]): the batch is then refused with
//!   503, never retried send by send;
//! - a send has a deadline ([`SEND_DEADLINE`]); a writer *claims* each send before
//!   writing it, and a caller that reaches its deadline, or goes away (a closed
//!   connection, the request timeout), *abandons* it; exactly one of the two wins, so a
//!   send is never written after its caller gave up;
//! - an error or a panic while writing fails that batch's sends (500 or 503), and the
//!   writer goes on with the next batch;
//! - a failed `COMMIT` leaves the outcome unknown: its sends get 500, are not retried
//!   (they may be in), and a retry with the same `client_key` settles it;
//! - [`SendQueue::drain`] (shutdown) writes every send already queued, then stops.

use std::{
    collections::{HashMap, HashSet},
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicBool, AtomicU8, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::FutureExt;
use sqlx::{pool::PoolConnection, Connection, MySql, QueryBuilder, Sqlite};
use tokio::{
    sync::{mpsc, oneshot, Mutex},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{
    events::{NewEvent, Outbox},
    friends::{self, talk_rights, Talk},
    limits::{self, Ledger, Rate},
    messages::{self, Conversation, Message, MessageId},
    rich::{RichIndex, RichSend},
    users::{UserId, UserSummary},
};
use crate::{
    cache::history::{HistoryCache, Key},
    db::{self, unavailable, Circuit, Db, InsertedId, Retryable},
    domain::MessageContent,
    error::{AppError, AppResult},
};

/// The most sends one transaction carries.
pub const MAX_BATCH: usize = 64;
/// Sends that may wait for a writer before callers wait to queue (backpressure).
const QUEUE_DEPTH: usize = 4 * MAX_BATCH;
/// How long a writer waits for a database connection before it refuses its batch with
/// 503 (the pool's own timeout, 5 s, is for everything else).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a send may wait to be written. One still queued then is answered 503 and
/// never written. Well under the request timeout (30 s), so that a send a writer has
/// claimed has time to finish before the caller could be given a 408.
pub const SEND_DEADLINE: Duration = Duration::from_secs(10);

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

struct Job {
    outgoing: Outgoing,
    reply: Reply,
    claim: Arc<Claim>,
}

/// Who decides a queued send's fate: the writer claims it just before writing, its
/// caller abandons it on giving up; whichever comes first wins.
#[derive(Default)]
struct Claim(AtomicU8);

const QUEUED: u8 = 0;
const CLAIMED: u8 = 1;
const ABANDONED: u8 = 2;

impl Claim {
    fn settle(&self, to: u8) -> bool {
        self.0
            .compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
    /// The writer's side: `true` when the caller is still waiting.
    fn claim(&self) -> bool {
        self.settle(CLAIMED)
    }
    /// The caller's side: `true` when no writer has taken the send (it never will).
    fn abandon(&self) -> bool {
        self.settle(ABANDONED)
    }
}

/// Abandons the send when the caller's future is dropped before a writer claimed it.
struct AbandonOnDrop(Arc<Claim>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

/// The handle pages and API handlers send through; cheap to clone.
#[derive(Clone)]
pub struct SendQueue {
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

struct Shared {
    db: Db,
    circuit: Circuit,
    consecutive_ids: bool,
    /// `SENDS_PER_MINUTE`, per sender, counted in each batch's transaction.
    send_rate: Rate,
    stop: CancellationToken,
    writers: std::sync::Mutex<Vec<JoinHandle<()>>>,
    panic_next_batch: AtomicBool,
    /// Told of every conversation a batch wrote to, before its senders hear.
    history: HistoryCache,
}

impl SendQueue {
    /// Starts `writers` writer tasks on `db`. More than one lets a batch be written while
    /// the next one gathers; they stop at [`SendQueue::drain`].
    pub fn start(
        db: Db,
        circuit: Circuit,
        writers: usize,
        consecutive_ids: bool,
        send_rate: Rate,
        history: HistoryCache,
    ) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let queue = Arc::new(Mutex::new(queue));
        let shared = Arc::new(Shared {
            db,
            circuit,
            consecutive_ids,
            send_rate,
            stop: CancellationToken::new(),
            writers: std::sync::Mutex::new(Vec::new()),
            panic_next_batch: AtomicBool::new(false),
            history,
        });
        let handles = (0..writers.max(1))
            .map(|_| tokio::spawn(write_batches(shared.clone(), queue.clone())))
            .collect();
        *shared.writers.lock().expect("writers lock") = handles;
        Self { jobs, shared }
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
        self.shared.circuit.check()?;
        // Replies and mentions are checked here, before the batch: a refused one is the
        // caller's own error and holds up nobody.
        outgoing.rich = match super::rich::prepare_send(db, &outgoing).await {
            Ok(rich) => rich,
            // A retry of a send that went out before its original was deleted.
            Err(refused @ (AppError::NotFound(_) | AppError::Unprocessable { .. })) => {
                return match &key {
                    Some(key) => match messages::by_client_key(db, sender, key).await? {
                        Some(existing) => Ok((existing, false)),
                        None => Err(refused),
                    },
                    None => Err(refused),
                }
            }
            Err(e) => return Err(e),
        };
        let deadline = Instant::now() + SEND_DEADLINE;
        let claim = Arc::new(Claim::default());
        let _abandon_if_dropped = AbandonOnDrop(claim.clone());
        let (reply, mut answer) = oneshot::channel();
        let job = Job {
            outgoing,
            reply,
            claim: claim.clone(),
        };
        match tokio::time::timeout_at(deadline, self.jobs.send(job)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                return Err(AppError::Unavailable(
                    "the server is shutting down; try again".into(),
                ))
            }
            Err(_) => return Err(unavailable()),
        }
        let result = tokio::select! {
            result = &mut answer => result,
            _ = tokio::time::sleep_until(deadline) => {
                if claim.abandon() {
                    return Err(unavailable());
                }
                // A writer took it first: its outcome is the answer.
                answer.await
            }
        }
        .map_err(|_| anyhow::anyhow!("a message writer dropped a send"))?;
        match (result, key) {
            // The same key committed before (a retry) or meanwhile (two sends racing):
            // answer with that message.
            (Err(AppError::Conflict(_)), Some(key)) => {
                let existing = messages::by_client_key(db, sender, &key)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("duplicate key without a row"))?;
                Ok((existing, false))
            }
            // A retry of a message that went out before the right to send it ended.
            (Err(refused @ (AppError::BadRequest(_) | AppError::NotFound(_))), Some(key)) => {
                match messages::by_client_key(db, sender, &key).await? {
                    Some(existing) => Ok((existing, false)),
                    None => Err(refused),
                }
            }
            (result, _) => result.map(|m| (m, true)),
        }
    }

    /// Writes every send already queued, refuses new ones (503), and returns once the
    /// writers have stopped: the shutdown's last step before the pool closes.
    pub async fn drain(&self) {
        self.shared.stop.cancel();
        let writers = std::mem::take(&mut *self.shared.writers.lock().expect("writers lock"));
        for writer in writers {
            if let Err(e) = writer.await {
                tracing::error!(error = %e, "a message writer ended abnormally");
            }
        }
    }

    /// A fault-injection knob for tests (the integration suite drives the real server,
    /// where `cfg(test)` code does not exist): the next batch a writer writes panics
    /// inside its transaction, after its messages are inserted and before its events.
    #[doc(hidden)]
    pub fn panic_in_next_batch(&self) {
        self.shared.panic_next_batch.store(true, Ordering::Release);
    }
}

/// One writer: waits for a send, takes every other one already queued, writes them all.
async fn write_batches(shared: Arc<Shared>, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let mut batch = Vec::new();
        {
            let mut queue = queue.lock().await;
            let first = tokio::select! {
                job = queue.recv() => job,
                _ = shared.stop.cancelled() => None,
            };
            let first = match first {
                Some(job) => Some(job),
                None if shared.stop.is_cancelled() => {
                    // Shutting down: no new sends; the ones queued are still written.
                    queue.close();
                    queue.recv().await
                }
                None => None,
            };
            match first {
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
        // `write_batch` answers every send itself, a panic in its transaction included;
        // should anything else in it panic, its callers get 500 (their replies dropped)
        // and this writer still goes on to the next batch.
        if AssertUnwindSafe(shared.write_batch(batch))
            .catch_unwind()
            .await
            .is_err()
        {
            tracing::error!("a message writer panicked outside a transaction; carrying on");
        }
    }
}

/// A pooled connection of either backend, held for one batch.
enum Conn {
    MySql(PoolConnection<MySql>),
    Sqlite(PoolConnection<Sqlite>),
}

/// How one attempt at writing a batch ended.
enum Attempt {
    /// Committed: one answer per send.
    Done(Vec<AppResult<Message>>),
    /// Rolled back, or never begun: nothing was written.
    NotWritten(AppError),
    /// `COMMIT` failed: the sends may or may not be in.
    Unknown(sqlx::Error),
    /// The writing code panicked inside the transaction (rolled back).
    Panicked,
}

/// Why a transaction failed.
enum Failure {
    Before(AppError),
    AtCommit(sqlx::Error),
}

impl Shared {
    /// Writes one batch and answers every send in it, whatever happens.
    async fn write_batch(&self, batch: Vec<Job>) {
        let acquired = self
            .circuit
            .guard(async {
                match tokio::time::timeout(ACQUIRE_TIMEOUT, acquire(&self.db)).await {
                    Ok(Ok(conn)) => Ok(conn),
                    Ok(Err(e)) if !db::is_unreachable(&e) => Err(AppError::from(e)),
                    Ok(Err(_)) | Err(_) => {
                        self.circuit.suspect();
                        Err(unavailable())
                    }
                }
            })
            .await;
        let mut conn = match acquired {
            Ok(conn) => conn,
            Err(e) => {
                let n = batch.len();
                for (job, error) in batch.into_iter().zip(copies(&e, n)) {
                    let _ = job.reply.send(error);
                }
                return;
            }
        };
        // From here on each caller still waiting waits for this outcome; the others
        // (gone, or past their deadline) are left out, unwritten.
        let (sends, replies): (Vec<Outgoing>, Vec<Reply>) = batch
            .into_iter()
            .filter(|job| job.claim.claim())
            .map(|job| (job.outgoing, job.reply))
            .unzip();
        if sends.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let results = match self.attempt(&mut conn, &sends).await {
            Attempt::Done(results) => results,
            Attempt::NotWritten(e) if sends.len() > 1 && !matches!(e, AppError::Unavailable(_)) => {
                // A statement failed: try each send alone, so that only the one at fault
                // (if any) fails.
                let mut results = Vec::with_capacity(sends.len());
                for send in &sends {
                    results.push(
                        match self.attempt(&mut conn, std::slice::from_ref(send)).await {
                            Attempt::Done(mut r) => r.pop().expect("one result per send"),
                            other => copies(&self.failed(other), 1).pop().expect("one copy"),
                        },
                    );
                }
                results
            }
            other => copies(&self.failed(other), sends.len()),
        };
        crate::monitoring::send_batch(sends.len(), started.elapsed());
        // Every conversation written to (or perhaps written to, after a failed COMMIT),
        // so that a sender reading on this process sees its message at once.
        for send in &sends {
            self.history.forget(Key::of(send.sender.user_id, send.to));
        }
        for (reply, result) in replies.into_iter().zip(results) {
            // A caller that has gone meanwhile (claimed, then dropped) finds the message
            // sent when it retries with its key.
            let _ = reply.send(result);
        }
    }

    /// The error a failed attempt's sends get; a lost database also opens the circuit.
    fn failed(&self, attempt: Attempt) -> AppError {
        match attempt {
            Attempt::Done(_) => unreachable!("only failures are mapped"),
            Attempt::NotWritten(e) => {
                let lost = match &e {
                    AppError::Unavailable(_) => true,
                    AppError::Internal(cause) => cause
                        .downcast_ref::<sqlx::Error>()
                        .is_some_and(db::is_unreachable),
                    _ => false,
                };
                if lost {
                    self.circuit.suspect();
                    unavailable()
                } else {
                    e
                }
            }
            Attempt::Unknown(e) => {
                if db::is_unreachable(&e) {
                    self.circuit.suspect();
                }
                AppError::Internal(
                    anyhow::Error::new(e).context("COMMIT failed: the batch may or may not be in"),
                )
            }
            Attempt::Panicked => AppError::Internal(anyhow::anyhow!(
                "a message writer panicked; batch rolled back"
            )),
        }
    }

    /// One transaction; a panic in it is caught and rolls it back.
    async fn attempt(&self, conn: &mut Conn, sends: &[Outgoing]) -> Attempt {
        let fault = self.panic_next_batch.swap(false, Ordering::AcqRel);
        match AssertUnwindSafe(write(
            conn,
            sends,
            self.consecutive_ids,
            self.send_rate,
            fault,
        ))
        .catch_unwind()
        .await
        {
            Ok(Ok(results)) => Attempt::Done(results),
            Ok(Err(Failure::Before(e))) => Attempt::NotWritten(e),
            Ok(Err(Failure::AtCommit(e))) => Attempt::Unknown(e),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %message, sends = sends.len(), "a message writer panicked; its batch is refused");
                Attempt::Panicked
            }
        }
    }
}

/// The same failure for `n` sends (errors are not `Clone`; a 5xx's cause is logged once).
fn copies(e: &AppError, n: usize) -> Vec<AppResult<Message>> {
    if let AppError::Internal(cause) = e {
        tracing::error!(error = ?cause, sends = n, "sending failed");
    }
    (0..n)
        .map(|_| {
            Err(match e {
                AppError::BadRequest(m) => AppError::BadRequest(m.clone()),
                AppError::NotFound(m) => AppError::NotFound(m.clone()),
                AppError::Forbidden(m) => AppError::Forbidden(m.clone()),
                AppError::Conflict(m) => AppError::Conflict(m.clone()),
                AppError::Unavailable(m) => AppError::Unavailable(m.clone()),
                _ => AppError::Internal(anyhow::anyhow!("sending failed")),
            })
        })
        .collect()
}

async fn acquire(db: &Db) -> Result<Conn, sqlx::Error> {
    Ok(match db {
        Db::MySql(pool) => Conn::MySql(pool.acquire().await?),
        Db::Sqlite(pool) => Conn::Sqlite(pool.acquire().await?),
    })
}

/// Whether the sender may post there, and who hears of it.
#[derive(Default)]
struct Rights {
    /// Whether each (sender, other) pair may talk.
    pairs: HashMap<(UserId, UserId), Talk>,
    /// Which senders are members of which of the groups named.
    memberships: HashSet<(messages::GroupId, UserId)>,
}

impl Rights {
    /// Whether the sender may post there (who hears it follows from the message:
    /// `rich::message_events`).
    fn permit(&self, send: &Outgoing) -> AppResult<()> {
        let me = send.sender.user_id;
        match send.to {
            Conversation::Direct(other) => friends::talk_of(&self.pairs, me, other).require(),
            Conversation::Group(group) if self.memberships.contains(&(group, me)) => Ok(()),
            Conversation::Group(_) => Err(AppError::not_found("user not found")),
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

/// Runs `body` (an `AppResult`) in a write transaction on `conn`, telling a failure
/// before `COMMIT` (nothing written) from a failed `COMMIT` (outcome unknown). On MySQL
/// a deadlock or lock wait timeout is retried twice, as `db_tx!` does.
macro_rules! batch_tx {
    ($conn:expr, |$tx:ident| $body:expr) => {
        match $conn {
            Conn::MySql(conn) => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let result: Result<_, Failure> = async {
                        #[allow(unused_mut)]
                        let mut $tx = conn.begin().await.map_err(|e| Failure::Before(e.into()))?;
                        let value = async { $body }.await.map_err(Failure::Before)?;
                        $tx.commit().await.map_err(Failure::AtCommit)?;
                        Ok(value)
                    }
                    .await;
                    match result {
                        Err(Failure::Before(e)) if attempt < 3 && e.should_retry() => {
                            tracing::debug!(attempt, "send batch deadlocked; retrying");
                            continue;
                        }
                        other => break other,
                    }
                }
            }
            Conn::Sqlite(conn) => {
                async {
                    #[allow(unused_mut)]
                    let mut $tx = conn
                        .begin_with("BEGIN IMMEDIATE")
                        .await
                        .map_err(|e| Failure::Before(e.into()))?;
                    let value = async { $body }.await.map_err(Failure::Before)?;
                    $tx.commit().await.map_err(Failure::AtCommit)?;
                    Ok(value)
                }
                .await
            }
        }
    };
}

/// The limit `SENDS_PER_MINUTE` counts under, per sender.
const SEND_LIMIT: &str = "send/user";

/// Writes `sends` in one transaction: one answer per send, in order, or why the
/// transaction failed. `fault` panics mid-transaction ([`SendQueue::panic_in_next_batch`]).
async fn write(
    conn: &mut Conn,
    sends: &[Outgoing],
    consecutive_ids: bool,
    send_rate: Rate,
    fault: bool,
) -> Result<Vec<AppResult<Message>>, Failure> {
    let now = db::now();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let rate_keys: Vec<String> = sends
        .iter()
        .map(|s| limits::key(SEND_LIMIT, &s.sender.user_id.to_string()))
        .collect();
    let mut pairs: Vec<(UserId, UserId)> = Vec::new();
    let mut groups: Vec<messages::GroupId> = Vec::new();
    let mut group_senders: Vec<UserId> = Vec::new();
    for send in sends {
        match send.to {
            Conversation::Direct(other) => pairs.push((send.sender.user_id, other)),
            Conversation::Group(group) => {
                groups.push(group);
                group_senders.push(send.sender.user_id);
            }
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    for list in [&mut groups, &mut group_senders] {
        list.sort_unstable();
        list.dedup();
    }
    batch_tx!(conn, |tx| {
        let mut rights = Rights::default();
        if !pairs.is_empty() {
            rights.pairs = talk_rights!(&mut *tx, &pairs)?;
        }
        if !groups.is_empty() {
            // The senders' memberships alone, not every member: a group of a thousand
            // costs a send what a group of three does.
            let mut q = QueryBuilder::new(
                "SELECT group_chat_id, member_id FROM group_chat_member WHERE group_chat_id IN (",
            );
            let mut list = q.separated(", ");
            for group in &groups {
                list.push_bind(*group);
            }
            q.push(") AND member_id IN (");
            let mut list = q.separated(", ");
            for sender in &group_senders {
                list.push_bind(*sender);
            }
            q.push(")");
            let rows: Vec<(messages::GroupId, UserId)> =
                q.build_query_as().fetch_all(&mut *tx).await?;
            rights.memberships = rows.into_iter().collect();
        }
        // Who may post; then the ids: one multi-row INSERT for the sends without an
        // idempotency key where the ids come out consecutive, and a row at a time for the
        // rest (a repeated key must fail alone).
        let mut permitted_to: Vec<AppResult<()>> = sends.iter().map(|s| rights.permit(s)).collect();
        // Each sender's rate, counted with the messages: one read and one write for the
        // batch, and a rolled-back batch counts nothing.
        let permitted: Vec<usize> = (0..sends.len())
            .filter(|&i| permitted_to[i].is_ok())
            .collect();
        let keys: Vec<&str> = permitted.iter().map(|&i| rate_keys[i].as_str()).collect();
        let answers = tx.take_each(&keys, send_rate, now_ms).await?;
        for (&i, answer) in permitted.iter().zip(answers) {
            if let Some(wait) = answer {
                permitted_to[i] = Err(AppError::too_many(wait));
            }
        }
        let mut ids: Vec<Option<AppResult<MessageId>>> = sends.iter().map(|_| None).collect();
        let together: Vec<usize> = (0..sends.len())
            .filter(|&i| permitted_to[i].is_ok() && sends[i].client_key.is_none())
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
            if ids[i].is_some() || permitted_to[i].is_err() {
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
        let mut sent: Vec<(Message, Option<&str>)> = Vec::new();
        for ((send, permitted), id) in sends.iter().zip(permitted_to).zip(ids) {
            match (permitted, id) {
                (Err(refused), _) => results.push(Err(refused)),
                (Ok(()), Some(Ok(message_id))) => {
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
                        attachments: Vec::new(),
                        rich: send.rich.fields(),
                    };
                    sent.push((message.clone(), send.client_key.as_deref()));
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
            .flat_map(|(message, client_key)| {
                // socket.io senders recognise their own message by its key.
                super::rich::message_events("message", message, *client_key)
            })
            .collect();
        if fault {
            panic!("fault injected by SendQueue::panic_in_next_batch");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_is_either_claimed_or_abandoned_never_both() {
        let claim = Claim::default();
        assert!(claim.claim(), "the writer takes a queued send");
        assert!(!claim.abandon(), "its caller can no longer give it up");
        let claim = Claim::default();
        assert!(claim.abandon(), "a caller gives up a queued send");
        assert!(!claim.claim(), "no writer takes it afterwards");
    }

    #[test]
    fn a_dropped_caller_abandons_its_send() {
        let claim = Arc::new(Claim::default());
        drop(AbandonOnDrop(claim.clone()));
        assert!(!claim.claim());
        let claimed = Arc::new(Claim::default());
        let guard = AbandonOnDrop(claimed.clone());
        assert!(claimed.claim());
        drop(guard);
        assert_eq!(claimed.0.load(Ordering::Acquire), CLAIMED, "stays claimed");
    }
}
