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

use std::{
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};

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

    /// Counts one request of `subject`; 429 with `Retry-After` once over the limit.
    async fn check(&self, db: &Db, subject: &str) -> Result<(), AppError> {
        let key = hex::encode(Sha256::digest(format!("{}:{subject}", self.name)));
        if let Err(not_until) = self.local.check_key(&key) {
            use governor::clock::{Clock, DefaultClock};
            return Err(too_many(
                not_until.wait_time_from(DefaultClock::default().now()),
            ));
        }
        match shared::take(db, &key, self.rate, now_ms()).await? {
            None => Ok(()),
            Some(wait) => Err(too_many(wait)),
        }
    }
}

fn too_many(wait: Duration) -> AppError {
    AppError::TooManyRequests {
        // Rounded up: a client that waits this long is let in.
        retry_after_secs: wait.as_millis().div_ceil(1000).max(1) as u64,
    }
}

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
            signup_per_ip: Limit::new(
                "sign-up/ip",
                config.signups_per_hour,
                Duration::from_secs(3600),
            ),
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

    /// Forgets keys that are back to a full quota, in memory and in the shared table, so
    /// both stay bounded.
    pub async fn forget_idle(&self) {
        self.login_per_ip.local.retain_recent();
        self.login_per_account.local.retain_recent();
        self.signup_per_ip.local.retain_recent();
        if let Err(e) = shared::forget_idle(&self.db, now_ms()).await {
            tracing::warn!(error = %e, "could not clean up the rate_limit table");
        }
    }
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
}
