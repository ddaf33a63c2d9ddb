//! The zip a patient portal's "Download my record" gives, in the IHE XDM layout:
//! `IHE_XDM/<submission set>/METADATA.XML` lists the documents (`DOC0001.XML`...) of its folder,
//! beside a stylesheet, `INDEX.HTM` and `README.TXT` that are for people, not for Fasten. A zip
//! without that layout is read for the `.xml` documents it holds.

use std::io::{Cursor, Read};

use zip::ZipArchive;

use crate::import::MAX_FILE_BYTES;

/// The documents of an XDM zip, in the order listed: (path in the zip, bytes).
pub(crate) fn documents(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
        format!("This zip file cannot be opened ({e}); download it again from the portal.")
    })?;
    let names: Vec<String> = archive
        .file_names()
        .filter_map(Result::ok)
        .map(|n| n.into_owned())
        .collect();
    let upper = |n: &str| n.to_ascii_uppercase();
    let mut listed: Vec<String> = Vec::new();
    for metadata in names.iter().filter(|n| upper(n).ends_with("METADATA.XML")) {
        let folder = metadata
            .rsplit_once('/')
            .map(|(f, _)| format!("{f}/"))
            .unwrap_or_default();
        let text = read_member(&mut archive, metadata)?;
        for uri in listed_uris(&String::from_utf8_lossy(&text)) {
            let path = format!("{folder}{uri}");
            // Listed names are matched without regard to case: DOS-era layouts upper-case them.
            if let Some(name) = names.iter().find(|n| upper(n) == upper(&path))
                && !listed.contains(name)
            {
                listed.push(name.clone());
            }
        }
    }
    if listed.is_empty() {
        // No (usable) metadata: every XML file except the metadata itself.
        listed = names
            .iter()
            .filter(|n| {
                let n = upper(n);
                n.ends_with(".XML") && !n.ends_with("METADATA.XML") && !n.starts_with("__MACOSX/")
            })
            .cloned()
            .collect();
    }
    if listed.is_empty() {
        return Err(
            "This zip holds no health record documents: it has no IHE_XDM folder and no .xml files. \
             Choose the zip your patient portal's \"Download my record\" gave, or the .xml file inside it."
                .into(),
        );
    }
    listed
        .into_iter()
        .map(|name| Ok((name.clone(), read_member(&mut archive, &name)?)))
        .collect()
}

/// One member's bytes, refusing more than [`MAX_FILE_BYTES`] whatever the zip claims, so a zip
/// bomb stops early.
fn read_member(archive: &mut ZipArchive<Cursor<&[u8]>>, name: &str) -> Result<Vec<u8>, String> {
    let member = archive
        .by_name(name)
        .map_err(|e| format!("{name} in this zip cannot be read ({e})."))?;
    let mut bytes = Vec::new();
    member
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{name} in this zip cannot be read ({e})."))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{name} in this zip is larger than the {} MiB Fasten reads.",
            MAX_FILE_BYTES >> 20
        ));
    }
    Ok(bytes)
}

/// The document URIs a METADATA.XML lists (`<Slot name="URI">` of each ExtrinsicObject). Long
/// URIs may be split into numbered parts (`1|DOC`, `2|0001.XML`), which are joined.
fn listed_uris(metadata: &str) -> Vec<String> {
    let Ok(document) = roxmltree::Document::parse(metadata) else {
        return Vec::new();
    };
    document
        .descendants()
        .filter(|n| {
            n.is_element() && n.tag_name().name() == "Slot" && n.attribute("name") == Some("URI")
        })
        .filter_map(|slot| {
            let parts: Vec<String> = slot
                .descendants()
                .filter(|n| n.is_element() && n.tag_name().name() == "Value")
                .filter_map(|v| v.text())
                .map(|v| {
                    let v = v.trim();
                    match v.split_once('|') {
                        Some((n, rest)) if n.bytes().all(|b| b.is_ascii_digit()) => {
                            rest.to_string()
                        }
                        _ => v.to_string(),
                    }
                })
                .collect();
            let uri = parts.concat();
            // Only names inside the submission folder: never a path that climbs out of it.
            (!uri.is_empty() && !uri.contains("..") && !uri.starts_with('/')).then_some(uri)
        })
        .collect()
}
