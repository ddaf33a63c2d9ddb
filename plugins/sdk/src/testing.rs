//! Testing a connector natively, with `cargo test` and no Fasten: [`FakeHost`] plays the host
//! (it refuses batches over the host's limits as the host does, records everything else, and
//! answers HTTP from canned responses), and [`FakeFile`] is an upload.
//!
//! ```ignore
//! use fasten_connector::testing::{FakeFile, FakeHost};
//!
//! let mut host = FakeHost::new();
//! host.respond("GET", "https://api.example.org/v1/weights", 200, r#"{"weights": []}"#);
//! host.sync::<MyConnector>(FakeHost::sync_request("https://api.example.org")).unwrap();
//! assert!(host.resources().is_empty());
//! ```

use std::collections::BTreeMap;

use serde_json::Value;

use crate::emit::{MAX_BATCH_BYTES, MAX_BATCH_RESOURCES};
use crate::file::FileSource;
use crate::host::Host;
use crate::http::{HttpError, Request, Response};
use crate::{Connector, ConnectorError, Level, Run, Summary, SyncRequest};

type Responder = Box<dyn FnMut(&Request) -> Result<Response, HttpError>>;

/// A host for native tests. Its fields are what a run did, for assertions.
#[derive(Default)]
pub struct FakeHost {
    /// Every record emitted, as the JSON text the connector sent, in order (none are kept after
    /// [`FakeHost::discard_records`]).
    pub emitted: Vec<String>,
    /// The size of each batch, in records.
    pub batches: Vec<usize>,
    /// Log lines.
    pub logs: Vec<(Level, String)>,
    /// Progress reports, `(done, total)`.
    pub progress: Vec<(u64, Option<u64>)>,
    /// Checkpoints, in order; the last one is what the next sync would get as its cursor.
    pub checkpoints: Vec<String>,
    /// Every HTTP request, in order.
    pub requests: Vec<Request>,
    /// The connection's kept state.
    pub state: BTreeMap<String, String>,
    /// What [`Run::now`] returns (seconds since the epoch).
    pub now: u64,
    /// How many times [`FakeHost::import_file`]'s file was rewound (each rewind makes the host
    /// read the upload again from its start).
    pub file_rewinds: u32,
    canned: Vec<(String, String, Result<Response, HttpError>)>,
    responder: Option<Responder>,
    refuse_batches: Option<String>,
    discard_records: bool,
}

impl FakeHost {
    /// A host with no responses, no state, and its clock at 2026-01-01T00:00:00Z.
    pub fn new() -> FakeHost {
        FakeHost {
            now: 1_767_225_600,
            ..FakeHost::default()
        }
    }

    /// Answers `method url` (exactly, query included) with `status` and `body`, every time it
    /// is asked.
    pub fn respond(
        &mut self,
        method: &str,
        url: &str,
        status: u16,
        body: impl Into<Vec<u8>>,
    ) -> &mut FakeHost {
        self.respond_with_result(method, url, Ok(Response::new(status, body)))
    }

    /// Answers `method url` with a given response or failure, every time it is asked.
    pub fn respond_with_result(
        &mut self,
        method: &str,
        url: &str,
        result: Result<Response, HttpError>,
    ) -> &mut FakeHost {
        self.canned.push((method.into(), url.into(), result));
        self
    }

    /// Answers every request that has no canned response with `responder` (a fake server).
    pub fn on_request(
        &mut self,
        responder: impl FnMut(&Request) -> Result<Response, HttpError> + 'static,
    ) -> &mut FakeHost {
        self.responder = Some(Box::new(responder));
        self
    }

    /// Makes every later `emit` fail with `reason`, as the host does past a quota.
    pub fn refuse_batches(&mut self, reason: &str) -> &mut FakeHost {
        self.refuse_batches = Some(reason.into());
        self
    }

    /// Keeps no emitted record, only the size of each batch: for measuring a connector's time
    /// or memory on a large input without the records adding to it.
    pub fn discard_records(&mut self) -> &mut FakeHost {
        self.discard_records = true;
        self
    }

    /// Runs `C::import_file` on `file`, exactly as the component would.
    pub fn import_file<C: Connector>(
        &mut self,
        mut file: FakeFile,
    ) -> Result<Summary, ConnectorError> {
        let result = crate::run::import_file::<C>(self, &mut file);
        self.file_rewinds = file.rewinds;
        result
    }

    /// Runs `C::sync`, exactly as the component would.
    pub fn sync<C: Connector>(&mut self, request: SyncRequest) -> Result<Summary, ConnectorError> {
        crate::run::sync::<C>(self, request)
    }

    /// A sync request for `base_url` with no patient, cursor or settings.
    pub fn sync_request(base_url: &str) -> SyncRequest {
        SyncRequest {
            base_url: base_url.into(),
            patient_id: None,
            cursor: None,
            settings: Vec::new(),
        }
    }

    /// Runs `f` with a [`Run`] against this host, then sends what it left batched: for testing
    /// one part of a connector.
    pub fn with_run<T>(&mut self, f: impl FnOnce(&mut Run<'_>) -> T) -> T {
        crate::run::with_run(self, f)
    }

    /// The emitted records, parsed.
    pub fn resources(&self) -> Vec<Value> {
        self.emitted
            .iter()
            .map(|text| serde_json::from_str(text).expect("an emitted record is JSON"))
            .collect()
    }

    /// The emitted records of one resource type, parsed.
    pub fn resources_of_type(&self, resource_type: &str) -> Vec<Value> {
        self.resources()
            .into_iter()
            .filter(|r| r["resourceType"] == resource_type)
            .collect()
    }

    /// `Type/id` of each emitted record, in order.
    pub fn resource_keys(&self) -> Vec<String> {
        self.resources()
            .iter()
            .map(|r| {
                let text = |field: &str| r[field].as_str().unwrap_or_default().to_string();
                format!("{}/{}", text("resourceType"), text("id"))
            })
            .collect()
    }

    /// The requested URLs, in order.
    pub fn requested_urls(&self) -> Vec<&str> {
        self.requests.iter().map(|r| r.url.as_str()).collect()
    }
}

impl Host for FakeHost {
    fn send(&mut self, request: &Request) -> Result<Response, HttpError> {
        self.requests.push(request.clone());
        let canned = self
            .canned
            .iter()
            .find(|(method, url, _)| *method == request.method && *url == request.url);
        if let Some((_, _, result)) = canned {
            return result.clone();
        }
        match &mut self.responder {
            Some(responder) => responder(request),
            None => Err(HttpError::Denied(format!(
                "FakeHost has no response for {} {}",
                request.method, request.url
            ))),
        }
    }

    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.into()));
    }

    fn state_get(&mut self, key: &str) -> Option<String> {
        self.state.get(key).cloned()
    }

    fn state_set(&mut self, key: &str, value: &str) -> Result<(), String> {
        self.state.insert(key.into(), value.into());
        Ok(())
    }

    fn state_delete(&mut self, key: &str) {
        self.state.remove(key);
    }

    fn now(&mut self) -> u64 {
        self.now
    }

    fn emit(&mut self, records: &[String]) -> Result<(), String> {
        if let Some(reason) = &self.refuse_batches {
            return Err(reason.clone());
        }
        let bytes: usize = records.iter().map(String::len).sum();
        if records.len() > MAX_BATCH_RESOURCES || bytes > MAX_BATCH_BYTES {
            return Err(format!(
                "a batch of {} records and {bytes} bytes is over the host's limits",
                records.len()
            ));
        }
        self.batches.push(records.len());
        if !self.discard_records {
            self.emitted.extend_from_slice(records);
        }
        Ok(())
    }

    fn progress(&mut self, done: u64, total: Option<u64>) {
        self.progress.push((done, total));
    }

    fn checkpoint(&mut self, cursor: &str) {
        self.checkpoints.push(cursor.into());
    }
}

/// An uploaded file for tests.
#[derive(Debug, Clone)]
pub struct FakeFile {
    name: String,
    media_type: String,
    bytes: Vec<u8>,
    position: usize,
    /// The most bytes one read returns, to exercise readers on chunk boundaries.
    chunk_limit: usize,
    rewinds: u32,
}

impl FakeFile {
    /// A file with this name, media type and content.
    pub fn new(name: &str, media_type: &str, bytes: impl Into<Vec<u8>>) -> FakeFile {
        FakeFile {
            name: name.into(),
            media_type: media_type.into(),
            bytes: bytes.into(),
            position: 0,
            chunk_limit: usize::MAX,
            rewinds: 0,
        }
    }

    /// Reads a file from disk (a sample in the crate, say).
    pub fn from_path(
        path: impl AsRef<std::path::Path>,
        media_type: &str,
    ) -> std::io::Result<FakeFile> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(FakeFile::new(&name, media_type, std::fs::read(path)?))
    }

    /// How many times the file was rewound.
    pub fn rewinds(&self) -> u32 {
        self.rewinds
    }

    /// Returns at most `bytes` per read, as a host may.
    pub fn in_chunks_of(mut self, bytes: usize) -> FakeFile {
        self.chunk_limit = bytes.max(1);
        self
    }
}

impl FileSource for FakeFile {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn media_type(&self) -> String {
        self.media_type.clone()
    }

    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read(&mut self, max_bytes: u32) -> Vec<u8> {
        let end = self
            .bytes
            .len()
            .min(self.position + (max_bytes as usize).min(self.chunk_limit));
        let chunk = self.bytes[self.position..end].to_vec();
        self.position = end;
        chunk
    }

    fn rewind(&mut self) {
        self.position = 0;
        self.rewinds += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::{FakeFile, FakeHost};
    use crate::{AuthNeed, Connector, ConnectorError, ConnectorKind, File, PluginInfo, Run};
    use crate::{Summary, serde_json::json};

    /// Emits the file's length, read twice.
    struct TwoPasses;

    impl Connector for TwoPasses {
        fn describe() -> PluginInfo {
            PluginInfo {
                id: "two-passes".into(),
                name: "Two passes".into(),
                version: "0.1.0".into(),
                kind: ConnectorKind::File,
                auth: AuthNeed::None,
                file_types: Vec::new(),
                settings_schema: None,
            }
        }

        fn import_file(file: &mut File<'_>, run: &mut Run<'_>) -> Result<Summary, ConnectorError> {
            let mut lengths = Vec::new();
            for _ in 0..2 {
                file.rewind();
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).unwrap();
                lengths.push(bytes.len());
            }
            run.emit(&json!({"resourceType": "Basic", "id": "b", "lengths": lengths}))?;
            Ok(Summary {
                warnings: Vec::new(),
            })
        }
    }

    #[test]
    fn the_host_counts_the_rewinds_of_an_imported_file() {
        let mut host = FakeHost::new();
        let file = FakeFile::new("a.txt", "text/plain", "hello").in_chunks_of(2);
        host.import_file::<TwoPasses>(file).unwrap();
        assert_eq!(host.file_rewinds, 2);
        assert_eq!(host.resources()[0]["lengths"], json!([5, 5]));
        assert_eq!(host.resource_keys(), ["Basic/b"]);
        // The run ends with the count of records, as complete.
        assert_eq!(host.progress, [(1, Some(1))]);
    }
}
