//! Secrets at rest: OAuth tokens, client secrets and PKCE verifiers are sealed with
//! XChaCha20-Poly1305 before they reach the database.
//!
//! The key is derived from the instance secret (`secrets::SecretKey::derive("vault")`), so it lives
//! in the 0600 key file or in `FASTEN_SECRET_KEY`, never in the database. Each sealed value carries
//! its own random 192-bit nonce (large enough that random nonces never repeat in practice) and is
//! bound to a label such as `connection/7/refresh`, so a value copied into another row or column
//! does not open.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_BYTES: usize = 24;

#[derive(Clone)]
pub struct Vault {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "a stored secret ({0}) cannot be decrypted: was the secret key (data_dir/secret.key or \
     FASTEN_SECRET_KEY) changed?"
)]
pub struct VaultError(pub String);

impl Vault {
    pub fn new(key: [u8; 32]) -> Vault {
        Vault {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// `nonce || ciphertext+tag`.
    pub fn seal(&self, label: &str, plaintext: &str) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: label.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory input");
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, label: &str, sealed: &[u8]) -> Result<String, VaultError> {
        if sealed.len() < NONCE_BYTES {
            return Err(VaultError(label.to_string()));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: label.as_bytes(),
                },
            )
            .map_err(|_| VaultError(label.to_string()))?;
        String::from_utf8(plain).map_err(|_| VaultError(label.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_label() {
        let vault = Vault::new([7; 32]);
        let sealed = vault.seal("connection/1/refresh", "r-token");
        assert!(!sealed.windows(7).any(|w| w == b"r-token"));
        assert_eq!(
            vault.open("connection/1/refresh", &sealed).unwrap(),
            "r-token"
        );
        assert!(vault.open("connection/2/refresh", &sealed).is_err());
        assert!(
            Vault::new([8; 32])
                .open("connection/1/refresh", &sealed)
                .is_err()
        );
        // Two seals of the same value differ (fresh nonce each time).
        assert_ne!(sealed, vault.seal("connection/1/refresh", "r-token"));
        assert!(vault.open("x", b"short").is_err());
    }
}
