//! Which conversation a request names, shared by the pages and the API.

use crate::{
    error::{AppError, AppResult},
    state::AppState,
    store::{
        messages::{Conversation, GroupId},
        users::UserSummary,
    },
};

/// The other side of a conversation, as a request named it.
pub enum Addressee {
    User(UserSummary),
    Group(GroupId),
}

impl Addressee {
    pub fn conversation(&self) -> Conversation {
        match self {
            Addressee::User(user) => Conversation::Direct(user.user_id),
            Addressee::Group(group) => Conversation::Group(*group),
        }
    }
}

/// Resolves a username (through the in-process directory) or a group id; a username
/// wins when both are given, as in the original. It only turns names into ids: whether
/// the caller may use the conversation is decided by the store call that follows, so it
/// is checked once, in one place.
pub async fn resolve(
    state: &AppState,
    username: Option<&str>,
    group: Option<GroupId>,
) -> AppResult<Addressee> {
    let addressee = match (username.map(str::trim).filter(|u| !u.is_empty()), group) {
        (Some(username), _) => Addressee::User(state.directory.named(&state.db, username).await?),
        (None, Some(group)) => Addressee::Group(group),
        (None, None) => return Err(AppError::bad_request("no addressee or groupchat specified")),
    };
    crate::telemetry::record_conversation(addressee.conversation());
    Ok(addressee)
}
