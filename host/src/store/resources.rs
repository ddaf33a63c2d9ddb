//! The `resources` table. The ingest path (plugin kernel issue) fills it; for now it offers the
//! per-user counts the account pages show.

use sqlx::SqliteExecutor;

/// How many records a user owns across all sources.
pub async fn count_for_person(db: impl SqliteExecutor<'_>, person_id: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM resources WHERE person_id = ?")
        .bind(person_id)
        .fetch_one(db)
        .await
}
