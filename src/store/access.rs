//! Accounts an operator disabled or signed out everywhere (`account_access`), and the
//! operator's view of the database: every account, and how much is stored.

use sqlx::FromRow;
use time::PrimitiveDateTime;

use super::users::UserId;
use crate::{db::Db, db_run};

/// What an operator decided about one account.
#[derive(Debug, Clone, FromRow)]
pub struct AccessRow {
    pub user_id: UserId,
    pub disabled_at: Option<PrimitiveDateTime>,
    /// Unix seconds: bearer tokens issued up to this second are refused.
    pub signed_out_at: i64,
}

/// Every account an operator acted on (a handful: the table has no other rows).
pub async fn all(db: &Db) -> Result<Vec<AccessRow>, sqlx::Error> {
    db_run!(db, |pool| sqlx::query_as::<_, AccessRow>(
        "SELECT user_id, disabled_at, signed_out_at FROM account_access"
    )
    .fetch_all(pool)
    .await)
}

pub async fn is_disabled(db: &Db, user_id: UserId) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = db_run!(db, |pool| sqlx::query_scalar(
        "SELECT 1 FROM account_access WHERE user_id = ? AND disabled_at IS NOT NULL"
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await)?;
    Ok(found.is_some())
}

/// Refuses every bearer token issued up to `at` (Unix seconds), and with `disable` the
/// account itself from `now` on (an account already disabled keeps its first date).
pub async fn sign_out_everywhere(
    db: &Db,
    user_id: UserId,
    disable: bool,
    now: PrimitiveDateTime,
    at: i64,
) -> Result<(), sqlx::Error> {
    let disabled_at = disable.then_some(now);
    match db {
        Db::MySql(pool) => sqlx::query(
            "INSERT INTO account_access (user_id, disabled_at, signed_out_at) VALUES (?, ?, ?) \
             ON DUPLICATE KEY UPDATE disabled_at = COALESCE(disabled_at, VALUES(disabled_at)), \
             signed_out_at = VALUES(signed_out_at)",
        )
        .bind(user_id)
        .bind(disabled_at)
        .bind(at)
        .execute(pool)
        .await
        .map(|_| ()),
        Db::Sqlite(pool) => sqlx::query(
            "INSERT INTO account_access (user_id, disabled_at, signed_out_at) VALUES (?, ?, ?) \
             ON CONFLICT (user_id) DO UPDATE SET \
             disabled_at = COALESCE(account_access.disabled_at, excluded.disabled_at), \
             signed_out_at = excluded.signed_out_at",
        )
        .bind(user_id)
        .bind(disabled_at)
        .bind(at)
        .execute(pool)
        .await
        .map(|_| ()),
    }
}

/// Lets a disabled account sign in again; `false` when it was not disabled. Tokens from
/// before it was disabled stay refused (`signed_out_at` is kept).
pub async fn enable(db: &Db, user_id: UserId) -> Result<bool, sqlx::Error> {
    db_run!(db, |pool| {
        sqlx::query(
        "UPDATE account_access SET disabled_at = NULL WHERE user_id = ? AND disabled_at IS NOT NULL"
    )
    .bind(user_id)
    .execute(pool)
    .await
    .map(|r| r.rows_affected() > 0)
    })
}

/// Deletes every page session of `user_id` (the `browser_session` rows, keyed by user).
pub async fn delete_sessions_of(db: &Db, user_id: UserId) -> Result<u64, sqlx::Error> {
    super::sessions::delete_all_but(db, user_id, None).await
}

/// One account as `messenger admin list-users` shows it.
#[derive(Debug, Clone, FromRow)]
pub struct AccountLine {
    pub user_id: UserId,
    pub username: String,
    pub email: String,
    pub disabled_at: Option<PrimitiveDateTime>,
}

pub async fn accounts(db: &Db) -> Result<Vec<AccountLine>, sqlx::Error> {
    db_run!(db, |pool| sqlx::query_as::<_, AccountLine>(
        "SELECT u.user_id, u.username, u.email, a.disabled_at FROM user u \
         LEFT JOIN account_access a ON a.user_id = u.user_id ORDER BY u.user_id"
    )
    .fetch_all(pool)
    .await)
}

/// How much the database holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub users: i64,
    pub disabled_users: i64,
    pub messages: i64,
    pub events: i64,
    pub sessions: i64,
}

pub async fn counts(db: &Db) -> Result<Counts, sqlx::Error> {
    let (users, disabled_users, messages, events, sessions): (i64, i64, i64, i64, i64) =
        db_run!(db, |pool| sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM user), \
             (SELECT COUNT(*) FROM account_access WHERE disabled_at IS NOT NULL), \
             (SELECT COUNT(*) FROM message), (SELECT COUNT(*) FROM event), \
             (SELECT COUNT(*) FROM browser_session)"
        )
        .fetch_one(pool)
        .await)?;
    Ok(Counts {
        users,
        disabled_users,
        messages,
        events,
        sessions,
    })
}
