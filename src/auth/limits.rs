//! Brute-force and abuse limits, per client IP and per account, that hold across every
//! process sharing the database (`store::limits`, one primary-key row per key): ten
//! processes behind a load balancer allow what one would, not ten times it.
//!
//! Each limit also has an in-process limiter in front with the same quota. It refuses a
//! flood hitting one process without a database round trip; it never refuses what the
//! shared limit would allow, since a process sees only part of a key's requests.
//!
//! Sign-in: `LOGIN_ATTEMPTS_PER_MINUTE` per account (the account's user id when the login
//! names one, so its username and email share one quota; otherwise the login as typed)
//! and five times that per client IP. Sign-up: `SIGNUPS_PER_HOUR` per client IP. IPv6
//! clients are counted per /64, the block one household or host usually holds.
//!
//! Password resets: `PASSWORD_RESETS_PER_HOUR` per email address (as typed, lower-cased,
//! whether or not an account has it) and five times that per client IP. Friend requests:
//! `FRIEND_REQUESTS_PER_HOUR` per user. Messages: `SENDS_PER_MINUTE` per user, counted
//! not here but in each send batch's own transaction (`store::sending`, through
//! `store::limits::Ledger`), so that the check costs the batch one read and one write
//! rather than a round trip per message. Typing reports: 30 a minute per user, in this
//! process only (they are live-only and cheap to refuse; a shared count would cost a
//! database write per keystroke report). Event streams: `MAX_STREAMS_PER_USER` open at
//! once per user in this process ([`StreamSlots`]).

use std::{
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::{
    config::Config,
    db::Db,
    error::AppError,
    store::limits::{self as shared, Rate},
};

/// One limit: its name (part of every key), its rate, and the in-process front.
struct Limit {
    name: &'static str,
    rate: Rate,
    local: DefaultKeyedRateLimiter<String>,
}

impl Limit {
    fn new(name: &'static str, n: u32, period: Duration) -> Self {
        let rate = Rate::per(n, period);
        let quota = Quota::with_period(rate.interval.max(Duration::from_millis(1)))
            .expect("non-zero period")
            .allow_burst(NonZeroU32::new(rate.burst).expect("at least 1"));
        Self {
            name,
            rate,
            local: RateLimiter::keyed(quota),
        }
    }

    fn key(&self, subject: &str) -> String {
        shared::key(self.name, subject)
    }

    /// Counts one request of `subject` in this process only.
    fn check_local(&self, subject: &str) -> Result<(), AppError> {
        self.check_key_locally(&self.key(subject))
    }

    fn check_key_locally(&self, key: &String) -> Result<(), AppError> {
        if let Err(not_until) = self.local.check_key(key) {
            use governor::clock::{Clock, DefaultClock};
            return Err(AppError::too_many(
                not_until.wait_time_from(DefaultClock::default().now()),
            ));
        }
        Ok(())
    }

    /// Counts one request of `subject`; 429 with `Retry-After` once over the limit.
    async fn check(&self, db: &Db, subject: &str) -> Result<(), AppError> {
        let key = self.key(subject);
        self.check_key_locally(&key)?;
        match shared::take(db, &key, self.rate, now_ms()).await? {
            None => Ok(()),
            Some(wait) => Err(AppError::too_many(wait)),
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The part of an address that names one client: the address for IPv4, its /64 for IPv6.
pub fn client_block(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", Ipv6Addr::from(prefix))
            }
        },
    }
}

pub struct RateLimits {
    db: Db,
    login_per_ip: Limit,
    login_per_account: Limit,
    signup_per_ip: Limit,
    reset_per_address: Limit,
    reset_per_ip: Limit,
    friend_requests_per_user: Limit,
    typing_per_user: Limit,
}

/// Whom a sign-in attempt is counted against besides the client's address.
pub enum SignInAccount<'a> {
    /// The login names this account.
    Known(i32),
    /// No account has this login (counted under the login, lower-cased).
    Unknown(&'a str),
}

impl RateLimits {
    pub fn new(config: &Config, db: Db) -> Self {
        let minute = Duration::from_secs(60);
        let account = config.login_attempts_per_minute;
        Self {
            db,
            // One IP may try several accounts (a family behind one router), so it gets more.
            login_per_ip: Limit::new("sign-in/ip", account.saturating_mul(5), minute),
            login_per_account: Limit::new("sign-in/account", account, minute),
            signup_per_ip: Limit::new("sign-up/ip", config.signups_per_hour, HOUR),
            reset_per_address: Limit::new(
                "password-reset/address",
                config.password_resets_per_hour,
                HOUR,
            ),
            reset_per_ip: Limit::new(
                "password-reset/ip",
                config.password_resets_per_hour.saturating_mul(5),
                HOUR,
            ),
            friend_requests_per_user: Limit::new(
                "friend-request/user",
                config.friend_requests_per_hour,
                HOUR,
            ),
            typing_per_user: Limit::new("typing/user", 30, minute),
        }
    }

    /// Counts one sign-in attempt; 429 with `Retry-After` once over either limit.
    pub async fn check_sign_in(
        &self,
        ip: IpAddr,
        account: SignInAccount<'_>,
    ) -> Result<(), AppError> {
        let account = match account {
            SignInAccount::Known(user_id) => format!("id:{user_id}"),
            SignInAccount::Unknown(login) => format!("login:{}", login.to_lowercase()),
        };
        self.login_per_account.check(&self.db, &account).await?;
        self.login_per_ip.check(&self.db, &client_block(ip)).await
    }

    pub async fn check_sign_up(&self, ip: IpAddr) -> Result<(), AppError> {
        self.signup_per_ip.check(&self.db, &client_block(ip)).await
    }

    /// Counts one password-reset request for `email` (whether or not it has an account,
    /// so that the answer does not tell) from `ip`.
    pub async fn check_password_reset(&self, ip: IpAddr, email: &str) -> Result<(), AppError> {
        self.reset_per_ip.check(&self.db, &client_block(ip)).await?;
        let address = email.trim().to_lowercase();
        self.reset_per_address.check(&self.db, &address).await
    }

    pub async fn check_friend_request(&self, user_id: i32) -> Result<(), AppError> {
        self.friend_requests_per_user
            .check(&self.db, &user_id.to_string())
            .await
    }

    /// In this process only: see the module's notes.
    pub fn check_typing(&self, user_id: i32) -> Result<(), AppError> {
        self.typing_per_user.check_local(&user_id.to_string())
    }

    /// Forgets keys that are back to a full quota, in memory and in the shared table, so
    /// both stay bounded.
    pub async fn forget_idle(&self) {
        self.login_per_ip.local.retain_recent();
        self.login_per_account.local.retain_recent();
        self.signup_per_ip.local.retain_recent();
        self.reset_per_address.local.retain_recent();
        self.reset_per_ip.local.retain_recent();
        self.friend_requests_per_user.local.retain_recent();
        self.typing_per_user.local.retain_recent();
        if let Err(e) = shared::forget_idle(&self.db, now_ms()).await {
            tracing::warn!(error = %e, "could not clean up the rate_limit table");
        }
    }
}

/// How many event streams each user has open in this process, bounded by
/// `MAX_STREAMS_PER_USER`: a script that opens streams in a loop cannot hold thousands of
/// connections (and their memory) for one account.
pub struct StreamSlots {
    max: usize,
    open: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<i32, usize>>>,
}

/// One open stream; dropping it (the stream ends) frees the slot.
pub struct StreamSlot {
    user_id: i32,
    open: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<i32, usize>>>,
}

impl StreamSlots {
    pub fn new(max: u32) -> Self {
        Self {
            max: max as usize,
            open: Default::default(),
        }
    }

    /// A slot for one more stream of `user_id`, or 429 when they have the most already.
    pub fn acquire(&self, user_id: i32) -> Result<StreamSlot, AppError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(user_id).or_default();
        if *count >= self.max {
            return Err(AppError::TooManyRequestsBecause {
                retry_after_secs: 5,
                detail: format!(
                    "too many open event streams: at most {} per user; close one first",
                    self.max
                ),
            });
        }
        *count += 1;
        Ok(StreamSlot {
            user_id,
            open: self.open.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.user_id) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user_id);
            }
        }
    }
}

/// Holds a slot of [`StreamSlots`] for each event stream (`GET /events`, `GET
/// /api/events`) while it is open: a stream beyond a user's limit is answered 429. Other
/// requests pass untouched; a request whose user is unknown here is left to the
/// handler's own authentication.
pub async fn cap_event_streams(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::{extract::FromRequestParts, response::IntoResponse};
    let path = request.uri().path();
    if path != "/events" && path != "/api/events" {
        return next.run(request).await;
    }
    let api = path == "/api/events";
    let (mut parts, body) = request.into_parts();
    let ticket = parts.uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned())
    });
    let user_id = match (api, ticket) {
        (true, Some(ticket)) => {
            super::extract::user_from_token(&state, &ticket, super::jwt::TokenKind::EventTicket)
                .await
                .ok()
                .map(|u| u.user_id)
        }
        (true, None) => super::ApiCaller::from_request_parts(&mut parts, &state)
            .await
            .ok()
            .map(|super::ApiCaller(u)| u.user_id),
        (false, _) => super::extract::user_from_session_parts(&mut parts, &state)
            .await
            .ok()
            .flatten()
            .map(|u| u.user_id),
    };
    let request = axum::extract::Request::from_parts(parts, body);
    let Some(user_id) = user_id else {
        return next.run(request).await;
    };
    let slot = match state.streams.acquire(user_id) {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let response = next.run(request).await;
    // The slot lives as long as the stream's body: dropped when the client goes.
    response.map(|body| {
        use futures_util::StreamExt;
        axum::body::Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &slot;
            chunk
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_block(a), client_block(b));
        assert_ne!(client_block(a), client_block(other));
        assert_eq!(client_block(a), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_block(mapped), "192.0.2.7");
    }

    #[test]
    fn stream_slots_are_counted_per_user_and_freed_on_drop() {
        let slots = StreamSlots::new(2);
        let a = slots.acquire(1).unwrap();
        let _b = slots.acquire(1).unwrap();
        assert!(slots.acquire(1).is_err());
        let _other = slots.acquire(2).unwrap();
        drop(a);
        assert!(slots.acquire(1).is_ok());
    }
}
