//! Event streams: opening `GET /api/events` for each user, reading it with
//! `eventsource-stream`, reconnecting with `Last-Event-ID` as a browser would, and matching
//! every `message` event to its token.

use std::{
    pin::pin,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use eventsource_stream::{Event, EventStreamError, Eventsource as _};
use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::{
    sync::{mpsc, Semaphore},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use crate::{
    client::{expect_ok, short_error, Api, User},
    tracker::{token_of, Tracker},
};

#[derive(Default)]
pub struct StreamStats {
    opened: AtomicU64,
    pub live: AtomicI64,
    reconnects: AtomicU64,
    open_errors: AtomicU64,
    pub ended_by_server: AtomicU64,
    pub read_errors: AtomicU64,
    events: AtomicU64,
    message_events: AtomicU64,
    own_echoes: AtomicU64,
    heartbeats: AtomicU64,
    bad_events: AtomicU64,
    bytes: AtomicU64,
}

impl StreamStats {
    pub fn json(&self) -> Value {
        json!({
            "opened": self.opened.load(Ordering::Relaxed),
            "reconnects": self.reconnects.load(Ordering::Relaxed),
            "open_errors": self.open_errors.load(Ordering::Relaxed),
            "ended_by_server": self.ended_by_server.load(Ordering::Relaxed),
            "read_errors": self.read_errors.load(Ordering::Relaxed),
            "events": self.events.load(Ordering::Relaxed),
            "message_events": self.message_events.load(Ordering::Relaxed),
            "own_echoes": self.own_echoes.load(Ordering::Relaxed),
            "heartbeats": self.heartbeats.load(Ordering::Relaxed),
            "unparsable_events": self.bad_events.load(Ordering::Relaxed),
            "bytes": self.bytes.load(Ordering::Relaxed),
        })
    }

    pub fn text(&self) -> String {
        format!(
            "reconnects {}  open errors {}  closed by server {}  read errors {}  events {} (message {}, own echoes {})  heartbeats {}",
            self.reconnects.load(Ordering::Relaxed),
            self.open_errors.load(Ordering::Relaxed),
            self.ended_by_server.load(Ordering::Relaxed),
            self.read_errors.load(Ordering::Relaxed),
            self.events.load(Ordering::Relaxed),
            self.message_events.load(Ordering::Relaxed),
            self.own_echoes.load(Ordering::Relaxed),
            self.heartbeats.load(Ordering::Relaxed),
        )
    }
}

/// What every stream task of a run shares.
pub struct StreamCtx {
    pub run: String,
    pub password: String,
    /// Where streams connect: user `u`'s to `stream_apis[u % len]` (one entry, except in
    /// the soak, which spreads its users over two processes).
    pub stream_apis: Vec<Api>,
    /// Whether a user's copy of its own message is a delivery the tracker expects (the
    /// soak's) or only counted as an echo.
    pub own_copies_tracked: bool,
    /// Where to sign in again after a 401 (the first `--url`).
    pub auth_api: Api,
    pub users: Vec<Arc<User>>,
    pub tracker: Tracker,
    pub stats: StreamStats,
    pub stop: CancellationToken,
    pub first_error: Mutex<Option<String>>,
}

impl StreamCtx {
    pub fn new(
        run: &str,
        password: &str,
        stream_api: &Api,
        auth_api: &Api,
        users: Vec<Arc<User>>,
    ) -> Self {
        Self {
            run: run.to_string(),
            password: password.to_string(),
            stream_apis: vec![stream_api.clone()],
            own_copies_tracked: false,
            auth_api: auth_api.clone(),
            users,
            tracker: Tracker::default(),
            stats: StreamStats::default(),
            stop: CancellationToken::new(),
            first_error: Mutex::new(None),
        }
    }

    fn note_error(&self, e: String) {
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(e);
        }
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().unwrap().clone()
    }
}

#[derive(Deserialize)]
struct MessageEvent {
    content: String,
    sender_username: String,
}

/// One event stream of `user`; `slot` numbers it among that user's streams.
async fn run_stream(
    ctx: Arc<StreamCtx>,
    user: usize,
    slot: usize,
    connect: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
) {
    let u = ctx.users[user].clone();
    let api = &ctx.stream_apis[user % ctx.stream_apis.len()];
    let mut last_id: Option<String> = None;
    let mut ready = Some(ready);
    let mut failures = 0u32;
    loop {
        if ctx.stop.is_cancelled() {
            return;
        }
        let token = u.token();
        let mut req = api
            .client
            .get(api.url("/api/events"))
            .bearer_auth(&token)
            .header("accept", "text/event-stream");
        if let Some(id) = &last_id {
            req = req.header("last-event-id", id.as_str());
        }
        let permit = if ready.is_some() {
            connect.acquire().await.ok()
        } else {
            None
        };
        let result = tokio::select! {
            r = req.send() => r,
            _ = ctx.stop.cancelled() => return,
        };
        drop(permit);
        let failure = match result {
            Ok(resp) if resp.status() == StatusCode::OK => {
                failures = 0;
                ctx.stats.opened.fetch_add(1, Ordering::Relaxed);
                ctx.stats.live.fetch_add(1, Ordering::Relaxed);
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Ok(()));
                } else {
                    ctx.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                let body = resp.bytes_stream().map_err(|e| short_error(&e));
                let ended = read_events(&ctx, body, user, slot, &mut last_id).await;
                ctx.stats.live.fetch_sub(1, Ordering::Relaxed);
                match ended {
                    StreamEnd::Stopped => return,
                    StreamEnd::Closed => {
                        ctx.stats.ended_by_server.fetch_add(1, Ordering::Relaxed);
                        ctx.note_error(format!("stream of {} closed by the server", u.username));
                    }
                    StreamEnd::Error(e) => {
                        ctx.stats.read_errors.fetch_add(1, Ordering::Relaxed);
                        ctx.note_error(format!("stream of {} failed: {e}", u.username));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                if let Err(e) = u.refresh(&ctx.auth_api, &ctx.password, &token).await {
                    format!("401 and re-sign-in failed: {e:#}")
                } else {
                    continue;
                }
            }
            Ok(resp) => {
                let what = format!("GET /api/events as {}", u.username);
                match expect_ok(resp, &what).await {
                    Err(e) => format!("{e:#}"),
                    Ok(_) => format!("{what}: unexpected status"),
                }
            }
            Err(e) => format!("GET /api/events as {}: {}", u.username, short_error(&e)),
        };
        ctx.stats.open_errors.fetch_add(1, Ordering::Relaxed);
        failures += 1;
        ctx.note_error(failure.clone());
        if ready.is_some() && failures >= 5 {
            if let Some(tx) = ready.take() {
                let _ = tx.send(Err(failure));
            }
            return;
        }
        let backoff = Duration::from_millis(200 * u64::from(failures.min(10)));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = ctx.stop.cancelled() => return,
        }
    }
}

enum StreamEnd {
    Stopped,
    Closed,
    Error(String),
}

/// Reads one open stream's body until it ends or the run stops.
async fn read_events(
    ctx: &StreamCtx,
    body: impl Stream<Item = Result<impl AsRef<[u8]>, String>>,
    user: usize,
    slot: usize,
    last_id: &mut Option<String>,
) -> StreamEnd {
    // Delivery latency ends when the chunk holding the event arrived, which for the
    // second event of a chunk is earlier than the moment the parser hands it out.
    let chunk_at = Mutex::new(Instant::now());
    let body = body.inspect_ok(|chunk| {
        let chunk = chunk.as_ref();
        *chunk_at.lock().unwrap() = Instant::now();
        ctx.stats
            .bytes
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if is_heartbeat(chunk) {
            ctx.stats.heartbeats.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut events = pin!(body.eventsource());
    loop {
        let next = tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => return StreamEnd::Stopped,
            e = events.next() => e,
        };
        match next {
            Some(Ok(event)) => {
                let at = *chunk_at.lock().unwrap();
                handle_event(ctx, event, user, slot, at, last_id);
            }
            Some(Err(EventStreamError::Transport(e))) => return StreamEnd::Error(e),
            Some(Err(e)) => {
                ctx.stats.bad_events.fetch_add(1, Ordering::Relaxed);
                return StreamEnd::Error(format!("unreadable event stream: {e}"));
            }
            None => return StreamEnd::Closed,
        }
    }
}

/// The server's keep-alive, a comment (`: keep-alive`) it writes alone after 15 quiet
/// seconds. eventsource-stream drops comments, as the SSE spec says a client should, so
/// heartbeats are counted from the chunks that hold nothing but comment lines.
fn is_heartbeat(chunk: &[u8]) -> bool {
    chunk.starts_with(b":")
        && chunk
            .split(|b| *b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .all(|line| line.is_empty() || line.starts_with(b":"))
}

fn handle_event(
    ctx: &StreamCtx,
    event: Event,
    user: usize,
    slot: usize,
    at: Instant,
    last_id: &mut Option<String>,
) {
    if !event.id.is_empty() {
        *last_id = Some(event.id);
    }
    ctx.stats.events.fetch_add(1, Ordering::Relaxed);
    if event.event != "message" {
        return;
    }
    ctx.stats.message_events.fetch_add(1, Ordering::Relaxed);
    let Ok(msg) = serde_json::from_str::<MessageEvent>(&event.data) else {
        ctx.stats.bad_events.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if msg.sender_username == ctx.users[user].username {
        ctx.stats.own_echoes.fetch_add(1, Ordering::Relaxed);
        if !ctx.own_copies_tracked {
            return;
        }
    }
    match token_of(&msg.content, &ctx.run) {
        Some(n) => ctx.tracker.delivered(n, user, slot, at),
        None => ctx.tracker.unknown(),
    }
}

/// The stream tasks of a run, and how many streams each user holds.
pub struct OpenStreams {
    tasks: Vec<JoinHandle<()>>,
    pub per_user: Vec<usize>,
    pub open_secs: f64,
}

/// Opens `total` streams round-robin over the users and waits until every one has its
/// response headers: the server subscribes a stream before it answers, so from then on no
/// event can be missed.
pub async fn open_streams(
    ctx: &Arc<StreamCtx>,
    total: usize,
    connect_concurrency: usize,
) -> Result<OpenStreams> {
    let n_users = ctx.users.len();
    let mut per_user = vec![0usize; n_users];
    let connect = Arc::new(Semaphore::new(connect_concurrency.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let at: Vec<&str> = ctx.stream_apis.iter().map(|a| a.base.as_str()).collect();
    eprintln!("opening {total} event streams at {}...", at.join(" and "));
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let user = i % n_users;
        let slot = per_user[user];
        per_user[user] += 1;
        tasks.push(tokio::spawn(run_stream(
            ctx.clone(),
            user,
            slot,
            connect.clone(),
            tx.clone(),
        )));
    }
    drop(tx);
    let mut ok = 0usize;
    let mut last_report = Instant::now();
    while ok < total {
        match rx.recv().await {
            Some(Ok(())) => ok += 1,
            Some(Err(e)) => {
                ctx.stop.cancel();
                bail!("could not open an event stream ({ok}/{total} open): {e}");
            }
            None => bail!("stream tasks ended early ({ok}/{total} open)"),
        }
        if total >= 1000 && (last_report.elapsed() >= Duration::from_secs(2) || ok == total) {
            eprintln!(
                "  {ok}/{total} streams open ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    Ok(OpenStreams {
        tasks,
        per_user,
        open_secs: started.elapsed().as_secs_f64(),
    })
}

pub async fn close_streams(ctx: &StreamCtx, streams: OpenStreams) {
    ctx.stop.cancel();
    let all = futures_util::future::join_all(streams.tasks);
    let _ = tokio::time::timeout(Duration::from_secs(10), all).await;
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    fn ctx() -> StreamCtx {
        let api = Api::new(reqwest::Client::new(), "http://127.0.0.1:9");
        let user = |name: &str| Arc::new(User::new(name.into(), String::new(), String::new()));
        StreamCtx::new("run1", "", &api, &api, vec![user("alice"), user("bob")])
    }

    fn message(id: u64, sender: &str, content: &str) -> String {
        let data = json!({ "content": content, "sender_username": sender });
        format!("id: {id}\r\nevent: message\r\ndata: {data}\r\n\r\n")
    }

    #[tokio::test]
    async fn matches_messages_across_split_chunks_and_counts_the_rest() {
        let ctx = ctx();
        let now = Instant::now();
        ctx.tracker.register(1, 1, 1, now);
        ctx.tracker.register(2, 1, 1, now);
        ctx.tracker.posted(1, true);
        ctx.tracker.posted(2, true);

        let first = message(10, "alice", "lt:run1:1");
        let (head, tail) = first.split_at(17);
        let chunks = vec![
            ": keep-alive\n\n".to_string(),
            head.to_string(),
            tail.to_string() + &message(11, "bob", "lt:run1:99"),
            "id: 12\nevent: presence\ndata: {}\n\n".to_string(),
            message(13, "alice", "lt:run1:2") + &message(14, "alice", "lt:run1:2"),
            "event: message\ndata: not json\n\n".to_string(),
        ];
        let body = stream::iter(chunks.into_iter().map(Ok::<_, String>));
        let mut last_id = None;
        let end = read_events(&ctx, body, 1, 0, &mut last_id).await;

        assert!(matches!(end, StreamEnd::Closed));
        // The id persists over an event without one, as in a browser.
        assert_eq!(last_id.as_deref(), Some("14"));
        let stats = ctx.stats.json();
        assert_eq!(stats["heartbeats"], 1);
        assert_eq!(stats["events"], 6);
        assert_eq!(stats["message_events"], 5);
        assert_eq!(stats["own_echoes"], 1);
        assert_eq!(stats["unparsable_events"], 1);
        let tally = ctx.tracker.tally();
        assert_eq!((tally.received, tally.lost), (2, 0));
        assert_eq!((tally.duplicated, tally.duplicate_copies), (1, 1));
    }

    #[test]
    fn heartbeat_is_a_chunk_of_comments_only() {
        assert!(is_heartbeat(b": keep-alive\n\n"));
        assert!(is_heartbeat(b":\r\n\r\n"));
        assert!(!is_heartbeat(b"data: x\n\n"));
        assert!(!is_heartbeat(b": keep-alive\n\ndata: x\n\n"));
        assert!(!is_heartbeat(b""));
    }
}
