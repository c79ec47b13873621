//! The audit trail's vocabulary: what became of a request. One enum for the agent that writes
//! it, the store that counts it and the CLI that colours it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What became of one request, as the audit trail records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    /// A TOTP code let a login in (or a change that needed no code was made).
    Success,
    /// An emergency code let a login in.
    EmergencyCode,
    /// `grace=`: a login let in without a code.
    Grace,
    /// A new profile was created.
    Enrolled,
    /// An existing profile was replaced.
    Replaced,
    /// A profile was imported from another tool.
    Imported,
    WrongCode,
    /// A correct code of a step already used.
    Replay,
    MalformedCode,
    /// The account is locked, or the attempt's source blocked.
    Locked,
    Denied,
    NotEnrolled,
    Disabled,
    /// Enroll or import over an existing profile without `--replace`.
    Exists,
    /// A login for a name NSS does not know.
    UnknownAccount,
    /// A result this build does not know (written by a newer agent).
    #[serde(other)]
    Other,
}

/// How a result counts in `status` and how the CLI colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A login let in.
    Login,
    /// A change made.
    Change,
    /// A failed login attempt (counts in `status` as a failure).
    Failure,
    /// A request refused without being a failed login.
    Refusal,
    Unknown,
}

impl AuditResult {
    /// Every result, for stores that keep the vocabulary in their schema and for tests.
    pub const ALL: [Self; 15] = [
        Self::Success,
        Self::EmergencyCode,
        Self::Grace,
        Self::Enrolled,
        Self::Replaced,
        Self::Imported,
        Self::WrongCode,
        Self::Replay,
        Self::MalformedCode,
        Self::Locked,
        Self::Denied,
        Self::NotEnrolled,
        Self::Disabled,
        Self::Exists,
        Self::UnknownAccount,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::EmergencyCode => "emergency_code",
            Self::Grace => "grace",
            Self::Enrolled => "enrolled",
            Self::Replaced => "replaced",
            Self::Imported => "imported",
            Self::WrongCode => "wrong_code",
            Self::Replay => "replay",
            Self::MalformedCode => "malformed_code",
            Self::Locked => "locked",
            Self::Denied => "denied",
            Self::NotEnrolled => "not_enrolled",
            Self::Disabled => "disabled",
            Self::Exists => "exists",
            Self::UnknownAccount => "unknown_account",
            Self::Other => "other",
        }
    }

    /// The result named `text` (`Other` for a name this build does not know).
    pub fn parse(text: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|result| result.as_str() == text)
            .unwrap_or(Self::Other)
    }

    pub fn outcome(self) -> Outcome {
        match self {
            Self::Success | Self::EmergencyCode | Self::Grace => Outcome::Login,
            Self::Enrolled | Self::Replaced | Self::Imported => Outcome::Change,
            Self::WrongCode | Self::Replay | Self::MalformedCode | Self::Locked => Outcome::Failure,
            Self::Denied
            | Self::NotEnrolled
            | Self::Disabled
            | Self::Exists
            | Self::UnknownAccount => Outcome::Refusal,
            Self::Other => Outcome::Unknown,
        }
    }
}

impl fmt::Display for AuditResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for result in AuditResult::ALL {
            assert_eq!(AuditResult::parse(result.as_str()), result);
            let json = serde_json::to_string(&result).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", result.as_str()));
        }
        assert_eq!(AuditResult::parse("from_the_future"), AuditResult::Other);
        let unknown: Option<AuditResult> = serde_json::from_str("\"from_the_future\"").ok();
        assert_eq!(unknown, Some(AuditResult::Other));
    }
}
