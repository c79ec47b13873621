//! The profile as clients see it: every contract field, never the secret.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Algorithm {
    #[default]
    #[serde(rename = "SHA1")]
    Sha1,
    #[serde(rename = "SHA256")]
    Sha256,
    #[serde(rename = "SHA512")]
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "sha1" => Ok(Self::Sha1),
            "sha256" => Ok(Self::Sha256),
            "sha512" => Ok(Self::Sha512),
            _ => Err(format!(
                "unknown algorithm '{value}': expected sha1, sha256 or sha512"
            )),
        }
    }
}

/// How a profile's codes move on: with the clock (TOTP, RFC 6238) or with each press of
/// the token (HOTP, RFC 4226). JSON and the CLI spell it "totp" or "hotp".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    #[default]
    Totp,
    Hotp,
}

impl ProfileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::Hotp => "hotp",
        }
    }

    /// For `skip_serializing_if`: requests leave the default out, so their TOTP shape stays
    /// what it was before HOTP.
    pub fn is_totp(&self) -> bool {
        *self == Self::Totp
    }
}

impl fmt::Display for ProfileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProfileKind {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "totp" => Ok(Self::Totp),
            "hotp" => Ok(Self::Hotp),
            _ => Err(format!(
                "unknown profile type '{value}': expected totp or hotp"
            )),
        }
    }
}

/// Field names of [`ProfileView`] as they appear in JSON, in output order (for `--fields`):
/// read from the struct itself, so the list cannot drift from it.
pub fn profile_fields() -> &'static [&'static str] {
    serde_aux::serde_introspection::serde_introspect::<ProfileView>()
}

/// A source (remote host, or local caller) whose failures currently block it from this
/// account, as `show` explains a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedSource {
    pub source: String,
    /// RFC 3339 UTC.
    pub blocked_until: String,
    pub failed_attempts: u32,
}

/// One profile as shown by `show`, `list` and `enroll` (CONTRACT.md field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileView {
    pub id: i64,
    pub account: String,
    pub uid: u32,
    #[serde(rename = "type")]
    pub kind: ProfileKind,
    /// HOTP only (absent for TOTP): the counter of the next code the agent expects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<u64>,
    pub owner: String,
    pub scope: String,
    pub verified: bool,
    pub enabled: bool,
    pub algorithm: Algorithm,
    pub digits: u8,
    /// Seconds per code; `None` (null) for HOTP, whose codes do not expire.
    pub period: Option<u32>,
    pub sha_fingerprint: String,
    pub comment: Option<String>,
    pub created_at: String,
    pub changed_at: String,
    pub verified_at: Option<String>,
    pub last_used_at: Option<String>,
    pub failed_attempts: u32,
    pub locked_until: Option<String>,
    /// At most [`crate::validate::MAX_BLOCKED_SOURCES_SHOWN`], longest-blocked first.
    pub blocked_sources: Vec<BlockedSource>,
    pub emergency_codes_remaining: u32,
    pub can: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_parses_any_case_and_prints_upper() {
        assert_eq!("sha256".parse::<Algorithm>(), Ok(Algorithm::Sha256));
        assert_eq!("SHA512".parse::<Algorithm>(), Ok(Algorithm::Sha512));
        assert!("md5".parse::<Algorithm>().is_err());
        assert_eq!(
            serde_json::to_string(&Algorithm::Sha1).ok().as_deref(),
            Some("\"SHA1\"")
        );
    }

    fn view(kind: ProfileKind) -> ProfileView {
        ProfileView {
            id: 1,
            account: "alice".into(),
            uid: 1000,
            kind,
            counter: (kind == ProfileKind::Hotp).then_some(5),
            owner: "host".into(),
            scope: "host".into(),
            verified: false,
            enabled: true,
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: (kind == ProfileKind::Totp).then_some(30),
            sha_fingerprint: "00".into(),
            comment: None,
            created_at: "t".into(),
            changed_at: "t".into(),
            verified_at: None,
            last_used_at: None,
            failed_attempts: 0,
            locked_until: None,
            blocked_sources: vec![],
            emergency_codes_remaining: 10,
            can: vec![],
        }
    }

    fn sorted_keys(view: &ProfileView) -> Vec<String> {
        let value = serde_json::to_value(view).ok();
        let mut keys: Vec<String> = value
            .as_ref()
            .and_then(|v| v.as_object())
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    #[test]
    fn field_list_matches_the_serialized_view() {
        // An HOTP view has every field; a TOTP view all but `counter`.
        let mut expected: Vec<String> = profile_fields().iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(sorted_keys(&view(ProfileKind::Hotp)), expected);
        expected.retain(|field| field != "counter");
        assert_eq!(sorted_keys(&view(ProfileKind::Totp)), expected);
        // In contract order: `counter` right after `type`.
        let position = |name: &str| profile_fields().iter().position(|f| *f == name);
        assert_eq!(position("counter"), position("type").map(|p| p + 1));
    }

    #[test]
    fn kinds_are_lowercase_on_the_wire() {
        let hotp = serde_json::to_value(view(ProfileKind::Hotp)).unwrap_or_default();
        assert_eq!(hotp["type"], "hotp");
        assert_eq!(hotp["counter"], 5);
        assert!(hotp["period"].is_null());
        let totp = serde_json::to_value(view(ProfileKind::Totp)).unwrap_or_default();
        assert_eq!(totp["type"], "totp");
        assert_eq!(totp["period"], 30);
        assert_eq!("hotp".parse::<ProfileKind>(), Ok(ProfileKind::Hotp));
        assert!("HOTP/T30".parse::<ProfileKind>().is_err());
    }
}
