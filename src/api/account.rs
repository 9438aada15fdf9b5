//! The account itself: personal API tokens, "download my data" and deletion.

use axum::{extract::State, http::StatusCode, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    doc::{Notice, Null},
    extract::{ApiJson, ApiPath},
};
use crate::{
    accounts,
    auth::{
        extract::Via,
        tokens::{self, NewToken},
        ApiAuth, ApiUser, ClientIp,
    },
    error::{AppError, AppResult, ErrorBody},
    state::AppState,
    store::{
        account_data::{self, AccountExport},
        api_tokens::{self, ApiToken},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(export))
        .routes(routes!(delete_account))
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

/// My personal API tokens, newest first (never their secrets). *Additive.*
#[utoipa::path(
    get,
    path = "/tokens",
    tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "my tokens", body = Vec<ApiToken>),
        (status = 403, description = "asked with a personal token: tokens are managed with a password sign-in or the session", body = ErrorBody),
    ),
)]
async fn list_tokens(
    State(state): State<AppState>,
    auth: ApiAuth,
) -> AppResult<Json<Vec<ApiToken>>> {
    not_with_a_personal_token(&auth)?;
    Ok(Json(
        api_tokens::for_user(&state.db, auth.user.user_id).await?,
    ))
}

#[derive(Deserialize, ToSchema)]
struct CreateTokenBody {
    /// What the token is for, 1 to 100 characters.
    #[schema(example = "backup script")]
    name: String,
    /// `read` (GET only) or `read_write`.
    #[schema(example = "read")]
    scope: String,
    /// Days until it expires, 1 to 366; null or absent: never.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 366)]
    expires_in_days: Option<i64>,
}

/// A token just made: its details and, this once, its secret.
#[derive(Serialize, ToSchema)]
struct CreatedToken {
    #[serde(flatten)]
    details: ApiToken,
    /// The secret (`mpat_…`): shown once, stored hashed.
    #[schema(example = "mpat_3q2…")]
    token: String,
}

/// Makes a personal API token: 201 with its details and, this once, its secret in
/// `token`. *Additive.*
#[utoipa::path(
    post,
    path = "/tokens",
    tag = "account",
    security(("bearer" = [])),
    request_body = CreateTokenBody,
    responses(
        (status = 201, description = "the token", body = CreatedToken),
        (status = 400, description = "at 50 tokens already", body = ErrorBody),
        (status = 403, description = "asked with a personal token", body = ErrorBody),
    ),
)]
async fn create_token(
    State(state): State<AppState>,
    auth: ApiAuth,
    ApiJson(body): ApiJson<CreateTokenBody>,
) -> AppResult<(StatusCode, Json<CreatedToken>)> {
    not_with_a_personal_token(&auth)?;
    let new = NewToken {
        name: &body.name,
        scope: &body.scope,
        expires_in_days: body.expires_in_days,
    };
    let (details, token) = tokens::create(&state, &auth.user, new).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { details, token })))
}

/// Revokes one of my tokens. *Additive.*
#[utoipa::path(
    delete,
    path = "/tokens/{id}",
    tag = "account",
    security(("bearer" = [])),
    params(("id" = i32, Path, description = "the token's `token_id`")),
    responses(
        (status = 200, description = "revoked; the body is `null`", body = Null),
        (status = 403, description = "asked with a personal token", body = ErrorBody),
        (status = 404, description = "`token not found`", body = ErrorBody),
    ),
)]
async fn revoke_token(
    State(state): State<AppState>,
    auth: ApiAuth,
    ApiPath(id): ApiPath<i32>,
) -> AppResult<Json<()>> {
    not_with_a_personal_token(&auth)?;
    if !api_tokens::revoke(&state.db, auth.user.user_id, id).await? {
        return Err(AppError::not_found("token not found"));
    }
    Ok(Json(()))
}

/// "Download my data": my profile, friends, requests, blocks, groups, every message I
/// sent or received and my tokens. *Additive.*
#[utoipa::path(
    get,
    path = "/account/export",
    tag = "account",
    security(("bearer" = [])),
    responses((status = 200, description = "everything stored about me", body = AccountExport)),
)]
async fn export(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> AppResult<Json<AccountExport>> {
    Ok(Json(account_data::export(&state.db, &user).await?))
}

#[derive(Deserialize, ToSchema)]
struct DeleteBody {
    /// My password, as a confirmation.
    password: String,
}

/// Deletes my account after checking its password: its friendships, direct
/// conversations, sessions and tokens go; its group messages stay, from "deleted user".
/// *Additive.*
#[utoipa::path(
    delete,
    path = "/account",
    tag = "account",
    security(("bearer" = [])),
    request_body = DeleteBody,
    responses(
        (status = 200, description = "`account deleted`", body = Notice),
        (status = 400, description = "`password is wrong`", body = ErrorBody),
        (status = 429, description = "past the sign-in limit (`LOGIN_ATTEMPTS_PER_MINUTE`)", body = ErrorBody),
    ),
)]
async fn delete_account(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiUser(user): ApiUser,
    ApiJson(body): ApiJson<DeleteBody>,
) -> AppResult<Json<Notice>> {
    match accounts::delete_account(&state, ip, &user, &body.password).await? {
        Ok(()) => Ok(Notice::json("account deleted")),
        Err(e) => Err(AppError::bad_request(e.message)),
    }
}
