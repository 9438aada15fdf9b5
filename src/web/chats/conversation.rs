//! One conversation: the right pane of the chat screen (or the whole page with the list
//! beside it), older pages, the composer, read marks, typing and mute.

use askama::Template;
use axum::{
    extract::{Query, State},
    http::{header, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
    Form,
};
use serde::Deserialize;

use super::{groups::GroupPanel, list::ListPane, ConvPath, ConvRef, Opened, Party};
use crate::{
    domain::cursor::Cursor,
    error::{AppError, AppResult},
    state::AppState,
    store::{
        events as event_store, friends as friend_store,
        messages::{self, Conversation, GroupId, Message, MessageId},
        mutes,
        users::{User, UserSummary},
    },
    web::{
        attachments::{for_pages, AttachmentView, ComposerInput},
        avatar::{display_names, Person},
        redirect,
        render::{self, iso_time, time_label},
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
    /// Read by its recipient (direct messages only).
    pub seen: bool,
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
            time_iso: iso_time(t),
            time_label: time_label(t),
            edited: m.last_edited_date_time.is_some(),
            attachments: AttachmentView::list(&m.attachments),
            seen: m.seen == Some(true),
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

/// The conversation's header: title, presence, mute, and for a group its settings link.
/// Re-fetched on its own when the group changes (a rename shows at once).
#[derive(Clone)]
pub(super) struct HeaderView {
    pub(super) conv: ConvRef,
    pub(super) online: bool,
    pub(super) muted: bool,
    pub(super) group_id: Option<GroupId>,
    pub(super) member_count: usize,
    /// Friends (direct) or a member (group): the composer is offered.
    pub(super) can_send: bool,
}

/// Where the conversation lives, titled "Display Name (@username)" for a direct chat
/// with someone who set a display name.
async fn titled(state: &AppState, opened: &Opened) -> AppResult<ConvRef> {
    let mut conv = opened.at.clone();
    if let Party::User(other) = &opened.party {
        if let Some(name) = display_names(state, [other.user_id])
            .await?
            .remove(&other.user_id)
        {
            conv.title = format!("{name} (@{})", other.username);
        }
    }
    Ok(conv)
}

impl HeaderView {
    async fn load(state: &AppState, me: i32, opened: &Opened) -> AppResult<Self> {
        let (online, group_id, member_count, can_send) = match &opened.party {
            Party::User(other) => {
                let friends = friend_store::may_talk(&state.db, me, other.user_id).await?
                    == friend_store::Talk::Friends;
                let online = friends && event_store::is_online(&state.db, other.user_id).await?;
                (online, None, 2, friends)
            }
            Party::Group(chat) => {
                let members = messages::members(&state.db, chat.group_chat_id).await?;
                (false, Some(chat.group_chat_id), members.len(), true)
            }
        };
        Ok(Self {
            conv: titled(state, opened).await?,
            online,
            muted: mutes::is_muted(&state.db, me, &opened.at.key).await?,
            group_id,
            member_count,
            can_send,
        })
    }
}

/// Everything the conversation pane shows.
pub(super) struct ConversationView {
    header: HeaderView,
    conv: ConvRef,
    messages: Vec<MessageView>,
    older_cursor: Option<MessageId>,
    /// Where the "New messages" divider goes: the first message I had not read.
    first_unread: Option<MessageId>,
    /// An older page read without JavaScript (`/older?before=`), which links back to
    /// the latest messages instead of marking anything read.
    older_view: bool,
    seen: bool,
    can_send: bool,
    group: Option<GroupPanel>,
    client_key: String,
    /// The largest file the composer may attach (`partials/composer_attachments.html`).
    attach_max_bytes: u64,
}

impl ConversationView {
    /// The latest page (or the page before `before`), marked read when it is the latest.
    async fn load(
        state: &AppState,
        me: &User,
        opened: Opened,
        before: Option<MessageId>,
    ) -> AppResult<Self> {
        let my_id = me.user_id;
        let (messages, older_cursor) = page(state, my_id, opened.conv, before).await?;
        let header = HeaderView::load(state, my_id, &opened).await?;
        let can_send = header.can_send;
        let (group, last_read) = match &opened.party {
            Party::User(_) => {
                if !can_send && messages.is_empty() && before.is_none() {
                    return Err(AppError::not_found(
                        "You can chat with your friends only. Send a friend request first.",
                    ));
                }
                (None, None)
            }
            Party::Group(chat) => (
                Some(GroupPanel::load(state, me, chat).await?),
                Some(messages::last_read(&state.db, my_id, chat.group_chat_id).await?),
            ),
        };
        let first_unread = if before.is_some() {
            None
        } else {
            messages
                .iter()
                .find(|m| {
                    !m.mine
                        && match last_read {
                            Some(read) => m.id > read,
                            None => !m.seen,
                        }
                })
                .map(|m| m.id)
        };
        // Read marks are news to the other side: none between users who may no longer talk.
        if before.is_none() && can_send {
            if let Some(newest) = messages.last() {
                if messages::mark_seen(&state.db, &state.history, my_id, opened.conv, newest.id)
                    .await?
                {
                    state.events.wake();
                }
            }
        }
        let seen = match messages.iter().rev().find(|m| m.mine) {
            Some(last_mine) if before.is_none() => {
                messages::seen_by_others(&state.db, my_id, opened.conv, last_mine.id).await?
            }
            _ => false,
        };
        Ok(Self {
            conv: header.conv.clone(),
            header,
            messages,
            older_cursor,
            first_unread,
            older_view: before.is_some(),
            seen,
            can_send,
            group,
            client_key: uuid::Uuid::new_v4().to_string(),
            attach_max_bytes: state.attachments.max_file_bytes(),
        })
    }
}

/// The chat screen with this conversation open: the list and the pane.
#[derive(Template)]
#[template(path = "pages/conversation.html")]
struct ConversationPage {
    layout: Layout,
    list: ListPane,
    c: ConversationView,
    fragment: bool,
}

/// The pane alone, for htmx switching chats (the list and the live stream stay).
#[derive(Template)]
#[template(path = "pages/conversation.html", block = "pane")]
struct ConversationPane {
    layout: Layout,
    c: ConversationView,
    fragment: bool,
}

#[derive(Template)]
#[template(path = "partials/chat_header.html")]
struct ChatHeader {
    layout: Layout,
    header: HeaderView,
}

/// A page of older messages, put in place of the "Load older messages" item.
#[derive(Template)]
#[template(path = "partials/older.html")]
struct OlderMessages {
    conv: ConvRef,
    group: bool,
    messages: Vec<MessageView>,
    older_cursor: Option<MessageId>,
}

/// One page of a conversation (oldest first for display) and the cursor for older.
async fn page(
    state: &AppState,
    me: i32,
    conv: Conversation,
    before: Option<MessageId>,
) -> AppResult<(Vec<MessageView>, Option<MessageId>)> {
    let cursor = before.map(|id| Cursor::Next(id.to_string()));
    let page = messages::history(
        &state.db,
        &state.history,
        me,
        conv,
        cursor.as_ref(),
        PAGE_SIZE,
    )
    .await?;
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

/// The pane for htmx switching chats, else the whole chat screen.
async fn respond(state: &AppState, mut ctx: Ctx, c: ConversationView) -> AppResult<Response> {
    let mut response = if ctx.pane {
        render::render(&ConversationPane {
            layout: ctx.layout,
            c,
            fragment: true,
        })?
        .into_response()
    } else {
        let list = ListPane::load(
            state,
            ctx.user.user_id,
            Some(&c.conv.key),
            "",
            ctx.layout.pending_requests,
        )
        .await?;
        ctx.layout.section = "chats";
        ctx.layout.unread_total = Some(list.unread_total);
        render::render(&ConversationPage {
            layout: ctx.layout,
            list,
            c,
            fragment: false,
        })?
        .into_response()
    };
    // The same URL answers a page or a pane: caches must tell them apart.
    response.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("HX-Request, HX-Target"),
    );
    Ok(response)
}

/// The conversation: the latest messages (marked read), the composer, and for a group
/// its settings panel.
pub(super) async fn conversation_page(
    State(state): State<AppState>,
    ctx: Ctx,
    path: ConvPath,
) -> AppResult<Response> {
    let opened = path.open(&state, &ctx.user).await?;
    let view = ConversationView::load(&state, &ctx.user, opened, None).await?;
    respond(&state, ctx, view).await
}

#[derive(Deserialize)]
pub(super) struct OlderQuery {
    before: MessageId,
}

/// Older messages: loaded in place as the reader scrolls up, or (without JavaScript, or
/// opened in a new tab) the whole chat screen showing that page.
pub(super) async fn older(
    State(state): State<AppState>,
    ctx: Ctx,
    path: ConvPath,
    Query(q): Query<OlderQuery>,
) -> AppResult<Response> {
    let opened = path.open(&state, &ctx.user).await?;
    if ctx.htmx && !ctx.pane && !ctx.restore {
        let (messages, older_cursor) =
            page(&state, ctx.user.user_id, opened.conv, Some(q.before)).await?;
        let mut response = render::render(&OlderMessages {
            group: matches!(opened.party, Party::Group(_)),
            conv: opened.at,
            messages,
            older_cursor,
        })?
        .into_response();
        response.headers_mut().insert(
            header::VARY,
            HeaderValue::from_static("HX-Request, HX-Target"),
        );
        return Ok(response);
    }
    let view = ConversationView::load(&state, &ctx.user, opened, Some(q.before)).await?;
    respond(&state, ctx, view).await
}

/// The header alone: re-fetched when the group changes (renamed, members).
pub(super) async fn chat_header(
    State(state): State<AppState>,
    ctx: Ctx,
    path: ConvPath,
) -> AppResult<Html<String>> {
    let opened = path.open(&state, &ctx.user).await?;
    let header = HeaderView::load(&state, ctx.user.user_id, &opened).await?;
    render::render(&ChatHeader {
        layout: ctx.layout,
        header,
    })
}

#[derive(Deserialize)]
pub(super) struct MuteInput {
    #[serde(default)]
    muted: String,
}

/// Mutes or unmutes the chat for me. htmx gets the header again and the list is told
/// to refresh; a plain form goes back to the chat.
pub(super) async fn mute(
    State(state): State<AppState>,
    ctx: Ctx,
    path: ConvPath,
    Form(input): Form<MuteInput>,
) -> AppResult<Response> {
    let opened = path.open(&state, &ctx.user).await?;
    let muted = matches!(input.muted.as_str(), "1" | "true" | "on");
    mutes::set(&state.db, ctx.user.user_id, &opened.at.key, muted).await?;
    if !ctx.htmx {
        return Ok(redirect(false, &opened.at.path));
    }
    let header = HeaderView::load(&state, ctx.user.user_id, &opened).await?;
    let mut response = render::render(&ChatHeader {
        layout: ctx.layout,
        header,
    })?
    .into_response();
    response.headers_mut().insert(
        "HX-Trigger",
        HeaderValue::from_static("conversations-changed"),
    );
    Ok(response)
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
        crate::attachments::Draft {
            text: &input.content,
            client_key: input.client_key,
            rich: crate::web::rich::reply_to(input.reply_to_message_id.as_deref())?,
        },
        input.files,
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
        Ok(render::render(&MessageItem { m: view })?.into_response())
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
    if messages::mark_seen(
        &state.db,
        &state.history,
        ctx.user.user_id,
        conv,
        input.message_id,
    )
    .await?
    {
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
