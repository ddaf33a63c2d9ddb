//! Fasten's FHIR R4 connector.
//!
//! `import-file` accepts a Bundle of any type, an NDJSON bulk export, or a single resource, and
//! emits every resource while it reads, so a file far larger than the plugin's memory limit can
//! be imported (see `import`). `sync` reads a patient's records from a FHIR R4 server the host
//! has connected with SMART on FHIR (see `sync`).

mod bundle;
mod import;
mod sync;

use fasten_connector::{
    AuthNeed, Connector, ConnectorError, ConnectorKind, File, FileType, PluginInfo, Run, Summary,
    SyncRequest,
};

struct Fhir;

impl Connector for Fhir {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "fhir".into(),
            name: "FHIR".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: ConnectorKind::Both,
            auth: AuthNeed::SmartOnFhir,
            file_types: vec![
                FileType {
                    media_type: "application/fhir+json".into(),
                    extensions: vec!["json".into()],
                    description: "FHIR R4 Bundle or single resource (JSON)".into(),
                },
                FileType {
                    media_type: "application/fhir+ndjson".into(),
                    extensions: vec!["ndjson".into(), "jsonl".into()],
                    description: "FHIR bulk export (NDJSON, one resource per line)".into(),
                },
            ],
            settings_schema: None,
        }
    }

    fn sync(request: SyncRequest, run: &mut Run<'_>) -> Result<Summary, ConnectorError> {
        sync::sync(request, run)
    }

    fn import_file(file: &mut File<'_>, run: &mut Run<'_>) -> Result<Summary, ConnectorError> {
        import::import(file, run)
    }
}

fasten_connector::export_connector!(Fhir);
