//! The text full-text search indexes for one resource, derived at ingest (see [`super::index`]):
//! its title, the names of its codes and of the people and places it references, its notes, and
//! its document text (descriptions, and text/plain or text/html attachments, base64-decoded).
//!
//! It is derived here, in Rust, rather than by SQL triggers, because attachments need decoding
//! that SQL cannot do. The search page only queries what is written from it (`search_fts`).
//! Text is capped per field, so one huge document cannot bloat the index, and cleaned of control
//! characters, so the markers FTS5 snippets put around hits (`\u{2}` and `\u{3}`) can only come
//! from FTS5.

use std::collections::HashSet;

use base64::Engine;
use serde::Serialize;
use serde_json::Value;

/// Decoded attachment text beyond this is not indexed: a long document's first 64 KiB carry
/// enough words to find it, and the index stays small.
const BODY_CAP: usize = 64 * 1024;
/// Names of codes and notes are short; this only guards against pathological resources.
const FIELD_CAP: usize = 16 * 1024;

/// The searchable text of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Document {
    pub title: String,
    pub codes: String,
    pub notes: String,
    pub body: String,
}

/// Extracts the searchable text of a resource: its title (the one [`super::index::title`] gives,
/// passed in so it is derived once), the names of every code in it (and the display names of
/// references, so a clinician's or a clinic's name finds its records), notes and comments, and
/// document text (descriptions and text/plain or text/html attachments, decoded).
pub fn document(resource: &Value, title: Option<&str>) -> Document {
    let mut parts = Parts::default();
    parts.walk(resource, true);
    let mut doc = Document {
        title: clean(title.unwrap_or_default()),
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
pub(crate) fn clean(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The document as ingest derives it, with the resource's own title.
    fn document(resource: &Value) -> Document {
        super::document(resource, super::super::index::title(resource).as_deref())
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
