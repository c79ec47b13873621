//! The agent's logger: each record of the `log` facade becomes one line on standard error.
//!
//! Under systemd, when standard error is the journal stream that `JOURNAL_STREAM` names, a line
//! is the record's syslog priority in sd-daemon style (`<3>` error, `<4>` warning, `<6>` info,
//! `<7>` debug and trace) and the message: the journal records the level and names the program.
//! Anywhere else a line is `pam-totp-agent: `, a level word (none for info) and the message,
//! e.g. `pam-totp-agent: warning: refusing connections (...)`.
//!
//! The level is `PAM_TOTP_LOG` (off, error, warn, info, debug, trace; default info). Only the
//! agent's own records are written: a dependency's records never reach the log. Whatever the
//! level, no line ever carries a secret or a code: the agent never passes one to a log macro.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fmt::{self, Write as _};
use std::io::Write as _;

/// The environment variable that sets the level.
pub const LEVEL_VARIABLE: &str = "PAM_TOTP_LOG";

/// The target (module path) of the agent's records, its library's and its binary's alike.
const OWN_TARGET: &str = "pam_totp_agent";

struct StderrLogger {
    journal: bool,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
            && metadata
                .target()
                .strip_prefix(OWN_TARGET)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_line(record.level(), record.args(), self.journal);
        // One write per line, so lines of concurrent threads never interleave. A log that
        // cannot be written is not a reason to fail a request.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger with the level from `PAM_TOTP_LOG`. Call once, first thing in `main`.
pub fn init() {
    let setting = std::env::var(LEVEL_VARIABLE).ok();
    let level = setting
        .as_deref()
        .map_or(Some(LevelFilter::Info), parse_level);
    let logger = StderrLogger {
        journal: stderr_is_journal(),
    };
    if log::set_logger(Box::leak(Box::new(logger))).is_err() {
        return;
    }
    log::set_max_level(level.unwrap_or(LevelFilter::Info));
    if level.is_none() {
        log::warn!(
            "{LEVEL_VARIABLE}={:?} is not a level (off, error, warn, info, debug, trace): \
             logging at info",
            setting.unwrap_or_default()
        );
    }
}

/// The level a `PAM_TOTP_LOG` value names (empty: the default, info); `None` if none.
fn parse_level(value: &str) -> Option<LevelFilter> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" => Some(LevelFilter::Info),
        "warning" => Some(LevelFilter::Warn),
        other => other.parse().ok(),
    }
}

/// One log line, newline included. Control characters in the message (an error text from the
/// OS or SQLite may hold a newline) are escaped, so a record is always exactly one line.
fn format_line(level: Level, message: &fmt::Arguments, journal: bool) -> String {
    let mut line = String::with_capacity(160);
    if journal {
        let _ = write!(line, "<{}>", priority(level));
    } else {
        line.push_str("pam-totp-agent: ");
        line.push_str(word(level));
    }
    let start = line.len();
    let _ = write!(line, "{message}");
    if line[start..].contains(char::is_control) {
        let mut escaped = String::with_capacity(line.len() - start + 16);
        for c in line[start..].chars() {
            if c.is_control() {
                escaped.extend(c.escape_debug());
            } else {
                escaped.push(c);
            }
        }
        line.truncate(start);
        line.push_str(&escaped);
    }
    line.push('\n');
    line
}

/// The syslog priority of a level (what sd-daemon's `SD_ERR` .. `SD_DEBUG` stand for).
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The word before the message on a plain standard error.
fn word(level: Level) -> &'static str {
    match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info => "",
        Level::Debug => "debug: ",
        Level::Trace => "trace: ",
    }
}

/// Whether standard error is the journal stream systemd connected it to: `JOURNAL_STREAM`
/// (`DEVICE:INODE`) names the very file standard error is, not one that a shell in the unit
/// redirected away from.
fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stderr()) {
        Ok(stat) => names_stream(&value, stat.st_dev, stat.st_ino),
        Err(_) => false,
    }
}

fn names_stream(value: &str, device: libc::dev_t, inode: libc::ino_t) -> bool {
    let Some((d, i)) = value.trim().split_once(':') else {
        return false;
    };
    d.parse() == Ok(device) && i.parse() == Ok(inode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(level: Level, message: fmt::Arguments, journal: bool) -> String {
        format_line(level, &message, journal)
    }

    #[test]
    fn plain_lines_read_as_they_always_did() {
        assert_eq!(
            line(
                Level::Info,
                format_args!("uid=0 pid=1 op=status result=ok"),
                false
            ),
            "pam-totp-agent: uid=0 pid=1 op=status result=ok\n"
        );
        assert_eq!(
            line(Level::Warn, format_args!("refusing connections"), false),
            "pam-totp-agent: warning: refusing connections\n"
        );
        assert_eq!(
            line(Level::Error, format_args!("accept failed: x"), false),
            "pam-totp-agent: error: accept failed: x\n"
        );
        assert_eq!(
            line(Level::Debug, format_args!("d"), false),
            "pam-totp-agent: debug: d\n"
        );
    }

    #[test]
    fn journal_lines_carry_the_priority() {
        assert_eq!(line(Level::Error, format_args!("e"), true), "<3>e\n");
        assert_eq!(line(Level::Warn, format_args!("w"), true), "<4>w\n");
        assert_eq!(line(Level::Info, format_args!("i"), true), "<6>i\n");
        assert_eq!(line(Level::Debug, format_args!("d"), true), "<7>d\n");
        assert_eq!(line(Level::Trace, format_args!("t"), true), "<7>t\n");
    }

    #[test]
    fn a_record_is_one_line() {
        let cause = "disk\nfull\r\u{1b}[31m é";
        assert_eq!(
            line(
                Level::Error,
                format_args!("cannot record state: {cause}"),
                false
            ),
            "pam-totp-agent: error: cannot record state: disk\\nfull\\r\\u{1b}[31m é\n"
        );
        assert_eq!(line(Level::Info, format_args!("a\nb"), true), "<6>a\\nb\n");
    }

    #[test]
    fn levels_parse() {
        assert_eq!(parse_level(""), Some(LevelFilter::Info));
        assert_eq!(parse_level("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_level(" WARN "), Some(LevelFilter::Warn));
        assert_eq!(parse_level("warning"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("off"), Some(LevelFilter::Off));
        assert_eq!(parse_level("error"), Some(LevelFilter::Error));
        assert_eq!(parse_level("trace"), Some(LevelFilter::Trace));
        assert_eq!(parse_level("loud"), None);
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(names_stream("8:12345", 8, 12345));
        assert!(!names_stream("8:12345", 8, 12346));
        assert!(!names_stream("9:12345", 8, 12345));
        assert!(!names_stream("", 8, 12345));
        assert!(!names_stream("8", 8, 12345));
        assert!(!names_stream("x:y", 8, 12345));
    }

    #[test]
    fn only_the_agents_records_are_written() {
        let logger = StderrLogger { journal: false };
        log::set_max_level(LevelFilter::Trace);
        let meta = |target| {
            Metadata::builder()
                .level(Level::Info)
                .target(target)
                .build()
        };
        assert!(logger.enabled(&meta("pam_totp_agent::server")));
        assert!(logger.enabled(&meta("pam_totp_agent")));
        assert!(!logger.enabled(&meta("pam_totp_agentx")));
        assert!(!logger.enabled(&meta("rusqlite")));
    }
}
