//! Single-use links sent by mail (password resets, address checks): only the SHA-256 of a
//! link's secret is stored, with whose it is, what for, and until when it works.

use time::PrimitiveDateTime;

use super::users::UserId;
use crate::{
    db::{self, Db},
    db_run, db_tx,
    error::AppResult,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    PasswordReset,
    VerifyEmail,
}

impl Purpose {
    fn code(self) -> &'static str {
        match self {
            Purpose::PasswordReset => "reset",
            Purpose::VerifyEmail => "verify",
        }
    }
}

/// Stores a link's hash, valid for `ttl`. Expired links of anyone are deleted on the way.
pub async fn create(
    db: &Db,
    user_id: UserId,
    purpose: Purpose,
    token_hash: &str,
    ttl: time::Duration,
) -> Result<(), sqlx::Error> {
    let now = db::now();
    db_run!(db, |pool| {
        sqlx::query("DELETE FROM account_token WHERE expires_date_time < ?")
            .bind(now)
            .execute(pool)
            .await?;
        sqlx::query(
            "INSERT INTO account_token (token_hash, user_id, purpose, created_date_time, expires_date_time) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(purpose.code())
        .bind(now)
        .bind(now + ttl)
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// Whose unexpired link this is, without using it up.
pub async fn owner(
    db: &Db,
    purpose: Purpose,
    token_hash: &str,
) -> Result<Option<UserId>, sqlx::Error> {
    db_run!(db, |pool| {
        sqlx::query_scalar(
            "SELECT user_id FROM account_token WHERE token_hash = ? AND purpose = ? AND expires_date_time > ?",
        )
        .bind(token_hash)
        .bind(purpose.code())
        .bind(db::now())
        .fetch_optional(pool)
        .await
    })
}

/// Uses a password-reset link: in one transaction the link (and every other reset link
/// of the user) is deleted, the password and the security stamp are replaced, and every
/// session and personal API token of the user is deleted. False when the link was used
/// meanwhile (two tabs), in which case nothing changed.
pub async fn reset_password(
    db: &Db,
    token_hash: &str,
    user_id: UserId,
    password_hash: &str,
    security_stamp: &str,
) -> AppResult<bool> {
    let now: PrimitiveDateTime = db::now();
    db_tx!(db, |tx| {
        let used = sqlx::query(
            "DELETE FROM account_token WHERE token_hash = ? AND user_id = ? AND purpose = 'reset' AND expires_date_time > ?",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if used != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM account_token WHERE user_id = ? AND purpose = 'reset'")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE user SET password_hash = ?, security_stamp = ? WHERE user_id = ?")
            .bind(password_hash)
            .bind(security_stamp)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM browser_session WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM api_token WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        Ok(true)
    })
}

/// Marks the account as waiting for its address to be confirmed.
pub async fn mark_unverified(db: &Db, user_id: UserId) -> Result<(), sqlx::Error> {
    db_run!(db, |pool| {
        sqlx::query("INSERT INTO unverified_email (user_id, created_date_time) VALUES (?, ?)")
            .bind(user_id)
            .bind(db::now())
            .execute(pool)
            .await
            .map(|_| ())
    })
}

pub async fn is_unverified(db: &Db, user_id: UserId) -> Result<bool, sqlx::Error> {
    let n: i64 = db_run!(db, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM unverified_email WHERE user_id = ?")
            .bind(user_id)
            .fetch_one(pool)
            .await
    })?;
    Ok(n > 0)
}

/// Uses an address-check link: the account counts as confirmed from now on. The user,
/// or `None` for an unknown or expired link.
pub async fn verify_email(db: &Db, token_hash: &str) -> AppResult<Option<UserId>> {
    let now = db::now();
    db_tx!(db, |tx| {
        let owner: Option<UserId> = sqlx::query_scalar(
            "SELECT user_id FROM account_token WHERE token_hash = ? AND purpose = 'verify' AND expires_date_time > ?",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(user_id) = owner else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM account_token WHERE user_id = ? AND purpose = 'verify'")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM unverified_email WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        Ok(Some(user_id))
    })
}
