//! SQLite storage: the connection pool, embedded migrations, and typed queries per table.
//!
//! Query functions take `impl SqliteExecutor` so the same function runs on the pool or inside a
//! transaction. Nothing here knows about HTTP.

pub mod people;
pub mod plugin_grants;
pub mod plugin_state;
pub mod resources;
pub mod sessions;
pub mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The migrations in `host/migrations`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens (creating if needed) the database at `path` and brings its schema up to date.
///
/// On an up-to-date database this only reads the `_sqlx_migrations` table: no table is rebuilt
/// at start-up, however large the database has grown.
pub async fn open(path: &Path) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str("sqlite://")
        .expect("static URL")
        .filename(path)
        .create_if_missing(true)
        // WAL lets pages read while a sync writes; NORMAL is durable across application crashes
        // and loses at most the last transaction on power loss, the usual trade-off with WAL.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot open database {}", path.display()))?;
    MIGRATOR
        .run(&pool)
        .await
        .with_context(|| format!("cannot migrate database {}", path.display()))?;
    Ok(pool)
}

/// Current time as Unix seconds, the unit of every timestamp column.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
