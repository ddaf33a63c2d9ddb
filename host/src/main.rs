//! The `fasten` command: `serve` runs the web server; `user` manages accounts from a shell.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use fasten::auth::accounts::{self, NewAccount};
use fasten::config::{Config, LogFormat};
use fasten::import::ImportOptions;
use fasten::jobs::Trigger;
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
    /// user's records.
    Import {
        #[arg(long, value_name = "NAME")]
        user: String,
        /// How to read dates in a CSV that could be month/day or day/month.
        #[arg(long, value_enum)]
        dates: Option<DateOrderArg>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write every stored record of a user (to standard output unless --out is given).
    Export {
        #[arg(long, value_name = "NAME")]
        user: String,
        #[arg(long, value_enum, default_value = "ndjson")]
        format: ExportFormatArg,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Show the connector plugins, their versions, permissions and whether they loaded.
    Plugins {
        #[command(subcommand)]
        action: PluginsAction,
    },
    /// Manage accounts. Passwords are read from standard input, never from arguments.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormatArg {
    Ndjson,
    Bundle,
}

#[derive(Subcommand)]
enum PluginsAction {
    /// List every plugin with its status.
    List,
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
        Command::Import { user, dates, files } => {
            let options = ImportOptions {
                dates: dates.map(|d| d.as_str().to_string()),
            };
            runtime.block_on(import_command(config, &user, &options, &files))
        }
        Command::Export { user, format, out } => {
            runtime.block_on(export_command(config, &user, format, out.as_deref()))
        }
        Command::Plugins {
            action: PluginsAction::List,
        } => runtime.block_on(plugins_command(config)),
    }
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
        } => {
            let (password, confirmation) = read_new_password()?;
            let role = if admin { Role::Admin } else { Role::Member };
            let new = NewAccount {
                username: &username,
                display_name: &display_name,
                password: &password,
                password_confirmation: &confirmation,
                role,
            };
            let user = accounts::create(&db, new).await?;
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
    user: &str,
    options: &ImportOptions,
    files: &[PathBuf],
) -> anyhow::Result<()> {
    fasten::prepare_data_dir(&config.data_dir)?;
    let db = store::open(&config.database_path()).await?;
    let user = user_by_name(&db, user).await?;
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
            user.id,
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
                for warning in report.warnings {
                    println!("{name}: warning: {warning}");
                }
            }
            Err(e) => {
                eprintln!("{e}");
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
    user: &str,
    format: ExportFormatArg,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let db = store::open(&config.database_path()).await?;
    let user = user_by_name(&db, user).await?;
    let format = match format {
        ExportFormatArg::Ndjson => fasten::fhir::export::ExportFormat::Ndjson,
        ExportFormatArg::Bundle => fasten::fhir::export::ExportFormat::Bundle,
    };
    let count = match out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            fasten::fhir::export::export_user(&db, user.id, format, &mut writer).await?
        }
        None => {
            let mut writer = std::io::BufWriter::new(std::io::stdout());
            fasten::fhir::export::export_user(&db, user.id, format, &mut writer).await?
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
