//! Chats: the list of conversations, a conversation (direct or group) with its composer
//! and history, message actions, and group administration. One module per concern; this
//! one holds the routes and which conversation a URL names.

mod conversation;
mod groups;
mod list;
mod message_actions;

use axum::{
    extract::{DefaultBodyLimit, FromRequestParts, RawPathParams},
    http::request::Parts,
    routing::{get, post},
    Router,
};

pub use conversation::{MessageItem, MessageView};
pub(super) use list::unread_total;
pub use message_actions::deleted_placeholder;

use crate::{
    conversations::{self, Addressee},
    error::{AppError, AppResult},
    state::AppState,
    store::{
        messages::{self, Conversation, GroupChat, GroupId},
        users::{User, UserSummary},
    },
};

pub fn router() -> Router<AppState> {
    use conversation::{chat_header, conversation_page, mute, older, seen, send, typing};
    use groups::{
        create_group, group_add_member, group_candidates, group_leave, group_members,
        group_remove_member, group_rename,
    };
    Router::new()
        .route("/chats", get(list::chats_page))
        .route("/chats/list", get(list::chats_list))
        .route("/chats/groups", post(create_group))
        // `{who}` is `@username`; `g/{id}` a group. The same handlers serve both.
        .route("/chats/{who}", get(conversation_page))
        .route("/chats/{who}/older", get(older))
        // The composer may post files (multipart): the application's upload limit applies
        // (`startup::body_budget`), not axum's default of 2 MB.
        .route(
            "/chats/{who}/messages",
            post(send).layer(DefaultBodyLimit::disable()),
        )
        .route("/chats/{who}/seen", post(seen))
        .route("/chats/{who}/typing", post(typing))
        .route("/chats/{who}/header", get(chat_header))
        .route("/chats/{who}/mute", post(mute))
        .route("/chats/g/{id}", get(conversation_page))
        .route("/chats/g/{id}/older", get(older))
        .route(
            "/chats/g/{id}/messages",
            post(send).layer(DefaultBodyLimit::disable()),
        )
        .route("/chats/g/{id}/seen", post(seen))
        .route("/chats/g/{id}/typing", post(typing))
        .route("/chats/g/{id}/header", get(chat_header))
        .route("/chats/g/{id}/mute", post(mute))
        .route("/chats/g/{id}/candidates", get(group_candidates))
        .route(
            "/chats/g/{id}/members",
            get(group_members).post(group_add_member),
        )
        .route("/chats/g/{id}/remove", post(group_remove_member))
        .route("/chats/g/{id}/rename", post(group_rename))
        .route("/chats/g/{id}/leave", post(group_leave))
        .route("/messages/{id}", get(message_actions::message_fragment))
        .route(
            "/messages/{id}/edit",
            get(message_actions::edit_form).post(message_actions::edit_message),
        )
        .route(
            "/messages/{id}/delete",
            post(message_actions::delete_message),
        )
}

/// Which conversation a page URL names: `/chats/@bob…` or `/chats/g/42…`.
pub enum ConvPath {
    Direct(String),
    Group(GroupId),
}

impl<S: Send + Sync> FromRequestParts<S> for ConvPath {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| page_missing())?;
        for (key, value) in &params {
            match key {
                "who" => return Ok(ConvPath::Direct(value.to_string())),
                "id" => {
                    return value
                        .parse()
                        .map(ConvPath::Group)
                        .map_err(|_| page_missing())
                }
                _ => {}
            }
        }
        Err(page_missing())
    }
}

fn page_missing() -> AppError {
    AppError::not_found("This page does not exist.")
}

impl ConvPath {
    /// The conversation this URL names, through the same resolver as the API. `@bob`
    /// names a user; anything else after `/chats/` is not a conversation.
    async fn resolve(self, state: &AppState, me: &User) -> AppResult<Addressee> {
        let addressee = match self {
            ConvPath::Direct(who) => {
                let username = who.strip_prefix('@').ok_or_else(page_missing)?;
                conversations::resolve(state, Some(username), None).await?
            }
            ConvPath::Group(id) => conversations::resolve(state, None, Some(id)).await?,
        };
        if let Addressee::User(other) = &addressee {
            if other.user_id == me.user_id {
                return Err(AppError::not_found("You cannot chat with yourself."));
            }
        }
        Ok(addressee)
    }

    /// The conversation to show: for a group, its details once membership is checked
    /// (404 for a group `me` is not in).
    async fn open(self, state: &AppState, me: &User) -> AppResult<Opened> {
        Ok(match self.resolve(state, me).await? {
            Addressee::User(other) => Opened {
                conv: Conversation::Direct(other.user_id),
                at: ConvRef::direct(&other),
                party: Party::User(other),
            },
            Addressee::Group(id) => {
                let chat = messages::require_member(&state.db, me.user_id, id).await?;
                Opened {
                    conv: Conversation::Group(id),
                    at: ConvRef::group(&chat),
                    party: Party::Group(chat),
                }
            }
        })
    }
}

/// A conversation `me` may open: with another user, or a group `me` belongs to.
enum Party {
    User(UserSummary),
    Group(GroupChat),
}

struct Opened {
    conv: Conversation,
    at: ConvRef,
    party: Party,
}

/// Where a conversation lives, for links, forms and live-update targets.
#[derive(Clone)]
pub struct ConvRef {
    /// `d-<user id>` or `g-<group id>`.
    pub key: String,
    /// `/chats/@bob` or `/chats/g/42`.
    pub path: String,
    pub title: String,
    pub other_user_id: Option<i32>,
}

impl ConvRef {
    pub fn direct(other: &UserSummary) -> Self {
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
