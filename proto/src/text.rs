//! Text from elsewhere (names, agent messages, file contents) made safe to print on a terminal
//! or write to a log: one rule for the CLI's output and the PAM module's syslog lines.

/// Control characters (C0, DEL and C1, NUL and newlines included) escaped as Rust writes
/// them (`\n`, `\t`, `\0`, `\u{1b}`), so the text stays one line and cannot forge a log line
/// or move a terminal's cursor; everything else is kept as it is.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        assert_eq!(sanitize("alice"), "alice");
        assert_eq!(sanitize("a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(sanitize("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(sanitize("nul\0"), "nul\\0");
        assert_eq!(sanitize("\u{7f}\u{85}\u{9b}"), "\\u{7f}\\u{85}\\u{9b}");
        // Quotes, backslashes and non-ASCII letters are not control characters.
        assert_eq!(sanitize("'\"\\ é ü"), "'\"\\ é ü");
        let forged = sanitize("mallory\npam_totp: accepted root");
        assert!(!forged.contains('\n'));
        assert!(sanitize(&(0u8..=0x7f).map(char::from).collect::<String>())
            .chars()
            .all(|c| !c.is_control()));
    }
}
