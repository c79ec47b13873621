//! Requests and replies. Each frame carries one JSON [`RequestEnvelope`] or [`Response`].

use crate::audit::AuditResult;
use crate::error::ApiError;
use crate::profile::{Algorithm, ProfileKind, ProfileView};
use crate::secret::SecretString;
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; the agent refuses other versions.
pub const PROTOCOL_VERSION: u32 = 1;

/// Most profiles in one `list` reply (about 600 KiB of JSON); clients page for more.
pub const MAX_LIST_PAGE: u32 = 1000;
/// Most audit entries in one `log` reply: entries are at most ~2 KiB of JSON (bounded
/// context items), so a page stays about 1 MiB; clients page for more.
pub const MAX_LOG_PAGE: u32 = 500;

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
    /// TOTP unless given (left out of TOTP requests, so their shape is what it always was).
    #[serde(rename = "type", default, skip_serializing_if = "ProfileKind::is_totp")]
    pub kind: ProfileKind,
    /// HOTP only: the counter of the token's next code (0 when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<u64>,
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
        /// The uid the logging-in process resolved `account` to (getpwnam, the NSS view
        /// pam_unix used). Trusted only from root callers; the agent looks it up otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        context: LoginContext,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grace: Option<u32>,
    },
    /// A login attempt from the PAM module.
    Authenticate {
        account: String,
        /// As for `Probe`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
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
    /// One page of profiles, ordered by account, starting after `after`.
    List {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// At most [`MAX_LIST_PAGE`]; the default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
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
    /// Active profiles with known secrets, moved over from another tool (google-authenticator,
    /// pam_oath). Each is decided on its own: one bad profile does not stop the rest.
    Import {
        profiles: Vec<ImportProfile>,
        /// Replace existing profiles instead of skipping them (admins only).
        replace: bool,
    },
    /// One page of the audit trail, newest first.
    Log {
        account: Option<String>,
        /// Unix time: only attempts at or after it.
        since: Option<i64>,
        /// At most [`MAX_LOG_PAGE`].
        limit: u32,
        /// The `next` cursor of the previous page: only older entries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<i64>,
    },
    Status {},
    /// The agent's counters in the Prometheus (OpenMetrics) text format; administrators only.
    Metrics {},
}

/// One profile to import: the secret as the other tool kept it, and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportProfile {
    pub account: String,
    /// TOTP unless given.
    #[serde(rename = "type", default, skip_serializing_if = "ProfileKind::is_totp")]
    pub kind: ProfileKind,
    /// HOTP only: the counter of the token's next code (0 when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<u64>,
    /// Base32, as authenticator apps and google-authenticator files hold it.
    pub secret: SecretString,
    pub algorithm: Algorithm,
    pub digits: u8,
    /// Seconds per code (TOTP; ignored for HOTP).
    pub period: u32,
    /// TOTP only: steps accepted either side of now for this profile (`None`: the agent's
    /// default).
    pub window: Option<u32>,
    /// Single-use codes carried over (plaintext here; the agent stores only salted hashes).
    pub emergency_codes: Vec<SecretString>,
    pub comment: Option<String>,
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
            Self::List { .. } => "list",
            Self::Disable { .. } => "disable",
            Self::Enable { .. } => "enable",
            Self::Remove { .. } => "remove",
            Self::Unlock { .. } => "unlock",
            Self::RegenerateCodes { .. } => "codes",
            Self::SetComment { .. } => "set",
            Self::Import { .. } => "import",
            Self::Log { .. } => "log",
            Self::Status {} => "status",
            Self::Metrics {} => "metrics",
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
            Self::Log { account, .. } => account.as_deref(),
            Self::List { .. } | Self::Import { .. } | Self::Status {} | Self::Metrics {} => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A code of the profile's token: TOTP, or HOTP (one name for both, so PAM modules
    /// built before HOTP understand the reply).
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

/// What became of one imported profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOutcome {
    pub account: String,
    /// `None` when imported; else why not.
    pub error: Option<ApiError>,
}

/// One attempt or change in the audit trail. Never holds a code or a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339 UTC.
    pub time: String,
    /// The agent (host) that recorded it; `None` for entries from before hosts were named.
    #[serde(default)]
    pub host: Option<String>,
    pub account: String,
    pub op: String,
    pub result: AuditResult,
    pub service: Option<String>,
    pub rhost: Option<String>,
    pub tty: Option<String>,
    pub caller_uid: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileCounts {
    pub pending: u64,
    pub active: u64,
    pub disabled: u64,
    pub locked: u64,
    /// Profiles whose last accepted code is from a time step beyond now and the window: the
    /// clock was set back after a code was used. Their codes are refused as replays until
    /// real time catches up or `unlock` clears it.
    #[serde(default)]
    pub clock_ahead: u64,
}

/// One page of the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; `None` when this page is the last.
    pub next: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentAttempts {
    /// Logins let in (a code, an emergency code, or grace).
    pub logins: u64,
    /// Wrong, replayed or malformed codes, and attempts while locked.
    pub failures: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    pub version: String,
    pub uptime_seconds: u64,
    pub socket: String,
    /// Where the profiles are: a SQLite file, or the fleet store's URL (never its password).
    pub database: String,
    /// "sqlite" (one host) or "postgresql" (a fleet store).
    #[serde(default)]
    pub store: String,
    /// Only for administrators.
    pub profiles: Option<ProfileCounts>,
    /// The last hour; only for administrators.
    pub last_hour: Option<RecentAttempts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum Reply {
    Probe(ProbeReply),
    Authenticated(AuthReply),
    Enrolled(EnrollReply),
    Profile(ProfileView),
    Profiles(Vec<ProfileView>),
    Removed {
        account: String,
    },
    Codes(CodesReply),
    Imported(Vec<ImportOutcome>),
    Log(LogPage),
    Status(StatusReply),
    /// The text exposition of the agent's metrics.
    Metrics(MetricsReply),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsReply {
    /// OpenMetrics text, ending in `# EOF`.
    pub text: String,
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
            Self::Imported(_) => "imported",
            Self::Log(_) => "log",
            Self::Status(_) => "status",
            Self::Metrics(_) => "metrics",
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
    fn totp_enrollments_keep_their_wire_shape_and_hotp_adds_type_and_counter() {
        let mut enroll = EnrollRequest {
            account: "alice".into(),
            kind: ProfileKind::Totp,
            counter: None,
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
            issuer: None,
            comment: None,
            replace: false,
            code: None,
        };
        let json = serde_json::to_value(&enroll).unwrap_or_default();
        assert!(
            json.get("type").is_none() && json.get("counter").is_none(),
            "{json}"
        );
        enroll.kind = ProfileKind::Hotp;
        enroll.counter = Some(5);
        let json = serde_json::to_value(&enroll).unwrap_or_default();
        assert_eq!(
            (&json["type"], &json["counter"]),
            (&"hotp".into(), &5.into())
        );
        let back: Option<EnrollRequest> = serde_json::from_value(json).ok();
        assert_eq!(back, Some(enroll));
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

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use serde_json::{Map, Number, Value};

        /// Every name the protocol uses, so generated JSON often looks almost right.
        const NAMES: &[&str] = &[
            "v",
            "request",
            "op",
            "account",
            "code",
            "context",
            "grace",
            "service",
            "rhost",
            "tty",
            "ruser",
            "algorithm",
            "digits",
            "period",
            "type",
            "counter",
            "totp",
            "hotp",
            "issuer",
            "comment",
            "replace",
            "probe",
            "authenticate",
            "enroll",
            "verify",
            "show",
            "list",
            "disable",
            "enable",
            "remove",
            "unlock",
            "regenerate_codes",
            "set_comment",
            "SHA1",
            "SHA256",
            "SHA512",
        ];

        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                3 => proptest::sample::select(NAMES).prop_map(str::to_owned),
                1 => any::<String>(),
            ]
        }

        fn number() -> impl Strategy<Value = Value> {
            prop_oneof![
                any::<u64>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                (0u64..4).prop_map(Value::from),
                any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ]
        }

        /// Any JSON value, nested a few levels, with protocol names as keys and strings.
        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                number(),
                name().prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    proptest::collection::vec((name(), inner), 0..6)
                        .prop_map(|fields| Value::Object(fields.into_iter().collect())),
                ]
            })
        }

        /// `{"v": _, "request": {"op": _, ...}}` with arbitrary contents: gets past the outer
        /// layers into each operation's fields.
        fn envelope_shaped() -> impl Strategy<Value = Value> {
            (
                prop_oneof![Just(Value::from(PROTOCOL_VERSION)), json()],
                name(),
                proptest::collection::vec((name(), json()), 0..6),
            )
                .prop_map(|(v, op, fields)| {
                    let mut request: Map<String, Value> = fields.into_iter().collect();
                    request.insert("op".into(), Value::String(op));
                    let mut envelope = Map::new();
                    envelope.insert("v".into(), v);
                    envelope.insert("request".into(), Value::Object(request));
                    Value::Object(envelope)
                })
        }

        fn secret() -> impl Strategy<Value = SecretString> {
            any::<String>().prop_map(SecretString::new)
        }

        fn context() -> impl Strategy<Value = LoginContext> {
            (
                any::<Option<String>>(),
                any::<Option<String>>(),
                any::<Option<String>>(),
                any::<Option<String>>(),
            )
                .prop_map(|(service, rhost, tty, ruser)| LoginContext {
                    service,
                    rhost,
                    tty,
                    ruser,
                })
        }

        fn enroll() -> impl Strategy<Value = EnrollRequest> {
            (
                (
                    any::<String>(),
                    prop_oneof![Just(ProfileKind::Totp), Just(ProfileKind::Hotp)],
                    any::<Option<u64>>(),
                ),
                prop_oneof![
                    Just(Algorithm::Sha1),
                    Just(Algorithm::Sha256),
                    Just(Algorithm::Sha512)
                ],
                any::<u8>(),
                any::<u32>(),
                any::<Option<String>>(),
                any::<Option<String>>(),
                any::<bool>(),
                proptest::option::of(secret()),
            )
                .prop_map(
                    |(
                        (account, kind, counter),
                        algorithm,
                        digits,
                        period,
                        issuer,
                        comment,
                        replace,
                        code,
                    )| {
                        EnrollRequest {
                            account,
                            kind,
                            counter,
                            algorithm,
                            digits,
                            period,
                            issuer,
                            comment,
                            replace,
                            code,
                        }
                    },
                )
        }

        /// Every request the protocol can express, with arbitrary strings and numbers.
        fn request() -> impl Strategy<Value = Request> {
            let account = any::<String>;
            prop_oneof![
                (
                    account(),
                    any::<Option<u32>>(),
                    context(),
                    any::<Option<u32>>()
                )
                    .prop_map(|(account, uid, context, grace)| Request::Probe {
                        account,
                        uid,
                        context,
                        grace
                    }),
                (account(), any::<Option<u32>>(), secret(), context()).prop_map(
                    |(account, uid, code, context)| Request::Authenticate {
                        account,
                        uid,
                        code,
                        context,
                    }
                ),
                enroll().prop_map(Request::Enroll),
                (account(), secret()).prop_map(|(account, code)| Request::Verify { account, code }),
                account().prop_map(|account| Request::Show { account }),
                Just(()).prop_map(|()| Request::List {
                    after: None,
                    limit: None,
                }),
                account().prop_map(|account| Request::Disable { account }),
                account().prop_map(|account| Request::Enable { account }),
                (account(), proptest::option::of(secret()))
                    .prop_map(|(account, code)| Request::Remove { account, code }),
                account().prop_map(|account| Request::Unlock { account }),
                (account(), proptest::option::of(secret()))
                    .prop_map(|(account, code)| Request::RegenerateCodes { account, code }),
                (account(), any::<String>())
                    .prop_map(|(account, comment)| Request::SetComment { account, comment }),
            ]
        }

        /// One change to a valid envelope: drop, replace or add a field of the request (or of
        /// its login context), or replace the version.
        #[derive(Debug, Clone)]
        enum Edit {
            Remove(proptest::sample::Index),
            Replace(proptest::sample::Index, Value),
            Insert(String, Value),
            Context(String, Value),
            Version(Value),
        }

        fn edit() -> impl Strategy<Value = Edit> {
            prop_oneof![
                any::<proptest::sample::Index>().prop_map(Edit::Remove),
                (any::<proptest::sample::Index>(), json())
                    .prop_map(|(at, value)| Edit::Replace(at, value)),
                (name(), json()).prop_map(|(key, value)| Edit::Insert(key, value)),
                (name(), json()).prop_map(|(key, value)| Edit::Context(key, value)),
                json().prop_map(Edit::Version),
            ]
        }

        impl Edit {
            fn apply(self, envelope: &mut Value) {
                if let Self::Version(v) = self {
                    envelope["v"] = v;
                    return;
                }
                let Some(request) = envelope.get_mut("request").and_then(Value::as_object_mut)
                else {
                    return;
                };
                let key_at = |request: &Map<String, Value>, at: proptest::sample::Index| {
                    let keys: Vec<&String> = request.keys().collect();
                    (!keys.is_empty()).then(|| keys[at.index(keys.len())].clone())
                };
                match self {
                    Self::Remove(at) => {
                        if let Some(key) = key_at(request, at) {
                            request.remove(&key);
                        }
                    }
                    Self::Replace(at, value) => {
                        if let Some(key) = key_at(request, at) {
                            request.insert(key, value);
                        }
                    }
                    Self::Insert(key, value) => {
                        request.insert(key, value);
                    }
                    Self::Context(key, value) => {
                        if let Some(context) =
                            request.get_mut("context").and_then(Value::as_object_mut)
                        {
                            context.insert(key, value);
                        }
                    }
                    Self::Version(_) => {}
                }
            }
        }

        fn to_json(value: &impl Serialize) -> Result<Vec<u8>, TestCaseError> {
            serde_json::to_vec(value).map_err(|e| TestCaseError::fail(e.to_string()))
        }

        /// Parses as the agent does; whatever parses must serialize and parse back the same.
        fn parse_and_round_trip(bytes: &[u8]) -> Result<(), TestCaseError> {
            let Ok(envelope) = serde_json::from_slice::<RequestEnvelope>(bytes) else {
                return Ok(());
            };
            let json = to_json(&envelope)?;
            let again = serde_json::from_slice::<RequestEnvelope>(&json)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again.v, envelope.v);
            prop_assert_eq!(again.request.op(), envelope.request.op());
            prop_assert_eq!(again.request.account(), envelope.request.account());
            prop_assert_eq!(to_json(&again)?, json);
            Ok(())
        }

        proptest! {
            #[test]
            fn arbitrary_json_never_panics_the_request_parser(value in json()) {
                let bytes = to_json(&value)?;
                parse_and_round_trip(&bytes)?;
                // The client side parses replies the same way.
                let _ = serde_json::from_slice::<Response>(&bytes);
            }

            #[test]
            fn envelope_shaped_json_never_panics_the_request_parser(value in envelope_shaped()) {
                parse_and_round_trip(&to_json(&value)?)?;
            }

            #[test]
            fn altered_valid_requests_never_panic_the_request_parser(
                request in request(),
                edits in proptest::collection::vec(edit(), 0..4),
            ) {
                let mut value = serde_json::to_value(RequestEnvelope::new(request))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                for edit in edits {
                    edit.apply(&mut value);
                }
                parse_and_round_trip(&to_json(&value)?)?;
            }

            #[test]
            fn arbitrary_bytes_never_panic_the_request_parser(
                bytes in proptest::collection::vec(any::<u8>(), 0..256),
            ) {
                parse_and_round_trip(&bytes)?;
            }

            #[test]
            fn every_request_round_trips(request in request()) {
                let op = request.op();
                let account = request.account().map(str::to_owned);
                let json = to_json(&RequestEnvelope::new(request))?;
                let back = serde_json::from_slice::<RequestEnvelope>(&json)
                    .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&json))))?;
                prop_assert_eq!(back.v, PROTOCOL_VERSION);
                prop_assert_eq!(back.request.op(), op);
                prop_assert_eq!(back.request.account().map(str::to_owned), account);
                prop_assert_eq!(to_json(&back)?, json);
            }
        }
    }
}
