//! Lists an administrator added on Admin → Provider directory ("An administrator can add any
//! other Bundle URL"), kept in SQLite beside the operator's `directory.toml`. They are read at
//! every refresh and merged after the file's sources ([`super::Directory::all_sources`]); their
//! ids are `added-<n>`, a prefix the file may not use, so the two never collide.

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use super::{Format, Source, Sources};
use crate::catalog::Catalog;
use crate::plugins::http::NetworkPolicy;
use crate::store::unix_now;

/// The ids of added lists start with this; `directory.toml` may not use it.
pub const ID_PREFIX: &str = "added-";

/// What the "Add another list" form posts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AddForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub platform: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// Bad input, in one sentence for the administrator.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The catalog platforms a list may name: those with an entry whose FHIR base the user
/// supplies, which a directory result fills in (the same rule [`Source::check`] applies).
pub fn platforms(catalog: &Catalog) -> Vec<(String, String)> {
    catalog
        .platforms()
        .iter()
        .filter(|p| catalog.organisation_entry(&p.id).is_some())
        .map(|p| (p.id.clone(), p.name.clone()))
        .collect()
}

/// The added lists, oldest first.
pub async fn list(db: &SqlitePool) -> sqlx::Result<Vec<Source>> {
    let rows: Vec<(i64, String, String, String)> =
        sqlx::query_as("SELECT id, name, url, platform FROM directory_added_sources ORDER BY id")
            .fetch_all(db)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, url, platform)| Source {
            id: format!("{ID_PREFIX}{id}"),
            name,
            url,
            format: Format::FhirBundle,
            platform,
        })
        .collect())
}

/// Plain http is for a list on this machine, and only when the operator allows it (`[plugins]
/// allow_http_loopback`): the HTTP gate's own rule, so the form never takes an address every
/// download would then refuse.
fn plain_http_allowed(url: &url::Url, allow_http_loopback: bool) -> bool {
    let policy = NetworkPolicy {
        allow_http_loopback,
        allow_private_networks: false,
    };
    crate::plugins::http::plain_http_allowed(&policy, url)
}

/// Checks and stores a list; `sources` are the ones already known (file and added), whose
/// URLs it may not repeat.
pub async fn add(
    db: &SqlitePool,
    catalog: &Catalog,
    sources: &Sources,
    allow_http_loopback: bool,
    form: &AddForm,
) -> Result<Source, AddError> {
    let invalid = |message: &str| AddError::Invalid(message.to_owned());
    let name = form.name.trim();
    if name.is_empty() {
        return Err(invalid("Give the list a name."));
    }
    let url = url::Url::parse(form.url.trim())
        .map_err(|_| invalid("The list's address is not a full URL; it starts with https://."))?;
    match url.scheme() {
        "https" => {}
        "http" if plain_http_allowed(&url, allow_http_loopback) => {}
        _ => {
            return Err(invalid(
                "The list's address must start with https://; plain http is only for this \
                 machine, when allow_http_loopback is set.",
            ));
        }
    }
    if catalog.platform(&form.platform).is_none() {
        return Err(invalid(
            "Choose the platform the list's endpoints sign in with from the list.",
        ));
    }
    if sources
        .list()
        .iter()
        .any(|s| url::Url::parse(&s.url).is_ok_and(|u| u == url))
    {
        return Err(invalid(
            "The provider directory already downloads that list.",
        ));
    }
    let mut source = Source {
        id: format!("{ID_PREFIX}0"),
        name: name.to_owned(),
        url: url.to_string(),
        format: Format::FhirBundle,
        platform: form.platform.clone(),
    };
    // The same rules as directory.toml's sources; in words, should one slip past the above.
    source
        .check(catalog)
        .map_err(|problem| AddError::Invalid(format!("The list cannot be used: {problem}.")))?;
    let inserted: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "INSERT INTO directory_added_sources (name, url, platform, added_at)
         VALUES (?, ?, ?, ?) RETURNING id",
    )
    .bind(&source.name)
    .bind(&source.url)
    .bind(&source.platform)
    .bind(unix_now())
    .fetch_one(db)
    .await;
    match inserted {
        Ok(id) => {
            source.id = format!("{ID_PREFIX}{id}");
            Ok(source)
        }
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(invalid(
            "The provider directory already downloads that list.",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Removes an added list and its organisations from the directory, in one transaction.
/// Answers whether there was such a list. The caller holds the refresh lock, so no download
/// puts them back.
pub async fn remove(db: &SqlitePool, id: &str) -> sqlx::Result<bool> {
    let Some(row) = id
        .strip_prefix(ID_PREFIX)
        .and_then(|n| n.parse::<i64>().ok())
    else {
        return Ok(false);
    };
    let mut tx = db.begin().await?;
    let removed = sqlx::query("DELETE FROM directory_added_sources WHERE id = ?")
        .bind(row)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if removed == 0 {
        return Ok(false);
    }
    sqlx::query(
        "DELETE FROM directory_orgs
         WHERE endpoint_id IN (SELECT id FROM directory_endpoints WHERE source = ?)",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM directory_endpoints WHERE source = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_reaches_this_machine_or_its_network_when_allowed() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert!(plain_http_allowed(&url("http://127.0.0.1:8080/l"), true));
        // The gate sends plain http to loopback only: a home-network address would be refused
        // at every download, so the form refuses it at once.
        assert!(!plain_http_allowed(&url("http://192.168.1.2/l"), true));
        assert!(plain_http_allowed(&url("http://localhost/l"), true));
        assert!(!plain_http_allowed(&url("http://127.0.0.1/l"), false));
        assert!(!plain_http_allowed(&url("http://lists.example/l"), true));
        assert!(!plain_http_allowed(&url("http://8.8.8.8/l"), true));
    }

    #[test]
    fn platforms_offered_are_the_connectable_ones() {
        let catalog = Catalog::bundled();
        let ids: Vec<String> = platforms(&catalog).into_iter().map(|(id, _)| id).collect();
        assert!(ids.contains(&"epic".to_owned()), "{ids:?}");
        assert!(ids.contains(&"oracle-health".to_owned()), "{ids:?}");
        assert!(!ids.contains(&"smart".to_owned()), "{ids:?}");
    }
}
