//! Fasten's C-CDA connector: health record documents from patient portals become FHIR R4
//! records. It reads a single C-CDA document (`.xml`), or the zip a portal's "Download my record"
//! gives (the IHE XDM layout: `IHE_XDM/<folder>/DOC0001.XML` listed in `METADATA.XML`, beside a
//! stylesheet and an `INDEX.HTM` that are ignored). The conversion itself is the `fasten-ccda`
//! crate, which the email connector shares.

mod xdm;

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
use fasten_fhir_r4::emit::Batcher;

/// The largest file read: a portal's zip of many documents. A single document is a few hundred
/// KiB; its DOM takes about ten times its size.
pub(crate) const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
const READ_CHUNK: u32 = 1 << 20;

struct CcdaConnector;

impl Guest for CcdaConnector {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "ccda".into(),
            name: "Health record documents (C-CDA)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: ConnectorKind::File,
            auth: AuthNeed::None,
            file_types: vec![
                FileType {
                    media_type: "application/xml".into(),
                    extensions: vec!["xml".into(), "cda".into(), "ccd".into(), "ccda".into()],
                    description: "Health record document from a patient portal (C-CDA XML)".into(),
                },
                FileType {
                    media_type: "application/zip".into(),
                    extensions: vec!["zip".into()],
                    description: "A patient portal's record download (zip with an IHE_XDM folder)"
                        .into(),
                },
            ],
            settings_schema: None,
        }
    }

    fn sync(_request: SyncRequest, _out: &BatchSink) -> Result<Summary, ConnectorError> {
        Err(ConnectorError::Fatal(
            "The C-CDA connector only imports files; it has nothing to sync.".into(),
        ))
    }

    fn import_file(file: &SourceFile, out: &BatchSink) -> Result<Summary, ConnectorError> {
        let bytes = read_whole(file)?;
        let mut batcher = Batcher::new(|batch: &[String]| out.emit(batch));
        let warnings = import(&file.name(), &bytes, &mut |resource| batcher.emit(resource))
            .map_err(|e| match e {
                ImportError::Invalid(message) => ConnectorError::InvalidInput(message),
                ImportError::Refused(reason) => refused(reason),
            })?;
        batcher.flush().map_err(refused)?;
        out.progress(batcher.emitted, Some(batcher.emitted));
        Ok(Summary { warnings })
    }
}

export!(CcdaConnector);

/// Why an import failed.
#[derive(Debug)]
pub(crate) enum ImportError {
    /// The file is not what this connector reads; the message is for the user.
    Invalid(String),
    /// The host refused a batch.
    Refused(String),
}

/// Converts a file (one document, or an XDM zip of several) and hands each resource to `emit`.
/// Returns the warnings, each naming its document when there are several.
pub(crate) fn import(
    name: &str,
    bytes: &[u8],
    emit: &mut dyn FnMut(String) -> Result<(), String>,
) -> Result<Vec<String>, ImportError> {
    if bytes.starts_with(b"PK\x03\x04") {
        let documents = xdm::documents(bytes).map_err(ImportError::Invalid)?;
        let mut warnings = Vec::new();
        let mut failures = Vec::new();
        // Documents of one download repeat their patient, authors and often entries: each is
        // written once, as the first document has it, so the same download again changes nothing.
        let mut emitted = std::collections::HashSet::new();
        for (path, document) in &documents {
            match fasten_ccda::convert(document) {
                Ok(mut conversion) => {
                    warnings.extend(conversion.warnings.iter().map(|w| format!("{path}: {w}")));
                    conversion
                        .resources
                        .retain(|r| emitted.insert(format!("{}/{}", r["resourceType"], r["id"])));
                    emit_all(conversion, emit, &mut warnings)?;
                }
                // One unreadable document does not lose the others.
                Err(e) => failures.push(format!("{path} was not imported: {e}.")),
            }
        }
        if failures.len() == documents.len() {
            return Err(ImportError::Invalid(format!(
                "None of the documents in {name} could be read. {}",
                failures.join(" ")
            )));
        }
        warnings.extend(failures);
        return Ok(warnings);
    }
    let conversion = fasten_ccda::convert(bytes).map_err(|e| {
        ImportError::Invalid(format!(
            "{name} is not a health record document Fasten can read: {e}. A patient portal's \
             \"Download my record\" gives a C-CDA .xml file or a zip holding them."
        ))
    })?;
    let mut warnings = conversion.warnings.clone();
    emit_all(conversion, emit, &mut warnings)?;
    Ok(warnings)
}

/// Emits a document's resources. The Binary of a document too large for the host to take in
/// one record is left out (with a warning), and its DocumentReference then names the file
/// without holding it.
fn emit_all(
    conversion: fasten_ccda::Conversion,
    emit: &mut dyn FnMut(String) -> Result<(), String>,
    warnings: &mut Vec<String>,
) -> Result<(), ImportError> {
    let mut dropped_binary: Option<String> = None;
    let mut texts = Vec::with_capacity(conversion.resources.len());
    for resource in conversion.resources {
        let text = resource.to_string();
        if resource["resourceType"] == "Binary"
            && text.len() > fasten_fhir_r4::emit::MAX_BATCH_BYTES
        {
            warnings.push(format!(
                "The original document ({} MiB) is too large to keep as a file; its records were imported.",
                text.len() >> 20
            ));
            dropped_binary = resource["id"].as_str().map(|id| format!("Binary/{id}"));
            continue;
        }
        texts.push((resource, text));
    }
    for (mut resource, mut text) in texts {
        if let Some(binary) = &dropped_binary
            && resource["resourceType"] == "DocumentReference"
            && resource["content"][0]["attachment"]["url"] == binary.as_str()
        {
            if let Some(attachment) = resource["content"][0]["attachment"].as_object_mut() {
                attachment.remove("url");
            }
            text = resource.to_string();
        }
        emit(text).map_err(ImportError::Refused)?;
    }
    Ok(())
}

fn read_whole(file: &SourceFile) -> Result<Vec<u8>, ConnectorError> {
    let too_large = |size: u64| {
        ConnectorError::InvalidInput(format!(
            "This file is {} MiB; Fasten reads health record documents and portal downloads of up to {} MiB.",
            size >> 20,
            MAX_FILE_BYTES >> 20
        ))
    };
    let size = file.size();
    if size > MAX_FILE_BYTES {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    loop {
        let chunk = file.read(READ_CHUNK);
        if chunk.is_empty() {
            return Ok(bytes);
        }
        // The size the host reported is not trusted to bound memory.
        if (bytes.len() + chunk.len()) as u64 > MAX_FILE_BYTES {
            return Err(too_large((bytes.len() + chunk.len()) as u64));
        }
        bytes.extend_from_slice(&chunk);
    }
}

fn refused(reason: String) -> ConnectorError {
    ConnectorError::Fatal(format!("The host refused a batch of records: {reason}"))
}

#[cfg(test)]
mod tests;
