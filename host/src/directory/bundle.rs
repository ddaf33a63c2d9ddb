//! Reads a FHIR Bundle of Organization and Endpoint resources one entry at a time.
//!
//! The Bundle is never held whole: a [`DeserializeSeed`] walks its top-level object, and inside
//! `entry` hands each element, decoded into the few fields a directory needs, to a callback
//! before reading the next. Fields it does not name (logos as `data:` URLs, narrative) are
//! skipped as they stream past. References are only recorded here, as keys; resolving them
//! (an Organization's `endpoint`, a facility's `partOf`) is SQL's job in the staging database,
//! so no map of the whole list is built in memory.

use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Addresses kept per organisation for search: a lab with thousands of locations is still one
/// row of bounded size.
pub const MAX_PLACES: usize = 200;

/// What a directory keeps of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Organization(Org),
    Endpoint(Endpoint),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Org {
    /// The keys references may use for it: `Organization/<id>`, and its `urn:` full URL.
    pub keys: Vec<String>,
    pub name: String,
    pub aliases: Vec<String>,
    /// The brand it belongs to (a reference key).
    pub part_of: Option<String>,
    /// Its endpoints (reference keys).
    pub endpoints: Vec<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    /// Every address as "City ST zip", for search.
    pub places: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    pub keys: Vec<String>,
    /// The FHIR base, without a trailing '/'.
    pub address: String,
    pub name: Option<String>,
    /// The organisation it serves (a reference key), for lists that link that way round.
    pub managing: Option<String>,
}

/// How a Bundle failed to read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("it is a {0}, not a FHIR Bundle")]
    NotABundle(String),
    #[error("it has no `entry` list")]
    NoEntries,
}

impl BundleError {
    /// Whether the document simply stopped: a download cut short.
    pub fn is_truncated(&self) -> bool {
        matches!(self, BundleError::Json(e) if e.is_eof())
    }
}

/// Reads `reader` as a Bundle, calling `on_record` for each usable Organization and Endpoint in
/// document order. Answers how many entries the Bundle held. A callback error stops the read
/// and comes back as a JSON error carrying its message.
pub fn read<R: Read>(
    reader: R,
    on_record: &mut dyn FnMut(Record) -> Result<(), String>,
) -> Result<u64, BundleError> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let (resource_type, entries) = BundleSeed { on_record }.deserialize(&mut de)?;
    de.end()?;
    match resource_type.as_deref() {
        Some("Bundle") | None => {}
        Some(other) => return Err(BundleError::NotABundle(other.to_owned())),
    }
    entries.ok_or(BundleError::NoEntries)
}

struct BundleSeed<'a> {
    on_record: &'a mut dyn FnMut(Record) -> Result<(), String>,
}

impl<'de> DeserializeSeed<'de> for BundleSeed<'_> {
    /// `resourceType`, and how many entries `entry` held (when it was there).
    type Value = (Option<String>, Option<u64>);

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BundleSeed<'_> {
    type Value = (Option<String>, Option<u64>);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a FHIR Bundle object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut resource_type = None;
        let mut entries = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "resourceType" => resource_type = Some(map.next_value::<String>()?),
                "entry" => {
                    entries = Some(map.next_value_seed(EntriesSeed {
                        on_record: &mut *self.on_record,
                    })?)
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((resource_type, entries))
    }
}

struct EntriesSeed<'a> {
    on_record: &'a mut dyn FnMut(Record) -> Result<(), String>,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = u64;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the Bundle's entry list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut count = 0;
        while let Some(entry) = seq.next_element::<RawEntry>()? {
            count += 1;
            if let Some(record) = entry.into_record() {
                (self.on_record)(record).map_err(de::Error::custom)?;
            }
        }
        Ok(count)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntry {
    full_url: Option<String>,
    resource: Option<RawResource>,
}

/// The fields of Organization and Endpoint a directory reads, in one struct so that nothing is
/// buffered to find out which type it is (an internally tagged enum would).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResource {
    resource_type: Option<String>,
    id: Option<String>,
    name: Option<String>,
    alias: Option<Vec<String>>,
    /// Organization: a list of addresses; Endpoint: its URL.
    address: Option<AddressField>,
    part_of: Option<Reference>,
    endpoint: Option<Vec<Reference>>,
    managing_organization: Option<Reference>,
    status: Option<String>,
    active: Option<bool>,
    connection_type: Option<Coding>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AddressField {
    Url(String),
    Places(Vec<Address>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Address {
    city: Option<String>,
    state: Option<String>,
    postal_code: Option<String>,
}

#[derive(Deserialize)]
struct Reference {
    reference: Option<String>,
}

#[derive(Deserialize)]
struct Coding {
    code: Option<String>,
}

impl RawEntry {
    fn into_record(self) -> Option<Record> {
        let resource = self.resource?;
        let kind = resource.resource_type.as_deref()?;
        let mut keys = Vec::new();
        if let Some(id) = resource
            .id
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            keys.push(format!("{kind}/{id}"));
        }
        if let Some(full) = self.full_url.as_deref().map(str::trim) {
            let key = reference_key(full);
            if !key.is_empty() && !keys.contains(&key) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return None;
        }
        match kind {
            "Organization" => resource.into_org(keys).map(Record::Organization),
            "Endpoint" => resource.into_endpoint(keys).map(Record::Endpoint),
            _ => None,
        }
    }
}

impl RawResource {
    fn into_org(self, keys: Vec<String>) -> Option<Org> {
        if self.active == Some(false) {
            return None;
        }
        let name = clean(self.name?)?;
        let mut aliases: Vec<String> = Vec::new();
        for alias in self.alias.unwrap_or_default().into_iter().filter_map(clean) {
            if alias != name && !aliases.contains(&alias) {
                aliases.push(alias);
            }
        }
        let addresses = match self.address {
            Some(AddressField::Places(places)) => places,
            _ => Vec::new(),
        };
        let first = addresses.first();
        let pick =
            |f: fn(&Address) -> &Option<String>| first.and_then(|a| f(a).clone()).and_then(clean);
        let places = addresses
            .iter()
            .take(MAX_PLACES)
            .map(|a| {
                [&a.city, &a.state, &a.postal_code]
                    .into_iter()
                    .filter_map(|p| p.as_deref().map(str::trim).filter(|p| !p.is_empty()))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|p| !p.is_empty())
            .collect();
        Some(Org {
            keys,
            city: pick(|a| &a.city),
            state: pick(|a| &a.state),
            zip: pick(|a| &a.postal_code),
            name,
            aliases,
            part_of: self.part_of.and_then(Reference::key),
            endpoints: self
                .endpoint
                .unwrap_or_default()
                .into_iter()
                .filter_map(Reference::key)
                .collect(),
            places,
        })
    }

    fn into_endpoint(self, keys: Vec<String>) -> Option<Endpoint> {
        if self.status.as_deref().is_some_and(|s| s != "active") {
            return None;
        }
        // Only FHIR REST endpoints are something to connect to.
        if self
            .connection_type
            .and_then(|c| c.code)
            .is_some_and(|c| c != "hl7-fhir-rest")
        {
            return None;
        }
        let Some(AddressField::Url(address)) = self.address else {
            return None;
        };
        let address = address.trim().trim_end_matches('/').to_owned();
        let url = url::Url::parse(&address).ok()?;
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return None;
        }
        Some(Endpoint {
            keys,
            address,
            name: self.name.and_then(clean),
            managing: self.managing_organization.and_then(Reference::key),
        })
    }
}

impl Reference {
    fn key(self) -> Option<String> {
        let key = reference_key(self.reference?.trim());
        (!key.is_empty()).then_some(key)
    }
}

/// How a reference (or a full URL) is matched: `urn:uuid:…` as it is, anything else by its last
/// `Type/id` (so `Endpoint/x`, `https://host/fhir/Endpoint/x` and `…/Endpoint/x/_history/2` agree).
pub fn reference_key(reference: &str) -> String {
    if reference.starts_with("urn:") {
        return reference.to_owned();
    }
    let path = reference.split(['?', '#']).next().unwrap_or_default();
    let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if let Some(at) = parts.iter().position(|p| *p == "_history") {
        parts.truncate(at);
    }
    match parts.as_slice() {
        [.., kind, id] => format!("{kind}/{id}"),
        _ => String::new(),
    }
}

/// Trimmed, with runs of spaces made one; `None` when nothing is left.
fn clean(text: String) -> Option<String> {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!joined.is_empty()).then_some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(json: &str) -> Result<(u64, Vec<Record>), BundleError> {
        let mut out = Vec::new();
        let n = read(json.as_bytes(), &mut |r| {
            out.push(r);
            Ok(())
        })?;
        Ok((n, out))
    }

    #[test]
    fn reads_organizations_and_endpoints_with_their_references() {
        let json = r#"{"resourceType":"Bundle","type":"collection","entry":[
          {"fullUrl":"https://x/Endpoint/e1","resource":{"resourceType":"Endpoint","id":"e1",
            "status":"active","connectionType":{"code":"hl7-fhir-rest"},
            "address":"https://fhir.example/r4/"}},
          {"fullUrl":"urn:uuid:o1","resource":{"resourceType":"Organization","id":"o1",
            "name":"  Oscar   Matthews, MD ","alias":["Oscar Matthews, MD","Dr Oscar"],
            "extension":[{"url":"logo","valueUrl":"data:image/png;base64,AAAA"}],
            "address":[{"line":["1 Lido"],"city":"Newport Beach","state":"CA","postalCode":"92663"},
                       {"city":"Irvine","state":"CA"}],
            "endpoint":[{"reference":"Endpoint/e1"}],
            "partOf":{"reference":"https://x/fhir/Organization/brand/_history/3"}}},
          {"resource":{"resourceType":"Patient","id":"p"}},
          {"resource":{"resourceType":"Endpoint","id":"old","status":"off","address":"https://old"}},
          {"resource":{"resourceType":"Organization","id":"gone","active":false,"name":"Gone"}}
        ]}"#;
        let (n, got) = records(json).unwrap();
        assert_eq!(n, 5);
        assert_eq!(
            got,
            vec![
                Record::Endpoint(Endpoint {
                    keys: vec!["Endpoint/e1".into()],
                    address: "https://fhir.example/r4".into(),
                    name: None,
                    managing: None,
                }),
                Record::Organization(Org {
                    keys: vec!["Organization/o1".into(), "urn:uuid:o1".into()],
                    name: "Oscar Matthews, MD".into(),
                    aliases: vec!["Dr Oscar".into()],
                    part_of: Some("Organization/brand".into()),
                    endpoints: vec!["Endpoint/e1".into()],
                    city: Some("Newport Beach".into()),
                    state: Some("CA".into()),
                    zip: Some("92663".into()),
                    places: vec!["Newport Beach CA 92663".into(), "Irvine CA".into()],
                }),
            ]
        );
    }

    #[test]
    fn a_cut_off_document_is_truncated_and_other_shapes_are_refused() {
        let whole = r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Endpoint","id":"e","address":"https://a"}}]}"#;
        assert_eq!(records(whole).unwrap().1.len(), 1);
        let cut = &whole[..whole.len() - 10];
        let err = records(cut).unwrap_err();
        assert!(err.is_truncated(), "{err}");
        let err = records(r#"{"resourceType":"Patient","id":"x"}"#).unwrap_err();
        assert!(matches!(err, BundleError::NotABundle(_)), "{err}");
        let err = records(r#"{"resourceType":"Bundle"}"#).unwrap_err();
        assert!(matches!(err, BundleError::NoEntries), "{err}");
        let err = records(r#"{"resourceType":"Bundle","entry":[]} trailing"#).unwrap_err();
        assert!(!err.is_truncated(), "{err}");
    }

    #[test]
    fn a_callback_error_stops_the_read() {
        let json = r#"{"entry":[{"resource":{"resourceType":"Endpoint","id":"e","address":"https://a"}},
                                {"resource":{"resourceType":"Endpoint","id":"f","address":"https://b"}}]}"#;
        let mut seen = 0;
        let err = read(json.as_bytes(), &mut |_| {
            seen += 1;
            Err("disk full".into())
        })
        .unwrap_err();
        assert_eq!(seen, 1);
        assert!(err.to_string().contains("disk full"), "{err}");
    }

    #[test]
    fn references_match_by_type_and_id_or_urn() {
        assert_eq!(reference_key("Endpoint/abc"), "Endpoint/abc");
        assert_eq!(
            reference_key("https://fhir.example/r4/Endpoint/abc"),
            "Endpoint/abc"
        );
        assert_eq!(reference_key("Organization/o/_history/2"), "Organization/o");
        assert_eq!(reference_key("urn:uuid:1234"), "urn:uuid:1234");
        assert_eq!(reference_key("abc"), "");
    }
}
