//! Fasten's Withings connector.
//!
//! `sync` reads a Withings account through the Withings public API (the host runs the OAuth2 flow
//! and adds the bearer token to every request) and emits FHIR R4 Observations: body measures
//! (weight, body composition, blood pressure, heart rate, temperature, SpO2...), daily activity
//! (steps, distance, calories, activity durations) and nightly sleep summaries. See `sync` for
//! the requests and `fhir` for the shapes.

mod activity;
mod api;
mod fhir;
mod measures;
mod sleep;
mod sync;

wit_bindgen::generate!({
    path: "../../wit/v0.1",
    world: "plugin",
});

use exports::fasten::connector::connector::{
    ConnectorError, Guest, PluginInfo, Summary, SyncRequest,
};
use fasten::connector::files::SourceFile;
use fasten::connector::sink::BatchSink;
use fasten::connector::types::{AuthNeed, ConnectorKind, Oauth2Endpoints};

struct Withings;

impl Guest for Withings {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "withings".into(),
            name: "Withings".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: ConnectorKind::Network,
            auth: AuthNeed::Oauth2(Oauth2Endpoints {
                authorize_url: "https://account.withings.com/oauth2_user/authorize2".into(),
                token_url: "https://wbsapi.withings.net/v2/oauth2".into(),
                // Withings separates scopes with commas, not spaces, so all three are one scope
                // string as far as the OAuth2 flow is concerned.
                scopes: vec!["user.info,user.metrics,user.activity".into()],
            }),
            file_types: Vec::new(),
            settings_schema: None,
        }
    }

    fn sync(request: SyncRequest, out: &BatchSink) -> Result<Summary, ConnectorError> {
        sync::run(request, out)
    }

    fn import_file(_file: &SourceFile, _out: &BatchSink) -> Result<Summary, ConnectorError> {
        Err(ConnectorError::Fatal(
            "The Withings connector does not import files; connect a Withings account instead."
                .into(),
        ))
    }
}

export!(Withings);
