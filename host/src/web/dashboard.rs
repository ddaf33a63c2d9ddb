//! The dashboard: the page lays out the user's widgets, and each widget is a fragment loaded by
//! htmx on its own (`/dashboard/widgets/{id}`), so the page appears at once and one slow widget
//! holds up nothing. "Customise" chooses, orders and hides widgets; the choice is saved.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use minijinja::context;

use super::people::PersonRouter;
use super::render::Page;
use crate::auth::person::{ManagePerson, ViewPerson};
use crate::error::AppError;
use crate::record::{dashboard, profile};
use crate::state::AppState;

pub fn router(r: PersonRouter) -> PersonRouter {
    r.route("/", get(show))
        .route("/dashboard/widgets/{id}", get(widget))
        .route("/dashboard/customize", get(customize).post(save))
}

async fn show(
    State(state): State<AppState>,
    access: ViewPerson,
    page: Page,
) -> Result<Html<String>, AppError> {
    let records = crate::store::resources::count_for_person(&state.db, access.id()).await?;
    let widgets: Vec<minijinja::Value> = dashboard::layout(&state.db, access.id())
        .await?
        .into_iter()
        .map(|id| context! { id => id, title => dashboard::title_of(id) })
        .collect();
    page.render(
        &state,
        "dashboard.html",
        context! { records => records, widgets => widgets },
    )
}

fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// How many items a list widget shows; the Profile page has them all.
const LIST: Option<usize> = Some(10);

async fn widget(
    State(state): State<AppState>,
    access: ViewPerson,
    Path(id): Path<String>,
    page: Page,
) -> Result<Html<String>, AppError> {
    let title = dashboard::title_of(&id).ok_or(AppError::NotFound)?;
    let db = &state.db;
    let data = match id.as_str() {
        "summary" => context! { about => dashboard::about(db, access.id(), today()).await? },
        "vitals" => context! { vitals => dashboard::vitals(db, access.id()).await? },
        "labs" => context! { labs => dashboard::recent_labs(db, access.id()).await? },
        "encounters" => context! { items => dashboard::recent_encounters(db, access.id()).await? },
        "types" => context! { types => dashboard::type_counts(db, access.id()).await? },
        "conditions" => context! { items => profile::conditions(db, access.id(), LIST).await? },
        "medications" => context! { items => profile::medications(db, access.id(), LIST).await? },
        "allergies" => context! { items => profile::allergies(db, access.id(), LIST).await? },
        "immunizations" => {
            context! { items => profile::immunizations(db, access.id(), Some(5)).await? }
        }
        _ => return Err(AppError::NotFound),
    };
    page.render(
        &state,
        "dashboard_widget.html",
        context! { id => id, title => title, ..data },
    )
}

async fn customize(
    State(state): State<AppState>,
    access: ManagePerson,
    page: Page,
) -> Result<Html<String>, AppError> {
    let shown = dashboard::layout(&state.db, access.id()).await?;
    // Shown widgets first in their order, then the hidden ones.
    let mut rows: Vec<minijinja::Value> = shown
        .iter()
        .enumerate()
        .map(|(i, id)| {
            context! { id => id, title => dashboard::title_of(id), shown => true, position => i + 1 }
        })
        .collect();
    for (id, title) in dashboard::WIDGETS {
        if !shown.contains(id) {
            let position = rows.len() + 1;
            rows.push(context! { id => id, title => title, shown => false, position => position });
        }
    }
    page.render(
        &state,
        "dashboard_customize.html",
        context! { rows => rows },
    )
}

async fn save(
    State(state): State<AppState>,
    access: ManagePerson,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    // Fields: `show` = widget id (checked boxes), `position_<id>` = its place.
    let mut chosen: Vec<(i64, usize, String)> = Vec::new();
    for (name, value) in &fields {
        if name == "show" {
            let position = fields
                .iter()
                .find(|(n, _)| *n == format!("position_{value}"))
                .and_then(|(_, p)| p.trim().parse().ok())
                .unwrap_or(i64::MAX);
            let order = dashboard::WIDGETS
                .iter()
                .position(|(w, _)| w == value)
                .unwrap_or(usize::MAX);
            chosen.push((position, order, value.clone()));
        }
    }
    chosen.sort();
    let widgets: Vec<String> = chosen.into_iter().map(|(_, _, id)| id).collect();
    dashboard::save_layout(&state.db, access.id(), &widgets).await?;
    Ok(Redirect::to(&access.url(&state, "/")).into_response())
}
