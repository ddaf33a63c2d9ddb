//! Conversion of the HL7 example documents and section examples in `../shared/testdata/ccda`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{Kind, convert};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/ccda")
}

/// The example documents, by file name.
pub(crate) fn documents() -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(testdata())
        .expect("../shared/testdata/ccda is beside the checkout")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    found.sort();
    found
}

/// Each section's `entry` elements counted straight from the XML, independently of the
/// converter: (section title or code, entries).
fn entries_per_section(bytes: &[u8]) -> Vec<usize> {
    let text = std::str::from_utf8(bytes).unwrap();
    let document = roxmltree::Document::parse(text).unwrap();
    document
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "section")
        .map(|s| {
            s.children()
                .filter(|c| c.is_element() && c.tag_name().name() == "entry")
                .count()
        })
        .collect()
}

/// The resources of one type a conversion gave.
pub(crate) fn of_type<'a>(
    conversion: &'a crate::Conversion,
    resource_type: &str,
) -> Vec<&'a Value> {
    conversion
        .resources
        .iter()
        .filter(|r| r["resourceType"] == resource_type)
        .collect()
}

/// The Observation a conversion gave with this code among its codings.
pub(crate) fn observation_coded<'a>(conversion: &'a crate::Conversion, code: &str) -> &'a Value {
    conversion
        .resources
        .iter()
        .find(|r| {
            r["resourceType"] == "Observation"
                && r["code"]["coding"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["code"] == code))
        })
        .unwrap_or_else(|| panic!("no Observation coded {code}"))
}

/// A section example converted, by its path under `sections/`
/// (`"Goals/SDOH_Goal(C-CDA2.1).xml"`).
pub(crate) fn convert_example(name: &str) -> crate::Conversion {
    let (_, text) = section_examples()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no section example {name}"));
    convert(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// An example document converted, by its file name.
pub(crate) fn convert_document(name: &str) -> crate::Conversion {
    let (_, bytes) = documents()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no example document {name}"));
    convert(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_example_document_accounts_for_every_entry() {
    let documents = documents();
    assert_eq!(documents.len(), 12, "the twelve HL7 example documents");
    for (name, bytes) in documents {
        let conversion = convert(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let counted = entries_per_section(&bytes);
        let reported: Vec<usize> = conversion.sections.iter().map(|s| s.entries).collect();
        assert_eq!(reported, counted, "{name}: sections and their entries");
        for section in &conversion.sections {
            assert_eq!(
                section.converted + section.warned,
                section.entries,
                "{name}: section {:?}",
                section.title
            );
            // Every warned entry is a warning naming its section.
            let named = conversion
                .warnings
                .iter()
                .filter(|w| w.starts_with(&format!("{} section: entry ", section.title)))
                .count();
            assert!(
                named >= section.warned,
                "{name}: {} warned entries in {:?} but {named} warnings name it",
                section.warned,
                section.title
            );
        }
        // One Binary holding the original, one Patient, and the document.
        assert_eq!(of_type(&conversion, "Binary").len(), 1, "{name}");
        assert_eq!(of_type(&conversion, "Patient").len(), 1, "{name}");
        let document = conversion
            .resources
            .iter()
            .find(|r| {
                r["resourceType"] == "DocumentReference" && r.get("masterIdentifier").is_some()
            })
            .unwrap_or_else(|| panic!("{name}: the document's DocumentReference"));
        assert_eq!(
            document["content"][0]["attachment"]["url"],
            format!("Binary/{}", conversion.resources[0]["id"].as_str().unwrap())
        );
        // Every resource has a valid id and a type, and every reference resolves.
        let ids: std::collections::HashSet<String> = conversion
            .resources
            .iter()
            .map(|r| {
                format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap(),
                    r["id"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            ids.len(),
            conversion.resources.len(),
            "{name}: ids are unique"
        );
        for resource in &conversion.resources {
            let id = resource["id"].as_str().unwrap();
            assert!(
                id.len() <= 64
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            );
            for reference in references(resource) {
                assert!(
                    ids.contains(&reference),
                    "{name}: {reference} in {resource}"
                );
            }
        }
    }
}

/// Every `reference` in a resource.
fn references(value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "reference"
                    && let Some(text) = child.as_str()
                {
                    found.push(text.to_string());
                } else {
                    found.extend(references(child));
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| found.extend(references(i))),
        _ => {}
    }
    found
}

#[test]
fn converting_the_same_document_twice_gives_the_same_resources() {
    for (name, bytes) in documents() {
        let first = convert(&bytes).unwrap().resources;
        let second = convert(&bytes).unwrap().resources;
        assert_eq!(first, second, "{name}");
    }
}

/// Wraps a section example (a `section`, a `component`, a bare entry, or a header part) in a
/// minimal document with the namespaces the examples use without declaring.
pub(crate) fn wrap_example(fragment: &str) -> String {
    let mut body = fragment.trim_start_matches('\u{feff}').trim().to_string();
    // The XML declaration and any other processing instruction (`<?xml-stylesheet ...?>`).
    while body.starts_with("<?")
        && let Some(end) = body.find("?>")
    {
        body = body[end + 2..].trim_start().to_string();
    }
    let root = {
        let mut rest = body.as_str();
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix("<!--") {
                rest = after.split_once("-->").map(|(_, r)| r).unwrap_or("");
            } else {
                break;
            }
        }
        rest.trim_start_matches('<')
            .split(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .next()
            .unwrap_or("")
            .to_string()
    };
    if root == "ClinicalDocument" {
        return body;
    }
    let patient = "<recordTarget><patientRole><id root=\"2.16.840.1.113883.19.5\" extension=\"example\"/><patient><name><given>Eve</given><family>Everywoman</family></name></patient></patientRole></recordTarget>";
    let (header, sections) = match root.as_str() {
        "recordTarget" => (body.clone(), String::new()),
        "documentationOf" | "componentOf" | "author" | "custodian" => {
            (format!("{patient}{body}"), String::new())
        }
        "section" => (
            patient.to_string(),
            format!("<component>{body}</component>"),
        ),
        "component" => (patient.to_string(), body.clone()),
        _ => (
            patient.to_string(),
            format!(
                "<component><section><title>Example</title><entry>{body}</entry></section></component>"
            ),
        ),
    };
    format!(
        "<ClinicalDocument xmlns=\"urn:hl7-org:v3\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:sdtc=\"urn:hl7-org:sdtc\"><id root=\"2.16.840.1.113883.19.5.99999.1\" extension=\"wrapper\"/><code code=\"34133-9\" codeSystem=\"2.16.840.1.113883.6.1\"/><title>Example</title><effectiveTime value=\"20240101120000-0500\"/>{header}<component><structuredBody>{sections}</structuredBody></component></ClinicalDocument>"
    )
}

/// Every section example, wrapped: (folder/file, document text).
pub(crate) fn section_examples() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for folder in std::fs::read_dir(testdata().join("sections")).unwrap() {
        let folder = folder.unwrap().path();
        for file in std::fs::read_dir(&folder).unwrap() {
            let file = file.unwrap().path();
            let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
            let name = format!(
                "{}/{}",
                folder.file_name().unwrap().to_string_lossy(),
                file.file_name().unwrap().to_string_lossy()
            );
            found.push((name, wrap_example(&text)));
        }
    }
    found.sort();
    found
}

#[test]
fn every_section_example_converts_or_warns() {
    let examples = section_examples();
    assert_eq!(examples.len(), 141);
    let mut converted = 0;
    for (name, text) in &examples {
        let conversion = match convert(text.as_bytes()) {
            Ok(c) => c,
            Err(e) => panic!("{name}: {e}"),
        };
        for section in &conversion.sections {
            assert_eq!(
                section.converted + section.warned,
                section.entries,
                "{name}: {section:?}"
            );
            converted += section.converted;
        }
    }
    assert!(converted > 100, "only {converted} entries converted");
}

/// Prints what each example document became (run with `--nocapture`).
#[test]
fn summary_of_each_document() {
    for (name, bytes) in documents() {
        let conversion = convert(&bytes).unwrap();
        let mut types: std::collections::BTreeMap<&str, usize> = Default::default();
        for r in &conversion.resources {
            *types
                .entry(r["resourceType"].as_str().unwrap())
                .or_default() += 1;
        }
        println!("{name}: {types:?}");
        for w in &conversion.warnings {
            println!("  warning: {w}");
        }
        for s in &conversion.sections {
            if s.kind == Kind::Other && s.entries > 0 {
                println!("  other section with entries: {:?}", s.title);
            }
        }
    }
}
