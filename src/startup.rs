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
    auth::{
        csrf,
        jwt::JwtKeys,
        limits::{self, RateLimits, StreamSlots},
        password::PasswordHasher,
    },
    config::Config,
    db::Db,
    events::EventHub,
    mail::Mailer,
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

    pub async fn build_with(
        mut config: Config,
        db: Db,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        if config.public_url.is_none() {
            // Links in mail need an address; without PUBLIC_URL, the one we listen on.
            let mut address = listener.local_addr()?;
            if address.ip().is_unspecified() {
                address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            config.public_url = Some(format!("http://{address}"));
        }
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
        let session_store = DbSessionStore::new(&db);
        tokio::spawn(delete_expired_sessions(
            session_store.clone(),
            shutdown.clone(),
        ));
        let limits = Arc::new(RateLimits::new(&config, db.clone()));
        tokio::spawn(forget_idle_limits(limits.clone(), shutdown.clone()));
        let hasher = PasswordHasher::new(config.argon2)?;
        tokio::spawn(match_dummy_hash(
            hasher.clone(),
            db.clone(),
            shutdown.clone(),
        ));
        let state = AppState {
            mailer: Mailer::start(&config, shutdown.clone())?,
            streams: Arc::new(StreamSlots::new(config.max_streams_per_user)),
            hasher,
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
            .with_expiry(Expiry::OnInactivity(CookieDuration::days(
                crate::auth::IDLE_DAYS,
            )));
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
        let max_connections = self.state.config.max_connections as usize;
        let result = serve_http1(
            self.listener,
            self.router,
            self.shutdown.clone(),
            max_connections,
        )
        .await;
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
/// At most `max_connections` are open at once: one more is answered 429 (`Connection:
/// close`) and closed, instead of holding a file descriptor and memory until the process
/// runs out of either.
async fn serve_http1(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    max_connections: usize,
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
    let open = Arc::new(tokio::sync::Semaphore::new(max_connections));
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
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tokio::spawn(refuse_connection(stream));
            continue;
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
            .map(move |result| {
                drop(permit);
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

/// Answers one request on a connection over `MAX_CONNECTIONS` with 429 and closes it.
async fn refuse_connection(stream: tokio::net::TcpStream) {
    use hyper_util::rt::TokioIo;
    use std::sync::atomic::{AtomicI64, Ordering};
    // One warning per 10 s at most: a flood of connections must not flood the log too.
    static LAST_WARNED: AtomicI64 = AtomicI64::new(0);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let last = LAST_WARNED.load(Ordering::Relaxed);
    if now - last >= 10
        && LAST_WARNED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!("MAX_CONNECTIONS reached: connections are refused with 429");
    }
    let service = hyper::service::service_fn(|_request| async {
        let body = r#"{"detail":"too many open connections; try again shortly"}"#;
        let response = hyper::Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::RETRY_AFTER, "5")
            .header(header::CONNECTION, "close")
            .body(axum::body::Body::from(body))
            .expect("a valid response");
        Ok::<_, std::convert::Infallible>(response)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(false)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5));
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        http.serve_connection(TokioIo::new(stream), service),
    )
    .await;
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
        .merge(web::router())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::cap_event_streams,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), csrf::protect))
        .layer(sessions)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(trace)
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(middleware::from_fn(web::shape_errors))
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
                // A page may ask for less (the reset form: its address holds a secret).
                .layer(SetResponseHeaderLayer::if_not_present(
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

/// Keeps the dummy password hash as cheap as the cheapest stored one (see
/// `auth::password`): at start-up, then hourly, as sign-ins upgrade weak hashes.
async fn match_dummy_hash(hasher: PasswordHasher, db: Db, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tick.tick() => if let Err(e) = hasher.match_stored_hashes(&db).await {
                tracing::warn!(error = %e, "could not match the dummy hash to the stored ones");
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
