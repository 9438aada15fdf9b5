//! Brute-force limits for sign-in and sign-up, per client IP and per account.
//!
//! Counters are per process: with N processes an attacker gets at most N times the
//! quota, which still turns a dictionary attack into a hopeless one.

use std::{net::IpAddr, num::NonZeroU32, time::Duration};

use governor::{
    clock::{Clock, DefaultClock},
    DefaultKeyedRateLimiter, Quota, RateLimiter,
};

use crate::{config::Config, error::AppError};

pub struct RateLimits {
    login_per_ip: DefaultKeyedRateLimiter<IpAddr>,
    login_per_account: DefaultKeyedRateLimiter<String>,
    signup_per_ip: DefaultKeyedRateLimiter<IpAddr>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least 1"))
}

impl RateLimits {
    pub fn new(config: &Config) -> Self {
        let account = config.login_attempts_per_minute;
        // One IP may try several accounts (a family behind one router), so it gets more.
        let ip = account.saturating_mul(5);
        let signups = config.signups_per_hour.max(1);
        let signup_quota = Quota::with_period(Duration::from_secs(3600) / signups)
            .expect("non-zero period")
            .allow_burst(NonZeroU32::new(signups).expect("at least 1"));
        Self {
            login_per_ip: RateLimiter::keyed(per_minute(ip)),
            login_per_account: RateLimiter::keyed(per_minute(account)),
            signup_per_ip: RateLimiter::keyed(signup_quota),
        }
    }

    /// Counts one sign-in attempt; 429 with `Retry-After` once over the limit.
    pub fn check_sign_in(&self, ip: IpAddr, account: &str) -> Result<(), AppError> {
        check(&self.login_per_account, &account.to_lowercase())?;
        check(&self.login_per_ip, &ip)
    }

    pub fn check_sign_up(&self, ip: IpAddr) -> Result<(), AppError> {
        check(&self.signup_per_ip, &ip)
    }

    /// Forgets keys that are back to a full quota, so memory stays bounded.
    pub fn forget_idle(&self) {
        self.login_per_ip.retain_recent();
        self.login_per_account.retain_recent();
        self.signup_per_ip.retain_recent();
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), AppError> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        AppError::TooManyRequests {
            retry_after_secs: wait.as_secs().max(1),
        }
    })
}
