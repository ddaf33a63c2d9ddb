//! The `fasten:connector` WIT versions this host implements, one module each (`v0_1` for
//! `wit/v0.1`: its generated bindings and the host's implementations of its imports), and the
//! dispatch by the version a component was built against: [`ApiVersion`] names it,
//! [`ConnectorPre`] and [`Connector`] call into the guest through that version's bindings. The
//! rest of the host sees one set of types, re-exported here.
//!
//! Supporting another version is a new `v0_N` module, a variant of [`ApiVersion`] with its arm
//! in [`ApiVersion::of`] and in the matches below, and its entry in [`SUPPORTED_APIS`].

pub mod v0_1;

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker, Resource};

use super::runtime::{RunState, SinkHandle, SourceFileHandle};

pub use self::v0_1::{AuthNeed, ConnectorError, ConnectorKind, PluginInfo, Summary, SyncRequest};

/// The `api` a manifest may declare, one per [`ApiVersion`].
pub const SUPPORTED_APIS: &[&str] = &["fasten:connector@0.1"];

/// A `fasten:connector` version this host implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V0_1,
}

impl ApiVersion {
    /// The supported version a WIT name's package version (`0.1.0` in
    /// `fasten:connector/connector@0.1.0`) belongs to: any patch release of it.
    pub fn of(version: &str) -> Option<ApiVersion> {
        let mut parts = version.splitn(3, '.');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("0"), Some("1"), Some(_)) => Some(ApiVersion::V0_1),
            _ => None,
        }
    }
}

/// Adds every supported version's imports to `linker`; each version's interfaces have names
/// of their own (`fasten:connector/http@0.1.0`), so they live side by side.
pub fn add_to_linker(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    v0_1::Plugin::add_to_linker::<RunState, HasSelf<RunState>>(linker, |state| state)
}

/// A component linked against the version it was built for, ready to instantiate for each run.
pub enum ConnectorPre {
    V0_1(v0_1::PluginPre<RunState>),
}

impl ConnectorPre {
    pub fn new(
        version: ApiVersion,
        instance_pre: InstancePre<RunState>,
    ) -> wasmtime::Result<ConnectorPre> {
        Ok(match version {
            ApiVersion::V0_1 => ConnectorPre::V0_1(v0_1::PluginPre::new(instance_pre)?),
        })
    }

    pub async fn instantiate_async(
        &self,
        store: &mut Store<RunState>,
    ) -> wasmtime::Result<Connector> {
        Ok(match self {
            ConnectorPre::V0_1(pre) => Connector::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

/// One instance of a plugin, in one run's store.
pub enum Connector {
    V0_1(v0_1::Plugin),
}

impl Connector {
    pub async fn call_describe(&self, store: &mut Store<RunState>) -> wasmtime::Result<PluginInfo> {
        match self {
            Connector::V0_1(plugin) => {
                plugin
                    .fasten_connector_connector()
                    .call_describe(store)
                    .await
            }
        }
    }

    pub async fn call_import_file(
        &self,
        store: &mut Store<RunState>,
        file: Resource<SourceFileHandle>,
        sink: Resource<SinkHandle>,
    ) -> wasmtime::Result<Result<Summary, ConnectorError>> {
        match self {
            Connector::V0_1(plugin) => {
                plugin
                    .fasten_connector_connector()
                    .call_import_file(store, file, sink)
                    .await
            }
        }
    }

    pub async fn call_sync(
        &self,
        store: &mut Store<RunState>,
        request: &SyncRequest,
        sink: Resource<SinkHandle>,
    ) -> wasmtime::Result<Result<Summary, ConnectorError>> {
        match self {
            Connector::V0_1(plugin) => {
                plugin
                    .fasten_connector_connector()
                    .call_sync(store, request, sink)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_api_is_a_version_and_nothing_else_is() {
        for api in SUPPORTED_APIS {
            let (_, major_minor) = api.rsplit_once('@').unwrap();
            assert!(
                ApiVersion::of(&format!("{major_minor}.0")).is_some(),
                "{api}"
            );
            assert!(
                ApiVersion::of(&format!("{major_minor}.7")).is_some(),
                "{api}"
            );
            assert_eq!(ApiVersion::of(major_minor), None, "{api}");
        }
        for other in ["", "0.9.0", "0.10.0", "1.1.0", "0.1"] {
            assert_eq!(ApiVersion::of(other), None, "{other}");
        }
    }
}
