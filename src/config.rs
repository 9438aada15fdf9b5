//! Typed settings, read once at start-up from the environment.
//!
//! Every setting is declared once, in [`Settings`]: its variable, default, help text, and
//! whether it is a secret (`hide_env_values`). `messenger --help` prints that declaration
//! and a test holds the README's table to it. [`Config`] is what the rest of the code
//! uses: the settings checked against each other, with the defaults that depend on other
//! settings filled in. A bad value stops start-up with one line naming the variable;
//! secrets are kept out of `Debug` output.

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use clap::{
    builder::ArgPredicate,
    error::{ContextKind, ContextValue},
    Arg, ArgAction, Args, Command, FromArgMatches,
};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

/// A configuration error: which variable, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
}

fn bad(variable: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: variable.into(),
        problem: problem.into(),
    }
}

impl ConfigError {
    /// The setting a clap error is about, when it is a bad value of one: `command` is the
    /// command that failed, whose arguments carry the variables' names.
    pub fn from_clap(error: &clap::Error, command: &Command) -> Option<Self> {
        // The argument as clap shows it: `--bind-addr <BIND_ADDR>`.
        let Some(ContextValue::String(invalid)) = error.get(ContextKind::InvalidArg) else {
            return None;
        };
        let long = invalid.split_whitespace().next()?.strip_prefix("--")?;
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long))?;
        let variable = arg.get_env()?.to_string_lossy().into_owned();
        let problem = match std::error::Error::source(error) {
            Some(source) => source.to_string(),
            None => error.kind().to_string(),
        };
        Some(bad(&variable, problem))
    }
}

/// A string that must never appear in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

/// argon2id cost. The default is the original service's (argon2-cffi's defaults,
/// RFC 9106's second recommended option); tests lower it through `ARGON2_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Cost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Cost {
    fn default() -> Self {
        Self {
            memory_kib: 65536,
            iterations: 3,
            parallelism: 4,
        }
    }
}

/// Every setting the server reads, as declared to clap: the environment variable, the
/// default, the help text, and `hide_env_values` for secrets. Where a default depends on
/// another setting, clap cannot show it, so the help text ends with `[default: …]` in
/// clap's own style; the README's table is checked against both kinds.
#[derive(Debug, Clone, Args)]
#[command(
    next_help_heading = "Settings (environment variables; each option overrides its variable)"
)]
pub struct Settings {
    /// sqlite://PATH or mysql://USER:PASSWORD@HOST:PORT/DB; when unset and RDS_ENDPOINT is
    /// set, the MySQL URL is built from the RDS_* variables
    #[arg(
        long, env = "DATABASE_URL", hide_env_values = true, value_parser = database_url,
        default_value = "sqlite://messenger.db",
        default_value_if("rds_endpoint", ArgPredicate::IsPresent, None::<&str>)
    )]
    pub database_url: Option<Secret>,

    /// MySQL host (the original service's variables, used when DATABASE_URL is unset)
    #[arg(long, env = "RDS_ENDPOINT")]
    pub rds_endpoint: Option<String>,

    /// MySQL port, with RDS_ENDPOINT
    #[arg(long, env = "RDS_PORT", default_value = "3306", value_parser = number::<u16>)]
    pub rds_port: u16,

    /// MySQL user, required with RDS_ENDPOINT
    #[arg(long, env = "RDS_USER", hide_env_values = true, value_parser = secret)]
    pub rds_user: Option<Secret>,

    /// MySQL password, with RDS_ENDPOINT; when RDS_PASSWORD_FILE is set too, RDS_PASSWORD
    /// wins
    #[arg(long, env = "RDS_PASSWORD", hide_env_values = true, value_parser = secret)]
    pub rds_password: Option<Secret>,

    /// A file holding the MySQL password, read when RDS_PASSWORD is unset and re-read every
    /// 30 s (rotation without a restart)
    #[arg(long, env = "RDS_PASSWORD_FILE")]
    pub rds_password_file: Option<PathBuf>,

    /// MySQL database name, required with RDS_ENDPOINT
    #[arg(long, env = "RDS_DB_NAME")]
    pub rds_db_name: Option<String>,

    /// Database connections per process
    #[arg(long, env = "RDS_POOL_SIZE", default_value = "10", value_parser = at_least_one)]
    pub rds_pool_size: u32,

    /// Database connections per process, overriding RDS_POOL_SIZE
    /// [default: RDS_POOL_SIZE's value]
    #[arg(long, env = "DATABASE_POOL_SIZE", value_parser = at_least_one)]
    pub database_pool_size: Option<u32>,

    /// MySQL: statements each connection keeps prepared (the least recently used are
    /// closed). The server holds at most max_prepared_stmt_count (16,382 by default, RDS
    /// included) over all connections: keep tasks x pool size x this under it
    #[arg(long, env = "DB_STATEMENT_CACHE", default_value_t = crate::db::DEFAULT_STATEMENT_CACHE)]
    pub db_statement_cache: usize,

    /// Where to listen, host:port (0.0.0.0:8000 in the container)
    #[arg(
        long, env = "BIND_ADDR", default_value = "127.0.0.1:8000", value_parser = socket_addr
    )]
    pub bind_addr: SocketAddr,

    /// Where to serve Prometheus metrics (GET /metrics), host:port, on a listener of its own;
    /// unset, there is none. Not for the public: loopback for a sidecar, or a port only the
    /// scraper can reach
    #[arg(long, env = "METRICS_ADDR", value_parser = socket_addr)]
    pub metrics_addr: Option<SocketAddr>,

    /// development or production; production makes JWT_SECRET mandatory and cookies Secure
    #[arg(long, env = "APP_ENV", default_value = "development", value_parser = app_env)]
    pub app_env: AppEnv,

    /// HS256 key for API tokens: at least 16 characters, the same in every process;
    /// required in production [default: random, with a warning]
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_parser = jwt_secret)]
    pub jwt_secret: Option<Secret>,

    /// The previous JWT_SECRET, still accepted (never signed with) during a rotation
    #[arg(long, env = "JWT_SECRET_PREVIOUS", hide_env_values = true, value_parser = secret)]
    pub jwt_secret_previous: Option<Secret>,

    /// Session cookies only over HTTPS [default: true in production, else false]
    #[arg(long, env = "COOKIE_SECURE", value_parser = boolean)]
    pub cookie_secure: Option<bool>,

    /// Take the client address from X-Forwarded-For (only behind nginx or an ALB)
    #[arg(
        long, env = "TRUST_PROXY", default_value = "false", value_parser = boolean,
        action = ArgAction::Set
    )]
    pub trust_proxy: bool,

    /// pretty, or json for CloudWatch
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty", value_parser = log_format)]
    pub log_format: LogFormat,

    /// Log filter (tracing's EnvFilter syntax)
    #[arg(
        long, env = "RUST_LOG", default_value = "info,sqlx=warn,tower_sessions=warn",
        value_parser = log_filter
    )]
    pub log_filter: String,

    /// Any value turns colours off (no-color.org); without it the logs are coloured only
    /// when stdout is a terminal
    #[arg(
        long, env = "NO_COLOR", value_name = "ANY", num_args = 0..=1,
        default_missing_value = "1"
    )]
    pub no_color: Option<String>,

    /// Apply pending migrations at start-up (messenger migrate applies them alone)
    #[arg(
        long, env = "MIGRATE_ON_START", default_value = "true", value_parser = boolean,
        action = ArgAction::Set
    )]
    pub migrate_on_start: bool,

    /// How long live events are kept for streams that resume
    #[arg(
        long, env = "EVENT_RETENTION_HOURS", default_value = "24", value_parser = number::<u64>
    )]
    pub event_retention_hours: u64,

    /// The most members a group chat may have
    #[arg(long, env = "MAX_GROUP_MEMBERS", default_value = "1000", value_parser = at_least_one)]
    pub max_group_members: u32,

    /// At most this many of the newest live events are kept, whatever their age: the
    /// outbox table stays small under heavy traffic (a stream further behind reloads)
    #[arg(
        long, env = "EVENT_RETENTION_ROWS", default_value = "1000000", value_parser = at_least_one
    )]
    pub event_retention_rows: u32,

    /// Sign-in attempts per minute per account (its username and email share one quota;
    /// a login that names no account is counted as typed, in any case); each client
    /// address (IPv6: each /64) gets five times as many over all accounts; counted over
    /// every process sharing the database
    #[arg(
        long, env = "LOGIN_ATTEMPTS_PER_MINUTE", default_value = "10",
        value_parser = number::<u32>
    )]
    pub login_attempts_per_minute: u32,

    /// Sign-ups per hour per client address (IPv6: per /64), counted over every process
    /// sharing the database
    #[arg(long, env = "SIGNUPS_PER_HOUR", default_value = "20", value_parser = number::<u32>)]
    pub signups_per_hour: u32,

    /// How long a user stays online after their last event stream closed
    #[arg(
        long, env = "PRESENCE_GRACE_SECONDS", default_value = "15", value_parser = number::<u64>
    )]
    pub presence_grace_seconds: u64,

    /// How often each process polls the event table for other processes' events
    #[arg(
        long, env = "EVENT_POLL_MILLISECONDS", default_value = "50",
        value_parser = number::<u64>
    )]
    pub event_poll_milliseconds: u64,

    /// Memory for each process's cache of the latest messages of open conversations, in
    /// MB (10^6 bytes); 0 turns it off (every chat opened asks the database)
    #[arg(
        long, env = "HISTORY_CACHE_MB", default_value = "64", value_parser = cache_mb
    )]
    pub history_cache_mb: u64,

    /// Memory for each process's cache of the first page of people's friend lists, in MB
    /// (10^6 bytes); 0 turns it off (every friend list asks the database)
    #[arg(
        long, env = "FRIEND_LIST_CACHE_MB", default_value = "16", value_parser = cache_mb
    )]
    pub friend_list_cache_mb: u64,

    /// Origins (scheme://host[:port], comma-separated) whose pages may call the API and
    /// socket.io with credentials (CORS); empty: none, the API serves only its own origin
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_parser = allowed_origins)]
    pub cors_allowed_origins: Option<AllowedOrigins>,
    /// Password-reset requests per hour per email address; each client address (IPv6:
    /// each /64) gets five times as many; counted over every process sharing the database
    #[arg(
        long, env = "PASSWORD_RESETS_PER_HOUR", default_value = "3",
        value_parser = number::<u32>
    )]
    pub password_resets_per_hour: u32,

    /// Friend requests per hour per user, counted over every process sharing the database
    #[arg(
        long, env = "FRIEND_REQUESTS_PER_HOUR", default_value = "30",
        value_parser = number::<u32>
    )]
    pub friend_requests_per_hour: u32,

    /// Messages per minute per user (pages, API and socket.io together), all of them at
    /// once if need be; counted over every process sharing the database, in the same
    /// transaction that writes the messages
    #[arg(long, env = "SENDS_PER_MINUTE", default_value = "600", value_parser = at_least_one)]
    pub sends_per_minute: u32,

    /// Open connections per process; a connection beyond it is answered 429 and closed
    #[arg(long, env = "MAX_CONNECTIONS", default_value = "8192", value_parser = at_least_one)]
    pub max_connections: u32,

    /// Open event streams per user per process; a stream beyond it is answered 429
    #[arg(
        long, env = "MAX_STREAMS_PER_USER", default_value = "10", value_parser = at_least_one
    )]
    pub max_streams_per_user: u32,

    /// Where mail goes (password resets, address checks): smtp://HOST:PORT (no TLS, a relay
    /// on localhost), smtp://USER:PASSWORD@HOST:587?tls=required (STARTTLS) or
    /// smtps://USER:PASSWORD@HOST:465; unset, each mail's text (with its link) is written
    /// to the log with a warning
    #[arg(long, env = "SMTP_URL", hide_env_values = true, value_parser = smtp_url)]
    pub smtp_url: Option<Secret>,

    /// The sender of that mail
    #[arg(
        long, env = "MAIL_FROM", default_value = "messenger@localhost",
        value_parser = mailbox
    )]
    pub mail_from: String,

    /// The address people open the server at, for the links in mail
    /// (https://chat.example.com) [default: http://BIND_ADDR]
    #[arg(long, env = "PUBLIC_URL", value_parser = public_url)]
    pub public_url: Option<String>,

    /// New accounts confirm their email address through a mailed link before they can
    /// sign in
    #[arg(
        long, env = "REQUIRE_EMAIL_VERIFICATION", default_value = "false",
        value_parser = boolean, action = ArgAction::Set
    )]
    pub require_email_verification: bool,
    /// Where uploaded files are kept when S3_BUCKET is unset (a local directory, created on
    /// first upload)
    #[arg(long, env = "UPLOAD_DIR", default_value = "./uploads")]
    pub upload_dir: PathBuf,

    /// The largest file one may upload, in MB (10^6 bytes); a message carries up to 10
    #[arg(
        long, env = "MAX_UPLOAD_MB", default_value = "25", value_parser = max_upload_mb
    )]
    pub max_upload_mb: u64,

    /// Keep uploaded files in this S3 bucket instead of UPLOAD_DIR (credentials: the ECS
    /// task role, or AWS_* variables, or S3_ACCESS_KEY_ID)
    #[arg(long, env = "S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// The bucket's region, required with S3_BUCKET
    #[arg(long, env = "S3_REGION")]
    pub s3_region: Option<String>,

    /// An S3-compatible store's URL (MinIO, moto, …) instead of AWS's; path-style requests
    #[arg(long, env = "S3_ENDPOINT", value_parser = http_url)]
    pub s3_endpoint: Option<String>,

    /// A static access key for S3_BUCKET, with S3_SECRET_ACCESS_KEY (S3-compatible stores);
    /// unset on AWS, where the task role's temporary credentials serve
    #[arg(long, env = "S3_ACCESS_KEY_ID", hide_env_values = true, value_parser = secret)]
    pub s3_access_key_id: Option<Secret>,

    /// The secret of S3_ACCESS_KEY_ID
    #[arg(long, env = "S3_SECRET_ACCESS_KEY", hide_env_values = true, value_parser = secret)]
    pub s3_secret_access_key: Option<Secret>,

    /// Test-only: argon2id memory cost in KiB; the tests lower it, production keeps the
    /// default
    #[arg(
        long, env = "ARGON2_MEMORY_KIB", default_value_t = Argon2Cost::default().memory_kib,
        value_parser = number::<u32>
    )]
    pub argon2_memory_kib: u32,

    /// Test-only: argon2id iterations
    #[arg(
        long, env = "ARGON2_ITERATIONS", default_value_t = Argon2Cost::default().iterations,
        value_parser = number::<u32>
    )]
    pub argon2_iterations: u32,

    /// Test-only: argon2id parallelism
    #[arg(
        long, env = "ARGON2_PARALLELISM", default_value_t = Argon2Cost::default().parallelism,
        value_parser = number::<u32>
    )]
    pub argon2_parallelism: u32,
}

impl Settings {
    /// The settings alone, as a command: for reading them through a lookup, and for tests.
    pub fn command() -> Command {
        Settings::augment_args(Command::new("messenger"))
    }

    /// Reads each setting's variable through `lookup` and nothing else (neither the
    /// process environment nor its command line): each value found is handed to clap as
    /// the setting's option (`--bind-addr=…`); an empty value counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let declared = Self::command().no_binary_name(true);
        let args: Vec<String> = declared
            .get_arguments()
            .filter_map(|arg| {
                let value = lookup(arg.get_env()?.to_str()?).filter(|v| !v.is_empty())?;
                Some(format!("--{}={value}", arg.get_long()?))
            })
            .collect();
        let unexpected = |e: clap::Error| {
            ConfigError::from_clap(&e, &declared)
                .unwrap_or_else(|| bad("settings", e.kind().to_string()))
        };
        let matches = declared
            .clone()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(args)
            .map_err(unexpected)?;
        Self::from_arg_matches(&matches).map_err(unexpected)
    }
}

/// An empty variable counts as unset, so that `X=` (as compose files write an unset one)
/// keeps the default. For `Command::mut_args` before parsing the process's environment.
pub fn unset_if_empty(arg: Arg) -> Arg {
    match arg.get_env() {
        Some(name) if std::env::var_os(name).is_some_and(|v| v.is_empty()) => arg.env(None),
        _ => arg,
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite://…` or `mysql://…`; contains the database password.
    pub database_url: Secret,
    pub pool_size: u32,
    /// MySQL: prepared statements kept per connection (`DB_STATEMENT_CACHE`).
    pub statement_cache: usize,
    pub bind_addr: SocketAddr,
    /// `METRICS_ADDR`: where `/metrics` is served; `None`, nowhere.
    pub metrics_addr: Option<SocketAddr>,
    pub jwt_secret: Secret,
    pub jwt_secret_previous: Option<Secret>,
    pub production: bool,
    pub log_format: LogFormat,
    /// `RUST_LOG`: which logs are written.
    pub log_filter: String,
    /// `NO_COLOR` is set: no colours in the logs even on a terminal.
    pub no_color: bool,
    pub migrate_on_start: bool,
    pub cookie_secure: bool,
    pub trust_proxy: bool,
    pub argon2: Argon2Cost,
    pub event_retention: Duration,
    /// The most events kept (`EVENT_RETENTION_ROWS`).
    pub event_retention_rows: u32,
    /// The most members of a group chat (`MAX_GROUP_MEMBERS`).
    pub max_group_members: u32,
    /// Sign-in attempts allowed per minute per account name (lower-cased); each client IP
    /// gets five times as many, over all accounts (`auth::limits`).
    pub login_attempts_per_minute: u32,
    /// Sign-ups allowed per IP per hour.
    pub signups_per_hour: u32,
    /// Password-reset requests allowed per hour per address (five times as many per IP).
    pub password_resets_per_hour: u32,
    /// Friend requests allowed per hour per user.
    pub friend_requests_per_hour: u32,
    /// Messages allowed per minute per user.
    pub sends_per_minute: u32,
    /// Open connections per process; more are answered 429.
    pub max_connections: u32,
    /// Open event streams per user per process; more are answered 429.
    pub max_streams_per_user: u32,
    /// `SMTP_URL`: where mail goes; `None` writes it to the log instead.
    pub smtp_url: Option<Secret>,
    /// `MAIL_FROM`, checked to be a mailbox.
    pub mail_from: String,
    /// `PUBLIC_URL` without a trailing slash; `None` until the listener is bound, when
    /// `http://<its address>` is used.
    pub public_url: Option<String>,
    pub require_email_verification: bool,
    /// How long a stream's user stays online after their last stream closed.
    pub presence_grace: Duration,
    /// How often this process polls the event table when nothing woke it.
    pub event_poll_interval: Duration,
    /// `HISTORY_CACHE_MB`: the history cache's budget in MB; 0: no cache.
    pub history_cache_mb: u64,
    /// `FRIEND_LIST_CACHE_MB`: the friend list cache's budget in MB; 0: no cache.
    pub friend_list_cache_mb: u64,
    /// Origins allowed to call the API and socket.io from their pages (CORS, and the CSRF
    /// origin check), as `scheme://host[:port]`; empty unless `CORS_ALLOWED_ORIGINS`.
    pub cors_allowed_origins: Vec<String>,
    /// The file the MySQL password came from (`RDS_PASSWORD_FILE`, when `RDS_PASSWORD` is
    /// unset), to be re-read while running so that a rotated password reaches new
    /// connections without a restart.
    pub password_file: Option<PathBuf>,
    /// Where attachments are stored: a local directory or an S3 bucket.
    pub file_storage: FileStorage,
    /// The largest attachment accepted, in bytes (`MAX_UPLOAD_MB`).
    pub max_upload_bytes: u64,
    /// Warnings about the settings, logged once tracing is up.
    pub warnings: Vec<String>,
}

/// Where uploaded files live (`UPLOAD_DIR`, or `S3_*`).
#[derive(Debug, Clone, PartialEq)]
pub enum FileStorage {
    Local(PathBuf),
    S3(S3Settings),
}

#[derive(Debug, Clone, PartialEq)]
pub struct S3Settings {
    pub bucket: String,
    pub region: String,
    /// An S3-compatible store instead of AWS (path-style requests; plain HTTP allowed).
    pub endpoint: Option<String>,
    /// Static credentials; `None` takes them from the environment (the ECS task role).
    pub credentials: Option<(Secret, Secret)>,
}

impl Config {
    /// Reads the process environment (and nothing else: no command line).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` rather than the process environment, so tests can
    /// pass their own variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_settings(Settings::from_lookup(lookup)?)
    }

    /// Checks the settings against each other and fills in the defaults that depend on
    /// other settings.
    pub fn from_settings(s: Settings) -> Result<Self, ConfigError> {
        let production = s.app_env == AppEnv::Production;
        let mut warnings = Vec::new();
        let file_storage = file_storage(&s)?;
        let (database_url, password_file) = match s.database_url.clone() {
            Some(url) => (url, None),
            None => rds_url(&s)?,
        };
        let jwt_secret = match s.jwt_secret {
            Some(secret) => secret,
            None if production => {
                return Err(bad(
                    "JWT_SECRET",
                    "must be set when APP_ENV=production (tokens must survive restarts and be shared by every process)",
                ))
            }
            None => {
                warnings.push(
                    "JWT_SECRET is not set: using a random secret; API tokens will not survive a restart and other processes will reject them".into(),
                );
                Secret::new(random_secret())
            }
        };
        let argon2 = Argon2Cost {
            memory_kib: s.argon2_memory_kib,
            iterations: s.argon2_iterations,
            parallelism: s.argon2_parallelism,
        };
        if production && s.public_url.is_none() {
            warnings.push(
                "PUBLIC_URL is not set: links in mail (password resets) point at the listening address".into(),
            );
        }
        if production && s.smtp_url.is_none() {
            warnings.push(
                "SMTP_URL is not set: mail (password resets) is written to the log instead of sent"
                    .into(),
            );
        }
        if argon2 != Argon2Cost::default() {
            warnings.push(format!(
                "argon2 cost lowered by ARGON2_* to {argon2:?}: for tests only"
            ));
        }
        Ok(Self {
            database_url,
            pool_size: s.database_pool_size.unwrap_or(s.rds_pool_size),
            statement_cache: s.db_statement_cache,
            bind_addr: s.bind_addr,
            metrics_addr: s.metrics_addr,
            jwt_secret,
            jwt_secret_previous: s.jwt_secret_previous,
            production,
            log_format: s.log_format,
            log_filter: s.log_filter,
            no_color: s.no_color.is_some_and(|v| !v.is_empty()),
            migrate_on_start: s.migrate_on_start,
            cookie_secure: s.cookie_secure.unwrap_or(production),
            trust_proxy: s.trust_proxy,
            argon2,
            event_retention: Duration::from_secs(s.event_retention_hours * 3600),
            event_retention_rows: s.event_retention_rows,
            max_group_members: s.max_group_members,
            login_attempts_per_minute: s.login_attempts_per_minute,
            signups_per_hour: s.signups_per_hour,
            password_resets_per_hour: s.password_resets_per_hour,
            friend_requests_per_hour: s.friend_requests_per_hour,
            sends_per_minute: s.sends_per_minute,
            max_connections: s.max_connections,
            max_streams_per_user: s.max_streams_per_user,
            smtp_url: s.smtp_url,
            mail_from: s.mail_from,
            public_url: s.public_url,
            require_email_verification: s.require_email_verification,
            presence_grace: Duration::from_secs(s.presence_grace_seconds),
            event_poll_interval: Duration::from_millis(s.event_poll_milliseconds),
            history_cache_mb: s.history_cache_mb,
            friend_list_cache_mb: s.friend_list_cache_mb,
            cors_allowed_origins: s.cors_allowed_origins.map(|o| o.0).unwrap_or_default(),
            password_file,
            file_storage,
            max_upload_bytes: s.max_upload_mb * 1_000_000,
            warnings,
        })
    }
}

/// `S3_BUCKET` with its region (and endpoint, credentials), or else `UPLOAD_DIR`.
fn file_storage(s: &Settings) -> Result<FileStorage, ConfigError> {
    let credentials = match (&s.s3_access_key_id, &s.s3_secret_access_key) {
        (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
        (None, None) => None,
        (Some(_), None) => {
            return Err(bad(
                "S3_SECRET_ACCESS_KEY",
                "must be set with S3_ACCESS_KEY_ID",
            ))
        }
        (None, Some(_)) => {
            return Err(bad(
                "S3_ACCESS_KEY_ID",
                "must be set with S3_SECRET_ACCESS_KEY",
            ))
        }
    };
    let Some(bucket) = s.s3_bucket.clone() else {
        if s.s3_endpoint.is_some() || credentials.is_some() {
            return Err(bad(
                "S3_BUCKET",
                "must be set with S3_ENDPOINT or S3_ACCESS_KEY_ID",
            ));
        }
        return Ok(FileStorage::Local(s.upload_dir.clone()));
    };
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid_bucket {
        return Err(bad(
            "S3_BUCKET",
            format!("not a bucket name (3 to 63 of a-z, 0-9, '-', '.'): {bucket:?}"),
        ));
    }
    let region = s
        .s3_region
        .clone()
        .ok_or_else(|| bad("S3_REGION", "must be set with S3_BUCKET"))?;
    Ok(FileStorage::S3(S3Settings {
        bucket,
        region,
        endpoint: s.s3_endpoint.clone(),
        credentials,
    }))
}

/// The MySQL URL built from the original's `RDS_*` variables (`DATABASE_URL` is unset and
/// `RDS_ENDPOINT` set: clap's default otherwise), and the password file when the
/// password came from one.
fn rds_url(s: &Settings) -> Result<(Secret, Option<PathBuf>), ConfigError> {
    let host = s
        .rds_endpoint
        .as_deref()
        .ok_or_else(|| bad("DATABASE_URL", "must be set, or RDS_ENDPOINT"))?;
    let user = s
        .rds_user
        .as_ref()
        .ok_or_else(|| bad("RDS_USER", "must be set with RDS_ENDPOINT"))?;
    let db_name = s
        .rds_db_name
        .as_deref()
        .ok_or_else(|| bad("RDS_DB_NAME", "must be set with RDS_ENDPOINT"))?;
    let (password, password_file) = match (&s.rds_password, &s.rds_password_file) {
        (Some(p), _) => (p.expose().to_string(), None),
        (None, Some(file)) => {
            let password = std::fs::read_to_string(file)
                .map(|p| p.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| {
                    bad(
                        "RDS_PASSWORD_FILE",
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?;
            (password, Some(file.clone()))
        }
        (None, None) => (String::new(), None),
    };
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let url = format!(
        "mysql://{}:{}@{}:{}/{}",
        enc(user.expose()),
        enc(&password),
        host,
        s.rds_port,
        enc(db_name)
    );
    url::Url::parse(&url).map_err(|e| bad("RDS_ENDPOINT", format!("not a host name ({e})")))?;
    Ok((Secret::new(url), password_file))
}

// The value parsers: each error names the value; `ConfigError::from_clap` adds the variable.

fn database_url(url: &str) -> Result<Secret, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    match parsed.scheme() {
        "sqlite" | "mysql" | "mariadb" => Ok(Secret::new(url.replacen("mariadb:", "mysql:", 1))),
        other => Err(format!(
            "unsupported scheme {other:?}: use sqlite:// or mysql://"
        )),
    }
}

/// `CORS_ALLOWED_ORIGINS`: origins as a browser sends them in `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigins(pub Vec<String>);

fn allowed_origins(value: &str) -> Result<AllowedOrigins, String> {
    let mut origins = Vec::new();
    for item in value.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let explain = || {
            format!("{item:?} is not an origin such as https://chat.example.com or http://localhost:3000")
        };
        if item == "*" || item == "null" {
            return Err(format!(
                "{item:?} cannot be allowed: credentials go only to origins named one by one"
            ));
        }
        let url = url::Url::parse(item).map_err(|_| explain())?;
        let bare = url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none();
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !bare {
            return Err(explain());
        }
        // The form browsers send: lower-case, no default port, no trailing slash.
        origins.push(url.origin().ascii_serialization());
    }
    Ok(AllowedOrigins(origins))
}

fn smtp_url(value: &str) -> Result<Secret, String> {
    let parsed = url::Url::parse(value).map_err(|_| "not a URL".to_string())?;
    match parsed.scheme() {
        "smtp" | "smtps" if parsed.host_str().is_some_and(|h| !h.is_empty()) => {
            Ok(Secret::new(value))
        }
        "smtp" | "smtps" => Err("names no host".into()),
        other => Err(format!(
            "unsupported scheme {other:?}: use smtp:// or smtps://"
        )),
    }
}

fn mailbox(value: &str) -> Result<String, String> {
    value
        .parse::<lettre::message::Mailbox>()
        .map(|_| value.to_string())
        .map_err(|e| {
            format!("not a mailbox such as \"Messenger <chat@example.com>\" ({e}): {value:?}")
        })
}

fn public_url(value: &str) -> Result<String, String> {
    let parsed = url::Url::parse(value).map_err(|e| format!("not a URL ({e}): {value:?}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("expected http(s)://host[:port], got {value:?}"));
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn cache_mb(value: &str) -> Result<u64, String> {
    match number::<u64>(value)? {
        n @ 0..=1_000_000 => Ok(n),
        _ => Err("must be 0 to 1000000".into()),
    }
}

fn max_upload_mb(value: &str) -> Result<u64, String> {
    match number::<u64>(value)? {
        n @ 1..=2000 => Ok(n),
        _ => Err("must be 1 to 2000".into()),
    }
}

fn http_url(value: &str) -> Result<String, String> {
    let parsed = url::Url::parse(value).map_err(|e| format!("not a URL ({e}): {value:?}"))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host().is_some() => Ok(value.trim_end_matches('/').to_string()),
        _ => Err(format!("expected http(s)://host[:port], got {value:?}")),
    }
}

fn secret(value: &str) -> Result<Secret, String> {
    Ok(Secret::new(value))
}

fn jwt_secret(value: &str) -> Result<Secret, String> {
    if value.len() < 16 {
        return Err("must be at least 16 characters".into());
    }
    Ok(Secret::new(value))
}

fn number<T: FromStr>(value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("not a valid number: {value:?}"))
}

fn at_least_one(value: &str) -> Result<u32, String> {
    match number(value)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

fn socket_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("expected host:port such as 0.0.0.0:8000, got {value:?}"))
}

fn boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

fn app_env(value: &str) -> Result<AppEnv, String> {
    match value {
        "development" | "dev" | "test" => Ok(AppEnv::Development),
        "production" | "prod" => Ok(AppEnv::Production),
        other => Err(format!("expected development or production, got {other:?}")),
    }
}

fn log_format(value: &str) -> Result<LogFormat, String> {
    match value {
        "pretty" => Ok(LogFormat::Pretty),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("expected pretty or json, got {other:?}")),
    }
}

fn log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(value)
        .map(|_| value.to_string())
        .map_err(|e| format!("not a log filter ({e}): {value:?}"))
}

pub fn random_secret() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    /// Each declared setting's variable and its default: clap's, or the `[default: …]`
    /// its help text ends with when the default depends on other settings.
    fn declared() -> Vec<(String, Option<String>)> {
        Settings::command()
            .get_arguments()
            .filter(|arg| arg.get_id() != "help")
            .map(|arg| {
                let variable = arg
                    .get_env()
                    .unwrap_or_else(|| panic!("{arg} has no environment variable"))
                    .to_string_lossy()
                    .into_owned();
                (variable, declared_default(arg))
            })
            .collect()
    }

    fn declared_default(arg: &Arg) -> Option<String> {
        let values = arg.get_default_values();
        if !values.is_empty() {
            let values: Vec<_> = values.iter().map(|v| v.to_string_lossy()).collect();
            return Some(values.join(","));
        }
        let help = arg.get_help()?.to_string();
        let (_, default) = help.split_once("[default: ")?;
        Some(default.split(']').next()?.to_string())
    }

    /// The rows of the first table after the line `heading` in the README: each row's
    /// variables (the first column's `NAME`s) and its second column, backticks removed,
    /// `None` for "—".
    fn readme_table(heading: &str) -> Vec<(Vec<String>, Option<String>)> {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let lines = readme
            .lines()
            .skip_while(|line| line.trim() != heading)
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2);
        lines
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let variables = cells[1]
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(String::from)
                    .collect();
                let default = match cells[2].replace('`', "") {
                    none if none == "—" => None,
                    text => Some(text),
                };
                (variables, default)
            })
            .collect()
    }

    #[test]
    fn defaults_serve_sqlite_on_localhost() {
        let c = config(&[]).unwrap();
        assert_eq!(c.database_url.expose(), "sqlite://messenger.db");
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(c.pool_size, 10);
        assert_eq!(c.log_filter, "info,sqlx=warn,tower_sessions=warn");
        assert_eq!(c.argon2, Argon2Cost::default());
        assert!(!c.cookie_secure);
        assert!(!c.production);
        assert!(c.password_file.is_none());
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let c = config(&[("BIND_ADDR", ""), ("DATABASE_URL", ""), ("NO_COLOR", "")]).unwrap();
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(c.database_url.expose(), "sqlite://messenger.db");
        assert!(!c.no_color);
        assert!(config(&[("NO_COLOR", "1")]).unwrap().no_color);
    }

    #[test]
    fn rds_variables_build_a_percent_encoded_mysql_url() {
        let c = config(&[
            ("RDS_ENDPOINT", "db.example.internal"),
            ("RDS_PORT", "3306"),
            ("RDS_USER", "app"),
            ("RDS_PASSWORD", "p@ss:w/rd"),
            ("RDS_DB_NAME", "messenger"),
            ("RDS_POOL_SIZE", "7"),
        ])
        .unwrap();
        assert_eq!(
            c.database_url.expose(),
            "mysql://app:p%40ss%3Aw%2Frd@db.example.internal:3306/messenger"
        );
        assert_eq!(c.pool_size, 7);
        let c = config(&[("RDS_POOL_SIZE", "7"), ("DATABASE_POOL_SIZE", "3")]).unwrap();
        assert_eq!(c.pool_size, 3, "DATABASE_POOL_SIZE overrides RDS_POOL_SIZE");
    }

    #[test]
    fn database_url_wins_over_the_rds_variables() {
        let c = config(&[
            ("DATABASE_URL", "mariadb://u:p@h:3306/d"),
            ("RDS_ENDPOINT", "db.internal"),
        ])
        .unwrap();
        assert_eq!(c.database_url.expose(), "mysql://u:p@h:3306/d");
    }

    #[test]
    fn the_rds_password_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret/pw\n").unwrap();
        let rds = [
            ("RDS_ENDPOINT", "db.internal"),
            ("RDS_USER", "app"),
            ("RDS_DB_NAME", "messenger"),
            ("RDS_PASSWORD_FILE", path.to_str().unwrap()),
        ];
        let c = config(&rds).unwrap();
        assert_eq!(
            c.database_url.expose(),
            "mysql://app:s3cret%2Fpw@db.internal:3306/messenger"
        );
        assert_eq!(c.password_file.as_deref(), Some(path.as_path()));
        let missing = config(&[
            ("RDS_ENDPOINT", "db.internal"),
            ("RDS_USER", "app"),
            ("RDS_DB_NAME", "messenger"),
            ("RDS_PASSWORD_FILE", "/nonexistent/password"),
        ]);
        assert_eq!(missing.unwrap_err().variable, "RDS_PASSWORD_FILE");
    }

    #[test]
    fn rds_password_wins_over_rds_password_file() {
        let c = config(&[
            ("RDS_ENDPOINT", "db.internal"),
            ("RDS_USER", "app"),
            ("RDS_DB_NAME", "messenger"),
            ("RDS_PASSWORD", "from-the-variable"),
            ("RDS_PASSWORD_FILE", "/nonexistent/password"),
        ])
        .unwrap();
        assert_eq!(
            c.database_url.expose(),
            "mysql://app:from%2Dthe%2Dvariable@db.internal:3306/messenger"
        );
        assert!(
            c.password_file.is_none(),
            "the file is not the password's source"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = config(&[("BIND_ADDR", "localhost:99999")]).unwrap_err();
        assert_eq!(e.variable, "BIND_ADDR");
        assert_eq!(
            e.to_string(),
            r#"BIND_ADDR: expected host:port such as 0.0.0.0:8000, got "localhost:99999""#
        );
        let e = config(&[("DATABASE_URL", "postgres://x")]).unwrap_err();
        assert_eq!(e.variable, "DATABASE_URL");
        let e = config(&[
            ("RDS_ENDPOINT", "h"),
            ("RDS_USER", "u"),
            ("RDS_DB_NAME", "d"),
            ("RDS_PORT", "70000"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "RDS_PORT");
        for (variable, value) in [
            ("DATABASE_URL", "not a url"),
            ("RDS_PORT", "x"),
            ("RDS_POOL_SIZE", "0"),
            ("DATABASE_POOL_SIZE", "0"),
            ("APP_ENV", "staging"),
            ("JWT_SECRET", "short"),
            ("COOKIE_SECURE", "maybe"),
            ("TRUST_PROXY", "2"),
            ("LOG_FORMAT", "xml"),
            ("RUST_LOG", "info,[["),
            ("MIGRATE_ON_START", "later"),
            ("EVENT_RETENTION_HOURS", "-1"),
            ("LOGIN_ATTEMPTS_PER_MINUTE", "ten"),
            ("SIGNUPS_PER_HOUR", "1.5"),
            ("PRESENCE_GRACE_SECONDS", "15s"),
            ("EVENT_POLL_MILLISECONDS", "fast"),
            ("CORS_ALLOWED_ORIGINS", "localhost:3000"),
            ("CORS_ALLOWED_ORIGINS", "*"),
            ("CORS_ALLOWED_ORIGINS", "https://chat.example.com/app"),
            ("ARGON2_MEMORY_KIB", "64M"),
            ("ARGON2_ITERATIONS", "three"),
            ("ARGON2_PARALLELISM", "-4"),
            ("PASSWORD_RESETS_PER_HOUR", "many"),
            ("FRIEND_REQUESTS_PER_HOUR", "-1"),
            ("MAX_CONNECTIONS", "0"),
            ("MAX_STREAMS_PER_USER", "0"),
            ("SMTP_URL", "http://mail.example"),
            ("MAIL_FROM", "not a mailbox"),
            ("PUBLIC_URL", "chat.example.com"),
            ("REQUIRE_EMAIL_VERIFICATION", "perhaps"),
            ("MAX_UPLOAD_MB", "0"),
            ("MAX_UPLOAD_MB", "lots"),
            ("S3_BUCKET", "Not_A_Bucket"),
            ("S3_ENDPOINT", "localhost:9000"),
        ] {
            let e = config(&[(variable, value)]).unwrap_err();
            assert_eq!(e.variable, variable, "{e}");
            assert!(e.to_string().starts_with(&format!("{variable}: ")), "{e}");
        }
        let e = config(&[("S3_BUCKET", "files")]).unwrap_err();
        assert_eq!(e.variable, "S3_REGION");
        let s3 = [("S3_BUCKET", "files"), ("S3_REGION", "eu-west-1")];
        let e = config(&[s3[0], s3[1], ("S3_ACCESS_KEY_ID", "id")]).unwrap_err();
        assert_eq!(e.variable, "S3_SECRET_ACCESS_KEY");
        let e = config(&[s3[0], s3[1], ("S3_SECRET_ACCESS_KEY", "secret")]).unwrap_err();
        assert_eq!(e.variable, "S3_ACCESS_KEY_ID");
        let e = config(&[("S3_ENDPOINT", "http://127.0.0.1:9000")]).unwrap_err();
        assert_eq!(e.variable, "S3_BUCKET");
        let e = config(&[("RDS_ENDPOINT", "h"), ("RDS_DB_NAME", "d")]).unwrap_err();
        assert_eq!(e.variable, "RDS_USER");
        let e = config(&[("RDS_ENDPOINT", "h"), ("RDS_USER", "u")]).unwrap_err();
        assert_eq!(e.variable, "RDS_DB_NAME");
    }

    /// `main` parses the process's command line and environment with clap directly; its
    /// errors must name the variable the same way.
    #[test]
    fn a_bad_value_given_to_clap_names_the_variable() {
        let command = Settings::command();
        let e = command
            .clone()
            .try_get_matches_from(["messenger", "--bind-addr=nope"])
            .unwrap_err();
        let e = ConfigError::from_clap(&e, &command).expect("a value error");
        assert_eq!(
            e.to_string(),
            r#"BIND_ADDR: expected host:port such as 0.0.0.0:8000, got "nope""#
        );
        let unknown = command
            .clone()
            .try_get_matches_from(["messenger", "--no-such-setting"])
            .unwrap_err();
        assert!(ConfigError::from_clap(&unknown, &command).is_none());
    }

    #[test]
    fn cors_origins_are_read_as_browsers_send_them() {
        assert!(config(&[]).unwrap().cors_allowed_origins.is_empty());
        let c = config(&[(
            "CORS_ALLOWED_ORIGINS",
            " http://localhost:3000, HTTPS://Chat.Example.com:443/ ,,http://[::1]:8080",
        )])
        .unwrap();
        assert_eq!(
            c.cors_allowed_origins,
            [
                "http://localhost:3000",
                "https://chat.example.com",
                "http://[::1]:8080"
            ]
        );
    }

    #[test]
    fn production_requires_a_jwt_secret() {
        let e = config(&[("APP_ENV", "production")]).unwrap_err();
        assert_eq!(e.variable, "JWT_SECRET");
        let c = config(&[
            ("APP_ENV", "production"),
            ("JWT_SECRET", "0123456789abcdef0123"),
        ])
        .unwrap();
        assert!(c.cookie_secure, "production cookies are Secure by default");
        let c = config(&[
            ("APP_ENV", "prod"),
            ("JWT_SECRET", "0123456789abcdef0123"),
            ("COOKIE_SECURE", "false"),
        ])
        .unwrap();
        assert!(!c.cookie_secure);
    }

    #[test]
    fn files_go_to_a_directory_unless_a_bucket_is_named() {
        let c = config(&[]).unwrap();
        assert_eq!(
            c.file_storage,
            FileStorage::Local(PathBuf::from("./uploads"))
        );
        assert_eq!(c.max_upload_bytes, 25_000_000);
        let c = config(&[
            ("S3_BUCKET", "messenger-files"),
            ("S3_REGION", "eu-west-1"),
            ("S3_ENDPOINT", "http://127.0.0.1:9000/"),
            ("MAX_UPLOAD_MB", "5"),
        ])
        .unwrap();
        let FileStorage::S3(s3) = &c.file_storage else {
            panic!("{:?}", c.file_storage)
        };
        assert_eq!(s3.bucket, "messenger-files");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s3.credentials.is_none());
        assert_eq!(c.max_upload_bytes, 5_000_000);
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let c = config(&[("JWT_SECRET", "super-secret-value-123")]).unwrap();
        assert!(!format!("{c:?}").contains("super-secret-value-123"));
    }

    /// Every setting declared secret, set at once (through `DATABASE_URL` or the `RDS_*`
    /// variables), stays out of the `Debug` output of the settings and of the config.
    #[test]
    fn every_secret_setting_stays_out_of_debug_output() {
        let jwt = [
            ("JWT_SECRET", "secretJWTcurrent0001"),
            ("JWT_SECRET_PREVIOUS", "secretJWTprevious0002"),
            ("SMTP_URL", "smtp://mailer:secretSMTP0006@mail.example:25"),
            ("S3_BUCKET", "files"),
            ("S3_REGION", "eu-west-1"),
            ("S3_ACCESS_KEY_ID", "secretS3KEYID0006"),
            ("S3_SECRET_ACCESS_KEY", "secretS3SECRET0007"),
        ];
        let by_url = [("DATABASE_URL", "mysql://app:secretPASSWORD0003@h:3306/d")];
        let by_rds = [
            ("RDS_ENDPOINT", "h"),
            ("RDS_DB_NAME", "d"),
            ("RDS_USER", "secretUSER0004"),
            ("RDS_PASSWORD", "secretPASSWORD0005"),
        ];
        let secrets: Vec<String> = Settings::command()
            .get_arguments()
            .filter(|arg| arg.is_hide_env_values_set())
            .map(|arg| arg.get_env().unwrap().to_string_lossy().into_owned())
            .collect();
        for secret in &secrets {
            assert!(
                jwt.iter()
                    .chain(&by_url)
                    .chain(&by_rds)
                    .any(|(v, _)| v == secret),
                "{secret} is declared secret: set it in this test"
            );
        }
        for database in [&by_url[..], &by_rds[..]] {
            let vars: HashMap<&str, &str> = jwt.iter().chain(database).copied().collect();
            let settings = Settings::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap();
            let config = Config::from_settings(settings.clone()).unwrap();
            let shown = format!("{settings:?} {config:?}");
            for (variable, value) in &vars {
                if secrets.iter().any(|s| s == variable) {
                    assert!(!shown.contains(value), "{variable} shows: {shown}");
                }
            }
        }
    }

    #[test]
    fn help_lists_every_variable_with_its_default() {
        let help = Settings::command().render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let declared = declared();
        assert!(declared.len() >= 25, "{declared:?}");
        for (variable, default) in declared {
            assert!(
                help.contains(&format!("[env: {variable}")),
                "{variable}: {help}"
            );
            if let Some(default) = default {
                assert!(
                    help.contains(&format!("[default: {default}]")),
                    "{variable}'s default {default}: {help}"
                );
            }
        }
    }

    #[test]
    fn the_readme_table_and_the_declared_settings_agree() {
        let declared = declared();
        let table = readme_table("## Configuration");
        let documented: Vec<(&String, &Option<String>)> = table
            .iter()
            .flat_map(|(variables, default)| variables.iter().map(move |v| (v, default)))
            .collect();
        for (variable, default) in &declared {
            let rows: Vec<_> = documented.iter().filter(|(v, _)| *v == variable).collect();
            assert_eq!(rows.len(), 1, "{variable} is in the README's table once");
            assert_eq!(rows[0].1, default, "{variable}'s default in the README");
        }
        for (variable, _) in &documented {
            assert!(
                declared.iter().any(|(v, _)| v == *variable),
                "{variable} is in the README's table but not declared in Settings"
            );
        }
        let test_only = readme_table("### Variables the tests and scripts read");
        assert!(
            !test_only.is_empty(),
            "the README lists the tests' variables"
        );
        for (variables, _) in &test_only {
            for variable in variables {
                assert!(
                    !declared.iter().any(|(v, _)| v == variable),
                    "{variable} is a setting of the server, not only of the tests"
                );
            }
        }
    }
}
