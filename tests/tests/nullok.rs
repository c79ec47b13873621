//! `nullok`: accounts without an active, enabled profile get PAM_IGNORE (so the rest of the
//! stack decides); without it they get the prompt and then PAM_AUTH_ERR.
//!
//! A stack of ignores alone fails in libpam, so every stack here ends in pam_permit: the
//! module's own answer is what makes the difference.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

#[test]
fn unenrolled_and_disabled_accounts_pass_only_with_nullok() {
    setup();
    let agent = Agent::start();
    let unenrolled = TestUser::new();
    let disabled = TestUser::new();
    let with_nullok = PamService::totp_then_permit(&agent.socket, "nullok");
    let without = PamService::totp_then_permit(&agent.socket, "");

    let (enrolled, now) = agent.enroll_active(&disabled.name, &[]);
    agent.cli(&["disable", &disabled.name]).ok();
    let code = enrolled.code(now);

    // With nullok: PAM_IGNORE, pam_permit decides, and no prompt is shown.
    let out = pamtester(&with_nullok, &unenrolled.name, "123456");
    out.assert_success();
    assert!(
        !out.output.contains(DEFAULT_PROMPT),
        "nullok prompted an unenrolled account: {out}"
    );
    pamtester(&with_nullok, &disabled.name, &code).assert_success();

    // Without nullok: the prompt is shown all the same, then PAM_AUTH_ERR.
    let out = pamtester(&without, &unenrolled.name, "123456");
    out.assert_failure(PAM_AUTH_ERR_TEXT);
    assert!(
        out.output.contains(DEFAULT_PROMPT),
        "no prompt for an unenrolled account without nullok: {out}"
    );
    pamtester(&without, &disabled.name, &code).assert_failure(PAM_AUTH_ERR_TEXT);
}

#[test]
fn a_pending_profile_is_not_active_for_nullok() {
    setup();
    let agent = Agent::start();
    let pending = TestUser::new();
    let enrolled = agent.enroll(&pending.name, &[]);
    let with_nullok = PamService::totp_then_permit(&agent.socket, "nullok");
    let without = PamService::totp_then_permit(&agent.socket, "");
    let now = wait_for_fresh_step(30);
    pamtester(&with_nullok, &pending.name, &enrolled.code(now)).assert_success();
    pamtester(&without, &pending.name, &enrolled.code(now)).assert_failure(PAM_AUTH_ERR_TEXT);
}

#[test]
fn nullok_still_demands_a_right_code_from_an_active_profile() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let with_nullok = PamService::totp_then_permit(&agent.socket, "nullok");
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);

    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    let out = pamtester(&with_nullok, &user.name, &wrong);
    out.assert_failure(PAM_AUTH_ERR_TEXT);
    assert!(out.output.contains(DEFAULT_PROMPT), "{out}");
    pamtester(&with_nullok, &user.name, &enrolled.code(now)).assert_success();
}

#[test]
fn a_custom_prompt_is_shown() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::totp(&agent.socket, "prompt=Token:");
    let out = pamtester(&service, &user.name, "123456");
    out.assert_failure(PAM_AUTH_ERR_TEXT);
    assert!(out.output.contains("Token:"), "{out}");
    assert!(!out.output.contains(DEFAULT_PROMPT), "{out}");
}

#[test]
fn an_unknown_option_is_a_service_error() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    let service = PamService::totp(&agent.socket, "no_such_option");
    pamtester(&service, &user.name, &enrolled.code(now)).assert_failure("Error in service module");
}
