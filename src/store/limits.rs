//! Rate limits that hold across every process sharing the database: the generic cell
//! rate algorithm (GCRA) with one row per limited key. A key allows `burst` requests at
//! once and then one per `interval`; its row holds the theoretical arrival time (TAT) of
//! the next request. An allowed request is one `UPDATE` of one primary-key row (two
//! statements the first time a key is seen); a refused one reads the TAT back to say
//! when to retry.

use std::{collections::HashMap, time::Duration};

use sqlx::QueryBuilder;

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

impl Rate {
    fn interval_ms(self) -> i64 {
        self.interval.as_millis().max(1) as i64
    }

    /// How far ahead of now a key's TAT may be for a request to be allowed.
    fn tolerance_ms(self) -> i64 {
        self.interval_ms() * (i64::from(self.burst) - 1)
    }

    /// One request at `now` against a key whose TAT is `tat` (`now` for a key with no
    /// row): the new TAT when allowed, else how long until it would be.
    fn step(self, tat: i64, now: i64) -> Result<i64, Duration> {
        let from = tat.max(now);
        let wait = from - now - self.tolerance_ms();
        if wait > 0 {
            Err(Duration::from_millis(wait as u64))
        } else {
            Ok(from + self.interval_ms())
        }
    }
}

/// Counts requests inside a transaction the caller already holds, for limits checked
/// where the work is written (sends, in their batch's transaction): one read of the
/// keys' rows and one write of the new TATs for the whole batch, and the counts commit
/// or roll back with the work.
pub trait Ledger {
    /// Counts one request per entry of `keys`, in order (a key may repeat); answers, for
    /// each, `None` when allowed or how long until it would be.
    fn take_each(
        &mut self,
        keys: &[&str],
        rate: Rate,
        now_ms: i64,
    ) -> impl std::future::Future<Output = Result<Vec<Option<Duration>>, sqlx::Error>> + Send;
}

/// The requests' answers and the keys' new TATs, given each key's stored TAT.
fn count_in_order(
    keys: &[&str],
    stored: &HashMap<String, i64>,
    rate: Rate,
    now: i64,
) -> (Vec<Option<Duration>>, Vec<(String, i64)>) {
    let mut tats: HashMap<&str, i64> = HashMap::new();
    let answers = keys
        .iter()
        .map(|&key| {
            let tat = tats
                .get(key)
                .or_else(|| stored.get(key))
                .copied()
                .unwrap_or(now);
            match rate.step(tat, now) {
                Ok(next) => {
                    tats.insert(key, next);
                    None
                }
                Err(wait) => Some(wait),
            }
        })
        .collect();
    let mut changed: Vec<(String, i64)> =
        tats.into_iter().map(|(k, t)| (k.to_string(), t)).collect();
    changed.sort_unstable();
    (answers, changed)
}

/// Reads (and, with `$lock`, locks) the rows of `keys` that exist: key → TAT.
macro_rules! lock_rows {
    ($conn:expr, $keys:expr, $lock:literal) => {{
        let mut read =
            QueryBuilder::new("SELECT limit_key, tat_ms FROM rate_limit WHERE limit_key IN (");
        let mut list = read.separated(", ");
        for key in $keys {
            list.push_bind(*key);
        }
        read.push(")");
        read.push($lock);
        // Keys are read as bytes: MySQL reports a binary-collated column as BINARY.
        let rows: Vec<(Vec<u8>, i64)> = read.build_query_as().fetch_all(&mut *$conn).await?;
        rows.into_iter()
            .map(|(key, tat)| (String::from_utf8_lossy(&key).into_owned(), tat))
            .collect::<HashMap<String, i64>>()
    }};
}

macro_rules! impl_ledger {
    ($conn:ty, $claim:literal, $lock:literal, $upsert:literal) => {
        impl Ledger for $conn {
            async fn take_each(
                &mut self,
                keys: &[&str],
                rate: Rate,
                now_ms: i64,
            ) -> Result<Vec<Option<Duration>>, sqlx::Error> {
                if keys.is_empty() {
                    return Ok(Vec::new());
                }
                let mut distinct: Vec<&str> = keys.to_vec();
                // Sorted, so that two processes lock the same rows in the same order.
                distinct.sort_unstable();
                distinct.dedup();
                // The keys' rows, locked for this transaction. A key seen before (the
                // usual case) has its row: one statement.
                let mut stored = lock_rows!(self, &distinct, $lock);
                let missing: Vec<&str> = distinct
                    .iter()
                    .copied()
                    .filter(|key| !stored.contains_key(*key))
                    .collect();
                if !missing.is_empty() {
                    // A row that did not exist could not be locked by the read: each missing
                    // key gets its row first (or waits for the one another process is
                    // inserting), then is read locked, so that two processes never both
                    // count from nothing. A TAT of 0 means a full allowance.
                    let mut ensure =
                        QueryBuilder::new("INSERT INTO rate_limit (limit_key, tat_ms) ");
                    ensure.push_values(&missing, |mut row, key| {
                        row.push_bind(*key).push_bind(0_i64);
                    });
                    ensure.push($claim);
                    ensure.build().execute(&mut *self).await?;
                    stored.extend(lock_rows!(self, &missing, $lock));
                }
                let (answers, changed) = count_in_order(keys, &stored, rate, now_ms);
                if !changed.is_empty() {
                    let mut write =
                        QueryBuilder::new("INSERT INTO rate_limit (limit_key, tat_ms) ");
                    write.push_values(&changed, |mut row, (key, tat)| {
                        row.push_bind(key.as_str()).push_bind(*tat);
                    });
                    write.push($upsert);
                    write.build().execute(&mut *self).await?;
                }
                Ok(answers)
            }
        }
    };
}

// MySQL: the no-op update takes the row's exclusive lock whether it was there or not.
impl_ledger!(
    sqlx::MySqlConnection,
    " ON DUPLICATE KEY UPDATE tat_ms = tat_ms",
    " ORDER BY limit_key FOR UPDATE",
    " ON DUPLICATE KEY UPDATE tat_ms = VALUES(tat_ms)"
);
// SQLite's write transactions (BEGIN IMMEDIATE) already exclude every other writer.
impl_ledger!(
    sqlx::SqliteConnection,
    " ON CONFLICT (limit_key) DO NOTHING",
    "",
    " ON CONFLICT (limit_key) DO UPDATE SET tat_ms = excluded.tat_ms"
);

/// The row key of `subject` under the limit `name`: hashed, so that a key has a fixed
/// length and the table holds no addresses or logins in the clear.
pub fn key(name: &str, subject: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("{name}:{subject}")))
}

/// Counts one request against `key`: `Ok(None)` when allowed, `Ok(Some(wait))` when the
/// key is over its rate, with how long until the next request would be allowed.
pub async fn take(db: &Db, key: &str, rate: Rate, now_ms: i64) -> AppResult<Option<Duration>> {
    let (interval, tolerance) = (rate.interval_ms(), rate.tolerance_ms());
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
        if let Err(wait) = rate.step(tat, now_ms) {
            return Ok(Some(wait));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_counts_each_request_in_order_and_refuses_past_the_burst() {
        let rate = Rate::per(3, Duration::from_secs(60)); // one every 20 s, 3 at once
        let stored = HashMap::from([("b".to_string(), 1_000 + 40_000)]); // b: one left
        let (answers, changed) =
            count_in_order(&["a", "b", "a", "a", "b", "a"], &stored, rate, 1_000);
        let allowed: Vec<bool> = answers.iter().map(Option::is_none).collect();
        assert_eq!(allowed, [true, true, true, true, false, false]);
        // b's refusal says when: its TAT (61 s) less the tolerance (40 s), from now.
        assert_eq!(answers[4], Some(Duration::from_secs(20)));
        assert_eq!(changed, [("a".into(), 61_000), ("b".into(), 61_000)]);
    }
}
