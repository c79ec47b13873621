//! HOTP profiles (RFC 4226) end to end: enrolled through the CLI as root, codes from
//! `oathtool --hotp` (an independent implementation), logins through real libpam
//! (pamtester): each code works once, a code a few presses ahead works (the look-ahead),
//! one beyond it does not. Imports of a google-authenticator HOTP file and of pam_oath HOTP
//! lines go on from their counters, and a restored backup moves a counter on by the
//! look-ahead, never to a time step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// The agent's look-ahead when the config does not set `hotp_window`.
const LOOK_AHEAD: u64 = 10;

/// RFC 4226's test secret "12345678901234567890", as pam_oath (hex) and authenticator apps
/// (base32) write it.
const SECRET_HEX: &str = "3132333435363738393031323334353637383930";
const SECRET_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

#[test]
fn an_hotp_token_logs_in_once_per_code_within_the_look_ahead() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let name = user.name.as_str();
    let service = PamService::totp(&agent.socket, "");

    let enrolled = agent.enroll(name, &["--type", "hotp", "--counter", "5"]);
    assert!(
        enrolled.uri.starts_with("otpauth://hotp/"),
        "{}",
        enrolled.uri
    );
    assert!(
        enrolled.uri.ends_with("&digits=6&counter=5"),
        "{}",
        enrolled.uri
    );
    assert!(!enrolled.uri.contains("period"), "{}", enrolled.uri);
    assert_eq!(enrolled.profile["type"], "hotp");
    assert_eq!(enrolled.profile["counter"], 5);
    assert!(enrolled.profile["period"].is_null(), "{}", enrolled.profile);
    assert_eq!(enrolled.profile["verified"], false);

    // Pending: the right code cannot log in; verify with it activates the profile.
    pamtester(&service, name, &enrolled.hotp_code(5)).assert_failure(PAM_AUTH_ERR_TEXT);
    let verified = agent.cli(&["verify", name, &enrolled.hotp_code(5)]);
    assert_eq!(verified.ok()["verified"], true, "{verified}");
    assert_eq!(verified.json["counter"], 6, "{verified}");

    // Counter 6's code logs in once; the same code again is refused.
    let code = enrolled.hotp_code(6);
    pamtester(&service, name, &code).assert_success();
    pamtester(&service, name, &code).assert_failure(PAM_AUTH_ERR_TEXT);
    // Three presses never used: counter 10's code still works (7 is next) ...
    pamtester(&service, name, &enrolled.hotp_code(10)).assert_success();
    // ... and the skipped ones are used up with it.
    pamtester(&service, name, &enrolled.hotp_code(8)).assert_failure(PAM_AUTH_ERR_TEXT);
    // 11 is next: a code beyond 11 + the look-ahead is refused, the last one within works.
    pamtester(&service, name, &enrolled.hotp_code(12 + LOOK_AHEAD))
        .assert_failure(PAM_AUTH_ERR_TEXT);
    pamtester(&service, name, &enrolled.hotp_code(11 + LOOK_AHEAD)).assert_success();

    let shown = agent.show(name);
    assert_eq!(shown["type"], "hotp", "{shown}");
    assert_eq!(shown["counter"], 12 + LOOK_AHEAD, "{shown}");
    assert!(shown["period"].is_null(), "{shown}");
    let out = agent.cli(&["show", name, "--fields", "type,counter"]);
    assert_eq!(
        out.stdout,
        format!("{{\"type\":\"hotp\",\"counter\":{}}}\n", 12 + LOOK_AHEAD),
        "{out}"
    );
    let human = agent.cli_human(&["show", name]);
    assert!(
        human.stdout.contains("counter:") && human.stdout.contains("hotp"),
        "{human}"
    );
    let log = agent.cli(&["log", name]);
    let results: Vec<&str> = log.ok().as_array().unwrap()[..6]
        .iter()
        .map(|entry| entry["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        [
            "success",
            "wrong_code",
            "wrong_code",
            "success",
            "wrong_code",
            "success"
        ],
        "{log}"
    );
}

#[test]
fn counter_and_period_belong_to_their_own_type() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let name = user.name.as_str();
    agent
        .cli(&["enroll", name, "--type", "hotp", "--period", "30"])
        .invalid("period");
    agent
        .cli(&["enroll", name, "--counter", "3"])
        .invalid("counter");
    agent
        .cli(&["enroll", name, "--type", "totp", "--counter", "0"])
        .invalid("counter");
    agent
        .cli(&["enroll", name, "--type", "motp"])
        .invalid("type");
    agent.cli(&["show", name]).err(4, "not_found");
    // Without --counter an HOTP token starts at 0; a TOTP profile has no counter at all.
    let hotp = agent.enroll(name, &["--type", "hotp", "--digits", "8"]);
    assert_eq!(hotp.profile["counter"], 0);
    assert!(hotp.uri.ends_with("&digits=8&counter=0"), "{}", hotp.uri);
    agent.cli(&["verify", name, &hotp.hotp_code(0)]).ok();
    let totp = agent.enroll(name, &["--replace"]);
    assert!(totp.profile.get("counter").is_none(), "{}", totp.profile);
    assert_eq!(totp.profile["type"], "totp");
    assert_eq!(totp.profile["period"], 30);
}

/// A root-owned file of `text` (0600) in a fresh directory.
fn root_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn imported_hotp_tokens_go_on_from_their_counters() {
    setup();
    let agent = Agent::start();
    let service = PamService::totp(&agent.socket, "");
    let dir = tempfile::tempdir().unwrap();

    // google-authenticator's own counter-based file (HOTP_COUNTER 1: the next counter).
    let google_user = TestUser::new();
    let file = dir.path().join("google_authenticator");
    let mut command = Command::new(require_tool("google-authenticator"));
    command
        .args([
            "-c", "-w", "3", "-f", "-r", "3", "-R", "30", "-Q", "NONE", "-q", "-s",
        ])
        .arg(&file);
    let out = run(&mut command, None, PROCESS_LIMIT);
    assert_eq!(out.code, 0, "google-authenticator failed: {}", out.output());
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.contains("\" HOTP_COUNTER 1\n"), "{text}");
    let secret = text.lines().next().unwrap().to_owned();
    let scratch = text
        .lines()
        .find(|l| l.len() == 8 && l.bytes().all(|b| b.is_ascii_digit()))
        .unwrap()
        .to_owned();
    let file = file.to_str().unwrap();
    let out = agent.cli(&["import", "google-authenticator", &google_user.name, file]);
    assert_eq!(
        out.ok()["imported"],
        serde_json::json!([google_user.name]),
        "{out}"
    );
    let shown = agent.show(&google_user.name);
    assert_eq!(
        (&shown["type"], &shown["counter"]),
        (&"hotp".into(), &1.into())
    );
    assert_eq!(shown["verified"], true, "{shown}");
    let human = agent.cli_human(&["import", "google-authenticator", &google_user.name, file]);
    assert_eq!(human.code, 5, "{human}");
    // Counter 0 is behind the file's counter; 1 is next.
    pamtester(&service, &google_user.name, &hotp(&secret, 6, 0)).assert_failure(PAM_AUTH_ERR_TEXT);
    pamtester(&service, &google_user.name, &hotp(&secret, 6, 1)).assert_success();
    pamtester(&service, &google_user.name, &scratch).assert_success();

    // pam_oath usersfile lines: one liboath wrote back after accepting counter 7 (so 8 is
    // next), one provisioned at counter 3 and never used, one without a counter (8 digits).
    let used = TestUser::new();
    let fresh = TestUser::new();
    let eight = TestUser::new();
    let code7 = hotp(SECRET_B32, 6, 7);
    let usersfile = root_file(
        dir.path(),
        "users.oath",
        &format!(
            "HOTP\t{}\t-\t{SECRET_HEX}\t7\t{code7}\t2024-05-01T10:00:00L\n\
             HOTP {} - {SECRET_HEX} 3\n\
             HOTP/E/8 {} - {SECRET_HEX}\n",
            used.name, fresh.name, eight.name
        ),
    );
    let dry = agent.cli_human(&["import", "oath", &usersfile, "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry}");
    assert!(
        dry.stdout.starts_with("Dry run: 3 to import, 0 skipped"),
        "{dry}"
    );
    assert_eq!(
        agent.listed_accounts(),
        std::slice::from_ref(&google_user.name),
        "a dry run stored profiles"
    );
    let out = agent.cli(&["import", "oath", &usersfile]);
    assert_eq!(out.ok()["skipped"], serde_json::json!([]), "{out}");
    for (user, counter, digits) in [(&used, 8, 6), (&fresh, 3, 6), (&eight, 0, 8)] {
        let shown = agent.show(&user.name);
        assert_eq!(shown["type"], "hotp", "{shown}");
        assert_eq!(shown["counter"], counter, "{shown}");
        assert_eq!(shown["digits"], digits, "{shown}");
    }
    pamtester(&service, &used.name, &code7).assert_failure(PAM_AUTH_ERR_TEXT);
    pamtester(&service, &used.name, &hotp(SECRET_B32, 6, 8)).assert_success();
    pamtester(&service, &fresh.name, &hotp(SECRET_B32, 6, 3)).assert_success();
    pamtester(&service, &eight.name, &hotp(SECRET_B32, 8, 0)).assert_success();
    // As for TOTP: a second run is refused per line, --replace takes them over again.
    agent
        .cli(&["import", "oath", &usersfile])
        .err(5, "already_exists");
    let out = agent.cli(&["import", "oath", &usersfile, "--replace"]);
    assert_eq!(out.ok()["imported"].as_array().unwrap().len(), 3, "{out}");
    assert_eq!(agent.show(&used.name)["counter"], 8);
}

#[test]
fn a_restored_backup_moves_an_hotp_counter_on_by_the_look_ahead() {
    setup();
    let mut agent = Agent::start();
    let user = TestUser::new();
    let name = user.name.as_str();
    let service = PamService::totp(&agent.socket, "");
    let enrolled = agent.enroll(name, &["--type", "hotp"]);
    agent.cli(&["verify", name, &enrolled.hotp_code(0)]).ok();

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("profiles.backup");
    let out = agent.backup(&copy);
    assert_eq!(out.code, 0, "backup failed: {}", out.output());
    // A login after the backup uses counter 1.
    let used = enrolled.hotp_code(1);
    pamtester(&service, name, &used).assert_success();

    agent.stop();
    fs::copy(&copy, &agent.db).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", agent.db.display()));
    }
    agent.restart();
    // The backup expected counter 1; it and the look-ahead after it count as used: the next
    // counter is 1 + 10 + 1, not a time step.
    let shown = agent.show(name);
    assert_eq!(shown["counter"], 2 + LOOK_AHEAD, "{shown}");
    pamtester(&service, name, &used).assert_failure(PAM_AUTH_ERR_TEXT);
    pamtester(&service, name, &enrolled.hotp_code(1 + LOOK_AHEAD))
        .assert_failure(PAM_AUTH_ERR_TEXT);
    pamtester(&service, name, &enrolled.hotp_code(2 + LOOK_AHEAD)).assert_success();
}
