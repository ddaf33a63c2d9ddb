//! The `users` table: family members who sign in. Role changes, disabling and deletion are single
//! SQL statements guarded so that the last enabled administrator can never be removed, even when
//! two admins act at the same moment.

use serde::Serialize;
use sqlx::{FromRow, SqliteExecutor};

use super::unix_now;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: i64,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Why a change to a user was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserChangeError {
    #[error("that username is already taken")]
    UsernameTaken,
    #[error("no such user")]
    NotFound,
    #[error("the last administrator cannot be removed, disabled or made a member")]
    LastAdmin,
    #[error(transparent)]
    Database(#[from] DbError),
}

/// A database failure, kept opaque so that callers cannot match on SQL details.
#[derive(Debug, thiserror::Error)]
#[error("database error: {0}")]
pub struct DbError(#[from] pub sqlx::Error);

impl PartialEq for DbError {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}
impl Eq for DbError {}

const USER_COLUMNS: &str = "id, username, display_name, password_hash, role, disabled, created_at";

/// True while no account exists: the first-run wizard is open.
pub async fn none_exist(db: impl SqliteExecutor<'_>) -> sqlx::Result<bool> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(db)
        .await?;
    Ok(count == 0)
}

pub async fn create(
    db: impl SqliteExecutor<'_>,
    username: &str,
    display_name: &str,
    password_hash: &str,
    role: Role,
) -> Result<User, UserChangeError> {
    let now = unix_now();
    let result = sqlx::query_as::<_, User>(&format!(
        "INSERT INTO users (username, display_name, password_hash, role, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?) RETURNING {USER_COLUMNS}"
    ))
    .bind(username)
    .bind(display_name)
    .bind(password_hash)
    .bind(role)
    .bind(now)
    .bind(now)
    .fetch_one(db)
    .await;
    match result {
        Ok(user) => Ok(user),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(UserChangeError::UsernameTaken)
        }
        Err(e) => Err(DbError(e).into()),
    }
}

/// Creates the first administrator, but only while no user exists: two browsers finishing the
/// first-run wizard at once cannot both become admin.
pub async fn create_first_admin(
    db: impl SqliteExecutor<'_>,
    username: &str,
    display_name: &str,
    password_hash: &str,
) -> sqlx::Result<Option<User>> {
    let now = unix_now();
    sqlx::query_as::<_, User>(&format!(
        "INSERT INTO users (username, display_name, password_hash, role, created_at, updated_at)
         SELECT ?, ?, ?, 'admin', ?, ? WHERE NOT EXISTS (SELECT 1 FROM users)
         RETURNING {USER_COLUMNS}"
    ))
    .bind(username)
    .bind(display_name)
    .bind(password_hash)
    .bind(now)
    .bind(now)
    .fetch_optional(db)
    .await
}

pub async fn by_id(db: impl SqliteExecutor<'_>, id: i64) -> sqlx::Result<Option<User>> {
    sqlx::query_as::<_, User>(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"))
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn by_username(
    db: impl SqliteExecutor<'_>,
    username: &str,
) -> sqlx::Result<Option<User>> {
    sqlx::query_as::<_, User>(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username = ?"
    ))
    .bind(username)
    .fetch_optional(db)
    .await
}

pub async fn list(db: impl SqliteExecutor<'_>) -> sqlx::Result<Vec<User>> {
    sqlx::query_as::<_, User>(&format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY username COLLATE NOCASE"
    ))
    .fetch_all(db)
    .await
}

pub async fn set_password_hash(
    db: impl SqliteExecutor<'_>,
    id: i64,
    password_hash: &str,
) -> Result<(), UserChangeError> {
    let done = sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?")
        .bind(password_hash)
        .bind(unix_now())
        .bind(id)
        .execute(db)
        .await
        .map_err(DbError)?;
    if done.rows_affected() == 0 {
        return Err(UserChangeError::NotFound);
    }
    Ok(())
}

/// SQL condition that is true when user `?` is not the only enabled administrator.
const NOT_LAST_ADMIN: &str = "NOT (role = 'admin' AND disabled = 0 AND
     (SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0) <= 1)";

pub async fn set_disabled(
    db: impl SqliteExecutor<'_> + Copy,
    id: i64,
    disabled: bool,
) -> Result<(), UserChangeError> {
    // Enabling is always allowed; disabling must not remove the last admin.
    let guard = if disabled { NOT_LAST_ADMIN } else { "1" };
    let done = sqlx::query(&format!(
        "UPDATE users SET disabled = ?, updated_at = ? WHERE id = ? AND {guard}"
    ))
    .bind(disabled)
    .bind(unix_now())
    .bind(id)
    .execute(db)
    .await
    .map_err(DbError)?;
    explain_refusal(db, id, done.rows_affected()).await
}

pub async fn set_role(
    db: impl SqliteExecutor<'_> + Copy,
    id: i64,
    role: Role,
) -> Result<(), UserChangeError> {
    let guard = if role == Role::Member {
        NOT_LAST_ADMIN
    } else {
        "1"
    };
    let done = sqlx::query(&format!(
        "UPDATE users SET role = ?, updated_at = ? WHERE id = ? AND {guard}"
    ))
    .bind(role)
    .bind(unix_now())
    .bind(id)
    .execute(db)
    .await
    .map_err(DbError)?;
    explain_refusal(db, id, done.rows_affected()).await
}

/// Deletes a user and, through `ON DELETE CASCADE`, their sessions, sources and records.
pub async fn delete(db: impl SqliteExecutor<'_> + Copy, id: i64) -> Result<(), UserChangeError> {
    let done = sqlx::query(&format!(
        "DELETE FROM users WHERE id = ? AND {NOT_LAST_ADMIN}"
    ))
    .bind(id)
    .execute(db)
    .await
    .map_err(DbError)?;
    explain_refusal(db, id, done.rows_affected()).await
}

/// A guarded statement that changed nothing either had no such user or hit the last-admin guard.
async fn explain_refusal(
    db: impl SqliteExecutor<'_>,
    id: i64,
    rows_affected: u64,
) -> Result<(), UserChangeError> {
    if rows_affected > 0 {
        return Ok(());
    }
    match by_id(db, id).await.map_err(DbError)? {
        None => Err(UserChangeError::NotFound),
        Some(_) => Err(UserChangeError::LastAdmin),
    }
}
