//! Builds the application: state, router, layers, background tasks, and a listener of
//! its own (port 0 in tests), then serves until a shutdown signal.

use std::{
    future::Future,
    sync::Arc,
    task::{self, Poll},
    time::Duration,
};

use anyhow::Context;
use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{header, HeaderName, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    compression::CompressionLayer,
    cors::{AllowHeaders, AllowMethods, AllowOrigin, Cors, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use tower_sessions::{
    cookie::{time::Duration as CookieDuration, SameSite},
    Expiry, SessionManagerLayer,
};

use crate::{
    api, assets,
    attachments::Attachments,
    auth::{
        access::AccountAccess,
        csrf,
        jwt::JwtKeys,
        limits::{self, RateLimits, StreamSlots},
        password::PasswordHasher,
    },
    cache::{friend_lists::FriendListCache, history::HistoryCache, Caches},
    config::Config,
    db::{Circuit, Db},
    error::AppError,
    events::EventHub,
    health::{self, Health},
    mail::Mailer,
    monitoring, socketio,
    state::AppState,
    store::{
        limits::Rate,
        sending::{self, SendQueue},
        sessions::DbSessionStore,
        users::Directory,
    },
    web,
};

const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
/// The largest request body (`deploy/nginx.conf`'s `client_max_body_size` matches it).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request that uploads files may take (ten files at `MAX_UPLOAD_MB`).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Users the directory remembers (about 100 bytes each).
const DIRECTORY_CAPACITY: usize = 100_000;
/// How long the caches trust a tailer that has not completed a tick (plus four poll
/// intervals): longer than a busy tick, short enough to bound staleness.
const CACHE_TAILER_STALE: Duration = Duration::from_secs(2);
/// How often `RDS_PASSWORD_FILE` is re-read for a rotated password.
pub const PASSWORD_REREAD_INTERVAL: Duration = Duration::from_secs(30);

pub struct Application {
    listener: TcpListener,
    /// `METRICS_ADDR`'s listener, serving `/metrics` only.
    metrics_listener: Option<TcpListener>,
    router: Router,
    state: AppState,
    shutdown: CancellationToken,
    password_reread: Duration,
}

impl Application {
    /// Connects to the database (migrating it unless told not to), starts this
    /// process's event tailer and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = Db::connect_with(
            config.database_url.expose(),
            config.pool_size,
            config.statement_cache,
        )
        .await?;
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
        // Served from only while the tailer has completed a tick lately (a stalled one
        // could be missing other processes' edits).
        let stale_after = CACHE_TAILER_STALE + config.event_poll_interval * 4;
        let caches = Caches {
            history: HistoryCache::new(config.history_cache_mb, stale_after),
            friend_lists: FriendListCache::new(config.friend_list_cache_mb, stale_after),
        };
        let events = EventHub::start(
            db.clone(),
            crate::events::Retention {
                max_age: config.event_retention,
                max_rows: config.event_retention_rows,
            },
            config.event_poll_interval,
            config.presence_grace,
            caches.clone(),
            shutdown.clone(),
        )
        .await
        .context("starting the event tailer")?;
        let circuit = Circuit::start(db.clone(), shutdown.clone());
        let session_store = DbSessionStore::new(&db, circuit.clone());
        tokio::spawn(delete_expired_sessions(
            session_store.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(index_older_messages(db.clone()));
        let limits = Arc::new(RateLimits::new(&config, db.clone()));
        tokio::spawn(forget_idle_limits(limits.clone(), shutdown.clone()));
        let access = Arc::new(
            AccountAccess::load(&db)
                .await
                .context("reading disabled accounts")?,
        );
        tokio::spawn(access.clone().keep_fresh(db.clone(), shutdown.clone()));
        let health = Health::start(db.clone(), shutdown.clone()).await;
        let metrics_listener = match config.metrics_addr {
            Some(addr) => {
                monitoring::install()?;
                Some(
                    TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("METRICS_ADDR: cannot listen on {addr}"))?,
                )
            }
            None => None,
        };
        let hasher = PasswordHasher::new(config.argon2)?;
        tokio::spawn(match_dummy_hash(
            hasher.clone(),
            db.clone(),
            shutdown.clone(),
        ));
        let attachments = Attachments::new(&config).context("setting up the file store")?;
        tracing::info!("attachments are kept in {}", attachments.describe());
        attachments.start_sweeper(db.clone(), shutdown.clone());
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
                circuit,
                sending::writers_for(&db),
                db.multi_row_ids_are_consecutive()
                    .await
                    .context("reading the auto-increment settings")?,
                Rate::per(config.sends_per_minute, Duration::from_secs(60)),
                caches.history.clone(),
            ),
            history: caches.history,
            friend_lists: caches.friend_lists,
            directory: Arc::new(Directory::new(DIRECTORY_CAPACITY)),
            access,
            attachments,
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
        // socket.io and CORS go in front of everything else: the socket.io transport needs
        // neither sessions nor CSRF checks (its ticket is its credential), nor the request
        // log and timeout (a long-poll lasts up to 25 s, and comes back at once).
        let (socketio, _io) = socketio::layer(state.clone());
        let app = ServiceBuilder::new()
            .layer(CrossOriginLayer::new(&state.config.cors_allowed_origins))
            .layer(socketio)
            .service(router(state.clone(), sessions, health));
        let router = Router::new().fallback_service(app);
        Ok(Self {
            listener,
            metrics_listener,
            router,
            state,
            shutdown,
            password_reread: PASSWORD_REREAD_INTERVAL,
        })
    }

    /// Re-reads `RDS_PASSWORD_FILE` every `interval` instead of
    /// [`PASSWORD_REREAD_INTERVAL`]: for tests, which cannot wait 30 s.
    #[doc(hidden)]
    pub fn reread_password_every(mut self, interval: Duration) -> Self {
        self.password_reread = interval;
        self
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The port `/metrics` is served on, when `METRICS_ADDR` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        let listener = self.metrics_listener.as_ref()?;
        listener.local_addr().ok().map(|a| a.port())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A token that, when cancelled, stops the server as a SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until `signal` completes, then stops accepting, ends event streams (with a
    /// retry hint), lets in-flight requests finish and writes every send still queued.
    pub async fn run_until_stopped(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Some(file) = &self.state.config.password_file {
            self.state.db.reload_password_from(
                file.clone(),
                self.password_reread,
                self.shutdown.clone(),
            );
        }
        let token = self.shutdown.clone();
        tokio::spawn(async move {
            signal.await;
            token.cancel();
        });
        if let Some(listener) = self.metrics_listener {
            let metrics = monitoring::router(self.state.clone());
            // A scraper or two: a small cap of its own.
            tokio::spawn(serve_http1(listener, metrics, self.shutdown.clone(), 64));
            if let Ok(handle) = monitoring::install() {
                tokio::spawn(monitoring::upkeep(handle, self.shutdown.clone()));
            }
        }
        let max_connections = self.state.config.max_connections as usize;
        let result = serve_http1(
            self.listener,
            self.router,
            self.shutdown.clone(),
            max_connections,
        )
        .await;
        // A send whose caller went away (so its connection did not hold the shutdown up)
        // may still be queued or being written; it goes in before the pool closes.
        self.state.sends.drain().await;
        self.state.db.close().await;
        result
    }
}

/// Serves HTTP/1.1 (with upgrades, for socket.io's websockets) until `shutdown`, then
/// waits for the open connections to finish: what `axum::serve` does, without its HTTP/2
/// detection. That detection (hyper-util's auto
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
    use hyper_util::{rt::TokioIo, service::TowerToHyperService};
    use tower::ServiceExt;

    let mut http = hyper::server::conn::http1::Builder::new();
    // A client gets 30 s to send its request head (slow-header attacks hold connections).
    // Read buffers stop growing at 64 KiB, not hyper's 400 KiB: an upload's buffer is
    // replaced, not reused, at every read that fills it, and megabytes of buffers taken
    // and handed back to the kernel each second (jemalloc returns pages at once, see
    // main.rs) stalled the whole process: `/health` p99 under 50 uploads of 5 MB went
    // from 27 ms to 10-15 ms (`scripts/bench.sh uploads`).
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(64 * 1024);
    // What hyper-util's `GracefulShutdown` does, which cannot watch a connection with
    // upgrades: each connection holds a receiver, and is told to finish through it; the
    // sender's `closed()` completes once every connection has.
    let (graceful, watching) = tokio::sync::watch::channel(());
    // MAX_CONNECTIONS: each connection holds a permit until it closes.
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
        // Boxed: the task below captures the box, not the connection, which it would
        // otherwise hold twice (captured, then awaited): ~0.8 KiB more per connection.
        let mut connection = Box::pin(
            http.serve_connection(TokioIo::new(stream), service)
                .with_upgrades(),
        );
        let mut stop = watching.clone();
        tokio::spawn(async move {
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::trace!(error = %e, "connection closed with an error");
            }
            drop(permit);
            drop(stop);
        });
    }
    drop(listener);
    drop(watching);
    let _ = graceful.send(());
    graceful.closed().await;
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

fn router(
    state: AppState,
    sessions: SessionManagerLayer<DbSessionStore>,
    db_health: Health,
) -> Router {
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
    let mut routes = Router::new()
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
                .layer(middleware::from_fn_with_state(state.clone(), body_budget))
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
        );
    if state.config.metrics_addr.is_some() {
        // Outside the other layers, so that the time includes the session's loading; like
        // them it wraps each route, so routing has found the route's template by then.
        routes = routes.layer(middleware::from_fn(monitoring::track_requests));
    }
    routes
        // Added after the layers: the load balancer's probes (every few seconds from
        // each target) stay out of the request log and the metrics, and need no session.
        .route(
            "/health",
            get(move || std::future::ready(db_health.respond())),
        )
        .route("/health/live", get(|| std::future::ready(health::live())))
        .with_state(state)
}

/// CORS for `/api` and `/ws` (socket.io) with the origins of `CORS_ALLOWED_ORIGINS`,
/// credentials allowed; other origins get no `Access-Control-Allow-Origin`. Pages never
/// get CORS headers, and with no origins configured nothing is added at all.
#[derive(Clone)]
struct CrossOriginLayer {
    cors: Option<CorsLayer>,
}

impl CrossOriginLayer {
    fn new(origins: &[String]) -> Self {
        let origins: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        let cors = (!origins.is_empty()).then(|| {
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_credentials(true)
                .allow_methods(AllowMethods::mirror_request())
                .allow_headers(AllowHeaders::mirror_request())
                .expose_headers([header::RETRY_AFTER, header::WWW_AUTHENTICATE])
                .max_age(Duration::from_secs(600))
        });
        Self { cors }
    }
}

impl<S: Clone> tower::Layer<S> for CrossOriginLayer {
    type Service = CrossOrigin<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CrossOrigin {
            cors: self.cors.as_ref().map(|cors| cors.layer(inner.clone())),
            inner,
        }
    }
}

#[derive(Clone)]
struct CrossOrigin<S> {
    cors: Option<Cors<S>>,
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for CrossOrigin<S>
where
    S: tower::Service<Request<ReqBody>, Response = axum::http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        futures_util::future::Either<tower_http::cors::ResponseFuture<S::Future>, S::Future>;

    fn poll_ready(&mut self, cx: &mut task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(cors) = &mut self.cors {
            std::task::ready!(cors.poll_ready(cx))?;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        use futures_util::future::Either;
        let path = request.uri().path();
        let cross_origin = path == "/api" || path.starts_with("/api/") || path.starts_with("/ws/");
        match &mut self.cors {
            Some(cors) if cross_origin => Either::Left(cors.call(request)),
            _ => Either::Right(self.inner.call(request)),
        }
    }
}

/// How much body a request may send, and how long it may take: 256 KiB and 30 s, except
/// a multipart upload to a route that takes files, which may carry ten files of
/// `MAX_UPLOAD_MB` and take up to [`UPLOAD_TIMEOUT`] (a slow uplink). A declared length
/// over the limit is refused at once; a body that runs over it fails its reader (413).
async fn body_budget(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let upload = crate::attachments::upload::is_multipart(request.headers())
        && crate::attachments::accepts_uploads(request.method(), request.uri().path());
    let (limit, timeout) = if upload {
        (state.attachments.max_request_bytes(), UPLOAD_TIMEOUT)
    } else {
        (MAX_BODY_BYTES as u64, REQUEST_TIMEOUT)
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return AppError::PayloadTooLarge("request body too large".into()).into_response();
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let request = request.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
    }
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
