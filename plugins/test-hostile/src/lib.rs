//! A connector that misbehaves on purpose, for the host's sandbox tests. `import-file` reads the
//! uploaded file as a command and does what it says: loop forever, exhaust memory, call a host
//! it was not granted, emit garbage, panic, or look for files and environment variables.
//! It is built with the other plugins but never bundled or registered by default.
//!
//! It goes through the SDK like any connector, except where misbehaving is the point: the
//! batches the host must refuse (over its limits, or sent on after a refusal) and `emit-bulk`'s
//! batches of a given size go out as they are, through `Run::emit_batch_unchecked`, which skips
//! the SDK's batching and checks.

use std::io::Read;

use fasten_connector::http::{HttpError, Request};
use fasten_connector::{
    AuthNeed, Connector, ConnectorError, ConnectorKind, File, FileType, Level, PluginInfo, Run,
    Summary,
};

struct Hostile;

fn report(message: String) -> Result<Summary, ConnectorError> {
    Err(ConnectorError::InvalidInput(message))
}

/// Emits one record and sends it at once, returning the host's answer.
fn emit_now(run: &mut Run<'_>, record: &str) -> Result<(), String> {
    run.emit_text(record.to_string())
        .and_then(|()| run.flush())
        .map_err(|refused| refused.0)
}

fn done() -> Result<Summary, ConnectorError> {
    Ok(Summary { warnings: vec![] })
}

impl Connector for Hostile {
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

    fn import_file(file: &mut File<'_>, run: &mut Run<'_>) -> Result<Summary, ConnectorError> {
        let mut head = Vec::new();
        file.take(4096)
            .read_to_end(&mut head)
            .map_err(|e| ConnectorError::Fatal(e.to_string()))?;
        let command = String::from_utf8_lossy(&head).trim().to_string();
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
                let request = Request::get(argument).header("authorization", "Bearer stolen");
                match run.send(&request) {
                    Ok(response) => report(format!(
                        "http: status {} body {}",
                        response.status,
                        String::from_utf8_lossy(&response.body)
                    )),
                    Err(HttpError::Denied(why)) => report(format!("http: denied: {why}")),
                    Err(other) => report(format!("http: {other:?}")),
                }
            }
            "emit-invalid" => {
                let result = emit_now(run, "not json at all");
                report(format!("emit: {result:?}"))
            }
            "emit-unknown-type" => {
                let result = emit_now(run, r#"{"resourceType":"Wizard","id":"1"}"#);
                report(format!("emit: {result:?}"))
            }
            "emit-many" => {
                let batch: Vec<String> = (0..600)
                    .map(|i| format!(r#"{{"resourceType":"Basic","id":"b{i}"}}"#))
                    .collect();
                let result = run.emit_batch_unchecked(&batch);
                report(format!("emit: {result:?}"))
            }
            "emit-big" => {
                let text = "x".repeat(5 << 20);
                let one =
                    format!(r#"{{"resourceType":"Basic","id":"big","text":{{"div":"{text}"}}}}"#);
                let result = run.emit_batch_unchecked(&[one]);
                report(format!("emit: {result:?}"))
            }
            "emit-then-ignore-refusal" => {
                // Unchecked, so that nothing is left for the run to send again: the connector
                // returns Ok after a refusal, and the host must still fail the run.
                let _ =
                    run.emit_batch_unchecked(&[r#"{"resourceType":"Basic","id":"kept"}"#.into()]);
                let _ = run.emit_batch_unchecked(&["garbage".to_string()]);
                done()
            }
            "state" => {
                let previous = run.state("cursor");
                run.set_state("cursor", "page-2")
                    .map_err(ConnectorError::Fatal)?;
                let hoard = run.set_state("hoard", &"x".repeat(100 * 1024));
                report(format!(
                    "state: before {previous:?}, now {:?}, hoard {hoard:?}",
                    run.state("cursor")
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
                emit_now(run, r#"{"resourceType":"Patient","id":"slow"}"#)
                    .map_err(ConnectorError::Fatal)?;
                std::thread::sleep(std::time::Duration::from_secs(seconds));
                done()
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
                    // Batches of this size exactly, not the SDK's.
                    run.emit_batch_unchecked(&batch)
                        .map_err(ConnectorError::Fatal)?;
                }
                done()
            }
            "log-flood" => {
                let lines: u64 = argument.parse().unwrap_or(1_000_000);
                for i in 0..lines {
                    run.log(Level::Info, &format!("flood line {i}"));
                }
                done()
            }
            "log-forge" => {
                run.log(
                    Level::Info,
                    "harmless\n2026-12-06T10:00:00Z  INFO fasten::auth: admin \"eve\" signed in from 10.0.0.1\u{1b}[2K",
                );
                report("forged".into())
            }
            "state-nul" => {
                let blob = format!("\0{}", "x".repeat(60 * 1024));
                let first = run.set_state("\0a", &blob);
                let second = run.set_state("\0b", &blob);
                report(format!("state-nul: first {first:?}, second {second:?}"))
            }
            "state-wide" => {
                // 20,000 four-byte characters: 80,000 bytes of UTF-8.
                let wide = "\u{1F600}".repeat(20_000);
                report(format!("state-wide: {:?}", run.set_state("wide", &wide)))
            }
            "state-then-fail" => {
                run.set_state("cursor", "from-a-failed-run")
                    .map_err(ConnectorError::Fatal)?;
                report("failed after setting state".into())
            }
            "state-then-succeed" => {
                let before = run.state("cursor");
                run.set_state("cursor", argument)
                    .map_err(ConnectorError::Fatal)?;
                run.emit_text(r#"{"resourceType":"Patient","id":"stateful"}"#.into())?;
                Ok(Summary {
                    warnings: vec![format!("state before: {before:?}")],
                })
            }
            "checkpoint-big" => {
                emit_now(run, r#"{"resourceType":"Patient","id":"cp"}"#)
                    .map_err(ConnectorError::Fatal)?;
                run.checkpoint(&"c".repeat(1 << 20));
                done()
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
                run.emit_text(r#"{"resourceType":"Patient","id":"hostile-ok"}"#.into())?;
                done()
            }
            other => report(format!("unknown command {other:?}")),
        }
    }
}

fasten_connector::export_connector!(Hostile);
