//! `cargo run --manifest-path plugins/Cargo.toml -p fasten-ccda --example convert -- FILE.xml`:
//! prints what a C-CDA document converts into, as a FHIR collection Bundle, and its warnings on
//! stderr. For looking at a portal's document before importing it, or at a mapping while
//! changing it.

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: convert FILE.xml");
        std::process::exit(2);
    };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    });
    let conversion = match fasten_ccda::convert(&bytes) {
        Ok(conversion) => conversion,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    for warning in &conversion.warnings {
        eprintln!("warning: {warning}");
    }
    let entries: Vec<serde_json::Value> = conversion
        .resources
        .into_iter()
        .map(|resource| serde_json::json!({ "resource": resource }))
        .collect();
    let bundle =
        serde_json::json!({ "resourceType": "Bundle", "type": "collection", "entry": entries });
    println!("{}", serde_json::to_string_pretty(&bundle).expect("JSON"));
}
