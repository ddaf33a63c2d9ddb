//! The audit log: who did what that matters for the family's privacy, when, and from where.
//! Sign-ins, accounts, plugin approvals, sources, downloads of records, backups and sharing are
//! recorded; the administrator reads them on Admin → Activity.
//!
//! An event holds names and addresses only, never a password, token, key or record: what it
//! says about its subject is built here from plain fields, not from a request or an error text.

use std::net::IpAddr;

use serde::Serialize;
use sqlx::{SqliteExecutor, SqlitePool};

use crate::store::unix_now;
use crate::store::users::User;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SignedIn,
    SignInFailed,
    AccountCreated,
    AccountChanged,
    AccountDeleted,
    PluginApproved,
    PluginRevoked,
    SourceConnected,
    SourceDeleted,
    ExportDownloaded,
    SummaryDownloaded,
    BackupMade,
    BackupRestored,
    AccessGiven,
    AccessRevoked,
    ProviderAppSaved,
    ProviderAppRemoved,
    SigningKeysAdded,
    DirectoryListAdded,
    DirectoryListRemoved,
}

impl Action {
    /// The code stored in the table.
    pub fn code(self) -> &'static str {
        match self {
            Action::SignedIn => "sign-in",
            Action::SignInFailed => "sign-in-failed",
            Action::AccountCreated => "account-created",
            Action::AccountChanged => "account-changed",
            Action::AccountDeleted => "account-deleted",
            Action::PluginApproved => "plugin-approved",
            Action::PluginRevoked => "plugin-revoked",
            Action::SourceConnected => "source-connected",
            Action::SourceDeleted => "source-deleted",
            Action::ExportDownloaded => "export-downloaded",
            Action::SummaryDownloaded => "summary-downloaded",
            Action::BackupMade => "backup-made",
            Action::BackupRestored => "backup-restored",
            Action::AccessGiven => "access-given",
            Action::AccessRevoked => "access-revoked",
            Action::ProviderAppSaved => "provider-app-saved",
            Action::ProviderAppRemoved => "provider-app-removed",
            Action::SigningKeysAdded => "signing-keys-added",
            Action::DirectoryListAdded => "directory-list-added",
            Action::DirectoryListRemoved => "directory-list-removed",
        }
    }

    /// How the Activity page names it.
    pub fn label(code: &str) -> &'static str {
        match code {
            "sign-in" => "Signed in",
            "sign-in-failed" => "Failed sign-in",
            "account-created" => "Account created",
            "account-changed" => "Account changed",
            "account-deleted" => "Account deleted",
            "plugin-approved" => "Plugin approved",
            "plugin-revoked" => "Plugin turned off",
            "source-connected" => "Source connected",
            "source-deleted" => "Source deleted",
            "export-downloaded" => "Records downloaded",
            "summary-downloaded" => "Summary downloaded",
            "backup-made" => "Backup made",
            "backup-restored" => "Backup restored",
            "access-given" => "Access given",
            "access-revoked" => "Access taken back",
            "provider-app-saved" => "Provider app saved",
            "provider-app-removed" => "Provider app removed",
            "signing-keys-added" => "Signing keys added",
            "directory-list-added" => "Directory list added",
            "directory-list-removed" => "Directory list removed",
            _ => "Other",
        }
    }
}

/// Who did it and from where.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: Option<i64>,
    /// The account's username, or what a failed sign-in typed, or "command line".
    pub name: String,
    pub address: Option<IpAddr>,
}

impl Actor {
    /// A signed-in account, from the request's address.
    pub fn user(user: &User, address: IpAddr) -> Actor {
        Actor {
            user_id: Some(user.id),
            name: user.username.clone(),
            address: Some(address),
        }
    }

    /// Someone not signed in, such as a failed sign-in as `name` (an account's name, never
    /// what was typed: that may be a password in the wrong field).
    pub fn anonymous(name: &str, address: IpAddr) -> Actor {
        Actor {
            user_id: None,
            name: name.into(),
            address: Some(address),
        }
    }

    /// The `fasten` command, run by whoever runs the machine.
    pub fn command_line() -> Actor {
        Actor {
            user_id: None,
            name: "command line".into(),
            address: None,
        }
    }

    /// Fasten itself, on its schedule.
    pub fn schedule() -> Actor {
        Actor {
            user_id: None,
            name: "Fasten (schedule)".into(),
            address: None,
        }
    }
}

/// Records an event. A failure to record is logged, never shown to the person acting: the log
/// must not turn a sign-in into an error page.
pub async fn record(db: impl SqliteExecutor<'_>, actor: &Actor, action: Action, subject: &str) {
    let result = sqlx::query(
        "INSERT INTO audit_events (at, user_id, actor, action, subject, address)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(unix_now())
    .bind(actor.user_id)
    .bind(&actor.name)
    .bind(action.code())
    .bind(subject)
    .bind(actor.address.map(|a| a.to_string()))
    .execute(db)
    .await;
    if let Err(e) = result {
        tracing::error!(action = action.code(), error = %e, "cannot write to the audit log");
    }
}

/// An event as the Activity page shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EventView {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub address: Option<String>,
    #[sqlx(skip)]
    pub label: &'static str,
}

/// Events newest first, `limit` of them, older than event `before` when given.
pub async fn list(
    db: &SqlitePool,
    limit: i64,
    before: Option<i64>,
) -> sqlx::Result<Vec<EventView>> {
    let mut events: Vec<EventView> = sqlx::query_as(
        "SELECT id, at, actor, action, subject, address FROM audit_events
         WHERE id < ? ORDER BY id DESC LIMIT ?",
    )
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(db)
    .await?;
    for event in &mut events {
        event.label = Action::label(&event.action);
    }
    Ok(events)
}

/// Removes events older than `keep` (zero keeps them all). Answers how many went.
pub async fn purge(db: &SqlitePool, keep: std::time::Duration) -> sqlx::Result<u64> {
    if keep.is_zero() {
        return Ok(0);
    }
    let cutoff = unix_now() - keep.as_secs() as i64;
    Ok(sqlx::query("DELETE FROM audit_events WHERE at < ?")
        .bind(cutoff)
        .execute(db)
        .await?
        .rows_affected())
}
