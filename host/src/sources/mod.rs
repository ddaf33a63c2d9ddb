//! Sources: where a user's records come from. A provider connection (SMART-on-FHIR) is a source
//! with a `connections` row; uploads are sources without one. This module connects, reconnects,
//! lists and deletes sources; the OAuth protocol is in [`smart`], token use during a sync in
//! [`tokens`].

pub mod client_keys;
pub mod registrations;
pub mod smart;
pub mod tokens;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use self::registrations::{AppAuth, Registration};
use self::smart::{ClientAuth, OAuthClient, OAuthQuirks, SmartError, Tokens, labels};
use crate::catalog::{self, Catalog};
use crate::jobs::{self, Trigger};
use crate::plugins::PluginHost;
use crate::store::unix_now;
use crate::vault::Vault;

/// The plugin that syncs SMART-on-FHIR connections.
pub const FHIR_PLUGIN: &str = "fhir";

/// A connection as the sync needs it, secrets opened.
#[derive(Clone)]
pub struct Connection {
    pub source_id: i64,
    pub person_id: i64,
    /// The connector plugin that syncs it.
    pub plugin_id: String,
    pub display_name: String,
    pub fhir_base: String,
    pub oauth: OAuthClient,
    pub scopes_requested: String,
    pub patient_id: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub access_expires_at: Option<i64>,
    pub access_lifetime: Option<i64>,
    pub status: String,
    pub status_message: Option<String>,
    pub sync_settings: Vec<(String, String)>,
    pub sync_cursor: Option<String>,
    pub catalog_id: Option<String>,
    /// The app registration (a platform) it was made with, whose current values it uses.
    pub registration: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ConnectionRow {
    person_id: i64,
    plugin_id: Option<String>,
    display_name: String,
    catalog_id: Option<String>,
    fhir_base: String,
    authorize_url: String,
    token_url: String,
    client_id: String,
    client_secret: Option<Vec<u8>>,
    client_auth: ClientAuth,
    scopes_requested: String,
    patient_id: Option<String>,
    access_token: Option<Vec<u8>>,
    refresh_token: Option<Vec<u8>>,
    access_expires_at: Option<i64>,
    access_lifetime: Option<i64>,
    status: String,
    status_message: Option<String>,
    sync_settings: String,
    sync_cursor: Option<String>,
    oauth_quirks: String,
    registration: Option<String>,
}

/// Loads a connection with its secrets opened. `None` when the source has no connection.
pub async fn load_connection(
    db: &SqlitePool,
    vault: &Vault,
    source_id: i64,
) -> anyhow::Result<Option<Connection>> {
    let row: Option<ConnectionRow> = sqlx::query_as(
        "SELECT s.person_id, s.plugin_id, s.display_name, c.catalog_id, c.fhir_base,
                c.authorize_url, c.token_url, c.client_id, c.client_secret, c.client_auth,
                c.scopes_requested, c.patient_id, c.access_token, c.refresh_token,
                c.access_expires_at, c.access_lifetime, c.status, c.status_message,
                c.sync_settings, c.sync_cursor, c.oauth_quirks, c.registration
         FROM connections c JOIN sources s ON s.id = c.source_id WHERE c.source_id = ?",
    )
    .bind(source_id)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let open = |label: String, sealed: Option<Vec<u8>>| -> anyhow::Result<Option<String>> {
        Ok(match sealed {
            Some(bytes) => Some(vault.open(&label, &bytes)?),
            None => None,
        })
    };
    let mut oauth = OAuthClient {
        authorize_url: row.authorize_url,
        token_url: row.token_url,
        client_id: row.client_id,
        client_secret: open(labels::client_secret(source_id), row.client_secret)?,
        client_auth: row.client_auth,
        redirect_uri: None,
        quirks: serde_json::from_str(&row.oauth_quirks)
            .context("the connection's OAuth settings are unreadable")?,
        signing_alg: None,
        assertion_key: None,
    };
    // Made with the administrator's app registration: its current values, not the ones of the
    // day it connected. A removed registration leaves the values the connection was made with.
    if let Some(platform) = &row.registration
        && let Some(registration) = registrations::get(db, vault, platform).await?
    {
        use_registration(&mut oauth, &registration, Some(row.client_auth));
    }
    prepare_signing(db, vault, &mut oauth).await?;
    Ok(Some(Connection {
        source_id,
        person_id: row.person_id,
        plugin_id: row.plugin_id.unwrap_or_else(|| FHIR_PLUGIN.to_string()),
        display_name: row.display_name,
        fhir_base: row.fhir_base,
        oauth,
        scopes_requested: row.scopes_requested,
        patient_id: row.patient_id,
        access_token: open(labels::access(source_id), row.access_token)?,
        refresh_token: open(labels::refresh(source_id), row.refresh_token)?,
        access_expires_at: row.access_expires_at,
        access_lifetime: row.access_lifetime,
        status: row.status,
        status_message: row.status_message,
        sync_settings: serde_json::from_str(&row.sync_settings).unwrap_or_default(),
        sync_cursor: row.sync_cursor,
        catalog_id: row.catalog_id,
        registration: row.registration,
    }))
}

/// Puts a registration's client id, authentication and secret into `oauth`. `before` is how the
/// connection authenticated until now, if it exists.
fn use_registration(
    oauth: &mut OAuthClient,
    registration: &Registration,
    before: Option<ClientAuth>,
) {
    oauth.client_id = registration.client_id.clone();
    oauth.client_auth = registration.auth.client_auth(before);
    oauth.client_secret = match registration.auth {
        AppAuth::ClientSecret => registration.client_secret.clone(),
        AppAuth::None | AppAuth::PrivateKeyJwt => None,
    };
    oauth.signing_alg = Some(registration.signing_alg);
}

/// Looks up the instance key a `private_key_jwt` client signs with now (making the first key
/// pair if there is none yet).
async fn prepare_signing(
    db: &SqlitePool,
    vault: &Vault,
    oauth: &mut OAuthClient,
) -> anyhow::Result<()> {
    if oauth.client_auth == ClientAuth::PrivateKeyJwt {
        let alg = oauth.signing_alg.unwrap_or(client_keys::KeyAlg::Es384);
        oauth.assertion_key = Some(client_keys::signer(db, vault, alg).await?);
    }
    Ok(())
}

pub async fn mark_needs_reconnect(
    db: &SqlitePool,
    source_id: i64,
    message: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE connections SET status = 'needs_reconnect', status_message = ? WHERE source_id = ?",
    )
    .bind(message)
    .bind(source_id)
    .execute(db)
    .await?;
    Ok(())
}

/// What the user chose on the Sources page: a catalog entry, or a custom endpoint.
#[derive(Debug, Default, Deserialize)]
pub struct ConnectForm {
    #[serde(default)]
    pub catalog_id: String,
    #[serde(default)]
    pub fhir_base: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: String,
    #[serde(default)]
    pub display_name: String,
    /// A provider directory result: its platform's "your organisation" entry and its FHIR base
    /// stand in for `catalog_id` and `fhir_base`.
    #[serde(default)]
    pub directory_id: String,
}

/// A connection being made, kept in `oauth_pending` until the provider sends the user back.
#[derive(Debug, Serialize, Deserialize)]
struct Draft {
    display_name: String,
    /// The connector that will sync it.
    #[serde(default = "fhir_plugin")]
    plugin_id: String,
    catalog_id: Option<String>,
    fhir_base: String,
    oauth: OAuthClient,
    /// The client secret, sealed under the pending row's label, hex-encoded.
    sealed_secret: Option<String>,
    scopes: String,
    sync_settings: Vec<(String, String)>,
    /// The administrator's app registration (a platform) the connection is made with.
    #[serde(default)]
    registration: Option<String>,
}

fn fhir_plugin() -> String {
    FHIR_PLUGIN.to_string()
}

/// Everything connecting needs from the running Fasten.
pub struct Ctx<'a> {
    pub db: &'a SqlitePool,
    pub vault: &'a Vault,
    pub plugins: &'a PluginHost,
    pub catalog: &'a Catalog,
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// A provider directory result as the connect form names it: the catalog entry of its platform
/// whose FHIR base the user would otherwise type, and the result itself.
async fn from_directory<'c>(
    ctx: &Ctx<'c>,
    id: &str,
) -> Result<(&'c catalog::Entry, crate::directory::Choice), SmartError> {
    let gone = || {
        SmartError::Input(
            "That provider is no longer in the provider directory (it was downloaded again). \
             Search for it again."
                .into(),
        )
    };
    let id: i64 = id.parse().map_err(|_| gone())?;
    let choice = crate::directory::choice(ctx.db, id)
        .await
        .map_err(|e| {
            SmartError::Input(format!("Fasten could not read the provider directory: {e}"))
        })?
        .ok_or_else(gone)?;
    let entry = ctx
        .catalog
        .organisation_entry(&choice.platform)
        .ok_or_else(|| {
            SmartError::Input(format!(
                "The provider catalog no longer has a {:?} entry to connect this provider with.",
                choice.platform
            ))
        })?;
    Ok((entry, choice))
}

/// Starts connecting a new source: resolves the endpoints (catalog or discovery), records the
/// pending sign-in and answers the provider URL to send the browser to.
pub async fn begin_connect(
    ctx: &Ctx<'_>,
    user_id: i64,
    person_id: i64,
    session_hash: &[u8],
    form: &ConnectForm,
    redirect_uri: &str,
) -> Result<String, SmartError> {
    let chosen = match non_empty(&form.directory_id) {
        Some(id) => Some(from_directory(ctx, &id).await?),
        None => None,
    };
    let entry = match (&chosen, non_empty(&form.catalog_id)) {
        (Some((entry, _)), _) => Some(*entry),
        (None, Some(id)) => Some(ctx.catalog.entry(&id).ok_or_else(|| {
            SmartError::Input(format!("There is no provider {id:?} in the catalog."))
        })?),
        (None, None) => None,
    };
    let base_text = match (&chosen, entry) {
        (Some((_, choice)), _) => choice.fhir_base.clone(),
        (None, Some(e)) if !e.needs_fhir_base() => e.fhir_base.clone(),
        _ => non_empty(&form.fhir_base)
            .ok_or_else(|| SmartError::Input("Enter the FHIR base URL of the provider.".into()))?,
    };
    let base = smart::normalize_base(&base_text)?;
    let platform = entry.map(|e| ctx.catalog.platform_of(e));
    let registration = registration_for(ctx, entry, form).await?;
    let client_id = match (entry, &registration) {
        (_, Some(registration)) => registration.client_id.clone(),
        (Some(e), None) if !e.needs_client_id() => e.client_id.clone(),
        _ => non_empty(&form.client_id).ok_or_else(|| {
            SmartError::Input(
                "Enter the client id of your app registration with this provider.".into(),
            )
        })?,
    };
    let client_secret = match &registration {
        Some(registration) => registration.client_secret.clone(),
        None => non_empty(&form.client_secret),
    };
    let confidential = registration
        .as_ref()
        .map_or(client_secret.is_some(), |r| r.auth != AppAuth::None);
    if entry.is_some_and(|e| e.confidential) && !confidential {
        return Err(SmartError::Input(match &registration {
            Some(_) => "This provider needs a confidential app (with a client secret), and the \
                        app registration for it has none. Ask your administrator to check it \
                        under Admin → Provider apps."
                .into(),
            None => "This provider needs the client secret of your app registration.".into(),
        }));
    }
    let plain_oauth2 = platform.is_some_and(|p| p.sign_in == catalog::SignIn::OAuth2);
    let (authorize_url, token_url, smart_v2) = match entry {
        Some(catalog::Entry {
            authorize_url: Some(a),
            token_url: Some(t),
            ..
        }) => (a.clone(), t.clone(), false),
        _ => {
            let found = smart::discover(ctx.plugins, &base).await?;
            (found.authorize_url, found.token_url, found.smart_v2)
        }
    };
    let scopes = match (entry, &registration) {
        (_, Some(r)) if !r.scopes.is_empty() => r.scopes.clone(),
        (Some(e), _) => e.scopes_to_request(smart_v2).to_string(),
        (None, _) if smart_v2 => catalog::DEFAULT_SCOPES_V2.to_string(),
        (None, _) => catalog::DEFAULT_SCOPES_V1.to_string(),
    };
    let display_name = non_empty(&form.display_name)
        .or_else(|| chosen.as_ref().map(|(_, c)| c.name.clone()))
        .or_else(|| entry.map(|e| e.name.clone()))
        .unwrap_or_else(|| base.host_str().unwrap_or("FHIR server").to_string());
    let quirks = match platform {
        Some(p) if plain_oauth2 => OAuthQuirks {
            not_fhir: true,
            token_params: p
                .token_params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            token_envelope: p.token_envelope.clone(),
        },
        _ => OAuthQuirks::default(),
    };
    let mut oauth = OAuthClient {
        authorize_url,
        token_url,
        client_id,
        client_auth: match (&client_secret, platform.and_then(|p| p.client_auth)) {
            (None, _) => ClientAuth::None,
            (Some(_), Some(chosen)) => chosen,
            (Some(_), None) => ClientAuth::Basic,
        },
        client_secret,
        redirect_uri: Some(redirect_uri.to_string()),
        quirks,
        signing_alg: None,
        assertion_key: None,
    };
    if let Some(registration) = &registration {
        let how = platform.and_then(|p| p.client_auth);
        use_registration(&mut oauth, registration, how);
    }
    let draft = Draft {
        display_name,
        plugin_id: platform.map_or_else(fhir_plugin, |p| p.plugin.clone()),
        catalog_id: entry.map(|e| e.id.clone()),
        fhir_base: base.as_str().trim_end_matches('/').to_string(),
        oauth,
        sealed_secret: None,
        scopes,
        sync_settings: match platform {
            Some(p) if !plain_oauth2 => p.sync_settings(),
            _ => Vec::new(),
        },
        registration: registration.map(|r| r.platform),
    };
    start(ctx, user_id, person_id, session_hash, None, draft).await
}

/// The administrator's app registration a new connection uses: the one for the entry's platform
/// when the entry leaves the client id to the user, or the "other" one for a custom endpoint
/// whose client id was left empty. A client id typed by the member always wins.
async fn registration_for(
    ctx: &Ctx<'_>,
    entry: Option<&catalog::Entry>,
    form: &ConnectForm,
) -> Result<Option<Registration>, SmartError> {
    let platform = match entry {
        _ if non_empty(&form.client_id).is_some() => return Ok(None),
        Some(e) if !e.needs_client_id() => return Ok(None),
        Some(e) => registrations::for_catalog_platform(&e.platform),
        None => registrations::OTHER,
    };
    registrations::get(ctx.db, ctx.vault, platform)
        .await
        .map_err(|e| {
            SmartError::Input(format!("Fasten could not read the app registration: {e:#}"))
        })
}

/// Starts the sign-in again for an existing source (its refresh token no longer works).
pub async fn begin_reconnect(
    ctx: &Ctx<'_>,
    user_id: i64,
    person_id: i64,
    session_hash: &[u8],
    source_id: i64,
    redirect_uri: &str,
) -> Result<Option<String>, SmartError> {
    let connection = load_connection(ctx.db, ctx.vault, source_id)
        .await
        .map_err(|e| SmartError::Input(e.to_string()))?;
    let Some(connection) = connection.filter(|c| c.person_id == person_id) else {
        return Ok(None);
    };
    let mut oauth = connection.oauth.clone();
    oauth.redirect_uri = Some(redirect_uri.to_string());
    let draft = Draft {
        display_name: connection.display_name,
        plugin_id: connection.plugin_id,
        catalog_id: connection.catalog_id,
        fhir_base: connection.fhir_base,
        oauth,
        sealed_secret: None,
        scopes: connection.scopes_requested,
        sync_settings: connection.sync_settings,
        registration: connection.registration,
    };
    start(
        ctx,
        user_id,
        person_id,
        session_hash,
        Some(source_id),
        draft,
    )
    .await
    .map(Some)
}

async fn start(
    ctx: &Ctx<'_>,
    user_id: i64,
    person_id: i64,
    session_hash: &[u8],
    source_id: Option<i64>,
    mut draft: Draft,
) -> Result<String, SmartError> {
    let authorization = draft.oauth.authorize(&draft.fhir_base, &draft.scopes)?;
    let state_hash = smart::hash(&authorization.state);
    let label = labels::pending(&hex::encode(&state_hash));
    draft.sealed_secret = draft
        .oauth
        .client_secret
        .as_deref()
        .map(|s| hex::encode(ctx.vault.seal(&label, s)));
    let now = unix_now();
    let stored = async {
        sqlx::query("DELETE FROM oauth_pending WHERE created_at < ?")
            .bind(now - smart::PENDING_SECONDS)
            .execute(ctx.db)
            .await?;
        sqlx::query(
            "INSERT INTO oauth_pending (state_hash, session_hash, user_id, person_id, source_id,
               connection, pkce_verifier, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&state_hash)
        .bind(session_hash)
        .bind(user_id)
        .bind(person_id)
        .bind(source_id)
        .bind(serde_json::to_string(&draft).expect("a draft serialises"))
        .bind(ctx.vault.seal(&label, &authorization.pkce_verifier))
        .bind(now)
        .execute(ctx.db)
        .await
    };
    stored
        .await
        .map_err(|e| SmartError::Input(format!("Fasten could not record the sign-in: {e}")))?;
    Ok(authorization.url)
}

/// What the provider sent back to `/sources/callback`.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackParams {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

#[derive(sqlx::FromRow)]
struct PendingRow {
    session_hash: Vec<u8>,
    user_id: i64,
    person_id: i64,
    source_id: Option<i64>,
    connection: String,
    pkce_verifier: Vec<u8>,
    created_at: i64,
}

/// The person a sign-in in progress would connect, without using the sign-in up.
pub async fn pending_person(db: &SqlitePool, state: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT person_id FROM oauth_pending WHERE state_hash = ?")
        .bind(smart::hash(state))
        .fetch_optional(db)
        .await
}

/// A finished connection: its source and the first sync job.
pub struct Connected {
    /// Whose records the connection brings.
    pub person_id: i64,
    pub source_id: i64,
    pub display_name: String,
    pub job_id: i64,
    /// The person already had a source for this server and patient: it was reconnected instead
    /// of a second one being made (which would store every record twice).
    pub renewed: bool,
}

/// Completes a sign-in: checks the state against this browser session (single use, ten
/// minutes), exchanges the code, stores the connection with sealed tokens and queues the first
/// sync. Every refusal is a sentence for the page.
pub async fn finish_connect(
    ctx: &Ctx<'_>,
    user_id: i64,
    session_hash: &[u8],
    params: &CallbackParams,
) -> Result<Connected, SmartError> {
    let state = params
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            SmartError::Input(
                "The provider's answer did not say which sign-in it belongs to (no state). Start \
             again from Sources."
                    .into(),
            )
        })?;
    let state_hash = smart::hash(state);
    // Deleting first makes the state single-use even if two callbacks race.
    let pending: Option<PendingRow> = sqlx::query_as(
        "DELETE FROM oauth_pending WHERE state_hash = ?
         RETURNING session_hash, user_id, person_id, source_id, connection, pkce_verifier, created_at",
    )
    .bind(&state_hash)
    .fetch_optional(ctx.db)
    .await
    .map_err(|e| SmartError::Input(format!("Fasten could not read the sign-in: {e}")))?;
    let unknown = || {
        SmartError::Input(
            "This sign-in is unknown, was already used, or has expired. Start again from Sources."
                .into(),
        )
    };
    let Some(PendingRow {
        session_hash: pending_session,
        user_id: pending_user,
        person_id,
        source_id,
        connection: draft,
        pkce_verifier: sealed_verifier,
        created_at,
    }) = pending
    else {
        return Err(unknown());
    };
    if pending_session != session_hash || pending_user != user_id {
        return Err(SmartError::Input(
            "This sign-in was started in another browser session. Start again from Sources.".into(),
        ));
    }
    // Sharing may have changed while the user was away at the provider.
    let still_manages: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM person_access WHERE person_id = ? AND user_id = ?
         AND level = 'manage')",
    )
    .bind(person_id)
    .bind(user_id)
    .fetch_one(ctx.db)
    .await
    .map_err(|e| SmartError::Input(format!("Fasten could not read the sign-in: {e}")))?;
    if !still_manages {
        return Err(unknown());
    }
    if unix_now() - created_at > smart::PENDING_SECONDS {
        return Err(SmartError::Input(
            "The sign-in took longer than ten minutes and has expired. Start again from Sources."
                .into(),
        ));
    }
    if let Some(error) = &params.error {
        return Err(SmartError::refused(
            error,
            params.error_description.as_deref(),
        ));
    }
    let code = params
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            SmartError::Input("The provider sent no authorization code. Start again.".into())
        })?;
    let mut draft: Draft = serde_json::from_str(&draft)
        .map_err(|e| SmartError::Input(format!("the pending sign-in is unreadable: {e}")))?;
    let label = labels::pending(&hex::encode(&state_hash));
    let open = |sealed: &[u8]| {
        ctx.vault
            .open(&label, sealed)
            .map_err(|e| SmartError::Input(e.to_string()))
    };
    let verifier = open(&sealed_verifier)?;
    if let Some(sealed) = &draft.sealed_secret {
        let bytes = hex::decode(sealed).map_err(|e| SmartError::Input(e.to_string()))?;
        draft.oauth.client_secret = Some(open(&bytes)?);
    }
    prepare_signing(ctx.db, ctx.vault, &mut draft.oauth)
        .await
        .map_err(|e| SmartError::Input(format!("Fasten could not sign in: {e:#}")))?;
    let tokens = draft
        .oauth
        .exchange_code(ctx.plugins, code, &verifier)
        .await?;
    store_connection(ctx, person_id, source_id, &draft, &tokens)
        .await
        .map_err(|e| SmartError::Input(format!("Fasten could not store the connection: {e}")))
}

async fn store_connection(
    ctx: &Ctx<'_>,
    person_id: i64,
    existing: Option<i64>,
    draft: &Draft,
    tokens: &Tokens,
) -> sqlx::Result<Connected> {
    let now = unix_now();
    // IMMEDIATE: it reads (is this server and patient connected already?) before it writes.
    let mut tx = ctx.db.begin_with("BEGIN IMMEDIATE").await?;
    // Connecting again to a server and patient this person already has renews that source.
    let same = match (existing, &tokens.patient) {
        (None, Some(patient)) => {
            sqlx::query_scalar(
                "SELECT s.id FROM sources s JOIN connections c ON c.source_id = s.id
                 WHERE s.person_id = ? AND c.patient_id = ?
                   AND RTRIM(c.fhir_base, '/') = RTRIM(?, '/')
                 ORDER BY s.id LIMIT 1",
            )
            .bind(person_id)
            .bind(patient)
            .bind(&draft.fhir_base)
            .fetch_optional(&mut *tx)
            .await?
        }
        _ => None,
    };
    let renewed = same.is_some();
    let existing = existing.or(same);
    let source_id = match existing {
        Some(id) => id,
        None => sqlx::query_scalar(
            "INSERT INTO sources (person_id, kind, display_name, plugin_id, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(person_id)
        .bind(if draft.oauth.quirks.not_fhir {
            "oauth2"
        } else {
            "smart"
        })
        .bind(&draft.display_name)
        .bind(&draft.plugin_id)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?,
    };
    let vault = ctx.vault;
    // A registration's secret stays in the registration only (see load_connection).
    let secret = match &draft.registration {
        Some(_) => None,
        None => draft
            .oauth
            .client_secret
            .as_deref()
            .map(|s| vault.seal(&labels::client_secret(source_id), s)),
    };
    let refresh = tokens
        .refresh_token
        .as_deref()
        .map(|t| vault.seal(&labels::refresh(source_id), t));
    // A reconnect replaces the credentials and keeps the source, its records and sync cursor.
    sqlx::query(
        "INSERT INTO connections (source_id, catalog_id, fhir_base, authorize_url, token_url,
           client_id, client_secret, client_auth, scopes_requested, scopes_granted, patient_id,
           access_token, refresh_token, access_expires_at, refresh_expires_at, status,
           status_message, sync_settings, next_sync_at, connected_at, oauth_quirks,
           access_lifetime, registration)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'connected', NULL, ?, NULL, ?, ?, ?, ?)
         ON CONFLICT (source_id) DO UPDATE SET
           authorize_url = excluded.authorize_url, token_url = excluded.token_url,
           client_id = excluded.client_id, client_auth = excluded.client_auth,
           registration = excluded.registration,
           client_secret = excluded.client_secret, scopes_granted = excluded.scopes_granted,
           patient_id = COALESCE(excluded.patient_id, connections.patient_id),
           access_token = excluded.access_token, refresh_token = excluded.refresh_token,
           access_expires_at = excluded.access_expires_at,
           access_lifetime = excluded.access_lifetime,
           refresh_expires_at = excluded.refresh_expires_at,
           status = 'connected', status_message = NULL, connected_at = excluded.connected_at",
    )
    .bind(source_id)
    .bind(&draft.catalog_id)
    .bind(&draft.fhir_base)
    .bind(&draft.oauth.authorize_url)
    .bind(&draft.oauth.token_url)
    .bind(&draft.oauth.client_id)
    .bind(secret)
    .bind(draft.oauth.client_auth)
    .bind(&draft.scopes)
    .bind(&tokens.scope)
    .bind(&tokens.patient)
    .bind(vault.seal(&labels::access(source_id), &tokens.access_token))
    .bind(refresh)
    .bind(tokens.access_expires_at)
    .bind(tokens.refresh_expires_at)
    .bind(serde_json::to_string(&draft.sync_settings).expect("pairs serialise"))
    .bind(now)
    .bind(serde_json::to_string(&draft.oauth.quirks).expect("quirks serialise"))
    .bind(tokens.access_lifetime)
    .bind(&draft.registration)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE sources SET updated_at = ? WHERE id = ?")
        .bind(now)
        .bind(source_id)
        .execute(&mut *tx)
        .await?;
    let job_id = jobs::enqueue_in(&mut tx, person_id, source_id, Trigger::Connect).await?;
    tx.commit().await?;
    tracing::info!(
        person_id,
        source_id,
        reconnect = existing.is_some(),
        renewed,
        "source connected"
    );
    Ok(Connected {
        person_id,
        source_id,
        display_name: draft.display_name.clone(),
        job_id,
        renewed,
    })
}

/// One row of the Sources page.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct SourceView {
    pub id: i64,
    pub kind: String,
    pub display_name: String,
    pub created_at: i64,
    pub records: i64,
    pub fhir_base: Option<String>,
    pub status: Option<String>,
    pub status_message: Option<String>,
    pub access_expires_at: Option<i64>,
    pub refresh_expires_at: Option<i64>,
    pub has_refresh_token: Option<bool>,
    pub scopes_granted: Option<String>,
    pub last_sync_at: Option<i64>,
    pub next_sync_at: Option<i64>,
    pub job_id: Option<i64>,
    pub job_status: Option<String>,
    /// A sentence about the sign-in's expiry, when it matters.
    #[sqlx(skip)]
    pub expiry: Option<String>,
}

/// The user's sources with their connection state and latest job.
pub async fn list(db: &SqlitePool, person_id: i64) -> sqlx::Result<Vec<SourceView>> {
    sqlx::query_as(
        "SELECT s.id, s.kind, s.display_name, s.created_at,
                (SELECT COUNT(*) FROM resources r WHERE r.source_id = s.id) AS records,
                c.fhir_base, c.status, c.status_message, c.access_expires_at,
                c.refresh_expires_at, c.refresh_token IS NOT NULL AS has_refresh_token,
                c.scopes_granted, c.last_sync_at, c.next_sync_at,
                j.id AS job_id, j.status AS job_status
         FROM sources s
         LEFT JOIN connections c ON c.source_id = s.id
         LEFT JOIN jobs j ON j.id = (SELECT MAX(id) FROM jobs WHERE source_id = s.id)
         WHERE s.person_id = ? ORDER BY s.display_name, s.id",
    )
    .bind(person_id)
    .fetch_all(db)
    .await
    .map(|views: Vec<SourceView>| {
        views
            .into_iter()
            .map(|mut view| {
                view.expiry = expiry_note(&view);
                view
            })
            .collect()
    })
}

/// Deletes a source of the user with all its records, after stopping its jobs. False when the
/// user has no such source.
pub async fn delete(
    db: &SqlitePool,
    queue: &jobs::JobQueue,
    person_id: i64,
    source_id: i64,
) -> sqlx::Result<bool> {
    let owned: Option<i64> =
        sqlx::query_scalar("SELECT id FROM sources WHERE id = ? AND person_id = ?")
            .bind(source_id)
            .bind(person_id)
            .fetch_optional(db)
            .await?;
    if owned.is_none() {
        return Ok(false);
    }
    queue.cancel_for_source(db, source_id).await?;
    // Records, their index rows and the connection go with the source (ON DELETE CASCADE).
    sqlx::query("DELETE FROM sources WHERE id = ? AND person_id = ?")
        .bind(source_id)
        .bind(person_id)
        .execute(db)
        .await?;
    tracing::info!(person_id, source_id, "source deleted");
    Ok(true)
}

/// Whether a refresh token is close to its end, for the warning on the Sources page.
pub fn expiry_note(view: &SourceView) -> Option<String> {
    let now = unix_now();
    if view.status.as_deref() != Some("connected") {
        return None;
    }
    match (view.refresh_expires_at, view.has_refresh_token) {
        (Some(at), _) if at <= now => Some("The sign-in has expired — reconnect.".into()),
        (Some(at), _) if at - now < 7 * 86400 => Some(format!(
            "Refresh token expires in {} — reconnect soon.",
            smart::in_words(at - now)
        )),
        (Some(at), _) => Some(format!(
            "Refresh token expires in {}.",
            smart::in_words(at - now)
        )),
        (None, Some(false)) => view.access_expires_at.map(|at| {
            if at <= now {
                "Access has expired and this provider gave no refresh token — reconnect.".into()
            } else {
                format!(
                    "Access expires in {} and this provider gave no refresh token.",
                    smart::in_words(at - now)
                )
            }
        }),
        _ => None,
    }
}
