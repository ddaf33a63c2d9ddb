//! Entering records by hand: choose a kind, fill its form, and the record joins the user's
//! "Entered by hand" source; such records can be edited and deleted (imported ones cannot: they
//! belong to their source). Attachments (PDF, images) are posted by htmx as multipart, since the
//! CSRF check reads a multipart body's token from the header htmx sends.

use axum::Form;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use minijinja::context;
use serde_json::json;

use super::people::PersonRouter;
use super::render::Page;
use crate::auth::person::ManagePerson;
use crate::error::AppError;
use crate::record::manual::{self, Attachment, FormValues, Input, Kind};
use crate::state::AppState;

pub fn router(r: PersonRouter) -> PersonRouter {
    r.route("/records/new", get(choose))
        .route(
            "/records/new/{kind}",
            get(new_form)
                .post(create)
                // Room for an attachment at the cap plus the multipart framing.
                .layer(DefaultBodyLimit::max(
                    manual::MAX_ATTACHMENT_BYTES + 64 * 1024,
                )),
        )
        .route(
            "/records/manual/{resource_type}/{id}/edit",
            get(edit_form).post(update),
        )
        .route("/records/manual/{resource_type}/{id}/delete", post(delete))
}

fn kind_or_404(id: &str) -> Result<&'static Kind, AppError> {
    manual::kind(id).ok_or(AppError::NotFound)
}

/// The fields of a kind, with the values to show, for the form template.
fn fields(kind: &Kind, values: &FormValues) -> Vec<minijinja::Value> {
    kind.fields
        .iter()
        .map(|f| {
            let value = values
                .iter()
                .find(|(n, _)| n == f.name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let (input, options) = match f.input {
                Input::Text => ("text", vec![]),
                Input::Date => ("date", vec![]),
                Input::Number => ("number", vec![]),
                Input::LongText => ("textarea", vec![]),
                Input::Choice(options) => ("select", options.to_vec()),
            };
            context! { name => f.name, label => f.label, input => input, options => options,
            required => f.required, value => value }
        })
        .collect()
}

async fn choose(
    State(state): State<AppState>,
    _: ManagePerson,
    page: Page,
) -> Result<Html<String>, AppError> {
    let kinds: Vec<minijinja::Value> = manual::KINDS
        .iter()
        .map(|k| context! { id => k.id, label => k.label })
        .collect();
    page.render(&state, "manual_choose.html", context! { kinds => kinds })
}

/// The form, with the problems found in what was sent (a 422 when there are any).
fn render_form(
    state: &AppState,
    page: &Page,
    kind: &Kind,
    values: &FormValues,
    problems: Vec<String>,
    editing: Option<&str>,
) -> Result<Response, AppError> {
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    page.render_status(
        state,
        status,
        "manual_form.html",
        context! {
            kind => context! { id => kind.id, label => kind.label, resource_type => kind.resource_type },
            fields => fields(kind, values),
            problems => problems,
            editing => editing,
            attachment => kind.id == "attachment" && editing.is_none(),
            accept => manual::ATTACHMENT_TYPES.join(","),
            max_mib => manual::MAX_ATTACHMENT_BYTES >> 20,
        },
    )
}

async fn new_form(
    State(state): State<AppState>,
    _: ManagePerson,
    Path(kind): Path<String>,
    page: Page,
) -> Result<Response, AppError> {
    let kind = kind_or_404(&kind)?;
    render_form(&state, &page, kind, &Vec::new(), Vec::new(), None)
}

/// Where to go after saving: the record's page (htmx follows HX-Redirect).
fn to_record(
    state: &AppState,
    access: &ManagePerson,
    headers: &HeaderMap,
    resource_type: &str,
    id: &str,
) -> Response {
    let url = access.url(state, &format!("/explore/{resource_type}/{id}"));
    if headers.contains_key("hx-request") {
        ([("HX-Redirect", url)], "").into_response()
    } else {
        Redirect::to(&url).into_response()
    }
}

/// Reads a multipart form (attachments), keeping the file apart.
async fn read_multipart(
    mut multipart: Multipart,
) -> Result<(FormValues, Option<Attachment>), AppError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge(format!(
                "The file is larger than the {} MiB Fasten keeps for one attachment. Nothing was stored.",
                manual::MAX_ATTACHMENT_BYTES >> 20
            ))
        } else {
            AppError::BadRequest(format!("The form could not be read: {e}"))
        }
    };
    let mut values = Vec::new();
    let mut file = None;
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let file_name = field.file_name().unwrap_or("attachment").to_string();
            let content_type = field
                .content_type()
                .unwrap_or("application/octet-stream")
                .to_string();
            let bytes = field.bytes().await.map_err(bad)?;
            if !bytes.is_empty() {
                file = Some(Attachment {
                    content_type,
                    file_name,
                    bytes: bytes.to_vec(),
                });
            }
        } else {
            values.push((name, field.text().await.map_err(bad)?));
        }
    }
    Ok((values, file))
}

async fn create(
    State(state): State<AppState>,
    access: ManagePerson,
    Path(kind): Path<String>,
    headers: HeaderMap,
    page: Page,
    request: axum::extract::Request,
) -> Result<Response, AppError> {
    let kind = kind_or_404(&kind)?;
    let is_multipart = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (values, file) = if is_multipart {
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| AppError::BadRequest(e.body_text()))?;
        read_multipart(multipart).await?
    } else {
        let Form(values) = Form::<FormValues>::from_request(request, &state)
            .await
            .map_err(|e| AppError::BadRequest(e.body_text()))?;
        (values, None)
    };
    let mut problems = manual::validate(kind, &values);
    if kind.id == "attachment" {
        match &file {
            None => problems.push("Choose a file to attach.".into()),
            Some(f) if f.bytes.len() > manual::MAX_ATTACHMENT_BYTES => problems.push(format!(
                "The file is larger than {} MiB.",
                manual::MAX_ATTACHMENT_BYTES >> 20
            )),
            Some(f) if !manual::ATTACHMENT_TYPES.contains(&f.content_type.as_str()) => problems
                .push(format!(
                    "Fasten keeps PDFs, pictures (PNG, JPEG, GIF, WebP) and text files; {} is {}.",
                    f.file_name, f.content_type
                )),
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        return render_form(&state, &page, kind, &values, problems, None);
    }
    let id = manual::new_id();
    let mut resources = Vec::new();
    let binary = file.as_ref().map(|f| (manual::new_id(), f));
    if let Some((binary_id, f)) = &binary {
        resources.push(json!({
            "resourceType": "Binary",
            "id": binary_id,
            "contentType": f.content_type,
            "data": base64::engine::general_purpose::STANDARD.encode(&f.bytes),
        }));
    }
    resources.push(manual::build(
        kind,
        &id,
        &values,
        binary.as_ref().map(|(i, f)| (i.as_str(), *f)),
    ));
    manual::store(&state.db, access.id(), &resources).await?;
    Ok(to_record(
        &state,
        &access,
        &headers,
        kind.resource_type,
        &id,
    ))
}

async fn edit_form(
    State(state): State<AppState>,
    access: ManagePerson,
    Path((resource_type, id)): Path<(String, String)>,
    page: Page,
) -> Result<Response, AppError> {
    let resource = manual::load(&state.db, access.id(), &resource_type, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let kind = manual::kind_of(&resource).ok_or(AppError::NotFound)?;
    let values = manual::form_of(&resource).unwrap_or_default();
    render_form(&state, &page, kind, &values, Vec::new(), Some(&id))
}

async fn update(
    State(state): State<AppState>,
    access: ManagePerson,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    page: Page,
    Form(values): Form<FormValues>,
) -> Result<Response, AppError> {
    let existing = manual::load(&state.db, access.id(), &resource_type, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let kind = manual::kind_of(&existing).ok_or(AppError::NotFound)?;
    let problems = manual::validate(kind, &values);
    if !problems.is_empty() {
        return render_form(&state, &page, kind, &values, problems, Some(&id));
    }
    let updated = if kind.id == "attachment" {
        manual::retitle_attachment(&existing, &values)
    } else {
        manual::build(kind, &id, &values, None)
    };
    manual::store(&state.db, access.id(), &[updated]).await?;
    Ok(to_record(&state, &access, &headers, &resource_type, &id))
}

async fn delete(
    State(state): State<AppState>,
    access: ManagePerson,
    Path((resource_type, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    if !manual::delete(&state.db, access.id(), &resource_type, &id).await? {
        return Err(AppError::NotFound);
    }
    Ok(Redirect::to(&access.url(&state, &format!("/explore/{resource_type}"))).into_response())
}
