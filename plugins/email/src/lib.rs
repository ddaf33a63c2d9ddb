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
use fasten_fhir_r4::emit::Batcher;

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

impl<F: FnMut(&[String]) -> Result<(), String>> Output for Batcher<F> {
    fn emit(&mut self, resource: String) -> Result<(), String> {
        Batcher::emit(self, resource)
    }
}
