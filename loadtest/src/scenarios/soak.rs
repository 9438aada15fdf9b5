//! Soak mode (`--soak`): sustained sends across two server processes on one MariaDB for
//! `--minutes`, while every minute the database is stopped and started again and one
//! process is killed (`kill -9`) and restarted. The tool starts all three itself: a MariaDB
//! of its own (own data directory and port) and the `messenger` binary twice.
//!
//! Every message carries a token and an idempotency key (`client_key`). A send that gets
//! an error is retried with the same key until it is acknowledged, except every tenth
//! message, which is abandoned after its first error (as a client that gives up would).
//! At the end the database is read, the streams are given time to drain, and each message
//! is judged: acknowledged or stored but missing from the database or from one of its
//! streams (lost), on a stream twice or stored twice (duplicated), on a stream of a user
//! it is not for (misrouted), or written though every answer its sender got was a refusal
//! (written after an error). POST outcomes are counted by the phase they were made in.

use std::{
    collections::HashMap,
    fmt::Write as _,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::{
    client::{authed, befriend, create_users, expect_ok, status_error, Api},
    memory::check_fd_limit,
    processes::{MariaDb, Server},
    report::Errors,
    schedule::Schedule,
    sse::{close_streams, open_streams, StreamCtx},
    tracker::{content_for, token_of},
    Args,
};

/// The fault cycle, repeated every minute (seconds into the cycle): steady until 20, the
/// database stopped at 20 and started again at 30, one process killed at 40 and restarted
/// at 45.
const CYCLE: f64 = 60.0;
const DB_STOP_AT: f64 = 20.0;
const DB_START_AT: f64 = 30.0;
const KILL_AT: f64 = 40.0;
const RESTART_AT: f64 = 45.0;
/// Every this many messages, one is abandoned after its first error instead of retried.
const ABANDON_EVERY: u64 = 10;
/// How long a message is retried before the tool gives up on it.
const RETRY_FOR: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Steady,
    DbDown,
    DbBack,
    ProcessKilled,
    ProcessRestarted,
    /// After the last scheduled send: retries only.
    After,
}

const PHASES: [Phase; 6] = [
    Phase::Steady,
    Phase::DbDown,
    Phase::DbBack,
    Phase::ProcessKilled,
    Phase::ProcessRestarted,
    Phase::After,
];

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Steady => "steady",
            Phase::DbDown => "database down",
            Phase::DbBack => "database back",
            Phase::ProcessKilled => "process killed",
            Phase::ProcessRestarted => "process restarted",
            Phase::After => "after sending",
        }
    }
}

/// Which phase the run is in, and since when each began.
struct Clock {
    current: AtomicUsize,
    changes: Mutex<Vec<(Phase, Instant)>>,
}

impl Clock {
    fn new(at: Instant) -> Self {
        Self {
            current: AtomicUsize::new(0),
            changes: Mutex::new(vec![(Phase::Steady, at)]),
        }
    }

    fn set(&self, phase: Phase) {
        let i = PHASES.iter().position(|p| *p == phase).unwrap_or(0);
        self.current.store(i, Ordering::Release);
        self.changes.lock().unwrap().push((phase, Instant::now()));
        eprintln!("  phase: {}", phase.name());
    }

    fn now(&self) -> Phase {
        PHASES[self.current.load(Ordering::Acquire)]
    }

    /// Seconds spent in each phase up to `end`.
    fn seconds(&self, end: Instant) -> [f64; PHASES.len()] {
        let changes = self.changes.lock().unwrap();
        let mut secs = [0.0; PHASES.len()];
        for (i, (phase, from)) in changes.iter().enumerate() {
            let to = changes.get(i + 1).map_or(end, |c| c.1);
            secs[index(*phase)] += to.saturating_duration_since(*from).as_secs_f64();
        }
        secs
    }
}

fn index(phase: Phase) -> usize {
    PHASES.iter().position(|p| *p == phase).unwrap_or(0)
}

/// What one POST of a message got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// 201: stored now.
    Created,
    /// 200: stored already (by an earlier attempt with the same key).
    Repeat,
    /// A definite refusal (4xx, 503): the server promises it is not and never will be written.
    Refused(u16),
    /// Another 5xx: the outcome is unknown (a failed `COMMIT`); a retry settles it.
    ServerError(u16),
    /// No answer (a killed process, a reset connection, a timeout): unknown too.
    NoAnswer,
}

impl Outcome {
    fn acked(self) -> bool {
        matches!(self, Outcome::Created | Outcome::Repeat)
    }
    /// Worth another try with the same key (a 4xx other than 408 and 429 would be refused again).
    fn retriable(self) -> bool {
        match self {
            Outcome::Refused(code) => matches!(code, 408 | 429 | 503),
            Outcome::ServerError(_) | Outcome::NoAnswer => true,
            Outcome::Created | Outcome::Repeat => false,
        }
    }
}

/// POSTs of one phase, by outcome.
#[derive(Default)]
struct PostCounts {
    created: AtomicU64,
    repeats: AtomicU64,
    unavailable: AtomicU64,
    other_5xx: AtomicU64,
    client_4xx: AtomicU64,
    no_answer: AtomicU64,
}

impl PostCounts {
    fn add(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Created => &self.created,
            Outcome::Repeat => &self.repeats,
            Outcome::Refused(503) => &self.unavailable,
            Outcome::Refused(_) => &self.client_4xx,
            Outcome::ServerError(_) => &self.other_5xx,
            Outcome::NoAnswer => &self.no_answer,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> [u64; 6] {
        [
            &self.created,
            &self.repeats,
            &self.unavailable,
            &self.other_5xx,
            &self.client_4xx,
            &self.no_answer,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// Where message `n` goes.
#[derive(Clone, Copy)]
enum Target {
    Direct(usize),
    /// Index into `Plan::groups`.
    Group(usize),
}

/// Who talks to whom: users `2k` and `2k+1` are friends; users `4g..4g+3` are a group
/// chat (created by `4g`, who is also friends with `4g+2` and `4g+3`).
struct Plan {
    pairs: usize,
    /// Each group's id and members.
    groups: Vec<(i64, [usize; 4])>,
}

impl Plan {
    fn conversations(&self) -> u64 {
        (self.pairs + self.groups.len()) as u64
    }

    /// The sender and conversation of message `n`: every conversation in turn, and each
    /// member of a conversation in turn.
    fn message(&self, n: u64) -> (usize, Target) {
        let c = (n % self.conversations()) as usize;
        let round = (n / self.conversations()) as usize;
        if c < self.pairs {
            let sender = 2 * c + round % 2;
            (sender, Target::Direct(sender ^ 1))
        } else {
            let g = c - self.pairs;
            (self.groups[g].1[round % 4], Target::Group(g))
        }
    }

    /// Every user message `n` is for, the sender included (it gets a copy).
    fn users_of(&self, n: u64) -> Vec<usize> {
        match self.message(n) {
            (sender, Target::Direct(to)) => vec![sender, to],
            (_, Target::Group(g)) => self.groups[g].1.to_vec(),
        }
    }
}

/// Every POST of one message, in order.
struct Sent {
    phase: Phase,
    outcomes: Vec<Outcome>,
    /// Each attempt's process and phase, and the error if it failed.
    notes: Vec<String>,
}

/// What the whole run shares.
struct Soak {
    run: String,
    password: String,
    pad: usize,
    /// The two processes' APIs: message `n`'s k-th attempt goes to `apis[(n + k) % 2]`.
    apis: [Api; 2],
    plan: Plan,
    streams: Arc<StreamCtx>,
    per_user: Vec<usize>,
    clock: Clock,
    posts: [PostCounts; PHASES.len()],
    errors: Errors,
    sent: Mutex<HashMap<u64, Sent>>,
    retries: Mutex<Vec<JoinHandle<()>>>,
}

/// A transport error without the request's URL, so that errors of one kind count as one.
fn without_url(e: &str) -> String {
    match e.find(" for url (") {
        Some(i) => match e[i..].find(')') {
            Some(j) => format!("{}{}", &e[..i], &e[i + j + 1..]),
            None => e.to_string(),
        },
        None => e.to_string(),
    }
}

fn client_key(run: &str, n: u64) -> String {
    format!("soak-{run}-{n}")
}

impl Soak {
    /// Sends message `n` once (its `k`-th attempt) and counts the outcome.
    async fn attempt(&self, n: u64, k: u64) -> Outcome {
        let api = &self.apis[((n + k) % 2) as usize];
        let phase = self.clock.now();
        let (sender, target) = self.plan.message(n);
        let from = &self.streams.users[sender];
        let group = match target {
            Target::Group(g) => Some(self.plan.groups[g].0),
            Target::Direct(_) => None,
        };
        let body = json!({
            "content": content_for(&self.run, n, self.pad),
            "group_chat_id": group,
            "client_key": client_key(&self.run, n),
        });
        let result = authed(api, &self.password, from, |t| {
            let mut req = api.client.post(api.url("/api/messages/"));
            if let Target::Direct(to) = target {
                req = req.query(&[("addressee_username", &self.streams.users[to].username)]);
            }
            req.bearer_auth(t).json(&body)
        })
        .await;
        let (outcome, problem) = match result {
            Ok(resp) => match resp.status() {
                StatusCode::CREATED | StatusCode::OK => {
                    let created = resp.status() == StatusCode::CREATED;
                    // Read the body so the connection goes back to the pool.
                    let _ = resp.bytes().await;
                    let outcome = if created {
                        Outcome::Created
                    } else {
                        Outcome::Repeat
                    };
                    (outcome, None)
                }
                status => {
                    let code = status.as_u16();
                    let outcome = if status.is_server_error() && code != 503 {
                        Outcome::ServerError(code)
                    } else {
                        Outcome::Refused(code)
                    };
                    (outcome, Some(status_error(resp).await))
                }
            },
            Err(e) => (
                Outcome::NoAnswer,
                Some(format!("no answer: {}", without_url(&e))),
            ),
        };
        self.posts[index(phase)].add(outcome);
        let process = if api.base == self.apis[0].base {
            "a"
        } else {
            "b"
        };
        if let Some(problem) = &problem {
            self.errors
                .add(format!("{} (process {process}): {problem}", phase.name()));
        }
        if let Some(sent) = self.sent.lock().unwrap().get_mut(&n) {
            sent.outcomes.push(outcome);
            sent.notes.push(format!(
                "{} on {process}: {}",
                phase.name(),
                problem
                    .as_deref()
                    .unwrap_or(if outcome == Outcome::Created {
                        "201"
                    } else {
                        "200"
                    })
            ));
        }
        outcome
    }

    /// Retries message `n` with its key until it is acknowledged or refused for good.
    async fn retry(self: Arc<Self>, n: u64) {
        let started = Instant::now();
        for k in 1.. {
            let backoff = Duration::from_millis(250 * (1 << (k - 1).min(3)));
            tokio::time::sleep(backoff).await;
            let outcome = self.attempt(n, k).await;
            if outcome.acked() {
                self.streams.tracker.posted(n, true);
                return;
            }
            if !outcome.retriable() || started.elapsed() > RETRY_FOR {
                return;
            }
        }
    }
}

pub async fn run(args: &Args, run: &str) -> Result<bool> {
    let users = args.users;
    if users < 4 || !users.is_multiple_of(4) {
        bail!("--soak needs --users to be a multiple of 4 (pairs and groups of four)");
    }
    let total_streams = args.streams.unwrap_or(users);
    if total_streams < users {
        bail!("--streams ({total_streams}) must be at least --users ({users})");
    }
    if args.rate <= 0.0 || args.minutes <= 0.0 {
        bail!("--soak needs --rate > 0 and --minutes > 0");
    }
    if !args.server_bin.is_file() {
        bail!(
            "--server-bin {}: no such file (build it with `cargo build --release`)",
            args.server_bin.display()
        );
    }
    check_fd_limit(total_streams + args.concurrency + 256);
    let dir = args
        .soak_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("loadtest-soak-{run}")));
    let dir = std::path::absolute(&dir).unwrap_or(dir);

    eprintln!(
        "starting MariaDB on 127.0.0.1:{} (data in {})...",
        args.db_port,
        dir.display()
    );
    let mut db = MariaDb::create(dir.clone(), args.db_port, args.keep_soak_dir).await?;
    let secret = format!("soak-{}", uuid::Uuid::new_v4().simple());
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", db.url().as_str()),
        ("JWT_SECRET", secret.as_str()),
        ("RUST_LOG", "warn"),
        ("SENDS_PER_MINUTE", "1000000"),
        ("SIGNUPS_PER_HOUR", "1000000"),
        ("LOGIN_ATTEMPTS_PER_MINUTE", "1000000"),
        ("FRIEND_REQUESTS_PER_HOUR", "1000000"),
        // Sign-up is setup here, not measured.
        ("ARGON2_MEMORY_KIB", "1024"),
        ("ARGON2_ITERATIONS", "1"),
        ("ARGON2_PARALLELISM", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let [port_a, port_b] = args.server_ports[..] else {
        bail!("--server-ports takes two ports");
    };
    let health = crate::client::http_client(4, Some(Duration::from_secs(2)))?;
    let mut servers = [
        Server::new("a", &args.server_bin, port_a, env.clone(), &dir),
        Server::new("b", &args.server_bin, port_b, env, &dir),
    ];
    eprintln!("starting two servers ({})...", args.server_bin.display());
    servers[0].start(true, &health).await?;
    servers[1].start(false, &health).await?;

    let result = soak(args, run, &mut db, &mut servers, &health).await;
    for s in &mut servers {
        let _ = s.stop().await;
    }
    let _ = db.stop().await;
    match result {
        Ok(ok) => {
            if ok && !args.keep_soak_dir {
                db.keep = false;
            } else {
                db.keep = true;
                eprintln!("logs and data kept in {}", dir.display());
            }
            Ok(ok)
        }
        Err(e) => {
            db.keep = true;
            eprintln!("logs and data kept in {}", dir.display());
            Err(e)
        }
    }
}

async fn soak(
    args: &Args,
    run: &str,
    db: &mut MariaDb,
    servers: &mut [Server; 2],
    health: &reqwest::Client,
) -> Result<bool> {
    let timeout = Duration::from_secs_f64(args.request_timeout);
    let post_client = crate::client::http_client(args.concurrency.max(16) + 64, Some(timeout))?;
    let stream_client = crate::client::stream_client()?;
    let apis = [
        Api::new(post_client.clone(), &servers[0].base()),
        Api::new(post_client, &servers[1].base()),
    ];

    // Users, friendships, groups.
    let users = create_users(
        &apis[0],
        run,
        args.users,
        &args.password,
        args.signup_concurrency,
    )
    .await?;
    let groups = args.users / 4;
    let mut friendships: Vec<(usize, usize)> =
        (0..args.users / 2).map(|k| (2 * k, 2 * k + 1)).collect();
    for g in 0..groups {
        friendships.extend([(4 * g, 4 * g + 2), (4 * g, 4 * g + 3)]);
    }
    befriend(&apis[0], &args.password, &users, &friendships).await?;
    eprintln!("making {groups} group chats...");
    let mut plan = Plan {
        pairs: args.users / 2,
        groups: Vec::new(),
    };
    for g in 0..groups {
        let members = [4 * g, 4 * g + 1, 4 * g + 2, 4 * g + 3];
        let names: Vec<&str> = members[1..]
            .iter()
            .map(|&m| users[m].username.as_str())
            .collect();
        let api = &apis[0];
        let body = json!({ "group_chat_name": format!("soak {run} {g}"), "usernames": names });
        let resp = authed(api, &args.password, &users[members[0]], |t| {
            api.client
                .post(api.url("/api/group_chats/"))
                .bearer_auth(t)
                .json(&body)
        })
        .await
        .map_err(|e| anyhow!("POST /api/group_chats/: {e}"))?;
        #[derive(Deserialize)]
        struct Created {
            group_chat_id: i64,
        }
        let created: Created = expect_ok(resp, "POST /api/group_chats/")
            .await?
            .json()
            .await
            .context("group chat response")?;
        plan.groups.push((created.group_chat_id, members));
    }

    // Streams: user `u` on process `u % 2`, so that most deliveries cross processes.
    let mut ctx = StreamCtx::new(
        run,
        &args.password,
        &Api::new(stream_client.clone(), &servers[0].base()),
        &apis[0],
        users,
    );
    ctx.stream_apis
        .push(Api::new(stream_client, &servers[1].base()));
    ctx.own_copies_tracked = true;
    let ctx = Arc::new(ctx);
    let streams = open_streams(&ctx, total_streams(args), args.connect_concurrency).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let schedule = Arc::new(Schedule::new(args.rate, args.minutes * 60.0));
    let soak = Arc::new(Soak {
        run: run.to_string(),
        password: args.password.clone(),
        pad: args.message_chars,
        apis,
        plan,
        per_user: streams.per_user.clone(),
        streams: ctx.clone(),
        clock: Clock::new(schedule.start),
        posts: Default::default(),
        errors: Errors::default(),
        sent: Mutex::new(HashMap::new()),
        retries: Mutex::new(Vec::new()),
    });
    eprintln!(
        "sending for {} min at {} msg/s over {} connections; faults every minute: database stopped at {DB_STOP_AT} s, started at {DB_START_AT} s, a process killed at {KILL_AT} s, restarted at {RESTART_AT} s",
        args.minutes, args.rate, args.concurrency
    );

    let chaos = {
        let soak = soak.clone();
        let end = schedule.start + Duration::from_secs_f64(args.minutes * 60.0);
        let start = schedule.start;
        let (db, servers) = (&mut *db, &mut *servers);
        async move { faults(&soak, db, servers, health, start, end).await }
    };
    let senders = {
        let mut tasks = Vec::new();
        for _ in 0..args.concurrency.max(1) {
            let (soak, schedule) = (soak.clone(), schedule.clone());
            tasks.push(tokio::spawn(async move {
                while let Some(n) = schedule.next().await {
                    send(&soak, n).await;
                }
            }));
        }
        async move {
            for t in tasks {
                t.await?;
            }
            Ok::<_, anyhow::Error>(())
        }
    };
    let (faults_run, sending) = tokio::join!(chaos, senders);
    sending?;
    soak.clock.set(Phase::After);
    let faults_run = faults_run?;

    eprintln!("waiting for retries...");
    loop {
        let pending: Vec<JoinHandle<()>> = std::mem::take(&mut *soak.retries.lock().unwrap());
        if pending.is_empty() {
            break;
        }
        for t in pending {
            t.await?;
        }
    }

    let retries_end = Instant::now();

    // The database's view: every message of this run.
    let rows = db
        .sql(&format!(
            "SELECT m.content, COALESCE(su.username, ''), COALESCE(ru.username, ''), \
             COALESCE(m.group_chat_id, 0), COALESCE(m.client_key, '') \
             FROM messenger.message m \
             LEFT JOIN messenger.user su ON su.user_id = m.sender_id \
             LEFT JOIN messenger.user ru ON ru.user_id = m.reciever_id \
             WHERE m.content LIKE 'lt:{run}:%'"
        ))
        .await
        .context("reading the stored messages")?;
    let mut stored: HashMap<u64, u32> = HashMap::new();
    let mut stored_wrong = 0u64;
    let mut stored_unknown = 0u64;
    for row in rows.lines().filter(|l| !l.is_empty()) {
        let cols: Vec<&str> = row.split('\t').collect();
        let Some(n) = cols.first().and_then(|c| token_of(c, run)) else {
            stored_unknown += 1;
            continue;
        };
        *stored.entry(n).or_default() += 1;
        if !soak.stored_right(n, &cols) {
            stored_wrong += 1;
        }
    }
    // A message stored without an acknowledgement (its answer was lost with a killed
    // process, or was a 500) must reach its streams all the same.
    for &n in stored.keys() {
        soak.streams.tracker.posted(n, true);
    }
    let drain_start = Instant::now();
    let drain = Duration::from_secs_f64(args.grace);
    while ctx.tracker.outstanding() > 0 && drain_start.elapsed() < drain {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = drain_start.elapsed().as_secs_f64();
    let stream_stats = (ctx.stats.json(), ctx.stats.text(), ctx.first_error());
    close_streams(&ctx, streams).await;

    let (verdicts, examples) = soak.judge(&stored);
    let report = Report {
        args,
        run,
        soak: &soak,
        verdicts,
        examples,
        stored_rows: stored.values().map(|&c| u64::from(c)).sum(),
        stored_wrong,
        stored_unknown,
        phase_secs: soak.clock.seconds(retries_end),
        faults: faults_run,
        drained,
        stream_stats,
        db_dir: db.dir().to_path_buf(),
    };
    let ok = report.ok();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.text());
    }
    Ok(ok)
}

fn total_streams(args: &Args) -> usize {
    args.streams.unwrap_or(args.users)
}

/// Sends scheduled message `n`: registers it, posts it once, and hands it to a retry
/// task when that failed (unless it is one of those abandoned after an error).
async fn send(soak: &Arc<Soak>, n: u64) {
    let users: Vec<(usize, usize)> = soak
        .plan
        .users_of(n)
        .into_iter()
        .map(|u| (u, soak.per_user[u]))
        .collect();
    soak.streams.tracker.register_for(n, &users, Instant::now());
    soak.sent.lock().unwrap().insert(
        n,
        Sent {
            phase: soak.clock.now(),
            outcomes: Vec::new(),
            notes: Vec::new(),
        },
    );
    let outcome = soak.attempt(n, 0).await;
    if outcome.acked() {
        soak.streams.tracker.posted(n, true);
        return;
    }
    soak.streams.tracker.posted(n, false);
    if outcome.retriable() && n % ABANDON_EVERY != ABANDON_EVERY - 1 {
        let task = tokio::spawn(soak.clone().retry(n));
        soak.retries.lock().unwrap().push(task);
    }
}

/// What the fault controller did.
#[derive(Default)]
struct Faults {
    db_stops: u32,
    kills: [u32; 2],
    /// Longest time from SIGTERM to the database answering again.
    db_down_max: f64,
    /// Longest time from `kill -9` to the process answering `/health` again.
    process_down_max: f64,
}

/// Stops and starts the database and kills and restarts one process (alternately `b`
/// and `a`) every minute until `end`; leaves everything running.
async fn faults(
    soak: &Soak,
    db: &mut MariaDb,
    servers: &mut [Server; 2],
    health: &reqwest::Client,
    start: Instant,
    end: Instant,
) -> Result<Faults> {
    let mut done = Faults::default();
    let at =
        |cycle: u32, secs: f64| start + Duration::from_secs_f64(f64::from(cycle) * CYCLE + secs);
    let result: Result<()> = async {
        for cycle in 0u32.. {
            let victim = ((cycle + 1) % 2) as usize;
            if at(cycle, DB_STOP_AT) >= end {
                break;
            }
            tokio::time::sleep_until(at(cycle, DB_STOP_AT).into()).await;
            soak.clock.set(Phase::DbDown);
            let stopped = Instant::now();
            db.stop().await?;
            done.db_stops += 1;
            tokio::time::sleep_until(at(cycle, DB_START_AT).max(Instant::now()).into()).await;
            db.start().await?;
            done.db_down_max = done.db_down_max.max(stopped.elapsed().as_secs_f64());
            soak.clock.set(Phase::DbBack);
            if at(cycle, KILL_AT) >= end {
                break;
            }
            tokio::time::sleep_until(at(cycle, KILL_AT).into()).await;
            soak.clock.set(Phase::ProcessKilled);
            let killed = Instant::now();
            servers[victim].kill9().await?;
            done.kills[victim] += 1;
            tokio::time::sleep_until(at(cycle, RESTART_AT).max(Instant::now()).into()).await;
            servers[victim].start(false, health).await?;
            done.process_down_max = done.process_down_max.max(killed.elapsed().as_secs_f64());
            soak.clock.set(Phase::ProcessRestarted);
            if at(cycle + 1, 0.0) >= end {
                break;
            }
            tokio::time::sleep_until(at(cycle + 1, 0.0).into()).await;
            soak.clock.set(Phase::Steady);
        }
        Ok(())
    }
    .await;
    result?;
    Ok(done)
}

/// One message's fate.
#[derive(Default, Clone, Copy)]
struct Verdict {
    scheduled: u64,
    acked: u64,
    /// Acknowledged after an error, by a retry with the same key.
    acked_on_retry: u64,
    /// Abandoned after a first error (never retried).
    abandoned: u64,
    /// Retried until `RETRY_FOR` passed (or refused for good) without an acknowledgement.
    gave_up: u64,
    /// Stored though no POST of it was acknowledged (an answer lost or a 500).
    stored_unacked: u64,
    lost: u64,
    lost_unstored: u64,
    lost_undelivered: u64,
    duplicated: u64,
    stored_twice: u64,
    misrouted: u64,
    written_after_error: u64,
    /// On a stream but not in the database.
    phantom: u64,
    deliveries_expected: u64,
    deliveries_received: u64,
}

impl Verdict {
    fn add(&mut self, o: &Verdict) {
        macro_rules! sum {
            ($($f:ident),*) => { $(self.$f += o.$f;)* };
        }
        sum!(
            scheduled,
            acked,
            acked_on_retry,
            abandoned,
            gave_up,
            stored_unacked,
            lost,
            lost_unstored,
            lost_undelivered,
            duplicated,
            stored_twice,
            misrouted,
            written_after_error,
            phantom,
            deliveries_expected,
            deliveries_received
        );
    }
}

impl Soak {
    /// Whether a stored row of message `n` (content, sender, recipient, group, key) is
    /// where it was sent.
    fn stored_right(&self, n: u64, cols: &[&str]) -> bool {
        let (sender, target) = self.plan.message(n);
        let users = &self.streams.users;
        let (to, group) = match target {
            Target::Direct(to) => (users[to].username.clone(), "0".to_string()),
            Target::Group(g) => (String::new(), self.plan.groups[g].0.to_string()),
        };
        cols.len() == 5
            && cols[1] == users[sender].username
            && cols[2] == to
            && cols[3] == group
            && cols[4] == client_key(&self.run, n)
    }

    /// Judges every scheduled message, summed by the phase of its first send; with a few
    /// examples of each kind of message worth a look.
    fn judge(&self, stored: &HashMap<u64, u32>) -> ([Verdict; PHASES.len()], Vec<String>) {
        let mut by_phase = [Verdict::default(); PHASES.len()];
        let mut examples: Vec<String> = Vec::new();
        let mut shown: HashMap<&'static str, usize> = HashMap::new();
        let sent = self.sent.lock().unwrap();
        let mut numbers: Vec<u64> = sent.keys().copied().collect();
        numbers.sort_unstable();
        for n in numbers {
            let s = &sent[&n];
            let before = by_phase[index(s.phase)];
            let v = &mut by_phase[index(s.phase)];
            v.scheduled += 1;
            let copies = u64::from(stored.get(&n).copied().unwrap_or(0));
            let first_ack = s.outcomes.iter().position(|o| o.acked());
            let acked = first_ack.is_some();
            if acked {
                v.acked += 1;
                if first_ack != Some(0) {
                    v.acked_on_retry += 1;
                }
            } else if copies > 0 {
                v.stored_unacked += 1;
            }
            let first_failed = s.outcomes.first().is_some_and(|o| !o.acked());
            let abandoned = first_failed && s.outcomes.len() == 1 && !acked;
            if abandoned && n % ABANDON_EVERY == ABANDON_EVERY - 1 {
                v.abandoned += 1;
            } else if !acked {
                v.gave_up += 1;
            }
            // Written though every answer before it (or every answer) was a refusal.
            let refused = |o: &[Outcome]| o.iter().all(|o| matches!(o, Outcome::Refused(_)));
            let written_after_error = match first_ack {
                Some(i) => s.outcomes[i] == Outcome::Repeat && refused(&s.outcomes[..i]),
                None => copies > 0 && refused(&s.outcomes),
            };
            v.written_after_error += u64::from(written_after_error);
            let d = self.streams.tracker.deliveries(n).unwrap_or_default();
            v.misrouted += d.misrouted;
            if copies > 1 || d.duplicated > 0 {
                v.duplicated += 1;
            }
            v.stored_twice += u64::from(copies > 1);
            if copies == 0 && d.received > 0 {
                v.phantom += 1;
            }
            if acked || copies > 0 {
                v.deliveries_expected += d.expected;
                v.deliveries_received += d.received;
                let unstored = copies == 0;
                let undelivered = d.received < d.expected;
                v.lost_unstored += u64::from(unstored);
                v.lost_undelivered += u64::from(undelivered);
                v.lost += u64::from(unstored || undelivered);
            }
            let kinds = [
                ("lost", v.lost > before.lost),
                ("duplicated", v.duplicated > before.duplicated),
                ("misrouted", v.misrouted > before.misrouted),
                (
                    "written after an error",
                    v.written_after_error > before.written_after_error,
                ),
                ("delivered but not stored", v.phantom > before.phantom),
                ("never acknowledged", v.gave_up > before.gave_up),
                (
                    "stored without an acknowledgement",
                    v.stored_unacked > before.stored_unacked,
                ),
            ];
            for (kind, _) in kinds.iter().filter(|k| k.1) {
                let count = shown.entry(kind).or_default();
                *count += 1;
                if *count <= 5 {
                    examples.push(format!(
                        "{kind}: message {n} (stored {copies}x, streams {}/{} got it, {} twice): {}",
                        d.received,
                        d.expected,
                        d.duplicated,
                        s.notes.join("; ")
                    ));
                }
            }
        }
        (by_phase, examples)
    }
}

struct Report<'a> {
    args: &'a Args,
    run: &'a str,
    soak: &'a Soak,
    verdicts: [Verdict; PHASES.len()],
    /// A few messages of each kind worth a look, with what each POST of them got.
    examples: Vec<String>,
    stored_rows: u64,
    stored_wrong: u64,
    stored_unknown: u64,
    phase_secs: [f64; PHASES.len()],
    faults: Faults,
    drained: f64,
    stream_stats: (Value, String, Option<String>),
    db_dir: PathBuf,
}

impl Report<'_> {
    fn total(&self) -> Verdict {
        let mut t = Verdict::default();
        for v in &self.verdicts {
            t.add(v);
        }
        t
    }

    /// Non-503 5xx answers while the database was down (or coming back).
    fn posts(&self, phase: Phase) -> [u64; 6] {
        self.soak.posts[index(phase)].get()
    }

    fn other_5xx(&self) -> u64 {
        PHASES.iter().map(|&p| self.posts(p)[3]).sum()
    }

    fn ok(&self) -> bool {
        let t = self.total();
        t.lost == 0
            && t.duplicated == 0
            && t.misrouted == 0
            && t.written_after_error == 0
            && t.phantom == 0
            && t.gave_up == 0
            && self.stored_wrong == 0
            && self.stored_unknown == 0
            && self.soak.streams.tracker.unknown_count() == 0
            && self.other_5xx() == 0
    }

    fn json(&self) -> Value {
        let phase = |p: Phase| {
            let v = &self.verdicts[index(p)];
            let [created, repeats, unavailable, other_5xx, client_4xx, no_answer] = self.posts(p);
            json!({
                "phase": p.name(),
                "seconds": self.phase_secs[index(p)],
                "posts": { "201": created, "200_repeat": repeats, "503": unavailable,
                           "other_5xx": other_5xx, "4xx": client_4xx, "no_answer": no_answer },
                "messages": verdict_json(v),
            })
        };
        let t = self.total();
        json!({
            "mode": "soak",
            "ok": self.ok(),
            "run_id": self.run,
            "servers": [self.soak.apis[0].base, self.soak.apis[1].base],
            "db_port": self.args.db_port,
            "users": self.args.users,
            "pairs": self.soak.plan.pairs,
            "groups": self.soak.plan.groups.len(),
            "streams": total_streams(self.args),
            "target_rate": self.args.rate,
            "minutes": self.args.minutes,
            "concurrency": self.args.concurrency,
            "faults": {
                "db_stops": self.faults.db_stops,
                "kills_a": self.faults.kills[0],
                "kills_b": self.faults.kills[1],
                "db_down_max_s": self.faults.db_down_max,
                "process_down_max_s": self.faults.process_down_max,
            },
            "phases": PHASES.iter().map(|&p| phase(p)).collect::<Vec<_>>(),
            "total": verdict_json(&t),
            "stored_rows": self.stored_rows,
            "stored_in_wrong_conversation": self.stored_wrong,
            "stored_unreadable": self.stored_unknown,
            "unknown_message_events": self.soak.streams.tracker.unknown_count(),
            "drain_seconds": self.drained,
            "errors": self.soak.errors.json(),
            "examples": self.examples,
            "stream_stats": self.stream_stats.0,
            "first_stream_problem": self.stream_stats.2,
        })
    }

    fn text(&self) -> String {
        let mut out = String::new();
        let a = self.args;
        let t = self.total();
        let f = &self.faults;
        let _ = writeln!(out, "== loadtest soak (run {}) ==", self.run);
        let _ = writeln!(
            out,
            "servers          a {}, b {}, one MariaDB on 127.0.0.1:{} (data in {})",
            self.soak.apis[0].base,
            self.soak.apis[1].base,
            a.db_port,
            self.db_dir.display()
        );
        let _ = writeln!(
            out,
            "setup            {} users ({} pairs, {} groups of 4), {} streams (user u on process u % 2), target {} msg/s for {} min, {} connections",
            a.users,
            self.soak.plan.pairs,
            self.soak.plan.groups.len(),
            total_streams(a),
            a.rate,
            a.minutes,
            a.concurrency
        );
        let _ = writeln!(
            out,
            "faults           database stopped (SIGTERM) and restarted {} times (longest down {:.1} s); kill -9 of a {} times, of b {} times, each restarted (longest down {:.1} s)",
            f.db_stops, f.db_down_max, f.kills[0], f.kills[1], f.process_down_max
        );
        let _ = writeln!(
            out,
            "messages         {} scheduled, {} acknowledged ({} only after a retry with the same key); {} abandoned after an error; {} stored without an acknowledgement; {} never acknowledged after retries",
            t.scheduled, t.acked, t.acked_on_retry, t.abandoned, t.stored_unacked, t.gave_up
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<18} {:>7} | {:>7} {:>6} {:>5} {:>5} {:>5} {:>5} {:>6} | {:>7} {:>5} {:>4} {:>9} {:>13}",
            "phase", "time", "POSTs", "201", "200", "503", "5xx", "4xx", "no ans", "msgs", "lost", "dup", "misrouted", "written-after"
        );
        let _ = writeln!(
            out,
            "{:<18} {:>7} | {:>7} {:>6} {:>5} {:>5} {:>5} {:>5} {:>6} | {:>7} {:>5} {:>4} {:>9} {:>13}",
            "", "", "", "", "", "", "other", "", "", "", "", "", "", "error"
        );
        let mut totals = [0u64; 6];
        for &p in &PHASES {
            let posts = self.posts(p);
            for (t, c) in totals.iter_mut().zip(posts) {
                *t += c;
            }
            let v = &self.verdicts[index(p)];
            let _ = writeln!(
                out,
                "{:<18} {:>6.1}s | {:>7} {:>6} {:>5} {:>5} {:>5} {:>5} {:>6} | {:>7} {:>5} {:>4} {:>9} {:>13}",
                p.name(),
                self.phase_secs[index(p)],
                posts.iter().sum::<u64>(),
                posts[0],
                posts[1],
                posts[2],
                posts[3],
                posts[4],
                posts[5],
                v.scheduled,
                v.lost,
                v.duplicated,
                v.misrouted,
                v.written_after_error
            );
        }
        let _ = writeln!(
            out,
            "{:<18} {:>6.1}s | {:>7} {:>6} {:>5} {:>5} {:>5} {:>5} {:>6} | {:>7} {:>5} {:>4} {:>9} {:>13}",
            "total",
            self.phase_secs.iter().sum::<f64>(),
            totals.iter().sum::<u64>(),
            totals[0],
            totals[1],
            totals[2],
            totals[3],
            totals[4],
            totals[5],
            t.scheduled,
            t.lost,
            t.duplicated,
            t.misrouted,
            t.written_after_error
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "lost             {} (not stored {}, missing on a stream {}); deliveries {}/{} on the sender's and recipients' streams (drain {:.2} s)",
            t.lost, t.lost_unstored, t.lost_undelivered, t.deliveries_received, t.deliveries_expected, self.drained
        );
        let _ = writeln!(
            out,
            "duplicated       {} (stored twice {}); misrouted {}; written after an error {}; delivered but not stored {}; unknown events {}",
            t.duplicated,
            t.stored_twice,
            t.misrouted,
            t.written_after_error,
            t.phantom,
            self.soak.streams.tracker.unknown_count()
        );
        let _ = writeln!(
            out,
            "database         {} rows of this run; {} in the wrong conversation or with the wrong key; {} unreadable",
            self.stored_rows, self.stored_wrong, self.stored_unknown
        );
        let _ = writeln!(out, "streams          {}", self.stream_stats.1);
        if let Some(e) = &self.stream_stats.2 {
            let _ = writeln!(out, "first stream problem: {e}");
        }
        if self.soak.errors.total() > 0 {
            let _ = writeln!(out, "POST errors      {}", self.soak.errors.text());
        }
        for e in &self.examples {
            let _ = writeln!(out, "example          {e}");
        }
        let _ = writeln!(
            out,
            "result           {}",
            if self.ok() { "OK" } else { "FAILED" }
        );
        out
    }
}

fn verdict_json(v: &Verdict) -> Value {
    json!({
        "scheduled": v.scheduled,
        "acknowledged": v.acked,
        "acknowledged_after_retry": v.acked_on_retry,
        "abandoned_after_error": v.abandoned,
        "never_acknowledged": v.gave_up,
        "stored_unacknowledged": v.stored_unacked,
        "lost": v.lost,
        "lost_not_stored": v.lost_unstored,
        "lost_not_delivered": v.lost_undelivered,
        "duplicated": v.duplicated,
        "stored_twice": v.stored_twice,
        "misrouted": v.misrouted,
        "written_after_error": v.written_after_error,
        "delivered_not_stored": v.phantom,
        "deliveries_expected": v.deliveries_expected,
        "deliveries_received": v.deliveries_received,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_conversation_and_member_takes_turns() {
        let plan = Plan {
            pairs: 2,
            groups: vec![(7, [0, 1, 2, 3])],
        };
        let firsts: Vec<(usize, bool)> = (0..9)
            .map(|n| match plan.message(n) {
                (s, Target::Direct(to)) => {
                    assert_eq!(to, s ^ 1);
                    (s, false)
                }
                (s, Target::Group(0)) => (s, true),
                (_, Target::Group(_)) => unreachable!(),
            })
            .collect();
        assert_eq!(
            firsts,
            [
                (0, false),
                (2, false),
                (0, true),
                (1, false),
                (3, false),
                (1, true),
                (0, false),
                (2, false),
                (2, true)
            ]
        );
        assert_eq!(plan.users_of(1), [2, 3]);
        assert_eq!(plan.users_of(2), [0, 1, 2, 3]);
    }

    #[test]
    fn transport_errors_group_without_their_url() {
        assert_eq!(
            without_url("error sending request for url (http://h/api/messages/?a=b): reset"),
            "error sending request: reset"
        );
        assert_eq!(without_url("connect error"), "connect error");
    }

    #[test]
    fn retriable_outcomes() {
        assert!(Outcome::Refused(503).retriable());
        assert!(Outcome::NoAnswer.retriable());
        assert!(Outcome::ServerError(500).retriable());
        assert!(!Outcome::Refused(422).retriable());
        assert!(!Outcome::Created.retriable());
    }
}
