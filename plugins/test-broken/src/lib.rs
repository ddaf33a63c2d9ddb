//! A connector whose `describe` traps, so the host's tests can show that `fasten plugin check`
//! refuses it with the reason. Never bundled.

use fasten_connector::{Connector, PluginInfo};

struct Broken;

impl Connector for Broken {
    fn describe() -> PluginInfo {
        panic!("describe is broken on purpose")
    }
}

fasten_connector::export_connector!(Broken);
