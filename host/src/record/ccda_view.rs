//! A C-CDA document as a readable page: its title, authors and date, then each section's title
//! and narrative, for the document's card in Explore.
//!
//! The narrative is turned into HTML through an allow-list ([`narrative_html`]): each CDA
//! narrative element maps to a fixed HTML element written here, the only attributes that pass
//! are a table cell's `colspan` and `rowspan` as numbers, and every piece of text goes through
//! minijinja's HTML escaping, the same as the templates'. Nothing from the document can become
//! a script, a style, an event handler or a reference to anything outside the page: unknown
//! elements (an `<img>`, a `<script>`) give their text only, `linkHtml` its text without the
//! link, and `renderMultiMedia` nothing.

use std::fmt::Write;

use minijinja::HtmlEscape;
use roxmltree::{Document, Node, ParsingOptions};

/// The CDA namespace: the document and its narrative elements are in it.
const HL7_V3: &str = "urn:hl7-org:v3";
/// Larger documents are not shown (their download link stays): the largest real documents are
/// a few MiB.
pub const MAX_BYTES: usize = 16 << 20;
/// Nested sections beyond this are shown at this level; narrative nested deeper than
/// [`MAX_DEPTH`] elements is shown as its text, so no document can exhaust the stack.
const MAX_SECTION_LEVEL: usize = 4;
const MAX_DEPTH: usize = 48;

/// What the page shows of one C-CDA document.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DocumentView {
    pub title: Option<String>,
    /// "Henry Seven, Good Health Clinic", one per author.
    pub authors: Vec<String>,
    /// When the document was made, as Unix seconds, when it says the time of day (the pages show
    /// it with the `datetime` filter) …
    pub time: Option<i64>,
    /// … or else its date as the pages write dates: "6 Aug 2012" (or "Aug 2012", "2012").
    pub date: Option<String>,
    pub sections: Vec<SectionView>,
}

/// One section, in document order; a nested section follows its parent with a higher level.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SectionView {
    pub title: Option<String>,
    /// 1 for a top-level section, up to [`MAX_SECTION_LEVEL`].
    pub level: usize,
    /// The narrative as HTML that is safe to put in the page as it is.
    pub html: String,
}

/// The document `bytes` hold, when they are a C-CDA document (XML whose root is
/// `ClinicalDocument` in the HL7 v3 namespace); None for anything else, or XML that does not
/// parse.
pub fn view(bytes: &[u8]) -> Option<DocumentView> {
    if bytes.len() > MAX_BYTES {
        return None;
    }
    let text = std::str::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)).ok()?;
    let options = ParsingOptions {
        // CDA documents have no DTD; refusing one leaves no entity expansion to worry about.
        allow_dtd: false,
        ..ParsingOptions::default()
    };
    let document = Document::parse_with_options(text, options).ok()?;
    let root = document.root_element();
    if !is(root, "ClinicalDocument") {
        return None;
    }
    let (time, date) = child(root, "effectiveTime")
        .and_then(|t| t.attribute("value"))
        .map(cda_time)
        .unwrap_or_default();
    let date = date.as_deref().map(crate::fhir::read::date);
    let mut sections = Vec::new();
    if let Some(body) = child(root, "component").and_then(|c| child(c, "structuredBody")) {
        for section in children(body, "component").filter_map(|c| child(c, "section")) {
            add_section(section, 1, &mut sections);
        }
    }
    Some(DocumentView {
        title: child(root, "title")
            .map(plain_text)
            .or_else(|| {
                child(root, "code")
                    .and_then(|c| c.attribute("displayName"))
                    .map(str::to_string)
            })
            .filter(|t| !t.is_empty()),
        authors: authors(root),
        time,
        date,
        sections,
    })
}

fn add_section(section: Node, level: usize, out: &mut Vec<SectionView>) {
    let html = child(section, "text")
        .map(|text| narrative_html(text))
        .unwrap_or_default();
    out.push(SectionView {
        title: child(section, "title")
            .map(plain_text)
            .filter(|t| !t.is_empty()),
        level,
        html,
    });
    for nested in children(section, "component").filter_map(|c| child(c, "section")) {
        add_section(nested, (level + 1).min(MAX_SECTION_LEVEL), out);
    }
}

/// "Henry Seven, Good Health Clinic" for each author: the person's name and their
/// organisation, either alone when the other is missing.
fn authors(root: Node) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for author in children(root, "author").filter_map(|a| child(a, "assignedAuthor")) {
        let person = child(author, "assignedPerson")
            .and_then(|p| child(p, "name"))
            .map(person_name);
        let organization = child(author, "representedOrganization")
            .and_then(|o| child(o, "name"))
            .map(plain_text);
        let words: Vec<String> = [person, organization]
            .into_iter()
            .flatten()
            .filter(|w| !w.is_empty())
            .collect();
        let line = words.join(", ");
        if !line.is_empty() && !found.contains(&line) {
            found.push(line);
        }
    }
    found
}

/// A CDA person name: prefix, given names, family name and suffix in reading order, or its
/// text when it is not split into parts.
fn person_name(name: Node) -> String {
    let parts: Vec<String> = ["prefix", "given", "family", "suffix"]
        .into_iter()
        .flat_map(|part| children(name, part))
        .map(plain_text)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        plain_text(name)
    } else {
        parts.join(" ")
    }
}

/// A CDA timestamp (`YYYYMMDDHHMMSS.UUUU±ZZZZ`, cut anywhere after the year): Unix seconds when
/// it has the time of day (UTC when it names no zone), else its date as ISO 8601.
fn cda_time(value: &str) -> (Option<i64>, Option<String>) {
    let (digits, zone) = match value.find(['+', '-']) {
        Some(at) => (&value[..at], Some(&value[at..])),
        None => (value, None),
    };
    let digits = digits.split('.').next().unwrap_or(digits);
    if digits.len() < 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return (None, None);
    }
    fn number<T: std::str::FromStr>(digits: &str, range: std::ops::Range<usize>) -> Option<T> {
        digits.get(range).and_then(|d| d.parse().ok())
    }
    let year: Option<i32> = number(digits, 0..4);
    let (month, day): (Option<u8>, Option<u8>) = (number(digits, 4..6), number(digits, 6..8));
    let (hour, minute, second): (Option<u8>, Option<u8>, Option<u8>) = (
        number(digits, 8..10),
        number(digits, 10..12),
        number(digits, 12..14),
    );
    if let (Some(year), Some(month), Some(day), Some(hour)) = (year, month, day, hour) {
        let offset = zone
            .filter(|z| z.len() == 5)
            .and_then(|z| {
                let sign: i8 = if z.starts_with('-') { -1 } else { 1 };
                let hours: i8 = z[1..3].parse().ok()?;
                let minutes: i8 = z[3..5].parse().ok()?;
                time::UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
            })
            .unwrap_or(time::UtcOffset::UTC);
        let at = time::Month::try_from(month)
            .ok()
            .and_then(|m| time::Date::from_calendar_date(year, m, day).ok())
            .zip(time::Time::from_hms(hour, minute.unwrap_or(0), second.unwrap_or(0).min(59)).ok())
            .map(|(d, t)| d.with_time(t).assume_offset(offset).unix_timestamp());
        return (at, None);
    }
    let month = month.map(time::Month::try_from);
    let date = match (year, month, day) {
        (Some(y), Some(Ok(m)), Some(d)) => time::Date::from_calendar_date(y, m, d)
            .ok()
            .map(|_| format!("{y:04}-{:02}-{d:02}", m as u8)),
        (Some(y), Some(Ok(m)), None) => Some(format!("{y:04}-{:02}", m as u8)),
        (Some(y), None, None) => Some(format!("{y:04}")),
        _ => None,
    };
    (None, date)
}

/// A section's `<text>` as HTML, through the allow-list described at the top of this module.
pub fn narrative_html(text: Node) -> String {
    let mut out = String::new();
    for node in text.children() {
        write_node(node, 0, &mut out);
    }
    out
}

/// The HTML element a CDA narrative element becomes, when it becomes one.
fn html_element(node: Node) -> Option<&'static str> {
    if node.tag_name().namespace() != Some(HL7_V3) {
        return None;
    }
    const SAME: &[&str] = &[
        "table", "thead", "tbody", "tfoot", "tr", "th", "td", "colgroup", "col", "br", "sub", "sup",
    ];
    let name = node.tag_name().name();
    if let Some(same) = SAME.iter().find(|tag| **tag == name) {
        return Some(same);
    }
    Some(match name {
        "caption" if node.parent_element().is_some_and(|p| is(p, "table")) => "caption",
        "caption" => "strong",
        // A paragraph holding a table or a list cannot be an HTML <p>, which ends where they
        // begin.
        "paragraph" if node.descendants().skip(1).any(is_block) => "div",
        "paragraph" => "p",
        "list" if node.attribute("listType") == Some("ordered") => "ol",
        "list" => "ul",
        "item" if node.parent_element().is_some_and(|p| is(p, "list")) => "li",
        "content" if node.attribute("revised") == Some("delete") => "del",
        "content" => "span",
        "footnote" | "footnoteRef" => "small",
        _ => return None,
    })
}

fn is_block(node: Node) -> bool {
    node.is_element()
        && node.tag_name().namespace() == Some(HL7_V3)
        && matches!(node.tag_name().name(), "table" | "list" | "paragraph")
}

fn write_node(node: Node, depth: usize, out: &mut String) {
    if node.is_text() {
        write_text(node.text().unwrap_or(""), out);
        return;
    }
    if !node.is_element() {
        return;
    }
    let in_v3 = node.tag_name().namespace() == Some(HL7_V3);
    match node.tag_name().name() {
        "renderMultiMedia" if in_v3 => return,
        // Its text, never its address.
        "linkHtml" if in_v3 => {
            write_text(&plain_text(node), out);
            return;
        }
        "footnoteRef" if in_v3 => {
            let target = node.attribute("IDREF").unwrap_or("*");
            out.push_str("<small>[");
            write_text(target, out);
            out.push_str("]</small>");
            return;
        }
        _ => {}
    }
    let Some(tag) = html_element(node).filter(|_| depth < MAX_DEPTH) else {
        write_text(&plain_text(node), out);
        return;
    };
    out.push('<');
    out.push_str(tag);
    if matches!(tag, "td" | "th") {
        for attribute in ["colspan", "rowspan"] {
            let span = node
                .attribute(attribute)
                .and_then(|v| v.trim().parse::<u16>().ok())
                .filter(|n| (1..=1000).contains(n));
            if let Some(span) = span {
                let _ = write!(out, " {attribute}=\"{span}\"");
            }
        }
    }
    out.push('>');
    if matches!(tag, "br" | "col") {
        return;
    }
    let styles = styles(node);
    for style in &styles {
        let _ = write!(out, "<{style}>");
    }
    let list = matches!(tag, "ul" | "ol");
    for child in node.children() {
        // Only items are valid inside <ul> and <ol>: a list's caption, stray text or another
        // element gets an item of its own.
        if list && child.is_text() && child.text().is_some_and(|t| t.trim().is_empty()) {
            continue;
        }
        if list && !(child.is_element() && html_element(child) == Some("li")) {
            if child.is_element() || child.is_text() {
                out.push_str("<li>");
                write_node(child, depth + 1, out);
                out.push_str("</li>");
            }
            continue;
        }
        write_node(child, depth + 1, out);
    }
    for style in styles.iter().rev() {
        let _ = write!(out, "</{style}>");
    }
    let _ = write!(out, "</{tag}>");
}

/// The HTML elements a `styleCode` asks for: bold, italics and underline; other codes (colours,
/// table rules) are dropped.
fn styles(node: Node) -> Vec<&'static str> {
    let codes = node.attribute("styleCode").unwrap_or("");
    let mut styles = Vec::new();
    for (code, tag) in [("Bold", "strong"), ("Italics", "em"), ("Underline", "u")] {
        if codes
            .split_whitespace()
            .any(|c| c.eq_ignore_ascii_case(code))
        {
            styles.push(tag);
        }
    }
    styles
}

fn write_text(text: &str, out: &mut String) {
    let _ = write!(out, "{}", HtmlEscape(text));
}

/// The text inside an element, whitespace runs made one space.
fn plain_text(node: Node) -> String {
    let text: String = node
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is(node: Node, name: &str) -> bool {
    node.is_element()
        && node.tag_name().name() == name
        && node.tag_name().namespace() == Some(HL7_V3)
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| is(*c, name))
}

fn children<'a, 'i>(node: Node<'a, 'i>, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(move |c| is(*c, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A C-CDA document with these sections (the inside of `<structuredBody>`).
    fn document(body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<?xml-stylesheet type="text/xsl" href="CDA.xsl"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <code code="34133-9" codeSystem="2.16.840.1.113883.6.1" displayName="Summarization of Episode Note"/>
  <title>Continuity of Care Document</title>
  <effectiveTime value="20120806103000-0500"/>
  <author>
    <time value="20120806"/>
    <assignedAuthor>
      <assignedPerson><name><prefix>Dr</prefix><given>Henry</given><family>Seven</family></name></assignedPerson>
      <representedOrganization><name>Good Health Clinic</name></representedOrganization>
    </assignedAuthor>
  </author>
  <author><assignedAuthor><representedOrganization><name>Lab &amp; Co</name></representedOrganization></assignedAuthor></author>
  <component><structuredBody>{body}</structuredBody></component>
</ClinicalDocument>"#
        )
    }

    fn section(title: &str, text: &str) -> String {
        format!(
            "<component><section><title>{title}</title><text>{text}</text></section></component>"
        )
    }

    fn html_of(text: &str) -> String {
        let view = view(document(&section("S", text)).as_bytes()).expect("a C-CDA document");
        view.sections[0].html.clone()
    }

    #[test]
    fn the_header_gives_title_authors_and_time() {
        let view = view(document("").as_bytes()).unwrap();
        assert_eq!(view.title.as_deref(), Some("Continuity of Care Document"));
        assert_eq!(
            view.authors,
            ["Dr Henry Seven, Good Health Clinic", "Lab & Co"]
        );
        // 10:30 at -05:00 is 15:30 UTC.
        assert_eq!(
            crate::web::render::datetime_filter(view.time.unwrap()),
            "2012-08-06 15:30 UTC"
        );
        assert_eq!(view.date, None);
        assert!(view.sections.is_empty());
    }

    #[test]
    fn timestamps_with_and_without_the_time_of_day() {
        assert_eq!(cda_time("20120806"), (None, Some("2012-08-06".into())));
        assert_eq!(cda_time("201208"), (None, Some("2012-08".into())));
        assert_eq!(cda_time("2012"), (None, Some("2012".into())));
        assert_eq!(cda_time("20120806103000"), (Some(1_344_249_000), None));
        assert_eq!(cda_time("201208061030+0100"), (Some(1_344_245_400), None));
        assert_eq!(
            cda_time("20120806103000.123-0500"),
            (Some(1_344_267_000), None)
        );
        assert_eq!(cda_time("unknown"), (None, None));
        assert_eq!(cda_time("20121399"), (None, None));
        assert_eq!(cda_time("20120231"), (None, None));
        assert_eq!(cda_time("2012139910"), (None, None));
    }

    #[test]
    fn scripts_styles_handlers_frames_images_and_links_do_not_pass() {
        let html = html_of(
            r#"<paragraph onclick="steal()" style="color:red" ID="p1">Hello
              <script>alert(1)</script><style>body{display:none}</style>
              <iframe src="https://evil.example/"/><img src="https://evil.example/x.png" onerror="steal()"/>
              <linkHtml href="javascript:steal()">the portal</linkHtml>
              <renderMultiMedia referencedObject="MM1"/>
              <content styleCode="Bold" onmouseover="steal()">bold</content>
              <xhtml:a xmlns:xhtml="http://www.w3.org/1999/xhtml" href="https://evil.example/">x</xhtml:a>
            </paragraph>"#,
        );
        for banned in [
            "<script",
            "<style",
            "<iframe",
            "<img",
            "<a ",
            "href",
            "src=",
            "onclick",
            "onerror",
            "onmouseover",
            "style=",
            "javascript",
            "evil.example",
        ] {
            assert!(!html.contains(banned), "{banned} in {html}");
        }
        // Unknown elements keep their text, escaped; a link keeps its words.
        assert!(html.starts_with("<p>Hello"), "{html}");
        assert!(
            html.contains("alert(1)") && html.contains("the portal"),
            "{html}"
        );
        assert!(
            html.contains("<span><strong>bold</strong></span>"),
            "{html}"
        );
    }

    #[test]
    fn text_is_escaped() {
        let html =
            html_of("<paragraph>HbA1c &lt; 7 &amp; LDL &gt; 100 &lt;script&gt; \"q\"</paragraph>");
        assert!(
            html.contains("HbA1c &lt; 7 &amp; LDL &gt; 100 &lt;script&gt; &quot;q&quot;"),
            "{html}"
        );
        let view = view(document(&section("Tom &amp; Jerry &lt;b&gt;", "")).as_bytes()).unwrap();
        // Titles are plain text, escaped by the template.
        assert_eq!(view.sections[0].title.as_deref(), Some("Tom & Jerry <b>"));
    }

    #[test]
    fn tables_stay_tables_with_numeric_spans_only() {
        let html = html_of(
            r#"<table border="1" width="100%" onclick="x()"><caption>Results</caption>
              <thead><tr><th colspan="2" styleCode="Bold">Test</th></tr></thead>
              <tbody><tr><td rowspan="2">A</td><td colspan="2&quot; onclick=&quot;x()">B</td></tr></tbody>
              <tfoot><tr><td>end</td></tr></tfoot></table>"#,
        );
        assert!(
            html.starts_with("<table><caption>Results</caption>"),
            "{html}"
        );
        assert!(
            html.contains("<thead><tr><th colspan=\"2\"><strong>Test</strong></th></tr></thead>"),
            "{html}"
        );
        assert!(
            html.contains("<td rowspan=\"2\">A</td><td>B</td>"),
            "{html}"
        );
        assert!(
            html.contains("<tfoot>") && html.ends_with("</table>"),
            "{html}"
        );
        assert!(
            !html.contains("border") && !html.contains("onclick"),
            "{html}"
        );
    }

    #[test]
    fn lists_paragraphs_and_inline_elements_map_to_html() {
        let html = html_of(
            r#"<list listType="ordered"><caption>Steps</caption><item>one<br/>two</item><item>H<sub>2</sub>O x<sup>2</sup></item></list>
               <list><item><content styleCode="Italics Underline">it</content></item></list>
               <paragraph>see<footnoteRef IDREF="fn1"/></paragraph><footnote ID="fn1">a note</footnote>
               <paragraph>before<table><tr><td>in</td></tr></table></paragraph>
               <content revised="delete">old</content>"#,
        );
        assert!(html.contains("<ol><li><strong>Steps</strong></li><li>one<br>two</li><li>H<sub>2</sub>O x<sup>2</sup></li></ol>"), "{html}");
        assert!(
            html.contains("<ul><li><span><em><u>it</u></em></span></li></ul>"),
            "{html}"
        );
        assert!(
            html.contains("<p>see<small>[fn1]</small></p><small>a note</small>"),
            "{html}"
        );
        assert!(html.contains("<div>before<table>"), "{html}");
        assert!(html.contains("<del>old</del>"), "{html}");
    }

    #[test]
    fn nested_sections_follow_their_parent_one_level_down() {
        let inner = section("Inner", "<paragraph>deep</paragraph>");
        let body = format!(
            "<component><section><title>Outer</title><text>top</text>{inner}</section></component>{}",
            section("Next", "")
        );
        let view = view(document(&body).as_bytes()).unwrap();
        let outline: Vec<(Option<&str>, usize, &str)> = view
            .sections
            .iter()
            .map(|s| (s.title.as_deref(), s.level, s.html.as_str()))
            .collect();
        assert_eq!(
            outline,
            [
                (Some("Outer"), 1, "top"),
                (Some("Inner"), 2, "<p>deep</p>"),
                (Some("Next"), 1, ""),
            ]
        );
    }

    #[test]
    fn deep_narrative_is_shown_as_text_past_the_depth_limit() {
        let deep = format!("{}x{}", "<content>".repeat(200), "</content>".repeat(200));
        let html = html_of(&deep);
        assert_eq!(html.matches("<span>").count(), MAX_DEPTH);
        assert!(html.contains('x'));
    }

    #[test]
    fn other_documents_give_none() {
        for other in [
            &b"<HealthData locale=\"en\"/>"[..],
            b"<ClinicalDocument/>",
            b"<ClinicalDocument xmlns=\"urn:hl7-org:v3\"",
            b"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"b\">]><ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>",
            b"%PDF-1.4",
            b"\xFF\xFE<\0",
            b"",
        ] {
            assert_eq!(view(other), None, "{}", String::from_utf8_lossy(other));
        }
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata");
        let ccd = std::fs::read(shared.join("ccda/CCD-1.xml")).unwrap();
        let view = view(&ccd).expect("the sample CCD");
        assert!(view.sections.len() >= 15, "{}", view.sections.len());
        assert!(view.sections.iter().any(|s| s.html.contains("<table>")));
    }
}
