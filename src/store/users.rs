use std::sync::Arc;

use serde::Serialize;
use sqlx::FromRow;
use time::PrimitiveDateTime;

use crate::{
    db::{self, Db, InsertedId},
    db_run,
    domain::{Email, Username},
};

pub type UserId = i32;

#[derive(Debug, Clone, FromRow)]
pub struct User {
    pub user_id: UserId,
    pub username: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub birthdate: Option<PrimitiveDateTime>,
    pub password_hash: String,
    pub email: String,
    /// Changes whenever every sign-in of the user should end ("sign out everywhere",
    /// password reset); `None` until the first time.
    pub security_stamp: Option<String>,
    /// The name shown beside the username in chats and lists.
    pub display_name: Option<String>,
}

impl User {
    /// What sessions and access tokens remember of the credentials they were made with:
    /// when the password or the security stamp changes, it changes, and they stop
    /// working. Without a stamp it is what it was before stamps existed, so sessions made
    /// then stay valid.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(self.password_hash.as_bytes());
        if let Some(stamp) = &self.security_stamp {
            hasher.update(b"\0");
            hasher.update(stamp.as_bytes());
        }
        hex::encode(&hasher.finalize()[..12])
    }

    /// The display name, else the username.
    pub fn shown_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.username)
    }
}

/// What `GET /api/users/` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicProfile {
    pub user_id: UserId,
    pub username: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `YYYY-MM-DD`.
    #[schema(example = "1990-04-01")]
    pub birthdate: Option<String>,
}

impl From<&User> for PublicProfile {
    fn from(u: &User) -> Self {
        Self {
            user_id: u.user_id,
            username: u.username.clone(),
            email: u.email.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            birthdate: u.birthdate.map(|d| d.date().to_string()),
        }
    }
}

const USER_COLUMNS: &str = "user_id, username, first_name, last_name, birthdate, password_hash, \
     email, security_stamp, display_name";

#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    Email,
    Username,
}

#[tracing::instrument(skip(db))]
pub async fn by_id(db: &Db, user_id: UserId) -> Result<Option<User>, sqlx::Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM user WHERE user_id = ?");
    db_run!(db, |pool| sqlx::query_as::<_, User>(&sql)
        .bind(user_id)
        .fetch_optional(pool)
        .await)
}

/// Looks a user up by username, without regard to case.
#[tracing::instrument(skip(db))]
pub async fn by_username(db: &Db, username: &str) -> Result<Option<User>, sqlx::Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM user WHERE username = ?");
    db_run!(db, |pool| sqlx::query_as::<_, User>(&sql)
        .bind(username)
        .fetch_optional(pool)
        .await)
}

#[tracing::instrument(skip(db))]
pub async fn by_email(db: &Db, email: &str) -> Result<Option<User>, sqlx::Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM user WHERE email = ?");
    db_run!(db, |pool| sqlx::query_as::<_, User>(&sql)
        .bind(email)
        .fetch_optional(pool)
        .await)
}

/// The sign-in form takes an email or a username.
pub async fn by_login(db: &Db, login: &str) -> Result<Option<User>, sqlx::Error> {
    if login.contains('@') {
        by_email(db, login).await
    } else {
        by_username(db, login).await
    }
}

/// Which of the two is already registered, email first (the original's order).
pub async fn which_taken(
    db: &Db,
    email: &Email,
    username: &Username,
) -> Result<Option<Taken>, sqlx::Error> {
    if by_email(db, email.as_str()).await?.is_some() {
        return Ok(Some(Taken::Email));
    }
    if by_username(db, username.as_str()).await?.is_some() {
        return Ok(Some(Taken::Username));
    }
    Ok(None)
}

/// Creates an account. A concurrent sign-up with the same email or username loses
/// with `Err(Taken)`, never a 500.
#[tracing::instrument(skip(db, password_hash))]
pub async fn create(
    db: &Db,
    username: &Username,
    email: &Email,
    password_hash: &str,
) -> Result<Result<UserId, Taken>, sqlx::Error> {
    let result = db_run!(db, |pool| {
        sqlx::query("INSERT INTO user (username, email, password_hash) VALUES (?, ?, ?)")
            .bind(username.as_str())
            .bind(email.as_str())
            .bind(password_hash)
            .execute(pool)
            .await
            .map(|r| r.inserted_id())
    });
    match result {
        Ok(id) => Ok(Ok(id as UserId)),
        Err(e) if db::is_unique_violation(&e) => match which_taken(db, email, username).await? {
            Some(taken) => Ok(Err(taken)),
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

#[tracing::instrument(skip(db, password_hash))]
pub async fn set_password_hash(
    db: &Db,
    user_id: UserId,
    password_hash: &str,
) -> Result<(), sqlx::Error> {
    db_run!(db, |pool| {
        sqlx::query("UPDATE user SET password_hash = ? WHERE user_id = ?")
            .bind(password_hash)
            .bind(user_id)
            .execute(pool)
            .await
            .map(|_| ())
    })
}

/// Gives the user a new security stamp: every session and access token made before
/// stops working (their fingerprint no longer matches). Returns the stamp.
#[tracing::instrument(skip(db))]
pub async fn rotate_security_stamp(db: &Db, user_id: UserId) -> Result<String, sqlx::Error> {
    let stamp = crate::config::random_secret()[..32].to_string();
    db_run!(db, |pool| {
        sqlx::query("UPDATE user SET security_stamp = ? WHERE user_id = ?")
            .bind(&stamp)
            .bind(user_id)
            .execute(pool)
            .await
            .map(|_| ())
    })?;
    Ok(stamp)
}

/// The distinct parameter parts (`$argon2id$v=19$m=…,t=…,p=…`) of the stored password
/// hashes: everything before the fourth `$`. One scan of the table.
pub async fn password_hash_parameters(db: &Db) -> Result<Vec<String>, sqlx::Error> {
    match db {
        Db::MySql(pool) => {
            sqlx::query_scalar(
                "SELECT DISTINCT SUBSTRING_INDEX(password_hash, '$', 4) FROM user",
            )
            .fetch_all(pool)
            .await
        }
        Db::Sqlite(pool) => {
            sqlx::query_scalar(
                "WITH a AS (SELECT password_hash AS h, instr(substr(password_hash, 2), '$') + 1 AS p FROM user), \
                 b AS (SELECT h, p + instr(substr(h, p + 1), '$') AS p FROM a), \
                 c AS (SELECT h, p + instr(substr(h, p + 1), '$') AS p FROM b) \
                 SELECT DISTINCT substr(h, 1, p - 1) FROM c",
            )
            .fetch_all(pool)
            .await
        }
    }
}

/// The display names of these users (those who set one).
pub async fn display_names(
    db: &Db,
    ids: &[UserId],
) -> Result<std::collections::HashMap<UserId, String>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(UserId, String)> = db_run!(db, |pool| {
        let mut q = sqlx::QueryBuilder::new(
            "SELECT user_id, display_name FROM user WHERE display_name IS NOT NULL AND user_id IN (",
        );
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        q.push(")");
        q.build_query_as::<(UserId, String)>().fetch_all(pool).await
    })?;
    Ok(rows.into_iter().collect())
}

/// Sets or clears the display name.
#[tracing::instrument(skip(db))]
pub async fn set_display_name(
    db: &Db,
    user_id: UserId,
    display_name: Option<&str>,
) -> Result<(), sqlx::Error> {
    db_run!(db, |pool| {
        sqlx::query("UPDATE user SET display_name = ? WHERE user_id = ?")
            .bind(display_name)
            .bind(user_id)
            .execute(pool)
            .await
            .map(|_| ())
    })
}

#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub birthdate: Option<time::Date>,
}

#[tracing::instrument(skip(db))]
pub async fn update_profile(
    db: &Db,
    user_id: UserId,
    p: &ProfileUpdate,
) -> Result<(), sqlx::Error> {
    let birthdate = p
        .birthdate
        .map(|d| PrimitiveDateTime::new(d, time::Time::MIDNIGHT));
    db_run!(db, |pool| {
        sqlx::query(
            "UPDATE user SET first_name = ?, last_name = ?, birthdate = ? WHERE user_id = ?",
        )
        .bind(p.first_name.as_deref())
        .bind(p.last_name.as_deref())
        .bind(birthdate)
        .bind(user_id)
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// Usernames starting with `prefix`, for the "add a friend" search. Leaves out the
/// searcher and anyone who has blocked them.
#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct UserSummary {
    pub user_id: UserId,
    pub username: String,
}

/// The user a request names by username, or 404 `no such user exists` (the original's
/// text, for the API and the pages alike).
pub async fn named(db: &Db, username: &str) -> Result<User, crate::error::AppError> {
    by_username(db, username.trim())
        .await?
        .ok_or_else(|| crate::error::AppError::not_found("no such user exists"))
}

/// The users a request names (a group's members), in the order named, in one query; 404
/// `no such user exists` when any is not found. Usernames are ASCII (`Username`), so the
/// database's case-insensitive match and `eq_ignore_ascii_case` agree.
pub async fn all_named(db: &Db, usernames: &[String]) -> Result<Vec<User>, crate::error::AppError> {
    let wanted: Vec<&str> = usernames.iter().map(|u| u.trim()).collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let found: Vec<User> = db_run!(db, |pool| {
        let mut q = sqlx::QueryBuilder::new(format!(
            "SELECT {USER_COLUMNS} FROM user WHERE username IN ("
        ));
        let mut list = q.separated(", ");
        for name in &wanted {
            list.push_bind(*name);
        }
        q.push(")");
        // As many placeholders as names: not worth a prepared statement of its own.
        q.build_query_as::<User>()
            .persistent(false)
            .fetch_all(pool)
            .await
    })?;
    wanted
        .iter()
        .map(|name| {
            found
                .iter()
                .find(|u| u.username.eq_ignore_ascii_case(name))
                .cloned()
                .ok_or_else(|| crate::error::AppError::not_found("no such user exists"))
        })
        .collect()
}

/// Who is who, remembered: ids and usernames never change once made, so the hot paths
/// (every send, every history page) resolve them here instead of asking the database each
/// time. An entry is trusted for a minute, which bounds how long a change made by another
/// process (an account deleted, a password changed: the fingerprint access tokens are
/// checked against) goes unseen here; this process forgets a user at once when it makes
/// such a change ([`Directory::forget`]). A name not found is never remembered, so a new
/// account resolves at once.
pub struct Directory {
    by_id: quick_cache::sync::Cache<UserId, Remembered>,
    by_name: quick_cache::sync::Cache<String, Remembered>,
}

/// A user, the fingerprint of their credentials ([`User::fingerprint`]) and when read.
type Remembered = (UserSummary, Arc<str>, std::time::Instant);

const DIRECTORY_TTL: std::time::Duration = std::time::Duration::from_secs(60);

impl Directory {
    pub fn new(capacity: usize) -> Self {
        Self {
            by_id: quick_cache::sync::Cache::new(capacity),
            by_name: quick_cache::sync::Cache::new(capacity),
        }
    }

    /// The user with this id, if there is one.
    pub async fn by_id(
        &self,
        db: &Db,
        user_id: UserId,
    ) -> Result<Option<UserSummary>, sqlx::Error> {
        Ok(self
            .with_fingerprint(db, user_id)
            .await?
            .map(|(user, _)| user))
    }

    /// The user with this id and the fingerprint of their credentials, if there is one.
    pub async fn with_fingerprint(
        &self,
        db: &Db,
        user_id: UserId,
    ) -> Result<Option<(UserSummary, Arc<str>)>, sqlx::Error> {
        if let Some(known) = fresh(self.by_id.get(&user_id)) {
            return Ok(Some(known));
        }
        let Some(user) = by_id(db, user_id).await? else {
            return Ok(None);
        };
        let fingerprint: Arc<str> = user.fingerprint().into();
        let summary = UserSummary::from(&user);
        self.remember(&summary, &fingerprint, None);
        Ok(Some((summary, fingerprint)))
    }

    /// Forgets a user whose credentials changed or who was deleted.
    pub fn forget(&self, user: &User) {
        self.by_id.remove(&user.user_id);
        self.by_name.remove(&user.username.to_lowercase());
    }

    /// The user a request names, or 404 `no such user exists`, as [`named`].
    pub async fn named(
        &self,
        db: &Db,
        username: &str,
    ) -> Result<UserSummary, crate::error::AppError> {
        let key = username.trim().to_lowercase();
        if let Some((known, _)) = fresh(self.by_name.get(&key)) {
            return Ok(known);
        }
        let found = named(db, username).await?;
        let user = UserSummary::from(&found);
        // Under the name as asked too: the database's collation decided they are the same.
        self.remember(&user, &found.fingerprint().into(), Some(key));
        Ok(user)
    }

    /// Remembers a user just read, under the name asked for too.
    fn remember(&self, user: &UserSummary, fingerprint: &Arc<str>, asked_as: Option<String>) {
        let entry = (user.clone(), fingerprint.clone(), std::time::Instant::now());
        self.by_id.insert(user.user_id, entry.clone());
        let canonical = user.username.to_lowercase();
        if let Some(asked_as) = asked_as.filter(|a| *a != canonical) {
            self.by_name.insert(asked_as, entry.clone());
        }
        self.by_name.insert(canonical, entry);
    }
}

fn fresh(entry: Option<Remembered>) -> Option<(UserSummary, Arc<str>)> {
    entry
        .filter(|(_, _, at)| at.elapsed() < DIRECTORY_TTL)
        .map(|(user, fingerprint, _)| (user, fingerprint))
}

impl From<&User> for UserSummary {
    fn from(u: &User) -> Self {
        Self {
            user_id: u.user_id,
            username: u.username.clone(),
        }
    }
}
