//! `sync`: reads one patient's records from a FHIR R4 server (SMART standalone patient access).
//!
//! The host has already run the SMART flow; it adds the Authorization header to every request
//! bound for the connection's origin, refreshes the token on a 401 and retries once, and allows
//! no other hosts. So this module only speaks FHIR:
//!
//! 1. read `Patient/{id}` (or, when the token response named no patient, the one Patient the
//!    server lists) and emit it;
//! 2. try `Patient/{id}/$everything`; when the server does not support it, search each resource
//!    type of the patient compartment (`{Type}?patient={id}`), once per category for the types
//!    configured so (Epic requires a category for Observation);
//! 3. follow `Bundle.link[next]` exactly as given (some servers' links are session-bound);
//! 4. read the practitioners, organisations, locations, medications and documents (Binary) the
//!    records refer to, a bounded number of rounds;
//! 5. checkpoint the time the run started, so the next run asks only for what changed.
//!
//! A resource type the server refuses does not fail the run: it becomes a warning in the job's
//! summary. Only what the host can act on fails it: 401 (reconnect), 429 / 503 with Retry-After
//! (retry later), the first request failing, and the host refusing a batch.
//!
//! Everything the sync needs from the host goes through the [`Run`], so the whole flow is unit
//! tested natively against a fake server (`FakeHost`).

mod refs;
mod settings;
mod util;

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use base64::Engine as _;
use fasten_connector::http::{HttpError, Request};
use fasten_connector::{ConnectorError, Level, MAX_BATCH_BYTES, Run, Summary, SyncRequest};
use fasten_fhir_r4::json_text;
use serde_json::{Value, json};

use settings::Settings;
use util::{
    describe_body, encode_path_segment, encode_query_value, header, is_cursor, is_json_media_type,
    is_valid_id, outcome_issues, retry_after_seconds, rfc3339, shorten, status_text,
};

/// Pages followed per search, against a server whose `next` links never end.
const MAX_PAGES: usize = 1000;
/// Warnings kept in the summary; the rest are counted.
const MAX_WARNINGS: usize = 100;
/// Timeouts or network errors in a row after which the server is taken to be down: going on would
/// only spend the run's time limit on more timeouts, and a transient error makes the host retry.
const MAX_TRANSPORT_FAILURES: u32 = 3;
/// The label of `$everything` in warnings and logs.
const EVERYTHING: &str = "Patient/$everything";

/// The `sync` export.
pub(crate) fn sync(request: SyncRequest, run: &mut Run<'_>) -> Result<Summary, ConnectorError> {
    let (settings, setting_warnings) =
        Settings::parse(&request.settings).map_err(ConnectorError::InvalidInput)?;
    let base = util::trim_base(&request.base_url).to_string();
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        return Err(ConnectorError::InvalidInput(format!(
            "The FHIR base URL must start with https://, not {:?}.",
            request.base_url
        )));
    }
    let cursor = match request.cursor {
        Some(cursor) if is_cursor(&cursor) => Some(cursor),
        Some(cursor) => {
            run.log(
                Level::Warn,
                &format!("ignoring a cursor this plugin did not write: {cursor:?}"),
            );
            None
        }
        None => None,
    };
    let since = cursor.clone().filter(|_| settings.incremental);
    // Taken before the first request: whatever changes on the server while this run reads is
    // picked up again by the next one.
    let started = rfc3339(run.now());
    let mut session = Session::new(run, base, settings, since);
    for warning in setting_warnings {
        session.warn(warning);
    }
    session.run(request.patient_id.as_deref(), started, cursor)
}

/// A response body the sync could use.
enum Body {
    /// Parsed, and the text as it came when it holds a number serde_json would write another
    /// way (see [`json_text`]), so that resources are emitted exactly as sent.
    Json(Value, Option<String>),
    /// Anything that is not JSON: a PDF or an image from a Binary read, an HTML error page...
    Other {
        content_type: String,
        bytes: Vec<u8>,
    },
}

/// Why one request gave nothing usable. Unlike a `ConnectorError`, it does not end the run.
#[derive(Debug)]
enum Failure {
    /// An error status other than those that end the run (401, 429, 503 with Retry-After).
    Status {
        status: u16,
        detail: String,
    },
    NotJson {
        content_type: String,
        detail: String,
    },
    InvalidJson(String),
    /// JSON, but not what was asked for: what came ("a Bundle") and what was wanted.
    Unexpected {
        got: String,
        wanted: String,
    },
    /// A 2xx OperationOutcome where a resource or a Bundle was expected.
    Outcome(String),
    /// The server said (in an OperationOutcome, or by a `self` link without it) that it ignored
    /// the search's patient filter: the page may hold anyone's records, so none of it is used.
    FilterIgnored,
    Http(HttpError),
}

impl Failure {
    /// Whether asking again later may well succeed (a server error, a timeout). Such a failure
    /// keeps the sync cursor where it was, so the next run fetches what this one missed.
    fn is_transient(&self) -> bool {
        match self {
            Failure::Status { status, .. } => *status >= 500,
            Failure::Http(HttpError::Timeout | HttpError::Network(_)) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_detail = |f: &mut fmt::Formatter<'_>, detail: &str| {
            if detail.is_empty() {
                Ok(())
            } else {
                write!(f, ": {detail}")
            }
        };
        match self {
            Failure::Status { status, detail } => {
                write!(f, "the server answered {}", status_text(*status))?;
                with_detail(f, detail)
            }
            Failure::NotJson {
                content_type,
                detail,
            } => {
                write!(
                    f,
                    "the server answered with {content_type} instead of FHIR JSON"
                )?;
                with_detail(f, detail)
            }
            Failure::InvalidJson(error) => write!(f, "the server sent invalid JSON ({error})"),
            Failure::Unexpected { got, wanted } => {
                write!(f, "the server answered with {got} instead of {wanted}")
            }
            Failure::Outcome(text) => {
                write!(f, "the server answered with an OperationOutcome: {text}")
            }
            Failure::FilterIgnored => write!(
                f,
                "the server ignored the patient filter, so what it sent was left out"
            ),
            Failure::Http(HttpError::Denied(why)) => {
                write!(f, "the host refused the request: {why}")
            }
            Failure::Http(HttpError::Timeout) => write!(f, "the server did not answer in time"),
            Failure::Http(HttpError::TooLarge) => {
                write!(f, "the response was larger than the host allows")
            }
            Failure::Http(HttpError::Network(why)) => write!(f, "network error: {why}"),
        }
    }
}

/// How following a search's pages ended.
enum Pages {
    /// Every page was read; the number of pages.
    Complete(usize),
    /// The first page failed: nothing was emitted.
    FirstFailed(Failure),
    /// A later page failed; what the `kept` pages before it held was emitted.
    LaterFailed { kept: usize, failure: Failure },
    /// [`MAX_PAGES`] pages were read and there were more.
    TooMany,
}

/// One sync run.
struct Session<'r, 'h> {
    run: &'r mut Run<'h>,
    /// The FHIR base without a trailing slash.
    base: String,
    settings: Settings,
    /// `_lastUpdated` / `_since` bound of this run: the previous checkpoint, when incremental.
    since: Option<String>,
    /// `Type/id` of every resource emitted (or read and found wanting), so nothing is emitted or
    /// read twice.
    seen: HashSet<String>,
    /// References to follow, gathered from emitted resources.
    found: BTreeSet<String>,
    /// References whose read failed, so a later round does not ask again.
    failed: HashSet<String>,
    warnings: Vec<String>,
    warned: HashSet<String>,
    /// Something was missed for a reason that may pass (a 5xx, a timeout): do not advance the
    /// cursor past it.
    incomplete: bool,
    /// Searches that answered, and searches that failed for a reason that may pass: when none
    /// answered and some failed that way, the server is down rather than picky.
    searches_answered: u32,
    searches_transient: u32,
    transport_failures: u32,
    requests: u64,
    done: u64,
    total: u64,
}

impl<'r, 'h> Session<'r, 'h> {
    fn new(run: &'r mut Run<'h>, base: String, settings: Settings, since: Option<String>) -> Self {
        Session {
            run,
            base,
            settings,
            since,
            seen: HashSet::new(),
            found: BTreeSet::new(),
            failed: HashSet::new(),
            warnings: Vec::new(),
            warned: HashSet::new(),
            incomplete: false,
            searches_answered: 0,
            searches_transient: 0,
            transport_failures: 0,
            requests: 0,
            done: 0,
            total: 0,
        }
    }

    fn run(
        mut self,
        patient_id: Option<&str>,
        started: String,
        previous_cursor: Option<String>,
    ) -> Result<Summary, ConnectorError> {
        let rounds = u64::from(self.settings.reference_rounds);
        let types = self.settings.resource_types.clone();
        self.total = 1 + u64::from(self.settings.everything) + types.len() as u64 + rounds;
        let mode = match &self.since {
            Some(since) => format!("changes since {since}"),
            None => "full sync".to_string(),
        };
        self.log(Level::Info, format!("sync from {}: {mode}", self.base));

        let patient = self.read_patient(patient_id)?;
        self.step_done();

        let mut searched = false;
        if self.settings.everything {
            searched = self.everything(&patient)?;
            if searched {
                // The per-type searches are not needed: drop them from the progress bar.
                self.total = 2 + rounds;
            }
            self.step_done();
        }
        if !searched {
            let types = self.supported(types)?;
            self.total = 1 + u64::from(self.settings.everything) + types.len() as u64 + rounds;
            for resource_type in &types {
                self.search_type(resource_type, &patient)?;
                self.step_done();
            }
            if self.searches_answered == 0 && self.searches_transient > 0 {
                // Nothing answered: report the outage so the host retries later, rather than
                // a "successful" sync made only of warnings.
                let first = self.warnings.first().cloned().unwrap_or_default();
                return Err(ConnectorError::Transient(format!(
                    "the server failed every search ({first})"
                )));
            }
        }

        self.follow_references()?;
        self.run.flush()?;

        if !self.incomplete {
            self.run.checkpoint(&started);
        } else if let Some(cursor) = previous_cursor {
            // Keep the previous cursor, so the next run asks again for what this one missed.
            self.run.checkpoint(&cursor);
            self.warn(format!(
                "Some records could not be read because of server or network errors; the next \
                 sync will ask again for everything changed since {cursor}."
            ));
        } else {
            self.warn(
                "Some records could not be read because of server or network errors; the next \
                 sync will read everything again."
                    .to_string(),
            );
        }
        self.run.progress(self.total, Some(self.total));
        self.log(
            Level::Info,
            format!(
                "sync done: {} resources from {} requests, {} warnings",
                self.run.emitted(),
                self.requests,
                self.warnings.len()
            ),
        );
        Ok(Summary {
            warnings: cap_warnings(self.warnings),
        })
    }

    // ---- step 1: the patient ----

    /// Reads and emits the patient; returns the id to search by. This is the first request, so
    /// its failures end the run: nothing else can work if it does not.
    fn read_patient(&mut self, patient_id: Option<&str>) -> Result<String, ConnectorError> {
        let (label, url) = match patient_id {
            Some(id) => (
                format!("Patient/{id}"),
                format!("{}/Patient/{}", self.base, encode_path_segment(id)),
            ),
            None => ("Patient".to_string(), format!("{}/Patient", self.base)),
        };
        let (value, raw) = match self.get(&url)? {
            Ok(Body::Json(value, raw)) => (value, raw),
            Ok(Body::Other {
                content_type,
                bytes,
            }) => {
                let failure = Failure::NotJson {
                    detail: describe_body(Some(&content_type), &bytes),
                    content_type,
                };
                return Err(ConnectorError::InvalidInput(format!(
                    "Reading {label}: {failure}. Is {} the FHIR R4 base URL?",
                    self.base
                )));
            }
            Err(failure) => return Err(first_request_error(&label, failure)),
        };
        let (patient, id, verbatim) = match patient_id {
            Some(id) => (
                expect_patient(&label, value)?,
                id.to_string(),
                raw.map(|raw| json_text::minify(&raw)),
            ),
            None => {
                let (patient, id) = self.only_patient(value)?;
                (patient, id, None)
            }
        };
        self.emit_resource(&label, patient, verbatim)?;
        Ok(id)
    }

    /// The one Patient of a `Patient` search, for a token response that named none (the server
    /// then lists only the patient the token is for, if it lists any).
    fn only_patient(&mut self, bundle: Value) -> Result<(Value, String), ConnectorError> {
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(ConnectorError::Fatal(format!(
                "Searching Patient: {}",
                unexpected(&bundle, "a Bundle")
            )));
        }
        let mut patients: Vec<Value> = bundle
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.get("resource"))
            .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Patient"))
            .cloned()
            .collect();
        let id = patients
            .first()
            .and_then(|p| p.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        match (patients.len(), id) {
            (1, Some(id)) => Ok((patients.remove(0), id)),
            (count, _) => {
                self.log(
                    Level::Warn,
                    format!("no patient id from the provider; Patient search returned {count}"),
                );
                Err(ConnectorError::InvalidInput(
                    "the provider did not say which patient this connection is for".into(),
                ))
            }
        }
    }

    // ---- step 2: $everything or per-type searches ----

    /// Reads `Patient/{id}/$everything`; returns whether that got the patient's records, so the
    /// per-type searches are not needed.
    fn everything(&mut self, patient: &str) -> Result<bool, ConnectorError> {
        let mut url = format!(
            "{}/Patient/{}/$everything?_count={}",
            self.base,
            encode_path_segment(patient),
            self.settings.page_size
        );
        if let Some(since) = &self.since {
            url.push_str(&format!("&_since={}", encode_query_value(since)));
        }
        match self.follow_pages(EVERYTHING, url, Scope::Everything)? {
            Pages::Complete(pages) => {
                self.log(Level::Info, format!("{EVERYTHING}: {pages} pages"));
                Ok(true)
            }
            Pages::TooMany => {
                self.warn(format!("{EVERYTHING}: stopped after {MAX_PAGES} pages"));
                Ok(true)
            }
            Pages::FirstFailed(failure) => {
                // Most servers without $everything answer 400, 404 or 405: that only means "not
                // supported" and is not worth a warning. A server error may hide a real problem.
                if failure.is_transient() {
                    self.warn(format!(
                        "{EVERYTHING}: {failure}; searching each resource type instead"
                    ));
                } else {
                    self.log(
                        Level::Info,
                        format!("{EVERYTHING} unavailable ({failure}); searching by type"),
                    );
                }
                Ok(false)
            }
            Pages::LaterFailed { kept, failure } => {
                // Keep what came; the searches fill the gap and `seen` stops duplicates.
                self.warn(format!(
                    "{EVERYTHING}: {failure} (on page {}); searching each resource type instead",
                    kept + 1
                ));
                Ok(false)
            }
        }
    }

    /// The `wanted` types the server's CapabilityStatement says it can search. A type it does
    /// not list is skipped without a warning: there is nothing to miss. When the statement
    /// cannot be read, or lists no resources, every wanted type is searched, and a refusal is a
    /// warning as before.
    fn supported(&mut self, wanted: Vec<String>) -> Result<Vec<String>, ConnectorError> {
        let url = format!("{}/metadata", self.base);
        let statement = match self.get(&url)? {
            Ok(Body::Json(value, _))
                if value.get("resourceType").and_then(Value::as_str)
                    == Some("CapabilityStatement") =>
            {
                value
            }
            _ => {
                self.log(
                    Level::Info,
                    "no CapabilityStatement; searching every type".to_string(),
                );
                return Ok(wanted);
            }
        };
        let searchable: HashSet<&str> = statement
            .get("rest")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|rest| rest.get("mode").and_then(Value::as_str) != Some("client"))
            .filter_map(|rest| rest.get("resource").and_then(Value::as_array))
            .flatten()
            .filter(|resource| {
                // A statement that lists no interactions is not taken to forbid searching.
                match resource.get("interaction").and_then(Value::as_array) {
                    Some(interactions) => interactions.iter().any(|interaction| {
                        interaction.get("code").and_then(Value::as_str) == Some("search-type")
                    }),
                    None => true,
                }
            })
            .filter_map(|resource| resource.get("type").and_then(Value::as_str))
            .collect();
        if searchable.is_empty() {
            return Ok(wanted);
        }
        let (kept, skipped): (Vec<String>, Vec<String>) = wanted
            .into_iter()
            .partition(|t| searchable.contains(t.as_str()));
        if !skipped.is_empty() {
            self.log(
                Level::Info,
                format!(
                    "not searched (not in the server's CapabilityStatement): {}",
                    skipped.join(", ")
                ),
            );
        }
        Ok(kept)
    }

    /// Searches one resource type, once, or once per configured category.
    fn search_type(&mut self, resource_type: &str, patient: &str) -> Result<(), ConnectorError> {
        let categories: Vec<Option<String>> = match self.settings.categories_for(resource_type) {
            Some(categories) => categories.iter().cloned().map(Some).collect(),
            None => vec![None],
        };
        // Cleared for the rest of this type when the server refuses `_lastUpdated`.
        let mut incremental = self.since.is_some();
        for category in categories {
            let label = match &category {
                Some(category) => format!("{resource_type} (category {category})"),
                None => resource_type.to_string(),
            };
            loop {
                let url = self.search_url(resource_type, patient, category.as_deref(), incremental);
                match self.follow_pages(&label, url, Scope::PatientSearch)? {
                    Pages::Complete(pages) => {
                        self.searches_answered += 1;
                        self.log(Level::Debug, format!("{label}: {pages} pages"));
                    }
                    // Not every server supports `_lastUpdated`: read the whole type instead.
                    Pages::FirstFailed(Failure::Status { status: 400, .. }) if incremental => {
                        self.log(
                            Level::Info,
                            format!("{label}: _lastUpdated refused; searching without it"),
                        );
                        incremental = false;
                        continue;
                    }
                    Pages::FirstFailed(failure) => {
                        if failure.is_transient() {
                            self.incomplete = true;
                            self.searches_transient += 1;
                        }
                        self.warn(format!("{label}: {failure}"));
                    }
                    Pages::LaterFailed { kept, failure } => {
                        // The rest of the result is missing whatever the cause.
                        self.incomplete = true;
                        self.searches_answered += 1;
                        self.warn(format!(
                            "{label}: {failure} (on page {}; the {kept} pages before it were kept)",
                            kept + 1
                        ));
                    }
                    Pages::TooMany => {
                        self.warn(format!("{label}: stopped after {MAX_PAGES} pages"));
                    }
                }
                break;
            }
        }
        Ok(())
    }

    fn search_url(
        &self,
        resource_type: &str,
        patient: &str,
        category: Option<&str>,
        incremental: bool,
    ) -> String {
        let mut url = format!(
            "{}/{resource_type}?patient={}",
            self.base,
            encode_query_value(patient)
        );
        if let Some(category) = category {
            url.push_str(&format!("&category={}", encode_query_value(category)));
        }
        url.push_str(&format!("&_count={}", self.settings.page_size));
        if let (true, Some(since)) = (incremental, &self.since) {
            url.push_str(&format!(
                "&_lastUpdated={}",
                encode_query_value(&format!("gt{since}"))
            ));
        }
        url
    }

    /// Reads a search's pages, emitting their resources, following each `next` link as given.
    fn follow_pages(
        &mut self,
        label: &str,
        first: String,
        scope: Scope,
    ) -> Result<Pages, ConnectorError> {
        let mut url = first;
        let mut visited = HashSet::new();
        for page in 0..MAX_PAGES {
            visited.insert(url.clone());
            // Later pages' links are often opaque (`?_getpages=...`): only the first page's
            // `self` link is expected to repeat the search's parameters.
            let check = match scope {
                Scope::PatientSearch if page == 0 => FilterCheck::OutcomeAndSelfLink,
                Scope::PatientSearch => FilterCheck::Outcome,
                Scope::Everything => FilterCheck::None,
            };
            let failure = match self.search_get(&url)? {
                Ok(Body::Json(value, raw)) => match self.take_page(label, value, raw, check)? {
                    Ok(Some(next)) if visited.contains(&next) => {
                        // A server that links a page to itself would otherwise be read 1000 times.
                        self.log(Level::Warn, format!("{label}: next link loops; stopping"));
                        return Ok(Pages::Complete(page + 1));
                    }
                    Ok(Some(next)) => {
                        url = next;
                        continue;
                    }
                    Ok(None) => return Ok(Pages::Complete(page + 1)),
                    Err(failure) => failure,
                },
                Ok(Body::Other {
                    content_type,
                    bytes,
                }) => Failure::NotJson {
                    detail: describe_body(Some(&content_type), &bytes),
                    content_type,
                },
                Err(failure) => failure,
            };
            return Ok(if page == 0 {
                Pages::FirstFailed(failure)
            } else {
                Pages::LaterFailed {
                    kept: page,
                    failure,
                }
            });
        }
        Ok(Pages::TooMany)
    }

    /// Emits one searchset page's resources; returns its `next` link, or why the page is not a
    /// Bundle (then nothing of it was emitted).
    fn take_page(
        &mut self,
        label: &str,
        page: Value,
        raw: Option<String>,
        check: FilterCheck,
    ) -> Result<Result<Option<String>, Failure>, ConnectorError> {
        if page.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Ok(Err(unexpected(&page, "a Bundle")));
        }
        if patient_filter_ignored(&page, check) {
            return Ok(Err(Failure::FilterIgnored));
        }
        let next = bundle_link(&page, "next")
            .filter(|url| !url.trim().is_empty())
            .map(|url| util::resolve_link(&self.base, url.trim()));
        let entries = match page {
            Value::Object(mut page) => match page.remove("entry") {
                Some(Value::Array(entries)) => entries,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let mut verbatim = raw.as_deref().map(verbatim_entries).unwrap_or_default();
        for (index, mut entry) in entries.into_iter().enumerate() {
            let outcome_mode =
                entry.pointer("/search/mode").and_then(Value::as_str) == Some("outcome");
            let Some(resource) = entry.get_mut("resource").map(Value::take) else {
                continue;
            };
            if outcome_mode
                || resource.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome")
            {
                self.report_outcome(label, &resource);
            } else {
                let verbatim = verbatim.get_mut(index).and_then(Option::take);
                self.emit_resource(label, resource, verbatim)?;
            }
        }
        Ok(Ok(next))
    }

    /// An OperationOutcome in a searchset: the server telling about the search (results hidden,
    /// a parameter ignored...). Problems become warnings; purely informational issues ("no
    /// results") are only logged, since they would crowd out the warnings that matter.
    fn report_outcome(&mut self, label: &str, outcome: &Value) {
        let issues = outcome_issues(outcome);
        let problems: Vec<&str> = issues
            .iter()
            .filter(|(severity, _)| severity != "information")
            .map(|(_, text)| text.as_str())
            .collect();
        if problems.is_empty() {
            let texts: Vec<&str> = issues.iter().map(|(_, t)| t.as_str()).collect();
            self.log(
                Level::Debug,
                format!("{label}: server note: {}", texts.join("; ")),
            );
        } else {
            self.warn(format!(
                "{label}: the server reported: {}",
                shorten(&problems.join("; "), 400)
            ));
        }
    }

    // ---- step 3: references ----

    /// Reads the resources that emitted ones refer to, round by round: a round reads what the
    /// previous rounds' resources refer to.
    fn follow_references(&mut self) -> Result<(), ConnectorError> {
        let limit = self.settings.max_references as usize;
        let mut read = 0;
        for round in 1..=self.settings.reference_rounds {
            let wanted: Vec<String> = std::mem::take(&mut self.found)
                .into_iter()
                .filter(|key| !self.seen.contains(key) && !self.failed.contains(key))
                .collect();
            if wanted.is_empty() {
                break;
            }
            let room = limit - read;
            if wanted.len() > room {
                self.warn(format!(
                    "References: stopped after reading {limit} (the max_references setting); \
                     {} more were not read",
                    wanted.len() - room
                ));
            }
            self.log(
                Level::Debug,
                format!("references round {round}: {}", wanted.len().min(room)),
            );
            for key in wanted.iter().take(room) {
                read += 1;
                self.read_reference(key)?;
            }
            self.step_done();
            if wanted.len() > room {
                return Ok(());
            }
        }
        let left = self
            .found
            .iter()
            .filter(|key| !self.seen.contains(*key) && !self.failed.contains(*key))
            .count();
        if left > 0 {
            self.log(
                Level::Info,
                format!("{left} references left unread after the last round"),
            );
        }
        Ok(())
    }

    /// Reads one referenced resource (`Type/id`) and emits it. A document that is not FHIR JSON
    /// (a PDF, an image) is stored as a Binary holding it.
    fn read_reference(&mut self, key: &str) -> Result<(), ConnectorError> {
        let (resource_type, id) = key.split_once('/').unwrap_or((key, ""));
        let url = format!("{}/{key}", self.base);
        let result = match self.get(&url)? {
            Ok(Body::Json(value, raw)) => {
                match value.get("resourceType").and_then(Value::as_str) {
                    Some(t) if t == resource_type => {
                        Ok((value, raw.map(|raw| json_text::minify(&raw))))
                    }
                    // A JSON document (not a FHIR resource) served as a Binary's content.
                    None if resource_type == "Binary" => Ok((
                        wrap_binary(id, "application/json", value.to_string().as_bytes()),
                        None,
                    )),
                    _ => Err(unexpected(&value, &with_article(resource_type))),
                }
            }
            Ok(Body::Other {
                content_type,
                bytes,
            }) if resource_type == "Binary" => Ok((wrap_binary(id, &content_type, &bytes), None)),
            Ok(Body::Other {
                content_type,
                bytes,
            }) => Err(Failure::NotJson {
                detail: describe_body(Some(&content_type), &bytes),
                content_type,
            }),
            Err(failure) => Err(failure),
        };
        match result {
            Ok((resource, verbatim)) => {
                self.emit_resource(key, resource, verbatim)?;
                // The server may have answered with another id (a merged record): do not ask
                // for this one again either.
                self.seen.insert(key.to_string());
            }
            Err(failure) => {
                if failure.is_transient() {
                    self.incomplete = true;
                }
                self.warn(format!("{key}: {failure}"));
                self.failed.insert(key.to_string());
            }
        }
        Ok(())
    }

    // ---- output ----

    /// Queues one resource for the host, unless it was emitted already or the host would refuse
    /// it (which would fail the whole run).
    fn emit_resource(
        &mut self,
        label: &str,
        resource: Value,
        verbatim: Option<String>,
    ) -> Result<(), ConnectorError> {
        let Some(resource_type) = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .filter(|t| settings::is_type_name(t))
        else {
            self.warn(format!(
                "{label}: skipped an entry that is not a FHIR resource"
            ));
            return Ok(());
        };
        let key = match resource.get("id").and_then(Value::as_str) {
            Some(id) if is_valid_id(id) => format!("{resource_type}/{id}"),
            Some(id) => {
                self.warn(format!(
                    "{label}: skipped {resource_type}/{id}: not a valid FHIR id"
                ));
                return Ok(());
            }
            None => {
                self.warn(format!(
                    "{label}: skipped one {resource_type} without an id"
                ));
                return Ok(());
            }
        };
        if !self.seen.insert(key.clone()) {
            return Ok(());
        }
        refs::collect_references(&resource, &self.base, &mut self.found);
        let text = verbatim.unwrap_or_else(|| resource.to_string());
        if text.len() > MAX_BATCH_BYTES {
            self.warn(format!(
                "{key}: skipped: at {:.1} MiB it is larger than the {} MiB a record may be",
                text.len() as f64 / (1024.0 * 1024.0),
                MAX_BATCH_BYTES >> 20
            ));
            return Ok(());
        }
        self.run.emit_text(text)?;
        Ok(())
    }

    fn step_done(&mut self) {
        self.done += 1;
        self.run
            .progress(self.done.min(self.total), Some(self.total));
    }

    /// Records a warning for the summary, once however often it recurs.
    fn warn(&mut self, warning: String) {
        if self.warned.insert(warning.clone()) {
            self.log(Level::Warn, shorten(&warning, 300));
            self.warnings.push(warning);
        }
    }

    fn log(&mut self, level: Level, message: String) {
        self.run.log(level, &message);
    }

    // ---- HTTP ----

    /// GETs a search page, asking the server to refuse a parameter it does not support rather
    /// than ignore it (an ignored `patient=` would return everyone's records).
    fn search_get(&mut self, url: &str) -> Result<Result<Body, Failure>, ConnectorError> {
        self.send_get(url, Some(("prefer", "handling=strict")))
    }

    /// GETs `url`. The outer error ends the run (401, rate limiting, the server gone); the inner
    /// one is a failure of this request only.
    fn get(&mut self, url: &str) -> Result<Result<Body, Failure>, ConnectorError> {
        self.send_get(url, None)
    }

    fn send_get(
        &mut self,
        url: &str,
        extra_header: Option<(&str, &str)>,
    ) -> Result<Result<Body, Failure>, ConnectorError> {
        let mut request = Request::get(url).header("accept", self.settings.accept.clone());
        if let Some((name, value)) = extra_header {
            request = request.header(name, value);
        }
        self.requests += 1;
        let response = match self.run.send(&request) {
            Ok(response) => {
                self.transport_failures = 0;
                response
            }
            Err(error) => {
                if matches!(error, HttpError::Timeout | HttpError::Network(_)) {
                    self.transport_failures += 1;
                    if self.transport_failures >= MAX_TRANSPORT_FAILURES {
                        return Err(ConnectorError::Transient(format!(
                            "the FHIR server stopped answering: {}",
                            Failure::Http(error)
                        )));
                    }
                }
                return Ok(Err(Failure::Http(error)));
            }
        };
        let retry_after = header(&response.headers, "retry-after").map(retry_after_seconds);
        match (response.status, retry_after) {
            (200..=299, _) => {}
            // The host has already refreshed the token and retried once.
            (401, _) => return Err(ConnectorError::Unauthorized),
            (429, seconds) => return Err(ConnectorError::RateLimited(seconds.unwrap_or(60))),
            (503, Some(seconds)) => return Err(ConnectorError::RateLimited(seconds)),
            (status, _) => {
                let content_type = header(&response.headers, "content-type");
                return Ok(Err(Failure::Status {
                    status,
                    detail: describe_body(content_type, &response.body),
                }));
            }
        }
        let content_type = header(&response.headers, "content-type").map(str::to_string);
        let json = match &content_type {
            Some(content_type) => is_json_media_type(content_type),
            // No Content-Type: JSON if it looks like it.
            None => response.body.trim_ascii_start().starts_with(b"{"),
        };
        if !json {
            return Ok(Ok(Body::Other {
                content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
                bytes: response.body,
            }));
        }
        let raw = json_text::has_rewritten_numbers(&response.body)
            .then(|| String::from_utf8_lossy(&response.body).into_owned());
        Ok(match serde_json::from_slice::<Value>(&response.body) {
            Ok(value) => Ok(Body::Json(value, raw)),
            Err(error) => Err(Failure::InvalidJson(error.to_string())),
        })
    }
}

/// The error that ends the run when the first request fails: a network problem may pass (retry
/// later), a refusal or a client error will not.
fn first_request_error(label: &str, failure: Failure) -> ConnectorError {
    let message = format!("Reading {label}: {failure}");
    if failure.is_transient() {
        ConnectorError::Transient(message)
    } else {
        ConnectorError::Fatal(message)
    }
}

/// The Patient a read returned, or the error ending the run.
fn expect_patient(label: &str, value: Value) -> Result<Value, ConnectorError> {
    if value.get("resourceType").and_then(Value::as_str) == Some("Patient") {
        return Ok(value);
    }
    let failure = unexpected(&value, "a Patient");
    Err(ConnectorError::Fatal(format!("Reading {label}: {failure}")))
}

/// A failure for JSON that is not what was `wanted` ("a Bundle"): the OperationOutcome's text
/// when it is one (the server explaining itself with a 200), else what came instead.
fn unexpected(value: &Value, wanted: &str) -> Failure {
    let got = match value.get("resourceType").and_then(Value::as_str) {
        Some("OperationOutcome") => {
            let texts: Vec<String> = outcome_issues(value).into_iter().map(|(_, t)| t).collect();
            return Failure::Outcome(if texts.is_empty() {
                "no details".into()
            } else {
                shorten(&texts.join("; "), 400)
            });
        }
        Some(other) => with_article(&shorten(other, 64)),
        None => "JSON without a resourceType".into(),
    };
    Failure::Unexpected {
        got,
        wanted: wanted.to_string(),
    }
}

/// "a Bundle", "an Observation".
fn with_article(resource_type: &str) -> String {
    let vowel = resource_type.starts_with(['A', 'E', 'I', 'O', 'U']);
    format!("{} {resource_type}", if vowel { "an" } else { "a" })
}

/// The URL of a Bundle's link with this `relation` ("next", "self").
fn bundle_link<'p>(page: &'p Value, relation: &str) -> Option<&'p str> {
    page.get("link")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|link| link.get("relation").and_then(Value::as_str) == Some(relation))
        .and_then(|link| link.get("url"))
        .and_then(Value::as_str)
}

/// The minified text of each entry's resource in a searchset page's text, where it holds a
/// number serde_json would write another way; `None` where it does not matter.
fn verbatim_entries(page: &str) -> Vec<Option<String>> {
    json_text::member(page, "entry")
        .and_then(json_text::elements)
        .unwrap_or_default()
        .into_iter()
        .map(|entry| {
            json_text::member(entry, "resource")
                .filter(|text| json_text::has_rewritten_numbers(text.as_bytes()))
                .map(json_text::minify)
        })
        .collect()
}

/// What a search is, for checking that the server applied its patient filter.
#[derive(Clone, Copy)]
enum Scope {
    /// `{Type}?patient=...`
    PatientSearch,
    /// `Patient/{id}/$everything`: the patient is in the path, not a parameter.
    Everything,
}

#[derive(Clone, Copy, PartialEq)]
enum FilterCheck {
    None,
    Outcome,
    OutcomeAndSelfLink,
}

/// Whether a searchset page shows that the server ignored the `patient` parameter: an
/// OperationOutcome saying so ("Unknown search parameter 'patient' for Goal; parameter
/// ignored"), or a first page whose `self` link, which echoes the parameters the server applied,
/// has no patient.
fn patient_filter_ignored(page: &Value, check: FilterCheck) -> bool {
    if check == FilterCheck::None {
        return false;
    }
    let entries = page.get("entry").and_then(Value::as_array);
    let says_so = entries.into_iter().flatten().any(|entry| {
        let Some(resource) = entry.get("resource") else {
            return false;
        };
        resource.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome")
            && outcome_issues(resource).iter().any(|(_, text)| {
                let text = text.to_ascii_lowercase();
                text.contains("patient")
                    && ["ignored", "unknown", "not supported", "unsupported"]
                        .iter()
                        .any(|word| text.contains(word))
            })
    });
    if says_so {
        return true;
    }
    if check != FilterCheck::OutcomeAndSelfLink {
        return false;
    }
    match bundle_link(page, "self").and_then(|url| url.split_once('?')) {
        Some((_, query)) => !query.split('&').any(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            name == "patient" || name.starts_with("patient:") || name == "subject"
        }),
        // No self link, or one without a query (some servers echo only the path): no evidence.
        None => false,
    }
}

/// A Binary resource holding a document the server sent as is.
fn wrap_binary(id: &str, content_type: &str, bytes: &[u8]) -> Value {
    let mut binary = json!({
        "resourceType": "Binary",
        "id": id,
        "contentType": content_type,
    });
    // FHIR does not allow an empty string, so an empty document has no `data` at all.
    if !bytes.is_empty() {
        binary["data"] = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    binary
}

/// At most [`MAX_WARNINGS`] warnings, the rest counted in a last one.
fn cap_warnings(mut warnings: Vec<String>) -> Vec<String> {
    if warnings.len() > MAX_WARNINGS {
        let more = warnings.len() - MAX_WARNINGS;
        warnings.truncate(MAX_WARNINGS);
        warnings.push(format!("... and {more} more"));
    }
    warnings
}

#[cfg(test)]
mod tests;
