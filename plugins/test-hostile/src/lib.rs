//! A connector that misbehaves on purpose, for the host's sandbox tests. `import-file` reads the
//! uploaded file as a command and does what it says: loop forever, exhaust memory, call a host
//! it was not granted, emit garbage, panic, or look for files and environment variables.
//! It is built with the other plugins but never bundled or registered by default.

wit_bindgen::generate!({
    path: "../../wit/v0.1",
    world: "plugin",
});

use exports::fasten::connector::connector::{
    ConnectorError, Guest, PluginInfo, Summary, SyncRequest,
};
use fasten::connector::files::SourceFile;
use fasten::connector::http;
use fasten::connector::sink::BatchSink;
use fasten::connector::types::{AuthNeed, ConnectorKind, FileType};

struct Hostile;

fn report(message: String) -> Result<Summary, ConnectorError> {
    Err(ConnectorError::InvalidInput(message))
}

impl Guest for Hostile {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "test-hostile".into(),
            name: "Hostile test plugin".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: ConnectorKind::File,
            auth: AuthNeed::None,
            file_types: vec![FileType {
                media_type: "text/x-hostile".into(),
                extensions: vec!["hostile".into()],
                description: "commands for the sandbox tests".into(),
            }],
            settings_schema: None,
        }
    }

    fn sync(_: SyncRequest, _: &BatchSink) -> Result<Summary, ConnectorError> {
        Err(ConnectorError::Fatal("no sync".into()))
    }

    fn import_file(file: &SourceFile, out: &BatchSink) -> Result<Summary, ConnectorError> {
        let command = String::from_utf8_lossy(&file.read(4096)).trim().to_string();
        let (verb, argument) = command.split_once(' ').unwrap_or((command.as_str(), ""));
        match verb {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![7u8; 1 << 20]));
                }
            }
            "http" => {
                let request = http::Request {
                    method: "GET".into(),
                    url: argument.into(),
                    headers: vec![("authorization".into(), "Bearer stolen".into())],
                    body: None,
                };
                match http::send(&request) {
                    Ok(response) => report(format!(
                        "http: status {} body {}",
                        response.status,
                        String::from_utf8_lossy(&response.body)
                    )),
                    Err(http::HttpError::Denied(why)) => report(format!("http: denied: {why}")),
                    Err(other) => report(format!("http: {other:?}")),
                }
            }
            "emit-invalid" => {
                let result = out.emit(&["not json at all".to_string()]);
                report(format!("emit: {result:?}"))
            }
            "emit-unknown-type" => {
                let result = out.emit(&[r#"{"resourceType":"Wizard","id":"1"}"#.to_string()]);
                report(format!("emit: {result:?}"))
            }
            "emit-many" => {
                let batch: Vec<String> = (0..600)
                    .map(|i| format!(r#"{{"resourceType":"Basic","id":"b{i}"}}"#))
                    .collect();
                let result = out.emit(&batch);
                report(format!("emit: {result:?}"))
            }
            "emit-big" => {
                let text = "x".repeat(5 << 20);
                let one =
                    format!(r#"{{"resourceType":"Basic","id":"big","text":{{"div":"{text}"}}}}"#);
                let result = out.emit(&[one]);
                report(format!("emit: {result:?}"))
            }
            "emit-then-ignore-refusal" => {
                let _ = out.emit(&[r#"{"resourceType":"Basic","id":"kept"}"#.to_string()]);
                let _ = out.emit(&["garbage".to_string()]);
                Ok(Summary { warnings: vec![] })
            }
            "state" => {
                use fasten::connector::state;
                let previous = state::get("cursor");
                state::set("cursor", "page-2").map_err(ConnectorError::Fatal)?;
                let hoard = state::set("hoard", &"x".repeat(100 * 1024));
                report(format!(
                    "state: before {previous:?}, now {:?}, hoard {hoard:?}",
                    state::get("cursor")
                ))
            }
            "panic" => panic!("the hostile plugin panics on purpose"),
            "probe" => {
                let files = match std::fs::read_dir("/") {
                    Ok(entries) => format!("{} entries", entries.count()),
                    Err(_) => "none".to_string(),
                };
                let env = std::env::vars().count();
                report(format!("files: {files}; env: {env}"))
            }
            "ok" => {
                out.emit(&[r#"{"resourceType":"Patient","id":"hostile-ok"}"#.to_string()])
                    .map_err(ConnectorError::Fatal)?;
                Ok(Summary { warnings: vec![] })
            }
            other => report(format!("unknown command {other:?}")),
        }
    }
}

export!(Hostile);
