//! Repeated failures lock the account, through PAM and the CLI; the lock survives an agent
//! restart and `unlock` clears it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

/// The lockout defaults, but a long first lock so a slow machine cannot see it expire
/// in the middle of the test.
const LONG_LOCK: &str = "\
self_enroll = true
window = 1

[lockout]
threshold = 5
base_seconds = 600
max_seconds = 900
";

#[test]
fn five_failures_lock_until_unlock_even_across_restart() {
    setup();
    let mut agent = Agent::with_config(LONG_LOCK);
    let user = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);

    let wrong = enrolled.wrong_codes(now, 5);
    for (i, code) in wrong.iter().enumerate().take(4) {
        let out = pamtester(&service, &user.name, code);
        out.assert_failure(PAM_AUTH_ERR_TEXT);
        assert_eq!(
            agent.show(&user.name)["failed_attempts"],
            i + 1,
            "after {} wrong codes",
            i + 1
        );
    }
    // The fifth failure locks (its own answer may already say so).
    let fifth = pamtester(&service, &user.name, &wrong[4]);
    assert!(!fifth.success, "a wrong code succeeded: {fifth}");

    // Locked: even the right code is not checked.
    let right = enrolled.code(now);
    pamtester(&service, &user.name, &right).assert_failure(PAM_MAXTRIES_TEXT);
    let out = agent.cli(&["verify", &user.name, &right]);
    out.err(7, "rate_limited");
    let shown = agent.show(&user.name);
    assert!(
        shown["locked_until"].as_str().is_some_and(is_rfc3339_utc),
        "locked_until while locked: {shown}"
    );
    assert!(
        shown["failed_attempts"].as_u64().is_some_and(|n| n >= 5),
        "failed_attempts while locked: {shown}"
    );
    // The message says when to retry; without --json it goes to stderr.
    let human = agent.cli_human(&["verify", &user.name, &right]);
    assert_eq!(human.code, 7, "{human}");
    assert!(
        !human.stderr.trim().is_empty(),
        "no message on stderr: {human}"
    );

    // The lock survives a restart.
    let stopped = agent.restart();
    pamtester(&service, &user.name, &right).assert_failure(PAM_MAXTRIES_TEXT);
    agent
        .cli(&["verify", &user.name, &right])
        .err(7, "rate_limited");

    // unlock clears it.
    agent.cli(&["unlock", &user.name]).ok();
    let shown = agent.show(&user.name);
    assert_eq!(shown["failed_attempts"], 0, "{shown}");
    assert!(shown["locked_until"].is_null(), "{shown}");
    let now = wait_for_fresh_step(enrolled.period);
    pamtester(&service, &user.name, &enrolled.code(now)).assert_success();

    assert!(
        stopped.is_some_and(|s| s.success()),
        "pam-totp-agent did not exit 0 on SIGTERM: {stopped:?}; log:\n{}",
        agent.log_text()
    );
}

#[test]
fn replayed_codes_do_not_count_towards_the_lock() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    let used = enrolled.code(now);
    pamtester(&service, &user.name, &used).assert_success();
    for _ in 0..6 {
        pamtester(&service, &user.name, &used).assert_failure(PAM_AUTH_ERR_TEXT);
    }
    let shown = agent.show(&user.name);
    assert_eq!(shown["failed_attempts"], 0, "{shown}");
    assert!(shown["locked_until"].is_null(), "{shown}");
    pamtester(&service, &user.name, &enrolled.code(now + 30)).assert_success();
}

#[test]
fn a_lock_is_per_account() {
    setup();
    let agent = Agent::with_config(LONG_LOCK);
    let locked = TestUser::new();
    let other = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(&locked.name, &[]);
    let (other_enrolled, _) = agent.enroll_active(&other.name, &[]);
    let wrong = enrolled.wrong_codes(now, 5);
    for code in &wrong[..4] {
        agent
            .cli(&["verify", &locked.name, code])
            .err(9, "code_rejected");
    }
    // The fifth failure locks (its own answer may already say so).
    let fifth = agent.cli(&["verify", &locked.name, &wrong[4]]);
    assert!(matches!(fifth.code, 7 | 9), "{fifth}");
    agent
        .cli(&["verify", &locked.name, &enrolled.code(now)])
        .err(7, "rate_limited");
    let now = wait_for_fresh_step(30);
    pamtester(&service, &other.name, &other_enrolled.code(now)).assert_success();
}
