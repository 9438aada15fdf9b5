//! Who is asking: passwords, sessions, bearer tokens, CSRF and brute-force limits.
//! Handlers never read credentials themselves; they take an extractor from here.

pub mod csrf;
pub mod extract;
pub mod jwt;
pub mod limits;
pub mod password;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tower_sessions::Session;

use crate::{error::AppError, store::users::User};

pub use extract::{ApiCaller, ApiUser, ClientIp, MaybePageUser, PageUser};

const AUTH_KEY: &str = "auth";
const CSRF_KEY: &str = "csrf";

/// What a signed-in session remembers. The fingerprint of the password hash signs the
/// session out when the password changes elsewhere (every other session of the user).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionAuth {
    user_id: i32,
    fingerprint: String,
}

fn fingerprint(password_hash: &str) -> String {
    hex::encode(&Sha256::digest(password_hash.as_bytes())[..12])
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

/// Signs `user` in on this browser: a new session id (no fixation) and a new CSRF token.
pub async fn start_session(session: &Session, user: &User) -> Result<(), AppError> {
    session.cycle_id().await.map_err(session_error)?;
    let auth = SessionAuth {
        user_id: user.user_id,
        fingerprint: fingerprint(&user.password_hash),
    };
    session
        .insert(AUTH_KEY, auth)
        .await
        .map_err(session_error)?;
    session
        .insert(CSRF_KEY, crate::config::random_secret())
        .await
        .map_err(session_error)?;
    Ok(())
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
    fingerprint(&user.password_hash) == stored
}

/// The session's CSRF token, made on first use (anonymous visitors get one too, so the
/// sign-in form is protected).
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
