//! The instance's secret key: 32 random bytes created at first run in `data_dir/secret.key`
//! (mode 0600), or supplied as base64 in `FASTEN_SECRET_KEY` (for containers whose data volume
//! should not hold it). Purpose-specific keys are derived from it with HMAC-SHA256, so one stored
//! secret serves CSRF tokens now and the token vault later without key reuse across purposes.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const KEY_FILE: &str = "secret.key";

pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Reads the key from `from_env` if set, else from the key file, creating it if absent.
    pub fn load_or_create(data_dir: &Path, from_env: Option<&str>) -> anyhow::Result<SecretKey> {
        if let Some(encoded) = from_env {
            return decode(encoded.trim()).context("FASTEN_SECRET_KEY is not valid");
        }
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                restrict_permissions(&path)?;
                decode(text.trim())
                    .with_context(|| format!("key file {} is damaged", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path),
            Err(e) => Err(e).with_context(|| format!("cannot read key file {}", path.display())),
        }
    }

    /// Reads a key file such as `data_dir/secret.key` (or one kept beside a backup).
    pub fn read(path: &Path) -> anyhow::Result<SecretKey> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        decode(text.trim()).with_context(|| format!("key file {} is damaged", path.display()))
    }

    /// The key file's text: base64 and a newline.
    pub fn file_text(&self) -> String {
        format!("{}\n", STANDARD.encode(self.0))
    }

    /// Parses a key file's text.
    pub fn from_file_text(text: &str) -> anyhow::Result<SecretKey> {
        decode(text.trim())
    }

    /// Writes the key file into `data_dir`, private to this account; never over an existing one.
    pub fn write_into(&self, data_dir: &Path) -> anyhow::Result<()> {
        write_new(&data_dir.join(KEY_FILE), self)
    }

    /// Names the key without revealing it: a backup's manifest records it, so a restore can tell
    /// the right key from another one before anything is written.
    pub fn fingerprint(&self) -> String {
        let id = self.derive("key-fingerprint");
        id[..12].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A key for one purpose, e.g. `derive("csrf")`.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key size");
        mac.update(b"fasten/");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

fn decode(encoded: &str) -> anyhow::Result<SecretKey> {
    let bytes = STANDARD
        .decode(encoded)
        .context("expected base64 of 32 bytes")?;
    let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        bail!("expected 32 bytes, found {}", bytes.len());
    };
    Ok(SecretKey(key))
}

fn create(path: &Path) -> anyhow::Result<SecretKey> {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let key = SecretKey(key);
    write_new(path, &key)?;
    tracing::info!(path = %path.display(), "created a new secret key");
    Ok(key)
}

fn write_new(path: &Path, key: &SecretKey) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    file.write_all(key.file_text().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write key file {}", path.display()))
}

/// A key file that others can read is tightened rather than refused: the owner may have copied
/// it from a backup with default permissions.
fn restrict_permissions(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "key file was readable by others; setting mode 0600");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict permissions of {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = SecretKey::load_or_create(dir.path(), None).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = SecretKey::load_or_create(dir.path(), None).unwrap();
        assert_eq!(first.derive("csrf"), second.derive("csrf"));
        assert_ne!(first.derive("csrf"), first.derive("vault"));
    }

    #[test]
    fn key_from_environment_must_be_32_bytes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SecretKey::load_or_create(dir.path(), Some("c2hvcnQ=")).is_err());
        let good = STANDARD.encode([7u8; 32]);
        assert!(SecretKey::load_or_create(dir.path(), Some(&good)).is_ok());
        assert!(!dir.path().join(KEY_FILE).exists());
    }
}
