//! `GET /events`: the page's one live stream. Each stored event becomes small HTML
//! fragments (swapped in out-of-band by the htmx SSE extension through the hidden
//! `oob` sink) or triggers (`friends`, `conversations`, `group-<id>`) that make a part
//! of the page fetch itself again.
//!
//! When one stored event becomes several SSE events, only the last carries the `id:`,
//! and fragments come last: a connection lost in between makes the client resume before
//! the event and get it whole again (a trigger twice does no harm), never after half of
//! it. `static/app.js` drops an `oob` fragment whose id it has already applied.

use std::{sync::Arc, time::Duration};

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

/// How soon a page whose stream broke tries again (the browser's default is 3 s).
pub const RECONNECT_AFTER: Duration = Duration::from_secs(1);

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
        Some(RECONNECT_AFTER),
    )
}

/// One SSE event of a page stream, before it gets its id.
enum Part {
    /// HTML swapped in out of band.
    Oob(String),
    /// Makes the parts of the page that listen for `sse:<name>` fetch themselves again.
    Trigger(String),
}

impl Part {
    fn trigger(name: &str) -> Self {
        Part::Trigger(name.to_string())
    }

    fn into_event(self) -> Event {
        match self {
            Part::Oob(html) => Event::default().event("oob").data(html),
            // The data is not used, but must not be empty: an EventSource does not
            // dispatch events without data.
            Part::Trigger(name) => Event::default().event(name).data("refresh"),
        }
    }
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

/// The SSE events one stored event becomes for `viewer`'s page: triggers first, the
/// fragment last, and only the last with the event's position as `id:`.
pub fn encode(event: &StoredEvent, viewer: i32) -> Vec<Event> {
    let mut parts = parts(event, viewer);
    let last = parts
        .pop()
        .map(|p| p.into_event().id(event.position.to_string()));
    parts
        .into_iter()
        .map(Part::into_event)
        .chain(last)
        .collect()
}

/// The HTML fragments and triggers one event becomes for `viewer`'s page.
fn parts(event: &StoredEvent, viewer: i32) -> Vec<Part> {
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
            vec![Part::trigger("conversations"), Part::Oob(html)]
        }
        "message_deleted" => {
            let message_id = int("message_id").unwrap_or(0) as i32;
            let html =
                deleted_placeholder(message_id).replacen("<li ", r#"<li hx-swap-oob="true" "#, 1);
            vec![Part::trigger("conversations"), Part::Oob(html)]
        }
        "seen" => {
            let reader = int("user_id").unwrap_or(0);
            if reader == i64::from(viewer) {
                // Read on another of my tabs or devices: only the unread counts change.
                return vec![Part::trigger("conversations")];
            }
            let key = match int("group_chat_id") {
                Some(g) => format!("g-{g}"),
                None => format!("d-{reader}"),
            };
            let html = format!(
                r#"<p id="seen-{key}" class="seen" hx-swap-oob="true" data-up-to="{}">Seen</p>"#,
                int("message_id").unwrap_or(0)
            );
            vec![Part::Oob(html)]
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
            vec![Part::Oob(html)]
        }
        "presence" => {
            let user_id = int("user_id").unwrap_or(0);
            let online = text("status") == "online";
            let html = format!(
                r#"<span hx-swap-oob="outerHTML:.presence-{user_id}" class="dot presence-{user_id}{}" title="{}" aria-hidden="true"></span>"#,
                if online { " online" } else { "" },
                if online { "online" } else { "offline" }
            );
            vec![Part::Oob(html)]
        }
        "reaction" => super::rich::reaction_fragment(&data, viewer)
            .map(Part::Oob)
            .into_iter()
            .collect(),
        "friend_request" | "friendship" | "friend_list" => vec![Part::trigger("friends")],
        "group_chat" => {
            let mut events = vec![Part::trigger("conversations")];
            if let Some(g) = int("group_chat_id") {
                events.push(Part::Trigger(format!("group-{g}")));
            }
            events
        }
        _ => Vec::new(),
    }
}
