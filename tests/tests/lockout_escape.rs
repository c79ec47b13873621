//! The owner's way back into an account locked by someone else's guessing (issue 10, item 7).
//! Failures spread over many remote hosts lock the account for everyone; a TOTP code is then
//! not looked at, but an emergency code from a source that is not itself blocked logs in. A
//! source blocked by its own failures gets nowhere, emergency code or not. `show` lists the
//! blocked sources (`blocked_sources`), and `unlock` clears them.
//!
//! Defaults: 5 failures from one source block it (30 s, doubling), 20 over all sources lock
//! the account.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::faults::pamtester_from;
use common::*;
use serde_json::Value;

/// The remote host whose own guessing gets it blocked.
const GUESSER: &str = "203.0.113.9";
const GUESSER_SOURCE: &str = "rhost:203.0.113.9";
/// Hosts that never failed before they try.
const FRESH: &str = "192.0.2.33";
const FRESH_2: &str = "192.0.2.34";

/// The Nth of the hosts whose one failure each adds up to the lock.
fn spread_host(n: usize) -> String {
    format!("198.51.100.{n}")
}

/// The default limits, with first locks long enough that no slow run sees them expire.
const LONG_LOCKS: &str = "\
self_enroll = true
window = 1

[lockout]
threshold = 20
base_seconds = 600
max_seconds = 900
source_threshold = 5
source_base_seconds = 600
";

/// A blocked source or a locked account: PAM_MAXTRIES, with when to try again.
#[track_caller]
fn assert_blocked(out: &PamOut) {
    out.assert_failure(PAM_MAXTRIES_TEXT);
    assert!(
        out.output.contains("try again in"),
        "the refusal does not say when to try again: {out}"
    );
}

/// Seconds since the epoch of an RFC 3339 UTC time (`YYYY-MM-DDTHH:MM:SS[.frac]Z`).
fn unix_time(text: &str) -> i64 {
    assert!(is_rfc3339_utc(text), "not RFC 3339 UTC: {text:?}");
    let number = |range: std::ops::Range<usize>| text[range].parse::<i64>().unwrap();
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let (hour, minute, second) = (number(11..13), number(14..16), number(17..19));
    // Days from 1970-01-01 to the date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hour * 3600 + minute * 60 + second
}

/// The `blocked_sources` array of a profile, each entry checked for its exact fields.
#[track_caller]
fn blocked_sources(shown: &Value) -> Vec<Value> {
    let sources = shown["blocked_sources"]
        .as_array()
        .unwrap_or_else(|| panic!("`blocked_sources` is not an array: {shown}"))
        .clone();
    for source in &sources {
        assert_eq!(
            keys(source),
            ["blocked_until", "failed_attempts", "source"],
            "a blocked source's fields: {shown}"
        );
        assert!(
            source["blocked_until"].as_str().is_some_and(is_rfc3339_utc),
            "blocked_until of a blocked source: {shown}"
        );
    }
    sources
}

/// The one blocked source `source`, asserting it is the only one.
#[track_caller]
fn only_blocked(shown: &Value, source: &str) -> Value {
    let sources = blocked_sources(shown);
    assert_eq!(sources.len(), 1, "expected only {source} blocked: {shown}");
    assert_eq!(sources[0]["source"].as_str(), Some(source), "{shown}");
    sources[0].clone()
}

#[test]
fn an_emergency_code_opens_an_account_locked_from_elsewhere() {
    setup();
    let agent = Agent::with_config(LONG_LOCKS);
    let user = TestUser::new();
    let name = user.name.as_str();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(name, &[]);
    let emergency = &enrolled.emergency_codes;
    let wrong = enrolled.wrong_codes(now, 30);

    // One wrong code from each of 20 hosts: no host is blocked, the account locks at 20.
    for (n, code) in wrong.iter().enumerate().take(20).skip(1) {
        pamtester_from(&service, name, code, &spread_host(n)).assert_failure(PAM_AUTH_ERR_TEXT);
    }
    let shown = agent.show(name);
    assert!(shown["locked_until"].is_null(), "locked at 19: {shown}");
    assert_eq!(shown["failed_attempts"], 19, "{shown}");
    let out = pamtester_from(&service, name, &wrong[20], &spread_host(20));
    assert!(!out.success, "a wrong code succeeded: {out}");
    let shown = agent.show(name);
    assert!(
        shown["locked_until"].as_str().is_some_and(is_rfc3339_utc),
        "20 failures over 20 hosts did not lock the account: {shown}"
    );
    assert!(
        blocked_sources(&shown).is_empty(),
        "one failure blocked a host: {shown}"
    );

    // Locked: the right TOTP code, from a host that never failed, is not looked at.
    let code = enrolled.code(now);
    assert_blocked(&pamtester_from(&service, name, &code, FRESH));
    agent.cli(&["verify", name, &code]).err(7, "rate_limited");

    // While locked, a 6-digit guess is not even looked at (it cannot be an emergency code)...
    assert_blocked(&pamtester_from(&service, name, &wrong[21], GUESSER));
    assert_eq!(agent.show(name)["failed_attempts"], 20);
    // ... and a host that keeps guessing emergency codes gets itself blocked.
    let guesses: Vec<String> = (0..5)
        .map(|i| format!("{:08}", 31_415_900 + i))
        .filter(|guess| !emergency.contains(guess))
        .collect();
    assert_eq!(guesses.len(), 5);
    for guess in &guesses {
        assert_blocked(&pamtester_from(&service, name, guess, GUESSER));
    }
    let blocked = only_blocked(&agent.show(name), GUESSER_SOURCE);
    assert_eq!(blocked["failed_attempts"], 5, "{blocked}");
    let until = unix_time(blocked["blocked_until"].as_str().unwrap());
    let left = until - now as i64;
    assert!(
        (500..=700).contains(&left),
        "a 600 s block ends {left} s after the test started: {blocked}"
    );

    // From the blocked host even an emergency code is refused (and not used up) ...
    assert_blocked(&pamtester_from(&service, name, &emergency[0], GUESSER));
    assert_eq!(agent.show(name)["emergency_codes_remaining"], 10);
    // ... while from a host that is not blocked it logs in, and clears the account's lock.
    pamtester_from(&service, name, &emergency[0], FRESH).assert_success();
    let shown = agent.show(name);
    assert_eq!(shown["emergency_codes_remaining"], 9, "{shown}");
    assert!(shown["locked_until"].is_null(), "{shown}");
    assert_eq!(shown["failed_attempts"], 0, "{shown}");
    // The used emergency code is gone; the guessing host stays blocked.
    pamtester_from(&service, name, &emergency[0], FRESH_2).assert_failure(PAM_AUTH_ERR_TEXT);
    assert_blocked(&pamtester_from(&service, name, &emergency[1], GUESSER));
    let shown = agent.show(name);
    assert_eq!(keys(&shown), profile_fields(), "{shown}");
    only_blocked(&shown, GUESSER_SOURCE);

    // The human `show` names the blocked source.
    let human = agent.cli_human(&["show", name]);
    assert_eq!(human.code, 0, "{human}");
    assert!(
        human.stdout.contains(GUESSER),
        "the human show does not mention the blocked source {GUESSER}: {human}"
    );

    // unlock clears every blocked source; the refused emergency code was not used up.
    agent.cli(&["unlock", name]).ok();
    let shown = agent.show(name);
    assert!(blocked_sources(&shown).is_empty(), "{shown}");
    pamtester_from(&service, name, &emergency[1], GUESSER).assert_success();
    assert_eq!(agent.show(name)["emergency_codes_remaining"], 8);
}

#[test]
fn the_default_limits_five_per_source_and_twenty_per_account() {
    setup();
    // An empty configuration: every limit at its default.
    let agent = Agent::with_config("");
    let user = TestUser::new();
    let name = user.name.as_str();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(name, &[]);
    let emergency = &enrolled.emergency_codes;
    let wrong = enrolled.wrong_codes(now, 30);

    // Five failures from one host block it, for 30 s; four do not.
    for guess in &wrong[..4] {
        pamtester_from(&service, name, guess, GUESSER).assert_failure(PAM_AUTH_ERR_TEXT);
    }
    assert!(blocked_sources(&agent.show(name)).is_empty());
    let out = pamtester_from(&service, name, &wrong[4], GUESSER);
    assert!(!out.success, "a wrong code succeeded: {out}");
    let shown = agent.show(name);
    let blocked = only_blocked(&shown, GUESSER_SOURCE);
    assert_eq!(blocked["failed_attempts"], 5, "{shown}");
    let left = unix_time(blocked["blocked_until"].as_str().unwrap()) - now as i64;
    assert!(
        (20..=50).contains(&left),
        "the default first block is 30 s, this one ends in {left} s: {shown}"
    );
    assert!(shown["locked_until"].is_null(), "{shown}");
    assert_blocked(&pamtester_from(&service, name, &emergency[0], GUESSER));

    // Fifteen more failures, one from each of fifteen hosts, make twenty: the account locks
    // at the twentieth and not before.
    for n in 1..=14 {
        pamtester_from(&service, name, &wrong[4 + n], &spread_host(n))
            .assert_failure(PAM_AUTH_ERR_TEXT);
    }
    let shown = agent.show(name);
    assert!(shown["locked_until"].is_null(), "locked at 19: {shown}");
    let out = pamtester_from(&service, name, &wrong[19], &spread_host(15));
    assert!(!out.success, "a wrong code succeeded: {out}");
    let shown = agent.show(name);
    let locked_until = shown["locked_until"]
        .as_str()
        .unwrap_or_else(|| panic!("20 failures did not lock the account: {shown}"));
    let left = unix_time(locked_until) - now as i64;
    assert!(
        (20..=50).contains(&left),
        "the default first lock is 30 s, this one ends in {left} s: {shown}"
    );

    // Locked: a TOTP code from a fresh host is not looked at; an emergency code from the
    // blocked host is refused; one from a fresh host logs in.
    assert_blocked(&pamtester_from(&service, name, &enrolled.code(now), FRESH));
    assert_blocked(&pamtester_from(&service, name, &emergency[0], GUESSER));
    pamtester_from(&service, name, &emergency[0], FRESH_2).assert_success();
}
