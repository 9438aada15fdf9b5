//! socket.io at `/ws/socket.io`, beside the event streams, for the original service's web
//! client: its events and payloads, quirks included (see "Live events in the original"
//! in the contract).
//!
//! | direction | event | here |
//! |---|---|---|
//! | client → server | `message` `{content, group_chat_id, addressee_username, message_tracking_id}` | sent through [`SendQueue`](crate::store::sending::SendQueue), as `POST /api/messages/` |
//! | server → sender and recipients | `message response` `{message: "<message JSON as a string>", message_tracking_id}` | from each `message` event of the user |
//! | server → sender only | `message response` `{detail, status_code, message_tracking_id}` | the HTTP send's texts and codes |
//! | server → friends | `ping status change` `{user_id, status: "active" \| "offline"}` | from each `presence` event |
//! | client → server → friend | `ping status change` / `pong status change` `{user_id, status, friend_id}` | relayed as `ping status change` / `friend status changed` `{user_id, status}` |
//! | server → user | any other event kind of the SSE stream (`friend_request`, `typing`, …) | under its own name, with its SSE data (not in the original) |
//!
//! One pipeline: a connection is one more subscriber of its user's events in this
//! process's [`EventHub`] (which counts it for presence, as a stream), and everything it
//! sends is written to the outbox, so it reaches the user's friends on every process.
//! Nothing is kept in socket.io rooms: those live in one process only.
//!
//! The connection that sent a message answers it itself, echoing the tracking id exactly,
//! and skips the event of that message when it arrives; the others (recipients, the
//! sender's other tabs) get the event with the tracking id taken from the send's
//! idempotency key (see [`idempotency_key`]).

use std::{
    collections::VecDeque,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{json, Value};
use socketioxide::{
    extract::{SocketRef, TryData},
    handler::ConnectHandler,
    layer::SocketIoLayer,
    SocketIo,
};
use tokio_util::sync::CancellationToken;

use crate::{
    api::parse_content,
    auth::{extract::user_from_token, jwt::TokenKind},
    conversations,
    error::AppError,
    events::{EventHub, Subscription},
    state::AppState,
    store::{
        events::{self as event_store, NewEvent, StoredEvent},
        friends::{self, Relationship},
        messages::{GroupId, Message, MessageEvent, MessageId},
        rich::RichSend,
        sending::Outgoing,
        users::UserSummary,
    },
};

/// Where the original's client connects (`path` of its `io()` call).
pub const PATH: &str = "/ws/socket.io";
/// The largest HTTP long-poll body or websocket message a client may send: a message is
/// at most 300 characters, so this leaves room for a batch of them and nothing more.
const MAX_PAYLOAD: u64 = 64 * 1024;
/// Packets that may wait for a slow client before it is disconnected (it reconnects).
const BUFFER: usize = 256;
/// Events a connection may send per second, and in a burst.
const EVENTS_PER_SECOND: u32 = 10;
const EVENT_BURST: u32 = 30;
/// Own sends whose events a connection waits for, at most (see [`Connection::own`]).
const OWN_SENDS: usize = 64;
/// A relayed `status` longer than this is not relayed.
const MAX_STATUS_CHARS: usize = 32;

/// The socket.io server as a tower layer in front of the router, and its handle.
pub fn layer(state: AppState) -> (SocketIoLayer, SocketIo) {
    let (layer, io) = SocketIo::builder()
        .req_path(PATH)
        .max_payload(MAX_PAYLOAD)
        .ws_max_message_size(MAX_PAYLOAD as usize)
        .ws_max_frame_size(MAX_PAYLOAD as usize)
        .max_buffer_size(BUFFER)
        .connect_timeout(Duration::from_secs(10))
        .build_layer();
    let authenticate = {
        let state = state.clone();
        move |socket: SocketRef, TryData(auth): TryData<Value>| {
            let state = state.clone();
            async move { authenticate(state, socket, auth.ok()).await }
        }
    };
    let connected = {
        let hub = state.events.clone();
        move |socket: SocketRef| {
            let hub = hub.clone();
            async move { connected(hub, socket) }
        }
    };
    io.ns("/", connected.with(authenticate));
    (layer, io)
}

/// What a connection keeps: its user, its rate limit, and its own sends in flight.
struct Connection {
    user: UserSummary,
    limiter: DefaultDirectRateLimiter,
    /// Idempotency keys of this connection's sends, whose events it must not forward: it
    /// answered them itself.
    own: Mutex<VecDeque<String>>,
    /// Taken by the connect handler, which forwards its events.
    subscription: Mutex<Option<Subscription>>,
    /// Cancelled when the client goes.
    closed: CancellationToken,
}

impl Connection {
    fn expect_own(&self, key: &str) {
        let mut own = self.own.lock().expect("own sends lock");
        if own.len() == OWN_SENDS {
            own.pop_front();
        }
        own.push_back(key.to_string());
    }

    /// Whether `key` is one of this connection's sends (forgetting it).
    fn take_own(&self, key: &str) -> bool {
        let mut own = self.own.lock().expect("own sends lock");
        match own.iter().position(|k| k == key) {
            Some(i) => {
                own.remove(i);
                true
            }
            None => false,
        }
    }

    fn allowed(&self) -> bool {
        self.limiter.check().is_ok()
    }
}

/// The connect middleware: a valid socket ticket in `auth.access_token`, or the
/// connection is refused (`connect_error`). Everything a connection needs is set up here,
/// before the client hears it is connected, so that no event it sends or should receive
/// falls between the two.
async fn authenticate(
    state: AppState,
    socket: SocketRef,
    auth: Option<Value>,
) -> Result<(), AppError> {
    let ticket = auth
        .as_ref()
        .and_then(|a| a.get("access_token"))
        .and_then(Value::as_str)
        .ok_or(AppError::Unauthorized)?;
    let user = user_from_token(&state, ticket, TokenKind::EventTicket).await?;
    let quota = Quota::per_second(NonZeroU32::new(EVENTS_PER_SECOND).expect("non-zero"))
        .allow_burst(NonZeroU32::new(EVENT_BURST).expect("non-zero"));
    let connection = Arc::new(Connection {
        user: UserSummary::from(&user),
        limiter: RateLimiter::direct(quota),
        own: Mutex::new(VecDeque::new()),
        subscription: Mutex::new(Some(state.events.subscribe(user.user_id))),
        closed: CancellationToken::new(),
    });
    socket.extensions.insert(connection.clone());
    socket.on("message", {
        let (state, connection) = (state.clone(), connection.clone());
        move |socket: SocketRef, TryData(data): TryData<Value>| {
            let (state, connection) = (state.clone(), connection.clone());
            async move { on_message(&state, &socket, &connection, data.ok()).await }
        }
    });
    for (event, kind) in [
        ("ping status change", "status_ping"),
        ("pong status change", "status_pong"),
    ] {
        let (state, connection) = (state.clone(), connection.clone());
        socket.on(event, move |TryData(data): TryData<Value>| {
            let (state, connection) = (state.clone(), connection.clone());
            async move { relay(&state, &connection, kind, data.ok()).await }
        });
    }
    socket.on_disconnect({
        let connection = connection.clone();
        move || {
            let connection = connection.clone();
            async move { connection.closed.cancel() }
        }
    });
    tracing::debug!(user_id = user.user_id, sid = %socket.id, "socket.io connected");
    Ok(())
}

/// The connect handler: the connection is established; forward its user's events.
fn connected(hub: EventHub, socket: SocketRef) {
    let Some(connection) = socket.extensions.get::<Arc<Connection>>() else {
        return;
    };
    let Some(subscription) = connection.subscription.lock().expect("lock").take() else {
        return;
    };
    let shutdown = hub.shutdown_token().clone();
    tokio::spawn(forward(socket, connection, subscription, shutdown));
}

/// Hands the user's events to the client until it goes, falls behind, or the process
/// shuts down (it then reconnects, to this process or another).
async fn forward(
    socket: SocketRef,
    connection: Arc<Connection>,
    mut subscription: Subscription,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            next = subscription.events.recv() => match next {
                Some(event) => {
                    if !deliver(&socket, &connection, &event) {
                        tracing::warn!(user_id = connection.user.user_id, "socket.io client too slow; disconnecting it");
                        break;
                    }
                }
                // Dropped by the hub for falling behind.
                None => break,
            },
            _ = connection.closed.cancelled() => return,
            _ = shutdown.cancelled() => break,
        }
    }
    let _ = socket.disconnect();
}

/// Emits what one stored event is in the original's protocol, if anything; false when
/// the client cannot take it (gone, or its buffer is full).
fn deliver(socket: &SocketRef, connection: &Connection, event: &StoredEvent) -> bool {
    let emitted = match event.kind.as_str() {
        "message" => {
            let Ok(sent) = serde_json::from_str::<MessageEvent>(&event.payload) else {
                return true;
            };
            let mine = sent.message.sender_id == Some(connection.user.user_id);
            if let Some(key) = &sent.client_key {
                if mine && connection.take_own(key) {
                    return true;
                }
            }
            let tracking = sent
                .client_key
                .as_deref()
                .map_or(Value::Null, tracking_id_of_key);
            socket.emit("message response", &success(&sent.message, &tracking))
        }
        "presence" => {
            let Ok(data) = serde_json::from_str::<Value>(&event.payload) else {
                return true;
            };
            let status = match data["status"].as_str() {
                Some("online") => "active",
                _ => "offline",
            };
            socket.emit(
                "ping status change",
                &json!({ "user_id": data["user_id"], "status": status }),
            )
        }
        "status_ping" | "status_pong" => {
            let Ok(data) = serde_json::from_str::<Value>(&event.payload) else {
                return true;
            };
            let name = if event.kind == "status_ping" {
                "ping status change"
            } else {
                "friend status changed"
            };
            socket.emit(name, &data)
        }
        // The original had no socket.io event for the rest (friendships, edits, typing…):
        // they go out under their own names with their SSE data; its client ignores them.
        kind => {
            let Ok(data) = serde_json::from_str::<Value>(&event.payload) else {
                return true;
            };
            socket.emit(kind, &data)
        }
    };
    emitted.is_ok()
}

/// `message response` for a message: the message as a JSON *string* (the original's
/// client does `JSON.parse(data.message)`).
fn success(message: &Message, tracking: &Value) -> Value {
    let text = serde_json::to_string(message).expect("messages serialize");
    json!({ "message": text, "message_tracking_id": tracking })
}

/// `message response` for a refused send, to the sender alone.
fn failure(error: &AppError, tracking: &Value) -> Value {
    if let AppError::Internal(cause) = error {
        tracing::error!(error = ?cause, "socket.io send failed");
    }
    json!({
        "detail": error.detail(),
        "status_code": error.status().as_u16(),
        "message_tracking_id": tracking,
    })
}

/// Prefix of idempotency keys made up for sends whose tracking id cannot be one.
const MADE_UP_KEY: char = '~';

/// The idempotency key of a send with this tracking id. A string of 1 to 64 characters
/// without surrounding blanks is the key itself, as `client_key` is over HTTP: a repeat
/// from the same sender answers with the first message instead of posting again, and
/// recipients see the same tracking id. Anything else (a number, a longer string, none)
/// gets a key made up for this send, which carries the tracking id's JSON when it fits
/// so that recipients still see it; such a send is never taken for another.
fn idempotency_key(tracking: &Value) -> String {
    if let Value::String(s) = tracking {
        if (1..=64).contains(&s.len()) && s.trim() == s && !s.starts_with(MADE_UP_KEY) {
            return s.clone();
        }
    }
    let unique = format!("{MADE_UP_KEY}{}", uuid::Uuid::new_v4().simple());
    match serde_json::to_string(tracking) {
        Ok(json) if !tracking.is_null() && unique.len() + json.len() <= 64 => unique + &json,
        _ => unique,
    }
}

/// The tracking id a send's idempotency key stands for (see [`idempotency_key`]).
fn tracking_id_of_key(key: &str) -> Value {
    match key.strip_prefix(MADE_UP_KEY) {
        Some(made_up) => made_up
            .get(32..)
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or(Value::Null),
        None => Value::String(key.to_string()),
    }
}

/// The fields of a `message` event, checked as the HTTP send's JSON body is.
struct SendInput {
    content: String,
    group_chat_id: Option<GroupId>,
    addressee_username: Option<String>,
    /// Additive (not in the original): the message this one answers.
    reply_to_message_id: Option<MessageId>,
}

fn parse_send(data: &Value) -> Result<SendInput, AppError> {
    let Some(fields) = data.as_object() else {
        return Err(AppError::unprocessable(
            &["body"],
            "Input should be a valid dictionary",
        ));
    };
    let content = match fields.get("content") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => {
            return Err(AppError::unprocessable(
                &["body", "content"],
                "Field required",
            ))
        }
        Some(_) => {
            return Err(AppError::unprocessable(
                &["body", "content"],
                "Input should be a valid string",
            ))
        }
    };
    let group_chat_id = optional_id(fields, "group_chat_id")?;
    let reply_to_message_id = optional_id(fields, "reply_to_message_id")?;
    let addressee_username = match fields.get("addressee_username") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(AppError::unprocessable(
                &["body", "addressee_username"],
                "Input should be a valid string",
            ))
        }
    };
    Ok(SendInput {
        content,
        group_chat_id,
        addressee_username,
        reply_to_message_id,
    })
}

/// An optional integer field, checked as the HTTP body's `int | None` is.
fn optional_id(
    fields: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<i32>, AppError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .and_then(|id| i32::try_from(id).ok())
            .map(Some)
            .ok_or_else(|| {
                AppError::unprocessable(&["body", name], "Input should be a valid integer")
            }),
    }
}

/// A client's `message`: sent as `POST /api/messages/` sends, answered to this
/// connection alone; the other connections hear it through the message's event.
async fn on_message(
    state: &AppState,
    socket: &SocketRef,
    connection: &Connection,
    data: Option<Value>,
) {
    let data = data.unwrap_or(Value::Null);
    let tracking = match data.get("message_tracking_id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        _ => Value::Null,
    };
    let answer = if connection.allowed() {
        match send(state, connection, &data, &tracking).await {
            Ok(message) => success(&message, &tracking),
            Err(e) => failure(&e, &tracking),
        }
    } else {
        failure(
            &AppError::TooManyRequests {
                retry_after_secs: 1,
            },
            &tracking,
        )
    };
    // A client gone meanwhile misses nothing: the message, if sent, is in its history.
    let _ = socket.emit("message response", &answer);
}

async fn send(
    state: &AppState,
    connection: &Connection,
    data: &Value,
    tracking: &Value,
) -> Result<Message, AppError> {
    let input = parse_send(data)?;
    let to = conversations::resolve(
        state,
        input.addressee_username.as_deref(),
        input.group_chat_id,
    )
    .await?
    .conversation();
    let content = parse_content(&input.content)?;
    let key = idempotency_key(tracking);
    connection.expect_own(&key);
    let outgoing = Outgoing {
        sender: connection.user.clone(),
        to,
        content,
        client_key: Some(key.clone()),
        rich: RichSend::replying_to(input.reply_to_message_id),
    };
    match state.sends.send(&state.db, outgoing).await {
        Ok((message, true)) => {
            state.events.wake();
            Ok(message)
        }
        // Sent before under this key, or refused: no event is coming.
        Ok((message, false)) => {
            connection.take_own(&key);
            Ok(message)
        }
        Err(e) => {
            connection.take_own(&key);
            Err(e)
        }
    }
}

/// `ping status change` or `pong status change` from a client: relayed to `friend_id`
/// (an accepted friend; anyone else is ignored) on whichever process they are, as
/// `{user_id, status}` with the sender's own id whatever the client claimed.
async fn relay(state: &AppState, connection: &Connection, kind: &'static str, data: Option<Value>) {
    if !connection.allowed() {
        return;
    }
    let Some(data) = data else { return };
    let friend = data
        .get("friend_id")
        .and_then(Value::as_i64)
        .and_then(|id| i32::try_from(id).ok());
    let status = data
        .get("status")
        .and_then(Value::as_str)
        .filter(|s| s.chars().count() <= MAX_STATUS_CHARS);
    let (Some(friend), Some(status)) = (friend, status) else {
        return;
    };
    let me = connection.user.user_id;
    let result = async {
        if friends::relationship(&state.db, me, friend).await? != Relationship::Friends {
            return Ok(false);
        }
        let event = NewEvent::new(friend, kind, &json!({ "user_id": me, "status": status }));
        event_store::write(&state.db, &[event]).await?;
        Ok::<_, sqlx::Error>(true)
    }
    .await;
    match result {
        Ok(true) => state.events.wake(),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, user_id = me, kind, "status relay failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracking_id_travels_in_the_idempotency_key() {
        let uuid = json!("7c9e6679-7425-40de-944b-e07fc1f740c3");
        assert_eq!(idempotency_key(&uuid), uuid.as_str().unwrap());
        assert_eq!(tracking_id_of_key(&idempotency_key(&uuid)), uuid);
        for tracking in [
            json!(42),
            json!(1712345678901_i64),
            json!(" padded "),
            json!("~x"),
        ] {
            let key = idempotency_key(&tracking);
            assert!(key.starts_with(MADE_UP_KEY) && key.len() <= 64, "{key}");
            assert_eq!(tracking_id_of_key(&key), tracking);
            assert_ne!(key, idempotency_key(&tracking), "made-up keys are unique");
        }
        let long = json!("x".repeat(65));
        assert_eq!(tracking_id_of_key(&idempotency_key(&long)), Value::Null);
        assert_eq!(
            tracking_id_of_key(&idempotency_key(&Value::Null)),
            Value::Null
        );
    }

    #[test]
    fn message_fields_are_checked_as_the_http_body_is() {
        let ok = parse_send(
            &json!({"content": "hi", "group_chat_id": null, "addressee_username": "bob"}),
        )
        .unwrap();
        assert_eq!(
            (
                ok.content.as_str(),
                ok.group_chat_id,
                ok.addressee_username.as_deref()
            ),
            ("hi", None, Some("bob"))
        );
        for (data, field) in [
            (json!("just text"), "body"),
            (json!({"addressee_username": "bob"}), "content"),
            (
                json!({"content": 5, "addressee_username": "bob"}),
                "content",
            ),
            (
                json!({"content": "hi", "group_chat_id": "one"}),
                "group_chat_id",
            ),
            (
                json!({"content": "hi", "group_chat_id": 1.5}),
                "group_chat_id",
            ),
            (
                json!({"content": "hi", "group_chat_id": 4_000_000_000_i64}),
                "group_chat_id",
            ),
            (
                json!({"content": "hi", "addressee_username": ["bob"]}),
                "addressee_username",
            ),
        ] {
            let e = parse_send(&data)
                .err()
                .unwrap_or_else(|| panic!("{data} accepted"));
            assert_eq!(e.status().as_u16(), 422);
            assert_eq!(
                e.detail()[0]["loc"].as_array().unwrap().last().unwrap(),
                field,
                "{data}"
            );
        }
    }
}
