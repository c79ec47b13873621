//! The login flow against a scripted libpam and a scripted agent, plus one run over a real
//! `Client` and socket to prove the wiring.

use super::*;
use pam_totp_proto::{ApiError, AuthReply, ProbeReply, Response};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

const CODE: &str = "123456";

/// A libpam double: answers from a script, records everything the module does.
struct ScriptedPam {
    user: Result<String, PamCode>,
    items: HashMap<ItemKind, String>,
    authtok: Option<Vec<u8>>,
    answers: VecDeque<Result<Option<Vec<u8>>, PamCode>>,
    prompts: Vec<String>,
    messages: Vec<String>,
    logs: RefCell<Vec<(LogLevel, String)>>,
    set_authtok: Vec<Vec<u8>>,
    unknown: std::collections::HashSet<String>,
}

impl ScriptedPam {
    fn new(user: &str) -> Self {
        let items = HashMap::from([
            (ItemKind::Service, "sshd".to_owned()),
            (ItemKind::RHost, "192.0.2.7".to_owned()),
            (ItemKind::Tty, "ssh".to_owned()),
        ]);
        Self {
            user: Ok(user.to_owned()),
            items,
            authtok: None,
            answers: VecDeque::new(),
            prompts: Vec::new(),
            messages: Vec::new(),
            logs: RefCell::new(Vec::new()),
            set_authtok: Vec::new(),
            unknown: std::collections::HashSet::new(),
        }
    }

    fn answering(mut self, answer: &str) -> Self {
        self.answers.push_back(Ok(Some(answer.as_bytes().to_vec())));
        self
    }

    fn with_authtok(mut self, token: &str) -> Self {
        self.authtok = Some(token.as_bytes().to_vec());
        self
    }

    fn logs(&self) -> Vec<(LogLevel, String)> {
        self.logs.borrow().clone()
    }

    fn logged_at(&self, level: LogLevel) -> Vec<String> {
        self.logs()
            .into_iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, text)| text)
            .collect()
    }

    /// Nothing secret may appear in any log line or message.
    fn assert_never_shown(&self, secrets: &[&str]) {
        for (_, line) in self.logs() {
            for secret in secrets {
                assert!(!line.contains(secret), "log line leaks {secret:?}: {line}");
            }
        }
        for message in &self.messages {
            for secret in secrets {
                assert!(!message.contains(secret), "message leaks {secret:?}");
            }
        }
    }
}

impl PamIo for ScriptedPam {
    fn user(&mut self) -> Result<String, PamCode> {
        self.user.clone()
    }

    /// Every name resolves to itself with uid 1000, except those made unknown.
    fn lookup_account(&self, name: &str) -> Option<(String, u32)> {
        (!self.unknown.contains(name)).then(|| (name.to_owned(), 1000))
    }

    fn item(&self, which: ItemKind) -> Option<String> {
        self.items.get(&which).cloned()
    }

    fn authtok(&self) -> Option<Zeroizing<Vec<u8>>> {
        self.authtok.clone().map(Zeroizing::new)
    }

    fn set_authtok(&mut self, value: &[u8]) -> Result<(), PamCode> {
        self.set_authtok.push(value.to_vec());
        self.authtok = Some(value.to_vec());
        Ok(())
    }

    fn prompt_hidden(&mut self, text: &str) -> Result<Option<Zeroizing<Vec<u8>>>, PamCode> {
        self.prompts.push(text.to_owned());
        match self.answers.pop_front() {
            Some(Ok(answer)) => Ok(answer.map(Zeroizing::new)),
            Some(Err(code)) => Err(code),
            None => Err(PamCode::ConvErr),
        }
    }

    fn show_error(&mut self, text: &str) {
        self.messages.push(text.to_owned());
    }

    fn log(&self, level: LogLevel, text: &str) {
        self.logs.borrow_mut().push((level, text.to_owned()));
    }
}

/// An agent double: replies from a queue, records every request.
#[derive(Default)]
struct ScriptedAgent {
    replies: RefCell<VecDeque<Result<Reply, ClientError>>>,
    requests: RefCell<Vec<Request>>,
}

impl ScriptedAgent {
    fn replying(replies: Vec<Result<Reply, ClientError>>) -> Self {
        Self {
            replies: RefCell::new(replies.into()),
            requests: RefCell::default(),
        }
    }

    fn ops(&self) -> Vec<&'static str> {
        self.requests.borrow().iter().map(Request::op).collect()
    }

    /// The code of the (only) authenticate request.
    fn sent_code(&self) -> Option<String> {
        self.requests
            .borrow()
            .iter()
            .find_map(|request| match request {
                Request::Authenticate { code, .. } => Some(code.expose().to_owned()),
                _ => None,
            })
    }
}

impl Agent for ScriptedAgent {
    fn call(&self, request: Request) -> Result<Reply, ClientError> {
        self.requests.borrow_mut().push(request);
        self.replies
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| Err(ClientError::Protocol("no scripted reply".into())))
    }
}

fn accepted() -> Result<Reply, ClientError> {
    Ok(Reply::Authenticated(AuthReply {
        method: AuthMethod::Totp,
    }))
}

fn probe(needs_code: bool, digits: u8) -> Result<Reply, ClientError> {
    Ok(Reply::Probe(ProbeReply {
        needs_code,
        digits,
        grace: false,
    }))
}

fn api(code: ErrorCode) -> Result<Reply, ClientError> {
    Err(ClientError::Api(ApiError::new(code, "scripted")))
}

fn options(args: &[&str]) -> Options {
    let parsed = Options::parse(args.iter().copied());
    // A test with bad options is itself broken.
    assert_eq!(parsed.as_ref().err(), None);
    parsed.unwrap_or_default()
}

fn run(pam: &mut ScriptedPam, agent: &ScriptedAgent, args: &[&str]) -> PamCode {
    authenticate(pam, agent, &options(args), Flags::default())
}

#[test]
fn correct_code_succeeds() {
    let mut pam = ScriptedPam::new("alice").answering(CODE);
    let agent = ScriptedAgent::replying(vec![accepted()]);
    assert_eq!(run(&mut pam, &agent, &[]), PamCode::Success);
    assert_eq!(pam.prompts, vec!["Verification code: "]);
    assert_eq!(agent.ops(), vec!["authenticate"]);
    assert_eq!(agent.sent_code().as_deref(), Some(CODE));
    assert!(pam.set_authtok.is_empty());
    pam.assert_never_shown(&[CODE]);
}

#[test]
fn login_context_comes_from_pam_items() {
    let mut pam = ScriptedPam::new("alice").answering(CODE);
    pam.items.insert(ItemKind::RUser, "bob".into());
    let agent = ScriptedAgent::replying(vec![accepted()]);
    assert_eq!(run(&mut pam, &agent, &[]), PamCode::Success);
    let requests = agent.requests.borrow();
    let sent = requests.iter().find_map(|request| match request {
        Request::Authenticate {
            account, context, ..
        } => Some((account.as_str(), context)),
        _ => None,
    });
    let expected = LoginContext {
        service: Some("sshd".into()),
        rhost: Some("192.0.2.7".into()),
        tty: Some("ssh".into()),
        ruser: Some("bob".into()),
    };
    assert_eq!(sent, Some(("alice", &expected)));
}

#[test]
fn custom_prompt_and_trailing_newline() {
    let mut pam = ScriptedPam::new("alice").answering("654321\r\n");
    let agent = ScriptedAgent::replying(vec![accepted()]);
    assert_eq!(run(&mut pam, &agent, &["prompt=OTP: "]), PamCode::Success);
    assert_eq!(pam.prompts, vec!["OTP: "]);
    assert_eq!(agent.sent_code().as_deref(), Some("654321"));
}

#[test]
fn wrong_code_is_auth_err_and_logged_once() {
    let mut pam = ScriptedPam::new("alice").answering("000000");
    let agent = ScriptedAgent::replying(vec![api(ErrorCode::CodeRejected)]);
    assert_eq!(run(&mut pam, &agent, &[]), PamCode::AuthErr);
    let notices = pam.logged_at(LogLevel::Notice);
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains("alice") && notices[0].contains("code_rejected"));
    assert_eq!(
        pam.logs().len(),
        1,
        "one line per failure: {:?}",
        pam.logs()
    );
    pam.assert_never_shown(&["000000"]);
}

#[test]
fn malformed_code_is_still_sent() {
    let mut pam = ScriptedPam::new("alice").answering("12ab");
    let agent = ScriptedAgent::replying(vec![api(ErrorCode::InvalidArgument)]);
    assert_eq!(run(&mut pam, &agent, &[]), PamCode::AuthErr);
    assert_eq!(agent.sent_code().as_deref(), Some("12ab"));
    pam.assert_never_shown(&["12ab"]);
}

#[test]
fn not_enrolled_without_nullok_is_prompted_then_refused() {
    let mut pam = ScriptedPam::new("carol").answering(CODE);
    let agent = ScriptedAgent::replying(vec![api(ErrorCode::NotFound)]);
    assert_eq!(run(&mut pam, &agent, &[]), PamCode::AuthErr);
    // No probe: the prompt must not depend on enrollment.
    assert_eq!(agent.ops(), vec!["authenticate"]);
    assert_eq!(pam.prompts.len(), 1);
}

#[test]
fn nullok_skips_unenrolled_accounts_without_prompting() {
    let mut pam = ScriptedPam::new("carol");
    let agent = ScriptedAgent::replying(vec![probe(false, 6)]);
    assert_eq!(run(&mut pam, &agent, &["nullok"]), PamCode::Ignore);
    assert!(pam.prompts.is_empty());
    assert_eq!(agent.ops(), vec!["probe"]);
    let requests = agent.requests.borrow();
    assert!(matches!(
        requests.first(),
        Some(Request::Probe { account, context, .. })
            if account == "carol" && context.service.as_deref() == Some("sshd")
    ));
}

#[test]
fn nullok_treats_unknown_or_disabled_as_not_enrolled() {
    for code in [ErrorCode::NotFound, ErrorCode::FailedPrecondition] {
        let mut pam = ScriptedPam::new("carol");
        let agent = ScriptedAgent::replying(vec![api(code)]);
        assert_eq!(
            run(&mut pam, &agent, &["nullok"]),
            PamCode::Ignore,
            "{code}"
        );
        assert!(pam.prompts.is_empty());
    }
}

#[test]
fn nullok_with_enrolled_account_prompts_and_verifies() {
    let mut pam = ScriptedPam::new("alice").answering(CODE);
    let agent = ScriptedAgent::replying(vec![probe(true, 6), accepted()]);
    assert_eq!(run(&mut pam, &agent, &["nullok"]), PamCode::Success);
    assert_eq!(agent.ops(), vec!["probe", "authenticate"]);
}

#[test]
fn nullok_with_unreachable_agent_is_authinfo_unavail() {
    let mut pam = ScriptedPam::new("alice");
    let agent = ScriptedAgent::replying(vec![Err(ClientError::TimedOut(Duration::from_secs(3)))]);
    assert_eq!(run(&mut pam, &agent, &["nullok"]), PamCode::AuthInfoUnavail);
    assert!(pam.prompts.is_empty());
}

#[test]
fn rate_limited_is_maxtries_with_a_message() {
    let mut pam = ScriptedPam::new("alice").answering(CODE);
    let agent = ScriptedAgent::replying(vec![Err(ClientError::Api(ApiError::rate_limited(120)))]);
    assert_eq!(run(&mut pam, &agent, &[]), PamCode::MaxTries);
    assert_eq!(
        pam.messages,
        vec!["Too many failed attempts; try again in 120 seconds."]
    );
    let notices = pam.logged_at(LogLevel::Notice);
    assert_eq!(notices.len(), 1);
    assert!(notices[0].contains("retry after 120 s"), "{notices:?}");
}

#[test]
fn rate_limited_is_quiet_with_pam_silent() {
    let mut pam = ScriptedPam::new("alice").answering(CODE);
    let agent = ScriptedAgent::replying(vec![Err(ClientError::Api(ApiError::rate_limited(30)))]);
    let result = authenticate(&mut pam, &agent, &options(&[]), Flags { silent: true });
    assert_eq!(result, PamCode::MaxTries);
    assert!(pam.messages.is_empty());
}

#[test]
fn agent_failures_are_authinfo_unavail() {
    let failures = [
        Err(ClientError::Unavailable {
            socket: PathBuf::from("/run/pam-totp/agent.sock"),
            reason: "No such file or directory".into(),
        }),
        Err(ClientError::TimedOut(Duration::from_secs(3))),
        Err(ClientError::Protocol("undecodable reply".into())),
        api(ErrorCode::Internal),
        api(ErrorCode::Unavailable),
        // A reply of the wrong kind is nonsense too.
        probe(true, 6),
    ];
    for failure in failures {
        let mut pam = ScriptedPam::new("alice").answering(CODE);
        let agent = ScriptedAgent::replying(vec![failure]);
        assert_eq!(run(&mut pam, &agent, &[]), PamCode::AuthInfoUnavail);
        let errors = pam.logged_at(LogLevel::Err);
        assert_eq!(errors.len(), 1, "{:?}", pam.logs());
        assert!(errors[0].contains("alice"));
        pam.assert_never_shown(&[CODE]);
    }
}

#[test]
fn every_refusal_maps_per_the_design_table() {
    for (code, expected) in [
        (ErrorCode::CodeRejected, PamCode::AuthErr),
        (ErrorCode::InvalidArgument, PamCode::AuthErr),
        (ErrorCode::NotFound, PamCode::AuthErr),
        (ErrorCode::FailedPrecondition, PamCode::AuthErr),
        (ErrorCode::PermissionDenied, PamCode::AuthErr),
        (ErrorCode::RateLimited, PamCode::MaxTries),
        (ErrorCode::Internal, PamCode::AuthInfoUnavail),
        (ErrorCode::Unavailable, PamCode::AuthInfoUnavail),
    ] {
        let mut pam = ScriptedPam::new("alice").answering(CODE);
        let agent = ScriptedAgent::replying(vec![api(code)]);
        assert_eq!(run(&mut pam, &agent, &[]), expected, "{code}");
    }
}

#[test]
fn rate_limited_without_retry_after_says_later() {
    let mut pam = ScriptedPam::new("alice").answering(CODE);
    let agent = ScriptedAgent::replying(vec![api(ErrorCode::RateLimited)]);
    assert_eq!(run(&mut pam, &agent, &[]), PamCode::MaxTries);
    assert_eq!(
        pam.messages,
        vec!["Too many failed attempts; try again later."]
    );
}

#[test]
fn conversation_failure_is_conv_err() {
    let mut pam = ScriptedPam::new("alice");
    pam.answers.push_back(Err(PamCode::ConvErr));
    let agent = ScriptedAgent::default();
    assert_eq!(run(&mut pam, &agent, &[]), PamCode::ConvErr);
    assert!(agent.ops().is_empty());

    let mut pam = ScriptedPam::new("alice");
    pam.answers.push_back(Ok(None));
    assert_eq!(run(&mut pam, &agent, &[]), PamCode::ConvErr);
    assert!(agent.ops().is_empty());
    assert_eq!(pam.logged_at(LogLevel::Notice).len(), 1);
}

#[test]
fn user_lookup_failure_is_returned() {
    let mut pam = ScriptedPam::new("alice");
    pam.user = Err(PamCode::UserUnknown);
    let agent = ScriptedAgent::default();
    assert_eq!(run(&mut pam, &agent, &[]), PamCode::UserUnknown);
    pam.user = Ok(String::new());
    assert_eq!(run(&mut pam, &agent, &[]), PamCode::UserUnknown);
    assert!(pam.prompts.is_empty() && agent.ops().is_empty());
    assert_eq!(pam.logged_at(LogLevel::Err).len(), 2);
}

#[test]
fn use_first_pass_takes_the_stacked_code() {
    let mut pam = ScriptedPam::new("alice").with_authtok(CODE);
    let agent = ScriptedAgent::replying(vec![accepted()]);
    assert_eq!(run(&mut pam, &agent, &["use_first_pass"]), PamCode::Success);
    assert!(pam.prompts.is_empty());
    assert_eq!(agent.sent_code().as_deref(), Some(CODE));
}

#[test]
fn use_first_pass_without_authtok_fails_without_prompting() {
    let mut pam = ScriptedPam::new("alice").answering(CODE);
    let agent = ScriptedAgent::default();
    assert_eq!(run(&mut pam, &agent, &["use_first_pass"]), PamCode::AuthErr);
    assert!(pam.prompts.is_empty());
    assert!(agent.ops().is_empty());
    assert_eq!(pam.logged_at(LogLevel::Notice).len(), 1);
}

#[test]
fn use_first_pass_never_sends_a_password() {
    let mut pam = ScriptedPam::new("alice").with_authtok("hunter2");
    let agent = ScriptedAgent::default();
    assert_eq!(run(&mut pam, &agent, &["use_first_pass"]), PamCode::AuthErr);
    assert!(agent.ops().is_empty() && pam.prompts.is_empty());
    pam.assert_never_shown(&["hunter2"]);
}

#[test]
fn try_first_pass_uses_a_stacked_code() {
    let mut pam = ScriptedPam::new("alice").with_authtok(CODE);
    let agent = ScriptedAgent::replying(vec![accepted()]);
    assert_eq!(run(&mut pam, &agent, &["try_first_pass"]), PamCode::Success);
    assert!(pam.prompts.is_empty());
}

#[test]
fn try_first_pass_falls_back_to_the_prompt() {
    // No stacked token at all.
    let mut pam = ScriptedPam::new("alice").answering(CODE);
    let agent = ScriptedAgent::replying(vec![accepted()]);
    assert_eq!(run(&mut pam, &agent, &["try_first_pass"]), PamCode::Success);
    assert_eq!(pam.prompts.len(), 1);

    // A stacked password is not a code: prompt, and keep the password away from the agent.
    let mut pam = ScriptedPam::new("alice")
        .with_authtok("hunter2")
        .answering(CODE);
    let agent = ScriptedAgent::replying(vec![accepted()]);
    assert_eq!(run(&mut pam, &agent, &["try_first_pass"]), PamCode::Success);
    assert_eq!(pam.prompts.len(), 1);
    assert_eq!(agent.sent_code().as_deref(), Some(CODE));
}

#[test]
fn forward_pass_splits_password_and_six_digits() {
    let mut pam = ScriptedPam::new("alice").answering("secret123456");
    let agent = ScriptedAgent::replying(vec![probe(true, 6), accepted()]);
    assert_eq!(run(&mut pam, &agent, &["forward_pass"]), PamCode::Success);
    assert_eq!(agent.ops(), vec!["probe", "authenticate"]);
    assert_eq!(agent.sent_code().as_deref(), Some("123456"));
    assert_eq!(pam.set_authtok, vec![b"secret".to_vec()]);
    assert_eq!(pam.prompts.len(), 1);
    pam.assert_never_shown(&["secret", "123456"]);
}

#[test]
fn forward_pass_splits_password_and_eight_digits() {
    let mut pam = ScriptedPam::new("alice").answering("secret12345678");
    let agent = ScriptedAgent::replying(vec![probe(true, 8), accepted()]);
    assert_eq!(run(&mut pam, &agent, &["forward_pass"]), PamCode::Success);
    assert_eq!(agent.sent_code().as_deref(), Some("12345678"));
    assert_eq!(pam.set_authtok, vec![b"secret".to_vec()]);
}

#[test]
fn forward_pass_keeps_the_password_even_when_the_code_fails() {
    // The next module must still see the password, e.g. with [authinfo_unavail=ignore].
    let mut pam = ScriptedPam::new("alice").answering("pässwörd999999\n");
    let agent = ScriptedAgent::replying(vec![
        probe(true, 6),
        Err(ClientError::TimedOut(Duration::from_secs(3))),
    ]);
    assert_eq!(
        run(&mut pam, &agent, &["forward_pass"]),
        PamCode::AuthInfoUnavail
    );
    assert_eq!(pam.set_authtok, vec!["pässwörd".as_bytes().to_vec()]);
    assert_eq!(agent.sent_code().as_deref(), Some("999999"));
    pam.assert_never_shown(&["pässwörd", "999999"]);
}

#[test]
fn forward_pass_with_only_a_code_leaves_authtok_unset() {
    let mut pam = ScriptedPam::new("alice").answering(CODE);
    let agent = ScriptedAgent::replying(vec![probe(true, 6), accepted()]);
    assert_eq!(run(&mut pam, &agent, &["forward_pass"]), PamCode::Success);
    assert!(pam.set_authtok.is_empty());
}

#[test]
fn forward_pass_for_an_unenrolled_account_still_prompts() {
    let mut pam = ScriptedPam::new("carol").answering("secret123456");
    let agent = ScriptedAgent::replying(vec![probe(false, 6), api(ErrorCode::NotFound)]);
    assert_eq!(run(&mut pam, &agent, &["forward_pass"]), PamCode::AuthErr);
    assert_eq!(pam.prompts.len(), 1);
    assert_eq!(pam.set_authtok, vec![b"secret".to_vec()]);
}

#[test]
fn forward_pass_with_unreachable_agent_does_not_prompt() {
    let mut pam = ScriptedPam::new("alice").answering("secret123456");
    let agent = ScriptedAgent::replying(vec![Err(ClientError::Protocol("bad".into()))]);
    assert_eq!(
        run(&mut pam, &agent, &["forward_pass"]),
        PamCode::AuthInfoUnavail
    );
    assert!(pam.prompts.is_empty());
}

#[test]
fn probe_with_impossible_digits_is_nonsense() {
    let mut pam = ScriptedPam::new("alice").answering("secret123456");
    let agent = ScriptedAgent::replying(vec![probe(true, 200)]);
    assert_eq!(
        run(&mut pam, &agent, &["forward_pass"]),
        PamCode::AuthInfoUnavail
    );
    assert!(pam.prompts.is_empty());
}

#[test]
fn grace_granted_by_the_agent_skips_the_prompt() {
    let mut pam = ScriptedPam::new("alice").answering(CODE);
    let agent = ScriptedAgent::replying(vec![Ok(Reply::Probe(ProbeReply {
        needs_code: true,
        digits: 6,
        grace: true,
    }))]);
    assert_eq!(run(&mut pam, &agent, &["grace=300"]), PamCode::Success);
    assert!(pam.prompts.is_empty());
    assert_eq!(agent.ops(), vec!["probe"]);
    assert!(matches!(
        agent.requests.borrow().first(),
        Some(Request::Probe {
            grace: Some(300),
            ..
        })
    ));
}

#[test]
fn without_grace_from_the_agent_a_code_is_asked() {
    let mut pam = ScriptedPam::new("alice").answering(CODE);
    let agent = ScriptedAgent::replying(vec![probe(true, 6), accepted()]);
    assert_eq!(run(&mut pam, &agent, &["grace=300"]), PamCode::Success);
    assert_eq!(pam.prompts.len(), 1);
    assert_eq!(agent.ops(), vec!["probe", "authenticate"]);
    // An agent claiming grace for an account that needs no code is not believed.
    let mut pam = ScriptedPam::new("alice").answering(CODE);
    let agent = ScriptedAgent::replying(vec![
        Ok(Reply::Probe(ProbeReply {
            needs_code: false,
            digits: 6,
            grace: true,
        })),
        Err(ClientError::Api(ApiError::not_found("no profile"))),
    ]);
    assert_eq!(run(&mut pam, &agent, &["grace=300"]), PamCode::AuthErr);
    assert_eq!(pam.prompts.len(), 1);
}

#[test]
fn debug_logs_each_step_but_never_the_code() {
    let mut pam = ScriptedPam::new("alice").answering("secret123456");
    let agent = ScriptedAgent::replying(vec![probe(true, 6), accepted()]);
    assert_eq!(
        run(&mut pam, &agent, &["forward_pass", "nullok", "debug"]),
        PamCode::Success
    );
    let debug = pam.logged_at(LogLevel::Debug);
    assert!(debug.len() >= 4, "{debug:?}");
    assert!(debug.iter().all(|line| line.contains("alice")));
    assert!(debug.iter().any(|line| line.contains("PAM_SUCCESS")));
    pam.assert_never_shown(&["secret", "123456"]);

    // Without `debug`, a success is one info line.
    let mut pam = ScriptedPam::new("alice").answering(CODE);
    let agent = ScriptedAgent::replying(vec![accepted()]);
    assert_eq!(run(&mut pam, &agent, &[]), PamCode::Success);
    assert!(pam.logged_at(LogLevel::Debug).is_empty());
    assert_eq!(pam.logged_at(LogLevel::Info).len(), 1);
}

#[test]
fn debug_logs_a_malformed_code_without_echoing_it() {
    let mut pam = ScriptedPam::new("alice").answering("98765x");
    let agent = ScriptedAgent::replying(vec![api(ErrorCode::InvalidArgument)]);
    assert_eq!(run(&mut pam, &agent, &["debug"]), PamCode::AuthErr);
    assert!(pam
        .logged_at(LogLevel::Debug)
        .iter()
        .any(|line| line.contains("not a well-formed code")));
    pam.assert_never_shown(&["98765x"]);
}

#[test]
fn crafted_user_names_cannot_forge_log_lines() {
    let mut pam = ScriptedPam::new("mallory\npam_totp: accepted root").answering(CODE);
    let agent = ScriptedAgent::replying(vec![api(ErrorCode::InvalidArgument)]);
    assert_eq!(run(&mut pam, &agent, &[]), PamCode::AuthErr);
    assert!(pam.logs().iter().all(|(_, line)| !line.contains('\n')));
}

/// The wiring test: options -> real `Client` -> a real Unix socket answered by a one-shot
/// agent that speaks `proto::frame`.
mod wiring {
    use super::*;
    use pam_totp_proto::frame::{read_frame, write_frame, MAX_FRAME_LEN};
    use pam_totp_proto::RequestEnvelope;
    use std::os::unix::net::UnixListener;
    use std::thread;

    fn socket_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("pam_totp-{}-{name}.sock", std::process::id()))
    }

    /// Accepts one connection, answers one frame, and hands back what was asked.
    fn one_shot_agent(
        listener: UnixListener,
        reply: Response,
    ) -> thread::JoinHandle<Option<RequestEnvelope>> {
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().ok()?;
            let request = read_frame(&mut stream, MAX_FRAME_LEN).ok()?;
            let envelope = serde_json::from_slice(&request).ok()?;
            let payload = serde_json::to_vec(&reply).ok()?;
            write_frame(&mut stream, &payload).ok()?;
            Some(envelope)
        })
    }

    #[test]
    fn real_client_over_the_configured_socket() {
        let path = socket_path("wiring");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path);
        assert!(listener.is_ok(), "cannot bind {}", path.display());
        let Ok(listener) = listener else { return };
        let agent = one_shot_agent(
            listener,
            Response::Ok(Reply::Authenticated(AuthReply {
                method: AuthMethod::EmergencyCode,
            })),
        );
        let socket_arg = format!("socket={}", path.display());
        let options = options(&[&socket_arg, "timeout=2"]);
        let client = Client::new(&options.socket, options.timeout);
        let mut pam = ScriptedPam::new("alice").answering("12345678");

        let result = authenticate(&mut pam, &client, &options, Flags::default());
        let received = agent.join().ok().flatten();
        let _ = std::fs::remove_file(&path);

        assert_eq!(result, PamCode::Success);
        assert_eq!(
            received.as_ref().map(|e| (e.v, e.request.op())),
            Some((pam_totp_proto::PROTOCOL_VERSION, "authenticate"))
        );
        if let Some(RequestEnvelope {
            request:
                Request::Authenticate {
                    account,
                    uid,
                    code,
                    context,
                },
            ..
        }) = received
        {
            assert_eq!(account, "alice");
            assert_eq!(uid, Some(1000));
            assert_eq!(code.expose(), "12345678");
            assert_eq!(context.service.as_deref(), Some("sshd"));
            assert_eq!(context.rhost.as_deref(), Some("192.0.2.7"));
            assert_eq!(context.tty.as_deref(), Some("ssh"));
        }
        assert!(pam
            .logged_at(LogLevel::Info)
            .iter()
            .any(|line| line.contains("emergency code")));
    }

    #[test]
    fn real_client_without_an_agent_is_authinfo_unavail() {
        let path = socket_path("absent");
        let _ = std::fs::remove_file(&path);
        let socket_arg = format!("socket={}", path.display());
        let options = options(&[&socket_arg, "timeout=0.5"]);
        let client = Client::new(&options.socket, options.timeout);
        let mut pam = ScriptedPam::new("alice").answering(CODE);
        let result = authenticate(&mut pam, &client, &options, Flags::default());
        assert_eq!(result, PamCode::AuthInfoUnavail);
        pam.assert_never_shown(&[CODE]);
    }
}

#[test]
fn an_unknown_name_is_prompted_then_refused_never_ignored() {
    for args in [&["nullok"][..], &[]] {
        let mut pam = ScriptedPam::new("ghost").answering(CODE);
        pam.unknown.insert("ghost".into());
        let agent = ScriptedAgent::replying(vec![]);
        let result = authenticate(&mut pam, &agent, &options(args), Flags::default());
        assert_eq!(result, PamCode::UserUnknown, "{args:?}");
        assert_eq!(pam.prompts.len(), 1, "prompted like anyone else");
        assert!(agent.ops().is_empty(), "the agent is not asked");
        pam.assert_never_shown(&[CODE]);
    }
}

#[test]
fn long_or_unclean_pam_items_are_cut_before_they_reach_the_agent() {
    let mut pam = ScriptedPam::new("alice").answering(CODE);
    pam.items
        .insert(ItemKind::RHost, format!("{}\u{1b}[31m", "h".repeat(300)));
    let agent = ScriptedAgent::replying(vec![Ok(Reply::Authenticated(AuthReply {
        method: AuthMethod::Totp,
    }))]);
    assert_eq!(
        authenticate(&mut pam, &agent, &options(&[]), Flags::default()),
        PamCode::Success
    );
    let requests = agent.requests.borrow();
    let sent = requests.first().and_then(|request| match request {
        Request::Authenticate { context, uid, .. } => Some((context, *uid)),
        _ => None,
    });
    assert!(sent.is_some(), "no authenticate request");
    if let Some((context, uid)) = sent {
        let rhost = context.rhost.clone().unwrap_or_default();
        assert_eq!(rhost.len(), validate::MAX_CONTEXT_ITEM_BYTES);
        assert!(validate::login_context(context).is_ok());
        assert_eq!(uid, Some(1000));
    }
}
