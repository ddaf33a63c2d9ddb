//! Fasten's Apple Health connector: imports the export the Health app makes (Health app, your
//! picture, Export All Health Data), either the shared zip or the export.xml inside it.
//!
//! Exports reach gigabytes, so the file is read as a stream (through the zip's decompressor when
//! it is the zip) and memory stays flat: see [`import`] for what becomes which observation.
//! The importer is written against `Read + Seek` and the SDK's `Run`, so all of it is tested
//! natively.

mod date;
mod emit;
mod import;
mod mapping;
mod observation;
mod source;
#[cfg(test)]
mod tests;

use fasten_connector::{
    AuthNeed, Connector, ConnectorError, ConnectorKind, File, FileType, PluginInfo, Run, Summary,
};

struct AppleHealth;

impl Connector for AppleHealth {
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

    fn import_file(file: &mut File<'_>, run: &mut Run<'_>) -> Result<Summary, ConnectorError> {
        let size = file.size();
        let warnings = import::import(file, size, run)?;
        Ok(Summary { warnings })
    }
}

fasten_connector::export_connector!(AppleHealth);
