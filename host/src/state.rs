//! `AppState`: the cheap-to-clone handles every handler may need.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::SqlitePool;

use crate::auth::throttle::LoginThrottle;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::jobs::JobQueue;
use crate::plugins::PluginHost;
use crate::vault::Vault;
use crate::web::render::Templates;

/// Keys derived from the instance secret, one per purpose.
pub struct StateKeys {
    pub csrf: [u8; 32],
    pub vault: [u8; 32],
    /// Names the instance key in backups (`SecretKey::fingerprint`).
    pub fingerprint: String,
}

#[derive(Clone)]
pub struct AppState {
    pub db: SqlitePool,
    pub config: Arc<Config>,
    pub templates: Arc<Templates>,
    pub throttle: Arc<LoginThrottle>,
    pub plugins: Arc<PluginHost>,
    /// Key for CSRF tokens, derived from the instance secret.
    pub csrf_key: Arc<[u8; 32]>,
    /// Seals tokens and client secrets before they are stored.
    pub vault: Vault,
    /// Names the instance key in a backup's manifest, so a restore can check the key given.
    pub key_fingerprint: Arc<str>,
    /// The providers users can connect to.
    pub catalog: Arc<Catalog>,
    /// The provider directory's sources and its refresh lock.
    pub directory: Arc<crate::directory::Directory>,
    /// The background job queue's wake-up bell and cancel flags.
    pub jobs: Arc<JobQueue>,
    /// Messages waiting for the page a redirect leads to.
    pub notices: Arc<crate::web::notice::Notices>,
    /// Set once the first account exists; it never goes back, because the last admin cannot be
    /// deleted, so the first-run check stops costing a query.
    setup_done: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(
        db: SqlitePool,
        config: Arc<Config>,
        templates: Templates,
        keys: StateKeys,
        plugins: Arc<PluginHost>,
        catalog: Catalog,
        directory: crate::directory::Directory,
    ) -> AppState {
        AppState {
            db,
            config,
            templates: Arc::new(templates),
            throttle: Arc::default(),
            plugins,
            csrf_key: Arc::new(keys.csrf),
            vault: Vault::new(keys.vault),
            key_fingerprint: keys.fingerprint.into(),
            catalog: Arc::new(catalog),
            directory: Arc::new(directory),
            jobs: Arc::default(),
            notices: Arc::default(),
            setup_done: Arc::default(),
        }
    }

    /// True while no account exists and the first-run wizard must be shown.
    pub async fn is_first_run(&self) -> sqlx::Result<bool> {
        if self.setup_done.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let first_run = crate::store::users::none_exist(&self.db).await?;
        if !first_run {
            self.setup_done.store(true, Ordering::Relaxed);
        }
        Ok(first_run)
    }

    /// A URL path inside this Fasten, with the reverse-proxy prefix.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.config.base_path, path)
    }
}
