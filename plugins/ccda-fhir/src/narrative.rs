//! The human-readable half of a C-CDA: each section's `<text>`, whose elements carry `ID`s that
//! entries point at (`<text><reference value="#Problem1"/></text>`). An entry coded only in its
//! narrative still gets its words through these references.

use std::collections::HashMap;

use roxmltree::{Document, Node};

use crate::xml::{El, collapse};

/// Every `ID` in the document's narrative, with the text it holds.
#[derive(Default)]
pub struct Narrative {
    by_id: HashMap<String, String>,
}

impl Narrative {
    /// Indexes every element with an `ID` attribute (C-CDA puts them in section narratives, but
    /// some vendors put them on entries' own `text`).
    pub(crate) fn index(document: &Document) -> Narrative {
        let by_id = document
            .descendants()
            .filter(|n| n.is_element())
            .filter_map(|n| {
                let id = n.attribute("ID")?.trim();
                let text = narrative_text(n);
                (!id.is_empty() && !text.is_empty()).then(|| (id.to_string(), text))
            })
            .collect();
        Narrative { by_id }
    }

    /// The text an element stands for: the narrative it references (`#ID`) if that resolves,
    /// else its own text (without the reference). None when both are empty.
    pub(crate) fn text_of(&self, node: Node) -> Option<String> {
        if node.is_null() && node.child("reference").is_none() && node.text_content().is_empty() {
            return None;
        }
        if let Some(reference) = node.child("reference").and_then(|r| r.attr("value"))
            && let Some(text) = self.resolve(reference)
        {
            return Some(text.to_string());
        }
        let own: String = node
            .children()
            .filter(|c| !(c.is_element() && c.tag_name().name() == "reference"))
            .map(|c| {
                if c.is_text() {
                    c.text().unwrap_or("").to_string()
                } else {
                    c.text_content()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        let own = collapse(&own);
        (!own.is_empty()).then_some(own)
    }

    /// The text behind a `#ID` reference.
    pub(crate) fn resolve(&self, reference: &str) -> Option<&str> {
        let id = reference.trim().strip_prefix('#')?;
        self.by_id.get(id).map(String::as_str)
    }
}

/// The plain text of a piece of narrative, with table cells and list items kept apart.
pub(crate) fn narrative_text(node: Node) -> String {
    let mut out = String::new();
    write_text(node, &mut out);
    // Lines of their own (rows, paragraphs) are kept; spaces inside a line collapse.
    out.lines()
        .map(|l| collapse(l).trim_end_matches('|').trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn write_text(node: Node, out: &mut String) {
    for child in node.children() {
        if child.is_text() {
            out.push_str(child.text().unwrap_or(""));
        } else if child.is_element() {
            let name = child.tag_name().name();
            if name == "renderMultiMedia" {
                continue;
            }
            let block = matches!(
                name,
                "paragraph"
                    | "tr"
                    | "item"
                    | "br"
                    | "caption"
                    | "list"
                    | "table"
                    | "thead"
                    | "tbody"
            );
            write_text(child, out);
            match name {
                "td" | "th" => out.push_str(" | "),
                _ if block => out.push('\n'),
                _ => out.push(' '),
            }
        }
    }
}
