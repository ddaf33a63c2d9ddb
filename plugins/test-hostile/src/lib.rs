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
                // It also claims `.json`, which the bundled FHIR plugin owns: it must not get
                // anyone's FHIR files.
                extensions: vec!["hostile".into(), "json".into()],
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
            "sleep" => {
                let seconds: u64 = argument.parse().unwrap_or(120);
                std::thread::sleep(std::time::Duration::from_secs(seconds));
                report(format!("slept {seconds} s"))
            }
            "emit-then-sleep" => {
                // Holds the run open after its first batch, as a slow honest import would.
                let seconds: u64 = argument.parse().unwrap_or(5);
                out.emit(&[r#"{"resourceType":"Patient","id":"slow"}"#.to_string()])
                    .map_err(ConnectorError::Fatal)?;
                std::thread::sleep(std::time::Duration::from_secs(seconds));
                Ok(Summary { warnings: vec![] })
            }
            "emit-bulk" => {
                // `emit-bulk COUNT SIZE`: COUNT records of about SIZE bytes each.
                let mut numbers = argument.split_whitespace().map(|n| n.parse().unwrap_or(0));
                let count: usize = numbers.next().unwrap_or(1000);
                let padding = "x".repeat(numbers.next().unwrap_or(0));
                let per_batch = (4_000_000 / (padding.len() + 80)).clamp(1, 500);
                let mut next = 0;
                while next < count {
                    let batch: Vec<String> = (next..count.min(next + per_batch))
                        .map(|i| {
                            format!(
                                r#"{{"resourceType":"Basic","id":"n{i}","code":{{"text":"{padding}"}}}}"#
                            )
                        })
                        .collect();
                    next += batch.len();
                    out.emit(&batch).map_err(ConnectorError::Fatal)?;
                }
                Ok(Summary { warnings: vec![] })
            }
            "log-flood" => {
                let lines: u64 = argument.parse().unwrap_or(1_000_000);
                for i in 0..lines {
                    fasten::connector::log::log(
                        fasten::connector::log::Level::Info,
                        &format!("flood line {i}"),
                    );
                }
                Ok(Summary { warnings: vec![] })
            }
            "log-forge" => {
                fasten::connector::log::log(
                    fasten::connector::log::Level::Info,
                    "harmless\n2026-12-06T10:00:00Z  INFO fasten::auth: admin \"eve\" signed in from 10.0.0.1\u{1b}[2K",
                );
                report("forged".into())
            }
            "state-nul" => {
                use fasten::connector::state;
                let blob = format!("\0{}", "x".repeat(60 * 1024));
                let first = state::set("\0a", &blob);
                let second = state::set("\0b", &blob);
                report(format!("state-nul: first {first:?}, second {second:?}"))
            }
            "state-wide" => {
                use fasten::connector::state;
                // 20,000 four-byte characters: 80,000 bytes of UTF-8.
                let wide = "\u{1F600}".repeat(20_000);
                report(format!("state-wide: {:?}", state::set("wide", &wide)))
            }
            "state-then-fail" => {
                use fasten::connector::state;
                state::set("cursor", "from-a-failed-run").map_err(ConnectorError::Fatal)?;
                report("failed after setting state".into())
            }
            "state-then-succeed" => {
                use fasten::connector::state;
                let before = state::get("cursor");
                state::set("cursor", argument).map_err(ConnectorError::Fatal)?;
                out.emit(&[r#"{"resourceType":"Patient","id":"stateful"}"#.to_string()])
                    .map_err(ConnectorError::Fatal)?;
                Ok(Summary {
                    warnings: vec![format!("state before: {before:?}")],
                })
            }
            "checkpoint-big" => {
                out.emit(&[r#"{"resourceType":"Patient","id":"cp"}"#.to_string()])
                    .map_err(ConnectorError::Fatal)?;
                out.checkpoint(&"c".repeat(1 << 20));
                Ok(Summary { warnings: vec![] })
            }
            "error-huge" => report("e".repeat(10 << 20)),
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
