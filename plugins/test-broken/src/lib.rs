//! A connector whose `describe` traps, so the host's tests can show that `fasten plugin check`
//! refuses it with the reason. Never bundled.

wit_bindgen::generate!({
    path: "../../wit/v0.1",
    world: "plugin",
});

use exports::fasten::connector::connector::{
    ConnectorError, Guest, PluginInfo, Summary, SyncRequest,
};
use fasten::connector::files::SourceFile;
use fasten::connector::sink::BatchSink;

struct Broken;

impl Guest for Broken {
    fn describe() -> PluginInfo {
        panic!("describe is broken on purpose")
    }

    fn sync(_: SyncRequest, _: &BatchSink) -> Result<Summary, ConnectorError> {
        Err(ConnectorError::Fatal("no sync".into()))
    }

    fn import_file(_: &SourceFile, _: &BatchSink) -> Result<Summary, ConnectorError> {
        Err(ConnectorError::Fatal("no import".into()))
    }
}

export!(Broken);
