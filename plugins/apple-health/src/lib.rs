//! Fasten's Apple Health connector: imports the export the Health app makes (Health app, your
//! picture, Export All Health Data), either the shared zip or the export.xml inside it.
//!
//! Exports reach gigabytes, so the file is read as a stream (through the zip's decompressor when
//! it is the zip) and memory stays flat: see [`import`] for what becomes which observation.
//! This file only adapts the host's imports to the plain traits the importer is written
//! against, so that all of it is tested natively.

mod date;
mod emit;
mod import;
mod mapping;
mod observation;
mod source;
#[cfg(test)]
mod tests;

wit_bindgen::generate!({
    path: "../../wit/v0.1",
    world: "plugin",
});

use exports::fasten::connector::connector::{
    ConnectorError, Guest, PluginInfo, Summary, SyncRequest,
};
use fasten::connector::files::SourceFile;
use fasten::connector::sink::BatchSink;
use fasten::connector::types::{AuthNeed, ConnectorKind, FileType};

struct AppleHealth;

impl Guest for AppleHealth {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "apple-health".into(),
            name: "Apple Health".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: ConnectorKind::File,
            auth: AuthNeed::None,
            file_types: vec![
                FileType {
                    media_type: "application/xml".into(),
                    extensions: vec!["xml".into()],
                    description: "Apple Health export (export.xml)".into(),
                },
                FileType {
                    media_type: "application/zip".into(),
                    extensions: vec!["zip".into()],
                    description: "Apple Health export (the zip the Health app shares)".into(),
                },
            ],
            settings_schema: None,
        }
    }

    fn sync(_request: SyncRequest, _out: &BatchSink) -> Result<Summary, ConnectorError> {
        Err(ConnectorError::Fatal(
            "The Apple Health connector only imports files; it has nothing to sync.".into(),
        ))
    }

    fn import_file(file: &SourceFile, out: &BatchSink) -> Result<Summary, ConnectorError> {
        let warnings = import::import(HostSourceFile(file), HostSink(out))?;
        Ok(Summary { warnings })
    }
}

export!(AppleHealth);

struct HostSourceFile<'a>(&'a SourceFile);

impl source::HostFile for HostSourceFile<'_> {
    fn read_chunk(&mut self, max_bytes: u32) -> Vec<u8> {
        self.0.read(max_bytes)
    }

    fn rewind(&mut self) {
        self.0.rewind();
    }

    fn size(&self) -> u64 {
        self.0.size()
    }
}

struct HostSink<'a>(&'a BatchSink);

impl emit::Output for HostSink<'_> {
    fn emit(&mut self, resources: &[String]) -> Result<(), String> {
        self.0.emit(resources)
    }

    fn progress(&mut self, done: u64, total: Option<u64>) {
        self.0.progress(done, total);
    }
}
