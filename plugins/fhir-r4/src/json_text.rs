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
    fn references_are_replaced_by_their_target_only() {
        let text = r#"{"subject":{"reference":"urn:uuid:1"},"note":"\"reference\":\"urn:uuid:1\"","x":{"reference":"urn:uuid:2"}}"#;
        let replaced = replace_references(text, |t| (t == "urn:uuid:1").then_some("Patient/p"));
        assert_eq!(
            replaced,
            r#"{"subject":{"reference":"Patient/p"},"note":"\"reference\":\"urn:uuid:1\"","x":{"reference":"urn:uuid:2"}}"#
        );
    }
}
