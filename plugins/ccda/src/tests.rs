//! The connector's file handling, natively: single documents, XDM zips, and what it refuses.

use std::io::Write;
use std::path::{Path, PathBuf};

use fasten_connector::ConnectorError;
use fasten_connector::testing::{FakeFile, FakeHost};
use serde_json::Value;

use crate::CcdaConnector;

fn testdata(name: &str) -> Vec<u8> {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/ccda")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run(name: &str, bytes: &[u8]) -> Result<(Vec<Value>, Vec<String>), ConnectorError> {
    let mut host = FakeHost::new();
    let file = FakeFile::new(name, "application/xml", bytes);
    let warnings = host.import_file::<CcdaConnector>(file)?.warnings;
    Ok((host.resources(), warnings))
}

/// Titles of the documents (not section notes) in what was emitted.
fn document_titles(resources: &[Value]) -> Vec<String> {
    let mut titles: Vec<String> = resources
        .iter()
        .filter(|r| r["resourceType"] == "DocumentReference" && r.get("masterIdentifier").is_some())
        .map(|r| r["description"].as_str().unwrap_or_default().to_string())
        .collect();
    titles.sort();
    titles
}

/// A zip of `members` (path, bytes), stored without compression.
pub(crate) fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (path, bytes) in members {
        writer.start_file(*path, options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

const METADATA: &str = r#"<?xml version="1.0"?>
<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0" xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">
 <rim:RegistryObjectList>
  <rim:ExtrinsicObject id="Document01" mimeType="text/xml">
   <rim:Slot name="URI"><rim:ValueList><rim:Value>DOC0001.XML</rim:Value></rim:ValueList></rim:Slot>
  </rim:ExtrinsicObject>
  <rim:ExtrinsicObject id="Document02" mimeType="text/xml">
   <rim:Slot name="URI"><rim:ValueList><rim:Value>1|DOC00</rim:Value><rim:Value>2|02.XML</rim:Value></rim:ValueList></rim:Slot>
  </rim:ExtrinsicObject>
 </rim:RegistryObjectList>
</lcm:SubmitObjectsRequest>"#;

#[test]
fn a_single_document_becomes_its_records() {
    let (resources, _) = run("CCD-2.xml", &testdata("CCD-2.xml")).unwrap();
    assert_eq!(document_titles(&resources), ["Summary of Patient Chart"]);
    assert_eq!(resources[0]["resourceType"], "Binary");
}

#[test]
fn an_xdm_zip_imports_every_document_it_lists_and_nothing_else() {
    let ccd = testdata("CCD-2.xml");
    let referral = testdata("Referral_Note.xml");
    let zip = zip_of(&[
        ("INDEX.HTM", b"<html><body>Your record</body></html>"),
        ("README.TXT", b"Open INDEX.HTM"),
        ("IHE_XDM/SUBSET01/METADATA.XML", METADATA.as_bytes()),
        ("IHE_XDM/SUBSET01/DOC0001.XML", &ccd),
        ("IHE_XDM/SUBSET01/DOC0002.XML", &referral),
        (
            "IHE_XDM/SUBSET01/STYLE.XSL",
            b"<xsl:stylesheet xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\"/>",
        ),
    ]);
    let (resources, warnings) = run("MyChart.zip", &zip).unwrap();
    assert_eq!(document_titles(&resources).len(), 2, "{warnings:?}");
    assert!(
        !warnings
            .iter()
            .any(|w| w.contains("STYLE") || w.contains("INDEX")),
        "{warnings:?}"
    );
    // Without METADATA.XML, the XML documents are still found; the stylesheet is not one.
    let zip = zip_of(&[
        ("IHE_XDM/SUBSET01/DOC0001.XML", &ccd),
        ("IHE_XDM/SUBSET01/DOC0002.XML", &referral),
        ("IHE_XDM/SUBSET01/STYLE.XSL", b"<xsl:stylesheet/>"),
    ]);
    let (resources, _) = run("MyChart.zip", &zip).unwrap();
    assert_eq!(document_titles(&resources).len(), 2);
}

#[test]
fn one_bad_document_in_a_zip_does_not_lose_the_others() {
    let zip = zip_of(&[
        ("IHE_XDM/SUBSET01/DOC0001.XML", &testdata("CCD-2.xml")),
        ("IHE_XDM/SUBSET01/DOC0002.XML", b"<HealthData/>"),
    ]);
    let (resources, warnings) = run("download.zip", &zip).unwrap();
    assert_eq!(document_titles(&resources).len(), 1);
    assert!(
        warnings.iter().any(
            |w| w.starts_with("IHE_XDM/SUBSET01/DOC0002.XML was not imported")
                && w.contains("<HealthData>")
        ),
        "{warnings:?}"
    );
}

#[test]
fn files_that_are_not_documents_are_refused_with_a_reason() {
    let refused = |name: &str, bytes: &[u8]| match run(name, bytes) {
        Err(ConnectorError::InvalidInput(message)) => message,
        other => panic!("{name}: {other:?}"),
    };
    let message = refused("export.xml", b"<HealthData locale=\"en\"/>");
    assert!(message.contains("its root is <HealthData>"), "{message}");
    let message = refused(
        "broken.xml",
        b"<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><title>",
    );
    assert!(message.contains("not well-formed XML"), "{message}");
    let message = refused("photos.zip", &zip_of(&[("a.jpg", b"\xff\xd8")]));
    assert!(message.contains("no health record documents"), "{message}");
    let message = refused("bad.zip", &zip_of(&[("IHE_XDM/S/DOC0001.XML", b"not xml")]));
    assert!(
        message.starts_with("None of the documents in bad.zip could be read"),
        "{message}"
    );
    let message = refused("huge.xml", &vec![b' '; 33 << 20]);
    assert_eq!(
        message,
        "This file is 33 MiB; Fasten reads health record documents and portal downloads of up to \
         32 MiB."
    );
}

#[test]
fn a_zip_bomb_stops_early() {
    // 40 MiB of zeros compress to little; the member is refused before it is all read.
    let zeros = vec![0u8; 40 << 20];
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer
        .start_file(
            "IHE_XDM/S/DOC0001.XML",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
    writer.write_all(&zeros).unwrap();
    let zip = writer.finish().unwrap().into_inner();
    match run("bomb.zip", &zip) {
        Err(ConnectorError::InvalidInput(message)) => {
            assert!(message.contains("larger than"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}
