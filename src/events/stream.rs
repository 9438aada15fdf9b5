//! Server-sent event streams: resume from a last id, then live events, until the client
//! goes, falls too far behind, or the process shuts down.
//!
//! A resume ends in one of three ways: the missed events, in order; one `reset` (they
//! are no longer retained, or more than [`REPLAY_CAP`]), after which the client reloads
//! its state and the stream goes on live; or, when the database fails, the end of the
//! stream with a `retry:` hint, so that the client comes back and replays later (a
//! database outage must not make every page reload).

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    http::{header, HeaderMap, HeaderValue},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use tokio::sync::mpsc;

use super::EventHub;
use crate::{
    db::Db,
    store::events::{self as event_store, StoredEvent},
};

pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// The most events one resume replays; a client further behind gets `reset`.
pub const REPLAY_CAP: i64 = 10_000;
/// Events read per replay query (at most two pages are held per stream).
const REPLAY_PAGE: i64 = 500;
/// When the client should come back after a replay failed on a database error (plus up
/// to as much again, so that clients spread out).
pub const REPLAY_RETRY: Duration = Duration::from_secs(2);

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
/// event after it, then live events, with no gap and no repeat. `reconnect_after`, when
/// given, is sent first as the client's reconnection delay.
pub fn open(
    hub: &EventHub,
    user_id: i32,
    last_id: Option<i64>,
    encode: Encoder,
    reconnect_after: Option<Duration>,
) -> Response {
    let mut subscription = hub.subscribe(user_id);
    let live_after = subscription.live_after;
    let db = hub.db().clone();
    let shutdown = hub.shutdown_token().clone();
    let stream = async_stream::stream! {
        if let Some(delay) = reconnect_after {
            yield Ok::<_, Infallible>(Event::default().retry(delay).comment("connected"));
        }
        let mut last_sent = live_after;
        match last_id {
            Some(n) if n < live_after => {
                let mut replay = replay(db, user_id, n, live_after);
                while let Some(part) = replay.recv().await {
                    match part {
                        Replayed::Events(events) => {
                            for event in &events {
                                for sse in encode(event) {
                                    yield Ok(sse);
                                }
                            }
                        }
                        Replayed::Reset => {
                            yield Ok(Event::default()
                                .id(live_after.to_string())
                                .event("reset")
                                .data("{}"));
                        }
                        Replayed::Failed(e) => {
                            tracing::warn!(error = %e, user_id, "replaying missed events failed; client told to come back");
                            let jitter = Duration::from_millis(u64::from(retry_jitter(user_id)));
                            yield Ok(Event::default()
                                .retry(REPLAY_RETRY + jitter)
                                .comment("cannot replay now; reconnect later"));
                            return;
                        }
                    }
                }
            }
            Some(n) => last_sent = n,
            None => {}
        }
        loop {
            tokio::select! {
                next = subscription.events.recv() => match next {
                    Some(event) if event.position > last_sent => {
                        last_sent = event.position;
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

/// A few hundred milliseconds that differ from user to user and from second to second.
fn retry_jitter(user_id: i32) -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.subsec_nanos() ^ (user_id as u32).wrapping_mul(2_654_435_761))
        % REPLAY_RETRY.as_millis() as u32
}

/// What a replay sends its stream.
enum Replayed {
    Events(Vec<StoredEvent>),
    Reset,
    Failed(sqlx::Error),
}

/// Reads `user_id`'s events in positions `(after, up_to]` in a task of its own, a page at
/// a time. The task outlives its stream: a client that leaves mid-query does not cancel
/// the query, so its connection goes back to the pool intact (a dropped query future
/// leaves a MySQL connection mid-result, and the pool then closes it). The task stops
/// at the next page once nobody listens.
fn replay(db: Db, user_id: i32, after: i64, up_to: i64) -> mpsc::Receiver<Replayed> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let retained = async {
            // Positions up to `up_to` were given, so an empty table means they were pruned.
            match event_store::min_position(&db).await? {
                Some(min) if after + 1 >= min => {}
                _ => return Ok(false),
            }
            Ok(!event_store::more_than(&db, user_id, after, up_to, REPLAY_CAP).await?)
        };
        match retained.await {
            Ok(true) => {}
            Ok(false) => {
                let _ = tx.send(Replayed::Reset).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Replayed::Failed(e)).await;
                return;
            }
        }
        let mut from = after;
        loop {
            if tx.is_closed() {
                return;
            }
            let page =
                match event_store::for_user_between(&db, user_id, from, up_to, REPLAY_PAGE).await {
                    Ok(page) => still_retained(&db, from)
                        .await
                        .map(|kept| kept.then_some(page)),
                    Err(e) => Err(e),
                };
            match page {
                Ok(None) => {
                    let _ = tx.send(Replayed::Reset).await;
                    return;
                }
                Ok(Some(page)) => {
                    let last_page = (page.len() as i64) < REPLAY_PAGE;
                    if let Some(last) = page.last() {
                        from = last.position;
                        if tx.send(Replayed::Events(page)).await.is_err() {
                            return;
                        }
                    }
                    if last_page {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Replayed::Failed(e)).await;
                    return;
                }
            }
        }
    });
    rx
}

/// Whether every event after position `from` was still there when a page from `from` was
/// read: pruning deletes the oldest first, so if the oldest left is at most `from + 1`
/// now, nothing the page should hold had gone (a prune that ran meanwhile would otherwise
/// make the replay skip events silently).
async fn still_retained(db: &Db, from: i64) -> Result<bool, sqlx::Error> {
    // An empty table: positions up to the replay's end were given, so they were pruned.
    Ok(matches!(event_store::min_position(db).await?, Some(min) if min <= from + 1))
}

/// The API's encoding: `id`, `event: <kind>`, `data: <one-line JSON>`.
pub fn json_encoder() -> Encoder {
    Arc::new(|event: &StoredEvent| {
        vec![Event::default()
            .id(event.position.to_string())
            .event(&event.kind)
            .data(&event.payload)]
    })
}
