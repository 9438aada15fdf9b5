//! Account rules shared by the pages and the API: sign-up, sign-in, password change and
//! reset, address checks, signing out everywhere, export and deletion.

use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::{
    auth::{limits::SignInAccount, password::Verified},
    domain::{Email, Password, Username},
    error::{AppError, AppResult},
    mail::Mail,
    state::AppState,
    store::{
        access, account_data,
        account_tokens::{self, Purpose},
        sessions,
        users::{self, Taken, User},
    },
};

/// How long a password-reset link works.
pub const RESET_LINK_MINUTES: i64 = 30;
/// How long an address-check link works.
pub const VERIFY_LINK_HOURS: i64 = 48;

/// A field a form got wrong, with the original's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: &'static str,
}

fn field(field: &'static str, message: &'static str) -> FieldError {
    FieldError { field, message }
}

/// What a sign-up form holds. `password_again` is the pages' confirmation field (the API
/// has none).
pub struct SignUpForm<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub password: &'a str,
    pub password_again: Option<&'a str>,
}

/// Every problem with a sign-up, in the original's order (the API answers the first).
async fn check_sign_up(
    state: &AppState,
    form: &SignUpForm<'_>,
) -> Result<(Username, Email, Password), Vec<FieldError>> {
    let mut errors = Vec::new();
    let email = Email::parse(form.email)
        .map_err(|m| errors.push(field("email", m)))
        .ok();
    if let Some(email) = &email {
        match users::by_email(&state.db, email.as_str()).await {
            Ok(Some(_)) => errors.push(field("email", "account already exists")),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "sign-up email lookup failed"),
        }
    }
    let username = Username::parse(form.username)
        .map_err(|m| errors.push(field("username", m)))
        .ok();
    if let Some(username) = &username {
        match users::by_username(&state.db, username.as_str()).await {
            Ok(Some(_)) => errors.push(field("username", "username is taken")),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "sign-up username lookup failed"),
        }
    }
    let password = Password::parse(form.password)
        .map_err(|m| errors.push(field("password", m)))
        .ok();
    if form
        .password_again
        .is_some_and(|again| again != form.password)
    {
        errors.push(field("password_again", "passwords do not match"));
    }
    match (username, email, password) {
        (Some(u), Some(e), Some(p)) if errors.is_empty() => Ok((u, e, p)),
        _ => Err(errors),
    }
}

/// A new account: ready to use, or waiting for its address to be confirmed
/// (`REQUIRE_EMAIL_VERIFICATION`; a link is on its way).
pub enum SignedUp {
    Ready(User),
    NeedsVerification(User),
}

/// Counts the attempt against the client's sign-up limit first (every attempt, so that
/// "username is taken" cannot be asked without limit), then checks the form once and
/// creates the account. A concurrent sign-up that took the name or email first turns
/// into the same field error.
pub async fn sign_up(
    state: &AppState,
    ip: IpAddr,
    form: SignUpForm<'_>,
) -> AppResult<Result<SignedUp, Vec<FieldError>>> {
    state.limits.check_sign_up(ip).await?;
    let (username, email, password) = match check_sign_up(state, &form).await {
        Ok(parsed) => parsed,
        Err(errors) => return Ok(Err(errors)),
    };
    let hash = state.hasher.hash(&password).await?;
    let user_id = match users::create(&state.db, &username, &email, &hash).await? {
        Ok(user_id) => user_id,
        Err(Taken::Email) => return Ok(Err(vec![field("email", "account already exists")])),
        Err(Taken::Username) => return Ok(Err(vec![field("username", "username is taken")])),
    };
    let user = users::by_id(&state.db, user_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("new user vanished"))?;
    tracing::info!(user_id, "account created");
    if !state.config.require_email_verification {
        return Ok(Ok(SignedUp::Ready(user)));
    }
    account_tokens::mark_unverified(&state.db, user_id).await?;
    send_verification(state, &user).await?;
    Ok(Ok(SignedUp::NeedsVerification(user)))
}

/// The outcome of a sign-in.
pub enum SignIn {
    Yes(User),
    /// Wrong login or password (the same for both).
    No,
    /// The right password, but the address is not confirmed yet: a new link was sent
    /// (unless one was sent a moment ago).
    Unverified,
}

/// Checks a login (email or username) and password. An unknown login costs the same
/// time as a wrong password and fails the same way. A correct password stored with
/// weaker argon2 parameters is re-hashed with ours.
pub async fn sign_in(
    state: &AppState,
    ip: IpAddr,
    login: &str,
    password: &str,
) -> AppResult<SignIn> {
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
            state.directory.forget(&user);
            user
        }
        _ => return Ok(SignIn::No),
    };
    // Only said to whoever knows the password. Read from the database, not the
    // once-a-second copy, so that no sign-in slips through right after `admin disable`.
    if access::is_disabled(&state.db, user.user_id).await? {
        return Err(AppError::Forbidden("this account is disabled".into()));
    }
    if account_tokens::is_unverified(&state.db, user.user_id).await? {
        // Counted as a reset request of the address, so that this cannot mail-bomb it.
        if state
            .limits
            .check_password_reset(ip, &user.email)
            .await
            .is_ok()
        {
            send_verification(state, &user).await?;
        }
        return Ok(SignIn::Unverified);
    }
    Ok(SignIn::Yes(user))
}

/// Changes the password after checking the current one. Every other session of the user
/// is signed out (their rows deleted; the new fingerprint would refuse them anyway) and
/// access tokens issued before stop working; `keep_session` is this browser's session key.
pub async fn change_password(
    state: &AppState,
    user: &User,
    current: &str,
    new: &str,
    keep_session: Option<&str>,
) -> AppResult<Result<User, FieldError>> {
    let verified = state
        .hasher
        .verify(current, Some(&user.password_hash))
        .await?;
    if verified == Verified::No {
        return Ok(Err(field("current_password", "current password is wrong")));
    }
    let new = match Password::parse(new) {
        Ok(p) => p,
        Err(m) => return Ok(Err(field("new_password", m))),
    };
    let hash = state.hasher.hash(&new).await?;
    users::set_password_hash(&state.db, user.user_id, &hash).await?;
    sessions::delete_all_but(&state.db, user.user_id, keep_session).await?;
    state.directory.forget(user);
    let mut user = user.clone();
    user.password_hash = hash;
    tracing::info!(user_id = user.user_id, "password changed");
    Ok(Ok(user))
}

/// Signs out every session but `keep_session` and revokes every access token issued
/// before (a new security stamp). Personal API tokens stay: they are revoked one by one.
pub async fn sign_out_everywhere(
    state: &AppState,
    user: &User,
    keep_session: Option<&str>,
) -> AppResult<User> {
    let stamp = users::rotate_security_stamp(&state.db, user.user_id).await?;
    let signed_out = sessions::delete_all_but(&state.db, user.user_id, keep_session).await?;
    state.directory.forget(user);
    tracing::info!(user_id = user.user_id, signed_out, "signed out everywhere");
    let mut user = user.clone();
    user.security_stamp = Some(stamp);
    Ok(user)
}

/// A random link secret and the hash that is stored of it.
fn link_secret() -> (String, String) {
    let secret = crate::config::random_secret();
    let hash = hex::encode(Sha256::digest(secret.as_bytes()));
    (secret, hash)
}

pub fn hash_link_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.trim().as_bytes()))
}

fn public_url(state: &AppState) -> &str {
    state
        .config
        .public_url
        .as_deref()
        .unwrap_or("http://127.0.0.1:8000")
}

/// "Forgot password": counted per client and per address first; then, if the address has
/// an account, a single-use link valid for 30 minutes is mailed to it. The caller answers
/// the same either way, and the mail leaves after the answer.
pub async fn request_password_reset(state: &AppState, ip: IpAddr, email: &str) -> AppResult<()> {
    let email = Email::parse(email).map_err(AppError::bad_request)?;
    state
        .limits
        .check_password_reset(ip, email.as_str())
        .await?;
    let Some(user) = users::by_email(&state.db, email.as_str()).await? else {
        tracing::info!("password reset asked for an address without an account");
        return Ok(());
    };
    let (secret, hash) = link_secret();
    account_tokens::create(
        &state.db,
        user.user_id,
        Purpose::PasswordReset,
        &hash,
        time::Duration::minutes(RESET_LINK_MINUTES),
    )
    .await?;
    let link = format!("{}/password/reset?token={secret}", public_url(state));
    state.mailer.send(Mail {
        to: user.email.clone(),
        subject: "Reset your Messenger password".into(),
        body: format!(
            "Hello {},\n\nsomeone (we hope you) asked to reset the password of your Messenger \
             account. Open this link within {RESET_LINK_MINUTES} minutes to choose a new one:\n\n\
             {link}\n\nThe link works once. Using it signs you out everywhere.\n\
             If you did not ask for this, ignore this mail: your password stays as it is.\n",
            user.username
        ),
    });
    tracing::info!(user_id = user.user_id, "password reset link queued");
    Ok(())
}

/// Whether a reset link is (still) valid, for showing its form.
pub async fn reset_link_is_valid(state: &AppState, secret: &str) -> AppResult<bool> {
    Ok(
        account_tokens::owner(&state.db, Purpose::PasswordReset, &hash_link_secret(secret))
            .await?
            .is_some(),
    )
}

/// The error of a link that does not work (unknown, used or expired).
pub const INVALID_LINK: &str = "this link is invalid or has expired: ask for a new one";

/// Uses a reset link: the new password is set, every session of the user is signed out,
/// and every token (access and personal) is revoked.
pub async fn reset_password(
    state: &AppState,
    secret: &str,
    new: &str,
    again: Option<&str>,
) -> AppResult<Result<User, FieldError>> {
    let hash = hash_link_secret(secret);
    let Some(user_id) = account_tokens::owner(&state.db, Purpose::PasswordReset, &hash).await?
    else {
        return Ok(Err(field("token", INVALID_LINK)));
    };
    let password = match Password::parse(new) {
        Ok(p) => p,
        Err(m) => return Ok(Err(field("new_password", m))),
    };
    if again.is_some_and(|again| again != new) {
        return Ok(Err(field("new_password_again", "passwords do not match")));
    }
    let password_hash = state.hasher.hash(&password).await?;
    let stamp = crate::config::random_secret()[..32].to_string();
    if !account_tokens::reset_password(&state.db, &hash, user_id, &password_hash, &stamp).await? {
        return Ok(Err(field("token", INVALID_LINK)));
    }
    let user = users::by_id(&state.db, user_id)
        .await?
        .ok_or_else(|| AppError::bad_request(INVALID_LINK))?;
    state.directory.forget(&user);
    tracing::info!(
        user_id,
        "password reset by mailed link; signed out everywhere"
    );
    Ok(Ok(user))
}

/// Mails a new address-check link to `user`.
async fn send_verification(state: &AppState, user: &User) -> AppResult<()> {
    let (secret, hash) = link_secret();
    account_tokens::create(
        &state.db,
        user.user_id,
        Purpose::VerifyEmail,
        &hash,
        time::Duration::hours(VERIFY_LINK_HOURS),
    )
    .await?;
    let link = format!("{}/verify-email?token={secret}", public_url(state));
    state.mailer.send(Mail {
        to: user.email.clone(),
        subject: "Confirm your Messenger address".into(),
        body: format!(
            "Hello {},\n\nopen this link within {VERIFY_LINK_HOURS} hours to confirm your address \
             and start using Messenger:\n\n{link}\n\nIf you did not make this account, ignore \
             this mail.\n",
            user.username
        ),
    });
    Ok(())
}

/// Uses an address-check link; false when it does not work.
pub async fn verify_email(state: &AppState, secret: &str) -> AppResult<bool> {
    let verified = account_tokens::verify_email(&state.db, &hash_link_secret(secret)).await?;
    if let Some(user_id) = verified {
        tracing::info!(user_id, "email address confirmed");
    }
    Ok(verified.is_some())
}

/// Deletes the account after checking its password (see `store::account_data` for what
/// stays and what goes).
pub async fn delete_account(
    state: &AppState,
    ip: IpAddr,
    user: &User,
    password: &str,
) -> AppResult<Result<(), FieldError>> {
    // A stolen session must not become a way to guess the password without limit.
    state
        .limits
        .check_sign_in(ip, SignInAccount::Known(user.user_id))
        .await?;
    if state
        .hasher
        .verify(password, Some(&user.password_hash))
        .await?
        == Verified::No
    {
        return Ok(Err(field("password", "password is wrong")));
    }
    let deleted = account_data::delete(&state.db, user).await;
    // Their direct chats are gone and their group messages now a deleted user's, and they
    // left others' friend lists: rare enough to forget everything rather than find theirs.
    state.history.forget_all();
    state.friend_lists.forget_all();
    deleted?;
    state.directory.forget(user);
    state.events.wake();
    tracing::info!(user_id = user.user_id, "account deleted");
    Ok(Ok(()))
}
