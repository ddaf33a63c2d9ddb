//! The `sessions` table. Rows are keyed by the SHA-256 of the cookie's secret id.

use sqlx::SqliteExecutor;

use super::unix_now;

pub async fn insert(
    db: impl SqliteExecutor<'_>,
    id_hash: &[u8],
    user_id: i64,
    expires_at: i64,
) -> sqlx::Result<()> {
    let now = unix_now();
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, created_at, last_seen_at, expires_at)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id_hash)
    .bind(user_id)
    .bind(now)
    .bind(now)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// A live session's user id, or `None` when the session is unknown, past its absolute expiry,
/// or idle for longer than `idle_secs`.
pub async fn live_user_id(
    db: impl SqliteExecutor<'_>,
    id_hash: &[u8],
    idle_secs: i64,
) -> sqlx::Result<Option<(i64, i64)>> {
    let now = unix_now();
    sqlx::query_as::<_, (i64, i64)>(
        "SELECT user_id, last_seen_at FROM sessions
         WHERE id_hash = ? AND expires_at > ? AND last_seen_at + ? > ?",
    )
    .bind(id_hash)
    .bind(now)
    .bind(idle_secs)
    .bind(now)
    .fetch_optional(db)
    .await
}

pub async fn touch(db: impl SqliteExecutor<'_>, id_hash: &[u8]) -> sqlx::Result<()> {
    sqlx::query("UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?")
        .bind(unix_now())
        .bind(id_hash)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delete(db: impl SqliteExecutor<'_>, id_hash: &[u8]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = ?")
        .bind(id_hash)
        .execute(db)
        .await?;
    Ok(())
}

/// Signs a user out everywhere (after a password reset, disabling or a role change).
pub async fn delete_for_user(db: impl SqliteExecutor<'_>, user_id: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM sessions WHERE user_id = ?")
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Removes expired rows so the table does not grow without bound.
pub async fn purge_expired(db: impl SqliteExecutor<'_>, idle_secs: i64) -> sqlx::Result<u64> {
    let now = unix_now();
    let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at + ? <= ?")
        .bind(now)
        .bind(idle_secs)
        .bind(now)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}
