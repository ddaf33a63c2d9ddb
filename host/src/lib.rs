//! Fasten On-Prem: a self-hosted personal and family medical record aggregator.
//!
//! The binary (`main.rs`) parses the command line and calls into this library; tests use the same
//! entry points ([`Server::bind`], [`web::build_app`]) to run the real server on a free port.

pub mod audit;
pub mod auth;
pub mod backup;
pub mod catalog;
pub mod config;
pub mod directory;
pub mod error;
pub mod fhir;
pub mod files;
pub mod import;
pub mod inbox;
pub mod jobs;
pub mod plugins;
pub mod record;
pub mod routing;
pub mod scaffold;
pub mod search;
pub mod secrets;
pub mod sources;
pub mod spool;
pub mod state;
pub mod store;
pub mod sync;
pub mod vault;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::secrets::SecretKey;
use crate::state::AppState;
use crate::web::render::Templates;

/// A server bound to its port with its database open, ready to [`run`](Server::run).
pub struct Server {
    listener: TcpListener,
    state: AppState,
}

impl Server {
    /// Prepares the data folder, opens and migrates the database, loads the secret key and binds
    /// the listening socket. Each failure is one readable line, e.g. a port already in use.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        // Bind first: a port already in use should fail before anything is written to disk.
        let addr = config.listen;
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                anyhow!(
                    "cannot listen on {addr}: the port is already in use (is Fasten already \
                     running? choose another address with --listen or FASTEN_LISTEN)"
                )
            } else {
                anyhow!("cannot listen on {addr}: {e}")
            }
        })?;
        let state = open_state(config).await?;
        // Records whose derived columns an upgrade changed get them derived again, once.
        let rederived = fhir::ingest::rederive_pending(&state.db)
            .await
            .context("cannot update stored records for this version")?;
        if rederived > 0 {
            tracing::info!(rederived, "records updated for this version");
        }
        // Databases from before full-text search (or after an interrupted upgrade) get indexed
        // once. Only the server searches, so the command-line tools skip this scan.
        let indexed = fhir::ingest::index_missing(&state.db)
            .await
            .context("cannot build the search index")?;
        if indexed > 0 {
            tracing::info!(indexed, "records added to the search index");
        }
        // Databases from before the observation index get it built once.
        let keyed = fhir::ingest::backfill_observation_keys(&state.db)
            .await
            .context("cannot build the observation index")?;
        if keyed > 0 {
            tracing::info!(keyed, "observations indexed");
        }
        // Only the server runs jobs (not `fasten import` beside it), so only it may decide that
        // a job marked running belongs to a process that is gone.
        let stopped = directory::refresh::recover(&state.db)
            .await
            .context("cannot recover the provider directory's downloads")?;
        if stopped > 0 {
            tracing::info!(
                stopped,
                "directory downloads interrupted by the last shutdown"
            );
        }
        let requeued = jobs::recover(&state.db)
            .await
            .context("cannot recover the job queue")?;
        if requeued > 0 {
            tracing::info!(
                requeued,
                "jobs interrupted by the last shutdown were queued again"
            );
        }
        Ok(Server { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let purge = tokio::spawn(purge_sessions_periodically(self.state.clone()));
        let mut background = jobs::runner::spawn(self.state.clone());
        background.push(tokio::spawn(backup::schedule(self.state.clone())));
        background.push(tokio::spawn(directory::refresh::schedule(
            self.state.clone(),
        )));
        if self.state.config.inbox.enabled {
            match inbox::spawn(self.state.clone()) {
                Ok(task) => background.push(task),
                // Fasten is still useful without it: say so and go on.
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot watch the inbox folders")
                }
            }
        }
        let plugins = self.state.plugins.clone();
        let shutdown = async move {
            shutdown.await;
            // Runs end now, so the requests and jobs waiting on them finish and the process
            // exits instead of waiting for a plugin.
            plugins.shut_down();
        };
        let app = web::build_app(self.state);
        let result = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("the web server stopped");
        purge.abort();
        for task in background {
            task.abort();
        }
        result
    }
}

/// Everything a running Fasten holds, built from its configuration.
pub async fn open_state(config: Config) -> anyhow::Result<AppState> {
    prepare_data_dir(&config.data_dir)?;
    remove_leftovers(&config);
    let db = store::open(&config.database_path()).await?;
    let key = SecretKey::load_or_create(
        &config.data_dir,
        std::env::var("FASTEN_SECRET_KEY").ok().as_deref(),
    )?;
    let plugins = open_plugins(&config, &db).await?;
    let catalog = catalog::Catalog::from_registry(&config.plugins.registry_dir)
        .context("cannot load the provider catalog")?;
    let directory_sources = directory::Sources::load(
        (!config.directory.file.as_os_str().is_empty()).then_some(config.directory.file.as_path()),
        &config.plugins.registry_dir,
        &catalog,
    )
    .context("cannot load the provider directory's sources")?;
    let templates = if config.dev {
        Templates::reloading(web::render::source_templates_dir())
    } else {
        Templates::embedded()
    };
    Ok(AppState::new(
        db,
        Arc::new(config),
        templates,
        state::StateKeys {
            csrf: key.derive("csrf"),
            vault: key.derive("vault"),
            fingerprint: key.fingerprint(),
        },
        plugins,
        catalog,
        directory::Directory::new(directory_sources),
    ))
}

/// The plugin host with every plugin loaded (or marked failed with its reason).
pub async fn open_plugins(
    config: &Config,
    db: &sqlx::SqlitePool,
) -> anyhow::Result<Arc<plugins::PluginHost>> {
    let host = Arc::new(plugins::PluginHost::new(plugin_settings(
        config,
        config.data_dir.join("plugin-cache"),
    ))?);
    host.load_all(db).await;
    if config.dev {
        plugins::reload::spawn(host.clone(), db.clone())?;
    }
    Ok(host)
}

/// A plugin host with no plugin loaded, for checking a component before it is installed
/// (`fasten plugin check`): the server's engine, imports and limits, compiling into
/// `cache_dir` rather than the data folder's cache.
pub fn plugin_checker(
    config: &Config,
    cache_dir: std::path::PathBuf,
) -> anyhow::Result<Arc<plugins::PluginHost>> {
    Ok(Arc::new(plugins::PluginHost::new(plugin_settings(
        config, cache_dir,
    ))?))
}

fn plugin_settings(config: &Config, cache_dir: std::path::PathBuf) -> plugins::HostSettings {
    plugins::HostSettings {
        registry_dir: config.plugins.registry_dir.clone(),
        cache_dir,
        network: plugins::http::NetworkPolicy {
            allow_http_loopback: config.plugins.allow_http_loopback,
            allow_private_networks: config.plugins.allow_private_networks,
        },
        dev: config.dev,
        source_registry_dir: plugins::source_registry_dir(),
        quotas: plugins::RunQuotas {
            resources: config.plugins.max_run_resources,
            bytes: config.plugins.max_run_bytes,
            log_lines: config.plugins.max_run_log_lines,
            person_bytes: (config.plugins.max_person_bytes > 0)
                .then_some(config.plugins.max_person_bytes),
        },
        spool_dir: config.data_dir.join("spool"),
        concurrent_runs: config.plugins.concurrent_runs,
    }
}

/// Removes what a server that stopped abruptly (killed, or the power went) left half done: files
/// uploaded for a preview or an import that never finished, and a backup being written. Each is
/// redone from the start by whoever asked for it; none holds anything that is not elsewhere.
pub fn remove_leftovers(config: &Config) {
    let uploads = config.data_dir.join("uploads");
    let backups = config.backup_dir();
    let leftovers = std::fs::read_dir(&uploads)
        .into_iter()
        .flatten()
        .chain(std::fs::read_dir(&backups).into_iter().flatten())
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            entry.path().starts_with(&uploads) || name.starts_with(".fasten-backup-")
        });
    for entry in leftovers {
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed what an earlier run left unfinished")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove what an earlier run left unfinished")
            }
        }
    }
}

/// Creates the data folder if needed and proves it is writable, so a bad path fails at start-up
/// with its name rather than later inside SQLite.
///
/// It also makes the folder private: this process creates files for its own account only
/// (umask 077), and what an older install or a hand-made copy left readable by others is
/// tightened, each change logged. A path Fasten cannot tighten (another account owns it) is a
/// warning naming it, not a failure.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    files::private_by_default();
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    for change in files::tighten(dir) {
        let path = change.path.display().to_string();
        match change.failed {
            None => tracing::info!(
                path,
                from = format!("{:o}", change.from),
                to = format!("{:o}", change.to),
                "made private to this account"
            ),
            Some(error) => tracing::warn!(
                path,
                mode = format!("{:o}", change.from),
                %error,
                "other accounts on this computer can read this; Fasten cannot change that"
            ),
        }
    }
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| format!("data directory {} is not writable", dir.display()))?;
    Ok(())
}

async fn purge_sessions_periodically(state: AppState) {
    let idle = state.config.session.idle_timeout.as_secs() as i64;
    let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every_hour.tick().await;
        match store::sessions::purge_expired(&state.db, idle).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "expired sessions purged"),
            Err(e) => tracing::warn!(error = %e, "cannot purge expired sessions"),
        }
        match audit::purge(&state.db, state.config.audit.keep).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "old audit events removed"),
            Err(e) => tracing::warn!(error = %e, "cannot remove old audit events"),
        }
    }
}
