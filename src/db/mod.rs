//! The database: SQLite or MySQL, chosen at run time from the URL.
//!
//! Both backends keep their native pools and types (`sqlx::Any` cannot decode MySQL's
//! `DATETIME` or `TINYINT`). Store code writes a query body once inside [`db_run!`],
//! which compiles it for each backend; only dialect differences get per-backend arms.

mod circuit;

use std::{str::FromStr, time::Duration};

use sqlx::{
    mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions},
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
    ConnectOptions,
};

pub use circuit::{is_unreachable, unavailable, Circuit, UNAVAILABLE};

static MYSQL_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mysql");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone, Debug)]
pub enum Db {
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

/// Runs the same body against whichever pool `db` holds: `db_run!(db, |pool| async-expr)`.
/// The body is compiled once per backend, so it may use backend-generic sqlx calls.
#[macro_export]
macro_rules! db_run {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::MySql($pool) => $body,
            $crate::db::Db::Sqlite($pool) => $body,
        }
    };
}

/// The id of the row an `INSERT` just made, in either dialect.
pub trait InsertedId {
    fn inserted_id(&self) -> i64;
    /// The first id of a multi-row `INSERT` (MySQL reports the first, SQLite the last);
    /// only meaningful where [`Db::multi_row_ids_are_consecutive`].
    fn first_inserted_id(&self) -> i64;
}

impl InsertedId for sqlx::mysql::MySqlQueryResult {
    fn inserted_id(&self) -> i64 {
        self.last_insert_id() as i64
    }
    fn first_inserted_id(&self) -> i64 {
        self.last_insert_id() as i64
    }
}

impl InsertedId for sqlx::sqlite::SqliteQueryResult {
    fn inserted_id(&self) -> i64 {
        self.last_insert_rowid()
    }
    fn first_inserted_id(&self) -> i64 {
        self.last_insert_rowid() - self.rows_affected() as i64 + 1
    }
}

/// Why the database could not be reached, in one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("DATABASE_URL: {0}")]
    BadUrl(String),
    #[error("cannot reach the database: {0}")]
    Unreachable(String),
    #[error("migrations failed: {0}")]
    Migrate(String),
}

/// Statements kept prepared per MySQL connection unless configured (`DB_STATEMENT_CACHE`).
pub const DEFAULT_STATEMENT_CACHE: usize = 64;

impl Db {
    /// Opens a pool and checks that the server answers within a few seconds.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, ConnectError> {
        Self::connect_with(url, pool_size, DEFAULT_STATEMENT_CACHE).await
    }

    /// [`Db::connect`], keeping up to `statement_cache` statements prepared per MySQL
    /// connection.
    pub async fn connect_with(
        url: &str,
        pool_size: u32,
        statement_cache: usize,
    ) -> Result<Self, ConnectError> {
        if url.starts_with("mysql:") {
            let options = MySqlConnectOptions::from_str(url)
                .map_err(|e| ConnectError::BadUrl(e.to_string()))?
                .charset("utf8mb4")
                // Prepared statements are held by the server, which allows a fixed number
                // over all connections (`max_prepared_stmt_count`, 16,382 by default): at
                // 512 a connection, two processes of 32 connections each made pages fail
                // with error 1461 under `scripts/bench.sh reads`. The least recently used
                // are closed; the hot ones (a send batch's usual sizes, a page's queries)
                // stay prepared.
                .statement_cache_capacity(statement_cache)
                .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
            let pool = MySqlPoolOptions::new()
                .max_connections(pool_size)
                .acquire_timeout(Duration::from_secs(5))
                // READ COMMITTED: no gap locks, so concurrent inserts into neighbouring key
                // ranges (friendships, lists, events) do not deadlock. Where an operation
                // needs serializing it locks rows explicitly (`SELECT … FOR UPDATE`).
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::Executor::execute(
                            &mut *conn,
                            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                        )
                        .await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await
                .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
            Ok(Db::MySql(pool))
        } else {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| ConnectError::BadUrl(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
            let pool = SqlitePoolOptions::new()
                .max_connections(pool_size)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await
                .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
            Ok(Db::Sqlite(pool))
        }
    }

    /// Applies pending migrations. The first migration creates the original schema with
    /// `IF NOT EXISTS`, so a database the original service made (with its
    /// `alembic_version` table and rows) is adopted: the baseline is recorded as applied
    /// without touching its tables, and only the additive migrations change anything.
    pub async fn migrate(&self) -> Result<(), ConnectError> {
        let result = match self {
            Db::MySql(pool) => MYSQL_MIGRATIONS.run(pool).await,
            Db::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
        };
        result.map_err(|e| ConnectError::Migrate(e.to_string()))
    }

    /// Re-reads `file` every `interval` and, when the password in it changed (a
    /// rotation), gives new MySQL connections the new one. Open connections stay as they
    /// are: MySQL keeps sessions that authenticated with the old password.
    pub fn reload_password_from(
        &self,
        file: std::path::PathBuf,
        interval: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let Db::MySql(pool) = self.clone() else {
            return;
        };
        tokio::spawn(async move {
            let read = |file: &std::path::Path| {
                std::fs::read_to_string(file)
                    .ok()
                    .map(|p| p.trim_end_matches(['\r', '\n']).to_string())
            };
            let mut current = read(&file);
            let mut tick = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                let Some(latest) = read(&file) else {
                    tracing::warn!(file = %file.display(), "cannot read RDS_PASSWORD_FILE; keeping the current password");
                    continue;
                };
                if current.as_deref() != Some(latest.as_str()) {
                    let options = (*pool.connect_options()).clone().password(&latest);
                    pool.set_connect_options(options);
                    tracing::info!("database password changed; new connections use the new one");
                    current = Some(latest);
                }
            }
        });
    }

    /// Whether the rows of one multi-row `INSERT … VALUES` get consecutive auto-increment
    /// ids, so that the ids can be known without reading them back. SQLite has one writer
    /// at a time, so they do. InnoDB guarantees it for such "simple inserts" in the
    /// traditional and consecutive lock modes (0 and 1, MariaDB's default) with an
    /// increment of 1; in interleaved mode (2, MySQL 8's default) it does not promise it,
    /// so there every row is inserted on its own.
    pub async fn multi_row_ids_are_consecutive(&self) -> Result<bool, sqlx::Error> {
        match self {
            Db::Sqlite(_) => Ok(true),
            Db::MySql(pool) => {
                let (mode, increment): (i64, i64) = sqlx::query_as(
                    "SELECT CAST(@@innodb_autoinc_lock_mode AS SIGNED), CAST(@@auto_increment_increment AS SIGNED)",
                )
                .fetch_one(pool)
                .await?;
                Ok(matches!(mode, 0 | 1) && increment == 1)
            }
        }
    }

    /// A round trip to the server, for `/health`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        db_run!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ()))
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Db::MySql(_) => "mysql",
            Db::Sqlite(_) => "sqlite",
        }
    }

    /// Whether [`Db::close`] was called.
    pub fn is_closed(&self) -> bool {
        db_run!(self, |pool| pool.is_closed())
    }

    pub async fn close(&self) {
        db_run!(self, |pool| pool.close().await)
    }
}

/// Errors after which the whole transaction may simply run again.
pub trait Retryable {
    fn should_retry(&self) -> bool;
}

impl Retryable for sqlx::Error {
    /// MySQL 1213 (deadlock) and 1205 (lock wait timeout): the transaction was rolled back.
    /// By error number: the message text is translated when `lc_messages` is not English.
    fn should_retry(&self) -> bool {
        matches!(self, sqlx::Error::Database(d)
            if d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .is_some_and(|e| matches!(e.number(), 1205 | 1213)))
    }
}

impl Retryable for crate::error::AppError {
    fn should_retry(&self) -> bool {
        match self {
            crate::error::AppError::Internal(e) => e
                .downcast_ref::<sqlx::Error>()
                .is_some_and(Retryable::should_retry),
            _ => false,
        }
    }
}

/// Whether an error is a unique-key violation (a lost race for a row that exists once).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// The current time as the database stores it: UTC, microsecond precision.
pub fn now() -> time::PrimitiveDateTime {
    let now = time::OffsetDateTime::now_utc();
    let micros = now.microsecond();
    let now = now
        .replace_microsecond(micros)
        .expect("microsecond in range");
    time::PrimitiveDateTime::new(now.date(), now.time())
}

/// Runs `body` in a write transaction of whichever backend `db` holds, binding the open
/// transaction to `tx`: `db_tx!(db, |tx| { …; Ok(value) })`. An early return (`?`) rolls
/// back. SQLite's transaction takes the write lock at once (`BEGIN IMMEDIATE`), so two
/// read-then-write transactions queue on the busy timeout instead of failing.
#[macro_export]
macro_rules! db_tx {
    ($db:expr, |$tx:ident| $body:expr) => {
        match $db {
            // A deadlock or lock wait timeout (MySQL rolls the transaction back) is retried
            // twice; every other error, and any early return, goes to the caller.
            $crate::db::Db::MySql(pool) => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let result = async {
                        #[allow(unused_mut)]
                        let mut $tx = pool.begin().await?;
                        let value = $body;
                        $tx.commit().await?;
                        value
                    }
                    .await;
                    match result {
                        Err(e) if attempt < 3 && $crate::db::Retryable::should_retry(&e) => {
                            tracing::debug!(attempt, "transaction deadlocked; retrying");
                            continue;
                        }
                        other => break other,
                    }
                }
            }
            $crate::db::Db::Sqlite(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let value = $body;
                $tx.commit().await?;
                value
            }
        }
    };
}

/// ISO 8601 with microseconds, as the API writes times (UTC, no offset, as the original).
pub fn format_time(t: time::PrimitiveDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
    );
    t.format(&format).unwrap_or_default()
}

/// Serde helpers for `PrimitiveDateTime` fields in API responses.
pub mod serde_time {
    use serde::{Deserialize, Deserializer, Serializer};

    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
    );

    pub fn serialize<S: Serializer>(t: &time::PrimitiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<time::PrimitiveDateTime, D::Error> {
        let raw = String::deserialize(d)?;
        time::PrimitiveDateTime::parse(&raw, FORMAT).map_err(serde::de::Error::custom)
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<time::PrimitiveDateTime>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(raw) => time::PrimitiveDateTime::parse(&raw, super::FORMAT)
                    .map(Some)
                    .map_err(serde::de::Error::custom),
            }
        }

        pub fn serialize<S: Serializer>(
            t: &Option<time::PrimitiveDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&super::super::format_time(*t)),
                None => s.serialize_none(),
            }
        }
    }
}
