//! Health for the load balancer and the container: `/health` answers from the last
//! database check, which a background task makes at most once a second, so a probe costs
//! no database round trip however often it comes; `/health/live` only says the process
//! answers (it never touches the database).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use tokio_util::sync::CancellationToken;

use crate::db::Db;

/// How often the database is checked.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// A result older than this no longer counts: the checking task is stuck or gone.
pub const STALE_AFTER: Duration = Duration::from_secs(3);

const HEALTHY: &str = r#"{"health":"Everything OK!"}"#;
const UNREACHABLE: &str = r#"{"health":"unavailable","detail":"database unreachable"}"#;
const TIMED_OUT: &str = r#"{"health":"unavailable","detail":"database did not answer within 2 s"}"#;
const STALE: &str = r#"{"health":"unavailable","detail":"no database check in the last 3 s"}"#;
const ALIVE: &str = r#"{"health":"alive"}"#;

/// The outcome of the last check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Healthy = 1,
    Unreachable = 2,
    TimedOut = 3,
}

/// The last check, readable without a lock: when it finished (milliseconds since
/// `started`) and its outcome, in one atomic word.
#[derive(Clone)]
pub struct Health {
    started: Instant,
    last: Arc<AtomicU64>,
}

impl Health {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Checks the database once, then keeps checking it every [`INTERVAL`] until
    /// `shutdown`.
    pub async fn start(db: Db, shutdown: CancellationToken) -> Self {
        let health = Self::new();
        health.record(check(&db).await);
        let checker = health.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => checker.record(check(&db).await),
                    _ = shutdown.cancelled() => return,
                }
            }
        });
        health
    }

    fn record(&self, outcome: Outcome) {
        let at = self.started.elapsed().as_millis() as u64;
        self.last.store(at << 2 | outcome as u64, Ordering::Release);
    }

    /// The body and status `/health` answers now.
    fn answer(&self, now: Instant) -> (StatusCode, &'static str) {
        let last = self.last.load(Ordering::Acquire);
        let at = self.started + Duration::from_millis(last >> 2);
        let body = match last & 3 {
            _ if now.saturating_duration_since(at) > STALE_AFTER => STALE,
            1 => return (StatusCode::OK, HEALTHY),
            3 => TIMED_OUT,
            2 => UNREACHABLE,
            _ => STALE,
        };
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }

    /// `GET /health`: 200 when the last check, at most 3 s old, reached the database;
    /// else 503 with the reason. The load balancer then stops sending traffic here.
    pub fn respond(&self) -> Response {
        let (status, body) = self.answer(Instant::now());
        json(status, body)
    }
}

/// `GET /health/live`: the process answers; for a liveness probe that must not restart a
/// healthy process because its database is down.
pub fn live() -> Response {
    json(StatusCode::OK, ALIVE)
}

fn json(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn check(db: &Db) -> Outcome {
    match tokio::time::timeout(CHECK_TIMEOUT, db.ping()).await {
        Ok(Ok(())) => Outcome::Healthy,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: database error");
            Outcome::Unreachable
        }
        Err(_) => {
            tracing::warn!("health check: the database did not answer within 2 s");
            Outcome::TimedOut
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_follows_the_last_check_until_it_is_stale() {
        let health = Health::new();
        let now = Instant::now();
        assert_eq!(
            health.answer(now).0,
            StatusCode::SERVICE_UNAVAILABLE,
            "never checked"
        );
        health.record(Outcome::Healthy);
        assert_eq!(health.answer(now), (StatusCode::OK, HEALTHY));
        assert_eq!(
            health.answer(now + Duration::from_millis(2900)),
            (StatusCode::OK, HEALTHY)
        );
        assert_eq!(
            health.answer(now + Duration::from_millis(3100)),
            (StatusCode::SERVICE_UNAVAILABLE, STALE)
        );
        health.record(Outcome::TimedOut);
        assert_eq!(
            health.answer(Instant::now()),
            (StatusCode::SERVICE_UNAVAILABLE, TIMED_OUT)
        );
        health.record(Outcome::Unreachable);
        assert_eq!(
            health.answer(Instant::now()),
            (StatusCode::SERVICE_UNAVAILABLE, UNREACHABLE)
        );
        for body in [HEALTHY, UNREACHABLE, TIMED_OUT, STALE, ALIVE] {
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(json["health"].is_string(), "{body}");
        }
    }
}
