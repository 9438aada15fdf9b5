//! The send path under faults (issue 12). The promise: a message the sender saw sent (201)
//! is stored and delivered; a caller that got an error never finds its message written
//! later; a retry with the same `client_key` never duplicates. Tested against a database
//! that is killed and restarted, a writer that fails or panics, a shutdown mid-burst, a
//! second process killed mid-burst, a rotated database password, and friendships that end.

use std::{
    process::Stdio,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use messenger::{db::Db, startup::Application, state::AppState};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::{both_backends, helpers::*, integration_test};

/// What every send must beat while the database is down.
const OUTAGE_ANSWER: Duration = Duration::from_secs(2);

/// A port free now, for a server started next. Below Linux's ephemeral range (32768 and
/// up), where the suite's own outgoing connections could take it meanwhile (a killed
/// database restarting on its port would then find it taken).
fn free_port() -> u16 {
    // A start that differs between tests and runs: the clock's sub-second nanoseconds.
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    (0..12_000u32)
        .map(|i| 20_000 + ((start + i * 7_919) % 12_000) as u16)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port between 20000 and 32000")
}

// --- a MariaDB server of the test's own -------------------------------------------------

/// A MariaDB server with its own data directory and port, started with the commands
/// `scripts/start_test_db.sh` uses, so that a test can kill and restart it without
/// disturbing the shared server. Killed when dropped.
struct OwnMariaDb {
    dir: tempfile::TempDir,
    port: u16,
    user: String,
    server: Option<std::process::Child>,
}

impl OwnMariaDb {
    /// Starts one. Tests that use it declare `#[needs(mariadb)]`: the harness ignores them
    /// where mariadbd is not installed (and fails them in CI).
    async fn start() -> Self {
        let installed = ["mariadbd", "mariadb-install-db", "mariadb"]
            .iter()
            .all(|b| {
                std::process::Command::new("sh")
                    .args(["-c", &format!("command -v {b}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            });
        assert!(installed, "MariaDB is installed (#[needs(mariadb)])");
        let dir = tempfile::tempdir().expect("temp dir");
        let user = String::from_utf8(
            tokio::process::Command::new("id")
                .arg("-un")
                .output()
                .await
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_string();
        let install = tokio::process::Command::new("mariadb-install-db")
            .arg(format!("--user={user}"))
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .args(["--skip-test-db", "--auth-root-authentication-method=socket"])
            // An administrator for whoever runs the tests (root or not), over the socket.
            .arg(format!("--auth-root-socket-user={user}"))
            .output()
            .await
            .expect("mariadb-install-db runs");
        assert!(
            install.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&install.stderr)
        );
        let mut db = OwnMariaDb {
            dir,
            port: free_port(),
            user,
            server: None,
        };
        db.restart().await;
        db.admin_sql(
            "CREATE USER 'messenger'@'%' IDENTIFIED BY 'messenger';
             CREATE USER 'messenger'@'localhost' IDENTIFIED BY 'messenger';
             GRANT ALL ON *.* TO 'messenger'@'%';
             GRANT ALL ON *.* TO 'messenger'@'localhost';
             CREATE DATABASE messenger CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;",
        )
        .await;
        db
    }

    fn socket(&self) -> String {
        self.dir.path().join("mysqld.sock").display().to_string()
    }

    fn url(&self, user: &str, password: &str) -> String {
        format!(
            "mysql://{user}:{password}@127.0.0.1:{}/messenger",
            self.port
        )
    }

    /// Starts the server (again) on the same data and port, and waits until it answers.
    async fn restart(&mut self) {
        assert!(self.server.is_none(), "already running");
        let data = self.dir.path().join("data");
        let log = std::fs::File::create(self.dir.path().join("mysqld.log")).unwrap();
        let child = std::process::Command::new("mariadbd")
            .arg(format!("--user={}", self.user))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.socket()))
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("mysqld.pid").display()
            ))
            .args([
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
                "--max-connections=500",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mariadbd starts");
        self.server = Some(child);
        let started = Instant::now();
        loop {
            let ping = tokio::process::Command::new("mariadb")
                .arg(format!("--socket={}", self.socket()))
                .arg(format!("-u{}", self.user))
                .args(["-e", "SELECT 1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if ping.is_ok_and(|s| s.success()) {
                return;
            }
            let exited = self.server.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && started.elapsed() < Duration::from_secs(90),
                "mariadbd did not come up: {}",
                std::fs::read_to_string(self.dir.path().join("mysqld.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `kill -9`: the server stops mid-whatever, as a crash or an OOM kill would stop it.
    fn kill(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs statements as the administrator (over the socket); the output, tab-separated.
    async fn admin_sql(&self, sql: &str) -> String {
        let out = tokio::process::Command::new("mariadb")
            .arg(format!("--socket={}", self.socket()))
            .arg(format!("-u{}", self.user))
            .args(["-N", "-B", "-e", sql])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for OwnMariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}

// --- a server of the test's own ---------------------------------------------------------

/// The real application, in-process, on any database URL, with its state at hand (the
/// send queue's fault knob) and its shutdown token.
struct Server {
    base: String,
    state: AppState,
    client: Client,
    shutdown: CancellationToken,
    stopped: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn serve(database_url: &str) -> Server {
    let app = Application::build(test_config(database_url, &[]))
        .await
        .expect("application builds");
    serve_app(app)
}

fn serve_app(app: Application) -> Server {
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let shutdown = app.shutdown_token();
    let stopped = tokio::spawn(async move {
        let _ = app.run_until_stopped(std::future::pending()).await;
    });
    Server {
        base,
        state,
        client: Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        shutdown,
        stopped: Some(stopped),
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn db(&self) -> &Db {
        &self.state.db
    }

    /// Stops as SIGTERM would, and waits for the shutdown to finish.
    async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.stopped.take() {
            tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .expect("the shutdown finishes")
                .unwrap();
        }
    }

    fn browser(&self) -> PageClient {
        PageClient {
            client: Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: self.base.clone(),
        }
    }

    async fn user(&self, username: &str) -> ApiUser {
        let email = format!("{username}@example.com");
        let r = self
            .client
            .post(self.url(&format!("/api/auth/sign-up?username={username}")))
            .form(&[
                ("grant_type", "password"),
                ("username", email.as_str()),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "sign-up of {username}");
        let token = r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let me: Value = self
            .client
            .get(self.url("/api/users/"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ApiUser {
            id: me["user_id"].as_i64().unwrap(),
            username: username.to_string(),
            email,
            token,
        }
    }

    async fn befriend(&self, a: &ApiUser, b: &ApiUser) {
        let r = self
            .client
            .post(self.url(&format!("/api/friends/requests?username={}", b.username)))
            .bearer_auth(&a.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = self
            .client
            .post(self.url(&format!(
                "/api/friends/requests/accept?requester_username={}",
                a.username
            )))
            .bearer_auth(&b.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    async fn events(&self, user: &ApiUser) -> EventStream {
        let r = Client::new()
            .get(self.url("/api/events"))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        EventStream::new(r)
    }
}

// --- sends, and what became of them ---------------------------------------------------

/// One send and its answer.
#[derive(Debug, Clone)]
struct Sent {
    content: String,
    key: Option<String>,
    /// `None` when no answer came (the connection failed).
    status: Option<StatusCode>,
    message_id: Option<i64>,
    took: Duration,
}

async fn send(
    client: &Client,
    base: &str,
    from: &ApiUser,
    to: &str,
    content: &str,
    key: Option<&str>,
) -> Sent {
    let started = Instant::now();
    let mut body = json!({ "content": content });
    if let Some(key) = key {
        body["client_key"] = json!(key);
    }
    let answer = client
        .post(format!("{base}/api/messages/?addressee_username={to}"))
        .bearer_auth(&from.token)
        .json(&body)
        .send()
        .await;
    let (status, message_id) = match answer {
        Ok(r) => {
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (Some(status), body["message_id"].as_i64())
        }
        Err(_) => (None, None),
    };
    Sent {
        content: content.to_string(),
        key: key.map(String::from),
        status,
        message_id,
        took: started.elapsed(),
    }
}

/// `senders` tasks sending from `from` to `to` through `base`, one after another each,
/// every send with its own content and key, until stopped (or, with `stop_on_no_answer`,
/// until a send gets no answer).
struct Burst {
    stop: CancellationToken,
    acked: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Sent>>>,
}

impl Burst {
    fn start(
        base: &str,
        from: &ApiUser,
        to: &str,
        senders: usize,
        stop_on_no_answer: bool,
    ) -> Self {
        let (stop, acked) = (CancellationToken::new(), Arc::new(AtomicUsize::new(0)));
        let tasks = (0..senders)
            .map(|task| {
                let (base, from, to) = (base.to_string(), from.clone(), to.to_string());
                let (stop, acked) = (stop.clone(), acked.clone());
                tokio::spawn(async move {
                    let client = Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .unwrap();
                    let mut sent = Vec::new();
                    let mut n = 0;
                    while !stop.is_cancelled() {
                        let label = format!("burst {task}.{n}");
                        let s = send(&client, &base, &from, &to, &label, Some(&label)).await;
                        n += 1;
                        if s.status == Some(StatusCode::CREATED) {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        let no_answer = s.status.is_none();
                        sent.push(s);
                        if no_answer && stop_on_no_answer {
                            break;
                        }
                    }
                    sent
                })
            })
            .collect();
        Self { stop, acked, tasks }
    }

    /// Waits for `at_least` 201s.
    async fn until_acked(&mut self, at_least: usize) {
        let started = Instant::now();
        while self.acked.load(Ordering::SeqCst) < at_least {
            if started.elapsed() > Duration::from_secs(60) {
                self.stop.cancel();
                let sent = gather(std::mem::take(&mut self.tasks)).await;
                panic!("the burst did not get going: {}", tally(&sent));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the burst; every send it made, with its answer.
    async fn finish(self) -> Vec<Sent> {
        self.stop.cancel();
        gather(self.tasks).await
    }
}

async fn gather(tasks: Vec<tokio::task::JoinHandle<Vec<Sent>>>) -> Vec<Sent> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("every send of the burst was answered")
                .unwrap(),
        );
    }
    all
}

/// How many messages hold `content`, straight from the database.
/// Every message event the stream brings before a marker written to the user's outbox
/// now: all that was sent before has arrived by then (a stream delivers in order).
async fn until_marker(db: &Db, user_id: i64, stream: &mut EventStream) -> Vec<Sse> {
    let marker = messenger::store::events::NewEvent::new(user_id as i32, "marker", &json!({}));
    messenger::store::events::write(db, &[marker])
        .await
        .unwrap();
    stream.until(&["message"], |e| e.event == "marker").await
}

async fn stored(db: &Db, content: &str) -> i64 {
    let sql = "SELECT COUNT(*) FROM message WHERE content = ?";
    match db {
        Db::MySql(p) => sqlx::query_scalar(sql).bind(content).fetch_one(p).await,
        Db::Sqlite(p) => sqlx::query_scalar(sql).bind(content).fetch_one(p).await,
    }
    .unwrap()
}

/// The content of message `id`, if it is stored.
async fn content_of(db: &Db, id: i64) -> Option<String> {
    let sql = "SELECT content FROM message WHERE message_id = ?";
    match db {
        Db::MySql(p) => sqlx::query_scalar(sql).bind(id).fetch_optional(p).await,
        Db::Sqlite(p) => sqlx::query_scalar(sql).bind(id).fetch_optional(p).await,
    }
    .unwrap()
}

/// Keys that more than one message of `sender` carries (must be none).
async fn duplicated_keys(db: &Db, sender: i64) -> Vec<String> {
    let sql = "SELECT client_key FROM message WHERE sender_id = ? AND client_key IS NOT NULL \
               GROUP BY client_key HAVING COUNT(*) > 1";
    match db {
        Db::MySql(p) => sqlx::query_scalar(sql).bind(sender).fetch_all(p).await,
        Db::Sqlite(p) => sqlx::query_scalar(sql).bind(sender).fetch_all(p).await,
    }
    .unwrap()
}

async fn execute(db: &Db, sql: &str) {
    match db {
        Db::MySql(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        Db::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Every acknowledged send is stored with its content.
async fn assert_acknowledged_are_stored(db: &Db, sent: &[Sent]) {
    for s in sent
        .iter()
        .filter(|s| s.status == Some(StatusCode::CREATED))
    {
        let id = s.message_id.expect("a 201 names its message");
        assert_eq!(
            content_of(db, id).await.as_deref(),
            Some(s.content.as_str()),
            "acknowledged message {id} is stored"
        );
    }
}

/// Retries every send that did not end in a 201 with its key, twice: the first posts it
/// (or finds it posted), the second finds the same message.
/// How many of them were in already (committed, but their answer never arrived or was a
/// 500: the only errors whose outcome is unknown).
async fn retry_with_keys(
    client: &Client,
    base: &str,
    from: &ApiUser,
    to: &str,
    sent: &[Sent],
) -> usize {
    let mut already_in = 0;
    for s in sent
        .iter()
        .filter(|s| s.status != Some(StatusCode::CREATED))
    {
        let key = s.key.as_deref().expect("burst sends carry keys");
        let first = send(client, base, from, to, &s.content, Some(key)).await;
        assert!(
            matches!(first.status, Some(StatusCode::CREATED | StatusCode::OK)),
            "retry of {key}: {first:?}"
        );
        if first.status == Some(StatusCode::OK) {
            assert!(
                matches!(s.status, None | Some(StatusCode::INTERNAL_SERVER_ERROR)),
                "only an unknown outcome may turn out to be in: {s:?}"
            );
            already_in += 1;
        }
        let again = send(client, base, from, to, &s.content, Some(key)).await;
        assert_eq!(again.status, Some(StatusCode::OK), "a repeat of {key}");
        assert_eq!(again.message_id, first.message_id, "the same message");
    }
    already_in
}

fn tally(sent: &[Sent]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for s in sent {
        *counts
            .entry(
                s.status
                    .map_or("no answer".to_string(), |c| c.as_u16().to_string()),
            )
            .or_insert(0) += 1;
    }
    format!("{counts:?}")
}

// --- 5: a database outage ---------------------------------------------------------------

integration_test! {
    /// The database is killed mid-burst: every send answers 503 within 2 s (API and page),
    /// pages say the server can't save, nothing refused is written later, the open stream
    /// survives, and once the database is back everything works without a restart; retries
    /// with their keys post each message once.
    #[needs(mariadb)]
    async fn a_database_outage_answers_503_fast_and_recovers_without_a_restart() {
        let mut mariadb = OwnMariaDb::start().await;
        let server = serve(&mariadb.url("messenger", "messenger")).await;
        let alice = server.user("alice").await;
        let bob = server.user("bob").await;
        server.befriend(&alice, &bob).await;
        let browser = server.browser();
        assert_eq!(
            browser.sign_in("alice", PASSWORD).await.status(),
            StatusCode::SEE_OTHER
        );
        let csrf = csrf_token(&browser.get_html("/chats/@bob").await);
        let mut bob_stream = server.events(&bob).await;

        let mut burst = Burst::start(&server.base, &alice, "bob", 4, false);
        burst.until_acked(20).await;
        mariadb.kill();
        let killed = Instant::now();

        // API sends, with and without a key, one after another and together.
        let client = Client::new();
        let mut refused = Vec::new();
        for n in 0..5 {
            let content = format!("during the outage {n}");
            let s = send(&client, &server.base, &alice, "bob", &content, None).await;
            assert_eq!(s.status, Some(StatusCode::SERVICE_UNAVAILABLE), "{s:?}");
            assert!(s.took < OUTAGE_ANSWER, "answered in {:?}", s.took);
            refused.push(content);
        }
        let together = futures_util::future::join_all((0..10).map(|n| {
            let content = format!("together in the outage {n}");
            let (client, base, alice) = (&client, &server.base, &alice);
            async move { send(client, base, alice, "bob", &content, Some(&content)).await }
        }))
        .await;
        for s in &together {
            assert_eq!(s.status, Some(StatusCode::SERVICE_UNAVAILABLE), "{s:?}");
            assert!(s.took < OUTAGE_ANSWER, "answered in {:?}", s.took);
            refused.push(s.content.clone());
        }
        // The page's composer (htmx): a 503 whose text says what happened.
        let started = Instant::now();
        let r = browser
            .post_raw(
                "/chats/@bob/messages",
                &[("content", "from the page"), ("client_key", "page-key")],
                &[("hx-request", "true"), ("x-csrf-token", &csrf)],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < OUTAGE_ANSWER);
        assert_eq!(r.text().await.unwrap(), messenger::db::UNAVAILABLE);
        refused.push("from the page".into());
        // A page: the error page, not a sign-in form (the session is not lost, only unread).
        let r = browser.get("/chats/@bob").await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.text().await.unwrap().contains("save right now"));

        let burst_sent = burst.finish().await;
        for s in &burst_sent {
            assert!(
                matches!(
                    s.status,
                    Some(
                        StatusCode::CREATED
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::INTERNAL_SERVER_ERROR
                    )
                ),
                "{s:?}"
            );
            assert!(s.took < OUTAGE_ANSWER + Duration::from_secs(1), "{s:?}");
        }
        assert!(
            burst_sent
                .iter()
                .any(|s| s.status == Some(StatusCode::SERVICE_UNAVAILABLE)),
            "the burst ran into the outage"
        );
        eprintln!(
            "outage: {:?} from the kill until the burst stopped",
            killed.elapsed()
        );

        // The database comes back; the same server works again.
        mariadb.restart().await;
        let started = Instant::now();
        let recovered = loop {
            let s = send(
                &client,
                &server.base,
                &alice,
                "bob",
                "after the outage",
                Some("after"),
            )
            .await;
            if s.status == Some(StatusCode::CREATED) {
                break s;
            }
            assert_eq!(s.status, Some(StatusCode::SERVICE_UNAVAILABLE), "{s:?}");
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "sends work again once the database is back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            browser.get("/chats/@bob").await.status(),
            StatusCode::OK,
            "pages too"
        );

        // Nothing refused was written meanwhile; everything acknowledged is there.
        let db = server.db();
        for content in &refused {
            assert_eq!(stored(db, content).await, 0, "{content:?} was refused");
        }
        for s in burst_sent
            .iter()
            .filter(|s| s.status == Some(StatusCode::SERVICE_UNAVAILABLE))
        {
            assert_eq!(
                stored(db, &s.content).await,
                0,
                "{:?} was refused",
                s.content
            );
        }
        assert_acknowledged_are_stored(db, &burst_sent).await;
        // Retried with their keys, the refused (and the 500s: outcome unknown) post once.
        let already_in = retry_with_keys(&client, &server.base, &alice, "bob", &burst_sent).await;
        eprintln!(
            "outage burst: {}; {already_in} of the others were in",
            tally(&burst_sent)
        );
        assert_eq!(duplicated_keys(db, alice.id).await, Vec::<String>::new());

        // Bob's stream stayed open through the outage and has every acknowledged message.
        let delivered: Vec<i64> = until_marker(db, bob.id, &mut bob_stream)
            .await
            .iter()
            .filter_map(|e| e.json()["message_id"].as_i64())
            .collect();
        for s in burst_sent
            .iter()
            .chain([&recovered])
            .filter(|s| s.status == Some(StatusCode::CREATED))
        {
            assert!(
                delivered.contains(&s.message_id.unwrap()),
                "{:?} reached the stream",
                s.content
            );
        }
    }
}

// --- 6: a supervised writer -------------------------------------------------------------

both_backends! {
    async fn a_failing_or_panicking_writer_fails_its_batch_and_the_next_send_works(app) {
        // A server of this test's own on the same kind of database, for the writer's knob.
        let server = serve(&app.database.url).await;
        let alice = server.user("alice").await;
        let bob = server.user("bob").await;
        server.befriend(&alice, &bob).await;
        let (client, base) = (Client::new(), server.base.clone());
        let db = server.db();

        // A real database error inside the batch: the events' table is gone. The send
        // fails at once, and its message, inserted before the events, is rolled back.
        let renamed = match db {
            Db::MySql(_) => ("RENAME TABLE event TO event_away", "RENAME TABLE event_away TO event"),
            Db::Sqlite(_) => ("ALTER TABLE event RENAME TO event_away", "ALTER TABLE event_away RENAME TO event"),
        };
        execute(db, renamed.0).await;
        let s = send(&client, &base, &alice, "bob", "no events table", None).await;
        execute(db, renamed.1).await;
        assert_eq!(s.status, Some(StatusCode::INTERNAL_SERVER_ERROR), "{s:?}");
        assert!(s.took < Duration::from_secs(5), "{s:?}");
        assert_eq!(stored(db, "no events table").await, 0, "nothing half-written");
        let s = send(&client, &base, &alice, "bob", "after the error", None).await;
        assert_eq!(s.status, Some(StatusCode::CREATED));

        // A panic inside the transaction, with other sends around it: the panicking
        // batch's callers get 500 at once and nothing of it is written; the rest go in.
        server.state.sends.panic_in_next_batch();
        let sent = futures_util::future::join_all((0..12).map(|n| {
            let (client, base, alice) = (&client, &base, &alice);
            async move { send(client, base, alice, "bob", &format!("around the panic {n}"), None).await }
        }))
        .await;
        assert!(sent.iter().any(|s| s.status == Some(StatusCode::INTERNAL_SERVER_ERROR)), "{sent:?}");
        for s in &sent {
            assert!(s.took < Duration::from_secs(5), "{s:?}");
            match s.status {
                Some(StatusCode::CREATED) => assert_eq!(stored(db, &s.content).await, 1),
                Some(StatusCode::INTERNAL_SERVER_ERROR) => assert_eq!(stored(db, &s.content).await, 0, "rolled back"),
                other => panic!("{other:?}"),
            }
        }
        // Every writer lives on.
        let after = futures_util::future::join_all((0..20).map(|n| {
            let (client, base, alice) = (&client, &base, &alice);
            async move { send(client, base, alice, "bob", &format!("after the panic {n}"), None).await }
        }))
        .await;
        assert!(after.iter().all(|s| s.status == Some(StatusCode::CREATED)), "{after:?}");
    }

    // --- 7: shutdown and a killed process ------------------------------------------------

    async fn a_shutdown_mid_burst_stores_every_acknowledged_send(app) {
        let mut server = serve(&app.database.url).await;
        let alice = server.user("alice").await;
        let bob = server.user("bob").await;
        server.befriend(&alice, &bob).await;
        let mut burst = Burst::start(&server.base, &alice, "bob", 8, true);
        burst.until_acked(30).await;
        server.stop().await;
        let sent = burst.finish().await;
        let acknowledged = sent.iter().filter(|s| s.status == Some(StatusCode::CREATED)).count();
        assert!(acknowledged >= 30);
        // The server's pool is closed: read through the harness's own.
        assert_acknowledged_are_stored(&app.db, &sent).await;
        for s in sent.iter().filter(|s| s.status.is_some_and(|c| c.is_server_error())) {
            assert_eq!(stored(&app.db, &s.content).await, 0, "{s:?}");
        }
    }
}

integration_test! {
    /// A send whose caller has gone (its connection closed: a client timeout, a closed tab)
    /// before a writer took it is never written; one a writer took goes in. SQLite, whose one
    /// writer a transaction held open from outside can stall at will.
    async fn a_send_whose_caller_has_gone_is_not_written() {
        let database = new_database(Backend::Sqlite).await;
        let server = serve(&database.url).await;
        let alice = server.user("alice").await;
        let bob = server.user("bob").await;
        server.befriend(&alice, &bob).await;
        let mut lock = <sqlx::SqliteConnection as sqlx::Connection>::connect(&database.url)
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut lock)
            .await
            .unwrap();
        // The writer takes this one, then waits for the write lock.
        let waiting = {
            let (base, alice) = (server.base.clone(), alice.clone());
            tokio::spawn(async move { send(&Client::new(), &base, &alice, "bob", "taken", None).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        // These queue behind it, and their callers give up.
        let impatient = Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let gone = futures_util::future::join_all((0..5).map(|n| {
            let (client, base, alice) = (&impatient, &server.base, &alice);
            async move { send(client, base, alice, "bob", &format!("gone {n}"), None).await }
        }))
        .await;
        assert!(gone.iter().all(|s| s.status.is_none()), "{gone:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();

        let taken = waiting.await.unwrap();
        assert_eq!(taken.status, Some(StatusCode::CREATED), "{taken:?}");
        let after = send(&server.client, &server.base, &alice, "bob", "after", None).await;
        assert_eq!(after.status, Some(StatusCode::CREATED));
        assert_eq!(stored(server.db(), "taken").await, 1);
        for s in &gone {
            assert_eq!(
                stored(server.db(), &s.content).await,
                0,
                "{:?} was given up",
                s.content
            );
        }
    }
}

integration_test! {
    /// Two processes on one MySQL database; the second, the real `messenger` binary, is
    /// killed with SIGKILL in the middle of a burst sent through it. Every message it
    /// acknowledged is stored and reaches a stream on the first; retried through the first
    /// with their keys, the sends that got no answer post once.
    #[needs(mysql)]
    async fn a_process_killed_mid_burst_loses_no_acknowledged_message() {
        let database = new_database(Backend::MySql).await;
        let first = serve(&database.url).await;
        let alice = first.user("alice").await;
        let bob = first.user("bob").await;
        first.befriend(&alice, &bob).await;

        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_messenger"))
            .env("DATABASE_URL", &database.url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", JWT_SECRET)
            .env("MIGRATE_ON_START", "false")
            .env("EVENT_POLL_MILLISECONDS", "25")
            .env("RUST_LOG", "warn")
            .env_remove("RDS_ENDPOINT")
            .env_remove("RDS_PASSWORD_FILE")
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("the messenger binary starts");
        let second_log = || std::fs::read_to_string(log.path()).unwrap_or_default();
        let second_base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while !reqwest::get(format!("{second_base}/health"))
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the second process came up: {}",
                second_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Ours, not some other server that took the port first.
        assert!(second.try_wait().unwrap().is_none(), "{}", second_log());
        let s = send(
            &Client::new(),
            &second_base,
            &alice,
            "bob",
            "through the second",
            None,
        )
        .await;
        assert_eq!(
            s.status,
            Some(StatusCode::CREATED),
            "a send through the second process: {}",
            second_log()
        );

        let mut bob_on_first = first.events(&bob).await;
        let mut burst = Burst::start(&second_base, &alice, "bob", 6, true);
        burst.until_acked(40).await;
        second.kill().expect("SIGKILL");
        second.wait().unwrap();
        let sent = burst.finish().await;
        assert!(
            sent.iter().any(|s| s.status.is_none()),
            "the burst ran into the kill"
        );

        assert_acknowledged_are_stored(first.db(), &sent).await;
        let delivered: Vec<i64> = until_marker(first.db(), bob.id, &mut bob_on_first)
            .await
            .iter()
            .filter_map(|e| e.json()["message_id"].as_i64())
            .collect();
        for s in sent
            .iter()
            .filter(|s| s.status == Some(StatusCode::CREATED))
        {
            assert!(
                delivered.contains(&s.message_id.unwrap()),
                "{:?} reached the other process's stream",
                s.content
            );
        }
        let already_in = retry_with_keys(&first.client, &first.base, &alice, "bob", &sent).await;
        eprintln!(
            "killed process: {}; {already_in} of the others were in",
            tally(&sent)
        );
        assert_eq!(
            duplicated_keys(first.db(), alice.id).await,
            Vec::<String>::new()
        );
    }
}

// --- 8: password rotation ---------------------------------------------------------------

integration_test! {
    /// `RDS_PASSWORD_FILE` is re-read while running: after the MySQL user's password changes
    /// and the file with it, new connections use the new password, without a restart.
    #[needs(mariadb)]
    async fn a_rotated_database_password_reaches_new_connections_without_a_restart() {
        let mariadb = OwnMariaDb::start().await;
        mariadb
            .admin_sql(
                "CREATE USER 'rotating'@'%' IDENTIFIED BY 'first-password';
                 CREATE USER 'rotating'@'localhost' IDENTIFIED BY 'first-password';
                 GRANT ALL ON messenger.* TO 'rotating'@'%';
                 GRANT ALL ON messenger.* TO 'rotating'@'localhost';",
            )
            .await;
        let secrets = tempfile::tempdir().unwrap();
        let password_file = secrets.path().join("db-password");
        std::fs::write(&password_file, "first-password\n").unwrap();
        // As in production: the original's RDS_* variables, the password from a file.
        let port = mariadb.port.to_string();
        let config = test_config(
            "",
            &[
                ("RDS_ENDPOINT", "127.0.0.1"),
                ("RDS_PORT", port.as_str()),
                ("RDS_USER", "rotating"),
                ("RDS_DB_NAME", "messenger"),
                ("RDS_PASSWORD_FILE", password_file.to_str().unwrap()),
            ],
        );
        let app = Application::build(config)
            .await
            .expect("application builds")
            .reread_password_every(Duration::from_millis(200));
        let server = serve_app(app);
        let alice = server.user("alice").await;

        mariadb
            .admin_sql(
                "ALTER USER 'rotating'@'%' IDENTIFIED BY 'second-password';
                 ALTER USER 'rotating'@'localhost' IDENTIFIED BY 'second-password';",
            )
            .await;
        std::fs::write(&password_file, "second-password\n").unwrap();
        // The connections opened with the old password would go on working; end them, so
        // that what follows needs new ones.
        let ids = mariadb
            .admin_sql("SELECT id FROM information_schema.processlist WHERE user = 'rotating'")
            .await;
        for id in ids.split_whitespace() {
            let _ = tokio::process::Command::new("mariadb")
                .arg(format!("--socket={}", mariadb.socket()))
                .arg(format!("-u{}", mariadb.user))
                .args(["-e", &format!("KILL {id}")])
                .status()
                .await;
        }
        assert!(
            sqlx::MySqlPool::connect(&mariadb.url("rotating", "first-password"))
                .await
                .is_err(),
            "the old password is refused"
        );

        let started = Instant::now();
        loop {
            let r = server
                .client
                .get(server.url("/api/users/"))
                .bearer_auth(&alice.token)
                .send()
                .await
                .unwrap();
            if r.status() == StatusCode::OK {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "new connections use the new password: still {}",
                r.status()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let bob = server.user("bob").await;
        server.befriend(&alice, &bob).await;
        let s = send(&server.client, &server.base, &alice, "bob", "rotated", None).await;
        assert_eq!(s.status, Some(StatusCode::CREATED));
    }
}

// --- 9: one rule for who may talk -------------------------------------------------------

both_backends! {
    async fn after_a_block_or_unfriend_neither_side_touches_their_direct_messages(app) {
        // (who ends it, how): the first blocks, the second blocks, the first unfriends.
        for (round, (first_ends, how)) in [(true, "block"), (false, "block"), (true, "unfriend")].into_iter().enumerate() {
            let a = app.user(&format!("alice{round}")).await;
            let b = app.user(&format!("bob{round}")).await;
            app.befriend(&a, &b).await;
            let (ender, other) = if first_ends { (&a, &b) } else { (&b, &a) };
            let mut ender_stream = app.events(ender, None).await;
            let mut other_stream = app.events(other, None).await;
            let from_a = app.send_dm(&a, &b, "from a").await.json::<Value>().await.unwrap()["message_id"].as_i64().unwrap();
            let from_b = app.send_dm(&b, &a, "from b").await.json::<Value>().await.unwrap()["message_id"].as_i64().unwrap();
            for stream in [&mut ender_stream, &mut other_stream] {
                for _ in 0..2 {
                    stream.next_of(&["message"], Duration::from_secs(5)).await.expect("both messages arrive while friends");
                }
            }
            let r = match how {
                "block" => app.post(&ender.token, &format!("/api/friends/requests/block?user_to_block_username={}", other.username)).await,
                _ => app.delete(&ender.token, &format!("/api/friends/requests?friend_username={}", other.username)).await,
            };
            assert!(r.status().is_success(), "{how}: {}", r.status());
            let (status, detail) = match how {
                "block" => (StatusCode::BAD_REQUEST, "you cannot message this person if you are not their friend"),
                _ => (StatusCode::NOT_FOUND, "friendship was not found"),
            };
            for (me, them, mine, theirs) in [(&a, &b, from_a, from_b), (&b, &a, from_b, from_a)] {
                let refused = [
                    app.patch_json(&me.token, &format!("/api/messages/{mine}"), &json!({ "content": "edited" })).await,
                    app.delete(&me.token, &format!("/api/messages/{mine}")).await,
                    app.send_dm(me, them, "still there?").await,
                    app.post_json(&me.token, "/api/typing", &json!({ "friend_username": them.username })).await,
                    app.post_json(&me.token, "/api/messages/seen", &json!({ "friend_username": them.username, "message_id": theirs })).await,
                ];
                for (what, r) in ["edit", "delete", "send", "typing", "seen"].iter().zip(refused) {
                    // Typing answers 400 to anyone but a friend, as it always did.
                    let (status, detail) = if *what == "typing" { (StatusCode::BAD_REQUEST, "you cannot message this person if you are not their friend") } else { (status, detail) };
                    assert_eq!(r.status(), status, "round {round}: {} {what}", me.username);
                    assert_eq!(r.json::<Value>().await.unwrap()["detail"], detail);
                }
                // The pages take the same rule: no composer, and their edit is refused.
                let browser = app.browser();
                browser.sign_in(&me.username, PASSWORD).await;
                if let Ok(html) = browser.get(&format!("/chats/@{}", them.username)).await.text().await {
                    assert!(!html.contains(r#"id="composer""#), "round {round}: no composer for {}", me.username);
                }
                let r = browser.post_form("/chats", &format!("/messages/{mine}/edit"), &[("content", "edited")]).await;
                assert_eq!(r.status(), status, "round {round}: page edit by {}", me.username);
            }
            // A marker written to each after all that: nothing between them came before it.
            for (stream, user) in [(&mut ender_stream, ender), (&mut other_stream, other)] {
                let marker = messenger::store::events::NewEvent::new(user.id as i32, "marker", &serde_json::json!({}));
                messenger::store::events::write(&app.db, &[marker]).await.unwrap();
                app.hub.wake();
                let heard = stream.until(&["message", "message_edited", "message_deleted", "typing", "seen"], |e| e.event == "marker").await;
                assert!(heard.is_empty(), "round {round}: nothing passes between them: {heard:?}");
            }
            for (id, content) in [(from_a, "from a"), (from_b, "from b")] {
                assert_eq!(content_of(&app.db, id).await.as_deref(), Some(content), "untouched");
            }
        }
    }
}
