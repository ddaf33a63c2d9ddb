//! The `plugin_state` table: a source's plugin state (the `state` import: a plugin's cursors and
//! settings between runs). A run works on a copy ([`PluginState`]); the copy is saved in the
//! same transaction as the run's records, so a failed run leaves the state as it was.

use std::collections::BTreeMap;

use sqlx::{SqliteConnection, SqliteExecutor};

use crate::plugins::PluginState;

/// The state a run of `source_id` starts from.
pub async fn load(db: impl SqliteExecutor<'_>, source_id: i64) -> sqlx::Result<PluginState> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT key, value FROM plugin_state WHERE source_id = ?")
            .bind(source_id)
            .fetch_all(db)
            .await?;
    Ok(PluginState::new(
        rows.into_iter().collect::<BTreeMap<_, _>>(),
    ))
}

/// Replaces the source's state with what a successful run left.
pub async fn save(
    conn: &mut SqliteConnection,
    source_id: i64,
    state: &PluginState,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM plugin_state WHERE source_id = ?")
        .bind(source_id)
        .execute(&mut *conn)
        .await?;
    for (key, value) in &state.entries {
        sqlx::query("INSERT INTO plugin_state (source_id, key, value) VALUES (?, ?, ?)")
            .bind(source_id)
            .bind(key)
            .bind(value)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
