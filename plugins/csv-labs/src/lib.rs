//! Fasten's connector for lab results exported as CSV from a lab or patient portal.
//!
//! `import-file` finds the header line (after up to ten preamble lines) and the delimiter, reads
//! each row as one result, and emits an Observation per row and a DiagnosticReport per panel and
//! collection time. The format logic lives in plain modules that the unit tests run natively
//! against the SDK's `FakeHost`.

mod dates;
mod header;
mod import;
mod rows;
mod values;

#[cfg(test)]
mod tests;

use fasten_connector::{
    AuthNeed, Connector, ConnectorError, ConnectorKind, File, FileType, PluginInfo, Run, Summary,
};

use import::Options;

struct CsvLabs;

impl Connector for CsvLabs {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "csv-labs".into(),
            name: "Lab results (CSV)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: ConnectorKind::File,
            auth: AuthNeed::None,
            file_types: vec![FileType {
                media_type: "text/csv".into(),
                extensions: vec!["csv".into(), "tsv".into()],
                description: "Lab results exported as CSV from a lab or patient portal".into(),
            }],
            settings_schema: None,
        }
    }

    fn import_file(file: &mut File<'_>, run: &mut Run<'_>) -> Result<Summary, ConnectorError> {
        let options = Options::from_media_type(&file.media_type());
        let warnings = import::import(file, &options, run)?;
        Ok(Summary { warnings })
    }
}

fasten_connector::export_connector!(CsvLabs);
