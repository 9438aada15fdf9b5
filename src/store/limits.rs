//! Rate limits that hold across every process sharing the database: the generic cell
//! rate algorithm (GCRA) with one row per limited key. A key allows `burst` requests at
//! once and then one per `interval`; its row holds the theoretical arrival time (TAT) of
//! the next request. An allowed request is one `UPDATE` of one primary-key row (two
//! statements the first time a key is seen); a refused one reads the TAT back to say
//! when to retry.

use std::time::Duration;

use crate::{db::Db, db_run, error::AppResult};

/// How often a key may be used: `burst` at once, then one every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub interval: Duration,
}

impl Rate {
    /// `n` per `period`, all of them at once if need be.
    pub fn per(n: u32, period: Duration) -> Self {
        let n = n.max(1);
        Self {
            burst: n,
            interval: period / n,
        }
    }
}

/// Counts one request against `key`: `Ok(None)` when allowed, `Ok(Some(wait))` when the
/// key is over its rate, with how long until the next request would be allowed.
pub async fn take(db: &Db, key: &str, rate: Rate, now_ms: i64) -> AppResult<Option<Duration>> {
    let interval = rate.interval.as_millis().max(1) as i64;
    // A request is allowed while the TAT is at most this far ahead of now.
    let tolerance = interval * (i64::from(rate.burst) - 1);
    for _ in 0..2 {
        if advance(db, key, now_ms, interval, tolerance).await? {
            return Ok(None);
        }
        if first_use(db, key, now_ms + interval).await? {
            return Ok(None);
        }
        // The row exists: either the key is over its rate, or another process inserted
        // it between the two statements (then the second round's UPDATE decides).
        let Some(tat) = tat(db, key).await? else {
            continue;
        };
        let wait = tat - now_ms - tolerance;
        if wait > 0 {
            return Ok(Some(Duration::from_millis(wait as u64)));
        }
    }
    // Two lost races in a row: let the request through rather than refuse it wrongly.
    Ok(None)
}

/// Moves the key's TAT on by one interval if that keeps it within the tolerance.
async fn advance(db: &Db, key: &str, now: i64, interval: i64, tolerance: i64) -> AppResult<bool> {
    // The two-argument maximum is GREATEST in MySQL and MAX in SQLite.
    let greatest = match db {
        Db::MySql(_) => "GREATEST",
        Db::Sqlite(_) => "MAX",
    };
    let sql = format!(
        "UPDATE rate_limit SET tat_ms = {greatest}(tat_ms, ?) + ? \
         WHERE limit_key = ? AND {greatest}(tat_ms, ?) - ? <= ?"
    );
    let updated = db_run!(db, |pool| {
        sqlx::query(&sql)
            .bind(now)
            .bind(interval)
            .bind(key)
            .bind(now)
            .bind(now)
            .bind(tolerance)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(updated == 1)
}

/// Makes the key's row with its first request counted; false when it exists already.
async fn first_use(db: &Db, key: &str, tat: i64) -> AppResult<bool> {
    let sql = match db {
        Db::MySql(_) => "INSERT IGNORE INTO rate_limit (limit_key, tat_ms) VALUES (?, ?)",
        Db::Sqlite(_) => "INSERT OR IGNORE INTO rate_limit (limit_key, tat_ms) VALUES (?, ?)",
    };
    let inserted = db_run!(db, |pool| {
        sqlx::query(sql)
            .bind(key)
            .bind(tat)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(inserted == 1)
}

async fn tat(db: &Db, key: &str) -> AppResult<Option<i64>> {
    Ok(db_run!(db, |pool| {
        sqlx::query_scalar("SELECT tat_ms FROM rate_limit WHERE limit_key = ?")
            .bind(key)
            .fetch_optional(pool)
            .await
    })?)
}

/// Deletes the rows of keys back at their full allowance (TAT in the past), which mean
/// the same as no row. Any process may run it; it is idempotent.
pub async fn forget_idle(db: &Db, now_ms: i64) -> AppResult<u64> {
    Ok(db_run!(db, |pool| {
        sqlx::query("DELETE FROM rate_limit WHERE tat_ms < ?")
            .bind(now_ms)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?)
}
