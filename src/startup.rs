//! Builds the application: state, router, layers, background tasks, and a listener of
//! its own (port 0 in tests), then serves until a shutdown signal.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{
    extract::{ConnectInfo, Request, State},
    http::{header, HeaderName, HeaderValue, StatusCode},
    middleware,
    response::IntoResponse,
    routing::get,
    Json, Router,
};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    compression::CompressionLayer,
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use tower_sessions::{
    cookie::{time::Duration as CookieDuration, SameSite},
    Expiry, SessionManagerLayer,
};

use crate::{
    api, assets,
    auth::{csrf, jwt::JwtKeys, limits::RateLimits, password::PasswordHasher},
    config::Config,
    db::Db,
    events::EventHub,
    state::AppState,
    store::{
        sending::{self, SendQueue},
        sessions::DbSessionStore,
        users::Directory,
    },
    web,
};

const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
const MAX_BODY_BYTES: usize = 256 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Users the directory remembers (about 100 bytes each).
const DIRECTORY_CAPACITY: usize = 100_000;

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    shutdown: CancellationToken,
}

impl Application {
    /// Connects to the database (migrating it unless told not to), starts this
    /// process's event tailer and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = Db::connect(config.database_url.expose(), config.pool_size).await?;
        if config.migrate_on_start {
            db.migrate().await?;
        }
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("BIND_ADDR: cannot listen on {}", config.bind_addr))?;
        Self::build_with(config, db, listener).await
    }

    pub async fn build_with(config: Config, db: Db, listener: TcpListener) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let events = EventHub::start(
            db.clone(),
            config.event_retention,
            config.event_poll_interval,
            config.presence_grace,
            shutdown.clone(),
        )
        .await
        .context("starting the event tailer")?;
        let session_store = DbSessionStore::new(&db)
            .await
            .context("creating the session table")?;
        tokio::spawn(delete_expired_sessions(
            session_store.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(index_older_messages(db.clone()));
        let limits = Arc::new(RateLimits::new(&config, db.clone()));
        tokio::spawn(forget_idle_limits(limits.clone(), shutdown.clone()));
        let state = AppState {
            hasher: PasswordHasher::new(config.argon2)?,
            jwt: Arc::new(JwtKeys::new(
                &config.jwt_secret,
                config.jwt_secret_previous.as_ref(),
            )),
            limits,
            events,
            sends: SendQueue::start(
                db.clone(),
                sending::writers_for(&db),
                db.multi_row_ids_are_consecutive()
                    .await
                    .context("reading the auto-increment settings")?,
            ),
            directory: Arc::new(Directory::new(DIRECTORY_CAPACITY)),
            db,
            config: Arc::new(config),
        };
        let sessions = SessionManagerLayer::new(session_store)
            .with_name(csrf::SESSION_COOKIE)
            .with_secure(state.config.cookie_secure)
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_path("/")
            .with_expiry(Expiry::OnInactivity(CookieDuration::days(14)));
        let router = router(state.clone(), sessions);
        Ok(Self {
            listener,
            router,
            state,
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A token that, when cancelled, stops the server as a SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until `signal` completes, then stops accepting, ends event streams (with a
    /// retry hint) and lets in-flight requests finish.
    pub async fn run_until_stopped(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let token = self.shutdown.clone();
        tokio::spawn(async move {
            signal.await;
            token.cancel();
        });
        let result = serve_http1(self.listener, self.router, self.shutdown.clone()).await;
        self.state.db.close().await;
        result
    }
}

/// Serves HTTP/1.1 until `shutdown`, then waits for the open connections to finish: what
/// `axum::serve` does, without its HTTP/2 detection. That detection (hyper-util's auto
/// builder) reads the first 24 bytes itself and hands them back through a wrapper, so
/// hyper's first read returns just those bytes and its second grows the connection's 8 KiB
/// read buffer to 16 KiB, kept for the connection's life (every idle event stream). This
/// build has no HTTP/2 (no `h2`), so there is nothing to detect.
async fn serve_http1(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use futures_util::FutureExt;
    use hyper_util::{
        rt::TokioIo, server::graceful::GracefulShutdown, service::TowerToHyperService,
    };
    use tower::ServiceExt;

    let mut http = hyper::server::conn::http1::Builder::new();
    // A client gets 30 s to send its request head (slow-header attacks hold connections).
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // As axum::serve: a connection reset before it was accepted is the client's
                // business; anything else (out of file descriptors) gets a pause.
                Err(e) if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                ) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "accept error");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // The peer address, for `ConnectInfo` (rate limits by IP), as axum::serve adds it.
        let with_peer = move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            request
        };
        let service = TowerToHyperService::new(router.clone().map_request(with_peer));
        let connection = graceful
            .watch(http.serve_connection(TokioIo::new(stream), service))
            // `map`, not `async move { connection.await }`: that future would hold the
            // connection twice (captured, then awaited): ~0.8 KiB more per connection.
            .map(|result| {
                if let Err(e) = result {
                    tracing::trace!(error = %e, "connection closed with an error");
                }
            });
        tokio::spawn(connection);
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn router(state: AppState, sessions: SessionManagerLayer<DbSessionStore>) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            // `user_id` and `conversation` are filled in once known (extractors, resolver).
            tracing::info_span!(
                "request",
                method = %request.method(),
                path = %request.uri().path(),
                request_id = %id,
                user_id = tracing::field::Empty,
                conversation = tracing::field::Empty,
            )
        })
        .on_response(
            DefaultOnResponse::new()
                .level(tracing::Level::INFO)
                .latency_unit(tower_http::LatencyUnit::Micros),
        );
    Router::new()
        .route("/static/{name}", get(assets::serve))
        .nest("/api", api::router())
        .merge(web::router(state.clone()))
        .layer(middleware::from_fn_with_state(state.clone(), csrf::protect))
        .layer(sessions)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(trace)
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(CatchPanicLayer::new())
                .layer(CompressionLayer::new())
                .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    REQUEST_TIMEOUT,
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::CONTENT_SECURITY_POLICY,
                    for_documents(CONTENT_SECURITY_POLICY),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::X_FRAME_OPTIONS,
                    for_documents("DENY"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::REFERRER_POLICY,
                    for_documents("strict-origin-when-cross-origin"),
                )),
        )
        // Added after the layers: the load balancer's probes (every few seconds from
        // each target) stay out of the request log and need no session.
        .route("/health", get(health))
        .with_state(state)
}

/// A header that only a rendered document needs, left off event streams: hyper keeps a
/// connection's last response header map for the connection's life, and with more than
/// six headers the map doubles, which is 0.6 KiB more for each of thousands of idle streams.
fn for_documents(
    value: &'static str,
) -> impl FnMut(&axum::response::Response) -> Option<HeaderValue> + Clone {
    move |response| {
        let event_stream = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
        (!event_stream).then(|| HeaderValue::from_static(value))
    }
}

/// 200 when the database answers within 2 s, else 503 with the reason: the load balancer
/// then stops sending traffic here.
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    match tokio::time::timeout(Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({ "health": "Everything OK!" }))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: database error");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "health": "unavailable", "detail": "database unreachable" })),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "health": "unavailable", "detail": "database did not answer within 2 s" }),
            ),
        ),
    }
}

async fn delete_expired_sessions(store: DbSessionStore, shutdown: CancellationToken) {
    use tower_sessions::session_store::ExpiredDeletion;
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tick.tick() => if let Err(e) = store.delete_expired().await {
                tracing::warn!(error = %e, "deleting expired sessions failed");
            },
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn forget_idle_limits(limits: Arc<RateLimits>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => limits.forget_idle().await,
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Completes on SIGTERM (ECS stopping a task) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received: finishing in-flight requests");
}

/// Indexes for search the messages written before the index existed (`store::search`).
async fn index_older_messages(db: crate::db::Db) {
    match crate::store::search::backfill(&db).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(messages = n, "indexed older messages for search"),
        Err(e) => {
            tracing::warn!(error = %e, "indexing older messages for search failed; it resumes at the next start")
        }
    }
}
