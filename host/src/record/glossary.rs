//! The glossary: what a lab test or vital sign is, in plain words, with a link to learn more.
//!
//! The offline set (`host/data/glossary.toml`, written for Fasten) is compiled into the binary
//! and found by LOINC code first, then by name or alias, so records from providers that send
//! only a name still get an explanation. Pages call [`lookup`] (or [`lookup_codes`] for a
//! resource's codes).
//!
//! When the administrator opts in (`[glossary] online = true`), codes the offline set lacks are
//! asked of MedlinePlus Connect through the plugin host's capability-limited HTTP client, which
//! may reach that one origin only. Answers (and misses) are cached in `glossary_cache` for a
//! month, so each code is fetched at most once a month. With the setting off, [`online`] returns
//! at once and nothing leaves the machine.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::SqlitePool;

use crate::config::GlossaryConfig;
use crate::plugins::PluginHost;
use crate::plugins::grants::HostPattern;
use crate::store::unix_now;

/// LOINC's OID, as MedlinePlus Connect names the code system.
const LOINC_OID: &str = "2.16.840.1.113883.6.1";
/// How long a MedlinePlus answer (or the lack of one) is reused.
const CACHE_SECONDS: i64 = 30 * 24 * 3600;
/// A page waits at most this long for MedlinePlus; on timeout it shows no entry and asks again
/// on a later visit.
const ONLINE_TIMEOUT: Duration = Duration::from_secs(5);
/// Summaries from MedlinePlus can run to many paragraphs; the box shows the opening.
const SUMMARY_CAP: usize = 1200;

/// A `glossary_cache` row: title, summary and link, all absent for a remembered miss.
type CachedAnswer = (Option<String>, Option<String>, Option<String>);

/// One explanation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub loinc: Vec<String>,
    pub summary: String,
    /// Where to learn more.
    pub url: String,
    /// Fetched from MedlinePlus Connect rather than written for Fasten (shown with credit).
    #[serde(default)]
    pub from_medlineplus: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    entry: Vec<Entry>,
}

struct Glossary {
    entries: Vec<Entry>,
    by_code: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
}

static GLOSSARY: LazyLock<Glossary> = LazyLock::new(|| {
    let file: File = toml::from_str(include_str!("../../data/glossary.toml"))
        .expect("the glossary compiled into the binary parses (a unit test checks it)");
    let mut by_code = HashMap::new();
    let mut by_name = HashMap::new();
    for (i, entry) in file.entry.iter().enumerate() {
        for code in &entry.loinc {
            by_code.entry(code.clone()).or_insert(i);
        }
        for name in std::iter::once(&entry.name).chain(&entry.aliases) {
            by_name.entry(normalize(name)).or_insert(i);
        }
    }
    Glossary {
        entries: file.entry,
        by_code,
        by_name,
    }
});

/// Every offline entry, in the file's order (grouped by topic).
pub fn entries() -> &'static [Entry] {
    &GLOSSARY.entries
}

/// Lower case, letters and digits only, single spaces: "HbA1c [%]" and "hba1c" compare equal.
fn normalize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn is_loinc(code_system: &str) -> bool {
    let system = code_system.trim_end_matches('/').to_ascii_lowercase();
    system == "http://loinc.org"
        || system == "https://loinc.org"
        || system == format!("urn:oid:{LOINC_OID}")
        || system == LOINC_OID
}

/// The offline entry for a code or, failing that, a name: `lookup("http://loinc.org", "2085-9",
/// "")` and `lookup("", "", "HDL Cholesterol")` both find HDL. A name matches when it equals an
/// entry's name or alias, or when its part before a bracket does ("Hemoglobin [Mass/volume] in
/// Blood" is hemoglobin), except that a name about urine only matches an entry about urine.
pub fn lookup(code_system: &str, code: &str, name: &str) -> Option<Entry> {
    let glossary = &*GLOSSARY;
    if is_loinc(code_system)
        && let Some(&i) = glossary.by_code.get(code.trim())
    {
        return Some(glossary.entries[i].clone());
    }
    let full = normalize(name);
    if full.is_empty() {
        return None;
    }
    if let Some(&i) = glossary.by_name.get(&full) {
        return Some(glossary.entries[i].clone());
    }
    let head = normalize(name.split(['[', '(']).next().unwrap_or(""));
    let &i = glossary.by_name.get(&head)?;
    let entry = &glossary.entries[i];
    let about_urine = |s: &str| s.split(' ').any(|w| w == "urine");
    if about_urine(&full) && !about_urine(&normalize(&entry.name)) {
        return None;
    }
    Some(entry.clone())
}

/// The first entry found for any of a resource's codes (`(system, code)` pairs), else for its
/// name.
pub fn lookup_codes<'a>(
    codes: impl IntoIterator<Item = (&'a str, &'a str)>,
    name: &str,
) -> Option<Entry> {
    codes
        .into_iter()
        .find_map(|(system, code)| lookup(system, code, ""))
        .or_else(|| lookup("", "", name))
}

/// The MedlinePlus Connect entry for a LOINC code, from the cache or (at most once a month per
/// code) from MedlinePlus. `None` without a request when `[glossary] online` is off or the code
/// is not LOINC, and `None` when MedlinePlus has nothing or cannot be reached (logged).
pub async fn online(
    db: &SqlitePool,
    plugins: &PluginHost,
    config: &GlossaryConfig,
    code_system: &str,
    code: &str,
) -> Option<Entry> {
    if !config.online || !is_loinc(code_system) || code.trim().is_empty() {
        return None;
    }
    let code = code.trim();
    let cached: Result<Option<CachedAnswer>, _> = sqlx::query_as(
        "SELECT title, summary, url FROM glossary_cache
             WHERE code_system = 'loinc' AND code = ? AND fetched_at > ?",
    )
    .bind(code)
    .bind(unix_now() - CACHE_SECONDS)
    .fetch_optional(db)
    .await;
    match cached {
        Ok(Some((title, summary, url))) => return online_entry(code, title, summary, url),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the glossary cache");
            return None;
        }
    }
    let fetched = match tokio::time::timeout(ONLINE_TIMEOUT, fetch(plugins, config, code)).await {
        Ok(Ok(found)) => found,
        Ok(Err(reason)) => {
            tracing::warn!(code, %reason, "MedlinePlus Connect lookup failed");
            return None;
        }
        Err(_) => {
            tracing::warn!(code, "MedlinePlus Connect did not answer in time");
            return None;
        }
    };
    let (title, summary, url) = match &fetched {
        Some((t, s, u)) => (Some(t.clone()), Some(s.clone()), Some(u.clone())),
        None => (None, None, None),
    };
    let stored = sqlx::query(
        "INSERT INTO glossary_cache (code_system, code, title, summary, url, fetched_at)
         VALUES ('loinc', ?, ?, ?, ?, ?)
         ON CONFLICT (code_system, code) DO UPDATE SET title = excluded.title,
             summary = excluded.summary, url = excluded.url, fetched_at = excluded.fetched_at",
    )
    .bind(code)
    .bind(&title)
    .bind(&summary)
    .bind(&url)
    .bind(unix_now())
    .execute(db)
    .await;
    if let Err(e) = stored {
        tracing::warn!(error = %e, "cannot store a glossary answer");
    }
    online_entry(code, title, summary, url)
}

fn online_entry(
    code: &str,
    title: Option<String>,
    summary: Option<String>,
    url: Option<String>,
) -> Option<Entry> {
    let summary = summary.filter(|s| !s.is_empty())?;
    Some(Entry {
        name: title.unwrap_or_else(|| code.to_string()),
        aliases: Vec::new(),
        loinc: vec![code.to_string()],
        summary,
        // Only web links are shown: a feed could carry anything in its href.
        url: url
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .unwrap_or_else(|| "https://medlineplus.gov/".into()),
        from_medlineplus: true,
    })
}

/// Asks MedlinePlus Connect: `Ok(None)` when it knows nothing about the code.
async fn fetch(
    plugins: &PluginHost,
    config: &GlossaryConfig,
    code: &str,
) -> Result<Option<(String, String, String)>, String> {
    let mut url = url::Url::parse(&config.medlineplus_url)
        .map_err(|e| format!("[glossary] medlineplus_url is not a URL: {e}"))?;
    url.query_pairs_mut()
        .append_pair("mainSearchCriteria.v.cs", LOINC_OID)
        .append_pair("mainSearchCriteria.v.c", code)
        .append_pair("knowledgeResponseType", "application/json");
    let origin = HostPattern::origin_of(&url)
        .ok_or_else(|| format!("{} has no host", config.medlineplus_url))?;
    let feed = plugins
        .host_gate(vec![origin])
        .get_json(url.as_str())
        .await?;
    Ok(parse_feed(&feed))
}

/// The first entry of a MedlinePlus Connect JSON feed: title, summary as plain text, link.
fn parse_feed(feed: &Value) -> Option<(String, String, String)> {
    let entry = feed.pointer("/feed/entry")?.as_array()?.first()?;
    // Atom-as-JSON: text nodes are {"_value": "..."}, though a plain string is accepted too.
    let text = |v: Option<&Value>| -> Option<String> {
        let v = v?;
        v.get("_value")
            .and_then(Value::as_str)
            .or_else(|| v.as_str())
            .map(str::to_owned)
    };
    let title = text(entry.get("title"))?;
    let summary =
        crate::fhir::search_text::html_to_text(&text(entry.get("summary")).unwrap_or_default());
    let mut summary: String = summary.chars().take(SUMMARY_CAP).collect();
    if summary.chars().count() == SUMMARY_CAP {
        summary.push('…');
    }
    let link = match entry.get("link") {
        Some(Value::Array(links)) => links
            .iter()
            .find_map(|l| l.get("href").and_then(Value::as_str)),
        Some(one) => one.get("href").and_then(Value::as_str),
        None => None,
    }
    .unwrap_or_default()
    .to_string();
    Some((title, summary, link))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_bundled_glossary_is_complete_and_consistent() {
        let entries = entries();
        assert!(entries.len() >= 40, "{} entries", entries.len());
        let mut codes = std::collections::HashSet::new();
        for e in entries {
            assert!(
                e.url.starts_with("https://medlineplus.gov/"),
                "{}: {}",
                e.name,
                e.url
            );
            assert!(!e.loinc.is_empty() && e.summary.len() > 60, "{}", e.name);
            assert!(!e.from_medlineplus);
            for code in &e.loinc {
                assert!(codes.insert(code.clone()), "LOINC {code} is in two entries");
            }
        }
    }

    #[test]
    fn entries_are_found_by_code_then_by_name() {
        let hdl = lookup("http://loinc.org", "2085-9", "").unwrap();
        assert_eq!(hdl.name, "HDL cholesterol");
        assert_eq!(
            lookup("urn:oid:2.16.840.1.113883.6.1", "4548-4", "")
                .unwrap()
                .name,
            "Hemoglobin A1c (HbA1c)"
        );
        // The code wins over a misleading name; another system's code does not count.
        assert_eq!(
            lookup("http://loinc.org", "8480-6", "Heart rate")
                .unwrap()
                .name,
            "Systolic blood pressure"
        );
        assert_eq!(
            lookup("http://snomed.info/sct", "2085-9", "Body Weight")
                .unwrap()
                .name,
            "Body weight"
        );
        // Names as labs print them.
        assert_eq!(
            lookup("", "", "Hemoglobin [Mass/volume] in Blood")
                .unwrap()
                .name,
            "Hemoglobin"
        );
        assert_eq!(
            lookup("", "", "  LDL-Cholesterol ").unwrap().name,
            "LDL cholesterol"
        );
        assert_eq!(
            lookup(
                "",
                "",
                "Pain severity - 0-10 verbal numeric rating [Score] - Reported"
            )
            .unwrap()
            .name,
            "Pain score"
        );
        // Urine tests do not borrow the blood test's explanation.
        assert!(lookup("", "", "Glucose [Mass/volume] in Urine").is_none());
        assert_eq!(
            lookup("", "", "Glucose in urine").unwrap().name,
            "Glucose in urine"
        );
        assert!(lookup("http://loinc.org", "0000-0", "Viral sinusitis").is_none());
        assert!(lookup("", "", "").is_none());
        assert_eq!(
            lookup_codes(
                [
                    ("http://snomed.info/sct", "1"),
                    ("http://loinc.org", "2160-0")
                ],
                "x"
            )
            .unwrap()
            .name,
            "Creatinine"
        );
    }

    #[test]
    fn medlineplus_feeds_are_read_as_text() {
        let feed = json!({"feed": {"entry": [{
            "title": {"_value": "Lipase Test"},
            "link": [{"href": "https://medlineplus.gov/lab-tests/lipase-tests/", "rel": "alternate"}],
            "summary": {"_value": "<p>A <b>lipase</b> test &amp; more</p>"}
        }]}});
        assert_eq!(
            parse_feed(&feed),
            Some((
                "Lipase Test".into(),
                "A lipase test & more".into(),
                "https://medlineplus.gov/lab-tests/lipase-tests/".into()
            ))
        );
        assert_eq!(parse_feed(&json!({"feed": {"entry": []}})), None);
        let entry =
            online_entry("1-1", None, Some("s".into()), Some("javascript:x".into())).unwrap();
        assert_eq!(entry.url, "https://medlineplus.gov/");
    }
}
