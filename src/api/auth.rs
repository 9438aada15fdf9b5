use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    doc::Notice,
    extract::{ApiForm, ApiJson, ApiQuery},
};
use crate::{
    accounts::{self, SignIn, SignUpForm, SignedUp},
    auth::{jwt::TokenKind, ApiAuth, ApiUser, ClientIp},
    error::{AppError, AppResult, ErrorBody},
    state::AppState,
    store::users::User,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_up))
        .routes(routes!(sign_in))
        .routes(routes!(socket_ticket))
        .routes(routes!(request_password_reset))
        .routes(routes!(confirm_password_reset))
        .routes(routes!(verify_email))
        .routes(routes!(sign_out_everywhere))
}

/// OAuth2's password form, as the original took it (`application/x-www-form-urlencoded`):
/// `username` is the email.
#[derive(Deserialize, ToSchema)]
struct PasswordForm {
    /// OAuth2's `password`; any other value is ignored.
    #[allow(dead_code)]
    #[serde(default)]
    #[schema(example = "password")]
    grant_type: Option<String>,
    /// The email address (OAuth2's field name).
    #[serde(default)]
    #[schema(example = "ada@example.com")]
    username: String,
    #[serde(default)]
    #[schema(example = "Password231")]
    password: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SignUpQuery {
    /// The new account's username: 3 to 25 letters, digits, `_` and `.`, neither first
    /// nor last nor two in a row.
    #[param(example = "ada.l")]
    username: String,
}

#[derive(Serialize, ToSchema)]
struct Token {
    /// A JWT: `user_id` (a string of digits), `username`, `email`, `exp` (30 minutes;
    /// an event ticket 5).
    access_token: String,
    /// `bearer` for an access token, `socketio` for an event ticket.
    #[schema(example = "bearer")]
    token_type: &'static str,
}

fn token(state: &AppState, user: &User, kind: TokenKind) -> (StatusCode, Json<Token>) {
    let token_type = match kind {
        TokenKind::Access => "bearer",
        TokenKind::EventTicket => "socketio",
    };
    let access_token = state.jwt.issue_for(user, kind);
    (
        StatusCode::CREATED,
        Json(Token {
            access_token,
            token_type,
        }),
    )
}

/// With `REQUIRE_EMAIL_VERIFICATION` the account cannot be used before its address is
/// confirmed, so there is no token yet: 202 `{"detail": …}` instead of the contract's 201.
#[utoipa::path(
    post,
    path = "/auth/sign-up",
    tag = "auth",
    params(SignUpQuery),
    request_body(content = PasswordForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "the account was made; an access token for it", body = Token),
        (status = 202, description = "with `REQUIRE_EMAIL_VERIFICATION`: the account waits for its address to be confirmed through a mailed link", body = Notice),
        (status = 400, description = "`invalid email`, `account already exists`, `invalid username`, `username is taken`, `invalid password` (checked in that order)", body = ErrorBody),
        (status = 429, description = "past `SIGNUPS_PER_HOUR` from this address", body = ErrorBody),
    ),
)]
#[tracing::instrument(skip_all)]
async fn sign_up(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiQuery(query): ApiQuery<SignUpQuery>,
    ApiForm(form): ApiForm<PasswordForm>,
) -> AppResult<Response> {
    let form = SignUpForm {
        username: &query.username,
        email: &form.username,
        password: &form.password,
        password_again: None,
    };
    match accounts::sign_up(&state, ip, form).await? {
        Ok(SignedUp::Ready(user)) => Ok(token(&state, &user, TokenKind::Access).into_response()),
        Ok(SignedUp::NeedsVerification(_)) => Ok((
            StatusCode::ACCEPTED,
            Notice::json("confirm your email address: we have sent you a link"),
        )
            .into_response()),
        Err(errors) => Err(AppError::bad_request(errors[0].message)),
    }
}

async fn signed_in(state: &AppState, ip: std::net::IpAddr, form: &PasswordForm) -> AppResult<User> {
    match accounts::sign_in(state, ip, &form.username, &form.password).await? {
        SignIn::Yes(user) => Ok(user),
        SignIn::No => Err(AppError::Unauthorized),
        SignIn::Unverified => Err(AppError::Forbidden(
            "email address not confirmed: we have sent you a link".into(),
        )),
    }
}

/// Signs in with the original's password form: 201 with an access token. An unknown
/// email answers 401 like a wrong password (the original's 404 told who is registered).
#[utoipa::path(
    post,
    path = "/auth/sign-in",
    tag = "auth",
    request_body(content = PasswordForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "an access token", body = Token),
        (status = 401, description = "`Could not validate credentials`: wrong email or password", body = ErrorBody),
        (status = 403, description = "the email address is not confirmed yet (`REQUIRE_EMAIL_VERIFICATION`)", body = ErrorBody),
        (status = 429, description = "past `LOGIN_ATTEMPTS_PER_MINUTE` for this account, or five times that from this address", body = ErrorBody),
    ),
)]
#[tracing::instrument(skip_all)]
async fn sign_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiForm(form): ApiForm<PasswordForm>,
) -> AppResult<(StatusCode, Json<Token>)> {
    let user = signed_in(&state, ip, &form).await?;
    Ok(token(&state, &user, TokenKind::Access))
}

/// A short-lived ticket for `GET /api/events?access_token=…`, for clients that cannot
/// send headers. Takes the password form, or a bearer token (a read-only personal token
/// too: the stream only reads).
#[utoipa::path(
    post,
    path = "/auth/socket-ticket",
    tag = "auth",
    security((), ("bearer" = [])),
    request_body(content = PasswordForm, content_type = "application/x-www-form-urlencoded", description = "the password form, unless a bearer token is sent"),
    responses(
        (status = 201, description = "a ticket (`token_type`: `socketio`) valid for 5 minutes", body = Token),
        (status = 401, description = "`Could not validate credentials`", body = ErrorBody),
        (status = 403, description = "the email address is not confirmed yet", body = ErrorBody),
        (status = 429, description = "past the sign-in limits", body = ErrorBody),
    ),
)]
#[tracing::instrument(skip_all)]
async fn socket_ticket(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    bearer: Result<ApiAuth, AppError>,
    form: Result<ApiForm<PasswordForm>, AppError>,
) -> AppResult<(StatusCode, Json<Token>)> {
    let user = match (bearer, form) {
        (Ok(ApiAuth { user, .. }), _) => user,
        (Err(_), Ok(ApiForm(form))) => signed_in(&state, ip, &form).await?,
        (Err(_), Err(_)) => return Err(AppError::Unauthorized),
    };
    Ok(token(&state, &user, TokenKind::EventTicket))
}

#[derive(Deserialize, ToSchema)]
struct ResetRequest {
    #[schema(example = "ada@example.com")]
    email: String,
}

/// "Forgot password": 202 whether or not the address has an account; a link valid for 30
/// minutes is mailed when it has one. 429 past the limits per address and per client.
/// *Additive.*
#[utoipa::path(
    post,
    path = "/auth/password-reset",
    tag = "auth",
    request_body = ResetRequest,
    responses(
        (status = 202, description = "the same answer whether or not the address has an account", body = Notice),
        (status = 400, description = "`invalid email`", body = ErrorBody),
        (status = 429, description = "past `PASSWORD_RESETS_PER_HOUR` for this address, or five times that from this client", body = ErrorBody),
    ),
)]
#[tracing::instrument(skip_all)]
async fn request_password_reset(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<ResetRequest>,
) -> AppResult<(StatusCode, Json<Notice>)> {
    accounts::request_password_reset(&state, ip, &body.email).await?;
    Ok((
        StatusCode::ACCEPTED,
        Notice::json("if an account has this address, a link to reset its password was sent to it"),
    ))
}

#[derive(Deserialize, ToSchema)]
struct ResetConfirm {
    /// The `token=` part of the mailed link.
    token: String,
    /// At least 8 characters, with an uppercase letter, a lowercase letter and a digit.
    #[schema(example = "Password231")]
    new_password: String,
}

/// Sets a new password with the secret of a reset link (its `token=` part). Every
/// session, access token and personal API token of the account stops working.
/// *Additive.*
#[utoipa::path(
    post,
    path = "/auth/password-reset/confirm",
    tag = "auth",
    request_body = ResetConfirm,
    responses(
        (status = 200, description = "`password changed`", body = Notice),
        (status = 400, description = "`this link is invalid or has expired: ask for a new one`; `invalid password`", body = ErrorBody),
    ),
)]
#[tracing::instrument(skip_all)]
async fn confirm_password_reset(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ResetConfirm>,
) -> AppResult<Json<Notice>> {
    match accounts::reset_password(&state, &body.token, &body.new_password, None).await? {
        Ok(_) => Ok(Notice::json("password changed")),
        Err(e) => Err(AppError::bad_request(e.message)),
    }
}

#[derive(Deserialize, ToSchema)]
struct VerifyBody {
    /// The `token=` part of the mailed link.
    token: String,
}

/// Confirms an email address with the mailed link's secret. *Additive.*
#[utoipa::path(
    post,
    path = "/auth/verify-email",
    tag = "auth",
    request_body = VerifyBody,
    responses(
        (status = 200, description = "`email address confirmed`", body = Notice),
        (status = 400, description = "`this link is invalid or has expired: ask for a new one`", body = ErrorBody),
    ),
)]
#[tracing::instrument(skip_all)]
async fn verify_email(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<VerifyBody>,
) -> AppResult<Json<Notice>> {
    if !accounts::verify_email(&state, &body.token).await? {
        return Err(AppError::bad_request(accounts::INVALID_LINK));
    }
    Ok(Notice::json("email address confirmed"))
}

/// Signs out every browser session and revokes every access token (this one included);
/// personal API tokens stay (each is revoked on its own, `DELETE /api/tokens/{id}`).
/// *Additive.*
#[utoipa::path(
    post,
    path = "/auth/sign-out-everywhere",
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, description = "`signed out everywhere`", body = Notice)),
)]
#[tracing::instrument(skip_all)]
async fn sign_out_everywhere(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> AppResult<Json<Notice>> {
    accounts::sign_out_everywhere(&state, &user, None).await?;
    Ok(Notice::json("signed out everywhere"))
}
