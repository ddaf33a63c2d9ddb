//! Explore: a person's records by type, a paged list per type, and each record as a
//! readable card with its raw JSON, and the files a document carries (an emailed PDF, a scan);
//! a C-CDA document among them is also shown as the document reads.
//! Every query filters by the person, so another person's record id is simply not found.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::people::PersonRouter;
use super::render::Page;
use crate::auth::person::ViewPerson;
use crate::error::AppError;
use crate::fhir::{self, read};
use crate::record;
use crate::state::AppState;

const PAGE_SIZE: i64 = 50;

pub fn router(r: PersonRouter) -> PersonRouter {
    r.route("/explore", get(types))
        .route("/explore/{resource_type}", get(list))
        .route("/explore/{resource_type}/{id}", get(detail))
        .route(
            "/explore/{resource_type}/{id}/attachments/{index}",
            get(attachment),
        )
}

#[derive(Serialize, sqlx::FromRow)]
struct TypeCount {
    resource_type: String,
    count: i64,
}

async fn types(
    State(state): State<AppState>,
    access: ViewPerson,
    page: Page,
) -> Result<Html<String>, AppError> {
    let counts: Vec<TypeCount> = sqlx::query_as(
        "SELECT resource_type, COUNT(*) AS count FROM resources WHERE person_id = ?
         GROUP BY resource_type ORDER BY resource_type",
    )
    .bind(access.id())
    .fetch_all(&state.db)
    .await?;
    let total: i64 = counts.iter().map(|c| c.count).sum();
    page.render(
        &state,
        "explore.html",
        context! { counts => counts, total => total },
    )
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<i64>,
}

#[derive(Serialize, sqlx::FromRow)]
struct Row {
    resource_id: String,
    sort_date: Option<String>,
    sort_title: Option<String>,
    source_name: String,
}

/// A list row as people read it (see [`read`]).
#[derive(Serialize)]
struct ListRow {
    resource_id: String,
    title: Option<String>,
    date: Option<String>,
    iso_date: Option<String>,
    source_name: String,
}

impl From<Row> for ListRow {
    fn from(row: Row) -> ListRow {
        ListRow {
            title: row.sort_title.as_deref().map(read::name),
            date: row.sort_date.as_deref().map(read::date),
            iso_date: row.sort_date.as_deref().map(read::iso_date),
            resource_id: row.resource_id,
            source_name: row.source_name,
        }
    }
}

fn check_type(resource_type: &str) -> Result<(), AppError> {
    if fhir::is_resource_type(resource_type) {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}

async fn list(
    State(state): State<AppState>,
    access: ViewPerson,
    page: Page,
    Path(resource_type): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Html<String>, AppError> {
    check_type(&resource_type)?;
    let number = query.page.unwrap_or(1).max(1);
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM resources WHERE person_id = ? AND resource_type = ?",
    )
    .bind(access.id())
    .bind(&resource_type)
    .fetch_one(&state.db)
    .await?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT r.resource_id, r.sort_date, r.sort_title, s.display_name AS source_name
         FROM resources r JOIN sources s ON s.id = r.source_id
         WHERE r.person_id = ? AND r.resource_type = ?
         ORDER BY r.sort_date DESC, r.resource_id LIMIT ? OFFSET ?",
    )
    .bind(access.id())
    .bind(&resource_type)
    .bind(PAGE_SIZE)
    .bind((number - 1) * PAGE_SIZE)
    .fetch_all(&state.db)
    .await?;
    let pages = (total + PAGE_SIZE - 1) / PAGE_SIZE;
    let rows: Vec<ListRow> = rows.into_iter().map(ListRow::from).collect();
    page.render(
        &state,
        "explore_list.html",
        context! { resource_type => resource_type, rows => rows, total => total,
        page => number, pages => pages },
    )
}

#[derive(Serialize)]
struct Coding {
    system: String,
    code: String,
    display: Option<String>,
}

/// One of the person's records as stored, with its source. The same record may come from several
/// sources: the oldest source's copy is the one shown.
struct StoredRecord {
    resource: Value,
    /// The title Fasten stored, which may come from elsewhere (a medicine named by a separate
    /// Medication).
    stored_title: Option<String>,
    source_id: i64,
    source_name: String,
    source_kind: String,
}

async fn stored_record(
    state: &AppState,
    person_id: i64,
    resource_type: &str,
    id: &str,
) -> Result<StoredRecord, AppError> {
    let (json, stored_title, source_id, source_name, source_kind): (
        String,
        Option<String>,
        i64,
        String,
        String,
    ) = sqlx::query_as(
        "SELECT r.json, r.sort_title, r.source_id, s.display_name, s.kind
         FROM resources r JOIN sources s ON s.id = r.source_id
         WHERE r.person_id = ? AND r.resource_type = ? AND r.resource_id = ?
         ORDER BY r.source_id LIMIT 1",
    )
    .bind(person_id)
    .bind(resource_type)
    .bind(id)
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound)?;
    Ok(StoredRecord {
        resource: serde_json::from_str(&json).map_err(anyhow::Error::new)?,
        stored_title,
        source_id,
        source_name,
        source_kind,
    })
}

async fn detail(
    State(state): State<AppState>,
    access: ViewPerson,
    page: Page,
    Path((resource_type, id)): Path<(String, String)>,
) -> Result<Html<String>, AppError> {
    check_type(&resource_type)?;
    let StoredRecord {
        resource,
        stored_title,
        source_id,
        source_name,
        source_kind,
    } = stored_record(&state, access.id(), &resource_type, &id).await?;
    let tokens: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT kind, value, display FROM resource_tokens
         WHERE source_id = ? AND resource_type = ? AND resource_id = ?",
    )
    .bind(source_id)
    .bind(&resource_type)
    .bind(&id)
    .fetch_all(&state.db)
    .await?;
    let codes: Vec<Coding> = tokens
        .iter()
        .filter(|(kind, _, _)| kind == "code")
        .map(|(_, value, display)| {
            let (system, code) = value.split_once('|').unwrap_or(("", value));
            Coding {
                system: system.into(),
                code: code.into(),
                display: display.clone(),
            }
        })
        .collect();
    let references: Vec<String> = tokens
        .iter()
        .filter(|(kind, value, _)| kind == "ref" && value.split('/').count() == 2)
        .map(|(_, value, _)| value.clone())
        .collect();
    let status = tokens
        .iter()
        .find(|(kind, _, _)| kind == "status")
        .map(|(_, v, _)| v.clone());
    let title = fhir::title(&resource)
        .or(stored_title)
        .map(|t| read::name(&t));
    let mut glossary = record::glossary::lookup_codes(
        codes.iter().map(|c| (c.system.as_str(), c.code.as_str())),
        title.as_deref().unwrap_or(""),
    );
    let loinc = codes.iter().find(|c| record::glossary::is_loinc(&c.system));
    if glossary.is_none()
        && let Some(c) = loinc
    {
        let config = &state.config.glossary;
        glossary =
            record::glossary::online(&state.db, &state.plugins, config, &c.system, &c.code).await;
    }
    let glossary_admin_note = glossary.is_none()
        && loinc.is_some()
        && access.user.is_admin()
        && !state.config.glossary.online;
    page.render(
        &state,
        "explore_detail.html",
        context! {
            resource_type => resource_type,
            id => id,
            title => title,
            glossary => glossary,
            glossary_admin_note => glossary_admin_note,
            date => fhir::sort_date(&resource).as_deref().map(read::date),
            status => read::status(&resource).or(status),
            value => read::value_text(&resource),
            codes => codes,
            references => references,
            source_name => source_name,
            attachments => attachment_list(&resource),
            documents => ccda_documents(&state, access.id(), source_id, &resource).await?,
            // Records entered by hand can be edited and deleted here; imported ones belong to
            // their source.
            editable => source_kind == "manual" && record::manual::kind_of(&resource).is_some(),
            raw => serde_json::to_string_pretty(&resource).map_err(anyhow::Error::new)?,
        },
    )
}

/// A file a document carries, as its card lists it.
#[derive(Debug, Serialize)]
struct AttachmentView {
    index: usize,
    title: String,
    content_type: String,
    size: Option<u64>,
}

/// `content[].attachment` of a DocumentReference (or the `presentedForm` of a report).
fn attachments_of(resource: &Value) -> Vec<&Value> {
    let content = resource
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("attachment"));
    let presented = resource
        .get("presentedForm")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    content.chain(presented).collect()
}

fn attachment_list(resource: &Value) -> Vec<AttachmentView> {
    attachments_of(resource)
        .into_iter()
        .enumerate()
        .filter(|(_, a)| a.get("data").is_some() || a.get("url").is_some())
        .map(|(index, a)| {
            let text = |key: &str| a.get(key).and_then(Value::as_str).map(str::to_owned);
            AttachmentView {
                index,
                title: text("title").unwrap_or_else(|| format!("Attachment {}", index + 1)),
                content_type: text("contentType").unwrap_or_else(|| "file".into()),
                size: a.get("size").and_then(Value::as_u64),
            }
        })
        .collect()
}

/// A document file's base64 data and declared type: its inline `data`, or that of the Binary its
/// `url` names in the same source. None when it has neither or the Binary is not stored.
async fn attachment_data(
    state: &AppState,
    person_id: i64,
    source_id: i64,
    attachment: &Value,
) -> Result<Option<(String, Option<String>)>, AppError> {
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    if let Some(data) = text(attachment, "data") {
        return Ok(Some((data, text(attachment, "contentType"))));
    }
    let Some(binary_id) = text(attachment, "url")
        .as_deref()
        .and_then(|url| url.strip_prefix("Binary/"))
        .map(str::to_owned)
    else {
        return Ok(None);
    };
    let json: Option<String> = sqlx::query_scalar(
        "SELECT json FROM resources WHERE person_id = ? AND source_id = ?
           AND resource_type = 'Binary' AND resource_id = ?",
    )
    .bind(person_id)
    .bind(source_id)
    .bind(&binary_id)
    .fetch_optional(&state.db)
    .await?;
    let Some(json) = json else {
        return Ok(None);
    };
    let binary: Value = serde_json::from_str(&json).map_err(anyhow::Error::new)?;
    Ok(text(&binary, "data").map(|data| {
        (
            data,
            text(attachment, "contentType").or_else(|| text(&binary, "contentType")),
        )
    }))
}

/// The C-CDA documents among a record's files, each as a readable view
/// ([`record::ccda_view`]). A file that is not one, or does not parse, adds nothing: its
/// download link stays.
async fn ccda_documents(
    state: &AppState,
    person_id: i64,
    source_id: i64,
    resource: &Value,
) -> Result<Vec<record::ccda_view::DocumentView>, AppError> {
    use base64::Engine;
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut views = Vec::new();
    for attachment in attachments_of(resource) {
        let Some((data, _)) = attachment_data(state, person_id, source_id, attachment).await?
        else {
            continue;
        };
        let data: String = data.split_whitespace().collect();
        if data.len() / 4 * 3 > record::ccda_view::MAX_BYTES {
            continue;
        }
        // A look at the start first, so a PDF or a picture is not decoded whole for nothing.
        let head = engine
            .decode(&data[..data.len().min(8192) / 4 * 4])
            .unwrap_or_default();
        if crate::routing::xml_root(&String::from_utf8_lossy(&head)).as_deref()
            != Some("ClinicalDocument")
        {
            continue;
        }
        let view = engine
            .decode(&data)
            .ok()
            .and_then(|bytes| record::ccda_view::view(&bytes));
        views.extend(view);
    }
    Ok(views)
}

/// One file of a document: its inline data, or the Binary its `url` names (in the same source).
async fn attachment(
    State(state): State<AppState>,
    access: ViewPerson,
    Path((resource_type, id, index)): Path<(String, String, usize)>,
) -> Result<Response, AppError> {
    use base64::Engine;
    check_type(&resource_type)?;
    let StoredRecord {
        resource,
        source_id,
        ..
    } = stored_record(&state, access.id(), &resource_type, &id).await?;
    let attachment = attachments_of(&resource)
        .get(index)
        .copied()
        .cloned()
        .ok_or(AppError::NotFound)?;
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let (data, content_type) = attachment_data(&state, access.id(), source_id, &attachment)
        .await?
        .ok_or(AppError::NotFound)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| AppError::BadRequest("This file's stored data is not valid base64.".into()))?;
    // Only documents and pictures show in the page; anything else is downloaded, so a stored
    // HTML or SVG file can never run as part of Fasten. The type sent is rebuilt from the parsed
    // one, never the stored string: a browser may read "image/png;,text/html" as HTML.
    let inline_type = content_type
        .and_then(|declared| declared.trim().parse::<mime::Mime>().ok())
        .filter(|parsed| record::manual::ATTACHMENT_TYPES.contains(&parsed.essence_str()))
        .map(|parsed| {
            // A note's text is UTF-8; without the charset a browser may guess another.
            if parsed.type_() == mime::TEXT && parsed.get_param(mime::CHARSET) == Some(mime::UTF_8)
            {
                format!("{}; charset=utf-8", parsed.essence_str())
            } else {
                parsed.essence_str().to_string()
            }
        });
    let inline = inline_type.is_some();
    let name: String = text(&attachment, "title")
        .unwrap_or_else(|| format!("attachment-{}", index + 1))
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let served_type = inline_type.unwrap_or_else(|| "application/octet-stream".to_string());
    Ok((
        [
            (header::CONTENT_TYPE, served_type),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "{}; filename=\"{name}\"",
                    if inline { "inline" } else { "attachment" }
                ),
            ),
            // Even a file shown in the page runs no script and reaches nothing.
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"
                    .to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}
