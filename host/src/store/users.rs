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
    /// The account's own person: whose records are "mine" when this account signs in.
    pub person_id: i64,
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
    #[error(
        "someone in this Fasten already has the short name {0:?}: choose another username, or link the new account to that person"
    )]
    PersonTaken(String),
    #[error("that person already has an account of their own")]
    PersonHasAccount,
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

const USER_COLUMNS: &str =
    "id, username, display_name, password_hash, role, disabled, created_at, person_id";

/// True while no account exists: the first-run wizard is open.
pub async fn none_exist(db: impl SqliteExecutor<'_>) -> sqlx::Result<bool> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(db)
        .await?;
    Ok(count == 0)
}

/// Creates an account with a person of its own (slug: the username, lowercased), or linked to
/// an existing person (`person`: a child grown up), in one transaction.
pub async fn create(
    db: &sqlx::SqlitePool,
    username: &str,
    display_name: &str,
    password_hash: &str,
    role: Role,
) -> Result<User, UserChangeError> {
    create_for(db, username, display_name, password_hash, role, None).await
}

pub async fn create_for(
    db: &sqlx::SqlitePool,
    username: &str,
    display_name: &str,
    password_hash: &str,
    role: Role,
    person: Option<i64>,
) -> Result<User, UserChangeError> {
    // IMMEDIATE: a read and then a write in a deferred transaction fails at once if another
    // connection wrote in between (SQLITE_BUSY_SNAPSHOT); this waits its turn instead.
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await.map_err(DbError)?;
    if by_username(&mut *tx, username)
        .await
        .map_err(DbError)?
        .is_some()
    {
        return Err(UserChangeError::UsernameTaken);
    }
    let user = insert(
        &mut tx,
        username,
        display_name,
        password_hash,
        role,
        person,
        false,
    )
    .await?
    .expect("an unconditional insert returns its row");
    tx.commit().await.map_err(DbError)?;
    Ok(user)
}

/// Inserts the account and, unless `person` is given, its own person; with `only_first` only
/// while no account exists.
async fn insert(
    tx: &mut sqlx::SqliteConnection,
    username: &str,
    display_name: &str,
    password_hash: &str,
    role: Role,
    person: Option<i64>,
    only_first: bool,
) -> Result<Option<User>, UserChangeError> {
    if only_first && !none_exist(&mut *tx).await.map_err(DbError)? {
        return Ok(None);
    }
    let person_id = match person {
        Some(id) => {
            if super::people::has_account(&mut *tx, id)
                .await
                .map_err(DbError)?
            {
                return Err(UserChangeError::PersonHasAccount);
            }
            id
        }
        None => match super::people::create(&mut *tx, username, display_name, None, None).await {
            Ok(person) => person.id,
            Err(super::people::PersonError::SlugTaken(slug)) => {
                return Err(UserChangeError::PersonTaken(slug));
            }
            Err(super::people::PersonError::Database(e)) => return Err(DbError(e).into()),
            Err(e) => return Err(UserChangeError::PersonTaken(e.to_string())),
        },
    };
    let now = unix_now();
    let result = sqlx::query_as::<_, User>(&format!(
        "INSERT INTO users (username, display_name, password_hash, role, person_id, created_at,
                            updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {USER_COLUMNS}"
    ))
    .bind(username)
    .bind(display_name)
    .bind(password_hash)
    .bind(role)
    .bind(person_id)
    .bind(now)
    .bind(now)
    .fetch_one(&mut *tx)
    .await;
    let user = match result {
        Ok(user) => user,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(UserChangeError::UsernameTaken);
        }
        Err(e) => return Err(DbError(e).into()),
    };
    // The account manages its own person, always.
    super::people::grant(
        &mut *tx,
        person_id,
        user.id,
        super::people::Level::Manage,
        None,
    )
    .await
    .map_err(DbError)?;
    Ok(Some(user))
}

/// Creates the first administrator, but only while no user exists: two browsers finishing the
/// first-run wizard at once cannot both become admin.
pub async fn create_first_admin(
    db: &sqlx::SqlitePool,
    username: &str,
    display_name: &str,
    password_hash: &str,
) -> Result<Option<User>, UserChangeError> {
    // BEGIN IMMEDIATE: the check and the insert must not interleave with another wizard's.
    let mut conn = db.acquire().await.map_err(DbError)?;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *conn)
        .await
        .map_err(DbError)?;
    let result = insert(
        &mut conn,
        username,
        display_name,
        password_hash,
        Role::Admin,
        None,
        true,
    )
    .await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    sqlx::query(end)
        .execute(&mut *conn)
        .await
        .map_err(DbError)?;
    result
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

/// Deletes an account and, through `ON DELETE CASCADE`, its sessions and grants; then its own
/// person with their sources and records, and anyone left with nobody to manage them.
pub async fn delete(db: &sqlx::SqlitePool, id: i64) -> Result<(), UserChangeError> {
    let mut tx = db.begin().await.map_err(DbError)?;
    let person_id: Option<i64> = sqlx::query_scalar(&format!(
        "DELETE FROM users WHERE id = ? AND {NOT_LAST_ADMIN} RETURNING person_id"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(DbError)?;
    let Some(person_id) = person_id else {
        drop(tx);
        return explain_refusal(db, id, 0).await;
    };
    super::people::delete(&mut *tx, person_id)
        .await
        .map_err(DbError)?;
    super::people::delete_unmanaged(&mut *tx)
        .await
        .map_err(DbError)?;
    tx.commit().await.map_err(DbError)?;
    Ok(())
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
