//! A profile's life: enroll (pending) -> verify (active) -> logins through real libpam,
//! replay and wrong-code refusals, single-use emergency codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

#[test]
fn enroll_verify_login_replay_and_emergency_codes() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::totp(&agent.socket, "");

    // Enroll: a pending profile, with a secret, a URI and 10 emergency codes, shown once.
    let enrolled = agent.enroll(&user.name, &[]);
    assert!(
        enrolled.uri.starts_with("otpauth://totp/"),
        "otpauth_uri: {}",
        enrolled.uri
    );
    assert!(
        enrolled
            .uri
            .contains(&format!("secret={}", enrolled.secret.trim_end_matches('='))),
        "the URI does not carry the secret: {}",
        enrolled.uri
    );
    assert_eq!(enrolled.emergency_codes.len(), 10, "{:?}", enrolled.profile);
    for code in &enrolled.emergency_codes {
        assert!(
            code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()),
            "emergency code {code:?} is not 8 digits"
        );
    }
    let profile = &enrolled.profile;
    assert_eq!(profile["account"], user.name.as_str());
    assert_eq!(profile["uid"], user.uid);
    assert_eq!(profile["verified"], false);
    assert_eq!(profile["enabled"], true);
    assert_eq!(profile["emergency_codes_remaining"], 10);
    assert_eq!(
        (
            enrolled.algorithm.as_str(),
            enrolled.digits,
            enrolled.period
        ),
        ("sha1", 6, 30),
        "defaults are SHA1, 6 digits, 30 s"
    );

    let now = wait_for_fresh_step(enrolled.period);
    let (previous, current, next) = (
        enrolled.code(now - 30),
        enrolled.code(now),
        enrolled.code(now + 30),
    );

    // A pending profile cannot satisfy a login, even with a valid fresh code.
    pamtester(&service, &user.name, &next).assert_failure(PAM_AUTH_ERR_TEXT);

    // verify activates it.
    agent.cli(&["verify", &user.name, &previous]).ok();
    let shown = agent.show(&user.name);
    assert_eq!(shown["verified"], true, "{shown}");
    assert!(
        shown["verified_at"].as_str().is_some_and(is_rfc3339_utc),
        "verified_at after verify: {shown}"
    );

    // Login with the current step's code.
    pamtester(&service, &user.name, &current).assert_success();
    let shown = agent.show(&user.name);
    assert!(
        shown["last_used_at"].as_str().is_some_and(is_rfc3339_utc),
        "last_used_at after a login: {shown}"
    );

    // The same code again is refused: by PAM and by the CLI (code_rejected, exit 9).
    pamtester(&service, &user.name, &current).assert_failure(PAM_AUTH_ERR_TEXT);
    agent
        .cli(&["verify", &user.name, &current])
        .err(9, "code_rejected");
    // An older step than the last accepted one is refused too.
    agent
        .cli(&["verify", &user.name, &previous])
        .err(9, "code_rejected");
    // Replays are not counted as failures.
    assert_eq!(agent.show(&user.name)["failed_attempts"], 0);

    // A wrong code is refused and counted.
    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    pamtester(&service, &user.name, &wrong).assert_failure(PAM_AUTH_ERR_TEXT);
    assert_eq!(agent.show(&user.name)["failed_attempts"], 1);

    // An emergency code works once, and not twice.
    let emergency = &enrolled.emergency_codes[3];
    pamtester(&service, &user.name, emergency).assert_success();
    let shown = agent.show(&user.name);
    assert_eq!(shown["emergency_codes_remaining"], 9, "{shown}");
    assert_eq!(
        shown["failed_attempts"], 0,
        "a success resets failures: {shown}"
    );
    pamtester(&service, &user.name, emergency).assert_failure(PAM_AUTH_ERR_TEXT);
    agent
        .cli(&["verify", &user.name, emergency])
        .err(9, "code_rejected");
    assert_eq!(agent.show(&user.name)["emergency_codes_remaining"], 9);

    // Another emergency code through the CLI: consumed as well.
    agent
        .cli(&["verify", &user.name, &enrolled.emergency_codes[7]])
        .ok();
    assert_eq!(agent.show(&user.name)["emergency_codes_remaining"], 8);
}

#[test]
fn enroll_twice_needs_replace_and_replace_issues_a_new_secret() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let first = agent.enroll(&user.name, &[]);
    agent.cli(&["enroll", &user.name]).err(5, "already_exists");
    let second = agent.enroll(&user.name, &["--replace"]);
    assert_ne!(first.secret, second.secret);
    assert_ne!(
        first.profile["sha_fingerprint"],
        second.profile["sha_fingerprint"]
    );
    assert_eq!(second.profile["verified"], false);
    assert_eq!(agent.listed_accounts(), vec![user.name.clone()]);

    // Only the new secret's codes work.
    let service = PamService::totp(&agent.socket, "");
    let now = wait_for_fresh_step(30);
    agent
        .cli(&["verify", &user.name, &first.code(now - 30)])
        .err(9, "code_rejected");
    agent
        .cli(&["verify", &user.name, &second.code(now - 30)])
        .ok();
    pamtester(&service, &user.name, &first.code(now)).assert_failure(PAM_AUTH_ERR_TEXT);
    pamtester(&service, &user.name, &second.code(now)).assert_success();
}

#[test]
fn disable_enable_and_remove() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);

    agent.cli(&["disable", &user.name]).ok();
    assert_eq!(agent.show(&user.name)["enabled"], false);
    // A disabled profile is treated as not enrolled: no login, verify is a precondition error.
    pamtester(&service, &user.name, &enrolled.code(now)).assert_failure(PAM_AUTH_ERR_TEXT);
    agent
        .cli(&["verify", &user.name, &enrolled.code(now)])
        .err(6, "failed_precondition");

    agent.cli(&["enable", &user.name]).ok();
    assert_eq!(agent.show(&user.name)["enabled"], true);
    pamtester(&service, &user.name, &enrolled.code(now)).assert_success();

    let removed = agent.cli(&["remove", &user.name]);
    assert_eq!(removed.ok(), &serde_json::json!({ "removed": user.name }));
    agent.cli(&["show", &user.name]).err(4, "not_found");
    assert!(agent.listed_accounts().is_empty());
    pamtester(&service, &user.name, &enrolled.code(now + 30)).assert_failure(PAM_AUTH_ERR_TEXT);
}

#[test]
fn comment_and_regenerated_emergency_codes() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, _) = agent.enroll_active(&user.name, &["--comment", "laptop token"]);
    assert_eq!(agent.show(&user.name)["comment"], "laptop token");

    agent.cli(&["set", &user.name, "--comment", "phone"]).ok();
    assert_eq!(agent.show(&user.name)["comment"], "phone");

    let out = agent.cli(&["codes", &user.name, "--regenerate"]);
    let codes: Vec<String> = out.ok()["emergency_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("codes --regenerate --json has no emergency_codes: {out}"))
        .iter()
        .map(|c| c.as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(codes.len(), 10, "{out}");
    assert!(codes.iter().all(|c| !enrolled.emergency_codes.contains(c)));
    assert_eq!(agent.show(&user.name)["emergency_codes_remaining"], 10);

    // The old codes are gone, the new ones work.
    pamtester(&service, &user.name, &enrolled.emergency_codes[0]).assert_failure(PAM_AUTH_ERR_TEXT);
    pamtester(&service, &user.name, &codes[0]).assert_success();
}
