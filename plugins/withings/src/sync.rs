//! `sync`: reads body measures, then daily activity, then sleep summaries, each page by page,
//! and emits them as Observations.
//!
//! Incremental sync: every request asks only for what changed since `lastupdate`, the cursor of
//! the previous successful run. The new cursor is the `updatetime` of the first `getmeas` answer:
//! the Withings server's own clock at the start of this run, so anything changed after it (even
//! while this run was reading) is asked for again next time, and nothing is lost to a difference
//! between the host's clock and Withings'. Re-reading a record is harmless: ids are stable, so it
//! updates what is stored.
//!
//! Everything the sync needs from the host goes through the [`Run`], so the whole flow is unit
//! tested natively against a fake Withings (`FakeHost`).

use std::collections::{BTreeMap, HashSet};

use fasten_connector::{ConnectorError, Level, Run, Summary, SyncRequest};
use serde_json::Value;

use crate::api::{self, Endpoint, Paging};
use crate::{activity, measures, sleep};
/// Pages read per endpoint, against an API whose `more` never ends.
const MAX_PAGES: u32 = 10_000;
/// Warnings about single broken records kept in the summary; the rest are counted.
const MAX_PROBLEMS: usize = 50;

/// What was skipped, to be told to the user once per run rather than once per record.
#[derive(Default, Debug)]
pub(crate) struct Notes {
    /// Measure type -> how many values of it were skipped.
    pub unknown_measure_types: BTreeMap<i64, usize>,
    pub ambiguous_groups: usize,
    pub problems: Vec<String>,
    pub problems_left_out: usize,
}

impl Notes {
    pub(crate) fn problem(&mut self, message: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(message);
        } else {
            self.problems_left_out += 1;
        }
    }

    fn into_warnings(self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.ambiguous_groups > 0 {
            let (groups, were, they, are, them) = if self.ambiguous_groups == 1 {
                ("measurement", "was", "it", "is", "it")
            } else {
                ("measurements", "were", "they", "are", "them")
            };
            warnings.push(format!(
                "{} Withings {groups} {were} skipped because Withings could not tell whether \
                 {they} {are} yours (a device shared by several people). Assign {them} to \
                 yourself in the Withings app and {they} will be imported with the next sync.",
                self.ambiguous_groups
            ));
        }
        for (code, count) in self.unknown_measure_types {
            let values = if count == 1 { "value" } else { "values" };
            warnings.push(format!(
                "Withings measure type {code} is not known to Fasten; {count} {values} skipped."
            ));
        }
        warnings.extend(self.problems);
        if self.problems_left_out > 0 {
            warnings.push(format!(
                "{} more Withings records could not be read and were skipped.",
                self.problems_left_out
            ));
        }
        warnings
    }
}

/// The `sync` export.
pub(crate) fn sync(request: SyncRequest, run: &mut Run<'_>) -> Result<Summary, ConnectorError> {
    let base = request.base_url.trim().trim_end_matches('/').to_string();
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        return Err(ConnectorError::InvalidInput(format!(
            "The Withings API address must start with https://, not {:?}.",
            request.base_url
        )));
    }
    let previous = match request.cursor.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(cursor) => match cursor.parse::<u64>() {
            Ok(seconds) => Some(seconds),
            Err(_) => {
                run.log(
                    Level::Warn,
                    &format!("ignoring a sync cursor this plugin did not write: {cursor:?}"),
                );
                None
            }
        },
    };
    let mut session = Session {
        run,
        base,
        last_update: previous.unwrap_or(0),
        server_time: None,
        latest_modified: None,
        notes: Notes::default(),
        ids: HashSet::new(),
    };
    // Progress is the count of records stored, told after each page (from here on, rather than
    // by the run after each batch).
    session.run.progress(0, None);
    for endpoint in Endpoint::ALL {
        session.read_all(endpoint)?;
    }
    // Withings' clock when available; otherwise (an answer without `updatetime`) the newest
    // modification seen, which may re-read a little but never skips what changed.
    let cursor = session
        .server_time
        .or(session.latest_modified)
        .into_iter()
        .chain(previous)
        .max();
    if let Some(cursor) = cursor {
        session.run.checkpoint(&cursor.to_string());
    }
    let emitted = session.run.emitted();
    let warnings = session.notes.into_warnings();
    session.run.log(
        Level::Info,
        &format!(
            "Withings sync read {emitted} observations with {} warnings",
            warnings.len()
        ),
    );
    Ok(Summary { warnings })
}

struct Session<'r, 'h> {
    run: &'r mut Run<'h>,
    base: String,
    last_update: u64,
    /// `updatetime` of the first `getmeas` answer.
    server_time: Option<u64>,
    /// The newest `modified` of any record read.
    latest_modified: Option<u64>,
    notes: Notes,
    /// Ids emitted so far: a record that moves between pages while they are read is sent once.
    ids: HashSet<String>,
}

impl Session<'_, '_> {
    fn read_all(&mut self, endpoint: Endpoint) -> Result<(), ConnectorError> {
        let mut offset = 0;
        for _ in 0..MAX_PAGES {
            let request = endpoint.request(&self.base, self.last_update, offset);
            let answer = self.run.send(&request);
            let body = api::read_response(endpoint, answer)?;
            if endpoint == Endpoint::Measures && self.server_time.is_none() {
                self.server_time = body.get("updatetime").and_then(Value::as_u64);
            }
            let records = match body.get(endpoint.list_key()) {
                None | Some(Value::Null) => &[][..],
                Some(Value::Array(records)) => records.as_slice(),
                Some(_) => {
                    return Err(ConnectorError::Fatal(format!(
                        "Withings sent {} in an unexpected shape: `{}` is not a list.",
                        endpoint.label(),
                        endpoint.list_key()
                    )));
                }
            };
            for record in records {
                self.note_modified(record);
                let resources = match endpoint {
                    Endpoint::Measures => measures::map_group(record, &mut self.notes),
                    Endpoint::Activity => activity::map_day(record, &mut self.notes),
                    Endpoint::Sleep => sleep::map_series(record, &mut self.notes),
                };
                for resource in resources {
                    self.push(resource)?;
                }
            }
            // Every page's records are sent before its progress is told.
            self.run.flush()?;
            let emitted = self.run.emitted();
            self.run.progress(emitted, None);
            match api::paging(&body, offset) {
                Paging::Done => return Ok(()),
                Paging::Next(next) => offset = next,
                Paging::Stuck => {
                    // Failing keeps the cursor where it was, so nothing is skipped for good.
                    return Err(ConnectorError::Fatal(format!(
                        "Withings said more {} follow but gave no next offset past {offset}; \
                         the sync stopped so as not to read the same page forever.",
                        endpoint.label()
                    )));
                }
            }
        }
        Err(ConnectorError::Fatal(format!(
            "Withings kept sending pages of {} ({MAX_PAGES} pages); the sync stopped.",
            endpoint.label()
        )))
    }

    fn note_modified(&mut self, record: &Value) {
        let modified = record.get("modified").and_then(Value::as_u64);
        if let Some(modified) = modified {
            self.latest_modified = Some(self.latest_modified.map_or(modified, |m| m.max(modified)));
        }
    }

    fn push(&mut self, resource: Value) -> Result<(), ConnectorError> {
        let id = resource["id"].as_str().unwrap_or_default().to_string();
        if !self.ids.insert(id) {
            return Ok(());
        }
        self.run.emit(&resource)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
