//! Logins racing on one code through real libpam: 32 `pamtester` processes, each waiting at
//! the prompt until all are there, then all answer with the same code at once. Exactly one
//! may pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use common::race::*;

#[test]
fn thirty_two_logins_racing_on_one_code_let_exactly_one_in() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);

    let outs = race(&[&service], &user.name, &enrolled.code(now));
    exactly_one_success(&outs);
    // The others were replays: refused as wrong codes, and not counted.
    for out in outs.iter().filter(|o| !o.success) {
        out.assert_failure(PAM_AUTH_ERR_TEXT);
    }
    let shown = agent.show(&user.name);
    assert_eq!(shown["failed_attempts"], 0, "{shown}");
    assert!(shown["locked_until"].is_null(), "{shown}");

    // The next step's code still works once.
    pamtester(&service, &user.name, &enrolled.code(now + 30)).assert_success();
}

#[test]
fn thirty_two_logins_racing_on_one_emergency_code_let_exactly_one_in() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, _) = agent.enroll_active(&user.name, &[]);

    let outs = race(&[&service], &user.name, &enrolled.emergency_codes[0]);
    exactly_one_success(&outs);
    // A used emergency code is a wrong code: the losers may have run into the lock.
    for out in outs.iter().filter(|o| !o.success) {
        assert!(
            out.output.contains(PAM_AUTH_ERR_TEXT) || out.output.contains(PAM_MAXTRIES_TEXT),
            "{out}"
        );
    }
    assert_eq!(
        agent.show(&user.name)["emergency_codes_remaining"],
        9,
        "the race used the code more than once"
    );
}
