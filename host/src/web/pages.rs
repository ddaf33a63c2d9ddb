//! The signed-in user's own pages. Later issues fill Labs and History;
//! until then each says what it will hold.

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use minijinja::context;

use super::render::Page;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::state::AppState;
use crate::store;

/// Pages whose content arrives with a later feature: (path, title, what it will hold).
const COMING: &[(&str, &str, &str)] = &[
    (
        "/labs",
        "Labs",
        "Your lab results, grouped by test with their trends over time, will appear here.",
    ),
    (
        "/history",
        "History",
        "Your visits, with the conditions, procedures and results of each, will appear here.",
    ),
];

pub fn router() -> Router<AppState> {
    let mut router = Router::new().route("/", get(dashboard));
    for &(path, title, text) in COMING {
        router = router.route(
            path,
            get(
                move |State(state): State<AppState>, _: CurrentUser, page: Page| async move {
                    page.render(
                        &state,
                        "coming.html",
                        context! { title => title, text => text },
                    )
                },
            ),
        );
    }
    router
}

async fn dashboard(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    page: Page,
) -> Result<Html<String>, AppError> {
    let records = store::resources::count_for_user(&state.db, user.id).await?;
    page.render(&state, "dashboard.html", context! { records => records })
}
