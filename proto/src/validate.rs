//! Input rules, checked by the CLI for early errors and again by the agent, which decides.

use crate::error::ApiError;
use crate::message::LoginContext;
use crate::profile::ProfileKind;

/// Longest account name accepted (glibc's LOGIN_NAME_MAX less the NUL).
pub const MAX_ACCOUNT_LEN: usize = 255;
pub const MAX_COMMENT_CHARS: usize = 256;
pub const MAX_ISSUER_CHARS: usize = 64;
pub const MIN_DIGITS: u8 = 6;
pub const MAX_DIGITS: u8 = 8;
pub const MIN_PERIOD: u32 = 10;
pub const MAX_PERIOD: u32 = 300;
/// A TOTP profile's period when none is given (what authenticator apps assume).
pub const DEFAULT_PERIOD: u32 = 30;
/// Largest HOTP counter accepted: 2^53, which every JSON reader holds exactly (a token
/// pressed every second would need 285 million years to get there).
pub const MAX_COUNTER: u64 = 1 << 53;
/// Emergency codes are this many digits.
pub const EMERGENCY_CODE_DIGITS: usize = 8;
/// Longest login context item (service, rhost, tty, ruser) the agent accepts; the PAM module
/// truncates longer PAM items to this. Bounds what any caller can make the audit trail hold.
pub const MAX_CONTEXT_ITEM_BYTES: usize = 256;
/// Blocked sources listed in one profile view (a profile can have many).
pub const MAX_BLOCKED_SOURCES_SHOWN: u32 = 16;
/// Most audit entries one `log` command asks for; the CLI follows the agent's pages (each at
/// most [`crate::MAX_LOG_PAGE`]) up to this.
pub const MAX_LOG_LIMIT: u32 = 10_000;
/// Shortest TOTP/HOTP secret accepted, in bytes: shorter than 80 bits is refused (RFC 4226).
pub const MIN_SECRET_BYTES: usize = 10;
/// Longest TOTP/HOTP secret accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 64;
/// Most profiles one `import` request may carry; the agent refuses more.
pub const MAX_IMPORT_BATCH: usize = 1000;
/// Most profiles a client puts in one `import` request (fewer when they would not fit in one
/// frame: see [`crate::client::import_batches`]). Half of what the agent takes, so each
/// batch's transaction stays short and a reply, even one refusing every profile with a
/// message, stays far below [`crate::frame::MAX_REPLY_LEN`].
pub const IMPORT_BATCH: usize = 500;

/// A login context as the agent accepts it: each item at most [`MAX_CONTEXT_ITEM_BYTES`] and
/// free of control characters (it is recorded and shown). The target names the item.
pub fn login_context(context: &LoginContext) -> Result<(), ApiError> {
    let items = [
        ("service", &context.service),
        ("rhost", &context.rhost),
        ("tty", &context.tty),
        ("ruser", &context.ruser),
    ];
    for (field, value) in items {
        let Some(value) = value else { continue };
        if value.len() > MAX_CONTEXT_ITEM_BYTES {
            return Err(ApiError::invalid(
                field,
                format!("{field} is longer than {MAX_CONTEXT_ITEM_BYTES} bytes"),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                field,
                format!("{field} contains control characters"),
            ));
        }
    }
    Ok(())
}

/// What the PAM module sends for a PAM item: control characters replaced, cut to at most
/// [`MAX_CONTEXT_ITEM_BYTES`] on a character boundary, so a real login is never refused for
/// an odd item.
pub fn context_item(value: &str) -> String {
    let mut item = String::with_capacity(value.len().min(MAX_CONTEXT_ITEM_BYTES));
    for c in value.chars() {
        let c = if c.is_control() { '?' } else { c };
        if item.len() + c.len_utf8() > MAX_CONTEXT_ITEM_BYTES {
            break;
        }
        item.push(c);
    }
    item
}

/// A local account name as NSS would accept it: no control characters, white space, ':' or
/// '/', not starting with '-', at most [`MAX_ACCOUNT_LEN`] bytes.
pub fn account(name: &str) -> Result<(), ApiError> {
    let field = "account";
    if name.is_empty() {
        return Err(ApiError::invalid(field, "account name is empty"));
    }
    if name.len() > MAX_ACCOUNT_LEN {
        return Err(ApiError::invalid(
            field,
            format!("account name is longer than {MAX_ACCOUNT_LEN} bytes"),
        ));
    }
    if name.starts_with('-') {
        return Err(ApiError::invalid(field, "account name starts with '-'"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || matches!(c, ':' | '/' | ','))
    {
        return Err(ApiError::invalid(
            field,
            format!("account name contains a forbidden character {bad:?}"),
        ));
    }
    Ok(())
}

/// A code as typed: 6 to 8 ASCII digits (TOTP codes, or an 8-digit emergency code).
pub fn code(code: &str) -> Result<(), ApiError> {
    let len_ok = (MIN_DIGITS as usize..=MAX_DIGITS as usize).contains(&code.len());
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid("code", "code must contain digits only"));
    }
    if !len_ok {
        return Err(ApiError::invalid(
            "code",
            format!("code must be {MIN_DIGITS} to {MAX_DIGITS} digits long"),
        ));
    }
    Ok(())
}

pub fn comment(comment: &str) -> Result<(), ApiError> {
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(ApiError::invalid(
            "comment",
            format!("comment is longer than {MAX_COMMENT_CHARS} characters"),
        ));
    }
    if comment.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "comment",
            "comment contains control characters",
        ));
    }
    Ok(())
}

pub fn issuer(issuer: &str) -> Result<(), ApiError> {
    if issuer.is_empty() || issuer.chars().count() > MAX_ISSUER_CHARS {
        return Err(ApiError::invalid(
            "issuer",
            format!("issuer must be 1 to {MAX_ISSUER_CHARS} characters"),
        ));
    }
    if issuer.chars().any(|c| c.is_control() || c == ':') {
        return Err(ApiError::invalid(
            "issuer",
            "issuer contains a control character or ':'",
        ));
    }
    Ok(())
}

pub fn digits(digits: u8) -> Result<(), ApiError> {
    if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits) {
        return Err(ApiError::invalid(
            "digits",
            format!("digits must be {MIN_DIGITS} to {MAX_DIGITS}"),
        ));
    }
    Ok(())
}

pub fn period(period: u32) -> Result<(), ApiError> {
    if !(MIN_PERIOD..=MAX_PERIOD).contains(&period) {
        return Err(ApiError::invalid(
            "period",
            format!("period must be {MIN_PERIOD} to {MAX_PERIOD} seconds"),
        ));
    }
    Ok(())
}

/// An HOTP profile's counter (the next one the token shows): only for HOTP, at most
/// [`MAX_COUNTER`].
pub fn counter(kind: ProfileKind, counter: Option<u64>) -> Result<(), ApiError> {
    match (kind, counter) {
        (ProfileKind::Totp, Some(_)) => Err(ApiError::invalid(
            "counter",
            "a counter is only for HOTP profiles (--type hotp)",
        )),
        (ProfileKind::Hotp, Some(counter)) if counter > MAX_COUNTER => Err(ApiError::invalid(
            "counter",
            format!("counter must be 0 to {MAX_COUNTER}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(result: Result<(), ApiError>) -> Option<String> {
        result.err().and_then(|e| e.target)
    }

    #[test]
    fn accounts() {
        for good in ["alice", "bob.smith", "svc_backup$", "user@example.com", "a"] {
            assert!(account(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_ACCOUNT_LEN + 1);
        for bad in [
            "",
            "-rf",
            "a b",
            "a\tb",
            "ev\u{7}il",
            "a:b",
            "../x",
            long.as_str(),
        ] {
            assert_eq!(target(account(bad)).as_deref(), Some("account"), "{bad:?}");
        }
    }

    #[test]
    fn codes() {
        for good in ["123456", "1234567", "12345678"] {
            assert!(code(good).is_ok());
        }
        for bad in ["", "12345", "123456789", "12a456", " 123456", "١٢٣٤٥٦"] {
            assert_eq!(target(code(bad)).as_deref(), Some("code"), "{bad:?}");
        }
    }

    #[test]
    fn comments_issuers_digits_periods() {
        assert!(comment(&"x".repeat(256)).is_ok());
        assert_eq!(
            target(comment(&"x".repeat(257))).as_deref(),
            Some("comment")
        );
        assert_eq!(target(comment("a\nb")).as_deref(), Some("comment"));
        assert!(issuer("ACME Corp").is_ok());
        assert_eq!(target(issuer("a:b")).as_deref(), Some("issuer"));
        assert!(digits(6).is_ok() && digits(8).is_ok());
        assert_eq!(target(digits(5)).as_deref(), Some("digits"));
        assert_eq!(target(digits(9)).as_deref(), Some("digits"));
        assert!(period(30).is_ok());
        assert_eq!(target(period(0)).as_deref(), Some("period"));
    }

    #[test]
    fn counters_are_for_hotp_only_and_bounded() {
        assert!(counter(ProfileKind::Totp, None).is_ok());
        assert!(counter(ProfileKind::Hotp, None).is_ok());
        assert!(counter(ProfileKind::Hotp, Some(0)).is_ok());
        assert!(counter(ProfileKind::Hotp, Some(MAX_COUNTER)).is_ok());
        assert_eq!(
            target(counter(ProfileKind::Hotp, Some(MAX_COUNTER + 1))).as_deref(),
            Some("counter")
        );
        assert_eq!(
            target(counter(ProfileKind::Totp, Some(0))).as_deref(),
            Some("counter")
        );
    }

    #[test]
    fn context_items_are_bounded_and_named() {
        let long = "h".repeat(MAX_CONTEXT_ITEM_BYTES + 1);
        let fits = "h".repeat(MAX_CONTEXT_ITEM_BYTES);
        assert!(login_context(&LoginContext {
            service: Some("sshd".into()),
            rhost: Some(fits.clone()),
            tty: None,
            ruser: None,
        })
        .is_ok());
        for field in ["service", "rhost", "tty", "ruser"] {
            let mut context = LoginContext::default();
            let slot = match field {
                "service" => &mut context.service,
                "rhost" => &mut context.rhost,
                "tty" => &mut context.tty,
                _ => &mut context.ruser,
            };
            *slot = Some(long.clone());
            assert_eq!(target(login_context(&context)).as_deref(), Some(field));
        }
        let tty = LoginContext {
            tty: Some("pts/0\n".into()),
            ..LoginContext::default()
        };
        assert_eq!(target(login_context(&tty)).as_deref(), Some("tty"));
        // The module's side: cut on a character boundary, control characters replaced.
        assert_eq!(context_item(&long), fits);
        let wide = "é".repeat(200);
        let cut = context_item(&wide);
        assert!(cut.len() <= MAX_CONTEXT_ITEM_BYTES && cut.chars().all(|c| c == 'é'));
        assert_eq!(context_item("a\nb"), "a?b");
        assert!(login_context(&LoginContext {
            rhost: Some(context_item(&format!("{long}\u{7}"))),
            ..LoginContext::default()
        })
        .is_ok());
    }
}
