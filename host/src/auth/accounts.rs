//! Account operations shared by the web pages and the `fasten user` command, so both apply the
//! same rules: username format, password length, argon2id hashing, and signing a user out
//! everywhere when their password changes.

use sqlx::SqlitePool;

use super::password;
use crate::store::users::{self, Role, User, UserChangeError};
use crate::store::{self};

/// Why an account could not be created or changed, phrased for the person at the keyboard.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Refused(#[from] UserChangeError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

pub const MAX_USERNAME_CHARS: usize = 64;
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// Usernames are what people type at sign-in: letters, digits, `.`, `_`, `-`, `@`.
pub fn check_username(username: &str) -> Result<(), String> {
    if username.is_empty() {
        return Err("Choose a username.".into());
    }
    if username.chars().count() > MAX_USERNAME_CHARS {
        return Err(format!(
            "The username must be at most {MAX_USERNAME_CHARS} characters long."
        ));
    }
    if !username
        .chars()
        .all(|c| c.is_alphanumeric() || "._-@".contains(c))
    {
        return Err(
            "The username may contain letters, digits and . _ - @ only (no spaces).".into(),
        );
    }
    Ok(())
}

/// The display name to store: trimmed, defaulting to the username.
pub fn clean_display_name(display_name: &str, username: &str) -> Result<String, String> {
    let trimmed = display_name.trim();
    if trimmed.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(format!(
            "The display name must be at most {MAX_DISPLAY_NAME_CHARS} characters long."
        ));
    }
    Ok(if trimmed.is_empty() {
        username.to_string()
    } else {
        trimmed.to_string()
    })
}

/// Input for a new account, already read from a form or the command line.
pub struct NewAccount<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub password: &'a str,
    pub password_confirmation: &'a str,
    pub role: Role,
    /// The short name of an existing person who gets this account (a child grown up); `None`
    /// creates a person for the account.
    pub person: Option<&'a str>,
}

fn validate(new: &NewAccount<'_>) -> Result<(String, String), AccountError> {
    let username = new.username.trim().to_string();
    check_username(&username).map_err(AccountError::Invalid)?;
    let display_name =
        clean_display_name(new.display_name, &username).map_err(AccountError::Invalid)?;
    password::check_new(new.password, new.password_confirmation).map_err(AccountError::Invalid)?;
    Ok((username, display_name))
}

pub async fn create(db: &SqlitePool, new: NewAccount<'_>) -> Result<User, AccountError> {
    let (username, display_name) = validate(&new)?;
    let person = match new.person.map(str::trim).filter(|s| !s.is_empty()) {
        Some(slug) => Some(
            store::people::by_slug(db, slug)
                .await?
                .ok_or_else(|| AccountError::Invalid(format!("There is no person {slug:?}.")))?
                .id,
        ),
        None => None,
    };
    let hash = password::hash(new.password.to_string()).await;
    Ok(users::create_for(db, &username, &display_name, &hash, new.role, person).await?)
}

/// Creates the first administrator; `Ok(None)` when an account already exists.
pub async fn create_first_admin(
    db: &SqlitePool,
    new: NewAccount<'_>,
) -> Result<Option<User>, AccountError> {
    let (username, display_name) = validate(&new)?;
    let hash = password::hash(new.password.to_string()).await;
    Ok(users::create_first_admin(db, &username, &display_name, &hash).await?)
}

/// Sets a new password and ends every session of that user.
pub async fn reset_password(
    db: &SqlitePool,
    user_id: i64,
    new_password: &str,
    confirmation: &str,
) -> Result<(), AccountError> {
    password::check_new(new_password, confirmation).map_err(AccountError::Invalid)?;
    let hash = password::hash(new_password.to_string()).await;
    let mut tx = db.begin().await?;
    users::set_password_hash(&mut *tx, user_id, &hash).await?;
    store::sessions::delete_for_user(&mut *tx, user_id).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(check_username("anna").is_ok());
        assert!(check_username("anna.m-2@home").is_ok());
        assert!(check_username("Zoë").is_ok());
        assert!(check_username("").is_err());
        assert!(check_username("anna smith").is_err());
        assert!(check_username("<script>").is_err());
        assert!(check_username(&"a".repeat(65)).is_err());
    }

    #[test]
    fn display_name_defaults_to_username() {
        assert_eq!(clean_display_name("  ", "anna").unwrap(), "anna");
        assert_eq!(clean_display_name(" Anna M ", "anna").unwrap(), "Anna M");
    }
}
