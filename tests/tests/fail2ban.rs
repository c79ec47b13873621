//! The shipped fail2ban filter (packaging/fail2ban/filter.d/pam-totp.conf), run by Debian's
//! `fail2ban-regex` over lines the agent really wrote: failed second factors from remote hosts
//! (IPv4 and IPv6) are matched with their address; a success, a local user's forged remote
//! host, and a hostile remote host name that tries to pose as another field are not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::faults::{pamtester_from, pamtester_items};
use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The addresses the filter finds in `log`, as fail2ban-regex reports them.
fn banned_addresses(log: &Path) -> BTreeSet<String> {
    let tool = require_tool("fail2ban-regex");
    // The filter includes fail2ban's common.conf, which sits beside it once installed.
    let dir = tempfile::tempdir().unwrap();
    let filter = dir.path().join("pam-totp.conf");
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/fail2ban/filter.d/pam-totp.conf");
    std::fs::copy(&shipped, &filter).unwrap();
    std::fs::copy(
        "/etc/fail2ban/filter.d/common.conf",
        dir.path().join("common.conf"),
    )
    .unwrap();
    let mut command = Command::new(tool);
    command
        .args(["-o", "ip", "--datepattern", "{NONE}"])
        .arg(log)
        .arg(&filter);
    let out = run(&mut command, None, PROCESS_LIMIT);
    assert_eq!(out.code, 0, "fail2ban-regex failed: {}", out.output());
    out.stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_filter_bans_remote_hosts_that_fail_and_nothing_a_user_can_forge() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let name = user.name.as_str();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(name, &[]);
    let wrong = enrolled.wrong_codes(now, 6);

    // Through a root-run service (sshd's view): these hosts failed.
    pamtester_from(&service, name, &wrong[0], "203.0.113.5").assert_failure(PAM_AUTH_ERR_TEXT);
    pamtester_from(&service, name, &wrong[1], "2001:db8::7").assert_failure(PAM_AUTH_ERR_TEXT);
    // A host name built to look like another field, and another host's success.
    let hostile = "x\" source=\"rhost:198.51.100.66";
    pamtester_from(&service, name, &wrong[2], hostile).assert_failure(PAM_AUTH_ERR_TEXT);
    pamtester_from(&service, name, &enrolled.code(now), "192.0.2.1").assert_success();
    // The user's own pamtester claims a remote host: its source is its uid.
    let forged = pamtester_items(
        Some(name),
        &service,
        name,
        &wrong[3],
        &[("rhost", "198.51.100.77")],
    );
    assert!(!forged.success, "{forged}");

    let log = std::fs::read_to_string(&agent.log).unwrap();
    let attempts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" login result="))
        .collect();
    assert_eq!(attempts.len(), 5, "one line per attempt:\n{log}");
    for code in wrong.iter().chain([&enrolled.code(now)]) {
        assert!(
            !log.contains(code.as_str()),
            "a code reached the log:\n{log}"
        );
    }
    assert!(
        attempts
            .iter()
            .any(|l| l.contains("source=\"uid:") && l.contains("198.51.100.77")),
        "{log}"
    );

    let banned = banned_addresses(&agent.log);
    let expected: BTreeSet<String> = ["203.0.113.5", "2001:db8::7"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(banned, expected, "agent log:\n{log}");
}
