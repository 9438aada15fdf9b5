//! Reactions and search (`store::rich`, `store::search`). Replies and mentions travel in
//! the message objects of `api::messages`.

use axum::{extract::State, http::StatusCode, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{ApiJson, ApiPath, ApiQuery},
    messages::RenderQuery,
};
use crate::{
    auth::ApiCaller,
    conversations,
    domain::cursor::{Cursor, Page},
    error::{AppError, AppResult, ErrorBody},
    rich::emoji::ReactionEmoji,
    state::AppState,
    store::{
        messages::{GroupId, MessageId},
        rich::{self, ReactOp, ReactionSummary},
        search::{self, SearchHit, SearchQuery, SearchText},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_reactions, add_reaction))
        .routes(routes!(remove_reaction))
        .routes(routes!(search_messages))
}

const MESSAGE_ID: &str = "the message's `message_id`";

#[derive(Serialize, ToSchema)]
struct Reactions {
    message_id: MessageId,
    reactions: Vec<ReactionSummary>,
}

fn parse_emoji(raw: &str, loc: &[&str]) -> AppResult<ReactionEmoji> {
    ReactionEmoji::parse(raw).map_err(|m| AppError::unprocessable(loc, m))
}

/// The reactions on a message I can read. *Additive.*
#[utoipa::path(
    get,
    path = "/messages/{id}/reactions",
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = i32, Path, description = MESSAGE_ID)),
    responses(
        (status = 200, description = "each emoji with its count and who", body = Reactions),
        (status = 404, description = "`message not found`", body = ErrorBody),
    ),
)]
async fn list_reactions(
    State(state): State<AppState>,
    ApiCaller(me): ApiCaller,
    ApiPath(id): ApiPath<MessageId>,
) -> AppResult<Json<Reactions>> {
    let reactions = rich::reactions(&state.db, me.user_id, id).await?;
    Ok(Json(Reactions {
        message_id: id,
        reactions,
    }))
}

#[derive(Deserialize, ToSchema)]
struct ReactionBody {
    /// One emoji of the allowed set.
    #[schema(example = "👍")]
    emoji: String,
}

/// Reacts to a message: 201 when my reaction was added, 200 when it was there already.
/// *Additive.*
#[utoipa::path(
    post,
    path = "/messages/{id}/reactions",
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = i32, Path, description = MESSAGE_ID)),
    request_body = ReactionBody,
    responses(
        (status = 201, description = "added", body = Reactions),
        (status = 200, description = "it was there already", body = Reactions),
        (status = 400, description = "we are no longer friends", body = ErrorBody),
        (status = 404, description = "`message not found`", body = ErrorBody),
    ),
)]
async fn add_reaction(
    State(state): State<AppState>,
    ApiCaller(me): ApiCaller,
    ApiPath(id): ApiPath<MessageId>,
    ApiJson(body): ApiJson<ReactionBody>,
) -> AppResult<(StatusCode, Json<Reactions>)> {
    let emoji = parse_emoji(&body.emoji, &["body", "emoji"])?;
    let (reactions, changed) =
        rich::react(&state.db, &state.history, &me, id, &emoji, ReactOp::Add).await?;
    if changed {
        state.events.wake();
    }
    Ok((
        if changed {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(Reactions {
            message_id: id,
            reactions,
        }),
    ))
}

/// Takes my reaction back (200 whether or not it was there). *Additive.*
#[utoipa::path(
    delete,
    path = "/messages/{id}/reactions/{emoji}",
    tag = "messages",
    security(("bearer" = [])),
    params(
        ("id" = i32, Path, description = MESSAGE_ID),
        ("emoji" = String, Path, description = "the emoji (percent-encoded)"),
    ),
    responses(
        (status = 200, description = "the reactions now", body = Reactions),
        (status = 400, description = "we are no longer friends", body = ErrorBody),
        (status = 404, description = "`message not found`", body = ErrorBody),
    ),
)]
async fn remove_reaction(
    State(state): State<AppState>,
    ApiCaller(me): ApiCaller,
    ApiPath((id, emoji)): ApiPath<(MessageId, String)>,
) -> AppResult<Json<Reactions>> {
    let emoji = parse_emoji(&emoji, &["path", "emoji"])?;
    let (reactions, changed) =
        rich::react(&state.db, &state.history, &me, id, &emoji, ReactOp::Remove).await?;
    if changed {
        state.events.wake();
    }
    Ok(Json(Reactions {
        message_id: id,
        reactions,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchParams {
    /// The words every result has.
    q: Option<String>,
    /// Results a page: 20 by default, above 0, at most 100.
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// `cursor.next_page` of an earlier answer.
    cursor: Option<String>,
    /// Only this group.
    group_chat_id: Option<GroupId>,
    /// Only the direct conversation with this user.
    friend_username: Option<String>,
    /// Only messages this user sent.
    from: Option<String>,
    /// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS` (UTC): at or after.
    after: Option<String>,
    /// The same: strictly before.
    before: Option<String>,
}

/// `GET /api/search?q=…`: the messages I can read now that have every word of `q`,
/// newest first, 20 a page (`limit` up to 100), `cursor` from `cursor.next_page`.
/// *Additive.*
#[utoipa::path(
    get,
    path = "/search",
    tag = "messages",
    security(("bearer" = [])),
    params(SearchParams, RenderQuery),
    responses(
        (status = 200, description = "a page of matching messages, newest first", body = Page<SearchHit>),
        (status = 400, description = "`invalid cursor`; `no addressee or groupchat specified`", body = ErrorBody),
        (status = 404, description = "`no such user exists`; `group chat not found`", body = ErrorBody),
    ),
)]
async fn search_messages(
    State(state): State<AppState>,
    ApiCaller(me): ApiCaller,
    ApiQuery(p): ApiQuery<SearchParams>,
    ApiQuery(render): ApiQuery<RenderQuery>,
) -> AppResult<Json<Page<SearchHit>>> {
    let with_html = render.html()?;
    let text = SearchText::parse(p.q.as_deref().unwrap_or_default())
        .map_err(|m| AppError::unprocessable(&["query", "q"], m))?;
    let limit = match p.limit {
        None => 20,
        Some(l) if l > 0 => l.min(100) as u32,
        Some(_) => {
            return Err(AppError::unprocessable(
                &["query", "limit"],
                "Input should be greater than 0",
            ))
        }
    };
    let cursor = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(raw) => Some(Cursor::parse(raw).map_err(AppError::bad_request)?),
        None => None,
    };
    let conversation = if p.friend_username.is_some() || p.group_chat_id.is_some() {
        Some(
            conversations::resolve(&state, p.friend_username.as_deref(), p.group_chat_id)
                .await?
                .conversation(),
        )
    } else {
        None
    };
    let from = match p.from.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
        Some(name) => Some(state.directory.named(&state.db, name).await?.user_id),
        None => None,
    };
    let time = |raw: &Option<String>, field: &str| match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => search::parse_time(raw)
            .map(Some)
            .map_err(|m| AppError::unprocessable(&["query", field], m)),
    };
    let query = SearchQuery {
        text,
        conversation,
        from,
        after: time(&p.after, "after")?,
        before: time(&p.before, "before")?,
    };
    let mut page = search::search(&state.db, me.user_id, &query, cursor.as_ref(), limit).await?;
    for hit in &mut page.results {
        rich::for_viewer(
            std::slice::from_mut(&mut hit.message),
            me.user_id,
            with_html,
        );
    }
    Ok(Json(page))
}
