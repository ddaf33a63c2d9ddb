//! The `people` and `person_access` tables: whose records Fasten keeps, and which accounts may
//! see (view) or change (manage) them. Every person-scoped page resolves its person through
//! [`access`], so "may this account see Leo?" has one answer.

use serde::Serialize;
use sqlx::{FromRow, SqliteExecutor};

use super::unix_now;

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Person {
    pub id: i64,
    /// The short name in the person's URLs: `/people/{slug}/labs`.
    pub slug: String,
    pub name: String,
    /// YYYY-MM-DD, as entered by the family (the records' Patient may say otherwise).
    pub birth_date: Option<String>,
}

/// What an account may do with a person's records. `Manage` includes `View`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, sqlx::Type)]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Level {
    View,
    Manage,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::View => "view",
            Level::Manage => "manage",
        }
    }
}

/// A person as one account sees them: with its access level, and whether it is the account's
/// own person.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Visible {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub person: Person,
    pub level: Level,
    pub own: bool,
}

/// An account's grant on a person, for the sharing list.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Grant {
    pub user_id: i64,
    pub username: String,
    pub display_name: String,
    pub level: Level,
    /// The person's own account: its access cannot be revoked.
    pub own: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PersonError {
    #[error("{0}")]
    Invalid(String),
    #[error("the short name {0:?} is already used by someone in this Fasten")]
    SlugTaken(String),
    #[error("no such person")]
    NotFound,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

pub const MAX_SLUG_CHARS: usize = 64;
pub const MAX_NAME_CHARS: usize = 100;

const PERSON_COLUMNS: &str = "p.id, p.slug, p.name, p.birth_date";

/// Slugs are lowercase letters, digits and `.`, `_`, `-`, `@` (a username is a valid slug once
/// lowercased), and never one of the words the site's own paths use.
pub fn check_slug(slug: &str) -> Result<(), String> {
    if slug.is_empty() {
        return Err("Choose a short name, for example \"leo\".".into());
    }
    if slug.chars().count() > MAX_SLUG_CHARS {
        return Err(format!(
            "The short name must be at most {MAX_SLUG_CHARS} characters long."
        ));
    }
    if !slug
        .chars()
        .all(|c| c.is_lowercase() || c.is_ascii_digit() || "._-@".contains(c))
    {
        return Err(
            "The short name may contain lowercase letters, digits and . _ - @ only (no spaces)."
                .into(),
        );
    }
    if slug == "." || slug == ".." || slug == "new" {
        return Err(format!("{slug:?} cannot be a short name."));
    }
    Ok(())
}

/// A birth date as YYYY-MM-DD, or none for an empty field.
pub fn check_birth_date(date: &str) -> Result<Option<String>, String> {
    let date = date.trim();
    if date.is_empty() {
        return Ok(None);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(date, &format) {
        Ok(_) => Ok(Some(date.to_string())),
        Err(_) => Err("Give the birth date as YYYY-MM-DD, for example 2015-04-02.".into()),
    }
}

pub fn check_name(name: &str, slug: &str) -> Result<String, String> {
    let name = name.trim();
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "The name must be at most {MAX_NAME_CHARS} characters long."
        ));
    }
    Ok(if name.is_empty() { slug } else { name }.to_string())
}

/// Creates a person managed by `creator` (when given). Checks the slug, name and birth date.
pub async fn create(
    db: &mut sqlx::SqliteConnection,
    slug: &str,
    name: &str,
    birth_date: Option<&str>,
    creator: Option<i64>,
) -> Result<Person, PersonError> {
    let slug = slug.trim().to_lowercase();
    check_slug(&slug).map_err(PersonError::Invalid)?;
    let name = check_name(name, &slug).map_err(PersonError::Invalid)?;
    let birth_date = check_birth_date(birth_date.unwrap_or("")).map_err(PersonError::Invalid)?;
    let now = unix_now();
    let inserted = sqlx::query_as::<_, Person>(
        "INSERT INTO people (slug, name, birth_date, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?) RETURNING id, slug, name, birth_date",
    )
    .bind(&slug)
    .bind(&name)
    .bind(&birth_date)
    .bind(now)
    .bind(now)
    .fetch_one(&mut *db)
    .await;
    let person = match inserted {
        Ok(person) => person,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(PersonError::SlugTaken(slug));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(creator) = creator {
        grant(&mut *db, person.id, creator, Level::Manage, Some(creator)).await?;
    }
    Ok(person)
}

/// Creates a person named `name`, managed by `creator`, with a free slug made from the name
/// ("Fletcher Hyatt" becomes `fletcher-hyatt`, or `fletcher-hyatt-2` when that is taken).
pub async fn create_unique(
    db: &mut sqlx::SqliteConnection,
    name: &str,
    birth_date: Option<&str>,
    creator: i64,
) -> sqlx::Result<Person> {
    let mut base: String = name
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    base = base
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    base = base.chars().take(MAX_SLUG_CHARS - 4).collect();
    if check_slug(&base).is_err() {
        base = "person".into();
    }
    for n in 1.. {
        let slug = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        match create(&mut *db, &slug, name, birth_date, Some(creator)).await {
            Ok(person) => return Ok(person),
            Err(PersonError::SlugTaken(_)) => continue,
            Err(PersonError::Database(e)) => return Err(e),
            // The name or date did not pass: keep the person with what does.
            Err(_) => {
                return create(&mut *db, &slug, &base, None, Some(creator))
                    .await
                    .map_err(|e| sqlx::Error::Protocol(e.to_string()));
            }
        }
    }
    unreachable!("the loop returns")
}

pub async fn by_slug(db: impl SqliteExecutor<'_>, slug: &str) -> sqlx::Result<Option<Person>> {
    sqlx::query_as::<_, Person>(&format!(
        "SELECT {PERSON_COLUMNS} FROM people p WHERE p.slug = ?"
    ))
    .bind(slug)
    .fetch_optional(db)
    .await
}

pub async fn by_id(db: impl SqliteExecutor<'_>, id: i64) -> sqlx::Result<Option<Person>> {
    sqlx::query_as::<_, Person>(&format!(
        "SELECT {PERSON_COLUMNS} FROM people p WHERE p.id = ?"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// The person `slug` and what account `user_id` may do with them; `None` when the account has
/// no grant (or there is no such person: the two are told apart by nobody).
pub async fn access(
    db: impl SqliteExecutor<'_>,
    user_id: i64,
    slug: &str,
) -> sqlx::Result<Option<Visible>> {
    sqlx::query_as::<_, Visible>(&format!(
        "SELECT {PERSON_COLUMNS}, a.level, EXISTS (SELECT 1 FROM users u WHERE u.id = a.user_id
                AND u.person_id = p.id) AS own
         FROM people p JOIN person_access a ON a.person_id = p.id
         WHERE p.slug = ? AND a.user_id = ?"
    ))
    .bind(slug)
    .bind(user_id)
    .fetch_optional(db)
    .await
}

/// Every person account `user_id` may see: its own first, then by name.
pub async fn visible_to(db: impl SqliteExecutor<'_>, user_id: i64) -> sqlx::Result<Vec<Visible>> {
    sqlx::query_as::<_, Visible>(&format!(
        "SELECT {PERSON_COLUMNS}, a.level, (u.person_id = p.id) AS own
         FROM person_access a JOIN people p ON p.id = a.person_id
         JOIN users u ON u.id = a.user_id
         WHERE a.user_id = ?
         ORDER BY (u.person_id = p.id) DESC, p.name COLLATE NOCASE, p.slug"
    ))
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// The people account `user_id` manages: where a family's file it uploads may be split to.
pub async fn managed_by(db: impl SqliteExecutor<'_>, user_id: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT person_id FROM person_access WHERE user_id = ? AND level = 'manage' ORDER BY person_id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// The people managed by whoever manages `person_id`: where a family's file dropped into that
/// person's inbox may be split to.
pub async fn managed_with(db: impl SqliteExecutor<'_>, person_id: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT DISTINCT b.person_id FROM person_access a
         JOIN person_access b ON b.user_id = a.user_id AND b.level = 'manage'
         WHERE a.person_id = ? AND a.level = 'manage' ORDER BY b.person_id",
    )
    .bind(person_id)
    .fetch_all(db)
    .await
}

/// Every person, for the command line (which acts as the machine's operator).
pub async fn list(db: impl SqliteExecutor<'_>) -> sqlx::Result<Vec<Person>> {
    sqlx::query_as::<_, Person>(&format!(
        "SELECT {PERSON_COLUMNS} FROM people p ORDER BY p.slug"
    ))
    .fetch_all(db)
    .await
}

/// The people whose inbox folders are watched: everyone but those whose own account is disabled
/// (their files wait until it is enabled again).
pub async fn with_inbox(db: impl SqliteExecutor<'_>) -> sqlx::Result<Vec<Person>> {
    sqlx::query_as::<_, Person>(&format!(
        "SELECT {PERSON_COLUMNS} FROM people p
         WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.person_id = p.id AND u.disabled = 1)
         ORDER BY p.slug"
    ))
    .fetch_all(db)
    .await
}

/// Who has access to a person, the person's own account first.
pub async fn grants(db: impl SqliteExecutor<'_>, person_id: i64) -> sqlx::Result<Vec<Grant>> {
    sqlx::query_as::<_, Grant>(
        "SELECT u.id AS user_id, u.username, u.display_name, a.level, (u.person_id = a.person_id) AS own
         FROM person_access a JOIN users u ON u.id = a.user_id
         WHERE a.person_id = ?
         ORDER BY (u.person_id = a.person_id) DESC, u.username COLLATE NOCASE",
    )
    .bind(person_id)
    .fetch_all(db)
    .await
}

/// Gives account `user_id` access to a person at `level`, replacing an earlier grant. The
/// person's own account always keeps `manage`.
pub async fn grant(
    db: impl SqliteExecutor<'_>,
    person_id: i64,
    user_id: i64,
    level: Level,
    granted_by: Option<i64>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO person_access (person_id, user_id, level, granted_by, granted_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (person_id, user_id) DO UPDATE SET level = excluded.level,
             granted_by = excluded.granted_by, granted_at = excluded.granted_at
         WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = ?2 AND person_id = ?1)",
    )
    .bind(person_id)
    .bind(user_id)
    .bind(level)
    .bind(granted_by)
    .bind(unix_now())
    .execute(db)
    .await?;
    Ok(())
}

/// Takes away an account's access; the person's own account keeps theirs. True if a grant went.
pub async fn revoke(
    db: impl SqliteExecutor<'_>,
    person_id: i64,
    user_id: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "DELETE FROM person_access WHERE person_id = ?1 AND user_id = ?2
         AND NOT EXISTS (SELECT 1 FROM users WHERE id = ?2 AND person_id = ?1)",
    )
    .bind(person_id)
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn update(
    db: impl SqliteExecutor<'_>,
    person_id: i64,
    name: &str,
    birth_date: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE people SET name = ?, birth_date = ?, updated_at = ? WHERE id = ?")
        .bind(name)
        .bind(birth_date)
        .bind(unix_now())
        .bind(person_id)
        .execute(db)
        .await?;
    Ok(())
}

/// True when the person signs in with an account of their own (such a person is removed by
/// deleting the account, not from the person's page).
pub async fn has_account(db: impl SqliteExecutor<'_>, person_id: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE person_id = ?)")
        .bind(person_id)
        .fetch_one(db)
        .await
}

/// Deletes a person and, through `ON DELETE CASCADE`, their sources, records, jobs and grants.
/// The files kept outside the database (inbox folder, pending uploads) are the caller's.
pub async fn delete(db: impl SqliteExecutor<'_>, person_id: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "DELETE FROM people WHERE id = ? AND NOT EXISTS (SELECT 1 FROM users WHERE person_id = people.id)",
    )
    .bind(person_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// People nobody can manage any more (their last manager's account was deleted), which would
/// otherwise be kept forever where no one can reach them.
pub async fn delete_unmanaged(db: impl SqliteExecutor<'_>) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM people WHERE NOT EXISTS (SELECT 1 FROM users WHERE person_id = people.id)
         AND NOT EXISTS (SELECT 1 FROM person_access WHERE person_id = people.id AND level = 'manage')",
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lowercase_url_words() {
        assert!(check_slug("leo").is_ok());
        assert!(check_slug("anna.m-2@home").is_ok());
        assert!(check_slug("Leo").is_err());
        assert!(check_slug("leo smith").is_err());
        assert!(check_slug("leo/labs").is_err());
        assert!(check_slug("..").is_err());
        assert!(check_slug("").is_err());
    }

    #[test]
    fn birth_dates_are_calendar_dates() {
        assert_eq!(
            check_birth_date("2015-04-02").unwrap().as_deref(),
            Some("2015-04-02")
        );
        assert_eq!(check_birth_date(" ").unwrap(), None);
        assert!(check_birth_date("2015-02-30").is_err());
        assert!(check_birth_date("02/04/2015").is_err());
    }
}
