//! Profile: who the signed-in user's records are about, field by field with the source of each,
//! and the lists a clinician asks for first. The work is in `record::profile`.

use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use minijinja::context;

use super::people::PersonRouter;
use super::render::Page;
use crate::auth::person::ViewPerson;
use crate::error::AppError;
use crate::record::profile;
use crate::state::AppState;

pub fn router(r: PersonRouter) -> PersonRouter {
    r.route("/profile", get(show))
}

async fn show(
    State(state): State<AppState>,
    access: ViewPerson,
    page: Page,
) -> Result<Html<String>, AppError> {
    let today = time::OffsetDateTime::now_utc().date();
    let profile = profile::profile(&state.db, access.id(), today).await?;
    page.render(&state, "profile.html", context! { profile => profile })
}
