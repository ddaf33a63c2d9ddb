//! HL7 v3 data types as FHIR R4 data types: CD → CodeableConcept, TS/IVL_TS → dateTime/Period,
//! PQ → Quantity, II → Identifier, PN → HumanName, AD → Address, TEL → ContactPoint, and an
//! observation's `value` → `value[x]`. Every function returns `None` for a nullFlavor or an
//! element with nothing usable, so callers simply leave the FHIR field out.

use roxmltree::Node;
use serde_json::{Map, Value, json};

use crate::narrative::Narrative;
use crate::xml::{El, collapse};

/// Code systems by OID, as the FHIR URIs of C-CDA on FHIR's terminology mapping. Others become
/// `urn:oid:<oid>`.
const SYSTEMS: &[(&str, &str)] = &[
    ("2.16.840.1.113883.6.1", "http://loinc.org"),
    ("2.16.840.1.113883.6.96", "http://snomed.info/sct"),
    (
        "2.16.840.1.113883.6.88",
        "http://www.nlm.nih.gov/research/umls/rxnorm",
    ),
    ("2.16.840.1.113883.12.292", "http://hl7.org/fhir/sid/cvx"),
    (
        "2.16.840.1.113883.6.90",
        "http://hl7.org/fhir/sid/icd-10-cm",
    ),
    ("2.16.840.1.113883.6.3", "http://hl7.org/fhir/sid/icd-10"),
    (
        "2.16.840.1.113883.6.103",
        "http://hl7.org/fhir/sid/icd-9-cm",
    ),
    (
        "2.16.840.1.113883.6.104",
        "http://hl7.org/fhir/sid/icd-9-cm",
    ),
    ("2.16.840.1.113883.6.69", "http://hl7.org/fhir/sid/ndc"),
    ("2.16.840.1.113883.6.12", "http://www.ama-assn.org/go/cpt"),
    (
        "2.16.840.1.113883.6.285",
        "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    ),
    ("2.16.840.1.113883.6.8", "http://unitsofmeasure.org"),
    (
        "2.16.840.1.113883.6.101",
        "http://nucc.org/provider-taxonomy",
    ),
    ("2.16.840.1.113883.6.238", "urn:oid:2.16.840.1.113883.6.238"),
    ("2.16.840.1.113883.3.26.1.1", "http://ncimeta.nci.nih.gov"),
    ("2.16.840.1.113883.4.9", "http://fdasis.nlm.nih.gov"),
    ("2.16.840.1.113883.6.59", "http://hl7.org/fhir/sid/cvx"),
    ("2.16.840.1.113883.3.88.12.80.17", "http://snomed.info/sct"),
    (
        "2.16.840.1.113883.5.1",
        "http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender",
    ),
    (
        "2.16.840.1.113883.5.4",
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
    ),
    (
        "2.16.840.1.113883.5.6",
        "http://terminology.hl7.org/CodeSystem/v3-ActClass",
    ),
    (
        "2.16.840.1.113883.5.8",
        "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    ),
    (
        "2.16.840.1.113883.5.25",
        "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
    ),
    (
        "2.16.840.1.113883.5.83",
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
    ),
    (
        "2.16.840.1.113883.5.111",
        "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
    ),
    (
        "2.16.840.1.113883.5.110",
        "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
    ),
    (
        "2.16.840.1.113883.5.1063",
        "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    ),
    (
        "2.16.840.1.113883.5.2",
        "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
    ),
    (
        "2.16.840.1.113883.5.60",
        "http://terminology.hl7.org/CodeSystem/v3-LanguageAbilityMode",
    ),
    (
        "2.16.840.1.113883.5.1008",
        "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
    ),
    (
        "2.16.840.1.113883.5.1076",
        "http://terminology.hl7.org/CodeSystem/v3-ReligiousAffiliation",
    ),
    (
        "2.16.840.1.113883.5.112",
        "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration",
    ),
    (
        "2.16.840.1.113883.6.259",
        "https://www.cdc.gov/nhsn/cdaportal/terminology/codesystem/hsloc.html",
    ),
    (
        "2.16.840.1.113883.12.112",
        "http://terminology.hl7.org/CodeSystem/discharge-disposition",
    ),
    ("2.16.840.1.113883.3.221.5", "https://nahdo.org/sopt"),
    ("2.16.840.1.113883.12.227", "http://hl7.org/fhir/sid/mvx"),
];

/// The FHIR system URI for a code system OID (or a UUID used as one).
pub(crate) fn system_uri(oid: &str) -> String {
    if let Some((_, uri)) = SYSTEMS.iter().find(|(o, _)| *o == oid) {
        return (*uri).to_string();
    }
    if is_uuid(oid) {
        format!("urn:uuid:{}", oid.to_ascii_lowercase())
    } else {
        format!("urn:oid:{oid}")
    }
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        })
}

/// One `coding` from a CD-like element (`code`, `value`, `translation`), or None when it has
/// no code.
fn coding(node: Node) -> Option<Value> {
    let code = node.attr("code")?;
    let mut coding = Map::new();
    if let Some(system) = node.attr("codeSystem") {
        coding.insert("system".into(), system_uri(system).into());
    }
    coding.insert("code".into(), code.into());
    if let Some(display) = node.attr("displayName") {
        coding.insert("display".into(), collapse(display).into());
    }
    Some(Value::Object(coding))
}

/// A CD/CE/CV/CO element as a CodeableConcept: its own coding first, then each translation
/// (so the other code systems are kept beside the preferred one), and as `text` the
/// `originalText` (resolving a narrative reference) or else the display name. A nullFlavor code
/// that still carries original text or translations keeps them.
pub(crate) fn concept(node: Node, narrative: &Narrative) -> Option<Value> {
    let mut codings: Vec<Value> = Vec::new();
    if let Some(own) = coding(node) {
        codings.push(own);
    }
    for translation in node.children_named("translation") {
        if let Some(c) = coding(translation)
            && !codings.contains(&c)
        {
            codings.push(c);
        }
    }
    let text = node
        .child("originalText")
        .and_then(|t| narrative.text_of(t))
        .or_else(|| node.attr("displayName").map(collapse));
    if codings.is_empty() && text.is_none() {
        return None;
    }
    let mut concept = Map::new();
    if !codings.is_empty() {
        concept.insert("coding".into(), Value::Array(codings));
    }
    if let Some(text) = text {
        concept.insert("text".into(), text.into());
    }
    Some(Value::Object(concept))
}

/// A concept built from text alone (an entry coded only in its narrative).
pub(crate) fn text_concept(text: String) -> Value {
    json!({ "text": text })
}

/// An HL7 TS value (`20140302124536.5-0500`, `201403`, `2014`) as a FHIR date or dateTime.
/// A time without a zone keeps only its date: FHIR requires a zone with a time, and guessing one
/// would move the record to another day for some readers.
pub(crate) fn ts(value: &str) -> Option<String> {
    let value = value.trim();
    let (stamp, zone) = match value.find(['+', '-']) {
        Some(at) => (&value[..at], Some(&value[at..])),
        None => (value, None),
    };
    let (digits, fraction) = match stamp.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (stamp, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit())
        || fraction.is_some_and(|f| !f.bytes().all(|b| b.is_ascii_digit()) || f.is_empty())
    {
        return None;
    }
    let part = |from: usize, to: usize| &digits[from..to];
    let number = |from: usize, to: usize| part(from, to).parse::<u32>().unwrap_or(u32::MAX);
    let date = match digits.len() {
        4 => return Some(digits.to_string()),
        6 if (1..=12).contains(&number(4, 6)) => {
            return Some(format!("{}-{}", part(0, 4), part(4, 6)));
        }
        // Hours, minutes and seconds come in pairs: an odd count is a typing error whose
        // reading is anyone's guess.
        8 | 10 | 12 | 14 => format!("{}-{}-{}", part(0, 4), part(4, 6), part(6, 8)),
        _ => return None,
    };
    let time_in_range = (digits.len() < 10 || number(8, 10) < 24)
        && (digits.len() < 12 || number(10, 12) < 60)
        && (digits.len() < 14 || number(12, 14) < 60);
    if !time_in_range {
        return None;
    }
    if !valid_date(&date) {
        return None;
    }
    let Some(zone) = zone.filter(|_| digits.len() > 8) else {
        return Some(date);
    };
    if zone.len() != 5 || !zone[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Some(date);
    }
    let hour = part(8, 10);
    let minute = if digits.len() >= 12 {
        part(10, 12)
    } else {
        "00"
    };
    let second = if digits.len() >= 14 {
        part(12, 14)
    } else {
        "00"
    };
    let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
    Some(format!(
        "{date}T{hour}:{minute}:{second}{fraction}{}:{}",
        &zone[..3],
        &zone[3..]
    ))
}

fn valid_date(date: &str) -> bool {
    let year: u32 = date[..4].parse().unwrap_or(0);
    let month: u32 = date[5..7].parse().unwrap_or(0);
    let day: u32 = date[8..10].parse().unwrap_or(0);
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// A TS element's `value`, or None for a nullFlavor or a value that is not a time.
pub(crate) fn time_of(node: Node) -> Option<String> {
    if node.is_null() {
        return None;
    }
    node.attr("value").and_then(ts)
}

/// When something happened, as HL7 says it (`effectiveTime` with a value, low/high, or center).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct When {
    /// A single time (`value` or `center`).
    pub(crate) at: Option<String>,
    pub(crate) start: Option<String>,
    pub(crate) end: Option<String>,
}

impl When {
    /// An IVL_TS or TS element. A `value` beside `low`/`high` is ignored, as C-CDA forbids it.
    pub(crate) fn of(node: Option<Node>) -> When {
        let Some(node) = node else {
            return When::default();
        };
        let start = node.child("low").and_then(time_of);
        let end = node.child("high").and_then(time_of);
        let at = if start.is_none() && end.is_none() {
            time_of(node).or_else(|| node.child("center").and_then(time_of))
        } else {
            None
        };
        When { at, start, end }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.at.is_none() && self.start.is_none() && self.end.is_none()
    }

    /// The earliest time known.
    pub(crate) fn first(&self) -> Option<String> {
        self.at.clone().or_else(|| self.start.clone())
    }

    /// A FHIR Period from low/high (a single time gives start = end).
    pub(crate) fn period(&self) -> Option<Value> {
        let mut period = Map::new();
        if let Some(at) = &self.at {
            period.insert("start".into(), at.clone().into());
            period.insert("end".into(), at.clone().into());
        }
        if let Some(start) = &self.start {
            period.insert("start".into(), start.clone().into());
        }
        if let Some(end) = &self.end {
            period.insert("end".into(), end.clone().into());
        }
        (!period.is_empty()).then_some(Value::Object(period))
    }

    /// Sets `{prefix}DateTime` for a single time or `{prefix}Period` for a range on `resource`.
    pub(crate) fn set_choice(&self, resource: &mut Map<String, Value>, prefix: &str) {
        if let Some(at) = &self.at {
            resource.insert(format!("{prefix}DateTime"), at.clone().into());
        } else if let Some(period) = self.period() {
            resource.insert(format!("{prefix}Period"), period);
        }
    }
}

/// A decimal as it was written, kept exactly (`7.10` stays `7.10`), or None when it is not one.
pub(crate) fn decimal(text: &str) -> Option<Value> {
    let text = text.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let int_digits = int.strip_prefix('-').unwrap_or(int);
    let ok = !int_digits.is_empty()
        && int_digits.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(text.contains('.') && frac.is_empty());
    if !ok {
        return None;
    }
    // JSON does not allow leading zeros ("007").
    let trimmed_int = {
        let neg = int.starts_with('-');
        let digits = int_digits.trim_start_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        format!("{}{digits}", if neg { "-" } else { "" })
    };
    let normal = if frac.is_empty() {
        trimmed_int
    } else {
        format!("{trimmed_int}.{frac}")
    };
    serde_json::from_str::<Value>(&normal).ok()
}

/// A PQ element as a Quantity: the value exactly as written and, for a UCUM unit, its code.
/// Unit "1" (a plain number) is left out.
pub(crate) fn quantity(node: Node) -> Option<Value> {
    if node.is_null() && node.attr("value").is_none() {
        return None;
    }
    let value = decimal(node.attr("value")?)?;
    let mut quantity = Map::new();
    quantity.insert("value".into(), value);
    if let Some(unit) = node.attr("unit").filter(|u| *u != "1") {
        quantity.insert("unit".into(), unit.into());
        quantity.insert("system".into(), "http://unitsofmeasure.org".into());
        quantity.insert("code".into(), unit.into());
    } else if let Some(translation) = node.child("translation") {
        // A non-UCUM unit travels as a translation of the quantity (`Results_with_translation_unit`).
        if let Some(unit) = translation
            .child("originalText")
            .map(|t| t.text_content())
            .filter(|t| !t.is_empty())
            .or_else(|| translation.attr("code").map(str::to_string))
        {
            quantity.insert("unit".into(), unit.into());
        }
    }
    Some(Value::Object(quantity))
}

/// An IVL_PQ as a Range (or None when neither bound has a value).
pub(crate) fn range(node: Node) -> Option<Value> {
    let mut range = Map::new();
    if let Some(low) = node.child("low").and_then(quantity) {
        range.insert("low".into(), low);
    }
    if let Some(high) = node.child("high").and_then(quantity) {
        range.insert("high".into(), high);
    }
    (!range.is_empty()).then_some(Value::Object(range))
}

/// An observation's `value` as `value[x]`: the key (`valueQuantity`...) and the value. Handles
/// PQ, IVL_PQ (a one-sided interval becomes a quantity with a comparator: "> 200"), CD/CE/CO/CV,
/// ST/ED, INT, REAL, BL, TS, IVL_TS, RTO. None for a nullFlavor or an unknown type.
pub(crate) fn observation_value(
    node: Node,
    narrative: &Narrative,
) -> Option<(&'static str, Value)> {
    let kind = node.xsi_type().unwrap_or("");
    match kind {
        "PQ" => quantity(node).map(|q| ("valueQuantity", q)),
        "IVL_PQ" => {
            let low = node.child("low").and_then(quantity);
            let high = node.child("high").and_then(quantity);
            match (low, high) {
                (Some(low), Some(high)) => Some(("valueRange", json!({"low": low, "high": high}))),
                (Some(mut low), None) => {
                    let inclusive =
                        node.child("low").and_then(|l| l.attr("inclusive")) != Some("false");
                    low["comparator"] = if inclusive { ">=" } else { ">" }.into();
                    Some(("valueQuantity", low))
                }
                (None, Some(mut high)) => {
                    let inclusive =
                        node.child("high").and_then(|h| h.attr("inclusive")) != Some("false");
                    high["comparator"] = if inclusive { "<=" } else { "<" }.into();
                    Some(("valueQuantity", high))
                }
                (None, None) => quantity(node).map(|q| ("valueQuantity", q)),
            }
        }
        "CD" | "CE" | "CV" | "CO" | "CS" => {
            concept(node, narrative).map(|c| ("valueCodeableConcept", c))
        }
        "ST" | "ED" | "" => {
            let text = narrative.text_of(node).filter(|t| !t.is_empty())?;
            Some(("valueString", text.into()))
        }
        "INT" => node
            .attr("value")
            .and_then(|v| v.parse::<i64>().ok())
            .map(|v| ("valueInteger", v.into())),
        "REAL" => node
            .attr("value")
            .and_then(decimal)
            .map(|v| ("valueQuantity", json!({ "value": v }))),
        "BL" => match node.attr("value") {
            Some("true") => Some(("valueBoolean", true.into())),
            Some("false") => Some(("valueBoolean", false.into())),
            _ => None,
        },
        "TS" => time_of(node).map(|t| ("valueDateTime", t.into())),
        "IVL_TS" => When::of(Some(node)).period().map(|p| ("valuePeriod", p)),
        "RTO" | "RTO_PQ_PQ" | "RTO_INT_INT" => {
            let numerator = node.child("numerator").and_then(quantity)?;
            let denominator = node.child("denominator").and_then(quantity)?;
            Some((
                "valueRatio",
                json!({"numerator": numerator, "denominator": denominator}),
            ))
        }
        _ => None,
    }
}

/// An II element as an Identifier: `root` as the system and `extension` as the value, or, with
/// no extension, the root itself as a URI.
pub(crate) fn identifier(node: Node) -> Option<Value> {
    if node.is_null() {
        return None;
    }
    let root = node.attr("root")?;
    Some(match node.attr("extension") {
        Some(extension) => json!({ "system": system_uri(root), "value": extension }),
        None => json!({ "system": "urn:ietf:rfc:3986", "value": system_uri(root) }),
    })
}

/// Every `id` of an element as Identifiers.
pub(crate) fn identifiers(node: Node) -> Vec<Value> {
    node.children_named("id")
        .into_iter()
        .filter_map(identifier)
        .collect()
}

/// A PN element as a HumanName.
pub(crate) fn human_name(node: Node) -> Option<Value> {
    if node.is_null() {
        return None;
    }
    let mut name = Map::new();
    let texts = |part: &str| -> Vec<Value> {
        node.children_named(part)
            .into_iter()
            .map(|n| n.text_content())
            .filter(|t| !t.is_empty())
            .map(Value::from)
            .collect()
    };
    let given = texts("given");
    let family = node
        .child("family")
        .map(|f| f.text_content())
        .filter(|f| !f.is_empty());
    if let Some(family) = family {
        name.insert("family".into(), family.into());
    }
    if !given.is_empty() {
        name.insert("given".into(), given.into());
    }
    for (part, key) in [("prefix", "prefix"), ("suffix", "suffix")] {
        let values = texts(part);
        if !values.is_empty() {
            name.insert(key.into(), values.into());
        }
    }
    if name.is_empty() {
        // An unstructured name: `<name>Henry Levin</name>`.
        let text = node.text_content();
        if text.is_empty() {
            return None;
        }
        name.insert("text".into(), text.into());
    }
    if let Some(usage) = node.attr("use").and_then(|u| {
        Some(match u.split_whitespace().next()? {
            "L" | "C" => "official",
            "P" | "A" => "nickname",
            "ASGN" => "usual",
            "OR" => "official",
            "BR" => "old",
            _ => return None,
        })
    }) {
        name.insert("use".into(), usage.into());
    }
    if let Some(period) = When::of(node.child("validTime")).period() {
        name.insert("period".into(), period);
    }
    Some(Value::Object(name))
}

/// An AD element as an Address.
pub(crate) fn address(node: Node) -> Option<Value> {
    if node.is_null() {
        return None;
    }
    let mut address = Map::new();
    let lines: Vec<Value> = node
        .children_named("streetAddressLine")
        .into_iter()
        .map(|n| n.text_content())
        .filter(|t| !t.is_empty())
        .map(Value::from)
        .collect();
    if !lines.is_empty() {
        address.insert("line".into(), lines.into());
    }
    for (part, key) in [
        ("city", "city"),
        ("state", "state"),
        ("postalCode", "postalCode"),
        ("country", "country"),
        ("county", "district"),
    ] {
        if let Some(text) = node
            .child(part)
            .filter(|n| !n.is_null())
            .map(|n| n.text_content())
            .filter(|t| !t.is_empty())
        {
            address.insert(key.into(), text.into());
        }
    }
    if address.is_empty() {
        return None;
    }
    if let Some(usage) = node.attr("use").and_then(|u| {
        Some(match u.split_whitespace().next()? {
            "H" | "HP" | "HV" => "home",
            "WP" | "DIR" | "PUB" => "work",
            "TMP" => "temp",
            "OLD" | "BAD" => "old",
            _ => return None,
        })
    }) {
        address.insert("use".into(), usage.into());
    }
    if let Some(period) = When::of(node.child("useablePeriod")).period() {
        address.insert("period".into(), period);
    }
    Some(Value::Object(address))
}

/// A TEL element as a ContactPoint (`tel:`, `mailto:`, `fax:`, `http(s):`).
pub(crate) fn contact_point(node: Node) -> Option<Value> {
    if node.is_null() {
        return None;
    }
    let value = node.attr("value")?;
    let (system, text) = if let Some(rest) = value.strip_prefix("tel:") {
        ("phone", rest)
    } else if let Some(rest) = value.strip_prefix("mailto:") {
        ("email", rest)
    } else if let Some(rest) = value.strip_prefix("fax:") {
        ("fax", rest)
    } else if value.starts_with("http:") || value.starts_with("https:") {
        ("url", value)
    } else {
        ("other", value)
    };
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut contact = Map::new();
    contact.insert("system".into(), system.into());
    contact.insert("value".into(), text.into());
    if let Some(usage) = node.attr("use").and_then(|u| {
        Some(match u.split_whitespace().next()? {
            "H" | "HP" | "HV" => "home",
            "WP" | "DIR" | "PUB" => "work",
            "MC" | "PG" => "mobile",
            "TMP" => "temp",
            _ => return None,
        })
    }) {
        contact.insert("use".into(), usage.into());
    }
    Some(Value::Object(contact))
}

/// Puts an element's `telecom`s (as ContactPoints) and `addr`s (as Addresses) on a resource.
pub(crate) fn put_contacts(resource: &mut Map<String, Value>, node: Node) {
    put_telecoms(resource, node);
    put_list(
        resource,
        "address",
        node.children_named("addr")
            .into_iter()
            .filter_map(address)
            .collect(),
    );
}

/// Puts an element's `telecom`s on a resource, as ContactPoints.
pub(crate) fn put_telecoms(resource: &mut Map<String, Value>, node: Node) {
    put_list(
        resource,
        "telecom",
        node.children_named("telecom")
            .into_iter()
            .filter_map(contact_point)
            .collect(),
    );
}

/// Puts `value` at `key` unless it is None.
pub(crate) fn put(resource: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        resource.insert(key.into(), value);
    }
}

/// Puts a list at `key` unless it is empty.
pub(crate) fn put_list(resource: &mut Map<String, Value>, key: &str, values: Vec<Value>) {
    if !values.is_empty() {
        resource.insert(key.into(), Value::Array(values));
    }
}

/// A CodeableConcept with one coding of a FHIR code system.
pub(crate) fn fhir_concept(system: &str, code: &str, display: &str) -> Value {
    json!({ "coding": [{ "system": system, "code": code, "display": display }], "text": display })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_keep_their_precision_and_zone() {
        assert_eq!(ts("2014").as_deref(), Some("2014"));
        assert_eq!(ts("201403").as_deref(), Some("2014-03"));
        assert_eq!(ts("20140302").as_deref(), Some("2014-03-02"));
        assert_eq!(
            ts("20140302124536-0500").as_deref(),
            Some("2014-03-02T12:45:36-05:00")
        );
        assert_eq!(
            ts("201403021245+0100").as_deref(),
            Some("2014-03-02T12:45:00+01:00")
        );
        assert_eq!(
            ts("20140302124536.25+0000").as_deref(),
            Some("2014-03-02T12:45:36.25+00:00")
        );
        // No zone: only the date is certain.
        assert_eq!(ts("20140302124536").as_deref(), Some("2014-03-02"));
        assert_eq!(ts("20141302"), None);
        // An odd number of time digits, or a time out of range, is not a time.
        assert_eq!(ts("2014030200908-0500"), None);
        assert_eq!(ts("2014032124536-0500"), None);
        assert_eq!(ts("20140302250000-0500"), None);
        assert_eq!(ts("201413"), None);
        // Days that no month has.
        assert_eq!(ts("20230230"), None);
        assert_eq!(ts("20230431"), None);
        assert_eq!(ts("20240229").as_deref(), Some("2024-02-29"));
        assert_eq!(ts("21000229"), None);
        assert_eq!(ts("soon"), None);
        assert_eq!(ts(""), None);
    }

    #[test]
    fn decimals_are_kept_as_written() {
        assert_eq!(decimal("7.10").unwrap().to_string(), "7.10");
        assert_eq!(decimal("007").unwrap().to_string(), "7");
        assert_eq!(decimal("-0.5").unwrap().to_string(), "-0.5");
        assert_eq!(decimal("1e3"), None);
        assert_eq!(decimal("7."), None);
        assert_eq!(decimal("abc"), None);
    }

    #[test]
    fn oids_become_fhir_systems() {
        assert_eq!(system_uri("2.16.840.1.113883.6.1"), "http://loinc.org");
        assert_eq!(system_uri("1.2.3"), "urn:oid:1.2.3");
        assert_eq!(
            system_uri("8DFF4B72-E8FE-11E4-B48A-460231621F93"),
            "urn:uuid:8dff4b72-e8fe-11e4-b48a-460231621f93"
        );
    }

    /// Runs `check` on the first `<value>` of a small document whose section narrative has
    /// `<content ID="n1">Penicillin G</content>`.
    fn with_value(value: &str, check: impl FnOnce(Node, &Narrative)) {
        let xml = format!(
            "<ClinicalDocument xmlns=\"urn:hl7-org:v3\" \
             xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><section><text>\
             <content ID=\"n1\">Penicillin G</content></text><entry>{value}</entry></section>\
             </ClinicalDocument>"
        );
        let document = roxmltree::Document::parse(&xml).unwrap();
        let narrative = Narrative::index(&document);
        let node = document
            .descendants()
            .find(|n| n.is_element() && n.tag_name().name() == "value")
            .unwrap();
        check(node, &narrative);
    }

    #[test]
    fn a_code_keeps_its_translations_and_its_narrative_text() {
        with_value(
            r##"<value xsi:type="CD" code="7980" codeSystem="2.16.840.1.113883.6.88" displayName="penicillin G"><originalText><reference value="#n1"/></originalText><translation code="373270004" codeSystem="2.16.840.1.113883.6.96" displayName="Penicillin"/></value>"##,
            |node, narrative| {
                let concept = concept(node, narrative).unwrap();
                assert_eq!(
                    concept["coding"][0]["system"],
                    "http://www.nlm.nih.gov/research/umls/rxnorm"
                );
                assert_eq!(concept["coding"][0]["code"], "7980");
                assert_eq!(concept["coding"][1]["system"], "http://snomed.info/sct");
                assert_eq!(concept["coding"][1]["code"], "373270004");
                assert_eq!(
                    concept["text"], "Penicillin G",
                    "the narrative the reference points at"
                );
            },
        );
    }

    #[test]
    fn a_null_code_keeps_only_what_it_says() {
        // Coded as "other" with the words in the narrative: text only, no empty coding.
        with_value(
            r##"<value xsi:type="CD" nullFlavor="OTH"><originalText><reference value="#n1"/></originalText></value>"##,
            |node, narrative| {
                let concept = concept(node, narrative).unwrap();
                assert!(concept.get("coding").is_none(), "{concept}");
                assert_eq!(concept["text"], "Penicillin G");
            },
        );
        // Nothing at all: no concept, and no value.
        with_value(
            r#"<value xsi:type="CD" nullFlavor="UNK"/>"#,
            |node, narrative| {
                assert_eq!(concept(node, narrative), None);
                assert_eq!(observation_value(node, narrative), None);
            },
        );
        with_value(
            r#"<value xsi:type="PQ" nullFlavor="NI"/>"#,
            |node, narrative| {
                assert_eq!(observation_value(node, narrative), None);
            },
        );
        // A reference to an ID the narrative does not have falls back to the element's own text.
        with_value(
            r##"<value xsi:type="ST"><reference value="#missing"/>yellow</value>"##,
            |node, narrative| {
                assert_eq!(
                    observation_value(node, narrative),
                    Some(("valueString", json!("yellow")))
                );
            },
        );
    }

    #[test]
    fn ranges_and_one_sided_intervals() {
        with_value(
            r#"<value xsi:type="IVL_PQ"><low value="4.50" unit="10*3/uL"/><high value="11.0" unit="10*3/uL"/></value>"#,
            |node, narrative| {
                let (key, range) = observation_value(node, narrative).unwrap();
                assert_eq!(key, "valueRange");
                assert_eq!(
                    range["low"]["value"].to_string(),
                    "4.50",
                    "decimals as written"
                );
                assert_eq!(range["high"]["code"], "10*3/uL");
            },
        );
        with_value(
            r#"<value xsi:type="IVL_PQ"><low value="200" unit="mg/dL" inclusive="false"/></value>"#,
            |node, narrative| {
                let (key, quantity) = observation_value(node, narrative).unwrap();
                assert_eq!(key, "valueQuantity");
                assert_eq!(quantity["comparator"], ">");
                assert_eq!(quantity["value"].to_string(), "200");
            },
        );
        with_value(
            r#"<value xsi:type="IVL_PQ"><high value="0.5" unit="ng/mL"/></value>"#,
            |node, narrative| {
                let (_, quantity) = observation_value(node, narrative).unwrap();
                assert_eq!(quantity["comparator"], "<=");
            },
        );
        with_value(
            r#"<value xsi:type="RTO_PQ_PQ"><numerator value="1" unit="1"/><denominator value="80" unit="1"/></value>"#,
            |node, narrative| {
                let (key, ratio) = observation_value(node, narrative).unwrap();
                assert_eq!(key, "valueRatio");
                assert_eq!(ratio["denominator"]["value"].to_string(), "80");
            },
        );
    }
}
