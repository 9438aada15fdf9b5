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
    domain::cursor::Cursor,
    error::{AppError, AppResult},
    state::AppState,
    store::{
        friends as friend_store,
        messages::{self, Conversation, Message, MessageId},
        users::UserSummary,
    },
    web::{
        attachments::{for_pages, AttachmentView, ComposerInput},
        avatar::{display_names, Person},
        redirect, render,
        Ctx, Layout,
    },
};

const PAGE_SIZE: u32 = 50;

/// A message as a page shows it, from one viewer's side.
pub struct MessageView {
    pub id: MessageId,
    pub mine: bool,
    /// Who sent it: display name (once known, [`MessageView::name_senders`]), username,
    /// avatar.
    pub sender: Person,
    pub sender_id: i32,
    pub html: String,
    pub raw: String,
    pub time_iso: String,
    pub time_label: String,
    pub edited: bool,
    /// Files sent with the message (`partials/attachments.html`).
    pub attachments: Vec<AttachmentView>,
    /// Reply quote, reactions, mention: `web::rich`.
    pub rich: crate::web::rich::RichView,
}

impl MessageView {
    pub fn new(m: &Message, viewer: i32) -> Self {
        let t = m.created_date_time;
        Self {
            id: m.message_id,
            mine: m.sender_id == Some(viewer),
            sender: match &m.sender_username {
                Some(username) => Person::new(username, None),
                None => Person::deleted(),
            },
            sender_id: m.sender_id.unwrap_or(0),
            html: crate::store::rich::html_for(m, viewer),
            raw: m.content.clone(),
            time_iso: format!("{}Z", crate::db::format_time(t)),
            time_label: format!("{:02}:{:02}", t.hour(), t.minute()),
            edited: m.last_edited_date_time.is_some(),
            attachments: AttachmentView::list(&m.attachments),
            rich: crate::web::rich::RichView::new(m, viewer),
        }
    }

    /// Shows the senders' display names. (A message that arrives live shows the
    /// username until the page is loaded again.)
    pub async fn name_senders(state: &AppState, views: &mut [MessageView]) -> AppResult<()> {
        let names = display_names(state, views.iter().map(|v| v.sender_id)).await?;
        for view in views {
            if let Some(name) = names.get(&view.sender_id) {
                view.sender = Person::new(&view.sender.username, Some(name));
            }
        }
        Ok(())
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
    /// The largest file the composer may attach (`partials/composer_attachments.html`).
    attach_max_bytes: u64,
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
    MessageView::name_senders(state, &mut views).await?;
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
            let friends = friend_store::may_talk(&state.db, me, other.user_id).await?
                == friend_store::Talk::Friends;
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
    // Read marks are news to the other side: none between users who may no longer talk.
    if let Some(newest) = messages.last().filter(|_| can_send) {
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
    let mut conv = opened.at;
    if let Party::User(other) = &opened.party {
        if let Some(name) = display_names(&state, [other.user_id])
            .await?
            .remove(&other.user_id)
        {
            conv.title = format!("{name} (@{})", other.username);
        }
    }
    let page = ConversationPage {
        layout: ctx.layout,
        conv,
        messages,
        older_cursor,
        seen,
        can_send,
        online,
        group,
        client_key: uuid::Uuid::new_v4().to_string(),
        attach_max_bytes: state.attachments.max_file_bytes(),
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

/// Sends from the composer, with its files if any. htmx gets the new message's fragment
/// to append (the live stream brings the same message, which the page drops as already
/// shown); a plain form is redirected back to the conversation.
pub(super) async fn send(
    State(state): State<AppState>,
    ctx: Ctx,
    path: ConvPath,
    input: ComposerInput,
) -> AppResult<Response> {
    let opened = path.open(&state, &ctx.user).await?;
    let (message, created) = crate::attachments::send(
        &state,
        UserSummary::from(&ctx.user),
        opened.conv,
        &input.content,
        input.client_key,
        input.files,
        crate::web::rich::reply_to(input.reply_to_message_id.as_deref())?,
        AppError::BadRequest,
    )
    .await
    .map_err(for_pages)?;
    if created {
        state.events.wake();
    }
    if ctx.htmx {
        let mut view = MessageView::new(&message, ctx.user.user_id);
        MessageView::name_senders(&state, std::slice::from_mut(&mut view)).await?;
        Ok(render(&MessageItem { m: view })?.into_response())
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
    state.limits.check_typing(ctx.user.user_id)?;
    let conv = path.resolve(&state, &ctx.user).await?.conversation();
    messages::typing(&state.db, &ctx.user, conv).await?;
    state.events.wake();
    Ok(StatusCode::NO_CONTENT)
}
