//! A non-admin account acts only on itself: the agent authorizes from SO_PEERCRED, so every
//! call here runs as a real other uid (runuser).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_user_cannot_touch_another_account_even_with_its_code() {
    setup();
    let agent = Agent::start();
    let alice = TestUser::new();
    let bob = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let a = agent.enroll(&alice.name, &[]);
    let b = agent.enroll(&bob.name, &[]);
    let now = wait_for_fresh_step(30);
    let as_alice = |args: &[&str]| agent.cli_as(&alice.name, args);

    // Another account: refused, even holding that account's valid codes.
    as_alice(&["show", &bob.name]).err(3, "permission_denied");
    as_alice(&["verify", &bob.name, &b.code(now - 30)]).err(3, "permission_denied");
    as_alice(&["remove", &bob.name, "--code", &b.code(now + 30)]).err(3, "permission_denied");
    as_alice(&["enroll", &bob.name, "--replace"]).err(3, "permission_denied");
    as_alice(&["set", &bob.name, "--comment", "mine now"]).err(3, "permission_denied");
    // Admin-only operations, even on one's own account.
    as_alice(&["list"]).err(3, "permission_denied");
    as_alice(&["unlock", &alice.name]).err(3, "permission_denied");
    as_alice(&["disable", &alice.name]).err(3, "permission_denied");
    // Nothing changed, and the refused attempt did not consume bob's code.
    let bob_profile = agent.show(&bob.name);
    assert_eq!(bob_profile["verified"], false, "{bob_profile}");
    assert!(bob_profile["comment"].is_null(), "{bob_profile}");
    agent.cli(&["verify", &bob.name, &b.code(now - 30)]).ok();

    // One's own account: allowed (USER defaults to the caller).
    let own = as_alice(&["show"]);
    assert_eq!(own.ok()["account"], alice.name.as_str(), "{own}");
    let can = strings(&own.json["can"]);
    assert!(
        can.iter().any(|c| c == "show") && can.iter().any(|c| c == "verify"),
        "`can` for the owner: {can:?}"
    );
    for admin_only in ["unlock", "disable", "enable"] {
        assert!(
            !can.iter().any(|c| c == admin_only),
            "`can` offers the admin-only {admin_only} to the owner: {can:?}"
        );
    }
    let root_can = strings(&agent.show(&alice.name)["can"]);
    for op in ["show", "verify", "remove", "unlock", "disable"] {
        assert!(
            root_can.iter().any(|c| c == op),
            "`can` for root: {root_can:?}"
        );
    }
    as_alice(&["show", &alice.name]).ok();
    as_alice(&["verify", &alice.name, &a.code(now - 30)]).ok();
    assert_eq!(agent.show(&alice.name)["verified"], true);

    // PAM from an unprivileged process: own account yes, another account no.
    pamtester_as(&alice.name, &service, &alice.name, &a.code(now)).assert_success();
    pamtester_as(&alice.name, &service, &bob.name, &b.code(now)).assert_failure(PAM_AUTH_ERR_TEXT);
    // bob's code survived alice's attempt.
    pamtester(&service, &bob.name, &b.code(now)).assert_success();

    // Removing one's own profile needs a valid code.
    as_alice(&["remove"]).err(3, "permission_denied");
    let wrong = a.wrong_codes(now, 1).remove(0);
    as_alice(&["remove", "--code", &wrong]).err(9, "code_rejected");
    agent.show(&alice.name);
    let removed = as_alice(&["remove", "--code", &a.code(now + 30)]);
    assert_eq!(
        removed.ok(),
        &serde_json::json!({ "removed": alice.name }),
        "{removed}"
    );
    agent.cli(&["show", &alice.name]).err(4, "not_found");
    // bob is untouched.
    assert_eq!(agent.listed_accounts(), vec![bob.name.clone()]);
}

#[test]
fn a_user_can_enroll_themselves_and_replace_only_with_a_code() {
    setup();
    let agent = Agent::start();
    let carol = TestUser::new();
    let dave = TestUser::new();
    let as_carol = |args: &[&str]| agent.cli_as(&carol.name, args);

    // Enrolling someone else is refused and stores nothing.
    as_carol(&["enroll", &dave.name]).err(3, "permission_denied");
    assert!(agent.listed_accounts().is_empty());

    // Self-enrollment (USER defaults to the caller).
    let enrolled = Enrolled::from_reply(&carol.name, &as_carol(&["enroll"]));
    assert_eq!(enrolled.profile["account"], carol.name.as_str());
    assert_eq!(enrolled.profile["uid"], carol.uid);
    assert_eq!(enrolled.profile["verified"], false);
    assert_eq!(enrolled.emergency_codes.len(), 10);

    // `verify CODE` with USER omitted.
    let now = wait_for_fresh_step(30);
    as_carol(&["verify", &enrolled.code(now - 30)]).ok();
    assert_eq!(agent.show(&carol.name)["verified"], true);

    // With an active profile, self-service replacement needs --replace and a valid code.
    as_carol(&["enroll", "--replace"]).err(3, "permission_denied");
    let replaced = as_carol(&["enroll", "--replace", "--code", &enrolled.code(now)]);
    let replaced = Enrolled::from_reply(&carol.name, &replaced);
    assert_ne!(replaced.secret, enrolled.secret);
    assert_eq!(replaced.profile["verified"], false);
    assert_eq!(agent.listed_accounts(), vec![carol.name.clone()]);
}
