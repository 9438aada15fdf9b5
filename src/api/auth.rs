use axum::{extract::State, http::StatusCode, routing::post, Json, Router};
use serde::{Deserialize, Serialize};

use super::extract::{ApiForm, ApiQuery};
use crate::{
    accounts,
    auth::{jwt::TokenKind, ApiUser, ClientIp},
    error::{AppError, AppResult},
    state::AppState,
    store::users::User,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/sign-up", post(sign_up))
        .route("/auth/sign-in", post(sign_in))
        .route("/auth/socket-ticket", post(socket_ticket))
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
    let access_token = state
        .jwt
        .issue(user.user_id.into(), &user.username, &user.email, kind);
    (
        StatusCode::CREATED,
        Json(Token {
            access_token,
            token_type,
        }),
    )
}

#[tracing::instrument(skip_all)]
async fn sign_up(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiQuery(query): ApiQuery<SignUpQuery>,
    ApiForm(form): ApiForm<PasswordForm>,
) -> AppResult<(StatusCode, Json<Token>)> {
    match accounts::sign_up(&state, ip, &query.username, &form.username, &form.password).await? {
        Ok(user) => Ok(token(&state, &user, TokenKind::Access)),
        Err(errors) => Err(AppError::bad_request(errors[0].message)),
    }
}

async fn signed_in(state: &AppState, ip: std::net::IpAddr, form: &PasswordForm) -> AppResult<User> {
    accounts::sign_in(state, ip, &form.username, &form.password)
        .await?
        .ok_or(AppError::Unauthorized)
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
/// send headers. Takes the password form, or a bearer token.
#[tracing::instrument(skip_all)]
async fn socket_ticket(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    bearer: Result<ApiUser, AppError>,
    form: Result<ApiForm<PasswordForm>, AppError>,
) -> AppResult<(StatusCode, Json<Token>)> {
    let user = match (bearer, form) {
        (Ok(ApiUser(user)), _) => user,
        (Err(_), Ok(ApiForm(form))) => signed_in(&state, ip, &form).await?,
        (Err(_), Err(_)) => return Err(AppError::Unauthorized),
    };
    Ok(token(&state, &user, TokenKind::EventTicket))
}
