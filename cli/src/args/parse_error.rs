//! clap's parse errors as contract errors: one line, `invalid_argument`, and a target naming
//! the field. The message is built from the error's kind and context (which argument, which
//! value, what was valid), never from clap's rendered text; the argument clap names is looked
//! up in the command definition by its id.

use super::Cli;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::CommandFactory;
use pam_totp_proto::text::sanitize;
use pam_totp_proto::{ApiError, ErrorCode};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};

/// Whether `--json` appears among the raw arguments (before any `--`), for errors raised
/// before parsing completes.
pub fn wants_json(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|arg| arg.as_os_str() != OsStr::new("--"))
        .any(|arg| arg.as_os_str() == OsStr::new("--json"))
}

/// What to do with a clap error: help and version are printed as clap renders them.
pub enum ParseFailure {
    Display(clap::Error),
    Invalid(ApiError),
}

pub fn classify(error: clap::Error) -> ParseFailure {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ParseFailure::Display(error),
        _ => ParseFailure::Invalid(to_api_error(&error)),
    }
}

/// Turns a clap error into a one-line `invalid_argument` whose target names the field.
pub fn to_api_error(error: &clap::Error) -> ApiError {
    let known = KnownArgs::of_cli();
    let arg = context_string(error, ContextKind::InvalidArg);
    let shown_arg = arg.as_deref().map(|a| known.shown(a)).unwrap_or_default();
    let value = context_string(error, ContextKind::InvalidValue).map(|v| redact(&v));
    let mut target = arg.as_deref().and_then(|a| known.field(a));
    let message = match error.kind() {
        ErrorKind::InvalidValue if value.as_deref().is_none_or(str::is_empty) => {
            format!("{shown_arg} needs a value")
        }
        ErrorKind::InvalidValue => {
            let valid = context_strings(error, ContextKind::ValidValue);
            let mut message = format!(
                "invalid value '{}' for {shown_arg}",
                value.unwrap_or_default()
            );
            if !valid.is_empty() {
                message.push_str(&format!(": expected one of {}", valid.join(", ")));
            }
            message
        }
        ErrorKind::ValueValidation => {
            let reason = std::error::Error::source(error)
                .map(|source| format!(": {source}"))
                .unwrap_or_default();
            format!(
                "invalid value '{}' for {shown_arg}{reason}",
                value.unwrap_or_default()
            )
        }
        ErrorKind::UnknownArgument => {
            // What the user typed, not an argument of the definition.
            let raw = arg.clone().unwrap_or_default();
            // A stray positional names no field; an unknown flag is its own target.
            target = unknown_flag_field(&raw);
            let mut message = if raw.starts_with('-') {
                format!("unknown option '{}'", sanitize(&raw))
            } else {
                format!("unexpected argument '{}'", redact(&raw))
            };
            if let Some(suggested) = context_string(error, ContextKind::SuggestedArg) {
                message.push_str(&format!("; did you mean '{}'?", sanitize(&suggested)));
            }
            message
        }
        ErrorKind::InvalidSubcommand => {
            let name = context_string(error, ContextKind::InvalidSubcommand).unwrap_or_default();
            let mut message = format!("unknown command '{}'", redact(&name));
            if let Some(suggested) = context_strings(error, ContextKind::SuggestedSubcommand)
                .into_iter()
                .next()
            {
                message.push_str(&format!("; did you mean '{suggested}'?"));
            }
            message
        }
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            "missing command; see 'pam-totp --help'".to_owned()
        }
        ErrorKind::MissingRequiredArgument => {
            let missing = context_strings(error, ContextKind::InvalidArg);
            let names: Vec<String> = missing.iter().map(|a| known.shown(a)).collect();
            let message = format!("missing required argument {}", names.join(", "));
            return with_target(message, missing.first().and_then(|a| known.field(a)));
        }
        ErrorKind::InvalidUtf8 => "an argument is not valid UTF-8".to_owned(),
        ErrorKind::ArgumentConflict => {
            let prior = context_strings(error, ContextKind::PriorArg);
            format!(
                "{shown_arg} cannot be used with {}",
                prior
                    .iter()
                    .map(|p| known.shown(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        ErrorKind::NoEquals
        | ErrorKind::TooManyValues
        | ErrorKind::TooFewValues
        | ErrorKind::WrongNumberOfValues => {
            format!("wrong number of values for {shown_arg}")
        }
        // Kinds parsing does not raise (I/O and formatting of help), and kinds added later.
        kind => kind.as_str().unwrap_or("invalid arguments").to_owned(),
    };
    with_target(message, target)
}

fn with_target(message: String, target: Option<String>) -> ApiError {
    let mut error = ApiError::new(ErrorCode::InvalidArgument, message);
    error.target = target;
    error
}

fn context_string(error: &clap::Error, kind: ContextKind) -> Option<String> {
    match error.get(kind)? {
        ContextValue::String(value) => Some(value.clone()),
        ContextValue::Strings(values) => values.first().cloned(),
        ContextValue::StyledStr(value) => Some(value.to_string()),
        _ => None,
    }
}

fn context_strings(error: &clap::Error, kind: ContextKind) -> Vec<String> {
    match error.get(kind) {
        Some(ContextValue::Strings(values)) => values.clone(),
        Some(ContextValue::String(value)) => vec![value.clone()],
        Some(ContextValue::StyledStrs(values)) => values.iter().map(|v| v.to_string()).collect(),
        Some(ContextValue::StyledStr(value)) => vec![value.to_string()],
        _ => Vec::new(),
    }
}

/// An argument of the definition: the field it sets and how messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    /// The field name the agent uses: the long flag, or the positional's id; `user` is
    /// `account`.
    field: String,
    /// `--digits`, or a positional's value name (`USER`, `USERSFILE`).
    shown: String,
}

/// Every argument of every (sub)command of the definition, by the forms clap names it by in
/// an error's context (`--digits <N>`; `<USER>` and `[USER]` for a positional, which usage
/// shows either way).
struct KnownArgs(HashMap<String, Known>);

impl KnownArgs {
    fn of_cli() -> Self {
        let mut command = Cli::command();
        command.build();
        let mut known = HashMap::new();
        collect(&command, &mut known);
        Self(known)
    }

    fn field(&self, arg: &str) -> Option<String> {
        self.0.get(arg).map(|known| known.field.clone())
    }

    /// How a message names the argument; one clap names that the definition does not hold
    /// (which does not happen) is shown as given.
    fn shown(&self, arg: &str) -> String {
        self.0
            .get(arg)
            .map_or_else(|| sanitize(arg), |known| known.shown.clone())
    }
}

fn collect(command: &clap::Command, known: &mut HashMap<String, Known>) {
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let value_name = arg
            .get_value_names()
            .and_then(|names| names.first())
            .map_or_else(|| id.to_ascii_uppercase(), ToString::to_string);
        let entry = Known {
            field: match arg.get_long().unwrap_or(id) {
                "user" => "account".to_owned(),
                name => name.to_owned(),
            },
            shown: match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => value_name.clone(),
            },
        };
        if arg.is_positional() {
            known.insert(format!("<{value_name}>"), entry.clone());
            known.insert(format!("[{value_name}]"), entry.clone());
        }
        known.insert(arg.to_string(), entry);
    }
    for sub in command.get_subcommands() {
        collect(sub, known);
    }
}

/// The field an unknown `--flag` (or `--flag=value`) as typed names: itself.
fn unknown_flag_field(typed: &str) -> Option<String> {
    let long = typed.strip_prefix("--")?;
    let name = long.split('=').next().unwrap_or(long);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return None;
    }
    Some(name.to_owned())
}

/// The field an argument names: one of the definition as clap names it (`--digits <N>` ->
/// "digits", `<CODE>` -> "code", `[USER]` -> "account", the field name the agent uses), or an
/// unknown `--flag` as typed (`--foo=bar` -> "foo").
pub fn field_of(arg: &str) -> Option<String> {
    KnownArgs::of_cli()
        .field(arg)
        .or_else(|| unknown_flag_field(arg))
}

/// A stray value that looks like a code is never repeated in a message.
fn redact(value: &str) -> String {
    if value.len() >= 4 && value.bytes().all(|b| b.is_ascii_digit()) {
        "<redacted>".to_owned()
    } else {
        sanitize(value)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(super) mod tests {
    use super::*;
    use clap::Parser;

    pub(crate) fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pam-totp").chain(args.iter().copied()))
    }

    pub(crate) fn invalid(args: &[&str]) -> ApiError {
        match classify(parse(args).expect_err("parse should fail")) {
            ParseFailure::Invalid(error) => error,
            ParseFailure::Display(error) => panic!("unexpected display: {error}"),
        }
    }

    #[test]
    fn clap_errors_name_the_field() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["enroll", "--algorithm", "md5"], Some("algorithm")),
            (&["enroll", "--digits", "abc"], Some("digits")),
            (&["enroll", "--period", "-5"], Some("period")),
            (&["enroll", "--digits", "300"], Some("digits")),
            (&["--socket", "", "show"], Some("socket")),
            (&["enroll", "--period"], Some("period")),
            (&["disable"], Some("account")),
            (&["set", "alice"], Some("comment")),
            (&["show", "--bogus"], Some("bogus")),
            (&["frobnicate"], None),
            (&[], None),
            (&["--json"], None),
            (&["unlock", "alice", "extra"], None),
            (&["import", "oath"], Some("file")),
            (&["import", "google-authenticator"], Some("account")),
            (&["import", "oath", "/f", "--bogus"], Some("bogus")),
            (&["import", "pam_u2f", "/f"], None),
            (&["import"], None),
            (&["log", "--limit", "many"], Some("limit")),
            (&["log", "--limit", "-1"], Some("limit")),
            (&["log", "--since"], Some("since")),
            (&["status", "extra"], None),
        ];
        for (args, target) in cases {
            let error = invalid(args);
            assert_eq!(error.code, ErrorCode::InvalidArgument, "{args:?}");
            assert_eq!(error.code.exit_code(), 2);
            assert_eq!(
                error.target.as_deref(),
                *target,
                "{args:?}: {}",
                error.message
            );
            assert!(!error.message.contains('\n'), "{args:?}: {}", error.message);
            assert!(!error.message.is_empty());
        }
    }
    #[test]
    fn clap_error_messages() {
        let error = invalid(&["enroll", "--algorithm", "md5"]);
        assert_eq!(
            error.message,
            "invalid value 'md5' for --algorithm: expected one of sha1, sha256, sha512"
        );
        let error = invalid(&["frobnicate"]);
        assert!(error.message.starts_with("unknown command 'frobnicate'"));
        let error = invalid(&["show", "--fields"]);
        assert_eq!(error.message, "--fields needs a value");
        assert_eq!(error.target.as_deref(), Some("fields"));
        let error = invalid(&["disable"]);
        assert_eq!(error.message, "missing required argument USER");
    }
    #[test]
    fn stray_codes_are_not_echoed() {
        let error = invalid(&["unlock", "alice", "123456"]);
        assert!(!error.message.contains("123456"), "{}", error.message);
    }
    #[test]
    fn help_and_version_are_displayed() {
        for args in [
            &["--help"][..],
            &["--version"],
            &["show", "--help"],
            &["help"],
        ] {
            let error = parse(args).err().unwrap();
            assert!(
                matches!(classify(error), ParseFailure::Display(_)),
                "{args:?}"
            );
        }
    }
    #[test]
    fn json_is_found_in_raw_arguments() {
        let raw = |args: &[&str]| -> Vec<OsString> {
            std::iter::once("pam-totp")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect()
        };
        assert!(wants_json(&raw(&["bogus", "--json"])));
        assert!(!wants_json(&raw(&["bogus"])));
        assert!(!wants_json(&raw(&["set", "--", "--json"])));
    }
    #[test]
    fn field_names_from_rendered_args() {
        assert_eq!(field_of("--digits <N>").as_deref(), Some("digits"));
        assert_eq!(field_of("<CODE>").as_deref(), Some("code"));
        assert_eq!(field_of("[USER]").as_deref(), Some("account"));
        assert_eq!(field_of("--foo=bar").as_deref(), Some("foo"));
        assert_eq!(field_of("-x"), None);
        assert_eq!(field_of("stray value"), None);
    }

    #[test]
    fn every_argument_is_known_by_one_field() {
        // Arguments that clap names alike (`[USER]` of several commands) set the same field.
        let mut command = Cli::command();
        command.build();
        let mut seen: HashMap<String, Known> = HashMap::new();
        fn walk(command: &clap::Command, seen: &mut HashMap<String, Known>) {
            let mut own = HashMap::new();
            collect(command, &mut own);
            for (form, known) in own {
                if let Some(before) = seen.insert(form.clone(), known.clone()) {
                    assert_eq!(before, known, "{form}");
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, seen);
            }
        }
        walk(&command, &mut seen);
        assert_eq!(
            KnownArgs::of_cli().0.get("<USERSFILE>"),
            Some(&Known {
                field: "file".into(),
                shown: "USERSFILE".into()
            })
        );
        assert_eq!(field_of("--dry-run").as_deref(), Some("dry-run"));
        assert_eq!(field_of("--json").as_deref(), Some("json"));
    }

    #[test]
    fn conflicts_and_other_kinds_are_one_line() {
        let mut error = clap::Error::new(ErrorKind::ArgumentConflict);
        error.insert(
            ContextKind::InvalidArg,
            ContextValue::String("--digits <N>".into()),
        );
        error.insert(
            ContextKind::PriorArg,
            ContextValue::Strings(vec!["--period <SECONDS>".into()]),
        );
        let api = to_api_error(&error);
        assert_eq!(api.message, "--digits cannot be used with --period");
        assert_eq!(api.target.as_deref(), Some("digits"));
        let api = to_api_error(&clap::Error::new(ErrorKind::Io));
        assert_eq!(api.message, "invalid arguments");
        assert_eq!(api.code, ErrorCode::InvalidArgument);
    }
}
