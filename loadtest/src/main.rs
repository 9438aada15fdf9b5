//! `loadtest`: drives a running messenger server over HTTP and reports throughput,
//! latency, delivery correctness and server memory. See `docs/loadtest.md`.
//!
//! Modes:
//! * default: pairs of users send each other direct messages at `--rate` for
//!   `--duration` seconds while every user holds event streams; each message carries a
//!   unique token, and its arrival on the recipient's streams is matched and timed.
//!   `--group`: the users are one group instead, and every message goes to all of them.
//! * `--idle-streams N`: opens N event streams over `--users` users and holds them.
//! * `--open-conversations`: times `GET /api/messages/?friend_username=X&limit=50`.
//! * `--soak`: starts its own MariaDB and two server processes, sends for `--minutes`
//!   while it stops and restarts the database and kills and restarts a process, and
//!   reports lost, duplicated and misrouted messages and the answers by phase.

mod client;
mod memory;
mod processes;
mod report;
mod scenarios;
mod schedule;
mod sse;
mod tracker;

use std::{path::PathBuf, time::Duration};

use anyhow::{anyhow, bail, Result};
use clap::{parser::ValueSource, CommandFactory as _, FromArgMatches as _, Parser};

use crate::client::{check_health, http_client, stream_client, Api};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "loadtest",
    about = "Load tool for the messenger server (HTTP only): message throughput and delivery latency, idle event streams, history reads",
    after_help = "With two --url values, event streams connect to the LAST one and messages are POSTed to the FIRST \
(cross-process delivery). Start the server with SIGNUPS_PER_HOUR=1000000 LOGIN_ATTEMPTS_PER_MINUTE=1000000. \
Exit status is non-zero when a message was lost, duplicated, misrouted or failed to post, or a stream failed to open. \
--soak starts its own MariaDB (--db-port) and two --server-bin processes (--server-ports) and needs no --url; \
its defaults differ: --users 40, --rate 150, --grace 30."
)]
pub struct Args {
    /// Base URL(s) of the server, e.g. http://127.0.0.1:8000. Two: POST to the first, stream from the last.
    #[arg(long = "url", required_unless_present = "soak", num_args = 1..=2, env = "LOADTEST_URL", value_delimiter = ',')]
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

    /// Messages mode: the --users users are one group (user 0 its creator and everyone's
    /// friend), members post in turn, and every message is expected on every member's
    /// streams.
    #[arg(long)]
    group: bool,

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

    /// Soak mode: two server processes on a MariaDB of the tool's own, sends for --minutes
    /// while the database is stopped and restarted and a process is killed (kill -9) and
    /// restarted every minute; reports lost, duplicated and misrouted messages by phase.
    #[arg(long)]
    soak: bool,

    /// Soak: minutes of sending (one fault cycle a minute).
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,

    /// Soak: the server binary to start twice.
    #[arg(long, default_value = "target/release/messenger")]
    server_bin: PathBuf,

    /// Soak: the two server processes' ports (on 127.0.0.1).
    #[arg(long, num_args = 2, value_delimiter = ',', default_values_t = [8101u16, 8102])]
    server_ports: Vec<u16>,

    /// Soak: the port of the tool's own MariaDB.
    #[arg(long, default_value_t = 3310)]
    db_port: u16,

    /// Soak: where the MariaDB data and the server logs go (must not exist; default
    /// $TMPDIR/loadtest-soak-{run}). Deleted after a passing run unless --keep-soak-dir.
    #[arg(long)]
    soak_dir: Option<PathBuf>,

    /// Soak: keep the data directory and logs after a passing run too.
    #[arg(long)]
    keep_soak_dir: bool,
}

impl Args {
    /// Parses the command line; `--soak` has defaults of its own for what the user left unset.
    fn parse_with_mode_defaults() -> Self {
        let matches = Self::command().get_matches();
        let mut args = Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let unset = |id: &str| matches.value_source(id) == Some(ValueSource::DefaultValue);
        if args.soak {
            if unset("users") {
                args.users = 40;
            }
            if unset("rate") {
                args.rate = 150.0;
            }
            if unset("grace") {
                args.grace = 30.0;
            }
        }
        args
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse_with_mode_defaults();
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
    if args.soak {
        eprintln!("run id {run}");
        return scenarios::soak::run(&args, &run).await;
    }
    let timeout = Duration::from_secs_f64(args.request_timeout);
    let post_client = http_client(args.concurrency.max(16) + 16, Some(timeout))?;
    let stream_client = stream_client()?;
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
        scenarios::idle::run(&args, &post_api, &stream_api, &run, n).await
    } else if args.open_conversations {
        scenarios::history::run(&args, &post_api, &run).await
    } else {
        scenarios::messages::run(&args, &post_api, &stream_api, &run).await
    }
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
