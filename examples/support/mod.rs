//! What the benchmarks in `examples/` share: a database of their own to seed and time.

use std::time::Duration;

use messenger::db::Db;

/// A fresh database for one benchmark run: a temporary SQLite file, or a database of its
/// own on a MySQL server, dropped by [`BenchDb::finish`] unless kept.
pub struct BenchDb {
    pub url: String,
    sqlite_dir: Option<std::path::PathBuf>,
    mysql: Option<(sqlx::MySqlPool, String)>,
}

impl BenchDb {
    /// `database` is `sqlite` or a MySQL URL whose server the bench may create a
    /// database on; `prefix` names the database (or directory).
    pub async fn create(database: &str, prefix: &str) -> Self {
        let unique = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        if database == "sqlite" {
            let dir = std::env::temp_dir().join(unique);
            std::fs::create_dir_all(&dir).expect("a temporary directory");
            return Self {
                url: format!("sqlite://{}/bench.db", dir.display()),
                sqlite_dir: Some(dir),
                mysql: None,
            };
        }
        let admin = sqlx::MySqlPool::connect(database)
            .await
            .expect("the MySQL URL answers");
        sqlx::query(&format!(
            "CREATE DATABASE `{unique}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        ))
        .execute(&admin)
        .await
        .expect("create the bench database");
        let mut url = url::Url::parse(database).expect("a URL");
        url.set_path(&unique);
        Self {
            url: url.to_string(),
            sqlite_dir: None,
            mysql: Some((admin, unique)),
        }
    }

    /// Removes the database (or says where it was kept).
    pub async fn finish(self, keep: bool) {
        if let Some(dir) = self.sqlite_dir {
            std::fs::remove_dir_all(dir).ok();
        }
        if let Some((admin, name)) = self.mysql {
            if keep {
                println!("kept database {name}");
            } else {
                sqlx::query(&format!("DROP DATABASE `{name}`"))
                    .execute(&admin)
                    .await
                    .ok();
            }
        }
    }
}

/// Runs one or more statements (no results) on either backend, panicking on failure:
/// a benchmark's seeding either works or the run is void.
pub async fn exec(db: &Db, sql: &str) {
    match db {
        Db::MySql(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
        Db::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
    }
    .expect("seed statement");
}

/// The `p`-th quantile (0..=1) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}
