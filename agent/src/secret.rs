//! Secrets and emergency codes: generation from the OS CSPRNG, encoding, fingerprints, hashing.

use pam_totp_proto::validate::EMERGENCY_CODE_DIGITS;
use pam_totp_proto::SecretString;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// 160 bits, as RFC 4226 recommends and authenticator apps expect.
pub const SECRET_BYTES: usize = 20;
pub const EMERGENCY_CODE_COUNT: usize = 10;
const SALT_BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

fn random_bytes(buffer: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buffer).map_err(|e| RandomError(e.to_string()))
}

pub fn generate_secret() -> Result<Zeroizing<Vec<u8>>, RandomError> {
    let mut secret = Zeroizing::new(vec![0u8; SECRET_BYTES]);
    random_bytes(&mut secret)?;
    Ok(secret)
}

pub fn to_base32(secret: &[u8]) -> SecretString {
    SecretString::new(base32::encode(
        base32::Alphabet::Rfc4648 { padding: false },
        secret,
    ))
}

/// Hex SHA-256 of the secret: identifies it without revealing it.
pub fn fingerprint(secret: &[u8]) -> String {
    hex::encode(Sha256::digest(secret))
}

/// A uniformly random code of [`EMERGENCY_CODE_DIGITS`] digits (rejection sampling).
fn random_code() -> Result<SecretString, RandomError> {
    let modulus = 10u32.pow(EMERGENCY_CODE_DIGITS as u32);
    let limit = u32::MAX - u32::MAX % modulus;
    loop {
        let mut bytes = Zeroizing::new([0u8; 4]);
        random_bytes(&mut *bytes)?;
        let value = u32::from_le_bytes(*bytes);
        if value < limit {
            return Ok(SecretString::new(format!(
                "{:0width$}",
                value % modulus,
                width = EMERGENCY_CODE_DIGITS
            )));
        }
    }
}

fn salted_hash(salt: &[u8], code: &str) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(code.as_bytes());
    hasher.finalize().to_vec()
}

/// How the store keys a salted hash (`Store::emergency_digest`): identity for one host, an
/// HMAC with the fleet key for a fleet store.
pub type KeyedDigest<'a> = &'a dyn Fn(&[u8]) -> Vec<u8>;

/// New emergency codes: the plaintext (shown once) and their stored form `salt:hash` (hex).
pub fn generate_emergency_codes(
    digest: KeyedDigest<'_>,
) -> Result<(Vec<SecretString>, Vec<String>), RandomError> {
    let mut plain = Vec::with_capacity(EMERGENCY_CODE_COUNT);
    while plain.len() < EMERGENCY_CODE_COUNT {
        let code = random_code()?;
        if !plain.contains(&code) {
            plain.push(code);
        }
    }
    let stored = hash_emergency_codes(&plain, digest)?;
    Ok((plain, stored))
}

/// The stored form `salt:hash` (hex) of each code, each with its own random salt.
pub fn hash_emergency_codes(
    codes: &[SecretString],
    digest: KeyedDigest<'_>,
) -> Result<Vec<String>, RandomError> {
    codes
        .iter()
        .map(|code| {
            let mut salt = [0u8; SALT_BYTES];
            random_bytes(&mut salt)?;
            Ok(format!(
                "{}:{}",
                hex::encode(salt),
                hex::encode(digest(&salted_hash(&salt, code.expose())))
            ))
        })
        .collect()
}

/// Decodes a base32 secret as apps and google-authenticator files write it (any case, with
/// or without padding or spaces).
pub fn from_base32(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let cleaned: Zeroizing<String> = Zeroizing::new(
        text.chars()
            .filter(|c| !c.is_whitespace() && *c != '=')
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    );
    base32::decode(base32::Alphabet::Rfc4648 { padding: false }, &cleaned).map(Zeroizing::new)
}

/// Index of the stored entry matching `code`. Every entry is checked, in constant time each.
pub fn find_emergency_code(
    stored: &[String],
    code: &str,
    digest: KeyedDigest<'_>,
) -> Option<usize> {
    let mut found = None;
    for (index, entry) in stored.iter().enumerate() {
        let Some((salt_hex, hash_hex)) = entry.split_once(':') else {
            continue;
        };
        let (Ok(salt), Ok(hash)) = (hex::decode(salt_hex), hex::decode(hash_hex)) else {
            continue;
        };
        let equal: bool = digest(&salted_hash(&salt, code)).ct_eq(&hash).into();
        if equal && found.is_none() {
            found = Some(index);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_encode_to_32_base32_chars() {
        let (Ok(a), Ok(b)) = (generate_secret(), generate_secret()) else {
            unreachable!("the OS RNG failed");
        };
        assert_ne!(*a, *b);
        assert_eq!(to_base32(&a).expose().len(), 32);
        assert_eq!(fingerprint(b"").len(), 64);
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(to_base32(b"foobar").expose(), "MZXW6YTBOI");
        let decoded = from_base32("mzxw 6ytb oi==");
        assert_eq!(decoded.as_deref().map(Vec::as_slice), Some(&b"foobar"[..]));
        assert!(from_base32("not base32!").is_none());
    }

    #[test]
    fn emergency_codes_are_hashed_salted_and_found_once() {
        let plain_digest: KeyedDigest<'_> = &|salted| salted.to_vec();
        let Ok((plain, stored)) = generate_emergency_codes(plain_digest) else {
            unreachable!("the OS RNG failed");
        };
        assert_eq!(plain.len(), EMERGENCY_CODE_COUNT);
        for (index, code) in plain.iter().enumerate() {
            assert_eq!(code.expose().len(), EMERGENCY_CODE_DIGITS);
            assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
            assert!(!stored[index].contains(code.expose()));
            assert_eq!(
                find_emergency_code(&stored, code.expose(), plain_digest),
                Some(index)
            );
            // Under another key the stored forms match nothing.
            let keyed: KeyedDigest<'_> = &|salted| salted.iter().map(|b| b ^ 1).collect();
            assert_eq!(find_emergency_code(&stored, code.expose(), keyed), None);
        }
        assert_eq!(
            find_emergency_code(&stored, "not-a-code", plain_digest),
            None
        );
        // Same code, different salts: different stored forms.
        let salt_a = [1u8; SALT_BYTES];
        let salt_b = [2u8; SALT_BYTES];
        assert_ne!(
            salted_hash(&salt_a, "12345678"),
            salted_hash(&salt_b, "12345678")
        );
    }
}
