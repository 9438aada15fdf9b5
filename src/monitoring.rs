//! Prometheus metrics, through the `metrics` facade, rendered by
//! `metrics-exporter-prometheus` and served only on `METRICS_ADDR` (a listener of its
//! own, never the public one; unset, there is no listener and no recorder).
//!
//! Recorded where they happen: HTTP requests by route template (axum's `MatchedPath`,
//! never the raw path, so ids in paths do not multiply the series), status and latency;
//! the send path's batch sizes and commit latency; the event tailer's lag; the history
//! cache's hits and misses. Read from the
//! application at each scrape and written out with the rest: open event streams, the
//! database pool, the argon2 queue (per application, not through the process-wide
//! recorder, so that several applications in one process, as in the tests, each report
//! their own).

use std::{
    fmt::Write as _,
    sync::OnceLock,
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::{db_run, state::AppState};

const REQUESTS: &str = "messenger_http_requests_total";
const REQUEST_SECONDS: &str = "messenger_http_request_duration_seconds";
const STREAMS: &str = "messenger_event_streams";
const BATCH_SIZE: &str = "messenger_send_batch_size";
const COMMIT_SECONDS: &str = "messenger_send_commit_duration_seconds";
const TAILER_LAG_EVENTS: &str = "messenger_event_tailer_lag_events";
const TAILER_LAG_SECONDS: &str = "messenger_event_tailer_lag_seconds";
const CACHE_READS: &str = "messenger_cache_reads_total";
const POOL: &str = "messenger_db_pool_connections";
const POOL_MAX: &str = "messenger_db_pool_max_connections";
const ARGON2_QUEUED: &str = "messenger_argon2_queued";
const ARGON2_RUNNING: &str = "messenger_argon2_running";

/// The process's recorder: one per process (the facade has one global recorder), made by
/// the first application that serves metrics.
static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the recorder (once per process) and returns its handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let seconds = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(REQUEST_SECONDS.into()), &seconds)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(COMMIT_SECONDS.into()), &seconds)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(BATCH_SIZE.into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
                    )
                })
                .and_then(|b| b.install_recorder())
                .map_err(|e| e.to_string())?;
            describe();
            Ok(handle)
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))
}

fn describe() {
    describe_counter!(
        REQUESTS,
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Time to the response head, by method and route template (an event stream: until it opened)"
    );
    describe_histogram!(BATCH_SIZE, "Messages per group-committed send transaction");
    describe_histogram!(
        COMMIT_SECONDS,
        metrics::Unit::Seconds,
        "Time to write and commit one batch of sends"
    );
    describe_counter!(
        CACHE_READS,
        "Reads that asked a cache (history: latest pages; friend_lists: first pages of friend lists), by whether memory answered them (hit) or the database did (miss)"
    );
    describe_gauge!(
        TAILER_LAG_EVENTS,
        "Events the tailer found committed in its latest tick, before handing them to this process's streams"
    );
    describe_gauge!(
        TAILER_LAG_SECONDS,
        metrics::Unit::Seconds,
        "How long the tailer's latest tick took, from waking to the last batch found"
    );
}

/// Middleware counting each request under its route template; added with
/// `Router::layer`, so that routing has already found the `MatchedPath`.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        // Unrouted paths (404s, scanners) share one series.
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    histogram!(REQUEST_SECONDS, "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    counter!(REQUESTS, "method" => method, "route" => route, "status" => status).increment(1);
    response
}

/// One group-committed batch of sends: its size and how long it took to write.
pub fn send_batch(size: usize, took: Duration) {
    histogram!(BATCH_SIZE).record(size as f64);
    histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
}

/// Where the event tailer stands: how many events its latest tick found (numbered on
/// MySQL, read, about to be delivered), and how long that tick has taken so far.
pub fn tailer_lag(events: i64, tick: Duration) {
    gauge!(TAILER_LAG_EVENTS).set(events as f64);
    gauge!(TAILER_LAG_SECONDS).set(tick.as_secs_f64());
}

/// A read that asked a cache (`history`, `friend_lists`): answered from memory, or not.
pub fn cache_read(cache: &'static str, hit: bool) {
    counter!(CACHE_READS, "cache" => cache, "result" => if hit { "hit" } else { "miss" })
        .increment(1);
}

/// The metrics listener's routes: `GET /metrics` and nothing else.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(state)
}

/// Runs the recorder's upkeep (it drains histogram samples between scrapes) until
/// `shutdown`.
pub async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn scrape(State(state): State<AppState>) -> Response {
    let Some(Ok(handle)) = RECORDER.get() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let mut text = handle.render();
    let (size, idle, max) = db_run!(&state.db, |pool| (
        pool.size(),
        pool.num_idle() as u32,
        pool.options().get_max_connections()
    ));
    let streams = state.events.stream_count() as f64;
    write_gauge(
        &mut text,
        STREAMS,
        "Event streams open in this process",
        &[("", streams)],
    );
    let in_use = size.saturating_sub(idle) as f64;
    let pool = [
        ("state=\"in_use\"", in_use),
        ("state=\"idle\"", idle as f64),
    ];
    write_gauge(
        &mut text,
        POOL,
        "Database connections of this process, by state",
        &pool,
    );
    let most = "The most database connections this process opens";
    write_gauge(&mut text, POOL_MAX, most, &[("", max as f64)]);
    let queued = state.hasher.queued() as f64;
    write_gauge(
        &mut text,
        ARGON2_QUEUED,
        "Password hashes waiting for a core",
        &[("", queued)],
    );
    let running = state.hasher.running() as f64;
    write_gauge(
        &mut text,
        ARGON2_RUNNING,
        "Password hashes being computed",
        &[("", running)],
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// Appends one gauge family in Prometheus' text format: `samples` are (labels, value), the
/// labels already formatted (`state="idle"`) or empty.
fn write_gauge(text: &mut String, name: &str, help: &str, samples: &[(&str, f64)]) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, value) in samples {
        let _ = if labels.is_empty() {
            writeln!(text, "{name} {value}")
        } else {
            writeln!(text, "{name}{{{labels}}} {value}")
        };
    }
    text.push('\n');
}
