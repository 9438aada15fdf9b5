//! Disabled accounts and "signed out everywhere", as every process sees them.
//!
//! An operator acts from another process (`messenger admin`), writing `account_access`.
//! Each server process keeps the whole table in memory (a row exists only for an account
//! an operator acted on) and reads it again every second, so every credential check —
//! bearer token, event-stream ticket, session cookie — is a map lookup, and an operator's
//! decision reaches every process within a second. Sign-in reads the database itself, so
//! a disabled account cannot sign in even in that second.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use crate::{
    db::Db,
    store::{access as store, users::UserId},
};

/// How often each process reads `account_access` again.
pub const REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Access {
    disabled: bool,
    signed_out_at: i64,
}

#[derive(Default)]
pub struct AccountAccess {
    accounts: RwLock<Arc<HashMap<UserId, Access>>>,
}

impl AccountAccess {
    /// Reads the table once.
    pub async fn load(db: &Db) -> Result<Self, sqlx::Error> {
        let access = Self::default();
        access.refresh(db).await?;
        Ok(access)
    }

    async fn refresh(&self, db: &Db) -> Result<(), sqlx::Error> {
        let accounts: HashMap<UserId, Access> = store::all(db)
            .await?
            .into_iter()
            .map(|row| {
                let access = Access {
                    disabled: row.disabled_at.is_some(),
                    signed_out_at: row.signed_out_at,
                };
                (row.user_id, access)
            })
            .collect();
        *self.accounts.write().expect("access lock") = Arc::new(accounts);
        Ok(())
    }

    /// Reads the table every [`REFRESH`] until `shutdown`.
    pub async fn keep_fresh(self: Arc<Self>, db: Db, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => if let Err(e) = self.refresh(&db).await {
                    tracing::warn!(error = %e, "reading disabled accounts failed; keeping the last list");
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Whether a credential of `user_id` still counts: never while the account is
    /// disabled; a token (`issued_at`, Unix seconds) only when issued after the last time
    /// the account was signed out everywhere. A token from that very second is refused
    /// too: the clock says no more than that it may be older.
    pub fn allows(&self, user_id: UserId, issued_at: Option<i64>) -> bool {
        let accounts = self.accounts.read().expect("access lock").clone();
        match accounts.get(&user_id) {
            None => true,
            Some(access) if access.disabled => false,
            Some(access) => issued_at.is_none_or(|at| at > access.signed_out_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(rows: &[(UserId, bool, i64)]) -> AccountAccess {
        let accounts = rows
            .iter()
            .map(|&(id, disabled, signed_out_at)| {
                (
                    id,
                    Access {
                        disabled,
                        signed_out_at,
                    },
                )
            })
            .collect();
        AccountAccess {
            accounts: RwLock::new(Arc::new(accounts)),
        }
    }

    #[test]
    fn disabled_accounts_and_older_tokens_are_refused() {
        let access = with(&[(1, true, 100), (2, false, 100)]);
        assert!(!access.allows(1, None), "a disabled account's session");
        assert!(
            !access.allows(1, Some(200)),
            "a disabled account's new token"
        );
        assert!(
            !access.allows(2, Some(99)),
            "a token from before the sign-out"
        );
        assert!(!access.allows(2, Some(100)), "a token from the same second");
        assert!(access.allows(2, Some(101)), "a token from after it");
        assert!(access.allows(2, None), "a session started after it");
        assert!(access.allows(3, Some(1)), "an account nobody acted on");
    }
}
