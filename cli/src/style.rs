//! Colour in human output: only on a terminal, never with `NO_COLOR` set (no-color.org), never
//! on a `dumb` terminal, never in JSON.

use pam_totp_proto::audit::Outcome;
use pam_totp_proto::AuditResult;
use std::ffi::OsStr;

/// Whether human output may be coloured. `terminal`: stdout is a terminal; `no_color` and
/// `term`: the values of `NO_COLOR` and `TERM`.
pub fn colour_allowed(
    json: bool,
    terminal: bool,
    no_color: Option<&OsStr>,
    term: Option<&OsStr>,
) -> bool {
    !json
        && terminal
        // no-color.org: set and not empty disables colour, whatever its value.
        && no_color.is_none_or(OsStr::is_empty)
        && term.is_none_or(|term| term != "dumb")
}

/// From this process's environment.
pub fn colour_from_env(json: bool, terminal: bool) -> bool {
    colour_allowed(
        json,
        terminal,
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    Green,
    Yellow,
    Red,
}

impl Paint {
    fn sgr(self) -> &'static str {
        match self {
            Self::Green => "32",
            Self::Yellow => "33",
            Self::Red => "31",
        }
    }
}

/// `text` wrapped in the colour's escape sequence when colour is on.
pub fn paint(text: &str, paint: Option<Paint>, colour: bool) -> String {
    match paint {
        Some(paint) if colour && !text.is_empty() => {
            format!("\u{1b}[{}m{text}\u{1b}[0m", paint.sgr())
        }
        _ => text.to_owned(),
    }
}

/// The colour of an audit result: let in or changed green, let in without a code yellow,
/// refused red.
pub fn result_paint(result: AuditResult) -> Option<Paint> {
    match (result, result.outcome()) {
        (AuditResult::EmergencyCode | AuditResult::Grace, _) => Some(Paint::Yellow),
        (_, Outcome::Login | Outcome::Change) => Some(Paint::Green),
        (_, Outcome::Failure | Outcome::Refusal) => Some(Paint::Red),
        (_, Outcome::Unknown) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(value: &str) -> Option<&OsStr> {
        Some(OsStr::new(value))
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_allowed(false, true, None, os("xterm-256color")));
        assert!(colour_allowed(false, true, None, None));
        // Not a terminal (a pipe or a file).
        assert!(!colour_allowed(false, false, None, os("xterm")));
        // NO_COLOR set to anything non-empty.
        assert!(!colour_allowed(false, true, os("1"), os("xterm")));
        assert!(!colour_allowed(false, true, os("0"), os("xterm")));
        // Set but empty does not count (no-color.org).
        assert!(colour_allowed(false, true, os(""), os("xterm")));
        assert!(!colour_allowed(false, true, None, os("dumb")));
        // Never in JSON.
        assert!(!colour_allowed(true, true, None, os("xterm")));
    }

    #[test]
    fn painting() {
        assert_eq!(
            paint("success", Some(Paint::Green), true),
            "\u{1b}[32msuccess\u{1b}[0m"
        );
        assert_eq!(paint("success", Some(Paint::Green), false), "success");
        assert_eq!(paint("x", None, true), "x");
        assert_eq!(paint("", Some(Paint::Red), true), "");
    }

    #[test]
    fn results_have_colours() {
        assert_eq!(result_paint(AuditResult::Success), Some(Paint::Green));
        for failure in ["wrong_code", "replay", "locked", "malformed_code", "denied"] {
            let result = AuditResult::parse(failure);
            assert_eq!(result_paint(result), Some(Paint::Red), "{failure}");
        }
        assert_eq!(result_paint(AuditResult::Grace), Some(Paint::Yellow));
        assert_eq!(
            result_paint(AuditResult::EmergencyCode),
            Some(Paint::Yellow)
        );
        assert_eq!(result_paint(AuditResult::parse("something_new")), None);
    }
}
