//! The data folder is private to the account Fasten runs as: a family's records, the secret key
//! and everything derived from them (caches, uploads in progress, the inbox) are readable by no
//! other account on the machine. New files get that from the process's umask; an install made
//! before, or files copied in by hand, are tightened at start.

use std::path::{Path, PathBuf};

/// Makes every file and folder this process creates from now on private to its account
/// (umask 077): the database and its WAL, caches, uploads and exports alike.
pub fn private_by_default() {
    #[cfg(unix)]
    {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
}

/// A mode Fasten changed, or could not change, under the data folder.
#[derive(Debug)]
pub struct Tightened {
    pub path: PathBuf,
    pub from: u32,
    pub to: u32,
    /// Why the change failed (the folder belongs to another account, say).
    pub failed: Option<String>,
}

/// Takes the group and other permissions off every file and folder under `dir` (and `dir`
/// itself), without following symbolic links. Answers what it changed or could not change.
pub fn tighten(dir: &Path) -> Vec<Tightened> {
    let mut changes = Vec::new();
    #[cfg(unix)]
    tighten_into(dir, &mut changes);
    changes
}

#[cfg(unix)]
fn tighten_into(path: &Path, changes: &mut Vec<Tightened>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return;
    };
    if metadata.file_type().is_symlink() {
        return;
    }
    let from = metadata.permissions().mode() & 0o7777;
    let to = if metadata.is_dir() {
        (from & !0o077) | 0o700
    } else {
        from & !0o077
    };
    if to != from {
        let failed = std::fs::set_permissions(path, std::fs::Permissions::from_mode(to))
            .err()
            .map(|e| e.to_string());
        changes.push(Tightened {
            path: path.to_path_buf(),
            from,
            to,
            failed,
        });
    }
    if metadata.is_dir()
        && let Ok(entries) = std::fs::read_dir(path)
    {
        for entry in entries.flatten() {
            tighten_into(&entry.path(), changes);
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn group_and_other_bits_are_taken_off_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("plugin-cache")).unwrap();
        std::fs::write(data.join("fasten.db"), "x").unwrap();
        std::fs::write(data.join("plugin-cache/a.cwasm"), "x").unwrap();
        let outside = dir.path().join("outside.txt");
        std::fs::write(&outside, "x").unwrap();
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();
        for (path, m) in [
            (&data, 0o755),
            (&data.join("plugin-cache"), 0o775),
            (&data.join("fasten.db"), 0o644),
            (&data.join("plugin-cache/a.cwasm"), 0o664),
            (&outside, 0o644),
        ] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap();
        }
        let changes = tighten(&data);
        assert_eq!(changes.len(), 4, "{changes:?}");
        assert!(changes.iter().all(|c| c.failed.is_none()));
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("plugin-cache")), 0o700);
        assert_eq!(mode(&data.join("fasten.db")), 0o600);
        assert_eq!(mode(&data.join("plugin-cache/a.cwasm")), 0o600);
        assert_eq!(
            mode(&outside),
            0o644,
            "a link's target is not Fasten's to change"
        );
        assert!(tighten(&data).is_empty(), "a second start changes nothing");
    }
}
