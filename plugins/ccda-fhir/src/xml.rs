//! Walking a C-CDA document by element name. C-CDA is HL7 v3 XML in the `urn:hl7-org:v3`
//! namespace, with a few `sdtc:` extensions; portals differ in prefixes and some section examples
//! declare no namespace at all, so elements are matched by local name only.

use roxmltree::Node;

/// The namespace of XML Schema instance attributes (`xsi:type`).
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Element helpers over a roxmltree node.
pub(crate) trait El<'a, 'input> {
    /// The first child element with this local name.
    fn child(&self, name: &str) -> Option<Node<'a, 'input>>;
    /// Every child element with this local name.
    fn children_named(&self, name: &str) -> Vec<Node<'a, 'input>>;
    /// An attribute by local name, trimmed; `None` when missing or empty.
    fn attr(&self, name: &str) -> Option<&'a str>;
    /// The element's `xsi:type`, without any prefix (`PQ`, `CD`, `IVL_TS`...).
    fn xsi_type(&self) -> Option<&'a str>;
    /// True when the element says it has no value (`nullFlavor="UNK"`, say).
    fn is_null(&self) -> bool;
    /// The `root` of each `templateId`.
    fn template_ids(&self) -> Vec<&'a str>;
    fn has_template(&self, roots: &[&str]) -> bool;
    /// Element children, skipping text and comments.
    fn elements(&self) -> Vec<Node<'a, 'input>>;
    /// The text of the element and its descendants, whitespace collapsed.
    fn text_content(&self) -> String;
}

impl<'a, 'input> El<'a, 'input> for Node<'a, 'input> {
    fn child(&self, name: &str) -> Option<Node<'a, 'input>> {
        self.children()
            .find(|c| c.is_element() && c.tag_name().name() == name)
    }

    fn children_named(&self, name: &str) -> Vec<Node<'a, 'input>> {
        self.children()
            .filter(|c| c.is_element() && c.tag_name().name() == name)
            .collect()
    }

    fn attr(&self, name: &str) -> Option<&'a str> {
        self.attributes()
            .find(|a| a.name() == name && a.namespace() != Some(XSI))
            .map(|a| a.value().trim())
            .filter(|v| !v.is_empty())
    }

    fn xsi_type(&self) -> Option<&'a str> {
        let value = self
            .attributes()
            .find(|a| a.name() == "type" && a.namespace() == Some(XSI))?
            .value();
        Some(value.rsplit(':').next().unwrap_or(value).trim())
    }

    fn is_null(&self) -> bool {
        self.attr("nullFlavor").is_some()
    }

    fn template_ids(&self) -> Vec<&'a str> {
        self.children_named("templateId")
            .iter()
            .filter_map(|t| t.attr("root"))
            .collect()
    }

    fn has_template(&self, roots: &[&str]) -> bool {
        self.template_ids().iter().any(|t| roots.contains(t))
    }

    fn elements(&self) -> Vec<Node<'a, 'input>> {
        self.children().filter(|c| c.is_element()).collect()
    }

    fn text_content(&self) -> String {
        let mut text = String::new();
        for node in self.descendants().filter(|n| n.is_text()) {
            text.push_str(node.text().unwrap_or(""));
            text.push(' ');
        }
        collapse(&text)
    }
}

/// Runs of whitespace become one space; the ends are trimmed.
pub(crate) fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Follows a path of child names from `node`: `path(entry, &["act", "entryRelationship"])`.
pub(crate) fn path<'a, 'input>(node: Node<'a, 'input>, names: &[&str]) -> Option<Node<'a, 'input>> {
    names.iter().try_fold(node, |at, name| at.child(name))
}
