//! Real sudo: an account allowed `ALL` by a sudoers drop-in whose per-user
//! `Defaults:USER pam_service=...` sends its sudo through the test's PAM service; the code
//! is typed on sudo's stdin (`sudo -S`). Covers a right code, a replay, and `grace=`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::sudo::{sudo, sudo_on_tty, sudo_stack, Pty, SudoRule};
use common::*;

#[test]
fn a_right_code_makes_root_once() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::new(&sudo_stack(&agent.socket, ""));
    let _rule = SudoRule::new(&user.name, &service);
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    let code = enrolled.code(now);

    let out = sudo(&user.name, Some(&format!("{code}\n")));
    out.assert_root();
    assert!(
        out.prompted(),
        "sudo did not show the module's prompt: {out}"
    );

    // The same code again: refused as a replay.
    let again = sudo(&user.name, Some(&format!("{code}\n")));
    again.assert_refused();
    assert!(again.prompted(), "{again}");
    // A wrong code: refused.
    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    sudo(&user.name, Some(&format!("{wrong}\n"))).assert_refused();
    assert_eq!(agent.show(&user.name)["failed_attempts"], 1);
    // Nothing typed at all: refused.
    sudo(&user.name, None).assert_refused();

    // The next step's code works.
    sudo(&user.name, Some(&format!("{}\n", enrolled.code(now + 30)))).assert_root();
}

#[test]
fn an_unenrolled_account_is_asked_and_refused() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::new(&sudo_stack(&agent.socket, ""));
    let _rule = SudoRule::new(&user.name, &service);
    let out = sudo(&user.name, Some("123456\n"));
    out.assert_refused();
    assert!(out.prompted(), "no prompt for an unenrolled account: {out}");
}

#[test]
fn without_grace_every_sudo_needs_a_code() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::new(&sudo_stack(&agent.socket, ""));
    let _rule = SudoRule::new(&user.name, &service);
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);

    sudo(&user.name, Some(&format!("{}\n", enrolled.code(now)))).assert_root();
    // Right after: nothing typed, or a wrong code, is refused.
    let out = sudo(&user.name, None);
    out.assert_refused();
    assert!(out.prompted(), "{out}");
    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    sudo(&user.name, Some(&format!("{wrong}\n"))).assert_refused();
}

#[test]
fn with_grace_a_second_sudo_on_the_same_service_needs_no_code() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let first = PamService::new(&sudo_stack(&agent.socket, "grace=60"));
    let other = PamService::new(&sudo_stack(&agent.socket, "grace=60"));
    let rule = SudoRule::new(&user.name, &first);
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    // Grace needs a place to tell logins apart: an interactive sudo's terminal.
    let tty = Pty::open();

    // Before any code login there is nothing to be graceful about.
    let out = sudo_on_tty(&tty, &user.name, None);
    out.assert_refused();
    assert!(out.prompted(), "{out}");

    sudo_on_tty(&tty, &user.name, Some(&format!("{}\n", enrolled.code(now)))).assert_root();
    // Within the grace period: root without typing anything, and without a prompt ...
    let out = sudo_on_tty(&tty, &user.name, None);
    out.assert_root();
    assert!(!out.prompted(), "a grace pass still prompted: {out}");
    // ... and a wrong code on stdin is never even read.
    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    sudo_on_tty(&tty, &user.name, Some(&format!("{wrong}\n"))).assert_root();
    assert_eq!(agent.show(&user.name)["failed_attempts"], 0);
    // Another terminal, or none at all, is another place: a code is asked for.
    sudo_on_tty(&Pty::open(), &user.name, None).assert_refused();
    let out = sudo(&user.name, None);
    out.assert_refused();
    assert!(out.prompted(), "{out}");

    // Another PAM service is another place: it asks, whatever the first one granted.
    rule.use_service(&other);
    let out = sudo_on_tty(&tty, &user.name, None);
    out.assert_refused();
    assert!(out.prompted(), "{out}");
    sudo_on_tty(
        &tty,
        &user.name,
        Some(&format!("{}\n", enrolled.code(now + 30))),
    )
    .assert_root();
    sudo_on_tty(&tty, &user.name, None).assert_root();
}

#[test]
fn grace_runs_out() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::new(&sudo_stack(&agent.socket, "grace=2"));
    let _rule = SudoRule::new(&user.name, &service);
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    // Grace needs a place to tell logins apart: an interactive sudo's terminal.
    let tty = Pty::open();

    sudo_on_tty(&tty, &user.name, Some(&format!("{}\n", enrolled.code(now)))).assert_root();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let out = sudo_on_tty(&tty, &user.name, None);
    out.assert_refused();
    assert!(out.prompted(), "{out}");
}
