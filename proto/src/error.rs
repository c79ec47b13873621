//! Typed errors shared by the agent and every client; each maps to one CLI exit code.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Internal,
    InvalidArgument,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    RateLimited,
    Unavailable,
    CodeRejected,
}

impl ErrorCode {
    /// The `pam-totp` exit status for this error (CONTRACT.md).
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Internal => 1,
            Self::InvalidArgument => 2,
            Self::PermissionDenied => 3,
            Self::NotFound => 4,
            Self::AlreadyExists => 5,
            Self::FailedPrecondition => 6,
            Self::RateLimited => 7,
            Self::Unavailable => 8,
            Self::CodeRejected => 9,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::InvalidArgument => "invalid_argument",
            Self::PermissionDenied => "permission_denied",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::FailedPrecondition => "failed_precondition",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::CodeRejected => "code_rejected",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the agent reports it: a code, a one-line message, and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub target: Option<String>,
    /// Seconds until a lockout ends (only with `rate_limited`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            target: None,
            retry_after: None,
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self {
            target: Some(field.to_owned()),
            ..Self::new(ErrorCode::InvalidArgument, message)
        }
    }

    pub fn with_target(mut self, field: &str) -> Self {
        self.target = Some(field.to_owned());
        self
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn code_rejected() -> Self {
        Self::new(
            ErrorCode::CodeRejected,
            "code rejected: wrong, expired or already used",
        )
        .with_target("code")
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                ErrorCode::RateLimited,
                format!("too many failed attempts: locked, retry in {retry_after} s"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        let expected = [
            (ErrorCode::Internal, 1, "internal"),
            (ErrorCode::InvalidArgument, 2, "invalid_argument"),
            (ErrorCode::PermissionDenied, 3, "permission_denied"),
            (ErrorCode::NotFound, 4, "not_found"),
            (ErrorCode::AlreadyExists, 5, "already_exists"),
            (ErrorCode::FailedPrecondition, 6, "failed_precondition"),
            (ErrorCode::RateLimited, 7, "rate_limited"),
            (ErrorCode::Unavailable, 8, "unavailable"),
            (ErrorCode::CodeRejected, 9, "code_rejected"),
        ];
        for (code, exit, name) in expected {
            assert_eq!(code.exit_code(), exit);
            assert_eq!(code.as_str(), name);
            assert_eq!(
                serde_json::to_string(&code).ok(),
                Some(format!("\"{name}\""))
            );
        }
    }
}
