//! The `fasten` command: `serve` runs the web server; `user` and `person` manage accounts and
//! people from a shell; `import` and `export` move a person's records.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use fasten::audit::{self, Action, Actor};
use fasten::auth::accounts::{self, NewAccount};
use fasten::config::{Config, LogFormat};
use fasten::import::ImportOptions;
use fasten::jobs::Trigger;
use fasten::store::people::{self, Level, Person};
use fasten::store::{self, users::Role};

#[derive(Parser)]
#[command(
    name = "fasten",
    version,
    about = "Fasten On-Prem: your family's medical records, on your own machine"
)]
struct Cli {
    /// Configuration file (default: ./config.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web server.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:9090 (overrides config and FASTEN_LISTEN).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Development mode: read templates from the source tree and reload them on change.
        #[arg(long)]
        dev: bool,
    },
    /// Import files (FHIR Bundles and NDJSON, lab CSVs, Apple Health exports, emails) into a
    /// person's records (--person SLUG, or --user NAME for that account's own person).
    Import {
        #[command(flatten)]
        whose: Whose,
        /// Import even when a file's patient is clearly someone else than the person's.
        #[arg(long)]
        anyway: bool,
        /// How to read dates in a CSV that could be month/day or day/month.
        #[arg(long, value_enum)]
        dates: Option<DateOrderArg>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write every stored record of a person (to standard output unless --out is given).
    Export {
        #[command(flatten)]
        whose: Whose,
        #[arg(long, value_enum, default_value = "ndjson")]
        format: ExportFormatArg,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Connector plugins: list them; check, install, approve or revoke one.
    #[command(alias = "plugins")]
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Manage accounts. Passwords are read from standard input, never from arguments.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Manage the people whose records Fasten keeps, and who may see them.
    Person {
        #[command(subcommand)]
        action: PersonAction,
    },
    /// Write a backup of everything Fasten keeps into one file. Safe while the server runs.
    Backup {
        /// Where to write it (default: fasten-backup-TIME.tar in the current folder).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Put the secret key in the backup too, and encrypt the whole file with a passphrase
        /// read from standard input.
        #[arg(long)]
        with_key: bool,
    },
    /// The provider directory: download the vendors' published endpoint lists now.
    Directory {
        #[command(subcommand)]
        action: DirectoryAction,
    },
    /// Restore a backup into the data folder, which must be new or empty.
    Restore {
        file: PathBuf,
        /// The secret key file kept with a backup made without --with-key.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
}

/// Whose records: a person by short name, or an account's own person.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct Whose {
    /// The person's short name (as in /people/SLUG/).
    #[arg(long, value_name = "SLUG")]
    person: Option<String>,
    /// An account: its own person.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
}

#[derive(Subcommand)]
enum PersonAction {
    /// Add a person who does not sign in (a child, a parent), managed by an account.
    Add {
        slug: String,
        /// The account that manages them.
        #[arg(long, value_name = "USERNAME")]
        owner: String,
        #[arg(long, default_value = "")]
        name: String,
        /// YYYY-MM-DD.
        #[arg(long, value_name = "DATE")]
        birth_date: Option<String>,
    },
    /// List people (with --user: those that account may see, and how).
    List {
        #[arg(long, value_name = "USERNAME")]
        user: Option<String>,
    },
    /// Let an account see (--view) or also change (--manage) a person's records.
    Share {
        slug: String,
        username: String,
        #[arg(long, conflicts_with = "manage", required_unless_present = "manage")]
        view: bool,
        #[arg(long)]
        manage: bool,
    },
    /// Take an account's access to a person away.
    Unshare { slug: String, username: String },
}

#[derive(Subcommand)]
enum DirectoryAction {
    /// Download every list in the directory's sources (or one, with --source) and replace what
    /// is held; a list that fails keeps the previous one and says why. Safe while the server
    /// runs.
    Refresh {
        /// Only this source (its id in directory.toml, or `added-<n>` for a list added on Admin →
        /// Provider directory).
        #[arg(long, value_name = "ID")]
        source: Option<String>,
        /// Take a list even when its size changed by more than a fifth since the last download.
        #[arg(long)]
        accept_count_change: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormatArg {
    Ndjson,
    Bundle,
}

#[derive(Subcommand)]
enum PluginAction {
    /// List every plugin with its version, permissions and whether it loaded.
    List,
    /// Create a new connector crate built on the fasten-connector SDK: an example that imports
    /// a CSV of date,weight_kg rows, a sample file, native tests, and its plugin.toml.
    New {
        /// The plugin's id and crate name: lower-case letters, digits and '-'.
        name: String,
        /// Where to create its folder (default: here).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// Whether it imports files or syncs from an address.
        #[arg(long, value_enum, default_value = "file")]
        kind: ScaffoldKindArg,
        /// The SDK folder to depend on (default: the plugins/sdk of the checkout Fasten was
        /// built from, else the published version).
        #[arg(long, value_name = "DIR")]
        sdk: Option<PathBuf>,
    },
    /// Load a component exactly as the server would (WIT version, imports and exports,
    /// `describe`, limits) and cross-check its manifest. Prints its sha256, and a ready
    /// plugin.toml when given none; exits non-zero with the reason on any problem.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
        /// Its plugin.toml.
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// Record the component's sha256 in the manifest (after a new build) instead of
        /// refusing a missing or different one; everything else is still checked.
        #[arg(long, requires = "manifest")]
        write_sha256: bool,
    },
    /// Copy a checked plugin (a folder with plugin.toml and its component, or a .wasm with
    /// --manifest) into the plugin registry, where it waits for an administrator's approval.
    Install {
        path: PathBuf,
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
    },
    /// Let a dropped-in plugin run, with the hosts its manifest asks for (what Admin →
    /// Plugins → Enable does).
    Approve { id: String },
    /// Stop a dropped-in plugin from running (what Admin → Plugins → Disable does).
    Revoke { id: String },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ScaffoldKindArg {
    File,
    Sync,
}

#[derive(Subcommand)]
enum UserAction {
    /// Create an account.
    Add {
        username: String,
        /// Make the account an administrator.
        #[arg(long)]
        admin: bool,
        /// Name shown in the pages (default: the username).
        #[arg(long, default_value = "")]
        display_name: String,
        /// Give the account to an existing person (a child grown up) instead of a new one.
        #[arg(long, value_name = "SLUG")]
        person: Option<String>,
    },
    /// Set a new password for an account and sign it out everywhere.
    ResetPassword { username: String },
    /// List accounts.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::load(cli.config.as_deref(), std::env::vars())?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve { listen, dev } => {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            config.dev = dev;
            init_tracing(&config)?;
            runtime.block_on(serve(config))
        }
        Command::User { action } => runtime.block_on(user_command(config, action)),
        Command::Person { action } => runtime.block_on(person_command(config, action)),
        Command::Import {
            whose,
            anyway,
            dates,
            files,
        } => {
            let options = ImportOptions {
                dates: dates.map(|d| d.as_str().to_string()),
                anyway,
                ..ImportOptions::default()
            };
            runtime.block_on(import_command(config, &whose, &options, &files))
        }
        Command::Export { whose, format, out } => {
            runtime.block_on(export_command(config, &whose, format, out.as_deref()))
        }
        Command::Plugin { action } => match action {
            PluginAction::List => runtime.block_on(plugins_command(config)),
            PluginAction::New {
                name,
                dir,
                kind,
                sdk,
            } => plugin_new_command(&name, &dir, kind, sdk),
            PluginAction::Check {
                file,
                manifest,
                write_sha256,
            } => runtime.block_on(plugin_check_command(
                &config,
                &file,
                manifest.as_deref(),
                write_sha256,
            )),
            PluginAction::Install { path, manifest } => {
                runtime.block_on(plugin_install_command(&config, &path, manifest.as_deref()))
            }
            PluginAction::Approve { id } => {
                runtime.block_on(plugin_decide_command(config, &id, true))
            }
            PluginAction::Revoke { id } => {
                runtime.block_on(plugin_decide_command(config, &id, false))
            }
        },
        Command::Backup { out, with_key } => {
            runtime.block_on(backup_command(config, out.as_deref(), with_key))
        }
        Command::Directory {
            action:
                DirectoryAction::Refresh {
                    source,
                    accept_count_change,
                },
        } => runtime.block_on(directory_refresh_command(
            config,
            source.as_deref(),
            accept_count_change,
        )),
        Command::Restore { file, key } => {
            runtime.block_on(restore_command(&config, &file, key.as_deref()))
        }
    }
}

async fn directory_refresh_command(
    config: Config,
    only: Option<&str>,
    accept_count_change: bool,
) -> anyhow::Result<()> {
    use fasten::directory::{Sources, refresh};
    fasten::prepare_data_dir(&config.data_dir)?;
    let db = store::open(&config.database_path()).await?;
    let catalog = fasten::catalog::Catalog::from_registry(&config.plugins.registry_dir)?;
    let file = &config.directory.file;
    let mut sources = Sources::load(
        (!file.as_os_str().is_empty()).then_some(file.as_path()),
        &config.plugins.registry_dir,
        &catalog,
    )?
    // And the lists an administrator added on Admin → Provider directory.
    .with(fasten::directory::added::list(&db).await?);
    if let Some(id) = only {
        sources = sources.only(id).with_context(|| {
            format!(
                "there is no directory source {id:?} (see directory.toml and Admin → Provider \
                 directory)"
            )
        })?;
    }
    let settings = refresh::Settings {
        db,
        // The server's own policy, without the plugin host and its compiler.
        gate: fasten::plugins::http::HttpGate {
            grant: fasten::plugins::grants::NetworkGrant {
                allowed: sources.origins(),
            },
            bearer: None,
            clients: fasten::plugins::http::Clients::new(fasten::plugins::http::NetworkPolicy {
                allow_http_loopback: config.plugins.allow_http_loopback,
                allow_private_networks: config.plugins.allow_private_networks,
            }),
            stats: Default::default(),
        },
        spool_dir: config.data_dir.join("spool"),
        max_bytes: config.directory.max_bytes,
        accept_count_change,
    };
    let mut failed = 0;
    for outcome in refresh::refresh_all(&settings, &sources, refresh::Trigger::Cli).await {
        match outcome.result {
            Ok(counts) => println!(
                "{}: stored {} organisations, {} sign-ins.",
                outcome.source, counts.entries, counts.choices
            ),
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e}", outcome.source);
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of the directory's lists kept their previous version");
    }
    Ok(())
}

async fn backup_command(
    config: Config,
    out: Option<&std::path::Path>,
    with_key: bool,
) -> anyhow::Result<()> {
    fasten::prepare_data_dir(&config.data_dir)?;
    let key = fasten::secrets::SecretKey::load_or_create(
        &config.data_dir,
        std::env::var("FASTEN_SECRET_KEY").ok().as_deref(),
    )?;
    let passphrase = if with_key {
        Some(read_passphrase(true)?)
    } else {
        None
    };
    let db = store::open(&config.database_path()).await?;
    let out = match out {
        Some(path) => path.to_path_buf(),
        None => PathBuf::from(fasten::backup::file_name(store::unix_now(), with_key)),
    };
    let protection = passphrase
        .as_deref()
        .map(|passphrase| fasten::backup::WithKey {
            key: &key,
            passphrase,
        });
    let backup = fasten::backup::run(&db, &key.fingerprint(), &out, protection, "cli").await?;
    println!(
        "Wrote {} ({} records of {} people, {} MiB).",
        out.display(),
        backup.manifest.records(),
        backup.manifest.people.len(),
        backup.bytes >> 20
    );
    if !with_key {
        let key_place = if std::env::var_os("FASTEN_SECRET_KEY").is_some() {
            "the FASTEN_SECRET_KEY setting".to_string()
        } else {
            config
                .data_dir
                .join(fasten::secrets::KEY_FILE)
                .display()
                .to_string()
        };
        println!(
            "The secret key is not in this backup: keep a copy of {key_place} apart from it, or \
             the stored connections cannot be used after a restore."
        );
    }
    Ok(())
}

async fn restore_command(
    config: &Config,
    file: &std::path::Path,
    key: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    fasten::files::private_by_default();
    let key = match (key, std::env::var("FASTEN_SECRET_KEY").ok()) {
        (Some(path), _) => fasten::backup::KeySource::File(fasten::secrets::SecretKey::read(path)?),
        (None, Some(encoded)) => fasten::backup::KeySource::Environment(
            fasten::secrets::SecretKey::from_file_text(&encoded)
                .context("FASTEN_SECRET_KEY is not valid")?,
        ),
        (None, None) => fasten::backup::KeySource::None,
    };
    let passphrase = if fasten::backup::is_encrypted(file)? {
        Some(read_passphrase(false)?)
    } else {
        None
    };
    let manifest = fasten::backup::restore(file, &config.data_dir, passphrase.as_deref(), key)?;
    // The restored database keeps the record of its own restore.
    let db = store::open(&config.database_path()).await?;
    let subject = format!(
        "{} (made {})",
        file.display(),
        fasten::web::render::datetime_filter(manifest.created_at)
    );
    audit::record(
        &db,
        &Actor::command_line(),
        Action::BackupRestored,
        &subject,
    )
    .await;
    db.close().await;
    println!(
        "Restored {} records of {} people and {} accounts into {}, as they were at {}.",
        manifest.records(),
        manifest.people.len(),
        manifest.accounts,
        config.data_dir.display(),
        fasten::web::render::datetime_filter(manifest.created_at)
    );
    Ok(())
}

/// A backup's passphrase. From a terminal: asked without echo (twice when it is new). From a
/// pipe: the first line.
fn read_passphrase(new: bool) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password("Passphrase: ").context("cannot read the passphrase")?;
        if new {
            let second =
                rpassword::prompt_password("Repeat it: ").context("cannot read the passphrase")?;
            if first != second {
                bail!("the two passphrases differ; nothing was written");
            }
        }
        if first.is_empty() {
            bail!("the passphrase is empty");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the passphrase from standard input")?;
    let passphrase = line.trim_end_matches(['\r', '\n']).to_string();
    if passphrase.is_empty() {
        bail!(
            "no passphrase on standard input (pipe it in, e.g. `printf '%s\\n' \"$PASSPHRASE\" | fasten backup --with-key`)"
        );
    }
    Ok(passphrase)
}

fn init_tracing(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("invalid log_level {:?}", config.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = fasten::Server::bind(config).await?;
    let state = server.state();
    tracing::info!(
        url = %format!("http://{}{}/", server.local_addr(), state.config.base_path),
        data_dir = %state.config.data_dir.display(),
        version = env!("CARGO_PKG_VERSION"),
        "Fasten is running"
    );
    server.run(shutdown_signal()).await?;
    tracing::info!("Fasten stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down; letting open requests finish");
}

async fn user_command(config: Config, action: UserAction) -> anyhow::Result<()> {
    fasten::prepare_data_dir(&config.data_dir)?;
    let db = store::open(&config.database_path()).await?;
    match action {
        UserAction::Add {
            username,
            admin,
            display_name,
            person,
        } => {
            let (password, confirmation) = read_new_password()?;
            let role = if admin { Role::Admin } else { Role::Member };
            let new = NewAccount {
                username: &username,
                display_name: &display_name,
                password: &password,
                password_confirmation: &confirmation,
                role,
                person: person.as_deref(),
            };
            let user = accounts::create(&db, new).await?;
            let subject = format!(
                "{} ({})",
                user.username,
                if user.is_admin() {
                    "administrator"
                } else {
                    "member"
                }
            );
            audit::record(
                &db,
                &Actor::command_line(),
                Action::AccountCreated,
                &subject,
            )
            .await;
            println!(
                "created {} account {:?}",
                if user.is_admin() {
                    "administrator"
                } else {
                    "member"
                },
                user.username
            );
        }
        UserAction::ResetPassword { username } => {
            let Some(user) = store::users::by_username(&db, &username).await? else {
                bail!("no account named {username:?}");
            };
            let (password, confirmation) = read_new_password()?;
            accounts::reset_password(&db, user.id, &password, &confirmation).await?;
            let subject = format!("{}: password reset", user.username);
            audit::record(
                &db,
                &Actor::command_line(),
                Action::AccountChanged,
                &subject,
            )
            .await;
            println!(
                "password of {:?} changed; it was signed out everywhere",
                user.username
            );
        }
        UserAction::List => {
            for user in store::users::list(&db).await? {
                let role = if user.is_admin() { "admin" } else { "member" };
                let status = if user.disabled { " (disabled)" } else { "" };
                println!("{}\t{}\t{role}{status}", user.username, user.display_name);
            }
        }
    }
    Ok(())
}

async fn user_by_name(db: &sqlx::SqlitePool, name: &str) -> anyhow::Result<store::users::User> {
    store::users::by_username(db, name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no account named {name:?}"))
}

async fn person_by_slug(db: &sqlx::SqlitePool, slug: &str) -> anyhow::Result<Person> {
    people::by_slug(db, slug)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no person {slug:?} (see `fasten person list`)"))
}

/// The person `--person` names, or the own person of the account `--user` names.
async fn whose_records(db: &sqlx::SqlitePool, whose: &Whose) -> anyhow::Result<Person> {
    match (&whose.person, &whose.user) {
        (Some(slug), _) => person_by_slug(db, slug).await,
        (None, Some(name)) => {
            let user = user_by_name(db, name).await?;
            people::by_id(db, user.person_id)
                .await?
                .context("the account has no person")
        }
        (None, None) => bail!("say whose records: --person SLUG or --user NAME"),
    }
}

async fn person_command(config: Config, action: PersonAction) -> anyhow::Result<()> {
    fasten::prepare_data_dir(&config.data_dir)?;
    let db = store::open(&config.database_path()).await?;
    match action {
        PersonAction::Add {
            slug,
            owner,
            name,
            birth_date,
        } => {
            let owner = user_by_name(&db, &owner).await?;
            let mut conn = db.acquire().await?;
            let person = people::create(
                &mut conn,
                &slug,
                &name,
                birth_date.as_deref(),
                Some(owner.id),
            )
            .await?;
            println!(
                "added {:?} ({}), managed by {:?}",
                person.slug, person.name, owner.username
            );
        }
        PersonAction::List { user: Some(name) } => {
            let user = user_by_name(&db, &name).await?;
            for v in people::visible_to(&db, user.id).await? {
                let own = if v.own { " (own)" } else { "" };
                println!(
                    "{}\t{}\t{}\t{}{own}",
                    v.person.slug,
                    v.person.name,
                    v.person.birth_date.as_deref().unwrap_or("-"),
                    v.level.as_str()
                );
            }
        }
        PersonAction::List { user: None } => {
            for person in people::list(&db).await? {
                let who: Vec<String> = people::grants(&db, person.id)
                    .await?
                    .into_iter()
                    .map(|g| format!("{}:{}", g.username, g.level.as_str()))
                    .collect();
                println!(
                    "{}\t{}\t{}\t{}",
                    person.slug,
                    person.name,
                    person.birth_date.as_deref().unwrap_or("-"),
                    who.join(" ")
                );
            }
        }
        PersonAction::Share {
            slug,
            username,
            view: _,
            manage,
        } => {
            let person = person_by_slug(&db, &slug).await?;
            let user = user_by_name(&db, &username).await?;
            let level = if manage { Level::Manage } else { Level::View };
            people::grant(&db, person.id, user.id, level, None).await?;
            let subject = format!(
                "{} may {} {}'s records",
                user.username,
                level.as_str(),
                person.slug
            );
            audit::record(&db, &Actor::command_line(), Action::AccessGiven, &subject).await;
            println!(
                "{:?} can now {} {:?}'s records",
                user.username,
                if manage { "see and change" } else { "see" },
                person.slug
            );
        }
        PersonAction::Unshare { slug, username } => {
            let person = person_by_slug(&db, &slug).await?;
            let user = user_by_name(&db, &username).await?;
            if !people::revoke(&db, person.id, user.id).await? {
                bail!(
                    "{:?} had no access to take away, or {:?} is their own person",
                    user.username,
                    person.slug
                );
            }
            let subject = format!("{} no longer sees {}'s records", user.username, person.slug);
            audit::record(&db, &Actor::command_line(), Action::AccessRevoked, &subject).await;
            println!(
                "{:?} can no longer see {:?}'s records",
                user.username, person.slug
            );
        }
    }
    Ok(())
}

/// `--dates`: the order of a CSV's dates.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DateOrderArg {
    /// Year-month-day (2024-03-05).
    Ymd,
    /// Month/day/year, as in the US (03/05/2024 is March 5).
    Mdy,
    /// Day/month/year, as in most of Europe (05/03/2024 is March 5).
    Dmy,
}

impl DateOrderArg {
    fn as_str(self) -> &'static str {
        match self {
            DateOrderArg::Ymd => "ymd",
            DateOrderArg::Mdy => "mdy",
            DateOrderArg::Dmy => "dmy",
        }
    }
}

async fn import_command(
    config: Config,
    whose: &Whose,
    options: &ImportOptions,
    files: &[PathBuf],
) -> anyhow::Result<()> {
    fasten::prepare_data_dir(&config.data_dir)?;
    let db = store::open(&config.database_path()).await?;
    let person = whose_records(&db, whose).await?;
    // The command line acts for the machine's operator: a family's file is split between
    // everyone Fasten keeps records for.
    let mut options = options.clone();
    options.family = people::list(&db).await?.iter().map(|p| p.id).collect();
    let options = &options;
    let plugins = fasten::open_plugins(&config, &db).await?;
    let mut failed = 0;
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| path.display().to_string());
        let size = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        if size > config.limits.upload_bytes {
            eprintln!(
                "{name}: the file is {size} bytes, over the limit of {} bytes. Nothing was stored.",
                config.limits.upload_bytes
            );
            failed += 1;
            continue;
        }
        match fasten::import::import_file(
            &db,
            &plugins,
            person.id,
            path,
            &name,
            Trigger::Cli,
            options,
        )
        .await
        {
            Ok(report) => {
                println!(
                    "{name}: {} added, {} updated, {} unchanged (job #{})",
                    report.counts.added,
                    report.counts.updated,
                    report.counts.unchanged,
                    report.job_id
                );
                for part in &report.parts {
                    println!(
                        "{name}: {} went to {} ({}): {} added, {} updated, {} unchanged",
                        part.patient,
                        part.person_name,
                        part.person_slug,
                        part.counts.added,
                        part.counts.updated,
                        part.counts.unchanged
                    );
                }
                for warning in report.warnings {
                    println!("{name}: warning: {warning}");
                }
            }
            Err(e) => {
                eprintln!("{e}");
                if matches!(e, fasten::import::ImportError::OtherPatient(_)) {
                    eprintln!(
                        "{name}: to add it to {} all the same, run the import again with --anyway",
                        person.slug
                    );
                }
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} files could not be imported", files.len());
    }
    Ok(())
}

async fn export_command(
    config: Config,
    whose: &Whose,
    format: ExportFormatArg,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let db = store::open(&config.database_path()).await?;
    let person = whose_records(&db, whose).await?;
    let format = match format {
        ExportFormatArg::Ndjson => fasten::fhir::export::ExportFormat::Ndjson,
        ExportFormatArg::Bundle => fasten::fhir::export::ExportFormat::Bundle,
    };
    let count = match out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            fasten::fhir::export::export_person(&db, person.id, format, &mut writer).await?
        }
        None => {
            let mut writer = std::io::BufWriter::new(std::io::stdout());
            fasten::fhir::export::export_person(&db, person.id, format, &mut writer).await?
        }
    };
    eprintln!("exported {count} resources");
    Ok(())
}

async fn plugins_command(config: Config) -> anyhow::Result<()> {
    fasten::prepare_data_dir(&config.data_dir)?;
    let db = store::open(&config.database_path()).await?;
    let plugins = fasten::open_plugins(&config, &db).await?;
    println!("ID\tVERSION\tORIGIN\tSTATUS\tALLOWED HOSTS\tLIMITS\tERROR");
    for p in plugins.list() {
        let origin = serde_json::to_value(p.origin)?;
        let status = serde_json::to_value(p.status)?;
        println!(
            "{}\t{}\t{}\t{}\t{}\t{} MiB, {} s\t{}",
            p.id,
            p.version,
            origin.as_str().unwrap_or(""),
            status.as_str().unwrap_or(""),
            if p.requested_hosts.is_empty() {
                "none".to_string()
            } else {
                p.requested_hosts.join(" ")
            },
            p.memory_mib,
            p.run_seconds,
            p.error.unwrap_or_default()
        );
    }
    Ok(())
}

/// A plugin as `plugin check` and `plugin install` are given it: a folder holding plugin.toml
/// and the component it names, or a component with `--manifest` (or, for `check`, without).
struct PluginFiles {
    component: PathBuf,
    bytes: Vec<u8>,
    /// The manifest and the file it was read from.
    manifest: Option<(fasten::plugins::manifest::Manifest, PathBuf)>,
}

fn plugin_files(
    path: &std::path::Path,
    manifest: Option<&std::path::Path>,
) -> anyhow::Result<PluginFiles> {
    use fasten::plugins::manifest::Manifest;
    let manifest_path = match manifest {
        Some(manifest) => Some(manifest.to_path_buf()),
        None if path.is_dir() => Some(path.join("plugin.toml")),
        None => None,
    };
    let manifest = manifest_path
        .map(|p| Manifest::load(&p).map(|m| (m, p)))
        .transpose()?;
    let component = match (&manifest, path.is_dir()) {
        (Some((manifest, _)), true) => manifest.artifact_path(path),
        _ => path.to_path_buf(),
    };
    let bytes = std::fs::read(&component)
        .with_context(|| format!("cannot read the component {}", component.display()))?;
    Ok(PluginFiles {
        component,
        bytes,
        manifest,
    })
}

fn plugin_new_command(
    name: &str,
    dir: &std::path::Path,
    kind: ScaffoldKindArg,
    sdk: Option<PathBuf>,
) -> anyhow::Result<()> {
    use fasten::scaffold::{self, Kind, Sdk};
    let sdk = match sdk {
        Some(path) => Sdk::Path(
            std::path::absolute(&path)
                .with_context(|| format!("cannot resolve {}", path.display()))?,
        ),
        None => Sdk::default_for_this_build(),
    };
    let kind = match kind {
        ScaffoldKindArg::File => Kind::File,
        ScaffoldKindArg::Sync => Kind::Sync,
    };
    let folder = scaffold::create(dir, name, kind, &sdk)?;
    println!("Created the connector {name} in {}.", folder.display());
    if let Sdk::Version(version) = &sdk {
        println!(
            "It depends on fasten-connector {version} from crates.io; to build against a Fasten checkout instead, pass --sdk PATH/TO/fasten/plugins/sdk."
        );
    }
    println!(
        "Next, in that folder: cargo test; cargo build --release --target wasm32-wasip2; fasten plugin check target/wasm32-wasip2/release/{} --manifest plugin.toml --write-sha256; fasten plugin install .",
        scaffold::artifact_name(name)
    );
    Ok(())
}

async fn plugin_check_command(
    config: &Config,
    path: &std::path::Path,
    manifest: Option<&std::path::Path>,
    write_sha256: bool,
) -> anyhow::Result<()> {
    let mut files = plugin_files(path, manifest)?;
    // Compiled into a folder of its own, so checking leaves nothing in the data folder.
    let cache = tempfile::tempdir().context("cannot create a temporary folder")?;
    let host = fasten::plugin_checker(config, cache.path().to_path_buf())?;
    if write_sha256 && let Some((manifest, manifest_path)) = &mut files.manifest {
        // Checked as it would be once written; the file is written only if the check passes.
        manifest.sha256 = Some(fasten::plugins::sha256_hex(&files.bytes));
        let checked = host.check(files.bytes.clone(), Some(manifest)).await?;
        let text = std::fs::read_to_string(&*manifest_path)
            .with_context(|| format!("cannot read {}", manifest_path.display()))?;
        let updated = fasten::plugins::manifest::with_sha256(&text, &checked.sha256)?;
        if updated != text {
            std::fs::write(&*manifest_path, updated)
                .with_context(|| format!("cannot write {}", manifest_path.display()))?;
            println!("Recorded the new sha256 in {}.", manifest_path.display());
        }
    }
    let manifest = files.manifest.as_ref().map(|(m, _)| m);
    let checked = host.check(files.bytes, manifest).await?;
    println!(
        "ok: {} {} ({}){}",
        checked.info.id,
        checked.info.version,
        checked.kind(),
        if checked.info.file_types.is_empty() {
            String::new()
        } else {
            format!(", imports {}", checked.file_endings())
        }
    );
    println!("sha256 = \"{}\"", checked.sha256);
    if manifest.is_none() {
        let artifact = files
            .component
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin.wasm".into());
        println!("\nA plugin.toml for it (name the hosts it must reach):\n");
        print!("{}", checked.suggested_manifest(&artifact));
    }
    Ok(())
}

async fn plugin_install_command(
    config: &Config,
    path: &std::path::Path,
    manifest: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let files = plugin_files(path, manifest)?;
    let (manifest, manifest_path) = files.manifest.context(
        "a plugin is installed with its plugin.toml: give a folder holding both, or --manifest FILE",
    )?;
    let cache = tempfile::tempdir().context("cannot create a temporary folder")?;
    let host = fasten::plugin_checker(config, cache.path().to_path_buf())?;
    host.check(files.bytes.clone(), Some(&manifest)).await?;
    let folder = config.plugins.registry_dir.join(&manifest.id);
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    // The component goes beside its manifest, whatever folder it was built in.
    let artifact_file = files
        .component
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("{}.wasm", manifest.id));
    let source_dir = manifest_path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let installed = fasten::plugins::manifest::installed(&text, &artifact_file, &source_dir)?;
    // The component first: a server that sees the new manifest finds the component it names.
    std::fs::write(folder.join(&artifact_file), &files.bytes)
        .with_context(|| format!("cannot write into {}", folder.display()))?;
    std::fs::write(folder.join("plugin.toml"), installed)
        .with_context(|| format!("cannot write into {}", folder.display()))?;
    println!(
        "Installed {} {} into {}. It runs once an administrator approves it: Admin → Plugins, or `fasten plugin approve {}`.",
        manifest.id,
        manifest.version,
        folder.display(),
        manifest.id
    );
    println!("{}", hosts_line(&manifest.capabilities.allowed_hosts));
    Ok(())
}

/// What a plugin may reach, as a sentence.
fn hosts_line(hosts: &[String]) -> String {
    if hosts.is_empty() {
        "It asks to reach no host: it only reads the files it is given.".into()
    } else {
        format!("It asks to reach: {}.", hosts.join(", "))
    }
}

async fn plugin_decide_command(config: Config, id: &str, enable: bool) -> anyhow::Result<()> {
    fasten::prepare_data_dir(&config.data_dir)?;
    let db = store::open(&config.database_path()).await?;
    let plugins = fasten::open_plugins(&config, &db).await?;
    let Some(view) = plugins.list().into_iter().find(|p| p.id == id) else {
        bail!(
            "there is no plugin {id:?} in {}",
            config.plugins.registry_dir.display()
        );
    };
    plugins.decide(&db, id, enable, None).await?;
    let action = if enable {
        Action::PluginApproved
    } else {
        Action::PluginRevoked
    };
    audit::record(&db, &Actor::command_line(), action, id).await;
    if enable {
        println!(
            "Approved {} {}: it runs from now on.",
            view.id, view.version
        );
        println!("{}", hosts_line(&view.requested_hosts));
    } else {
        println!("Revoked {} {}: it no longer runs.", view.id, view.version);
    }
    let after = plugins.list().into_iter().find(|p| p.id == id);
    if let Some(error) = after.and_then(|p| p.error) {
        println!("Note: {error}");
    }
    Ok(())
}

/// From a terminal: asks twice without echo. From a pipe: the first line is the password.
fn read_new_password() -> anyhow::Result<(String, String)> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New password: ").context("cannot read password")?;
        let second = rpassword::prompt_password("Repeat it: ").context("cannot read password")?;
        return Ok((first, second));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!(
            "no password on standard input (pipe it in, e.g. `printf '%s\\n' \"$PW\" | fasten user add NAME`)"
        );
    }
    Ok((password.clone(), password))
}
