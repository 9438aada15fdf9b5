//! Friend routes of the original API, plus unblock, the blocked list and search.

use axum::{
    extract::State,
    http::StatusCode,
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;

use super::extract::{ApiQuery, PageQuery};
use crate::{
    auth::ApiUser,
    domain::cursor::Page,
    error::AppResult,
    state::AppState,
    store::{
        friends::{self, CreatedRequest, ListKind},
        users::{self, User, UserSummary},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/friends/", get(list_friends))
        .route("/friends", get(list_friends))
        .route("/friends/requests/senders", get(list_senders))
        .route("/friends/requests/recievers", get(list_receivers))
        .route("/friends/requests/receivers", get(list_receivers))
        .route("/friends/blocked", get(list_blocked))
        .route(
            "/friends/requests",
            post(send_request).delete(delete_friendship),
        )
        .route("/friends/requests/accept", post(accept))
        .route("/friends/requests/decline", post(decline))
        .route("/friends/requests/block", post(block))
        .route("/friends/requests/unblock", post(unblock))
}

async fn list(
    state: &AppState,
    me: &User,
    kind: ListKind,
    query: &PageQuery,
) -> AppResult<Json<Page<UserSummary>>> {
    let (limit, cursor) = query.parse()?;
    Ok(Json(
        friends::list(&state.db, me.user_id, kind, cursor.as_ref(), limit).await?,
    ))
}

async fn list_friends(
    State(s): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> AppResult<Json<Page<UserSummary>>> {
    list(&s, &me, ListKind::Friends, &q).await
}

async fn list_senders(
    State(s): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> AppResult<Json<Page<UserSummary>>> {
    list(&s, &me, ListKind::RequestsReceived, &q).await
}

async fn list_receivers(
    State(s): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> AppResult<Json<Page<UserSummary>>> {
    list(&s, &me, ListKind::RequestsSent, &q).await
}

async fn list_blocked(
    State(s): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> AppResult<Json<Page<UserSummary>>> {
    list(&s, &me, ListKind::Blocked, &q).await
}

/// The other user of a friend route, by username: 404 `no such user exists`.
pub async fn existing_user(state: &AppState, username: &str) -> AppResult<User> {
    users::named(&state.db, username).await
}

#[derive(Deserialize)]
struct UsernameQuery {
    username: String,
}

async fn send_request(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<UsernameQuery>,
) -> AppResult<(StatusCode, Json<CreatedRequest>)> {
    state.limits.check_friend_request(me.user_id).await?;
    let target = existing_user(&state, &q.username).await?;
    let created = friends::request(&state.db, &me, &target).await?;
    state.events.wake();
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Deserialize)]
struct RequesterQuery {
    requester_username: String,
}

async fn answer(
    state: AppState,
    me: User,
    requester: &str,
    accept: bool,
) -> AppResult<(StatusCode, Json<()>)> {
    let requester = existing_user(&state, requester).await?;
    friends::answer(&state.db, &me, &requester, accept).await?;
    state.events.wake();
    Ok((StatusCode::CREATED, Json(())))
}

async fn accept(
    State(s): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<RequesterQuery>,
) -> AppResult<(StatusCode, Json<()>)> {
    answer(s, me, &q.requester_username, true).await
}

async fn decline(
    State(s): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<RequesterQuery>,
) -> AppResult<(StatusCode, Json<()>)> {
    answer(s, me, &q.requester_username, false).await
}

#[derive(Deserialize)]
struct BlockQuery {
    user_to_block_username: String,
}

async fn block(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<BlockQuery>,
) -> AppResult<(StatusCode, Json<()>)> {
    let target = existing_user(&state, &q.user_to_block_username).await?;
    friends::block(&state.db, &me, &target).await?;
    state.events.wake();
    Ok((StatusCode::CREATED, Json(())))
}

async fn unblock(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<UsernameQuery>,
) -> AppResult<(StatusCode, Json<()>)> {
    let target = existing_user(&state, &q.username).await?;
    friends::delete(&state.db, &me, &target, true).await?;
    Ok((StatusCode::CREATED, Json(())))
}

#[derive(Deserialize)]
struct FriendQuery {
    friend_username: String,
}

async fn delete_friendship(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<FriendQuery>,
) -> AppResult<Json<()>> {
    let other = existing_user(&state, &q.friend_username).await?;
    friends::delete(&state.db, &me, &other, false).await?;
    state.events.wake();
    Ok(Json(()))
}
