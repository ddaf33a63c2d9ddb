//! Which modules may use which, checked on the source text: `fhir` derives and writes what is
//! kept beside a resource, and the pages (`record`) and the search page (`search`) only query it.
//! So no file under `host/src/fhir/` uses `record` or `search`, and the plugin runtime, which
//! prepares every resource a plugin emits through `fhir`, uses neither either. A test rather
//! than a convention because the two used to import each other, and the plugin host ended up
//! depending on page modules.

use std::path::{Path, PathBuf};

/// Modules that only query what ingest derived.
const PAGES: [&str; 2] = ["record", "search"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The code of a file without its comments (a line's text from `//` on). A `//` inside a
/// string (a URL) cuts the line short, which can only hide text, never invent a use.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `text[at..]` starts a path segment (not the tail of a longer name).
fn starts_name(text: &str, at: usize) -> bool {
    text[..at]
        .chars()
        .next_back()
        .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
}

/// Every way `code` names one of [`PAGES`]: `record::…` or `search::…` at the start of a path
/// segment (`crate::record::labs`, `super::super::search::x`), or a bare `record` or `search`
/// inside a `crate::{…}` import group.
fn page_uses(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for page in PAGES {
        let path = format!("{page}::");
        for (at, _) in code.match_indices(&path) {
            if starts_name(code, at) {
                let line = code[..at].lines().count().max(1);
                found.push(format!("line {line}: `{path}`"));
            }
        }
    }
    for (at, _) in code.match_indices("crate::{") {
        let group = &code[at + "crate::{".len()..];
        let mut depth = 1;
        let end = group
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(group.len(), |(i, _)| i);
        let names = group[..end]
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|name| PAGES.contains(name));
        for name in names {
            let line = code[..at].lines().count().max(1);
            found.push(format!("line {line}: `{name}` in `crate::{{…}}`"));
        }
    }
    found
}

fn assert_no_page_uses(dir: &str) {
    let files = rust_files(&src().join(dir));
    assert!(!files.is_empty(), "no Rust files under host/src/{dir}");
    let mut offences = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for found in page_uses(&code(&text)) {
            offences.push(format!("{}, {found}", file.display()));
        }
    }
    assert!(
        offences.is_empty(),
        "host/src/{dir} must not use the page modules ({PAGES:?}):\n{}",
        offences.join("\n")
    );
}

#[test]
fn fhir_uses_neither_the_pages_nor_search() {
    // Derivation has one home; if it moves, this test must follow it.
    assert!(src().join("fhir/index.rs").is_file());
    assert_no_page_uses("fhir");
}

#[test]
fn the_plugin_host_uses_neither_the_pages_nor_search() {
    assert_no_page_uses("plugins");
}

#[test]
fn the_check_sees_every_form_of_use() {
    let uses = |text: &str| page_uses(&code(text)).len();
    assert_eq!(uses("use crate::record::labs;"), 1);
    assert_eq!(uses("let d = crate::search::document(&v);"), 1);
    assert_eq!(uses("use crate::{fhir, search};"), 1);
    assert_eq!(
        uses("use crate::{\n    record::{chart, units},\n    store,\n};"),
        2
    );
    assert_eq!(uses("super::super::record::observations::read(r)"), 1);
    // Names that merely end in a page's name, comments and URLs are not uses.
    assert_eq!(uses("use super::search_text::{self, Document};"), 0);
    assert_eq!(uses("use crate::{fhir, store};"), 0);
    assert_eq!(uses("a_record::x(); // see crate::record::labs"), 0);
    assert_eq!(uses("/// [`crate::search`] queries it"), 0);
}
