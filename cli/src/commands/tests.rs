#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::args::Cli;
use crate::timefmt;
use clap::Parser;
use pam_totp_proto::{Algorithm, EnrollRequest, ErrorCode, ProfileKind};

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
            kind: ProfileKind::Totp,
            counter: None,
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
    let plan = plan_of(&["enroll", "--type", "hotp", "--counter", "5"]).unwrap();
    assert!(matches!(
        plan.request,
        Request::Enroll(EnrollRequest {
            kind: ProfileKind::Hotp,
            counter: Some(5),
            ..
        })
    ));
    let plan = plan_of(&["enroll", "--type", "hotp"]).unwrap();
    assert!(matches!(
        plan.request,
        Request::Enroll(EnrollRequest {
            kind: ProfileKind::Hotp,
            counter: None,
            ..
        })
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
        (&["enroll", "--counter", "5"], "counter"),
        (&["enroll", "--type", "totp", "--counter", "0"], "counter"),
        (&["enroll", "--type", "hotp", "--period", "30"], "period"),
        (
            &["enroll", "--type", "hotp", "--counter", "9007199254740993"],
            "counter",
        ),
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
