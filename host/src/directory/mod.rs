//! The provider directory: vendors' published lists of patient-access FHIR endpoints, kept in
//! SQLite and searched as members type, so that connecting a hospital does not start with "what
//! is its FHIR base URL?".
//!
//! The sources are data (`plugin-registry/directory.toml`, replaceable by the operator like
//! `catalog.toml`); each names the catalog platform its endpoints sign in with. Nothing is
//! downloaded until an administrator asks ([`refresh`]); without a directory the Sources page
//! still offers the catalog and a custom endpoint.
//!
//! A refresh streams the list into a staging database on disk ([`bundle`], [`stage`]) and
//! resolves its references there in SQL, so memory stays bounded however large the list (Epic's
//! is about 90 MB); only then does one short transaction replace the source's rows. A list that
//! cannot be downloaded or read, or whose size changed by more than a fifth since the last one,
//! leaves the previous directory in place and says why (`directory_refreshes`).

pub mod added;
pub mod bundle;
pub mod refresh;
pub mod stage;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::catalog::Catalog;
use crate::plugins::grants::HostPattern;

/// The operator's copy, looked for in the plugin registry folder.
pub const FILE_NAME: &str = "directory.toml";
/// Results shown for one search: more is noise, not choice.
pub const SEARCH_LIMIT: i64 = 30;

const BUNDLED: &str = include_str!("../../../plugin-registry/directory.toml");

/// One published list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub id: String,
    pub name: String,
    pub url: String,
    pub format: Format,
    /// A catalog platform id.
    pub platform: String,
}

impl Source {
    /// Whether Fasten can use this source: a plain id, an absolute http(s) URL with a host, and
    /// a catalog platform whose endpoints can be connected. The problem in words when not.
    pub fn check(&self, catalog: &Catalog) -> Result<(), String> {
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err("the id must be lower-case letters, digits and '-'".into());
        }
        let url = url::Url::parse(&self.url)
            .map_err(|e| format!("url {:?} is not an absolute URL ({e})", self.url))?;
        if !matches!(url.scheme(), "https" | "http") || HostPattern::origin_of(&url).is_none() {
            return Err(format!(
                "url {:?} must be an http(s) URL with a host",
                self.url
            ));
        }
        if catalog.platform(&self.platform).is_none() {
            return Err(format!(
                "platform {:?} is not in the provider catalog",
                self.platform
            ));
        }
        if catalog.organisation_entry(&self.platform).is_none() {
            return Err(format!(
                "the catalog has no entry of platform {:?} whose FHIR base the user supplies, \
                 so its endpoints could not be connected",
                self.platform
            ));
        }
        Ok(())
    }
}

/// How a list is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// A FHIR R4 Bundle of Organization and Endpoint resources: Oracle Health's lists, and
    /// SMART's User-access Brands bundle (Epic's), whose facilities point at their brand with
    /// `partOf`. One reader serves both, because the Brands profile is such a Bundle.
    FhirBundle,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    #[serde(rename = "source", default)]
    sources: Vec<Source>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error("cannot read the provider directory's sources {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the provider directory's sources {origin} are not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("the provider directory's sources {origin}: source {id:?}: {problem}")]
    Invalid {
        origin: String,
        id: String,
        problem: String,
    },
}

/// The sources Fasten may download, checked against the catalog.
#[derive(Debug, Clone, Default)]
pub struct Sources(Vec<Source>);

impl Sources {
    /// `file` when given (`[directory] file`), else `registry_dir/directory.toml` when the
    /// operator put one there, else the bundled list.
    pub fn load(
        file: Option<&Path>,
        registry_dir: &Path,
        catalog: &Catalog,
    ) -> Result<Sources, SourcesError> {
        let (path, required) = match file {
            Some(path) => (path.to_path_buf(), true),
            None => (registry_dir.join(FILE_NAME), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Sources::parse(&text, &path.display().to_string(), catalog),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Sources::bundled(catalog))
            }
            Err(source) => Err(SourcesError::Read { path, source }),
        }
    }

    /// The built-in list, less the lists whose platform `catalog` cannot connect. An operator may
    /// replace the catalog with one that leaves a vendor out; that must not stop Fasten from
    /// starting, so those lists are skipped with a warning. (An operator's own list is checked
    /// strictly by [`Sources::parse`]: a mistake there is theirs to see.)
    fn bundled(catalog: &Catalog) -> Sources {
        let all = Sources::parse(BUNDLED, "bundled", &Catalog::bundled())
            .unwrap_or_else(|e| panic!("the bundled provider directory list is broken: {e}"));
        Sources(
            all.0
                .into_iter()
                .filter(|source| match source.check(catalog) {
                    Ok(()) => true,
                    Err(problem) => {
                        tracing::warn!(source = %source.id, %problem, "provider directory list left out");
                        false
                    }
                })
                .collect(),
        )
    }

    pub fn parse(text: &str, origin: &str, catalog: &Catalog) -> Result<Sources, SourcesError> {
        let file: SourcesFile = toml::from_str(text).map_err(|e| SourcesError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let mut ids = HashSet::new();
        for source in &file.sources {
            let invalid = |problem: String| SourcesError::Invalid {
                origin: origin.to_owned(),
                id: source.id.clone(),
                problem,
            };
            if source.id.starts_with(added::ID_PREFIX) {
                return Err(invalid(format!(
                    "ids starting with {:?} are kept for the lists an administrator adds",
                    added::ID_PREFIX
                )));
            }
            if !ids.insert(source.id.as_str()) {
                return Err(invalid("the id is used by another source".into()));
            }
            source.check(catalog).map_err(invalid)?;
        }
        Ok(Sources(file.sources))
    }

    pub fn list(&self) -> &[Source] {
        &self.0
    }

    pub fn get(&self, id: &str) -> Option<&Source> {
        self.0.iter().find(|s| s.id == id)
    }

    /// These sources followed by `more` (the lists an administrator added).
    pub fn with(&self, more: Vec<Source>) -> Sources {
        let mut all = self.0.clone();
        all.extend(more);
        Sources(all)
    }

    /// Just the source `id`, if there is one.
    pub fn only(&self, id: &str) -> Option<Sources> {
        self.get(id).map(|s| Sources(vec![s.clone()]))
    }

    /// The origins a refresh may reach: the listed URLs' own, nothing else (a redirect
    /// elsewhere is refused in words).
    pub fn origins(&self) -> Vec<HostPattern> {
        self.0
            .iter()
            .filter_map(|s| url::Url::parse(&s.url).ok())
            .filter_map(|u| HostPattern::origin_of(&u))
            .collect()
    }
}

/// The directory as the running Fasten holds it: its sources, and the lock that lets one
/// refresh run at a time.
pub struct Directory {
    pub sources: Sources,
    running: Arc<tokio::sync::Mutex<()>>,
}

impl Directory {
    /// Every source a refresh downloads and the admin page lists: the file's, then the lists
    /// an administrator added (read now, so an added list takes part in the next refresh).
    pub async fn all_sources(&self, db: &SqlitePool) -> sqlx::Result<Sources> {
        Ok(self.sources.with(added::list(db).await?))
    }

    pub fn new(sources: Sources) -> Directory {
        Directory {
            sources,
            running: Arc::default(),
        }
    }

    /// The refresh lock, unless a refresh holds it already.
    pub fn try_start(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        self.running.clone().try_lock_owned().ok()
    }
}

/// One choice in the search results: a FHIR base and the organisation that matched.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Choice {
    pub id: i64,
    /// The brand's name (the organisation that owns the endpoint).
    pub name: String,
    pub platform: String,
    pub source: String,
    pub fhir_base: String,
    /// The organisation whose name, alias or place matched (a facility of the brand).
    pub matched: String,
    pub city: Option<String>,
    pub state: Option<String>,
}

/// Whether any source has been downloaded.
pub async fn is_empty(db: &SqlitePool) -> sqlx::Result<bool> {
    let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM directory_endpoints)")
        .fetch_one(db)
        .await?;
    Ok(!any)
}

/// Choices whose organisations match every typed word (name, alias, city, state or zip; the
/// last word as a prefix), best first. An organisation group behind one endpoint is one choice,
/// shown with its best-matching member.
pub async fn search(db: &SqlitePool, input: &str, limit: i64) -> sqlx::Result<Vec<Choice>> {
    let Some(query) = crate::search::fts_query(input) else {
        return Ok(Vec::new());
    };
    // FTS5 ranks inside its own query only, so the ranked hits (the best few thousand: more
    // is noise) are grouped outside it. SQLite takes the bare columns of a MIN() aggregate from
    // the row holding the minimum: each group is shown with its best-ranked organisation.
    sqlx::query_as(
        "WITH hits AS (
           SELECT rowid AS org_id, bm25(directory_fts, 10.0, 6.0, 3.0) AS score
           FROM directory_fts WHERE directory_fts MATCH ? ORDER BY score LIMIT 2000)
         SELECT d.id, d.name, d.platform, d.source, d.fhir_base, o.name AS matched, o.city,
                o.state, MIN(h.score) AS score
         FROM hits h
         JOIN directory_orgs o ON o.id = h.org_id
         JOIN directory_endpoints d ON d.id = o.endpoint_id
         GROUP BY d.id
         ORDER BY score, d.name
         LIMIT ?",
    )
    .bind(query)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// A choice by id, for the connect hand-off.
pub async fn choice(db: &SqlitePool, id: i64) -> sqlx::Result<Option<Choice>> {
    sqlx::query_as(
        "SELECT d.id, d.name, d.platform, d.source, d.fhir_base, d.name AS matched,
                o.city, o.state
         FROM directory_endpoints d LEFT JOIN directory_orgs o ON o.endpoint_id = d.id
         WHERE d.id = ? ORDER BY o.id LIMIT 1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// What Admin → Provider directory shows of one source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStanding {
    pub source: Source,
    /// Added by an administrator (so it can be removed), not from directory.toml.
    pub added: bool,
    pub choices: i64,
    pub entries: i64,
    /// When the directory now held was downloaded.
    pub downloaded_at: Option<i64>,
}

pub async fn standing(db: &SqlitePool, sources: &Sources) -> sqlx::Result<Vec<SourceStanding>> {
    let mut out = Vec::new();
    for source in sources.list() {
        let (choices, entries): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(DISTINCT d.id), COUNT(o.id) FROM directory_endpoints d
             LEFT JOIN directory_orgs o ON o.endpoint_id = d.id WHERE d.source = ?",
        )
        .bind(&source.id)
        .fetch_one(db)
        .await?;
        let downloaded_at: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(finished_at) FROM directory_refreshes
             WHERE source = ? AND status = 'succeeded'",
        )
        .bind(&source.id)
        .fetch_one(db)
        .await?;
        out.push(SourceStanding {
            added: source.id.starts_with(added::ID_PREFIX),
            source: source.clone(),
            choices,
            entries,
            downloaded_at,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_sources_parse_against_the_bundled_catalog() {
        let catalog = Catalog::bundled();
        let sources = Sources::parse(BUNDLED, "bundled", &catalog).unwrap();
        let epic = sources.get("epic").unwrap();
        assert_eq!(epic.url, "https://open.epic.com/Endpoints/Brands");
        assert_eq!(epic.platform, "epic");
        assert!(sources.get("oracle-millennium").is_some());
        assert_eq!(sources.origins().len(), sources.list().len());
    }

    #[test]
    fn a_source_must_name_a_connectable_platform() {
        let catalog = Catalog::bundled();
        let text = |platform: &str| {
            format!(
                "[[source]]\nid = \"x\"\nname = \"X\"\nurl = \"https://x.example/list\"\n\
                 format = \"fhir-bundle\"\nplatform = \"{platform}\"\n"
            )
        };
        let err = Sources::parse(&text("nope"), "t", &catalog)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"nope\"") && err.contains("catalog"), "{err}");
        // The SMART platform only has a sandbox with its own base: nothing to hand a base to.
        let err = Sources::parse(&text("smart"), "t", &catalog)
            .unwrap_err()
            .to_string();
        assert!(err.contains("FHIR base the user supplies"), "{err}");
        assert!(Sources::parse(&text("epic"), "t", &catalog).is_ok());
        let err = Sources::parse(
            &text("epic").replace("https://x.example/list", "x"),
            "t",
            &catalog,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("url"), "{err}");
    }

    #[test]
    fn an_operators_catalog_without_a_vendor_leaves_its_built_in_list_out() {
        // The bundled catalog less Epic: what an operator's own catalog.toml might be.
        let bundled = include_str!("../../../plugin-registry/catalog.toml");
        let without_epic: String = bundled
            .split("\n[[")
            .filter(|block| {
                !block.contains("platform = \"epic\"") && !block.contains("id = \"epic\"")
            })
            .collect::<Vec<_>>()
            .join("\n[[");
        let catalog = Catalog::parse(&without_epic, "operator").unwrap();
        assert!(catalog.platform("epic").is_none());
        let dir = tempfile::tempdir().unwrap();
        let sources = Sources::load(None, dir.path(), &catalog).unwrap();
        assert!(sources.get("epic").is_none());
        assert!(sources.get("oracle-millennium").is_some());
    }

    #[test]
    fn the_operators_file_wins_and_a_named_file_must_exist() {
        let catalog = Catalog::bundled();
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Sources::load(None, dir.path(), &catalog)
                .unwrap()
                .get("epic")
                .is_some()
        );
        std::fs::write(dir.path().join(FILE_NAME), "").unwrap();
        assert!(
            Sources::load(None, dir.path(), &catalog)
                .unwrap()
                .list()
                .is_empty()
        );
        let missing = dir.path().join("none.toml");
        assert!(Sources::load(Some(&missing), dir.path(), &catalog).is_err());
    }
}
