//! Native tests: emails from the shared test data and emails built here, imported without a host.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use fasten_connector::testing::{FakeFile, FakeHost};
use fasten_connector::{Connector, ConnectorError, MAX_BATCH_BYTES, MAX_BATCH_RESOURCES};

use crate::EmailConnector;
use crate::ccda::{self, FhirTime};
use crate::email::{self, EMPTY_FILE, ImportError, NOT_AN_EMAIL, NOTHING_TO_IMPORT};
use crate::fhir_rules::is_valid_id;

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata");

fn testdata(path: &str) -> Vec<u8> {
    std::fs::read(format!("{TESTDATA}/{path}"))
        .unwrap_or_else(|e| panic!("cannot read test data {path}: {e}"))
}

struct Imported {
    resources: Vec<Value>,
    warnings: Vec<String>,
    /// `Type/id` of each resource.
    ids: Vec<String>,
}

impl Imported {
    fn of_type(&self, resource_type: &str) -> Vec<&Value> {
        self.resources
            .iter()
            .filter(|r| r["resourceType"] == resource_type)
            .collect()
    }

    /// The DocumentReferences of emails (not of C-CDA documents).
    fn emails(&self) -> Vec<&Value> {
        self.of_type("DocumentReference")
            .into_iter()
            .filter(|d| d["category"][0]["text"] == "Email")
            .collect()
    }

    /// The email itself: the one email DocumentReference that was not attached to another.
    fn email(&self) -> &Value {
        let outer: Vec<_> = self
            .emails()
            .into_iter()
            .filter(|d| d.get("relatesTo").is_none())
            .collect();
        assert_eq!(outer.len(), 1, "one outer email DocumentReference");
        outer[0]
    }

    fn resolve(&self, reference: &str) -> &Value {
        let (resource_type, id) = reference.split_once('/').expect("Type/id");
        self.resources
            .iter()
            .find(|r| r["resourceType"] == resource_type && r["id"] == id)
            .unwrap_or_else(|| panic!("{reference} was not emitted"))
    }
}

/// Imports `raw` as the host would: the FakeHost refuses a batch over its limits, and the SDK a
/// resource over 4 MiB; every resource must also be a JSON object with a valid id.
fn import(raw: &[u8]) -> Imported {
    let mut host = FakeHost::new();
    let warnings = host
        .with_run(|run| email::import(raw, run))
        .unwrap_or_else(|e| panic!("the import failed: {e:?}"));
    let resources = host.resources();
    for resource in &resources {
        let id = resource["id"].as_str().expect("every resource has an id");
        assert!(is_valid_id(id), "invalid id {id}");
    }
    Imported {
        resources,
        warnings,
        ids: host.resource_keys(),
    }
}

fn import_error(raw: &[u8]) -> String {
    match FakeHost::new().with_run(|run| email::import(raw, run)) {
        Err(ImportError::Invalid(message)) => message,
        other => panic!("expected an error for the user, got {other:?}"),
    }
}

fn decoded(data: &Value) -> Vec<u8> {
    BASE64
        .decode(data.as_str().expect("base64 data"))
        .expect("valid base64")
}

/// The email's text, with line ends normalised.
fn text_of(document: &Value) -> String {
    let attachment = &document["content"][0]["attachment"];
    assert_eq!(attachment["contentType"], "text/plain; charset=utf-8");
    assert_eq!(attachment["title"], "Message text");
    match attachment.get("data") {
        Some(data) => String::from_utf8(decoded(data))
            .unwrap()
            .replace("\r\n", "\n"),
        None => String::new(),
    }
}

const HEADERS: &str = "From: \"Dr. Ada Lovelace\" <ada@clinic.example>\r\n\
To: me@example.org\r\n\
Subject: Your lab results\r\n\
Date: Tue, 14 May 2024 09:30:00 +0200\r\n\
Message-ID: <results-42@clinic.example>\r\n\
MIME-Version: 1.0\r\n";

struct Part<'a> {
    name: &'a str,
    content_type: &'a str,
    bytes: &'a [u8],
}

/// A multipart/mixed email with a UTF-8 text part and base64-encoded attachments.
fn build_eml(headers: &str, text: &str, parts: &[Part<'_>]) -> Vec<u8> {
    let mut eml = String::from(headers);
    eml.push_str("Content-Type: multipart/mixed; boundary=\"==b0undary==\"\r\n\r\n");
    eml.push_str("--==b0undary==\r\nContent-Type: text/plain; charset=utf-8\r\n");
    eml.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
    eml.push_str(text);
    eml.push_str("\r\n");
    for part in parts {
        eml.push_str(&format!(
            "--==b0undary==\r\nContent-Type: {}; name=\"{}\"\r\n\
             Content-Disposition: attachment; filename=\"{}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n",
            part.content_type, part.name, part.name
        ));
        let encoded = BASE64.encode(part.bytes);
        for line in encoded.as_bytes().chunks(76) {
            eml.push_str(std::str::from_utf8(line).unwrap());
            eml.push_str("\r\n");
        }
    }
    eml.push_str("--==b0undary==--\r\n");
    eml.into_bytes()
}

#[test]
fn a_text_email_becomes_one_document_reference() {
    let body = "Your HbA1c is 5.4 %, in range.\r\nViele Grüße,\r\nDr. Lovelace";
    let imported = import(&build_eml(HEADERS, body, &[]));
    assert_eq!(imported.resources.len(), 1);
    let email = imported.email();
    assert!(email["id"].as_str().unwrap().starts_with("email-"));
    assert_eq!(email["id"].as_str().unwrap().len(), "email-".len() + 16);
    assert_eq!(email["status"], "current");
    assert_eq!(email["type"]["text"], "Email");
    assert_eq!(email["category"][0]["text"], "Email");
    assert_eq!(email["description"], "Your lab results");
    assert_eq!(email["date"], "2024-05-14T09:30:00+02:00");
    assert_eq!(
        email["author"][0]["display"],
        "Dr. Ada Lovelace <ada@clinic.example>"
    );
    assert_eq!(email["masterIdentifier"]["system"], "urn:ietf:rfc:5322");
    assert_eq!(
        email["masterIdentifier"]["value"],
        "results-42@clinic.example"
    );
    assert_eq!(
        text_of(email).trim_end(),
        "Your HbA1c is 5.4 %, in range.\nViele Grüße,\nDr. Lovelace"
    );
    assert_eq!(email["content"].as_array().unwrap().len(), 1);
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
}

#[test]
fn an_html_only_email_keeps_its_text_without_markup() {
    let eml = "From: lab@clinic.example\r\nSubject: Results\r\n\
        Content-Type: text/html; charset=utf-8\r\n\r\n\
        <html><body><p>Potassium: <b>4.1 mmol/L</b></p><p>Normal.</p></body></html>\r\n";
    let imported = import(eml.as_bytes());
    let text = text_of(imported.email());
    assert!(text.contains("Potassium: 4.1 mmol/L"), "{text:?}");
    assert!(text.contains("Normal."), "{text:?}");
    assert!(!text.contains('<'), "{text:?}");
    assert_eq!(
        imported.email()["author"][0]["display"],
        "lab@clinic.example"
    );
    assert!(imported.email().get("date").is_none());
}

#[test]
fn a_pdf_part_without_or_with_inline_disposition_is_one_pdf_binary() {
    for file in ["eml/mixed-pdf.eml", "eml/mixed-pdf-inline.eml"] {
        let imported = import(&testdata(file));
        let binaries = imported.of_type("Binary");
        assert_eq!(binaries.len(), 1, "{file}");
        assert_eq!(binaries[0]["contentType"], "application/pdf", "{file}");
        assert_eq!(decoded(&binaries[0]["data"]), b"pdf", "{file}");

        let email = imported.email();
        assert_eq!(text_of(email), "text", "{file}");
        assert_eq!(email["description"], "(no subject)", "{file}");
        assert!(email.get("date").is_none() && email.get("author").is_none());
        let entry = &email["content"][1]["attachment"];
        assert_eq!(entry["contentType"], "application/pdf");
        assert_eq!(entry["size"], 3);
        assert_eq!(entry["title"], "Attachment 1 (application/pdf)");
        assert_eq!(
            imported.resolve(entry["url"].as_str().unwrap())["id"],
            binaries[0]["id"]
        );
        assert!(
            imported.warnings.is_empty(),
            "{file}: {:?}",
            imported.warnings
        );
    }
}

#[test]
fn a_calendar_part_is_kept_as_a_text_calendar_binary() {
    let imported = import(&testdata("eml/mixed-calendar.eml"));
    let binaries = imported.of_type("Binary");
    assert_eq!(binaries.len(), 1);
    assert_eq!(binaries[0]["contentType"], "text/calendar; charset=utf-8");
    assert_eq!(decoded(&binaries[0]["data"]), b"BEGIN:VCALENDAR");
    assert_eq!(text_of(imported.email()), "text");
}

#[test]
fn an_attached_email_becomes_its_own_document_reference() {
    let imported = import(&testdata("eml/nested-encoded-message.eml"));
    let emails = imported.emails();
    assert_eq!(emails.len(), 2);
    let outer = imported.email();
    assert_eq!(text_of(outer).trim(), "after");
    let inner = emails
        .iter()
        .find(|d| d.get("relatesTo").is_some())
        .unwrap();
    assert_eq!(inner["description"], "inner");
    assert_eq!(text_of(inner).trim(), "inner body");
    assert_eq!(inner["relatesTo"][0]["code"], "appends");
    assert_eq!(
        inner["relatesTo"][0]["target"]["reference"],
        format!("DocumentReference/{}", outer["id"].as_str().unwrap())
    );
    assert_ne!(inner["id"], outer["id"]);
    assert!(imported.of_type("Binary").is_empty());
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
}

#[test]
fn a_multipart_whose_boundary_never_appears_keeps_its_body_as_text_with_a_warning() {
    let imported = import(&testdata("eml/malformed-002.eml"));
    assert_eq!(imported.resources.len(), 1);
    assert_eq!(text_of(imported.email()).trim(), "body");
    assert_eq!(imported.warnings.len(), 1, "{:?}", imported.warnings);
    assert!(imported.warnings[0].contains("\"--ab\", which never appears"));
}

#[test]
fn unclosed_or_prefix_trap_boundaries_keep_the_text_and_warn_of_a_cut_off_email() {
    for file in ["eml/malformed-003.eml", "eml/malformed-004.eml"] {
        let imported = import(&testdata(file));
        assert_eq!(imported.resources.len(), 1, "{file}");
        assert_eq!(text_of(imported.email()).trim(), "body", "{file}");
        assert!(imported.of_type("Binary").is_empty(), "{file}");
        assert_eq!(
            imported.warnings.len(),
            1,
            "{file}: {:?}",
            imported.warnings
        );
        assert!(
            imported.warnings[0].contains("may be cut off")
                && imported.warnings[0].contains("no \"--a--\" line"),
            "{file}: {:?}",
            imported.warnings
        );
    }
}

#[test]
fn an_email_with_no_headers_text_or_attachments_is_refused() {
    assert_eq!(
        import_error(&testdata("eml/malformed-007.eml")),
        NOTHING_TO_IMPORT
    );
}

#[test]
fn unterminated_nested_messages_are_imported_with_warnings() {
    let imported = import(&testdata("eml/malformed-012.eml"));
    let attached: Vec<_> = imported
        .emails()
        .into_iter()
        .filter(|d| d.get("relatesTo").is_some())
        .collect();
    assert_eq!(attached.len(), 2);
    assert_eq!(text_of(attached[0]).trim(), "1");
    // Without its closing boundary the second message runs to the end of the file.
    assert!(text_of(attached[1]).starts_with("22\n--1\n"));
    assert!(text_of(attached[1]).trim_end().ends_with("333"));
    let outer = imported.email();
    assert_eq!(text_of(outer), "");
    for boundary in ["--1", "--2"] {
        assert!(
            imported
                .warnings
                .iter()
                .any(|w| w.contains(&format!("no \"{boundary}--\" line"))),
            "{boundary}: {:?}",
            imported.warnings
        );
    }
}

#[test]
fn every_test_email_imports_or_fails_with_a_message() {
    let mut files: Vec<_> = std::fs::read_dir(format!("{TESTDATA}/eml"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 9);
    for file in files {
        let raw = std::fs::read(&file).unwrap();
        match FakeHost::new().with_run(|run| email::import(&raw, run)) {
            Ok(_) => {}
            Err(ImportError::Invalid(message)) => assert_eq!(message, NOTHING_TO_IMPORT),
            Err(other) => panic!("{}: {other:?}", file.display()),
        }
    }
}

#[test]
fn a_fhir_bundle_attachment_imports_its_entries_with_local_references() {
    let bundle_bytes =
        testdata("fhir/synthea/Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json");
    let bundle: Value = serde_json::from_slice(&bundle_bytes).unwrap();
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 104);
    let eml = build_eml(
        HEADERS,
        "Your records are attached.",
        &[Part {
            name: "Paris_Casper.json",
            content_type: "application/fhir+json",
            bytes: &bundle_bytes,
        }],
    );
    let imported = import(&eml);
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);

    let from_bundle: Vec<&Value> = imported
        .resources
        .iter()
        .filter(|r| r["id"].as_str().is_some_and(|id| !id.starts_with("email-")))
        .collect();
    assert_eq!(from_bundle.len(), entries.len());
    for resource in &from_bundle {
        assert!(
            !resource.to_string().contains("\"reference\":\"urn:uuid:"),
            "a urn:uuid reference was left in {}",
            resource["id"]
        );
    }
    let patient = from_bundle
        .iter()
        .find(|r| r["resourceType"] == "Patient")
        .unwrap();
    let encounter = from_bundle
        .iter()
        .find(|r| r["resourceType"] == "Encounter")
        .unwrap();
    assert_eq!(
        encounter["subject"]["reference"],
        format!("Patient/{}", patient["id"].as_str().unwrap())
    );
    let observation = from_bundle
        .iter()
        .find(|r| r["resourceType"] == "Observation")
        .unwrap();
    let encounter_ref = observation["encounter"]["reference"].as_str().unwrap();
    assert_eq!(imported.resolve(encounter_ref)["resourceType"], "Encounter");

    // The file itself is kept too, byte for byte.
    let binaries = imported.of_type("Binary");
    assert_eq!(binaries.len(), 1);
    assert_eq!(binaries[0]["contentType"], "application/fhir+json");
    assert_eq!(decoded(&binaries[0]["data"]), bundle_bytes);
    let entry = &imported.email()["content"][1]["attachment"];
    assert_eq!(entry["title"], "Paris_Casper.json");
    assert_eq!(entry["size"], bundle_bytes.len());
}

#[test]
fn an_ndjson_attachment_imports_each_line_and_names_a_bad_one() {
    let ndjson = b"{\"resourceType\":\"Patient\",\"id\":\"p-1\",\"gender\":\"female\"}\n\
{\"resourceType\":\"Observation\",\"id\":\"obs-1\",\"status\":\"final\"\n\
{\"resourceType\":\"Observation\",\"id\":\"obs-2\",\"status\":\"final\",\
\"code\":{\"text\":\"Glucose\"},\"valueQuantity\":{\"value\":5.4,\"unit\":\"mmol/L\"}}\n";
    let eml = build_eml(
        HEADERS,
        "Export attached.",
        &[Part {
            name: "labs.ndjson",
            content_type: "application/fhir+ndjson",
            bytes: ndjson,
        }],
    );
    let imported = import(&eml);
    let ids: Vec<_> = imported
        .resources
        .iter()
        .filter(|r| r["resourceType"] != "Binary" && r["resourceType"] != "DocumentReference")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["p-1", "obs-2"]);
    assert_eq!(
        imported.resolve("Observation/obs-2")["valueQuantity"]["unit"],
        "mmol/L"
    );
    assert_eq!(imported.warnings.len(), 1);
    assert!(imported.warnings[0].starts_with("Line 2 of the attachment \"labs.ndjson\""));
    let binaries = imported.of_type("Binary");
    assert_eq!(binaries[0]["contentType"], "application/fhir+ndjson");
    assert_eq!(decoded(&binaries[0]["data"]), ndjson);
}

#[test]
fn invalid_or_non_fhir_json_attachments_are_kept_as_files_with_a_warning() {
    let eml = build_eml(
        HEADERS,
        "See attached.",
        &[
            Part {
                name: "broken.json",
                content_type: "application/json",
                bytes: b"{\"resourceType\": \"Patient\", \"id\": ",
            },
            Part {
                name: "settings.json",
                content_type: "application/json",
                bytes: b"{\"theme\": \"dark\"}",
            },
            Part {
                name: "odd.json",
                content_type: "application/json",
                bytes: br#"{"resourceType":"Bundle","entry":[
                    {"resource":{"resourceType":"Pet","id":"rex"}},
                    {"resource":{"resourceType":"Patient","id":"no spaces allowed"}},
                    {"resource":{"resourceType":"OperationOutcome","issue":[{"diagnostics":"Lab system offline"}]}},
                    {"resource":{"resourceType":"Condition","id":"c-1"}}]}"#,
            },
        ],
    );
    let imported = import(&eml);
    assert_eq!(imported.of_type("Binary").len(), 3);
    assert_eq!(imported.of_type("Condition").len(), 1);
    assert!(imported.of_type("Patient").is_empty());
    let expected = [
        "The attachment \"broken.json\" is not valid JSON",
        "The attachment \"settings.json\" is JSON but not FHIR",
        "The attachment \"odd.json\" holds a resource of type \"Pet\"",
        "The attachment \"odd.json\" holds a Patient with the id \"no spaces allowed\"",
        "The attachment \"odd.json\" reports a problem: Lab system offline",
    ];
    assert_eq!(
        imported.warnings.len(),
        expected.len(),
        "{:?}",
        imported.warnings
    );
    for (warning, start) in imported.warnings.iter().zip(expected) {
        assert!(
            warning.starts_with(start),
            "{warning:?} should start with {start:?}"
        );
    }
    let broken = imported
        .of_type("Binary")
        .into_iter()
        .find(|b| decoded(&b["data"]).starts_with(b"{\"resourceType\": \"Patient\""))
        .expect("the broken file is still kept");
    assert_eq!(broken["contentType"], "application/json");
}

#[test]
fn ccda_attachments_get_their_own_typed_document_references() {
    let ccd = testdata("ccda/CCD-1.xml");
    let referral = testdata("ccda/Referral_Note.xml");
    let eml = build_eml(
        HEADERS,
        "Your summary and referral.",
        &[
            Part {
                name: "CCD.xml",
                content_type: "application/xml",
                bytes: &ccd,
            },
            Part {
                name: "Referral_Note.xml",
                content_type: "text/xml",
                bytes: &referral,
            },
        ],
    );
    let imported = import(&eml);
    // Entries the converter could not map are warnings that name the document and section.
    for warning in &imported.warnings {
        assert!(
            warning.starts_with("In the C-CDA document \"CCD.xml\": ")
                || warning.starts_with("In the C-CDA document \"Referral_Note.xml\": "),
            "{warning}"
        );
        assert!(warning.contains(" section: "), "{warning}");
    }
    // The documents' records were converted, not only kept.
    assert!(!imported.of_type("Condition").is_empty());
    // Each document names its patient (two record numbers of the same Eve).
    for patient in imported.of_type("Patient") {
        assert_eq!(patient["name"][0]["given"][0], "Eve", "{patient}");
    }
    // Each document's own DocumentReference (its sections without entries are notes of their own).
    let documents: Vec<_> = imported
        .of_type("DocumentReference")
        .into_iter()
        .filter(|d| d["content"][0]["attachment"]["contentType"] == "application/hl7-cda+xml")
        .collect();
    assert_eq!(documents.len(), 2);
    assert!(
        imported
            .of_type("DocumentReference")
            .iter()
            .any(|d| d["context"]["related"][0]["reference"]
                == format!("DocumentReference/{}", documents[1]["id"].as_str().unwrap())),
        "the referral's narrative-only sections are notes that point at it"
    );
    let expected = [
        (
            "34133-9",
            "Summary of episode note",
            "Patient Chart Summary",
            "2013-08-15T10:30:00-08:00",
            &ccd,
        ),
        (
            "57113-1",
            "Referral Note",
            "Referral Note",
            "2013-09-21T05:00:00-08:00",
            &referral,
        ),
    ];
    let email = imported.email();
    for (document, (code, display, title, date, bytes)) in documents.iter().zip(expected) {
        let coding = &document["type"]["coding"][0];
        assert_eq!(coding["system"], "http://loinc.org");
        assert_eq!(coding["code"], code);
        assert_eq!(coding["display"], display);
        assert_eq!(document["description"], title);
        assert_eq!(document["date"], date);
        assert_eq!(document["status"], "current");
        let attachment = &document["content"][0]["attachment"];
        assert_eq!(attachment["contentType"], "application/hl7-cda+xml");
        assert_eq!(attachment["size"], bytes.len());
        let binary = imported.resolve(attachment["url"].as_str().unwrap());
        assert_eq!(binary["contentType"], "application/hl7-cda+xml");
        assert_eq!(&decoded(&binary["data"]), bytes);
        // The email lists the same file among its contents.
        assert!(
            email["content"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["attachment"]["url"] == attachment["url"])
        );
    }
}

#[test]
fn ccda_header_reading_needs_the_hl7_namespace_and_decodes_entities() {
    assert_eq!(ccda::read_header("<root/>"), None);
    assert_eq!(
        ccda::read_header("<ClinicalDocument><title>x</title></ClinicalDocument>"),
        None
    );
    assert_eq!(ccda::read_header("not xml at all"), None);
    let header = ccda::read_header(
        "<?xml version=\"1.0\"?><!-- a comment --><ClinicalDocument xmlns=\"urn:hl7-org:v3\">\
         <code code=\"18842-5\" codeSystem=\"2.16.840.1.113883.6.1\" displayName=\"Discharge summary\"/>\
         <title>Discharge &amp; follow-up\n   plan</title><effectiveTime value=\"20240102\"/>\
         <recordTarget><title>not this</title></recordTarget></ClinicalDocument>",
    )
    .unwrap();
    assert_eq!(header.title.as_deref(), Some("Discharge & follow-up plan"));
    let code = header.code.unwrap();
    assert_eq!(
        (code.code.as_str(), code.display.as_deref()),
        ("18842-5", Some("Discharge summary"))
    );
    assert_eq!(header.effective_time.as_deref(), Some("20240102"));
}

#[test]
fn hl7_timestamps_become_fhir_instants_or_dates() {
    let instant = |s: &str| FhirTime::Instant(s.to_owned());
    let date = |s: &str| FhirTime::Date(s.to_owned());
    assert_eq!(
        ccda::fhir_time("201308151030-0800"),
        Some(instant("2013-08-15T10:30:00-08:00"))
    );
    assert_eq!(
        ccda::fhir_time("20130815103015.25+0100"),
        Some(instant("2013-08-15T10:30:15.25+01:00"))
    );
    assert_eq!(
        ccda::fhir_time("2013081510-0500"),
        Some(instant("2013-08-15T10:00:00-05:00"))
    );
    assert_eq!(ccda::fhir_time("20130815"), Some(date("2013-08-15")));
    assert_eq!(ccda::fhir_time("201308"), Some(date("2013-08")));
    assert_eq!(ccda::fhir_time("2013"), Some(date("2013")));
    // A time without a zone cannot be a FHIR instant: only its date is kept.
    assert_eq!(ccda::fhir_time("201308151030"), Some(date("2013-08-15")));
    assert_eq!(ccda::fhir_time("20131315"), None);
    assert_eq!(ccda::fhir_time("201308152599-0800"), None);
    assert_eq!(ccda::fhir_time("yesterday"), None);
}

#[test]
fn a_ccda_without_a_time_zone_is_dated_by_its_context_period() {
    let cda = b"<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><code code=\"11488-4\" \
        codeSystem=\"2.16.840.1.113883.6.1\" displayName=\"Consult note\"/><title>Consult</title>\
        <effectiveTime value=\"20240301\"/></ClinicalDocument>";
    let eml = build_eml(
        HEADERS,
        "Consult note attached.",
        &[Part {
            name: "consult.xml",
            content_type: "application/xml",
            bytes: cda,
        }],
    );
    let imported = import(&eml);
    let document = imported
        .of_type("DocumentReference")
        .into_iter()
        .find(|d| d["type"]["coding"][0]["code"] == "11488-4")
        .unwrap();
    assert!(document.get("date").is_none());
    assert_eq!(document["context"]["period"]["start"], "2024-03-01");
}

#[test]
fn files_that_are_not_emails_are_refused_with_a_reason() {
    assert_eq!(import_error(b""), EMPTY_FILE);
    assert_eq!(import_error(b" \r\n\n"), EMPTY_FILE);
    assert_eq!(
        import_error(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"),
        NOT_AN_EMAIL
    );
    assert_eq!(import_error(b"Dear Dr. Smith,\n\nthank you."), NOT_AN_EMAIL);
    assert!(
        NOT_AN_EMAIL
            .starts_with("This file is not an email message (.eml): it has no mail headers.")
    );
    let message = email::too_large(30 * 1024 * 1024);
    assert!(
        message.contains("30.0 MiB") && message.contains("up to 25 MiB"),
        "{message}"
    );
    // The connector refuses such a file before reading it into memory.
    let huge = FakeFile::new("huge.eml", "message/rfc822", vec![b'x'; 30 * 1024 * 1024]);
    let refused = FakeHost::new().import_file::<EmailConnector>(huge);
    assert!(
        matches!(&refused, Err(ConnectorError::InvalidInput(m)) if *m == message),
        "{refused:?}"
    );
}

#[test]
fn ids_are_stable_across_imports_and_follow_the_message_id() {
    let eml = build_eml(
        HEADERS,
        "Results attached.",
        &[Part {
            name: "results.pdf",
            content_type: "application/pdf",
            bytes: b"%PDF-1.4 results",
        }],
    );
    let first = import(&eml);
    let second = import(&eml);
    assert_eq!(first.ids, second.ids);
    assert_eq!(first.ids.len(), 2);
    assert!(
        first.of_type("Binary")[0]["id"]
            .as_str()
            .unwrap()
            .starts_with("email-att-")
    );

    // The same message with other text (a re-sent copy) updates the same record.
    let edited = build_eml(
        HEADERS,
        "Results attached (corrected).",
        &[Part {
            name: "results.pdf",
            content_type: "application/pdf",
            bytes: b"%PDF-1.4 fixed",
        }],
    );
    assert_eq!(import(&edited).ids, first.ids);

    let other = build_eml(
        &HEADERS.replace("results-42@", "results-43@"),
        "Results attached.",
        &[],
    );
    assert_ne!(import(&other).email()["id"], first.email()["id"]);

    // Without a Message-ID, Date, From and Subject identify the message.
    let without_id = HEADERS.replace("Message-ID: <results-42@clinic.example>\r\n", "");
    let a = import(&build_eml(&without_id, "one text", &[]));
    let b = import(&build_eml(&without_id, "another text", &[]));
    assert_eq!(a.email()["id"], b.email()["id"]);
    assert!(a.email().get("masterIdentifier").is_none());
    assert_ne!(a.email()["id"], first.email()["id"]);
}

#[test]
fn an_attachment_too_large_for_one_record_is_listed_without_its_data() {
    let scan = vec![0x25u8; 3 * 1024 * 1024 + 512 * 1024];
    let eml = build_eml(
        HEADERS,
        "Your scan.",
        &[
            Part {
                name: "scan.pdf",
                content_type: "application/pdf",
                bytes: &scan,
            },
            Part {
                name: "note.txt",
                content_type: "text/plain",
                bytes: b"small",
            },
        ],
    );
    let imported = import(&eml);
    let binaries = imported.of_type("Binary");
    assert_eq!(binaries.len(), 1);
    assert_eq!(binaries[0]["contentType"], "text/plain; charset=utf-8");
    let entry = &imported.email()["content"][1]["attachment"];
    assert_eq!(entry["title"], "scan.pdf");
    assert_eq!(entry["size"], scan.len());
    assert!(entry.get("url").is_none());
    assert_eq!(imported.warnings.len(), 1);
    assert!(
        imported.warnings[0]
            .starts_with("The attachment \"scan.pdf\" is 3.5 MiB, more than the 3.0 MiB"),
        "{:?}",
        imported.warnings
    );
}

#[test]
fn text_attachments_in_other_charsets_are_stored_as_utf8() {
    let eml = format!(
        "{HEADERS}Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\
         Content-Type: text/plain\r\n\r\nSee the note.\r\n--x\r\n\
         Content-Type: text/plain; charset=iso-8859-1; name=\"note.txt\"\r\n\
         Content-Disposition: attachment; filename=\"note.txt\"\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe aus der Praxis\r\n--x--\r\n"
    );
    let imported = import(eml.as_bytes());
    let binary = imported.of_type("Binary")[0];
    assert_eq!(binary["contentType"], "text/plain; charset=utf-8");
    assert_eq!(
        String::from_utf8(decoded(&binary["data"]))
            .unwrap()
            .trim_end(),
        "Grüße aus der Praxis"
    );
    assert_eq!(text_of(imported.email()).trim(), "See the note.");
}

#[test]
fn inline_images_of_an_html_email_are_kept() {
    let png = b"\x89PNG\r\n\x1a\nfake image";
    let eml = format!(
        "{HEADERS}Content-Type: multipart/related; boundary=r\r\n\r\n--r\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n<p>Your rash, as photographed:</p>\
         <img src=\"cid:rash@clinic\">\r\n--r\r\nContent-Type: image/png\r\n\
         Content-ID: <rash@clinic>\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--r--\r\n",
        BASE64.encode(png)
    );
    let imported = import(eml.as_bytes());
    let binaries = imported.of_type("Binary");
    assert_eq!(binaries.len(), 1);
    assert_eq!(binaries[0]["contentType"], "image/png");
    assert_eq!(decoded(&binaries[0]["data"]), png);
    assert!(text_of(imported.email()).contains("Your rash, as photographed:"));
}

#[test]
fn an_unreadable_date_header_is_a_warning() {
    let eml = "From: a@b.example\r\nSubject: Hi\r\nDate: sometime last week\r\n\r\nhello\r\n";
    let imported = import(eml.as_bytes());
    assert!(imported.email().get("date").is_none());
    assert_eq!(
        imported.warnings,
        [
            "The email has a Date header that could not be read (\"sometime last week\"), so it was \
          imported without a date."
        ]
    );
}

#[test]
fn batches_stay_within_the_hosts_limits() {
    // Three attachments whose Binaries take about 3 MiB each, and a Bundle of 600 resources:
    // the connector, through the SDK, as the host receives it (a batch over its limits fails).
    let scan: Vec<u8> = (0..2_300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let entries: Vec<String> = (0..600)
        .map(|i| format!(r#"{{"resource": {{"resourceType": "Basic", "id": "b{i}"}}}}"#))
        .collect();
    let bundle = format!(
        r#"{{"resourceType": "Bundle", "type": "collection", "entry": [{}]}}"#,
        entries.join(",")
    );
    let names = ["scan-1.pdf", "scan-2.pdf", "scan-3.pdf"];
    let mut parts: Vec<Part<'_>> = names
        .iter()
        .map(|name| Part {
            name,
            content_type: "application/pdf",
            bytes: &scan,
        })
        .collect();
    parts.push(Part {
        name: "records.json",
        content_type: "application/fhir+json",
        bytes: bundle.as_bytes(),
    });
    let eml = build_eml(HEADERS, "Three scans and the records.", &parts);
    let mut host = FakeHost::new();
    let file = FakeFile::new("results.eml", "message/rfc822", eml);
    let summary = host.import_file::<EmailConnector>(file).unwrap();
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    let resources = host.resources();
    // The email, its 4 attachments as Binaries, and the Bundle's 600 resources.
    assert_eq!(resources.len(), 1 + 4 + 600);
    assert_eq!(host.batches.iter().sum::<usize>(), resources.len());
    assert!(host.batches.iter().all(|&n| n <= MAX_BATCH_RESOURCES));
    let mut sent = host.emitted.iter();
    for &n in &host.batches {
        let bytes: usize = sent.by_ref().take(n).map(String::len).sum();
        assert!(bytes <= MAX_BATCH_BYTES, "a batch of {bytes} bytes");
    }
    assert_eq!(host.progress.last(), Some(&(605, Some(605))));
}

#[test]
fn describe_matches_the_registry_manifest() {
    let info = EmailConnector::describe();
    assert_eq!((info.id.as_str(), info.name.as_str()), ("email", "Email"));
    assert_eq!(info.file_types[0].media_type, "message/rfc822");
    assert_eq!(info.file_types[0].extensions, ["eml"]);
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plugin-registry/email/plugin.toml"
    ))
    .unwrap();
    for line in [
        "id = \"email\"".to_owned(),
        "name = \"Email\"".to_owned(),
        format!("version = \"{}\"", info.version),
        "kind = \"file\"".to_owned(),
        "artifact = \"fasten_plugin_email.wasm\"".to_owned(),
        "allowed_hosts = []".to_owned(),
    ] {
        assert!(
            manifest.lines().any(|l| l.trim() == line),
            "plugin.toml lacks {line}"
        );
    }
}

#[test]
fn an_email_saved_with_an_mbox_from_line_still_imports() {
    let eml = format!(
        "From - Tue May 14 09:30:00 2024\r\nX-Mozilla-Status: 0001\r\n{HEADERS}\r\nhello\r\n"
    );
    let imported = import(eml.as_bytes());
    let email = imported.email();
    assert_eq!(email["description"], "Your lab results");
    assert_eq!(email["date"], "2024-05-14T09:30:00+02:00");
    assert_eq!(text_of(email).trim(), "hello");
}

/// Counts heap bytes in use, to measure an import's peak memory natively (wasm32 allocations are
/// the same sizes, give or take the allocator's overhead).
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub(super) static IN_USE: AtomicUsize = AtomicUsize::new(0);
    pub(super) static PEAK: AtomicUsize = AtomicUsize::new(0);

    struct Counting;

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let pointer = unsafe { System.alloc(layout) };
            if !pointer.is_null() {
                let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            }
            pointer
        }

        unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
            unsafe { System.dealloc(pointer, layout) };
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// Peak heap in MiB while `work` runs, counting what was already allocated.
    pub(super) fn peak_mib(work: impl FnOnce()) -> f64 {
        PEAK.store(IN_USE.load(Ordering::Relaxed), Ordering::Relaxed);
        work();
        PEAK.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
    }
}

/// Run alone: `cargo test ... peak_memory -- --ignored --nocapture --test-threads=1`.
#[test]
#[ignore = "a measurement, meaningful only when run alone"]
fn peak_memory_of_the_largest_emails() {
    let pdf: Vec<u8> = (0..2_900_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let names: Vec<String> = (1..=6).map(|i| format!("scan-{i}.pdf")).collect();
    let parts: Vec<Part<'_>> = names
        .iter()
        .map(|name| Part {
            name,
            content_type: "application/pdf",
            bytes: &pdf,
        })
        .collect();
    let eml = build_eml(HEADERS, "Six scans.", &parts);
    drop(parts);
    drop(pdf);
    let bundle = testdata("fhir/synthea/Fletcher_Hyatt_fe0562b5-f517-4951-8366-32fdab088930.json");
    let bundle_eml = build_eml(
        HEADERS,
        "Records.",
        &[Part {
            name: "records.json",
            content_type: "application/fhir+json",
            bytes: &bundle,
        }],
    );
    drop(bundle);
    for (what, raw) in [
        ("six 2.9 MB PDFs", eml),
        ("a 3.9 MB FHIR Bundle", bundle_eml),
    ] {
        let size = raw.len() as f64 / (1024.0 * 1024.0);
        let peak = heap::peak_mib(move || {
            let mut host = FakeHost::new();
            host.discard_records();
            host.with_run(|run| email::import(&raw, run)).unwrap();
        });
        println!("{what}: email {size:.1} MiB, peak heap {peak:.1} MiB (email included)");
    }
}

#[test]
fn a_very_long_text_is_cut_at_two_mib_with_a_warning() {
    let line = "Blood pressure 120/80 mmHg, pulse 62/min, all fine. äöü\r\n";
    let body = line.repeat(3 * 1024 * 1024 / line.len());
    let imported = import(&build_eml(HEADERS, &body, &[]));
    let kept = decoded(&imported.email()["content"][0]["attachment"]["data"]);
    assert!(kept.len() <= 2 * 1024 * 1024 && kept.len() > 2 * 1024 * 1024 - 4);
    let text = String::from_utf8(kept).expect("cut at a character boundary");
    assert!(text.starts_with("Blood pressure 120/80 mmHg"));
    assert_eq!(
        imported.warnings,
        ["The email has more than 2 MiB of text; only its first 2 MiB were kept."]
    );
}

/// An email of `depth` multipart sections nested in one another, each closed or left open,
/// around `text` bytes of text.
fn nested_email(depth: usize, closed: bool, text: usize) -> Vec<u8> {
    let mut raw = String::from("From: lab@example.org\r\nSubject: Nested\r\n");
    for level in 0..depth {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"n{level}\"\r\n\r\n--n{level}\r\n"
        ));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\ninnermost\r\n");
    raw.push_str(&"All normal.\r\n".repeat(text / 13));
    if closed {
        for level in (0..depth).rev() {
            raw.push_str(&format!("--n{level}--\r\n"));
        }
    }
    raw.into_bytes()
}

#[test]
fn nested_sections_are_checked_in_about_one_pass() {
    // Each of 1,000 sections searched through 8 MB for its closing line: minutes.
    let started = std::time::Instant::now();
    let closed = import(&nested_email(1_000, true, 8 << 20));
    let text_cut = "The email has more than 2 MiB of text; only its first 2 MiB were kept.";
    assert!(text_of(closed.email()).starts_with("innermost"));
    assert_eq!(closed.warnings, [text_cut]);
    let open = import(&nested_email(1_000, false, 8 << 20));
    assert!(text_of(open.email()).starts_with("innermost"));
    // The first sections found open are named; the search then stops, the email being damaged.
    assert!(
        open.warnings.iter().any(|w| w == text_cut),
        "{:?}",
        open.warnings
    );
    assert!(
        open.warnings[0].contains("no \"--n0--\" line"),
        "{:?}",
        open.warnings
    );
    assert!(open.warnings.len() < 20, "{:?}", open.warnings);
    let took = started.elapsed();
    assert!(took.as_secs() < 30, "{took:?}");
}

/// An email with `depth` emails attached inside one another.
fn email_in_emails(depth: usize) -> Vec<u8> {
    let mut raw = String::from("From: lab@example.org\r\nSubject: Forwarded\r\n");
    raw.push_str(&"Content-Type: message/rfc822\r\n\r\n".repeat(depth));
    raw.push_str("Subject: innermost\r\n\r\ninnermost\r\n");
    raw.into_bytes()
}

#[test]
fn a_parsed_email_is_dropped_without_a_level_of_recursion_per_attached_email() {
    // Dropped as mail-parser's `Message`, 100,000 levels overflow even a native test's stack.
    let raw = email_in_emails(100_000);
    let message = mail_parser::MessageParser::default()
        .parse(&raw[..])
        .unwrap();
    drop(email::Parsed(message));
}

#[test]
fn an_email_declaring_thousands_of_parts_is_refused_before_it_is_parsed() {
    assert!(import(&email_in_emails(1_000)).warnings.is_empty());
    assert_eq!(
        import_error(&email_in_emails(1_001)),
        "This email declares 1001 multipart sections and attached emails; Fasten imports \
         emails of up to 1000, which is far more than email programs write. Save its \
         attachments from your email program and add them to the record on their own."
    );
    assert!(import_error(&nested_email(1_001, true, 0)).starts_with("This email declares 1001 "));
}

#[test]
fn a_ccda_whose_header_is_too_large_for_a_record_is_kept_only_as_a_file() {
    // Larger than the converter takes inside an email, and its header alone too large a record.
    let title = "Summary ".repeat(600_000);
    let ccda = format!(
        "<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><title>{title}</title></ClinicalDocument>"
    );
    let eml = build_eml(
        HEADERS,
        "Your summary.",
        &[Part {
            name: "CCD.xml",
            content_type: "application/xml",
            bytes: ccda.as_bytes(),
        }],
    );
    let imported = import(&eml);
    assert_eq!(
        imported.warnings,
        [
            "The C-CDA document \"CCD.xml\" could not be converted into records (it is 4.6 MiB, \
             more than the 4 MiB Fasten converts inside an email; import it on its own to get its \
             records), so it was kept as a document.",
            "The C-CDA document \"CCD.xml\" has a header of 9.2 MiB, more than the 4 MiB a record \
          may be, so it was only kept as a file.",
            "The attachment \"CCD.xml\" is 4.6 MiB, more than the 3.0 MiB Fasten can keep of one \
             attachment, so only its name and size were recorded. Save it from your email program \
             and add it to the record on its own."
        ]
    );
    assert_eq!(imported.of_type("Binary").len(), 0, "too large to keep");
    assert_eq!(
        imported.of_type("DocumentReference").len(),
        1,
        "the email's own"
    );
}
