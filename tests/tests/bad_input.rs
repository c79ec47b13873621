//! Bad values are refused with exit 2, `invalid_argument` and the field at fault, and
//! nothing is stored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

#[test]
fn bad_enroll_values_are_refused_and_nothing_is_stored() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let name = user.name.as_str();
    let long_name = "a".repeat(300);
    let long_comment = "x".repeat(257);

    agent.cli(&["enroll", &long_name]).invalid("account");
    agent.cli(&["enroll", "ev\u{7}il"]).invalid("account");
    agent.cli(&["enroll", "new\nline"]).invalid("account");
    agent.cli(&["enroll", "a:b"]).invalid("account");
    agent
        .cli(&["enroll", name, "--comment", &long_comment])
        .invalid("comment");
    agent
        .cli(&["enroll", name, "--comment", "tab\there"])
        .invalid("comment");
    agent
        .cli(&["enroll", name, "--algorithm", "md5"])
        .invalid("algorithm");
    for digits in ["5", "9", "0", "x"] {
        agent
            .cli(&["enroll", name, "--digits", digits])
            .invalid("digits");
    }
    for period in ["0", "5", "100000"] {
        agent
            .cli(&["enroll", name, "--period", period])
            .invalid("period");
    }
    agent
        .cli(&["enroll", name, "--issuer", "a:b"])
        .invalid("issuer");

    // A well-formed name that NSS does not know.
    agent.cli(&["enroll", "pttnosuchuser"]).err(4, "not_found");

    assert!(
        agent.listed_accounts().is_empty(),
        "a refused enroll stored a profile"
    );

    // The boundary values are accepted.
    let ok = agent.enroll(name, &["--comment", &"y".repeat(256)]);
    assert_eq!(ok.profile["comment"], "y".repeat(256));
}

#[test]
fn bad_codes_are_refused_before_they_count() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let (_enrolled, _) = agent.enroll_active(&user.name, &[]);
    for code in ["12a456", "12345", "123456789", "", " 123456", "١٢٣٤٥٦"] {
        agent.cli(&["verify", &user.name, code]).invalid("code");
    }
    agent
        .cli(&["remove", &user.name, "--code", "abcdef"])
        .invalid("code");
    let shown = agent.show(&user.name);
    assert_eq!(shown["failed_attempts"], 0, "{shown}");
    assert_eq!(agent.listed_accounts(), vec![user.name.clone()]);
}

#[test]
fn bad_set_values_leave_the_profile_unchanged() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    agent.enroll(&user.name, &["--comment", "before"]);
    agent
        .cli(&["set", &user.name, "--comment", &"x".repeat(257)])
        .invalid("comment");
    agent
        .cli(&["set", &user.name, "--comment", "bell\u{7}"])
        .invalid("comment");
    assert_eq!(agent.show(&user.name)["comment"], "before");
}

#[test]
fn bad_flags_and_fields() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    agent.enroll(&user.name, &[]);
    agent
        .cli(&["show", &user.name, "--no-such-flag"])
        .err(2, "invalid_argument");
    agent.cli(&["no-such-command"]).err(2, "invalid_argument");
    agent
        .cli(&["show", &user.name, "--fields", "account,secret"])
        .invalid("fields");
    agent.cli(&["list", "--fields", "bogus"]).invalid("fields");
}

#[test]
fn errors_in_human_mode_go_to_stderr() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let out = agent.cli_human(&["enroll", &user.name, "--digits", "9"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stdout.trim().is_empty(),
        "error output on stdout: {out}"
    );
    assert!(
        out.stderr.contains("digits"),
        "stderr does not name the field: {out}"
    );
    let out = agent.cli_human(&["show", &user.name]);
    assert_eq!(out.code, 4, "{out}");
    assert!(!out.stderr.trim().is_empty(), "{out}");
    assert!(agent.listed_accounts().is_empty());
}
