//! Fasten's C-CDA connector: health record documents from patient portals become FHIR R4
//! records. It reads a single C-CDA document (`.xml`), or the zip a portal's "Download my record"
//! gives (the IHE XDM layout: `IHE_XDM/<folder>/DOC0001.XML` listed in `METADATA.XML`, beside a
//! stylesheet and an `INDEX.HTM` that are ignored). The conversion itself is the `fasten-ccda`
//! crate, which the email connector shares.

mod import;
mod xdm;

use fasten_connector::{
    AuthNeed, Connector, ConnectorError, ConnectorKind, File, FileType, PluginInfo, Run, Summary,
};

struct CcdaConnector;

impl Connector for CcdaConnector {
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

    fn import_file(file: &mut File<'_>, run: &mut Run<'_>) -> Result<Summary, ConnectorError> {
        import::import_file(file, run)
    }
}

fasten_connector::export_connector!(CcdaConnector);

#[cfg(test)]
mod tests;
