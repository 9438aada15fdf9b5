//! Sign-in sessions live in the database so any process behind the load balancer accepts
//! them: tower-sessions' sqlx stores, one per backend, behind one type.

use async_trait::async_trait;
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, ExpiredDeletion},
    SessionStore,
};
use tower_sessions_sqlx_store::{MySqlStore, SqliteStore};

use crate::db::Db;

const TABLE: &str = "web_session";

/// The sqlx store of whichever backend is in use.
#[derive(Debug, Clone)]
pub enum DbSessionStore {
    MySql(MySqlStore),
    Sqlite(SqliteStore),
}

impl DbSessionStore {
    /// Makes the store and its table. On MySQL the table goes into the connection's own
    /// database (the store would otherwise create a separate `tower_sessions` schema).
    pub async fn new(db: &Db) -> anyhow::Result<Self> {
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
                Self::MySql(store)
            }
            Db::Sqlite(pool) => {
                let store = SqliteStore::new(pool.clone())
                    .with_table_name(TABLE)
                    .map_err(anyhow::Error::msg)?;
                store.migrate().await?;
                Self::Sqlite(store)
            }
        };
        Ok(store)
    }
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            Self::MySql(s) => s.create(record).await,
            Self::Sqlite(s) => s.create(record).await,
        }
    }
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            Self::MySql(s) => s.save(record).await,
            Self::Sqlite(s) => s.save(record).await,
        }
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            Self::MySql(s) => s.load(id).await,
            Self::Sqlite(s) => s.load(id).await,
        }
    }
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            Self::MySql(s) => s.delete(id).await,
            Self::Sqlite(s) => s.delete(id).await,
        }
    }
}

#[async_trait]
impl ExpiredDeletion for DbSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        match self {
            Self::MySql(s) => s.delete_expired().await,
            Self::Sqlite(s) => s.delete_expired().await,
        }
    }
}
