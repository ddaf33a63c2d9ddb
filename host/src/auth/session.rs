//! Session ids: 256 random bits, base64url in the cookie, SHA-256 in the database.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

use crate::config::SessionConfig;
use crate::store;

pub const SESSION_COOKIE: &str = "fasten_session";

/// Starts a session for `user_id`; returns the cookie value to hand to the browser.
pub async fn start(db: &SqlitePool, user_id: i64, config: &SessionConfig) -> sqlx::Result<String> {
    let mut id = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let cookie_value = URL_SAFE_NO_PAD.encode(id);
    let expires_at = store::unix_now() + config.absolute_timeout.as_secs() as i64;
    store::sessions::insert(db, &Sha256::digest(id), user_id, expires_at).await?;
    Ok(cookie_value)
}

/// The database key for a cookie value, or `None` if the value cannot be one of ours.
pub fn id_hash(cookie_value: &str) -> Option<[u8; 32]> {
    let id = URL_SAFE_NO_PAD.decode(cookie_value).ok()?;
    (id.len() == 32).then(|| Sha256::digest(&id).into())
}
