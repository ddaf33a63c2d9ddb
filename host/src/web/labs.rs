//! Labs: the signed-in user's lab results grouped by test (optionally only those of one
//! report), and each test's trend page with its chart. Handlers are thin: the grouping,
//! conversion and drawing live in `record::labs`. Every query filters by the user, so another
//! user's report or test is simply not found.

use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::routing::get;
use minijinja::context;
use serde::Deserialize;

use super::people::PersonRouter;
use super::render::Page;
use crate::auth::person::ViewPerson;
use crate::error::AppError;
use crate::record::labs;
use crate::state::AppState;

pub fn router(r: PersonRouter) -> PersonRouter {
    r.route("/labs", get(list)).route("/labs/{key}", get(test))
}

#[derive(Deserialize)]
struct ListQuery {
    /// A DiagnosticReport id: show only the results it references.
    report: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    access: ViewPerson,
    page: Page,
    Query(query): Query<ListQuery>,
) -> Result<Html<String>, AppError> {
    // An empty choice from the report menu means "all results".
    let report_id = query.report.filter(|r| !r.is_empty());
    let (report, tests) = match &report_id {
        Some(id) => {
            let (report, results) = labs::report_results(&state.db, access.id(), id)
                .await?
                .ok_or(AppError::NotFound)?;
            (Some(report), labs::summarise(&results))
        }
        None => (None, labs::overview(&state.db, access.id()).await?),
    };
    let reports = labs::reports(&state.db, access.id()).await?;
    page.render(
        &state,
        "labs.html",
        context! {
            tests => tests,
            report => report,
            reports => reports,
        },
    )
}

async fn test(
    State(state): State<AppState>,
    access: ViewPerson,
    page: Page,
    Path(key): Path<String>,
) -> Result<Html<String>, AppError> {
    let results = labs::test_results(&state.db, access.id(), &key).await?;
    let trend = labs::trend(&key, &results).ok_or(AppError::NotFound)?;
    // The key is a LOINC code when the results had one, else a name.
    let glossary = crate::record::glossary::lookup("http://loinc.org", &key, &trend.name);
    page.render(
        &state,
        "labs_test.html",
        context! { test => trend, glossary => glossary },
    )
}
