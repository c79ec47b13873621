//! Base32 secrets as other tools write them, made canonical and checked for length.

use pam_totp_proto::validate::{MAX_SECRET_BYTES, MIN_SECRET_BYTES};
use pam_totp_proto::SecretString;
use zeroize::Zeroizing;

/// A base32 secret as apps and google-authenticator write it, canonical: white space and
/// `-` dropped, upper case, no padding; with `google_quirks`, 0, 1 and 8 read as O, L and B
/// as pam_google_authenticator does. `None` when anything else is left.
pub fn normalize_base32(text: &str, google_quirks: bool) -> Option<SecretString> {
    let cleaned: Zeroizing<String> = Zeroizing::new(
        text.chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| match c.to_ascii_uppercase() {
                '0' if google_quirks => 'O',
                '1' if google_quirks => 'L',
                '8' if google_quirks => 'B',
                other => other,
            })
            .collect(),
    );
    let trimmed = cleaned.trim_end_matches('=');
    if trimmed.is_empty()
        || !trimmed
            .bytes()
            .all(|b| matches!(b, b'A'..=b'Z' | b'2'..=b'7'))
    {
        return None;
    }
    Some(SecretString::from(trimmed))
}

/// Whether a canonical base32 secret decodes to an acceptable number of bytes.
pub fn secret_bytes_ok(secret: &SecretString) -> bool {
    base32::decode(
        base32::Alphabet::Rfc4648 { padding: false },
        secret.expose(),
    )
    .map(Zeroizing::new)
    .is_some_and(|bytes| (MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base32_normalization() {
        assert_eq!(
            normalize_base32(" jbsw-y3dp ehpk3pxp== ", false)
                .unwrap()
                .expose(),
            "JBSWY3DPEHPK3PXP"
        );
        assert!(normalize_base32("JBSW0", false).is_none());
        assert_eq!(normalize_base32("JBSW0", true).unwrap().expose(), "JBSWO");
        assert!(normalize_base32("", false).is_none());
        assert!(normalize_base32("====", false).is_none());
        assert!(secret_bytes_ok(&SecretString::from("JBSWY3DPEHPK3PXP")));
        assert!(!secret_bytes_ok(&SecretString::from("JBSWY3DP")));
    }
}
