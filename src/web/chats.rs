//! The chats list and the conversation pages (direct and group), with the composer,
//! history paging, edit/delete, read marks, typing and group management.

use askama::Template;
use axum::{
    extract::{FromRequestParts, Path, Query, RawPathParams, State},
    http::request::Parts,
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
        sending::Outgoing,
        users::{self, User, UserSummary},
    },
};

const PAGE_SIZE: u32 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/chats", get(chats_page))
        .route("/chats/list", get(chats_list))
        .route("/chats/groups", post(create_group))
        // `{who}` is `@username`; `g/{id}` a group. The same handlers serve both.
        .route("/chats/{who}", get(conversation_page))
        .route("/chats/{who}/older", get(older))
        .route("/chats/{who}/messages", post(send))
        .route("/chats/{who}/seen", post(seen))
        .route("/chats/{who}/typing", post(typing))
        .route("/chats/g/{id}", get(conversation_page))
        .route("/chats/g/{id}/older", get(older))
        .route("/chats/g/{id}/messages", post(send))
        .route("/chats/g/{id}/seen", post(seen))
        .route("/chats/g/{id}/typing", post(typing))
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
    users::named(&state.db, username).await
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

/// Which conversation a page URL names: `/chats/@bob…` or `/chats/g/42…`.
pub enum ConvPath {
    Direct(String),
    Group(GroupId),
}

impl<S: Send + Sync> FromRequestParts<S> for ConvPath {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let missing = || AppError::not_found("This page does not exist.");
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| missing())?;
        for (key, value) in &params {
            match key {
                "who" => return Ok(ConvPath::Direct(value.to_string())),
                "id" => return value.parse().map(ConvPath::Group).map_err(|_| missing()),
                _ => {}
            }
        }
        Err(missing())
    }
}

/// A conversation `me` may open: with another user, or a group `me` belongs to.
enum Party {
    User(User),
    Group(GroupChat),
}

struct Opened {
    conv: Conversation,
    at: ConvRef,
    party: Party,
}

/// Resolves and authorizes the conversation a URL names (404 for a group `me` is not in).
async fn open(state: &AppState, me: &User, path: ConvPath) -> AppResult<Opened> {
    match path {
        ConvPath::Direct(who) => {
            let other = other_user(state, &who).await?;
            if other.user_id == me.user_id {
                return Err(AppError::not_found("You cannot chat with yourself."));
            }
            Ok(Opened {
                conv: Conversation::Direct(other.user_id),
                at: ConvRef::direct(&other),
                party: Party::User(other),
            })
        }
        ConvPath::Group(id) => {
            let chat = messages::require_member(&state.db, me.user_id, id).await?;
            Ok(Opened {
                conv: Conversation::Group(id),
                at: ConvRef::group(&chat),
                party: Party::Group(chat),
            })
        }
    }
}

/// The conversation page: the latest messages (marked seen), the composer, and for a
/// group the members panel.
async fn conversation_page(
    State(state): State<AppState>,
    mut ctx: Ctx,
    path: ConvPath,
) -> AppResult<Response> {
    let opened = open(&state, &ctx.user, path).await?;
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
            Some(group_panel(&state, &ctx.user, chat).await?),
        ),
    };
    if let Some(newest) = messages.last() {
        if messages::mark_seen(&state.db, me, opened.conv, newest.id).await? {
            state.events.wake();
        }
    }
    let seen = last_mine_seen(&state, me, opened.conv, &messages).await?;
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

/// Older messages, loaded as the reader scrolls up.
async fn older(
    State(state): State<AppState>,
    ctx: Ctx,
    path: ConvPath,
    Query(q): Query<OlderQuery>,
) -> AppResult<Html<String>> {
    let opened = open(&state, &ctx.user, path).await?;
    let (messages, older_cursor) =
        latest_page(&state, ctx.user.user_id, opened.conv, Some(q.before)).await?;
    render(&OlderMessages {
        path: opened.at.path,
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
/// stream brings the same message, which the page drops as already shown); a plain form
/// is redirected back to the conversation.
async fn send(
    State(state): State<AppState>,
    ctx: Ctx,
    path: ConvPath,
    Form(input): Form<SendInput>,
) -> AppResult<Response> {
    let opened = open(&state, &ctx.user, path).await?;
    let content = MessageContent::parse(&input.content).map_err(AppError::BadRequest)?;
    let outgoing = Outgoing {
        sender: UserSummary::from(&ctx.user),
        to: opened.conv,
        content,
        client_key: input.client_key,
    };
    let (message, created) = state.sends.send(&state.db, outgoing).await?;
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
struct SeenInput {
    message_id: MessageId,
}

async fn seen(
    State(state): State<AppState>,
    ctx: Ctx,
    path: ConvPath,
    Form(input): Form<SeenInput>,
) -> AppResult<StatusCode> {
    let opened = open(&state, &ctx.user, path).await?;
    if messages::mark_seen(&state.db, ctx.user.user_id, opened.conv, input.message_id).await? {
        state.events.wake();
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn typing(State(state): State<AppState>, ctx: Ctx, path: ConvPath) -> AppResult<StatusCode> {
    let opened = open(&state, &ctx.user, path).await?;
    messages::typing(&state.db, &ctx.user, opened.conv).await?;
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
        members.push(users::named(&state.db, username).await?);
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
    let member = users::named(&state.db, &input.username).await?;
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
    let member = users::named(&state.db, &input.username).await?;
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
