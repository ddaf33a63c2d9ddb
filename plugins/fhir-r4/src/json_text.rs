//! JSON text as it was written. serde_json with `arbitrary_precision` keeps every digit of a
//! number, but writes an exponent its own way (`1e2`, `1E2` and `1E+2` all come back as
//! `1e+2`). A FHIR decimal is stored exactly as sent, so a resource holding such a number is
//! kept as its own text, with only the whitespace between tokens taken out.

/// Watches JSON text go by, possibly in chunks, for a number that serde_json would write
/// differently: an exponent with a capital `E` or without a sign.
#[derive(Debug, Default, Clone)]
pub struct NumberForms {
    in_string: bool,
    escaped: bool,
    /// The last byte outside a string was an `e`.
    after_e: bool,
    found: bool,
}

impl NumberForms {
    pub fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.found {
                return;
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            // Outside strings, `E` is only ever in a number, and `e` is in `true` and `false`
            // too, but only a number's is followed by a digit.
            if byte == b'E' || (self.after_e && byte.is_ascii_digit()) {
                self.found = true;
            }
            self.after_e = byte == b'e';
            if byte == b'"' {
                self.in_string = true;
            }
        }
    }

    /// Whether a number written another way than serde_json writes it went by.
    pub fn found(&self) -> bool {
        self.found
    }
}

/// Whether `json` holds a number serde_json would write differently (see [`NumberForms`]).
pub fn has_rewritten_numbers(json: &[u8]) -> bool {
    let mut forms = NumberForms::default();
    forms.feed(json);
    forms.found()
}

/// `json` without the whitespace between its tokens; strings and numbers exactly as written.
pub fn minify(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            ' ' | '\t' | '\n' | '\r' => {}
            '"' => {
                in_string = true;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// The members of the JSON object `json` (its top level only): each key as written between its
/// quotes, and the text of its value. `None` when `json` is not an object.
///
/// Hand-written rather than serde_json's `RawValue`: that feature makes every parse from a
/// reader (a whole file import) a third slower, to serve the rare document that needs it.
pub fn members(json: &str) -> Option<Vec<(&str, &str)>> {
    let bytes = json.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    let mut members = Vec::new();
    at = skip_space(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        return Some(members);
    }
    loop {
        let key_end = string_end(bytes, at)?;
        let key = &json[at + 1..key_end - 1];
        at = skip_space(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let start = skip_space(bytes, at + 1);
        let end = value_end(bytes, start)?;
        members.push((key, &json[start..end]));
        at = skip_space(bytes, end);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b'}') => return Some(members),
            _ => return None,
        }
    }
}

/// The text of each element of the JSON array `json`. `None` when it is not an array.
pub fn elements(json: &str) -> Option<Vec<&str>> {
    let bytes = json.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'[') {
        return None;
    }
    let mut elements = Vec::new();
    at = skip_space(bytes, at + 1);
    if bytes.get(at) == Some(&b']') {
        return Some(elements);
    }
    loop {
        let end = value_end(bytes, at)?;
        elements.push(&json[at..end]);
        at = skip_space(bytes, end);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b']') => return Some(elements),
            _ => return None,
        }
    }
}

/// The value of `key` in the JSON object `json`.
pub fn member<'j>(json: &'j str, key: &str) -> Option<&'j str> {
    members(json)?
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, value)| value)
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(|b| b" \t\r\n".contains(b)) {
        at += 1;
    }
    at
}

/// Just past the string starting at `at` (its opening quote).
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Just past the value starting at `at`: a string, an object or array (however nested), or a
/// number, `true`, `false` or `null`.
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_end(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            while let Some(&b) = bytes.get(i) {
                match b {
                    b'"' => {
                        i = string_end(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = at;
            while bytes.get(i).is_some_and(|b| !b",}] \t\r\n".contains(b)) {
                i += 1;
            }
            (i > at).then_some(i)
        }
    }
}

/// Minified `json` with each `"reference":"<target>"` whose target `replace` knows set to what
/// it answers (a target with escapes in it is left as it is).
pub fn replace_references<'r>(json: &str, replace: impl Fn(&str) -> Option<&'r str>) -> String {
    const KEY: &str = "\"reference\":\"";
    let mut out = String::with_capacity(json.len());
    let mut rest = json;
    while let Some(at) = rest.find(KEY) {
        let value_start = at + KEY.len();
        out.push_str(&rest[..value_start]);
        rest = &rest[value_start..];
        let Some(end) = rest.find('"') else { break };
        let target = &rest[..end];
        match replace(target).filter(|_| !target.contains('\\')) {
            Some(local) => out.push_str(local),
            None => out.push_str(target),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exponents_serde_json_would_rewrite_are_found() {
        assert!(has_rewritten_numbers(br#"{"value":1e2}"#));
        assert!(has_rewritten_numbers(br#"{"value":1E+2}"#));
        assert!(has_rewritten_numbers(br#"{"value":-2.5E-3}"#));
        assert!(!has_rewritten_numbers(br#"{"value":1e+2,"b":1e-2}"#));
        assert!(!has_rewritten_numbers(
            br#"{"value":1.50,"ok":true,"no":false}"#
        ));
        assert!(!has_rewritten_numbers(
            br#"{"text":"1e2 and E and \"1e2\""}"#
        ));
    }

    #[test]
    fn a_number_split_across_chunks_is_found() {
        let mut forms = NumberForms::default();
        forms.feed(br#"{"value":1e"#);
        assert!(!forms.found());
        forms.feed(b"2}");
        assert!(forms.found());
    }

    #[test]
    fn minify_keeps_strings_and_numbers_as_written() {
        let text = "{\n  \"a\" : 1e2,\n  \"b\": \"x  y\\\" z\",\n  \"c\": [ 1.50 , true ]\n}";
        assert_eq!(minify(text), r#"{"a":1e2,"b":"x  y\" z","c":[1.50,true]}"#);
    }

    #[test]
    fn members_and_elements_give_the_text_as_written() {
        let page = r#" {"resourceType" : "Bundle", "entry": [ {"fullUrl": "u:1",
            "resource": {"resourceType":"Observation","valueQuantity":{"value":1E2},
            "note":[{"text":"a } ] \" {"}]}}, {"search":{"mode":"outcome"}} ], "total": 2 } "#;
        let top = members(page).unwrap();
        let keys: Vec<&str> = top.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["resourceType", "entry", "total"]);
        let entries = elements(member(page, "entry").unwrap()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            member(entries[0], "resource").unwrap(),
            r#"{"resourceType":"Observation","valueQuantity":{"value":1E2},
            "note":[{"text":"a } ] \" {"}]}"#
        );
        assert_eq!(member(entries[1], "resource"), None);
        assert_eq!(member(page, "total"), Some("2"));
        assert_eq!(members("[1]"), None);
        assert_eq!(members(r#"{"a": }"#), None);
    }

    #[test]
    fn references_are_replaced_by_their_target_only() {
        let text = r#"{"subject":{"reference":"urn:uuid:1"},"note":"\"reference\":\"urn:uuid:1\"","x":{"reference":"urn:uuid:2"}}"#;
        let replaced = replace_references(text, |t| (t == "urn:uuid:1").then_some("Patient/p"));
        assert_eq!(
            replaced,
            r#"{"subject":{"reference":"Patient/p"},"note":"\"reference\":\"urn:uuid:1\"","x":{"reference":"urn:uuid:2"}}"#
        );
    }
}
