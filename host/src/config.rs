//! Configuration: built-in defaults, then `config.toml`, then `FASTEN_*` environment variables,
//! then command-line flags; each layer overrides the one before.
//!
//! The environment rule is mechanical so that every setting can be overridden without a list
//! to keep in sync: a top-level key `data_dir` is `FASTEN_DATA_DIR`, and a key `idle_timeout`
//! in the `[session]` table is `FASTEN_SESSION_IDLE_TIMEOUT`. Values are read as TOML scalars
//! when they parse as one (`true`, `42`) and as strings otherwise (`30m`, `./data`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Every setting Fasten reads. `config.toml` at the repository root documents each one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port the web server listens on.
    pub listen: SocketAddr,
    /// Folder holding the SQLite database, the secret key file and caches.
    pub data_dir: PathBuf,
    /// tracing filter, e.g. `info` or `fasten=debug,info`.
    pub log_level: String,
    /// `text` for people, `json` for log collectors.
    pub log_format: LogFormat,
    /// URL prefix when served behind a reverse proxy under a sub-path, e.g. `/fasten`.
    pub base_path: String,
    /// Whether visitors may create their own (member) accounts at `/signup`.
    pub allow_signup: bool,
    /// The address people use to reach this Fasten, e.g. `https://fasten.example.home`; providers
    /// send sign-ins back to `<public_url>/sources/callback`. Empty: taken from each request.
    pub public_url: String,
    pub session: SessionConfig,
    pub limits: LimitsConfig,
    pub plugins: PluginsConfig,
    pub sync: SyncConfig,
    pub glossary: GlossaryConfig,
    pub inbox: InboxConfig,
    pub backup: BackupConfig,
    pub audit: AuditConfig,
    pub provider_apps: ProviderAppsConfig,
    pub directory: DirectoryConfig,
    /// Read templates from disk and reload them on change (`serve --dev` sets this).
    #[serde(skip)]
    pub dev: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// A session unused for this long ends.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, however busy.
    #[serde(with = "humantime_serde")]
    pub absolute_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body accepted by ordinary form posts, in bytes.
    pub form_body_bytes: usize,
    /// Largest file a user may upload for import, in bytes.
    pub upload_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folder of dropped-in plugins (`<id>/plugin.toml`), relative to the working folder.
    pub registry_dir: PathBuf,
    /// Let plugins use plain http to loopback addresses (tests and local development only).
    pub allow_http_loopback: bool,
    /// Let plugins reach private-network addresses (a FHIR server on your LAN, say).
    pub allow_private_networks: bool,
    /// The most records one import or sync may store; a run past it fails and stores nothing.
    pub max_run_resources: u64,
    /// The most bytes of records one import or sync may store.
    pub max_run_bytes: u64,
    /// Log lines one run may write; the rest are counted in one last line.
    pub max_run_log_lines: u64,
    /// How many plugin runs (imports, syncs, previews) may execute at once; more wait their turn.
    pub concurrent_runs: usize,
    /// The most bytes of records one person may have stored; 0 for no limit. An import or sync
    /// that would go past it stores nothing and says so.
    pub max_person_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// How often each connected source syncs by itself; `0s` turns scheduled sync off (new
    /// connections then sync only when asked).
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// How many syncs may run at the same time.
    pub concurrency: usize,
    /// Attempts for a sync that fails for a temporary reason (network, rate limit) before the
    /// job is marked failed.
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GlossaryConfig {
    /// Ask MedlinePlus Connect about lab codes the built-in glossary does not explain. Off by
    /// default: when on, the codes (never names or values) of records people open are sent to
    /// the U.S. National Library of Medicine, each at most once a month.
    pub online: bool,
    /// MedlinePlus Connect's service address (tests point it at a stand-in).
    pub medlineplus_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// How often the provider directory is downloaded again, counted from the last download;
    /// `0s` never. Nothing is downloaded until an administrator asks the first time.
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
    /// The largest list Fasten downloads, in bytes (Epic's is about 90 MB).
    pub max_bytes: u64,
    /// The sources file; empty means `directory.toml` in the plugin registry folder, else the
    /// list built into Fasten.
    pub file: PathBuf,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            refresh: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 512 * 1024 * 1024,
            file: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// How long Admin → Activity keeps an event; `0s` keeps them all.
    #[serde(with = "humantime_serde")]
    pub keep: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderAppsConfig {
    /// Key rotation for `private_key_jwt` (Admin → Provider apps, "Add a new key"): a new key is
    /// published this long before Fasten signs with it, and the old one stays published this long
    /// after, so servers that cache the JWK Set keep verifying.
    #[serde(with = "humantime_serde")]
    pub key_grace: Duration,
}

impl Default for ProviderAppsConfig {
    fn default() -> Self {
        ProviderAppsConfig {
            key_grace: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            // "1year" as humantime reads it: 365.25 days.
            keep: Duration::from_secs(31_557_600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// How often Fasten writes a backup by itself, counted from the newest one; `0s` turns
    /// scheduled backups off (`fasten backup` still works).
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// How many scheduled backups to keep; older ones are removed after each new one.
    pub keep: usize,
    /// Where scheduled backups go; empty means `<data_dir>/backups`.
    pub dir: PathBuf,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            every: Duration::from_secs(24 * 3600),
            keep: 7,
            dir: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboxConfig {
    /// Watch `<data_dir>/inbox/<username>/` and import each file dropped there for that member.
    pub enabled: bool,
    /// How long a dropped file must stay unchanged before it is imported (a copy in progress is
    /// left alone).
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            enabled: true,
            settle: Duration::from_secs(2),
        }
    }
}

impl Default for GlossaryConfig {
    fn default() -> Self {
        GlossaryConfig {
            online: false,
            medlineplus_url: "https://connect.medlineplus.gov/service".into(),
        }
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            every: Duration::from_secs(24 * 3600),
            concurrency: 2,
            max_attempts: 3,
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            registry_dir: PathBuf::from("./plugin-registry"),
            allow_http_loopback: false,
            allow_private_networks: false,
            max_run_resources: 2_000_000,
            max_run_bytes: 2 << 30,
            max_run_log_lines: 10_000,
            concurrent_runs: 4,
            max_person_bytes: 0,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9090".parse().expect("valid default address"),
            data_dir: PathBuf::from("./data"),
            log_level: "info".into(),
            log_format: LogFormat::Text,
            base_path: String::new(),
            allow_signup: false,
            public_url: String::new(),
            session: SessionConfig::default(),
            limits: LimitsConfig::default(),
            plugins: PluginsConfig::default(),
            sync: SyncConfig::default(),
            glossary: GlossaryConfig::default(),
            inbox: InboxConfig::default(),
            backup: BackupConfig::default(),
            audit: AuditConfig::default(),
            provider_apps: ProviderAppsConfig::default(),
            directory: DirectoryConfig::default(),
            dev: false,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_timeout: Duration::from_secs(12 * 3600),
            absolute_timeout: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            form_body_bytes: 64 * 1024,
            upload_bytes: 256 * 1024 * 1024,
        }
    }
}

impl Config {
    /// Loads the configuration. `file` is the `--config` flag: when given it must exist;
    /// when absent `./config.toml` is read if present, else defaults apply.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut value = toml::Value::try_from(Config::default()).context("default config")?;
        let file = match file {
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from("config.toml")).filter(|p| p.exists()),
        };
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let from_file: toml::Value = toml::from_str(&text)
                .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
            merge(&mut value, from_file);
        }
        apply_env(&mut value, env)?;
        let mut config: Config = value
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.message()))
            .with_context(|| match &file {
                Some(p) => format!("invalid setting in {} or FASTEN_* variables", p.display()),
                None => "invalid setting in FASTEN_* variables".to_string(),
            })?;
        config.base_path = normalize_base_path(&config.base_path)?;
        Ok(config)
    }

    /// Where scheduled backups go.
    pub fn backup_dir(&self) -> PathBuf {
        if self.backup.dir.as_os_str().is_empty() {
            self.data_dir.join("backups")
        } else {
            self.backup.dir.clone()
        }
    }

    /// Path of the SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("fasten.db")
    }
}

/// `"/fasten/"` and `"fasten"` both mean `"/fasten"`; `""` and `"/"` mean no prefix.
fn normalize_base_path(raw: &str) -> anyhow::Result<String> {
    let trimmed = raw.trim().trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || "-_./".contains(c)))
    {
        bail!("base_path {raw:?} may only contain letters, digits, '-', '_', '.' and '/'");
    }
    Ok(format!("/{trimmed}"))
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(base), toml::Value::Table(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// Applies `FASTEN_<KEY>` and `FASTEN_<SECTION>_<KEY>` variables. Unknown `FASTEN_` names are
/// an error rather than silently ignored, so a typo does not leave a setting at its default.
fn apply_env(
    value: &mut toml::Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    let table = value.as_table_mut().expect("config is a table");
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("FASTEN_") else {
            continue;
        };
        // Variables read elsewhere, not config keys.
        if matches!(rest, "SECRET_KEY") {
            continue;
        }
        let key = rest.to_ascii_lowercase();
        let parsed = parse_env_value(&raw);
        if table.get(&key).is_some_and(|v| !v.is_table()) {
            table.insert(key, parsed);
            continue;
        }
        let section = table
            .iter()
            .filter(|(_, v)| v.is_table())
            .map(|(k, _)| k.clone())
            .find(|section| key.starts_with(&format!("{section}_")));
        match section {
            Some(section) => {
                let sub_key = key[section.len() + 1..].to_string();
                let sub = table[&section].as_table_mut().expect("section is a table");
                if !sub.contains_key(&sub_key) {
                    bail!("unknown setting {name} (no key {sub_key:?} in [{section}])");
                }
                sub.insert(sub_key, parsed);
            }
            None => bail!("unknown setting {name}"),
        }
    }
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    // `key = <raw>` parses only for TOML scalars (true, 42, 1.5); anything else is a string.
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_table() && !v.is_array())
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        assert!(Config::load(Some(&missing), env(&[])).is_err());
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9090");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert!(!config.allow_signup);
    }

    #[test]
    fn repository_config_file_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.toml");
        let config = Config::load(Some(&path), env(&[])).unwrap();
        let defaults = Config::default();
        assert_eq!(config.listen, defaults.listen);
        assert_eq!(config.data_dir, defaults.data_dir);
        assert_eq!(config.session.idle_timeout, defaults.session.idle_timeout);
        assert_eq!(config.allow_signup, defaults.allow_signup);
    }

    #[test]
    fn environment_overrides_top_level_and_section_keys() {
        let config = Config::load(
            None,
            env(&[
                ("FASTEN_LISTEN", "0.0.0.0:8080"),
                ("FASTEN_DATA_DIR", "/var/lib/fasten"),
                ("FASTEN_ALLOW_SIGNUP", "true"),
                ("FASTEN_SESSION_IDLE_TIMEOUT", "30m"),
                ("FASTEN_BASE_PATH", "fasten/"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/fasten"));
        assert!(config.allow_signup);
        assert_eq!(config.session.idle_timeout, Duration::from_secs(1800));
        assert_eq!(config.base_path, "/fasten");
    }

    #[test]
    fn unknown_or_malformed_environment_settings_are_errors() {
        let err = Config::load(None, env(&[("FASTEN_LISTN", "x")])).unwrap_err();
        assert!(format!("{err:#}").contains("FASTEN_LISTN"));
        let err = Config::load(None, env(&[("FASTEN_SESSION_NOPE", "1")])).unwrap_err();
        assert!(format!("{err:#}").contains("FASTEN_SESSION_NOPE"));
        let err = Config::load(None, env(&[("FASTEN_LISTEN", "not an address")])).unwrap_err();
        assert!(format!("{err:#}").contains("invalid setting"), "{err:#}");
    }
}
