//! Which plugin imports a file, from what plugins declare: the file endings each claims (in
//! `describe`) and the content signatures in its manifest ([`Signature`]). Two plugins may
//! claim `.xml`; the root element tells an Apple Health export from a C-CDA document, so no
//! plugin id is written into the host. The Plugins page's conflicts ([`conflicts`]) follow the
//! same rule as [`route`].
//!
//! A file is looked at only through a bounded prefix ([`HEAD_BYTES`]): a root element after
//! more than that (a huge DOCTYPE) is not found, and the file is described by how it starts. A
//! zip's central directory is read whole, as the plugins themselves do; it is small next to the
//! zip.

use std::io::Read;
use std::path::Path;

use crate::plugins::manifest::Signature;

/// How much of a file is looked at. Apple Health's export.xml opens with a DOCTYPE of about
/// 10 KiB before its root element.
pub const HEAD_BYTES: usize = 64 << 10;

/// What a look at a file found.
#[derive(Debug, Clone, Default)]
pub struct Content {
    /// The start of the file as text (UTF-8, or UTF-16 by its byte-order mark or by `<` as
    /// the first unit), without the byte-order mark.
    text: String,
    /// True when the start has bytes text never has (NUL, in a file not read as UTF-16).
    binary: bool,
    /// The local name of the root element, when the start is XML up to its root.
    xml_root: Option<String>,
    zip: Archive,
}

#[derive(Debug, Clone, Default)]
enum Archive {
    #[default]
    NotZip,
    /// The member paths, in the central directory's order.
    Members(Vec<String>),
    /// It starts like a zip, but its directory could not be read.
    Unreadable(String),
}

impl Content {
    /// Looks at a file. A file that cannot be read looks empty (the plugin, or the caller,
    /// reports the error of reading it).
    pub fn of_file(path: &Path) -> Content {
        let mut head = Vec::with_capacity(HEAD_BYTES.min(8192));
        let read = std::fs::File::open(path)
            .and_then(|f| f.take(HEAD_BYTES as u64).read_to_end(&mut head));
        if read.is_err() {
            return Content::default();
        }
        let mut content = Content::of_head(&head);
        if is_zip(&head) {
            content.zip = match std::fs::File::open(path)
                .map_err(zip::result::ZipError::Io)
                .and_then(zip::ZipArchive::new)
            {
                Ok(archive) => Archive::Members(archive.file_names().map(str::to_string).collect()),
                Err(e) => Archive::Unreadable(e.to_string()),
            };
        }
        content
    }

    /// Looks at the first bytes of a file; a zip's members are not listed from these.
    pub fn of_head(head: &[u8]) -> Content {
        let (text, utf16) = decode(head);
        let binary = !utf16 && head.contains(&0);
        let xml_root = if binary { None } else { xml_root(&text) };
        Content {
            text,
            binary,
            xml_root,
            zip: if is_zip(head) {
                Archive::Unreadable("only its start was read".into())
            } else {
                Archive::NotZip
            },
        }
    }

    /// Whether the file is what `signature` describes.
    pub fn matches(&self, signature: &Signature) -> bool {
        match signature {
            Signature::XmlRoot(root) => self.xml_root.as_deref() == Some(root.as_str()),
            Signature::ZipMember(pattern) => match &self.zip {
                Archive::Members(members) => members.iter().any(|m| glob_matches(pattern, m)),
                _ => false,
            },
            Signature::StartsWith(prefix) => {
                !self.binary && self.text.trim_start().starts_with(prefix.as_str())
            }
        }
    }

    /// What the file is, in words that finish "it …" for a message: "is XML whose root is
    /// <svg>", "is a zip of 3 files (a.txt, b.txt, c.txt)".
    pub fn describe(&self) -> String {
        match &self.zip {
            Archive::Members(members) => {
                const SHOWN: usize = 3;
                let mut names: Vec<&str> = members.iter().take(SHOWN).map(String::as_str).collect();
                if members.len() > SHOWN {
                    names.push("…");
                }
                return match members.len() {
                    0 => "is an empty zip".into(),
                    1 => format!("is a zip of 1 file ({})", names[0]),
                    n => format!("is a zip of {n} files ({})", names.join(", ")),
                };
            }
            Archive::Unreadable(error) => {
                return format!("looks like a zip but cannot be read ({error})");
            }
            Archive::NotZip => {}
        }
        if let Some(root) = &self.xml_root {
            return format!("is XML whose root is <{root}>");
        }
        if self.binary {
            return "is not text".into();
        }
        let text = self.text.trim_start();
        if text.is_empty() {
            return "is empty".into();
        }
        let start: String = text
            .chars()
            .take(12)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        format!("starts with “{}”", start.trim_end())
    }
}

fn is_zip(head: &[u8]) -> bool {
    // A local file header, or the end record of an empty zip.
    head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06")
}

/// The prefix as text, and whether it was read as UTF-16. A character cut at the end of the
/// prefix becomes U+FFFD, which no signature looks at.
fn decode(head: &[u8]) -> (String, bool) {
    let utf16 = |bytes: &[u8], unit: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|pair| unit([pair[0], pair[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    };
    if let Some(rest) = head.strip_prefix(b"\xEF\xBB\xBF") {
        (String::from_utf8_lossy(rest).into_owned(), false)
    } else if let Some(rest) = head.strip_prefix(b"\xFF\xFE") {
        (utf16(rest, u16::from_le_bytes), true)
    } else if let Some(rest) = head.strip_prefix(b"\xFE\xFF") {
        (utf16(rest, u16::from_be_bytes), true)
    } else if head.starts_with(b"<\0") {
        // XML in UTF-16 without a byte-order mark, as the XML spec's appendix F detects it.
        (utf16(head, u16::from_le_bytes), true)
    } else if head.starts_with(b"\0<") {
        (utf16(head, u16::from_be_bytes), true)
    } else {
        (String::from_utf8_lossy(head).into_owned(), false)
    }
}

/// The local name of the root element of the XML that `text` starts with, skipping whitespace,
/// the XML declaration, processing instructions, comments and the DOCTYPE (with an internal
/// subset). None when `text` is not XML up to its root element.
pub fn xml_root(text: &str) -> Option<String> {
    // quick-xml walks the prolog as a parser should (declaration, comments, processing
    // instructions, a DOCTYPE with its internal subset) up to the first element.
    let mut reader = quick_xml::Reader::from_str(text.trim_start_matches('\u{feff}'));
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(element) | quick_xml::events::Event::Empty(element) => {
                let local = element.local_name();
                let local: &str = local.into_inner();
                // quick-xml does not check names: "<1abc>" or "< spaced>" is not an element.
                let starts_a_name = |c: char| c.is_alphabetic() || c == '_' || !c.is_ascii();
                return local.starts_with(starts_a_name).then(|| local.to_string());
            }
            quick_xml::events::Event::Text(text) if text.as_ref().trim().is_empty() => {}
            quick_xml::events::Event::Decl(_)
            | quick_xml::events::Event::Comment(_)
            | quick_xml::events::Event::PI(_)
            | quick_xml::events::Event::DocType(_) => {}
            _ => return None,
        }
    }
}

/// Whether a zip member's path matches a signature's glob: `*` is any run of characters
/// (slashes too), everything else is itself, compared without regard to ASCII case.
pub fn glob_matches(pattern: &str, path: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let path = path.to_ascii_lowercase();
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = path.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole path is the pattern.
        return rest.is_empty();
    };
    // Each middle part at its first place leaves the most room for the rest.
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// What one importer declares. Claims are tried in the order importers are
/// ([`crate::plugins::PluginHost::file_importers`]): bundled ones first, then dropped-in ones by
/// id.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// (extensions, lower-case without the dot; what the plugin calls such a file).
    pub file_types: Vec<(Vec<String>, &'a str)>,
    pub signatures: &'a [Signature],
}

impl Claim<'_> {
    /// The longest of this claim's extensions that `name` (lower-case) ends with, dot included.
    fn ending(&self, name: &str) -> Option<String> {
        self.file_types
            .iter()
            .flat_map(|(extensions, _)| extensions)
            .map(|ext| format!(".{ext}"))
            .filter(|ending| name.ends_with(ending.as_str()))
            .max_by_key(String::len)
    }

    fn recognises(&self, content: &Content) -> bool {
        self.signatures.iter().any(|s| content.matches(s))
    }
}

/// Why no plugin takes a file, in words that finish "Fasten cannot import <file>: …".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No plugin claims the file's ending, and none recognises its content.
    Unclaimed(String),
    /// Plugins claim the ending, but each has signatures and none matches.
    NotRecognised(String),
}

/// Picks the claim whose plugin imports a file named `name` with this content:
/// - the candidates are the claims of the name's ending; the first whose signature matches
///   wins, else the first with no signatures (the fallback); when every candidate has
///   signatures and none matches, the file is refused, saying what it is;
/// - a file whose ending nobody claims goes to the first claim whose signature matches.
pub fn route(claims: &[Claim], name: &str, content: &Content) -> Result<usize, Refusal> {
    let lower = name.to_ascii_lowercase();
    let candidates: Vec<usize> = (0..claims.len())
        .filter(|&i| claims[i].ending(&lower).is_some())
        .collect();
    if candidates.is_empty() {
        if let Some(i) = claims.iter().position(|c| c.recognises(content)) {
            return Ok(i);
        }
        let known: Vec<&str> = claims
            .iter()
            .flat_map(|c| c.file_types.iter().map(|(_, description)| *description))
            .collect();
        return Err(Refusal::Unclaimed(if known.is_empty() {
            "no import plugin is loaded".into()
        } else {
            format!(
                "it is none of the kinds of file Fasten knows: {}",
                known.join("; ")
            )
        }));
    }
    let recognised = candidates.iter().find(|&&i| claims[i].recognises(content));
    let fallback = candidates
        .iter()
        .find(|&&i| claims[i].signatures.is_empty());
    if let Some(&i) = recognised.or(fallback) {
        return Ok(i);
    }
    let ending = candidates
        .iter()
        .filter_map(|&i| claims[i].ending(&lower))
        .max_by_key(String::len)
        .expect("every candidate claims the ending");
    let mut kinds: Vec<&str> = Vec::new();
    for &i in &candidates {
        for (extensions, description) in &claims[i].file_types {
            if extensions.iter().any(|ext| format!(".{ext}") == ending)
                && !kinds.contains(description)
            {
                kinds.push(description);
            }
        }
    }
    Err(Refusal::NotRecognised(format!(
        "it {}, which is none of the kinds of {ending} file Fasten knows: {}",
        content.describe(),
        kinds.join("; ")
    )))
}

/// For each claim, the endings it is not given and the claim that keeps each, following
/// [`route`]: a claim with no signatures is not given an ending an earlier claim with no
/// signatures has (that one is the fallback), and a claim with signatures is not given an ending
/// when every one of its signatures is also an earlier claimant's. Claims told apart by
/// signatures are no conflict.
pub fn conflicts(claims: &[Claim]) -> Vec<Vec<(String, usize)>> {
    claims
        .iter()
        .enumerate()
        .map(|(j, claim)| {
            let mut lost: Vec<(String, usize)> = Vec::new();
            let endings: Vec<&String> = claim
                .file_types
                .iter()
                .flat_map(|(extensions, _)| extensions)
                .collect();
            for ext in endings {
                if lost.iter().any(|(e, _)| e == ext) {
                    continue;
                }
                let earlier: Vec<usize> = (0..j)
                    .filter(|&i| {
                        claims[i]
                            .file_types
                            .iter()
                            .any(|(extensions, _)| extensions.contains(ext))
                    })
                    .collect();
                let keeper = if claim.signatures.is_empty() {
                    earlier
                        .iter()
                        .find(|&&i| claims[i].signatures.is_empty())
                        .copied()
                } else {
                    let shadowed = claim
                        .signatures
                        .iter()
                        .all(|s| earlier.iter().any(|&i| claims[i].signatures.contains(s)));
                    shadowed
                        .then(|| {
                            earlier
                                .iter()
                                .find(|&&i| {
                                    claims[i]
                                        .signatures
                                        .iter()
                                        .any(|s| claim.signatures.contains(s))
                                })
                                .copied()
                        })
                        .flatten()
                };
                if let Some(i) = keeper {
                    lost.push((ext.clone(), i));
                }
            }
            lost
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim<'a>(name: &'a str, exts: &[&str], signatures: &'a [Signature]) -> Claim<'a> {
        Claim {
            file_types: vec![(exts.iter().map(|e| e.to_string()).collect(), name)],
            signatures,
        }
    }

    #[test]
    fn files_go_by_ending_then_by_signature_then_to_the_unsigned_fallback() {
        let apple = [
            Signature::XmlRoot("HealthData".into()),
            Signature::ZipMember("*/export.xml".into()),
        ];
        let ccda = [
            Signature::XmlRoot("ClinicalDocument".into()),
            Signature::ZipMember("IHE_XDM/*".into()),
        ];
        let fhir = [Signature::StartsWith("{".into())];
        let claims = [
            claim("Apple Health export", &["xml", "zip"], &apple),
            claim("C-CDA document", &["xml", "zip"], &ccda),
            claim("FHIR", &["json", "ndjson"], &fhir),
            claim("Lab CSV", &["csv"], &[]),
            claim("Other JSON", &["json"], &[]),
        ];
        let route = |name: &str, head: &[u8]| route(&claims, name, &Content::of_head(head));
        assert_eq!(
            route("export.xml", b"<?xml version=\"1.0\"?><HealthData>"),
            Ok(0)
        );
        assert_eq!(
            route("CCD.XML", b"<ClinicalDocument xmlns=\"urn:hl7-org:v3\">"),
            Ok(1)
        );
        assert_eq!(route("b.json", b"{\"resourceType\":\"Bundle\"}"), Ok(2));
        // An unsigned claimant of the ending takes what no signature recognises.
        assert_eq!(route("b.json", b"[1, 2]"), Ok(4));
        assert_eq!(route("labs.csv", b"anything"), Ok(3));
        // No one claims the ending: the signatures decide.
        assert_eq!(route("download", b"\xEF\xBB\xBF {\"a\": 1}"), Ok(2));
        assert_eq!(route("export", b"<HealthData>"), Ok(0));
        assert_eq!(
            route("photo.jpg", b"\xFF\xD8\xFF\0"),
            Err(Refusal::Unclaimed(
                "it is none of the kinds of file Fasten knows: Apple Health export; C-CDA \
                 document; FHIR; Lab CSV; Other JSON"
                    .into()
            ))
        );
        assert_eq!(
            route(
                "drawing.xml",
                b"<?xml version=\"1.0\"?>\n<svg:svg xmlns:svg=\"x\">"
            ),
            Err(Refusal::NotRecognised(
                "it is XML whose root is <svg>, which is none of the kinds of .xml file Fasten \
                 knows: Apple Health export; C-CDA document"
                    .into()
            ))
        );
    }

    #[test]
    fn conflicts_are_only_claims_nothing_tells_apart() {
        let apple = [Signature::XmlRoot("HealthData".into())];
        let ccda = [Signature::XmlRoot("ClinicalDocument".into())];
        let fhir = [Signature::StartsWith("{".into())];
        let claims = [
            claim("Apple Health", &["xml", "zip"], &apple),
            claim("FHIR", &["json"], &fhir),
            claim("Lab CSV", &["csv"], &[]),
            // Dropped in, after the bundled ones:
            claim("C-CDA", &["xml"], &ccda),
            claim("Another Apple", &["xml"], &apple),
            claim("CSV too", &["csv", "json"], &[]),
            claim("CSV three", &["csv"], &[]),
        ];
        let lost = conflicts(&claims);
        assert_eq!(lost[0], []);
        assert_eq!(lost[3], [], "told apart by its root element");
        assert_eq!(
            lost[4],
            [("xml".to_string(), 0)],
            "the same signature as Apple Health's"
        );
        // Neither has a signature: the bundled one keeps .csv; FHIR's .json files are told apart.
        assert_eq!(lost[5], [("csv".to_string(), 2)]);
        assert_eq!(lost[6], [("csv".to_string(), 2)]);
    }

    #[test]
    fn the_root_is_found_past_a_bom_the_prolog_comments_pis_and_a_doctype() {
        let cases = [
            ("<HealthData locale=\"en\">", Some("HealthData")),
            ("\u{feff}  \n<ClinicalDocument/>", Some("ClinicalDocument")),
            (
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<?xml-stylesheet type=\"text/xsl\" href=\"CDA.xsl\"?>\n<!-- a comment with <tags> -->\n<ClinicalDocument xmlns=\"urn:hl7-org:v3\">",
                Some("ClinicalDocument"),
            ),
            (
                "<?xml version=\"1.0\"?>\n<!DOCTYPE HealthData [\n<!-- HealthKit Export Version: 13 -->\n<!ELEMENT HealthData (ExportDate,Me,(Record|Workout)*)>\n<!ATTLIST HealthData locale CDATA #REQUIRED>\n<!ENTITY gt \">\">\n]>\n<HealthData locale=\"en_US\">",
                Some("HealthData"),
            ),
            (
                "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0//EN\" \"x>y\"><html>",
                Some("html"),
            ),
            (
                "<cda:ClinicalDocument xmlns:cda=\"urn:hl7-org:v3\">",
                Some("ClinicalDocument"),
            ),
            ("<root>", Some("root")),
            // Not XML, or not up to its root within what was read.
            ("{\"resourceType\": \"Bundle\"}", None),
            ("<?xml version=\"1.0\"", None),
            ("<!-- never closed", None),
            ("<!DOCTYPE x [ <!ELEMENT x ANY>", None),
            ("<ClinicalDocu", None),
            ("< spaced>", None),
            ("<1abc>", None),
            ("", None),
        ];
        for (text, root) in cases {
            assert_eq!(xml_root(text).as_deref(), root, "{text}");
        }
    }

    #[test]
    fn utf16_xml_is_read_with_or_without_a_bom() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><HealthData>";
        let le: Vec<u8> = xml.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be: Vec<u8> = xml.encode_utf16().flat_map(u16::to_be_bytes).collect();
        for bytes in [
            [&b"\xFF\xFE"[..], &le].concat(),
            [&b"\xFE\xFF"[..], &be].concat(),
            le,
            be,
        ] {
            let content = Content::of_head(&bytes);
            assert!(
                content.matches(&Signature::XmlRoot("HealthData".into())),
                "{content:?}"
            );
        }
    }

    #[test]
    fn starts_with_skips_a_bom_and_whitespace() {
        let brace = Signature::StartsWith("{".into());
        for text in [&b"{}"[..], b"\xEF\xBB\xBF\n  {\"a\":1}", b"\r\n\t{"] {
            assert!(Content::of_head(text).matches(&brace), "{text:?}");
        }
        for text in [&b"[{}]"[..], b"", b"x{", b"\0{"] {
            assert!(!Content::of_head(text).matches(&brace), "{text:?}");
        }
    }

    #[test]
    fn a_namespaced_root_matches_by_its_local_name() {
        let content = Content::of_head(
            b"<?xml version=\"1.0\"?><cda:ClinicalDocument xmlns:cda=\"urn:hl7-org:v3\">",
        );
        assert!(content.matches(&Signature::XmlRoot("ClinicalDocument".into())));
        assert!(!content.matches(&Signature::XmlRoot("HealthData".into())));
        assert_eq!(
            content.describe(),
            "is XML whose root is <ClinicalDocument>"
        );
    }

    #[test]
    fn globs_match_whole_paths_with_stars_for_any_run() {
        let cases = [
            ("IHE_XDM/*", "IHE_XDM/SUBSET01/DOC0001.XML", true),
            ("IHE_XDM/*", "ihe_xdm/subset01/doc0001.xml", true),
            ("IHE_XDM/*", "export/IHE_XDM/x.xml", false),
            ("*/IHE_XDM/*", "export/IHE_XDM/x.xml", true),
            ("export.xml", "export.xml", true),
            ("export.xml", "apple_health_export/export.xml", false),
            ("*/export.xml", "apple_health_export/export.xml", true),
            ("*/export.xml", "apple_health_export/export_cda.xml", false),
            ("*export.xml", "export.xml", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "a-c-b", false),
            ("a*b*c", "axbxbxc", true),
            ("*.xml", "x.xml.gz", false),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(glob_matches(pattern, path), expected, "{pattern} {path}");
        }
    }

    #[test]
    fn a_zip_is_matched_by_its_members_and_described_by_them() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("download.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for name in [
            "INDEX.HTM",
            "README.TXT",
            "IHE_XDM/SUBSET01/DOC0001.XML",
            "x",
        ] {
            zip.start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(b"<x/>").unwrap();
        }
        zip.finish().unwrap();
        let content = Content::of_file(&path);
        assert!(content.matches(&Signature::ZipMember("ihe_xdm/*".into())));
        assert!(!content.matches(&Signature::ZipMember("*/export.xml".into())));
        assert!(!content.matches(&Signature::StartsWith("PK".into())));
        assert_eq!(
            content.describe(),
            "is a zip of 4 files (INDEX.HTM, README.TXT, IHE_XDM/SUBSET01/DOC0001.XML, …)"
        );

        std::fs::write(&path, b"PK\x03\x04 cut short").unwrap();
        let cut = Content::of_file(&path);
        assert!(!cut.matches(&Signature::ZipMember("*".into())));
        assert!(
            cut.describe()
                .starts_with("looks like a zip but cannot be read")
        );
    }

    #[test]
    fn other_files_are_described_by_how_they_start() {
        assert_eq!(Content::of_head(b"  \n").describe(), "is empty");
        assert_eq!(
            Content::of_head(b"\x89PNG\r\n\x1a\n\0\0").describe(),
            "is not text"
        );
        assert_eq!(
            Content::of_head(b"date,test,value\n2024-01-01").describe(),
            "starts with “date,test,va”"
        );
    }
}
