//! A connection's tokens during a sync: handed to the http capability as its [`BearerAuth`], so
//! the host adds the access token to requests for the connection's API, refreshes it shortly
//! before it expires or once after a 401, and stores a rotated refresh token at once. The plugin
//! never sees a token.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use sqlx::SqlitePool;
use url::Url;

use super::Connection;
use super::smart::{SmartError, Tokens, labels};
use crate::plugins::PluginHost;
use crate::plugins::grants::HostPattern;
use crate::plugins::http::BearerAuth;
use crate::vault::Vault;

/// Refresh when the access token has less than a tenth of its lifetime left, and at most this
/// many seconds, so a request never starts with a token about to lapse (and a 30-second token
/// is not renewed the moment it arrives).
pub const REFRESH_MARGIN_SECONDS: i64 = 60;

/// How long before its expiry an access token lasting `lifetime` seconds is renewed.
pub const fn refresh_margin(lifetime: Option<i64>) -> i64 {
    match lifetime {
        Some(lifetime) if lifetime > 0 => {
            let tenth = lifetime / 10;
            if tenth < 1 {
                1
            } else if tenth > REFRESH_MARGIN_SECONDS {
                REFRESH_MARGIN_SECONDS
            } else {
                tenth
            }
        }
        _ => REFRESH_MARGIN_SECONDS,
    }
}

pub struct ConnectionTokens {
    db: SqlitePool,
    vault: Vault,
    plugins: Arc<PluginHost>,
    connection: Connection,
    origin: Option<HostPattern>,
    current: tokio::sync::Mutex<Current>,
    /// Why a refresh failed, when it did: the sync reports it instead of a bare 401.
    problem: Mutex<Option<RefreshProblem>>,
    refreshes: AtomicU32,
}

struct Current {
    access: Option<String>,
    access_expires_at: Option<i64>,
    access_lifetime: Option<i64>,
    refresh: Option<String>,
}

/// A failed refresh.
#[derive(Debug, Clone)]
pub enum RefreshProblem {
    /// The provider refused to renew a token it had rejected: the user must reconnect. The
    /// message is for the family, the detail is what the provider said.
    Refused { message: String, detail: String },
    /// The provider refused an early renewal while the current token still works: the sync
    /// goes on with it, and says when it will stop working.
    RefusedEarly {
        detail: String,
        access_expires_at: Option<i64>,
    },
    /// The token endpoint could not be reached: try again later.
    Unreachable(String),
}

/// What a source needing reconnection says.
pub const RECONNECT_MESSAGE: &str = "The provider no longer accepts this connection. Reconnect \
                                     to sign in again; the records already here are kept.";

impl ConnectionTokens {
    pub fn new(
        db: SqlitePool,
        vault: Vault,
        plugins: Arc<PluginHost>,
        connection: Connection,
    ) -> ConnectionTokens {
        let origin = Url::parse(&connection.fhir_base)
            .ok()
            .and_then(|u| HostPattern::origin_of(&u));
        let current = Current {
            access: connection.access_token.clone(),
            access_expires_at: connection.access_expires_at,
            access_lifetime: connection.access_lifetime,
            refresh: connection.refresh_token.clone(),
        };
        ConnectionTokens {
            db,
            vault,
            plugins,
            connection,
            origin,
            current: tokio::sync::Mutex::new(current),
            problem: Mutex::new(None),
            refreshes: AtomicU32::new(0),
        }
    }

    /// How many refreshes this sync made.
    pub fn refreshes(&self) -> u32 {
        self.refreshes.load(Ordering::Relaxed)
    }

    pub fn problem(&self) -> Option<RefreshProblem> {
        self.problem.lock().expect("refresh problem lock").clone()
    }

    /// Renews the access token now, whatever its expiry says (the provider refused it in a way
    /// only the plugin could see). False when it could not be renewed.
    pub async fn refresh_now(&self) -> bool {
        let mut current = self.current.lock().await;
        self.refresh_locked(&mut current, Renewal::Rejected).await
    }

    /// Refreshes with the lock held, so concurrent requests wait for one refresh rather than
    /// each spending the (possibly single-use) refresh token.
    async fn refresh_locked(&self, current: &mut Current, renewal: Renewal) -> bool {
        let Some(refresh_token) = current.refresh.clone() else {
            return false;
        };
        if matches!(
            self.problem(),
            Some(RefreshProblem::Refused { .. } | RefreshProblem::RefusedEarly { .. })
        ) {
            return false;
        }
        let source_id = self.connection.source_id;
        match self
            .connection
            .oauth
            .refresh(&self.plugins, &refresh_token)
            .await
        {
            Ok(tokens) => {
                self.refreshes.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = store_refreshed(&self.db, &self.vault, source_id, &tokens).await {
                    // The new tokens still work for this sync; the next one may need a reconnect
                    // if the provider rotated the refresh token.
                    tracing::error!(source_id, error = %e, "cannot store refreshed tokens");
                }
                current.access = Some(tokens.access_token);
                current.access_expires_at = tokens.access_expires_at;
                current.access_lifetime = tokens.access_lifetime;
                current.refresh = tokens.refresh_token;
                tracing::info!(source_id, "access token refreshed");
                true
            }
            Err(SmartError::Unreachable(reason)) => {
                tracing::warn!(source_id, %reason, "token refresh failed; will retry later");
                *self.problem.lock().expect("refresh problem lock") =
                    Some(RefreshProblem::Unreachable(reason));
                false
            }
            Err(refused) => {
                let now = crate::store::unix_now();
                let still_works = renewal == Renewal::Early
                    && current.access.is_some()
                    && current.access_expires_at.is_some_and(|at| at > now);
                if still_works {
                    // Nothing is wrong yet: the token in hand serves this sync.
                    tracing::warn!(source_id, reason = %refused, "early token refresh refused");
                    *self.problem.lock().expect("refresh problem lock") =
                        Some(RefreshProblem::RefusedEarly {
                            detail: refused.to_string(),
                            access_expires_at: current.access_expires_at,
                        });
                    return false;
                }
                tracing::warn!(source_id, reason = %refused, "token refresh refused; source needs reconnect");
                if let Err(e) =
                    super::mark_needs_reconnect(&self.db, source_id, RECONNECT_MESSAGE).await
                {
                    tracing::error!(source_id, error = %e, "cannot record needs-reconnect");
                }
                *self.problem.lock().expect("refresh problem lock") =
                    Some(RefreshProblem::Refused {
                        message: RECONNECT_MESSAGE.into(),
                        detail: refused.to_string(),
                    });
                false
            }
        }
    }
}

impl BearerAuth for ConnectionTokens {
    fn covers(&self, url: &Url) -> bool {
        self.origin.as_ref().is_some_and(|o| o.matches(url))
    }

    fn token(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move {
            let mut current = self.current.lock().await;
            let now = crate::store::unix_now();
            let margin = refresh_margin(current.access_lifetime);
            let fresh = current.access.is_some()
                && current.access_expires_at.is_none_or(|at| at - now > margin);
            if !fresh {
                self.refresh_locked(&mut current, Renewal::Early).await;
            }
            current.access.clone()
        })
    }

    fn refresh_after_rejection(&self, rejected: String) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let mut current = self.current.lock().await;
            if current.access.as_deref() != Some(rejected.as_str()) {
                // Another request already refreshed while this one was in flight.
                return current.access.is_some();
            }
            self.refresh_locked(&mut current, Renewal::Rejected).await
        })
    }
}

/// Why a token is being renewed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Renewal {
    /// Ahead of its expiry: a refusal is not yet a problem if the token still works.
    Early,
    /// The provider rejected it: without a new one, nothing more can be read.
    Rejected,
}

/// Stores refreshed tokens in one statement, so a rotated refresh token is never half-saved.
pub async fn store_refreshed(
    db: &SqlitePool,
    vault: &Vault,
    source_id: i64,
    tokens: &Tokens,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE connections SET access_token = ?, access_expires_at = ?, access_lifetime = ?,
           refresh_token = COALESCE(?, refresh_token),
           refresh_expires_at = COALESCE(?, refresh_expires_at),
           scopes_granted = COALESCE(?, scopes_granted)
         WHERE source_id = ?",
    )
    .bind(vault.seal(&labels::access(source_id), &tokens.access_token))
    .bind(tokens.access_expires_at)
    .bind(tokens.access_lifetime)
    .bind(
        tokens
            .refresh_token
            .as_deref()
            .map(|t| vault.seal(&labels::refresh(source_id), t)),
    )
    .bind(tokens.refresh_expires_at)
    .bind(&tokens.scope)
    .bind(source_id)
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::refresh_margin;

    #[test]
    fn a_token_is_renewed_a_tenth_of_its_lifetime_early_and_at_most_a_minute() {
        assert_eq!(refresh_margin(Some(30)), 3);
        assert_eq!(refresh_margin(Some(5)), 1);
        assert_eq!(refresh_margin(Some(3600)), 60);
        assert_eq!(refresh_margin(None), 60);
    }
}
