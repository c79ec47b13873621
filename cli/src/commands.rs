//! One subcommand -> one validated proto request, plus how its reply is to be shown.

use crate::args::{Command, EnrollArgs, ImportSource, CODE_FROM_STDIN};
use crate::timefmt::{self, Zone};
use pam_totp_proto::text::sanitize;
use pam_totp_proto::{profile_fields, validate, ApiError, EnrollRequest, Request, SecretString};

/// Most entries one `log` asks for (the agent's limit).
pub const MAX_LOG_LIMIT: u32 = 10_000;

/// How the reply of a request is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// `own` when the account defaulted to the caller's (shapes the "verify" hint).
    Enroll {
        own: bool,
    },
    Verify,
    Show {
        fields: Option<Vec<&'static str>>,
    },
    List {
        fields: Option<Vec<&'static str>>,
    },
    Disable,
    Enable,
    Remove,
    Unlock,
    Codes,
    Set,
    Log,
    Status,
}

/// What a command does: one request, or an import (a file read here, then batches).
#[derive(Debug)]
pub enum Job {
    Call(Plan),
    Import(ImportSource),
}

/// [`plan`] for every command but `import`, which is more than one request.
pub fn prepare(
    command: Command,
    caller: impl FnOnce() -> Result<String, ApiError>,
    read_code: impl FnOnce() -> Result<SecretString, ApiError>,
) -> Result<Job, ApiError> {
    match command {
        Command::Import(source) => Ok(Job::Import(source)),
        command => plan(command, caller, read_code).map(Job::Call),
    }
}

#[derive(Debug)]
pub struct Plan {
    pub request: Request,
    pub view: View,
}

/// Validates every argument and builds the request. `caller` resolves the account of the
/// calling user; it is only asked when `[USER]` was left out, after everything else passed.
/// `read_code` reads a code that is not on the command line (`-`, or `verify` without CODE):
/// it is asked last, once everything else passed, and its code is validated like one given.
pub fn plan(
    command: Command,
    caller: impl FnOnce() -> Result<String, ApiError>,
    read_code: impl FnOnce() -> Result<SecretString, ApiError>,
) -> Result<Plan, ApiError> {
    let plan = match command {
        Command::Enroll(args) => enroll(args, caller, read_code)?,
        Command::Verify { user, code } => {
            // Without CODE the code is read, as with `-`.
            let code = code.map(code_arg).transpose()?.unwrap_or(CodeArg::Read);
            let account = account(user, caller)?;
            Plan {
                request: Request::Verify {
                    account,
                    code: code.resolve(read_code)?,
                },
                view: View::Verify,
            }
        }
        Command::Show { user, fields } => {
            let fields = fields.as_deref().map(parse_fields).transpose()?;
            Plan {
                request: Request::Show {
                    account: account(user, caller)?,
                },
                view: View::Show { fields },
            }
        }
        Command::List { fields } => Plan {
            request: Request::List {
                after: None,
                limit: None,
            },
            view: View::List {
                fields: fields.as_deref().map(parse_fields).transpose()?,
            },
        },
        Command::Disable { user } => Plan {
            request: Request::Disable {
                account: named(user)?,
            },
            view: View::Disable,
        },
        Command::Enable { user } => Plan {
            request: Request::Enable {
                account: named(user)?,
            },
            view: View::Enable,
        },
        Command::Unlock { user } => Plan {
            request: Request::Unlock {
                account: named(user)?,
            },
            view: View::Unlock,
        },
        Command::Remove { user, code } => {
            let code = code.map(code_arg).transpose()?;
            let account = account(user, caller)?;
            Plan {
                request: Request::Remove {
                    account,
                    code: code.map(|code| code.resolve(read_code)).transpose()?,
                },
                view: View::Remove,
            }
        }
        Command::Codes {
            user,
            regenerate,
            code,
        } => {
            if !regenerate {
                return Err(ApiError::invalid(
                    "regenerate",
                    "codes needs --regenerate: emergency codes are shown only when created",
                ));
            }
            let code = code.map(code_arg).transpose()?;
            let account = account(user, caller)?;
            Plan {
                request: Request::RegenerateCodes {
                    account,
                    code: code.map(|code| code.resolve(read_code)).transpose()?,
                },
                view: View::Codes,
            }
        }
        Command::Set { user, comment } => {
            validate::comment(&comment)?;
            Plan {
                request: Request::SetComment {
                    account: account(user, caller)?,
                    comment,
                },
                view: View::Set,
            }
        }
        Command::Log { user, since, limit } => {
            if !(1..=MAX_LOG_LIMIT).contains(&limit) {
                return Err(ApiError::invalid(
                    "limit",
                    format!("--limit must be 1 to {MAX_LOG_LIMIT}"),
                ));
            }
            let since = since
                .map(|text| timefmt::parse_since(&text, timefmt::unix_now(), Zone::Local))
                .transpose()?;
            // Without USER the agent decides: everyone's for administrators, else the
            // caller's own.
            let account = user.map(named).transpose()?;
            Plan {
                request: Request::Log {
                    account,
                    since,
                    limit,
                    before: None,
                },
                view: View::Log,
            }
        }
        Command::Status => Plan {
            request: Request::Status {},
            view: View::Status,
        },
        Command::Import(_) => {
            return Err(ApiError::internal(
                "import is not a single request (see commands::prepare)",
            ))
        }
    };
    Ok(plan)
}

fn enroll(
    args: EnrollArgs,
    caller: impl FnOnce() -> Result<String, ApiError>,
    read_code: impl FnOnce() -> Result<SecretString, ApiError>,
) -> Result<Plan, ApiError> {
    validate::digits(args.digits)?;
    validate::period(args.period)?;
    if let Some(issuer) = &args.issuer {
        validate::issuer(issuer)?;
    }
    if let Some(comment) = &args.comment {
        validate::comment(comment)?;
    }
    if args.code.is_some() && !args.replace {
        return Err(ApiError::invalid(
            "replace",
            "--code is only used with --replace",
        ));
    }
    let code = args.code.map(code_arg).transpose()?;
    let own = args.user.is_none();
    let account = account(args.user, caller)?;
    Ok(Plan {
        request: Request::Enroll(EnrollRequest {
            account,
            algorithm: args.algorithm.into(),
            digits: args.digits,
            period: args.period,
            issuer: args.issuer,
            comment: args.comment,
            replace: args.replace,
            code: code.map(|code| code.resolve(read_code)).transpose()?,
        }),
        view: View::Enroll { own },
    })
}

fn check_code(code: &SecretString) -> Result<(), ApiError> {
    validate::code(code.expose())
}

/// A CODE argument: checked when it was given, read later when it is `-`.
enum CodeArg {
    Given(SecretString),
    Read,
}

fn code_arg(code: SecretString) -> Result<CodeArg, ApiError> {
    if code.expose() == CODE_FROM_STDIN {
        return Ok(CodeArg::Read);
    }
    check_code(&code)?;
    Ok(CodeArg::Given(code))
}

impl CodeArg {
    /// The code, read (and then checked) when it is not on the command line.
    fn resolve(
        self,
        read_code: impl FnOnce() -> Result<SecretString, ApiError>,
    ) -> Result<SecretString, ApiError> {
        match self {
            CodeArg::Given(code) => Ok(code),
            CodeArg::Read => {
                let code = read_code()?;
                check_code(&code)?;
                Ok(code)
            }
        }
    }
}

/// An explicit account, checked.
fn named(user: String) -> Result<String, ApiError> {
    validate::account(&user)?;
    Ok(user)
}

/// The given account, or the caller's own.
fn account(
    user: Option<String>,
    caller: impl FnOnce() -> Result<String, ApiError>,
) -> Result<String, ApiError> {
    match user {
        Some(user) => named(user),
        None => named(caller()?),
    }
}

/// The account of the calling process's real uid, through NSS.
pub fn caller_account() -> Result<String, ApiError> {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => Ok(user.name),
        Ok(None) => Err(ApiError::internal(format!(
            "cannot resolve the calling user: uid {uid} has no account name"
        ))),
        Err(error) => Err(ApiError::internal(format!(
            "cannot resolve the calling user (uid {uid}): {}",
            error.desc()
        ))),
    }
}

/// `--fields` names, checked against the profile's fields, in the given order, without
/// repeats.
pub fn parse_fields(names: &[String]) -> Result<Vec<&'static str>, ApiError> {
    let mut fields: Vec<&'static str> = Vec::new();
    for name in names {
        let name = name.trim();
        if name.is_empty() {
            return Err(ApiError::invalid("fields", "empty field name in --fields"));
        }
        let Some(field) = profile_fields().iter().find(|known| **known == name) else {
            return Err(ApiError::invalid(
                "fields",
                format!(
                    "unknown field '{}' (known: {})",
                    sanitize(name),
                    profile_fields().join(", ")
                ),
            ));
        };
        if !fields.contains(field) {
            fields.push(field);
        }
    }
    if fields.is_empty() {
        return Err(ApiError::invalid("fields", "--fields names no field"));
    }
    Ok(fields)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::args::Cli;
    use clap::Parser;
    use pam_totp_proto::{Algorithm, ErrorCode};

    fn plan_of(args: &[&str]) -> Result<Plan, ApiError> {
        plan_reading(args, || Ok(SecretString::from(STDIN_CODE)))
    }

    /// The code standard input holds in [`plan_of`].
    const STDIN_CODE: &str = "135790";

    fn plan_reading(
        args: &[&str],
        read_code: impl FnOnce() -> Result<SecretString, ApiError>,
    ) -> Result<Plan, ApiError> {
        let cli = Cli::try_parse_from(std::iter::once("pam-totp").chain(args.iter().copied()))
            .expect("arguments parse");
        plan(cli.command, || Ok("me".to_owned()), read_code)
    }

    fn target_of(args: &[&str]) -> Option<String> {
        let error = plan_of(args).expect_err("should be refused");
        assert_eq!(error.code, ErrorCode::InvalidArgument, "{args:?}");
        error.target
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn enroll_maps_to_one_request() {
        let plan = plan_of(&["enroll"]).unwrap();
        assert_eq!(plan.view, View::Enroll { own: true });
        let Request::Enroll(request) = plan.request else {
            panic!("not enroll")
        };
        assert_eq!(
            request,
            EnrollRequest {
                account: "me".into(),
                algorithm: Algorithm::Sha1,
                digits: 6,
                period: 30,
                issuer: None,
                comment: None,
                replace: false,
                code: None,
            }
        );
        let plan = plan_of(&["enroll", "bob", "--algorithm", "sha512"]).unwrap();
        assert_eq!(plan.view, View::Enroll { own: false });
        assert!(matches!(
            plan.request,
            Request::Enroll(EnrollRequest { ref account, algorithm: Algorithm::Sha512, .. })
                if account == "bob"
        ));
    }

    #[test]
    fn each_command_maps_to_its_request() {
        let cases: &[(&[&str], &str, Option<&str>)] = &[
            (&["verify", "123456"], "verify", Some("me")),
            (&["verify", "alice", "123456"], "verify", Some("alice")),
            (&["show"], "show", Some("me")),
            (&["list"], "list", None),
            (&["disable", "bob"], "disable", Some("bob")),
            (&["enable", "bob"], "enable", Some("bob")),
            (&["remove"], "remove", Some("me")),
            (
                &["remove", "bob", "--code", "12345678"],
                "remove",
                Some("bob"),
            ),
            (&["unlock", "bob"], "unlock", Some("bob")),
            (&["codes", "--regenerate"], "codes", Some("me")),
            (&["set", "--comment", "phone"], "set", Some("me")),
            (&["log"], "log", None),
            (&["log", "alice"], "log", Some("alice")),
            (&["status"], "status", None),
        ];
        for (args, op, account) in cases {
            let plan = plan_of(args).unwrap();
            assert_eq!(plan.request.op(), *op, "{args:?}");
            assert_eq!(plan.request.account(), *account, "{args:?}");
        }
    }

    #[test]
    fn bad_values_are_refused_before_connecting() {
        let cases: &[(&[&str], &str)] = &[
            (&["enroll", "--digits", "9"], "digits"),
            (&["enroll", "--period", "5"], "period"),
            (&["enroll", "--issuer", "a:b"], "issuer"),
            (&["enroll", "--comment", "a\nb"], "comment"),
            (&["enroll", "--replace", "--code", "12ab56"], "code"),
            (&["enroll", "--code", "123456"], "replace"),
            (&["enroll", "--", "-bob"], "account"),
            (&["verify", "12345"], "code"),
            (&["verify", "a b", "123456"], "account"),
            (&["remove", "--code", "1"], "code"),
            (&["codes"], "regenerate"),
            (&["codes", "--regenerate", "--code", "x"], "code"),
            (&["set", "--comment", "\u{1b}[2J"], "comment"),
            (&["show", "--fields", "account,secret"], "fields"),
            (&["list", "--fields", ""], "fields"),
            (&["disable", "a:b"], "account"),
            (&["log", "--limit", "0"], "limit"),
            (&["log", "--limit", "10001"], "limit"),
            (&["log", "--since", "yesterday"], "since"),
            (&["log", "a b"], "account"),
        ];
        for (args, target) in cases {
            assert_eq!(target_of(args).as_deref(), Some(*target), "{args:?}");
        }
    }

    #[test]
    fn log_request_fields() {
        let plan = plan_of(&["log"]).unwrap();
        assert_eq!(plan.view, View::Log);
        let Request::Log {
            account,
            since,
            limit,
            before,
        } = plan.request
        else {
            panic!("not log")
        };
        assert_eq!((account, since, limit, before), (None, None, 100, None));
        let plan = plan_of(&[
            "log",
            "bob",
            "--since",
            "2026-11-22T10:00:00Z",
            "--limit",
            "5",
        ])
        .unwrap();
        let Request::Log {
            account,
            since,
            limit,
            before,
        } = plan.request
        else {
            panic!("not log")
        };
        assert_eq!(
            (account.as_deref(), since, limit, before),
            (Some("bob"), Some(1_795_341_600), 5, None)
        );
        let plan = plan_of(&["log", "--since", "1h"]).unwrap();
        let Request::Log { since, .. } = plan.request else {
            panic!("not log")
        };
        let expected = timefmt::unix_now() - 3600;
        assert!(
            since.is_some_and(|s| (s - expected).abs() <= 2),
            "{since:?}"
        );
    }

    #[test]
    fn import_is_prepared_not_planned() {
        let no_code = || -> Result<SecretString, ApiError> { panic!("no code is read") };
        let cli = Cli::try_parse_from(["pam-totp", "import", "oath", "/etc/users.oath"]).unwrap();
        assert!(matches!(
            prepare(cli.command, || Ok("me".into()), no_code).unwrap(),
            Job::Import(ImportSource::Oath(_))
        ));
        let cli = Cli::try_parse_from(["pam-totp", "status"]).unwrap();
        assert!(matches!(
            prepare(cli.command, || Ok("me".into()), no_code).unwrap(),
            Job::Call(_)
        ));
    }

    #[test]
    fn messages_never_repeat_a_code() {
        let error = plan_of(&["verify", "12345a"]).err().unwrap();
        assert!(!error.message.contains("12345a"), "{}", error.message);
    }

    #[test]
    fn caller_is_asked_only_when_needed() {
        let no_code = || -> Result<SecretString, ApiError> { panic!("no code is read") };
        let cli = Cli::try_parse_from(["pam-totp", "show", "alice"]).unwrap();
        let planned = plan(cli.command, || Err(ApiError::internal("no")), no_code).unwrap();
        assert_eq!(planned.request.account(), Some("alice"));
        let cli = Cli::try_parse_from(["pam-totp", "show"]).unwrap();
        let error = plan(cli.command, || Err(ApiError::internal("no")), no_code).err();
        assert_eq!(error.map(|e| e.code), Some(ErrorCode::Internal));
        // The caller's account is resolved before a code is read.
        let cli = Cli::try_parse_from(["pam-totp", "verify"]).unwrap();
        let error = plan(cli.command, || Err(ApiError::internal("no")), no_code).err();
        assert_eq!(error.map(|e| e.code), Some(ErrorCode::Internal));
    }

    /// The code of a planned request.
    fn code_of(plan: &Plan) -> Option<&str> {
        match &plan.request {
            Request::Verify { code, .. } => Some(code.expose()),
            Request::Remove { code, .. } | Request::RegenerateCodes { code, .. } => {
                code.as_ref().map(SecretString::expose)
            }
            Request::Enroll(request) => request.code.as_ref().map(SecretString::expose),
            _ => None,
        }
    }

    #[test]
    fn codes_not_on_the_command_line_are_read() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["verify"], Some("me")),
            (&["verify", "-"], Some("me")),
            (&["verify", "alice", "-"], Some("alice")),
            (&["remove", "--code", "-"], Some("me")),
            (&["remove", "bob", "--code", "-"], Some("bob")),
            (&["codes", "--regenerate", "--code", "-"], Some("me")),
            (&["enroll", "--replace", "--code", "-"], Some("me")),
            (&["enroll", "bob", "--replace", "--code", "-"], Some("bob")),
        ];
        for (args, account) in cases {
            let mut reads = 0;
            let plan = plan_reading(args, || {
                reads += 1;
                Ok(SecretString::from(STDIN_CODE))
            })
            .unwrap();
            assert_eq!(reads, 1, "{args:?}");
            assert_eq!(plan.request.account(), *account, "{args:?}");
            assert_eq!(code_of(&plan), Some(STDIN_CODE), "{args:?}");
        }
        // A code on the command line, or none where none is needed: nothing is read.
        let no_code = || -> Result<SecretString, ApiError> { panic!("no code is read") };
        for (args, code) in [
            (&["verify", "123456"][..], Some("123456")),
            (&["verify", "alice", "12345678"], Some("12345678")),
            (&["remove"], None),
            (&["remove", "--code", "654321"], Some("654321")),
            (&["codes", "--regenerate"], None),
            (&["enroll", "--replace"], None),
        ] {
            let plan = plan_reading(args, no_code).unwrap();
            assert_eq!(code_of(&plan), code, "{args:?}");
        }
    }

    #[test]
    fn a_read_code_is_checked_and_everything_else_first() {
        // Other arguments are refused before anything is read.
        let no_code = || -> Result<SecretString, ApiError> { panic!("no code is read") };
        for (args, target) in [
            (&["verify", "a b", "-"][..], "account"),
            (&["verify", "a b"], "code"),
            (&["remove", "a:b", "--code", "-"], "account"),
            (&["codes", "--code", "-"], "regenerate"),
            (&["enroll", "--code", "-"], "replace"),
            (
                &["enroll", "--digits", "9", "--replace", "--code", "-"],
                "digits",
            ),
        ] {
            let error = plan_reading(args, no_code).err().unwrap();
            assert_eq!(error.target.as_deref(), Some(target), "{args:?}");
        }
        // What was read is validated like a code given as an argument, never repeated.
        for bad in ["12345", "12a456", "-", "", "123456789"] {
            let error = plan_reading(&["verify"], || Ok(SecretString::from(bad)))
                .err()
                .unwrap();
            assert_eq!(error.code, ErrorCode::InvalidArgument, "{bad:?}");
            assert_eq!(error.target.as_deref(), Some("code"), "{bad:?}");
            assert!(bad.is_empty() || !error.message.contains(bad), "{bad:?}");
        }
        // A failed read is the command's error.
        let error = plan_reading(&["remove", "--code", "-"], || {
            Err(ApiError::invalid("code", "no code on standard input"))
        })
        .err()
        .unwrap();
        assert_eq!(error.message, "no code on standard input");
    }

    #[test]
    fn fields_keep_order_and_drop_repeats() {
        assert_eq!(
            parse_fields(&strings(&["uid", "account", " uid ", "can"])).unwrap(),
            vec!["uid", "account", "can"]
        );
        let error = parse_fields(&strings(&["account", "nope"])).err().unwrap();
        assert_eq!(error.target.as_deref(), Some("fields"));
        assert!(error.message.contains("'nope'"));
        assert!(parse_fields(&strings(&["account", ""])).is_err());
        assert!(parse_fields(&[]).is_err());
    }

    #[test]
    fn the_current_user_resolves() {
        // The test runner's own uid normally has a passwd entry.
        if let Ok(name) = caller_account() {
            assert!(validate::account(&name).is_ok());
        }
    }
}
