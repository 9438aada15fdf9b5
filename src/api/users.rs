use axum::{extract::State, routing::get, Json, Router};
use serde::Deserialize;

use super::extract::ApiQuery;
use crate::{
    auth::ApiUser,
    error::AppResult,
    state::AppState,
    store::{
        friends,
        users::{PublicProfile, UserSummary},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/", get(me))
        .route("/users", get(me))
        .route("/users/search", get(search))
}

async fn me(ApiUser(user): ApiUser) -> Json<PublicProfile> {
    Json(PublicProfile::from(&user))
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    limit: Option<u32>,
}

/// Usernames starting with `q`, without me and without anyone who blocked me.
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
