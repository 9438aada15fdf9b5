use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::extract::{ApiForm, ApiJson, ApiQuery};
use crate::{
    accounts::{self, SignIn, SignUpForm, SignedUp},
    auth::{jwt::TokenKind, ApiAuth, ApiUser, ClientIp},
    error::{AppError, AppResult},
    state::AppState,
    store::users::User,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/sign-up", post(sign_up))
        .route("/auth/sign-in", post(sign_in))
        .route("/auth/socket-ticket", post(socket_ticket))
        .route("/auth/password-reset", post(request_password_reset))
        .route("/auth/password-reset/confirm", post(confirm_password_reset))
        .route("/auth/verify-email", post(verify_email))
        .route("/auth/sign-out-everywhere", post(sign_out_everywhere))
}

/// OAuth2's password form, as the original took it: `username` is the email.
#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

#[derive(Deserialize)]
struct SignUpQuery {
    username: String,
}

#[derive(Serialize)]
struct Token {
    access_token: String,
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
            Json(json!({ "detail": "confirm your email address: we have sent you a link" })),
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

#[derive(Deserialize)]
struct ResetRequest {
    email: String,
}

/// "Forgot password": 202 whether or not the address has an account; a link valid for 30
/// minutes is mailed when it has one. 429 past the limits per address and per client.
#[tracing::instrument(skip_all)]
async fn request_password_reset(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<ResetRequest>,
) -> AppResult<(StatusCode, Json<serde_json::Value>)> {
    accounts::request_password_reset(&state, ip, &body.email).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({ "detail": "if an account has this address, a link to reset its password was sent to it" }),
        ),
    ))
}

#[derive(Deserialize)]
struct ResetConfirm {
    token: String,
    new_password: String,
}

/// Sets a new password with the secret of a reset link (its `token=` part). Every
/// session, access token and personal API token of the account stops working.
#[tracing::instrument(skip_all)]
async fn confirm_password_reset(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ResetConfirm>,
) -> AppResult<Json<serde_json::Value>> {
    match accounts::reset_password(&state, &body.token, &body.new_password, None).await? {
        Ok(_) => Ok(Json(json!({ "detail": "password changed" }))),
        Err(e) => Err(AppError::bad_request(e.message)),
    }
}

#[derive(Deserialize)]
struct VerifyBody {
    token: String,
}

#[tracing::instrument(skip_all)]
async fn verify_email(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<VerifyBody>,
) -> AppResult<Json<serde_json::Value>> {
    if !accounts::verify_email(&state, &body.token).await? {
        return Err(AppError::bad_request(accounts::INVALID_LINK));
    }
    Ok(Json(json!({ "detail": "email address confirmed" })))
}

/// Signs out every browser session and revokes every access token (this one included);
/// personal API tokens stay (each is revoked on its own, `DELETE /api/tokens/{id}`).
#[tracing::instrument(skip_all)]
async fn sign_out_everywhere(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> AppResult<Json<serde_json::Value>> {
    accounts::sign_out_everywhere(&state, &user, None).await?;
    Ok(Json(json!({ "detail": "signed out everywhere" })))
}
