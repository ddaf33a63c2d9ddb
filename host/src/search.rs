//! Full-text search over each user's records (SQLite FTS5).
//!
//! Every stored resource has one row in `search_docs` (owner and identity) and its text in
//! `search_fts` under the same rowid, in four columns: title, code names, notes and document
//! text. The ingest writer keeps them in step with `resources` ([`index`]); deletion needs no
//! code, because `search_docs` follows its resource by a cascading foreign key and a trigger drops
//! the text. Databases from before search existed are indexed at start-up ([`index_missing`]) with
//! the same extraction, since attachments need base64 decoding that SQL cannot do.
//!
//! Users type plain words, never FTS syntax: [`fts_query`] quotes each word so that operators
//! and stray quotes are just text. Snippets mark hits with control characters that cannot occur
//! in indexed text (they are stripped from it), and come back as [`Segment`]s so that templates
//! escape every piece of record text and add `<mark>` themselves.

use std::collections::HashSet;

use base64::Engine;
use serde::Serialize;
use serde_json::Value;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use crate::fhir;

/// Marks the start and end of a hit in snippets; stripped from indexed text so they only ever
/// come from FTS5.
const HIT_START: char = '\u{2}';
const HIT_END: char = '\u{3}';
/// Decoded attachment text beyond this is not indexed: a long document's first 64 KiB carry
/// enough words to find it, and the index stays small.
const BODY_CAP: usize = 64 * 1024;
/// Names of codes and notes are short; this only guards against pathological resources.
const FIELD_CAP: usize = 16 * 1024;
/// More words than this adds nothing but cost.
const MAX_WORDS: usize = 16;

/// A resource to index: its type, its id and its text.
pub type Indexed<'a> = (&'a str, &'a str, &'a Document);

/// The searchable text of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Document {
    pub title: String,
    pub codes: String,
    pub notes: String,
    pub body: String,
}

/// Extracts the searchable text of a resource: its title, the names of every code in it (and
/// the display names of references, so a clinician's or a clinic's name finds its records),
/// notes and comments, and document text (descriptions and text/plain or text/html attachments,
/// decoded).
pub fn document(resource: &Value) -> Document {
    let mut parts = Parts::default();
    parts.walk(resource, true);
    let mut doc = Document {
        title: clean(&fhir::title(resource).unwrap_or_default()),
        codes: String::new(),
        notes: String::new(),
        body: String::new(),
    };
    doc.codes = join_capped(&parts.codes, FIELD_CAP);
    doc.notes = join_capped(&parts.notes, FIELD_CAP);
    doc.body = join_capped(&parts.body, BODY_CAP);
    doc
}

#[derive(Default)]
struct Parts {
    codes: Vec<String>,
    notes: Vec<String>,
    body: Vec<String>,
    seen: HashSet<String>,
}

impl Parts {
    fn push_code(&mut self, text: &str) {
        let text = clean(text);
        if !text.is_empty() && self.seen.insert(text.clone()) {
            self.codes.push(text);
        }
    }

    fn walk(&mut self, value: &Value, top: bool) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(codings)) = map.get("coding") {
                    if let Some(text) = map.get("text").and_then(Value::as_str) {
                        self.push_code(text);
                    }
                    for coding in codings {
                        if let Some(display) = coding.get("display").and_then(Value::as_str) {
                            self.push_code(display);
                        }
                    }
                }
                if map.contains_key("reference")
                    && let Some(display) = map.get("display").and_then(Value::as_str)
                {
                    self.push_code(display);
                }
                // An Attachment, or a Binary resource: the same two fields.
                if let (Some(content_type), Some(data)) = (
                    map.get("contentType").and_then(Value::as_str),
                    map.get("data").and_then(Value::as_str),
                ) && let Some(text) = attachment_text(content_type, data)
                {
                    if let Some(title) = map.get("title").and_then(Value::as_str) {
                        self.body.push(clean(title));
                    }
                    self.body.push(text);
                }
                for (key, child) in map {
                    match (key.as_str(), child) {
                        // The generated narrative repeats the structured data as XHTML.
                        ("text", Value::Object(_)) if top => {}
                        ("note", Value::Array(notes)) => {
                            for note in notes {
                                if let Some(text) = note.get("text").and_then(Value::as_str) {
                                    self.notes.push(clean(text));
                                }
                            }
                        }
                        ("valueString" | "comment" | "conclusion", Value::String(text)) => {
                            self.notes.push(clean(text))
                        }
                        ("description", Value::String(text)) => self.body.push(clean(text)),
                        ("data", _) => {}
                        (_, child) => self.walk(child, false),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.walk(i, false)),
            _ => {}
        }
    }
}

/// The text of a base64 attachment when it is plain text or HTML; other kinds (PDF, images) are
/// not searchable.
fn attachment_text(content_type: &str, data: &str) -> Option<String> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "text/plain" && mime != "text/html" {
        return None;
    }
    // Decoding more than the cap needs is wasted work: 4 base64 characters make 3 bytes.
    let limit = (BODY_CAP / 3 + 1) * 4;
    let data: String = data
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .take(limit)
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim_end_matches('='))
        .or_else(|_| {
            base64::engine::general_purpose::STANDARD_NO_PAD.decode(data.trim_end_matches('='))
        })
        .ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let text = if mime == "text/html" {
        html_to_text(&text)
    } else {
        text.into_owned()
    };
    Some(clean(&text))
}

/// Plain text of an HTML fragment: tags dropped (scripts and styles with their content), common
/// entities decoded, whitespace collapsed. Good enough for indexing and for showing a summary
/// as text; never used to produce HTML.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&decode_entities(&rest[..start]));
        let after = &rest[start..];
        let lower: String = after
            .chars()
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        let skip_to = if lower.starts_with("<script") {
            after.to_ascii_lowercase().find("</script").map(|i| i + 1)
        } else if lower.starts_with("<style") {
            after.to_ascii_lowercase().find("</style").map(|i| i + 1)
        } else {
            Some(0)
        };
        let Some(from) = skip_to else {
            rest = "";
            break;
        };
        match after[from..].find('>') {
            Some(end) => {
                out.push(' ');
                rest = &after[from + end + 1..];
            }
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(&decode_entities(rest));
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|e| match &after[1..e] {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            name if name.starts_with("#x") || name.starts_with("#X") => {
                u32::from_str_radix(&name[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
            }
            name if name.starts_with('#') => name[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        });
        match (decoded, end) {
            (Some(c), Some(e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            _ => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Collapses whitespace and removes the snippet markers (and other control characters).
fn clean(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn join_capped(parts: &[String], cap: usize) -> String {
    let mut out = String::new();
    for part in parts.iter().filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            // A separator to the tokenizer, and readable in a snippet.
            out.push_str(" · ");
        }
        out.push_str(part);
        if out.len() >= cap {
            let mut end = cap;
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            out.truncate(end);
            break;
        }
    }
    out
}

/// Turns what a person typed into an FTS5 query: every word is a quoted phrase (so `AND`, `-`,
/// `:`, `*`, `(` and quotes are plain text) and all must match; the last word matches as a
/// prefix, so results appear while a word is still being typed. `None` when nothing searchable
/// was typed.
pub fn fts_query(input: &str) -> Option<String> {
    let words: Vec<&str> = input
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .take(MAX_WORDS)
        .collect();
    let last = words.len().checked_sub(1)?;
    let phrases: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, word)| {
            let quoted = format!("\"{}\"", word.replace('"', "\"\""));
            if i == last && word.chars().last().is_some_and(char::is_alphanumeric) {
                quoted + "*"
            } else {
                quoted
            }
        })
        .collect();
    Some(phrases.join(" "))
}

/// A piece of a snippet: plain text, or a word that matched.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Segment {
    pub text: String,
    pub hit: bool,
}

/// Splits a snippet from FTS5 at its markers.
pub fn segments(snippet: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut hit = false;
    let mut current = String::new();
    for c in snippet.chars() {
        if c == HIT_START || c == HIT_END {
            if !current.is_empty() {
                out.push(Segment {
                    text: std::mem::take(&mut current),
                    hit,
                });
            }
            hit = c == HIT_START;
        } else {
            current.push(c);
        }
    }
    if !current.is_empty() {
        out.push(Segment { text: current, hit });
    }
    out
}

/// One matching record.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub resource_type: String,
    pub resource_id: String,
    pub title: Vec<Segment>,
    /// The clinical date, `YYYY-MM-DD`.
    pub date: Option<String>,
    /// Where the words matched; empty when that was only the title.
    pub snippet: Vec<Segment>,
}

#[derive(sqlx::FromRow)]
struct HitRow {
    resource_type: String,
    resource_id: String,
    sort_date: Option<String>,
    title: String,
    codes: String,
    notes: String,
    body: String,
}

/// The user's records matching `input`, best first, at most `limit`. Only `person_id`'s records
/// are ever looked at.
pub async fn search(
    db: &SqlitePool,
    person_id: i64,
    input: &str,
    limit: i64,
) -> sqlx::Result<Vec<Hit>> {
    let Some(query) = fts_query(input) else {
        return Ok(Vec::new());
    };
    // Column weights: a hit in the title counts most, one deep inside a document least.
    let rows: Vec<HitRow> = sqlx::query_as(
        "SELECT d.resource_type, d.resource_id, r.sort_date,
                highlight(search_fts, 0, char(2), char(3)) AS title,
                snippet(search_fts, 1, char(2), char(3), '…', 16) AS codes,
                snippet(search_fts, 2, char(2), char(3), '…', 16) AS notes,
                snippet(search_fts, 3, char(2), char(3), '…', 16) AS body
         FROM search_fts
         JOIN search_docs d ON d.id = search_fts.rowid
         JOIN resources r ON r.source_id = d.source_id AND r.resource_type = d.resource_type
              AND r.resource_id = d.resource_id
         WHERE search_fts MATCH ? AND d.person_id = ?
         ORDER BY bm25(search_fts, 10.0, 4.0, 2.0, 1.0), r.sort_date DESC
         LIMIT ?",
    )
    .bind(&query)
    .bind(person_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            // Show where the words matched beyond the title: a note or the document first, the
            // code names only when the title itself does not show the match (they mostly repeat it).
            let has_hit = |s: &&String| s.contains(HIT_START);
            let snippet = if row.title.contains(HIT_START) {
                [&row.notes, &row.body].into_iter().find(has_hit)
            } else {
                [&row.notes, &row.body, &row.codes]
                    .into_iter()
                    .find(has_hit)
            }
            .map(|s| segments(s))
            .unwrap_or_default();
            let title = if row.title.is_empty() {
                segments(&row.resource_type)
            } else {
                segments(&row.title)
            };
            Hit {
                title,
                date: row.sort_date.map(|d| d.chars().take(10).collect()),
                snippet,
                resource_type: row.resource_type,
                resource_id: row.resource_id,
            }
        })
        .collect())
}

/// Writes the search text of resources just inserted or changed in `conn` (the ingest
/// transaction). Re-indexing a resource replaces its text, so repeated imports never duplicate.
pub async fn index(
    conn: &mut SqliteConnection,
    person_id: i64,
    source_id: i64,
    docs: &[Indexed<'_>],
) -> sqlx::Result<()> {
    // A batch may name one resource twice (a changed copy later in a Bundle): the last one wins.
    let mut seen = HashSet::new();
    let mut unique: Vec<&Indexed<'_>> = docs
        .iter()
        .rev()
        .filter(|(t, id, _)| seen.insert((*t, *id)))
        .collect();
    unique.reverse();
    // Five bound values per row; SQLite allows 32766 per statement.
    for chunk in unique.chunks(1000) {
        let mut upsert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO search_docs (person_id, source_id, resource_type, resource_id) ",
        );
        upsert.push_values(chunk, |mut row, (t, id, _)| {
            row.push_bind(person_id)
                .push_bind(source_id)
                .push_bind(*t)
                .push_bind(*id);
        });
        upsert.push(
            " ON CONFLICT (source_id, resource_type, resource_id)
              DO UPDATE SET person_id = excluded.person_id
              RETURNING id, resource_type, resource_id",
        );
        let ids: Vec<(i64, String, String)> = upsert.build_query_as().fetch_all(&mut *conn).await?;
        let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM search_fts WHERE rowid IN (");
        let mut list = delete.separated(", ");
        for (id, _, _) in &ids {
            list.push_bind(*id);
        }
        delete.push(")");
        delete.build().execute(&mut *conn).await?;
        let docs_of: std::collections::HashMap<(&str, &str), &Document> =
            chunk.iter().map(|(t, id, doc)| ((*t, *id), *doc)).collect();
        let rows: Vec<(i64, &Document)> = ids
            .iter()
            .filter_map(|(rowid, t, id)| {
                docs_of
                    .get(&(t.as_str(), id.as_str()))
                    .map(|doc| (*rowid, *doc))
            })
            .collect();
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO search_fts (rowid, title, codes, notes, body) ",
        );
        insert.push_values(&rows, |mut row, (rowid, doc)| {
            row.push_bind(*rowid)
                .push_bind(&doc.title)
                .push_bind(&doc.codes)
                .push_bind(&doc.notes)
                .push_bind(&doc.body);
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Replaces the title in a resource's search text, for a title learnt after it was indexed
/// (a medicine named by a Medication stored later).
pub async fn set_title(
    conn: &mut SqliteConnection,
    source_id: i64,
    resource_type: &str,
    resource_id: &str,
    title: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE search_fts SET title = ? WHERE rowid = (SELECT id FROM search_docs
         WHERE source_id = ? AND resource_type = ? AND resource_id = ?)",
    )
    .bind(clean(title))
    .bind(source_id)
    .bind(resource_type)
    .bind(resource_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Indexes every resource that has no search text yet: all of them the first time a database
/// from before search starts, and none afterwards (one indexed anti-join to find out). Runs in
/// batches, each its own transaction, so a large record does not hold the write lock for long.
pub async fn index_missing(db: &SqlitePool) -> sqlx::Result<u64> {
    let mut total = 0;
    loop {
        let rows: Vec<(i64, i64, String, String, String)> = sqlx::query_as(
            "SELECT r.person_id, r.source_id, r.resource_type, r.resource_id, r.json
             FROM resources r
             WHERE NOT EXISTS (SELECT 1 FROM search_docs d WHERE d.source_id = r.source_id
                   AND d.resource_type = r.resource_type AND d.resource_id = r.resource_id)
             LIMIT 500",
        )
        .fetch_all(db)
        .await?;
        if rows.is_empty() {
            return Ok(total);
        }
        let docs: Vec<Document> = rows
            .iter()
            .map(|(_, _, _, _, json)| {
                serde_json::from_str::<Value>(json)
                    .map(|v| document(&v))
                    .unwrap_or_default()
            })
            .collect();
        let mut tx = db.begin().await?;
        // A batch mixes sources; group so each index call has one owner and source.
        let mut groups: Vec<((i64, i64), Vec<Indexed<'_>>)> = Vec::new();
        for (row, doc) in rows.iter().zip(&docs) {
            let key = (row.0, row.1);
            let entry = (row.2.as_str(), row.3.as_str(), doc);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) => list.push(entry),
                None => groups.push((key, vec![entry])),
            }
        }
        for ((person_id, source_id), list) in &groups {
            index(&mut tx, *person_id, *source_id, list).await?;
        }
        tx.commit().await?;
        total += rows.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_words_become_quoted_phrases_with_a_prefix_last_word() {
        assert_eq!(
            fts_query("viral sinus").as_deref(),
            Some("\"viral\" \"sinus\"*")
        );
        assert_eq!(fts_query("  hdl  ").as_deref(), Some("\"hdl\"*"));
        // Operators, column filters and stray quotes are plain text inside the quotes.
        assert_eq!(
            fts_query("a AND b\" NEAR(c) title:x").as_deref(),
            Some("\"a\" \"AND\" \"b\"\"\" \"NEAR(c)\" \"title:x\"*")
        );
        // A last word ending in punctuation is not a prefix (`x"*` would be a syntax error).
        assert_eq!(fts_query("sinusitis)").as_deref(), Some("\"sinusitis)\""));
        assert_eq!(fts_query(""), None);
        assert_eq!(fts_query(" \" - * () "), None);
        assert_eq!(
            fts_query(&"word ".repeat(100))
                .unwrap()
                .matches("word")
                .count(),
            MAX_WORDS
        );
    }

    #[test]
    fn snippets_split_at_their_markers() {
        assert_eq!(
            segments("Viral \u{2}sinus\u{3}itis <b>"),
            vec![
                Segment {
                    text: "Viral ".into(),
                    hit: false
                },
                Segment {
                    text: "sinus".into(),
                    hit: true
                },
                Segment {
                    text: "itis <b>".into(),
                    hit: false
                },
            ]
        );
        assert!(segments("").is_empty());
    }

    #[test]
    fn documents_gather_codes_notes_and_decoded_text() {
        let note = base64::engine::general_purpose::STANDARD
            .encode("<p>Patient reports <b>dizziness</b> &amp; fatigue</p><script>x()</script>");
        let resource = json!({
            "resourceType": "DocumentReference", "id": "d1",
            "type": {"coding": [{"system": "http://loinc.org", "code": "34117-2", "display": "History and physical note"}]},
            "description": "Annual visit",
            "author": [{"reference": "Practitioner/1", "display": "Dr. Quinn"}],
            "note": [{"text": "Bring\u{2} glasses"}],
            "content": [
                {"attachment": {"contentType": "text/html; charset=utf-8", "data": note}},
                {"attachment": {"contentType": "application/pdf", "data": "JVBERi0="}}
            ],
            "text": {"status": "generated", "div": "<div>narrative</div>"}
        });
        let doc = document(&resource);
        assert_eq!(doc.title, "History and physical note");
        assert!(doc.codes.contains("History and physical note"));
        assert!(doc.codes.contains("Dr. Quinn"));
        assert_eq!(doc.notes, "Bring glasses", "markers are stripped");
        assert!(doc.body.contains("Annual visit"));
        assert!(
            doc.body.contains("Patient reports dizziness & fatigue"),
            "{}",
            doc.body
        );
        assert!(!doc.body.contains("x()"));
        assert!(!doc.body.contains("narrative") && !doc.codes.contains("narrative"));
    }

    #[test]
    fn long_attachments_are_capped() {
        let text = "word ".repeat(40_000);
        let data = base64::engine::general_purpose::STANDARD.encode(&text);
        let doc =
            document(&json!({"resourceType": "Binary", "contentType": "text/plain", "data": data}));
        assert!(doc.body.len() <= BODY_CAP && doc.body.len() > BODY_CAP / 2);
    }

    #[test]
    fn html_becomes_plain_text() {
        assert_eq!(
            html_to_text("<h1>LDL</h1><style>p{}</style>is &lt;100&gt; &#77;g &#x41;"),
            "LDL is <100> Mg A"
        );
        assert_eq!(html_to_text("a & b <unclosed"), "a & b");
    }
}
