//! `pam-totp import google-authenticator USER [FILE]` takes only a file that is USER's own, as
//! pam_google_authenticator does at login: a symbolic link is not followed, a file owned by
//! another account (or writable by group or others) is refused, checked on the opened file.
//! Refusals are `failed_precondition` (exit 6) with target "file", and import nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use nix::unistd::{chown, Uid};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// `google-authenticator` (libpam-google-authenticator) run as `user`, writing a time-based
/// `file` non-interactively.
fn google_authenticator(user: &TestUser, file: &Path) {
    let tool = require_tool("google-authenticator");
    let mut command = as_user(&user.name, &tool);
    command
        .args([
            "-t", "-d", "-w", "3", "-f", "-r", "3", "-R", "30", "-Q", "NONE", "-q", "-s",
        ])
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
        chown(dir.path(), Some(Uid::from_raw(user.uid)), None).expect("chown home");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod home");
        user.set_home(dir.path());
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn secret_file(&self) -> std::path::PathBuf {
        self.path().join(".google_authenticator")
    }
}

fn secret_of(path: &Path) -> String {
    let text = fs::read_to_string(path).expect("read file");
    text.lines().next().expect("secret line").trim().to_owned()
}

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
    google_authenticator(&bob, &bob_home.secret_file());
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
    google_authenticator(&bob, &bob_home.secret_file());
    let bob_secret = secret_of(&bob_home.secret_file());

    // A copy of bob's file in alice's home, still bob's (a hard link would be the same).
    let copy = alice_home.secret_file();
    fs::copy(bob_home.secret_file(), &copy).unwrap();
    chown(&copy, Some(Uid::from_raw(bob.uid)), None).unwrap();
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
    chown(&copy, Some(Uid::from_raw(alice.uid)), None).unwrap();
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
    chown(&home.secret_file(), Some(Uid::from_raw(alice.uid)), None).unwrap();
    agent
        .cli(&["import", "google-authenticator", &alice.name])
        .invalid("file");
    fs::remove_dir(home.secret_file()).unwrap();
    nix::unistd::mkfifo(
        &home.secret_file(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    chown(&home.secret_file(), Some(Uid::from_raw(alice.uid)), None).unwrap();
    agent
        .cli(&["import", "google-authenticator", &alice.name])
        .invalid("file");
    agent.cli(&["show", &alice.name]).err(4, "not_found");
}
