//! Account rules shared by the pages and the API: sign-up, sign-in, password change.

use std::net::IpAddr;

use crate::{
    auth::{limits::SignInAccount, password::Verified},
    domain::{Email, Password, Username},
    error::AppError,
    state::AppState,
    store::{
        access,
        users::{self, Taken, User},
    },
};

/// A field the sign-up form got wrong, with the original's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: &'static str,
}

/// Every problem with a sign-up, in the original's order (the API answers the first).
pub async fn check_sign_up(
    state: &AppState,
    username: &str,
    email: &str,
    password: &str,
) -> Result<(Username, Email, Password), Vec<FieldError>> {
    let mut errors = Vec::new();
    let email = Email::parse(email)
        .map_err(|m| {
            errors.push(FieldError {
                field: "email",
                message: m,
            })
        })
        .ok();
    if let Some(email) = &email {
        match users::by_email(&state.db, email.as_str()).await {
            Ok(Some(_)) => errors.push(FieldError {
                field: "email",
                message: "account already exists",
            }),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "sign-up email lookup failed"),
        }
    }
    let username = Username::parse(username)
        .map_err(|m| {
            errors.push(FieldError {
                field: "username",
                message: m,
            })
        })
        .ok();
    if let Some(username) = &username {
        match users::by_username(&state.db, username.as_str()).await {
            Ok(Some(_)) => errors.push(FieldError {
                field: "username",
                message: "username is taken",
            }),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "sign-up username lookup failed"),
        }
    }
    let password = Password::parse(password)
        .map_err(|m| {
            errors.push(FieldError {
                field: "password",
                message: m,
            })
        })
        .ok();
    match (username, email, password) {
        (Some(u), Some(e), Some(p)) if errors.is_empty() => Ok((u, e, p)),
        _ => Err(errors),
    }
}

/// Creates the account after `check_sign_up`; a concurrent sign-up that took the name
/// or email first turns into the same field error.
pub async fn sign_up(
    state: &AppState,
    ip: IpAddr,
    username: &str,
    email: &str,
    password: &str,
) -> Result<Result<User, Vec<FieldError>>, AppError> {
    state.limits.check_sign_up(ip).await?;
    let (username, email, password) = match check_sign_up(state, username, email, password).await {
        Ok(parsed) => parsed,
        Err(errors) => return Ok(Err(errors)),
    };
    let hash = state.hasher.hash(&password).await?;
    match users::create(&state.db, &username, &email, &hash).await? {
        Ok(user_id) => {
            let user = users::by_id(&state.db, user_id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("new user vanished"))?;
            tracing::info!(user_id, "account created");
            Ok(Ok(user))
        }
        Err(Taken::Email) => Ok(Err(vec![FieldError {
            field: "email",
            message: "account already exists",
        }])),
        Err(Taken::Username) => Ok(Err(vec![FieldError {
            field: "username",
            message: "username is taken",
        }])),
    }
}

/// Checks a login (email or username) and password. An unknown login costs the same
/// time as a wrong password and fails the same way. A correct password stored with
/// weaker argon2 parameters is re-hashed with ours.
pub async fn sign_in(
    state: &AppState,
    ip: IpAddr,
    login: &str,
    password: &str,
) -> Result<Option<User>, AppError> {
    let login = login.trim();
    let user = if login.len() <= 255 {
        users::by_login(&state.db, login).await?
    } else {
        None
    };
    let account = match &user {
        Some(user) => SignInAccount::Known(user.user_id),
        None => SignInAccount::Unknown(login),
    };
    state.limits.check_sign_in(ip, account).await?;
    let verified = state
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await?;
    let user = match (user, verified) {
        (Some(user), Verified::Yes) => user,
        (Some(mut user), Verified::YesRehashed(hash)) => {
            users::set_password_hash(&state.db, user.user_id, &hash).await?;
            tracing::info!(
                user_id = user.user_id,
                "password hash upgraded to current parameters"
            );
            user.password_hash = hash;
            user
        }
        _ => return Ok(None),
    };
    // Only said to whoever knows the password. Read from the database, not the
    // once-a-second copy, so that no sign-in slips through right after `admin disable`.
    if access::is_disabled(&state.db, user.user_id).await? {
        return Err(AppError::Forbidden("this account is disabled".into()));
    }
    Ok(Some(user))
}

/// Changes the password after checking the current one. Returns the updated user; every
/// other session of theirs is signed out by the new hash's fingerprint.
pub async fn change_password(
    state: &AppState,
    user: &User,
    current: &str,
    new: &str,
) -> Result<Result<User, FieldError>, AppError> {
    let verified = state
        .hasher
        .verify(current, Some(&user.password_hash))
        .await?;
    if verified == Verified::No {
        return Ok(Err(FieldError {
            field: "current_password",
            message: "current password is wrong",
        }));
    }
    let new = match Password::parse(new) {
        Ok(p) => p,
        Err(m) => {
            return Ok(Err(FieldError {
                field: "new_password",
                message: m,
            }))
        }
    };
    let hash = state.hasher.hash(&new).await?;
    users::set_password_hash(&state.db, user.user_id, &hash).await?;
    let mut user = user.clone();
    user.password_hash = hash;
    Ok(Ok(user))
}
