//! HTTP helpers: the API base URL, error messages, signed-in users and the set-up every
//! mode shares (sign-up, friendships).

use std::{
    fmt::Write as _,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context as _, Result};
use futures_util::{stream, StreamExt, TryStreamExt};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde_json::Value;

pub const RATE_LIMIT_HINT: &str =
    "hint: the server rate-limits sign-ups (SIGNUPS_PER_HOUR, default 20 per IP) and \
sign-ins (LOGIN_ATTEMPTS_PER_MINUTE, default 10 per account) and messages (SENDS_PER_MINUTE, \
default 600 per user); for load runs start it with SIGNUPS_PER_HOUR=1000000 \
LOGIN_ATTEMPTS_PER_MINUTE=1000000 SENDS_PER_MINUTE=1000000 (see docs/loadtest.md)";

#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(client: reqwest::Client, base: &str) -> Self {
        Self {
            client,
            base: base.trim_end_matches('/').to_string(),
        }
    }
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// A pooled client for everything but the event streams.
pub fn http_client(pool: usize, timeout: Option<Duration>) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .pool_max_idle_per_host(pool)
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    Ok(b.build()?)
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
}

/// Turns a non-2xx response into an error naming the request, the status and `detail`.
pub async fn expect_ok(resp: Response, what: &str) -> Result<Response> {
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

/// A failed request during the timed part, as one line to count by kind.
pub async fn status_error(resp: Response) -> String {
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

pub fn short_error(e: &reqwest::Error) -> String {
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

pub struct User {
    pub username: String,
    email: String,
    token: Mutex<String>,
    refreshing: tokio::sync::Mutex<()>,
}

impl User {
    pub fn new(username: String, email: String, token: String) -> Self {
        Self {
            username,
            email,
            token: Mutex::new(token),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn token(&self) -> String {
        self.token.lock().unwrap().clone()
    }

    /// Signs in again after a 401 (tokens last 30 minutes), unless another task already did.
    pub async fn refresh(&self, api: &Api, password: &str, stale: &str) -> Result<()> {
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
pub async fn authed(
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

pub async fn check_health(api: &Api) -> Result<()> {
    let resp = api
        .client
        .get(api.url("/health"))
        .send()
        .await
        .with_context(|| format!("server not reachable at {}", api.base))?;
    expect_ok(resp, &format!("GET {}/health", api.base)).await?;
    Ok(())
}

/// Signs up users `lt{run}u0` .. `lt{run}u{n-1}`, `concurrency` at a time.
pub async fn create_users(
    api: &Api,
    run: &str,
    n: usize,
    password: &str,
    concurrency: usize,
) -> Result<Vec<Arc<User>>> {
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
                        ("password", password),
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
                Ok::<_, anyhow::Error>(Arc::new(User::new(username, email, body.access_token)))
            }
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok(users)
}

/// Makes user `2k` and user `2k+1` friends: a request and its acceptance.
pub async fn befriend_pairs(api: &Api, password: &str, users: &[Arc<User>]) -> Result<()> {
    let pairs = users.len() / 2;
    eprintln!("making {pairs} friendships...");
    stream::iter(0..pairs)
        .map(|k| async move {
            let (a, b) = (&users[2 * k], &users[2 * k + 1]);
            let resp = authed(api, password, a, |t| {
                api.client
                    .post(api.url("/api/friends/requests"))
                    .query(&[("username", &b.username)])
                    .bearer_auth(t)
            })
            .await
            .map_err(|e| anyhow!("POST /api/friends/requests: {e}"))?;
            expect_ok(resp, "POST /api/friends/requests").await?;
            let resp = authed(api, password, b, |t| {
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
