//! Small pure helpers of the sync: time formatting, URL building, HTTP header reading and turning
//! a failed response into a sentence. Nothing here calls the host, so all of it is unit tested
//! natively.

use serde_json::Value;

/// Seconds since the Unix epoch as an RFC 3339 UTC instant: the form FHIR's `_lastUpdated` and
/// `_since` accept.
pub(crate) fn rfc3339(seconds: u64) -> String {
    fasten_fhir_r4::instant::rfc3339(seconds as i64)
}

/// Whether a cursor is an instant this plugin wrote (`YYYY-MM-DDThh:mm:ssZ`). Anything else (a
/// cursor from some other version, or garbage) is ignored, which means a full sync: safer than
/// sending a search parameter the server may misread.
pub(crate) fn is_cursor(cursor: &str) -> bool {
    let pattern = b"dddd-dd-ddTdd:dd:ddZ";
    cursor.len() == pattern.len()
        && cursor.bytes().zip(pattern).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            _ => c == *p,
        })
}

/// Seconds to wait from a `Retry-After` value: a number of seconds, or (for an HTTP-date, which
/// would need the server's clock to interpret) a minute.
pub(crate) fn retry_after_seconds(value: &str) -> u32 {
    match value.trim().parse::<u64>() {
        // Zero would make the host retry at once and most likely be refused again.
        Ok(seconds) => seconds.clamp(1, u64::from(u32::MAX)) as u32,
        Err(_) => 60,
    }
}

/// The value of a response header, by case-insensitive name.
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Whether a Content-Type names JSON (`application/fhir+json`, `application/json`, and the DSTU2
/// era's `application/json+fhir`).
pub(crate) fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.to_ascii_lowercase().contains("json")
}

/// The FHIR base without a trailing slash, so paths can be joined with one.
pub(crate) fn trim_base(base: &str) -> &str {
    base.trim().trim_end_matches('/')
}

/// A `next` link as given, except that a relative one (rare, but seen) is resolved against the
/// base: it could not be fetched otherwise.
pub(crate) fn resolve_link(base: &str, link: &str) -> String {
    if link.starts_with("https://") || link.starts_with("http://") {
        link.to_string()
    } else {
        format!("{base}/{}", link.trim_start_matches('/'))
    }
}

/// Percent-encodes a query parameter value. Only unreserved characters and the few that RFC 3986
/// allows in a query unencoded (`:` `/` `@`) are kept, so a category like `system|code` or a
/// value with `&` or `+` arrives as written.
pub(crate) fn encode_query_value(value: &str) -> String {
    encode(value, b":/@")
}

/// Percent-encodes one path segment (a patient id that is not a plain FHIR id, say).
pub(crate) fn encode_path_segment(value: &str) -> String {
    encode(value, b":@")
}

fn encode(value: &str, also_keep: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || also_keep.contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether `id` is a valid FHIR id. The host refuses a batch holding a resource with any other
/// id (and the whole run with it), so such resources are skipped with a warning instead.
pub(crate) fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// The reason phrase of a status code: responses do not carry one through the host, and
/// "400 Bad Request" reads better in a warning than "400".
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// `400 Bad Request`, or just `599` for a code without a known phrase.
pub(crate) fn status_text(status: u16) -> String {
    match reason_phrase(status) {
        "" => status.to_string(),
        phrase => format!("{status} {phrase}"),
    }
}

/// The issues of an OperationOutcome as (severity, text), the text being `diagnostics`, else
/// `details.text`, else the issue `code`.
pub(crate) fn outcome_issues(outcome: &Value) -> Vec<(String, String)> {
    let Some(issues) = outcome.get("issue").and_then(Value::as_array) else {
        return Vec::new();
    };
    issues
        .iter()
        .filter_map(|issue| {
            let text = issue
                .get("diagnostics")
                .or_else(|| issue.pointer("/details/text"))
                .or_else(|| issue.get("code"))
                .and_then(Value::as_str)?
                .trim();
            let severity = issue
                .get("severity")
                .and_then(Value::as_str)
                .unwrap_or("error");
            (!text.is_empty()).then(|| (severity.to_string(), text.to_string()))
        })
        .collect()
}

/// How long a snippet of an error body may be in a warning.
const SNIPPET_CHARS: usize = 200;

/// A short account of an error response's body for a warning: the OperationOutcome's issues when
/// it is one, an HTML page's title, or the start of the text.
pub(crate) fn describe_body(content_type: Option<&str>, body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body)
        && value.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome")
    {
        let texts: Vec<String> = outcome_issues(&value).into_iter().map(|(_, t)| t).collect();
        if !texts.is_empty() {
            return shorten(&texts.join("; "), 2 * SNIPPET_CHARS);
        }
    }
    let text = String::from_utf8_lossy(body);
    let looks_html = content_type.is_some_and(|t| t.to_ascii_lowercase().contains("html"))
        || text.trim_start().starts_with('<');
    if looks_html && let Some(title) = html_title(&text) {
        return shorten(&title, SNIPPET_CHARS);
    }
    shorten(&text, SNIPPET_CHARS)
}

/// The text of an HTML page's `<title>`, if it has a non-empty one.
fn html_title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    let title = collapse_whitespace(&html[start..end]);
    (!title.is_empty()).then_some(title)
}

/// Whitespace collapsed to single spaces and cut to `max` characters (with "..." when cut).
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let text = collapse_whitespace(text);
    if text.chars().count() <= max {
        text
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{}...", cut.trim_end())
    }
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_164_799), "2024-02-28T23:59:59Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn every_formatted_instant_is_a_cursor() {
        for seconds in (0..5_000_000_000u64).step_by(86_399 * 37) {
            assert!(is_cursor(&rfc3339(seconds)), "{}", rfc3339(seconds));
        }
        assert!(!is_cursor("2024-01-01"));
        assert!(!is_cursor("2024-01-01T00:00:00+01:00"));
        assert!(!is_cursor("2024-01-01T00:00:00.000Z"));
        assert!(!is_cursor("2024-01-01 00:00:00Z"));
    }

    #[test]
    fn parses_retry_after() {
        assert_eq!(retry_after_seconds("120"), 120);
        assert_eq!(retry_after_seconds(" 5 "), 5);
        assert_eq!(retry_after_seconds("0"), 1);
        assert_eq!(retry_after_seconds("99999999999"), u32::MAX);
        assert_eq!(retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT"), 60);
        assert_eq!(retry_after_seconds(""), 60);
    }

    #[test]
    fn reads_headers_and_media_types() {
        let headers = vec![("Content-Type".to_string(), " application/pdf ".to_string())];
        assert_eq!(header(&headers, "content-type"), Some("application/pdf"));
        assert_eq!(header(&headers, "retry-after"), None);
        assert!(is_json_media_type("application/fhir+json; charset=utf-8"));
        assert!(is_json_media_type("application/json+fhir"));
        assert!(is_json_media_type("Application/JSON"));
        assert!(!is_json_media_type("text/html"));
        assert!(!is_json_media_type("text/plain; note=json"));
    }

    #[test]
    fn builds_urls() {
        assert_eq!(trim_base("https://x.org/fhir/ "), "https://x.org/fhir");
        assert_eq!(trim_base("https://x.org/fhir"), "https://x.org/fhir");
        assert_eq!(
            resolve_link("https://x.org/fhir", "https://y.org/p?a=1"),
            "https://y.org/p?a=1"
        );
        assert_eq!(
            resolve_link("https://x.org/fhir", "?_getpages=abc"),
            "https://x.org/fhir/?_getpages=abc"
        );
        assert_eq!(
            resolve_link("https://x.org/fhir", "/Observation?page=2"),
            "https://x.org/fhir/Observation?page=2"
        );
        assert_eq!(
            encode_query_value("http://loinc.org|1234-5 a&b+c"),
            "http://loinc.org%7C1234-5%20a%26b%2Bc"
        );
        assert_eq!(
            encode_query_value("gt2024-01-01T00:00:00Z"),
            "gt2024-01-01T00:00:00Z"
        );
        assert_eq!(encode_path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_path_segment("é"), "%C3%A9");
    }

    #[test]
    fn validates_ids() {
        assert!(is_valid_id("abc-1.2"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id(&"x".repeat(65)));
    }

    #[test]
    fn describes_error_bodies() {
        let outcome = json!({
            "resourceType": "OperationOutcome",
            "issue": [
                {"severity": "error", "code": "invalid", "diagnostics": "Unknown parameter: category"},
                {"severity": "error", "code": "invalid", "details": {"text": "Try again"}},
            ]
        });
        assert_eq!(
            describe_body(
                Some("application/fhir+json"),
                outcome.to_string().as_bytes()
            ),
            "Unknown parameter: category; Try again"
        );
        let page = b"<!DOCTYPE html><html><head><title>\n 404 - Page   not found</title></head>\
                     <body>long body</body></html>";
        assert_eq!(
            describe_body(Some("text/html"), page),
            "404 - Page not found"
        );
        let long = "x".repeat(500);
        let described = describe_body(Some("text/plain"), long.as_bytes());
        assert_eq!(described.chars().count(), 203);
        assert_eq!(describe_body(None, b""), "");
        assert_eq!(status_text(400), "400 Bad Request");
        assert_eq!(status_text(599), "599");
    }

    #[test]
    fn reads_outcome_issues() {
        let outcome = json!({
            "resourceType": "OperationOutcome",
            "issue": [
                {"severity": "information", "code": "informational", "details": {"text": "ok"}},
                {"code": "processing"},
                {"severity": "warning", "diagnostics": "  "},
            ]
        });
        assert_eq!(
            outcome_issues(&outcome),
            vec![
                ("information".to_string(), "ok".to_string()),
                ("error".to_string(), "processing".to_string()),
            ]
        );
    }
}
