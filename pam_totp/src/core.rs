//! The login flow of `pam_sm_authenticate`, over the [`PamIo`] and [`Agent`] traits so it can
//! be tested without libpam or a running agent (docs/DESIGN.md, "Login flow").
//!
//! Rules kept here: the prompt is shown whether or not the account is enrolled (unless `nullok`
//! lets an unenrolled account through), a password is never sent to the agent, and no code or
//! password ever reaches a log line.

use crate::options::{FirstPass, Options};
use pam_totp_proto::{
    validate, ApiError, AuthMethod, Client, ClientError, ErrorCode, LoginContext, Reply, Request,
    SecretString,
};
// Escapes control characters, so a crafted user name or agent message cannot forge log lines.
use pam_totp_proto::text::sanitize;
use std::fmt;
use zeroize::Zeroizing;

/// The PAM results this module can return; mapped to libpam's numbers only in the FFI layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PamCode {
    Success,
    AuthErr,
    Ignore,
    MaxTries,
    AuthInfoUnavail,
    ServiceErr,
    SystemErr,
    BufErr,
    ConvErr,
    UserUnknown,
    Abort,
}

impl PamCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "PAM_SUCCESS",
            Self::AuthErr => "PAM_AUTH_ERR",
            Self::Ignore => "PAM_IGNORE",
            Self::MaxTries => "PAM_MAXTRIES",
            Self::AuthInfoUnavail => "PAM_AUTHINFO_UNAVAIL",
            Self::ServiceErr => "PAM_SERVICE_ERR",
            Self::SystemErr => "PAM_SYSTEM_ERR",
            Self::BufErr => "PAM_BUF_ERR",
            Self::ConvErr => "PAM_CONV_ERR",
            Self::UserUnknown => "PAM_USER_UNKNOWN",
            Self::Abort => "PAM_ABORT",
        }
    }
}

impl fmt::Display for PamCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string PAM items that describe where a login comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    Service,
    RHost,
    Tty,
    RUser,
}

/// Syslog priorities the module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Err,
    Warning,
    Notice,
    Info,
    Debug,
}

/// What the flow needs from libpam. Secrets (answers, PAM_AUTHTOK) are bytes, not strings:
/// a password need not be UTF-8, and `forward_pass` must hand it on unchanged.
pub trait PamIo {
    /// PAM_USER, asking the application for it if unset (`pam_get_user`).
    fn user(&mut self) -> Result<String, PamCode>;
    /// The account `name` resolves to in this process (getpwnam: the NSS view pam_unix
    /// used): its name as NSS returns it, and its uid. `None` when NSS does not know it.
    fn lookup_account(&self, name: &str) -> Option<(String, u32)>;
    fn item(&self, which: ItemKind) -> Option<String>;
    /// The stacked PAM_AUTHTOK, if an earlier module set one.
    fn authtok(&self) -> Option<Zeroizing<Vec<u8>>>;
    fn set_authtok(&mut self, value: &[u8]) -> Result<(), PamCode>;
    /// A PAM_PROMPT_ECHO_OFF conversation; `Ok(None)` when the application returned no text.
    fn prompt_hidden(&mut self, text: &str) -> Result<Option<Zeroizing<Vec<u8>>>, PamCode>;
    /// A PAM_ERROR_MSG conversation. Best effort: a failure to show it changes nothing.
    fn show_error(&mut self, text: &str);
    fn log(&self, level: LogLevel, text: &str);
}

/// One request, one reply, each within the configured timeout.
pub trait Agent {
    fn call(&self, request: Request) -> Result<Reply, ClientError>;
}

impl Agent for Client {
    fn call(&self, request: Request) -> Result<Reply, ClientError> {
        Client::call(self, request)
    }
}

/// The `flags` argument of `pam_sm_authenticate`, as far as this module cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// PAM_SILENT: the application asked for no informational messages.
    pub silent: bool,
}

/// TOTP codes are 6 digits unless the profile says otherwise; used when `forward_pass` must
/// split an answer for an account the agent does not know (still prompted, never revealed).
const DEFAULT_DIGITS: usize = 6;

/// Runs one `pam_sm_authenticate`.
pub fn authenticate(
    pam: &mut impl PamIo,
    agent: &impl Agent,
    options: &Options,
    flags: Flags,
) -> PamCode {
    let name = match pam.user() {
        Ok(name) if !name.is_empty() => name,
        Ok(_) => {
            pam.log(LogLevel::Err, "PAM supplied an empty user name");
            return PamCode::UserUnknown;
        }
        Err(code) => {
            pam.log(
                LogLevel::Err,
                &format!("cannot determine the user name ({code})"),
            );
            return code;
        }
    };
    // The agent holds every name of one uid (an alias, a case variant NSS folds) to the
    // same profile; a name NSS does not know is refused, never let through as "not enrolled".
    let Some((account, uid)) = pam.lookup_account(&name) else {
        // Prompted all the same (unless the code comes from the stack), as pam_unix prompts
        // for an unknown user's password: the prompt must not tell who exists.
        if options.first_pass != FirstPass::Use {
            let _ = pam.prompt_hidden(&options.prompt);
        }
        pam.log(
            LogLevel::Notice,
            &sanitize(&format!(
                "account {name}: unknown to NSS -> PAM_USER_UNKNOWN"
            )),
        );
        return PamCode::UserUnknown;
    };
    let mut login = Login {
        pam,
        agent,
        options,
        flags,
        account,
        uid,
    };
    let result = login.run();
    login.debug(&format!("result {result}"));
    result
}

struct Login<'a, P, A> {
    pam: &'a mut P,
    agent: &'a A,
    options: &'a Options,
    flags: Flags,
    /// The account as NSS names it, and its uid.
    account: String,
    uid: u32,
}

/// What the probe decided.
enum Probed {
    /// `nullok` and no active, enabled profile: step aside.
    Skip,
    /// `grace=`: the agent saw a code login from the same place recently enough.
    Grace,
    /// Ask for a code; a `forward_pass` answer ends in this many digits.
    Ask { digits: usize },
}

impl<P: PamIo, A: Agent> Login<'_, P, A> {
    fn run(&mut self) -> PamCode {
        let context = self.context();
        self.debug(&format!(
            "start: service={} rhost={} tty={} ruser={} mode={:?} nullok={}",
            shown(&context.service),
            shown(&context.rhost),
            shown(&context.tty),
            shown(&context.ruser),
            self.options.first_pass,
            self.options.nullok,
        ));
        // forward_pass needs the profile's digit count to split "password+code"; grace is the
        // agent's decision, from its own records of earlier logins.
        let probe_first = self.options.nullok
            || self.options.grace.is_some()
            || self.options.first_pass == FirstPass::Forward;
        let digits = if probe_first {
            match self.probe(&context) {
                Ok(Probed::Skip) => return PamCode::Ignore,
                Ok(Probed::Grace) => {
                    self.log(
                        LogLevel::Info,
                        "accepted without a code: within the grace period of an earlier login \
                         from the same service, tty and remote host",
                    );
                    return PamCode::Success;
                }
                Ok(Probed::Ask { digits }) => digits,
                Err(code) => return code,
            }
        } else {
            DEFAULT_DIGITS
        };
        let code = match self.obtain_code(digits) {
            Ok(code) => code,
            Err(result) => return result,
        };
        self.verify(code, context)
    }

    /// The login's PAM items, each cut to what the agent accepts (an odd item never fails a
    /// real login).
    fn context(&self) -> LoginContext {
        let item = |which| {
            self.pam
                .item(which)
                .map(|value| validate::context_item(&value))
        };
        LoginContext {
            service: item(ItemKind::Service),
            rhost: item(ItemKind::RHost),
            tty: item(ItemKind::Tty),
            ruser: item(ItemKind::RUser),
        }
    }

    fn probe(&mut self, context: &LoginContext) -> Result<Probed, PamCode> {
        let request = Request::Probe {
            account: self.account.clone(),
            uid: Some(self.uid),
            context: context.clone(),
            grace: self.options.grace,
        };
        match self.agent.call(request) {
            Ok(Reply::Probe(probe)) => {
                if validate::digits(probe.digits).is_err() {
                    return Err(self.fail(
                        LogLevel::Err,
                        PamCode::AuthInfoUnavail,
                        &format!("agent answered nonsense: {} digits", probe.digits),
                    ));
                }
                self.debug(&format!(
                    "probe: needs_code={} digits={}",
                    probe.needs_code, probe.digits
                ));
                if probe.needs_code && probe.grace && self.options.grace.is_some() {
                    return Ok(Probed::Grace);
                }
                if !probe.needs_code && self.options.nullok {
                    self.debug("no active profile; nullok, ignoring");
                    return Ok(Probed::Skip);
                }
                Ok(Probed::Ask {
                    digits: usize::from(probe.digits),
                })
            }
            Ok(other) => Err(self.unexpected(&other)),
            // No such account or profile, or a disabled one: the same as "not enrolled".
            Err(ClientError::Api(error))
                if matches!(
                    error.code,
                    ErrorCode::NotFound | ErrorCode::FailedPrecondition
                ) =>
            {
                self.debug(&format!("probe: {}", error.code));
                if self.options.nullok {
                    self.debug("not enrolled; nullok, ignoring");
                    Ok(Probed::Skip)
                } else {
                    Ok(Probed::Ask {
                        digits: DEFAULT_DIGITS,
                    })
                }
            }
            Err(error) => Err(self.refused("probe", error)),
        }
    }

    /// Gets the code as the stacking option says. An `Err` is the PAM result, already logged.
    fn obtain_code(&mut self, digits: usize) -> Result<SecretString, PamCode> {
        match self.options.first_pass {
            FirstPass::Prompt => self.ask(),
            FirstPass::Try => match self.pam.authtok() {
                Some(token) if looks_like_code(&token) => {
                    self.debug("using the stacked PAM_AUTHTOK as the code");
                    Ok(code_from(&token))
                }
                // Most likely the password of an earlier module: never send it to the agent.
                _ => {
                    self.debug("no stacked code; prompting");
                    self.ask()
                }
            },
            FirstPass::Use => match self.pam.authtok() {
                Some(token) if looks_like_code(&token) => {
                    self.debug("using the stacked PAM_AUTHTOK as the code");
                    Ok(code_from(&token))
                }
                Some(_) => Err(self.fail(
                    LogLevel::Notice,
                    PamCode::AuthErr,
                    "use_first_pass: the stacked PAM_AUTHTOK is not a code (not sent to the agent)",
                )),
                None => Err(self.fail(
                    LogLevel::Notice,
                    PamCode::AuthErr,
                    "use_first_pass: no stacked PAM_AUTHTOK",
                )),
            },
            FirstPass::Forward => self.ask_forwarded(digits),
        }
    }

    /// Prompts (echo off) and returns the answer, a trailing newline removed.
    fn answer(&mut self) -> Result<Zeroizing<Vec<u8>>, PamCode> {
        let prompt = self.options.prompt.clone();
        match self.pam.prompt_hidden(&prompt) {
            Ok(Some(mut answer)) => {
                trim_newline(&mut answer);
                Ok(answer)
            }
            Ok(None) => Err(self.fail(
                LogLevel::Notice,
                PamCode::ConvErr,
                "the application returned no answer to the prompt",
            )),
            Err(code) => Err(self.fail(LogLevel::Notice, code, "conversation failed")),
        }
    }

    fn ask(&mut self) -> Result<SecretString, PamCode> {
        let answer = self.answer()?;
        self.note_malformed(&answer);
        Ok(code_from(&answer))
    }

    /// `forward_pass`: the answer is "password" followed by `digits` code digits. The password
    /// becomes PAM_AUTHTOK for the next module whatever the agent says, so a fail-open stack
    /// (`[authinfo_unavail=ignore]`) still checks it and nobody is prompted twice.
    fn ask_forwarded(&mut self, digits: usize) -> Result<SecretString, PamCode> {
        let answer = self.answer()?;
        let (password, code) = answer.split_at(answer.len().saturating_sub(digits));
        if password.is_empty() {
            // Only a code was typed: leave PAM_AUTHTOK unset so the next module asks.
            self.debug("forward_pass: no password before the code");
        } else if let Err(result) = self.pam.set_authtok(password) {
            return Err(self.fail(LogLevel::Err, result, "cannot set PAM_AUTHTOK"));
        } else {
            self.debug("forward_pass: password kept as PAM_AUTHTOK");
        }
        self.note_malformed(code);
        Ok(code_from(code))
    }

    /// A malformed code is still sent: the agent counts and audits every attempt.
    fn note_malformed(&self, code: &[u8]) {
        if !looks_like_code(code) {
            self.debug("the answer is not a well-formed code; sending it anyway");
        }
    }

    fn verify(&mut self, code: SecretString, context: LoginContext) -> PamCode {
        self.debug("asking the agent");
        let request = Request::Authenticate {
            account: self.account.clone(),
            uid: Some(self.uid),
            code,
            context,
        };
        match self.agent.call(request) {
            Ok(Reply::Authenticated(reply)) => {
                let method = match reply.method {
                    AuthMethod::Totp => "TOTP code",
                    AuthMethod::EmergencyCode => "emergency code",
                };
                self.log(LogLevel::Info, &format!("accepted {method}"));
                PamCode::Success
            }
            Ok(other) => self.unexpected(&other),
            Err(error) => self.refused("authenticate", error),
        }
    }

    /// Maps an agent error to the PAM result (docs/DESIGN.md table), logging it once.
    fn refused(&mut self, op: &str, error: ClientError) -> PamCode {
        let api = match error {
            ClientError::Api(api) => api,
            transport => {
                return self.fail(
                    LogLevel::Err,
                    PamCode::AuthInfoUnavail,
                    &format!("{op}: {transport}"),
                )
            }
        };
        let mut reason = format!("{op}: {}: {}", api.code, api.message);
        if let Some(seconds) = api.retry_after {
            reason.push_str(&format!(" (retry after {seconds} s)"));
        }
        match api.code {
            ErrorCode::CodeRejected
            | ErrorCode::InvalidArgument
            | ErrorCode::NotFound
            | ErrorCode::FailedPrecondition
            | ErrorCode::PermissionDenied => self.fail(LogLevel::Notice, PamCode::AuthErr, &reason),
            ErrorCode::RateLimited => {
                self.tell_locked(&api);
                self.fail(LogLevel::Notice, PamCode::MaxTries, &reason)
            }
            ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::AlreadyExists => {
                self.fail(LogLevel::Err, PamCode::AuthInfoUnavail, &reason)
            }
        }
    }

    fn tell_locked(&mut self, api: &ApiError) {
        if self.flags.silent {
            return;
        }
        let text = match api.retry_after {
            Some(1) => "Too many failed attempts; try again in 1 second.".to_owned(),
            Some(seconds) => {
                format!("Too many failed attempts; try again in {seconds} seconds.")
            }
            None => "Too many failed attempts; try again later.".to_owned(),
        };
        self.pam.show_error(&text);
    }

    fn unexpected(&mut self, reply: &Reply) -> PamCode {
        let kind = reply.kind();
        self.fail(
            LogLevel::Err,
            PamCode::AuthInfoUnavail,
            &format!("agent answered nonsense: an unexpected '{kind}' reply"),
        )
    }

    /// Logs a failure (once, with the account) and hands back its result.
    fn fail(&self, level: LogLevel, result: PamCode, reason: &str) -> PamCode {
        self.log(level, &format!("{reason} -> {result}"));
        result
    }

    fn log(&self, level: LogLevel, text: &str) {
        let line = format!("account {}: {text}", self.account);
        self.pam.log(level, &sanitize(&line));
    }

    fn debug(&self, text: &str) {
        if self.options.debug {
            self.log(LogLevel::Debug, text);
        }
    }
}

fn shown(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

fn trim_newline(answer: &mut Zeroizing<Vec<u8>>) {
    if answer.last() == Some(&b'\n') {
        answer.pop();
        if answer.last() == Some(&b'\r') {
            answer.pop();
        }
    }
}

fn looks_like_code(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|text| validate::code(text).is_ok())
}

/// The wire carries strings; a non-UTF-8 answer cannot be a code but is still sent (lossily)
/// so the attempt is counted.
fn code_from(bytes: &[u8]) -> SecretString {
    SecretString::new(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests;
