//! Editing and deleting one's own messages: in place with htmx (the message turns into
//! its edit form), or on a page of its own without JavaScript.

use askama::Template;
use axum::{
    extract::{Path, State},
    response::{Html, IntoResponse, Response},
    Form,
};
use serde::Deserialize;

use super::{MessageItem, MessageView};
use crate::{
    domain::MessageContent,
    error::{AppError, AppResult},
    state::AppState,
    store::messages::{self, Message, MessageId},
    web::{redirect, render, Ctx, Layout},
};

/// A message turned into its edit form (htmx), swapped in place of the message.
#[derive(Template)]
#[template(path = "partials/message_edit.html")]
struct EditItem {
    layout: Layout,
    m: MessageView,
    back: String,
}

/// The same form on a page of its own, for browsers without JavaScript.
#[derive(Template)]
#[template(path = "pages/edit_message.html")]
struct EditPage {
    layout: Layout,
    m: MessageView,
    back: String,
}

/// One of my messages, as its edit form.
pub(super) async fn edit_form(
    State(state): State<AppState>,
    mut ctx: Ctx,
    Path(id): Path<MessageId>,
) -> AppResult<Response> {
    let message = messages::visible(&state.db, ctx.user.user_id, id).await?;
    if message.sender_id != Some(ctx.user.user_id) {
        return Err(AppError::Forbidden(
            "you can only edit your own messages".into(),
        ));
    }
    let back = conversation_path(&state, &ctx, &message).await?;
    let m = MessageView::new(&message, ctx.user.user_id);
    if ctx.htmx {
        return Ok(render(&EditItem {
            layout: ctx.layout,
            m,
            back,
        })?
        .into_response());
    }
    ctx.layout.section = "chats";
    Ok(render(&EditPage {
        layout: ctx.layout,
        m,
        back,
    })?
    .into_response())
}

/// One message as the list shows it (an edit cancelled puts it back).
pub(super) async fn message_fragment(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<MessageId>,
) -> AppResult<Response> {
    let message = messages::visible(&state.db, ctx.user.user_id, id).await?;
    if !ctx.htmx {
        let path = conversation_path(&state, &ctx, &message).await?;
        return Ok(redirect(false, &path));
    }
    let mut view = MessageView::new(&message, ctx.user.user_id);
    MessageView::name_senders(&state, std::slice::from_mut(&mut view)).await?;
    Ok(render(&MessageItem { m: view })?.into_response())
}

#[derive(Deserialize)]
pub(super) struct EditInput {
    #[serde(default)]
    content: String,
}

pub(super) async fn edit_message(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<MessageId>,
    Form(input): Form<EditInput>,
) -> AppResult<Response> {
    let content = MessageContent::parse(&input.content).map_err(AppError::BadRequest)?;
    let message = messages::edit(&state.db, &state.history, &ctx.user, id, &content)
        .await
        .map_err(crate::web::attachments::for_pages)?;
    state.events.wake();
    back_to_conversation(&state, &ctx, &message).await
}

pub(super) async fn delete_message(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<MessageId>,
) -> AppResult<Response> {
    let message = messages::delete(&state.db, &state.history, &ctx.user, id).await?;
    state.events.wake();
    state.attachments.purge_message(&state.db, id).await;
    if ctx.htmx {
        return Ok(Html(deleted_placeholder(id)).into_response());
    }
    back_to_conversation(&state, &ctx, &message).await
}

/// What a deleted message leaves in the list, for the page that deleted it and, swapped
/// in out of band, for everyone else's.
pub fn deleted_placeholder(id: MessageId) -> String {
    format!(r#"<li id="msg-{id}" class="message deleted"><em>message deleted</em></li>"#)
}

/// htmx gets the changed message's fragment; a plain form goes back to its conversation.
async fn back_to_conversation(
    state: &AppState,
    ctx: &Ctx,
    message: &Message,
) -> AppResult<Response> {
    if ctx.htmx {
        let mut view = MessageView::new(message, ctx.user.user_id);
        MessageView::name_senders(state, std::slice::from_mut(&mut view)).await?;
        return Ok(render(&MessageItem { m: view })?.into_response());
    }
    let path = conversation_path(state, ctx, message).await?;
    Ok(redirect(false, &path))
}

/// The page of the conversation a message belongs to.
async fn conversation_path(state: &AppState, ctx: &Ctx, message: &Message) -> AppResult<String> {
    Ok(match (message.group_chat_id, message.reciever_id) {
        (Some(g), _) => format!("/chats/g/{g}"),
        (None, Some(r)) => {
            let other = if r == ctx.user.user_id {
                message.sender_id.unwrap_or(r)
            } else {
                r
            };
            let user = state
                .directory
                .by_id(&state.db, other)
                .await?
                .ok_or_else(|| AppError::not_found("no such user exists"))?;
            format!("/chats/@{}", user.username)
        }
        _ => "/chats".to_string(),
    })
}
