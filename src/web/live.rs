//! `GET /events`: the page's one live stream. Each stored event becomes small HTML
//! fragments (swapped in out-of-band by the htmx SSE extension through the hidden
//! `oob` sink) or triggers (`friends`, `conversations`, `group-<id>`) that make a part
//! of the page fetch itself again.

use std::sync::Arc;

use askama::Template;
use axum::{
    extract::{Query, State},
    http::HeaderMap,
    response::{sse::Event, Response},
};
use serde::Deserialize;
use serde_json::Value;

use super::chats::{deleted_placeholder, MessageItem, MessageView};
use crate::{
    auth::PageUser,
    events::stream,
    state::AppState,
    store::{events::StoredEvent, messages::Message},
    web::render::escape,
};

#[derive(Deserialize)]
pub struct StreamQuery {
    last_event_id: Option<i64>,
}

pub async fn page_events(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Response {
    let viewer = user.user_id;
    let last_id = stream::last_event_id(&headers, q.last_event_id);
    stream::open(
        &state.events,
        viewer,
        last_id,
        Arc::new(move |e: &StoredEvent| encode(e, viewer)),
    )
}

fn oob(id: i64, html: String) -> Event {
    Event::default().id(id.to_string()).event("oob").data(html)
}

/// An event that makes part of the page fetch itself again. Its data is not used, but
/// must not be empty: an EventSource does not dispatch events without data.
fn trigger(id: i64, name: &str) -> Event {
    Event::default()
        .id(id.to_string())
        .event(name)
        .data("refresh")
}

/// The conversation key (`d-<other user>` or `g-<group>`) of a message, for this viewer.
fn conversation_key(
    group: Option<i64>,
    sender: Option<i64>,
    reciever: Option<i64>,
    viewer: i32,
) -> String {
    match group {
        Some(g) => format!("g-{g}"),
        None => {
            let other = if sender == Some(viewer.into()) {
                reciever
            } else {
                sender
            };
            format!("d-{}", other.unwrap_or(0))
        }
    }
}

/// The HTML fragments and triggers one event becomes for `viewer`'s page.
pub fn encode(event: &StoredEvent, viewer: i32) -> Vec<Event> {
    let id = event.event_id;
    let Ok(data) = serde_json::from_str::<Value>(&event.payload) else {
        return Vec::new();
    };
    let int = |k: &str| data.get(k).and_then(Value::as_i64);
    let text = |k: &str| {
        data.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match event.kind.as_str() {
        "message" | "message_edited" => {
            let Ok(message) = serde_json::from_value::<Message>(data.clone()) else {
                return Vec::new();
            };
            let key = conversation_key(
                message.group_chat_id.map(Into::into),
                message.sender_id.map(Into::into),
                message.reciever_id.map(Into::into),
                viewer,
            );
            let Ok(item) = (MessageItem {
                m: MessageView::new(&message, viewer),
            })
            .render() else {
                return Vec::new();
            };
            let html = if event.kind == "message" {
                let mine = message.sender_id == Some(viewer);
                // A new message ends the typing line, and a new message of mine is not yet seen.
                let seen_reset = if mine {
                    format!(r#"<p id="seen-{key}" class="seen" hx-swap-oob="true"></p>"#)
                } else {
                    String::new()
                };
                format!(
                    r#"<div hx-swap-oob="beforeend:#messages-{key}">{item}</div><p id="typing-{key}" class="typing" hx-swap-oob="true"></p>{seen_reset}"#
                )
            } else {
                item.replacen("<li ", r#"<li hx-swap-oob="true" "#, 1)
            };
            vec![oob(id, html), trigger(id, "conversations")]
        }
        "message_deleted" => {
            let message_id = int("message_id").unwrap_or(0) as i32;
            let html =
                deleted_placeholder(message_id).replacen("<li ", r#"<li hx-swap-oob="true" "#, 1);
            vec![oob(id, html), trigger(id, "conversations")]
        }
        "seen" => {
            let reader = int("user_id").unwrap_or(0);
            if reader == i64::from(viewer) {
                // Read on another of my tabs or devices: only the unread counts change.
                return vec![trigger(id, "conversations")];
            }
            let key = match int("group_chat_id") {
                Some(g) => format!("g-{g}"),
                None => format!("d-{reader}"),
            };
            let html = format!(
                r#"<p id="seen-{key}" class="seen" hx-swap-oob="true" data-up-to="{}">Seen</p>"#,
                int("message_id").unwrap_or(0)
            );
            vec![oob(id, html)]
        }
        "typing" => {
            let key = match int("group_chat_id") {
                Some(g) => format!("g-{g}"),
                None => format!("d-{}", int("user_id").unwrap_or(0)),
            };
            let html = format!(
                r#"<p id="typing-{key}" class="typing" hx-swap-oob="true">{} is typing…</p>"#,
                escape(&text("username"))
            );
            vec![oob(id, html)]
        }
        "presence" => {
            let user_id = int("user_id").unwrap_or(0);
            let online = text("status") == "online";
            let html = format!(
                r#"<span hx-swap-oob="outerHTML:.presence-{user_id}" class="dot presence-{user_id}{}" title="{}" aria-hidden="true"></span>"#,
                if online { " online" } else { "" },
                if online { "online" } else { "offline" }
            );
            vec![oob(id, html)]
        }
        "reaction" => super::rich::encode_reaction(id, &data, viewer),
        "friend_request" | "friendship" => vec![trigger(id, "friends")],
        "group_chat" => {
            let mut events = vec![trigger(id, "conversations")];
            if let Some(g) = int("group_chat_id") {
                events.push(trigger(id, &format!("group-{g}")));
            }
            events
        }
        _ => Vec::new(),
    }
}
