//! Outbox benchmark: how long a tailer's poll takes when the `event` table is large, idle
//! and while events are written and old ones pruned at the same time.
//!
//! ```sh
//! cargo run --release --example outbox_bench -- --database "$TEST_MYSQL_URL"
//! cargo run --release --example outbox_bench -- --database sqlite --events 1000000
//! ```
//!
//! It seeds `--events` rows (10,000,000 by default; about 2.5 GB on MariaDB) already
//! delivered, as a busy day leaves them, then times the tailer's two steps, as
//! `EventHub::tail` runs them (`events::number_committed`, then `store::events::after`
//! until a short batch), every 50 ms:
//! 1. idle: nothing new, for `--idle-seconds`;
//! 2. busy: `--rate` new events a second written through the outbox, while a prune
//!    (`store::events::prune`, the function the processes run every minute) runs every
//!    `--prune-seconds` (10) and keeps the table at its seeded size, for `--busy-seconds`.
//!
//! With a MySQL URL it creates (and afterwards drops) a database of its own on that server.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::Parser;
use messenger::{
    db::Db,
    events::{number_committed, TAIL_BATCH},
    store::events::{self, NewEvent},
};

mod support;
use support::{exec, percentile, BenchDb};

#[derive(Parser)]
struct Options {
    /// `sqlite` (a temporary file) or a MySQL URL whose server the bench may create a
    /// database in.
    #[arg(long, default_value = "sqlite")]
    database: String,
    /// Rows in the table before the polls are timed.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// New events a second during the busy phase.
    #[arg(long, default_value_t = 3_000)]
    rate: u64,
    #[arg(long, default_value_t = 15)]
    idle_seconds: u64,
    #[arg(long, default_value_t = 60)]
    busy_seconds: u64,
    /// How often the busy phase prunes (0: never).
    #[arg(long, default_value_t = 10)]
    prune_seconds: u64,
    /// Keep the MySQL database afterwards.
    #[arg(long)]
    keep: bool,
}

const POLL_EVERY: Duration = Duration::from_millis(50);
/// A payload of the size a message event has (about 250 bytes of JSON).
const PAYLOAD_BYTES: usize = 250;

#[tokio::main]
async fn main() {
    let o = Options::parse();
    let bench = BenchDb::create(&o.database, "outbox_bench").await;
    let db = Db::connect(&bench.url, 8).await.expect("connect");
    db.migrate().await.expect("migrate");
    println!("database: {}", db.backend_name());

    let started = Instant::now();
    seed(&db, o.events).await;
    println!("seeded {} events in {:.0?}", o.events, started.elapsed());

    let cursor = events::max_position(&db).await.expect("max position");
    let (idle, cursor, _) = poll_for(&db, cursor, Duration::from_secs(o.idle_seconds)).await;
    report("idle (nothing new)", &idle);

    // Busy: a writer, one prune of the older half, and the polls.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_events(
        db.clone(),
        o.rate,
        stop.clone(),
        written.clone(),
    ));
    // The processes prune every minute; here every `--prune-seconds`, keeping the table at
    // its seeded size: each run deletes what the writer added since the last.
    let pruner = {
        let (db, stop) = (db.clone(), stop.clone());
        let (keep, prune_seconds) = (o.events as i64, o.prune_seconds);
        tokio::spawn(async move {
            let (mut pruned, mut longest) = (0, Duration::ZERO);
            if prune_seconds == 0 {
                return (0, longest);
            }
            let mut every = tokio::time::interval(Duration::from_secs(prune_seconds));
            every.tick().await;
            while !stop.load(Ordering::Relaxed) {
                every.tick().await;
                let started = Instant::now();
                let long_ago = messenger::db::now() - time::Duration::days(7);
                pruned += events::prune(&db, long_ago, keep).await.expect("prune");
                longest = longest.max(started.elapsed());
            }
            (pruned, longest)
        })
    };
    let (busy, _, read) = poll_for(&db, cursor, Duration::from_secs(o.busy_seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.expect("writer");
    report(
        &format!(
            "busy ({} events/s written, pruned to size every {} s)",
            o.rate, o.prune_seconds
        ),
        &busy,
    );
    println!(
        "  each write of {} events: p50 {:.2?} p99 {:.2?} max {:.2?}",
        (o.rate / 100).max(1),
        percentile(&writes, 0.5),
        percentile(&writes, 0.99),
        writes.last().copied().unwrap_or_default()
    );
    println!(
        "  events written {}, read by the polls {}",
        written.load(Ordering::Relaxed),
        read
    );
    let (pruned, longest) = pruner.await.expect("pruner");
    println!(
        "  pruned to the newest {}: {pruned} rows in all, the longest prune {longest:.1?}",
        o.events
    );

    db.close().await;
    bench.finish(o.keep).await;
}

/// `n` delivered events, created two hours ago, written by the database itself from a
/// table of digits (the same SQL on both backends): millions of rows in minutes.
async fn seed(db: &Db, n: u64) {
    let payload = format!(
        "{{\"message_id\":1,\"content\":\"{}\"}}",
        "x".repeat(PAYLOAD_BYTES - 30)
    );
    let created = (messenger::db::now() - time::Duration::hours(2))
        .format(&time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .expect("a date");
    exec(db, "CREATE TABLE digit (d INTEGER NOT NULL)").await;
    exec(
        db,
        "INSERT INTO digit VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)",
    )
    .await;
    let mysql = matches!(db, Db::MySql(_));
    let million =
        "SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 100000 * g.d AS n \
                   FROM digit a, digit b, digit c, digit e, digit f, digit g";
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(1_000_000);
        // On MySQL the position is `seq`; on SQLite it is `event_id` itself.
        let (columns, position) = if mysql {
            (
                "event_id, seq, ",
                format!("{done} + n + 1, {done} + n + 1, "),
            )
        } else {
            ("event_id, ", format!("{done} + n + 1, "))
        };
        exec(
            db,
            &format!(
                "INSERT INTO event ({columns}user_id, kind, payload, created_date_time) \
                 SELECT {position}1 + (n * 7919) % 10000, 'message', '{payload}', '{created}' \
                 FROM ({million}) m WHERE n < {chunk}"
            ),
        )
        .await;
        done += chunk;
    }
    if mysql {
        exec(
            db,
            &format!("UPDATE event_sequence SET last_seq = {n} WHERE id = 1"),
        )
        .await;
    }
    exec(db, "DROP TABLE digit").await;
}

/// Polls as a tailer does, every [`POLL_EVERY`], for `how_long`; each poll's duration,
/// the cursor reached and the events read.
async fn poll_for(db: &Db, mut cursor: i64, how_long: Duration) -> (Vec<Duration>, i64, u64) {
    let mut took = Vec::new();
    let mut read = 0u64;
    let end = Instant::now() + how_long;
    let mut every = tokio::time::interval(POLL_EVERY);
    while Instant::now() < end {
        every.tick().await;
        let started = Instant::now();
        number_committed(db).await.expect("numbering");
        loop {
            let batch = events::after(db, cursor, TAIL_BATCH)
                .await
                .expect("reading");
            read += batch.len() as u64;
            if let Some(last) = batch.last() {
                cursor = last.position;
            }
            if (batch.len() as i64) < TAIL_BATCH {
                break;
            }
        }
        took.push(started.elapsed());
    }
    took.sort();
    (took, cursor, read)
}

/// Writes `rate` events a second through the outbox, in a transaction every 10 ms, until
/// `stop`; each transaction's duration, sorted.
async fn write_events(
    db: Db,
    rate: u64,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
) -> Vec<Duration> {
    let per_batch = (rate / 100).max(1) as usize;
    let payload = serde_json::json!({ "message_id": 1, "content": "y".repeat(PAYLOAD_BYTES - 30) });
    let mut every = tokio::time::interval(Duration::from_millis(10));
    let mut user = 0;
    let mut took = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        every.tick().await;
        let batch: Vec<NewEvent> = (0..per_batch)
            .map(|_| {
                user = user % 10_000 + 1;
                NewEvent::new(user, "message", &payload)
            })
            .collect();
        let started = Instant::now();
        events::write(&db, &batch).await.expect("writing events");
        took.push(started.elapsed());
        written.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
    took.sort();
    took
}

fn report(phase: &str, sorted: &[Duration]) {
    println!(
        "poll, {phase}: n={} p50 {:.2?} p99 {:.2?} max {:.2?}",
        sorted.len(),
        percentile(sorted, 0.5),
        percentile(sorted, 0.99),
        sorted.last().copied().unwrap_or_default()
    );
}
