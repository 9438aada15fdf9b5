//! Friend routes of the original API, plus unblock, the blocked list and search.

use axum::{extract::State, http::StatusCode, Json};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    also_at,
    doc::Null,
    extract::{ApiQuery, PageQuery},
};
use crate::error::ErrorBody;
use crate::{
    auth::{ApiCaller, ApiUser},
    domain::cursor::Page,
    error::AppResult,
    state::AppState,
    store::{
        friends::{self, CreatedRequest, ListKind},
        users::{self, User, UserSummary},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(also_at(routes!(list_friends), "/friends"))
        .routes(routes!(list_senders))
        .routes(also_at(
            routes!(list_receivers),
            "/friends/requests/receivers",
        ))
        .routes(routes!(list_blocked))
        .routes(routes!(send_request, delete_friendship))
        .routes(routes!(accept))
        .routes(routes!(decline))
        .routes(routes!(block))
        .routes(routes!(unblock))
}

async fn list(
    state: &AppState,
    me: &UserSummary,
    kind: ListKind,
    query: &PageQuery,
) -> AppResult<Json<Page<UserSummary>>> {
    let (limit, cursor) = query.parse()?;
    Ok(Json(
        friends::list(
            &state.db,
            &state.friend_lists,
            me.user_id,
            kind,
            cursor.as_ref(),
            limit,
        )
        .await?,
    ))
}

/// My friends (latest status with me: accepted).
#[utoipa::path(
    get,
    path = "/friends/",
    tag = "friends",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "a page of my friends, by username", body = Page<UserSummary>),
        (status = 400, description = "`invalid cursor`", body = ErrorBody),
    ),
)]
async fn list_friends(
    State(s): State<AppState>,
    ApiCaller(me): ApiCaller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> AppResult<Json<Page<UserSummary>>> {
    list(&s, &me, ListKind::Friends, &q).await
}

/// Users whose request to me waits for my answer.
#[utoipa::path(
    get,
    path = "/friends/requests/senders",
    tag = "friends",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "a page of users who asked me, by username", body = Page<UserSummary>),
        (status = 400, description = "`invalid cursor`", body = ErrorBody),
    ),
)]
async fn list_senders(
    State(s): State<AppState>,
    ApiCaller(me): ApiCaller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> AppResult<Json<Page<UserSummary>>> {
    list(&s, &me, ListKind::RequestsReceived, &q).await
}

/// Users I sent a request to that waits for their answer (the path as the original spelt it; `receivers` answers too).
#[utoipa::path(
    get,
    path = "/friends/requests/recievers",
    tag = "friends",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "a page of users I asked, by username", body = Page<UserSummary>),
        (status = 400, description = "`invalid cursor`", body = ErrorBody),
    ),
)]
async fn list_receivers(
    State(s): State<AppState>,
    ApiCaller(me): ApiCaller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> AppResult<Json<Page<UserSummary>>> {
    list(&s, &me, ListKind::RequestsSent, &q).await
}

/// Users I blocked. *Additive.*
#[utoipa::path(
    get,
    path = "/friends/blocked",
    tag = "friends",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "a page of users I blocked, by username", body = Page<UserSummary>),
        (status = 400, description = "`invalid cursor`", body = ErrorBody),
    ),
)]
async fn list_blocked(
    State(s): State<AppState>,
    ApiCaller(me): ApiCaller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> AppResult<Json<Page<UserSummary>>> {
    list(&s, &me, ListKind::Blocked, &q).await
}

/// The other user of a friend route, by username: 404 `no such user exists`.
pub async fn existing_user(state: &AppState, username: &str) -> AppResult<User> {
    users::named(&state.db, username).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UsernameQuery {
    /// The other user's username.
    username: String,
}

/// Asks `username` to be friends.
#[utoipa::path(
    post,
    path = "/friends/requests",
    tag = "friends",
    security(("bearer" = [])),
    params(UsernameQuery),
    responses(
        (status = 201, description = "the request was sent", body = CreatedRequest),
        (status = 400, description = "`cannot send friendship request to yourself`; `a friendship request was already sent` (a pending request either way); `you cannot send a friendship request` (already friends, declined or blocked)", body = ErrorBody),
        (status = 404, description = "`no such user exists`", body = ErrorBody),
        (status = 429, description = "past `FRIEND_REQUESTS_PER_HOUR`", body = ErrorBody),
    ),
)]
async fn send_request(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<UsernameQuery>,
) -> AppResult<(StatusCode, Json<CreatedRequest>)> {
    state.limits.check_friend_request(me.user_id).await?;
    let target = existing_user(&state, &q.username).await?;
    let created = friends::request(&state.db, &state.friend_lists, &me, &target).await?;
    state.events.wake();
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RequesterQuery {
    /// Who sent me the request.
    requester_username: String,
}

async fn answer(
    state: AppState,
    me: User,
    requester: &str,
    accept: bool,
) -> AppResult<(StatusCode, Json<()>)> {
    let requester = existing_user(&state, requester).await?;
    friends::answer(&state.db, &state.friend_lists, &me, &requester, accept).await?;
    state.events.wake();
    Ok((StatusCode::CREATED, Json(())))
}

/// Accepts the request `requester_username` sent me.
#[utoipa::path(
    post,
    path = "/friends/requests/accept",
    tag = "friends",
    security(("bearer" = [])),
    params(RequesterQuery),
    responses(
        (status = 201, description = "done; the body is `null`", body = Null),
        (status = 400, description = "`friendship is blocked`; `friend request already addressed`", body = ErrorBody),
        (status = 404, description = "`no such user exists`; `friendship was not found` (no request from them to me)", body = ErrorBody),
    ),
)]
async fn accept(
    State(s): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<RequesterQuery>,
) -> AppResult<(StatusCode, Json<()>)> {
    answer(s, me, &q.requester_username, true).await
}

/// Declines the request `requester_username` sent me.
#[utoipa::path(
    post,
    path = "/friends/requests/decline",
    tag = "friends",
    security(("bearer" = [])),
    params(RequesterQuery),
    responses(
        (status = 201, description = "done; the body is `null`", body = Null),
        (status = 400, description = "`friendship is blocked`; `friend request already addressed`", body = ErrorBody),
        (status = 404, description = "`no such user exists`; `friendship was not found` (no request from them to me)", body = ErrorBody),
    ),
)]
async fn decline(
    State(s): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<RequesterQuery>,
) -> AppResult<(StatusCode, Json<()>)> {
    answer(s, me, &q.requester_username, false).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct BlockQuery {
    /// Whom to block.
    user_to_block_username: String,
}

/// Blocks a user, with or without a friendship between us (one is made, with me as the
/// requester).
#[utoipa::path(
    post,
    path = "/friends/requests/block",
    tag = "friends",
    security(("bearer" = [])),
    params(BlockQuery),
    responses(
        (status = 201, description = "blocked; the body is `null`", body = Null),
        (status = 400, description = "`friendship is blocked`", body = ErrorBody),
        (status = 404, description = "`no such user exists`", body = ErrorBody),
    ),
)]
async fn block(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<BlockQuery>,
) -> AppResult<(StatusCode, Json<()>)> {
    let target = existing_user(&state, &q.user_to_block_username).await?;
    friends::block(&state.db, &state.friend_lists, &me, &target).await?;
    state.events.wake();
    Ok((StatusCode::CREATED, Json(())))
}

/// Lifts my block of `username`: the friendship and its history go. *Additive.*
#[utoipa::path(
    post,
    path = "/friends/requests/unblock",
    tag = "friends",
    security(("bearer" = [])),
    params(UsernameQuery),
    responses(
        (status = 201, description = "unblocked; the body is `null`", body = Null),
        (status = 400, description = "`user is not blocked`", body = ErrorBody),
        (status = 404, description = "`no such user exists`; `friendship was not found`", body = ErrorBody),
    ),
)]
async fn unblock(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<UsernameQuery>,
) -> AppResult<(StatusCode, Json<()>)> {
    let target = existing_user(&state, &q.username).await?;
    friends::delete(&state.db, &state.friend_lists, &me, &target, true).await?;
    Ok((StatusCode::CREATED, Json(())))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FriendQuery {
    /// The friend, or the user a pending request is with.
    friend_username: String,
}

/// Deletes the friendship and its whole history: cancels a request, or unfriends. The
/// original answered 500 when there was none.
#[utoipa::path(
    delete,
    path = "/friends/requests",
    tag = "friends",
    security(("bearer" = [])),
    params(FriendQuery),
    responses(
        (status = 200, description = "deleted; the body is `null`", body = Null),
        (status = 404, description = "`no such user exists`; `friendship was not found`", body = ErrorBody),
    ),
)]
async fn delete_friendship(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(q): ApiQuery<FriendQuery>,
) -> AppResult<Json<()>> {
    let other = existing_user(&state, &q.friend_username).await?;
    friends::delete(&state.db, &state.friend_lists, &me, &other, false).await?;
    state.events.wake();
    Ok(Json(()))
}
