//! The account itself: personal API tokens, "download my data" and deletion.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::{delete, get},
    Json, Router,
};
use serde::Deserialize;
use serde_json::json;

use super::extract::ApiJson;
use crate::{
    accounts,
    auth::{
        extract::Via,
        tokens::{self, NewToken},
        ApiAuth, ApiUser, ClientIp,
    },
    error::{AppError, AppResult},
    state::AppState,
    store::{
        account_data::{self, AccountExport},
        api_tokens::{self, ApiToken},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke_token))
        .route("/account/export", get(export))
        .route("/account", delete(delete_account))
}

/// Tokens are managed with a password sign-in (a JWT) or the pages' session: a personal
/// token cannot make or list others, so a leaked one cannot multiply itself.
fn not_with_a_personal_token(auth: &ApiAuth) -> AppResult<()> {
    if matches!(auth.via, Via::PersonalToken(_)) {
        return Err(AppError::Forbidden(
            "personal API tokens cannot manage tokens: sign in with your password".into(),
        ));
    }
    Ok(())
}

async fn list_tokens(
    State(state): State<AppState>,
    auth: ApiAuth,
) -> AppResult<Json<Vec<ApiToken>>> {
    not_with_a_personal_token(&auth)?;
    Ok(Json(
        api_tokens::for_user(&state.db, auth.user.user_id).await?,
    ))
}

#[derive(Deserialize)]
struct CreateTokenBody {
    name: String,
    scope: String,
    #[serde(default)]
    expires_in_days: Option<i64>,
}

/// 201 with the token's details and, this once, its secret in `token`.
async fn create_token(
    State(state): State<AppState>,
    auth: ApiAuth,
    ApiJson(body): ApiJson<CreateTokenBody>,
) -> AppResult<(StatusCode, Json<serde_json::Value>)> {
    not_with_a_personal_token(&auth)?;
    let new = NewToken {
        name: &body.name,
        scope: &body.scope,
        expires_in_days: body.expires_in_days,
    };
    let (token, secret) = tokens::create(&state, &auth.user, new).await?;
    let mut answer = serde_json::to_value(&token).map_err(anyhow::Error::from)?;
    answer["token"] = json!(secret);
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn revoke_token(
    State(state): State<AppState>,
    auth: ApiAuth,
    Path(id): Path<i32>,
) -> AppResult<Json<()>> {
    not_with_a_personal_token(&auth)?;
    if !api_tokens::revoke(&state.db, auth.user.user_id, id).await? {
        return Err(AppError::not_found("token not found"));
    }
    Ok(Json(()))
}

async fn export(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> AppResult<Json<AccountExport>> {
    Ok(Json(account_data::export(&state.db, &user).await?))
}

#[derive(Deserialize)]
struct DeleteBody {
    password: String,
}

/// Deletes the account after checking its password: 200, or 400 `password is wrong`.
async fn delete_account(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiUser(user): ApiUser,
    ApiJson(body): ApiJson<DeleteBody>,
) -> AppResult<Json<serde_json::Value>> {
    match accounts::delete_account(&state, ip, &user, &body.password).await? {
        Ok(()) => Ok(Json(json!({ "detail": "account deleted" }))),
        Err(e) => Err(AppError::bad_request(e.message)),
    }
}
