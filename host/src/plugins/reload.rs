//! Hot reload for `serve --dev`: watch the registry folder and the `[dev]` artifacts of bundled
//! plugins and of installed plugins built by their author, and reload what changed. Parent
//! folders are watched (a rebuild replaces the file, which a watch on the file itself would
//! lose), events are debounced, and an unchanged sha256 is skipped.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sqlx::SqlitePool;

use super::PluginHost;

const DEBOUNCE: Duration = Duration::from_millis(250);

/// Starts watching; the watcher lives as long as the returned task.
pub fn spawn(host: Arc<PluginHost>, db: SqlitePool) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })?;
    let mut folders = Vec::new();
    if host.settings.registry_dir.is_dir() {
        folders.push((host.settings.registry_dir.clone(), RecursiveMode::Recursive));
    }
    for (manifest, _) in host.bundled() {
        if let Some(parent) = host
            .dev_artifact_path(&manifest)
            .and_then(|p| p.parent().map(|d| d.to_path_buf()))
            && parent.is_dir()
        {
            folders.push((parent, RecursiveMode::NonRecursive));
        }
    }
    // An author's plugin installed with a `[dev]` artifact is reloaded when rebuilt where it is.
    for folder in host.dropped_in_dev_folders() {
        if folder.is_dir() && !folders.iter().any(|(f, _)| *f == folder) {
            folders.push((folder, RecursiveMode::NonRecursive));
        }
    }
    for (folder, mode) in &folders {
        watcher.watch(folder, *mode)?;
        tracing::info!(folder = %folder.display(), "watching for plugin changes");
    }
    Ok(tokio::spawn(async move {
        let _watcher = watcher;
        while rx.recv().await.is_some() {
            // A build writes several files in a burst: wait for it to settle.
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            host.reload_changed(&db).await;
        }
    }))
}
