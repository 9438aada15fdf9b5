//! Failing fast while the database is down.
//!
//! Without this, every request that needs the database during an outage waits the pool's
//! acquire timeout (5 s) before its 503, and the send queue stalls behind each such wait.
//! A watchdog pings a MySQL server twice a second (a SQLite file does not go away); when
//! the ping fails and the server does not take a connection of its own either (so it is
//! down, not merely busy), the circuit opens. While it is open, sends and session loads
//! are refused at once with 503, and those already waiting for a connection give up; the
//! watchdog goes on pinging and closes the circuit once the server answers. Nothing waits
//! for a request to find out that the database is back.

use std::{future::Future, sync::Arc, time::Duration};

use sqlx::ConnectOptions;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::Db;
use crate::error::AppError;

/// How often a healthy database is pinged.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// How often a database known to be down is pinged.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// How long a ping through the pool may take before the server is asked for a
/// connection of its own, and how long that may take. A server that refuses connections
/// (stopped) is found at once; these bound a server that does not answer at all.
const PING_TIMEOUT: Duration = Duration::from_millis(750);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// What a caller is told while the database cannot be reached (the pages show it too).
pub const UNAVAILABLE: &str = "The server can't save right now. Please try again in a moment.";

/// Whether the database is known to be down; cheap to clone, one per process.
#[derive(Clone)]
pub struct Circuit {
    inner: Arc<Inner>,
}

struct Inner {
    /// `true` while the database is known to be down.
    open: watch::Sender<bool>,
    check_now: Notify,
}

impl Circuit {
    /// Starts watching `db` until `shutdown`.
    pub fn start(db: Db, shutdown: CancellationToken) -> Self {
        let circuit = Self {
            inner: Arc::new(Inner {
                open: watch::Sender::new(false),
                check_now: Notify::new(),
            }),
        };
        if matches!(db, Db::MySql(_)) {
            tokio::spawn(circuit.clone().watch(db, shutdown));
        }
        circuit
    }

    /// Whether the database is known to be down.
    pub fn is_open(&self) -> bool {
        *self.inner.open.borrow()
    }

    /// 503 while the database is known to be down.
    pub fn check(&self) -> Result<(), AppError> {
        if self.is_open() {
            Err(unavailable())
        } else {
            Ok(())
        }
    }

    /// Completes when the circuit is (or becomes) open.
    pub async fn opened(&self) {
        let mut open = self.inner.open.subscribe();
        // The sender lives as long as `self`, so this only returns once open.
        let _ = open.wait_for(|open| *open).await;
    }

    /// Runs `work`, unless the database is known to be down or found to be down before
    /// `work` completes: then 503 at once.
    pub async fn guard<T>(
        &self,
        work: impl Future<Output = Result<T, AppError>>,
    ) -> Result<T, AppError> {
        self.check()?;
        tokio::select! {
            result = work => result,
            _ = self.opened() => Err(unavailable()),
        }
    }

    /// Asks the watchdog to check the database now (a connection just failed).
    pub fn suspect(&self) {
        self.inner.check_now.notify_one();
    }

    async fn watch(self, db: Db, shutdown: CancellationToken) {
        loop {
            let open = self.is_open();
            tokio::select! {
                _ = tokio::time::sleep(if open { PROBE_INTERVAL } else { WATCH_INTERVAL }) => {}
                _ = self.inner.check_now.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            if db.is_closed() {
                return;
            }
            let reachable = reachable(&db).await;
            if reachable == open {
                self.inner.open.send_replace(!reachable);
                if reachable {
                    tracing::info!("database reachable again");
                } else {
                    tracing::error!("database unreachable: refusing writes until it answers");
                }
            }
        }
    }
}

/// 503 with the text pages and API clients are shown while the database is down.
pub fn unavailable() -> AppError {
    AppError::Unavailable(UNAVAILABLE.into())
}

/// Whether the server answers: a ping through the pool, or when that fails (the pool may
/// just be busy), a connection of its own.
async fn reachable(db: &Db) -> bool {
    if let Ok(Ok(())) = tokio::time::timeout(PING_TIMEOUT, db.ping()).await {
        return true;
    }
    let Db::MySql(pool) = db else {
        return true;
    };
    let options = pool.connect_options();
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(connection)) => {
            let _ = sqlx::Connection::close(connection).await;
            true
        }
        _ => false,
    }
}

/// Whether an error says the database could not be reached (no connection, a connection
/// lost, the server shutting down), as opposed to a statement it refused.
pub fn is_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 is "connection exception" (MySQL's 1053, server shutdown, is
        // 08S01); MariaDB reports a killed connection (1927) as 70100.
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|code| code.starts_with("08") || code == "70100"),
        _ => false,
    }
}
