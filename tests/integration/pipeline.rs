//! The live pipeline's promise: an event, once committed, reaches every stream of its
//! user exactly once, in order, live or on resume, however late its transaction commits,
//! whenever the stream opens or resumes; replay ends explicitly (`reset` past its cap, a
//! `retry:` hint on a database error); and the page's composer never reuses a send's
//! idempotency key.
//!
//! Late commits are MySQL cases only: on SQLite a transaction that wrote takes the one
//! write lock until it ends, so nobody else can take an id meanwhile; ids become visible
//! in the order they were taken.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use fantoccini::Client;
use messenger::{
    db::Db,
    events::stream::REPLAY_CAP,
    store::events::{self as event_store, NewEvent},
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{both_backends, browser::Driver, helpers::*, integration_test};

// ---- helpers of this file -------------------------------------------------------------

/// A small deterministic generator for pauses and counts (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// Every event of `kinds` the stream brings before a marker written to `user_id`'s outbox
/// now: what has not come by the marker will not come (a stream delivers in position order).
async fn until_marker(
    app: &TestApp,
    user_id: i64,
    stream: &mut EventStream,
    kinds: &[&str],
) -> Vec<Sse> {
    write_events(app, user_id, "marker", 1, 0).await;
    stream.until(kinds, |e| e.event == "marker").await
}

/// Writes `n` events of `kind` for `user_id` straight into the outbox, 500 rows a statement.
async fn write_events(app: &TestApp, user_id: i64, kind: &'static str, n: usize, pad: usize) {
    let payload = json!({ "pad": "x".repeat(pad) });
    let all: Vec<NewEvent> = (0..n)
        .map(|_| NewEvent::new(user_id as i32, kind, &payload))
        .collect();
    for chunk in all.chunks(500) {
        event_store::write(&app.db, chunk).await.unwrap();
    }
    app.hub.wake();
}

/// Waits until this process has handed out every event up to `position`.
async fn wait_for_watermark(app: &TestApp, position: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.hub.watermark() < position {
        assert!(
            Instant::now() < deadline,
            "the tailer never reached {position}"
        );
        app.hub.wake();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw `GET /api/events` (any status), resuming after `last_id` when given.
async fn raw_stream(app: &TestApp, user: &ApiUser, last_id: Option<i64>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .get(app.url("/api/events"))
        .bearer_auth(&user.token);
    if let Some(id) = last_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    request.send().await.unwrap()
}

/// The whole body of a stream the server ends, or `None` if it has not ended by `wait`.
async fn read_to_end(mut response: reqwest::Response, wait: Duration) -> Option<String> {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(_) => return Some(text),
            Err(_) => return None,
        }
    }
}

/// Inserts an event row on an open MySQL connection or transaction.
async fn insert_event(conn: &mut sqlx::MySqlConnection, user_id: i64, kind: &str, n: &str) {
    sqlx::query(
        "INSERT INTO event (user_id, kind, payload, created_date_time) VALUES (?, ?, ?, NOW(6))",
    )
    .bind(user_id)
    .bind(kind)
    .bind(json!({ "n": n }).to_string())
    .execute(conn)
    .await
    .unwrap();
}

fn mysql_pool(app: &TestApp) -> &sqlx::MySqlPool {
    match &app.db {
        Db::MySql(pool) => pool,
        Db::Sqlite(_) => unreachable!("a MySQL case"),
    }
}

/// Sends `alice` → `carol` and returns how long until carol's stream had it.
async fn delivery_time(
    app: &TestApp,
    alice: &ApiUser,
    carol: &ApiUser,
    stream: &mut EventStream,
    text: &str,
) -> Duration {
    let sent = Instant::now();
    let r = app.send_dm(alice, carol, text).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let e = stream
        .next_of(&["message"], Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("{text:?} never reached carol"));
    assert_eq!(e.json()["content"], text);
    sent.elapsed()
}

const PROMPT: Duration = Duration::from_millis(1500);

/// An event row whose transaction stays open `hold` after taking its id: everybody
/// else's events go out meanwhile as usual; when it commits it reaches the open streams
/// live (on both processes) and a client that left before resumes with it; nobody gets
/// anything twice.
async fn an_event_committed_late_is_delivered_live_and_on_resume(hold: Duration) {
    let app = spawn_app(Backend::MySql).await;
    let other = spawn_app_on(app.database.clone(), &[]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    app.befriend(&alice, &carol).await;
    let mut bob_live = app.events(&bob, None).await;
    let mut bob_live_elsewhere = other.events(&bob, None).await;
    let mut bob_leaving = other.events(&bob, None).await;
    let mut carol_live = app.events(&carol, None).await;

    // A transaction takes an id for bob's event and stays open…
    let mut slow = mysql_pool(&app).begin().await.unwrap();
    insert_event(&mut slow, bob.id, "late", "late").await;
    let taken = Instant::now();
    // …while bob's later events go out at once, to a client that then leaves.
    let mut conn = mysql_pool(&app).acquire().await.unwrap();
    for n in ["1", "2", "3"] {
        insert_event(&mut conn, bob.id, "early", n).await;
    }
    drop(conn);
    app.hub.wake();
    let mut left_at = None;
    for n in ["1", "2", "3"] {
        let e = bob_leaving
            .next_of(&["early", "late"], PROMPT)
            .await
            .expect("bob's later events are not held back");
        assert_eq!(
            (e.event.as_str(), e.json()["n"].as_str()),
            ("early", Some(n))
        );
        left_at = e.id;
    }
    drop(bob_leaving);
    // Everybody else's events, all through the hold, arrive promptly.
    let mut k = 0;
    while taken.elapsed() + Duration::from_secs(1) < hold {
        let took = delivery_time(
            &app,
            &alice,
            &carol,
            &mut carol_live,
            &format!("while held {k}"),
        )
        .await;
        assert!(
            took < PROMPT,
            "a message took {took:?} while another transaction held an event id"
        );
        k += 1;
        tokio::time::sleep(Duration::from_secs(2).min(hold / 5)).await;
    }
    tokio::time::sleep(hold.saturating_sub(taken.elapsed())).await;
    slow.commit().await.unwrap();
    app.hub.wake();

    let mut late_id = None;
    for stream in [&mut bob_live, &mut bob_live_elsewhere] {
        let got = until_marker(&app, bob.id, stream, &["early", "late"]).await;
        let seen: Vec<_> = got
            .iter()
            .map(|e| (e.event.clone(), e.json()["n"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            seen,
            [
                ("early", "1"),
                ("early", "2"),
                ("early", "3"),
                ("late", "late")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string())),
            "each event once, the late one when it committed"
        );
        assert!(
            got.windows(2).all(|w| w[0].id < w[1].id),
            "positions increase"
        );
        assert!(
            got[3].id > left_at,
            "the late event comes after what the leaving client saw"
        );
        late_id = got[3].id;
    }
    // The client that left resumes from the last id it saw, on either process.
    for process in [&app, &other] {
        let mut resumed = process.events(&bob, left_at).await;
        let got = until_marker(process, bob.id, &mut resumed, &["early", "late"]).await;
        assert_eq!(got.len(), 1, "only the late event: {got:?}");
        assert_eq!((got[0].event.as_str(), got[0].id), ("late", late_id));
    }
}

integration_test! {
    #[needs(mysql)]
    async fn an_event_committed_10_s_late_is_delivered_live_and_on_resume() {
        an_event_committed_late_is_delivered_live_and_on_resume(Duration::from_secs(10)).await;
    }
}

integration_test! {
    #[needs(mysql)]
    async fn an_event_committed_60_s_late_is_delivered_live_and_on_resume() {
        an_event_committed_late_is_delivered_live_and_on_resume(Duration::from_secs(60)).await;
    }
}

integration_test! {
    /// An id held open and then rolled back delays nobody: the others' events arrive within a
    /// tick or so the whole time (the old design stalled everyone 3 s at such a gap).
    #[needs(mysql)]
    async fn an_id_held_open_then_rolled_back_delays_nobody() {
        let app = spawn_app(Backend::MySql).await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        app.befriend(&alice, &carol).await;
        app.befriend(&alice, &bob).await;
        let mut bob_live = app.events(&bob, None).await;
        let mut carol_live = app.events(&carol, None).await;
        let before = app.hub.watermark();
        let mut held = mysql_pool(&app).begin().await.unwrap();
        insert_event(&mut held, bob.id, "late", "rolled back").await;
        let mut slowest = Duration::ZERO;
        for k in 0..8 {
            slowest = slowest
                .max(delivery_time(&app, &alice, &carol, &mut carol_live, &format!("held {k}")).await);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        held.rollback().await.unwrap();
        for k in 0..3 {
            slowest = slowest
                .max(delivery_time(&app, &alice, &carol, &mut carol_live, &format!("after {k}")).await);
        }
        assert!(slowest < PROMPT, "slowest delivery {slowest:?}");
        app.send_dm(&alice, &bob, "for bob").await;
        let got = until_marker(&app, bob.id, &mut bob_live, &["late", "message"]).await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].json()["content"], "for bob");
        let mut resumed = app.events(&bob, Some(before)).await;
        let got = until_marker(&app, bob.id, &mut resumed, &["late", "message"]).await;
        assert_eq!(
            got.len(),
            1,
            "a rolled-back event is never replayed: {got:?}"
        );
    }
}

both_backends! {
    async fn hundreds_of_resumes_during_a_send_burst_get_every_message_exactly_once(app) {
        let other = spawn_app_on(app.database.clone(), &[]).await;
        let bob = app.user("bob").await;
        let senders = [app.user("alice").await, app.user("carol").await];
        for s in &senders {
            app.befriend(s, &bob).await;
        }
        const PER_SENDER: usize = 150;
        let start = app.hub.watermark();
        let done = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (i, s) in senders.iter().enumerate() {
            let base = if i == 0 { app.url("") } else { other.url("") };
            let (client, token) = (app.api.clone(), s.token.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(0x9e37_79b9 + i as u64);
                for n in 0..PER_SENDER {
                    let r = client.post(format!("{base}/api/messages/?addressee_username=bob")).bearer_auth(&token)
                        .json(&json!({ "content": format!("s{i} n{n}") })).send().await.unwrap();
                    assert_eq!(r.status(), StatusCode::CREATED);
                    tokio::time::sleep(rng.millis(0, 15)).await;
                }
            }));
        }
        let watcher = {
            let done = done.clone();
            tokio::spawn(async move {
                for t in tasks {
                    t.await.unwrap();
                }
                done.store(true, Ordering::SeqCst);
            })
        };
        // Reconnect after at most one event each time, alternating processes, resuming
        // from the last id seen.
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut last = Some(start);
        let mut got: Vec<String> = Vec::new();
        let mut reconnects = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while got.len() < 2 * PER_SENDER {
            assert!(Instant::now() < deadline, "only {} of {} messages after {reconnects} reconnects", got.len(), 2 * PER_SENDER);
            let process = if reconnects % 2 == 0 { &app } else { &other };
            let mut stream = process.events(&bob, last).await;
            reconnects += 1;
            if rng.below(4) > 0 {
                if let Some(e) = stream.next(rng.millis(1, 40)).await {
                    let id = e.id.expect("every event has an id");
                    assert!(last.is_none_or(|l| id > l), "id {id} after {last:?}: repeated or out of order");
                    last = Some(id);
                    if e.event == "message" {
                        got.push(e.json()["content"].as_str().unwrap().to_string());
                    }
                }
            }
            drop(stream);
        }
        watcher.await.unwrap();
        assert!(done.load(Ordering::SeqCst));
        assert!(reconnects >= 300, "{reconnects} reconnects");
        let mut per_sender: HashMap<String, Vec<usize>> = HashMap::new();
        for content in &got {
            let (s, n) = content.split_once(' ').unwrap();
            per_sender.entry(s.to_string()).or_default().push(n[1..].parse().unwrap());
        }
        for (s, ns) in per_sender {
            assert_eq!(ns, (0..PER_SENDER).collect::<Vec<_>>(), "{s}'s messages once each, in the order sent");
        }
        // Nothing more is on its way.
        let mut rest = app.events(&bob, last).await;
        assert!(until_marker(&app, bob.id, &mut rest, &["message"]).await.is_empty());
    }

    async fn a_replay_past_its_cap_ends_in_an_explicit_reset(app) {
        let bob = app.user("bob").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = app.hub.watermark();
        write_events(&app, bob.id, "bulk", REPLAY_CAP as usize, 0).await;
        wait_for_watermark(&app, before + REPLAY_CAP).await;
        // Exactly the cap: everything, in order, and no reset.
        let mut stream = app.events(&bob, Some(before)).await;
        let mut got = Vec::new();
        while got.len() < REPLAY_CAP as usize {
            got.push(stream.next_of(&["bulk", "reset"], Duration::from_secs(10)).await.expect("the whole replay"));
        }
        // The replay is over: a marker now comes live, and nothing (no reset) before it.
        assert!(until_marker(&app, bob.id, &mut stream, &["bulk", "reset"]).await.is_empty());
        assert!(got.iter().all(|e| e.event == "bulk"));
        assert!(got.windows(2).all(|w| w[0].id < w[1].id));
        drop(stream);
        // One more: a reset at once, with the position to go on from, then live events.
        write_events(&app, bob.id, "bulk", 1, 0).await;
        // The cap, the marker and this one.
        wait_for_watermark(&app, before + REPLAY_CAP + 2).await;
        let watermark = app.hub.watermark();
        let mut stream = app.events(&bob, Some(before)).await;
        let first = stream.next(Duration::from_secs(5)).await.expect("an answer");
        assert_eq!(first.event, "reset");
        assert_eq!(first.id, Some(watermark));
        write_events(&app, bob.id, "after", 1, 0).await;
        let next = stream.next(Duration::from_secs(5)).await.expect("live after the reset");
        assert_eq!(next.event, "after");
        assert!(next.id > first.id);
    }

    async fn a_database_error_during_replay_ends_the_stream_with_a_retry_hint_not_a_reset(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let mut stream = app.events(&bob, None).await;
        let start = app.hub.watermark();
        for n in 0..3 {
            app.send_dm(&alice, &bob, &format!("m{n}")).await;
        }
        assert_eq!(until_marker(&app, bob.id, &mut stream, &["message"]).await.len(), 3);
        drop(stream);
        let rename = |from: &str, to: &str| match app.backend {
            Backend::MySql => format!("RENAME TABLE {from} TO {to}"),
            Backend::Sqlite => format!("ALTER TABLE {from} RENAME TO {to}"),
        };
        let execute = |sql: String| {
            let db = app.db.clone();
            async move {
                messenger::db_run!(&db, |pool| sqlx::query(&sql).execute(pool).await.map(|_| ())).unwrap();
            }
        };
        execute(rename("event", "event_offline")).await;
        let response = raw_stream(&app, &bob, Some(start)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let text = read_to_end(response, Duration::from_secs(15)).await.expect("the stream ends");
        execute(rename("event_offline", "event")).await;
        assert!(!text.contains("event: reset") && !text.contains("event:reset"), "no reset: {text}");
        let retry: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("retry:"))
            .unwrap_or_else(|| panic!("a retry hint: {text}"))
            .trim()
            .parse()
            .unwrap();
        assert!(retry >= 1000, "{retry} ms");
        // Once the database answers again, the same resume replays.
        let mut resumed = app.events(&bob, Some(start)).await;
        let got = until_marker(&app, bob.id, &mut resumed, &["message"]).await;
        let contents: Vec<_> = got.iter().map(|e| e.json()["content"].as_str().unwrap().to_string()).collect();
        assert_eq!(contents, ["m0", "m1", "m2"]);
    }
}

integration_test! {
    /// Streams that leave in the middle of their replay give their connection back to the
    /// pool intact: the pool's MySQL sessions after 120 such streams are the ones before.
    #[needs(mysql)]
    async fn streams_that_leave_mid_replay_throw_away_no_connection() {
        let app = spawn_app(Backend::MySql).await;
        let bob = app.user("bob").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = app.hub.watermark();
        write_events(&app, bob.id, "bulk", 9_000, 300).await;
        wait_for_watermark(&app, before + 9_000).await;
        let pool = mysql_pool(&app);
        let sessions = || async {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST WHERE DB = DATABASE()",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            ids.into_iter().collect::<BTreeSet<_>>()
        };
        // Open the pool to its size, so that it never needs a new connection but to replace one.
        let warm: Vec<_> = (0..16)
            .map(|_| sqlx::query("SELECT SLEEP(0.3)").execute(pool))
            .collect();
        futures_util::future::join_all(warm).await;
        let at_first = sessions().await;
        let mut rng = Rng(7);
        for round in 0..30 {
            let leaving: Vec<_> = (0..4)
                .map(|_| {
                    let wait = rng.millis(0, 25);
                    let app_url = app.url("/api/events");
                    let token = bob.token.clone();
                    tokio::spawn(async move {
                        let response = reqwest::Client::new()
                            .get(app_url)
                            .bearer_auth(token)
                            .header("Last-Event-ID", before.to_string())
                            .send()
                            .await
                            .unwrap();
                        tokio::time::sleep(wait).await;
                        drop(response);
                    })
                })
                .collect();
            for t in leaving {
                t.await.unwrap();
            }
            if round % 10 == 9 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let at_last = sessions().await;
        assert!(
            at_last.is_subset(&at_first),
            "connections were replaced: before {at_first:?}, after {at_last:?}"
        );
        // And a full replay still works.
        let mut stream = app.events(&bob, Some(before)).await;
        assert_eq!(
            until_marker(&app, bob.id, &mut stream, &["bulk"]).await.len(),
            9_000
        );
    }
}

// ---- browsers ---------------------------------------------------------------------------

use crate::browser::{sign_in, wait_for as element, WAIT};

async fn script(b: &Client, js: &str) -> Value {
    b.execute(js, vec![])
        .await
        .unwrap_or_else(|e| panic!("{js}: {e}"))
}

/// Waits until `js` (an expression) is true in the page.
async fn wait_until(b: &Client, js: &str, wait: Duration) {
    crate::browser::wait_until(b, js, &format!("return !!({js});"), wait).await
}

/// The texts of the messages a page shows, in order.
async fn shown_messages(b: &Client) -> Vec<String> {
    let v = script(b, "return Array.from(document.querySelectorAll('ol.messages li.message .content')).map(function (e) { return e.textContent.trim(); });").await;
    serde_json::from_value(v).unwrap()
}

/// How a [`CutProxy`] treats connections while cut.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Cut {
    Up,
    /// Every connection is closed, and new ones are closed at once: the browser's own
    /// reconnection (with `Last-Event-ID`) has to come back.
    Refuse,
    /// Every connection is closed, and new ones are answered 502: the EventSource fails
    /// for good and htmx's SSE extension makes a new one from the page's URL.
    BadGateway,
}

/// A TCP proxy in front of the server that can drop every connection through it: the
/// network between one browser and the server, and nothing else (the senders talk to the
/// server directly).
struct CutProxy {
    port: u16,
    mode: Arc<Mutex<Cut>>,
    open: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(Mutex::new(Cut::Up));
        let open: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept = {
            let (mode, open) = (mode.clone(), open.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    let now = *mode.lock().unwrap();
                    match now {
                        Cut::Up => {
                            let task = tokio::spawn(async move {
                                if let Ok(mut server) =
                                    TcpStream::connect(("127.0.0.1", upstream)).await
                                {
                                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server)
                                        .await;
                                }
                            });
                            open.lock().unwrap().push(task.abort_handle());
                        }
                        Cut::Refuse => drop(client),
                        Cut::BadGateway => {
                            tokio::spawn(async move {
                                let mut buf = [0u8; 8192];
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(1),
                                    client.read(&mut buf),
                                )
                                .await;
                                let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                                let _ = client.shutdown().await;
                            });
                        }
                    }
                }
            })
        };
        Self {
            port,
            mode,
            open,
            accept,
        }
    }

    fn cut(&self, how: Cut) {
        *self.mode.lock().unwrap() = how;
        for connection in self.open.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        *self.mode.lock().unwrap() = Cut::Up;
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut(Cut::Refuse);
    }
}

/// Counts, in the page, stream (re)openings, EventSources that failed for good, the URL
/// of each new one, and how often each message's fragment was applied (a fragment the
/// page drops as already applied does not count).
const PAGE_PROBE: &str = r#"
var p = window.__probe = { opens: 0, failed: 0, urls: [], applied: {} };
document.addEventListener('htmx:sseOpen', function () { p.opens++; });
document.addEventListener('htmx:sseError', function (e) {
  if (e.detail && e.detail.source && e.detail.source.readyState === 2) p.failed++;
});
document.addEventListener('htmx:sseBeforeMessage', function (e) {
  if (e.defaultPrevented || e.detail.type !== 'oob') return;
  var re = /id="msg-(\d+)"/g, m;
  while ((m = re.exec(e.detail.data))) p.applied[m[1]] = (p.applied[m[1]] || 0) + 1;
});
var make = htmx.createEventSource;
htmx.createEventSource = function (url) { var s = make(url); p.urls.push(s.url); return s; };
return true;
"#;

both_backends! {
    #[needs(browser)]
    async fn browser_a_page_cut_off_twenty_times_during_sends_shows_every_message_once(app) {
        let mut chrome = Driver::start().await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let proxy = CutProxy::start(app.port).await;
        let base = format!("http://127.0.0.1:{}", proxy.port);
        let b = chrome.browser().await;
        sign_in(&b, &base, "bob").await;
        b.goto(&format!("{base}/chats/@alice")).await.unwrap();
        element(&b, "#composer-input").await;
        assert_eq!(script(&b, PAGE_PROBE).await, Value::Bool(true));
        tokio::time::sleep(Duration::from_millis(700)).await;

        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (stop, client, url, token) = (stop.clone(), app.api.clone(), app.url("/api/messages/?addressee_username=bob"), alice.token.clone());
            tokio::spawn(async move {
                let mut rng = Rng(99);
                let mut sent = 0;
                while !stop.load(Ordering::SeqCst) {
                    // A 503 (the server shedding load on a busy machine) is retried with
                    // the same key, as a client should: the message must still show once.
                    let body = json!({ "content": format!("m{sent}"), "client_key": format!("cut-{sent}") });
                    let mut tries = 0;
                    loop {
                        let r = client.post(&url).bearer_auth(&token).json(&body).send().await.unwrap();
                        tries += 1;
                        if r.status() == StatusCode::SERVICE_UNAVAILABLE && tries < 20 {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            continue;
                        }
                        assert!(r.status() == StatusCode::CREATED || r.status() == StatusCode::OK, "{}", r.status());
                        break;
                    }
                    sent += 1;
                    // A few messages a second: enough to have sends in flight at every cut,
                    // without growing the page past what a loaded CI machine renders live.
                    tokio::time::sleep(rng.millis(150, 400)).await;
                }
                sent
            })
        };
        let mut rng = Rng(0xdead_beef);
        for i in 0..20 {
            tokio::time::sleep(rng.millis(200, 900)).await;
            let opens = script(&b, "return window.__probe.opens").await.as_i64().unwrap();
            let how = if i % 2 == 0 { Cut::Refuse } else { Cut::BadGateway };
            proxy.cut(how);
            tokio::time::sleep(if how == Cut::Refuse { rng.millis(100, 600) } else { rng.millis(1500, 2500) }).await;
            proxy.restore();
            wait_until(&b, &format!("window.__probe && window.__probe.opens > {opens}"), Duration::from_secs(30)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::SeqCst);
        let sent: usize = sender.await.unwrap();
        wait_until(&b, &format!("document.querySelectorAll('ol.messages li.message').length >= {sent}"), Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let expected: Vec<String> = (0..sent).map(|n| format!("m{n}")).collect();
        assert_eq!(shown_messages(&b).await, expected, "every message shown once, in order");
        let probe = script(&b, "return window.__probe").await;
        assert!(probe.is_object(), "the page never reloaded");
        let applied: HashMap<String, u64> = serde_json::from_value(probe["applied"].clone()).unwrap();
        assert_eq!(applied.len(), sent, "every message arrived over the stream");
        assert!(applied.values().all(|&n| n == 1), "each applied exactly once: {applied:?}");
        // Both ways back were taken: the browser's own reconnection, and new EventSources
        // that resumed from the last id the page applied, not from where it started.
        let failed = probe["failed"].as_i64().unwrap();
        assert!(failed >= 5, "EventSources that failed for good: {failed}");
        let urls: Vec<String> = serde_json::from_value(probe["urls"].clone()).unwrap();
        let rendered = script(&b, "return document.body.getAttribute('sse-connect')").await;
        assert!(!urls.is_empty() && urls.iter().all(|u| !u.ends_with(rendered.as_str().unwrap())), "resumed from the last applied id: {urls:?} (rendered {rendered})");
        b.close().await.unwrap();
    }

    #[needs(browser)]
    async fn browser_the_composer_sends_every_message_once_on_a_plain_http_origin(app) {
        let mut chrome = Driver::start().await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let b = chrome.browser_with(&["--host-resolver-rules=MAP chat.test 127.0.0.1"]).await;
        let base = format!("http://chat.test:{}", app.port);
        sign_in(&b, &base, "alice").await;
        b.goto(&format!("{base}/chats/@bob")).await.unwrap();
        element(&b, "#composer-input").await;
        assert_eq!(
            script(&b, "return [window.isSecureContext, typeof (window.crypto && crypto.randomUUID)]").await,
            json!([false, "undefined"]),
            "a non-secure origin, where crypto.randomUUID does not exist"
        );
        for text in ["one", "two", "three"] {
            let input = element(&b, "#composer-input").await;
            input.send_keys(&format!("{text}\u{E007}")).await.unwrap();
            wait_until(&b, &format!("Array.from(document.querySelectorAll('ol.messages li.message .content')).some(function (e) {{ return e.textContent.trim() === '{text}'; }}) && document.getElementById('composer-input').value === ''"), WAIT).await;
        }
        // Enter twice in a row posts once.
        element(&b, "#composer-input").await.send_keys("four\u{E007}\u{E007}").await.unwrap();
        wait_until(&b, "document.getElementById('composer-input').value === ''", WAIT).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(shown_messages(&b).await, ["one", "two", "three", "four"]);
        let stored: Vec<(String, Option<String>)> = messenger::db_run!(&app.db, |pool| {
            // CAST: MySQL reports the binary-collated key column as bytes.
            sqlx::query_as("SELECT content, CAST(client_key AS CHAR) FROM message WHERE sender_id = ? ORDER BY message_id")
                .bind(alice.id)
                .fetch_all(pool)
                .await
        })
        .unwrap();
        let contents: Vec<&str> = stored.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(contents, ["one", "two", "three", "four"], "each stored once");
        let keys: BTreeSet<_> = stored.iter().map(|(_, k)| k.clone().expect("a key")).collect();
        assert_eq!(keys.len(), 4, "a fresh key for every message");
        b.close().await.unwrap();
    }
}
