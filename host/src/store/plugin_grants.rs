//! The `plugin_grants` table: an administrator's decision on a dropped-in plugin (enabled or
//! not, for which component and manifest terms, with which hosts), made on Admin → Plugins or
//! with `fasten plugin approve | revoke`. What a grant lets a run reach is decided in
//! [`crate::plugins::grants`].

use sqlx::SqliteExecutor;

use super::unix_now;

/// The decision on one plugin.
pub struct Grant {
    pub enabled: bool,
    /// The component the decision was made for.
    pub sha256: String,
    /// [`Manifest::terms_sha256`](crate::plugins::manifest::Manifest::terms_sha256) when
    /// approved; none for approvals from before it was kept.
    pub terms_sha256: Option<String>,
    pub allowed_hosts: Vec<String>,
}

/// The decision on `plugin_id`, if one was made.
pub async fn grant_for(
    db: impl SqliteExecutor<'_>,
    plugin_id: &str,
) -> sqlx::Result<Option<Grant>> {
    let row: Option<(bool, String, Option<String>, String)> = sqlx::query_as(
        "SELECT enabled, sha256, terms_sha256, allowed_hosts FROM plugin_grants WHERE plugin_id = ?",
    )
    .bind(plugin_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(enabled, sha256, terms_sha256, hosts)| Grant {
        enabled,
        sha256,
        terms_sha256,
        allowed_hosts: serde_json::from_str(&hosts).unwrap_or_default(),
    }))
}

/// Records a decision on `plugin_id` by `decided_by` (none from the command line), replacing
/// any earlier one.
pub async fn save(
    db: impl SqliteExecutor<'_>,
    plugin_id: &str,
    grant: &Grant,
    decided_by: Option<i64>,
) -> sqlx::Result<()> {
    let allowed_hosts = serde_json::to_string(&grant.allowed_hosts)
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO plugin_grants (plugin_id, enabled, sha256, terms_sha256, allowed_hosts,
           decided_by, decided_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (plugin_id) DO UPDATE SET enabled = excluded.enabled, sha256 = excluded.sha256,
           terms_sha256 = excluded.terms_sha256, allowed_hosts = excluded.allowed_hosts,
           decided_by = excluded.decided_by, decided_at = excluded.decided_at",
    )
    .bind(plugin_id)
    .bind(grant.enabled)
    .bind(&grant.sha256)
    .bind(&grant.terms_sha256)
    .bind(allowed_hosts)
    .bind(decided_by)
    .bind(unix_now())
    .execute(db)
    .await?;
    Ok(())
}
