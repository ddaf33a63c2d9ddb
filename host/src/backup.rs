//! Backups: one file holding a consistent snapshot of everything Fasten keeps, made while the
//! server runs, and the restore that checks every byte of it before anything lands in a data
//! folder.
//!
//! An archive is a tar file of `manifest.json`, `fasten.db` (a `VACUUM INTO` snapshot: SQLite
//! copies one read transaction's view, so a sync or an import committing meanwhile is either all
//! in it or not at all) and, only when asked for, `secret.key`. After tar's end comes one line,
//! `fasten-backup-sha256 <hex>`, the sha256 of every byte before it: tar ignores its own padding,
//! so without it a flipped byte there would pass. An archive holding the key is encrypted whole
//! with age and a passphrase, so the `age` tool opens it too.
//!
//! Every record lives in the database: uploads are imported into it and never kept as files, and
//! the plugin cache and the spool are rebuilt or empty at start. So the database and the key are
//! all a restore needs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqlitePool};

use crate::secrets::{KEY_FILE, SecretKey};
use crate::store::unix_now;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const DATABASE_FILE: &str = "fasten.db";
/// The archive's format; a restore refuses a newer one.
const FORMAT: u32 = 1;
const TRAILER_TAG: &[u8] = b"fasten-backup-sha256 ";
const TRAILER_LEN: usize = TRAILER_TAG.len() + 64 + 1;
/// How every age file starts.
const AGE_MAGIC: &[u8] = b"age-encryption.org/";
/// scrypt's cost for a passphrase: 2^18 rounds, 256 MiB of memory and about half a second here.
/// age would pick its cost by timing this machine (2^19, 512 MiB on ours); a fixed one keeps a
/// backup within reach of a small home server's memory, on this machine and at restore.
const SCRYPT_LOG_N: u8 = 18;
/// A manifest is a few kilobytes; anything far larger is not one.
const MANIFEST_LIMIT: u64 = 16 << 20;

/// What a backup holds, written first in the archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub fasten_version: String,
    /// The newest database migration applied.
    pub schema_version: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Names the secret key the stored tokens are sealed with (not the key itself).
    pub key_fingerprint: String,
    pub key_included: bool,
    pub accounts: u64,
    pub people: Vec<PersonCount>,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PersonCount {
    pub slug: String,
    pub name: String,
    pub records: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

impl Manifest {
    /// Records across everyone.
    pub fn records(&self) -> u64 {
        self.people.iter().map(|p| p.records).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} already exists; choose another name, so no backup is overwritten")]
    Exists(PathBuf),
    #[error("cannot snapshot the database: {0}")]
    Snapshot(#[from] sqlx::Error),
    #[error("cannot write the backup {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(
        "{0} is not empty; restore only into a new or empty folder, so nothing in it is overwritten"
    )]
    NotEmpty(PathBuf),
    #[error("this backup is damaged ({0}); nothing was restored")]
    Damaged(String),
    #[error("this backup is encrypted and the passphrase does not open it; nothing was restored")]
    Passphrase,
    #[error(
        "this backup does not hold the secret key; give the key kept with it (--key FILE or \
         FASTEN_SECRET_KEY), or the stored tokens would be unreadable; nothing was restored"
    )]
    KeyMissing,
    #[error(
        "the key given is not the one this backup was made with, so the stored tokens would be \
         unreadable; nothing was restored"
    )]
    KeyDifferent,
    #[error(
        "this backup was made by a newer Fasten (archive format {format}, database version \
         {schema}); restore it with that version or a later one; nothing was restored"
    )]
    Newer { format: u32, schema: i64 },
    #[error("cannot read the backup {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write into {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Where a restore finds the secret key when the archive does not hold it.
pub enum KeySource {
    /// A key file kept beside the backup.
    File(SecretKey),
    /// `FASTEN_SECRET_KEY`: the restored folder gets no key file, as the server will read the
    /// key from its environment.
    Environment(SecretKey),
    None,
}

/// A backup's file name: `fasten-backup-2026-12-06T14-05-09Z.tar` (`.tar.age` when encrypted).
pub fn file_name(created_at: i64, encrypted: bool) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(created_at)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let stamp = at
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]-[minute]-[second]Z"
        ))
        .expect("a fixed format");
    format!(
        "fasten-backup-{stamp}.tar{}",
        if encrypted { ".age" } else { "" }
    )
}

/// The key to put in a backup, and the passphrase that encrypts the backup holding it.
#[derive(Clone, Copy)]
pub struct WithKey<'a> {
    pub key: &'a SecretKey,
    pub passphrase: &'a str,
}

/// Writes a backup of `db` to `out`, which must not exist yet. `with_key` puts the secret key in
/// and encrypts the whole archive; without it the archive holds only the key's fingerprint.
///
/// The archive is written beside `out` under a temporary name and renamed into place once it is
/// complete and on disk, so `out` is never half a backup.
pub async fn create(
    db: &SqlitePool,
    key_fingerprint: &str,
    out: &Path,
    with_key: Option<WithKey<'_>>,
) -> Result<Manifest, BackupError> {
    if out.exists() {
        return Err(BackupError::Exists(out.to_path_buf()));
    }
    let write_error = |source| BackupError::Write {
        path: out.to_path_buf(),
        source,
    };
    let folder = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&folder).map_err(write_error)?;
    let staging = tempfile::Builder::new()
        .prefix(".fasten-backup-")
        .tempdir_in(&folder)
        .map_err(write_error)?;
    let snapshot = staging.path().join(DATABASE_FILE);
    sqlx::query("VACUUM INTO ?")
        .bind(snapshot.to_string_lossy().as_ref())
        .execute(db)
        .await?;
    let created_at = unix_now();
    let mut manifest = describe(&snapshot, key_fingerprint, with_key.is_some(), created_at).await?;

    let (bytes, sha256) = hash_file(&snapshot).map_err(write_error)?;
    manifest.parts.push(Part {
        name: DATABASE_FILE.into(),
        bytes,
        sha256,
    });
    let key_text = with_key.map(|w| w.key.file_text());
    if let Some(key_text) = &key_text {
        manifest.parts.push(Part {
            name: KEY_FILE.into(),
            bytes: key_text.len() as u64,
            sha256: hex::encode(Sha256::digest(key_text.as_bytes())),
        });
    }
    let manifest_json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");

    let passphrase = with_key.map(|w| w.passphrase.to_owned());
    let out_path = out.to_path_buf();
    let written = tokio::task::spawn_blocking(move || -> io::Result<()> {
        let file = tempfile::Builder::new()
            .prefix(".fasten-backup-")
            .tempfile_in(&folder)?;
        let buffered = BufWriter::with_capacity(1 << 20, file);
        let sink = match &passphrase {
            Some(passphrase) => {
                let mut recipient = age::scrypt::Recipient::new(age::secrecy::SecretString::from(
                    passphrase.clone(),
                ));
                recipient.set_work_factor(SCRYPT_LOG_N);
                let encryptor = age::Encryptor::with_recipients(std::iter::once(
                    &recipient as &dyn age::Recipient,
                ))
                .map_err(io::Error::other)?;
                Sink::Encrypted(encryptor.wrap_output(buffered)?)
            }
            None => Sink::Plain(buffered),
        };
        let mut tar = tar::Builder::new(Hashing::new(sink));
        let manifest_size = manifest_json.len() as u64;
        append(
            &mut tar,
            MANIFEST_FILE,
            created_at,
            &manifest_json[..],
            manifest_size,
        )?;
        append(
            &mut tar,
            DATABASE_FILE,
            created_at,
            File::open(&snapshot)?,
            bytes,
        )?;
        if let Some(text) = &key_text {
            let text = text.as_bytes();
            append(&mut tar, KEY_FILE, created_at, text, text.len() as u64)?;
        }
        let Hashing {
            inner: mut sink,
            hasher,
            ..
        } = tar.into_inner()?;
        sink.write_all(TRAILER_TAG)?;
        sink.write_all(hex::encode(hasher.finalize()).as_bytes())?;
        sink.write_all(b"\n")?;
        let file = sink.finish()?;
        file.persist_noclobber(&out_path).map_err(|e| e.error)?;
        if let Ok(folder) = File::open(&folder) {
            let _ = folder.sync_all();
        }
        Ok(())
    })
    .await
    .map_err(|e| write_error(io::Error::other(e)))?;
    written.map_err(write_error)?;
    tracing::info!(
        path = %out.display(),
        records = manifest.records(),
        key_included = manifest.key_included,
        "backup written"
    );
    Ok(manifest)
}

/// A backup that was written.
#[derive(Debug)]
pub struct Written {
    pub manifest: Manifest,
    pub bytes: u64,
}

/// Makes a backup as `create` does and records it (or why it failed) for the admin page.
/// `trigger` is `"schedule"` or `"cli"`.
pub async fn run(
    db: &SqlitePool,
    key_fingerprint: &str,
    out: &Path,
    with_key: Option<WithKey<'_>>,
    trigger: &str,
) -> Result<Written, BackupError> {
    let started_at = unix_now();
    let result = create(db, key_fingerprint, out, with_key).await;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    let (status, records, error) = match &result {
        Ok(manifest) => ("succeeded", manifest.records(), None),
        Err(e) => ("failed", 0, Some(e.to_string())),
    };
    let recorded = sqlx::query(
        "INSERT INTO backups (trigger, status, path, bytes, records, key_included, error,
           started_at, finished_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(trigger)
    .bind(status)
    .bind(out.to_string_lossy().as_ref())
    .bind(bytes as i64)
    .bind(records as i64)
    .bind(with_key.is_some())
    .bind(&error)
    .bind(started_at)
    .bind(unix_now())
    .execute(db)
    .await;
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "cannot record the backup on the admin page");
    }
    if error.is_none() {
        let actor = if trigger == "schedule" {
            crate::audit::Actor::schedule()
        } else {
            crate::audit::Actor::command_line()
        };
        let subject = format!(
            "{}{}",
            out.display(),
            if with_key.is_some() {
                " (with the key, encrypted)"
            } else {
                ""
            }
        );
        crate::audit::record(db, &actor, crate::audit::Action::BackupMade, &subject).await;
    }
    if let Some(error) = &error {
        tracing::error!(path = %out.display(), error, "backup failed");
    }
    result.map(|manifest| Written { manifest, bytes })
}

/// A backup as the admin page lists it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct BackupView {
    pub id: i64,
    pub trigger: String,
    pub status: String,
    pub path: String,
    pub bytes: i64,
    pub records: i64,
    pub key_included: bool,
    pub error: Option<String>,
    pub finished_at: i64,
    pub removed_at: Option<i64>,
}

/// The newest backups first.
pub async fn recent(db: &SqlitePool, limit: i64) -> sqlx::Result<Vec<BackupView>> {
    sqlx::query_as(
        "SELECT id, trigger, status, path, bytes, records, key_included, error, finished_at,
           removed_at
         FROM backups ORDER BY finished_at DESC, id DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

/// When the newest backup that worked was finished (Unix seconds).
pub async fn newest(db: &SqlitePool) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT MAX(finished_at) FROM backups WHERE status = 'succeeded'")
        .fetch_one(db)
        .await
}

/// Writes a backup every `[backup] every`, counted from the newest one (or from the server's
/// start, so a new install's first backup comes a period after it starts), and keeps the newest
/// `[backup] keep` of them.
pub async fn schedule(state: crate::state::AppState) {
    let every = state.config.backup.every;
    if every.is_zero() {
        return;
    }
    let started = unix_now();
    loop {
        let since = match newest(&state.db).await {
            Ok(newest) => newest.unwrap_or(started),
            Err(e) => {
                tracing::error!(error = %e, "cannot read when the last backup was made");
                started
            }
        };
        let due = since + every.as_secs() as i64;
        let wait = (due - unix_now()).clamp(0, 60);
        if wait > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(wait as u64)).await;
            continue;
        }
        scheduled_backup(&state).await;
        // A failed backup is not retried at once in a loop: the next try is a period later.
        if matches!(newest(&state.db).await, Ok(n) if n.unwrap_or(0) < due) {
            tokio::time::sleep(every.min(std::time::Duration::from_secs(3600))).await;
        }
    }
}

async fn scheduled_backup(state: &crate::state::AppState) {
    let dir = state.config.backup_dir();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(path = %dir.display(), error = %e, "cannot create the backup folder");
        return;
    }
    let out = dir.join(file_name(unix_now(), false));
    if run(&state.db, &state.key_fingerprint, &out, None, "schedule")
        .await
        .is_ok()
    {
        prune(&state.db, &dir, state.config.backup.keep).await;
    }
}

/// Removes the scheduled backups in `dir` beyond the newest `keep`. Only files this schedule
/// wrote (recorded with their path) are ever removed.
async fn prune(db: &SqlitePool, dir: &Path, keep: usize) {
    let scheduled: Vec<(i64, String)> = match sqlx::query_as(
        "SELECT id, path FROM backups
         WHERE trigger = 'schedule' AND status = 'succeeded' AND removed_at IS NULL
         ORDER BY finished_at DESC, id DESC",
    )
    .fetch_all(db)
    .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "cannot list the scheduled backups");
            return;
        }
    };
    for (id, path) in scheduled.into_iter().skip(keep.max(1)) {
        let path = PathBuf::from(path);
        if path.parent() != Some(dir) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an old backup");
                continue;
            }
        }
        let _ = sqlx::query("UPDATE backups SET removed_at = ? WHERE id = ?")
            .bind(unix_now())
            .bind(id)
            .execute(db)
            .await;
        tracing::info!(path = %path.display(), "removed an old backup");
    }
}

/// How the family's backups stand, for the admin pages: one sentence, and whether it is a
/// warning (no backup, or the newest is more than two periods old).
#[derive(Debug, Clone, Serialize)]
pub struct Standing {
    pub sentence: String,
    pub warning: bool,
}

pub fn standing(config: &crate::config::Config, newest: Option<i64>, now: i64) -> Standing {
    let every = config.backup.every.as_secs() as i64;
    match newest {
        None => Standing {
            sentence: if every > 0 {
                format!(
                    "No backup has been made yet; the first comes {} after Fasten starts, or \
                     run `fasten backup` now.",
                    crate::sources::smart::in_words(every)
                )
            } else {
                "No backup has been made yet, and scheduled backups are off: run \
                 `fasten backup`."
                    .into()
            },
            warning: true,
        },
        Some(at) => {
            let age = (now - at).max(0);
            let warning = every == 0 && age > 7 * 86400 || every > 0 && age > 2 * every;
            Standing {
                sentence: format!(
                    "The newest backup was made {} ago ({}).{}",
                    crate::sources::smart::in_words(age),
                    crate::web::render::datetime_filter(at),
                    if warning {
                        " That is older than it should be: see why below, or run `fasten backup`."
                    } else {
                        ""
                    }
                ),
                warning,
            }
        }
    }
}

/// Counts what the snapshot holds, from the snapshot itself, so the manifest describes exactly
/// what the archive carries.
async fn describe(
    snapshot: &Path,
    key_fingerprint: &str,
    key_included: bool,
    created_at: i64,
) -> Result<Manifest, sqlx::Error> {
    let mut connection = SqliteConnectOptions::from_str("sqlite://")
        .expect("static URL")
        .filename(snapshot)
        .read_only(true)
        .connect()
        .await?;
    let schema_version: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut connection)
            .await?;
    let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut connection)
        .await?;
    let people: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT p.slug, p.name, (SELECT COUNT(*) FROM resources r WHERE r.person_id = p.id)
         FROM people p ORDER BY p.slug",
    )
    .fetch_all(&mut connection)
    .await?;
    Ok(Manifest {
        format: FORMAT,
        fasten_version: env!("CARGO_PKG_VERSION").into(),
        schema_version,
        created_at,
        key_fingerprint: key_fingerprint.into(),
        key_included,
        accounts: accounts as u64,
        people: people
            .into_iter()
            .map(|(slug, name, records)| PersonCount {
                slug,
                name,
                records: records as u64,
            })
            .collect(),
        parts: Vec::new(),
    })
}

fn append(
    tar: &mut tar::Builder<Hashing<Sink>>,
    name: &str,
    mtime: i64,
    data: impl Read,
    size: u64,
) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(mtime.max(0) as u64);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data)
}

/// Where an archive's bytes go: the file, or age's encryption in front of it.
enum Sink {
    Plain(BufWriter<tempfile::NamedTempFile>),
    Encrypted(age::stream::StreamWriter<BufWriter<tempfile::NamedTempFile>>),
}

impl Sink {
    /// Ends the stream and makes the file durable.
    fn finish(self) -> io::Result<tempfile::NamedTempFile> {
        let buffered = match self {
            Sink::Plain(buffered) => buffered,
            Sink::Encrypted(stream) => stream.finish()?,
        };
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        file.as_file().sync_all()?;
        Ok(file)
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Encrypted(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Encrypted(w) => w.flush(),
        }
    }
}

/// Passes bytes through, hashing them.
struct Hashing<T> {
    inner: T,
    hasher: Sha256,
    bytes: u64,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Hashing<T> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        self.bytes += read as u64;
        Ok(read)
    }
}

fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut hashing = Hashing::new(io::sink());
    io::copy(&mut BufReader::new(File::open(path)?), &mut hashing)?;
    Ok((hashing.bytes, hex::encode(hashing.hasher.finalize())))
}

/// Whether the archive at `path` is encrypted (and so needs a passphrase to restore).
pub fn is_encrypted(path: &Path) -> Result<bool, RestoreError> {
    let read_error = |source| RestoreError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut start = [0u8; 19];
    let mut file = File::open(path).map_err(read_error)?;
    let mut filled = 0;
    while filled < start.len() {
        match file.read(&mut start[filled..]).map_err(read_error)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(&start[..filled] == AGE_MAGIC)
}

/// Restores the archive at `archive` into `data_dir`, which must be absent or empty.
///
/// Everything is unpacked into a private folder beside `data_dir` and checked there: the whole
/// archive's sha256, each part's sha256 against the manifest, the format and database version,
/// and the key's fingerprint. Only then is the folder renamed to `data_dir`; on any failure it
/// is removed and `data_dir` is as it was.
pub fn restore(
    archive: &Path,
    data_dir: &Path,
    passphrase: Option<&str>,
    key: KeySource,
) -> Result<Manifest, RestoreError> {
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RestoreError::Write { path, source }
    };
    let read_error = |source| RestoreError::Read {
        path: archive.to_path_buf(),
        source,
    };
    if let Ok(mut entries) = std::fs::read_dir(data_dir)
        && entries.next().is_some()
    {
        return Err(RestoreError::NotEmpty(data_dir.to_path_buf()));
    }
    let parent = match data_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(write_error(&parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".fasten-restore-")
        .tempdir_in(&parent)
        .map_err(write_error(&parent))?;

    let file = BufReader::with_capacity(1 << 20, File::open(archive).map_err(read_error)?);
    let plain: Box<dyn Read> = if is_encrypted(archive)? {
        let Some(passphrase) = passphrase else {
            return Err(RestoreError::Passphrase);
        };
        let decryptor = age::Decryptor::new_buffered(file)
            .map_err(|e| RestoreError::Damaged(format!("its encryption header: {e}")))?;
        if !decryptor.is_scrypt() {
            return Err(RestoreError::Damaged(
                "it is encrypted, but not with a passphrase".into(),
            ));
        }
        let identity =
            age::scrypt::Identity::new(age::secrecy::SecretString::from(passphrase.to_owned()));
        let reader = decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
                    RestoreError::Passphrase
                }
                other => RestoreError::Damaged(other.to_string()),
            })?;
        Box::new(reader)
    } else {
        Box::new(file)
    };
    let unpacked = unpack(plain, staging.path())?;

    if !unpacked.contains_key(MANIFEST_FILE) {
        return Err(RestoreError::Damaged("it has no manifest".into()));
    }
    let manifest_text =
        std::fs::read(staging.path().join(MANIFEST_FILE)).map_err(write_error(staging.path()))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_text)
        .map_err(|e| RestoreError::Damaged(format!("its manifest cannot be read: {e}")))?;
    let newest_schema = crate::store::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    if manifest.format > FORMAT || manifest.schema_version > newest_schema {
        return Err(RestoreError::Newer {
            format: manifest.format,
            schema: manifest.schema_version,
        });
    }
    let listed: BTreeMap<&str, &Part> = manifest
        .parts
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();
    for (name, found) in &unpacked {
        if name == MANIFEST_FILE {
            continue;
        }
        match listed.get(name.as_str()) {
            Some(part) if part.bytes == found.bytes && part.sha256 == found.sha256 => {}
            Some(_) => {
                return Err(RestoreError::Damaged(format!(
                    "{name} does not match its checksum"
                )));
            }
            None => {
                return Err(RestoreError::Damaged(format!(
                    "it holds {name}, which its manifest does not list"
                )));
            }
        }
    }
    for name in listed.keys() {
        if !unpacked.contains_key(*name) {
            return Err(RestoreError::Damaged(format!("{name} is missing")));
        }
    }
    if !unpacked.contains_key(DATABASE_FILE) {
        return Err(RestoreError::Damaged("it holds no database".into()));
    }

    // The key: the archive's own, else the one given, and it must be the one the tokens were
    // sealed with.
    let archived_key = staging.path().join(KEY_FILE);
    let key = if unpacked.contains_key(KEY_FILE) {
        let text = std::fs::read_to_string(&archived_key).map_err(write_error(&archived_key))?;
        let key = SecretKey::from_file_text(&text)
            .map_err(|e| RestoreError::Damaged(format!("its key: {e:#}")))?;
        KeySource::File(key)
    } else {
        key
    };
    match &key {
        KeySource::None => return Err(RestoreError::KeyMissing),
        KeySource::File(key) | KeySource::Environment(key)
            if key.fingerprint() != manifest.key_fingerprint =>
        {
            return Err(RestoreError::KeyDifferent);
        }
        _ => {}
    }
    std::fs::remove_file(staging.path().join(MANIFEST_FILE))
        .map_err(write_error(staging.path()))?;
    if let KeySource::File(key) = &key
        && !archived_key.exists()
    {
        key.write_into(staging.path())
            .map_err(|e| RestoreError::Write {
                path: archived_key.clone(),
                source: io::Error::other(format!("{e:#}")),
            })?;
    }

    // Into place: the staging folder becomes the data folder.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(write_error(staging.path()))?;
    }
    if data_dir.exists() {
        // Empty, as checked above; a folder cannot be renamed over one that has entries.
        std::fs::remove_dir(data_dir).map_err(write_error(data_dir))?;
    }
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, data_dir) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(RestoreError::Write {
            path: data_dir.to_path_buf(),
            source: e,
        });
    }
    if let Ok(parent) = File::open(&parent) {
        let _ = parent.sync_all();
    }
    tracing::info!(
        path = %data_dir.display(),
        records = manifest.records(),
        "backup restored"
    );
    Ok(manifest)
}

/// A part as unpacked: its size and sha256.
struct Unpacked {
    bytes: u64,
    sha256: String,
}

/// Unpacks the archive's known parts into `into`, checking the whole stream's trailing sha256.
fn unpack(plain: Box<dyn Read>, into: &Path) -> Result<BTreeMap<String, Unpacked>, RestoreError> {
    let damaged = |what: &str, e: io::Error| RestoreError::Damaged(format!("{what}: {e}"));
    let mut hashing = Hashing::new(plain);
    let mut found = BTreeMap::new();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive
            .entries()
            .map_err(|e| damaged("its contents cannot be read", e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| damaged("its contents cannot be read", e))?;
            let name = entry
                .path()
                .map_err(|e| damaged("a part's name cannot be read", e))?
                .to_string_lossy()
                .into_owned();
            let known = [MANIFEST_FILE, DATABASE_FILE, KEY_FILE].contains(&name.as_str());
            if !known || entry.header().entry_type() != tar::EntryType::Regular {
                return Err(RestoreError::Damaged(format!(
                    "it holds {name}, which is not part of a Fasten backup"
                )));
            }
            if found.contains_key(&name) {
                return Err(RestoreError::Damaged(format!("it holds {name} twice")));
            }
            if name == MANIFEST_FILE && entry.size() > MANIFEST_LIMIT {
                return Err(RestoreError::Damaged(
                    "its manifest is far too large".into(),
                ));
            }
            let path = into.join(&name);
            let target = File::create(&path).map_err(|source| RestoreError::Write {
                path: path.clone(),
                source,
            })?;
            let mut part = Hashing::new(BufWriter::new(target));
            io::copy(&mut entry, &mut part).map_err(|e| damaged(&name, e))?;
            let Hashing {
                inner,
                hasher,
                bytes,
            } = part;
            inner
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|file| file.sync_all())
                .map_err(|source| RestoreError::Write {
                    path: path.clone(),
                    source,
                })?;
            found.insert(
                name,
                Unpacked {
                    bytes,
                    sha256: hex::encode(hasher.finalize()),
                },
            );
        }
    }
    // What follows tar's last entry: its zero blocks, then the trailer line.
    let Hashing {
        inner: mut rest_reader,
        mut hasher,
        ..
    } = hashing;
    let mut rest = Vec::new();
    rest_reader
        .by_ref()
        .take(1 << 20)
        .read_to_end(&mut rest)
        .map_err(|e| damaged("its end cannot be read", e))?;
    if rest.len() < TRAILER_LEN || rest.len() >= 1 << 20 {
        return Err(RestoreError::Damaged(
            "its end is missing or altered".into(),
        ));
    }
    let (padding, trailer) = rest.split_at(rest.len() - TRAILER_LEN);
    hasher.update(padding);
    let expected = hex::encode(hasher.finalize());
    if !trailer.starts_with(TRAILER_TAG)
        || trailer[TRAILER_TAG.len()..TRAILER_LEN - 1] != *expected.as_bytes()
        || trailer[TRAILER_LEN - 1] != b'\n'
    {
        return Err(RestoreError::Damaged(
            "its checksum does not match its contents".into(),
        ));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_sort_by_time_and_say_whether_they_are_encrypted() {
        assert_eq!(
            file_name(1_796_565_909, false),
            "fasten-backup-2026-12-06T14-05-09Z.tar"
        );
        assert!(file_name(0, true).ends_with(".tar.age"));
    }
}
