//! `pam-totp log`: the audit trail of logins made through real libpam (pamtester), newest
//! first, filtered by `--limit` and `--since`; a user reads only their own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::Value;

/// Three failures from one source block it, for long enough that the test sees `locked`.
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

fn entries(out: &CliOut) -> Vec<Value> {
    out.ok()
        .as_array()
        .unwrap_or_else(|| panic!("log --json is not an array: {out}"))
        .clone()
}

fn field<'a>(entries: &'a [Value], key: &str) -> Vec<&'a str> {
    entries
        .iter()
        .map(|e| e[key].as_str().unwrap_or("<none>"))
        .collect()
}

#[test]
fn the_log_shows_pam_logins_newest_first() {
    setup();
    let agent = Agent::with_config(QUICK_LOCK);
    let user = TestUser::new();
    let other = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    agent.enroll_active(&other.name, &[]);
    // The logins start in a later second than the enrollment (for --since below); the
    // step still has more than 3 s left.
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let code = enrolled.code(now);
    pamtester(&service, &user.name, &code).assert_success();
    pamtester(&service, &user.name, &code).assert_failure(PAM_AUTH_ERR_TEXT); // replay
    for wrong in enrolled.wrong_codes(now, 3) {
        assert!(!pamtester(&service, &user.name, &wrong).success);
    }
    pamtester(&service, &user.name, &enrolled.code(now + 30)).assert_failure(PAM_MAXTRIES_TEXT);

    let out = agent.cli(&["log", &user.name]);
    let all = entries(&out);
    for entry in &all {
        let mut keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "account",
                "caller_uid",
                "host",
                "op",
                "result",
                "rhost",
                "service",
                "time",
                "tty"
            ],
            "{out}"
        );
        assert_eq!(entry["account"], user.name.as_str(), "{out}");
        assert!(entry["time"].as_str().is_some_and(is_rfc3339_utc), "{out}");
    }
    // Newest first.
    let times = field(&all, "time");
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {out}"
    );
    let logins: Vec<&Value> = all.iter().filter(|e| e["op"] == "authenticate").collect();
    let results: Vec<&str> = logins
        .iter()
        .map(|e| e["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        [
            "locked",
            "wrong_code",
            "wrong_code",
            "wrong_code",
            "replay",
            "success"
        ],
        "{out}"
    );
    for login in &logins {
        assert_eq!(login["service"], service.name.as_str(), "{out}");
        assert_eq!(login["caller_uid"], 0, "{out}");
    }
    // Enrollment and verification are there too, older than the logins.
    let ops = field(&all, "op");
    assert_eq!(ops.last(), Some(&"enroll"), "{out}");
    assert!(ops.contains(&"verify"), "{out}");

    // --limit keeps the newest.
    let out = agent.cli(&["log", &user.name, "--limit", "2"]);
    let limited = entries(&out);
    assert_eq!(limited.len(), 2, "{out}");
    assert_eq!(field(&limited, "result"), ["locked", "wrong_code"], "{out}");

    // --since: nothing from the future, everything from an hour ago, and from the first
    // login's second on the logins only.
    let future = agent.cli(&["log", &user.name, "--since", "2999-01-01T00:00:00Z"]);
    assert!(entries(&future).is_empty(), "{future}");
    let hour = agent.cli(&["log", &user.name, "--since", "1h"]);
    assert_eq!(entries(&hour).len(), all.len(), "{hour}");
    let first_login = logins.last().unwrap()["time"].as_str().unwrap().to_owned();
    let recent = agent.cli(&["log", &user.name, "--since", &first_login]);
    let recent = entries(&recent);
    assert_eq!(field(&recent, "result"), results, "{recent:?}");
    assert!(field(&recent, "time")
        .iter()
        .all(|t| *t >= first_login.as_str()));
    let unix = agent.cli(&["log", &user.name, "--since", &format!("@{}", now + 3600)]);
    assert!(entries(&unix).is_empty(), "{unix}");
    agent
        .cli(&["log", &user.name, "--since", "last tuesday"])
        .invalid("since");
    agent.cli(&["log", "--limit", "0"]).invalid("limit");
    agent.cli(&["log", "--limit", "10001"]).invalid("limit");

    // Root without USER: every account.
    let everyone = entries(&agent.cli(&["log"]));
    let accounts = field(&everyone, "account");
    assert!(accounts.contains(&user.name.as_str()) && accounts.contains(&other.name.as_str()));

    // A user sees only their own log, by default and by name; another's is refused.
    let own = agent.cli_as(&user.name, &["log"]);
    let own = entries(&own);
    assert_eq!(own.len(), all.len());
    assert!(field(&own, "account").iter().all(|a| *a == user.name));
    let named = agent.cli_as(&user.name, &["log", &user.name, "--limit", "1"]);
    assert_eq!(entries(&named).len(), 1, "{named}");
    agent
        .cli_as(&user.name, &["log", &other.name])
        .err(3, "permission_denied");
    // ... and their reading it was not audited as a login.
    let after = entries(&agent.cli(&["log", &user.name]));
    assert_eq!(after.len(), all.len(), "reading the log added entries");
}

#[test]
fn the_human_log_is_an_aligned_table_in_local_time() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    pamtester(&service, &user.name, &enrolled.code(now)).assert_success();
    pamtester(&service, &user.name, &enrolled.emergency_codes[0]).assert_success();
    let wrong = enrolled.wrong_codes(now, 1);
    pamtester(&service, &user.name, &wrong[0]).assert_failure(PAM_AUTH_ERR_TEXT);

    let json = entries(&agent.cli(&["log", &user.name]));
    let out = agent.cli_human(&["log", &user.name]);
    assert_eq!(out.code, 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), json.len() + 1, "{out}");
    let header = lines[0];
    let columns = [
        "time", "account", "op", "service", "rhost", "tty", "caller", "result",
    ];
    let starts: Vec<usize> = columns
        .iter()
        .map(|c| {
            header
                .find(c)
                .unwrap_or_else(|| panic!("no {c} column: {out}"))
        })
        .collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{out}");
    // Every row's account, service and caller start under their headings.
    for row in &lines[1..] {
        assert_eq!(
            &row[starts[1]..starts[1] + user.name.len()],
            user.name,
            "{out}"
        );
        assert!(row[starts[6]..].starts_with("root "), "{out}");
    }
    let first = lines[1];
    assert!(first.contains(&service.name), "{out}");
    assert!(first.trim_end().ends_with("wrong_code"), "{out}");
    assert!(lines[2].trim_end().ends_with("emergency_code"), "{out}");
    assert!(lines[3].trim_end().ends_with("success"), "{out}");
    // Local time, not RFC 3339, and no colour off a terminal.
    assert!(!out.stdout.contains('\u{1b}'), "{out}");
    let time = &first[..19];
    assert!(!time.contains('T') && time.as_bytes()[10] == b' ', "{out}");
    // The JSON keeps UTC.
    assert!(json[0]["time"].as_str().is_some_and(is_rfc3339_utc));
}
