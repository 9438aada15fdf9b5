//! The chats list: every conversation with its last message and unread count.

use askama::Template;
use axum::{extract::State, response::Html};

use crate::{
    error::AppResult,
    state::AppState,
    store::{
        friends::{self as friend_store, ListKind},
        messages::{self, ConversationSummary},
        users::UserSummary,
    },
    web::{avatar::Person, render, Ctx, Layout},
};

struct ConversationRow {
    href: String,
    name: String,
    /// The other user of a direct conversation.
    person: Option<Person>,
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
            person: (!group).then(|| Person::new(&c.name, c.display_name.as_deref())),
            name: c.name,
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

/// The rows of `me`'s chats list, most recent first.
async fn rows(state: &AppState, me: i32) -> AppResult<Vec<ConversationRow>> {
    Ok(messages::conversations(&state.db, me)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
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

pub(super) async fn chats_page(
    State(state): State<AppState>,
    mut ctx: Ctx,
) -> AppResult<Html<String>> {
    ctx.layout.section = "chats";
    let rows = rows(&state, ctx.user.user_id).await?;
    let friends = friend_store::list(&state.db, ctx.user.user_id, ListKind::Friends, None, 100)
        .await?
        .results;
    render(&ChatsPage {
        layout: ctx.layout,
        rows,
        friends,
    })
}

/// The list alone, re-fetched by the page when a live event says it changed.
pub(super) async fn chats_list(State(state): State<AppState>, ctx: Ctx) -> AppResult<Html<String>> {
    render(&ChatsList {
        rows: rows(&state, ctx.user.user_id).await?,
    })
}
