//! `loadtest`: drives a running messenger server over HTTP and reports throughput,
//! latency, delivery correctness and server memory. See `docs/loadtest.md`.
//!
//! Modes:
//! * default: pairs of users send each other direct messages at `--rate` for
//!   `--duration` seconds while every user holds event streams; each message carries a
//!   unique token, and its arrival on the recipient's streams is matched and timed.
//! * `--idle-streams N`: opens N event streams over `--users` users and holds them.
//! * `--open-conversations`: times `GET /api/messages/?friend_username=X&limit=50`.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    sync::{
        atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Parser;
use futures_util::{stream, StreamExt, TryStreamExt};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const RATE_LIMIT_HINT: &str =
    "hint: the server rate-limits sign-ups (SIGNUPS_PER_HOUR, default 20 per IP) and \
sign-ins (LOGIN_ATTEMPTS_PER_MINUTE, default 10 per account); for load runs start it with \
SIGNUPS_PER_HOUR=1000000 LOGIN_ATTEMPTS_PER_MINUTE=1000000 (see docs/loadtest.md)";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "loadtest",
    about = "Load tool for the messenger server (HTTP only): message throughput and delivery latency, idle event streams, history reads",
    after_help = "With two --url values, event streams connect to the LAST one and messages are POSTed to the FIRST \
(cross-process delivery). Start the server with SIGNUPS_PER_HOUR=1000000 LOGIN_ATTEMPTS_PER_MINUTE=1000000. \
Exit status is non-zero when a message was lost, duplicated, misrouted or failed to post, or a stream failed to open."
)]
struct Args {
    /// Base URL(s) of the server, e.g. http://127.0.0.1:8000. Two: POST to the first, stream from the last.
    #[arg(long = "url", required = true, num_args = 1..=2, env = "LOADTEST_URL", value_delimiter = ',')]
    url: Vec<String>,

    /// Users to create; user 2k and user 2k+1 are friends and message each other.
    #[arg(long, default_value_t = 20)]
    users: usize,

    /// Event streams to open, spread round-robin over the users (default: one per user).
    #[arg(long)]
    streams: Option<usize>,

    /// Messages per second in total; 0 = as fast as --concurrency allows.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,

    /// Seconds of sending (or of reading, with --open-conversations).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,

    /// HTTP connections (tasks) used for sending.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,

    /// Server process id whose VmRSS to report (repeatable: one per server process).
    #[arg(long = "server-pid")]
    server_pid: Vec<u32>,

    /// Idle mode: open this many event streams over --users users and hold them for --hold seconds.
    #[arg(long)]
    idle_streams: Option<usize>,

    /// Seconds to hold the idle streams.
    #[arg(long, default_value_t = 60.0)]
    hold: f64,

    /// History mode: time GET /api/messages/?friend_username=X&limit=50 at --concurrency.
    #[arg(long)]
    open_conversations: bool,

    /// Messages per pair seeded before timing history reads (--open-conversations).
    #[arg(long, default_value_t = 100)]
    history: usize,

    /// Seconds to wait for outstanding deliveries after sending stops.
    #[arg(long, default_value_t = 5.0)]
    grace: f64,

    /// Pad each message's content to this many characters (1..=2000; the token is ~20).
    #[arg(long, default_value_t = 0)]
    message_chars: usize,

    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,

    /// Concurrent sign-ups during setup (the server hashes with argon2, one per core).
    #[arg(long, default_value_t = 4)]
    signup_concurrency: usize,

    /// Streams being opened at the same time.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,

    /// Per-request timeout for non-stream requests, in seconds.
    #[arg(long, default_value_t = 30.0)]
    request_timeout: f64,

    /// Password for the created users.
    #[arg(long, default_value = "Password231")]
    password: String,

    /// Run id used in user names (default: random). Names are lt{run}u{i}.
    #[arg(long)]
    run_id: Option<String>,
}

// ---------------------------------------------------------------------------------------
// HTTP helpers

#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn new(client: reqwest::Client, base: &str) -> Self {
        Self {
            client,
            base: base.trim_end_matches('/').to_string(),
        }
    }
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
}

/// Turns a non-2xx response into an error naming the request, the status and `detail`.
async fn expect_ok(resp: Response, what: &str) -> Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("detail").map(|d| d.to_string()))
        .unwrap_or_else(|| body.chars().take(300).collect());
    let mut msg = format!("{what}: HTTP {status}: {detail}");
    if status == StatusCode::TOO_MANY_REQUESTS {
        msg.push('\n');
        msg.push_str(RATE_LIMIT_HINT);
    }
    Err(anyhow!(msg))
}

struct User {
    username: String,
    email: String,
    token: Mutex<String>,
    refreshing: tokio::sync::Mutex<()>,
}

impl User {
    fn token(&self) -> String {
        self.token.lock().unwrap().clone()
    }

    /// Signs in again after a 401 (tokens last 30 minutes), unless another task already did.
    async fn refresh(&self, api: &Api, password: &str, stale: &str) -> Result<()> {
        let _guard = self.refreshing.lock().await;
        if self.token() != stale {
            return Ok(());
        }
        let resp = api
            .client
            .post(api.url("/api/auth/sign-in"))
            .form(&[
                ("grant_type", "password"),
                ("username", &self.email),
                ("password", password),
            ])
            .send()
            .await
            .context("POST /api/auth/sign-in")?;
        let resp = expect_ok(resp, "POST /api/auth/sign-in").await?;
        let body: TokenBody = resp.json().await.context("sign-in response")?;
        *self.token.lock().unwrap() = body.access_token;
        Ok(())
    }
}

/// Sends a bearer-authenticated request; on 401 signs in again and retries once.
async fn authed(
    api: &Api,
    password: &str,
    user: &User,
    build: impl Fn(&str) -> RequestBuilder,
) -> Result<Response, String> {
    let token = user.token();
    let resp = build(&token).send().await.map_err(|e| short_error(&e))?;
    if resp.status() != StatusCode::UNAUTHORIZED {
        return Ok(resp);
    }
    user.refresh(api, password, &token)
        .await
        .map_err(|e| format!("re-sign-in failed: {e:#}"))?;
    build(&user.token())
        .send()
        .await
        .map_err(|e| short_error(&e))
}

fn short_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect error".into()
    } else if e.is_body() || e.is_decode() {
        "body error".into()
    } else {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(inner) = src {
            let _ = write!(s, ": {inner}");
            src = inner.source();
        }
        s
    }
}

async fn check_health(api: &Api) -> Result<()> {
    let resp = api
        .client
        .get(api.url("/health"))
        .send()
        .await
        .with_context(|| format!("server not reachable at {}", api.base))?;
    expect_ok(resp, &format!("GET {}/health", api.base)).await?;
    Ok(())
}

async fn create_users(args: &Args, api: &Api, run: &str, n: usize) -> Result<Vec<Arc<User>>> {
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    eprintln!(
        "signing up {n} users (argon2 on the server: this takes ~0.1-0.3 s per user per core)..."
    );
    let users: Vec<Arc<User>> = stream::iter(0..n)
        .map(|i| {
            let done = &done;
            async move {
                let username = format!("lt{run}u{i}");
                let email = format!("{username}@example.com");
                let resp = api
                    .client
                    .post(api.url("/api/auth/sign-up"))
                    .query(&[("username", &username)])
                    .form(&[
                        ("grant_type", "password"),
                        ("username", &email),
                        ("password", &args.password),
                    ])
                    .send()
                    .await
                    .context("POST /api/auth/sign-up")?;
                let resp =
                    expect_ok(resp, &format!("POST /api/auth/sign-up?username={username}")).await?;
                let body: TokenBody = resp.json().await.context("sign-up response")?;
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d.is_multiple_of((n / 10).max(1)) || d == n {
                    eprintln!("  {d}/{n} users ({:.1} s)", started.elapsed().as_secs_f64());
                }
                Ok::<_, anyhow::Error>(Arc::new(User {
                    username,
                    email,
                    token: Mutex::new(body.access_token),
                    refreshing: tokio::sync::Mutex::new(()),
                }))
            }
        })
        .buffered(args.signup_concurrency.max(1))
        .try_collect()
        .await?;
    Ok(users)
}

async fn befriend_pairs(args: &Args, api: &Api, users: &[Arc<User>]) -> Result<()> {
    let pairs = users.len() / 2;
    eprintln!("making {pairs} friendships...");
    stream::iter(0..pairs)
        .map(|k| async move {
            let (a, b) = (&users[2 * k], &users[2 * k + 1]);
            let resp = authed(api, &args.password, a, |t| {
                api.client
                    .post(api.url("/api/friends/requests"))
                    .query(&[("username", &b.username)])
                    .bearer_auth(t)
            })
            .await
            .map_err(|e| anyhow!("POST /api/friends/requests: {e}"))?;
            expect_ok(resp, "POST /api/friends/requests").await?;
            let resp = authed(api, &args.password, b, |t| {
                api.client
                    .post(api.url("/api/friends/requests/accept"))
                    .query(&[("requester_username", &a.username)])
                    .bearer_auth(t)
            })
            .await
            .map_err(|e| anyhow!("POST /api/friends/requests/accept: {e}"))?;
            expect_ok(resp, "POST /api/friends/requests/accept").await?;
            Ok::<_, anyhow::Error>(())
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Memory figures

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mib(kib: Option<u64>) -> String {
    match kib {
        Some(k) => format!("{:.1} MiB", k as f64 / 1024.0),
        None => "n/a".into(),
    }
}

fn open_files_soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

fn check_fd_limit(needed: usize) {
    if let Some(limit) = open_files_soft_limit() {
        if (limit as u128) < needed as u128 {
            eprintln!(
                "warning: open-file limit is {limit} but this run needs about {needed} sockets; \
run `ulimit -n 65536` in this shell (and in the server's) first"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Latency summaries

#[derive(Clone, Copy, Default)]
struct Summary {
    count: usize,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    mean: Duration,
}

fn summarize(mut v: Vec<Duration>) -> Summary {
    if v.is_empty() {
        return Summary::default();
    }
    v.sort_unstable();
    let n = v.len();
    let pct = |p: f64| v[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    let total: Duration = v.iter().sum();
    Summary {
        count: n,
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: v[n - 1],
        mean: total / n as u32,
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Summary {
    fn text(&self) -> String {
        if self.count == 0 {
            return "n/a".into();
        }
        format!(
            "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (mean {:.2} ms, n={})",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            ms(self.mean),
            self.count
        )
    }
    fn json(&self) -> Value {
        json!({
            "count": self.count,
            "p50": ms(self.p50),
            "p90": ms(self.p90),
            "p99": ms(self.p99),
            "max": ms(self.max),
            "mean": ms(self.mean),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Delivery tracking

#[derive(Clone, Copy, PartialEq, Eq)]
enum PostState {
    InFlight,
    Ok,
    Failed,
}

struct Pending {
    sent_at: Instant,
    recipient: u32,
    state: PostState,
    /// Copies received, one counter per stream of the recipient.
    counts: Box<[u16]>,
}

#[derive(Default)]
struct TrackInner {
    pending: HashMap<u64, Pending>,
    delivery: Vec<Duration>,
    unknown: u64,
    misrouted: u64,
}

#[derive(Default)]
struct Tracker {
    inner: Mutex<TrackInner>,
    /// Deliveries still expected (recipient streams that have not seen a message yet).
    outstanding: AtomicI64,
}

impl Tracker {
    fn register(&self, n: u64, recipient: usize, streams: usize, sent_at: Instant) {
        let mut inner = self.inner.lock().unwrap();
        inner.pending.insert(
            n,
            Pending {
                sent_at,
                recipient: recipient as u32,
                state: PostState::InFlight,
                counts: vec![0u16; streams].into_boxed_slice(),
            },
        );
        self.outstanding.fetch_add(streams as i64, Ordering::AcqRel);
    }

    fn posted(&self, n: u64, ok: bool) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(p) = inner.pending.get_mut(&n) {
            if ok {
                p.state = PostState::Ok;
            } else {
                p.state = PostState::Failed;
                let missing = p.counts.iter().filter(|c| **c == 0).count();
                self.outstanding.fetch_sub(missing as i64, Ordering::AcqRel);
            }
        }
    }

    fn delivered(&self, n: u64, user: usize, slot: usize, at: Instant) {
        let mut inner = self.inner.lock().unwrap();
        let inner = &mut *inner;
        let Some(p) = inner.pending.get_mut(&n) else {
            inner.unknown += 1;
            return;
        };
        if p.recipient as usize != user || slot >= p.counts.len() {
            inner.misrouted += 1;
            return;
        }
        let c = &mut p.counts[slot];
        *c = c.saturating_add(1);
        if *c == 1 {
            inner.delivery.push(at.saturating_duration_since(p.sent_at));
            if p.state != PostState::Failed {
                self.outstanding.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

fn content_for(run: &str, n: u64, pad_to: usize) -> String {
    let mut s = format!("lt:{run}:{n}");
    if pad_to > s.len() {
        s.push(':');
        while s.len() < pad_to.min(2000) {
            s.push('x');
        }
    }
    s
}

fn token_of(content: &str, run: &str) -> Option<u64> {
    let rest = content.strip_prefix("lt:")?;
    let (r, rest) = rest.split_once(':')?;
    if r != run {
        return None;
    }
    rest.split(':').next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Event streams

#[derive(Default)]
struct StreamStats {
    opened: AtomicU64,
    live: AtomicI64,
    reconnects: AtomicU64,
    open_errors: AtomicU64,
    ended_by_server: AtomicU64,
    read_errors: AtomicU64,
    events: AtomicU64,
    message_events: AtomicU64,
    own_echoes: AtomicU64,
    heartbeats: AtomicU64,
    bad_events: AtomicU64,
    bytes: AtomicU64,
}

struct StreamCtx {
    run: String,
    password: String,
    stream_api: Api,
    auth_api: Api,
    users: Vec<Arc<User>>,
    tracker: Tracker,
    stats: StreamStats,
    stop: CancellationToken,
    first_error: Mutex<Option<String>>,
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
    connect: Arc<tokio::sync::Semaphore>,
    ready: tokio::sync::mpsc::UnboundedSender<Result<(), String>>,
) {
    let u = ctx.users[user].clone();
    let mut last_id: Option<String> = None;
    let mut ready = Some(ready);
    let mut failures = 0u32;
    loop {
        if ctx.stop.is_cancelled() {
            return;
        }
        let token = u.token();
        let mut req = ctx
            .stream_api
            .client
            .get(ctx.stream_api.url("/api/events"))
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
                let ended = read_events(&ctx, resp, user, slot, &mut last_id).await;
                ctx.stats.live.fetch_sub(1, Ordering::Relaxed);
                match ended {
                    StreamEnd::Stopped => return,
                    StreamEnd::Closed => {
                        ctx.stats.ended_by_server.fetch_add(1, Ordering::Relaxed);
                        note_error(
                            &ctx,
                            format!("stream of {} closed by the server", u.username),
                        );
                    }
                    StreamEnd::Error(e) => {
                        ctx.stats.read_errors.fetch_add(1, Ordering::Relaxed);
                        note_error(&ctx, format!("stream of {} failed: {e}", u.username));
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
        note_error(&ctx, failure.clone());
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

fn note_error(ctx: &StreamCtx, e: String) {
    let mut first = ctx.first_error.lock().unwrap();
    if first.is_none() {
        *first = Some(e);
    }
}

enum StreamEnd {
    Stopped,
    Closed,
    Error(String),
}

async fn read_events(
    ctx: &StreamCtx,
    mut resp: Response,
    user: usize,
    slot: usize,
    last_id: &mut Option<String>,
) -> StreamEnd {
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    loop {
        let chunk = tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => return StreamEnd::Stopped,
            c = resp.chunk() => c,
        };
        let at = Instant::now();
        let bytes = match chunk {
            Ok(Some(b)) => b,
            Ok(None) => return StreamEnd::Closed,
            Err(e) => return StreamEnd::Error(short_error(&e)),
        };
        ctx.stats
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        buf.extend(bytes.iter().copied().filter(|b| *b != b'\r'));
        let mut start = 0;
        while let Some(pos) = find_blank_line(&buf[start..]) {
            let block = &buf[start..start + pos];
            handle_block(ctx, block, user, slot, at, last_id);
            start += pos + 2;
        }
        buf.drain(..start);
    }
}

fn find_blank_line(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\n\n")
}

fn handle_block(
    ctx: &StreamCtx,
    block: &[u8],
    user: usize,
    slot: usize,
    at: Instant,
    last_id: &mut Option<String>,
) {
    let Ok(text) = std::str::from_utf8(block) else {
        ctx.stats.bad_events.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut kind = "message";
    let mut data = String::new();
    let mut has_data = false;
    let mut only_comments = true;
    for line in text.split('\n') {
        if line.is_empty() {
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        only_comments = false;
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" => *last_id = Some(value.to_string()),
            "event" => kind = value,
            "data" => {
                if has_data {
                    data.push('\n');
                }
                data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    if only_comments {
        ctx.stats.heartbeats.fetch_add(1, Ordering::Relaxed);
        return;
    }
    ctx.stats.events.fetch_add(1, Ordering::Relaxed);
    if kind != "message" || !has_data {
        return;
    }
    ctx.stats.message_events.fetch_add(1, Ordering::Relaxed);
    let Ok(msg) = serde_json::from_str::<MessageEvent>(&data) else {
        ctx.stats.bad_events.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if msg.sender_username == ctx.users[user].username {
        ctx.stats.own_echoes.fetch_add(1, Ordering::Relaxed);
        return;
    }
    match token_of(&msg.content, &ctx.run) {
        Some(n) => ctx.tracker.delivered(n, user, slot, at),
        None => ctx.tracker.inner.lock().unwrap().unknown += 1,
    }
}

/// Opens `total` streams round-robin over the users and waits until every one has its
/// response headers. Returns the stream tasks, how many streams each user has, and the
/// seconds it took.
async fn open_streams(
    ctx: &Arc<StreamCtx>,
    total: usize,
    connect_concurrency: usize,
) -> Result<(Vec<tokio::task::JoinHandle<()>>, Vec<usize>, f64)> {
    let n_users = ctx.users.len();
    let mut per_user = vec![0usize; n_users];
    let connect = Arc::new(tokio::sync::Semaphore::new(connect_concurrency.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    eprintln!(
        "opening {total} event streams at {}...",
        ctx.stream_api.base
    );
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
    Ok((tasks, per_user, started.elapsed().as_secs_f64()))
}

async fn close_streams(ctx: &StreamCtx, tasks: Vec<tokio::task::JoinHandle<()>>) {
    ctx.stop.cancel();
    let all = futures_util::future::join_all(tasks);
    let _ = tokio::time::timeout(Duration::from_secs(10), all).await;
}

fn stream_stats_json(s: &StreamStats) -> Value {
    json!({
        "opened": s.opened.load(Ordering::Relaxed),
        "reconnects": s.reconnects.load(Ordering::Relaxed),
        "open_errors": s.open_errors.load(Ordering::Relaxed),
        "ended_by_server": s.ended_by_server.load(Ordering::Relaxed),
        "read_errors": s.read_errors.load(Ordering::Relaxed),
        "events": s.events.load(Ordering::Relaxed),
        "message_events": s.message_events.load(Ordering::Relaxed),
        "own_echoes": s.own_echoes.load(Ordering::Relaxed),
        "heartbeats": s.heartbeats.load(Ordering::Relaxed),
        "unparsable_events": s.bad_events.load(Ordering::Relaxed),
        "bytes": s.bytes.load(Ordering::Relaxed),
    })
}

fn stream_stats_text(s: &StreamStats) -> String {
    format!(
        "reconnects {}  open errors {}  closed by server {}  read errors {}  events {} (message {}, own echoes {})  heartbeats {}",
        s.reconnects.load(Ordering::Relaxed),
        s.open_errors.load(Ordering::Relaxed),
        s.ended_by_server.load(Ordering::Relaxed),
        s.read_errors.load(Ordering::Relaxed),
        s.events.load(Ordering::Relaxed),
        s.message_events.load(Ordering::Relaxed),
        s.own_echoes.load(Ordering::Relaxed),
        s.heartbeats.load(Ordering::Relaxed),
    )
}

// ---------------------------------------------------------------------------------------
// Pacing

/// Hands out message numbers on a global schedule (`start + n / rate`), so that any number
/// of tasks together keep the target rate.
struct Schedule {
    next: AtomicU64,
    start: Instant,
    end: Instant,
    rate: f64,
    max_lag_us: AtomicU64,
}

impl Schedule {
    fn new(rate: f64, duration: f64) -> Self {
        let start = Instant::now() + Duration::from_millis(50);
        Self {
            next: AtomicU64::new(0),
            start,
            end: start + Duration::from_secs_f64(duration),
            rate,
            max_lag_us: AtomicU64::new(0),
        }
    }

    /// The next message number once it is due, or `None` when the run is over.
    async fn next(&self) -> Option<u64> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if self.rate > 0.0 {
            let due = self.start + Duration::from_secs_f64(n as f64 / self.rate);
            if due >= self.end {
                return None;
            }
            tokio::time::sleep_until(due.into()).await;
            let lag = Instant::now().saturating_duration_since(due).as_micros() as u64;
            self.max_lag_us.fetch_max(lag, Ordering::Relaxed);
        } else {
            if Instant::now() < self.start {
                tokio::time::sleep_until(self.start.into()).await;
            }
            if Instant::now() >= self.end {
                return None;
            }
        }
        Some(n)
    }
}

#[derive(Default)]
struct Errors(Mutex<BTreeMap<String, u64>>);

impl Errors {
    fn add(&self, e: String) {
        *self.0.lock().unwrap().entry(e).or_default() += 1;
    }
    fn total(&self) -> u64 {
        self.0.lock().unwrap().values().sum()
    }
    fn json(&self) -> Value {
        json!(self.0.lock().unwrap().clone())
    }
    fn text(&self) -> String {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{v} x {k}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

async fn status_error(resp: Response) -> String {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("detail").map(|d| d.to_string()))
        .unwrap_or_else(|| body.chars().take(120).collect());
    if status == StatusCode::TOO_MANY_REQUESTS {
        format!("HTTP {status} {detail} ({RATE_LIMIT_HINT})")
    } else {
        format!("HTTP {status} {detail}")
    }
}

// ---------------------------------------------------------------------------------------
// Setup shared by the modes

fn http_client(pool: usize, timeout: Option<Duration>) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .pool_max_idle_per_host(pool)
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    Ok(b.build()?)
}

fn run_id(args: &Args) -> Result<String> {
    let run = match &args.run_id {
        Some(r) => r.clone(),
        None => uuid::Uuid::new_v4().simple().to_string()[..6].to_string(),
    };
    if run.is_empty() || run.len() > 12 || !run.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!("--run-id must be 1-12 letters or digits");
    }
    Ok(run)
}

struct Rss {
    pids: Vec<u32>,
    samples: Vec<(String, Vec<Option<u64>>)>,
}

impl Rss {
    fn new(pids: &[u32]) -> Self {
        for pid in pids {
            if rss_kib(*pid).is_none() {
                eprintln!("warning: cannot read VmRSS of pid {pid} (/proc/{pid}/status)");
            }
        }
        Self {
            pids: pids.to_vec(),
            samples: Vec::new(),
        }
    }
    fn sample(&mut self, label: &str) {
        let values = self.pids.iter().map(|p| rss_kib(*p)).collect();
        self.samples.push((label.to_string(), values));
    }
    fn get(&self, label: &str, i: usize) -> Option<u64> {
        self.samples
            .iter()
            .find(|(l, _)| l == label)
            .and_then(|(_, v)| v[i])
    }
    fn json(&self) -> Value {
        Value::Array(
            self.pids
                .iter()
                .enumerate()
                .map(|(i, pid)| {
                    let mut m = serde_json::Map::new();
                    m.insert("pid".into(), json!(pid));
                    for (label, v) in &self.samples {
                        m.insert(format!("{label}_kib"), json!(v[i]));
                    }
                    Value::Object(m)
                })
                .collect(),
        )
    }
    fn text(&self) -> String {
        let mut out = String::new();
        for (i, pid) in self.pids.iter().enumerate() {
            let parts: Vec<String> = self
                .samples
                .iter()
                .map(|(label, v)| format!("{} {}", label.replace('_', " "), mib(v[i])))
                .collect();
            let _ = writeln!(out, "server rss       pid {pid}: {}", parts.join(", "));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Mode: messages

async fn run_messages(args: Args, post_api: Api, stream_api: Api, run: String) -> Result<bool> {
    if args.users < 2 {
        bail!("--users must be at least 2 (users are paired)");
    }
    if args.users % 2 == 1 {
        eprintln!(
            "warning: odd --users: user {} has no partner and only holds a stream",
            args.users - 1
        );
    }
    let total_streams = args.streams.unwrap_or(args.users);
    if total_streams < args.users {
        bail!("--streams ({total_streams}) must be at least --users ({}): every recipient needs a stream", args.users);
    }
    if args.rate < 0.0 || args.duration <= 0.0 {
        bail!("--rate must be >= 0 and --duration > 0");
    }
    check_fd_limit(total_streams + args.concurrency + 64);
    let mut rss = Rss::new(&args.server_pid);

    let users = create_users(&args, &post_api, &run, args.users).await?;
    befriend_pairs(&args, &post_api, &users).await?;

    rss.sample("before_streams");
    let ctx = Arc::new(StreamCtx {
        run: run.clone(),
        password: args.password.clone(),
        stream_api: stream_api.clone(),
        auth_api: post_api.clone(),
        users: users.clone(),
        tracker: Tracker::default(),
        stats: StreamStats::default(),
        stop: CancellationToken::new(),
        first_error: Mutex::new(None),
    });
    let (tasks, per_user, open_secs) =
        open_streams(&ctx, total_streams, args.connect_concurrency).await?;
    // Let presence/friendship events from the setup pass before timing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    rss.sample("after_streams");

    let pairs = args.users / 2;
    let schedule = Arc::new(Schedule::new(args.rate, args.duration));
    let errors = Arc::new(Errors::default());
    let per_user = Arc::new(per_user);
    eprintln!(
        "sending for {} s at {} over {} connections...",
        args.duration,
        if args.rate > 0.0 {
            format!("{} msg/s", args.rate)
        } else {
            "max rate".into()
        },
        args.concurrency
    );
    let mut senders = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (ctx, schedule, errors, per_user, api) = (
            ctx.clone(),
            schedule.clone(),
            errors.clone(),
            per_user.clone(),
            post_api.clone(),
        );
        let (password, pad) = (args.password.clone(), args.message_chars);
        senders.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while let Some(n) = schedule.next().await {
                let sender = (n as usize) % (pairs * 2);
                let recipient = sender ^ 1;
                let (from, to) = (&ctx.users[sender], &ctx.users[recipient]);
                let body =
                    json!({ "content": content_for(&ctx.run, n, pad), "group_chat_id": null });
                let t0 = Instant::now();
                ctx.tracker.register(n, recipient, per_user[recipient], t0);
                let result = authed(&api, &password, from, |t| {
                    api.client
                        .post(api.url("/api/messages/"))
                        .query(&[("addressee_username", &to.username)])
                        .bearer_auth(t)
                        .json(&body)
                })
                .await;
                let rtt = t0.elapsed();
                match result {
                    Ok(resp) if resp.status() == StatusCode::CREATED => {
                        latencies.push(rtt);
                        ctx.tracker.posted(n, true);
                        // Read the body so the connection goes back to the pool.
                        let _ = resp.bytes().await;
                    }
                    Ok(resp) => {
                        ctx.tracker.posted(n, false);
                        errors.add(status_error(resp).await);
                    }
                    Err(e) => {
                        ctx.tracker.posted(n, false);
                        errors.add(e);
                    }
                }
            }
            latencies
        }));
    }
    let mut send_latencies = Vec::new();
    for s in senders {
        send_latencies.extend(s.await?);
    }
    let send_end = Instant::now();
    let send_secs = send_end
        .saturating_duration_since(schedule.start)
        .as_secs_f64();

    // Grace: wait for outstanding deliveries.
    let grace_end = send_end + Duration::from_secs_f64(args.grace);
    while ctx.tracker.outstanding.load(Ordering::Acquire) > 0 && Instant::now() < grace_end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain_secs = send_end.elapsed().as_secs_f64();
    rss.sample("end");
    let live_at_end = ctx.stats.live.load(Ordering::Relaxed);

    // Tally, then close the streams.
    let (
        sent_ok,
        failed,
        lost,
        dup,
        dup_extra,
        delivered_after_failure,
        expected,
        received,
        unknown,
        misrouted,
        delivery,
    ) = {
        let mut inner = ctx.tracker.inner.lock().unwrap();
        let (
            mut sent_ok,
            mut failed,
            mut lost,
            mut dup,
            mut dup_extra,
            mut after_fail,
            mut expected,
            mut received,
        ) = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        for p in inner.pending.values() {
            let got = p.counts.iter().filter(|c| **c > 0).count() as u64;
            match p.state {
                PostState::Ok | PostState::InFlight => {
                    sent_ok += 1;
                    expected += p.counts.len() as u64;
                    received += got;
                    lost += p.counts.len() as u64 - got;
                }
                PostState::Failed => {
                    failed += 1;
                    after_fail += got;
                }
            }
            for c in p.counts.iter().filter(|c| **c > 1) {
                dup += 1;
                dup_extra += u64::from(*c - 1);
            }
        }
        let delivery = std::mem::take(&mut inner.delivery);
        (
            sent_ok,
            failed,
            lost,
            dup,
            dup_extra,
            after_fail,
            expected,
            received,
            inner.unknown,
            inner.misrouted,
            delivery,
        )
    };
    close_streams(&ctx, tasks).await;

    let send = summarize(send_latencies);
    let delivery = summarize(delivery);
    let throughput = sent_ok as f64 / send_secs.max(1e-9);
    let ok = lost == 0 && dup == 0 && misrouted == 0 && failed == 0;
    let cross = post_api.base != stream_api.base;

    if args.json {
        let report = json!({
            "mode": "messages",
            "ok": ok,
            "run_id": run,
            "post_url": post_api.base,
            "stream_url": stream_api.base,
            "cross_process": cross,
            "users": args.users,
            "pairs": pairs,
            "streams": total_streams,
            "streams_open_seconds": open_secs,
            "streams_live_at_end": live_at_end,
            "concurrency": args.concurrency,
            "target_rate": args.rate,
            "duration_s": args.duration,
            "message_chars": args.message_chars,
            "sent": sent_ok,
            "send_failures": failed,
            "send_errors": errors.json(),
            "send_seconds": send_secs,
            "throughput_msg_s": throughput,
            "max_schedule_lag_ms": schedule.max_lag_us.load(Ordering::Relaxed) as f64 / 1000.0,
            "send_latency_ms": send.json(),
            "delivery_latency_ms": delivery.json(),
            "deliveries_expected": expected,
            "deliveries_received": received,
            "lost": lost,
            "duplicated": dup,
            "duplicate_copies": dup_extra,
            "misrouted": misrouted,
            "unknown_message_events": unknown,
            "delivered_despite_failed_post": delivered_after_failure,
            "grace_s": args.grace,
            "drain_seconds": drain_secs,
            "stream_stats": stream_stats_json(&ctx.stats),
            "first_stream_problem": ctx.first_error.lock().unwrap().clone(),
            "server_rss": rss.json(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut out = String::new();
        let _ = writeln!(out, "== loadtest messages (run {run}) ==");
        if cross {
            let _ = writeln!(
                out,
                "post to          {}   streams from {}   (cross-process)",
                post_api.base, stream_api.base
            );
        } else {
            let _ = writeln!(out, "server           {}", post_api.base);
        }
        let _ = writeln!(
            out,
            "setup            {} users ({pairs} pairs), {total_streams} streams opened in {open_secs:.2} s, concurrency {}, target {} for {} s",
            args.users,
            args.concurrency,
            if args.rate > 0.0 { format!("{} msg/s", args.rate) } else { "max rate".into() },
            args.duration
        );
        let _ = writeln!(
            out,
            "sent             {sent_ok} messages in {send_secs:.2} s = {throughput:.1} msg/s   (failed POSTs {failed}, max schedule lag {:.1} ms)",
            schedule.max_lag_us.load(Ordering::Relaxed) as f64 / 1000.0
        );
        if failed > 0 {
            let _ = writeln!(out, "send errors      {}", errors.text());
        }
        let _ = writeln!(out, "send latency     {}", send.text());
        let _ = writeln!(out, "delivery latency {}", delivery.text());
        let _ = writeln!(
            out,
            "deliveries       {received}/{expected} received; lost {lost}, duplicated {dup}, misrouted {misrouted}, unknown {unknown}   (waited {drain_secs:.2} s after sending, grace {} s)",
            args.grace
        );
        if delivered_after_failure > 0 {
            let _ = writeln!(out, "note             {delivered_after_failure} deliveries of messages whose POST failed");
        }
        let _ = writeln!(
            out,
            "streams          {live_at_end} live at end; {}",
            stream_stats_text(&ctx.stats)
        );
        if let Some(e) = ctx.first_error.lock().unwrap().as_ref() {
            let _ = writeln!(out, "first stream problem: {e}");
        }
        out.push_str(&rss.text());
        let _ = writeln!(out, "result           {}", if ok { "OK" } else { "FAILED" });
        print!("{out}");
    }
    Ok(ok)
}

// ---------------------------------------------------------------------------------------
// Mode: idle streams

async fn run_idle(
    args: Args,
    post_api: Api,
    stream_api: Api,
    run: String,
    total: usize,
) -> Result<bool> {
    if args.users == 0 || total == 0 {
        bail!("--users and --idle-streams must be at least 1");
    }
    check_fd_limit(total + 64);
    let mut rss = Rss::new(&args.server_pid);
    let users = create_users(&args, &post_api, &run, args.users).await?;
    rss.sample("before_streams");
    let ctx = Arc::new(StreamCtx {
        run: run.clone(),
        password: args.password.clone(),
        stream_api: stream_api.clone(),
        auth_api: post_api.clone(),
        users,
        tracker: Tracker::default(),
        stats: StreamStats::default(),
        stop: CancellationToken::new(),
        first_error: Mutex::new(None),
    });
    let (tasks, _, open_secs) = open_streams(&ctx, total, args.connect_concurrency).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    rss.sample("after_streams");
    eprintln!("holding {total} streams for {} s...", args.hold);
    let hold_start = Instant::now();
    let hold = Duration::from_secs_f64(args.hold);
    let mut min_live = ctx.stats.live.load(Ordering::Relaxed);
    let mut timeline = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    while hold_start.elapsed() < hold {
        let left = hold.saturating_sub(hold_start.elapsed());
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep(left) => {}
        }
        let live = ctx.stats.live.load(Ordering::Relaxed);
        min_live = min_live.min(live);
        let values: Vec<Option<u64>> = args.server_pid.iter().map(|p| rss_kib(*p)).collect();
        let t = hold_start.elapsed().as_secs_f64();
        eprintln!(
            "  t={t:.0}s live streams {live}{}",
            args.server_pid
                .iter()
                .zip(&values)
                .map(|(p, v)| format!("  rss[{p}] {}", mib(*v)))
                .collect::<String>()
        );
        timeline.push(json!({ "t": t, "live": live, "rss_kib": values }));
    }
    rss.sample("end");
    let live_at_end = ctx.stats.live.load(Ordering::Relaxed);
    close_streams(&ctx, tasks).await;

    let dropped = ctx.stats.ended_by_server.load(Ordering::Relaxed)
        + ctx.stats.read_errors.load(Ordering::Relaxed);
    let ok = live_at_end as usize == total && dropped == 0;
    let per_stream: Vec<Option<f64>> = (0..args.server_pid.len())
        .map(|i| {
            let (b, a) = (rss.get("before_streams", i)?, rss.get("after_streams", i)?);
            Some((a as f64 - b as f64) / total as f64)
        })
        .collect();
    if args.json {
        let report = json!({
            "mode": "idle_streams",
            "ok": ok,
            "run_id": run,
            "stream_url": stream_api.base,
            "users": args.users,
            "streams": total,
            "streams_open_seconds": open_secs,
            "hold_s": args.hold,
            "streams_live_at_end": live_at_end,
            "min_live_during_hold": min_live,
            "stream_stats": stream_stats_json(&ctx.stats),
            "first_stream_problem": ctx.first_error.lock().unwrap().clone(),
            "server_rss": rss.json(),
            "server_kib_per_stream": per_stream,
            "timeline": timeline,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut out = String::new();
        let _ = writeln!(out, "== loadtest idle streams (run {run}) ==");
        let _ = writeln!(out, "server           {}", stream_api.base);
        let _ = writeln!(
            out,
            "streams          {total} over {} users opened in {open_secs:.2} s; held {} s; live at end {live_at_end} (min {min_live})",
            args.users, args.hold
        );
        let _ = writeln!(out, "stream events    {}", stream_stats_text(&ctx.stats));
        if let Some(e) = ctx.first_error.lock().unwrap().as_ref() {
            let _ = writeln!(out, "first stream problem: {e}");
        }
        out.push_str(&rss.text());
        for (pid, v) in args.server_pid.iter().zip(&per_stream) {
            if let Some(k) = v {
                let _ = writeln!(
                    out,
                    "per stream       pid {pid}: {k:.1} KiB (after - before streams, / {total})"
                );
            }
        }
        let _ = writeln!(out, "result           {}", if ok { "OK" } else { "FAILED" });
        print!("{out}");
    }
    Ok(ok)
}

// ---------------------------------------------------------------------------------------
// Mode: open conversations (history reads)

#[derive(Deserialize)]
struct PageLite {
    results: Vec<serde::de::IgnoredAny>,
}

async fn run_history(args: Args, api: Api, run: String) -> Result<bool> {
    if args.users < 2 {
        bail!("--users must be at least 2");
    }
    check_fd_limit(args.concurrency + 64);
    let mut rss = Rss::new(&args.server_pid);
    let users = create_users(&args, &api, &run, args.users).await?;
    befriend_pairs(&args, &api, &users).await?;
    let pairs = args.users / 2;

    eprintln!(
        "seeding {} messages per conversation ({} conversations)...",
        args.history, pairs
    );
    let seed_total = pairs * args.history;
    let seeded = AtomicUsize::new(0);
    let seed_start = Instant::now();
    stream::iter(0..seed_total)
        .map(|i| {
            let (users, api, seeded) = (&users, &api, &seeded);
            let password = &args.password;
            let run = &run;
            async move {
                let k = i % pairs;
                let from = 2 * k + (i / pairs) % 2;
                let (from, to) = (&users[from], &users[from ^ 1]);
                let body = json!({ "content": format!("lt:{run}:h{i}"), "group_chat_id": null });
                let resp = authed(api, password, from, |t| {
                    api.client
                        .post(api.url("/api/messages/"))
                        .query(&[("addressee_username", &to.username)])
                        .bearer_auth(t)
                        .json(&body)
                })
                .await
                .map_err(|e| anyhow!("seeding POST /api/messages/: {e}"))?;
                expect_ok(resp, "seeding POST /api/messages/").await?;
                let d = seeded.fetch_add(1, Ordering::Relaxed) + 1;
                if d % (seed_total / 5).max(1) == 0 {
                    eprintln!(
                        "  {d}/{seed_total} ({:.1} s)",
                        seed_start.elapsed().as_secs_f64()
                    );
                }
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;

    rss.sample("before_reads");
    let expected_len = args.history.min(50);
    let schedule = Arc::new(Schedule::new(args.rate, args.duration));
    let errors = Arc::new(Errors::default());
    let short_pages = Arc::new(AtomicU64::new(0));
    eprintln!(
        "reading history for {} s at {} over {} connections...",
        args.duration,
        if args.rate > 0.0 {
            format!("{} req/s", args.rate)
        } else {
            "max rate".into()
        },
        args.concurrency
    );
    let users = Arc::new(users);
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (schedule, errors, short_pages, users, api) = (
            schedule.clone(),
            errors.clone(),
            short_pages.clone(),
            users.clone(),
            api.clone(),
        );
        let password = args.password.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while let Some(n) = schedule.next().await {
                let reader = (n as usize) % (pairs * 2);
                let (me, friend) = (&users[reader], &users[reader ^ 1]);
                let t0 = Instant::now();
                let result = authed(&api, &password, me, |t| {
                    api.client
                        .get(api.url("/api/messages/"))
                        .query(&[
                            ("friend_username", friend.username.as_str()),
                            ("limit", "50"),
                        ])
                        .bearer_auth(t)
                })
                .await;
                match result {
                    Ok(resp) if resp.status() == StatusCode::OK => match resp.bytes().await {
                        Ok(body) => {
                            latencies.push(t0.elapsed());
                            match serde_json::from_slice::<PageLite>(&body) {
                                Ok(p) if p.results.len() == expected_len => {}
                                _ => {
                                    short_pages.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Err(e) => errors.add(short_error(&e)),
                    },
                    Ok(resp) => errors.add(status_error(resp).await),
                    Err(e) => errors.add(e),
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    let secs = schedule.start.elapsed().as_secs_f64();
    rss.sample("end");
    let lat = summarize(latencies);
    let throughput = lat.count as f64 / secs.max(1e-9);
    let short = short_pages.load(Ordering::Relaxed);
    let ok = errors.total() == 0 && short == 0;
    if args.json {
        let report = json!({
            "mode": "open_conversations",
            "ok": ok,
            "run_id": run,
            "url": api.base,
            "users": args.users,
            "conversations": pairs,
            "history_per_conversation": args.history,
            "concurrency": args.concurrency,
            "target_rate": args.rate,
            "duration_s": args.duration,
            "requests": lat.count,
            "errors": errors.total(),
            "error_kinds": errors.json(),
            "wrong_page_size": short,
            "seconds": secs,
            "throughput_req_s": throughput,
            "latency_ms": lat.json(),
            "server_rss": rss.json(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut out = String::new();
        let _ = writeln!(out, "== loadtest open conversations (run {run}) ==");
        let _ = writeln!(out, "server           {}", api.base);
        let _ = writeln!(
            out,
            "setup            {pairs} conversations x {} messages, concurrency {}, target {} for {} s",
            args.history,
            args.concurrency,
            if args.rate > 0.0 { format!("{} req/s", args.rate) } else { "max rate".into() },
            args.duration
        );
        let _ = writeln!(
            out,
            "requests         {} ok in {secs:.2} s = {throughput:.1} req/s; errors {}; wrong page size {short}",
            lat.count,
            errors.total()
        );
        if errors.total() > 0 {
            let _ = writeln!(out, "errors           {}", errors.text());
        }
        let _ = writeln!(out, "latency          {}", lat.text());
        out.push_str(&rss.text());
        let _ = writeln!(out, "result           {}", if ok { "OK" } else { "FAILED" });
        print!("{out}");
    }
    Ok(ok)
}

// ---------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("loadtest: error: {e:#}");
            std::process::exit(2);
        }
    }
}

async fn run(args: Args) -> Result<bool> {
    let run = run_id(&args)?;
    let timeout = Duration::from_secs_f64(args.request_timeout);
    let post_client = http_client(args.concurrency.max(16) + 16, Some(timeout))?;
    // Streams: no overall timeout, but a read that sees nothing for three heartbeats fails.
    let stream_client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(45))
        .tcp_nodelay(true)
        .build()?;
    if args.url.len() > 2 {
        bail!("at most two --url values: the first for POSTs, the last for streams");
    }
    let first = args
        .url
        .first()
        .ok_or_else(|| anyhow!("--url is required"))?;
    let last = args.url.last().unwrap_or(first);
    for u in &args.url {
        if !u.starts_with("http://") {
            bail!("--url {u:?} must start with http:// (this tool is built without TLS)");
        }
    }
    let post_api = Api::new(post_client, first);
    let stream_api = Api::new(stream_client, last);
    check_health(&post_api).await?;
    if stream_api.base != post_api.base {
        check_health(&stream_api).await?;
    }
    eprintln!("run id {run}");
    if let Some(n) = args.idle_streams {
        run_idle(args, post_api, stream_api, run, n).await
    } else if args.open_conversations {
        run_history(args, post_api, run).await
    } else {
        run_messages(args, post_api, stream_api, run).await
    }
}
