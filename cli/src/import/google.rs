//! A google-authenticator file (`~/.google_authenticator`) as google-authenticator-libpam
//! writes it:
//!
//! ```text
//! JBSWY3DPEHPK3PXPJBSWY3DPEH          line 1: the base32 secret
//! " RATE_LIMIT 3 30 1700000000        option lines start with `" `
//! " WINDOW_SIZE 17                    codes accepted in total (default 3)
//! " DISALLOW_REUSE 56666666
//! " TOTP_AUTH                         time-based; `" HOTP_COUNTER n` means counter-based
//! " STEP_SIZE 30                      seconds per code (default 30)
//! 12345678                            8-digit scratch codes, each good once
//! ```
//!
//! `HOTP_COUNTER` is the counter of the next code: pam_google_authenticator checks codes from
//! it on (WINDOW_SIZE of them) and writes back the accepted one's counter + 1
//! (`check_counterbased_code` in google-authenticator-libpam's src/pam_google_authenticator.c);
//! a counter below 1 means the file is not counter-based there.
//!
//! Nothing here ever repeats the secret or a scratch code in a message.

use super::base32::{normalize_base32, secret_bytes_ok};
use super::Moving;
use pam_totp_proto::validate::{self, EMERGENCY_CODE_DIGITS, MAX_COUNTER};
use pam_totp_proto::validate::{MAX_SECRET_BYTES, MIN_SECRET_BYTES};
use pam_totp_proto::{ApiError, SecretString};

/// Largest skew window pam-totp accepts, in steps either side (the agent's limit).
pub const MAX_WINDOW: u32 = 10;
/// google-authenticator's defaults when the options are absent.
const DEFAULT_WINDOW_SIZE: u32 = 3;
const DEFAULT_STEP_SIZE: u32 = 30;

/// What a google-authenticator file holds that carries over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleFile {
    /// Canonical base32 (upper case, no padding or spaces).
    pub secret: SecretString,
    /// TOTP: the STEP_SIZE, and `(WINDOW_SIZE - 1) / 2` steps either side of now. HOTP: the
    /// HOTP_COUNTER (the agent's own look-ahead replaces WINDOW_SIZE).
    pub moving: Moving,
    pub emergency_codes: Vec<SecretString>,
}

/// Parses the file's text. Errors name the field at fault (`secret`, `window`, `period`,
/// `counter`) or `file`.
pub fn parse(text: &str) -> Result<GoogleFile, ApiError> {
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .enumerate()
        .map(|(index, line)| (index + 1, line));
    let secret = match lines.next() {
        Some((_, first)) if !first.trim().is_empty() && !first.starts_with('"') => first,
        _ => {
            return Err(ApiError::invalid(
                "file",
                "not a google-authenticator file: line 1 must hold the secret",
            ))
        }
    };
    let secret = parse_secret(secret)?;
    let mut window_size = DEFAULT_WINDOW_SIZE;
    let mut period = DEFAULT_STEP_SIZE;
    let mut counter = None;
    let mut emergency_codes = Vec::new();
    for (number, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(option) = line.strip_prefix('"') {
            let mut words = option.split_whitespace();
            let name = words.next().unwrap_or_default();
            let value = words.next();
            match name {
                "WINDOW_SIZE" => window_size = window_size_of(value, number)?,
                "STEP_SIZE" => period = step_size_of(value, number)?,
                "HOTP_COUNTER" => counter = Some(counter_of(value, number)?),
                // TOTP_AUTH marks a time-based file; files older than that option hold no
                // marker at all. RATE_LIMIT, DISALLOW_REUSE and TIME_SKEW are that module's
                // own state: the agent has its own lockout and always refuses reused codes.
                _ => {}
            }
            continue;
        }
        let code = line.trim();
        if code.len() == EMERGENCY_CODE_DIGITS && code.bytes().all(|b| b.is_ascii_digit()) {
            emergency_codes.push(SecretString::from(code));
            continue;
        }
        return Err(ApiError::invalid(
            "file",
            format!(
                "line {number} is neither an option nor an {EMERGENCY_CODE_DIGITS}-digit \
                 scratch code"
            ),
        ));
    }
    // A counter wins over a stray TOTP_AUTH, as in pam_google_authenticator.
    if let Some(next) = counter {
        return Ok(GoogleFile {
            secret,
            moving: Moving::Counter { next },
            emergency_codes,
        });
    }
    let window = (window_size - 1) / 2;
    if window > MAX_WINDOW {
        return Err(ApiError::invalid(
            "window",
            format!(
                "WINDOW_SIZE {window_size} accepts {window} steps either side; pam-totp \
                 accepts at most {MAX_WINDOW} (WINDOW_SIZE {})",
                2 * MAX_WINDOW + 1
            ),
        ));
    }
    Ok(GoogleFile {
        secret,
        moving: Moving::Time {
            period,
            window: Some(window),
        },
        emergency_codes,
    })
}

fn parse_secret(line: &str) -> Result<SecretString, ApiError> {
    let Some(secret) = normalize_base32(line, true) else {
        return Err(ApiError::invalid("secret", "line 1 is not a base32 secret"));
    };
    if !secret_bytes_ok(&secret) {
        return Err(ApiError::invalid(
            "secret",
            format!("the secret on line 1 must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes"),
        ));
    }
    Ok(secret)
}

fn window_size_of(value: Option<&str>, number: usize) -> Result<u32, ApiError> {
    match value.and_then(|v| v.parse::<u32>().ok()) {
        Some(size) if size >= 1 => Ok(size),
        _ => Err(ApiError::invalid(
            "window",
            format!("WINDOW_SIZE on line {number} must be a number of codes, at least 1"),
        )),
    }
}

fn counter_of(value: Option<&str>, number: usize) -> Result<u64, ApiError> {
    match value.and_then(|v| v.parse::<u64>().ok()) {
        Some(counter) if (1..=MAX_COUNTER).contains(&counter) => Ok(counter),
        _ => Err(ApiError::invalid(
            "counter",
            format!("HOTP_COUNTER on line {number} must be a counter of 1 to {MAX_COUNTER}"),
        )),
    }
}

fn step_size_of(value: Option<&str>, number: usize) -> Result<u32, ApiError> {
    let Some(period) = value.and_then(|v| v.parse::<u32>().ok()) else {
        return Err(ApiError::invalid(
            "period",
            format!("STEP_SIZE on line {number} must be a number of seconds"),
        ));
    };
    validate::period(period).map_err(|e| {
        ApiError::invalid(
            "period",
            format!("STEP_SIZE {period} on line {number}: {}", e.message),
        )
    })?;
    Ok(period)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use pam_totp_proto::ErrorCode;

    /// As `google-authenticator -t -d -f -r 3 -R 30 -w 3 -Q NONE -s FILE` wrote it.
    const WRITTEN_BY_THE_TOOL: &str = "J5RKYJBDUSAT4VW7J37BVIVX74\n\
        \" RATE_LIMIT 3 30\n\
        \" WINDOW_SIZE 3\n\
        \" DISALLOW_REUSE\n\
        \" TOTP_AUTH\n\
        19032125\n\
        92788794\n\
        14535656\n\
        78354799\n\
        94642285\n";

    fn time(period: u32, window: u32) -> Moving {
        Moving::Time {
            period,
            window: Some(window),
        }
    }

    fn window_of(text: &str) -> Option<u32> {
        match parse(text).unwrap().moving {
            Moving::Time { window, .. } => window,
            Moving::Counter { .. } => None,
        }
    }

    fn refused(text: &str) -> ApiError {
        parse(text).expect_err("should be refused")
    }

    fn target(text: &str) -> Option<String> {
        refused(text).target
    }

    #[test]
    fn a_file_written_by_the_tool() {
        let file = parse(WRITTEN_BY_THE_TOOL).unwrap();
        assert_eq!(file.secret.expose(), "J5RKYJBDUSAT4VW7J37BVIVX74");
        assert_eq!(file.moving, time(30, 1));
        let codes: Vec<&str> = file.emergency_codes.iter().map(|c| c.expose()).collect();
        assert_eq!(
            codes,
            ["19032125", "92788794", "14535656", "78354799", "94642285"]
        );
    }

    #[test]
    fn used_state_and_crlf_and_no_final_newline() {
        let text = "JBSWY3DPEHPK3PXPJBSWY3DPEH\r\n\" RATE_LIMIT 3 30 1700000000 1700000010\r\n\
                    \" DISALLOW_REUSE 56666666 56666667\r\n\" TIME_SKEW 1\r\n\" TOTP_AUTH";
        let file = parse(text).unwrap();
        assert_eq!(file.moving, time(30, 1));
        assert!(file.emergency_codes.is_empty());
    }

    #[test]
    fn window_size_maps_to_steps_either_side() {
        let with =
            |size: &str| format!("JBSWY3DPEHPK3PXPJBSW\n\" WINDOW_SIZE {size}\n\" TOTP_AUTH\n");
        for (size, window) in [
            ("1", 0),
            ("2", 0),
            ("3", 1),
            ("4", 1),
            ("17", 8),
            ("21", 10),
        ] {
            assert_eq!(window_of(&with(size)), Some(window), "{size}");
        }
        for bad in ["23", "24", "100"] {
            let error = refused(&with(bad));
            assert_eq!(error.target.as_deref(), Some("window"), "{bad}");
            assert_eq!(error.code, ErrorCode::InvalidArgument);
            assert!(error.message.contains("at most 10"), "{}", error.message);
        }
        for bad in ["0", "x", "-3", ""] {
            assert_eq!(target(&with(bad)).as_deref(), Some("window"), "{bad:?}");
        }
        // Absent: google-authenticator's default of 3 codes.
        assert_eq!(window_of("JBSWY3DPEHPK3PXPJBSW\n"), Some(1));
    }

    #[test]
    fn step_size_is_the_period() {
        let file = parse("JBSWY3DPEHPK3PXPJBSW\n\" STEP_SIZE 60\n\" TOTP_AUTH\n").unwrap();
        assert_eq!(file.moving, time(60, 1));
        assert_eq!(
            target("JBSWY3DPEHPK3PXPJBSW\n\" STEP_SIZE 5\n").as_deref(),
            Some("period")
        );
        assert_eq!(
            target("JBSWY3DPEHPK3PXPJBSW\n\" STEP_SIZE soon\n").as_deref(),
            Some("period")
        );
    }

    #[test]
    fn hotp_files_become_hotp_profiles_at_their_next_counter() {
        // As `google-authenticator -c ...` writes it: no TOTP_AUTH, a counter.
        let file =
            parse("ZO365TAXHDSLDJ6TMKRFVGE2II\n\" WINDOW_SIZE 3\n\" HOTP_COUNTER 1\n73635704\n")
                .unwrap();
        assert_eq!(file.moving, Moving::Counter { next: 1 });
        assert_eq!(file.emergency_codes.len(), 1);
        // A counter wins over a stray TOTP_AUTH; WINDOW_SIZE is TOTP's limit only.
        let file = parse(
            "ZO365TAXHDSLDJ6TMKRFVGE2II\n\" TOTP_AUTH\n\" WINDOW_SIZE 40\n\" HOTP_COUNTER 42\n",
        )
        .unwrap();
        assert_eq!(file.moving, Moving::Counter { next: 42 });
        for bad in ["0", "-1", "x", "", "9007199254740993"] {
            let error = refused(&format!(
                "ZO365TAXHDSLDJ6TMKRFVGE2II\n\" HOTP_COUNTER {bad}\n"
            ));
            assert_eq!(error.target.as_deref(), Some("counter"), "{bad:?}");
            assert!(error.message.contains("line 2"), "{}", error.message);
        }
    }

    #[test]
    fn secrets_are_normalized_like_the_pam_module_reads_them() {
        let file = parse("jbsw y3dp-ehpk 3pxp jbsw\n").unwrap();
        assert_eq!(file.secret.expose(), "JBSWY3DPEHPK3PXPJBSW");
        // The module reads 0, 1 and 8 as O, L and B.
        let file = parse("JBSWY3DPEHPK3PXPJ8SW0100====\n").unwrap();
        assert_eq!(file.secret.expose(), "JBSWY3DPEHPK3PXPJBSWOLOO");
    }

    #[test]
    fn bad_secrets_and_lines_name_the_field_and_never_echo() {
        assert_eq!(target("").as_deref(), Some("file"));
        assert_eq!(target("\n12345678\n").as_deref(), Some("file"));
        assert_eq!(target("\" TOTP_AUTH\n").as_deref(), Some("file"));
        let error = refused("JBSWY3DP!HPK3PXP\n");
        assert_eq!(error.target.as_deref(), Some("secret"));
        assert!(!error.message.contains("JBSW"), "{}", error.message);
        // Too short: 5 bytes.
        assert_eq!(target("JBSWY3DP\n").as_deref(), Some("secret"));
        let error = refused("JBSWY3DPEHPK3PXPJBSW\n1234567\n");
        assert_eq!(error.target.as_deref(), Some("file"));
        assert!(error.message.contains("line 2"), "{}", error.message);
        assert!(!error.message.contains("1234567"), "{}", error.message);
        assert_eq!(
            target("JBSWY3DPEHPK3PXPJBSW\n123456789\n").as_deref(),
            Some("file")
        );
    }
}
