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

use fasten_connector::{
    AuthNeed, Connector, ConnectorError, ConnectorKind, File, FileType, PluginInfo, Run, Summary,
};

use email::MAX_EMAIL_BYTES;

struct EmailConnector;

impl Connector for EmailConnector {
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

    fn import_file(file: &mut File<'_>, run: &mut Run<'_>) -> Result<Summary, ConnectorError> {
        let raw = file.read_all(MAX_EMAIL_BYTES, email::too_large)?;
        let warnings = email::import(&raw, run)?;
        Ok(Summary { warnings })
    }
}

fasten_connector::export_connector!(EmailConnector);
