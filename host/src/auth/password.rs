//! Password rules and argon2id hashing. Hashing is deliberately slow (tens of milliseconds), so
//! callers on the async runtime go through [`hash`] and [`verify`], which run it on the blocking
//! pool.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;

pub const MIN_PASSWORD_CHARS: usize = 10;
/// Argon2 cost grows with input length; cap it so a huge "password" cannot tie up a core.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Checks a new password and its confirmation, returning the message to show the user.
pub fn check_new(password: &str, confirmation: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(format!(
            "The password must be at least {MIN_PASSWORD_CHARS} characters long."
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(format!(
            "The password must be at most {MAX_PASSWORD_CHARS} characters long."
        ));
    }
    if password != confirmation {
        return Err("The two passwords do not match.".into());
    }
    Ok(())
}

fn argon2() -> Argon2<'static> {
    // OWASP's recommended argon2id setting: 19 MiB, 2 iterations, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn hash_blocking(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with valid parameters cannot fail")
        .to_string()
}

pub fn verify_blocking(password: &str, stored_hash: &str) -> bool {
    match PasswordHash::new(stored_hash) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

pub async fn hash(password: String) -> String {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .expect("hashing task does not panic")
}

/// Verifies `password` against `stored_hash`; with no stored hash (unknown user) it still spends
/// the same time on a dummy hash, so response timing does not reveal which usernames exist.
pub async fn verify(password: String, stored_hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match stored_hash {
        Some(hash) => verify_blocking(&password, &hash),
        None => {
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let dummy = DUMMY.get_or_init(|| hash_blocking("not-a-real-password"));
            verify_blocking(&password, dummy);
            false
        }
    })
    .await
    .expect("verification task does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let hash = hash_blocking("correct horse battery");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_blocking("correct horse battery", &hash));
        assert!(!verify_blocking("correct horse batterY", &hash));
        assert!(!verify_blocking("x", "not a hash"));
    }

    #[test]
    fn new_password_rules() {
        assert!(check_new("short", "short").is_err());
        assert!(check_new("long enough pw", "long enough pX").is_err());
        assert!(check_new("long enough pw", "long enough pw").is_ok());
        assert!(check_new(&"x".repeat(300), &"x".repeat(300)).is_err());
    }
}
