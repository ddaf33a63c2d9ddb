//! The provider catalog: the SMART-on-FHIR servers offered on the "connect a provider" page and
//! the per-platform quirks the FHIR connector needs to sync from them.
//!
//! It is data (`plugin-registry/catalog.toml`), not code, because vendors change their quirks on
//! their own schedule: Epic starts refusing an unqualified search, Millennium insists on a CarePlan
//! category, a server drops `$everything`. An administrator fixes that by dropping a corrected
//! `catalog.toml` into the plugin registry folder, without waiting for a Fasten release, and the
//! FHIR plugin receives the quirks as plain sync settings ([`Platform::sync_settings`]), so neither
//! the host nor the plugin names a vendor.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

/// Scopes requested when an entry has no override, for servers that speak SMART v1 scopes.
pub const DEFAULT_SCOPES_V1: &str = "launch/patient openid fhirUser offline_access patient/*.read";
/// The same request in SMART v2 syntax, for servers advertising `permission-v2`.
pub const DEFAULT_SCOPES_V2: &str = "launch/patient openid fhirUser offline_access patient/*.rs";

/// The Accept header the FHIR plugin sends unless told otherwise (the R4 JSON media type).
pub const DEFAULT_ACCEPT: &str = "application/fhir+json";
/// Whether the FHIR plugin tries `Patient/$everything` unless told otherwise.
pub const DEFAULT_EVERYTHING: bool = true;

/// The operator's copy, looked for in the plugin registry folder.
pub const FILE_NAME: &str = "catalog.toml";
/// Search answers are rendered into one page; more than this is noise, not choice.
pub const SEARCH_LIMIT: usize = 50;

const BUNDLED: &str = include_str!("../../plugin-registry/catalog.toml");

/// A validated catalog: ids are unique, every entry's platform exists and every URL is usable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "CatalogFile")]
pub struct Catalog {
    #[serde(rename = "platform")]
    platforms: Vec<Platform>,
    #[serde(rename = "entry")]
    entries: Vec<Entry>,
}

/// One EHR product and how its FHIR server must be asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    pub id: String,
    pub name: String,
    /// One sentence shown next to the platform's entries, e.g. where to register an app.
    #[serde(default)]
    pub notes: String,
    /// Accept header for FHIR requests; `None` means [`DEFAULT_ACCEPT`].
    pub accept: Option<String>,
    /// Whether `Patient/$everything` works.
    #[serde(default = "default_everything")]
    pub everything: bool,
    /// Resource type -> category codes: the type is searched once per code instead of once
    /// unqualified, for servers that refuse the unqualified search.
    #[serde(default)]
    pub category_searches: BTreeMap<String, Vec<String>>,
    /// Resource types to fetch beyond the plugin's default set.
    #[serde(default)]
    pub extra_types: Vec<String>,
    /// Resource types to leave out of the plugin's default set.
    #[serde(default)]
    pub skip_types: Vec<String>,
    /// `_count` to ask for; `None` lets the server choose.
    pub page_size: Option<u32>,
    /// The connector plugin that syncs this platform's entries.
    #[serde(default = "default_plugin")]
    pub plugin: String,
    /// How people sign in: SMART App Launch against a FHIR server, or plain OAuth2 against
    /// another API (a wearable's), whose entries give every endpoint and scope themselves.
    #[serde(default)]
    pub sign_in: SignIn,
    /// Extra form fields sent on every token request.
    #[serde(default)]
    pub token_params: BTreeMap<String, String>,
    /// The JSON field a non-standard token endpoint wraps its answer in.
    pub token_envelope: Option<String>,
    /// How a confidential client sends its secret to the token endpoint: `basic` (HTTP Basic,
    /// the default) or `post` (in the form, for APIs that accept nothing else).
    pub client_auth: Option<crate::sources::smart::ClientAuth>,
}

/// How people sign in to a platform's entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignIn {
    #[default]
    Smart,
    OAuth2,
}

/// Something a user can pick on the connect page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Id of a [`Platform`].
    pub platform: String,
    /// FHIR R4 base URL; empty when each organisation has its own and the user enters it.
    #[serde(default)]
    pub fhir_base: String,
    /// `None` means SMART discovery finds it.
    pub authorize_url: Option<String>,
    /// `None` means SMART discovery finds it.
    pub token_url: Option<String>,
    /// `None` means [`DEFAULT_SCOPES_V1`] or [`DEFAULT_SCOPES_V2`].
    pub scopes: Option<String>,
    /// Empty when the user supplies their own app registration.
    #[serde(default)]
    pub client_id: String,
    /// The app registration needs a client secret.
    #[serde(default)]
    pub confidential: bool,
    /// Test data only.
    #[serde(default)]
    pub sandbox: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read the provider catalog {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the provider catalog {origin} is not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("the provider catalog {origin}: {problem}")]
    Invalid { origin: String, problem: Problem },
}

/// What is wrong with one platform or entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{subject}: {message}")]
pub struct Problem {
    /// e.g. `entry "epic-sandbox"`.
    pub subject: String,
    pub message: String,
}

/// The file as written; [`Catalog`] is what is left once it passes [`validate`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(rename = "platform", default)]
    platforms: Vec<Platform>,
    #[serde(rename = "entry", default)]
    entries: Vec<Entry>,
}

impl TryFrom<CatalogFile> for Catalog {
    type Error = Problem;

    fn try_from(file: CatalogFile) -> Result<Catalog, Problem> {
        validate(file)
    }
}

fn default_plugin() -> String {
    crate::sources::FHIR_PLUGIN.to_string()
}

fn default_everything() -> bool {
    DEFAULT_EVERYTHING
}

impl Catalog {
    /// The catalog shipped inside the binary.
    pub fn bundled() -> Catalog {
        Catalog::parse(BUNDLED, "plugin-registry/catalog.toml (bundled)")
            .unwrap_or_else(|e| panic!("the bundled provider catalog is broken: {e}"))
    }

    /// An operator-supplied catalog file.
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.to_owned(),
            source,
        })?;
        Catalog::parse(&text, &path.display().to_string())
    }

    /// `dir/catalog.toml` when the operator put one there, else the bundled catalog.
    pub fn from_registry(dir: &Path) -> Result<Catalog, CatalogError> {
        let path = dir.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => Catalog::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Catalog::bundled()),
            Err(source) => Err(CatalogError::Read { path, source }),
        }
    }

    /// `origin` names the text in error messages (a path, or "bundled").
    pub fn parse(text: &str, origin: &str) -> Result<Catalog, CatalogError> {
        let file: CatalogFile = toml::from_str(text).map_err(|e| CatalogError::Syntax {
            origin: origin.to_owned(),
            // toml's message already carries the line, column and offending key.
            message: e.to_string().trim_end().to_owned(),
        })?;
        validate(file).map_err(|problem| CatalogError::Invalid {
            origin: origin.to_owned(),
            problem,
        })
    }

    pub fn platforms(&self) -> &[Platform] {
        &self.platforms
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    pub fn platform(&self, id: &str) -> Option<&Platform> {
        self.platforms.iter().find(|p| p.id == id)
    }

    /// The platform's entry for "your organisation": the one whose FHIR base the user supplies,
    /// which a provider directory result fills in.
    pub fn organisation_entry(&self, platform: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.platform == platform && e.needs_fhir_base() && !e.sandbox)
    }

    /// Validation guarantees every entry of this catalog has its platform.
    pub fn platform_of(&self, entry: &Entry) -> &Platform {
        self.platform(&entry.platform).unwrap_or_else(|| {
            panic!(
                "entry {:?} names platform {:?}, which is not in this catalog",
                entry.id, entry.platform
            )
        })
    }

    /// Entries whose name, aliases or platform name contain every word of `query`
    /// (case-insensitive; different words may match different fields), sorted by name and cut
    /// at [`SEARCH_LIMIT`]. An empty query lists everything.
    pub fn search(&self, query: &str) -> Vec<&Entry> {
        let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        let mut hits: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|entry| {
                let platform = self.platform_of(entry);
                let fields: Vec<String> = std::iter::once(&entry.name)
                    .chain(&entry.aliases)
                    .chain(std::iter::once(&platform.name))
                    .map(|f| f.to_lowercase())
                    .collect();
                words
                    .iter()
                    .all(|word| fields.iter().any(|field| field.contains(word.as_str())))
            })
            .collect();
        hits.sort_by_cached_key(|e| (e.name.to_lowercase(), e.id.clone()));
        hits.truncate(SEARCH_LIMIT);
        hits
    }
}

impl Platform {
    /// The settings handed to the FHIR plugin's sync. Keys appear only when the platform departs
    /// from the plugin's defaults, so a catalog change that restates a default changes nothing:
    /// `accept`, `everything` ("true"/"false"), `category_searches` (`Type=a,b;Type2=c`, types
    /// sorted), `extra_types` and `skip_types` (comma-separated), `page_size`.
    pub fn sync_settings(&self) -> Vec<(String, String)> {
        let mut settings = Vec::new();
        let mut put = |key: &str, value: String| settings.push((key.to_owned(), value));
        if let Some(accept) = self.accept.as_deref().filter(|a| *a != DEFAULT_ACCEPT) {
            put("accept", accept.to_owned());
        }
        if self.everything != DEFAULT_EVERYTHING {
            put("everything", self.everything.to_string());
        }
        if !self.category_searches.is_empty() {
            let searches: Vec<String> = self
                .category_searches
                .iter()
                .map(|(ty, codes)| format!("{ty}={}", codes.join(",")))
                .collect();
            put("category_searches", searches.join(";"));
        }
        if !self.extra_types.is_empty() {
            put("extra_types", self.extra_types.join(","));
        }
        if !self.skip_types.is_empty() {
            put("skip_types", self.skip_types.join(","));
        }
        if let Some(size) = self.page_size {
            put("page_size", size.to_string());
        }
        settings
    }
}

impl Entry {
    /// The user has to supply the base URL of their organisation.
    pub fn needs_fhir_base(&self) -> bool {
        self.fhir_base.is_empty()
    }

    /// The user has to supply the client id of their own app registration.
    pub fn needs_client_id(&self) -> bool {
        self.client_id.is_empty()
    }

    /// The scopes to request; `smart_v2` when discovery advertised `permission-v2`.
    pub fn scopes_to_request(&self, smart_v2: bool) -> &str {
        match (&self.scopes, smart_v2) {
            (Some(scopes), _) => scopes,
            (None, true) => DEFAULT_SCOPES_V2,
            (None, false) => DEFAULT_SCOPES_V1,
        }
    }
}

fn validate(file: CatalogFile) -> Result<Catalog, Problem> {
    let CatalogFile {
        platforms,
        mut entries,
    } = file;

    let mut platform_ids = HashSet::new();
    for platform in &platforms {
        let subject = format!("platform {:?}", platform.id);
        let fail = |message: String| Problem {
            subject: subject.clone(),
            message,
        };
        check_id(&platform.id).map_err(&fail)?;
        check_id(&platform.plugin).map_err(|m| fail(format!("plugin: {m}")))?;
        if !platform_ids.insert(platform.id.as_str()) {
            return Err(fail("the id is used by another platform".into()));
        }
        if platform.name.trim().is_empty() {
            return Err(fail("name is empty".into()));
        }
        if let Some(accept) = &platform.accept {
            // It becomes an HTTP header value.
            if accept.trim().is_empty() || accept.chars().any(char::is_control) {
                return Err(fail(format!(
                    "accept {accept:?} is not a usable header value"
                )));
            }
        }
        for (ty, codes) in &platform.category_searches {
            check_type(ty).map_err(|m| fail(format!("category_searches: {m}")))?;
            if codes.is_empty() {
                return Err(fail(format!(
                    "category_searches.{ty} lists no categories (remove it to search {ty} unqualified)"
                )));
            }
            for code in codes {
                // Codes travel inside the `Type=a,b;Type2=c` setting, so its separators cannot
                // appear in them.
                if code.is_empty() || code.chars().any(|c| c.is_whitespace() || ",;=".contains(c)) {
                    return Err(fail(format!(
                        "category_searches.{ty}: {code:?} is not a category code (no spaces, ',', ';' or '=')"
                    )));
                }
            }
        }
        for (field, types) in [
            ("extra_types", &platform.extra_types),
            ("skip_types", &platform.skip_types),
        ] {
            for ty in types {
                check_type(ty).map_err(|m| fail(format!("{field}: {m}")))?;
            }
        }
        if platform.page_size == Some(0) {
            return Err(fail("page_size must be at least 1".into()));
        }
    }

    let mut entry_ids = HashSet::new();
    for entry in &mut entries {
        let subject = format!("entry {:?}", entry.id);
        let fail = |message: String| Problem {
            subject: subject.clone(),
            message,
        };
        check_id(&entry.id).map_err(&fail)?;
        if !entry_ids.insert(entry.id.clone()) {
            return Err(fail("the id is used by another entry".into()));
        }
        if entry.name.trim().is_empty() {
            return Err(fail("name is empty".into()));
        }
        if !platform_ids.contains(entry.platform.as_str()) {
            return Err(fail(format!(
                "platform {:?} is not defined by any [[platform]]",
                entry.platform
            )));
        }
        if !entry.fhir_base.is_empty() {
            check_url(&entry.fhir_base).map_err(|m| fail(format!("fhir_base {m}")))?;
        }
        // An empty override is an override nobody meant: treat it as absent.
        for (field, value) in [
            ("authorize_url", &mut entry.authorize_url),
            ("token_url", &mut entry.token_url),
        ] {
            if value.as_deref().is_some_and(str::is_empty) {
                *value = None;
            }
            if let Some(url) = value {
                check_url(url).map_err(|m| fail(format!("{field} {m}")))?;
            }
        }
        if entry.scopes.as_deref().is_some_and(|s| s.trim().is_empty()) {
            entry.scopes = None;
        }
        let sign_in = platforms
            .iter()
            .find(|p| p.id == entry.platform)
            .map(|p| p.sign_in);
        if sign_in == Some(SignIn::OAuth2) {
            // Nothing can be discovered from a plain OAuth2 API.
            for (field, missing) in [
                ("fhir_base (the API's base URL)", entry.fhir_base.is_empty()),
                ("authorize_url", entry.authorize_url.is_none()),
                ("token_url", entry.token_url.is_none()),
                ("scopes", entry.scopes.is_none()),
            ] {
                if missing {
                    return Err(fail(format!(
                        "{field} is required for a platform that signs in with OAuth2"
                    )));
                }
            }
        }
    }

    Ok(Catalog { platforms, entries })
}

/// Ids end up in URLs and form fields, so they follow the plugin id rule.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "id {id:?} must be lower-case letters, digits and '-'"
        ));
    }
    Ok(())
}

/// Resource type names travel in comma- and semicolon-separated settings.
fn check_type(ty: &str) -> Result<(), String> {
    if ty.is_empty() || !ty.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("{ty:?} is not a FHIR resource type name"));
    }
    Ok(())
}

fn check_url(text: &str) -> Result<(), String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not an absolute URL ({e})"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} must be an http(s) URL with a host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[platform]]
id = "smart"
name = "SMART on FHIR"

[[entry]]
id = "one"
name = "One"
platform = "smart"
fhir_base = "https://fhir.example.org/r4"
"#;

    fn invalid(text: &str) -> String {
        match Catalog::parse(text, "test.toml") {
            Ok(_) => panic!("expected the catalog to be rejected:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bundled_catalog_parses_and_validates() {
        let catalog = Catalog::parse(BUNDLED, "bundled").unwrap_or_else(|e| panic!("{e}"));
        assert!(catalog.platform("smart").is_some_and(|p| p.everything));
        for entry in catalog.entries() {
            // Resolving every platform is what the page does; it must not panic.
            catalog.platform_of(entry);
        }
        let sandbox = catalog
            .entry("smarthealthit-sandbox")
            .expect("SMART sandbox entry");
        assert!(sandbox.sandbox && !sandbox.needs_fhir_base() && !sandbox.needs_client_id());
        assert!(
            sandbox
                .fhir_base
                .starts_with("https://launch.smarthealthit.org/v/r4/sim/")
        );
        assert!(catalog.entry("epic").is_some_and(Entry::needs_fhir_base));
        assert_eq!(
            catalog.organisation_entry("epic").map(|e| e.id.as_str()),
            Some("epic")
        );
        assert_eq!(
            catalog
                .organisation_entry("oracle-health")
                .map(|e| e.id.as_str()),
            Some("oracle-health")
        );
        assert!(catalog.organisation_entry("smart").is_none());
        assert_eq!(
            catalog.entry("epic-sandbox").map(|e| e.fhir_base.as_str()),
            Some("https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4/")
        );
        assert_eq!(Catalog::bundled().entries().len(), catalog.entries().len());
    }

    #[test]
    fn from_registry_prefers_the_operators_file() {
        let dir = tempfile::tempdir().unwrap();
        let bundled = Catalog::from_registry(dir.path()).unwrap();
        assert!(bundled.entry("epic-sandbox").is_some());

        std::fs::write(dir.path().join(FILE_NAME), MINIMAL).unwrap();
        let own = Catalog::from_registry(dir.path()).unwrap();
        assert_eq!(own.entries().len(), 1);
        assert!(own.entry("epic-sandbox").is_none());

        std::fs::write(dir.path().join(FILE_NAME), "[[entry]]\nid = ").unwrap();
        let err = Catalog::from_registry(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("catalog.toml") && err.contains("not valid TOML"),
            "{err}"
        );
    }

    #[test]
    fn search_matches_aliases() {
        let catalog = Catalog::bundled();
        let ids: Vec<&str> = catalog
            .search("cerner")
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        assert!(ids.contains(&"oracle-health-sandbox"), "{ids:?}");
        assert!(ids.contains(&"oracle-health"), "{ids:?}");
        assert!(
            ids.iter().all(|id| id.starts_with("oracle-health")),
            "{ids:?}"
        );
        // Case does not matter, nor does which field a word hits.
        assert_eq!(catalog.search("CeRnEr").len(), ids.len());
        assert_eq!(catalog.search("healow")[0].id, "eclinicalworks");
    }

    #[test]
    fn search_needs_every_word() {
        let catalog = Catalog::bundled();
        let ids: Vec<&str> = catalog
            .search("  epic   sandbox ")
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(ids, ["epic-sandbox"]);
        // "oracle" hits the name, "millennium" an alias.
        let ids: Vec<&str> = catalog
            .search("oracle millennium")
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(catalog.search("epic nosuchword").is_empty());
    }

    #[test]
    fn empty_query_lists_everything_sorted_by_name() {
        let catalog = Catalog::bundled();
        let all = catalog.search("   ");
        assert_eq!(all.len(), catalog.entries().len().min(SEARCH_LIMIT));
        let names: Vec<String> = all.iter().map(|e| e.name.to_lowercase()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn search_is_cut_at_the_limit() {
        let mut text = String::from("[[platform]]\nid = \"smart\"\nname = \"SMART\"\n");
        for i in 0..(SEARCH_LIMIT + 5) {
            text.push_str(&format!(
                "[[entry]]\nid = \"e{i:03}\"\nname = \"Clinic {i:03}\"\nplatform = \"smart\"\n"
            ));
        }
        let catalog = Catalog::parse(&text, "test").unwrap();
        let hits = catalog.search("clinic");
        assert_eq!(hits.len(), SEARCH_LIMIT);
        assert_eq!(hits[0].id, "e000");
    }

    #[test]
    fn unknown_platform_names_the_entry() {
        let err = invalid(&MINIMAL.replace("platform = \"smart\"", "platform = \"nope\""));
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("entry \"one\""), "{err}");
        assert!(err.contains("\"nope\""), "{err}");
    }

    #[test]
    fn duplicate_ids_name_the_entry() {
        let text =
            format!("{MINIMAL}\n[[entry]]\nid = \"one\"\nname = \"Again\"\nplatform = \"smart\"\n");
        let err = invalid(&text);
        assert!(
            err.contains("entry \"one\"") && err.contains("another entry"),
            "{err}"
        );

        let text = format!("{MINIMAL}\n[[platform]]\nid = \"smart\"\nname = \"Again\"\n");
        let err = invalid(&text);
        assert!(
            err.contains("platform \"smart\"") && err.contains("another platform"),
            "{err}"
        );
    }

    #[test]
    fn bad_urls_name_the_entry_and_field() {
        let err = invalid(&MINIMAL.replace("https://fhir.example.org/r4", "fhir.example.org/r4"));
        assert!(
            err.contains("entry \"one\"") && err.contains("fhir_base"),
            "{err}"
        );

        let err =
            invalid(&MINIMAL.replace("https://fhir.example.org/r4", "ftp://fhir.example.org"));
        assert!(err.contains("http(s)"), "{err}");

        let text = format!("{MINIMAL}token_url = \"not a url\"\n");
        let err = invalid(&text);
        assert!(
            err.contains("entry \"one\"") && err.contains("token_url"),
            "{err}"
        );

        // Empty overrides mean "use discovery", not an error.
        let text = format!("{MINIMAL}authorize_url = \"\"\nscopes = \" \"\n");
        let catalog = Catalog::parse(&text, "test").unwrap();
        let entry = catalog.entry("one").unwrap();
        assert_eq!(entry.authorize_url, None);
        assert_eq!(entry.scopes_to_request(true), DEFAULT_SCOPES_V2);
    }

    #[test]
    fn category_searches_must_name_categories() {
        let text = MINIMAL.replace(
            "name = \"SMART on FHIR\"",
            "name = \"SMART on FHIR\"\ncategory_searches = { Observation = [] }",
        );
        let err = invalid(&text);
        assert!(
            err.contains("platform \"smart\"") && err.contains("Observation"),
            "{err}"
        );

        let text = MINIMAL.replace(
            "name = \"SMART on FHIR\"",
            "name = \"SMART on FHIR\"\ncategory_searches = { Observation = [\"a;b\"] }",
        );
        assert!(invalid(&text).contains("not a category code"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = invalid(&format!("{MINIMAL}fhir_bse = \"https://x.example\"\n"));
        assert!(err.contains("fhir_bse"), "{err}");
    }

    #[test]
    fn epic_sync_settings() {
        let catalog = Catalog::bundled();
        let epic = catalog.platform_of(catalog.entry("epic-sandbox").unwrap());
        let settings = epic.sync_settings();
        let get = |key: &str| {
            settings
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("category_searches"),
            Some("CarePlan=38717003,736271009;Observation=laboratory,vital-signs,social-history")
        );
        assert_eq!(get("everything"), Some("false"));
        assert_eq!(get("accept"), None);
    }

    #[test]
    fn sync_settings_omit_defaults_and_encode_the_rest() {
        let catalog = Catalog::bundled();
        assert!(
            catalog
                .platform("smart")
                .unwrap()
                .sync_settings()
                .is_empty()
        );
        // Oracle pins the default Accept type: nothing to pass on.
        let oracle = catalog.platform("oracle-health").unwrap().sync_settings();
        assert!(oracle.iter().all(|(k, _)| k != "accept"), "{oracle:?}");

        let platform = Platform {
            id: "x".into(),
            name: "X".into(),
            notes: String::new(),
            accept: Some("application/json+fhir".into()),
            everything: true,
            category_searches: BTreeMap::from([
                ("Observation".into(), vec!["laboratory".into()]),
                (
                    "Condition".into(),
                    vec!["problem-list-item".into(), "health-concern".into()],
                ),
            ]),
            extra_types: vec!["Appointment".into(), "Consent".into()],
            skip_types: vec!["Provenance".into()],
            page_size: Some(100),
            plugin: "fhir".into(),
            sign_in: SignIn::Smart,
            token_params: BTreeMap::new(),
            token_envelope: None,
            client_auth: None,
        };
        let expected: Vec<(String, String)> = [
            ("accept", "application/json+fhir"),
            (
                "category_searches",
                "Condition=problem-list-item,health-concern;Observation=laboratory",
            ),
            ("extra_types", "Appointment,Consent"),
            ("skip_types", "Provenance"),
            ("page_size", "100"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(platform.sync_settings(), expected);
    }

    #[test]
    fn entries_and_platforms_serialize_for_templates() {
        let catalog = Catalog::bundled();
        let entry = catalog.entry("epic").unwrap();
        let value = serde_json::to_value(entry).unwrap();
        assert_eq!(value["platform"], "epic");
        assert_eq!(value["fhir_base"], "");
        let value = serde_json::to_value(catalog.platform_of(entry)).unwrap();
        assert_eq!(value["everything"], false);
    }
}
