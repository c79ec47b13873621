//! Command-line syntax (clap); how clap's parse errors become contract errors is in
//! [`parse_error`].

mod parse_error;

pub use parse_error::{classify, field_of, to_api_error, wants_json, ParseFailure};

use clap::{Args, Parser, Subcommand, ValueEnum};
use pam_totp_proto::{Algorithm, ApiError, ProfileKind, SecretString};
use std::convert::Infallible;
use std::ffi::OsString;
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
    /// The agent's counters in Prometheus text format (administrators)
    Metrics,
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
    /// Time-based codes (an authenticator app), or counter-based ones (a token with a
    /// button, RFC 4226)
    #[arg(
        long = "type",
        value_name = "TYPE",
        value_enum,
        ignore_case = true,
        default_value_t = KindArg::Totp
    )]
    pub kind: KindArg,
    /// HOTP only: the counter of the token's next code [default: 0]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub counter: Option<u64>,
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
    /// TOTP only: time step in seconds [default: 30]
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub period: Option<u32>,
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
pub enum KindArg {
    Totp,
    Hotp,
}

impl From<KindArg> for ProfileKind {
    fn from(value: KindArg) -> Self {
        match value {
            KindArg::Totp => Self::Totp,
            KindArg::Hotp => Self::Hotp,
        }
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::parse_error::tests::{invalid, parse};
    use super::*;

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
        assert_eq!((args.kind, args.counter), (KindArg::Totp, None));
        assert_eq!((args.digits, args.period), (6, None));
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
        assert_eq!((args.digits, args.period), (8, Some(60)));
        assert_eq!(args.issuer.as_deref(), Some("ACME"));
        assert_eq!(args.comment.as_deref(), Some("phone"));
        assert!(args.replace);
        assert_eq!(args.code.as_ref().map(|c| c.expose()), Some("123456"));
    }

    #[test]
    fn enroll_type_and_counter() {
        let Command::Enroll(args) = parse(&["enroll", "bob", "--type", "HOTP", "--counter", "5"])
            .unwrap()
            .command
        else {
            panic!("not enroll")
        };
        assert_eq!(ProfileKind::from(args.kind), ProfileKind::Hotp);
        assert_eq!(args.counter, Some(5));
        assert_eq!(
            invalid(&["enroll", "--type", "motp"]).target.as_deref(),
            Some("type")
        );
        assert_eq!(
            invalid(&["enroll", "--counter", "-1"]).target.as_deref(),
            Some("counter")
        );
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
}
