//! `pam-totp import`: google-authenticator files written by Debian's `google-authenticator`
//! tool (time- and counter-based), and a pam_oath usersfile with good and bad lines, logged
//! in with through real libpam afterwards. The google-authenticator file must be the
//! account's own, as pam_google_authenticator requires at login: a symbolic link is not
//! followed, a file owned by another account (or writable by group or others) is refused,
//! checked on the opened file (`failed_precondition`, exit 6, target "file"), and nothing is
//! imported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `google-authenticator` (package libpam-google-authenticator) run as `user`, writing
/// `file` non-interactively. `extra`: e.g. `-t -w 3` or `-c`.
fn google_authenticator(user: &TestUser, file: &Path, extra: &[&str]) {
    let tool = require_tool("google-authenticator");
    let mut command = as_user(&user.name, &tool);
    command
        .args(extra)
        .args(["-f", "-r", "3", "-R", "30", "-Q", "NONE", "-q", "-s"])
        .arg(file);
    let out = run(&mut command, None, PROCESS_LIMIT);
    assert_eq!(out.code, 0, "google-authenticator failed: {}", out.output());
    assert!(
        file.is_file(),
        "google-authenticator wrote no {}",
        file.display()
    );
}

/// A home directory for `user` (owned by it, 0700), removed on drop.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new(user: &TestUser) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pamtotp-e2e-home-")
            .tempdir()
            .expect("temp home");
        nix::unistd::chown(dir.path(), Some(nix::unistd::Uid::from_raw(user.uid)), None)
            .expect("chown home");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod home");
        user.set_home(dir.path());
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn secret_file(&self) -> PathBuf {
        self.path().join(".google_authenticator")
    }
}

/// `google-authenticator` options for a time-based file.
const TIME_BASED: &[&str] = &["-t", "-d", "-w", "3"];

fn secret_of(path: &Path) -> String {
    secret_and_scratch_codes(path).0
}

/// What must not change about a file: contents, mode, owner and mtime.
fn fingerprint(path: &Path) -> (String, u32, u32, i64, i64) {
    let bytes = fs::read(path).expect("read file");
    let meta = fs::metadata(path).expect("stat file");
    (
        hex::encode(Sha256::digest(&bytes)),
        meta.mode(),
        meta.uid(),
        meta.mtime(),
        meta.mtime_nsec(),
    )
}

/// (secret, scratch codes) as the file holds them.
fn secret_and_scratch_codes(path: &Path) -> (String, Vec<String>) {
    let text = fs::read_to_string(path).expect("read file");
    let mut lines = text.lines();
    let secret = lines.next().expect("secret line").trim().to_owned();
    let codes = lines
        .filter(|l| l.len() == 8 && l.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
        .collect();
    (secret, codes)
}

#[test]
fn google_authenticator_file_logs_in_with_the_app_code_and_a_scratch_code() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let home = Home::new(&user);
    let file = home.path().join(".google_authenticator");
    // WINDOW_SIZE 17: 8 steps either side.
    google_authenticator(&user, &file, &["-t", "-d", "-w", "17"]);
    let before = fingerprint(&file);
    let (secret, scratch) = secret_and_scratch_codes(&file);
    assert!(
        scratch.len() >= 2,
        "too few scratch codes in {}",
        file.display()
    );

    // The account imports its own file, from its home directory (the default FILE).
    let out = agent.cli_as(&user.name, &["import", "google-authenticator", &user.name]);
    let report = out.ok();
    assert_eq!(report["imported"], serde_json::json!([user.name]), "{out}");
    assert_eq!(report["skipped"], serde_json::json!([]), "{out}");
    assert_eq!(report["failed"], serde_json::json!([]), "{out}");
    assert_eq!(report["dry_run"], false, "{out}");
    assert_eq!(report["source"], "google-authenticator", "{out}");
    assert_eq!(report["file"], file.display().to_string(), "{out}");
    assert!(report.get("error").is_none(), "{out}");
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(&secret), "the secret was printed: {out}");
        assert!(
            !text.contains(&scratch[0]),
            "a scratch code was printed: {out}"
        );
    }

    // Active at once, with the file's settings.
    let shown = agent.show(&user.name);
    assert_eq!(shown["verified"], true, "{shown}");
    assert_eq!(shown["enabled"], true, "{shown}");
    assert_eq!(shown["algorithm"], "SHA1", "{shown}");
    assert_eq!(shown["digits"], 6, "{shown}");
    assert_eq!(shown["period"], 30, "{shown}");
    assert_eq!(shown["emergency_codes_remaining"], scratch.len(), "{shown}");
    assert_eq!(shown["comment"], "imported from google-authenticator");

    let service = PamService::totp(&agent.socket, "");
    let now = wait_for_fresh_step(30);
    // A code 4 steps old passes: WINDOW_SIZE 17 carried over (the default window is 1).
    pamtester(
        &service,
        &user.name,
        &totp(&secret, "sha1", 6, 30, now - 120),
    )
    .assert_success();
    // The same app code as the phone shows now.
    pamtester(&service, &user.name, &totp(&secret, "sha1", 6, 30, now)).assert_success();
    // A scratch code works once.
    pamtester(&service, &user.name, &scratch[0]).assert_success();
    pamtester(&service, &user.name, &scratch[0]).assert_failure(PAM_AUTH_ERR_TEXT);
    assert_eq!(
        agent.show(&user.name)["emergency_codes_remaining"],
        scratch.len() - 1
    );

    // The file was only read.
    assert_eq!(
        fingerprint(&file),
        before,
        "the import changed {}",
        file.display()
    );
}

#[test]
fn root_imports_a_given_file_and_replace_is_needed_over_a_profile() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ga");
    // Root writes the file (e.g. from a backup of another host).
    let tool = require_tool("google-authenticator");
    let out = run(
        Command::new(&tool)
            .args([
                "-t", "-d", "-f", "-u", "-w", "3", "-S", "60", "-Q", "NONE", "-q", "-s",
            ])
            .arg(&file),
        None,
        PROCESS_LIMIT,
    );
    assert_eq!(out.code, 0, "{}", out.output());
    let before = fingerprint(&file);
    let file_arg = file.to_str().unwrap();

    // A dry run sends nothing.
    let out = agent.cli(&[
        "import",
        "google-authenticator",
        &user.name,
        file_arg,
        "--dry-run",
    ]);
    assert_eq!(out.ok()["dry_run"], true, "{out}");
    agent.cli(&["show", &user.name]).err(4, "not_found");

    let human = agent.cli_human(&["import", "google-authenticator", &user.name, file_arg]);
    assert_eq!(human.code, 0, "{human}");
    assert_eq!(human.stdout.lines().count(), 1, "{human}");
    assert!(
        human
            .stdout
            .starts_with(&format!("Imported {} from {file_arg}", user.name)),
        "{human}"
    );
    assert!(human.stdout.contains("60 s period"), "{human}");
    assert_eq!(agent.show(&user.name)["period"], 60);

    // Again: the profile exists; the agent's refusal is the exit status, with the report.
    let out = agent.cli(&["import", "google-authenticator", &user.name, file_arg]);
    let error = out.err(5, "already_exists");
    assert_eq!(error["target"], "account", "{out}");
    assert_eq!(
        out.json["failed"][0]["account"],
        user.name.as_str(),
        "{out}"
    );
    assert_eq!(out.json["imported"], serde_json::json!([]), "{out}");
    let human = agent.cli_human(&["import", "google-authenticator", &user.name, file_arg]);
    assert_eq!(human.code, 5, "{human}");
    assert_eq!(human.stderr.lines().count(), 1, "{human}");
    assert!(human.stderr.contains("--replace"), "{human}");

    let out = agent.cli(&[
        "import",
        "google-authenticator",
        &user.name,
        file_arg,
        "--replace",
    ]);
    assert_eq!(out.ok()["imported"][0], user.name.as_str(), "{out}");
    assert_eq!(fingerprint(&file), before);
}

#[test]
fn hotp_files_become_hotp_profiles_and_unreadable_files_are_refused() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let other = TestUser::new();
    let home = Home::new(&user);
    let file = home.path().join(".google_authenticator");
    // Counter-based: `google-authenticator -c` writes HOTP_COUNTER and no TOTP_AUTH.
    google_authenticator(&user, &file, &["-c", "-w", "3"]);
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.contains("\" HOTP_COUNTER 1"), "{text}");
    let before = fingerprint(&file);

    // Imported as an HOTP profile that expects the file's counter next (tests/tests/hotp.rs
    // logs in with one).
    let out = agent.cli(&["import", "google-authenticator", &user.name]);
    assert_eq!(
        out.ok()["imported"],
        serde_json::json!([user.name]),
        "{out}"
    );
    let shown = agent.show(&user.name);
    assert_eq!(
        (&shown["type"], &shown["counter"]),
        (&"hotp".into(), &1.into())
    );
    assert_eq!(fingerprint(&file), before);

    // A user cannot read another account's file (it is read as the caller).
    let out = agent.cli_as(
        &other.name,
        &[
            "import",
            "google-authenticator",
            &other.name,
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.err(3, "permission_denied")["target"], "file", "{out}");
    // No such file, no such account.
    let missing = home.path().join("missing");
    agent
        .cli(&[
            "import",
            "google-authenticator",
            &user.name,
            missing.to_str().unwrap(),
        ])
        .invalid("file");
    let out = agent.cli(&["import", "google-authenticator", "pttnosuchuser"]);
    assert_eq!(out.err(4, "not_found")["target"], "account", "{out}");
    // A window wider than the agent accepts.
    let wide = home.path().join("wide");
    fs::write(
        &wide,
        "JBSWY3DPEHPK3PXPJBSWY3DPEH\n\" WINDOW_SIZE 25\n\" TOTP_AUTH\n",
    )
    .unwrap();
    agent
        .cli(&[
            "import",
            "google-authenticator",
            &user.name,
            wide.to_str().unwrap(),
        ])
        .invalid("window");
}

/// A TOTP code of a hex secret, by oathtool.
fn totp_hex(hex_secret: &str, period: u64, digits: u32, unix_time: u64) -> String {
    let out = Command::new(require_tool("oathtool"))
        .args([
            "--totp",
            "-s",
            &format!("{period}s"),
            "-d",
            &digits.to_string(),
        ])
        .arg("-N")
        .arg(format!("@{unix_time}"))
        .arg(hex_secret)
        .output()
        .expect("oathtool runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An HOTP code of a hex secret, by oathtool.
fn hotp_hex(hex_secret: &str, counter: u64) -> String {
    let out = Command::new(require_tool("oathtool"))
        .args(["--hotp", "-d", "6", "-c", &counter.to_string(), hex_secret])
        .output()
        .expect("oathtool runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

struct Usersfile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Usersfile {
    fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.oath");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        Self { _dir: dir, path }
    }

    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

const HEX_A: &str = "3132333435363738393031323334353637383930";
const HEX_B: &str = "00112233445566778899aabbccddeeff00112233";
const HEX_C: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9001122334";

#[test]
fn usersfile_with_good_and_bad_lines() {
    setup();
    let agent = Agent::start();
    let t30 = TestUser::new();
    let t60 = TestUser::new();
    let t30_7 = TestUser::new();
    let counter = TestUser::new();
    let password = TestUser::new();
    let malformed = TestUser::new();
    let unknown = format!("pttnouser{}", std::process::id());
    let file = Usersfile::new(&format!(
        "# pam_oath users (line 1)\n\
         HOTP/T30 {t30} - {HEX_A}\n\
         \n\
         HOTP {counter} - {HEX_B} 12\n\
         HOTP/T60/8 {t60} - {HEX_B} 0\n\
         HOTP/T30 {password} s3cr3tpw {HEX_C}\n\
         HOTP/T30 {unknown} - {HEX_C}\n\
         HOTP/T30 {malformed} - 31zz3233\n\
         HOTP/T30/7 {t30_7} - {HEX_C} 0 123456 2024-05-01T10:00:00L\n",
        t30 = t30.name,
        counter = counter.name,
        t60 = t60.name,
        password = password.name,
        malformed = malformed.name,
        t30_7 = t30_7.name,
    ));
    let before = fingerprint(&file.path);
    let good = [&t30.name, &counter.name, &t60.name, &t30_7.name];
    let skipped_lines = [
        (6, password.name.as_str(), "failed_precondition", "password"),
        (7, unknown.as_str(), "not_found", "account"),
        (8, malformed.name.as_str(), "invalid_argument", "secret"),
    ];
    let check_report = |out: &CliOut, dry_run: bool| {
        let report = out.ok();
        assert_eq!(report["dry_run"], dry_run, "{out}");
        assert_eq!(report["source"], "oath", "{out}");
        assert_eq!(report["imported"], serde_json::json!(good), "{out}");
        assert_eq!(report["failed"], serde_json::json!([]), "{out}");
        let skipped = report["skipped"].as_array().expect("skipped array");
        assert_eq!(skipped.len(), skipped_lines.len(), "{out}");
        for (entry, (line, account, code, target)) in skipped.iter().zip(skipped_lines) {
            assert_eq!(entry["line"], line, "{out}");
            assert_eq!(entry["account"], account, "{out}");
            assert_eq!(entry["error"]["code"], code, "{out}");
            assert_eq!(entry["error"]["target"], target, "{out}");
            assert!(entry["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
        assert!(
            !out.stdout.contains("s3cr3tpw"),
            "the password was printed: {out}"
        );
        assert!(!out.stdout.contains(HEX_B), "a secret was printed: {out}");
    };

    // --dry-run parses and checks, stores nothing.
    let out = agent.cli(&["import", "oath", file.arg(), "--dry-run"]);
    check_report(&out, true);
    assert!(
        agent.listed_accounts().is_empty(),
        "a dry run stored profiles"
    );

    // Human report: each bad line with its number, then the summary.
    let human = agent.cli_human(&["import", "oath", file.arg(), "--dry-run"]);
    assert_eq!(human.code, 0, "{human}");
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{human}");
    for (text, (line, account, _, _)) in lines.iter().zip(skipped_lines) {
        assert!(
            text.starts_with(&format!("line {line} ({account}): skipped: ")),
            "{human}"
        );
    }
    assert!(lines[0].contains("password"), "{human}");
    assert!(lines[1].contains("no such account"), "{human}");
    assert!(
        lines[3].starts_with("Dry run: 4 to import, 3 skipped"),
        "{human}"
    );

    // The import itself: the skipped lines do not fail it.
    let out = agent.cli(&["import", "oath", file.arg()]);
    check_report(&out, false);
    let mut listed = agent.listed_accounts();
    listed.sort();
    let mut expected: Vec<String> = good.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    for (user, digits, period) in [(&t30, 6, 30), (&t60, 8, 60), (&t30_7, 7, 30)] {
        let shown = agent.show(&user.name);
        assert_eq!(shown["digits"], digits, "{shown}");
        assert_eq!(shown["period"], period, "{shown}");
        assert_eq!(shown["verified"], true, "{shown}");
        assert_eq!(shown["emergency_codes_remaining"], 0, "{shown}");
        assert_eq!(shown["comment"], "imported from pam_oath", "{shown}");
    }
    // The counter-based line: COUNTER 12 without a LASTOTP, so 12 is the next counter.
    let shown = agent.show(&counter.name);
    assert_eq!(
        (&shown["type"], &shown["counter"]),
        (&"hotp".into(), &12.into())
    );

    // The good ones log in with the codes oathtool computes from the hex secrets.
    let service = PamService::totp(&agent.socket, "");
    let now = wait_for_fresh_step(60);
    pamtester(&service, &t30.name, &totp_hex(HEX_A, 30, 6, now)).assert_success();
    pamtester(&service, &t60.name, &totp_hex(HEX_B, 60, 8, now)).assert_success();
    pamtester(&service, &t30_7.name, &totp_hex(HEX_C, 30, 7, now)).assert_success();
    pamtester(&service, &counter.name, &hotp_hex(HEX_B, 12)).assert_success();
    // The skipped ones have no profile.
    for user in [&password, &malformed] {
        agent.cli(&["show", &user.name]).err(4, "not_found");
    }

    // A second run: every good line is refused as existing, reported per line; the exit
    // status is the first refusal's.
    let out = agent.cli(&["import", "oath", file.arg()]);
    let error = out.err(5, "already_exists");
    assert_eq!(error["target"], "account", "{out}");
    let failed = out.json["failed"].as_array().expect("failed array");
    let failed_lines: Vec<u64> = failed.iter().map(|f| f["line"].as_u64().unwrap()).collect();
    assert_eq!(failed_lines, [2, 4, 5, 9], "{out}");
    assert_eq!(out.json["imported"], serde_json::json!([]), "{out}");
    let human = agent.cli_human(&["import", "oath", file.arg()]);
    assert_eq!(human.code, 5, "{human}");
    assert!(
        human
            .stdout
            .contains(&format!("line 5 ({}): failed: ", t60.name)),
        "{human}"
    );
    assert!(
        human.stdout.ends_with(&format!(
            "Imported 0, skipped 3, failed 4 ({}).\n",
            file.arg()
        )),
        "{human}"
    );
    assert_eq!(human.stderr.lines().count(), 1, "{human}");
    // --replace takes them over again.
    let out = agent.cli(&["import", "oath", file.arg(), "--replace"]);
    assert_eq!(out.ok()["imported"], serde_json::json!(good), "{out}");

    assert_eq!(
        fingerprint(&file.path),
        before,
        "the import changed the usersfile"
    );
}

#[test]
fn usersfile_errors() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    // Nothing importable at all: the first skipped line decides the exit status.
    let file = Usersfile::new(&format!("HOTP {} pw {HEX_A}\n", user.name));
    let out = agent.cli(&["import", "oath", file.arg()]);
    let error = out.err(6, "failed_precondition");
    assert_eq!(error["target"], "password", "{out}");
    assert_eq!(out.json["skipped"][0]["line"], 1, "{out}");
    // An unreadable file (read as the caller), a missing one, a directory.
    let out = agent.cli_as(&user.name, &["import", "oath", file.arg()]);
    assert_eq!(out.err(3, "permission_denied")["target"], "file", "{out}");
    agent
        .cli(&["import", "oath", "/nonexistent/users.oath"])
        .invalid("file");
    agent.cli(&["import", "oath", "/etc"]).invalid("file");
    // A non-admin importing other accounts: refused per line by the agent.
    let other = TestUser::new();
    let file = Usersfile::new(&format!(
        "HOTP/T30 {} - {HEX_A}\nHOTP/T30 {} - {HEX_B}\n",
        user.name, other.name
    ));
    fs::set_permissions(&file.path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(
        file.path.parent().unwrap(),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let out = agent.cli_as(&user.name, &["import", "oath", file.arg()]);
    let error = out.err(3, "permission_denied");
    assert!(
        error["message"].as_str().unwrap().contains("line 2"),
        "{out}"
    );
    assert_eq!(
        out.json["imported"],
        serde_json::json!([user.name]),
        "{out}"
    );
    assert_eq!(
        out.json["failed"][0]["account"],
        other.name.as_str(),
        "{out}"
    );
    assert_eq!(agent.show(&user.name)["verified"], true);
    agent.cli(&["show", &other.name]).err(4, "not_found");
}

// ---- The file must be the account's own ----

/// Asserts a `failed_precondition` on "file" that names the problem, and that `account` got
/// no profile.
#[track_caller]
fn refused(agent: &Agent, out: &CliOut, account: &str, secret: &str, why: &str) {
    let error = out.err(6, "failed_precondition");
    assert_eq!(error["target"], "file", "{out}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(why),
        "the message does not say {why:?}: {out}"
    );
    assert!(
        !out.stdout.contains(secret) && !out.stderr.contains(secret),
        "{out}"
    );
    agent.cli(&["show", account]).err(4, "not_found");
}

#[test]
fn a_symlink_to_another_accounts_file_is_not_followed() {
    setup();
    let agent = Agent::start();
    let alice = TestUser::new();
    let bob = TestUser::new();
    let alice_home = Home::new(&alice);
    let bob_home = Home::new(&bob);
    google_authenticator(&bob, &bob_home.secret_file(), TIME_BASED);
    let bob_secret = secret_of(&bob_home.secret_file());
    // alice's ~/.google_authenticator points at bob's: alice made it, it is hers to make.
    std::os::unix::fs::symlink(bob_home.secret_file(), alice_home.secret_file()).unwrap();
    std::os::unix::fs::lchown(alice_home.secret_file(), Some(alice.uid), None).unwrap();

    // Root, importing alice's file from her home directory (root can read bob's file).
    let out = agent.cli(&["import", "google-authenticator", &alice.name]);
    refused(&agent, &out, &alice.name, &bob_secret, "symbolic link");
    // Named explicitly, the same.
    let link = alice_home.secret_file();
    let out = agent.cli(&[
        "import",
        "google-authenticator",
        &alice.name,
        link.to_str().unwrap(),
    ]);
    refused(&agent, &out, &alice.name, &bob_secret, "symbolic link");
    // A dry run checks the same way.
    let out = agent.cli(&["import", "google-authenticator", &alice.name, "--dry-run"]);
    refused(&agent, &out, &alice.name, &bob_secret, "symbolic link");
    // alice herself is refused too (she cannot read bob's file either way).
    let out = agent.cli_as(
        &alice.name,
        &["import", "google-authenticator", &alice.name],
    );
    assert!(out.code == 6 || out.code == 3, "{out}");
    agent.cli(&["show", &alice.name]).err(4, "not_found");

    // bob's own file still imports for bob.
    agent
        .cli_as(&bob.name, &["import", "google-authenticator", &bob.name])
        .ok();
    assert_eq!(agent.show(&bob.name)["verified"], true);
}

#[test]
fn a_file_owned_by_another_account_is_refused() {
    setup();
    let agent = Agent::start();
    let alice = TestUser::new();
    let bob = TestUser::new();
    let alice_home = Home::new(&alice);
    let bob_home = Home::new(&bob);
    google_authenticator(&bob, &bob_home.secret_file(), TIME_BASED);
    let bob_secret = secret_of(&bob_home.secret_file());

    // A copy of bob's file in alice's home, still bob's (a hard link would be the same).
    let copy = alice_home.secret_file();
    fs::copy(bob_home.secret_file(), &copy).unwrap();
    nix::unistd::chown(&copy, Some(nix::unistd::Uid::from_raw(bob.uid)), None).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o444)).unwrap();
    assert_eq!(fs::metadata(&copy).unwrap().uid(), bob.uid);
    let out = agent.cli(&["import", "google-authenticator", &alice.name]);
    refused(&agent, &out, &alice.name, &bob_secret, "owned by");
    // alice can read it (0444), and is refused all the same.
    let out = agent.cli_as(
        &alice.name,
        &["import", "google-authenticator", &alice.name],
    );
    refused(&agent, &out, &alice.name, &bob_secret, "owned by");
    let out = agent.cli_as(
        &alice.name,
        &[
            "import",
            "google-authenticator",
            &alice.name,
            copy.to_str().unwrap(),
        ],
    );
    refused(&agent, &out, &alice.name, &bob_secret, "owned by");
    // Root naming it for alice: neither alice's nor root's own file.
    let out = agent.cli(&[
        "import",
        "google-authenticator",
        &alice.name,
        copy.to_str().unwrap(),
    ]);
    refused(&agent, &out, &alice.name, &bob_secret, "owned by");

    // Owned by alice but writable by others: someone else may have chosen the secret.
    nix::unistd::chown(&copy, Some(nix::unistd::Uid::from_raw(alice.uid)), None).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o622)).unwrap();
    let out = agent.cli(&["import", "google-authenticator", &alice.name]);
    refused(&agent, &out, &alice.name, &bob_secret, "writable");

    // Once it is alice's own and only hers to write, it imports.
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o600)).unwrap();
    let out = agent.cli_as(
        &alice.name,
        &["import", "google-authenticator", &alice.name],
    );
    assert_eq!(
        out.ok()["imported"],
        serde_json::json!([alice.name]),
        "{out}"
    );
    assert_eq!(agent.show(&alice.name)["verified"], true);
}

#[test]
fn non_regular_files_are_refused() {
    setup();
    let agent = Agent::start();
    let alice = TestUser::new();
    let home = Home::new(&alice);
    // A directory and a FIFO in place of the file (the FIFO must not block the import).
    fs::create_dir(home.secret_file()).unwrap();
    nix::unistd::chown(
        &home.secret_file(),
        Some(nix::unistd::Uid::from_raw(alice.uid)),
        None,
    )
    .unwrap();
    agent
        .cli(&["import", "google-authenticator", &alice.name])
        .invalid("file");
    fs::remove_dir(home.secret_file()).unwrap();
    nix::unistd::mkfifo(
        &home.secret_file(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    nix::unistd::chown(
        &home.secret_file(),
        Some(nix::unistd::Uid::from_raw(alice.uid)),
        None,
    )
    .unwrap();
    agent
        .cli(&["import", "google-authenticator", &alice.name])
        .invalid("file");
    agent.cli(&["show", &alice.name]).err(4, "not_found");
}
