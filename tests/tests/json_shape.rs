//! The JSON the CLI prints: exactly the contract's fields and types; `--fields` filters; the
//! secret and the emergency codes appear once, in enroll's output, and nowhere after.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use serde_json::Value;
use sha2::{Digest, Sha256};

#[track_caller]
fn assert_profile_shape(profile: &Value, user: &TestUser) {
    assert_eq!(keys(profile), profile_fields(), "profile fields: {profile}");
    assert!(
        profile["id"].is_i64() || profile["id"].is_u64(),
        "{profile}"
    );
    assert_eq!(profile["account"], user.name.as_str());
    assert_eq!(profile["uid"], user.uid);
    assert_eq!(profile["type"], "totp");
    let owner = profile["owner"].as_str().unwrap_or_default();
    let host = hostname();
    assert!(
        owner == host || owner.starts_with(&format!("{host}.")),
        "owner {owner:?} is not this host ({host:?})"
    );
    assert_eq!(profile["scope"], "host");
    assert!(profile["verified"].is_boolean());
    assert!(profile["enabled"].is_boolean());
    assert!(matches!(
        profile["algorithm"].as_str(),
        Some("SHA1" | "SHA256" | "SHA512")
    ));
    assert!(profile["digits"]
        .as_u64()
        .is_some_and(|d| (6..=8).contains(&d)));
    assert!(profile["period"].as_u64().is_some_and(|p| p > 0));
    let fingerprint = profile["sha_fingerprint"].as_str().unwrap_or_default();
    assert!(
        fingerprint.len() == 64
            && fingerprint
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "sha_fingerprint is not lowercase hex SHA-256: {fingerprint:?}"
    );
    assert!(profile["comment"].is_string() || profile["comment"].is_null());
    for stamp in ["created_at", "changed_at"] {
        assert!(
            profile[stamp].as_str().is_some_and(is_rfc3339_utc),
            "{stamp} is not RFC 3339 UTC: {profile}"
        );
    }
    for stamp in ["verified_at", "last_used_at", "locked_until"] {
        assert!(
            profile[stamp].is_null() || profile[stamp].as_str().is_some_and(is_rfc3339_utc),
            "{stamp} is neither null nor RFC 3339 UTC: {profile}"
        );
    }
    assert!(profile["failed_attempts"].is_u64());
    assert!(profile["emergency_codes_remaining"].is_u64());
    assert!(
        profile["can"]
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string)),
        "can: {profile}"
    );
}

#[test]
fn show_list_and_enroll_have_exactly_the_contract_fields() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let out = agent.cli(&["enroll", &user.name, "--comment", "json shape"]);
    assert_eq!(
        keys(out.ok()),
        vec!["emergency_codes", "otpauth_uri", "profile", "secret"],
        "{out}"
    );
    let enrolled = Enrolled::from_reply(&user.name, &out);
    assert_profile_shape(&enrolled.profile, &user);

    let shown = agent.show(&user.name);
    assert_profile_shape(&shown, &user);
    assert_eq!(shown["comment"], "json shape");
    assert_eq!(shown["verified"], false);
    assert_eq!(shown["enabled"], true);
    assert_eq!(shown["failed_attempts"], 0);
    assert_eq!(shown["emergency_codes_remaining"], 10);
    for never in ["verified_at", "last_used_at", "locked_until"] {
        assert!(shown[never].is_null(), "{never}: {shown}");
    }
    assert_eq!(shown["id"], enrolled.profile["id"]);
    assert_eq!(
        shown["sha_fingerprint"],
        enrolled.profile["sha_fingerprint"]
    );

    // sha_fingerprint is the SHA-256 of the secret (of its bytes, or of its base32 text).
    let bytes = base32::decode(
        base32::Alphabet::Rfc4648 { padding: false },
        enrolled.secret.trim_end_matches('='),
    )
    .unwrap_or_else(|| panic!("the secret is not base32: {}", enrolled.secret));
    assert!(
        bytes.len() >= 16,
        "a secret of {} bytes is too short",
        bytes.len()
    );
    let candidates = [
        hex::encode(Sha256::digest(&bytes)),
        hex::encode(Sha256::digest(enrolled.secret.as_bytes())),
    ];
    assert!(
        candidates
            .iter()
            .any(|c| shown["sha_fingerprint"] == c.as_str()),
        "sha_fingerprint {} is not the SHA-256 of the secret",
        shown["sha_fingerprint"]
    );

    let out = agent.cli(&["list"]);
    let list = out.ok().as_array().unwrap_or_else(|| panic!("{out}"));
    assert_eq!(list.len(), 1, "{out}");
    assert_profile_shape(&list[0], &user);
}

#[test]
fn fields_filters_show_and_list() {
    setup();
    let agent = Agent::start();
    let first = TestUser::new();
    let second = TestUser::new();
    agent.enroll(&first.name, &[]);
    agent.enroll(&second.name, &["--digits", "8"]);

    let out = agent.cli(&["show", &first.name, "--fields", "account,verified,digits"]);
    assert_eq!(
        out.ok(),
        &serde_json::json!({ "account": first.name, "verified": false, "digits": 6 }),
        "{out}"
    );
    let out = agent.cli(&["list", "--fields", "account,digits"]);
    let mut rows: Vec<Value> = out.ok().as_array().cloned().unwrap_or_default();
    rows.sort_by_key(|r| r["account"].as_str().unwrap_or_default().to_owned());
    let mut expected = vec![
        serde_json::json!({ "account": first.name, "digits": 6 }),
        serde_json::json!({ "account": second.name, "digits": 8 }),
    ];
    expected.sort_by_key(|r| r["account"].as_str().unwrap_or_default().to_owned());
    assert_eq!(rows, expected, "{out}");
}

#[test]
fn remove_json_and_errors_json() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    agent.enroll(&user.name, &[]);
    let out = agent.cli(&["remove", &user.name]);
    assert_eq!(
        out.ok(),
        &serde_json::json!({ "removed": user.name }),
        "{out}"
    );
    let out = agent.cli(&["show", &user.name]);
    out.err(4, "not_found");
    assert_eq!(keys(&out.json), vec!["error"], "{out}");
    assert_eq!(
        keys(&out.json["error"]),
        vec!["code", "message", "target"],
        "{out}"
    );
}

#[test]
fn the_secret_and_emergency_codes_appear_only_in_enroll_output() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::totp(&agent.socket, "debug");
    let enrolled = agent.enroll(&user.name, &[]);
    let secret = enrolled.secret.trim_end_matches('=').to_owned();

    // Exercise everything that could echo it: show, list, verify, login, codes, set, remove.
    let mut later = Vec::new();
    let now = wait_for_fresh_step(30);
    for args in [
        vec!["show", user.name.as_str()],
        vec!["list"],
        vec!["verify", user.name.as_str(), &enrolled.code(now - 30)],
        vec!["show", user.name.as_str(), "--fields", "sha_fingerprint"],
    ] {
        let out = agent.cli(&args);
        assert_eq!(out.code, 0, "{out}");
        later.push(out.to_string());
    }
    for args in [vec!["show", user.name.as_str()], vec!["list"]] {
        let human = agent.cli_human(&args);
        assert_eq!(human.code, 0, "{human}");
        later.push(human.to_string());
    }
    let login = pamtester(&service, &user.name, &enrolled.code(now));
    login.assert_success();
    later.push(login.to_string());
    let emergency = enrolled.emergency_codes[0].clone();
    let login = pamtester(&service, &user.name, &emergency);
    login.assert_success();
    later.push(login.to_string());
    let out = agent.cli(&["set", &user.name, "--comment", "after"]);
    later.push(out.to_string());
    let out = agent.cli(&["remove", &user.name]);
    out.ok();
    later.push(out.to_string());

    for text in &later {
        assert!(
            !text.contains(&secret),
            "the secret appeared after enroll:\n{text}"
        );
        for code in &enrolled.emergency_codes[1..] {
            assert!(
                !text.contains(code.as_str()),
                "an emergency code appeared after enroll:\n{text}"
            );
        }
    }

    // Nothing secret in the agent's log, ever (not even at enroll).
    let log = agent.log_text();
    assert!(
        !log.contains(&secret),
        "the agent logged the secret:\n{log}"
    );
    assert!(
        !log.to_ascii_lowercase()
            .contains(&secret.to_ascii_lowercase()),
        "the agent logged the secret:\n{log}"
    );
    for code in &enrolled.emergency_codes {
        assert!(
            !log.contains(code.as_str()),
            "the agent logged an emergency code:\n{log}"
        );
    }
}

#[test]
fn emergency_codes_are_not_stored_in_clear() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let enrolled = agent.enroll(&user.name, &[]);
    let dump = run(
        std::process::Command::new(require_tool("sqlite3"))
            .arg("-readonly")
            .arg(&agent.db)
            .arg(".dump"),
        None,
        PROCESS_LIMIT,
    );
    assert_eq!(dump.code, 0, "sqlite3 .dump failed: {}", dump.stderr);
    assert!(
        dump.stdout.contains("CREATE TABLE"),
        "empty dump: {}",
        dump.stdout
    );
    for code in &enrolled.emergency_codes {
        assert!(
            !dump.stdout.contains(code.as_str()),
            "emergency code {code} is stored in clear in the database"
        );
    }
}

#[test]
fn human_enroll_shows_the_uri_and_codes_once_and_no_qr_off_a_terminal() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let out = agent.cli_human(&["enroll", &user.name]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("otpauth://totp/"), "no URI: {out}");
    let digits8 = out
        .stdout
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| w.len() == 8)
        .count();
    assert!(digits8 >= 10, "fewer than 10 emergency codes shown: {out}");
    assert!(
        !out.stdout.contains(['█', '▀', '▄']),
        "a QR code was drawn although stdout is not a terminal: {out}"
    );
    let shown = agent.cli_human(&["show", &user.name]);
    assert_eq!(shown.code, 0, "{shown}");
    assert!(shown.stdout.contains(&user.name), "{shown}");
    assert!(!shown.stdout.contains("otpauth://"), "{shown}");
}
