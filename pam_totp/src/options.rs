//! Module arguments from the PAM stack line (`auth ... pam_totp.so [options]`).
//!
//! Parsing is strict: an unknown option or a bad value is an error naming the option, which the
//! caller logs before returning PAM_SERVICE_ERR. A typo in a security module's configuration must
//! not silently change how logins are checked.

use std::ffi::CStr;
use std::path::PathBuf;
use std::time::Duration;

/// Default prompt, as the contract spells it.
pub const DEFAULT_PROMPT: &str = "Verification code: ";
/// Default whole-exchange deadline of each agent call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest accepted `timeout=`; a login should never hang longer on a stuck agent.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Linux-PAM's PAM_MAX_MSG_SIZE: a longer prompt would be cut by conversation functions.
pub const MAX_PROMPT_BYTES: usize = 512;
/// `sun_path` holds 108 bytes including the terminating NUL.
pub const MAX_SOCKET_PATH_BYTES: usize = 107;

/// Where the code comes from, and what happens to PAM_AUTHTOK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirstPass {
    /// Always prompt (no stacking option).
    #[default]
    Prompt,
    /// `try_first_pass`: use a stacked PAM_AUTHTOK that looks like a code, else prompt.
    Try,
    /// `use_first_pass`: use the stacked PAM_AUTHTOK; never prompt.
    Use,
    /// `forward_pass`: prompt once for "password+code", keep the password as PAM_AUTHTOK.
    Forward,
}

impl FirstPass {
    fn option_name(self) -> &'static str {
        match self {
            Self::Prompt => "prompt",
            Self::Try => "try_first_pass",
            Self::Use => "use_first_pass",
            Self::Forward => "forward_pass",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub socket: PathBuf,
    pub timeout: Duration,
    pub nullok: bool,
    pub prompt: String,
    pub first_pass: FirstPass,
    /// `grace=SECONDS`; `None` when absent or 0 (off).
    pub grace: Option<u32>,
    pub debug: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(pam_totp_proto::DEFAULT_SOCKET),
            timeout: DEFAULT_TIMEOUT,
            nullok: false,
            prompt: DEFAULT_PROMPT.to_owned(),
            first_pass: FirstPass::Prompt,
            grace: None,
            debug: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("module argument {index} is not valid UTF-8")]
    NotUtf8 { index: usize },
    #[error("unknown option '{0}'")]
    Unknown(String),
    #[error("option '{option}' needs a value ({option}=...)")]
    MissingValue { option: &'static str },
    #[error("option '{option}' takes no value")]
    UnexpectedValue { option: &'static str },
    #[error("bad value '{value}' for option '{option}': {reason}")]
    BadValue {
        option: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("options '{first}' and '{second}' cannot be combined")]
    Conflict {
        first: &'static str,
        second: &'static str,
    },
}

impl Options {
    /// Parses the argument vector libpam hands to `pam_sm_authenticate`.
    pub fn from_cstrs(args: &[&CStr]) -> Result<Self, OptionError> {
        let args = args
            .iter()
            .enumerate()
            .map(|(index, arg)| arg.to_str().map_err(|_| OptionError::NotUtf8 { index }))
            .collect::<Result<Vec<&str>, _>>()?;
        Self::parse(args)
    }

    /// Parses `name` or `name=value` arguments. A repeated option takes its last value.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Self, OptionError> {
        let mut options = Self::default();
        // Only one of the stacking modes makes sense; remember which one was asked for.
        let mut stacking: Option<FirstPass> = None;
        for arg in args {
            let (name, value) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (arg, None),
            };
            match name {
                "socket" => options.socket = parse_socket(required("socket", value)?)?,
                "timeout" => options.timeout = parse_timeout(required("timeout", value)?)?,
                "prompt" => options.prompt = parse_prompt(required("prompt", value)?)?,
                "grace" => options.grace = parse_grace(required("grace", value)?)?,
                "nullok" => options.nullok = flag("nullok", value)?,
                "debug" => options.debug = flag("debug", value)?,
                "try_first_pass" | "use_first_pass" | "forward_pass" => {
                    let mode = match name {
                        "try_first_pass" => FirstPass::Try,
                        "use_first_pass" => FirstPass::Use,
                        _ => FirstPass::Forward,
                    };
                    flag(mode.option_name(), value)?;
                    match stacking {
                        Some(earlier) if earlier != mode => {
                            return Err(OptionError::Conflict {
                                first: earlier.option_name(),
                                second: mode.option_name(),
                            })
                        }
                        _ => stacking = Some(mode),
                    }
                    options.first_pass = mode;
                }
                unknown => return Err(OptionError::Unknown(unknown.to_owned())),
            }
        }
        // A grace pass skips the prompt, so forward_pass would have no password to hand on.
        if options.grace.is_some() && options.first_pass == FirstPass::Forward {
            return Err(OptionError::Conflict {
                first: "grace",
                second: "forward_pass",
            });
        }
        Ok(options)
    }
}

fn required<'a>(option: &'static str, value: Option<&'a str>) -> Result<&'a str, OptionError> {
    value.ok_or(OptionError::MissingValue { option })
}

/// A flag is always `true` when present; `nullok=0` would read as a value, so it is refused.
fn flag(option: &'static str, value: Option<&str>) -> Result<bool, OptionError> {
    match value {
        None => Ok(true),
        Some(_) => Err(OptionError::UnexpectedValue { option }),
    }
}

fn bad(option: &'static str, value: &str, reason: &'static str) -> OptionError {
    OptionError::BadValue {
        option,
        value: value.to_owned(),
        reason,
    }
}

fn parse_socket(value: &str) -> Result<PathBuf, OptionError> {
    if !value.starts_with('/') {
        return Err(bad("socket", value, "must be an absolute path"));
    }
    // Checked here so a too-long path is a configuration error, not an "agent unreachable".
    if value.len() > MAX_SOCKET_PATH_BYTES {
        return Err(bad(
            "socket",
            value,
            "longer than a Unix socket path may be",
        ));
    }
    Ok(PathBuf::from(value))
}

/// Decimal seconds, `DIGITS[.DIGITS]`, more than 0 and at most [`MAX_TIMEOUT`].
///
/// Parsed by hand rather than through `f64`, which would also accept "inf", "NaN", "1e1" and
/// "+3", none of which an administrator means.
fn parse_timeout(value: &str) -> Result<Duration, OptionError> {
    let syntax = "expected decimal seconds such as 3 or 0.5";
    let (whole, fraction) = value.split_once('.').unwrap_or((value, "0"));
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !all_digits(fraction) {
        return Err(bad("timeout", value, syntax));
    }
    if fraction.len() > 9 {
        return Err(bad("timeout", value, "more than nanosecond precision"));
    }
    let too_long = "must be at most 60 seconds";
    let secs: u64 = whole.parse().map_err(|_| bad("timeout", value, too_long))?;
    // Right-pad to nine digits: "5" -> 500000000 ns.
    let nanos: u32 = format!("{fraction:0<9}")
        .parse()
        .map_err(|_| bad("timeout", value, syntax))?;
    let timeout = Duration::new(secs, nanos);
    if timeout.is_zero() {
        return Err(bad("timeout", value, "must be more than 0"));
    }
    if timeout > MAX_TIMEOUT {
        return Err(bad("timeout", value, too_long));
    }
    Ok(timeout)
}

fn parse_prompt(value: &str) -> Result<String, OptionError> {
    if value.is_empty() {
        return Err(bad("prompt", value, "must not be empty"));
    }
    if value.len() > MAX_PROMPT_BYTES {
        return Err(bad("prompt", value, "longer than 512 bytes"));
    }
    Ok(value.to_owned())
}

fn parse_grace(value: &str) -> Result<Option<u32>, OptionError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("grace", value, "expected a whole number of seconds"));
    }
    let seconds: u32 = value
        .parse()
        .map_err(|_| bad("grace", value, "too large"))?;
    Ok((seconds > 0).then_some(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, OptionError> {
        Options::parse(args.iter().copied())
    }

    fn option_of(error: Result<Options, OptionError>) -> Option<&'static str> {
        match error {
            Err(OptionError::BadValue { option, .. })
            | Err(OptionError::MissingValue { option })
            | Err(OptionError::UnexpectedValue { option }) => Some(option),
            _ => None,
        }
    }

    #[test]
    fn defaults() {
        let options = parse(&[]);
        assert_eq!(options, Ok(Options::default()));
        let options = Options::default();
        assert_eq!(options.socket, PathBuf::from("/run/pam-totp/agent.sock"));
        assert_eq!(options.timeout, Duration::from_secs(3));
        assert_eq!(options.prompt, "Verification code: ");
        assert_eq!(options.first_pass, FirstPass::Prompt);
        assert!(!options.nullok && !options.debug && options.grace.is_none());
    }

    #[test]
    fn every_option() {
        let options = parse(&[
            "socket=/tmp/agent.sock",
            "timeout=0.5",
            "nullok",
            "prompt=Code please: ",
            "use_first_pass",
            "grace=300",
            "debug",
        ]);
        assert_eq!(
            options,
            Ok(Options {
                socket: PathBuf::from("/tmp/agent.sock"),
                timeout: Duration::from_millis(500),
                nullok: true,
                prompt: "Code please: ".into(),
                first_pass: FirstPass::Use,
                grace: Some(300),
                debug: true,
            })
        );
    }

    #[test]
    fn stacking_modes() {
        for (arg, mode) in [
            ("try_first_pass", FirstPass::Try),
            ("use_first_pass", FirstPass::Use),
            ("forward_pass", FirstPass::Forward),
        ] {
            assert_eq!(parse(&[arg]).map(|o| o.first_pass), Ok(mode));
            // Repeating the same mode is harmless.
            assert_eq!(parse(&[arg, arg]).map(|o| o.first_pass), Ok(mode));
        }
        assert_eq!(
            parse(&["try_first_pass", "forward_pass"]),
            Err(OptionError::Conflict {
                first: "try_first_pass",
                second: "forward_pass"
            })
        );
        assert_eq!(
            option_of(parse(&["use_first_pass=1"])),
            Some("use_first_pass")
        );
        assert_eq!(
            parse(&["forward_pass", "grace=60"]),
            Err(OptionError::Conflict {
                first: "grace",
                second: "forward_pass"
            })
        );
        assert!(parse(&["use_first_pass", "grace=60"]).is_ok());
    }

    #[test]
    fn timeouts() {
        for (text, expected) in [
            ("3", Duration::from_secs(3)),
            ("0.5", Duration::from_millis(500)),
            ("1.25", Duration::from_millis(1250)),
            ("60", Duration::from_secs(60)),
            ("60.0", Duration::from_secs(60)),
            ("0.000000001", Duration::from_nanos(1)),
            ("007", Duration::from_secs(7)),
        ] {
            let arg = format!("timeout={text}");
            assert_eq!(parse(&[&arg]).map(|o| o.timeout), Ok(expected), "{text}");
        }
        for text in [
            "",
            "0",
            "0.0",
            "60.001",
            "61",
            "-1",
            "+3",
            "1e1",
            "inf",
            "NaN",
            ".5",
            "3.",
            "1.2.3",
            "3s",
            " 3",
            "0.0000000001",
            "99999999999999999999999",
        ] {
            let arg = format!("timeout={text}");
            assert_eq!(option_of(parse(&[&arg])), Some("timeout"), "{text:?}");
        }
        assert_eq!(
            parse(&["timeout"]),
            Err(OptionError::MissingValue { option: "timeout" })
        );
    }

    #[test]
    fn sockets() {
        assert_eq!(
            parse(&["socket=/run/x.sock"]).map(|o| o.socket),
            Ok(PathBuf::from("/run/x.sock"))
        );
        let long = format!("socket=/{}", "a".repeat(MAX_SOCKET_PATH_BYTES));
        for bad in ["socket=", "socket=relative.sock", long.as_str(), "socket"] {
            assert_eq!(option_of(parse(&[bad])), Some("socket"), "{bad}");
        }
    }

    #[test]
    fn prompts_keep_spaces_and_equals_signs() {
        // libpam passes "[prompt=Code = ? ]" from the stack line as one argument.
        assert_eq!(
            parse(&["prompt=Code = ? "]).map(|o| o.prompt),
            Ok("Code = ? ".to_owned())
        );
        let long = format!("prompt={}", "x".repeat(MAX_PROMPT_BYTES + 1));
        for bad in ["prompt=", "prompt", long.as_str()] {
            assert_eq!(option_of(parse(&[bad])), Some("prompt"), "{bad}");
        }
    }

    #[test]
    fn grace() {
        assert_eq!(parse(&["grace=60"]).map(|o| o.grace), Ok(Some(60)));
        assert_eq!(parse(&["grace=0"]).map(|o| o.grace), Ok(None));
        for bad in [
            "grace=",
            "grace=-1",
            "grace=1.5",
            "grace=1m",
            "grace=4294967296",
        ] {
            assert_eq!(option_of(parse(&[bad])), Some("grace"), "{bad}");
        }
    }

    #[test]
    fn flags_take_no_value() {
        assert_eq!(parse(&["nullok"]).map(|o| o.nullok), Ok(true));
        assert_eq!(parse(&["debug"]).map(|o| o.debug), Ok(true));
        assert_eq!(option_of(parse(&["nullok=0"])), Some("nullok"));
        assert_eq!(option_of(parse(&["debug=yes"])), Some("debug"));
    }

    #[test]
    fn unknown_options_are_named() {
        assert_eq!(
            parse(&["nullok", "nulok"]),
            Err(OptionError::Unknown("nulok".into()))
        );
        assert_eq!(
            parse(&["Socket=/x"]),
            Err(OptionError::Unknown("Socket".into()))
        );
        let message = parse(&["window=3"]).err().map(|e| e.to_string());
        assert_eq!(message.as_deref(), Some("unknown option 'window'"));
    }

    #[test]
    fn c_strings_and_non_utf8() {
        let args = [c"nullok", c"timeout=1"];
        let options = Options::from_cstrs(&args);
        assert_eq!(
            options.map(|o| (o.nullok, o.timeout)),
            Ok((true, DEFAULT_TIMEOUT / 3))
        );
        let bad = [c"debug", c"prompt=\xff"];
        assert_eq!(
            Options::from_cstrs(&bad),
            Err(OptionError::NotUtf8 { index: 1 })
        );
    }
}
