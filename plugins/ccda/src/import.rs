//! The import of one file: a single C-CDA document, or the XDM zip of several a portal's
//! download gives. The file is read whole; its DOM takes about ten times its size.

use fasten_connector::{ConnectorError, File, MAX_BATCH_BYTES, Run, Summary};

use crate::xdm;

/// The largest file read: a portal's zip of many documents. A single document is a few hundred
/// KiB; its DOM takes about ten times its size.
pub(crate) const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// The `import-file` export.
pub(crate) fn import_file(
    file: &mut File<'_>,
    run: &mut Run<'_>,
) -> Result<Summary, ConnectorError> {
    let bytes = file.read_all(MAX_FILE_BYTES, |size| {
        format!(
            "This file is {} MiB; Fasten reads health record documents and portal downloads of up to {} MiB.",
            size >> 20,
            MAX_FILE_BYTES >> 20
        )
    })?;
    let warnings = import(&file.name(), &bytes, run)?;
    Ok(Summary { warnings })
}

/// Converts a file (one document, or an XDM zip of several) and emits its resources.
/// Returns the warnings, each naming its document when there are several.
pub(crate) fn import(
    name: &str,
    bytes: &[u8],
    run: &mut Run<'_>,
) -> Result<Vec<String>, ConnectorError> {
    if bytes.starts_with(b"PK\x03\x04") {
        let documents = xdm::documents(bytes).map_err(ConnectorError::InvalidInput)?;
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
                    emit_all(conversion, run, &mut warnings)?;
                }
                // One unreadable document does not lose the others.
                Err(e) => failures.push(format!("{path} was not imported: {e}.")),
            }
        }
        if failures.len() == documents.len() {
            return Err(ConnectorError::InvalidInput(format!(
                "None of the documents in {name} could be read. {}",
                failures.join(" ")
            )));
        }
        warnings.extend(failures);
        return Ok(warnings);
    }
    let conversion = fasten_ccda::convert(bytes).map_err(|e| {
        ConnectorError::InvalidInput(format!(
            "{name} is not a health record document Fasten can read: {e}. A patient portal's \
             \"Download my record\" gives a C-CDA .xml file or a zip holding them."
        ))
    })?;
    let mut warnings = conversion.warnings.clone();
    emit_all(conversion, run, &mut warnings)?;
    Ok(warnings)
}

/// Emits a document's resources. The Binary of a document too large for the host to take in
/// one record is left out (with a warning), and its DocumentReference then names the file
/// without holding it.
fn emit_all(
    conversion: fasten_ccda::Conversion,
    run: &mut Run<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), ConnectorError> {
    let mut dropped_binary: Option<String> = None;
    let mut texts = Vec::with_capacity(conversion.resources.len());
    for resource in conversion.resources {
        let text = resource.to_string();
        if resource["resourceType"] == "Binary" && text.len() > MAX_BATCH_BYTES {
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
        run.emit_text(text)?;
    }
    Ok(())
}
