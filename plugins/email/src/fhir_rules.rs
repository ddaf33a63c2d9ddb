//! What the host accepts: FHIR R4 resource types and FHIR ids (the size of one resource is the
//! SDK's `MAX_BATCH_BYTES`). A resource the host refuses fails the whole run, so anything taken
//! from an attachment is checked against these first and skipped with a warning instead.

use sha2::{Digest, Sha256};

/// An id derived from what identifies a record (not its content), so importing the same email
/// again updates its records instead of adding copies.
pub(crate) fn stable_id(prefix: &str, identity: &str) -> String {
    let digest = Sha256::digest(identity.as_bytes());
    let mut id = String::with_capacity(prefix.len() + 16);
    id.push_str(prefix);
    for byte in &digest[..8] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) use fasten_fhir_r4::{is_resource_type, is_valid_id};
