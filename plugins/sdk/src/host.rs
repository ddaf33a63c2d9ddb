//! The seam between a connector and the host: in the component, the WIT imports; in native tests,
//! [`FakeHost`](crate::testing::FakeHost). Connectors do not call it directly; they use
//! [`Run`](crate::Run), which adds batching on top.

use crate::Level;
use crate::file::FileSource;
use crate::http::{HttpError, Request, Response};
use crate::wit::fasten::connector as imports;
use crate::wit::fasten::connector::files::SourceFile;
use crate::wit::fasten::connector::sink::BatchSink;

/// Everything a run can ask of the host, one method per WIT import.
pub trait Host {
    /// Sends an HTTP request. The host allows only the hosts granted to the plugin and adds the
    /// connection's credentials itself.
    fn send(&mut self, request: &Request) -> Result<Response, HttpError>;
    /// Writes a log line under the plugin's id.
    fn log(&mut self, level: Level, message: &str);
    /// Reads a value the connection's previous runs kept.
    fn state_get(&mut self, key: &str) -> Option<String>;
    /// Keeps a value for later runs; fails with the reason past the host's quota.
    fn state_set(&mut self, key: &str, value: &str) -> Result<(), String>;
    /// Forgets a kept value.
    fn state_delete(&mut self, key: &str);
    /// Seconds since 1970-01-01T00:00:00Z.
    fn now(&mut self) -> u64;
    /// Hands one batch of records (JSON texts) to the host.
    fn emit(&mut self, records: &[String]) -> Result<(), String>;
    /// Tells the host how far the run is.
    fn progress(&mut self, done: u64, total: Option<u64>);
    /// Where the next incremental sync should resume; kept only if this run succeeds.
    fn checkpoint(&mut self, cursor: &str);
}

/// The real host, through the component's imports.
pub(crate) struct WasmHost<'a> {
    sink: &'a BatchSink,
}

impl<'a> WasmHost<'a> {
    pub(crate) fn new(sink: &'a BatchSink) -> Self {
        WasmHost { sink }
    }
}

impl Host for WasmHost<'_> {
    fn send(&mut self, request: &Request) -> Result<Response, HttpError> {
        imports::http::send(request)
    }

    fn log(&mut self, level: Level, message: &str) {
        imports::log::log(level, message);
    }

    fn state_get(&mut self, key: &str) -> Option<String> {
        imports::state::get(key)
    }

    fn state_set(&mut self, key: &str, value: &str) -> Result<(), String> {
        imports::state::set(key, value)
    }

    fn state_delete(&mut self, key: &str) {
        imports::state::delete(key);
    }

    fn now(&mut self) -> u64 {
        imports::clock::now()
    }

    fn emit(&mut self, records: &[String]) -> Result<(), String> {
        self.sink.emit(records)
    }

    fn progress(&mut self, done: u64, total: Option<u64>) {
        self.sink.progress(done, total);
    }

    fn checkpoint(&mut self, cursor: &str) {
        self.sink.checkpoint(cursor);
    }
}

/// The uploaded file, through the component's `source-file` resource.
pub(crate) struct WasmFile<'a> {
    file: &'a SourceFile,
}

impl<'a> WasmFile<'a> {
    pub(crate) fn new(file: &'a SourceFile) -> Self {
        WasmFile { file }
    }
}

impl FileSource for WasmFile<'_> {
    fn name(&self) -> String {
        self.file.name()
    }

    fn media_type(&self) -> String {
        self.file.media_type()
    }

    fn size(&self) -> u64 {
        self.file.size()
    }

    fn read(&mut self, max_bytes: u32) -> Vec<u8> {
        self.file.read(max_bytes)
    }

    fn rewind(&mut self) {
        self.file.rewind();
    }
}
