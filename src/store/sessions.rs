//! Sign-in sessions live in the database so any process behind the load balancer accepts
//! them: tower-sessions' sqlx stores, one per backend, behind one type. Every page needs
//! its session first, so while the database is down ([`Circuit`]) the store fails at once
//! and the page answers 503 instead of waiting for the pool.

use async_trait::async_trait;
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, ExpiredDeletion},
    SessionStore,
};
use tower_sessions_sqlx_store::{MySqlStore, SqliteStore};

use crate::db::{Circuit, Db, UNAVAILABLE};

const TABLE: &str = "web_session";

/// The sqlx store of whichever backend is in use.
#[derive(Clone)]
pub struct DbSessionStore {
    backend: Backend,
    circuit: Circuit,
}

#[derive(Debug, Clone)]
enum Backend {
    MySql(MySqlStore),
    Sqlite(SqliteStore),
}

impl std::fmt::Debug for DbSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.backend.fmt(f)
    }
}

/// Runs one store call unless the database is known to be down, or found to be down
/// while the call waits: then at once the error that pages show as 503.
macro_rules! guarded {
    ($self:ident, |$s:ident| $call:expr) => {
        $self
            .circuit
            .guard(async {
                Ok(match &$self.backend {
                    Backend::MySql($s) => $call.await,
                    Backend::Sqlite($s) => $call.await,
                })
            })
            .await
            .unwrap_or_else(|_| Err(session_store::Error::Backend(UNAVAILABLE.into())))
    };
}

impl DbSessionStore {
    /// Makes the store and its table. On MySQL the table goes into the connection's own
    /// database (the store would otherwise create a separate `tower_sessions` schema).
    pub async fn new(db: &Db, circuit: Circuit) -> anyhow::Result<Self> {
        let store = match db {
            Db::MySql(pool) => {
                let schema: String = sqlx::query_scalar("SELECT DATABASE()")
                    .fetch_one(pool)
                    .await?;
                let store = MySqlStore::new(pool.clone())
                    .with_schema_name(schema)
                    .map_err(anyhow::Error::msg)?
                    .with_table_name(TABLE)
                    .map_err(anyhow::Error::msg)?;
                store.migrate().await?;
                Backend::MySql(store)
            }
            Db::Sqlite(pool) => {
                let store = SqliteStore::new(pool.clone())
                    .with_table_name(TABLE)
                    .map_err(anyhow::Error::msg)?;
                store.migrate().await?;
                Backend::Sqlite(store)
            }
        };
        Ok(Self {
            backend: store,
            circuit,
        })
    }
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        guarded!(self, |s| s.create(record))
    }
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        guarded!(self, |s| s.save(record))
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        guarded!(self, |s| s.load(id))
    }
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        guarded!(self, |s| s.delete(id))
    }
}

#[async_trait]
impl ExpiredDeletion for DbSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        match &self.backend {
            Backend::MySql(s) => s.delete_expired().await,
            Backend::Sqlite(s) => s.delete_expired().await,
        }
    }
}
