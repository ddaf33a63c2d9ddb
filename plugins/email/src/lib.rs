//! Fasten's email connector: imports one email message (`.eml`) as FHIR R4 records.
//!
//! The email becomes a `DocumentReference` holding its text, each attachment a `Binary`, FHIR
//! attachments their own records, C-CDA attachments and attached emails their own
//! `DocumentReference`s (see `email`). The file is read whole: emails are small, and the host
//! limits what a user may upload.

mod ccda;
mod email;
mod fhir_json;
mod fhir_rules;
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

use email::{ImportError, MAX_EMAIL_BYTES, Output};
use fhir_rules::MAX_RESOURCE_BYTES;

/// Emit when this many resources are waiting...
const BATCH_RESOURCES: usize = 250;
/// ...or when they add up to this many bytes.
const BATCH_BYTES: usize = 2 * 1024 * 1024;
/// The host refuses a call with more resources than this.
const MAX_BATCH_RESOURCES: usize = 500;
const READ_CHUNK: u32 = 1 << 20;

struct EmailConnector;

impl Guest for EmailConnector {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "email".into(),
            name: "Email".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: ConnectorKind::File,
            auth: AuthNeed::None,
            file_types: vec![FileType {
                media_type: "message/rfc822".into(),
                extensions: vec!["eml".into()],
                description: "Email message (.eml), e.g. results a clinic emailed you".into(),
            }],
            settings_schema: None,
        }
    }

    fn sync(_request: SyncRequest, _out: &BatchSink) -> Result<Summary, ConnectorError> {
        Err(ConnectorError::Fatal(
            "The email connector only imports .eml files; it has nothing to sync.".into(),
        ))
    }

    fn import_file(file: &SourceFile, out: &BatchSink) -> Result<Summary, ConnectorError> {
        let raw = read_whole(file)?;
        let mut batcher = Batcher::new(|batch: &[String]| out.emit(batch));
        let warnings = email::import(&raw, &mut batcher).map_err(connector_error)?;
        batcher.flush().map_err(refused)?;
        out.progress(batcher.emitted, Some(batcher.emitted));
        Ok(Summary { warnings })
    }
}

export!(EmailConnector);

fn read_whole(file: &SourceFile) -> Result<Vec<u8>, ConnectorError> {
    let size = file.size();
    if size > MAX_EMAIL_BYTES {
        return Err(ConnectorError::InvalidInput(email::too_large(size)));
    }
    let mut raw = Vec::with_capacity(size as usize);
    loop {
        let chunk = file.read(READ_CHUNK);
        if chunk.is_empty() {
            return Ok(raw);
        }
        // The size the host reported is not trusted to bound memory.
        if (raw.len() + chunk.len()) as u64 > MAX_EMAIL_BYTES {
            return Err(ConnectorError::InvalidInput(email::too_large(
                (raw.len() + chunk.len()) as u64,
            )));
        }
        raw.extend_from_slice(&chunk);
    }
}

fn connector_error(error: ImportError) -> ConnectorError {
    match error {
        ImportError::Invalid(message) => ConnectorError::InvalidInput(message),
        ImportError::Refused(reason) => refused(reason),
    }
}

fn refused(reason: String) -> ConnectorError {
    ConnectorError::Fatal(format!("The host refused a batch of records: {reason}"))
}

/// Collects resources into calls the host accepts (at most 500 resources and 4 MiB each).
pub(crate) struct Batcher<F: FnMut(&[String]) -> Result<(), String>> {
    send: F,
    batch: Vec<String>,
    batch_bytes: usize,
    pub(crate) emitted: u64,
}

impl<F: FnMut(&[String]) -> Result<(), String>> Batcher<F> {
    pub(crate) fn new(send: F) -> Self {
        Batcher {
            send,
            batch: Vec::new(),
            batch_bytes: 0,
            emitted: 0,
        }
    }

    pub(crate) fn flush(&mut self) -> Result<(), String> {
        if self.batch.is_empty() {
            return Ok(());
        }
        (self.send)(&self.batch)?;
        self.batch.clear();
        self.batch_bytes = 0;
        Ok(())
    }
}

impl<F: FnMut(&[String]) -> Result<(), String>> Output for Batcher<F> {
    fn emit(&mut self, resource: String) -> Result<(), String> {
        debug_assert!(resource.len() <= MAX_RESOURCE_BYTES);
        if self.batch.len() >= MAX_BATCH_RESOURCES
            || self.batch_bytes + resource.len() > MAX_RESOURCE_BYTES
        {
            self.flush()?;
        }
        self.batch_bytes += resource.len();
        self.batch.push(resource);
        self.emitted += 1;
        if self.batch.len() >= BATCH_RESOURCES || self.batch_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }
}
