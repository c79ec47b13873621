//! Guessing codes, per source and per account: a source (the remote host, else the remote
//! user, else "local" for root; always the caller's uid for a non-root caller, whose PAM items
//! are not trusted) is blocked after `source_threshold` failures while other sources still get
//! their codes checked; failures over all sources lock the account at `threshold`. Replays
//! count nowhere, `unlock` clears the account and its sources, and all of it survives a
//! restart. Logins come through real libpam with `pamtester -I rhost=... / ruser=...`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::faults::{pamtester_from, pamtester_items};
use common::*;

const HOST_A: &str = "198.51.100.7";
const HOST_B: &str = "203.0.113.9";
const HOST_C: &str = "192.0.2.33";
const HOST_D: &str = "198.51.100.200";

/// A blocked source or a locked account: PAM_MAXTRIES, with when to try again.
#[track_caller]
fn assert_blocked(out: &PamOut) {
    out.assert_failure(PAM_MAXTRIES_TEXT);
    assert!(
        out.output.contains("try again in"),
        "the block does not say when to try again: {out}"
    );
}

/// A code that was checked and refused (not a block).
#[track_caller]
fn assert_refused(out: &PamOut) {
    out.assert_failure(PAM_AUTH_ERR_TEXT);
}

/// `count` wrong codes from one source; all but the last must be refused as wrong, the last
/// may already answer with the block.
#[track_caller]
fn guess(count: usize, mut attempt: impl FnMut(&str) -> PamOut, wrong: &[String]) {
    assert!(wrong.len() >= count);
    for (i, code) in wrong.iter().take(count).enumerate() {
        let out = attempt(code);
        if i + 1 < count {
            assert_refused(&out);
        } else {
            assert!(!out.success, "a wrong code succeeded: {out}");
        }
    }
}

/// Per-source blocking with a long block, and an account threshold out of reach.
const PER_SOURCE: &str = "\
self_enroll = true
window = 1

[lockout]
threshold = 20
base_seconds = 600
max_seconds = 900
source_threshold = 5
source_base_seconds = 600
";

#[test]
fn five_failures_block_one_remote_host_and_not_the_others() {
    setup();
    let mut agent = Agent::with_config(PER_SOURCE);
    let user = TestUser::new();
    let name = user.name.as_str();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(name, &[]);
    let emergency = &enrolled.emergency_codes;
    let wrong = enrolled.wrong_codes(now, 10);

    // Five wrong codes from host A block host A ...
    guess(
        5,
        |code| pamtester_from(&service, name, code, HOST_A),
        &wrong,
    );
    // ... even with a right code, which is not even looked at (so not used up) ...
    assert_blocked(&pamtester_from(&service, name, &emergency[0], HOST_A));
    // ... while host B logs in with that very code.
    pamtester_from(&service, name, &emergency[0], HOST_B).assert_success();
    let shown = agent.show(name);
    assert!(
        shown["locked_until"].is_null(),
        "the account locked: {shown}"
    );
    assert_eq!(shown["emergency_codes_remaining"], 9, "{shown}");
    assert_eq!(
        shown["failed_attempts"], 0,
        "B's success clears the account: {shown}"
    );

    // B's success cleared B's and the account's count, not A's block.
    assert_blocked(&pamtester_from(&service, name, &enrolled.code(now), HOST_A));
    pamtester_from(&service, name, &enrolled.code(now), HOST_B).assert_success();
    // Host C still has its codes checked: a wrong one is a wrong code, not a block.
    assert_refused(&pamtester_from(&service, name, &wrong[5], HOST_C));

    // Replays count nowhere: six replays from C do not block C.
    for _ in 0..6 {
        assert_refused(&pamtester_from(&service, name, &enrolled.code(now), HOST_C));
    }
    pamtester_from(&service, name, &enrolled.code(now + 30), HOST_C).assert_success();

    // The block survives a restart.
    agent.restart();
    assert_blocked(&pamtester_from(&service, name, &emergency[1], HOST_A));
    pamtester_from(&service, name, &emergency[1], HOST_B).assert_success();

    // unlock clears the account and every source.
    agent.cli(&["unlock", name]).ok();
    pamtester_from(&service, name, &emergency[2], HOST_A).assert_success();
}

#[test]
fn without_a_remote_host_the_remote_user_or_local_is_the_source() {
    setup();
    let agent = Agent::with_config(PER_SOURCE);
    let user = TestUser::new();
    let name = user.name.as_str();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(name, &[]);
    let emergency = &enrolled.emergency_codes;
    let wrong = enrolled.wrong_codes(now, 10);
    let from_ruser =
        |ruser: &str, code: &str| pamtester_items(None, &service, name, code, &[("ruser", ruser)]);

    // Root's caller names a remote user (no remote host): that user is the source.
    guess(5, |code| from_ruser("mallory", code), &wrong);
    assert_blocked(&from_ruser("mallory", &emergency[0]));
    from_ruser("trent", &emergency[0]).assert_success();
    // No items at all: "local", a source of its own.
    pamtester(&service, name, &emergency[1]).assert_success();
    assert_blocked(&from_ruser("mallory", &emergency[2]));
    // A remote host outranks the remote user: with both, the host is the source.
    pamtester_items(
        None,
        &service,
        name,
        &emergency[2],
        &[("rhost", HOST_B), ("ruser", "mallory")],
    )
    .assert_success();

    // "local" is blocked after five failures of its own; hosts are not.
    guess(5, |code| pamtester(&service, name, code), &wrong[5..]);
    assert_blocked(&pamtester(&service, name, &emergency[3]));
    pamtester_from(&service, name, &emergency[3], HOST_C).assert_success();
}

#[test]
fn a_non_root_caller_is_one_source_whatever_host_it_claims() {
    setup();
    let agent = Agent::with_config(PER_SOURCE);
    let user = TestUser::new();
    let name = user.name.as_str();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(name, &[]);
    let emergency = &enrolled.emergency_codes;
    let wrong = enrolled.wrong_codes(now, 5);

    // The account's own process (a screen locker) claims a new remote host each time.
    let claimed = |i: usize| format!("198.51.100.{}", 101 + i);
    for (i, code) in wrong.iter().enumerate() {
        let host = claimed(i);
        let out = pamtester_items(Some(name), &service, name, code, &[("rhost", &host)]);
        if i + 1 < wrong.len() {
            assert_refused(&out);
        } else {
            assert!(!out.success, "a wrong code succeeded: {out}");
        }
    }
    // Its uid is the source: blocked, whichever host it names next ...
    let host = claimed(9);
    let out = pamtester_items(
        Some(name),
        &service,
        name,
        &emergency[0],
        &[("rhost", &host)],
    );
    assert_blocked(&out);
    assert_blocked(&pamtester_as(name, &service, name, &emergency[0]));
    // ... while root's logins, from anywhere, still have their codes checked.
    pamtester_from(&service, name, &emergency[0], &host).assert_success();
    pamtester(&service, name, &enrolled.code(now)).assert_success();
}

/// The account locks at 6 failures over all sources; one source alone is blocked at 3.
const SPREAD: &str = "\
self_enroll = true
window = 1

[lockout]
threshold = 6
base_seconds = 600
max_seconds = 900
source_threshold = 3
source_base_seconds = 600
";

#[test]
fn failures_spread_over_hosts_lock_the_account_for_everyone() {
    setup();
    let mut agent = Agent::with_config(SPREAD);
    let user = TestUser::new();
    let name = user.name.as_str();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(name, &[]);
    let emergency = &enrolled.emergency_codes;
    let wrong = enrolled.wrong_codes(now, 6);

    // Two wrong codes from each of three hosts: no host reaches its own limit (3) ...
    for (i, host) in [HOST_A, HOST_B, HOST_C].iter().enumerate() {
        for code in &wrong[2 * i..2 * i + 2] {
            let out = pamtester_from(&service, name, code, host);
            assert!(!out.success, "a wrong code succeeded: {out}");
            if i < 2 {
                assert_refused(&out);
            }
        }
    }
    // ... but together they lock the account.
    let shown = agent.show(name);
    assert!(
        shown["locked_until"].as_str().is_some_and(is_rfc3339_utc),
        "six failures over three hosts did not lock the account: {shown}"
    );
    assert!(
        shown["failed_attempts"].as_u64().is_some_and(|n| n >= 6),
        "{shown}"
    );
    // Locked for everyone: a fresh host, local root, the CLI; a TOTP code is not looked at
    // (only emergency codes are, the owner's way back: tests/tests/lockout_escape.rs).
    let code = enrolled.code(now);
    assert_blocked(&pamtester_from(&service, name, &code, HOST_D));
    assert_blocked(&pamtester(&service, name, &code));
    agent.cli(&["verify", name, &code]).err(7, "rate_limited");

    // The lock survives a restart.
    agent.restart();
    assert_blocked(&pamtester_from(&service, name, &code, HOST_D));
    assert!(agent.show(name)["locked_until"].is_string());

    // unlock opens it; the refused code was not used up.
    agent.cli(&["unlock", name]).ok();
    let shown = agent.show(name);
    assert!(shown["locked_until"].is_null(), "{shown}");
    assert_eq!(shown["failed_attempts"], 0, "{shown}");
    pamtester_from(&service, name, &code, HOST_A).assert_success();
    pamtester_from(&service, name, &emergency[0], HOST_D).assert_success();
}
