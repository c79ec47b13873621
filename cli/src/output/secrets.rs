//! What is shown once: a new profile's secret, URI, QR code and emergency codes (`enroll`),
//! and new emergency codes (`codes`). The text is built in zeroizing memory.

use super::json_line;
use crate::qr;
use pam_totp_proto::text::sanitize;
use pam_totp_proto::{ApiError, CodesReply, EnrollReply};
use std::fmt::Write as _;
use zeroize::Zeroizing;

/// `enroll`; `own` when the account defaulted to the caller's (shapes the "verify" hint), the
/// QR code only on a `terminal`.
pub fn enrolled(
    enrolled: &EnrollReply,
    own: bool,
    json: bool,
    terminal: bool,
) -> Result<Zeroizing<String>, ApiError> {
    if json {
        return json_line(enrolled);
    }
    let mut out = Zeroizing::new(String::new());
    enroll_text(&mut out, enrolled, own, terminal);
    Ok(out)
}

/// `codes --regenerate`.
pub fn codes(codes: &CodesReply, json: bool) -> Result<Zeroizing<String>, ApiError> {
    if json {
        return json_line(codes);
    }
    let mut out = Zeroizing::new(String::new());
    codes_text(&mut out, codes);
    Ok(out)
}

fn enroll_text(out: &mut String, enrolled: &EnrollReply, own: bool, terminal: bool) {
    let profile = &enrolled.profile;
    let account = sanitize(&profile.account);
    let _ = writeln!(out, "Secret:    {}", enrolled.secret.expose());
    let _ = writeln!(out, "URI:       {}", enrolled.otpauth_uri.expose());
    let moving = match (profile.period, profile.counter) {
        (Some(period), _) => format!("{period} s period"),
        (None, counter) => format!("HOTP, next counter {}", counter.unwrap_or(0)),
    };
    let _ = writeln!(
        out,
        "Settings:  {}, {} digits, {moving}",
        profile.algorithm, profile.digits
    );
    if terminal {
        if let Some(image) = qr::render(enrolled.otpauth_uri.expose()) {
            out.push('\n');
            out.push_str(&image);
            out.push('\n');
        }
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "Emergency codes (each works once; store them safely, they are not shown again):"
    );
    for code in &enrolled.emergency_codes {
        let _ = writeln!(out, "  {}", code.expose());
    }
    out.push('\n');
    let verify = if own {
        "pam-totp verify CODE".to_owned()
    } else {
        format!("pam-totp verify {account} CODE")
    };
    let _ = writeln!(
        out,
        "The profile for {account} is pending: confirm it with a code from the app: {verify}"
    );
}

fn codes_text(out: &mut String, codes: &CodesReply) {
    let account = sanitize(&codes.profile.account);
    let _ = writeln!(
        out,
        "New emergency codes for {account} (each works once; the previous ones no longer work; \
         store them safely, they are not shown again):"
    );
    for code in &codes.emergency_codes {
        let _ = writeln!(out, "  {}", code.expose());
    }
}
