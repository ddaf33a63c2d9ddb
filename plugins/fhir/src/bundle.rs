//! One JSON document: a Bundle (streamed entry by entry) or a single resource.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::{ConnectorError, Emitter, FileReader, SourceFile, invalid, strip_bom};

/// What the first pass learns about the document.
#[derive(Default)]
struct Head {
    resource_type: Option<String>,
    entries: Vec<EntryHead>,
}

#[derive(Deserialize)]
struct EntryHead {
    #[serde(rename = "fullUrl")]
    full_url: Option<String>,
    resource: Option<ResourceHead>,
}

#[derive(Deserialize)]
struct ResourceHead {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    id: Option<String>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "fullUrl")]
    full_url: Option<String>,
    resource: Option<Value>,
}

pub(crate) fn import_json(
    file: &SourceFile,
    emitter: &mut Emitter<'_>,
) -> Result<(), ConnectorError> {
    let head = first_pass(file)?;
    file.rewind();
    match head.resource_type.as_deref() {
        None => Err(invalid(
            "The JSON has no \"resourceType\", so it is not a FHIR resource or Bundle.",
        )),
        Some("Bundle") => import_bundle(file, head, emitter),
        Some(_) => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut FileReader::new(file), &mut bytes)
                .map_err(|e| invalid(format!("cannot read the file: {e}")))?;
            let resource: Value = serde_json::from_slice(strip_bom(&bytes))
                .map_err(|e| invalid(format!("The file is not valid JSON: {e}.")))?;
            emitter.total = Some(1);
            emitter.push(resource, &HashMap::new())
        }
    }
}

/// Parses the whole document without keeping it: proves it is valid JSON and collects the
/// entries' identities for reference rewriting.
fn first_pass(file: &SourceFile) -> Result<Head, ConnectorError> {
    let reader = skip_bom(std::io::BufReader::with_capacity(
        256 * 1024,
        FileReader::new(file),
    ))?;
    let mut de = serde_json::Deserializer::from_reader(reader);
    let head = de
        .deserialize_map(HeadVisitor)
        .map_err(|e| invalid(format!("The file is not valid JSON: {e}.")))?;
    de.end().map_err(|e| {
        invalid(format!(
            "The file has extra text after the JSON document: {e}."
        ))
    })?;
    Ok(head)
}

fn skip_bom<R: std::io::BufRead>(mut reader: R) -> Result<R, ConnectorError> {
    let buffered = reader
        .fill_buf()
        .map_err(|e| invalid(format!("cannot read the file: {e}")))?;
    if buffered.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    Ok(reader)
}

struct HeadVisitor;

impl<'de> Visitor<'de> for HeadVisitor {
    type Value = Head;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a FHIR resource (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Head, A::Error> {
        let mut head = Head::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "resourceType" => head.resource_type = Some(map.next_value()?),
                "entry" => head.entries = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(head)
    }
}

fn import_bundle(
    file: &SourceFile,
    head: Head,
    emitter: &mut Emitter<'_>,
) -> Result<(), ConnectorError> {
    if head.entries.iter().all(|e| e.resource.is_none()) {
        return Err(invalid(
            "This Bundle has no entries with resources: there is nothing to import.",
        ));
    }
    // fullUrl -> Type/id, so `urn:uuid:` (and absolute) references point at stored records.
    let mut references = HashMap::new();
    for entry in &head.entries {
        if let (Some(full_url), Some(resource)) = (&entry.full_url, &entry.resource) {
            let Some(resource_type) = &resource.resource_type else {
                continue;
            };
            let id = resource.id.clone().or_else(|| uuid_of(full_url));
            if let Some(id) = id {
                references.insert(full_url.clone(), format!("{resource_type}/{id}"));
            }
        }
    }
    emitter.total = Some(head.entries.len() as u64);
    let reader = skip_bom(std::io::BufReader::with_capacity(
        256 * 1024,
        FileReader::new(file),
    ))?;
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut pass = SecondPass {
        emitter,
        references: &references,
        failure: None,
    };
    let parsed = de.deserialize_map(&mut pass);
    if let Some(failure) = pass.failure.take() {
        return Err(failure);
    }
    parsed.map_err(|e| invalid(format!("The file is not valid JSON: {e}.")))
}

/// `urn:uuid:<uuid>` gives an id to an entry whose resource has none.
fn uuid_of(full_url: &str) -> Option<String> {
    full_url.strip_prefix("urn:uuid:").map(str::to_owned)
}

struct SecondPass<'e, 'a> {
    emitter: &'e mut Emitter<'a>,
    references: &'e HashMap<String, String>,
    /// An error from the host (a refused batch) that stopped the parse.
    failure: Option<ConnectorError>,
}

impl<'de> Visitor<'de> for &mut SecondPass<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a FHIR Bundle")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "entry" {
                map.next_value_seed(&mut *self)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(entry) = seq.next_element::<Entry>()? {
            let Some(mut resource) = entry.resource else {
                continue;
            };
            if resource.get("id").is_none()
                && let Some(id) = entry.full_url.as_deref().and_then(uuid_of)
            {
                resource["id"] = Value::String(id);
            }
            if let Err(e) = self.emitter.push(resource, self.references) {
                self.failure = Some(e);
                return Err(de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for &mut SecondPass<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}
