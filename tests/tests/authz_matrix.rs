//! The authorization matrix of CONTRACT.md with real uids: root, a member of `admin_group`,
//! the account itself and another user, against every request type (the CLI's commands and a
//! PAM login). Every refusal is checked to have changed nothing, and a code shown to a caller
//! who may not use it is still good afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::faults::TestGroup;
use common::*;
use serde_json::Value;

/// The agent configuration of these tests: the defaults, with `admin_group`.
fn config(group: &TestGroup) -> String {
    format!("admin_group = \"{}\"\n{DEFAULT_CONFIG}", group.name)
}

/// Every operation a profile's `can` may list.
const ALL_OPS: &[&str] = &[
    "show", "verify", "enroll", "disable", "enable", "remove", "unlock", "codes", "set",
];

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn codes_of(out: &CliOut) -> Vec<String> {
    let codes = strings(&out.ok()["emergency_codes"]);
    assert_eq!(codes.len(), 10, "codes --regenerate --json: {out}");
    codes
}

/// Asserts `out` was refused with permission_denied (exit 3) and `account`'s profile, as root
/// sees it, is still exactly `before` (or still absent when `before` is null).
#[track_caller]
fn refused_without_effect(agent: &Agent, account: &str, before: &Value, out: &CliOut) {
    out.err(3, "permission_denied");
    let now = agent.cli(&["show", account]);
    if before.is_null() {
        now.err(4, "not_found");
    } else {
        assert_eq!(
            now.ok(),
            before,
            "the refused `{}` changed the profile",
            out.command
        );
    }
}

/// What an administrator (root when `admin` is None) may do to `target`'s account: all of it,
/// without codes.
fn an_admin_may_do_everything(agent: &Agent, admin: Option<&str>, target: &TestUser) {
    let cli = |args: &[&str]| match admin {
        Some(user) => agent.cli_as(user, args),
        None => agent.cli(args),
    };
    let account = target.name.as_str();
    let service = PamService::totp(&agent.socket, "");

    // enroll another account; a second enroll needs --replace (not a permission question).
    let enrolled = Enrolled::from_reply(account, &cli(&["enroll", account, "--comment", "a"]));
    assert_eq!(enrolled.profile["verified"], false);
    assert_eq!(enrolled.profile["uid"], target.uid);
    cli(&["enroll", account]).err(5, "already_exists");

    // show, with every operation offered.
    let shown = cli(&["show", account]);
    assert_eq!(shown.ok()["account"], account, "{shown}");
    let can = strings(&shown.json["can"]);
    for op in ALL_OPS {
        assert!(can.iter().any(|c| c == op), "`can` for an admin: {can:?}");
    }

    // verify with the account's code.
    let now = wait_for_fresh_step(enrolled.period);
    cli(&["verify", account, &enrolled.code(now - 30)]).ok();
    assert_eq!(agent.show(account)["verified"], true);

    // list.
    let listed = cli(&["list"]);
    let accounts: Vec<&str> = listed
        .ok()
        .as_array()
        .unwrap_or_else(|| panic!("list --json is not an array: {listed}"))
        .iter()
        .filter_map(|p| p["account"].as_str())
        .collect();
    assert!(accounts.contains(&account), "{listed}");

    // set --comment.
    cli(&["set", account, "--comment", "set by an admin"]).ok();
    assert_eq!(agent.show(account)["comment"], "set by an admin");

    // disable / enable.
    cli(&["disable", account]).ok();
    assert_eq!(agent.show(account)["enabled"], false);
    cli(&["enable", account]).ok();
    assert_eq!(agent.show(account)["enabled"], true);

    // unlock clears counted failures.
    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    agent
        .cli(&["verify", account, &wrong])
        .err(9, "code_rejected");
    assert_eq!(agent.show(account)["failed_attempts"], 1);
    cli(&["unlock", account]).ok();
    assert_eq!(agent.show(account)["failed_attempts"], 0);

    // codes --regenerate, no code needed.
    let codes = codes_of(&cli(&["codes", account, "--regenerate"]));
    assert!(codes.iter().all(|c| !enrolled.emergency_codes.contains(c)));

    // A PAM login of the account from the admin's own process.
    let login = match admin {
        Some(user) => pamtester_as(user, &service, account, &enrolled.code(now)),
        None => pamtester(&service, account, &enrolled.code(now)),
    };
    login.assert_success();
    assert!(agent.show(account)["last_used_at"].is_string());

    // enroll --replace of an active profile, no code needed.
    let replaced = Enrolled::from_reply(account, &cli(&["enroll", account, "--replace"]));
    assert_ne!(replaced.secret, enrolled.secret);
    assert_eq!(agent.show(account)["verified"], false);

    // remove, no code needed.
    let removed = cli(&["remove", account]);
    assert_eq!(removed.ok(), &serde_json::json!({ "removed": account }));
    agent.cli(&["show", account]).err(4, "not_found");
}

#[test]
fn root_may_do_everything() {
    setup();
    let group = TestGroup::new();
    let agent = Agent::with_config(&config(&group));
    let target = TestUser::new();
    an_admin_may_do_everything(&agent, None, &target);
}

#[test]
fn an_admin_group_member_may_do_everything_while_a_member() {
    setup();
    let group = TestGroup::new();
    let member = TestUser::new();
    group.add(&member);
    let agent = Agent::with_config(&config(&group));
    let target = TestUser::new();
    an_admin_may_do_everything(&agent, Some(&member.name), &target);

    // Membership is looked up at each request: out of the group, out of power.
    let (enrolled, now) = agent.enroll_active(&target.name, &[]);
    let before = agent.show(&target.name);
    group.remove(&member);
    let as_member = |args: &[&str]| agent.cli_as(&member.name, args);
    for args in [
        vec!["list"],
        vec!["show", &target.name],
        vec!["disable", &target.name],
        vec!["remove", &target.name],
    ] {
        refused_without_effect(&agent, &target.name, &before, &as_member(&args));
    }
    let code = enrolled.code(now);
    refused_without_effect(
        &agent,
        &target.name,
        &before,
        &as_member(&["verify", &target.name, &code]),
    );
    agent.cli(&["verify", &target.name, &code]).ok();
}

#[test]
fn the_account_itself_may_do_only_its_own_part() {
    setup();
    let group = TestGroup::new();
    let agent = Agent::with_config(&config(&group));
    let owner = TestUser::new();
    let name = owner.name.as_str();
    let service = PamService::totp(&agent.socket, "");
    let own = |args: &[&str]| agent.cli_as(name, args);

    // enroll itself while it has no profile (USER defaults to the caller).
    let first = Enrolled::from_reply(name, &own(&["enroll", "--comment", "mine"]));
    assert_eq!(first.profile["account"], name);
    assert_eq!(first.profile["uid"], owner.uid);
    own(&["enroll"]).err(5, "already_exists");
    // A pending profile is not active: replacing it needs no code.
    let second = Enrolled::from_reply(name, &own(&["enroll", "--replace"]));
    assert_ne!(second.secret, first.secret);

    // show, with only the owner's operations offered.
    let shown = own(&["show"]);
    assert_eq!(shown.ok()["account"], name, "{shown}");
    let can = strings(&shown.json["can"]);
    for op in ["show", "verify", "remove", "codes", "set"] {
        assert!(can.iter().any(|c| c == op), "`can` for the owner: {can:?}");
    }
    for op in ["disable", "enable", "unlock"] {
        assert!(!can.iter().any(|c| c == op), "`can` for the owner: {can:?}");
    }

    // verify.
    let now = wait_for_fresh_step(second.period);
    own(&["verify", &second.code(now - 30)]).ok();
    assert_eq!(agent.show(name)["verified"], true);

    // Admin-only operations: refused, nothing changes.
    let before = agent.show(name);
    refused_without_effect(&agent, name, &before, &own(&["list"]));
    refused_without_effect(&agent, name, &before, &own(&["disable", name]));
    agent.cli(&["disable", name]).ok();
    let disabled = agent.show(name);
    refused_without_effect(&agent, name, &disabled, &own(&["enable", name]));
    agent.cli(&["enable", name]).ok();
    let wrong = second.wrong_codes(now, 1).remove(0);
    agent.cli(&["verify", name, &wrong]).err(9, "code_rejected");
    let failed = agent.show(name);
    assert_eq!(failed["failed_attempts"], 1, "{failed}");
    refused_without_effect(&agent, name, &failed, &own(&["unlock", name]));

    // set --comment.
    own(&["set", "--comment", "renamed"]).ok();
    assert_eq!(agent.show(name)["comment"], "renamed");

    // Replacing an active profile needs --replace and a valid code.
    let before = agent.show(name);
    refused_without_effect(&agent, name, &before, &own(&["enroll", "--replace"]));
    let third = Enrolled::from_reply(
        name,
        &own(&["enroll", "--replace", "--code", &second.code(now)]),
    );
    assert_ne!(third.secret, second.secret);
    assert_eq!(agent.show(name)["verified"], false);
    own(&["verify", &third.code(now - 30)]).ok();

    // A PAM login of its own account from its own process (a screen locker).
    pamtester_as(name, &service, name, &third.code(now)).assert_success();

    // codes --regenerate needs a valid code.
    let before = agent.show(name);
    refused_without_effect(&agent, name, &before, &own(&["codes", "--regenerate"]));
    let codes = codes_of(&own(&[
        "codes",
        "--regenerate",
        "--code",
        &third.emergency_codes[0],
    ]));
    assert!(codes.iter().all(|c| !third.emergency_codes.contains(c)));
    assert_eq!(agent.show(name)["emergency_codes_remaining"], 10);

    // remove needs a valid code.
    let before = agent.show(name);
    refused_without_effect(&agent, name, &before, &own(&["remove"]));
    let removed = own(&["remove", "--code", &codes[0]]);
    assert_eq!(removed.ok(), &serde_json::json!({ "removed": name }));
    agent.cli(&["show", name]).err(4, "not_found");
}

#[test]
fn another_user_may_do_nothing_and_uses_up_no_code() {
    setup();
    let group = TestGroup::new();
    let admin = TestUser::new();
    group.add(&admin);
    let agent = Agent::with_config(&config(&group));
    let owner = TestUser::new();
    let stranger = TestUser::new();
    let account = owner.name.as_str();
    let service = PamService::totp(&agent.socket, "");
    let other = |args: &[&str]| agent.cli_as(&stranger.name, args);

    // Nothing to enroll for someone else, and nothing is stored.
    refused_without_effect(&agent, account, &Value::Null, &other(&["enroll", account]));
    assert!(agent.listed_accounts().is_empty());

    let (enrolled, now) = agent.enroll_active(account, &["--comment", "the owner's"]);
    let code = enrolled.code(now);
    let emergency = enrolled.emergency_codes[0].clone();
    let before = agent.show(account);
    let attempts: Vec<Vec<&str>> = vec![
        vec!["show", account],
        vec!["verify", account, &code],
        vec!["verify", account, &emergency],
        vec!["enroll", account],
        vec!["enroll", account, "--replace"],
        vec!["enroll", account, "--replace", "--code", &code],
        vec!["list"],
        vec!["disable", account],
        vec!["remove", account],
        vec!["remove", account, "--code", &code],
        vec!["remove", account, "--code", &emergency],
        vec!["codes", account, "--regenerate"],
        vec!["codes", account, "--regenerate", "--code", &emergency],
        vec!["set", account, "--comment", "mine now"],
    ];
    for args in &attempts {
        refused_without_effect(&agent, account, &before, &other(args));
    }

    // enable and unlock are refused where they would change something.
    agent.cli(&["disable", account]).ok();
    let disabled = agent.show(account);
    refused_without_effect(&agent, account, &disabled, &other(&["enable", account]));
    agent.cli(&["enable", account]).ok();
    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    agent
        .cli(&["verify", account, &wrong])
        .err(9, "code_rejected");
    let failed = agent.show(account);
    refused_without_effect(&agent, account, &failed, &other(&["unlock", account]));

    // A PAM login of the account from the stranger's process: refused, nothing counted.
    pamtester_as(&stranger.name, &service, account, &code).assert_failure(PAM_AUTH_ERR_TEXT);
    assert_eq!(
        agent.show(account),
        failed,
        "the refused login changed the profile"
    );

    // Neither the code nor the emergency code was used up by the refusals.
    pamtester(&service, account, &code).assert_success();
    agent.cli(&["verify", account, &emergency]).ok();
    assert_eq!(agent.show(account)["emergency_codes_remaining"], 9);
    // And the group's member, an admin, is not the stranger: it may act.
    agent.cli_as(&admin.name, &["unlock", account]).ok();
}
