//! Whose records a request is about, and whether the signed-in account may see or change them.
//!
//! Person-scoped pages live under `/people/{person}/…`. The router strips that prefix
//! (`web::people::scoped`) and leaves the slug in the request as [`PersonSlug`]; the extractors
//! here resolve it against the account's grant, in one place:
//! - [`ViewPerson`]: the account may read the person's records (view or manage grant);
//! - [`ManagePerson`]: the account may also change them (manage grant).
//!
//! A person the account has no grant for is "not found" (404), exactly like a person who does not
//! exist, so a slug reveals nothing. A viewer who tries to change something gets 403. Being an
//! administrator grants nothing here. The same tails without the prefix (`/labs`, the addresses
//! from before people existed) move to the account's own person.

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::Method;
use axum::http::request::Parts;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::CurrentUser;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::people::{self, Level, Visible};
use crate::store::users::User;

/// The `{person}` of a `/people/{person}/…` address, set by the router before the tail is routed.
#[derive(Clone, Debug)]
pub struct PersonSlug(pub String);

/// Cached in the request so the page layout and the handler resolve the person once.
#[derive(Clone)]
struct Resolved(Option<Visible>);

/// The person of this request as the account sees them, or `None` when the address names no
/// person or one the account has no grant for.
pub async fn resolve(
    parts: &mut Parts,
    state: &AppState,
    user: &User,
) -> Result<Option<Visible>, AppError> {
    if let Some(Resolved(person)) = parts.extensions.get::<Resolved>() {
        return Ok(person.clone());
    }
    let Some(PersonSlug(slug)) = parts.extensions.get::<PersonSlug>().cloned() else {
        return Ok(None);
    };
    let person = people::access(&state.db, user.id, &slug).await?;
    parts.extensions.insert(Resolved(person.clone()));
    Ok(person)
}

/// A signed-in account reading a person's records.
pub struct ViewPerson {
    pub user: User,
    pub person: Visible,
}

/// A signed-in account changing a person's records (connect, upload, sync, edit, delete).
pub struct ManagePerson {
    pub user: User,
    pub person: Visible,
}

impl ViewPerson {
    pub fn id(&self) -> i64 {
        self.person.person.id
    }

    /// `{base}/people/{slug}` followed by `tail` (`"/sources"`).
    pub fn url(&self, state: &AppState, tail: &str) -> String {
        format!("{}{tail}", person_url(state, &self.person.person.slug))
    }
}

impl ManagePerson {
    pub fn id(&self) -> i64 {
        self.person.person.id
    }

    /// `{base}/people/{slug}` followed by `tail` (`"/sources"`).
    pub fn url(&self, state: &AppState, tail: &str) -> String {
        format!("{}{tail}", person_url(state, &self.person.person.slug))
    }
}

async fn person_for(
    parts: &mut Parts,
    state: &AppState,
    needed: Level,
) -> Result<(User, Visible), AppError> {
    let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
    if parts.extensions.get::<PersonSlug>().is_none() {
        return Err(moved_to_own_person(parts, state, &user).await?);
    }
    let person = resolve(parts, state, &user)
        .await?
        .ok_or(AppError::NotFound)?;
    if person.level < needed {
        return Err(AppError::Forbidden(
            "You can see this person's records but not change them. Ask someone who manages \
             them to make the change, or to share them with you at \"manage\".",
        ));
    }
    Ok((user, person))
}

/// An address from before people existed (`/labs`): the same page of the account's own person.
async fn moved_to_own_person(
    parts: &Parts,
    state: &AppState,
    user: &User,
) -> Result<AppError, AppError> {
    let own = people::by_id(&state.db, user.person_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map(|u| u.0.clone())
        .unwrap_or_else(|| parts.uri.clone());
    let base = &state.config.base_path;
    let path = uri.path().strip_prefix(base.as_str()).unwrap_or(uri.path());
    let tail = if path == "/" { "/" } else { path };
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Ok(AppError::Moved {
        to: format!("{}{tail}{query}", person_url(state, &own.slug)),
        keep_method: !(parts.method == Method::GET || parts.method == Method::HEAD),
    })
}

/// `{base}/people/{slug}`: the prefix of every page of one person (without a trailing slash).
pub fn person_url(state: &AppState, slug: &str) -> String {
    format!("{}/people/{}", state.config.base_path, encode_slug(slug))
}

/// Characters kept as they are in a slug's path segment: slugs are letters, digits and `._-@`,
/// so only letters outside ASCII are escaped.
const SLUG_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'_')
    .remove(b'-')
    .remove(b'@');

/// A slug as a path segment.
pub fn encode_slug(slug: &str) -> String {
    utf8_percent_encode(slug, SLUG_SEGMENT).to_string()
}

impl FromRequestParts<AppState> for ViewPerson {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let (user, person) = person_for(parts, state, Level::View).await?;
        Ok(ViewPerson { user, person })
    }
}

impl FromRequestParts<AppState> for ManagePerson {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let (user, person) = person_for(parts, state, Level::Manage).await?;
        Ok(ManagePerson { user, person })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_stay_readable_in_urls() {
        assert_eq!(encode_slug("leo"), "leo");
        assert_eq!(encode_slug("anna.m-2@home"), "anna.m-2@home");
        assert_eq!(encode_slug("zoë"), "zo%C3%AB");
    }
}
