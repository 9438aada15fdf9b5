//! One conversation: the page with its latest messages, older pages, the composer,
//! read marks and typing.

use askama::Template;
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
    Form,
};
use serde::Deserialize;

use super::{groups::GroupPanel, ConvPath, ConvRef, Party};
use crate::{
    domain::{cursor::Cursor, MessageContent},
    error::{AppError, AppResult},
    state::AppState,
    store::{
        friends as friend_store,
        messages::{self, Conversation, Message, MessageId},
        sending::Outgoing,
        users::UserSummary,
    },
    web::{redirect, render, Ctx, Layout},
};

const PAGE_SIZE: u32 = 50;

/// A message as a page shows it, from one viewer's side.
pub struct MessageView {
    pub id: MessageId,
    pub mine: bool,
    pub sender: String,
    pub sender_id: i32,
    pub html: String,
    pub raw: String,
    pub time_iso: String,
    pub time_label: String,
    pub edited: bool,
    /// Reply quote, reactions, mention: `web::rich`.
    pub rich: crate::web::rich::RichView,
}

impl MessageView {
    pub fn new(m: &Message, viewer: i32) -> Self {
        let t = m.created_date_time;
        Self {
            id: m.message_id,
            mine: m.sender_id == Some(viewer),
            sender: m
                .sender_username
                .clone()
                .unwrap_or_else(|| "deleted account".into()),
            sender_id: m.sender_id.unwrap_or(0),
            html: crate::store::rich::html_for(m, viewer),
            raw: m.content.clone(),
            time_iso: format!("{}Z", crate::db::format_time(t)),
            time_label: format!("{:02}:{:02}", t.hour(), t.minute()),
            edited: m.last_edited_date_time.is_some(),
            rich: crate::web::rich::RichView::new(m, viewer),
        }
    }
}

#[derive(Template)]
#[template(path = "partials/message.html")]
pub struct MessageItem {
    pub m: MessageView,
}

#[derive(Template)]
#[template(path = "pages/conversation.html")]
struct ConversationPage {
    layout: Layout,
    conv: ConvRef,
    messages: Vec<MessageView>,
    older_cursor: Option<MessageId>,
    seen: bool,
    can_send: bool,
    online: bool,
    group: Option<GroupPanel>,
    client_key: String,
}

#[derive(Template)]
#[template(path = "partials/older.html")]
struct OlderMessages {
    path: String,
    messages: Vec<MessageView>,
    older_cursor: Option<MessageId>,
}

/// The newest page of a conversation (oldest first for display) and the cursor for older.
async fn latest_page(
    state: &AppState,
    me: i32,
    conv: Conversation,
    before: Option<MessageId>,
) -> AppResult<(Vec<MessageView>, Option<MessageId>)> {
    let cursor = before.map(|id| Cursor::Next(id.to_string()));
    let page = messages::history(&state.db, me, conv, cursor.as_ref(), PAGE_SIZE).await?;
    let older = page
        .cursor
        .next_page
        .as_ref()
        .and_then(|_| page.results.last().map(|m| m.message_id));
    let mut views: Vec<MessageView> = page
        .results
        .iter()
        .map(|m| MessageView::new(m, me))
        .collect();
    views.reverse();
    Ok((views, older))
}

/// The conversation page: the latest messages (marked seen), the composer, and for a
/// group the members panel.
pub(super) async fn conversation_page(
    State(state): State<AppState>,
    mut ctx: Ctx,
    path: ConvPath,
) -> AppResult<Response> {
    let opened = path.open(&state, &ctx.user).await?;
    let me = ctx.user.user_id;
    let (messages, older_cursor) = latest_page(&state, me, opened.conv, None).await?;
    let (can_send, online, group) = match &opened.party {
        Party::User(other) => {
            let friends = friend_store::relationship(&state.db, me, other.user_id).await?
                == friend_store::Relationship::Friends;
            if !friends && messages.is_empty() {
                return Err(AppError::not_found(
                    "You can chat with your friends only. Send a friend request first.",
                ));
            }
            let online =
                friends && crate::store::events::is_online(&state.db, other.user_id).await?;
            (friends, online, None)
        }
        Party::Group(chat) => (
            true,
            false,
            Some(GroupPanel::load(&state, &ctx.user, chat).await?),
        ),
    };
    if let Some(newest) = messages.last() {
        if messages::mark_seen(&state.db, me, opened.conv, newest.id).await? {
            state.events.wake();
        }
    }
    let seen = match messages.iter().rev().find(|m| m.mine) {
        Some(last_mine) => {
            messages::seen_by_others(&state.db, me, opened.conv, last_mine.id).await?
        }
        None => false,
    };
    ctx.layout.section = "chats";
    let page = ConversationPage {
        layout: ctx.layout,
        conv: opened.at,
        messages,
        older_cursor,
        seen,
        can_send,
        online,
        group,
        client_key: uuid::Uuid::new_v4().to_string(),
    };
    Ok(render(&page)?.into_response())
}

#[derive(Deserialize)]
pub(super) struct OlderQuery {
    before: MessageId,
}

/// Older messages, loaded as the reader scrolls up.
pub(super) async fn older(
    State(state): State<AppState>,
    ctx: Ctx,
    path: ConvPath,
    Query(q): Query<OlderQuery>,
) -> AppResult<Html<String>> {
    let opened = path.open(&state, &ctx.user).await?;
    let (messages, older_cursor) =
        latest_page(&state, ctx.user.user_id, opened.conv, Some(q.before)).await?;
    render(&OlderMessages {
        path: opened.at.path,
        messages,
        older_cursor,
    })
}

#[derive(Deserialize)]
pub(super) struct SendInput {
    #[serde(default)]
    content: String,
    client_key: Option<String>,
    /// The message answered (set by `static/rich.js`).
    reply_to_message_id: Option<String>,
}

/// Sends from the composer. htmx gets the new message's fragment to append (the live
/// stream brings the same message, which the page drops as already shown); a plain form
/// is redirected back to the conversation.
pub(super) async fn send(
    State(state): State<AppState>,
    ctx: Ctx,
    path: ConvPath,
    Form(input): Form<SendInput>,
) -> AppResult<Response> {
    let opened = path.open(&state, &ctx.user).await?;
    let content = MessageContent::parse(&input.content).map_err(AppError::BadRequest)?;
    let outgoing = Outgoing {
        sender: UserSummary::from(&ctx.user),
        to: opened.conv,
        content,
        client_key: input.client_key,
        rich: crate::web::rich::reply_to(input.reply_to_message_id.as_deref())?,
    };
    let (message, created) = state
        .sends
        .send(&state.db, outgoing)
        .await
        .map_err(crate::web::rich::for_htmx)?;
    if created {
        state.events.wake();
    }
    if ctx.htmx {
        Ok(render(&MessageItem {
            m: MessageView::new(&message, ctx.user.user_id),
        })?
        .into_response())
    } else {
        Ok(redirect(false, &opened.at.path))
    }
}

#[derive(Deserialize)]
pub(super) struct SeenInput {
    message_id: MessageId,
}

pub(super) async fn seen(
    State(state): State<AppState>,
    ctx: Ctx,
    path: ConvPath,
    Form(input): Form<SeenInput>,
) -> AppResult<StatusCode> {
    let conv = path.resolve(&state, &ctx.user).await?.conversation();
    if messages::mark_seen(&state.db, ctx.user.user_id, conv, input.message_id).await? {
        state.events.wake();
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn typing(
    State(state): State<AppState>,
    ctx: Ctx,
    path: ConvPath,
) -> AppResult<StatusCode> {
    let conv = path.resolve(&state, &ctx.user).await?.conversation();
    messages::typing(&state.db, &ctx.user, conv).await?;
    state.events.wake();
    Ok(StatusCode::NO_CONTENT)
}
