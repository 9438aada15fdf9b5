//! Browser sessions live in the database so any process behind the load balancer accepts
//! them: a `tower_sessions` store on the `browser_session` table.
//!
//! A row is keyed by the SHA-256 of the cookie's value (a copy of the table signs nobody
//! in) and holds the session's data as JSON, plus, copied out of that data, who it
//! belongs to, the browser, the address and when it was made and last used: the profile
//! lists a user's sessions and signs any of them out by deleting its row. Only signed-in
//! sessions are written (anonymous visitors carry a stateless CSRF token instead, see
//! `auth::csrf`), and a session is written again only when something in it changes, which
//! for an active user is the "seen" mark renewed every few minutes (`auth::touch`).
//!
//! Every page needs its session first, so while the database is down ([`Circuit`]) the
//! store fails at once and the page answers 503 instead of waiting for the pool.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::FromRow;
use time::{OffsetDateTime, PrimitiveDateTime};
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, ExpiredDeletion},
    SessionStore,
};

use super::users::UserId;
use crate::{
    db::{self, Circuit, Db, UNAVAILABLE},
    db_run,
};

/// The session data key of the signed-in user (`auth::SessionAuth`).
pub const AUTH_KEY: &str = "auth";
/// The session data key of the last "seen" mark (`auth::Seen`).
pub const SEEN_KEY: &str = "seen";

/// The row key of a session id: its SHA-256, hex.
pub fn key_of(id: &Id) -> String {
    hex::encode(Sha256::digest(id.to_string().as_bytes()))
}

#[derive(Clone)]
pub struct DbSessionStore {
    db: Db,
    circuit: Circuit,
}

impl std::fmt::Debug for DbSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSessionStore").finish_non_exhaustive()
    }
}

impl DbSessionStore {
    pub fn new(db: &Db, circuit: Circuit) -> Self {
        Self {
            db: db.clone(),
            circuit,
        }
    }

    /// The error pages show as 503, at once, while the database is known to be down.
    fn refuse_while_down(&self) -> session_store::Result<()> {
        if self.circuit.is_open() {
            return Err(session_store::Error::Backend(UNAVAILABLE.into()));
        }
        Ok(())
    }
}

/// The fields of the session's data copied into their own columns.
#[derive(Default, Deserialize)]
struct AuthPart {
    user_id: Option<UserId>,
    user_agent: Option<String>,
    ip: Option<String>,
    #[serde(default)]
    since: i64,
}

#[derive(Default, Deserialize)]
struct SeenPart {
    ip: Option<String>,
}

struct Columns {
    user_id: Option<UserId>,
    data: String,
    created: PrimitiveDateTime,
    expiry: PrimitiveDateTime,
    user_agent: Option<String>,
    ip: Option<String>,
}

fn utc(t: OffsetDateTime) -> PrimitiveDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    PrimitiveDateTime::new(t.date(), t.time())
}

fn columns(record: &Record) -> session_store::Result<Columns> {
    let data = serde_json::to_string(&record.data)
        .map_err(|e| session_store::Error::Encode(e.to_string()))?;
    let part = |key: &str| record.data.get(key).cloned().unwrap_or_default();
    let auth: AuthPart = serde_json::from_value(part(AUTH_KEY)).unwrap_or_default();
    let seen: SeenPart = serde_json::from_value(part(SEEN_KEY)).unwrap_or_default();
    let created = OffsetDateTime::from_unix_timestamp(auth.since)
        .ok()
        .filter(|_| auth.since > 0)
        .map(utc)
        .unwrap_or_else(db::now);
    Ok(Columns {
        user_id: auth.user_id,
        data,
        created,
        expiry: utc(record.expiry_date),
        user_agent: auth.user_agent,
        ip: seen.ip.filter(|ip| !ip.is_empty()).or(auth.ip),
    })
}

fn backend(e: sqlx::Error) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.refuse_while_down()?;
        let c = columns(record)?;
        let now = db::now();
        // A fresh random id collides with an existing one practically never; when it
        // does, the insert fails on the key and the session gets another id.
        loop {
            let key = key_of(&record.id);
            let inserted = db_run!(&self.db, |pool| {
                sqlx::query(
                    "INSERT INTO browser_session (session_key, user_id, data, created_date_time, \
                     last_seen_date_time, expiry_date_time, user_agent, ip) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&key)
                .bind(c.user_id)
                .bind(&c.data)
                .bind(c.created)
                .bind(now)
                .bind(c.expiry)
                .bind(c.user_agent.as_deref())
                .bind(c.ip.as_deref())
                .execute(pool)
                .await
                .map(|_| ())
            });
            match inserted {
                Ok(_) => return Ok(()),
                Err(e) if db::is_unique_violation(&e) => record.id = Id::default(),
                Err(e) => return Err(backend(e)),
            }
        }
    }

    /// Updates the row. A row that is gone was signed out (from the profile, or by a
    /// password change) while this request ran: it stays gone.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.refuse_while_down()?;
        let c = columns(record)?;
        db_run!(&self.db, |pool| {
            sqlx::query(
                "UPDATE browser_session SET user_id = ?, data = ?, last_seen_date_time = ?, \
                 expiry_date_time = ?, user_agent = ?, ip = ? WHERE session_key = ?",
            )
            .bind(c.user_id)
            .bind(&c.data)
            .bind(db::now())
            .bind(c.expiry)
            .bind(c.user_agent.as_deref())
            .bind(c.ip.as_deref())
            .bind(key_of(&record.id))
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.refuse_while_down()?;
        let row: Option<(String, PrimitiveDateTime)> = db_run!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT data, expiry_date_time FROM browser_session \
                 WHERE session_key = ? AND expiry_date_time > ?",
            )
            .bind(key_of(id))
            .bind(db::now())
            .fetch_optional(pool)
            .await
        })
        .map_err(backend)?;
        let Some((data, expiry)) = row else {
            return Ok(None);
        };
        let data: HashMap<String, serde_json::Value> =
            serde_json::from_str(&data).map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date: expiry.assume_utc(),
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        db_run!(&self.db, |pool| {
            sqlx::query("DELETE FROM browser_session WHERE session_key = ?")
                .bind(key_of(id))
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl ExpiredDeletion for DbSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        db_run!(&self.db, |pool| {
            sqlx::query("DELETE FROM browser_session WHERE expiry_date_time < ?")
                .bind(db::now())
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(backend)?;
        Ok(())
    }
}

/// One signed-in browser, as the profile lists it.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct BrowserSession {
    /// The row key: names the session in "sign out this one" (it is not the cookie).
    pub session_key: String,
    #[serde(with = "db::serde_time")]
    pub created_date_time: PrimitiveDateTime,
    #[serde(with = "db::serde_time")]
    pub last_seen_date_time: PrimitiveDateTime,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// The user's live sessions, most recently used first.
pub async fn for_user(db: &Db, user_id: UserId) -> Result<Vec<BrowserSession>, sqlx::Error> {
    db_run!(db, |pool| {
        sqlx::query_as::<_, BrowserSession>(
            "SELECT session_key, created_date_time, last_seen_date_time, user_agent, ip \
             FROM browser_session WHERE user_id = ? AND expiry_date_time > ? \
             ORDER BY last_seen_date_time DESC LIMIT 100",
        )
        .bind(user_id)
        .bind(db::now())
        .fetch_all(pool)
        .await
    })
}

/// Signs out one of the user's sessions; false when they have no such session.
pub async fn delete_one(db: &Db, user_id: UserId, session_key: &str) -> Result<bool, sqlx::Error> {
    db_run!(db, |pool| {
        sqlx::query("DELETE FROM browser_session WHERE user_id = ? AND session_key = ?")
            .bind(user_id)
            .bind(session_key)
            .execute(pool)
            .await
            .map(|done| done.rows_affected() == 1)
    })
}

/// Signs out every session of the user but `keep` (this browser's, if any).
pub async fn delete_all_but(
    db: &Db,
    user_id: UserId,
    keep: Option<&str>,
) -> Result<u64, sqlx::Error> {
    db_run!(db, |pool| {
        sqlx::query("DELETE FROM browser_session WHERE user_id = ? AND session_key <> ?")
            .bind(user_id)
            .bind(keep.unwrap_or(""))
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })
}
