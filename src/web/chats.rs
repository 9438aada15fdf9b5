//! The chats list and the conversation pages (direct and group), with the composer,
//! history paging, edit/delete, read marks, typing and group management.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Form, Router,
};
use serde::Deserialize;

use axum_extra::extract::Form as RepeatedForm;

use super::{redirect, render, render::message_html, Ctx, Layout};
use crate::{
    domain::{cursor::Cursor, GroupName, MessageContent},
    error::{AppError, AppResult},
    state::AppState,
    store::{
        friends::{self as friend_store, ListKind},
        messages::{
            self, Conversation, ConversationSummary, GroupChat, GroupId, Message, MessageId,
        },
        users::{self, User, UserSummary},
    },
};

const PAGE_SIZE: u32 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/chats", get(chats_page))
        .route("/chats/list", get(chats_list))
        .route("/chats/groups", post(create_group))
        .route("/chats/{who}", get(direct_page))
        .route("/chats/{who}/older", get(direct_older))
        .route("/chats/{who}/messages", post(direct_send))
        .route("/chats/{who}/seen", post(direct_seen))
        .route("/chats/{who}/typing", post(direct_typing))
        .route("/chats/g/{id}", get(group_page))
        .route("/chats/g/{id}/older", get(group_older))
        .route("/chats/g/{id}/messages", post(group_send))
        .route("/chats/g/{id}/seen", post(group_seen))
        .route("/chats/g/{id}/typing", post(group_typing))
        .route(
            "/chats/g/{id}/members",
            get(group_members).post(group_add_member),
        )
        .route("/chats/g/{id}/remove", post(group_remove_member))
        .route("/chats/g/{id}/rename", post(group_rename))
        .route("/chats/g/{id}/leave", post(group_leave))
        .route("/messages/{id}/edit", post(edit_message))
        .route("/messages/{id}/delete", post(delete_message))
}

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
            html: message_html(&m.content),
            raw: m.content.clone(),
            time_iso: format!("{}Z", crate::db::format_time(t)),
            time_label: format!("{:02}:{:02}", t.hour(), t.minute()),
            edited: m.last_edited_date_time.is_some(),
        }
    }
}

#[derive(Template)]
#[template(path = "partials/message.html")]
pub struct MessageItem {
    pub m: MessageView,
}

/// Where a conversation lives, for links, forms and live-update targets.
pub struct ConvRef {
    /// `d-<user id>` or `g-<group id>`.
    pub key: String,
    /// `/chats/@bob` or `/chats/g/42`.
    pub path: String,
    pub title: String,
    pub other_user_id: Option<i32>,
}

impl ConvRef {
    pub fn direct(other: &User) -> Self {
        Self {
            key: format!("d-{}", other.user_id),
            path: format!("/chats/@{}", other.username),
            title: other.username.clone(),
            other_user_id: Some(other.user_id),
        }
    }
    pub fn group(chat: &GroupChat) -> Self {
        Self {
            key: format!("g-{}", chat.group_chat_id),
            path: format!("/chats/g/{}", chat.group_chat_id),
            title: chat.name.clone(),
            other_user_id: None,
        }
    }
}

struct ConversationRow {
    href: String,
    name: String,
    group: bool,
    preview: String,
    time_iso: String,
    time_label: String,
    unread: i64,
    user_id: i32,
}

impl From<ConversationSummary> for ConversationRow {
    fn from(c: ConversationSummary) -> Self {
        let group = c.kind == "group";
        let preview: String = c
            .last_message
            .unwrap_or_default()
            .chars()
            .take(80)
            .collect();
        Self {
            href: if group {
                format!("/chats/g/{}", c.id)
            } else {
                format!("/chats/@{}", c.name)
            },
            name: c.name,
            group,
            preview,
            time_iso: c
                .last_message_at
                .map(|t| format!("{}Z", crate::db::format_time(t)))
                .unwrap_or_default(),
            time_label: c
                .last_message_at
                .map(|t| format!("{:02}:{:02}", t.hour(), t.minute()))
                .unwrap_or_default(),
            unread: c.unread,
            user_id: if group { 0 } else { c.id },
        }
    }
}

#[derive(Template)]
#[template(path = "pages/chats.html")]
struct ChatsPage {
    layout: Layout,
    rows: Vec<ConversationRow>,
    friends: Vec<UserSummary>,
}

#[derive(Template)]
#[template(path = "partials/conversation_list.html")]
struct ChatsList {
    rows: Vec<ConversationRow>,
}

async fn chats_page(State(state): State<AppState>, mut ctx: Ctx) -> AppResult<Html<String>> {
    ctx.layout.section = "chats";
    let rows = messages::conversations(&state.db, ctx.user.user_id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let friends = friend_store::list(&state.db, ctx.user.user_id, ListKind::Friends, None, 100)
        .await?
        .results;
    render(&ChatsPage {
        layout: ctx.layout,
        rows,
        friends,
    })
}

async fn chats_list(State(state): State<AppState>, ctx: Ctx) -> AppResult<Html<String>> {
    let rows = messages::conversations(&state.db, ctx.user.user_id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    render(&ChatsList { rows })
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

struct GroupPanel {
    id: GroupId,
    members: Vec<UserSummary>,
    is_creator: bool,
    addable: Vec<UserSummary>,
}

#[derive(Template)]
#[template(path = "partials/older.html")]
struct OlderMessages {
    path: String,
    messages: Vec<MessageView>,
    older_cursor: Option<MessageId>,
}

/// `@bob` in the URL names a user; anything else is not a conversation.
async fn other_user(state: &AppState, who: &str) -> AppResult<User> {
    let username = who
        .strip_prefix('@')
        .ok_or_else(|| AppError::not_found("This page does not exist."))?;
    users::by_username(&state.db, username)
        .await?
        .ok_or_else(|| AppError::not_found("no such user exists"))
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

async fn direct_page(
    State(state): State<AppState>,
    mut ctx: Ctx,
    Path(who): Path<String>,
) -> AppResult<Response> {
    let other = other_user(&state, &who).await?;
    if other.user_id == ctx.user.user_id {
        return Err(AppError::not_found("You cannot chat with yourself."));
    }
    let relationship =
        friend_store::relationship(&state.db, ctx.user.user_id, other.user_id).await?;
    let conv = Conversation::Direct(other.user_id);
    let (messages, older_cursor) = latest_page(&state, ctx.user.user_id, conv, None).await?;
    if relationship != friend_store::Relationship::Friends && messages.is_empty() {
        return Err(AppError::not_found(
            "You can chat with your friends only. Send a friend request first.",
        ));
    }
    if let Some(newest) = messages.last() {
        if messages::mark_seen(&state.db, ctx.user.user_id, conv, newest.id).await? {
            state.events.wake();
        }
    }
    let seen = last_mine_seen(&state, ctx.user.user_id, conv, &messages).await?;
    let online = relationship == friend_store::Relationship::Friends
        && crate::store::events::is_online(&state.db, other.user_id).await?;
    ctx.layout.section = "chats";
    let page = ConversationPage {
        layout: ctx.layout,
        conv: ConvRef::direct(&other),
        messages,
        older_cursor,
        seen,
        can_send: relationship == friend_store::Relationship::Friends,
        online,
        group: None,
        client_key: uuid::Uuid::new_v4().to_string(),
    };
    Ok(render(&page)?.into_response())
}

/// Whether my last message in view has been read by the other side.
async fn last_mine_seen(
    state: &AppState,
    me: i32,
    conv: Conversation,
    messages: &[MessageView],
) -> AppResult<bool> {
    let Some(last_mine) = messages.iter().rev().find(|m| m.mine) else {
        return Ok(false);
    };
    match conv {
        Conversation::Direct(_) => {
            let page = messages::history(
                &state.db,
                me,
                conv,
                Some(&Cursor::Prev((last_mine.id - 1).to_string())),
                1,
            )
            .await?;
            Ok(page
                .results
                .first()
                .is_some_and(|m| m.message_id == last_mine.id && m.seen == Some(true)))
        }
        Conversation::Group(g) => {
            Ok(messages::read_by_others(&state.db, g, me, last_mine.id).await?)
        }
    }
}

async fn group_page(
    State(state): State<AppState>,
    mut ctx: Ctx,
    Path(id): Path<GroupId>,
) -> AppResult<Response> {
    let chat = messages::require_member(&state.db, ctx.user.user_id, id).await?;
    let conv = Conversation::Group(id);
    let (messages, older_cursor) = latest_page(&state, ctx.user.user_id, conv, None).await?;
    if let Some(newest) = messages.last() {
        if messages::mark_seen(&state.db, ctx.user.user_id, conv, newest.id).await? {
            state.events.wake();
        }
    }
    let seen = last_mine_seen(&state, ctx.user.user_id, conv, &messages).await?;
    let panel = group_panel(&state, &ctx.user, &chat).await?;
    ctx.layout.section = "chats";
    let page = ConversationPage {
        layout: ctx.layout,
        conv: ConvRef::group(&chat),
        messages,
        older_cursor,
        seen,
        can_send: true,
        online: false,
        group: Some(panel),
        client_key: uuid::Uuid::new_v4().to_string(),
    };
    Ok(render(&page)?.into_response())
}

async fn group_panel(state: &AppState, me: &User, chat: &GroupChat) -> AppResult<GroupPanel> {
    let members = messages::members(&state.db, chat.group_chat_id).await?;
    let friends = friend_store::list(&state.db, me.user_id, ListKind::Friends, None, 100)
        .await?
        .results;
    let addable = friends
        .into_iter()
        .filter(|f| !members.iter().any(|m| m.user_id == f.user_id))
        .collect();
    Ok(GroupPanel {
        id: chat.group_chat_id,
        members,
        is_creator: chat.creator_id == Some(me.user_id),
        addable,
    })
}

#[derive(Template)]
#[template(path = "partials/members.html")]
struct MembersPanel {
    layout: Layout,
    group: GroupPanel,
}

async fn group_members(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
) -> AppResult<Html<String>> {
    let chat = messages::require_member(&state.db, ctx.user.user_id, id).await?;
    let group = group_panel(&state, &ctx.user, &chat).await?;
    render(&MembersPanel {
        layout: ctx.layout,
        group,
    })
}

#[derive(Deserialize)]
struct OlderQuery {
    before: MessageId,
}

async fn direct_older(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(who): Path<String>,
    Query(q): Query<OlderQuery>,
) -> AppResult<Html<String>> {
    let other = other_user(&state, &who).await?;
    let (messages, older_cursor) = latest_page(
        &state,
        ctx.user.user_id,
        Conversation::Direct(other.user_id),
        Some(q.before),
    )
    .await?;
    render(&OlderMessages {
        path: ConvRef::direct(&other).path,
        messages,
        older_cursor,
    })
}

async fn group_older(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
    Query(q): Query<OlderQuery>,
) -> AppResult<Html<String>> {
    let chat = messages::require_member(&state.db, ctx.user.user_id, id).await?;
    let (messages, older_cursor) = latest_page(
        &state,
        ctx.user.user_id,
        Conversation::Group(id),
        Some(q.before),
    )
    .await?;
    render(&OlderMessages {
        path: ConvRef::group(&chat).path,
        messages,
        older_cursor,
    })
}

#[derive(Deserialize)]
struct SendInput {
    #[serde(default)]
    content: String,
    client_key: Option<String>,
}

/// Sends from the composer. htmx gets the new message's fragment to append (the live
/// stream brings the same message, which the page ignores as already shown); a plain
/// form is redirected back to the conversation.
async fn send(
    state: &AppState,
    ctx: Ctx,
    conv: Conversation,
    path: &str,
    input: SendInput,
) -> AppResult<Response> {
    let content = MessageContent::parse(&input.content).map_err(AppError::BadRequest)?;
    let (message, created) = messages::send(
        &state.db,
        &ctx.user,
        conv,
        &content,
        input.client_key.as_deref(),
    )
    .await?;
    if created {
        state.events.wake();
    }
    if ctx.htmx {
        Ok(render(&MessageItem {
            m: MessageView::new(&message, ctx.user.user_id),
        })?
        .into_response())
    } else {
        Ok(redirect(false, path))
    }
}

async fn direct_send(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(who): Path<String>,
    Form(input): Form<SendInput>,
) -> AppResult<Response> {
    let other = other_user(&state, &who).await?;
    let path = ConvRef::direct(&other).path;
    send(
        &state,
        ctx,
        Conversation::Direct(other.user_id),
        &path,
        input,
    )
    .await
}

async fn group_send(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
    Form(input): Form<SendInput>,
) -> AppResult<Response> {
    messages::require_member(&state.db, ctx.user.user_id, id).await?;
    send(
        &state,
        ctx,
        Conversation::Group(id),
        &format!("/chats/g/{id}"),
        input,
    )
    .await
}

#[derive(Deserialize)]
struct SeenInput {
    message_id: MessageId,
}

async fn direct_seen(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(who): Path<String>,
    Form(input): Form<SeenInput>,
) -> AppResult<StatusCode> {
    let other = other_user(&state, &who).await?;
    if messages::mark_seen(
        &state.db,
        ctx.user.user_id,
        Conversation::Direct(other.user_id),
        input.message_id,
    )
    .await?
    {
        state.events.wake();
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn group_seen(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
    Form(input): Form<SeenInput>,
) -> AppResult<StatusCode> {
    messages::require_member(&state.db, ctx.user.user_id, id).await?;
    if messages::mark_seen(
        &state.db,
        ctx.user.user_id,
        Conversation::Group(id),
        input.message_id,
    )
    .await?
    {
        state.events.wake();
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn direct_typing(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(who): Path<String>,
) -> AppResult<StatusCode> {
    let other = other_user(&state, &who).await?;
    messages::typing(&state.db, &ctx.user, Conversation::Direct(other.user_id)).await?;
    state.events.wake();
    Ok(StatusCode::NO_CONTENT)
}

async fn group_typing(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
) -> AppResult<StatusCode> {
    messages::typing(&state.db, &ctx.user, Conversation::Group(id)).await?;
    state.events.wake();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct EditInput {
    #[serde(default)]
    content: String,
}

async fn edit_message(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<MessageId>,
    Form(input): Form<EditInput>,
) -> AppResult<Response> {
    let content = MessageContent::parse(&input.content).map_err(AppError::BadRequest)?;
    let message = messages::edit(&state.db, &ctx.user, id, &content).await?;
    state.events.wake();
    back_to_conversation(&state, &ctx, &message).await
}

async fn delete_message(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<MessageId>,
) -> AppResult<Response> {
    let message = messages::delete(&state.db, &ctx.user, id).await?;
    state.events.wake();
    if ctx.htmx {
        return Ok(Html(deleted_placeholder(id)).into_response());
    }
    back_to_conversation(&state, &ctx, &message).await
}

pub fn deleted_placeholder(id: MessageId) -> String {
    format!(r#"<li id="msg-{id}" class="message deleted"><em>message deleted</em></li>"#)
}

async fn back_to_conversation(
    state: &AppState,
    ctx: &Ctx,
    message: &Message,
) -> AppResult<Response> {
    if ctx.htmx {
        return Ok(render(&MessageItem {
            m: MessageView::new(message, ctx.user.user_id),
        })?
        .into_response());
    }
    let path = match (message.group_chat_id, message.reciever_id) {
        (Some(g), _) => format!("/chats/g/{g}"),
        (None, Some(r)) => {
            let other = if r == ctx.user.user_id {
                message.sender_id.unwrap_or(r)
            } else {
                r
            };
            let user = users::by_id(&state.db, other)
                .await?
                .ok_or_else(|| AppError::not_found("no such user exists"))?;
            format!("/chats/@{}", user.username)
        }
        _ => "/chats".to_string(),
    };
    Ok(redirect(false, &path))
}

#[derive(Deserialize)]
struct CreateGroupInput {
    #[serde(default)]
    name: String,
    /// Repeated `member` fields, one per selected friend.
    #[serde(default)]
    member: Vec<String>,
}

async fn create_group(
    State(state): State<AppState>,
    ctx: Ctx,
    RepeatedForm(input): RepeatedForm<CreateGroupInput>,
) -> AppResult<Response> {
    let name = GroupName::parse(&input.name).map_err(AppError::BadRequest)?;
    let mut members = Vec::new();
    for username in input.member.iter().take(100) {
        members.push(
            users::by_username(&state.db, username)
                .await?
                .ok_or_else(|| AppError::not_found("no such user exists"))?,
        );
    }
    let chat = messages::create_group(&state.db, &ctx.user, &name, &members).await?;
    state.events.wake();
    Ok(redirect(
        ctx.htmx,
        &format!("/chats/g/{}", chat.group_chat_id),
    ))
}

#[derive(Deserialize)]
struct UsernameInput {
    #[serde(default)]
    username: String,
}

async fn group_add_member(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    let member = users::by_username(&state.db, input.username.trim())
        .await?
        .ok_or_else(|| AppError::not_found("no such user exists"))?;
    messages::add_member(&state.db, &ctx.user, id, &member).await?;
    state.events.wake();
    refreshed_members(&state, ctx, id).await
}

async fn group_remove_member(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    let member = users::by_username(&state.db, input.username.trim())
        .await?
        .ok_or_else(|| AppError::not_found("no such user exists"))?;
    messages::remove_member(&state.db, &ctx.user, id, &member).await?;
    state.events.wake();
    refreshed_members(&state, ctx, id).await
}

async fn refreshed_members(state: &AppState, ctx: Ctx, id: GroupId) -> AppResult<Response> {
    if !ctx.htmx {
        return Ok(redirect(false, &format!("/chats/g/{id}")));
    }
    let chat = messages::require_member(&state.db, ctx.user.user_id, id).await?;
    let group = group_panel(state, &ctx.user, &chat).await?;
    Ok(render(&MembersPanel {
        layout: ctx.layout,
        group,
    })?
    .into_response())
}

#[derive(Deserialize)]
struct RenameInput {
    #[serde(default)]
    name: String,
}

async fn group_rename(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
    Form(input): Form<RenameInput>,
) -> AppResult<Response> {
    let name = GroupName::parse(&input.name).map_err(AppError::BadRequest)?;
    messages::rename(&state.db, &ctx.user, id, &name).await?;
    state.events.wake();
    Ok(redirect(ctx.htmx, &format!("/chats/g/{id}")))
}

async fn group_leave(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
) -> AppResult<Response> {
    let me = ctx.user.clone();
    messages::remove_member(&state.db, &ctx.user, id, &me).await?;
    state.events.wake();
    Ok(redirect(ctx.htmx, "/chats"))
}
