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

use fasten_connector::{
    AuthNeed, Connector, ConnectorError, ConnectorKind, Oauth2Endpoints, PluginInfo, Run, Summary,
    SyncRequest,
};

struct Withings;

impl Connector for Withings {
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

    fn sync(request: SyncRequest, run: &mut Run<'_>) -> Result<Summary, ConnectorError> {
        sync::sync(request, run)
    }
}

fasten_connector::export_connector!(Withings);
