//! A pam_oath usersfile (e.g. /etc/users.oath), as liboath reads it: one token per line,
//! `TYPE USER PASSWORD SECRET_HEX [COUNTER [LASTOTP [TIME]]]`, separated by white space;
//! blank lines and lines starting with `#` are ignored.
//!
//! Time-based types carry over: `HOTP/T30` and `HOTP/T60`, optionally with `/6`, `/7` or `/8`
//! digits (6 without). Counter-based types (`HOTP`, `HOTP/E`, `HOTP/E/8`, ...), lines with a
//! password, and malformed lines are reported with their line numbers, each on its own.
//! Nothing here ever repeats a secret or a password in a message.

use super::base32::secret_bytes_ok;
use pam_totp_proto::validate::{MAX_SECRET_BYTES, MIN_SECRET_BYTES};
use pam_totp_proto::{validate, ApiError, ErrorCode, SecretString};
use zeroize::Zeroizing;

/// One importable token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OathToken {
    pub account: String,
    /// The hex secret, as base32.
    pub secret: SecretString,
    pub digits: u8,
    pub period: u32,
}

/// One non-comment line: its number (from 1), its account when it names one, and the token
/// or why it cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OathLine {
    pub line: usize,
    pub account: Option<String>,
    pub token: Result<OathToken, ApiError>,
}

/// Every non-blank, non-comment line of the file, in order.
pub fn parse(bytes: &[u8]) -> Vec<OathLine> {
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter_map(|(index, raw)| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = index + 1;
            let Ok(text) = std::str::from_utf8(raw) else {
                return Some(OathLine {
                    line,
                    account: None,
                    token: Err(ApiError::invalid("line", "the line is not valid UTF-8")),
                });
            };
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                return None;
            }
            let fields: Vec<&str> = text.split_whitespace().collect();
            let account = fields
                .get(1)
                .filter(|name| validate::account(name).is_ok())
                .map(|name| (*name).to_owned());
            Some(OathLine {
                line,
                account,
                token: parse_fields(&fields),
            })
        })
        .collect()
}

/// The columns of a line, checked in order: count, account, type, password, secret.
fn parse_fields(fields: &[&str]) -> Result<OathToken, ApiError> {
    const NAMES: [&str; 4] = ["type", "account", "password", "secret"];
    if fields.len() < NAMES.len() {
        return Err(ApiError::invalid(
            NAMES[fields.len()],
            format!(
                "missing fields: expected TYPE USER PASSWORD SECRET_HEX, found {} field{}",
                fields.len(),
                if fields.len() == 1 { "" } else { "s" }
            ),
        ));
    }
    if fields.len() > 7 {
        return Err(ApiError::invalid(
            "line",
            format!(
                "{} fields: expected TYPE USER PASSWORD SECRET_HEX [COUNTER [LASTOTP [TIME]]]",
                fields.len()
            ),
        ));
    }
    let account = fields[1];
    validate::account(account)?;
    let (digits, period) = token_type(fields[0])?;
    if fields[2] != "-" {
        return Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            "the line has a password ('-' expected): pam_oath checks it with the code, pam-totp \
             checks only the code, so a password cannot be carried over",
        )
        .with_target("password"));
    }
    let secret = hex_to_base32(fields[3])?;
    Ok(OathToken {
        account: account.to_owned(),
        secret,
        digits,
        period,
    })
}

/// `(digits, period)` of a time-based token type; counter-based ones are refused with
/// `failed_precondition`, unknown ones as invalid.
fn token_type(kind: &str) -> Result<(u8, u32), ApiError> {
    let (base, digits) = match kind.rsplit_once('/') {
        Some((base, "6")) => (base, 6),
        Some((base, "7")) => (base, 7),
        Some((base, "8")) => (base, 8),
        _ => (kind, 6),
    };
    match base {
        "HOTP/T30" => Ok((digits, 30)),
        "HOTP/T60" => Ok((digits, 60)),
        "HOTP" | "HOTP/E" => Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            format!(
                "{} is a counter-based token: counter-based (HOTP) codes cannot move to a \
                 time-based (TOTP) profile",
                pam_totp_proto::text::sanitize(kind)
            ),
        )
        .with_target("type")),
        _ => Err(ApiError::invalid(
            "type",
            format!(
                "unknown token type '{}': expected HOTP/T30 or HOTP/T60, optionally with /6, \
                 /7 or /8",
                pam_totp_proto::text::sanitize(kind)
            ),
        )),
    }
}

fn hex_to_base32(hex_secret: &str) -> Result<SecretString, ApiError> {
    let bytes = hex::decode(hex_secret)
        .map(Zeroizing::new)
        .map_err(|_| ApiError::invalid("secret", "the secret is not hexadecimal"))?;
    let secret = SecretString::new(base32::encode(
        base32::Alphabet::Rfc4648 { padding: false },
        &bytes,
    ));
    if !secret_bytes_ok(&secret) {
        return Err(ApiError::invalid(
            "secret",
            format!(
                "the secret is {} bytes; pam-totp accepts {MIN_SECRET_BYTES} to \
                 {MAX_SECRET_BYTES}",
                bytes.len()
            ),
        ));
    }
    Ok(secret)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const HEX: &str = "3132333435363738393031323334353637383930";

    fn one(line: &str) -> OathLine {
        let mut lines = parse(line.as_bytes());
        assert_eq!(lines.len(), 1, "{line:?}");
        lines.remove(0)
    }

    fn refused(line: &str) -> ApiError {
        one(line).token.expect_err("should be refused")
    }

    #[test]
    fn time_based_types_and_digits() {
        let cases = [
            ("HOTP/T30", 6, 30),
            ("HOTP/T30/6", 6, 30),
            ("HOTP/T30/7", 7, 30),
            ("HOTP/T30/8", 8, 30),
            ("HOTP/T60", 6, 60),
            ("HOTP/T60/8", 8, 60),
        ];
        for (kind, digits, period) in cases {
            let line = one(&format!("{kind} alice - {HEX}"));
            let token = line.token.unwrap();
            assert_eq!((token.digits, token.period), (digits, period), "{kind}");
            assert_eq!(token.account, "alice");
            // RFC 4226's test secret "12345678901234567890".
            assert_eq!(token.secret.expose(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        }
    }

    #[test]
    fn state_columns_are_accepted() {
        let line = one(&format!(
            "HOTP/T30\tbob\t-\t{HEX}\t0\t755224\t2024-05-01T10:00:00L"
        ));
        assert_eq!(line.account.as_deref(), Some("bob"));
        assert!(line.token.is_ok());
    }

    #[test]
    fn comments_blank_lines_and_line_numbers() {
        let text = format!(
            "# users\n\n   \nHOTP/T30 a - {HEX}\r\n  # indented comment\nHOTP a - {HEX}\nHOTP/T60/8 b - {HEX}"
        );
        let lines = parse(text.as_bytes());
        let numbers: Vec<usize> = lines.iter().map(|l| l.line).collect();
        assert_eq!(numbers, [4, 6, 7]);
        assert!(lines[0].token.is_ok());
        assert!(lines[1].token.is_err());
        assert_eq!(lines[2].token.as_ref().unwrap().digits, 8);
    }

    #[test]
    fn counter_based_lines_are_refused_with_the_reason() {
        for kind in ["HOTP", "HOTP/E", "HOTP/E/6", "HOTP/E/7", "HOTP/E/8"] {
            let error = refused(&format!("{kind} carol - {HEX} 5"));
            assert_eq!(error.code, ErrorCode::FailedPrecondition, "{kind}");
            assert_eq!(error.target.as_deref(), Some("type"));
            assert!(error.message.contains("counter-based"), "{}", error.message);
        }
    }

    #[test]
    fn password_lines_are_refused_without_echoing_it() {
        let line = one(&format!("HOTP/T30 dave s3cretpw {HEX}"));
        assert_eq!(line.account.as_deref(), Some("dave"));
        let error = line.token.unwrap_err();
        assert_eq!(error.code, ErrorCode::FailedPrecondition);
        assert_eq!(error.target.as_deref(), Some("password"));
        assert!(!error.message.contains("s3cretpw"), "{}", error.message);
        assert_eq!(
            refused(&format!("HOTP/T30 dave + {HEX}")).target.as_deref(),
            Some("password")
        );
    }

    #[test]
    fn malformed_lines_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("HOTP/T30", "account"),
            ("HOTP/T30 erin", "password"),
            ("HOTP/T30 erin -", "secret"),
            ("HOTP/T30 erin - 31323g", "secret"),
            ("HOTP/T30 erin - 313", "secret"),
            // 9 bytes: too short.
            ("HOTP/T30 erin - 313233343536373839", "secret"),
            (
                "TOTP erin - 3132333435363738393031323334353637383930",
                "type",
            ),
            (
                "HOTP/T45 erin - 3132333435363738393031323334353637383930",
                "type",
            ),
            (
                "HOTP/T30/9 erin - 3132333435363738393031323334353637383930",
                "type",
            ),
            (
                "HOTP/T30 -erin - 3132333435363738393031323334353637383930",
                "account",
            ),
            (
                "HOTP/T30 a:b - 3132333435363738393031323334353637383930",
                "account",
            ),
            (
                "HOTP/T30 e - 3132333435363738393031323334353637383930 0 1 2 3",
                "line",
            ),
        ];
        for (line, field) in cases {
            let error = refused(line);
            assert_eq!(error.code, ErrorCode::InvalidArgument, "{line}");
            assert_eq!(
                error.target.as_deref(),
                Some(*field),
                "{line}: {}",
                error.message
            );
            assert!(!error.message.contains("313233"), "{}", error.message);
        }
        let bad = parse(b"HOTP/T30 fred - \xff\xfe\n");
        assert_eq!(
            bad[0].token.as_ref().unwrap_err().target.as_deref(),
            Some("line")
        );
        assert_eq!(bad[0].account, None);
    }

    #[test]
    fn one_bad_line_never_hides_the_rest() {
        let text = format!(
            "HOTP/T30 a - zz\nHOTP b - {HEX}\nHOTP/T30 c pw {HEX}\ngarbage\nHOTP/T60/8 d - {HEX}\n"
        );
        let lines = parse(text.as_bytes());
        assert_eq!(lines.len(), 5);
        let ok: Vec<usize> = lines
            .iter()
            .filter(|l| l.token.is_ok())
            .map(|l| l.line)
            .collect();
        assert_eq!(ok, [5]);
    }
}
