//! Personal API tokens: long-lived bearer tokens for scripts, so that a script holds a
//! revocable token of limited scope instead of its owner's password.
//!
//! A token is `mpat_` and 64 hex digits (256 random bits); only its SHA-256 is stored. It
//! is accepted in `Authorization: Bearer` beside the contract's JWTs. A `read` token may
//! only read: any other method answers 403. Tokens survive a password change (a script
//! keeps working) but not a password reset, which revokes them all.

use sha2::{Digest, Sha256};
use time::PrimitiveDateTime;

use crate::{
    error::{AppError, AppResult},
    state::AppState,
    store::{
        api_tokens::{self, ApiToken},
        users::User,
    },
};

pub const PREFIX: &str = "mpat_";
const MAX_NAME_CHARS: usize = 50;
const MAX_EXPIRY_DAYS: i64 = 366;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    ReadWrite,
}

impl Scope {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "read" => Some(Self::Read),
            "read_write" => Some(Self::ReadWrite),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::ReadWrite => "read_write",
        }
    }
}

/// Whether a bearer token is a personal token rather than a JWT.
pub fn is_personal(token: &str) -> bool {
    token.starts_with(PREFIX)
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// What a new token needs: checked here, for the page and the API alike.
pub struct NewToken<'a> {
    pub name: &'a str,
    pub scope: &'a str,
    /// Days until it expires; `None` for never.
    pub expires_in_days: Option<i64>,
}

/// Makes a token for `user`: the stored row and the secret, to be shown once.
pub async fn create(
    state: &AppState,
    user: &User,
    new: NewToken<'_>,
) -> AppResult<(ApiToken, String)> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(AppError::unprocessable(
            &["body", "name"],
            format!("a token's name is 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    let scope = Scope::parse(new.scope).ok_or_else(|| {
        AppError::unprocessable(&["body", "scope"], "scope is read or read_write")
    })?;
    let expires = match new.expires_in_days {
        None => None,
        Some(days) if (1..=MAX_EXPIRY_DAYS).contains(&days) => {
            Some(crate::db::now() + time::Duration::days(days))
        }
        Some(_) => {
            return Err(AppError::unprocessable(
                &["body", "expires_in_days"],
                format!("expires_in_days is 1 to {MAX_EXPIRY_DAYS}, or null for never"),
            ))
        }
    };
    let secret = format!("{PREFIX}{}", crate::config::random_secret());
    let token = api_tokens::create(
        &state.db,
        user.user_id,
        name,
        scope.as_str(),
        &hash(&secret),
        expires,
    )
    .await?
    .ok_or_else(|| {
        AppError::bad_request(format!(
            "you have {} tokens already: revoke one first",
            api_tokens::MAX_PER_USER
        ))
    })?;
    tracing::info!(user_id = user.user_id, token_id = token.token_id, scope = %token.scope, "API token created");
    Ok((token, secret))
}

/// The user and scope of a valid, unexpired personal token.
pub async fn authenticate(state: &AppState, secret: &str) -> AppResult<(i32, Scope)> {
    let token = api_tokens::by_hash(&state.db, &hash(secret))
        .await?
        .ok_or(AppError::Unauthorized)?;
    let scope = Scope::parse(&token.scope).ok_or(AppError::Unauthorized)?;
    if let Err(e) = api_tokens::mark_used(&state.db, token.token_id).await {
        tracing::warn!(error = %e, "could not record an API token's use");
    }
    Ok((token.user_id, scope))
}

/// For templates: a time as `YYYY-MM-DD HH:MM` UTC.
pub fn short_time(t: Option<PrimitiveDateTime>) -> String {
    t.map(|t| format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()))
        .unwrap_or_default()
}
