//! The instance's key pairs for `private_key_jwt` (SMART's asymmetric client authentication):
//! an ES384 pair, and an RS384 pair for servers that only take RSA. They are made on first need,
//! the private halves sealed by the [`Vault`], the public halves served as a JWK Set at
//! `/.well-known/jwks.json`. Every token request carries a fresh [`AssertionKey::sign`]ed
//! assertion.
//!
//! Rotation publishes first and switches later: "Add a new key" makes a pair that is published
//! at once but signs only a grace period later, so every server that caches the JWK Set has seen
//! it before it meets an assertion naming it; the old key stays published for a further grace
//! period after it stopped signing, then is deleted. When each key does what is one pure
//! function, [`phase`].

use std::sync::Arc;

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::store::unix_now;
use crate::vault::Vault;

/// How long an assertion is valid. SMART (and Epic) allow at most five minutes; a minute less
/// leaves room for a server whose clock runs behind ours.
pub const ASSERTION_LIFETIME_SECONDS: i64 = 240;

/// RSA modulus size: 2048 bits is what the vendors' documentation asks for and accepts.
const RSA_BITS: usize = 2048;

/// The signature algorithms Fasten has keys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
pub enum KeyAlg {
    #[serde(rename = "ES384")]
    #[sqlx(rename = "ES384")]
    Es384,
    #[serde(rename = "RS384")]
    #[sqlx(rename = "RS384")]
    Rs384,
}

impl KeyAlg {
    pub const ALL: [KeyAlg; 2] = [KeyAlg::Es384, KeyAlg::Rs384];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::Es384 => "ES384",
            KeyAlg::Rs384 => "RS384",
        }
    }

    pub fn parse(text: &str) -> Option<KeyAlg> {
        KeyAlg::ALL.into_iter().find(|a| a.as_str() == text)
    }

    fn jwt(self) -> Algorithm {
        match self {
            KeyAlg::Es384 => Algorithm::ES384,
            KeyAlg::Rs384 => Algorithm::RS384,
        }
    }
}

/// What a key is doing at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Published; signs from its `signing_from`.
    Waiting,
    /// Published, and signs this algorithm's assertions.
    Signing,
    /// Published until `until`, so an assertion it signed just before the switch still verifies.
    Retiring { until: i64 },
    /// No longer published: deleted.
    Retired,
}

/// The timing of one key, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub alg: KeyAlg,
    pub signing_from: i64,
}

/// What each of `keys` (in any order) is doing at `now`: per algorithm, the newest key whose
/// `signing_from` has come signs; newer ones wait; older ones stay published for `grace` seconds
/// after the key that replaced them started signing.
pub fn phase(keys: &[Timing], now: i64, grace: i64) -> Vec<Phase> {
    keys.iter()
        .map(|key| {
            if key.signing_from > now {
                return Phase::Waiting;
            }
            // The first key of the same algorithm to start signing after this one, if it has.
            let replaced_at = keys
                .iter()
                .filter(|other| other.alg == key.alg && other.signing_from > key.signing_from)
                .map(|other| other.signing_from)
                .filter(|&from| from <= now)
                .min();
            match replaced_at {
                None => Phase::Signing,
                Some(at) if now < at + grace => Phase::Retiring { until: at + grace },
                Some(_) => Phase::Retired,
            }
        })
        .collect()
}

/// One stored key's public side, for the Admin page.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: KeyAlg,
    #[serde(skip)]
    pub public_jwk: String,
    pub created_at: i64,
    pub signing_from: i64,
    #[sqlx(skip)]
    pub phase: Option<Phase>,
}

/// A private key ready to sign assertions. Its `Debug` shows the key id only.
pub struct AssertionKey {
    pub kid: String,
    pub alg: KeyAlg,
    key: EncodingKey,
}

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: i64,
    exp: i64,
}

impl AssertionKey {
    /// A client assertion for one token request to `token_url`: `iss` = `sub` = the client id,
    /// `aud` the token endpoint, a random `jti` never used before, valid for
    /// [`ASSERTION_LIFETIME_SECONDS`]. Never logged: it stands for the client until it expires.
    pub fn sign(&self, client_id: &str, token_url: &str) -> anyhow::Result<String> {
        let mut jti = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut jti);
        let iat = unix_now();
        let claims = AssertionClaims {
            iss: client_id,
            sub: client_id,
            aud: token_url,
            jti: URL_SAFE_NO_PAD.encode(jti),
            iat,
            exp: iat + ASSERTION_LIFETIME_SECONDS,
        };
        let mut header = Header::new(self.alg.jwt());
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, &claims, &self.key).context("cannot sign a client assertion")
    }
}

/// A fresh key pair: the private key as the DER jsonwebtoken reads, and the public JWK with its
/// RFC 7638 thumbprint as `kid`.
fn generate(alg: KeyAlg) -> anyhow::Result<(Vec<u8>, Jwk)> {
    let der = match alg {
        KeyAlg::Es384 => {
            use p384::pkcs8::EncodePrivateKey;
            let secret = p384::SecretKey::random(&mut rand::rngs::OsRng);
            secret
                .to_pkcs8_der()
                .context("cannot encode an ES384 key")?
                .as_bytes()
                .to_vec()
        }
        KeyAlg::Rs384 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS)
                .context("cannot make an RSA key")?;
            key.to_pkcs1_der()
                .context("cannot encode an RS384 key")?
                .as_bytes()
                .to_vec()
        }
    };
    let mut jwk = Jwk::from_encoding_key(&encoding_key(alg, &der), alg.jwt())
        .context("cannot describe the public key")?;
    jwk.common.key_id = Some(jwk.thumbprint(ThumbprintHash::SHA256));
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok((der, jwk))
}

fn encoding_key(alg: KeyAlg, der: &[u8]) -> EncodingKey {
    match alg {
        KeyAlg::Es384 => EncodingKey::from_ec_der(der),
        KeyAlg::Rs384 => EncodingKey::from_rsa_der(der),
    }
}

fn label(kid: &str) -> String {
    format!("client-key/{kid}")
}

/// Makes a key pair (on a blocking thread: an RSA key takes a while) and stores it, signing from
/// `signing_from`. With `only_if_none`, nothing is stored when the algorithm already has a key,
/// in the same statement, so two first uses at once keep one pair.
async fn add(
    db: &SqlitePool,
    vault: &Vault,
    alg: KeyAlg,
    signing_from: i64,
    only_if_none: bool,
) -> anyhow::Result<()> {
    let (der, jwk) = tokio::task::spawn_blocking(move || generate(alg))
        .await
        .context("key generation stopped")??;
    let kid = jwk.common.key_id.clone().expect("generate sets the kid");
    let sealed = vault.seal(&label(&kid), &STANDARD.encode(&der));
    let insert = if only_if_none {
        "INSERT INTO client_keys (kid, alg, public_jwk, private_key, created_at, signing_from)
         SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM client_keys WHERE alg = ?)"
    } else {
        "INSERT INTO client_keys (kid, alg, public_jwk, private_key, created_at, signing_from)
         VALUES (?, ?, ?, ?, ?, ?)"
    };
    let mut query = sqlx::query(insert)
        .bind(&kid)
        .bind(alg)
        .bind(serde_json::to_string(&jwk).expect("a JWK serialises"))
        .bind(sealed)
        .bind(unix_now())
        .bind(signing_from);
    if only_if_none {
        query = query.bind(alg);
    }
    let inserted = query.execute(db).await?;
    if inserted.rows_affected() > 0 {
        tracing::info!(%kid, alg = alg.as_str(), signing_from, "client signing key added");
    }
    Ok(())
}

/// Makes the first key pair of each algorithm that has none.
pub async fn ensure(db: &SqlitePool, vault: &Vault) -> anyhow::Result<()> {
    for alg in KeyAlg::ALL {
        let has: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM client_keys WHERE alg = ?)")
                .bind(alg)
                .fetch_one(db)
                .await?;
        if !has {
            add(db, vault, alg, unix_now(), true).await?;
        }
    }
    Ok(())
}

/// Why a new key was not added.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("a new key is already waiting to take over; add another once it signs")]
    AlreadyWaiting,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// "Add a new key": a new pair of each algorithm, published now, signing `grace` from now.
pub async fn rotate(db: &SqlitePool, vault: &Vault, grace: i64) -> Result<(), RotateError> {
    ensure(db, vault).await?;
    let now = unix_now();
    let waiting: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM client_keys WHERE signing_from > ?)")
            .bind(now)
            .fetch_one(db)
            .await
            .map_err(anyhow::Error::from)?;
    if waiting {
        return Err(RotateError::AlreadyWaiting);
    }
    for alg in KeyAlg::ALL {
        add(db, vault, alg, now + grace, false).await?;
    }
    Ok(())
}

/// Every stored key with its phase at `now`, oldest first. Retired keys are deleted on the way,
/// private halves included: nothing they signed can still be valid.
pub async fn keys(db: &SqlitePool, now: i64, grace: i64) -> anyhow::Result<Vec<KeyInfo>> {
    let mut keys: Vec<KeyInfo> = sqlx::query_as(
        "SELECT kid, alg, public_jwk, created_at, signing_from FROM client_keys
         ORDER BY signing_from, id",
    )
    .fetch_all(db)
    .await?;
    let timings: Vec<Timing> = keys
        .iter()
        .map(|k| Timing {
            alg: k.alg,
            signing_from: k.signing_from,
        })
        .collect();
    for (key, phase) in keys.iter_mut().zip(phase(&timings, now, grace)) {
        key.phase = Some(phase);
    }
    let retired: Vec<String> = keys
        .iter()
        .filter(|k| k.phase == Some(Phase::Retired))
        .map(|k| k.kid.clone())
        .collect();
    for kid in &retired {
        sqlx::query("DELETE FROM client_keys WHERE kid = ?")
            .bind(kid)
            .execute(db)
            .await?;
        tracing::info!(%kid, "retired client signing key deleted");
    }
    keys.retain(|k| k.phase != Some(Phase::Retired));
    Ok(keys)
}

/// The public keys to publish: every key not retired.
pub async fn jwk_set(db: &SqlitePool, vault: &Vault, grace: i64) -> anyhow::Result<JwkSet> {
    ensure(db, vault).await?;
    let keys = keys(db, unix_now(), grace).await?;
    let keys = keys
        .iter()
        .map(|k| serde_json::from_str(&k.public_jwk).context("a stored public key is unreadable"))
        .collect::<anyhow::Result<Vec<Jwk>>>()?;
    Ok(JwkSet { keys })
}

/// The key that signs `alg` assertions now: the newest whose `signing_from` has come (which
/// [`phase`] calls `Signing`; the grace period only decides when old keys leave).
pub async fn signer(
    db: &SqlitePool,
    vault: &Vault,
    alg: KeyAlg,
) -> anyhow::Result<Arc<AssertionKey>> {
    ensure(db, vault).await?;
    let (kid, sealed): (String, Vec<u8>) = sqlx::query_as(
        "SELECT kid, private_key FROM client_keys WHERE alg = ? AND signing_from <= ?
         ORDER BY signing_from DESC, id DESC LIMIT 1",
    )
    .bind(alg)
    .bind(unix_now())
    .fetch_optional(db)
    .await?
    .with_context(|| format!("no {} key is signing", alg.as_str()))?;
    let der = STANDARD
        .decode(vault.open(&label(&kid), &sealed)?)
        .context("a stored private key is damaged")?;
    Ok(Arc::new(AssertionKey {
        key: encoding_key(alg, &der),
        kid,
        alg,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86400;

    fn key(alg: KeyAlg, signing_from: i64) -> Timing {
        Timing { alg, signing_from }
    }

    #[test]
    fn a_new_key_waits_then_signs_and_the_old_one_retires_a_grace_period_later() {
        let grace = 7 * DAY;
        let old = key(KeyAlg::Es384, 0);
        let new = key(KeyAlg::Es384, 100 * DAY + grace);
        let rsa = key(KeyAlg::Rs384, 0);
        let keys = [old, new, rsa];
        // Just added: both published, the old one signs.
        assert_eq!(
            phase(&keys, 100 * DAY, grace),
            [Phase::Signing, Phase::Waiting, Phase::Signing]
        );
        // The switch: the new one signs, the old one stays published for another grace period.
        let switch = 100 * DAY + grace;
        let until = switch + grace;
        assert_eq!(
            phase(&keys, switch, grace),
            [Phase::Retiring { until }, Phase::Signing, Phase::Signing]
        );
        assert_eq!(phase(&keys, until - 1, grace)[0], Phase::Retiring { until });
        assert_eq!(
            phase(&keys, until, grace),
            [Phase::Retired, Phase::Signing, Phase::Signing]
        );
    }

    #[test]
    fn exactly_one_key_per_algorithm_signs() {
        let keys = [
            key(KeyAlg::Es384, 0),
            key(KeyAlg::Es384, 10),
            key(KeyAlg::Es384, 20),
        ];
        assert_eq!(
            phase(&keys, 25, 100),
            [
                Phase::Retiring { until: 110 },
                Phase::Retiring { until: 120 },
                Phase::Signing
            ]
        );
        assert_eq!(
            phase(&keys, 115, 100),
            [
                Phase::Retired,
                Phase::Retiring { until: 120 },
                Phase::Signing
            ]
        );
    }

    #[test]
    fn assertions_verify_with_the_published_key_and_never_repeat_a_jti() {
        for alg in KeyAlg::ALL {
            let (der, jwk) = generate(alg).unwrap();
            let signer = AssertionKey {
                kid: jwk.common.key_id.clone().unwrap(),
                alg,
                key: encoding_key(alg, &der),
            };
            let token_url = "https://ehr.example/oauth2/token";
            let first = signer.sign("my-app", token_url).unwrap();
            let second = signer.sign("my-app", token_url).unwrap();
            let mut validation = jsonwebtoken::Validation::new(alg.jwt());
            validation.set_audience(&[token_url]);
            validation.set_issuer(&["my-app"]);
            validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
            let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let claims = |jwt: &str| {
                let data =
                    jsonwebtoken::decode::<serde_json::Value>(jwt, &decoding, &validation).unwrap();
                assert_eq!(data.header.kid.as_deref(), jwk.common.key_id.as_deref());
                data.claims
            };
            let (a, b) = (claims(&first), claims(&second));
            assert_eq!(a["sub"], "my-app");
            assert_ne!(a["jti"], b["jti"], "{alg:?}: a jti was reused");
            let lifetime = a["exp"].as_i64().unwrap() - a["iat"].as_i64().unwrap();
            assert!(lifetime > 0 && lifetime <= 300, "{lifetime}");
            // What is published holds no private part.
            let published = serde_json::to_value(&jwk).unwrap();
            assert!(published.get("d").is_none(), "{published}");
            assert_eq!(published["use"], "sig");
            assert_eq!(published["alg"], alg.as_str());
        }
    }
}
