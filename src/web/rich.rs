//! Richer messages on the pages: the reply quote and reactions under each message
//! (`partials/reply_quote.html`, `partials/reactions.html`), toggling a reaction, the
//! members a group message can mention (for the composer's autocomplete), opening a
//! conversation at a message, search, and the live `reaction` event's fragment.
//! `static/rich.js` does the little the browser must: reply, jump to a quoted message
//! (loading older pages until it is there), mention autocomplete, long-press names.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Form, Json, Router,
};
use serde::Deserialize;
use serde_json::Value;

use super::{redirect, render, Ctx, Layout};
use crate::{
    domain::cursor::Cursor,
    error::{AppError, AppResult},
    rich::{
        emoji::{ReactionEmoji, COMMON},
        format,
    },
    state::AppState,
    store::{
        messages::{self, Conversation, GroupId, Message, MessageId},
        rich::{self as rich_store, ReactOp, ReactionSummary, RichSend},
        search::{self, SearchHit, SearchQuery, SearchText},
        users::UserSummary,
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/messages/{id}/react", post(react))
        .route("/messages/{id}/open", get(open_at))
        .route("/chats/g/{id}/mentionable", get(mentionable))
        .route("/search", get(search_page))
}

/// The composer's `reply_to_message_id` field: empty is no reply.
pub fn reply_to(raw: Option<&str>) -> AppResult<RichSend> {
    let id = match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<MessageId>()
                .map_err(|_| AppError::bad_request("invalid message to reply to"))?,
        ),
    };
    Ok(RichSend::replying_to(id))
}

/// A reply's quote: who wrote the original and its first line, or that it is gone.
pub struct ReplyView {
    pub id: MessageId,
    pub deleted: bool,
    pub sender: String,
    pub excerpt: String,
}

/// One emoji under a message, from one viewer's side.
pub struct ReactionView {
    pub emoji: String,
    pub count: usize,
    /// The viewer is among those who reacted so.
    pub mine: bool,
    /// Who reacted, for the tooltip and the long-press list.
    pub names: String,
    /// The whole of it for screen readers.
    pub label: String,
}

impl ReactionView {
    pub fn list(summary: &[ReactionSummary], viewer: i32) -> Vec<Self> {
        summary
            .iter()
            .map(|r| {
                let mine = r.users.iter().any(|u| u.user_id == viewer);
                let names = r
                    .users
                    .iter()
                    .map(|u| u.username.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                let label = format!(
                    "{} {} {}: {}.{}",
                    r.emoji,
                    r.count,
                    if r.count == 1 {
                        "reaction"
                    } else {
                        "reactions"
                    },
                    names,
                    if mine {
                        " You reacted; press to take yours back."
                    } else {
                        " Press to react the same."
                    }
                );
                Self {
                    emoji: r.emoji.clone(),
                    count: r.count,
                    mine,
                    names,
                    label,
                }
            })
            .collect()
    }
}

/// What a message shows beyond its text, from one viewer's side.
pub struct RichView {
    pub reply: Option<ReplyView>,
    pub reactions: Vec<ReactionView>,
    /// The viewer is mentioned (the page highlights the message).
    pub mentioned: bool,
    /// The first line of this message, for a reply to it.
    pub first_line: String,
    /// The picker's common emoji.
    pub common: &'static [&'static str],
}

impl RichView {
    pub fn new(m: &Message, viewer: i32) -> Self {
        Self {
            reply: m.rich.reply_to.as_ref().map(|q| ReplyView {
                id: q.message_id,
                deleted: q.deleted,
                sender: q
                    .sender_username
                    .clone()
                    .unwrap_or_else(|| "deleted account".into()),
                excerpt: q.excerpt.clone(),
            }),
            reactions: ReactionView::list(&m.rich.reactions, viewer),
            mentioned: m.rich.mentions.iter().any(|u| u.user_id == viewer),
            first_line: format::first_line(&m.content, 80),
            common: COMMON,
        }
    }
}

/// The reactions of one message alone: the answer to a toggle and the live update.
#[derive(Template)]
#[template(path = "partials/reaction_list.html")]
struct ReactionList {
    m: ReactionListMessage,
}

struct ReactionListMessage {
    id: MessageId,
    rich: ReactionListRich,
}

struct ReactionListRich {
    reactions: Vec<ReactionView>,
}

fn reaction_list_html(
    id: MessageId,
    summary: &[ReactionSummary],
    viewer: i32,
) -> AppResult<String> {
    Ok(render(&ReactionList {
        m: ReactionListMessage {
            id,
            rich: ReactionListRich {
                reactions: ReactionView::list(summary, viewer),
            },
        },
    })?
    .0)
}

#[derive(Deserialize)]
struct ReactInput {
    #[serde(default)]
    emoji: String,
}

/// Toggles my reaction: htmx gets the message's reactions again; a plain form goes back
/// to the conversation at the message.
async fn react(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<MessageId>,
    Form(input): Form<ReactInput>,
) -> AppResult<Response> {
    let emoji = ReactionEmoji::parse(&input.emoji).map_err(AppError::bad_request)?;
    let me = UserSummary::from(&ctx.user);
    let (summary, changed) =
        rich_store::react(&state.db, &state.history, &me, id, &emoji, ReactOp::Toggle)
            .await
            .map_err(super::attachments::for_pages)?;
    if changed {
        state.events.wake();
    }
    if ctx.htmx {
        return Ok(Html(reaction_list_html(id, &summary, me.user_id)?).into_response());
    }
    Ok(redirect(false, &format!("/messages/{id}/open")))
}

/// Opens the conversation of a message I can see, at that message (`static/rich.js`
/// loads older pages until it is on the page).
async fn open_at(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<MessageId>,
) -> AppResult<Response> {
    let me = ctx.user.user_id;
    let m = messages::visible_message(&state.db, me, id).await?;
    let path = match m.group_chat_id {
        Some(g) => format!("/chats/g/{g}"),
        None => {
            let other = if m.sender_id == Some(me) {
                m.reciever_id
            } else {
                m.sender_id
            };
            let user = match other {
                Some(other) => state.directory.by_id(&state.db, other).await?,
                None => None,
            }
            .ok_or_else(|| AppError::not_found("message not found"))?;
            format!("/chats/@{}", user.username)
        }
    };
    Ok(redirect(ctx.htmx, &format!("{path}#msg-{id}")))
}

/// The usernames a message in this group may mention (its members), for autocomplete.
async fn mentionable(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
) -> AppResult<Json<Vec<String>>> {
    messages::require_member(&state.db, ctx.user.user_id, id).await?;
    let members = messages::members(&state.db, id).await?;
    Ok(Json(members.into_iter().map(|m| m.username).collect()))
}

// ---- search ----

#[derive(Deserialize, Default)]
struct SearchInput {
    #[serde(default)]
    q: String,
    /// `g-<group id>` or `d-<user id>`.
    #[serde(default)]
    chat: String,
    /// A username.
    #[serde(default)]
    from: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    before: String,
    #[serde(default)]
    cursor: String,
}

struct ChatOption {
    value: String,
    label: String,
    selected: bool,
}

struct HitView {
    path: String,
    place: String,
    sender: String,
    time_iso: String,
    time_label: String,
    highlight: String,
}

impl From<SearchHit> for HitView {
    fn from(h: SearchHit) -> Self {
        let t = h.message.created_date_time;
        Self {
            place: match h.conversation.kind {
                "group" => format!("# {}", h.conversation.name),
                _ => format!("@{}", h.conversation.name),
            },
            path: h.path,
            sender: h
                .message
                .sender_username
                .clone()
                .unwrap_or_else(|| "deleted account".into()),
            time_iso: format!("{}Z", crate::db::format_time(t)),
            time_label: format!(
                "{}-{:02}-{:02} {:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            ),
            highlight: h.highlight,
        }
    }
}

#[derive(Template)]
#[template(path = "pages/search.html")]
struct SearchPage {
    layout: Layout,
    q: String,
    from: String,
    after: String,
    before: String,
    chats: Vec<ChatOption>,
    searched: bool,
    error: Option<String>,
    hits: Vec<HitView>,
    next: Option<String>,
}

/// The search page: the box with its filters, and a page of results newest first.
async fn search_page(
    State(state): State<AppState>,
    mut ctx: Ctx,
    Query(input): Query<SearchInput>,
) -> AppResult<Response> {
    ctx.layout.section = "search";
    let me = ctx.user.user_id;
    let chats = messages::conversations(&state.db, me)
        .await?
        .into_iter()
        .map(|c| {
            let value = format!("{}-{}", if c.kind == "group" { "g" } else { "d" }, c.id);
            ChatOption {
                selected: value == input.chat,
                label: if c.kind == "group" {
                    format!("# {}", c.name)
                } else {
                    format!("@{}", c.name)
                },
                value,
            }
        })
        .collect();
    let mut page = SearchPage {
        layout: ctx.layout,
        q: input.q.clone(),
        from: input.from.clone(),
        after: input.after.clone(),
        before: input.before.clone(),
        chats,
        searched: false,
        error: None,
        hits: Vec::new(),
        next: None,
    };
    let mut status = StatusCode::OK;
    if !input.q.trim().is_empty() || !input.cursor.is_empty() {
        match run_search(&state, me, &input).await {
            Ok((hits, next)) => {
                page.searched = true;
                page.hits = hits;
                page.next = next;
            }
            Err(e) => {
                status = e.status();
                page.error = Some(e.to_string());
            }
        }
    }
    Ok((status, render(&page)?).into_response())
}

async fn run_search(
    state: &AppState,
    me: i32,
    input: &SearchInput,
) -> AppResult<(Vec<HitView>, Option<String>)> {
    let text = SearchText::parse(&input.q).map_err(AppError::BadRequest)?;
    let conversation = match input.chat.split_once('-') {
        _ if input.chat.is_empty() => None,
        Some(("g", id)) => Some(Conversation::Group(
            id.parse()
                .map_err(|_| AppError::bad_request("unknown chat"))?,
        )),
        Some(("d", id)) => Some(Conversation::Direct(
            id.parse()
                .map_err(|_| AppError::bad_request("unknown chat"))?,
        )),
        _ => return Err(AppError::bad_request("unknown chat")),
    };
    let from = match input.from.trim().trim_start_matches('@') {
        "" => None,
        name => Some(state.directory.named(&state.db, name).await?.user_id),
    };
    let date = |raw: &str| match raw.trim() {
        "" => Ok(None),
        raw => search::parse_time(raw)
            .map(Some)
            .map_err(AppError::BadRequest),
    };
    let query = SearchQuery {
        text,
        conversation,
        from,
        after: date(&input.after)?,
        before: date(&input.before)?,
    };
    let cursor = match input.cursor.as_str() {
        "" => None,
        raw => Some(Cursor::parse(raw).map_err(AppError::bad_request)?),
    };
    let page = search::search(&state.db, me, &query, cursor.as_ref(), 20).await?;
    let next = page.cursor.next_page.map(|c| {
        let params: Vec<(&str, &str)> = vec![
            ("q", input.q.as_str()),
            ("chat", input.chat.as_str()),
            ("from", input.from.as_str()),
            ("after", input.after.as_str()),
            ("before", input.before.as_str()),
            ("cursor", c.as_str()),
        ];
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.into_iter().filter(|(_, v)| !v.is_empty()))
            .finish();
        format!("/search?{query}")
    });
    Ok((page.results.into_iter().map(HitView::from).collect(), next))
}

// ---- the live stream ----

/// The page fragment of a `reaction` event: the message's reactions, from `viewer`'s
/// side, to swap in out of band.
pub fn reaction_fragment(data: &Value, viewer: i32) -> Option<String> {
    let id = data.get("message_id").and_then(Value::as_i64)?;
    let summary: Vec<ReactionSummary> = data
        .get("reactions")
        .cloned()
        .and_then(|r| serde_json::from_value(r).ok())
        .unwrap_or_default();
    let html = reaction_list_html(id as MessageId, &summary, viewer).ok()?;
    Some(html.replacen("<div ", r#"<div hx-swap-oob="true" "#, 1))
}
