//! socket.io for the original service's web client, driven by a real client library
//! (python-socketio, through `tests/socketio_client.py`): its events and payloads, one
//! send path with the HTTP API, delivery across two processes, presence, relays, bad
//! input and the rate limit; and CORS for a front end on another origin.
//!
//! python-socketio lives in a virtualenv outside the work tree (`MESSENGER_TOOLS_DIR`,
//! default `~/.cache/messenger-ci-tools`, shared with `deploy/ci-checks.sh`), made on
//! first use; the tests declare `#[needs(python)]`, so they show as ignored where python3
//! cannot make a virtualenv (and fail under `CI=true`).

use std::{
    path::PathBuf,
    process::Stdio,
    sync::OnceLock,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use crate::{both_backends, helpers::*};

/// Pinned, so that a client release cannot turn a green run red on its own.
const CLIENT_PACKAGES: &[&str] = &[
    "python-socketio==5.18.1",
    "python-engineio==4.15.1",
    "websocket-client==1.9.2",
    "requests==2.34.2",
];
const WAIT: Duration = Duration::from_secs(8);
const QUIET: Duration = Duration::from_millis(700);

fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MESSENGER_TOOLS_DIR").filter(|d| !d.is_empty()) {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("messenger-ci-tools")
}

fn run(command: &mut std::process::Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The virtualenv's python with python-socketio installed, made on first use.
fn make_client_python() -> Result<PathBuf, String> {
    let venv = tools_dir().join("venv");
    let python = venv.join("bin/python");
    let ready = |python: &PathBuf| {
        std::process::Command::new(python)
            .args(["-c", "import socketio, websocket, requests"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ready(&python) {
        return Ok(python);
    }
    if !python.exists() {
        std::fs::create_dir_all(tools_dir()).map_err(|e| e.to_string())?;
        run(std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv))?;
    }
    run(std::process::Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(CLIENT_PACKAGES))?;
    if ready(&python) {
        Ok(python)
    } else {
        Err("python-socketio installed but cannot be imported".into())
    }
}

/// The client's python. Tests that use it declare `#[needs(python)]` (python3 with venv);
/// once that is there, failing to install python-socketio from PyPI is a failure.
fn client_python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(make_client_python) {
        Ok(python) => python.clone(),
        Err(e) => panic!(
            "the socket.io tests need python-socketio in a virtualenv under {}: {e}",
            tools_dir().display()
        ),
    }
}

/// A socket ticket for `user`, as the original's client gets one.
async fn ticket(app: &TestApp, user: &ApiUser) -> String {
    let r = app
        .api
        .post(app.url("/api/auth/socket-ticket"))
        .form(&[
            ("grant_type", "password"),
            ("username", user.email.as_str()),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// One python-socketio client connection.
struct SioClient {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Lines read but not yet asked for.
    pending: Vec<Value>,
}

impl SioClient {
    /// Starts a client with `auth`; returns it and its first line (connected or refused).
    async fn start(app: &TestApp, transport: &str, auth: Value) -> (SioClient, Value) {
        let python = client_python();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/socketio_client.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(&app.address)
            .arg(transport)
            .arg(auth.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the socket.io client starts");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut client = SioClient {
            child,
            stdin,
            lines,
            pending: Vec::new(),
        };
        let first = client
            .read(Duration::from_secs(15))
            .await
            .expect("the client says whether it connected");
        (client, first)
    }

    /// A client of `user` connected with a fresh ticket over `transport`.
    async fn connect(app: &TestApp, user: &ApiUser, transport: &str) -> SioClient {
        let auth = json!({ "access_token": ticket(app, user).await });
        let (client, first) = Self::start(app, transport, auth).await;
        assert_eq!(
            first["type"], "connected",
            "{} connects: {first}",
            user.username
        );
        client
    }

    async fn read(&mut self, wait: Duration) -> Option<Value> {
        let line = tokio::time::timeout(wait, self.lines.next_line())
            .await
            .ok()?
            .ok()??;
        Some(serde_json::from_str(&line).expect("the client prints JSON"))
    }

    async fn send(&mut self, command: Value) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn emit(&mut self, event: &str, data: Value) {
        self.send(json!({ "emit": event, "data": data })).await;
    }

    /// The data of the next `event` received within `wait` (other lines are kept).
    async fn next(&mut self, event: &str, wait: Duration) -> Option<Value> {
        let is_it = |l: &Value| l["type"] == "event" && l["event"] == event;
        if let Some(i) = self.pending.iter().position(is_it) {
            return Some(self.pending.remove(i)["data"].clone());
        }
        let deadline = Instant::now() + wait;
        loop {
            let line = self
                .read(deadline.saturating_duration_since(Instant::now()))
                .await?;
            if is_it(&line) {
                return Some(line["data"].clone());
            }
            self.pending.push(line);
        }
    }

    /// Every `event` received until `quiet` passes with none.
    async fn all(&mut self, event: &str, quiet: Duration) -> Vec<Value> {
        let mut got = Vec::new();
        while let Some(data) = self.next(event, quiet).await {
            got.push(data);
        }
        got
    }

    /// Whether the server ended the connection within `wait`.
    async fn disconnected(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            match self
                .read(deadline.saturating_duration_since(Instant::now()))
                .await
            {
                Some(line) if line["type"] == "disconnected" => return true,
                Some(line) => self.pending.push(line),
                None => return false,
            }
        }
    }

    async fn close(mut self) {
        self.send(json!({ "close": true })).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

fn dm(to: &str, content: &str, tracking: Value) -> Value {
    json!({ "content": content, "group_chat_id": null, "addressee_username": to, "message_tracking_id": tracking })
}

/// The message inside a successful `message response`: a JSON string, parsed.
fn message_of(response: &Value) -> Value {
    let text = response["message"]
        .as_str()
        .unwrap_or_else(|| panic!("message is a JSON string: {response}"));
    serde_json::from_str(text).unwrap()
}

both_backends! {
    #[needs(python)]
    async fn a_socketio_send_reaches_both_sides_on_two_processes(app) {
        let other = spawn_app_on(app.database.clone(), &[]).await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let mut a = SioClient::connect(&app, &alice, "websocket").await;
        let mut b = SioClient::connect(&other, &bob, "polling").await;
        let tracking = "3f2b8c1e-6d0a-4b59-9a51-0c7d2e4f8a10";
        a.emit("message", dm("bob", "hello over socket.io", json!(tracking))).await;
        let mine = a.next("message response", WAIT).await.expect("the sender hears back");
        assert_eq!(mine["message_tracking_id"], tracking);
        let sent = message_of(&mine);
        assert_eq!(sent["content"], "hello over socket.io");
        assert_eq!(sent["sender_id"].as_i64(), Some(alice.id));
        assert_eq!(sent["reciever_id"].as_i64(), Some(bob.id));
        assert_eq!(sent["group_chat_id"], Value::Null);
        let theirs = b.next("message response", WAIT).await.expect("delivered on the other process");
        assert_eq!(theirs["message_tracking_id"], tracking);
        assert_eq!(message_of(&theirs), sent);
        assert!(a.all("message response", QUIET).await.is_empty(), "the sender hears back once");
        assert!(b.all("message response", QUIET).await.is_empty(), "the recipient hears once");
        // The same message as the API has it.
        let history: Value = app.get(&bob.token, "/api/messages/?friend_username=alice&limit=10").await.json().await.unwrap();
        assert_eq!(history["results"][0]["message_id"], sent["message_id"]);
        assert_eq!(history["results"].as_array().unwrap().len(), 1);
        a.close().await;
        b.close().await;
    }

    #[needs(python)]
    async fn http_and_socketio_share_one_pipeline(app) {
        let other = spawn_app_on(app.database.clone(), &[]).await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let mut bob_sio = SioClient::connect(&other, &bob, "any").await;
        let mut alice_sse = app.events(&alice, None).await;
        // HTTP → socket.io, across processes.
        let r = app.post_json(&alice.token, "/api/messages/?addressee_username=bob", &json!({ "content": "by http", "client_key": "http-key-0123456789" })).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let got = bob_sio.next("message response", WAIT).await.expect("an HTTP send reaches socket.io");
        assert_eq!(message_of(&got)["content"], "by http");
        assert_eq!(got["message_tracking_id"], "http-key-0123456789");
        // socket.io → the sender's SSE stream and the HTTP history, with a numeric tracking id.
        bob_sio.emit("message", dm("alice", "by socket.io", json!(17))).await;
        let answer = bob_sio.next("message response", WAIT).await.unwrap();
        assert_eq!(answer["message_tracking_id"], 17, "the tracking id comes back as it was sent");
        let e = alice_sse.next_of(&["message"], WAIT).await.unwrap();
        assert_eq!(e.json()["content"], "by http", "the sender's own copy first");
        let e = alice_sse.next_of(&["message"], WAIT).await.expect("a socket.io send reaches SSE");
        assert_eq!(e.json()["content"], "by socket.io");
        assert_eq!(e.json()["message_id"], message_of(&answer)["message_id"]);
        // The same tracking id again is the same send: answered with the first message, posted once.
        let tracking = "0d4c9c5e-retry-retry-retry";
        bob_sio.emit("message", dm("alice", "once", json!(tracking))).await;
        let first = bob_sio.next("message response", WAIT).await.unwrap();
        bob_sio.emit("message", dm("alice", "once", json!(tracking))).await;
        let again = bob_sio.next("message response", WAIT).await.unwrap();
        assert_eq!(message_of(&first)["message_id"], message_of(&again)["message_id"]);
        assert_eq!(app.count("message").await, 3);
        // Events the original had no socket.io name for go out under their own.
        let carol = app.user("carol").await;
        app.post(&carol.token, "/api/friends/requests?username=bob").await;
        let e = bob_sio.next("friend_request", WAIT).await.expect("other kinds reach socket.io too");
        assert_eq!(e, json!({ "user_id": carol.id, "username": "carol" }));
        bob_sio.close().await;
    }

    /// Replies over socket.io, and the additive fields in what the original's client
    /// gets: its own fields unchanged, the new ones beside them.
    #[needs(python)]
    async fn replies_and_reactions_reach_socketio_clients(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let r = app.post_json(&bob.token, "/api/messages/?addressee_username=alice", &json!({ "content": "lunch?" })).await;
        let original: Value = r.json().await.unwrap();
        let mut a = SioClient::connect(&app, &alice, "websocket").await;
        let mut b = SioClient::connect(&app, &bob, "polling").await;
        let mut data = dm("bob", "yes, *noon*", json!("reply-1"));
        data["reply_to_message_id"] = original["message_id"].clone();
        a.emit("message", data).await;
        let mine = message_of(&a.next("message response", WAIT).await.expect("the sender hears back"));
        assert_eq!(mine["content"], "yes, *noon*", "the source text, as typed");
        assert_eq!(mine["reply_to_message_id"], original["message_id"]);
        assert_eq!(mine["reply_to"]["excerpt"], "lunch?");
        let theirs = message_of(&b.next("message response", WAIT).await.expect("delivered"));
        for field in ["message_id", "sender_id", "reciever_id", "content", "group_chat_id", "created_date_time", "last_edited_date_time", "seen"] {
            assert_eq!(theirs[field], mine[field], "{field}");
        }
        assert_eq!(theirs["reply_to_message_id"], original["message_id"]);
        assert_eq!(theirs["reactions"], json!([]));
        // A reply to a message of no chat of theirs is refused as over HTTP.
        let mut bad = dm("bob", "no", json!("reply-2"));
        bad["reply_to_message_id"] = json!(999_999);
        a.emit("message", bad).await;
        let refused = a.next("message response", WAIT).await.unwrap();
        assert_eq!(refused["status_code"], 404, "{refused}");
        // A reaction reaches both sides under its own name.
        let r = app.post_json(&bob.token, &format!("/api/messages/{}/reactions", mine["message_id"]), &json!({ "emoji": "👍" })).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let e = a.next("reaction", WAIT).await.expect("a reaction reaches socket.io");
        assert_eq!((e["emoji"].as_str(), e["message_id"].clone()), (Some("👍"), mine["message_id"].clone()));
        assert_eq!(app.count("message").await, 2);
        a.close().await;
        b.close().await;
    }

    #[needs(python)]
    async fn a_failure_reaches_only_the_sender_with_the_http_texts(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        app.befriend(&alice, &bob).await;
        app.post(&alice.token, "/api/friends/requests?username=carol").await;
        let mut a = SioClient::connect(&app, &alice, "websocket").await;
        let mut b = SioClient::connect(&app, &bob, "websocket").await;
        let mut c = SioClient::connect(&app, &carol, "websocket").await;
        let cases = [
            (dm("nobody", "hi", json!("t1")), 404, json!("no such user exists")),
            (dm("carol", "hi", json!("t2")), 400, json!("you cannot message this person if you are not their friend")),
            (json!({ "content": "hi", "group_chat_id": 999, "addressee_username": null, "message_tracking_id": "t3" }), 404, json!("user not found")),
            (json!({ "content": "hi", "group_chat_id": null, "addressee_username": null, "message_tracking_id": "t4" }), 400, json!("no addressee or groupchat specified")),
        ];
        for (data, status, detail) in cases {
            let tracking = data["message_tracking_id"].clone();
            a.emit("message", data).await;
            let e = a.next("message response", WAIT).await.expect("the sender hears the failure");
            assert_eq!(e, json!({ "detail": detail, "status_code": status, "message_tracking_id": tracking }));
            // The same texts and codes as the HTTP send.
        }
        let r = app.send_dm(&alice, &carol, "hi").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(b.all("message response", QUIET).await.is_empty(), "no one else hears a failure");
        assert!(c.all("message response", Duration::from_millis(100)).await.is_empty());
        a.close().await;
    }

    #[needs(python)]
    async fn bad_input_gets_a_failure_and_breaks_nothing(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let mut a = SioClient::connect(&app, &alice, "websocket").await;
        let mut b = SioClient::connect(&app, &bob, "polling").await;
        let unprocessable = [
            (json!({ "addressee_username": "bob", "message_tracking_id": "m1" }), "content"),
            (json!({ "content": 5, "addressee_username": "bob", "message_tracking_id": "m2" }), "content"),
            (json!({ "content": "x", "group_chat_id": "one", "message_tracking_id": "m3" }), "group_chat_id"),
            (json!({ "content": "x", "addressee_username": { "name": "bob" }, "message_tracking_id": "m4" }), "addressee_username"),
            (json!({ "content": "x".repeat(5000), "addressee_username": "bob", "message_tracking_id": "m5" }), "content"),
            (json!({ "content": "   ", "addressee_username": "bob", "message_tracking_id": "m6" }), "content"),
        ];
        for (data, field) in unprocessable {
            let tracking = data["message_tracking_id"].clone();
            a.emit("message", data.clone()).await;
            let e = a.next("message response", WAIT).await.unwrap_or_else(|| panic!("an answer to {data}"));
            assert_eq!(e["status_code"], 422, "{data}: {e}");
            assert_eq!(e["message_tracking_id"], tracking);
            assert_eq!(e["detail"][0]["loc"].as_array().unwrap().last().unwrap(), field, "{e}");
        }
        // Not even an object, and no tracking id at all.
        a.emit("message", json!("hello")).await;
        let e = a.next("message response", WAIT).await.unwrap();
        assert_eq!((e["status_code"].clone(), e["message_tracking_id"].clone()), (json!(422), Value::Null));
        a.emit("message", json!([1, 2, 3])).await;
        assert_eq!(a.next("message response", WAIT).await.unwrap()["status_code"], 422);
        // Unknown events are ignored; relays with nonsense are dropped.
        a.emit("no such event", json!({ "x": 1 })).await;
        a.emit("ping status change", json!({ "friend_id": "bob", "status": 3 })).await;
        // Both connections still work.
        a.emit("message", dm("bob", "still here", json!("m7"))).await;
        assert_eq!(message_of(&a.next("message response", WAIT).await.unwrap())["content"], "still here");
        assert_eq!(message_of(&b.next("message response", WAIT).await.unwrap())["content"], "still here");
        assert_eq!(app.count("message").await, 1);
        a.close().await;
        b.close().await;
    }

    #[needs(python)]
    async fn a_connection_is_rate_limited(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let mut a = SioClient::connect(&app, &alice, "websocket").await;
        let mut b = SioClient::connect(&app, &bob, "websocket").await;
        a.send(json!({ "burst": 100, "emit": "message", "data": dm("bob", "flood", Value::Null) })).await;
        let answers = a.all("message response", Duration::from_secs(2)).await;
        assert_eq!(answers.len(), 100, "every send is answered");
        let refused: Vec<&Value> = answers.iter().filter(|e| e["status_code"] == 429).collect();
        // 30 at once and 10 a second after: the burst takes far less than 3 s to arrive.
        assert!(refused.len() >= 40, "a burst over the limit is refused: {} of 100", refused.len());
        assert!(refused[0]["detail"].as_str().unwrap().starts_with("too many requests"));
        let delivered = b.all("message response", QUIET).await.len();
        assert_eq!(delivered, 100 - refused.len(), "what was accepted was delivered");
        // The connection is still open and recovers.
        tokio::time::sleep(Duration::from_secs(1)).await;
        a.emit("message", dm("bob", "later", json!("after-the-flood"))).await;
        let e = a.next("message response", WAIT).await.unwrap();
        assert_eq!(message_of(&e)["content"], "later");
        a.close().await;
    }

    #[needs(python)]
    async fn presence_reaches_friends_on_connect_and_disconnect_across_processes(app) {
        let other = spawn_app_on(app.database.clone(), &[]).await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let stranger = app.user("stranger").await;
        app.befriend(&alice, &bob).await;
        let mut b = SioClient::connect(&other, &bob, "websocket").await;
        let mut s = SioClient::connect(&other, &stranger, "websocket").await;
        let a = SioClient::connect(&app, &alice, "polling").await;
        let e = b.next("ping status change", WAIT).await.expect("bob hears alice come online");
        assert_eq!(e, json!({ "user_id": alice.id, "status": "active" }));
        // A socket.io connection counts for presence as a stream does: an SSE stream
        // opening now is not a second "online".
        let alice_sse = app.events(&alice, None).await;
        drop(alice_sse);
        a.close().await;
        let e = b.next("ping status change", WAIT).await.expect("bob hears alice go offline");
        assert_eq!(e, json!({ "user_id": alice.id, "status": "offline" }));
        assert!(b.all("ping status change", QUIET).await.is_empty(), "once each");
        assert!(s.all("ping status change", Duration::from_millis(100)).await.is_empty(), "a stranger hears nothing");
        b.close().await;
    }

    #[needs(python)]
    async fn ping_and_pong_are_relayed_between_friends_only(app) {
        let other = spawn_app_on(app.database.clone(), &[]).await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let stranger = app.user("stranger").await;
        app.befriend(&alice, &bob).await;
        let mut a = SioClient::connect(&app, &alice, "websocket").await;
        let mut b = SioClient::connect(&other, &bob, "websocket").await;
        let mut s = SioClient::connect(&other, &stranger, "websocket").await;
        // Presence of the connections themselves goes first; drain it.
        b.all("ping status change", QUIET).await;
        a.all("ping status change", Duration::from_millis(100)).await;
        // The client's claimed user_id is not believed: the relay carries the sender's.
        a.emit("ping status change", json!({ "user_id": 999, "status": "active", "friend_id": bob.id })).await;
        let e = b.next("ping status change", WAIT).await.expect("relayed across processes");
        assert_eq!(e, json!({ "user_id": alice.id, "status": "active" }));
        b.emit("pong status change", json!({ "user_id": bob.id, "status": "active", "friend_id": alice.id })).await;
        let e = a.next("friend status changed", WAIT).await.expect("the answer comes back");
        assert_eq!(e, json!({ "user_id": bob.id, "status": "active" }));
        s.emit("ping status change", json!({ "user_id": stranger.id, "status": "active", "friend_id": alice.id })).await;
        a.emit("pong status change", json!({ "user_id": alice.id, "status": "active", "friend_id": stranger.id })).await;
        assert!(a.all("ping status change", QUIET).await.is_empty(), "a stranger's ping is dropped");
        assert!(s.all("friend status changed", Duration::from_millis(100)).await.is_empty(), "nothing is relayed to a stranger");
        // Relays are live only: a stream resuming from the start does not replay them.
        let mut replay = app.events(&bob, Some(0)).await;
        assert!(replay.next_of(&["status_ping", "status_pong"], Duration::from_millis(500)).await.is_none());
        a.close().await;
        b.close().await;
    }

    #[needs(python)]
    async fn a_missing_or_bad_ticket_is_refused(app) {
        let alice = app.user("alice").await;
        let refused = [
            json!(null),
            json!({}),
            json!({ "access_token": "not-a-jwt" }),
            json!({ "access_token": 42 }),
            // An access token is not a socket ticket.
            json!({ "access_token": alice.token }),
        ];
        for auth in refused {
            let (client, first) = SioClient::start(&app, "websocket", auth.clone()).await;
            assert_eq!(first["type"], "connect_error", "{auth} is refused: {first}");
            drop(client);
        }
        let (client, first) = SioClient::start(&app, "polling", json!({ "access_token": "x.y.z" })).await;
        assert_eq!(first["type"], "connect_error", "over polling too");
        drop(client);
        // And a good one connects: on both transports.
        SioClient::connect(&app, &alice, "polling").await.close().await;
        SioClient::connect(&app, &alice, "any").await.close().await;
    }

    #[needs(python)]
    async fn socketio_clients_are_disconnected_on_shutdown(app) {
        let mut app = app;
        let alice = app.user("alice").await;
        let mut ws = SioClient::connect(&app, &alice, "websocket").await;
        let mut polling = SioClient::connect(&app, &alice, "polling").await;
        let started = Instant::now();
        app.stop().await;
        assert!(started.elapsed() < Duration::from_secs(5), "shutdown waits for no socket.io client: {:?}", started.elapsed());
        assert!(ws.disconnected(WAIT).await, "the websocket client is told");
        assert!(polling.disconnected(Duration::from_secs(30)).await, "the polling client is told");
    }
}

/// CORS, with and without `CORS_ALLOWED_ORIGINS`: nothing changes without it; with it, a
/// listed origin may call the API and socket.io with credentials, others may not, and
/// pages never get CORS headers.
mod cors {
    use super::*;
    use crate::integration_test;

    const FRONT_END: &str = "http://localhost:3000";

    async fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
        app.api
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
            .send()
            .await
            .unwrap()
    }

    fn allow_origin(r: &reqwest::Response) -> Option<&str> {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap())
    }

    integration_test! {
        async fn without_the_setting_nothing_changes() {
            let app = spawn_app(Backend::Sqlite).await;
            let r = preflight(&app, "/api/messages/", FRONT_END).await;
            assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(allow_origin(&r), None);
            let r = app
                .api
                .get(app.url("/health"))
                .header("Origin", FRONT_END)
                .send()
                .await
                .unwrap();
            assert_eq!(allow_origin(&r), None);
        }
    }

    integration_test! {
        async fn a_listed_origin_may_call_the_api_and_socketio_with_credentials() {
            let database = std::sync::Arc::new(new_database(Backend::Sqlite).await);
            let app = spawn_app_on(
                database,
                &[(
                    "CORS_ALLOWED_ORIGINS",
                    "http://localhost,http://localhost:3000",
                )],
            )
            .await;
            for path in [
                "/api/messages/",
                "/api/auth/sign-in",
                "/ws/socket.io/?EIO=4&transport=polling",
            ] {
                let r = preflight(&app, path, FRONT_END).await;
                assert!(r.status().is_success(), "{path}: {}", r.status());
                assert_eq!(allow_origin(&r), Some(FRONT_END), "{path}");
                assert_eq!(r.headers()["access-control-allow-credentials"], "true");
                let methods = r.headers()["access-control-allow-methods"]
                    .to_str()
                    .unwrap()
                    .to_string();
                assert!(methods.contains("POST"), "{methods}");
                let headers = r.headers()["access-control-allow-headers"]
                    .to_str()
                    .unwrap()
                    .to_lowercase();
                assert!(headers.contains("authorization"), "{headers}");
            }
            // The original client's form posts pass the CSRF origin check, and their answers,
            // errors included, are readable by the page.
            let r = app
                .api
                .post(app.url("/api/auth/sign-up?username=alice"))
                .header("Origin", FRONT_END)
                .form(&[
                    ("grant_type", "password"),
                    ("username", "alice@example.com"),
                    ("password", PASSWORD),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            assert_eq!(allow_origin(&r), Some(FRONT_END));
            assert_eq!(r.headers()["access-control-allow-credentials"], "true");
            let r = app
                .api
                .get(app.url("/api/users/"))
                .header("Origin", FRONT_END)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(allow_origin(&r), Some(FRONT_END));
            // socket.io's long-polling handshake.
            let r = app
                .api
                .get(app.url("/ws/socket.io/?EIO=4&transport=polling"))
                .header("Origin", FRONT_END)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(allow_origin(&r), Some(FRONT_END));
            // Another origin gets no Access-Control-Allow-Origin, and its form posts stay refused.
            let evil = "https://evil.example";
            assert_eq!(
                allow_origin(&preflight(&app, "/api/messages/", evil).await),
                None
            );
            let r = app
                .api
                .post(app.url("/api/auth/sign-in"))
                .header("Origin", evil)
                .form(&[
                    ("grant_type", "password"),
                    ("username", "alice@example.com"),
                    ("password", PASSWORD),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
            assert_eq!(allow_origin(&r), None);
            // Pages are not for other origins.
            let r = app
                .api
                .get(app.url("/login"))
                .header("Origin", FRONT_END)
                .send()
                .await
                .unwrap();
            assert_eq!(allow_origin(&r), None);
            assert_eq!(
                preflight(&app, "/login", FRONT_END).await.status(),
                StatusCode::METHOD_NOT_ALLOWED
            );
        }
    }
}
