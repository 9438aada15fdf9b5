//! Personal API tokens: one row per token, holding the SHA-256 of its secret (shown to its
//! owner once, at creation), its scope, optional expiry and when it was last used.

use serde::Serialize;
use sqlx::FromRow;
use time::PrimitiveDateTime;

use super::users::UserId;
use crate::{
    db::{self, Db, InsertedId},
    db_run,
};

/// The most tokens one user may hold.
pub const MAX_PER_USER: i64 = 50;

#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub token_id: i32,
    #[serde(skip)]
    pub user_id: UserId,
    pub name: String,
    /// `read` or `read_write`.
    pub scope: String,
    #[serde(with = "db::serde_time")]
    #[schema(value_type = String, example = "2025-01-31T09:30:00.123456")]
    pub created_date_time: PrimitiveDateTime,
    #[serde(with = "db::serde_time::option")]
    #[schema(value_type = Option<String>, example = "2025-01-31T09:30:00.123456")]
    pub expires_date_time: Option<PrimitiveDateTime>,
    #[serde(with = "db::serde_time::option")]
    #[schema(value_type = Option<String>, example = "2025-01-31T09:30:00.123456")]
    pub last_used_date_time: Option<PrimitiveDateTime>,
}

const COLUMNS: &str = "token_id, user_id, name, scope, created_date_time, expires_date_time, \
     last_used_date_time";

/// Stores a new token; `None` when the user has the most tokens already.
pub async fn create(
    db: &Db,
    user_id: UserId,
    name: &str,
    scope: &str,
    token_hash: &str,
    expires: Option<PrimitiveDateTime>,
) -> Result<Option<ApiToken>, sqlx::Error> {
    let held: i64 = db_run!(db, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM api_token WHERE user_id = ?")
            .bind(user_id)
            .fetch_one(pool)
            .await
    })?;
    if held >= MAX_PER_USER {
        return Ok(None);
    }
    let now = db::now();
    let token_id = db_run!(db, |pool| {
        sqlx::query(
            "INSERT INTO api_token (user_id, name, token_hash, scope, created_date_time, expires_date_time) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(scope)
        .bind(now)
        .bind(expires)
        .execute(pool)
        .await
        .map(|r| r.inserted_id())
    })?;
    Ok(Some(ApiToken {
        token_id: token_id as i32,
        user_id,
        name: name.to_string(),
        scope: scope.to_string(),
        created_date_time: now,
        expires_date_time: expires,
        last_used_date_time: None,
    }))
}

/// The user's tokens, newest first.
pub async fn for_user(db: &Db, user_id: UserId) -> Result<Vec<ApiToken>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM api_token WHERE user_id = ? ORDER BY token_id DESC");
    db_run!(db, |pool| sqlx::query_as::<_, ApiToken>(&sql)
        .bind(user_id)
        .fetch_all(pool)
        .await)
}

/// The unexpired token with this hash.
pub async fn by_hash(db: &Db, token_hash: &str) -> Result<Option<ApiToken>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_token WHERE token_hash = ? \
         AND (expires_date_time IS NULL OR expires_date_time > ?)"
    );
    db_run!(db, |pool| sqlx::query_as::<_, ApiToken>(&sql)
        .bind(token_hash)
        .bind(db::now())
        .fetch_optional(pool)
        .await)
}

/// Records a use, at most once a minute per token (a script polling every second costs
/// one write a minute).
pub async fn mark_used(db: &Db, token_id: i32) -> Result<(), sqlx::Error> {
    let now = db::now();
    let a_minute_ago = now - time::Duration::minutes(1);
    db_run!(db, |pool| {
        sqlx::query(
            "UPDATE api_token SET last_used_date_time = ? WHERE token_id = ? \
             AND (last_used_date_time IS NULL OR last_used_date_time < ?)",
        )
        .bind(now)
        .bind(token_id)
        .bind(a_minute_ago)
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// Revokes one of the user's tokens; false when they have no such token.
pub async fn revoke(db: &Db, user_id: UserId, token_id: i32) -> Result<bool, sqlx::Error> {
    db_run!(db, |pool| {
        sqlx::query("DELETE FROM api_token WHERE user_id = ? AND token_id = ?")
            .bind(user_id)
            .bind(token_id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected() == 1)
    })
}

/// Revokes every token of the user (a password reset).
pub async fn revoke_all(db: &Db, user_id: UserId) -> Result<u64, sqlx::Error> {
    db_run!(db, |pool| {
        sqlx::query("DELETE FROM api_token WHERE user_id = ?")
            .bind(user_id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })
}
