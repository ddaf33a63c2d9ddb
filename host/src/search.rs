//! Full-text search over each user's records (SQLite FTS5): this module only queries.
//!
//! Every stored resource has one row in `search_docs` (owner and identity) and its text in
//! `search_fts` under the same rowid, in four columns: title, code names, notes and document
//! text. The text is derived at ingest with everything else kept beside a resource
//! (`fhir::index`, `fhir::search_text`) and written by the ingest writer in the same transaction
//! (`fhir::ingest`, which also indexes databases from before search at start-up); deletion needs
//! no code, because `search_docs` follows its resource by a cascading foreign key and a trigger
//! drops the text.
//!
//! Users type plain words, never FTS syntax: [`fts_query`] quotes each word so that operators
//! and stray quotes are just text. Snippets mark hits with control characters that cannot occur
//! in indexed text (ingest strips them from it), and come back as [`Segment`]s so that templates
//! escape every piece of record text and add `<mark>` themselves.

use serde::Serialize;
use sqlx::SqlitePool;

/// Marks the start and end of a hit in snippets; stripped from indexed text so they only ever
/// come from FTS5.
const HIT_START: char = '\u{2}';
const HIT_END: char = '\u{3}';
/// More words than this adds nothing but cost.
const MAX_WORDS: usize = 16;

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
                date: row.sort_date.as_deref().map(crate::fhir::read::iso_date),
                snippet,
                resource_type: row.resource_type,
                resource_id: row.resource_id,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
