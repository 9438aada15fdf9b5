//! Server-sent event streams: resume from a last id, then live events, until the client
//! goes, falls too far behind, or the process shuts down.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    http::{header, HeaderMap, HeaderValue},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};

use super::EventHub;
use crate::store::events::{self as event_store, StoredEvent};

pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// The id a reconnecting client last saw: the `Last-Event-ID` header (an EventSource sends
/// it by itself) or `?last_event_id=`.
pub fn last_event_id(headers: &HeaderMap, query: Option<i64>) -> Option<i64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or(query)
}

/// Turns a stored event into the SSE events a client of this stream gets.
pub type Encoder = Arc<dyn Fn(&StoredEvent) -> Vec<Event> + Send + Sync>;

/// Opens a stream of `user_id`'s events. With `last_id`, it first replays every retained
/// event after it (or sends one `reset` when they are no longer retained), then live
/// events, with no gap and no repeat.
pub fn open(hub: &EventHub, user_id: i32, last_id: Option<i64>, encode: Encoder) -> Response {
    // Subscribe before reading the watermark: whatever lies above it reaches `events`.
    let mut subscription = hub.subscribe(user_id);
    let watermark = hub.watermark();
    let db = hub.db().clone();
    let shutdown = hub.shutdown_token().clone();
    let stream = async_stream::stream! {
        let mut last_sent = watermark;
        match last_id {
            Some(n) if n < watermark => {
                // Boxed: the stream's state stays small while it idles (10,000s of them).
                match Box::pin(missed_events(&db, user_id, n, watermark)).await {
                    Some(missed) => {
                        for event in &missed {
                            for sse in encode(event) {
                                yield Ok::<_, Infallible>(sse);
                            }
                        }
                    }
                    None => yield Ok(Event::default().event("reset").data("{}")),
                }
            }
            Some(n) => last_sent = n,
            None => {}
        }
        loop {
            tokio::select! {
                next = subscription.events.recv() => match next {
                    Some(event) if event.event_id > last_sent => {
                        last_sent = event.event_id;
                        for sse in encode(&event) {
                            yield Ok(sse);
                        }
                    }
                    Some(_) => {}
                    // Dropped for falling behind: end, and let the client resume.
                    None => break,
                },
                _ = shutdown.cancelled() => {
                    yield Ok(Event::default().retry(Duration::from_millis(500)).comment("shutting down; reconnect"));
                    break;
                }
            }
        }
    };
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("keep-alive"))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The retained events of `user_id` in `(after, up_to]`, or `None` when some of them
/// were already pruned (the client must reset).
async fn missed_events(
    db: &crate::db::Db,
    user_id: i32,
    after: i64,
    up_to: i64,
) -> Option<Vec<StoredEvent>> {
    let oldest = event_store::min_id(db).await.ok()?;
    if matches!(oldest, Some(min) if after + 1 < min) {
        return None;
    }
    event_store::for_user_between(db, user_id, after, up_to)
        .await
        .ok()
}

/// The API's encoding: `id`, `event: <kind>`, `data: <one-line JSON>`.
pub fn json_encoder() -> Encoder {
    Arc::new(|event: &StoredEvent| {
        vec![Event::default()
            .id(event.event_id.to_string())
            .event(&event.kind)
            .data(&event.payload)]
    })
}
