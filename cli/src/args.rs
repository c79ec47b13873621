//! Command-line syntax (clap) and the mapping of clap's parse errors onto contract errors.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser, Subcommand, ValueEnum};
use pam_totp_proto::{Algorithm, ApiError, SecretString};
use std::convert::Infallible;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// Environment variable naming the agent socket (below `--socket`, above the default).
pub const SOCKET_ENV: &str = "PAM_TOTP_SOCKET";

/// A CODE given as this is read from standard input (or typed at a prompt on a terminal).
pub const CODE_FROM_STDIN: &str = "-";

#[derive(Debug, Parser)]
#[command(
    name = "pam-totp",
    version,
    about = "Manage TOTP second-factor profiles through the pam-totp agent",
    // `pam-totp` alone is a one-line error like every other bad invocation.
    arg_required_else_help = false,
    // A flag given twice (e.g. `--json` before and after the command): the last one wins.
    args_override_self = true
)]
pub struct Cli {
    /// Agent socket [env: PAM_TOTP_SOCKET] [default: /run/pam-totp/agent.sock]
    #[arg(long, global = true, value_name = "PATH", display_order = 900)]
    pub socket: Option<PathBuf>,

    /// Print results and errors as JSON on stdout
    #[arg(long, global = true, display_order = 901)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// `--socket`, else a non-empty `PAM_TOTP_SOCKET`, else the default socket.
    pub fn socket_path(&self, env: Option<OsString>) -> Result<PathBuf, ApiError> {
        match &self.socket {
            Some(path) if path.as_os_str().is_empty() => {
                Err(ApiError::invalid("socket", "socket path is empty"))
            }
            Some(path) => Ok(path.clone()),
            None => Ok(env
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(pam_totp_proto::DEFAULT_SOCKET))),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a pending profile; prints its secret, QR code and emergency codes once
    Enroll(EnrollArgs),
    /// Check a code (it is consumed); a pending profile becomes active
    ///
    /// Codes never need to be on the command line, where `ps` shows them: without CODE, or
    /// with `-` as CODE, the code is typed at a prompt without echo when standard input is a
    /// terminal, and read from the first line of standard input otherwise.
    #[command(allow_missing_positional = true)]
    Verify {
        /// Account (default: your own)
        #[arg(value_name = "USER")]
        user: Option<String>,
        /// Current code from the authenticator app, or an emergency code; `-` reads it from
        /// standard input
        ///
        /// Left out, the code is prompted for without echo when standard input is a terminal,
        /// and read from the first line of standard input otherwise. A single argument is the
        /// CODE of your own account.
        #[arg(value_name = "CODE", value_parser = secret)]
        code: Option<SecretString>,
    },
    /// Show a profile
    Show {
        /// Account (default: your own)
        #[arg(value_name = "USER")]
        user: Option<String>,
        /// Only these fields, in this order (comma-separated)
        #[arg(long, value_name = "FIELDS", value_delimiter = ',')]
        fields: Option<Vec<String>>,
    },
    /// List all profiles (admin)
    List {
        /// Only these columns, in this order (comma-separated)
        #[arg(long, value_name = "FIELDS", value_delimiter = ',')]
        fields: Option<Vec<String>>,
    },
    /// Suspend the second factor of an account (admin)
    Disable {
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Resume the second factor of an account (admin)
    Enable {
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Delete a profile and its secret
    Remove {
        /// Account (default: your own)
        #[arg(value_name = "USER")]
        user: Option<String>,
        /// A current or emergency code (required when removing your own profile); `-` reads
        /// it from standard input (a prompt without echo on a terminal)
        #[arg(long, value_name = "CODE", value_parser = secret)]
        code: Option<SecretString>,
    },
    /// Clear failed attempts and lockout (admin)
    Unlock {
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Replace the emergency codes; the new ones are shown once
    Codes {
        /// Account (default: your own)
        #[arg(value_name = "USER")]
        user: Option<String>,
        /// Generate a new set of emergency codes (the old ones stop working)
        #[arg(long)]
        regenerate: bool,
        /// A current or emergency code (required for your own profile); `-` reads it from
        /// standard input (a prompt without echo on a terminal)
        #[arg(long, value_name = "CODE", value_parser = secret)]
        code: Option<SecretString>,
    },
    /// Change the comment of a profile
    Set {
        /// Account (default: your own)
        #[arg(value_name = "USER")]
        user: Option<String>,
        /// New comment (empty to clear)
        #[arg(long, value_name = "TEXT")]
        comment: String,
    },
    /// Move profiles over from google-authenticator or pam_oath; they are active at once
    #[command(subcommand)]
    Import(ImportSource),
    /// The audit trail of logins and changes, newest first
    Log {
        /// Account (default: every account for administrators, else your own)
        #[arg(value_name = "USER")]
        user: Option<String>,
        /// Only entries at or after TIME: RFC 3339 (2026-11-22T10:00:00Z), a local date
        /// (2026-11-22) or date and time (2026-11-22 10:00), or an age (30m, 1h, 2d)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// At most N entries (1 to 10000)
        #[arg(
            long,
            value_name = "N",
            default_value_t = DEFAULT_LOG_LIMIT,
            allow_negative_numbers = true
        )]
        limit: u32,
    },
    /// Agent version, uptime and paths; profile and login counts for administrators
    Status,
}

/// Entries `log` asks for without `--limit`.
pub const DEFAULT_LOG_LIMIT: u32 = 100;

#[derive(Debug, Subcommand)]
pub enum ImportSource {
    /// Import a google-authenticator file: its secret, step size, window and scratch codes
    /// (the file is only read)
    ///
    /// As pam_google_authenticator requires, the file must be USER's own: a regular file owned
    /// by USER (a FILE you name may also be your own, e.g. root's copy from a backup) that
    /// neither its group nor others may write. A symbolic link is not followed.
    #[command(name = "google-authenticator")]
    GoogleAuthenticator(GoogleAuthenticatorArgs),
    /// Import every HOTP/T30 and HOTP/T60 line of a pam_oath usersfile; other lines are
    /// listed with their line numbers and skipped
    Oath(OathArgs),
}

#[derive(Debug, Args)]
pub struct GoogleAuthenticatorArgs {
    /// Account to import for
    #[arg(value_name = "USER")]
    pub user: String,
    /// The file [default: USER's home directory/.google_authenticator]
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub options: ImportOptions,
}

#[derive(Debug, Args)]
pub struct OathArgs {
    /// The pam_oath usersfile (e.g. /etc/users.oath)
    #[arg(value_name = "USERSFILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub options: ImportOptions,
}

#[derive(Debug, Clone, Copy, Default, Args)]
pub struct ImportOptions {
    /// Replace existing profiles instead of skipping them
    #[arg(long)]
    pub replace: bool,
    /// Read and check everything, import nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// Account (default: your own)
    #[arg(value_name = "USER")]
    pub user: Option<String>,
    /// HMAC algorithm
    #[arg(long, value_enum, ignore_case = true, default_value_t = AlgorithmArg::Sha1)]
    pub algorithm: AlgorithmArg,
    /// Code length (6, 7 or 8)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 6,
        allow_negative_numbers = true
    )]
    pub digits: u8,
    /// Time step in seconds
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30,
        allow_negative_numbers = true
    )]
    pub period: u32,
    /// Issuer shown by authenticator apps [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub issuer: Option<String>,
    /// Free-text comment stored with the profile
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Replace an existing profile
    #[arg(long)]
    pub replace: bool,
    /// A code of the current profile (needed to replace your own active profile); `-` reads
    /// it from standard input (a prompt without echo on a terminal)
    #[arg(long, value_name = "CODE", value_parser = secret)]
    pub code: Option<SecretString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlgorithmArg {
    Sha1,
    Sha256,
    Sha512,
}

impl From<AlgorithmArg> for Algorithm {
    fn from(value: AlgorithmArg) -> Self {
        match value {
            AlgorithmArg::Sha1 => Self::Sha1,
            AlgorithmArg::Sha256 => Self::Sha256,
            AlgorithmArg::Sha512 => Self::Sha512,
        }
    }
}

/// Codes go straight into a zeroizing string; they are validated later by proto::validate,
/// whose messages never repeat the value (clap's would). [`CODE_FROM_STDIN`] is resolved then
/// too.
fn secret(value: &str) -> Result<SecretString, Infallible> {
    Ok(SecretString::from(value))
}

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
    let arg = context_string(error, ContextKind::InvalidArg);
    let mut target = arg.as_deref().and_then(field_of);
    let shown_arg = arg.as_deref().map(display_arg).unwrap_or_default();
    let value = context_string(error, ContextKind::InvalidValue).map(|v| redact(&v));
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
            let raw = arg.clone().unwrap_or_default();
            // A stray positional names no field; an unknown flag is its own target.
            if !raw.starts_with("--") {
                target = None;
            }
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
            let names: Vec<String> = missing.iter().map(|a| display_arg(a)).collect();
            let message = format!("missing required argument {}", names.join(", "));
            return with_target(
                message,
                missing.first().and_then(|first| field_of(first.as_str())),
            );
        }
        ErrorKind::InvalidUtf8 => "an argument is not valid UTF-8".to_owned(),
        ErrorKind::ArgumentConflict => {
            let prior = context_strings(error, ContextKind::PriorArg);
            format!(
                "{shown_arg} cannot be used with {}",
                prior
                    .iter()
                    .map(|p| display_arg(p))
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
        _ => first_line(error),
    };
    with_target(message, target)
}

fn with_target(message: String, target: Option<String>) -> ApiError {
    let mut error = ApiError::new(pam_totp_proto::ErrorCode::InvalidArgument, message);
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

/// The field an argument as clap renders it names: `--digits <N>` -> "digits",
/// `<CODE>` -> "code", `[USER]` -> "account" (the field name the agent uses).
pub fn field_of(rendered: &str) -> Option<String> {
    let first = rendered.split_whitespace().next()?;
    let name = if let Some(long) = first.strip_prefix("--") {
        long.split('=').next().unwrap_or(long).to_owned()
    } else if first.starts_with('<') || first.starts_with('[') {
        first
            .trim_matches(|c| matches!(c, '<' | '>' | '[' | ']' | '.'))
            .to_ascii_lowercase()
    } else {
        return None;
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return None;
    }
    Some(match name.as_str() {
        "user" => "account".to_owned(),
        "usersfile" => "file".to_owned(),
        _ => name,
    })
}

/// `--digits <N>` -> `--digits`; `<CODE>` -> `CODE`.
fn display_arg(rendered: &str) -> String {
    let first = rendered.split_whitespace().next().unwrap_or(rendered);
    let shown = if first.starts_with('-') {
        first
    } else {
        first.trim_matches(|c| matches!(c, '<' | '>' | '[' | ']' | '.'))
    };
    sanitize(shown)
}

/// A stray value that looks like a code is never repeated in a message.
fn redact(value: &str) -> String {
    if value.len() >= 4 && value.bytes().all(|b| b.is_ascii_digit()) {
        "<redacted>".to_owned()
    } else {
        sanitize(value)
    }
}

/// Control characters escaped, so a message stays one harmless line.
pub fn sanitize(value: &str) -> String {
    value
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_debug().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn first_line(error: &clap::Error) -> String {
    let rendered = error.to_string();
    let line = rendered
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("invalid arguments");
    sanitize(line.trim_start_matches("error: ").trim())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use pam_totp_proto::ErrorCode;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pam-totp").chain(args.iter().copied()))
    }

    fn invalid(args: &[&str]) -> ApiError {
        match classify(parse(args).expect_err("parse should fail")) {
            ParseFailure::Invalid(error) => error,
            ParseFailure::Display(error) => panic!("unexpected display: {error}"),
        }
    }

    #[test]
    fn definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn enroll_defaults() {
        let cli = parse(&["enroll"]).unwrap();
        assert!(!cli.json);
        assert!(cli.socket.is_none());
        let Command::Enroll(args) = cli.command else {
            panic!("not enroll")
        };
        assert_eq!(args.user, None);
        assert_eq!(args.algorithm, AlgorithmArg::Sha1);
        assert_eq!((args.digits, args.period), (6, 30));
        assert_eq!((args.issuer, args.comment), (None, None));
        assert!(!args.replace);
        assert!(args.code.is_none());
    }

    #[test]
    fn enroll_options() {
        let cli = parse(&[
            "enroll",
            "bob",
            "--algorithm",
            "SHA256",
            "--digits",
            "8",
            "--period",
            "60",
            "--issuer",
            "ACME",
            "--comment",
            "phone",
            "--replace",
            "--code",
            "123456",
        ])
        .unwrap();
        let Command::Enroll(args) = cli.command else {
            panic!("not enroll")
        };
        assert_eq!(args.user.as_deref(), Some("bob"));
        assert_eq!(Algorithm::from(args.algorithm), Algorithm::Sha256);
        assert_eq!((args.digits, args.period), (8, 60));
        assert_eq!(args.issuer.as_deref(), Some("ACME"));
        assert_eq!(args.comment.as_deref(), Some("phone"));
        assert!(args.replace);
        assert_eq!(args.code.as_ref().map(|c| c.expose()), Some("123456"));
    }

    #[test]
    fn global_flags_after_the_command() {
        let cli = parse(&["show", "alice", "--json", "--socket", "/tmp/s.sock"]).unwrap();
        assert!(cli.json);
        assert_eq!(
            cli.socket.as_deref(),
            Some(std::path::Path::new("/tmp/s.sock"))
        );
        let cli = parse(&["--json", "list", "--json"]).unwrap();
        assert!(cli.json);
    }

    #[test]
    fn verify_user_is_optional() {
        let cli = parse(&["verify", "123456"]).unwrap();
        let Command::Verify { user, code } = cli.command else {
            panic!("not verify")
        };
        assert_eq!(user, None);
        assert_eq!(code.unwrap().expose(), "123456");
        let cli = parse(&["verify", "alice", "654321"]).unwrap();
        let Command::Verify { user, code } = cli.command else {
            panic!("not verify")
        };
        assert_eq!(user.as_deref(), Some("alice"));
        assert_eq!(code.unwrap().expose(), "654321");
    }

    #[test]
    fn verify_code_is_optional_and_may_be_a_dash() {
        let verify = |args: &[&str]| -> (Option<String>, Option<String>) {
            let cli = parse(args).unwrap();
            let Command::Verify { user, code } = cli.command else {
                panic!("not verify")
            };
            (user, code.map(|c| c.expose().to_owned()))
        };
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(verify(&["verify"]), (None, None));
        assert_eq!(verify(&["verify", "-"]), (None, some("-")));
        assert_eq!(verify(&["verify", "--", "-"]), (None, some("-")));
        assert_eq!(verify(&["verify", "bob", "-"]), (some("bob"), some("-")));
        assert_eq!(verify(&["verify", "--json"]), (None, None));
        // One positional is still the CODE, even when it looks like a name.
        assert_eq!(verify(&["verify", "bob"]), (None, some("bob")));
        let error = invalid(&["verify", "bob", "123456", "654321"]);
        assert_eq!(error.target, None);
        assert!(!error.message.contains("654321"), "{}", error.message);
        for (args, value) in [
            (&["remove", "--code", "-"][..], "-"),
            (&["codes", "--regenerate", "--code", "-"], "-"),
        ] {
            let code = match parse(args).unwrap().command {
                Command::Remove { code, .. } | Command::Codes { code, .. } => code,
                other => panic!("{other:?}"),
            };
            assert_eq!(code.map(|c| c.expose().to_owned()).as_deref(), Some(value));
        }
        let Command::Enroll(args) = parse(&["enroll", "--replace", "--code", "-"])
            .unwrap()
            .command
        else {
            panic!("not enroll")
        };
        assert_eq!(
            args.code.map(|c| c.expose().to_owned()).as_deref(),
            Some("-")
        );
    }

    #[test]
    fn help_tells_how_to_keep_codes_off_the_command_line() {
        use clap::CommandFactory;
        let mut command = Cli::command();
        let verify = command
            .find_subcommand_mut("verify")
            .expect("verify")
            .render_long_help()
            .to_string();
        assert!(verify.contains("`-` reads it from"), "{verify}");
        assert!(verify.contains("without echo"), "{verify}");
        assert!(verify.contains("[CODE]"), "{verify}");
        for name in ["remove", "codes", "enroll"] {
            let help = command
                .find_subcommand_mut(name)
                .expect(name)
                .render_long_help()
                .to_string();
            assert!(help.contains("`-` reads"), "{name}: {help}");
        }
    }

    #[test]
    fn fields_are_comma_separated() {
        let cli = parse(&["show", "--fields", "account,uid", "--fields", "can"]).unwrap();
        let Command::Show { user, fields } = cli.command else {
            panic!("not show")
        };
        assert_eq!(user, None);
        assert_eq!(fields.unwrap(), vec!["account", "uid", "can"]);
    }

    #[test]
    fn socket_precedence() {
        let env = Some(OsString::from("/env.sock"));
        let flag = parse(&["--socket", "/flag.sock", "list"]).unwrap();
        assert_eq!(
            flag.socket_path(env.clone()).unwrap(),
            PathBuf::from("/flag.sock")
        );
        let plain = parse(&["list"]).unwrap();
        assert_eq!(plain.socket_path(env).unwrap(), PathBuf::from("/env.sock"));
        assert_eq!(
            plain.socket_path(Some(OsString::new())).unwrap(),
            PathBuf::from(pam_totp_proto::DEFAULT_SOCKET)
        );
        assert_eq!(
            plain.socket_path(None).unwrap(),
            PathBuf::from(pam_totp_proto::DEFAULT_SOCKET)
        );
        assert_eq!(
            invalid(&["--socket", "", "list"]).target.as_deref(),
            Some("socket")
        );
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
    fn import_log_and_status_syntax() {
        let cli = parse(&["import", "google-authenticator", "alice"]).unwrap();
        let Command::Import(ImportSource::GoogleAuthenticator(args)) = cli.command else {
            panic!("not import google-authenticator")
        };
        assert_eq!(args.user, "alice");
        assert_eq!(args.file, None);
        assert!(!args.options.replace && !args.options.dry_run);
        let cli = parse(&[
            "import",
            "google-authenticator",
            "bob",
            "/tmp/ga",
            "--replace",
            "--dry-run",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        let Command::Import(ImportSource::GoogleAuthenticator(args)) = cli.command else {
            panic!("not import google-authenticator")
        };
        assert_eq!(args.file.as_deref(), Some(std::path::Path::new("/tmp/ga")));
        assert!(args.options.replace && args.options.dry_run);
        let cli = parse(&["import", "oath", "/etc/users.oath", "--dry-run"]).unwrap();
        let Command::Import(ImportSource::Oath(args)) = cli.command else {
            panic!("not import oath")
        };
        assert_eq!(args.file, PathBuf::from("/etc/users.oath"));
        assert!(args.options.dry_run && !args.options.replace);
        let cli = parse(&["log"]).unwrap();
        let Command::Log { user, since, limit } = cli.command else {
            panic!("not log")
        };
        assert_eq!((user, since, limit), (None, None, DEFAULT_LOG_LIMIT));
        let cli = parse(&["log", "bob", "--since", "1h", "--limit", "5"]).unwrap();
        let Command::Log { user, since, limit } = cli.command else {
            panic!("not log")
        };
        assert_eq!(
            (user.as_deref(), since.as_deref(), limit),
            (Some("bob"), Some("1h"), 5)
        );
        assert!(matches!(
            parse(&["status", "--json"]).unwrap().command,
            Command::Status
        ));
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
}
