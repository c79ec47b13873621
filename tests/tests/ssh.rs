//! Real ssh logins: a private sshd (a copy of /usr/sbin/sshd on a loopback port) whose PAM
//! stack holds the module, driven by the OpenSSH client on a terminal (`expect`).
//!
//! Key + code (`AuthenticationMethods publickey,keyboard-interactive`): a fresh code logs in;
//! a wrong code and a replayed code do not. `forward_pass` with pam_unix: "password+code" in
//! one answer. A locked account is told when to retry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::sshd::{Sshd, CODE_ONLY, KEY_THEN_CODE};
use common::*;

/// The module, then pam_permit for account and session (sshd runs all three).
fn key_then_code_stack(agent: &Agent) -> Vec<String> {
    vec![
        totp_line(&agent.socket, ""),
        "account required pam_permit.so".to_owned(),
        "session required pam_permit.so".to_owned(),
    ]
}

/// An account that can run a remote command (a real shell).
fn ssh_user() -> TestUser {
    let user = TestUser::new();
    user.set_shell("/bin/bash");
    user
}

#[test]
fn key_and_fresh_code_log_in() {
    setup();
    let agent = Agent::start();
    let user = ssh_user();
    let server = Sshd::start(&key_then_code_stack(&agent), KEY_THEN_CODE);
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);

    let login = server.ssh(&user.name, true, &[(DEFAULT_PROMPT, &enrolled.code(now))]);
    login.assert_logged_in();
    let shown = agent.show(&user.name);
    assert!(
        shown["last_used_at"].as_str().is_some_and(is_rfc3339_utc),
        "last_used_at after an ssh login: {shown}"
    );
    assert_eq!(shown["failed_attempts"], 0, "{shown}");
}

#[test]
fn a_wrong_code_is_refused() {
    setup();
    let agent = Agent::start();
    let user = ssh_user();
    let server = Sshd::start(&key_then_code_stack(&agent), KEY_THEN_CODE);
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);

    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    let login = server.ssh(&user.name, true, &[(DEFAULT_PROMPT, &wrong)]);
    login.assert_refused();
    // The module's prompt was shown (the key alone got the client that far) ...
    assert_eq!(login.dialog.answered, 1, "{login}");
    // ... and the agent counted the failure.
    let shown = agent.show(&user.name);
    assert_eq!(shown["failed_attempts"], 1, "{shown}");

    // The right code still works afterwards.
    server
        .ssh(&user.name, true, &[(DEFAULT_PROMPT, &enrolled.code(now))])
        .assert_logged_in();
}

#[test]
fn the_code_just_used_is_refused_on_a_second_login() {
    setup();
    let agent = Agent::start();
    let user = ssh_user();
    let server = Sshd::start(&key_then_code_stack(&agent), KEY_THEN_CODE);
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    let code = enrolled.code(now);

    server
        .ssh(&user.name, true, &[(DEFAULT_PROMPT, &code)])
        .assert_logged_in();
    let replay = server.ssh(&user.name, true, &[(DEFAULT_PROMPT, &code)]);
    replay.assert_refused();
    assert_eq!(replay.dialog.answered, 1, "{replay}");
    // A replay is refused but not counted as a failure.
    assert_eq!(agent.show(&user.name)["failed_attempts"], 0);

    // The next time step's code is new, so it is accepted.
    server
        .ssh(
            &user.name,
            true,
            &[(DEFAULT_PROMPT, &enrolled.code(now + 30))],
        )
        .assert_logged_in();
}

#[test]
fn forward_pass_takes_password_and_code_in_one_answer() {
    setup();
    let agent = Agent::start();
    let user = ssh_user();
    let password = "Corr3ct-horse";
    user.set_password(password);
    let stack = vec![
        format!(
            "auth requisite {} socket={} forward_pass",
            module_path().display(),
            agent.socket.display()
        ),
        "auth required pam_unix.so use_first_pass".to_owned(),
        "account required pam_permit.so".to_owned(),
        "session required pam_permit.so".to_owned(),
    ];
    let server = Sshd::start(&stack, CODE_ONLY);
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    let wrong = enrolled.wrong_codes(now, 1).remove(0);

    // A wrong password with a right code: pam_unix refuses, so no login.
    let answer = format!("Wr0ng-horse{}", enrolled.code(now));
    let login = server.ssh(&user.name, false, &[(DEFAULT_PROMPT, &answer)]);
    login.assert_refused();
    assert_eq!(login.dialog.answered, 1, "one prompt only: {login}");
    // The code itself was accepted (and so is used up now): the password made the refusal.
    assert_eq!(agent.show(&user.name)["failed_attempts"], 0);
    agent
        .cli(&["verify", &user.name, &enrolled.code(now)])
        .err(9, "code_rejected");

    // The right password with a wrong code: the module refuses.
    let answer = format!("{password}{wrong}");
    server
        .ssh(&user.name, false, &[(DEFAULT_PROMPT, &answer)])
        .assert_refused();
    assert_eq!(agent.show(&user.name)["failed_attempts"], 1);

    // The right password and a fresh code, in one answer: logged in.
    let answer = format!("{password}{}", enrolled.code(now + 30));
    let login = server.ssh(&user.name, false, &[(DEFAULT_PROMPT, &answer)]);
    login.assert_logged_in();
    assert!(
        !login.output().contains("assword:"),
        "pam_unix prompted on its own: {login}"
    );
}

/// Lockout defaults with a long first lock, so it cannot expire during the test.
const LONG_LOCK: &str = "\
self_enroll = true
window = 1

[lockout]
threshold = 5
base_seconds = 600
max_seconds = 900
";

#[test]
fn a_locked_account_is_told_when_to_try_again() {
    setup();
    let agent = Agent::with_config(LONG_LOCK);
    let user = ssh_user();
    let server = Sshd::start(&key_then_code_stack(&agent), KEY_THEN_CODE);
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    for code in enrolled.wrong_codes(now, 5) {
        let out = agent.cli(&["verify", &user.name, &code]);
        assert!(matches!(out.code, 7 | 9), "{out}");
    }
    agent
        .cli(&["verify", &user.name, &enrolled.code(now)])
        .err(7, "rate_limited");

    // Even the right code does not get in, and the client shows the module's message.
    let login = server.ssh(&user.name, true, &[(DEFAULT_PROMPT, &enrolled.code(now))]);
    login.assert_refused();
    assert!(
        login.output().contains("Too many failed attempts")
            && login.output().contains("try again in"),
        "the lock message did not reach the ssh client: {login}"
    );
}
