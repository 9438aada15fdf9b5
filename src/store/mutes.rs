//! Per-chat mute: a muted chat sends no desktop notifications and is left out of the
//! unread count in the tab title. One row per muted chat; unmuting deletes it.

use std::collections::HashSet;

use crate::{db::Db, db_run};

use super::users::UserId;

/// The keys (`d-<user id>`, `g-<group id>`) of the chats `me` muted.
#[tracing::instrument(skip(db))]
pub async fn muted(db: &Db, me: UserId) -> Result<HashSet<String>, sqlx::Error> {
    let keys: Vec<String> = db_run!(db, |pool| {
        sqlx::query_scalar("SELECT conversation FROM chat_mute WHERE user_id = ?")
            .bind(me)
            .fetch_all(pool)
            .await
    })?;
    Ok(keys.into_iter().collect())
}

pub async fn is_muted(db: &Db, me: UserId, conversation: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = db_run!(db, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM chat_mute WHERE user_id = ? AND conversation = ?")
            .bind(me)
            .bind(conversation)
            .fetch_one(pool)
            .await
    })?;
    Ok(n > 0)
}

/// Mutes or unmutes one chat; doing it twice is the same as once.
#[tracing::instrument(skip(db))]
pub async fn set(db: &Db, me: UserId, conversation: &str, muted: bool) -> Result<(), sqlx::Error> {
    let sql = match (muted, db) {
        (false, _) => "DELETE FROM chat_mute WHERE user_id = ? AND conversation = ?",
        (true, Db::MySql(_)) => {
            "INSERT IGNORE INTO chat_mute (user_id, conversation) VALUES (?, ?)"
        }
        (true, Db::Sqlite(_)) => {
            "INSERT OR IGNORE INTO chat_mute (user_id, conversation) VALUES (?, ?)"
        }
    };
    db_run!(db, |pool| {
        sqlx::query(sql)
            .bind(me)
            .bind(conversation)
            .execute(pool)
            .await
            .map(|_| ())
    })
}
