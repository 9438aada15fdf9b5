//! Editing and deleting one's own messages.

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
    web::{redirect, render, Ctx},
};

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
    let message = messages::edit(&state.db, &ctx.user, id, &content)
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
    let message = messages::delete(&state.db, &ctx.user, id).await?;
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
    let path = match (message.group_chat_id, message.reciever_id) {
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
    };
    Ok(redirect(false, &path))
}
