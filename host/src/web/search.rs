//! Search and the glossary pages. `/people/{person}/search?q=` finds one person's records by
//! their words (see [`crate::search`]) and groups them by kind of record; `/glossary` lists the
//! built-in explanations of lab tests and vital signs, the same for everyone.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::people::PersonRouter;
use super::render::Page;
use crate::auth::CurrentUser;
use crate::auth::person::ViewPerson;
use crate::error::AppError;
use crate::record::glossary;
use crate::search::{self, Hit};
use crate::state::AppState;

/// Matches shown at most; past that, more words narrow the search better than paging would.
const LIMIT: i64 = 200;
/// Characters of the query kept; the query is echoed in the page and the form.
const MAX_QUERY: usize = 200;

pub fn router(r: PersonRouter) -> PersonRouter {
    r.route("/search", get(search_page))
}

pub fn global_router() -> Router<AppState> {
    Router::new().route("/glossary", get(glossary_page))
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// Results of one kind of record.
#[derive(Serialize)]
struct Group {
    resource_type: String,
    label: String,
    hits: Vec<Hit>,
}

/// Kinds people look for most come first; any other follows in alphabetical order.
const ORDER: &[(&str, &str)] = &[
    ("Condition", "Conditions"),
    ("Observation", "Observations"),
    ("DiagnosticReport", "Reports"),
    ("MedicationRequest", "Medications"),
    ("MedicationStatement", "Medications taken"),
    ("AllergyIntolerance", "Allergies"),
    ("Immunization", "Immunizations"),
    ("Procedure", "Procedures"),
    ("Encounter", "Visits"),
    ("DocumentReference", "Documents"),
    ("CarePlan", "Care plans"),
    ("Claim", "Claims"),
    ("ExplanationOfBenefit", "Insurance statements"),
];

fn group(hits: Vec<Hit>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for hit in hits {
        match groups
            .iter_mut()
            .find(|g| g.resource_type == hit.resource_type)
        {
            Some(g) => g.hits.push(hit),
            None => groups.push(Group {
                label: ORDER
                    .iter()
                    .find(|(t, _)| *t == hit.resource_type)
                    .map(|(_, label)| label.to_string())
                    .unwrap_or_else(|| hit.resource_type.clone()),
                resource_type: hit.resource_type.clone(),
                hits: vec![hit],
            }),
        }
    }
    let rank = |t: &str| {
        ORDER
            .iter()
            .position(|(o, _)| *o == t)
            .unwrap_or(ORDER.len())
    };
    groups.sort_by(|a, b| {
        rank(&a.resource_type)
            .cmp(&rank(&b.resource_type))
            .then_with(|| a.resource_type.cmp(&b.resource_type))
    });
    groups
}

async fn search_page(
    State(state): State<AppState>,
    access: ViewPerson,
    page: Page,
    Query(query): Query<SearchQuery>,
) -> Result<Html<String>, AppError> {
    let q: String = query.q.trim().chars().take(MAX_QUERY).collect();
    let hits = if q.is_empty() {
        Vec::new()
    } else {
        search::search(&state.db, access.id(), &q, LIMIT).await?
    };
    let total = hits.len();
    page.render(
        &state,
        "search.html",
        context! {
            q => q,
            searchable => search::fts_query(&q).is_some(),
            groups => group(hits),
            total => total,
            limited => total as i64 >= LIMIT,
        },
    )
}

async fn glossary_page(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    page: Page,
) -> Result<Html<String>, AppError> {
    page.render(
        &state,
        "glossary.html",
        context! {
            entries => glossary::entries(),
            online => state.config.glossary.online,
            is_admin => user.is_admin(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(t: &str) -> Hit {
        Hit {
            resource_type: t.into(),
            resource_id: "x".into(),
            title: Vec::new(),
            date: None,
            snippet: Vec::new(),
        }
    }

    #[test]
    fn groups_follow_the_preferred_order_then_the_alphabet() {
        let groups = group(vec![
            hit("Patient"),
            hit("Observation"),
            hit("Condition"),
            hit("Observation"),
            hit("Basic"),
        ]);
        let labels: Vec<(&str, usize)> = groups
            .iter()
            .map(|g| (g.label.as_str(), g.hits.len()))
            .collect();
        assert_eq!(
            labels,
            [
                ("Conditions", 1),
                ("Observations", 2),
                ("Basic", 1),
                ("Patient", 1)
            ]
        );
    }
}
