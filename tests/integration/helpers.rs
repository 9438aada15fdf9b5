//! Spawns the real server on a random port with a fresh database, and talks to it over
//! HTTP. The database is SQLite (a temporary file) or a fresh MySQL database, created in
//! the server `TEST_MYSQL_URL` names and dropped afterwards.

use std::{collections::HashMap, time::Duration};

use messenger::{config::Config, db::Db, startup::Application};
use reqwest::{header, Client, Response, StatusCode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const PASSWORD: &str = "Password231";
pub const JWT_SECRET: &str = "integration-test-secret-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MySql,
}

/// The place a test database lives; dropped with the last app that uses it.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    mysql_admin: Option<(String, String)>,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.mysql_admin.take() {
            // Drop runs outside any runtime guarantee: use a thread with its own runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(pool) = sqlx::MySqlPool::connect(&admin_url).await {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{name}`"))
                            .execute(&pool)
                            .await;
                        pool.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// A fresh database. MySQL needs `TEST_MYSQL_URL`: a test that uses it declares
/// `#[needs(mysql)]` (the MySQL case of `both_backends!` does), so the harness ignores
/// it where the variable is unset.
pub async fn new_database(backend: Backend) -> TestDatabase {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("test.db").display());
            TestDatabase {
                url,
                backend,
                _dir: Some(dir),
                mysql_admin: None,
            }
        }
        Backend::MySql => {
            let admin_url = crate::harness::mysql_url()
                .expect("TEST_MYSQL_URL is set (declare #[needs(mysql)] on this test)");
            let name = format!("mt_{}", uuid::Uuid::new_v4().simple());
            let pool = sqlx::MySqlPool::connect(&admin_url)
                .await
                .expect("TEST_MYSQL_URL answers");
            sqlx::query(&format!(
                "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            ))
            .execute(&pool)
            .await
            .expect("create test database");
            pool.close().await;
            let mut url = url::Url::parse(&admin_url).expect("TEST_MYSQL_URL is a URL");
            url.set_path(&name);
            TestDatabase {
                url: url.to_string(),
                backend,
                _dir: None,
                mysql_admin: Some((admin_url, name)),
            }
        }
    }
}

pub fn test_config(database_url: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = [
        ("DATABASE_URL", database_url),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("JWT_SECRET", JWT_SECRET),
        ("ARGON2_MEMORY_KIB", "1024"),
        ("ARGON2_ITERATIONS", "1"),
        ("ARGON2_PARALLELISM", "1"),
        ("PRESENCE_GRACE_SECONDS", "1"),
        ("EVENT_POLL_MILLISECONDS", "25"),
        ("SIGNUPS_PER_HOUR", "10000"),
        ("DATABASE_POOL_SIZE", "8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    Config::from_lookup(|k| vars.get(k).cloned()).expect("test config")
}

#[allow(dead_code)]
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub db: Db,
    pub backend: Backend,
    pub database: std::sync::Arc<TestDatabase>,
    pub api: Client,
    pub hub: messenger::events::EventHub,
    shutdown: CancellationToken,
    stopped: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let database = std::sync::Arc::new(new_database(backend).await);
    spawn_app_on(database, extra).await
}

/// Another server process on the same database (as a second ECS task would be).
pub async fn spawn_app_on(
    database: std::sync::Arc<TestDatabase>,
    extra: &[(&str, &str)],
) -> TestApp {
    let config = test_config(&database.url, extra);
    let app = Application::build(config)
        .await
        .expect("application builds");
    let port = app.port();
    let db = app.state().db.clone();
    let hub = app.state().events.clone();
    let shutdown = app.shutdown_token();
    let stopped = tokio::spawn(async move {
        let _ = app.run_until_stopped(std::future::pending()).await;
    });
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db,
        backend: database.backend,
        database,
        api: Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        hub,
        shutdown,
        stopped: Some(stopped),
    }
}

/// A user made through the API, with their bearer token.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct ApiUser {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub token: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Stops the server as SIGTERM would, and waits for it.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.stopped.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
    }

    pub async fn sign_up_raw(&self, username: &str, email: &str, password: &str) -> Response {
        self.api
            .post(self.url(&format!(
                "/api/auth/sign-up?username={}",
                urlencode(username)
            )))
            .form(&[
                ("grant_type", "password"),
                ("username", email),
                ("password", password),
            ])
            .send()
            .await
            .unwrap()
    }

    pub async fn sign_in_raw(&self, email: &str, password: &str) -> Response {
        self.api
            .post(self.url("/api/auth/sign-in"))
            .form(&[
                ("grant_type", "password"),
                ("username", email),
                ("password", password),
            ])
            .send()
            .await
            .unwrap()
    }

    /// Signs a user up through the API (`<name>@example.com`, the standard password).
    pub async fn user(&self, username: &str) -> ApiUser {
        let email = format!("{username}@example.com");
        let response = self.sign_up_raw(username, &email, PASSWORD).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "sign-up of {username}"
        );
        let token = response.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let me: Value = self.get(&token, "/api/users/").await.json().await.unwrap();
        ApiUser {
            id: me["user_id"].as_i64().unwrap(),
            username: username.to_string(),
            email,
            token,
        }
    }

    /// One bearer-authenticated API call, with an optional JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.api.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> Response {
        self.call(reqwest::Method::GET, token, path, None).await
    }

    pub async fn post(&self, token: &str, path: &str) -> Response {
        self.call(reqwest::Method::POST, token, path, None).await
    }

    pub async fn post_json(&self, token: &str, path: &str, body: &Value) -> Response {
        self.call(reqwest::Method::POST, token, path, Some(body))
            .await
    }

    pub async fn patch_json(&self, token: &str, path: &str, body: &Value) -> Response {
        self.call(reqwest::Method::PATCH, token, path, Some(body))
            .await
    }

    pub async fn delete(&self, token: &str, path: &str) -> Response {
        self.call(reqwest::Method::DELETE, token, path, None).await
    }

    /// Makes `a` and `b` friends through the API.
    pub async fn befriend(&self, a: &ApiUser, b: &ApiUser) {
        let r = self
            .post(
                &a.token,
                &format!("/api/friends/requests?username={}", b.username),
            )
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "request {} -> {}",
            a.username,
            b.username
        );
        let r = self
            .post(
                &b.token,
                &format!(
                    "/api/friends/requests/accept?requester_username={}",
                    a.username
                ),
            )
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "accept {} -> {}",
            a.username,
            b.username
        );
    }

    pub async fn send_dm(&self, from: &ApiUser, to: &ApiUser, content: &str) -> Response {
        self.post_json(
            &from.token,
            &format!("/api/messages/?addressee_username={}", to.username),
            &serde_json::json!({ "content": content, "group_chat_id": null }),
        )
        .await
    }

    /// Opens `GET /api/events` for a user, optionally resuming after an id.
    pub async fn events(&self, user: &ApiUser, last_event_id: Option<i64>) -> EventStream {
        let mut request = self
            .api_stream_client()
            .get(self.url("/api/events"))
            .bearer_auth(&user.token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        EventStream::new(response)
    }

    fn api_stream_client(&self) -> Client {
        Client::builder().build().unwrap()
    }

    /// A browser-like client: cookies kept, no JavaScript.
    pub fn browser(&self) -> PageClient {
        PageClient {
            client: Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: self.address.clone(),
        }
    }

    /// Waits until this process holds `n` event streams: the server notices a closed
    /// stream a moment after the client drops it.
    pub async fn wait_for_streams(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.hub.stream_count() != n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} streams, not {n}",
                self.hub.stream_count()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Counts rows of a table, straight from the database.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match &self.db {
            Db::MySql(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap(),
            Db::Sqlite(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap(),
        }
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A cookie-keeping client that posts forms as a browser without JavaScript does.
pub struct PageClient {
    pub client: Client,
    pub base: String,
}

impl PageClient {
    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap()
    }

    pub async fn get_html(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.text().await.unwrap()
    }

    /// Posts a form with the CSRF token the page at `token_page` carries.
    pub async fn post_form(
        &self,
        token_page: &str,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Response {
        let html = self.get_html(token_page).await;
        let token = csrf_token(&html);
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf_token", &token));
        self.client
            .post(format!("{}{}", self.base, path))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_raw(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = self
            .client
            .post(format!("{}{}", self.base, path))
            .form(fields);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send().await.unwrap()
    }

    pub async fn sign_up(&self, username: &str) -> Response {
        let email = format!("{username}@example.com");
        self.post_form(
            "/signup",
            "/signup",
            &[
                ("username", username),
                ("email", &email),
                ("password", PASSWORD),
                ("password_again", PASSWORD),
            ],
        )
        .await
    }

    pub async fn sign_in(&self, login: &str, password: &str) -> Response {
        self.post_form(
            "/login",
            "/login",
            &[("login", login), ("password", password)],
        )
        .await
    }
}

pub fn csrf_token(html: &str) -> String {
    let start = html
        .find(r#"name="csrf_token" value=""#)
        .expect("page has a CSRF field")
        + r#"name="csrf_token" value=""#.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

pub fn location(r: &Response) -> String {
    r.headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub id: Option<i64>,
    pub event: String,
    pub data: String,
}

impl Sse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// Reads an event stream frame by frame.
pub struct EventStream {
    response: Response,
    buffer: String,
}

impl EventStream {
    pub fn new(response: Response) -> Self {
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` after `wait` without one or at the end.
    pub async fn next(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let mut sse = Sse {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                let mut has_data = false;
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        sse.id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        sse.event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if has_data {
                            sse.data.push('\n');
                        }
                        sse.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        has_data = true;
                    }
                }
                if has_data || sse.id.is_some() {
                    return Some(sse);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event of one of `kinds`, skipping others.
    pub async fn next_of(&mut self, kinds: &[&str], wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let e = self.next(left).await?;
            if kinds.contains(&e.event.as_str()) {
                return Some(e);
            }
        }
    }

    /// Every event of `kinds` that arrives before the marker: the first event for which
    /// `is_marker` holds. It checks that something did *not* arrive without waiting a
    /// fixed time: a stream delivers its user's events in id order, so an event written
    /// before the marker (which the test causes afterwards) cannot come later. Panics when
    /// no marker comes within 30 s.
    pub async fn until(&mut self, kinds: &[&str], is_marker: impl Fn(&Sse) -> bool) -> Vec<Sse> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(e) = self.next(left).await else {
                panic!("no marker event arrived; before it came {out:?}");
            };
            if is_marker(&e) {
                return out;
            }
            if kinds.contains(&e.event.as_str()) {
                out.push(e);
            }
        }
    }
}

/// Whether `e` is a message event with this content: a marker for [`EventStream::until`].
pub fn message_with(e: &Sse, content: &str) -> bool {
    e.event == "message" && e.json()["content"] == content
}
