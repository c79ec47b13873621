//! `pam-totp status` counts, and the human and JSON shapes of `list` and `show` (aligned,
//! local time and colour only on a terminal for people; unchanged JSON for scripts).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

const QUICK_LOCK: &str = "\
self_enroll = true
window = 1

[lockout]
threshold = 3
base_seconds = 600
max_seconds = 900
source_threshold = 3
source_base_seconds = 600
";

#[test]
fn status_counts_profiles_and_recent_logins() {
    setup();
    let agent = Agent::with_config(QUICK_LOCK);
    let pending = TestUser::new();
    let active = TestUser::new();
    let disabled = TestUser::new();
    let locked = TestUser::new();
    let service = PamService::totp(&agent.socket, "");

    let out = agent.cli(&["status"]);
    let status = out.ok();
    let mut keys = keys(status);
    keys.sort();
    assert_eq!(
        keys,
        [
            "database",
            "last_hour",
            "profiles",
            "socket",
            "store",
            "uptime_seconds",
            "version"
        ],
        "{out}"
    );
    assert_eq!(
        status["socket"],
        agent.socket.display().to_string(),
        "{out}"
    );
    assert_eq!(status["database"], agent.db.display().to_string(), "{out}");
    assert_eq!(status["store"], "sqlite", "{out}");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"), "{out}");
    assert!(status["uptime_seconds"].is_u64(), "{out}");
    assert_eq!(
        status["profiles"],
        serde_json::json!({"pending": 0, "active": 0, "disabled": 0, "locked": 0, "clock_ahead": 0}),
        "{out}"
    );
    assert_eq!(
        status["last_hour"],
        serde_json::json!({"logins": 0, "failures": 0}),
        "{out}"
    );

    agent.enroll(&pending.name, &[]);
    let (active_enrolled, now) = agent.enroll_active(&active.name, &[]);
    agent.enroll_active(&disabled.name, &[]);
    agent.cli(&["disable", &disabled.name]).ok();
    let (locked_enrolled, _) = agent.enroll_active(&locked.name, &[]);
    // Two logins, then three wrong codes that lock an account.
    pamtester(&service, &active.name, &active_enrolled.code(now)).assert_success();
    pamtester(&service, &active.name, &active_enrolled.emergency_codes[0]).assert_success();
    for wrong in locked_enrolled.wrong_codes(now, 3) {
        assert!(!pamtester(&service, &locked.name, &wrong).success);
    }
    assert!(
        agent.show(&locked.name)["locked_until"].is_string(),
        "{}",
        agent.show(&locked.name)
    );

    let out = agent.cli(&["status"]);
    let status = out.ok();
    assert_eq!(
        status["profiles"],
        serde_json::json!({"pending": 1, "active": 2, "disabled": 1, "locked": 1, "clock_ahead": 0}),
        "{out}"
    );
    assert_eq!(
        status["last_hour"],
        serde_json::json!({"logins": 2, "failures": 3}),
        "{out}"
    );

    let human = agent.cli_human(&["status"]);
    assert_eq!(human.code, 0, "{human}");
    assert_eq!(
        human.stdout.lines().nth(4),
        Some("store:     sqlite"),
        "{human}"
    );
    assert_eq!(
        human.stdout.lines().nth(5),
        Some("profiles:  1 pending, 2 active, 1 disabled, 1 locked"),
        "{human}"
    );
    assert_eq!(
        human.stdout.lines().nth(6),
        Some("last hour: 2 logins, 3 failures"),
        "{human}"
    );
    assert!(
        human
            .stdout
            .starts_with(&format!("version:   {}\n", env!("CARGO_PKG_VERSION"))),
        "{human}"
    );
    assert!(
        human
            .stdout
            .contains(&format!("socket:    {}\n", agent.socket.display())),
        "{human}"
    );

    // Anyone may ask whether the agent is up; the counts are for administrators.
    let out = agent.cli_as(&active.name, &["status"]);
    let status = out.ok();
    assert!(status["profiles"].is_null(), "{out}");
    assert!(status["last_hour"].is_null(), "{out}");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"), "{out}");
    let human = cli_at(&agent.socket, Some(&active.name), false, &["status"]);
    assert_eq!(human.code, 0, "{human}");
    assert_eq!(human.stdout.lines().count(), 5, "{human}");
    assert!(!human.stdout.contains("profiles:"), "{human}");
}

/// `pam-totp --socket S ARGS` with extra environment, as root; stdout and the exit status.
fn cli_env(socket: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = Command::new(cli_bin());
    command
        .env_remove("PAM_TOTP_SOCKET")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .arg("--socket")
        .arg(socket)
        .args(args);
    run(&mut command, None, PROCESS_LIMIT)
}

/// The same on a pseudo-terminal (`script`), so stdout is a terminal.
fn cli_on_terminal(socket: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut line = format!("{} --socket {}", cli_bin().display(), socket.display());
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    let mut command = Command::new(require_tool("script"));
    command
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env_remove("PAM_TOTP_SOCKET")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .envs(env.iter().copied());
    run(&mut command, None, PROCESS_LIMIT)
}

#[test]
fn list_and_show_shapes_for_people_and_scripts() {
    setup();
    let agent = Agent::start();
    let alice = TestUser::new();
    let bob = TestUser::new();
    agent.enroll_active(&alice.name, &["--comment", "phone"]);
    agent.enroll(&bob.name, &["--digits", "8"]);

    // JSON: unchanged shapes. show: every contract field in contract order.
    let out = agent.cli(&["show", &alice.name]);
    let shown = out.ok();
    let order: Vec<&str> = shown
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted_order = order.clone();
    sorted_order.sort();
    assert_eq!(sorted_order, profile_fields(), "{out}");
    assert!(out.stdout.starts_with("{\"id\":"), "{out}");
    assert!(
        shown["created_at"].as_str().is_some_and(is_rfc3339_utc),
        "{out}"
    );
    // list: an array of the same objects.
    let out = agent.cli(&["list"]);
    let list = out.ok().as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{out}");
    for profile in &list {
        assert_eq!(keys(profile), profile_fields(), "{out}");
    }
    // --fields: exactly those keys, in the order given.
    let out = agent.cli(&["show", &alice.name, "--fields", "uid,account,verified_at"]);
    assert!(
        out.stdout.starts_with("{\"uid\":") && out.stdout.contains(",\"account\":"),
        "{out}"
    );
    assert_eq!(keys(out.ok()), ["account", "uid", "verified_at"], "{out}");
    let out = agent.cli(&["list", "--fields", "account,digits"]);
    for profile in out.ok().as_array().unwrap() {
        assert_eq!(keys(profile), ["account", "digits"], "{out}");
    }
    agent
        .cli(&["list", "--fields", "account,secret"])
        .invalid("fields");

    // People: aligned key-value lines, times in local time.
    let out = cli_env(
        &agent.socket,
        &[("TZ", "UTC")],
        &[
            "show",
            &alice.name,
            "--fields",
            "account,digits,created_at,locked_until",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.output());
    let created = shown["created_at"].as_str().unwrap();
    let utc_text = format!("{} {}", &created[..10], &created[11..19]);
    assert_eq!(
        out.stdout,
        format!(
            "account:      {}\ndigits:       6\ncreated_at:   {utc_text}\nlocked_until: -\n",
            alice.name
        )
    );
    // Another zone shows another wall-clock time for the same instant.
    let out = cli_env(
        &agent.socket,
        &[("TZ", "Asia/Kolkata")],
        &["show", &alice.name, "--fields", "created_at"],
    );
    let (hour, minute): (u32, u32) = (
        created[11..13].parse().unwrap(),
        created[14..16].parse().unwrap(),
    );
    let shifted = (hour * 60 + minute + 5 * 60 + 30) % (24 * 60);
    assert!(
        out.stdout
            .contains(&format!(" {:02}:{:02}:", shifted / 60, shifted % 60)),
        "TZ=Asia/Kolkata: {}",
        out.stdout
    );
    // list: an aligned table with one header row.
    let out = cli_env(
        &agent.socket,
        &[("TZ", "UTC")],
        &["list", "--fields", "account,verified,digits,comment"],
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    let column = |name: &str| lines[0].find(name).unwrap();
    for row in &lines[1..] {
        let verified = &row[column("verified")..];
        assert!(
            verified.starts_with("true ") || verified.starts_with("false "),
            "{}",
            out.stdout
        );
        let digits = &row[column("digits")..];
        assert!(
            digits.starts_with('6') || digits.starts_with('8'),
            "{}",
            out.stdout
        );
    }

    // Colour only on a terminal, and never with NO_COLOR.
    assert!(!out.stdout.contains('\u{1b}'));
    let tty = cli_on_terminal(&agent.socket, &[], &["list"]);
    assert_eq!(tty.code, 0, "{}", tty.output());
    assert!(tty.stdout.contains("\u{1b}[32mtrue"), "{:?}", tty.stdout);
    assert!(tty.stdout.contains("\u{1b}[33mfalse"), "{:?}", tty.stdout);
    let no_color = cli_on_terminal(&agent.socket, &[("NO_COLOR", "1")], &["list"]);
    assert_eq!(no_color.code, 0, "{}", no_color.output());
    assert!(!no_color.stdout.contains('\u{1b}'), "{:?}", no_color.stdout);
    assert!(no_color.stdout.contains("true"), "{:?}", no_color.stdout);
    // JSON on a terminal: no colour either.
    let json = cli_on_terminal(&agent.socket, &[], &["--json", "list"]);
    assert!(!json.stdout.contains('\u{1b}'), "{:?}", json.stdout);
}
