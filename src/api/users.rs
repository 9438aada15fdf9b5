use axum::{extract::State, Json};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{also_at, extract::ApiQuery};
use crate::{
    auth::ApiUser,
    error::AppResult,
    state::AppState,
    store::{
        friends,
        users::{PublicProfile, UserSummary},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(also_at(routes!(me), "/users"))
        .routes(routes!(search))
}

/// Who I am (the original's `GET /users/`).
#[utoipa::path(
    get,
    path = "/users/",
    tag = "users",
    security(("bearer" = [])),
    responses((status = 200, description = "my profile; nulls where unset", body = PublicProfile)),
)]
async fn me(ApiUser(user): ApiUser) -> Json<PublicProfile> {
    Json(PublicProfile::from(&user))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    /// The start of a username; empty finds nobody.
    #[serde(default)]
    q: String,
    /// At most this many (10 at most).
    limit: Option<u32>,
}

/// Usernames starting with `q`, without me and without anyone who blocked me. *Additive.*
#[utoipa::path(
    get,
    path = "/users/search",
    tag = "users",
    security(("bearer" = [])),
    params(SearchQuery),
    responses((status = 200, description = "up to `limit` users, by username", body = Vec<UserSummary>)),
)]
async fn search(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> AppResult<Json<Vec<UserSummary>>> {
    let q = query.q.trim();
    if q.is_empty() {
        return Ok(Json(Vec::new()));
    }
    let found =
        friends::search(&state.db, me.user_id, q, query.limit.unwrap_or(10).min(10)).await?;
    Ok(Json(found))
}
