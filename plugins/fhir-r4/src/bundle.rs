//! One FHIR JSON document, a Bundle or a single resource, read in two passes so that a Bundle is
//! never held as one JSON tree: [`scan`] parses the whole document without keeping it (proving it
//! is valid JSON before anything is emitted) and collects each entry's `fullUrl` and identity;
//! [`Scanned::read_resources`] then parses it again and hands over one resource at a time, with
//! `urn:uuid:` (and other fullUrl) references rewritten to `Type/id`. Memory grows with the number
//! of entries, not with the size of the document.

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::json_text::{self, NumberForms};

/// One resource of a document: parsed, and, when it holds a number serde_json would write
/// another way (see [`json_text`]), as its own minified text too.
#[derive(Debug)]
pub struct Resource {
    pub value: Value,
    pub verbatim: Option<String>,
}

impl Resource {
    /// The text to store: the resource as written when that matters, else as serialised.
    pub fn into_text(self) -> String {
        self.verbatim.unwrap_or_else(|| self.value.to_string())
    }
}

/// How forgiving the reader is of a document that is JSON but not quite FHIR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// For a file imported on its own, which is refused as a whole when anything is wrong: a
    /// `resourceType`, `entry` or resource `id` of the wrong JSON type is an error (a data error,
    /// see [`serde_json::Error::is_data`]), and a `urn:uuid:` fullUrl gives its id as written,
    /// so an invalid one is refused loudly rather than dropped.
    Strict,
    /// For a document found inside something else, read for whatever records it holds: any JSON
    /// value is accepted, fields of the wrong type count as absent, and an id is only taken from
    /// a `urn:uuid:` fullUrl when it is a valid FHIR id.
    Lenient,
}

/// Why the first pass failed.
#[derive(Debug)]
pub enum ScanError {
    /// Not valid JSON, or (when [`serde_json::Error::is_data`]) JSON of a shape `Mode` refuses.
    Json(serde_json::Error),
    /// A valid JSON document followed by more than whitespace.
    TrailingText(serde_json::Error),
}

/// Why the second pass stopped.
#[derive(Debug)]
pub enum ReadError<E> {
    /// Only when the document changed since [`scan`] proved it valid.
    Json(serde_json::Error),
    /// What the caller's `each` returned; no further resource was read.
    Stopped(E),
}

/// What the first pass learnt about a document.
#[derive(Debug)]
pub struct Scanned {
    mode: Mode,
    resource_type: Option<String>,
    entries: usize,
    holds_resources: bool,
    /// fullUrl -> `Type/id`.
    references: HashMap<String, String>,
    /// The document holds numbers serde_json would write differently: the second pass keeps
    /// each resource's text as well.
    rewritten_numbers: bool,
}

/// A reader that watches the text going by for numbers serde_json would rewrite.
struct Watched<'f, R> {
    inner: R,
    forms: &'f mut NumberForms,
}

impl<R: std::io::Read> std::io::Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.forms.feed(&buf[..n]);
        Ok(n)
    }
}

/// The first pass: reads the whole document (a leading UTF-8 BOM is skipped) without keeping it.
pub fn scan(reader: impl BufRead, mode: Mode) -> Result<Scanned, ScanError> {
    let mut forms = NumberForms::default();
    let mut scanned = Scanned {
        mode,
        resource_type: None,
        entries: 0,
        holds_resources: false,
        references: HashMap::new(),
        rewritten_numbers: false,
    };
    {
        // Buffered on top, because serde_json reads a byte at a time and std reads a byte fast
        // only from a `BufReader`; the watcher below it sees whole chunks.
        let watched = std::io::BufReader::with_capacity(
            64 * 1024,
            Watched {
                inner: skip_bom(reader).map_err(ScanError::Json)?,
                forms: &mut forms,
            },
        );
        let mut de = serde_json::Deserializer::from_reader(watched);
        match mode {
            Mode::Strict => de.deserialize_map(&mut scanned),
            Mode::Lenient => de.deserialize_any(&mut scanned),
        }
        .map_err(ScanError::Json)?;
        de.end().map_err(ScanError::TrailingText)?;
    }
    scanned.rewritten_numbers = forms.found();
    Ok(scanned)
}

impl Scanned {
    /// The document's `resourceType`; `None` means it is not FHIR.
    pub fn resource_type(&self) -> Option<&str> {
        self.resource_type.as_deref()
    }

    pub fn is_bundle(&self) -> bool {
        self.resource_type() == Some("Bundle")
    }

    /// How many entries the Bundle has, with or without a resource.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Whether any entry of the Bundle has a resource: a Bundle without is nothing to import.
    pub fn holds_resources(&self) -> bool {
        self.holds_resources
    }

    /// The second pass, over the same document again: calls `each` with every entry's resource
    /// of a Bundle (an entry without `id` gets the one its `urn:uuid:` fullUrl names), or once
    /// with the whole document when it is a single resource.
    pub fn read_resources<E>(
        &self,
        reader: impl BufRead,
        mut each: impl FnMut(Resource) -> Result<(), E>,
    ) -> Result<(), ReadError<E>> {
        let mut reader = skip_bom(reader).map_err(ReadError::Json)?;
        if self.rewritten_numbers {
            // Rare: read as text, so that each resource can be kept as written.
            let mut text = String::new();
            reader
                .read_to_string(&mut text)
                .map_err(|e| ReadError::Json(serde_json::Error::io(e)))?;
            return self.read_text(&text, &mut each);
        }
        let mut de = serde_json::Deserializer::from_reader(reader);
        if !self.is_bundle() {
            let resource = Resource {
                value: Value::deserialize(&mut de).map_err(ReadError::Json)?,
                verbatim: None,
            };
            return each(resource).map_err(ReadError::Stopped);
        }
        let mut pass = SecondPass {
            scanned: self,
            each: &mut each,
            stopped: None,
        };
        let parsed = de.deserialize_map(&mut pass);
        if let Some(stopped) = pass.stopped.take() {
            return Err(ReadError::Stopped(stopped));
        }
        parsed.map_err(ReadError::Json)
    }

    /// The second pass over a document in memory, keeping each resource's text.
    fn read_text<E>(
        &self,
        text: &str,
        each: &mut impl FnMut(Resource) -> Result<(), E>,
    ) -> Result<(), ReadError<E>> {
        let parse = |text: &str| serde_json::from_str::<Value>(text).map_err(ReadError::Json);
        if !self.is_bundle() {
            return each(Resource {
                value: parse(text)?,
                verbatim: Some(json_text::minify(text)),
            })
            .map_err(ReadError::Stopped);
        }
        let mut pass = SecondPass {
            scanned: self,
            each,
            stopped: None,
        };
        let entries = json_text::member(text, "entry")
            .and_then(json_text::elements)
            .unwrap_or_default();
        for entry in entries {
            let Some(raw) = json_text::member(entry, "resource").filter(|r| *r != "null") else {
                continue;
            };
            let full_url = json_text::member(entry, "fullUrl")
                .and_then(|url| serde_json::from_str::<String>(url).ok());
            let given = pass.give::<serde_json::Error>(parse(raw)?, full_url.as_deref(), Some(raw));
            if given.is_err() {
                return Err(ReadError::Stopped(pass.stopped.take().expect("stopped")));
            }
        }
        Ok(())
    }

    fn uuid_of(&self, full_url: &str) -> Option<String> {
        let id = full_url.strip_prefix("urn:uuid:")?;
        (self.mode == Mode::Strict || crate::is_valid_id(id)).then(|| id.to_owned())
    }
}

fn skip_bom<R: BufRead>(mut reader: R) -> Result<R, serde_json::Error> {
    if reader
        .fill_buf()
        .map_err(serde_json::Error::io)?
        .starts_with(b"\xEF\xBB\xBF")
    {
        reader.consume(3);
    }
    Ok(reader)
}

/// The first pass keeps only these of each entry. `Id` is `String` in [`Mode::Strict`], so that
/// an id of another type is an error, and `Value` in [`Mode::Lenient`].
#[derive(Deserialize)]
struct EntryHead<Id> {
    #[serde(rename = "fullUrl")]
    full_url: Option<String>,
    resource: Option<ResourceHead<Id>>,
}

#[derive(Deserialize)]
struct ResourceHead<Id> {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    id: Option<Id>,
}

trait IdText {
    fn into_text(self) -> Option<String>;
}

impl IdText for String {
    fn into_text(self) -> Option<String> {
        Some(self)
    }
}

impl IdText for Value {
    fn into_text(self) -> Option<String> {
        match self {
            Value::String(id) => Some(id),
            _ => None,
        }
    }
}

impl Scanned {
    fn record<Id: IdText>(&mut self, entry: EntryHead<Id>) {
        self.entries += 1;
        let Some(resource) = entry.resource else {
            return;
        };
        self.holds_resources = true;
        let (Some(full_url), Some(resource_type)) = (entry.full_url, resource.resource_type) else {
            return;
        };
        let id = resource
            .id
            .and_then(IdText::into_text)
            .or_else(|| self.uuid_of(&full_url));
        if let Some(id) = id {
            self.references
                .insert(full_url, format!("{resource_type}/{id}"));
        }
    }
}

impl<'de> Visitor<'de> for &mut Scanned {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a FHIR resource (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match (key.as_str(), self.mode) {
                ("resourceType", Mode::Strict) => self.resource_type = Some(map.next_value()?),
                ("resourceType", Mode::Lenient) => {
                    self.resource_type = map.next_value::<Value>()?.as_str().map(str::to_owned)
                }
                ("entry", Mode::Strict) => map.next_value_seed(Entries::<String>::new(self))?,
                ("entry", Mode::Lenient) => map.next_value_seed(Entries::<Value>::new(self))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    // Only reached in `Mode::Lenient`: any other JSON value is valid JSON but not FHIR. It is
    // consumed so that its syntax is still checked.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A Bundle's `entry` array, recorded one entry at a time rather than collected.
struct Entries<'s, Id> {
    scanned: &'s mut Scanned,
    id: PhantomData<Id>,
}

impl<'s, Id> Entries<'s, Id> {
    fn new(scanned: &'s mut Scanned) -> Self {
        Entries {
            scanned,
            id: PhantomData,
        }
    }
}

impl<'de, Id: Deserialize<'de> + IdText> Visitor<'de> for Entries<'_, Id> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(entry) = seq.next_element::<EntryHead<Id>>()? {
            self.scanned.record(entry);
        }
        Ok(())
    }

    // `"entry": null`, accepted in `Mode::Lenient` only.
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, Id: Deserialize<'de> + IdText> DeserializeSeed<'de> for Entries<'_, Id> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.scanned.mode {
            Mode::Strict => deserializer.deserialize_seq(self),
            Mode::Lenient => deserializer.deserialize_option(self),
        }
    }
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "fullUrl")]
    full_url: Option<String>,
    resource: Option<Value>,
}

struct SecondPass<'p, E, F> {
    scanned: &'p Scanned,
    each: &'p mut F,
    /// What `each` returned when it stopped the parse.
    stopped: Option<E>,
}

impl<E, F: FnMut(Resource) -> Result<(), E>> SecondPass<'_, E, F> {
    /// Gives `each` one entry's resource, with the id its fullUrl names when it has none and
    /// its references to other entries made local; `raw`, its text, is kept as written when
    /// that matters.
    fn give<Er: de::Error>(
        &mut self,
        mut resource: Value,
        full_url: Option<&str>,
        raw: Option<&str>,
    ) -> Result<(), Er> {
        let mut added_id = None;
        if resource.get("id").is_none()
            && let Some(id) = full_url.and_then(|u| self.scanned.uuid_of(u))
            && let Some(object) = resource.as_object_mut()
        {
            object.insert("id".into(), Value::String(id.clone()));
            added_id = Some(id);
        }
        let references = &self.scanned.references;
        if !references.is_empty() {
            rewrite_references(&mut resource, references);
        }
        let verbatim = raw
            .filter(|raw| json_text::has_rewritten_numbers(raw.as_bytes()))
            .map(|raw| {
                let text = json_text::minify(raw);
                let text = json_text::replace_references(&text, |target| {
                    references.get(target).map(String::as_str)
                });
                match added_id {
                    // After the opening brace: a resource is an object with a resourceType.
                    Some(id) => format!(
                        "{{\"id\":{},{}",
                        Value::String(id),
                        text.strip_prefix('{').unwrap_or(&text)
                    ),
                    None => text,
                }
            });
        if let Err(e) = (self.each)(Resource {
            value: resource,
            verbatim,
        }) {
            self.stopped = Some(e);
            return Err(de::Error::custom("stopped"));
        }
        Ok(())
    }
}

impl<'de, E, F: FnMut(Resource) -> Result<(), E>> Visitor<'de> for &mut SecondPass<'_, E, F> {
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
            let Some(resource) = entry.resource else {
                continue;
            };
            self.give(resource, entry.full_url.as_deref(), None)?;
        }
        Ok(())
    }

    // `"entry": null`, which only `Mode::Lenient` lets through the first pass.
    fn visit_none<Er: de::Error>(self) -> Result<(), Er> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, E, F: FnMut(Resource) -> Result<(), E>> DeserializeSeed<'de>
    for &mut SecondPass<'_, E, F>
{
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

/// Replaces every `reference` whose value is a known fullUrl (such as `urn:uuid:...`) with the
/// `Type/id` of the entry it names.
pub fn rewrite_references(value: &mut Value, references: &HashMap<String, String>) {
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

/// What an OperationOutcome (a server's report of a problem, not a record) says went wrong: each
/// issue's `diagnostics`, or its `details.text`. Empty when it says nothing readable.
pub fn outcome_issues(outcome: &Value) -> Vec<&str> {
    outcome
        .get("issue")
        .and_then(Value::as_array)
        .map(|issues| {
            issues
                .iter()
                .filter_map(|i| {
                    i.get("diagnostics")
                        .or_else(|| i.pointer("/details/text"))
                        .and_then(Value::as_str)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BUNDLE: &str = r#"{"resourceType":"Bundle","type":"collection","entry":[
        {"fullUrl":"urn:uuid:0a1b","resource":{"resourceType":"Patient","id":"p-1"}},
        {"fullUrl":"urn:uuid:9f8e","resource":{"resourceType":"Encounter",
            "subject":{"reference":"urn:uuid:0a1b"},"note":[{"reference":"urn:uuid:unknown"}]}},
        {"fullUrl":"urn:uuid:bad id","resource":{"resourceType":"Observation",
            "encounter":{"reference":"urn:uuid:9f8e"},"subject":{"reference":"urn:uuid:bad id"}}},
        {"request":{"method":"DELETE","url":"Patient/gone"}}]}"#;

    fn read(text: &str, mode: Mode) -> Result<(Scanned, Vec<Value>), ScanError> {
        let scanned = scan(text.as_bytes(), mode)?;
        let mut resources = Vec::new();
        scanned
            .read_resources(text.as_bytes(), |r| {
                resources.push(r.value);
                Ok::<_, ()>(())
            })
            .unwrap();
        Ok((scanned, resources))
    }

    fn scan_error(text: &str, mode: Mode) -> ScanError {
        scan(text.as_bytes(), mode).unwrap_err()
    }

    #[test]
    fn a_bundle_gives_its_resources_with_local_references() {
        for mode in [Mode::Strict, Mode::Lenient] {
            let (scanned, resources) = read(&format!("\u{feff}{BUNDLE}"), mode).unwrap();
            assert!(scanned.is_bundle() && scanned.holds_resources());
            assert_eq!(scanned.entries(), 4);
            assert_eq!(resources.len(), 3);
            assert_eq!(resources[1]["id"], "9f8e");
            assert_eq!(resources[1]["subject"]["reference"], "Patient/p-1");
            assert_eq!(resources[1]["note"][0]["reference"], "urn:uuid:unknown");
            assert_eq!(resources[2]["encounter"]["reference"], "Encounter/9f8e");
        }
    }

    #[test]
    fn only_strict_takes_an_invalid_id_from_a_full_url() {
        let (_, strict) = read(BUNDLE, Mode::Strict).unwrap();
        assert_eq!(strict[2]["id"], "bad id");
        assert_eq!(strict[2]["subject"]["reference"], "Observation/bad id");
        let (_, lenient) = read(BUNDLE, Mode::Lenient).unwrap();
        assert!(lenient[2].get("id").is_none());
        assert_eq!(lenient[2]["subject"]["reference"], "urn:uuid:bad id");
    }

    #[test]
    fn a_single_resource_is_given_whole() {
        let text = r#"{"resourceType":"Condition","id":"c1","subject":{"reference":"urn:uuid:x"}}"#;
        let (scanned, resources) = read(text, Mode::Strict).unwrap();
        assert_eq!(scanned.resource_type(), Some("Condition"));
        assert!(!scanned.is_bundle());
        assert_eq!(resources, [serde_json::from_str::<Value>(text).unwrap()]);
    }

    #[test]
    fn a_bundle_without_resources_says_so() {
        let text =
            r#"{"resourceType":"Bundle","entry":[{"fullUrl":"urn:uuid:a"},{"resource":null}]}"#;
        let scanned = scan(text.as_bytes(), Mode::Strict).unwrap();
        assert!(scanned.is_bundle() && !scanned.holds_resources());
        assert_eq!(scanned.entries(), 2);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let ScanError::Json(e) = scan_error(r#"{"resourceType": "Patient", "id": "#, Mode::Strict)
        else {
            panic!("not a JSON error");
        };
        assert!(e.is_eof(), "{e}");
        let ScanError::TrailingText(e) =
            scan_error(r#"{"resourceType":"Patient"} {}"#, Mode::Lenient)
        else {
            panic!("not trailing text");
        };
        assert_eq!(e.to_string(), "trailing characters at line 1 column 28");
    }

    #[test]
    fn strict_refuses_fields_of_the_wrong_type_and_lenient_ignores_them() {
        for (text, message) in [
            (
                r#"{"resourceType":5}"#,
                "invalid type: integer `5`, expected a string at line 1 column 18",
            ),
            (
                r#"{"resourceType":"Bundle","entry":null}"#,
                "invalid type: null, expected a sequence at line 1 column 37",
            ),
            (
                r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":5}}]}"#,
                "invalid type: integer `5`, expected a string at line 1 column 79",
            ),
            (
                "[1, 2]",
                "invalid type: sequence, expected a FHIR resource (a JSON object) at line 1 column 1",
            ),
        ] {
            let ScanError::Json(e) = scan_error(text, Mode::Strict) else {
                panic!("not a JSON error: {text}");
            };
            assert!(e.is_data(), "{text}: {e}");
            assert_eq!(e.to_string(), message, "{text}");
            assert!(scan(text.as_bytes(), Mode::Lenient).is_ok(), "{text}");
        }
        assert_eq!(
            scan(br#"{"resourceType":5}"#.as_slice(), Mode::Lenient)
                .unwrap()
                .resource_type(),
            None
        );
        let ScanError::Json(e) = scan_error("[1, 2", Mode::Lenient) else {
            panic!("not a JSON error");
        };
        assert!(
            e.is_eof(),
            "the syntax of JSON that is not FHIR is still checked: {e}"
        );
    }

    #[test]
    fn the_caller_can_stop_the_second_pass() {
        let scanned = scan(BUNDLE.as_bytes(), Mode::Strict).unwrap();
        let mut seen = 0;
        let stopped = scanned.read_resources(BUNDLE.as_bytes(), |_| {
            seen += 1;
            Err("full")
        });
        assert!(matches!(stopped, Err(ReadError::Stopped("full"))));
        assert_eq!(seen, 1);
    }

    #[test]
    fn outcome_issues_prefer_diagnostics_over_details() {
        let outcome = json!({"resourceType": "OperationOutcome", "issue": [
            {"diagnostics": "Lab system offline", "details": {"text": "unused"}},
            {"details": {"text": "Try again later"}},
            {"severity": "error"}]});
        assert_eq!(
            outcome_issues(&outcome),
            ["Lab system offline", "Try again later"]
        );
        assert!(outcome_issues(&json!({"resourceType": "OperationOutcome"})).is_empty());
    }

    #[test]
    fn numbers_serde_json_would_rewrite_keep_their_text() {
        let text = r#"{"resourceType":"Bundle","type":"collection","entry":[
            {"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","id":"p1"}},
            {"fullUrl":"urn:uuid:o1","resource":{"resourceType":"Observation",
              "subject":{"reference":"urn:uuid:p1"}, "valueQuantity":{"value":1E2}}},
            {"fullUrl":"urn:uuid:o2","resource":{"resourceType":"Observation","id":"o2",
              "valueQuantity":{"value":1.50}}}]}"#;
        let scanned = scan(text.as_bytes(), Mode::Strict).unwrap();
        let mut texts = Vec::new();
        scanned
            .read_resources(text.as_bytes(), |r| {
                texts.push(r.into_text());
                Ok::<_, ()>(())
            })
            .unwrap();
        // The id its fullUrl names, the reference made local, and 1E2 as written.
        assert_eq!(
            texts[1],
            r#"{"id":"o1","resourceType":"Observation","subject":{"reference":"Patient/p1"},"valueQuantity":{"value":1E2}}"#
        );
        // A resource without such a number is serialised as usual (keys in order, 1.50 kept).
        assert_eq!(
            texts[2],
            r#"{"id":"o2","resourceType":"Observation","valueQuantity":{"value":1.50}}"#
        );
    }
}
