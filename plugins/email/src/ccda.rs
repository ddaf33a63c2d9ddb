//! Telling a C-CDA document (HL7 v3 `ClinicalDocument`) attached to an email from other XML, and
//! its header (the document's type, title and time) for one that cannot be converted. Only the
//! header is read, which comes before the first section, so reading stops long before the end of
//! a large document. The whole document is kept as a Binary by the caller.

use quick_xml::NsReader;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

const HL7_V3: &str = "urn:hl7-org:v3";
const LOINC_OID: &str = "2.16.840.1.113883.6.1";

/// What a C-CDA header says about the document.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Header {
    pub(crate) code: Option<Code>,
    pub(crate) title: Option<String>,
    /// The raw HL7 TS value, e.g. `201308151030-0800`.
    pub(crate) effective_time: Option<String>,
}

#[derive(Debug, PartialEq)]
pub(crate) struct Code {
    pub(crate) code: String,
    pub(crate) display: Option<String>,
    /// The FHIR system: `http://loinc.org` for LOINC, else `urn:oid:<codeSystem>`.
    pub(crate) system: Option<String>,
}

/// The header of a C-CDA document, or None when `xml`'s root element is not an HL7 v3
/// `ClinicalDocument`.
pub(crate) fn read_header(xml: &str) -> Option<Header> {
    let mut reader = NsReader::from_str(xml);
    let mut header = Header::default();
    let mut depth = 0usize;
    // Some while inside the root's <title>: its text so far.
    let mut title: Option<String> = None;
    loop {
        let (namespace, event) = match reader.read_resolved_event() {
            Ok(read) => read,
            // A broken document still is a C-CDA if its root said so: keep what was read.
            Err(_) => return (depth > 0).then_some(header),
        };
        let in_hl7 = matches!(&namespace, ResolveResult::Bound(ns) if ns.as_ref() == HL7_V3);
        match event {
            Event::Start(element) | Event::Empty(element) if depth == 0 => {
                if !(in_hl7 && element.local_name().as_ref() == "ClinicalDocument") {
                    return None;
                }
                depth = 1;
            }
            Event::Start(element) => {
                depth += 1;
                if depth == 2 && in_hl7 {
                    match element.local_name().as_ref() {
                        "title" => title = Some(String::new()),
                        name if ends_header(name) => return Some(header),
                        _ => read_header_field(&element, &mut header),
                    }
                }
            }
            Event::Empty(element) if depth == 1 && in_hl7 => {
                if ends_header(element.local_name().as_ref()) {
                    return Some(header);
                }
                read_header_field(&element, &mut header);
            }
            Event::Text(text) => {
                if let Some(title) = &mut title {
                    title.push_str(&text.xml10_content());
                }
            }
            Event::CData(text) => {
                if let Some(title) = &mut title {
                    title.push_str(&text);
                }
            }
            Event::GeneralRef(reference) => {
                if let Some(title) = &mut title {
                    if let Ok(Some(c)) = reference.resolve_char_ref() {
                        title.push(c);
                    } else if let Some(text) =
                        quick_xml::escape::resolve_predefined_entity(&reference)
                    {
                        title.push_str(text);
                    }
                }
            }
            Event::End(_) => {
                if depth == 2
                    && let Some(text) = title.take()
                {
                    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    if !text.is_empty() {
                        header.title = Some(text);
                    }
                }
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(header);
                }
            }
            Event::Eof => return (depth > 0).then_some(header),
            _ => {}
        }
        if header.code.is_some() && header.title.is_some() && header.effective_time.is_some() {
            return Some(header);
        }
    }
}

/// The header ends where the document's participants and body begin.
fn ends_header(local_name: &str) -> bool {
    matches!(local_name, "recordTarget" | "author" | "component")
}

fn read_header_field(element: &BytesStart<'_>, header: &mut Header) {
    match element.local_name().as_ref() {
        "code" if header.code.is_none() => {
            let Some(code) = attribute(element, "code") else {
                return;
            };
            let system = attribute(element, "codeSystem").map(|oid| {
                if oid == LOINC_OID {
                    "http://loinc.org".to_owned()
                } else {
                    format!("urn:oid:{oid}")
                }
            });
            header.code = Some(Code {
                code,
                display: attribute(element, "displayName"),
                system,
            });
        }
        "effectiveTime" if header.effective_time.is_none() => {
            header.effective_time = attribute(element, "value");
        }
        _ => {}
    }
}

fn attribute(element: &BytesStart<'_>, name: &str) -> Option<String> {
    let attribute = element.try_get_attribute(name).ok()??;
    let value = attribute
        .normalized_value(XmlVersion::Implicit1_0)
        .ok()?
        .trim()
        .to_owned();
    (!value.is_empty()).then_some(value)
}

/// An HL7 v3 timestamp in FHIR terms.
#[derive(Debug, PartialEq)]
pub(crate) enum FhirTime {
    /// Down to at least the hour, with a zone: a FHIR `instant`.
    Instant(String),
    /// A date (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`): FHIR has no instant without a time and zone,
    /// and a time without a zone is not allowed in a FHIR dateTime, so only the date is kept.
    Date(String),
}

/// Converts an HL7 TS (`YYYY[MM[DD[hh[mm[ss[.f+]]]]]][+|-ZZzz]`) to FHIR, or None when it is not
/// one.
pub(crate) fn fhir_time(ts: &str) -> Option<FhirTime> {
    let ts = ts.trim();
    let (local, zone) = match ts.find(['+', '-']) {
        Some(at) => (&ts[..at], Some(&ts[at..])),
        None => (ts, None),
    };
    let (digits, fraction) = match local.split_once('.') {
        Some((digits, fraction)) => (digits, Some(fraction)),
        None => (local, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![4, 6, 8, 10, 12, 14].contains(&digits.len())
    {
        return None;
    }
    let number = |from: usize| -> u32 { digits[from..from + 2].parse().unwrap_or(0) };
    let year = &digits[..4];
    if digits.len() >= 6 && !(1..=12).contains(&number(4)) {
        return None;
    }
    if digits.len() >= 8 && !(1..=31).contains(&number(6)) {
        return None;
    }
    let date = match digits.len() {
        4 => year.to_owned(),
        6 => format!("{year}-{}", &digits[4..6]),
        _ => format!("{year}-{}-{}", &digits[4..6], &digits[6..8]),
    };
    let zone = zone.and_then(fhir_zone);
    if digits.len() < 10 || zone.is_none() {
        return Some(FhirTime::Date(date));
    }
    let hour = number(8);
    let minute = if digits.len() >= 12 { number(10) } else { 0 };
    let second = if digits.len() >= 14 { number(12) } else { 0 };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let fraction = match fraction {
        Some(f) if digits.len() == 14 && !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!(".{f}")
        }
        _ => String::new(),
    };
    let zone = zone.unwrap_or_default();
    Some(FhirTime::Instant(format!(
        "{date}T{hour:02}:{minute:02}:{second:02}{fraction}{zone}"
    )))
}

/// `-0800` → `-08:00`.
fn fhir_zone(zone: &str) -> Option<String> {
    let (sign, rest) = zone.split_at(1);
    if rest.len() != 4 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: u32 = rest[..2].parse().ok()?;
    let minutes: u32 = rest[2..].parse().ok()?;
    if hours > 14 || minutes > 59 {
        return None;
    }
    Some(format!("{sign}{}:{}", &rest[..2], &rest[2..]))
}
