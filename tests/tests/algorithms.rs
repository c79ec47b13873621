//! Non-default algorithms, lengths and periods: the agent's codes match oathtool's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

/// Enrolls with `flags`, checks what show/the URI report, then verifies and logs in with
/// oathtool codes; a code of the same step under SHA1 is refused when the algorithm differs.
fn enroll_and_login(flags: &[&str], algorithm: &str, digits: u64, period: u64) {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let enrolled = agent.enroll(&user.name, flags);

    let shown = agent.show(&user.name);
    assert_eq!(shown["algorithm"], algorithm, "{shown}");
    assert_eq!(shown["digits"], digits, "{shown}");
    assert_eq!(shown["period"], period, "{shown}");
    assert_eq!(enrolled.profile["algorithm"], algorithm);
    // Authenticator apps read these from the URI (period may be omitted when it is 30).
    let uri = &enrolled.uri;
    assert!(uri.contains(&format!("algorithm={algorithm}")), "{uri}");
    assert!(uri.contains(&format!("digits={digits}")), "{uri}");
    if period != 30 {
        assert!(uri.contains(&format!("period={period}")), "{uri}");
    }

    let now = wait_for_fresh_step(period);
    let previous = enrolled.code(now - period);
    assert_eq!(previous.len() as u64, digits);
    agent.cli(&["verify", &user.name, &previous]).ok();
    assert_eq!(agent.show(&user.name)["verified"], true);

    if algorithm != "SHA1" {
        let sha1 = totp(&enrolled.secret, "sha1", digits as u32, period, now);
        if sha1 != enrolled.code(now) {
            pamtester(&service, &user.name, &sha1).assert_failure(PAM_AUTH_ERR_TEXT);
        }
    }
    pamtester(&service, &user.name, &enrolled.code(now)).assert_success();
    pamtester(&service, &user.name, &enrolled.code(now + period)).assert_success();
}

#[test]
fn sha256_with_8_digits() {
    enroll_and_login(&["--algorithm", "sha256", "--digits", "8"], "SHA256", 8, 30);
}

#[test]
fn sha512_with_7_digits() {
    enroll_and_login(&["--algorithm", "sha512", "--digits", "7"], "SHA512", 7, 30);
}

#[test]
fn sha1_with_a_60_second_period() {
    enroll_and_login(&["--algorithm", "sha1", "--period", "60"], "SHA1", 6, 60);
}
