//! One email message (RFC 5322, as a `.eml` file) as FHIR R4 resources:
//!
//! - the message itself: a `DocumentReference` (type and category "Email", the Subject as its
//!   description, the Date, the From addresses as authors, the Message-ID as masterIdentifier),
//!   whose first content is the message text and whose other contents link to its attachments;
//! - each attachment: a `Binary` holding its bytes;
//! - FHIR JSON attachments (a Bundle, one resource, or NDJSON): their resources as well;
//! - C-CDA attachments: converted into records by `fasten-ccda` (the C-CDA connector's
//!   converter), with a `DocumentReference` of their own pointing at the email's copy of the file;
//! - attached (forwarded) emails: a `DocumentReference` of their own, built the same way, that
//!   `appends` the email it came in.
//!
//! Resources go out through the SDK's [`Run`](fasten_connector::Run), so native tests run it all
//! against `FakeHost`.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use fasten_connector::{ConnectorError, MAX_BATCH_BYTES, Refused};
use fasten_fhir_r4::bundle::outcome_issues;
use mail_parser::decoders::html::html_to_text;
use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};
use serde_json::{Map, Value, json};

use crate::ccda::{self, FhirTime};
use crate::fhir_json::{self, Resources, Unreadable};
use crate::fhir_rules::{is_resource_type, is_valid_id, sha256_hex, stable_id};

/// The largest email accepted. Emails are read whole: one this large holds about 55 MiB at its
/// peak (the email, its decoded attachments and the Binary being written), which is why the
/// manifest asks for 96 MiB.
pub(crate) const MAX_EMAIL_BYTES: u64 = 25 * 1024 * 1024;
/// Message text beyond this is cut, so the message's DocumentReference stays well inside the
/// host's limit for one resource (base64 makes 4 bytes of 3).
const MAX_TEXT_BYTES: usize = 2 * 1024 * 1024;
/// C-CDA attachments up to this size are converted into records. The converter holds the
/// document as a tree of about ten times its size, beside the email, within the plugin's 96 MiB.
const MAX_CONVERTED_CCDA_BYTES: usize = 4 * 1024 * 1024;
/// Room for a Binary's fields other than its data.
const BINARY_OVERHEAD: usize = 1024;
/// Attached emails inside attached emails are imported this deep; deeper ones are kept as files.
const MAX_NESTING: usize = 4;
/// Warnings kept in the summary; the rest are counted.
const MAX_WARNINGS: usize = 100;
/// Multipart sections and attached emails one email may declare (counted as the words
/// `boundary` and `message/`, before it is parsed). Real emails have a few dozen; mail-parser
/// keeps about 500 bytes for each part, so a 12 MB email of 200,000 nested sections took the
/// plugin past its memory.
const MAX_DECLARED_PARTS: usize = 1_000;

pub(crate) const NOT_AN_EMAIL: &str = "This file is not an email message (.eml): it has no mail \
     headers. Save the email from your email program (\"Save as\" or \"Download message\") and \
     import that file.";
pub(crate) const EMPTY_FILE: &str = "The file is empty: there is no email message in it to import.";
pub(crate) const NOTHING_TO_IMPORT: &str = "This email holds nothing to import: it has no \
     subject, no sender, no text and no attachments that Fasten could read.";

/// Headers every real email has at least one of.
const MAIL_HEADERS: &[&str] = &[
    "From",
    "To",
    "Date",
    "Subject",
    "Message-ID",
    "Content-Type",
    "MIME-Version",
];

#[derive(Debug, PartialEq)]
pub(crate) enum ImportError {
    /// A problem with the file that the user can fix; the message is shown to them.
    Invalid(String),
    /// The host refused a batch.
    Refused(Refused),
}

impl From<Refused> for ImportError {
    fn from(refused: Refused) -> ImportError {
        ImportError::Refused(refused)
    }
}

impl From<ImportError> for ConnectorError {
    fn from(error: ImportError) -> ConnectorError {
        match error {
            ImportError::Invalid(message) => ConnectorError::InvalidInput(message),
            ImportError::Refused(refused) => refused.into(),
        }
    }
}

/// The message shown for a file larger than [`MAX_EMAIL_BYTES`].
pub(crate) fn too_large(size: u64) -> String {
    format!(
        "This email is {} MiB; Fasten imports emails of up to {} MiB. Save its largest \
         attachments from your email program and add them to the record on their own.",
        mebibytes(size as usize),
        MAX_EMAIL_BYTES >> 20
    )
}

/// Emits the resources of the email in `raw` and returns the run's warnings.
pub(crate) fn import(
    raw: &[u8],
    out: &mut fasten_connector::Run<'_>,
) -> Result<Vec<String>, ImportError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ImportError::Invalid(EMPTY_FILE.into()));
    }
    let declared = count_ignoring_case(raw, b"boundary") + count_ignoring_case(raw, b"message/");
    if declared > MAX_DECLARED_PARTS {
        return Err(ImportError::Invalid(format!(
            "This email declares {declared} multipart sections and attached emails; Fasten \
             imports emails of up to {MAX_DECLARED_PARTS}, which is far more than email \
             programs write. Save its attachments from your email program and add them to the \
             record on their own."
        )));
    }
    let message = MessageParser::default()
        .parse(raw)
        .map(Parsed)
        .filter(|message| has_mail_headers(message))
        .ok_or_else(|| ImportError::Invalid(NOT_AN_EMAIL.into()))?;
    let key = identity(&message).unwrap_or_else(|| format!("content:{}", sha256_hex(raw)));
    let mut run = Import {
        out,
        warnings: Vec::new(),
        dropped_warnings: 0,
        attachment_label: String::new(),
    };
    run.message(&message, &key, &[], None)?;
    let mut warnings = run.warnings;
    if run.dropped_warnings > 0 {
        warnings.push(format!(
            "...and {} more warnings like these.",
            run.dropped_warnings
        ));
    }
    Ok(warnings)
}

/// A parsed email, taken apart one level at a time when dropped: dropping a `Message` recurses
/// once for each email attached inside it, and 10,000 of them nested in one another (a 300 KB
/// email) overflowed the plugin's stack.
pub(crate) struct Parsed<'x>(pub(crate) Message<'x>);

impl<'x> std::ops::Deref for Parsed<'x> {
    type Target = Message<'x>;

    fn deref(&self) -> &Message<'x> {
        &self.0
    }
}

impl Drop for Parsed<'_> {
    fn drop(&mut self) {
        fn take_attached<'x>(message: &mut Message<'x>, attached: &mut Vec<Message<'x>>) {
            for part in &mut message.parts {
                if matches!(part.body, PartType::Message(_))
                    && let PartType::Message(inner) = std::mem::take(&mut part.body)
                {
                    attached.push(inner);
                }
            }
        }
        let mut attached = Vec::new();
        take_attached(&mut self.0, &mut attached);
        // Each one is dropped once the emails inside it have been taken out.
        while let Some(mut message) = attached.pop() {
            take_attached(&mut message, &mut attached);
        }
    }
}

/// How many times `word` occurs in `bytes`, in any case.
fn count_ignoring_case(bytes: &[u8], word: &[u8]) -> usize {
    bytes
        .windows(word.len())
        .filter(|window| window.eq_ignore_ascii_case(word))
        .count()
}

fn has_mail_headers(message: &Message<'_>) -> bool {
    message.headers().iter().any(|header| {
        MAIL_HEADERS
            .iter()
            .any(|name| header.name().eq_ignore_ascii_case(name))
    })
}

/// What identifies a message: its Message-ID, else its Date, From and Subject. None when it has
/// none of them.
fn identity(message: &Message<'_>) -> Option<String> {
    if let Some(id) = message
        .message_id()
        .map(str::trim)
        .filter(|id| !id.is_empty())
    {
        return Some(format!("message-id:{id}"));
    }
    let date = message.date().map(|d| d.to_rfc3339());
    let from = authors(message);
    let subject = message.subject().map(str::trim).filter(|s| !s.is_empty());
    if date.is_none() && from.is_empty() && subject.is_none() {
        return None;
    }
    Some(format!(
        "headers:{}\n{}\n{}",
        date.unwrap_or_default(),
        from.join(", "),
        subject.unwrap_or_default()
    ))
}

/// Each From address as "Name <address>" (or whichever of the two it has).
fn authors(message: &Message<'_>) -> Vec<String> {
    let Some(from) = message.from() else {
        return Vec::new();
    };
    from.iter()
        .filter_map(|addr| {
            let name = addr.name().map(str::trim).filter(|n| !n.is_empty());
            let address = addr.address().map(str::trim).filter(|a| !a.is_empty());
            match (name, address) {
                (Some(name), Some(address)) => Some(format!("{name} <{address}>")),
                (Some(only), None) | (None, Some(only)) => Some(only.to_owned()),
                (None, None) => None,
            }
        })
        .collect()
}

/// One email's import.
struct Import<'o, 'h> {
    /// Where resources go, each as the text of one JSON object no larger than
    /// [`MAX_BATCH_BYTES`].
    out: &'o mut fasten_connector::Run<'h>,
    warnings: Vec<String>,
    dropped_warnings: usize,
    /// How warnings name the attachment whose resources are being imported.
    attachment_label: String,
}

impl Import<'_, '_> {
    fn warn(&mut self, warning: String) {
        // Nested parts that share a boundary would otherwise repeat the same warning.
        if self.warnings.contains(&warning) {
            return;
        }
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(warning);
        } else {
            self.dropped_warnings += 1;
        }
    }

    fn emit(&mut self, resource: String) -> Result<(), ImportError> {
        Ok(self.out.emit_text(resource)?)
    }

    /// A C-CDA attachment: converted into records (problems, medications, results...) by the
    /// same converter the C-CDA connector uses, its document pointing at the email's copy of the
    /// file. A document that cannot be converted is still listed as a document, from its header.
    fn ccda(
        &mut self,
        header: &ccda::Header,
        key: &str,
        index: u32,
        label: &str,
        bytes: &[u8],
        attachment: &Value,
    ) -> Result<(), ImportError> {
        let converted = if bytes.len() <= MAX_CONVERTED_CCDA_BYTES {
            fasten_ccda::convert(bytes).map_err(|e| e.to_string())
        } else {
            Err(format!(
                "it is {} MiB, more than the {} MiB Fasten converts inside an email; import it \
                 on its own to get its records",
                mebibytes(bytes.len()),
                MAX_CONVERTED_CCDA_BYTES >> 20
            ))
        };
        let conversion = match converted {
            Ok(conversion) => conversion,
            Err(reason) => {
                self.warn(format!(
                    "The C-CDA document {label} could not be converted into records ({reason}), \
                     so it was kept as a document."
                ));
                return self.ccda_header_only(header, key, index, label, attachment);
            }
        };
        for warning in &conversion.warnings {
            self.warn(format!("In the C-CDA document {label}: {warning}"));
        }
        // The converter keeps the original as a Binary of its own; the email already keeps it.
        let own_binary = conversion
            .resources
            .first()
            .filter(|r| r["resourceType"] == "Binary")
            .and_then(|r| r["id"].as_str())
            .map(|id| format!("Binary/{id}"));
        for mut resource in conversion.resources {
            if resource["resourceType"] == "Binary" {
                continue;
            }
            if resource["resourceType"] == "DocumentReference"
                && own_binary.is_some()
                && resource["content"][0]["attachment"]["url"].as_str() == own_binary.as_deref()
            {
                resource["content"][0]["attachment"] = attachment.clone();
            }
            let text = resource.to_string();
            // A document's header (its title, say) may be of any length: a record the host
            // refuses would fail the whole email.
            if text.len() > MAX_BATCH_BYTES {
                self.warn(format!(
                    "A record of the C-CDA document {label} is {} MiB, more than the {} MiB a \
                     record may be, so it was left out; the document is kept as a file.",
                    mebibytes(text.len()),
                    MAX_BATCH_BYTES >> 20
                ));
                continue;
            }
            self.emit(text)?;
        }
        Ok(())
    }

    /// The C-CDA attachment as a document only, typed and dated from its header.
    fn ccda_header_only(
        &mut self,
        header: &ccda::Header,
        key: &str,
        index: u32,
        label: &str,
        attachment: &Value,
    ) -> Result<(), ImportError> {
        let document = ccda_document(header, key, index, attachment).to_string();
        // Its header's title and codes are the document's own, of any length: a 5 MiB title
        // made a record the host refused, failing the whole email.
        if document.len() > MAX_BATCH_BYTES {
            self.warn(format!(
                "The C-CDA document {label} has a header of {} MiB, more than the {} MiB a record \
                 may be, so it was only kept as a file.",
                mebibytes(document.len()),
                MAX_BATCH_BYTES >> 20
            ));
            return Ok(());
        }
        self.emit(document)
    }

    /// Emits `message` with everything in it: the email itself when `lineage` (the identities of
    /// the emails it is inside) is empty, else an attached one, which `appends` `parent_id`.
    /// `key` is its identity.
    fn message(
        &mut self,
        message: &Message<'_>,
        key: &str,
        lineage: &[&str],
        parent_id: Option<&str>,
    ) -> Result<(), ImportError> {
        let depth = lineage.len();
        let id = stable_id("email-", key);
        let subject = message
            .subject()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let which = match (depth, &subject) {
            (0, _) => "The email".to_owned(),
            (_, Some(subject)) => format!("The attached email \"{subject}\""),
            (_, None) => "An attached email".to_owned(),
        };
        self.check_boundaries(message, &which);

        let (text, text_part) = self.message_text(message, &which);
        let has_text = !text.trim().is_empty();
        let mut body = Map::new();
        body.insert("contentType".into(), "text/plain; charset=utf-8".into());
        if has_text {
            body.insert("data".into(), BASE64.encode(text.as_bytes()).into());
        }
        drop(text);
        body.insert("title".into(), "Message text".into());
        let mut content = vec![json!({ "attachment": body })];

        let mut inner_lineage = lineage.to_vec();
        inner_lineage.push(key);
        let mut holds_attachments = false;
        for (ordinal, &index) in message.attachments.iter().enumerate() {
            if text_part == Some(index) {
                continue;
            }
            let Some(part) = message.parts.get(index as usize) else {
                continue;
            };
            match &part.body {
                PartType::Multipart(_) => {}
                PartType::Message(inner) if depth < MAX_NESTING => {
                    let inner_key = identity(inner)
                        .filter(|k| !inner_lineage.contains(&k.as_str()))
                        .unwrap_or_else(|| format!("{key}/part{index}"));
                    self.message(inner, &inner_key, &inner_lineage, Some(&id))?;
                    holds_attachments = true;
                }
                _ => {
                    if let Some(entry) = self.attachment(part, index, ordinal + 1, key, &which)? {
                        content.push(entry);
                        holds_attachments = true;
                    }
                }
            }
        }

        let authors = authors(message);
        if depth == 0 && !has_text && !holds_attachments && subject.is_none() && authors.is_empty()
        {
            return Err(ImportError::Invalid(NOTHING_TO_IMPORT.into()));
        }

        let mut document = Map::new();
        document.insert("resourceType".into(), "DocumentReference".into());
        document.insert("id".into(), id.into());
        if let Some(message_id) = message
            .message_id()
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            document.insert(
                "masterIdentifier".into(),
                json!({ "system": "urn:ietf:rfc:5322", "value": message_id }),
            );
        }
        document.insert("status".into(), "current".into());
        document.insert("type".into(), json!({ "text": "Email" }));
        document.insert("category".into(), json!([{ "text": "Email" }]));
        match message.date() {
            Some(date) if date.is_valid() => {
                document.insert("date".into(), date.to_rfc3339().into());
            }
            _ => {
                if let Some(raw) = message.header_raw("Date") {
                    let raw = raw.trim();
                    self.warn(format!(
                        "{which} has a Date header that could not be read (\"{raw}\"), so it \
                         was imported without a date."
                    ));
                }
            }
        }
        if !authors.is_empty() {
            let authors: Vec<Value> = authors
                .into_iter()
                .map(|display| json!({ "display": display }))
                .collect();
            document.insert("author".into(), authors.into());
        }
        document.insert(
            "description".into(),
            subject.unwrap_or_else(|| "(no subject)".into()).into(),
        );
        if let Some(parent_id) = parent_id {
            document.insert(
                "relatesTo".into(),
                json!([{
                    "code": "appends",
                    "target": { "reference": format!("DocumentReference/{parent_id}") }
                }]),
            );
        }
        document.insert("content".into(), content.into());
        let document = Value::Object(document).to_string();
        if document.len() > MAX_BATCH_BYTES {
            return Err(ImportError::Invalid(format!(
                "{which} has too many attachments to list in one record ({} MiB of details, \
                 more than the {} MiB a record may be). Forward its attachments in several \
                 smaller emails and import those.",
                mebibytes(document.len()),
                MAX_BATCH_BYTES >> 20
            )));
        }
        self.emit(document)
    }

    /// The message's text, and the attachment it was taken from when the message has no text
    /// part of its own (a damaged multipart whose only text mail-parser filed as an attachment).
    fn message_text(&mut self, message: &Message<'_>, which: &str) -> (String, Option<u32>) {
        let (mut text, mut cut) = body_text(message);
        let mut text_part = None;
        if text.trim().is_empty()
            && let Some((index, fallback)) = fallback_text(message)
        {
            text = prefix(fallback, MAX_TEXT_BYTES).to_owned();
            cut = text.len() < fallback.len();
            text_part = Some(index);
        }
        if cut {
            self.warn(format!(
                "{which} has more than {} MiB of text; only its first {} MiB were kept.",
                MAX_TEXT_BYTES >> 20,
                MAX_TEXT_BYTES >> 20
            ));
        }
        (text, text_part)
    }

    /// Emits one attachment (and whatever records it holds) and returns its entry for the
    /// message's `content`, or None when it is empty.
    fn attachment(
        &mut self,
        part: &MessagePart<'_>,
        index: u32,
        number: usize,
        key: &str,
        which: &str,
    ) -> Result<Option<Value>, ImportError> {
        let bytes = part.contents();
        let name = part
            .attachment_name()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        let media = media_type(part);
        let label = match name {
            Some(name) => format!("\"{name}\""),
            None => format!("number {number} ({media})"),
        };
        let label = if which == "The email" {
            label
        } else {
            format!("{label} of {}", lowercase_first(which))
        };
        if bytes.is_empty() {
            if name.is_some() {
                self.warn(format!(
                    "The attachment {label} is empty, so there was nothing to keep."
                ));
            }
            return Ok(None);
        }
        let binary_id = stable_id("email-att-", &format!("{key}#part{index}"));
        let kind = classify(name, &media, bytes);
        let content_type = match (&kind, &part.body) {
            (Kind::Ccda(_), _) => "application/hl7-cda+xml".to_owned(),
            (_, PartType::Text(_) | PartType::Html(_)) => format!("{media}; charset=utf-8"),
            _ => media.clone(),
        };
        let title = name
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Attachment {number} ({media})"));

        let stored =
            base64_len(bytes.len()) + BINARY_OVERHEAD + content_type.len() <= MAX_BATCH_BYTES;
        let mut attachment = Map::new();
        attachment.insert("contentType".into(), content_type.clone().into());
        if stored {
            attachment.insert("url".into(), format!("Binary/{binary_id}").into());
        }
        attachment.insert("title".into(), title.into());
        attachment.insert("size".into(), bytes.len().into());

        match kind {
            Kind::FhirJson => {
                self.attachment_label = label.clone();
                match fhir_json::import_json(bytes, self) {
                    Ok(()) => {}
                    Err(Err(failure)) => return Err(failure),
                    Err(Ok(unreadable)) => self.warn(unreadable_warning(&label, &unreadable)),
                }
            }
            Kind::FhirNdjson => {
                self.attachment_label = label.clone();
                if fhir_json::import_ndjson(bytes, &label, self)? == 0 {
                    self.warn(format!(
                        "The attachment {label} holds no FHIR records, so it was only kept as a \
                         file."
                    ));
                }
            }
            Kind::Ccda(header) => {
                let attachment = Value::Object(attachment.clone());
                self.ccda(&header, key, index, &label, bytes, &attachment)?;
            }
            Kind::Other => {}
        }

        if stored {
            self.emit(binary_json(&binary_id, &content_type, bytes))?;
        } else {
            self.warn(format!(
                "The attachment {label} is {} MiB, more than the {} MiB Fasten can keep of one \
                 attachment, so only its name and size were recorded. Save it from your email \
                 program and add it to the record on its own.",
                mebibytes(bytes.len()),
                mebibytes(max_attachment_bytes())
            ));
        }
        Ok(Some(json!({ "attachment": attachment })))
    }

    /// Warns about multipart sections whose boundary never appears or is never closed: mail-parser
    /// recovers what it can from such emails, but their last part may be cut off or hold stray
    /// lines.
    fn check_boundaries(&mut self, message: &Message<'_>, which: &str) {
        let raw = message.raw_message();
        // A section's delimiters are looked for from the near end of the section: the first
        // from its start, the closing one from its end, so a whole email is checked in about
        // one pass however deeply its sections nest. Only a damaged section is read through,
        // and those reads are bounded: an email of 10,000 nested sections left open, each
        // read through, took minutes.
        let mut budget = BOUNDARY_SCANS.saturating_mul(raw.len()).max(1 << 20);
        for part in &message.parts {
            let Some(content_type) = part.content_type() else {
                continue;
            };
            if !content_type.ctype().eq_ignore_ascii_case("multipart") {
                continue;
            }
            let Some(boundary) = content_type.attribute("boundary") else {
                continue;
            };
            let start = (part.offset_body as usize).min(raw.len());
            let end = match part.offset_end as usize {
                end if end > start && end <= raw.len() => end,
                _ => raw.len(),
            };
            let region = &raw[start..end];
            let delimiter = format!("--{boundary}");
            let closing = format!("{delimiter}--");
            // None: the budget is spent, and the warnings so far say the email is damaged.
            let Some(opened) = occurs(region, delimiter.as_bytes(), Search::Forward, &mut budget)
            else {
                return;
            };
            if !opened {
                self.warn(format!(
                    "{which} is damaged: it says its parts are separated by the line \
                     \"{delimiter}\", which never appears, so its contents were read as one \
                     piece. Compare the imported text with the email itself."
                ));
                continue;
            }
            let Some(closed) = occurs(region, closing.as_bytes(), Search::Backward, &mut budget)
            else {
                return;
            };
            if !closed {
                self.warn(format!(
                    "{which} may be cut off: the list of parts separated by \"{delimiter}\" is \
                     never closed (there is no \"{closing}\" line), so its last part may be \
                     incomplete or hold stray lines. Compare the imported records with the email \
                     itself."
                ));
            }
        }
    }
}

impl Resources for Import<'_, '_> {
    /// Emits a resource found in an attachment, unless the host would refuse it: one refused
    /// resource would fail the whole import.
    fn resource(&mut self, resource: Value) -> Result<(), ImportError> {
        let label = self.attachment_label.clone();
        let Some(object) = resource.as_object() else {
            self.warn(format!(
                "The attachment {label} holds an entry that is not a FHIR resource (not a JSON \
                 object); it was skipped."
            ));
            return Ok(());
        };
        let resource_type = match object.get("resourceType") {
            Some(Value::String(t)) if is_resource_type(t) => t.clone(),
            Some(Value::String(t)) => {
                self.warn(format!(
                    "The attachment {label} holds a resource of type \"{t}\", which is not a FHIR \
                     R4 resource type; it was skipped."
                ));
                return Ok(());
            }
            _ => {
                self.warn(format!(
                    "The attachment {label} holds an entry without a \"resourceType\"; it was \
                     skipped."
                ));
                return Ok(());
            }
        };
        match object.get("id") {
            None => {}
            Some(Value::String(id)) if is_valid_id(id) => {}
            Some(id) => {
                self.warn(format!(
                    "The attachment {label} holds a {resource_type} with the id {id}, which is \
                     not a valid FHIR id; it was skipped."
                ));
                return Ok(());
            }
        }
        if resource_type == "OperationOutcome" {
            self.warn(describe_outcome(&label, &resource));
            return Ok(());
        }
        let text = resource.to_string();
        drop(resource);
        if text.len() > MAX_BATCH_BYTES {
            self.warn(format!(
                "The attachment {label} holds a {resource_type} of {} MiB, more than the {} MiB \
                 Fasten can store as one record; it was skipped.",
                mebibytes(text.len()),
                MAX_BATCH_BYTES >> 20
            ));
            return Ok(());
        }
        self.emit(text)
    }

    fn warn(&mut self, warning: String) {
        Import::warn(self, warning);
    }
}

/// What an attachment holds, beyond its bytes.
enum Kind {
    FhirJson,
    FhirNdjson,
    Ccda(ccda::Header),
    Other,
}

fn classify(name: Option<&str>, media: &str, bytes: &[u8]) -> Kind {
    let extension = name
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    if extension == "ndjson" || extension == "jsonl" || media.ends_with("ndjson") {
        return Kind::FhirNdjson;
    }
    if extension == "json" || media == "application/json" || media == "application/fhir+json" {
        return Kind::FhirJson;
    }
    if extension == "xml" || media.ends_with("/xml") || media.ends_with("+xml") {
        let text = String::from_utf8_lossy(bytes);
        if let Some(header) = ccda::read_header(&text) {
            return Kind::Ccda(header);
        }
    }
    Kind::Other
}

/// The C-CDA document's own DocumentReference, whose content is the same Binary as the email's
/// entry for it.
fn ccda_document(header: &ccda::Header, key: &str, index: u32, attachment: &Value) -> Value {
    let mut document = Map::new();
    document.insert("resourceType".into(), "DocumentReference".into());
    document.insert(
        "id".into(),
        stable_id("email-ccda-", &format!("{key}#part{index}")).into(),
    );
    document.insert("status".into(), "current".into());
    let document_type = match &header.code {
        Some(code) => {
            let mut coding = Map::new();
            if let Some(system) = &code.system {
                coding.insert("system".into(), system.clone().into());
            }
            coding.insert("code".into(), code.code.clone().into());
            if let Some(display) = &code.display {
                coding.insert("display".into(), display.clone().into());
            }
            let mut concept = Map::new();
            concept.insert("coding".into(), json!([coding]));
            if let Some(display) = code.display.as_ref().or(header.title.as_ref()) {
                concept.insert("text".into(), display.clone().into());
            }
            Value::Object(concept)
        }
        None => json!({ "text": header.title.as_deref().unwrap_or("Clinical document (C-CDA)") }),
    };
    document.insert("type".into(), document_type);
    match header.effective_time.as_deref().and_then(ccda::fhir_time) {
        Some(FhirTime::Instant(instant)) => {
            document.insert("date".into(), instant.into());
        }
        Some(FhirTime::Date(date)) => {
            document.insert("context".into(), json!({ "period": { "start": date } }));
        }
        None => {}
    }
    if let Some(title) = &header.title {
        document.insert("description".into(), title.clone().into());
    }
    document.insert("content".into(), json!([{ "attachment": attachment }]));
    Value::Object(document)
}

/// The text of the message's text parts (HTML ones converted to text), in order, at most
/// [`MAX_TEXT_BYTES`] of it; and whether some was cut off.
fn body_text(message: &Message<'_>) -> (String, bool) {
    let mut text = String::new();
    for &index in &message.text_body {
        let Some(part) = message.parts.get(index as usize) else {
            continue;
        };
        let piece: Cow<'_, str> = match &part.body {
            PartType::Text(plain) => Cow::Borrowed(plain),
            // Markup is most of an HTML email, so this much HTML gives at least as much text as
            // is kept, without converting an enormous body whole.
            PartType::Html(html) => Cow::Owned(html_to_text(prefix(html, 4 * MAX_TEXT_BYTES))),
            _ => continue,
        };
        if piece.trim().is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let room = MAX_TEXT_BYTES.saturating_sub(text.len());
        if piece.len() > room {
            text.push_str(prefix(&piece, room));
            return (text, true);
        }
        text.push_str(&piece);
    }
    (text, false)
}

/// A text part filed as an attachment that is really the message's text: unnamed, not marked as
/// an attachment, and either plain text or the whole message body.
fn fallback_text<'m>(message: &'m Message<'_>) -> Option<(u32, &'m str)> {
    message.attachments.iter().find_map(|&index| {
        let part = message.parts.get(index as usize)?;
        let PartType::Text(text) = &part.body else {
            return None;
        };
        let marked_attachment = part
            .content_disposition()
            .is_some_and(|d| d.is_attachment());
        let plain = index == 0 || media_type(part) == "text/plain";
        (plain && !marked_attachment && part.attachment_name().is_none() && !text.trim().is_empty())
            .then_some((index, text.as_ref()))
    })
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The part's media type, lower case, without parameters.
fn media_type(part: &MessagePart<'_>) -> String {
    let declared = part.content_type().map(|ct| match ct.subtype() {
        Some(subtype) => format!("{}/{}", ct.ctype(), subtype),
        None => ct.ctype().to_owned(),
    });
    match declared {
        Some(media) if media.contains('/') => media.to_ascii_lowercase(),
        _ => match part.body {
            PartType::Text(_) => "text/plain".into(),
            PartType::Html(_) => "text/html".into(),
            _ => "application/octet-stream".into(),
        },
    }
}

/// A Binary's JSON text, written directly so a large attachment's base64 exists only once.
fn binary_json(id: &str, content_type: &str, bytes: &[u8]) -> String {
    let mut text = String::with_capacity(base64_len(bytes.len()) + BINARY_OVERHEAD);
    text.push_str("{\"resourceType\":\"Binary\",\"id\":");
    text.push_str(&Value::from(id).to_string());
    text.push_str(",\"contentType\":");
    text.push_str(&Value::from(content_type).to_string());
    text.push_str(",\"data\":\"");
    BASE64.encode_string(bytes, &mut text);
    text.push_str("\"}");
    text
}

fn base64_len(bytes: usize) -> usize {
    bytes.div_ceil(3) * 4
}

/// The largest attachment whose Binary fits in one resource.
fn max_attachment_bytes() -> usize {
    (MAX_BATCH_BYTES - BINARY_OVERHEAD) / 4 * 3
}

fn mebibytes(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn lowercase_first(text: &str) -> Cow<'_, str> {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if first.is_uppercase() => {
            Cow::Owned(first.to_lowercase().chain(chars).collect())
        }
        _ => Cow::Borrowed(text),
    }
}

/// How many times over its bytes the sections of one email are searched for their delimiters,
/// at most (see [`Import::check_boundaries`]).
const BOUNDARY_SCANS: usize = 8;

enum Search {
    Forward,
    Backward,
}

/// Whether `needle` occurs in `haystack`, looked for from its start or its end, each position
/// looked at taken from `budget`; None when the budget ran out first.
fn occurs(haystack: &[u8], needle: &[u8], search: Search, budget: &mut usize) -> Option<bool> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return Some(false);
    }
    let positions = haystack.len() - needle.len() + 1;
    let allowed = positions.min(*budget);
    let windows = haystack.windows(needle.len());
    let found = match search {
        Search::Forward => windows.take(allowed).position(|w| w == needle),
        Search::Backward => windows.rev().take(allowed).position(|w| w == needle),
    };
    match found {
        Some(at) => {
            *budget -= at + 1;
            Some(true)
        }
        None if allowed < positions => {
            *budget = 0;
            None
        }
        None => {
            *budget -= allowed;
            Some(false)
        }
    }
}

fn unreadable_warning(label: &str, unreadable: &Unreadable) -> String {
    match unreadable {
        Unreadable::NotJson(reason) => format!(
            "The attachment {label} is not valid JSON ({reason}), so its records could not be \
             imported; the file itself was kept."
        ),
        Unreadable::NotFhir => format!(
            "The attachment {label} is JSON but not FHIR (it has no \"resourceType\"), so it was \
             only kept as a file."
        ),
        Unreadable::EmptyBundle => format!(
            "The attachment {label} is a FHIR Bundle without any resources, so it was only kept \
             as a file."
        ),
    }
}

/// An OperationOutcome is a server's report of a problem, not a record: it becomes a warning.
fn describe_outcome(label: &str, outcome: &Value) -> String {
    let issues = outcome_issues(outcome);
    if issues.is_empty() {
        format!("The attachment {label} holds an OperationOutcome (a problem a server reported).")
    } else {
        format!(
            "The attachment {label} reports a problem: {}",
            issues.join("; ")
        )
    }
}
