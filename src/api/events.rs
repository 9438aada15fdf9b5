//! `GET /api/events`: the API's live event stream (bearer token, or a ticket in
//! `?access_token=` for clients that cannot send headers).

use axum::{extract::State, http::HeaderMap, response::Response, routing::get, Router};
use serde::Deserialize;

use super::extract::ApiQuery;
use crate::{
    auth::{extract::user_from_token, jwt::TokenKind, ApiUser},
    error::{AppError, AppResult},
    events::stream,
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new().route("/events", get(events))
}

#[derive(Deserialize)]
struct StreamQuery {
    access_token: Option<String>,
    last_event_id: Option<i64>,
}

async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: Result<ApiUser, AppError>,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> AppResult<Response> {
    let user = match (&query.access_token, user) {
        (Some(ticket), _) => user_from_token(&state, ticket, TokenKind::EventTicket).await?,
        (None, Ok(ApiUser(user))) => user,
        (None, Err(e)) => return Err(e),
    };
    let last_id = stream::last_event_id(&headers, query.last_event_id);
    Ok(stream::open(
        &state.events,
        user.user_id,
        last_id,
        stream::json_encoder(),
        None,
    ))
}
