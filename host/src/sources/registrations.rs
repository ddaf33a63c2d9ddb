//! App registrations (Admin → Provider apps): the client id, client authentication and scopes
//! the person running Fasten registered with each EHR vendor, one per platform. Members connect
//! with them without seeing them. A connection made with one remembers the platform (column
//! `connections.registration`) and takes the registration's current values at every use, so a
//! replaced secret or a new signing key reaches every connection without a reconnect.

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use super::client_keys::KeyAlg;
use super::smart::ClientAuth;
use crate::store::unix_now;
use crate::vault::Vault;

/// The registration used for catalog platforms not listed in [`PLATFORMS`], and for a custom
/// endpoint whose form leaves the client id empty.
pub const OTHER: &str = "other";

/// The platforms an administrator can register an app for, in the order the page lists them:
/// (registration id = catalog platform id, name). Each has its instructions in
/// `templates/provider_apps/<id>.html`.
pub const PLATFORMS: [(&str, &str); 7] = [
    ("epic", "Epic"),
    ("oracle-health", "Oracle Health (Cerner)"),
    ("athenahealth", "athenahealth"),
    ("eclinicalworks", "eClinicalWorks / healow"),
    ("nextgen", "NextGen Healthcare"),
    ("withings", "Withings"),
    (OTHER, "Other SMART-on-FHIR servers"),
];

/// The registration that serves a catalog platform.
pub fn for_catalog_platform(platform: &str) -> &'static str {
    PLATFORMS
        .iter()
        .map(|(id, _)| *id)
        .find(|id| *id == platform)
        .unwrap_or(OTHER)
}

/// The name of a registration platform, `None` for an unknown id.
pub fn platform_name(platform: &str) -> Option<&'static str> {
    PLATFORMS
        .iter()
        .find(|(id, _)| *id == platform)
        .map(|(_, name)| *name)
}

/// How the registered app authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(rename_all = "snake_case")]
pub enum AppAuth {
    /// A public app: its client id only.
    None,
    /// A confidential app with a client secret (HTTP Basic, or in the form where the platform
    /// wants that).
    ClientSecret,
    /// A confidential app proving itself with an assertion signed by the instance key.
    PrivateKeyJwt,
}

impl AppAuth {
    pub fn parse(text: &str) -> Option<AppAuth> {
        match text {
            "none" => Some(AppAuth::None),
            "client_secret" => Some(AppAuth::ClientSecret),
            "private_key_jwt" => Some(AppAuth::PrivateKeyJwt),
            _ => None,
        }
    }

    /// The connection's client authentication. A secret goes the way the connection sent it
    /// before (`post` for Withings, chosen by the catalog when it was made), else HTTP Basic.
    pub fn client_auth(self, before: Option<ClientAuth>) -> ClientAuth {
        match (self, before) {
            (AppAuth::None, _) => ClientAuth::None,
            (AppAuth::PrivateKeyJwt, _) => ClientAuth::PrivateKeyJwt,
            (AppAuth::ClientSecret, Some(ClientAuth::Post)) => ClientAuth::Post,
            (AppAuth::ClientSecret, _) => ClientAuth::Basic,
        }
    }
}

/// One registration, its secret opened. `Debug` leaves the secret out.
#[derive(Clone, Serialize)]
pub struct Registration {
    pub platform: String,
    pub client_id: String,
    pub auth: AppAuth,
    #[serde(skip)]
    pub client_secret: Option<String>,
    pub signing_alg: KeyAlg,
    /// Empty: the catalog's default scopes.
    pub scopes: String,
    pub updated_at: i64,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("platform", &self.platform)
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .field("has_client_secret", &self.client_secret.is_some())
            .field("signing_alg", &self.signing_alg)
            .finish()
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    platform: String,
    client_id: String,
    client_auth: AppAuth,
    client_secret: Option<Vec<u8>>,
    signing_alg: KeyAlg,
    scopes: String,
    updated_at: i64,
}

fn secret_label(platform: &str) -> String {
    format!("provider-app/{platform}/client-secret")
}

const COLUMNS: &str =
    "platform, client_id, client_auth, client_secret, signing_alg, scopes, updated_at";

fn open(vault: &Vault, row: Row) -> anyhow::Result<Registration> {
    let client_secret = match &row.client_secret {
        Some(sealed) => Some(vault.open(&secret_label(&row.platform), sealed)?),
        None => None,
    };
    Ok(Registration {
        platform: row.platform,
        client_id: row.client_id,
        auth: row.client_auth,
        client_secret,
        signing_alg: row.signing_alg,
        scopes: row.scopes,
        updated_at: row.updated_at,
    })
}

/// The registration for `platform` (a registration id), if the administrator made one.
pub async fn get(
    db: &SqlitePool,
    vault: &Vault,
    platform: &str,
) -> anyhow::Result<Option<Registration>> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM provider_apps WHERE platform = ?"
    ))
    .bind(platform)
    .fetch_optional(db)
    .await?;
    row.map(|row| open(vault, row)).transpose()
}

/// Every registration, secrets opened.
pub async fn all(db: &SqlitePool, vault: &Vault) -> anyhow::Result<Vec<Registration>> {
    let rows: Vec<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM provider_apps"))
        .fetch_all(db)
        .await?;
    rows.into_iter().map(|row| open(vault, row)).collect()
}

/// The platforms that have a registration, for the connect form (which then does not ask for a
/// client id).
pub async fn registered(db: &SqlitePool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT platform FROM provider_apps")
        .fetch_all(db)
        .await
}

/// What the administrator's form sends.
#[derive(Debug, Default, Deserialize)]
pub struct RegistrationForm {
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_auth: String,
    /// Empty keeps the stored secret.
    #[serde(default)]
    pub client_secret: String,
    #[serde(default)]
    pub signing_alg: String,
    #[serde(default)]
    pub scopes: String,
}

/// Why a registration was not saved, in the administrator's words.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for SaveError {
    fn from(e: sqlx::Error) -> Self {
        SaveError::Other(e.into())
    }
}

/// Saves the registration for `platform`. A client secret is required for `client_secret`
/// authentication (an empty field keeps the one stored) and dropped for the others.
pub async fn save(
    db: &SqlitePool,
    vault: &Vault,
    platform: &str,
    form: &RegistrationForm,
) -> Result<(), SaveError> {
    let invalid = |m: &str| SaveError::Invalid(m.to_string());
    if platform_name(platform).is_none() {
        return Err(invalid("There is no such platform."));
    }
    let client_id = form.client_id.trim();
    if client_id.is_empty() {
        return Err(invalid(
            "Enter the client id the vendor gave your app registration.",
        ));
    }
    if client_id.chars().any(char::is_control) || client_id.len() > 500 {
        return Err(invalid("That client id is not one a vendor would give."));
    }
    let auth = AppAuth::parse(&form.client_auth)
        .ok_or_else(|| invalid("Choose how the app authenticates."))?;
    let signing_alg = match form.signing_alg.as_str() {
        "" => KeyAlg::Es384,
        alg => KeyAlg::parse(alg).ok_or_else(|| invalid("Choose ES384 or RS384."))?,
    };
    let scopes = form.scopes.split_whitespace().collect::<Vec<_>>().join(" ");
    if scopes.chars().any(char::is_control) {
        return Err(invalid("Scopes are words separated by spaces."));
    }
    let typed_secret = Some(form.client_secret.trim()).filter(|s| !s.is_empty());
    let secret = match auth {
        AppAuth::ClientSecret => match typed_secret {
            Some(secret) => Some(vault.seal(&secret_label(platform), secret)),
            None => sqlx::query_scalar::<_, Option<Vec<u8>>>(
                "SELECT client_secret FROM provider_apps WHERE platform = ?",
            )
            .bind(platform)
            .fetch_optional(db)
            .await?
            .flatten()
            .map(Some)
            .ok_or_else(|| invalid("Enter the client secret the vendor gave your app."))?,
        },
        AppAuth::None | AppAuth::PrivateKeyJwt => None,
    };
    sqlx::query(
        "INSERT INTO provider_apps (platform, client_id, client_auth, client_secret, signing_alg,
           scopes, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (platform) DO UPDATE SET client_id = excluded.client_id,
           client_auth = excluded.client_auth, client_secret = excluded.client_secret,
           signing_alg = excluded.signing_alg, scopes = excluded.scopes,
           updated_at = excluded.updated_at",
    )
    .bind(platform)
    .bind(client_id)
    .bind(auth)
    .bind(secret)
    .bind(signing_alg)
    .bind(&scopes)
    .bind(unix_now())
    .execute(db)
    .await?;
    Ok(())
}

/// Removes the registration for `platform`. Connections made with it keep their client id and
/// authentication as they were when connected (a secret is no longer available to them).
pub async fn remove(db: &SqlitePool, platform: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM provider_apps WHERE platform = ?")
        .bind(platform)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_platforms_map_to_their_registration_or_other() {
        assert_eq!(for_catalog_platform("epic"), "epic");
        assert_eq!(for_catalog_platform("withings"), "withings");
        assert_eq!(for_catalog_platform("smart"), OTHER);
        assert_eq!(for_catalog_platform("per-type"), OTHER);
    }

    #[test]
    fn a_secret_keeps_the_way_the_connection_sent_it() {
        assert_eq!(
            AppAuth::ClientSecret.client_auth(Some(ClientAuth::Post)),
            ClientAuth::Post
        );
        assert_eq!(
            AppAuth::ClientSecret.client_auth(Some(ClientAuth::PrivateKeyJwt)),
            ClientAuth::Basic
        );
        assert_eq!(AppAuth::ClientSecret.client_auth(None), ClientAuth::Basic);
        assert_eq!(
            AppAuth::PrivateKeyJwt.client_auth(Some(ClientAuth::Basic)),
            ClientAuth::PrivateKeyJwt
        );
        assert_eq!(
            AppAuth::None.client_auth(Some(ClientAuth::Basic)),
            ClientAuth::None
        );
    }
}
