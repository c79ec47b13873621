//! A pam_oath usersfile (e.g. /etc/users.oath), as liboath reads it: one token per line,
//! `TYPE USER PASSWORD SECRET_HEX [COUNTER [LASTOTP [TIME]]]`, separated by white space;
//! blank lines and lines starting with `#` are ignored.
//!
//! Time-based types (`HOTP/T30`, `HOTP/T60`, optionally with `/6`, `/7` or `/8` digits, 6
//! without) become TOTP profiles; counter-based ones (`HOTP`, `HOTP/E`, `HOTP/E/6`, `/7`, `/8`)
//! HOTP profiles that go on from the line's counter. Lines with a password, and malformed
//! lines, are reported with their line numbers, each on its own. Nothing here ever repeats a
//! secret or a password in a message.
//!
//! An HOTP line's COUNTER is the counter of the last code accepted once LASTOTP follows it:
//! after a login liboath writes the accepted code's counter (the start counter plus its place
//! in the window) and that code, checks later codes from that counter on and refuses the
//! LASTOTP itself (`parse_usersfile`, `update_usersfile2` in oath-toolkit's
//! liboath/usersfile.c). So the next counter is COUNTER + 1 with a LASTOTP, COUNTER without
//! one (nothing used yet), and 0 without either.

use super::base32::secret_bytes_ok;
use super::Moving;
use pam_totp_proto::validate::{MAX_COUNTER, MAX_SECRET_BYTES, MIN_SECRET_BYTES};
use pam_totp_proto::{validate, ApiError, ErrorCode, SecretString};
use zeroize::Zeroizing;

/// One importable token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OathToken {
    pub account: String,
    /// The hex secret, as base32.
    pub secret: SecretString,
    pub digits: u8,
    pub moving: Moving,
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
    let (digits, moving) = token_type(fields[0])?;
    if fields[2] != "-" {
        return Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            "the line has a password ('-' expected): pam_oath checks it with the code, pam-totp \
             checks only the code, so a password cannot be carried over",
        )
        .with_target("password"));
    }
    let secret = hex_to_base32(fields[3])?;
    let moving = match moving {
        Moving::Counter { .. } => Moving::Counter {
            next: next_counter(fields.get(4), fields.get(5).is_some())?,
        },
        // A time-based line's COUNTER is liboath's own bookkeeping of its window.
        time => time,
    };
    Ok(OathToken {
        account: account.to_owned(),
        secret,
        digits,
        moving,
    })
}

/// `(digits, how codes move on)` of a token type, as liboath's `parse_type` reads it; unknown
/// ones are invalid.
fn token_type(kind: &str) -> Result<(u8, Moving), ApiError> {
    let (base, digits) = match kind.rsplit_once('/') {
        Some((base, "6")) => (base, 6),
        Some((base, "7")) => (base, 7),
        Some((base, "8")) => (base, 8),
        _ => (kind, 6),
    };
    let time = |period| Moving::Time {
        period,
        window: None,
    };
    match base {
        "HOTP/T30" => Ok((digits, time(30))),
        "HOTP/T60" => Ok((digits, time(60))),
        // The counter is the line's: see `next_counter`. Plain HOTP has no digits suffix.
        "HOTP/E" => Ok((digits, Moving::Counter { next: 0 })),
        "HOTP" if kind == "HOTP" => Ok((6, Moving::Counter { next: 0 })),
        _ => Err(ApiError::invalid(
            "type",
            format!(
                "unknown token type '{}': expected HOTP/T30 or HOTP/T60 (time-based) or HOTP \
                 or HOTP/E (counter-based), optionally with /6, /7 or /8",
                pam_totp_proto::text::sanitize(kind)
            ),
        )),
    }
}

/// The counter of an HOTP line's next code, from its COUNTER and whether a LASTOTP follows
/// (see the module's notes).
fn next_counter(counter: Option<&&str>, used: bool) -> Result<u64, ApiError> {
    let Some(counter) = counter else {
        return Ok(0);
    };
    let next = counter
        .parse::<u64>()
        .ok()
        .and_then(|counter| counter.checked_add(u64::from(used)))
        .filter(|next| *next <= MAX_COUNTER);
    next.ok_or_else(|| {
        ApiError::invalid(
            "counter",
            format!("the counter must be a number of 0 to {MAX_COUNTER}"),
        )
    })
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

    fn time(period: u32) -> Moving {
        Moving::Time {
            period,
            window: None,
        }
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
            assert_eq!(
                (token.digits, token.moving),
                (digits, time(period)),
                "{kind}"
            );
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
        assert_eq!(line.token.unwrap().moving, time(30));
    }

    #[test]
    fn comments_blank_lines_and_line_numbers() {
        let text = format!(
            "# users\n\n   \nHOTP/T30 a - {HEX}\r\n  # indented comment\nHOTP a - zz\nHOTP/T60/8 b - {HEX}"
        );
        let lines = parse(text.as_bytes());
        let numbers: Vec<usize> = lines.iter().map(|l| l.line).collect();
        assert_eq!(numbers, [4, 6, 7]);
        assert!(lines[0].token.is_ok());
        assert!(lines[1].token.is_err());
        assert_eq!(lines[2].token.as_ref().unwrap().digits, 8);
    }

    #[test]
    fn counter_based_lines_go_on_from_their_counter() {
        let next = |line: &str| match one(line).token.unwrap().moving {
            Moving::Counter { next } => next,
            other => panic!("{line}: {other:?}"),
        };
        for (kind, digits) in [
            ("HOTP", 6),
            ("HOTP/E", 6),
            ("HOTP/E/6", 6),
            ("HOTP/E/7", 7),
            ("HOTP/E/8", 8),
        ] {
            let token = one(&format!("{kind} carol - {HEX}")).token.unwrap();
            assert_eq!(token.digits, digits, "{kind}");
            assert_eq!(token.moving, Moving::Counter { next: 0 }, "{kind}");
        }
        // Provisioned at a counter, nothing used yet: that counter's code is next.
        assert_eq!(next(&format!("HOTP carol - {HEX} 5")), 5);
        // liboath wrote back counter 5 with its code: 6 is next.
        assert_eq!(
            next(&format!(
                "HOTP\tcarol\t-\t{HEX}\t5\t254676\t2024-05-01T10:00:00L"
            )),
            6
        );
        assert_eq!(
            next(&format!("HOTP carol - {HEX} 9007199254740991 1")),
            1 << 53
        );
        for bad in ["x", "-1", "9007199254740993", "9007199254740992 1"] {
            let error = refused(&format!("HOTP carol - {HEX} {bad}"));
            assert_eq!(error.target.as_deref(), Some("counter"), "{bad}");
            assert_eq!(error.code, ErrorCode::InvalidArgument);
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
                "HOTP/8 erin - 3132333435363738393031323334353637383930",
                "type",
            ),
            (
                "HOTP/E/9 erin - 3132333435363738393031323334353637383930",
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
            "HOTP/T30 a - zz\nHOTP b - {HEX} x\nHOTP/T30 c pw {HEX}\ngarbage\nHOTP/T60/8 d - {HEX}\n"
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
