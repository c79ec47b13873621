//! Requests and replies. Each frame carries one JSON [`RequestEnvelope`] or [`Response`].

use crate::error::ApiError;
use crate::profile::{Algorithm, ProfileView};
use crate::secret::SecretString;
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; the agent refuses other versions.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestEnvelope {
    pub v: u32,
    pub request: Request,
}

impl RequestEnvelope {
    pub fn new(request: Request) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            request,
        }
    }
}

/// Where a login comes from, as PAM items report it. Only recorded and used for grace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginContext {
    pub service: Option<String>,
    pub rhost: Option<String>,
    pub tty: Option<String>,
    pub ruser: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub account: String,
    pub algorithm: Algorithm,
    pub digits: u8,
    pub period: u32,
    pub issuer: Option<String>,
    pub comment: Option<String>,
    pub replace: bool,
    /// Required when the account replaces its own active profile.
    pub code: Option<SecretString>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Does this account need a code at login, and how many digits? (PAM `nullok`,
    /// `forward_pass`.) With `grace`, also: did it pass a code on the same service, tty and
    /// remote host within that many seconds? (PAM `grace=`.)
    Probe {
        account: String,
        context: LoginContext,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grace: Option<u32>,
    },
    /// A login attempt from the PAM module.
    Authenticate {
        account: String,
        code: SecretString,
        context: LoginContext,
    },
    Enroll(EnrollRequest),
    /// `pam-totp verify`: checks and consumes a code; activates a pending profile.
    Verify {
        account: String,
        code: SecretString,
    },
    Show {
        account: String,
    },
    /// A struct variant, not a unit one, so unknown fields are refused here too.
    List {},
    Disable {
        account: String,
    },
    Enable {
        account: String,
    },
    Remove {
        account: String,
        code: Option<SecretString>,
    },
    Unlock {
        account: String,
    },
    RegenerateCodes {
        account: String,
        code: Option<SecretString>,
    },
    SetComment {
        account: String,
        comment: String,
    },
}

impl Request {
    /// Operation name, as used in the `can` field and the audit trail.
    pub fn op(&self) -> &'static str {
        match self {
            Self::Probe { .. } => "probe",
            Self::Authenticate { .. } => "authenticate",
            Self::Enroll(_) => "enroll",
            Self::Verify { .. } => "verify",
            Self::Show { .. } => "show",
            Self::List {} => "list",
            Self::Disable { .. } => "disable",
            Self::Enable { .. } => "enable",
            Self::Remove { .. } => "remove",
            Self::Unlock { .. } => "unlock",
            Self::RegenerateCodes { .. } => "codes",
            Self::SetComment { .. } => "set",
        }
    }

    /// The account the request acts on (`None` for `list`).
    pub fn account(&self) -> Option<&str> {
        match self {
            Self::Probe { account, .. }
            | Self::Authenticate { account, .. }
            | Self::Verify { account, .. }
            | Self::Show { account }
            | Self::Disable { account }
            | Self::Enable { account }
            | Self::Remove { account, .. }
            | Self::Unlock { account }
            | Self::RegenerateCodes { account, .. }
            | Self::SetComment { account, .. } => Some(account),
            Self::Enroll(enroll) => Some(&enroll.account),
            Self::List {} => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Totp,
    EmergencyCode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReply {
    /// False when the account has no active, enabled profile.
    pub needs_code: bool,
    pub digits: u8,
    /// The login may pass without a code: the grace asked for applies (audited as `grace`).
    #[serde(default)]
    pub grace: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthReply {
    pub method: AuthMethod,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollReply {
    pub secret: SecretString,
    pub otpauth_uri: SecretString,
    pub emergency_codes: Vec<SecretString>,
    pub profile: ProfileView,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodesReply {
    pub emergency_codes: Vec<SecretString>,
    pub profile: ProfileView,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum Reply {
    Probe(ProbeReply),
    Authenticated(AuthReply),
    Enrolled(EnrollReply),
    Profile(ProfileView),
    Profiles(Vec<ProfileView>),
    Removed { account: String },
    Codes(CodesReply),
}

impl Reply {
    /// The reply's kind as it appears on the wire, for messages about unexpected replies.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Probe(_) => "probe",
            Self::Authenticated(_) => "authenticated",
            Self::Enrolled(_) => "enrolled",
            Self::Profile(_) => "profile",
            Self::Profiles(_) => "profiles",
            Self::Removed { .. } => "removed",
            Self::Codes(_) => "codes",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
// One response per connection: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Response {
    Ok(Reply),
    Err(ApiError),
}

impl From<Result<Reply, ApiError>> for Response {
    fn from(result: Result<Reply, ApiError>) -> Self {
        match result {
            Ok(reply) => Self::Ok(reply),
            Err(error) => Self::Err(error),
        }
    }
}

impl From<Response> for Result<Reply, ApiError> {
    fn from(response: Response) -> Self {
        match response {
            Response::Ok(reply) => Ok(reply),
            Response::Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_shape_is_stable() {
        let envelope = RequestEnvelope::new(Request::Verify {
            account: "alice".into(),
            code: "123456".into(),
        });
        let json = serde_json::to_string(&envelope).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"v":1,"request":{"op":"verify","account":"alice","code":"123456"}}"#
        );
        let back: Result<RequestEnvelope, _> = serde_json::from_str(&json);
        assert!(matches!(
            back.map(|e| e.request),
            Ok(Request::Verify { ref account, .. }) if account == "alice"
        ));
    }

    #[test]
    fn unknown_fields_and_ops_are_refused() {
        for bad in [
            r#"{"v":1,"request":{"op":"list","extra":1}}"#,
            r#"{"v":1,"request":{"op":"format_disk"}}"#,
            r#"{"v":1}"#,
            r#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"#,
        ] {
            assert!(
                serde_json::from_str::<RequestEnvelope>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn reply_kind_matches_the_wire_tag() {
        let reply = Reply::Removed {
            account: "alice".into(),
        };
        let json = serde_json::to_value(&reply).unwrap_or_default();
        assert_eq!(json["kind"], reply.kind());
    }

    #[test]
    fn response_round_trips() {
        let response = Response::Err(ApiError::rate_limited(30));
        let json = serde_json::to_string(&response).unwrap_or_default();
        let back: Option<Response> = serde_json::from_str(&json).ok();
        assert_eq!(back, Some(response));
    }
}
