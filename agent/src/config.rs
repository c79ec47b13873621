//! Agent configuration: an optional TOML file; every key has a safe default.

use crate::store::Windows;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG: &str = "/etc/pam-totp/agent.toml";
pub const DEFAULT_DB: &str = "/var/lib/pam-totp/profiles.sqlite3";
/// Largest accepted skew window, in steps each side: more makes codes guessable.
pub const MAX_WINDOW: u32 = 10;
/// Largest accepted HOTP look-ahead, in counters: each one is another code a guess can hit.
pub const MAX_HOTP_WINDOW: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Members of this group administer every profile, like root.
    pub admin_group: Option<String>,
    /// Whether accounts may enroll themselves.
    pub self_enroll: bool,
    /// Time steps accepted either side of now.
    pub window: u32,
    /// HOTP counters accepted after the next expected one (codes of presses never used).
    pub hotp_window: u32,
    /// Audit rows older than this many days are deleted (0 keeps them forever).
    pub audit_retention_days: u32,
    /// At most this many audit rows are kept (the oldest go first): a bound on the audit
    /// trail's size whatever the login rate. Rows are at most ~1.5 KiB, typically ~150 bytes.
    pub audit_max_rows: u64,
    pub lockout: LockoutPolicy,
    /// A fleet store's URL (`postgres://...`); `None`: the SQLite file (`--db`).
    pub store: Option<String>,
    /// Root-only file holding the fleet store role's password.
    pub store_password_file: Option<PathBuf>,
    /// Root-only file of 32 random bytes: the fleet key (required with a fleet store).
    pub store_key_file: Option<PathBuf>,
    /// This agent's name in a fleet (default: the host name).
    pub host_name: Option<String>,
}

/// A host name as a fleet shows it (audit rows, `HOST/source`): what host names are made of.
pub fn check_host_name(name: &str) -> Result<(), String> {
    let fits = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if fits {
        Ok(())
    } else {
        Err(format!(
            "host_name {name:?} must be 1 to 253 letters, digits, '.', '-' or '_'"
        ))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            admin_group: None,
            self_enroll: true,
            window: 1,
            hotp_window: 10,
            audit_retention_days: 365,
            audit_max_rows: 200_000,
            lockout: LockoutPolicy::default(),
            store: None,
            store_password_file: None,
            store_key_file: None,
            host_name: None,
        }
    }
}

/// Two limits on guessing. One source (a remote host, or a local caller) is blocked after a
/// few failures, for a time that doubles with each further failure. The account as a whole is
/// locked only after many more failures over all sources, so one attacker cannot cheaply lock
/// the owner out from everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockoutPolicy {
    /// Consecutive failures, over all sources, that lock the account.
    pub threshold: u32,
    /// First account lock; each further failure doubles it.
    pub base_seconds: u64,
    /// Upper bound of a lock or block.
    pub max_seconds: u64,
    /// Failures from one source that block that source.
    pub source_threshold: u32,
    /// First block of a source; each further failure from it doubles it.
    pub source_base_seconds: u64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            threshold: 20,
            base_seconds: 30,
            max_seconds: 15 * 60,
            source_threshold: 5,
            source_base_seconds: 30,
        }
    }
}

/// `base`, doubled for every failure past `threshold`, capped at `max`; `None` below it.
fn backoff(threshold: u32, base: u64, max: u64, failures: u32) -> Option<u64> {
    let over = failures.checked_sub(threshold)?;
    let factor = 1u64.checked_shl(over.min(63)).unwrap_or(u64::MAX);
    Some(base.saturating_mul(factor).min(max))
}

/// While an account is locked, emergency codes are still checked (the owner's way back in)
/// until its failures reach this many times the lock threshold.
const EMERGENCY_GUESS_FACTOR: u32 = 5;

impl LockoutPolicy {
    /// Failures past which even emergency codes wait for a lock to end.
    pub fn emergency_guess_cap(&self) -> u32 {
        self.threshold.saturating_mul(EMERGENCY_GUESS_FACTOR)
    }

    /// Account lock after `failures` consecutive failures, if any.
    pub fn lock_seconds(&self, failures: u32) -> Option<u64> {
        backoff(
            self.threshold,
            self.base_seconds,
            self.max_seconds,
            failures,
        )
    }

    /// Source block after `failures` failures from that source, if any.
    pub fn block_seconds(&self, failures: u32) -> Option<u64> {
        backoff(
            self.source_threshold,
            self.source_base_seconds,
            self.max_seconds,
            failures,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Loads `path`. A missing file is an error only when the path was given explicitly.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Self::default())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// The windows a store needs to mark codes used after losing history.
    pub fn windows(&self) -> Windows {
        Windows {
            totp: self.window,
            hotp: self.hotp_window,
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.window > MAX_WINDOW {
            return Err(format!("window must be 0 to {MAX_WINDOW}"));
        }
        if self.hotp_window > MAX_HOTP_WINDOW {
            return Err(format!("hotp_window must be 0 to {MAX_HOTP_WINDOW}"));
        }
        let lockout = &self.lockout;
        if lockout.threshold == 0 || lockout.source_threshold == 0 {
            return Err("lockout.threshold and lockout.source_threshold must be at least 1".into());
        }
        for (name, base) in [
            ("base_seconds", lockout.base_seconds),
            ("source_base_seconds", lockout.source_base_seconds),
        ] {
            if base == 0 || lockout.max_seconds < base {
                return Err(format!("lockout needs 0 < {name} <= max_seconds"));
            }
        }
        if self.admin_group.as_deref() == Some("") {
            return Err("admin_group must not be empty".into());
        }
        if let Some(name) = &self.host_name {
            check_host_name(name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_issue() {
        let config = Config::parse("").ok();
        assert_eq!(config, Some(Config::default()));
        let lockout = LockoutPolicy::default();
        assert_eq!(lockout.block_seconds(4), None);
        assert_eq!(lockout.block_seconds(5), Some(30));
        assert_eq!(lockout.block_seconds(6), Some(60));
        assert_eq!(lockout.block_seconds(9), Some(480));
        assert_eq!(lockout.block_seconds(10), Some(900));
        assert_eq!(lockout.block_seconds(500), Some(900));
        assert_eq!(lockout.lock_seconds(19), None);
        assert_eq!(lockout.lock_seconds(20), Some(30));
        assert_eq!(lockout.lock_seconds(21), Some(60));
        let windows = Config::default().windows();
        assert_eq!((windows.totp, windows.hotp), (1, 10));
        assert!(Config::parse("hotp_window = 0").is_ok());
    }

    #[test]
    fn parses_every_key_and_refuses_unknown_or_unsafe_ones() {
        let text = "admin_group = \"totpadm\"\nself_enroll = false\nwindow = 2\nhotp_window = 100\naudit_retention_days = 30\naudit_max_rows = 5000\n[lockout]\nthreshold = 3\nbase_seconds = 10\nmax_seconds = 60\nsource_threshold = 2\nsource_base_seconds = 5\n";
        let config = Config::parse(text).ok();
        assert_eq!(
            config,
            Some(Config {
                admin_group: Some("totpadm".into()),
                self_enroll: false,
                window: 2,
                hotp_window: 100,
                audit_retention_days: 30,
                audit_max_rows: 5000,
                lockout: LockoutPolicy {
                    threshold: 3,
                    base_seconds: 10,
                    max_seconds: 60,
                    source_threshold: 2,
                    source_base_seconds: 5,
                },
                ..Config::default()
            })
        );
        for bad in [
            "admin_grup = \"x\"",
            "window = 11",
            "hotp_window = 101",
            "hotp_window = -1",
            "[lockout]\nthreshold = 0",
            "[lockout]\nbase_seconds = 100\nmax_seconds = 10",
            "[lockout]\nsource_threshold = 0",
            "[lockout]\nsource_base_seconds = 1000",
            "window = \"one\"",
            "host_name = \"a/b\"",
            "host_name = \"\"",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_default_file_is_fine_a_missing_explicit_one_is_not() {
        let path = Path::new("/nonexistent/pam-totp/agent.toml");
        assert!(Config::load(path, false).is_ok());
        assert!(Config::load(path, true).is_err());
    }
}
