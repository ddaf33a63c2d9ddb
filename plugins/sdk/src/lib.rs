//! The SDK for Fasten connector plugins.
//!
//! A connector turns one kind of outside data (a lab's CSV export, a FHIR server, a wearable's
//! API) into FHIR R4 resources. It runs inside Fasten as a sandboxed WebAssembly component built
//! for `wasm32-wasip2`; everything it can do (reach a granted host, log, keep a cursor, emit
//! records) goes through the host. This crate hides the WIT bindings behind three things:
//!
//! - the [`Connector`] trait: `describe` says who the plugin is; `import_file` and `sync` do the
//!   work and default to "not supported", so a file connector implements only `import_file`;
//! - the [`export_connector!`] macro, which makes the type the component's export;
//! - [`Run`], the one handle a run gets: [`Run::emit`] batches records under the host's limits,
//!   and HTTP, logs, state, the clock and checkpoints are methods on it.
//!
//! Files arrive as a [`File`], a buffered [`std::io::Read`] over the host's upload. In native
//! tests, [`testing::FakeHost`] plays the host: it records what was emitted, logged and
//! checkpointed, and answers HTTP requests from canned responses.
//!
//! # Example
//!
//! A connector for a CSV of `date,weight_kg` rows:
//!
//! ```no_run
//! use fasten_connector::serde_json::json;
//! use fasten_connector::{
//!     AuthNeed, Connector, ConnectorError, ConnectorKind, File, FileType, PluginInfo, Run,
//!     Summary,
//! };
//! use std::io::Read;
//!
//! struct Weights;
//!
//! impl Connector for Weights {
//!     fn describe() -> PluginInfo {
//!         PluginInfo {
//!             id: "weights".into(),
//!             name: "Weights (CSV)".into(),
//!             version: env!("CARGO_PKG_VERSION").into(),
//!             kind: ConnectorKind::File,
//!             auth: AuthNeed::None,
//!             file_types: vec![FileType {
//!                 media_type: "text/csv".into(),
//!                 extensions: vec!["csv".into()],
//!                 description: "Body weights, one `date,weight_kg` row per day".into(),
//!             }],
//!             settings_schema: None,
//!         }
//!     }
//!
//!     fn import_file(file: &mut File<'_>, run: &mut Run<'_>) -> Result<Summary, ConnectorError> {
//!         let mut text = String::new();
//!         file.read_to_string(&mut text)
//!             .map_err(|_| ConnectorError::InvalidInput("This file is not UTF-8 text.".into()))?;
//!         for (n, line) in text.lines().skip(1).enumerate() {
//!             let Some((date, kg)) = line.split_once(',') else { continue };
//!             run.emit(&json!({
//!                 "resourceType": "Observation",
//!                 "id": format!("weight-{n}"),
//!                 "status": "final",
//!                 "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
//!                 "effectiveDateTime": date,
//!                 "valueQuantity": {"value": kg.parse::<f64>().unwrap_or_default(), "unit": "kg"},
//!             }))?;
//!         }
//!         Ok(Summary { warnings: Vec::new() })
//!     }
//! }
//!
//! fasten_connector::export_connector!(Weights);
//! ```
//!
//! And its test, run natively with `cargo test`:
//!
//! ```ignore
//! use fasten_connector::testing::{FakeFile, FakeHost};
//!
//! let mut host = FakeHost::new();
//! let file = FakeFile::new("weights.csv", "text/csv", "date,weight_kg\n2026-01-02,71.4\n");
//! host.import_file::<Weights>(file).unwrap();
//! assert_eq!(host.resources().len(), 1);
//! ```

#![deny(missing_docs)]

mod emit;
mod file;
mod host;
pub mod http;
mod run;
pub mod testing;

pub use emit::{Emitter, MAX_BATCH_BYTES, MAX_BATCH_RESOURCES, Refused};
pub use file::{File, FileSource};
pub use host::Host;
pub use run::Run;

/// The FHIR R4 helpers the bundled connectors share: the resource types Fasten accepts, the id
/// rule, the streaming Bundle reader, instants and number-preserving JSON.
pub use fasten_fhir_r4 as fhir;
/// JSON, with numbers kept exactly as they were read (`arbitrary_precision`).
pub use serde_json;

pub use wit::fasten::connector::log::Level;
pub use wit::fasten::connector::types::{
    AuthNeed, ConnectorError, ConnectorKind, FileType, Oauth2Endpoints, PluginInfo, Summary,
    SyncRequest,
};

/// The bindings of `wit/v0.1`, generated here and nowhere else.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../../wit/v0.1",
        world: "plugin",
        pub_export_macro: true,
        default_bindings_module: "fasten_connector::wit",
    });
}

/// What a connector is. Implement it on a unit struct and pass that to [`export_connector!`].
///
/// A `file` connector implements [`Connector::import_file`], a `network` one
/// [`Connector::sync`]; the other keeps its default, which tells the user the connector does not
/// do that. Records go out through the [`Run`]; whatever is still batched when the method returns
/// `Ok` is sent then, and nothing of a run that returns `Err` is stored (the host rolls it back).
pub trait Connector {
    /// Who the plugin is and what it needs. Must be quick and do no I/O: the host calls it when
    /// loading the plugin and checks it against the plugin's `plugin.toml`.
    fn describe() -> PluginInfo;

    /// Fetches records from the connection's API (network connectors).
    fn sync(request: SyncRequest, run: &mut Run<'_>) -> Result<Summary, ConnectorError> {
        let _ = (request, run);
        Err(ConnectorError::Fatal(format!(
            "The {} connector only imports files; it has nothing to sync.",
            Self::describe().name
        )))
    }

    /// Reads a file the user uploaded (file connectors).
    fn import_file(file: &mut File<'_>, run: &mut Run<'_>) -> Result<Summary, ConnectorError> {
        let _ = (file, run);
        Err(ConnectorError::Fatal(format!(
            "The {} connector does not import files; connect an account instead.",
            Self::describe().name
        )))
    }
}

/// Makes a [`Connector`] the component's export. Use it once, at the root of the plugin crate.
///
/// ```ignore
/// struct MyConnector;
/// impl fasten_connector::Connector for MyConnector { /* ... */ }
/// fasten_connector::export_connector!(MyConnector);
/// ```
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        const _: () = {
            struct FastenConnectorExport;

            impl $crate::__private::Guest for FastenConnectorExport {
                fn describe() -> $crate::PluginInfo {
                    <$connector as $crate::Connector>::describe()
                }

                fn sync(
                    request: $crate::SyncRequest,
                    out: &$crate::__private::BatchSink,
                ) -> ::core::result::Result<$crate::Summary, $crate::ConnectorError> {
                    $crate::__private::sync::<$connector>(request, out)
                }

                fn import_file(
                    file: &$crate::__private::SourceFile,
                    out: &$crate::__private::BatchSink,
                ) -> ::core::result::Result<$crate::Summary, $crate::ConnectorError> {
                    $crate::__private::import_file::<$connector>(file, out)
                }
            }

    $crate::__private::export!(FastenConnectorExport with_types_in $crate::wit);
        };
    };
}

/// What [`export_connector!`] expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::wit::export;
    pub use crate::wit::exports::fasten::connector::connector::Guest;
    pub use crate::wit::fasten::connector::files::SourceFile;
    pub use crate::wit::fasten::connector::sink::BatchSink;

    use crate::host::{WasmFile, WasmHost};
    use crate::{Connector, ConnectorError, Summary, SyncRequest};

    pub fn sync<C: Connector>(
        request: SyncRequest,
        out: &BatchSink,
    ) -> Result<Summary, ConnectorError> {
        crate::run::sync::<C>(&mut WasmHost::new(out), request)
    }

    pub fn import_file<C: Connector>(
        file: &SourceFile,
        out: &BatchSink,
    ) -> Result<Summary, ConnectorError> {
        crate::run::import_file::<C>(&mut WasmHost::new(out), &mut WasmFile::new(file))
    }
}
