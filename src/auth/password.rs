//! Password hashing with argon2id, off the async runtime and bounded in concurrency.
//!
//! Each hash takes 64 MiB and a core for ~100 ms, so at most one per core runs at once
//! and the rest wait their turn on a semaphore: a burst of sign-ins neither stalls the
//! runtime nor exhausts memory.
//!
//! An unknown account is checked against a dummy hash made with the parameters of the
//! cheapest hash stored (hashes the original service wrote may be weaker than ours until
//! their owner signs in again): were it made with ours, an unknown address would take
//! longer to refuse than a known one with a weak hash, and so tell them apart.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, RwLock,
};

use anyhow::Context;
use argon2::{
    password_hash::{
        rand_core::OsRng, PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString,
    },
    Algorithm, Argon2, Params, Version,
};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{config::Argon2Cost, domain::Password, telemetry::spawn_blocking_with_tracing};

#[derive(Clone)]
pub struct PasswordHasher {
    cost: Argon2Cost,
    permits: Arc<Semaphore>,
    cores: usize,
    /// Hashes waiting for a permit (the argon2 queue, for the metrics).
    waiting: Arc<AtomicUsize>,
    /// A real hash to verify against when the account does not exist, so an unknown
    /// email costs the same time as a wrong password; made with the parameters of the
    /// cheapest stored hash ([`PasswordHasher::match_stored_hashes`]).
    dummy_hash: Arc<RwLock<Arc<str>>>,
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, but the hash is weaker than our parameters: store this new one.
    YesRehashed(String),
}

impl PasswordHasher {
    pub fn new(cost: Argon2Cost) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let dummy_hash = hash_blocking(cost, "not a real password, only for timing")?;
        Ok(Self {
            cost,
            permits: Arc::new(Semaphore::new(cores)),
            cores,
            waiting: Arc::new(AtomicUsize::new(0)),
            dummy_hash: Arc::new(RwLock::new(dummy_hash.into())),
        })
    }

    /// Hashes waiting for a core.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Hashes being computed now.
    pub fn running(&self) -> usize {
        self.cores.saturating_sub(self.permits.available_permits())
    }

    /// A core's permit, counted in [`Self::queued`] while it is awaited (also when the
    /// caller gives up waiting).
    async fn permit(&self) -> anyhow::Result<SemaphorePermit<'_>> {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        self.permits.acquire().await.context("hasher closed")
    }

    /// The parameter part of the dummy hash (`$argon2id$v=19$m=…,t=…,p=…`).
    pub fn dummy_parameters(&self) -> String {
        parameters_of(&self.dummy())
    }

    fn dummy(&self) -> Arc<str> {
        self.dummy_hash
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Remakes the dummy hash with the parameters of the cheapest stored hash (by memory
    /// times iterations), when they differ from the current one's. Run at start-up and
    /// now and then: sign-ins upgrade weak hashes, so the cheapest one changes.
    #[tracing::instrument(skip_all)]
    pub async fn match_stored_hashes(&self, db: &crate::db::Db) -> anyhow::Result<()> {
        let stored = crate::store::users::password_hash_parameters(db).await?;
        let Some((cheapest, params)) = stored
            .iter()
            .filter_map(|p| Some((p, parse_parameters(p)?)))
            .min_by_key(|(_, (_, params))| {
                (
                    u64::from(params.m_cost()) * u64::from(params.t_cost()),
                    params.p_cost(),
                )
            })
        else {
            return Ok(());
        };
        if *cheapest == self.dummy_parameters() {
            return Ok(());
        }
        let (algorithm, params) = params;
        let _permit = self.permit().await?;
        let hash = spawn_blocking_with_tracing(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::new(algorithm, Version::V0x13, params)
                .hash_password(b"not a real password, only for timing", &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2: {e}"))
        })
        .await
        .context("hashing task panicked")??;
        tracing::info!(parameters = %parameters_of(&hash), "dummy hash matched to the cheapest stored hash");
        *self.dummy_hash.write().unwrap_or_else(|e| e.into_inner()) = hash.into();
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        let _permit = self.permit().await?;
        let cost = self.cost;
        let password = password.expose().to_string();
        spawn_blocking_with_tracing(move || hash_blocking(cost, &password))
            .await
            .context("hashing task panicked")?
    }

    /// Verifies `password` against `stored`, or against a dummy hash when there is no
    /// account, so both paths take the same time.
    #[tracing::instrument(skip_all)]
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> anyhow::Result<Verified> {
        let _permit = self.permit().await?;
        let cost = self.cost;
        let password = password.to_string();
        let exists = stored.is_some();
        let stored = stored
            .map(str::to_string)
            .unwrap_or_else(|| self.dummy().to_string());
        spawn_blocking_with_tracing(move || {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Ok(Verified::No);
            };
            let ok = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            if !ok || !exists {
                return Ok(Verified::No);
            }
            if is_weaker(&parsed, cost) {
                Ok(Verified::YesRehashed(hash_blocking(cost, &password)?))
            } else {
                Ok(Verified::Yes)
            }
        })
        .await
        .context("verifying task panicked")?
    }
}

fn argon2(cost: Argon2Cost) -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, Some(32))
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(cost: Argon2Cost, password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2(cost)?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
        .to_string())
}

/// `$alg$v=19$m=…,t=…,p=…` of a PHC string: everything before the salt.
fn parameters_of(hash: &str) -> String {
    hash.split('$').take(4).collect::<Vec<_>>().join("$")
}

/// The algorithm and cost of a parameter part, if it is argon2's and sane (at most 1 GiB).
fn parse_parameters(prefix: &str) -> Option<(Algorithm, Params)> {
    // A stand-in salt and output, only so that the parser takes the string.
    let full =
        format!("{prefix}$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let parsed = PasswordHash::new(&full).ok()?;
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let params = Params::try_from(&parsed).ok()?;
    (params.m_cost() <= 1024 * 1024).then_some((algorithm, params))
}

/// A hash is weaker when any of its parameters is below ours, or it is not argon2id.
fn is_weaker(hash: &PasswordHash<'_>, cost: Argon2Cost) -> bool {
    let Ok(params) = Params::try_from(hash) else {
        return true;
    };
    hash.algorithm.as_str() != "argon2id"
        || params.m_cost() < cost.memory_kib
        || params.t_cost() < cost.iterations
        || params.p_cost() < cost.parallelism
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!("../../tests/fixtures/argon2-vectors.txt");

    fn vectors() -> impl Iterator<Item = (&'static str, &'static str)> {
        VECTORS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_once('\t').expect("password<TAB>hash"))
    }

    #[tokio::test]
    async fn the_originals_hashes_verify_and_weak_ones_are_upgraded() {
        let hasher = PasswordHasher::new(Argon2Cost::default()).unwrap();
        for (password, hash) in vectors() {
            let weak = hash.contains("m=19456");
            match hasher.verify(password, Some(hash)).await.unwrap() {
                Verified::Yes => assert!(!weak, "{hash} should be upgraded"),
                Verified::YesRehashed(new) => {
                    assert!(weak, "{hash} is already strong");
                    assert!(new.starts_with("$argon2id$v=19$m=65536,t=3,p=4$"), "{new}");
                    assert_eq!(
                        hasher.verify(password, Some(&new)).await.unwrap(),
                        Verified::Yes
                    );
                }
                Verified::No => panic!("{password} does not verify against {hash}"),
            }
            assert_eq!(
                hasher.verify("Wrong1password", Some(hash)).await.unwrap(),
                Verified::No
            );
        }
    }

    #[tokio::test]
    async fn our_hashes_use_the_originals_parameters() {
        let hasher = PasswordHasher::new(Argon2Cost::default()).unwrap();
        let hash = hasher
            .hash(&Password::parse("Password231").unwrap())
            .await
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=65536,t=3,p=4$"),
            "{hash}"
        );
    }

    #[test]
    fn parameters_are_read_from_the_part_before_the_salt() {
        let (alg, params) = parse_parameters("$argon2id$v=19$m=19456,t=2,p=1").unwrap();
        assert_eq!(alg, Algorithm::Argon2id);
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (19456, 2, 1)
        );
        assert!(parse_parameters("$2b$12$abcdefghijklmnopqrstuv").is_none());
        assert!(parse_parameters("$argon2id$v=19$m=4194304,t=1,p=1").is_none());
        assert_eq!(
            parameters_of("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"),
            "$argon2id$v=19$m=65536,t=3,p=4"
        );
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        let hasher = PasswordHasher::new(Argon2Cost {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        assert_eq!(
            hasher
                .verify("not a real password, only for timing", None)
                .await
                .unwrap(),
            Verified::No
        );
    }
}
