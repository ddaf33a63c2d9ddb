//! The inbox folders: `<data_dir>/inbox/<person>/`, one per person (named by their short name,
//! the slug of `/people/{person}/`). A file dropped there (by a mail rule saving attachments, a
//! phone's file sync, a scanner) is imported for that person
//! by the plugin that takes its kind, exactly as an upload would be, and then moved out of the
//! way: to `processed/` when it was imported, or to `failed/` with `<name>.error.txt` beside it
//! saying why. Nothing is ever deleted.
//!
//! The folders are watched with `notify`, but events are only a hint to look: every look scans
//! the folder, and a file is imported only once its size and modification time have stayed the
//! same for `[inbox] settle`, so a copy still in progress is never read half-written. A slow
//! rescan catches anything an event missed (and files dropped while Fasten was stopped).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};

use crate::import::{self, ImportOptions};
use crate::jobs::Trigger;
use crate::state::AppState;
use crate::store;

/// Where imported files go, inside a member's inbox.
pub const PROCESSED: &str = "processed";
/// Where files that could not be imported go, with their `.error.txt`.
pub const FAILED: &str = "failed";
/// A rescan even when no event came: for events a file system does not deliver (network shares),
/// and to give a new account its folder soon. A scan is one small query and a folder listing.
const RESCAN: Duration = Duration::from_secs(5);

/// The inbox folder of every member.
pub fn root(state: &AppState) -> PathBuf {
    state.config.data_dir.join("inbox")
}

/// What one look at the inboxes did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    pub imported: Vec<PathBuf>,
    pub failed: Vec<PathBuf>,
    /// Files seen but not yet settled; they are looked at again.
    pub waiting: usize,
}

/// The state of the files being watched settle.
#[derive(Default)]
pub struct Inbox {
    /// Size and modification time of each candidate when it was last seen, and since when.
    seen: HashMap<PathBuf, (u64, Option<SystemTime>, std::time::Instant)>,
}

impl Inbox {
    /// Looks at every member's inbox once: creates missing folders, imports settled files and
    /// moves them out. Files that changed since the last look wait for the next one.
    pub async fn scan(&mut self, state: &AppState) -> anyhow::Result<ScanReport> {
        let root = root(state);
        let settle = state.config.inbox.settle;
        let mut report = ScanReport::default();
        let mut still_here = HashMap::new();
        for person in store::people::with_inbox(&state.db).await? {
            // A slug starting with "." would be a hidden folder (or "..", a way out).
            if person.slug.starts_with('.') {
                continue;
            }
            let folder = root.join(&person.slug);
            adopt_old_folder(&root, &folder, &person.slug);
            ensure_folder(&folder)?;
            for path in candidates(&folder)? {
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                let now_seen = (meta.len(), meta.modified().ok());
                let since = match self.seen.get(&path) {
                    Some((len, modified, since)) if (*len, *modified) == now_seen => *since,
                    _ => std::time::Instant::now(),
                };
                if since.elapsed() < settle {
                    report.waiting += 1;
                    still_here.insert(path, (now_seen.0, now_seen.1, since));
                    continue;
                }
                match import_one(state, person.id, &folder, &path, meta.len()).await? {
                    Ok(moved) => report.imported.push(moved),
                    Err(moved) => report.failed.push(moved),
                }
            }
        }
        self.seen = still_here;
        Ok(report)
    }
}

/// Before people, inbox folders were named by username, which may have capitals ("Anna"); the
/// person's slug is the same name in lowercase. The old folder becomes the new one, once.
fn adopt_old_folder(root: &Path, folder: &Path, slug: &str) {
    if folder.exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != slug && name.to_lowercase() == slug && entry.path().is_dir() {
            match std::fs::rename(entry.path(), folder) {
                Ok(()) => tracing::info!(from = %name, to = %slug, "inbox folder renamed"),
                Err(e) => tracing::warn!(from = %name, error = %e, "cannot rename an inbox folder"),
            }
            return;
        }
    }
}

/// A member's inbox with its two result folders, private to the account Fasten runs as.
fn ensure_folder(folder: &Path) -> std::io::Result<()> {
    for sub in [PROCESSED, FAILED] {
        std::fs::create_dir_all(folder.join(sub))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The files waiting in a member's inbox: plain files directly inside it, not hidden and not
/// the temporary files browsers and copy tools write before renaming.
fn candidates(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let temporary = name.starts_with('.')
            || name.starts_with('~')
            || [".part", ".tmp", ".crdownload", ".download", ".partial"]
                .iter()
                .any(|ext| name.to_ascii_lowercase().ends_with(ext));
        if !temporary && entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Imports one file and moves it; answers where it went (`Ok` to processed, `Err` to failed).
async fn import_one(
    state: &AppState,
    person_id: i64,
    folder: &Path,
    path: &Path,
    size: u64,
) -> anyhow::Result<Result<PathBuf, PathBuf>> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let limit = state.config.limits.upload_bytes;
    let outcome = if size > limit {
        let message = format!(
            "{name}: the file is {size} bytes, over this Fasten's limit of {limit} bytes. Nothing was stored."
        );
        let job_id =
            crate::jobs::start_import(&state.db, person_id, None, &name, Trigger::Inbox).await?;
        crate::jobs::finish_import(&state.db, job_id, Err(&message)).await?;
        Err(message)
    } else {
        let options = ImportOptions {
            family: crate::store::people::managed_with(&state.db, person_id).await?,
            ..ImportOptions::default()
        };
        match import::import_file(
            &state.db,
            &state.plugins,
            person_id,
            path,
            &name,
            Trigger::Inbox,
            &options,
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(import::ImportError::Database(e)) => return Err(e.into()),
            Err(e) => Err(e.to_string()),
        }
    };
    Ok(match outcome {
        Ok(()) => Ok(move_into(path, &folder.join(PROCESSED))?),
        Err(message) => {
            let moved = move_into(path, &folder.join(FAILED))?;
            let mut note = moved.clone().into_os_string();
            note.push(".error.txt");
            std::fs::write(&note, format!("{message}\n"))?;
            tracing::info!(person_id, file = %name, "inbox file could not be imported");
            Err(moved)
        }
    })
}

/// Moves a file into a folder without replacing anything there: `lab.csv`, then `lab (2).csv`...
fn move_into(path: &Path, folder: &Path) -> std::io::Result<PathBuf> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_string(), format!(".{ext}")),
        _ => (name.to_string(), String::new()),
    };
    for n in 1.. {
        let target = if n == 1 {
            folder.join(name.as_ref())
        } else {
            folder.join(format!("{stem} ({n}){ext}"))
        };
        let taken = target.exists() || {
            let mut note = target.clone().into_os_string();
            note.push(".error.txt");
            Path::new(&note).exists()
        };
        if !taken {
            std::fs::rename(path, &target)?;
            return Ok(target);
        }
    }
    unreachable!("some numbered name is free")
}

/// Watches the inboxes until the task is aborted.
pub fn spawn(state: AppState) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let root = root(&state);
    std::fs::create_dir_all(&root)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&root, RecursiveMode::Recursive)?;
    tracing::info!(folder = %root.display(), "watching the inbox folders");
    Ok(tokio::spawn(async move {
        let _watcher = watcher;
        let mut inbox = Inbox::default();
        let settle = state.config.inbox.settle;
        loop {
            match inbox.scan(&state).await {
                Ok(report) if !report.imported.is_empty() || !report.failed.is_empty() => {
                    tracing::info!(
                        imported = report.imported.len(),
                        failed = report.failed.len(),
                        "inbox files handled"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot read the inbox folders")
                }
            }
            // A file still settling is looked at again once it could have settled; otherwise
            // the next event (or the slow rescan) wakes the loop.
            let wait = if inbox.seen.is_empty() {
                RESCAN
            } else {
                settle + Duration::from_millis(100)
            };
            tokio::select! {
                woke = rx.recv() => {
                    if woke.is_none() {
                        return;
                    }
                    // Moving files out makes events of its own, and a copy makes a burst.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_file_never_replaces_one_already_there() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("processed");
        std::fs::create_dir_all(&folder).unwrap();
        for round in 1..=3 {
            let file = dir.path().join("lab.csv");
            std::fs::write(&file, format!("round {round}")).unwrap();
            move_into(&file, &folder).unwrap();
        }
        let read = |name: &str| std::fs::read_to_string(folder.join(name)).unwrap();
        assert_eq!(read("lab.csv"), "round 1");
        assert_eq!(read("lab (2).csv"), "round 2");
        assert_eq!(read("lab (3).csv"), "round 3");
    }

    #[test]
    fn partial_and_hidden_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "a.eml",
            ".hidden.csv",
            "b.csv.part",
            "c.json.crdownload",
            "~lock.csv",
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        std::fs::create_dir(dir.path().join("processed")).unwrap();
        let names: Vec<_> = candidates(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.eml"]);
    }
}
