//! The pam-totp wire protocol and its blocking client.
//!
//! One crate, shared by the PAM module, the CLI and the agent, so the frame format, the message
//! types, the validation rules and the error codes are written exactly once.

pub mod audit;
pub mod client;
pub mod error;
pub mod frame;
pub mod message;
pub mod profile;
pub mod secret;
pub mod text;
pub mod validate;

pub use audit::AuditResult;
pub use client::{Client, ClientError, DeadlineIo};
pub use error::{ApiError, ErrorCode};
pub use message::{
    AuditEntry, AuthMethod, AuthReply, CodesReply, EnrollReply, EnrollRequest, ImportOutcome,
    ImportProfile, LogPage, LoginContext, MetricsReply, ProbeReply, ProfileCounts, RecentAttempts,
    Reply, Request, RequestEnvelope, Response, StatusReply, MAX_LIST_PAGE, MAX_LOG_PAGE,
    PROTOCOL_VERSION,
};
pub use profile::{profile_fields, Algorithm, BlockedSource, ProfileKind, ProfileView};
pub use secret::SecretString;

/// Default path of the agent socket.
pub const DEFAULT_SOCKET: &str = "/run/pam-totp/agent.sock";
