//! One subcommand -> one validated proto request, plus how its reply is to be shown.

use crate::args::{sanitize, Command, EnrollArgs, ImportSource};
use crate::timefmt::{self, Zone};
use pam_totp_proto::{validate, ApiError, EnrollRequest, Request, SecretString, PROFILE_FIELDS};

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
) -> Result<Job, ApiError> {
    match command {
        Command::Import(source) => Ok(Job::Import(source)),
        command => plan(command, caller).map(Job::Call),
    }
}

#[derive(Debug)]
pub struct Plan {
    pub request: Request,
    pub view: View,
}

/// Validates every argument and builds the request. `caller` resolves the account of the
/// calling user; it is only asked when `[USER]` was left out, after everything else passed.
pub fn plan(
    command: Command,
    caller: impl FnOnce() -> Result<String, ApiError>,
) -> Result<Plan, ApiError> {
    let plan = match command {
        Command::Enroll(args) => enroll(args, caller)?,
        Command::Verify { user, code } => {
            check_code(&code)?;
            let account = account(user, caller)?;
            Plan {
                request: Request::Verify { account, code },
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
            code.as_ref().map(check_code).transpose()?;
            Plan {
                request: Request::Remove {
                    account: account(user, caller)?,
                    code,
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
            code.as_ref().map(check_code).transpose()?;
            Plan {
                request: Request::RegenerateCodes {
                    account: account(user, caller)?,
                    code,
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
) -> Result<Plan, ApiError> {
    validate::digits(args.digits)?;
    validate::period(args.period)?;
    if let Some(issuer) = &args.issuer {
        validate::issuer(issuer)?;
    }
    if let Some(comment) = &args.comment {
        validate::comment(comment)?;
    }
    if let Some(code) = &args.code {
        if !args.replace {
            return Err(ApiError::invalid(
                "replace",
                "--code is only used with --replace",
            ));
        }
        check_code(code)?;
    }
    let own = args.user.is_none();
    Ok(Plan {
        request: Request::Enroll(EnrollRequest {
            account: account(args.user, caller)?,
            algorithm: args.algorithm.into(),
            digits: args.digits,
            period: args.period,
            issuer: args.issuer,
            comment: args.comment,
            replace: args.replace,
            code: args.code,
        }),
        view: View::Enroll { own },
    })
}

fn check_code(code: &SecretString) -> Result<(), ApiError> {
    validate::code(code.expose())
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
        let Some(field) = PROFILE_FIELDS.iter().find(|known| **known == name) else {
            return Err(ApiError::invalid(
                "fields",
                format!(
                    "unknown field '{}' (known: {})",
                    sanitize(name),
                    PROFILE_FIELDS.join(", ")
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
        let cli = Cli::try_parse_from(std::iter::once("pam-totp").chain(args.iter().copied()))
            .expect("arguments parse");
        plan(cli.command, || Ok("me".to_owned()))
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
        } = plan.request
        else {
            panic!("not log")
        };
        assert_eq!((account, since, limit), (None, None, 100));
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
        } = plan.request
        else {
            panic!("not log")
        };
        assert_eq!(
            (account.as_deref(), since, limit),
            (Some("bob"), Some(1_795_341_600), 5)
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
        let cli = Cli::try_parse_from(["pam-totp", "import", "oath", "/etc/users.oath"]).unwrap();
        assert!(matches!(
            prepare(cli.command, || Ok("me".into())).unwrap(),
            Job::Import(ImportSource::Oath(_))
        ));
        let cli = Cli::try_parse_from(["pam-totp", "status"]).unwrap();
        assert!(matches!(
            prepare(cli.command, || Ok("me".into())).unwrap(),
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
        let cli = Cli::try_parse_from(["pam-totp", "show", "alice"]).unwrap();
        let planned = plan(cli.command, || Err(ApiError::internal("no"))).unwrap();
        assert_eq!(planned.request.account(), Some("alice"));
        let cli = Cli::try_parse_from(["pam-totp", "show"]).unwrap();
        let error = plan(cli.command, || Err(ApiError::internal("no"))).err();
        assert_eq!(error.map(|e| e.code), Some(ErrorCode::Internal));
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
