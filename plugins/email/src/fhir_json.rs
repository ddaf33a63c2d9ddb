//! FHIR JSON attached to an email: a Bundle (its entries' resources, with `urn:uuid:` references
//! rewritten to `Type/id`), a single resource, or NDJSON (one resource a line). A Bundle is read
//! twice from the attachment's bytes, first for the entries' identities only and then entry by
//! entry, so a large Bundle is never held as one JSON tree.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::email::ImportError;

/// Where the resources found in an attachment go.
pub(crate) trait Resources {
    fn resource(&mut self, resource: Value) -> Result<(), ImportError>;
    fn warn(&mut self, warning: String);
}

/// Why an attachment's records could not be read; the attachment itself is still kept.
#[derive(Debug, PartialEq)]
pub(crate) enum Unreadable {
    NotJson(String),
    NotFhir,
    EmptyBundle,
}

/// Imports the resources of a JSON attachment. `Err(Ok(_))` says why its records could not be
/// read (a warning, not a failure); `Err(Err(_))` is a failure of the run.
pub(crate) fn import_json(
    bytes: &[u8],
    out: &mut dyn Resources,
) -> Result<(), Result<Unreadable, ImportError>> {
    let bytes = strip_bom(bytes);
    let head = read_head(bytes).map_err(Ok)?;
    match head.resource_type.as_deref() {
        None => Err(Ok(Unreadable::NotFhir)),
        Some("Bundle") => import_bundle(bytes, head, out),
        Some(_) => {
            let resource: Value = serde_json::from_slice(bytes)
                .map_err(|e| Ok(Unreadable::NotJson(e.to_string())))?;
            out.resource(resource).map_err(Err)
        }
    }
}

/// Imports each line of an NDJSON attachment; a line that is not JSON is skipped with a warning
/// naming it. Returns how many lines held a resource.
pub(crate) fn import_ndjson(
    bytes: &[u8],
    label: &str,
    out: &mut dyn Resources,
) -> Result<usize, ImportError> {
    let mut count = 0;
    for (index, line) in strip_bom(bytes).split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(resource) => {
                count += 1;
                out.resource(resource)?;
            }
            Err(e) => out.warn(format!(
                "Line {} of the attachment {label} is not valid JSON ({e}), so it was skipped; \
                 the rest of the file was imported and the file itself was kept.",
                index + 1
            )),
        }
    }
    Ok(count)
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

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
    id: Option<Value>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "fullUrl")]
    full_url: Option<String>,
    resource: Option<Value>,
}

/// Parses the whole document without keeping it: proves it is valid JSON and collects what the
/// second pass needs.
fn read_head(bytes: &[u8]) -> Result<Head, Unreadable> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let head = de.deserialize_any(HeadVisitor).map_err(|e| {
        if e.is_data() {
            Unreadable::NotFhir
        } else {
            Unreadable::NotJson(e.to_string())
        }
    })?;
    de.end()
        .map_err(|e| Unreadable::NotJson(format!("extra text after the JSON document: {e}")))?;
    Ok(head)
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
                "resourceType" => {
                    head.resource_type = map.next_value::<Value>()?.as_str().map(str::to_owned)
                }
                "entry" => {
                    head.entries = map
                        .next_value::<Option<Vec<EntryHead>>>()?
                        .unwrap_or_default()
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(head)
    }

    // Any other JSON value is valid JSON but not FHIR: consume it so the syntax is still checked.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Head, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Head::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Head, E> {
        Ok(Head::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Head, E> {
        Ok(Head::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Head, E> {
        Ok(Head::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Head, E> {
        Ok(Head::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Head, E> {
        Ok(Head::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Head, E> {
        Ok(Head::default())
    }
}

fn import_bundle(
    bytes: &[u8],
    head: Head,
    out: &mut dyn Resources,
) -> Result<(), Result<Unreadable, ImportError>> {
    if head.entries.iter().all(|e| e.resource.is_none()) {
        return Err(Ok(Unreadable::EmptyBundle));
    }
    // fullUrl -> Type/id, so `urn:uuid:` (and absolute) references point at the stored records.
    let mut references = HashMap::new();
    for entry in &head.entries {
        if let (Some(full_url), Some(resource)) = (&entry.full_url, &entry.resource) {
            let Some(resource_type) = &resource.resource_type else {
                continue;
            };
            let id = match &resource.id {
                Some(Value::String(id)) => Some(id.clone()),
                _ => uuid_of(full_url),
            };
            if let Some(id) = id {
                references.insert(full_url.clone(), format!("{resource_type}/{id}"));
            }
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut pass = SecondPass {
        out,
        references: &references,
        failure: None,
    };
    let parsed = de.deserialize_map(&mut pass);
    if let Some(failure) = pass.failure.take() {
        return Err(Err(failure));
    }
    // The first pass already proved the document valid, so this cannot happen in practice.
    parsed.map_err(|e| Ok(Unreadable::NotJson(e.to_string())))
}

/// `urn:uuid:<uuid>` gives an id to an entry whose resource has none.
fn uuid_of(full_url: &str) -> Option<String> {
    full_url
        .strip_prefix("urn:uuid:")
        .filter(|id| crate::fhir_rules::is_valid_id(id))
        .map(str::to_owned)
}

struct SecondPass<'e> {
    out: &'e mut dyn Resources,
    references: &'e HashMap<String, String>,
    /// A failure of the run (a refused batch) that stopped the parse.
    failure: Option<ImportError>,
}

impl<'de> Visitor<'de> for &mut SecondPass<'_> {
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
                && let Some(object) = resource.as_object_mut()
            {
                object.insert("id".into(), Value::String(id));
            }
            rewrite_references(&mut resource, self.references);
            if let Err(e) = self.out.resource(resource) {
                self.failure = Some(e);
                return Err(de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for &mut SecondPass<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

/// Replaces every `reference` whose value is a known fullUrl (such as `urn:uuid:...`) with the
/// `Type/id` of the entry it names.
pub(crate) fn rewrite_references(value: &mut Value, references: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "reference" {
                    if let Value::String(target) = child
                        && let Some(local) = references.get(target.as_str())
                    {
                        *target = local.clone();
                    }
                } else {
                    rewrite_references(child, references);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_references(item, references);
            }
        }
        _ => {}
    }
}
