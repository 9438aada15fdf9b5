//! `GET /api/events`: the API's live event stream (bearer token, or a ticket in
//! `?access_token=` for clients that cannot send headers).

use axum::{extract::State, http::HeaderMap, response::Response};
use serde::Deserialize;
use utoipa::IntoParams;

use payloads::LiveEventData;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::ApiQuery;
use crate::{
    auth::{extract::user_from_token, jwt::TokenKind, ApiUser},
    error::{AppError, AppResult, ErrorBody},
    events::stream,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// An event ticket (`POST /auth/socket-ticket`), for clients that cannot send an
    /// `Authorization` header (a browser `EventSource`).
    access_token: Option<String>,
    /// Resume after this event id (the same as the `Last-Event-ID` header, which wins).
    last_event_id: Option<i64>,
}

/// The signed-in user's live events, as server-sent events: `event: <kind>`,
/// `data: <one line of JSON>` and `id: <position>`.
///
/// The id is the event's position in the user's stream: unique, increasing, in the
/// order the changes committed. To resume, send the last id received as `Last-Event-ID`
/// (an `EventSource` does) or `?last_event_id=`: the stream first replays what was
/// missed, then goes on live. Drop an event whose id was handled already.
///
/// | `event:` | `data:` (schema) | when |
/// |---|---|---|
/// | `message` | `MessageEventData` | a message was sent to me, or by me (`client_key` is the sender's idempotency key) |
/// | `message_edited` | `MessageEventData` | a message was edited, or its attachments were linked |
/// | `message_deleted` | `MessageDeletedEventData` | a message was deleted |
/// | `reaction` | `ReactionEventData` | someone reacted to a message, or took a reaction back |
/// | `seen` | `SeenEventData` | someone (or I, elsewhere) read a conversation up to a message |
/// | `typing` | `TypingEventData` | someone is typing to me (live only, never replayed) |
/// | `presence` | `PresenceEventData` | a friend came online or went offline |
/// | `friend_request` | `FriendRequestEventData` | someone asked me to be friends |
/// | `friendship` | `FriendshipEventData` | a request of mine was answered, or a friendship ended |
/// | `friend_list` | `FriendListEventData` | I changed a friendship (here or elsewhere): which of my lists the other user is in now |
/// | `group_chat` | `GroupChatEventData` | I was added to or removed from a group, or it changed |
/// | `account_deleted` | `AccountDeletedEventData` | my account was deleted (here or elsewhere): the stream ends after it |
/// | `reset` | `{}` | the missed events cannot be replayed (too old, or too many): fetch state again; resume from this id |
///
/// A stream that ends with a `retry:` line should be reopened after that many
/// milliseconds with the same `Last-Event-ID`.
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    security(("bearer" = []), ()),
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "resume after this event id"),
    ),
    responses(
        (status = 200, description = "an endless stream of events; each `data:` line is one of these payloads, named by the `event:` line", content_type = "text/event-stream", body = LiveEventData),
        (status = 401, description = "`Could not validate credentials`: no token, or a bad ticket", body = ErrorBody),
        (status = 429, description = "past `MAX_STREAMS_PER_USER` open streams", body = ErrorBody),
    ),
)]
async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: Result<ApiUser, AppError>,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> AppResult<Response> {
    let user = match (&query.access_token, user) {
        (Some(ticket), _) => user_from_token(&state, ticket, TokenKind::EventTicket).await?,
        (None, Ok(ApiUser(user))) => user,
        (None, Err(e)) => return Err(e),
    };
    let last_id = stream::last_event_id(&headers, query.last_event_id);
    Ok(stream::open(
        &state.events,
        user.user_id,
        last_id,
        stream::json_encoder(),
        None,
    ))
}

/// The payloads below describe what the store writes into the event table (`store::
/// messages`, `store::friends`, `events::presence`); they exist for the document.
mod payloads {
    #![allow(dead_code)] // never built: they describe the JSON the store writes

    use serde::Serialize;
    use utoipa::ToSchema;

    use crate::store::messages::Message;

    /// The `data:` of one event; which one the `event:` line says.
    #[derive(Serialize, ToSchema)]
    #[serde(untagged)]
    pub enum LiveEventData {
        Message(MessageEventData),
        MessageDeleted(MessageDeletedEventData),
        Seen(SeenEventData),
        Typing(TypingEventData),
        Presence(PresenceEventData),
        FriendRequest(FriendRequestEventData),
        Friendship(FriendshipEventData),
        FriendList(FriendListEventData),
        AccountDeleted(AccountDeletedEventData),
        GroupChat(GroupChatEventData),
        Reaction(ReactionEventData),
    }

    /// `reaction`: `user_id` added or took back `emoji`; `reactions` are the message's
    /// reactions after the change.
    #[derive(Serialize, ToSchema)]
    pub struct ReactionEventData {
        message_id: i32,
        group_chat_id: Option<i32>,
        sender_id: Option<i32>,
        /// (sic)
        reciever_id: Option<i32>,
        user_id: i32,
        username: String,
        emoji: String,
        /// `added` or `removed`.
        #[schema(example = "added")]
        change: String,
        reactions: Vec<crate::store::rich::ReactionSummary>,
    }

    /// `message` and `message_edited`: the message as `GET /messages/` answers it.
    #[derive(Serialize, ToSchema)]
    pub struct MessageEventData {
        #[serde(flatten)]
        message: Message,
        /// `message` only, and only for the sender: the `client_key` the send carried.
        client_key: Option<String>,
    }

    /// `message_deleted`.
    #[derive(Serialize, ToSchema)]
    pub struct MessageDeletedEventData {
        message_id: i32,
        group_chat_id: Option<i32>,
        sender_id: Option<i32>,
        /// (sic)
        reciever_id: Option<i32>,
    }

    /// `seen`: `user_id` read the conversation up to `message_id`.
    #[derive(Serialize, ToSchema)]
    pub struct SeenEventData {
        message_id: i32,
        user_id: i32,
        /// Present for a group; absent for a direct conversation (with `user_id`).
        group_chat_id: Option<i32>,
    }

    /// `typing`: `user_id` is typing in our direct conversation, or in a group.
    #[derive(Serialize, ToSchema)]
    pub struct TypingEventData {
        user_id: i32,
        username: String,
        /// Direct conversations: the typist's username again (the original's field).
        friend_username: Option<String>,
        group_chat_id: Option<i32>,
    }

    /// `presence`: a friend's status changed.
    #[derive(Serialize, ToSchema)]
    pub struct PresenceEventData {
        user_id: i32,
        username: String,
        /// `online` or `offline`.
        #[schema(example = "online")]
        status: String,
    }

    /// `friend_request`: `user_id` asked me to be friends.
    #[derive(Serialize, ToSchema)]
    pub struct FriendRequestEventData {
        user_id: i32,
        username: String,
    }

    /// `friendship`: what `user_id` did to our friendship.
    #[derive(Serialize, ToSchema)]
    pub struct FriendshipEventData {
        user_id: i32,
        username: String,
        /// `accepted`, `declined` or `removed`.
        #[schema(example = "accepted")]
        status: String,
    }

    /// `friend_list`: I asked, answered, blocked, unblocked or unfriended `user_id`, in
    /// this tab or another, on this device or another.
    #[derive(Serialize, ToSchema)]
    pub struct FriendListEventData {
        user_id: i32,
        username: String,
        /// `friends`, `received`, `sent`, `blocked`, or `null`: in none of my lists.
        #[schema(example = "sent")]
        list: Option<String>,
    }

    /// `account_deleted`: mine; the last event of every stream I had open.
    #[derive(Serialize, ToSchema)]
    pub struct AccountDeletedEventData {
        user_id: i32,
    }

    /// `group_chat`: a group I am in (or was in) changed.
    #[derive(Serialize, ToSchema)]
    pub struct GroupChatEventData {
        group_chat_id: i32,
        name: String,
        /// `added` (I was), `removed` (I was), `renamed`, `member_joined`, `member_left`.
        #[schema(example = "member_joined")]
        change: String,
        /// `member_joined`, `member_left`: who.
        user_id: Option<i32>,
        username: Option<String>,
    }
}
