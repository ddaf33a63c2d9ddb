//! C-CDA to FHIR R4, following the mappings of the HL7 "C-CDA on FHIR" implementation guide.
//!
//! [`convert`] reads one `ClinicalDocument` (R2.1, and R1.1 where the templates agree) and returns
//! the FHIR resources it holds, with a warning for each entry it could not map. Nothing in the
//! document is silently lost:
//! - every entry of a known section becomes resources, or a warning that names the section and
//!   the reason (one odd entry never fails the document);
//! - a section with narrative but no entries (an assessment, hospital course, instructions)
//!   becomes a searchable note, a `DocumentReference` holding its text;
//! - the document itself becomes a `DocumentReference` whose content is the original XML, kept
//!   as a `Binary`.
//!
//! Resource ids come from content, so a document imported twice updates rather than duplicates,
//! and two documents carrying the same entry id give one resource: an entry's own `id` (root and
//! extension) when it has one, else a hash of the entry's XML.

mod datatypes;
mod entries;
mod header;
mod narrative;
mod sections;
mod xml;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt::Display;

use roxmltree::{Document, Node};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use sections::Kind;

use narrative::Narrative;
use xml::El;

/// The namespace of CDA documents.
pub const HL7_V3: &str = "urn:hl7-org:v3";

/// What a document converted into.
#[derive(Debug, Default)]
pub struct Conversion {
    /// FHIR R4 resources as JSON objects, each with its id, in an order that puts referenced
    /// resources first. The document's Binary is first.
    pub resources: Vec<Value>,
    /// Entries or parts that could not be mapped, each naming its section and the reason.
    pub warnings: Vec<String>,
    /// What happened to each section's entries.
    pub sections: Vec<SectionReport>,
    /// The document's identity (its `id`, else a hash of it).
    document_key: String,
}

/// What happened to one section's entries: each is converted or warned about, never both,
/// never neither.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionReport {
    pub title: String,
    pub kind: Kind,
    /// The section's `entry` elements.
    pub entries: usize,
    /// Entries that became at least one resource.
    pub converted: usize,
    /// Entries that became a warning instead.
    pub warned: usize,
    /// The section's narrative became a note of its own.
    pub note: bool,
}

/// Why a file is not a document at all. Anything smaller is a warning.
#[derive(Debug, PartialEq)]
pub enum ConvertError {
    /// Not well-formed XML; the message says where.
    NotXml(String),
    /// Well-formed, but its root is not `ClinicalDocument`.
    NotClinicalDocument(String),
}

impl Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConvertError::NotXml(why) => write!(f, "it is not well-formed XML ({why})"),
            ConvertError::NotClinicalDocument(root) => write!(
                f,
                "it is XML but not a C-CDA document (its root is <{root}>, not <ClinicalDocument>)"
            ),
        }
    }
}

impl std::error::Error for ConvertError {}

/// Converts one C-CDA document from the bytes of its file. The original bytes are kept, exactly,
/// as the first resource: the Binary the document's DocumentReference points to.
pub fn convert(bytes: &[u8]) -> Result<Conversion, ConvertError> {
    let text = decode(bytes)?;
    let mut conversion = convert_text(&text)?;
    let key = conversion.document_key.clone();
    conversion.resources.insert(0, binary(&key, bytes));
    Ok(conversion)
}

/// The Binary holding a document's original bytes.
fn binary(document_key: &str, bytes: &[u8]) -> Value {
    use base64::Engine;
    serde_json::json!({
        "resourceType": "Binary",
        "id": binary_id(document_key),
        "contentType": "application/xml",
        "data": base64::engine::general_purpose::STANDARD.encode(bytes),
    })
}

/// The id of the Binary holding the document whose key this is.
pub(crate) fn binary_id(document_key: &str) -> String {
    stable_id("Binary", document_key)
}

/// The document's text: UTF-8 (with or without a BOM), UTF-16 with a BOM, or the single-byte
/// encodings portals still declare (ISO-8859-1, windows-1252, US-ASCII).
fn decode(bytes: &[u8]) -> Result<std::borrow::Cow<'_, str>, ConvertError> {
    use std::borrow::Cow;
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return std::str::from_utf8(rest).map(Cow::Borrowed).map_err(|e| {
            ConvertError::NotXml(format!("not valid UTF-8 at byte {}", e.valid_up_to() + 3))
        });
    }
    let utf16 = |little: bool| -> Result<Cow<'_, str>, ConvertError> {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|p| {
                if little {
                    u16::from_le_bytes([p[0], p[1]])
                } else {
                    u16::from_be_bytes([p[0], p[1]])
                }
            })
            .collect();
        String::from_utf16(&units)
            .map(Cow::Owned)
            .map_err(|_| ConvertError::NotXml("not valid UTF-16".into()))
    };
    match bytes {
        [0xFF, 0xFE, ..] => return utf16(true),
        [0xFE, 0xFF, ..] => return utf16(false),
        _ => {}
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(Cow::Borrowed(text)),
        Err(e) => {
            let declaration = &bytes[..bytes.len().min(200)];
            let declared = String::from_utf8_lossy(declaration).to_ascii_lowercase();
            if [
                "iso-8859-1",
                "latin1",
                "windows-1252",
                "us-ascii",
                "iso8859-1",
            ]
            .iter()
            .any(|name| declared.contains(name))
            {
                // Latin-1 maps each byte to the code point of the same number.
                Ok(Cow::Owned(bytes.iter().map(|&b| b as char).collect()))
            } else {
                Err(ConvertError::NotXml(format!(
                    "not valid UTF-8 at byte {}, and it declares no other encoding",
                    e.valid_up_to()
                )))
            }
        }
    }
}

/// Converts one C-CDA document given as text (no Binary is added).
fn convert_text(xml: &str) -> Result<Conversion, ConvertError> {
    // No DTD, so no entity expansion (no billion laughs).
    let options = || roxmltree::ParsingOptions {
        allow_dtd: false,
        ..roxmltree::ParsingOptions::default()
    };
    let repaired;
    let document = match Document::parse_with_options(xml, options()) {
        Ok(document) => document,
        // Some exports use `xsi:type` or `sdtc:` without declaring them; declare them on the
        // root and try once more rather than refuse a readable document.
        Err(roxmltree::Error::UnknownNamespace(prefix, _))
            if matches!(prefix.as_str(), "xsi" | "sdtc") =>
        {
            repaired = declare_namespaces(xml).ok_or_else(|| {
                ConvertError::NotXml(format!("the prefix {prefix}: is used but never declared"))
            })?;
            Document::parse_with_options(&repaired, options())
                .map_err(|e| ConvertError::NotXml(e.to_string()))?
        }
        Err(e) => return Err(ConvertError::NotXml(e.to_string())),
    };
    let root = document.root_element();
    if root.tag_name().name() != "ClinicalDocument" {
        return Err(ConvertError::NotClinicalDocument(
            root.tag_name().name().to_string(),
        ));
    }
    let mut ctx = Ctx::new(xml, &document);
    header::convert_header(&mut ctx, root);
    let mut reports = Vec::new();
    for section in body_sections(root) {
        reports.push(entries::convert_section(&mut ctx, section));
    }
    Ok(Conversion {
        document_key: ctx.document_key,
        resources: ctx.resources,
        warnings: ctx.warnings,
        sections: reports,
    })
}

/// The document with `xsi` and `sdtc` declared on its root element (where not already).
fn declare_namespaces(xml: &str) -> Option<String> {
    let start = xml.find("<ClinicalDocument")? + "<ClinicalDocument".len();
    let mut declarations = String::new();
    let root_tag = &xml[start..start + xml[start..].find('>')?];
    if !root_tag.contains("xmlns:xsi") {
        declarations.push_str(" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"");
    }
    if !root_tag.contains("xmlns:sdtc") {
        declarations.push_str(" xmlns:sdtc=\"urn:hl7-org:sdtc\"");
    }
    Some(format!("{}{declarations}{}", &xml[..start], &xml[start..]))
}

/// Every section of a structured body, nested ones after their parent.
fn body_sections<'a, 'i>(root: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    let Some(body) = xml::path(root, &["component", "structuredBody"]) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut stack: Vec<Node> = body
        .children_named("component")
        .into_iter()
        .filter_map(|c| c.child("section"))
        .rev()
        .collect();
    while let Some(section) = stack.pop() {
        found.push(section);
        stack.extend(
            section
                .children_named("component")
                .into_iter()
                .filter_map(|c| c.child("section"))
                .rev(),
        );
    }
    found
}

/// Everything a mapping needs while it walks the document, and what it has produced so far.
pub(crate) struct Ctx<'i> {
    xml: &'i str,
    pub(crate) narrative: Narrative,
    /// `Patient/<id>`.
    pub(crate) patient: String,
    /// `DocumentReference/<id>` of the document itself.
    pub(crate) document: String,
    /// The document's id, for ids of things that belong to this document only (its notes).
    pub(crate) document_key: String,
    /// The document's own time, for records that have none of their own.
    pub(crate) document_time: Option<String>,
    /// The encompassing encounter, when the header has one.
    pub(crate) encounter: Option<String>,
    resources: Vec<Value>,
    index: HashMap<(String, String), usize>,
    /// The content each (resource type, entry id) was first met with; see [`Ctx::id_for`].
    first_content: std::cell::RefCell<HashMap<(String, String), String>>,
    warnings: Vec<String>,
    /// The section being converted, to name it in warnings.
    pub(crate) section: String,
}

impl<'i> Ctx<'i> {
    fn new(xml: &'i str, document: &Document) -> Ctx<'i> {
        let root = document.root_element();
        let document_key = root
            .child("id")
            .and_then(id_key)
            .unwrap_or_else(|| content_hash(xml));
        Ctx {
            xml,
            narrative: Narrative::index(document),
            patient: String::new(),
            document: format!(
                "DocumentReference/{}",
                stable_id("DocumentReference", &document_key)
            ),
            document_time: root.child("effectiveTime").and_then(datatypes::time_of),
            document_key,
            encounter: None,
            resources: Vec::new(),
            index: HashMap::new(),
            first_content: Default::default(),
            warnings: Vec::new(),
            section: "Header".into(),
        }
    }

    /// The id a resource made from `node` gets: from the node's first usable `id`, else from
    /// the node's XML text.
    ///
    /// Some documents give several different entries the same `id` (every immunization of a
    /// section, say). The same id met again with other content therefore gets an id from its
    /// content instead, so no entry is lost to another's id; met again with the same content (an
    /// observation repeated in two sections), it is the same resource.
    pub(crate) fn id_for(&self, resource_type: &str, node: Node) -> String {
        let content = content_hash(&xml::collapse(&self.xml[node.range()]));
        let Some(key) = node.children_named("id").into_iter().find_map(id_key) else {
            return stable_id(resource_type, &content);
        };
        // People, organisations and places are named by real identifiers (an NPI), and each
        // mention of them may carry different details: the identifier decides.
        if matches!(
            resource_type,
            "Patient"
                | "Practitioner"
                | "PractitionerRole"
                | "Organization"
                | "Location"
                | "Device"
        ) {
            return stable_id(resource_type, &key);
        }
        let mut first_content = self.first_content.borrow_mut();
        let first = first_content
            .entry((resource_type.to_string(), key.clone()))
            .or_insert_with(|| content.clone());
        if *first == content {
            stable_id(resource_type, &key)
        } else {
            stable_id(resource_type, &content)
        }
    }

    /// The id of a statement by its own `id` alone, for statements a document splits into
    /// several entries that share one id (a procedure given once for each device it implanted),
    /// whose parts are merged with [`Ctx::add_merging`].
    pub(crate) fn id_by_identifier(&self, resource_type: &str, node: Node) -> String {
        match node.children_named("id").into_iter().find_map(id_key) {
            Some(key) => stable_id(resource_type, &key),
            None => self.id_for(resource_type, node),
        }
    }

    /// Adds a resource; when one with its id was already added, appends to that one the items
    /// of the `lists` fields it does not have yet instead.
    pub(crate) fn add_merging(&mut self, resource: Value, lists: &[&str]) -> String {
        let resource_type = resource["resourceType"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let id = resource["id"].as_str().unwrap_or_default().to_string();
        let Some(&at) = self.index.get(&(resource_type.clone(), id.clone())) else {
            return self.add(resource);
        };
        for field in lists {
            let Some(items) = resource.get(*field).and_then(Value::as_array) else {
                continue;
            };
            let existing = &mut self.resources[at][*field];
            if !existing.is_array() {
                *existing = Value::Array(Vec::new());
            }
            let existing = existing.as_array_mut().expect("made an array above");
            for item in items {
                if !existing.contains(item) {
                    existing.push(item.clone());
                }
            }
        }
        format!("{resource_type}/{id}")
    }

    /// An id for something that has no identity but its place in this document.
    pub(crate) fn id_in_document(&self, resource_type: &str, what: &str) -> String {
        stable_id(resource_type, &format!("{}#{what}", self.document_key))
    }

    /// Adds a resource (which must have `resourceType` and `id`) and returns its reference. A
    /// resource whose id was already added this run is not added twice: a document names the
    /// same practitioner or entry in several places.
    pub(crate) fn add(&mut self, resource: Value) -> String {
        let resource_type = resource["resourceType"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let id = resource["id"].as_str().unwrap_or_default().to_string();
        let reference = format!("{resource_type}/{id}");
        let key = (resource_type, id);
        if !self.index.contains_key(&key) {
            self.index.insert(key, self.resources.len());
            self.resources.push(resource);
        }
        reference
    }

    /// True when a resource with this reference was added.
    pub(crate) fn has(&self, reference: &str) -> bool {
        reference
            .split_once('/')
            .is_some_and(|(t, id)| self.index.contains_key(&(t.to_string(), id.to_string())))
    }

    /// A problem with part of the current section.
    pub(crate) fn warn(&mut self, message: impl Display) {
        self.warnings
            .push(format!("{} section: {message}", self.section));
    }

    /// The subject reference every clinical resource carries.
    pub(crate) fn subject(&self) -> Value {
        serde_json::json!({ "reference": self.patient })
    }
}

/// The identity of an II: root and extension. None for a nullFlavor or an id with no root.
fn id_key(node: Node) -> Option<String> {
    if node.is_null() {
        return None;
    }
    let root = node.attr("root")?;
    Some(match node.attr("extension") {
        Some(extension) => format!("{root}|{extension}"),
        None => root.to_string(),
    })
}

fn content_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!("content:{}", hex(&digest[..16]))
}

/// A FHIR id (at most 64 of `A-Za-z0-9-.`) from a resource type and an identity.
pub(crate) fn stable_id(resource_type: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("{resource_type}\n{key}").as_bytes());
    format!("ccda-{}", hex(&digest[..20]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
