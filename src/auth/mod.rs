//! Who is asking: passwords, sessions, bearer tokens, CSRF and brute-force limits.
//! Handlers never read credentials themselves; they take an extractor from here.

pub mod access;
pub mod csrf;
pub mod extract;
pub mod jwt;
pub mod limits;
pub mod password;
pub mod tokens;

use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::{error::AppError, store::users::User};

pub use extract::{ApiAuth, ApiCaller, ApiUser, ClientIp, MaybePageUser, PageUser};

const AUTH_KEY: &str = crate::store::sessions::AUTH_KEY;
const SEEN_KEY: &str = crate::store::sessions::SEEN_KEY;
const CSRF_KEY: &str = "csrf";

/// An active session is touched (its expiry pushed back, its "last seen" updated) at most
/// this often, so that a busy user costs one session write every few minutes, not one
/// per request.
pub const TOUCH_EVERY_SECONDS: i64 = 300;
/// A session nobody used for this long is signed out.
pub const IDLE_DAYS: i64 = 14;

/// What a signed-in session remembers. The fingerprint of the credentials
/// ([`User::fingerprint`]) signs the session out when the password or the security stamp
/// changes. The browser and address are for the profile's list of sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionAuth {
    user_id: i32,
    fingerprint: String,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default)]
    ip: Option<String>,
    /// When the user signed in (Unix seconds).
    #[serde(default)]
    since: i64,
}

/// When and from where the session was last used (written at most every few minutes).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Seen {
    at: i64,
    ip: String,
}

/// Where a sign-in comes from, for the list of sessions.
#[derive(Debug, Clone, Default)]
pub struct Device {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl Device {
    pub fn from_request(headers: &axum::http::HeaderMap, ip: std::net::IpAddr) -> Self {
        let user_agent = headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(255).collect());
        Self {
            user_agent,
            ip: Some(ip.to_string()),
        }
    }
}

/// A session that cannot be read or written: the store is the database, so this is the
/// database failing (503, "can't save right now"), not a reason to sign anyone out.
fn session_error(e: tower_sessions::session::Error) -> AppError {
    use tower_sessions::{session::Error, session_store::Error as StoreError};
    match e {
        Error::Store(StoreError::Backend(cause)) => {
            tracing::warn!(error = %cause, "session store unavailable");
            crate::db::unavailable()
        }
        other => AppError::Internal(anyhow::anyhow!("session store: {other}")),
    }
}

/// A session value, `None` when absent or unreadable (treated as signed out); an error
/// only when the store itself failed.
async fn session_value<T: serde::de::DeserializeOwned>(
    session: &Session,
    key: &str,
) -> Result<Option<T>, AppError> {
    use tower_sessions::{session::Error, session_store::Error as StoreError};
    match session.get::<T>(key).await {
        Ok(value) => Ok(value),
        Err(e @ Error::Store(StoreError::Backend(_))) => Err(session_error(e)),
        Err(_) => Ok(None),
    }
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Signs `user` in on this browser: a new session id (no fixation) and a new CSRF token.
pub async fn start_session(
    session: &Session,
    user: &User,
    device: &Device,
) -> Result<(), AppError> {
    session.cycle_id().await.map_err(session_error)?;
    let auth = SessionAuth {
        user_id: user.user_id,
        fingerprint: user.fingerprint(),
        user_agent: device.user_agent.clone(),
        ip: device.ip.clone(),
        since: now_unix(),
    };
    session
        .insert(AUTH_KEY, auth)
        .await
        .map_err(session_error)?;
    session
        .insert(
            SEEN_KEY,
            Seen {
                at: now_unix(),
                ip: device.ip.clone().unwrap_or_default(),
            },
        )
        .await
        .map_err(session_error)?;
    session
        .insert(CSRF_KEY, crate::config::random_secret())
        .await
        .map_err(session_error)?;
    Ok(())
}

/// After this user's credentials changed in this session (new password, new stamp):
/// keeps this session signed in with the new fingerprint (same id: it was already
/// authenticated, so there is nothing to fixate).
pub async fn renew_session(session: &Session, user: &User) -> Result<(), AppError> {
    let Some(mut auth) = session
        .get::<SessionAuth>(AUTH_KEY)
        .await
        .map_err(session_error)?
    else {
        return Ok(());
    };
    auth.fingerprint = user.fingerprint();
    session.insert(AUTH_KEY, auth).await.map_err(session_error)
}

/// Deletes the session server-side; the cookie becomes worthless.
pub async fn end_session(session: &Session) -> Result<(), AppError> {
    session.flush().await.map_err(session_error)
}

/// The user id a session claims, and whether its fingerprint still matches `check`.
pub(crate) async fn session_user_id(session: &Session) -> Result<Option<(i32, String)>, AppError> {
    let auth: Option<SessionAuth> = session_value(session, AUTH_KEY).await?;
    Ok(auth.map(|auth| (auth.user_id, auth.fingerprint)))
}

pub(crate) fn fingerprint_matches(user: &User, stored: &str) -> bool {
    user.fingerprint() == stored
}

/// Marks the session as used now when it was last marked more than a few minutes ago:
/// the store then writes it (pushing its expiry back by the idle time) and the browser
/// gets the cookie again. Within those minutes nothing is written.
pub(crate) async fn touch(session: &Session, ip: Option<std::net::IpAddr>) {
    let seen: Option<Seen> = session.get(SEEN_KEY).await.ok().flatten();
    let now = now_unix();
    if seen.is_some_and(|s| now - s.at < TOUCH_EVERY_SECONDS) {
        return;
    }
    let seen = Seen {
        at: now,
        ip: ip.map(|ip| ip.to_string()).unwrap_or_default(),
    };
    if let Err(e) = session.insert(SEEN_KEY, seen).await {
        tracing::warn!(error = %e, "could not touch the session");
    }
}

/// The session's CSRF token. Signed-in sessions get one at sign-in; anonymous visitors
/// use the stateless token of [`csrf`] instead, so that they cost no session row.
pub async fn csrf_token(session: &Session) -> Result<String, AppError> {
    if let Some(token) = session
        .get::<String>(CSRF_KEY)
        .await
        .map_err(session_error)?
    {
        return Ok(token);
    }
    let token = crate::config::random_secret();
    session
        .insert(CSRF_KEY, token.clone())
        .await
        .map_err(session_error)?;
    Ok(token)
}

pub(crate) async fn stored_csrf_token(session: &Session) -> Result<Option<String>, AppError> {
    session_value(session, CSRF_KEY).await
}
