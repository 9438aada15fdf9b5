//! Typed settings, read once from the environment at start-up.
//!
//! Every variable is parsed here; a bad value stops start-up with one line naming the
//! variable. Secrets are kept out of `Debug` output.

use std::{fmt, net::SocketAddr, time::Duration};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

/// A configuration error: which variable, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

fn bad(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
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

#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite://…` or `mysql://…`; contains the database password.
    pub database_url: Secret,
    pub pool_size: u32,
    pub bind_addr: SocketAddr,
    pub jwt_secret: Secret,
    pub jwt_secret_previous: Option<Secret>,
    pub production: bool,
    pub log_format: LogFormat,
    pub migrate_on_start: bool,
    pub cookie_secure: bool,
    pub trust_proxy: bool,
    pub argon2: Argon2Cost,
    pub event_retention: Duration,
    /// Sign-in attempts allowed per IP and per account per minute.
    pub login_attempts_per_minute: u32,
    /// Sign-ups allowed per IP per hour.
    pub signups_per_hour: u32,
    /// How long a stream's user stays online after their last stream closed.
    pub presence_grace: Duration,
    /// How often this process polls the event table when nothing woke it.
    pub event_poll_interval: Duration,
    /// A file holding the MySQL password (`RDS_PASSWORD_FILE`), re-read while running so
    /// that a rotated password reaches new connections without a restart.
    pub password_file: Option<std::path::PathBuf>,
    /// Warnings about the settings, logged once tracing is up.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads settings through `lookup`, so tests can pass their own variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let production = match lookup("APP_ENV").as_deref() {
            None | Some("development") | Some("dev") | Some("test") => false,
            Some("production") | Some("prod") => true,
            Some(other) => {
                return Err(bad(
                    "APP_ENV",
                    format!("expected development or production, got {other:?}"),
                ))
            }
        };
        let mut warnings = Vec::new();
        let database_url = database_url(&lookup)?;
        let pool_size = parse_or(&lookup, "RDS_POOL_SIZE", 10u32)?;
        let pool_size = parse_or(&lookup, "DATABASE_POOL_SIZE", pool_size)?;
        if pool_size == 0 {
            return Err(bad("RDS_POOL_SIZE", "must be at least 1"));
        }
        let bind_addr = match lookup("BIND_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 8000)),
            Some(v) => v.parse().map_err(|_| {
                bad(
                    "BIND_ADDR",
                    format!("expected host:port such as 0.0.0.0:8000, got {v:?}"),
                )
            })?,
        };
        let jwt_secret = match lookup("JWT_SECRET") {
            Some(s) if s.len() >= 16 => Secret::new(s),
            Some(_) => return Err(bad("JWT_SECRET", "must be at least 16 characters")),
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
        let log_format = match lookup("LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(bad(
                    "LOG_FORMAT",
                    format!("expected pretty or json, got {other:?}"),
                ))
            }
        };
        let argon2 = Argon2Cost {
            memory_kib: parse_or(
                &lookup,
                "ARGON2_MEMORY_KIB",
                Argon2Cost::default().memory_kib,
            )?,
            iterations: parse_or(
                &lookup,
                "ARGON2_ITERATIONS",
                Argon2Cost::default().iterations,
            )?,
            parallelism: parse_or(
                &lookup,
                "ARGON2_PARALLELISM",
                Argon2Cost::default().parallelism,
            )?,
        };
        if argon2 != Argon2Cost::default() {
            warnings.push(format!(
                "argon2 cost lowered by ARGON2_* to {argon2:?}: for tests only"
            ));
        }
        let event_retention_hours: u64 = parse_or(&lookup, "EVENT_RETENTION_HOURS", 24)?;
        Ok(Self {
            database_url,
            pool_size,
            bind_addr,
            jwt_secret,
            jwt_secret_previous: lookup("JWT_SECRET_PREVIOUS").map(Secret::new),
            production,
            log_format,
            migrate_on_start: parse_bool_or(&lookup, "MIGRATE_ON_START", true)?,
            cookie_secure: parse_bool_or(&lookup, "COOKIE_SECURE", production)?,
            trust_proxy: parse_bool_or(&lookup, "TRUST_PROXY", false)?,
            argon2,
            event_retention: Duration::from_secs(event_retention_hours * 3600),
            login_attempts_per_minute: parse_or(&lookup, "LOGIN_ATTEMPTS_PER_MINUTE", 10)?,
            signups_per_hour: parse_or(&lookup, "SIGNUPS_PER_HOUR", 20)?,
            presence_grace: Duration::from_secs(parse_or(&lookup, "PRESENCE_GRACE_SECONDS", 15)?),
            event_poll_interval: Duration::from_millis(parse_or(
                &lookup,
                "EVENT_POLL_MILLISECONDS",
                50,
            )?),
            password_file: lookup("RDS_PASSWORD_FILE").map(Into::into),
            warnings,
        })
    }
}

/// `DATABASE_URL`, else a MySQL URL built from the original's `RDS_*` variables,
/// else a SQLite file next to the working directory.
fn database_url(lookup: &impl Fn(&str) -> Option<String>) -> Result<Secret, ConfigError> {
    if let Some(url) = lookup("DATABASE_URL") {
        let parsed =
            url::Url::parse(&url).map_err(|e| bad("DATABASE_URL", format!("not a URL ({e})")))?;
        return match parsed.scheme() {
            "sqlite" | "mysql" | "mariadb" => {
                Ok(Secret::new(url.replacen("mariadb:", "mysql:", 1)))
            }
            other => Err(bad(
                "DATABASE_URL",
                format!("unsupported scheme {other:?}: use sqlite:// or mysql://"),
            )),
        };
    }
    let Some(host) = lookup("RDS_ENDPOINT") else {
        return Ok(Secret::new("sqlite://messenger.db"));
    };
    let port: u16 = parse_or(lookup, "RDS_PORT", 3306)?;
    let user =
        lookup("RDS_USER").ok_or_else(|| bad("RDS_USER", "must be set with RDS_ENDPOINT"))?;
    let password = match (lookup("RDS_PASSWORD"), lookup("RDS_PASSWORD_FILE")) {
        (Some(p), _) => p,
        (None, Some(file)) => std::fs::read_to_string(&file)
            .map(|p| p.trim_end_matches(['\r', '\n']).to_string())
            .map_err(|e| bad("RDS_PASSWORD_FILE", format!("cannot read {file}: {e}")))?,
        (None, None) => String::new(),
    };
    let db_name =
        lookup("RDS_DB_NAME").ok_or_else(|| bad("RDS_DB_NAME", "must be set with RDS_ENDPOINT"))?;
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let url = format!(
        "mysql://{}:{}@{}:{}/{}",
        enc(&user),
        enc(&password),
        host,
        port,
        enc(&db_name)
    );
    url::Url::parse(&url).map_err(|e| bad("RDS_ENDPOINT", format!("not a host name ({e})")))?;
    Ok(Secret::new(url))
}

fn parse_or<T: std::str::FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match lookup(variable) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| bad(variable, format!("not a valid number: {v:?}"))),
    }
}

fn parse_bool_or(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match lookup(variable)
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(bad(
            variable,
            format!("expected true or false, got {other:?}"),
        )),
    }
}

pub fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
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

    #[test]
    fn defaults_serve_sqlite_on_localhost() {
        let c = config(&[]).unwrap();
        assert_eq!(c.database_url.expose(), "sqlite://messenger.db");
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:8000");
        assert!(!c.cookie_secure);
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
    }

    #[test]
    fn the_rds_password_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret/pw\n").unwrap();
        let c = config(&[
            ("RDS_ENDPOINT", "db.internal"),
            ("RDS_USER", "app"),
            ("RDS_DB_NAME", "messenger"),
            ("RDS_PASSWORD_FILE", path.to_str().unwrap()),
        ])
        .unwrap();
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
    fn bad_values_name_the_variable() {
        let e = config(&[("BIND_ADDR", "localhost:99999")]).unwrap_err();
        assert_eq!(e.variable, "BIND_ADDR");
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
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let c = config(&[("JWT_SECRET", "super-secret-value-123")]).unwrap();
        assert!(!format!("{c:?}").contains("super-secret-value-123"));
    }
}
