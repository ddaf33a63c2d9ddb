//! The Withings API: the three requests, form encoding, and turning Withings' answers (always a
//! `{"status": n, "body": {...}}` envelope, usually with HTTP 200 even for errors) into a body or
//! a `ConnectorError` the host can act on.

use serde_json::Value;

use crate::{activity, measures, sleep};
use fasten_connector::ConnectorError;
use fasten_connector::http::{HttpError, Request, Response};

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Endpoint {
    Measures,
    Activity,
    Sleep,
}

impl Endpoint {
    pub(crate) const ALL: [Endpoint; 3] = [Endpoint::Measures, Endpoint::Activity, Endpoint::Sleep];

    fn path(self) -> &'static str {
        match self {
            Endpoint::Measures => "/measure",
            Endpoint::Activity => "/v2/measure",
            Endpoint::Sleep => "/v2/sleep",
        }
    }

    /// What the request is for, in the words of an error message.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Endpoint::Measures => "body measures",
            Endpoint::Activity => "daily activity",
            Endpoint::Sleep => "sleep summaries",
        }
    }

    /// The list of records in a response body.
    pub(crate) fn list_key(self) -> &'static str {
        match self {
            Endpoint::Measures => "measuregrps",
            Endpoint::Activity => "activities",
            Endpoint::Sleep => "series",
        }
    }

    fn form(self, last_update: u64, offset: u64) -> Vec<(&'static str, String)> {
        let mut form = match self {
            Endpoint::Measures => vec![
                ("action", "getmeas".to_string()),
                ("meastypes", measures::REQUESTED_TYPES.to_string()),
                // 1 is real measures; 2 would be the user's goals.
                ("category", "1".to_string()),
            ],
            Endpoint::Activity => vec![("action", "getactivity".to_string())],
            Endpoint::Sleep => vec![("action", "getsummary".to_string())],
        };
        form.push(("lastupdate", last_update.to_string()));
        match self {
            Endpoint::Measures => {}
            Endpoint::Activity => {
                form.push(("data_fields", activity::REQUESTED_FIELDS.to_string()));
            }
            Endpoint::Sleep => form.push(("data_fields", sleep::REQUESTED_FIELDS.to_string())),
        }
        if offset > 0 {
            form.push(("offset", offset.to_string()));
        }
        form
    }

    /// The request for one page. No Authorization header: the host adds the bearer token to
    /// requests bound for the connection's API, and the plugin never sees it.
    pub(crate) fn request(self, base: &str, last_update: u64, offset: u64) -> Request {
        Request {
            method: "POST".into(),
            url: format!("{base}{}", self.path()),
            headers: vec![
                (
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
                ("accept".into(), "application/json".into()),
            ],
            body: Some(form_encode(&self.form(last_update, offset)).into_bytes()),
        }
    }
}

/// `application/x-www-form-urlencoded`: unreserved bytes as they are, space as `+`, the rest
/// percent-encoded.
pub(crate) fn form_encode(pairs: &[(&str, String)]) -> String {
    fn encode(text: &str, out: &mut String) {
        for byte in text.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    out.push(byte as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{byte:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        encode(name, &mut out);
        out.push('=');
        encode(value, &mut out);
    }
    out
}

/// Withings' "authentication failed" statuses (a token expired or revoked) and its
/// "unauthorized" ones (the token lacks a scope): both are cured by refreshing or reconnecting.
const UNAUTHORIZED: [i64; 10] = [100, 101, 102, 200, 401, 214, 277, 2553, 2554, 2555];
const TOO_MANY_REQUESTS: i64 = 601;
/// Withings' "a timeout occurred".
const TIMEOUT: i64 = 522;
/// Withings' "an error occurred" statuses: trouble on its side, worth another try later. (Its
/// 500-504 are not server errors: they are among the many "invalid params" statuses.)
const ERROR_OCCURRED: [i64; 104] = [
    215, 219, 222, 224, 226, 231, 233, 237, 253, 255, 256, 257, 258, 259, 268, 269, 270, 273, 274,
    278, 279, 280, 281, 282, 289, 291, 292, 296, 298, 305, 306, 308, 309, 310, 311, 312, 313, 314,
    315, 316, 317, 318, 319, 320, 322, 370, 371, 372, 373, 374, 375, 383, 391, 402, 516, 517, 518,
    519, 520, 521, 525, 526, 527, 528, 529, 530, 531, 533, 602, 700, 1051, 1052, 1053, 1054, 2551,
    2552, 2556, 2557, 2558, 2559, 3000, 3001, 3002, 3003, 3004, 3005, 3006, 3007, 3008, 3009, 3010,
    3011, 3012, 3013, 3014, 3015, 3016, 3020, 3021, 3022, 3023, 3024, 5000, 9000,
];
/// How long to wait after "too many requests" (Withings allows about 120 requests a minute per
/// application and says nothing more precise).
const RATE_LIMIT_SECONDS: u32 = 60;

/// The body of a successful answer, or why there is none.
pub(crate) fn read_response(
    endpoint: Endpoint,
    answer: Result<Response, HttpError>,
) -> Result<Value, ConnectorError> {
    let what = endpoint.label();
    let response = answer.map_err(|error| match error {
        HttpError::Denied(reason) => ConnectorError::Fatal(format!(
            "Fasten refused to send the request for Withings {what}: {reason}"
        )),
        HttpError::Timeout => ConnectorError::Transient(format!(
            "Withings did not answer the request for {what} in time."
        )),
        HttpError::Network(reason) => {
            ConnectorError::Transient(format!("Could not reach Withings to read {what}: {reason}"))
        }
        HttpError::TooLarge => ConnectorError::Fatal(format!(
            "Withings' answer with {what} was larger than Fasten accepts."
        )),
    })?;
    match response.status {
        200..=299 => {}
        401 | 403 => return Err(ConnectorError::Unauthorized),
        429 => {
            let wait = response
                .header("retry-after")
                .and_then(|v| v.trim().parse::<u32>().ok())
                .map_or(RATE_LIMIT_SECONDS, |s| s.max(1));
            return Err(ConnectorError::RateLimited(wait));
        }
        status @ 500..=599 => {
            return Err(ConnectorError::Transient(format!(
                "Withings answered the request for {what} with HTTP {status}{}",
                detail(&response.body)
            )));
        }
        status => {
            return Err(ConnectorError::Fatal(format!(
                "Withings answered the request for {what} with HTTP {status}{}",
                detail(&response.body)
            )));
        }
    }
    let envelope: Value = serde_json::from_slice(&response.body).map_err(|_| {
        ConnectorError::Fatal(format!(
            "Withings answered the request for {what} with something that is not JSON{}",
            detail(&response.body)
        ))
    })?;
    let Some(status) = envelope.get("status").and_then(Value::as_i64) else {
        return Err(ConnectorError::Fatal(format!(
            "Withings answered the request for {what} without a status{}",
            detail(&response.body)
        )));
    };
    if status != 0 {
        let message = envelope
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        return Err(status_error(status, message, what));
    }
    match envelope.get("body") {
        Some(body @ Value::Object(_)) => Ok(body.clone()),
        _ => Err(ConnectorError::Fatal(format!(
            "Withings answered the request for {what} with status 0 but no body."
        ))),
    }
}

fn status_error(status: i64, message: &str, what: &str) -> ConnectorError {
    if UNAUTHORIZED.contains(&status) {
        ConnectorError::Unauthorized
    } else if status == TOO_MANY_REQUESTS {
        ConnectorError::RateLimited(RATE_LIMIT_SECONDS)
    } else if status == TIMEOUT || ERROR_OCCURRED.contains(&status) {
        ConnectorError::Transient(format!(
            "Withings could not answer the request for {what} (status {status}: {message})."
        ))
    } else {
        ConnectorError::Fatal(format!(
            "Withings refused the request for {what} (status {status}: {message})."
        ))
    }
}

/// `: <the start of the body>.` for an error message, or `.` for an empty body.
fn detail(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return ".".into();
    }
    let short: String = text.chars().take(200).collect();
    let ellipsis = if short.len() < text.len() { "…" } else { "" };
    format!(": {short}{ellipsis}")
}

/// What the page says about the next one.
#[derive(Debug, PartialEq)]
pub(crate) enum Paging {
    Done,
    Next(u64),
    /// `more` without an offset past the current one: following it would loop forever.
    Stuck,
}

pub(crate) fn paging(body: &Value, current_offset: u64) -> Paging {
    let more = match body.get("more") {
        Some(Value::Bool(more)) => *more,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|n| n != 0.0),
        _ => false,
    };
    if !more {
        return Paging::Done;
    }
    match body.get("offset").and_then(Value::as_u64) {
        Some(next) if next > current_offset => Paging::Next(next),
        _ => Paging::Stuck,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// A run's outcome as a sentence, since the generated error type has no `PartialEq`.
    pub(crate) fn outcome<T>(result: Result<T, ConnectorError>) -> String {
        match result {
            Ok(_) => "ok".into(),
            Err(ConnectorError::Unauthorized) => "unauthorized".into(),
            Err(ConnectorError::RateLimited(seconds)) => format!("rate limited for {seconds} s"),
            Err(ConnectorError::Transient(m)) => format!("transient: {m}"),
            Err(ConnectorError::InvalidInput(m)) => format!("invalid input: {m}"),
            Err(ConnectorError::Fatal(m)) => format!("fatal: {m}"),
        }
    }

    fn ok(body: Value) -> Result<Response, HttpError> {
        Ok(Response {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        })
    }

    #[test]
    fn forms_are_encoded() {
        assert_eq!(
            form_encode(&[("action", "getmeas".into()), ("meastypes", "1,4".into())]),
            "action=getmeas&meastypes=1%2C4"
        );
        assert_eq!(
            form_encode(&[("q", "a b&c=é".into())]),
            "q=a+b%26c%3D%C3%A9"
        );
    }

    #[test]
    fn the_measures_request_asks_for_every_mapped_type() {
        let request = Endpoint::Measures.request("https://wbsapi.withings.net", 1_700_000_000, 0);
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "https://wbsapi.withings.net/measure");
        let body = String::from_utf8(request.body.unwrap()).unwrap();
        assert_eq!(
            body,
            "action=getmeas&meastypes=1%2C4%2C5%2C6%2C8%2C9%2C10%2C11%2C12%2C54%2C71%2C73%2C76\
             %2C77%2C88%2C91&category=1&lastupdate=1700000000"
        );
        let paged = Endpoint::Sleep.request("https://wbsapi.withings.net", 0, 20);
        let body = String::from_utf8(paged.body.unwrap()).unwrap();
        assert!(body.starts_with("action=getsummary&lastupdate=0&data_fields=total_sleep_time"));
        assert!(body.ends_with("sleep_score&offset=20"));
    }

    #[test]
    fn statuses_become_errors_the_host_can_act_on() {
        let answer = |status: i64, error: &str| {
            outcome(read_response(
                Endpoint::Measures,
                ok(json!({"status": status, "error": error})),
            ))
        };
        assert_eq!(answer(401, "invalid_token"), "unauthorized");
        assert_eq!(answer(100, "x"), "unauthorized");
        assert_eq!(answer(601, "Too Many Requests"), "rate limited for 60 s");
        assert_eq!(
            answer(522, "A timeout occurred"),
            "transient: Withings could not answer the request for body measures (status 522: A \
             timeout occurred)."
        );
        assert!(answer(2552, "An error occurred").starts_with("transient: "));
        assert_eq!(
            answer(503, "Invalid Params"),
            "fatal: Withings refused the request for body measures (status 503: Invalid Params)."
        );
        assert_eq!(
            outcome(read_response(Endpoint::Measures, ok(json!({"status": 0})))),
            "fatal: Withings answered the request for body measures with status 0 but no body."
        );
    }

    #[test]
    fn http_failures_become_errors_the_host_can_act_on() {
        let read = |answer| outcome(read_response(Endpoint::Sleep, answer));
        assert!(read(Err(HttpError::Timeout)).starts_with("transient: "));
        assert_eq!(
            read(Err(HttpError::Network("connection reset".into()))),
            "transient: Could not reach Withings to read sleep summaries: connection reset"
        );
        assert_eq!(
            read(Err(HttpError::Denied("host not allowed".into()))),
            "fatal: Fasten refused to send the request for Withings sleep summaries: host not \
             allowed"
        );
        let http = |status, headers: Vec<(String, String)>, body: &str| {
            read(Ok(Response {
                status,
                headers,
                body: body.as_bytes().to_vec(),
            }))
        };
        assert_eq!(
            http(502, vec![], "<html>Bad gateway</html>"),
            "transient: Withings answered the request for sleep summaries with HTTP 502: \
             <html>Bad gateway</html>"
        );
        assert_eq!(
            http(429, vec![("Retry-After".into(), "120".into())], ""),
            "rate limited for 120 s"
        );
        assert_eq!(http(401, vec![], ""), "unauthorized");
        assert_eq!(
            http(200, vec![], "<html>"),
            "fatal: Withings answered the request for sleep summaries with something that is not \
             JSON: <html>"
        );
    }

    #[test]
    fn paging_follows_more_and_offset() {
        assert_eq!(
            paging(&json!({"more": false, "offset": 0}), 0),
            Paging::Done
        );
        assert_eq!(
            paging(&json!({"more": true, "offset": 300}), 0),
            Paging::Next(300)
        );
        assert_eq!(
            paging(&json!({"more": 1, "offset": 300}), 0),
            Paging::Next(300)
        );
        assert_eq!(paging(&json!({"more": 0, "offset": 300}), 0), Paging::Done);
        assert_eq!(
            paging(&json!({"more": true, "offset": 300}), 300),
            Paging::Stuck
        );
        assert_eq!(paging(&json!({"more": true}), 0), Paging::Stuck);
    }
}
