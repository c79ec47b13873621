//! The fleet store against a real PostgreSQL (a throwaway cluster: initdb, pg_ctl, a password
//! role), with two or three agents on this machine standing for hosts (own sockets, own
//! `--host-name`), the module through real libpam (pamtester) and codes from oathtool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::fleet::*;
use common::race::*;
use common::*;

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::process::Command;

/// The hosts of each log entry, newest first, as `log --json` shows them from `agent`.
fn log_hosts(agent: &Agent, account: &str) -> Vec<String> {
    let out = agent.cli(&["log", account]);
    out.ok()
        .as_array()
        .unwrap_or_else(|| panic!("log --json is not an array: {out}"))
        .iter()
        .map(|entry| entry["host"].as_str().unwrap_or("-").to_owned())
        .collect()
}

#[test]
fn enrolled_on_one_host_a_code_used_on_another_is_refused_everywhere() {
    let fleet = Fleet::start();
    let host_a = fleet.agent("host-a");
    let host_b = fleet.agent("host-b");
    let user = TestUser::new();
    let (enrolled, now) = host_a.enroll_active(&user.name, &[]);

    let shown = host_b.show(&user.name);
    assert_eq!(shown["scope"], "fleet", "{shown}");
    assert_eq!(shown["owner"], "host-a", "{shown}");
    assert_eq!(shown["verified"], true, "{shown}");

    let service_a = PamService::totp(&host_a.socket, "");
    let service_b = PamService::totp(&host_b.socket, "");
    let code = enrolled.code(now);
    pamtester(&service_b, &user.name, &code).assert_success();
    pamtester(&service_a, &user.name, &code).assert_failure(PAM_AUTH_ERR_TEXT);
    pamtester(&service_b, &user.name, &code).assert_failure(PAM_AUTH_ERR_TEXT);

    // Both hosts read one trail, each entry naming the host that wrote it.
    let hosts = log_hosts(&host_a, &user.name);
    assert_eq!(hosts[..3], ["host-b", "host-a", "host-b"], "{hosts:?}");
    assert!(hosts.contains(&"host-a".to_owned()), "{hosts:?}");
    let human = host_b.cli_human(&["log", &user.name]);
    assert!(
        human.stdout.contains("host-a") && human.stdout.contains("host"),
        "{human}"
    );

    let status = host_b.cli(&["status"]);
    assert_eq!(status.ok()["store"], "postgresql", "{status}");
    let database = status.ok()["database"].as_str().unwrap().to_owned();
    assert!(
        database.starts_with("postgres://pamtotp@127.0.0.1:"),
        "{database}"
    );
    assert!(!database.contains(fleet.cluster.password()), "{database}");
}

/// Two hosts on one fleet store, a user enrolled (active) through host A, and a PAM
/// service on each host. Fields drop in order: the services and agents before the cluster.
struct TwoHosts {
    service_a: PamService,
    service_b: PamService,
    host_a: Agent,
    host_b: Agent,
    user: TestUser,
    enrolled: Enrolled,
    /// A time fresh in its step, for `enrolled.code(now)`.
    now: u64,
    /// Held only so the cluster outlives the agents.
    _fleet: Fleet,
}

impl TwoHosts {
    fn start(config: &str) -> Self {
        let fleet = Fleet::start();
        let host_a = fleet.agent_on("host-a", &fleet.cluster.url(), config);
        let host_b = fleet.agent_on("host-b", &fleet.cluster.url(), config);
        let user = TestUser::new();
        let (enrolled, now) = host_a.enroll_active(&user.name, &[]);
        Self {
            service_a: PamService::totp(&host_a.socket, ""),
            service_b: PamService::totp(&host_b.socket, ""),
            host_a,
            host_b,
            user,
            enrolled,
            now,
            _fleet: fleet,
        }
    }
}

/// PAM items of a remote attacker.
const ATTACKER: [(&str, &str); 1] = [("rhost", "203.0.113.9")];

#[test]
fn thirty_two_logins_racing_through_two_hosts_let_exactly_one_in() {
    let TwoHosts {
        service_a,
        service_b,
        host_b,
        user,
        enrolled,
        now,
        ..
    } = &TwoHosts::start(DEFAULT_CONFIG);

    let outs = race(&[service_a, service_b], &user.name, &enrolled.code(*now));
    exactly_one_success(&outs);
    for out in outs.iter().filter(|o| !o.success) {
        out.assert_failure(PAM_AUTH_ERR_TEXT);
    }
    let shown = host_b.show(&user.name);
    assert_eq!(
        shown["failed_attempts"], 0,
        "replays counted as failures: {shown}"
    );
}

#[test]
fn failures_on_two_hosts_add_up_to_one_lock_which_either_host_lifts() {
    // The account locks after 4 failures over all hosts; a source only after 3 on a host.
    let TwoHosts {
        service_a,
        service_b,
        host_a,
        host_b,
        user,
        enrolled,
        now,
        ..
    } = &TwoHosts::start(
        "window = 1\n[lockout]\nthreshold = 4\nbase_seconds = 300\nmax_seconds = 900\n\
         source_threshold = 3\nsource_base_seconds = 300\n",
    );
    let (attacker, now) = (&ATTACKER, *now);

    let wrong = enrolled.wrong_codes(now, 4);
    for code in &wrong[..2] {
        pamtester_with(None, service_a, &user.name, code, attacker)
            .assert_failure(PAM_AUTH_ERR_TEXT);
    }
    for code in &wrong[2..3] {
        pamtester_with(None, service_b, &user.name, code, attacker)
            .assert_failure(PAM_AUTH_ERR_TEXT);
    }
    // Two failures on A and one on B from one address: no host's count of that source
    // reaches 3, and the account's count (3 of 4) does not lock it yet.
    let shown = host_b.show(&user.name);
    assert_eq!(shown["failed_attempts"], 3, "{shown}");
    assert!(shown["locked_until"].is_null(), "{shown}");
    assert_eq!(shown["blocked_sources"], Value::Array(vec![]), "{shown}");

    // The fourth failure, on B, locks the account on every host.
    pamtester_with(None, service_b, &user.name, &wrong[3], attacker)
        .assert_failure(PAM_AUTH_ERR_TEXT);
    for agent in [host_a, host_b] {
        let shown = agent.show(&user.name);
        assert!(!shown["locked_until"].is_null(), "not locked: {shown}");
    }
    pamtester(service_a, &user.name, &enrolled.code(now)).assert_failure(PAM_MAXTRIES_TEXT);

    // Unlock on B; the right code then works on A.
    host_b.cli(&["unlock", &user.name]).ok();
    let shown = host_a.show(&user.name);
    assert!(shown["locked_until"].is_null(), "{shown}");
    pamtester(service_a, &user.name, &enrolled.code(now)).assert_success();
}

#[test]
fn sources_are_counted_per_host_and_shown_with_the_host() {
    let TwoHosts {
        service_a,
        service_b,
        host_b,
        user,
        enrolled,
        now,
        ..
    } = &TwoHosts::start(
        "window = 1\n[lockout]\nthreshold = 20\nbase_seconds = 30\nmax_seconds = 900\n\
         source_threshold = 2\nsource_base_seconds = 300\n",
    );
    let (attacker, now) = (&ATTACKER, *now);
    for code in enrolled.wrong_codes(now, 2) {
        pamtester_with(None, service_a, &user.name, &code, attacker)
            .assert_failure(PAM_AUTH_ERR_TEXT);
    }
    let shown = host_b.show(&user.name);
    let blocked = shown["blocked_sources"].as_array().unwrap().clone();
    assert_eq!(blocked.len(), 1, "{shown}");
    assert_eq!(blocked[0]["source"], "host-a/rhost:203.0.113.9", "{shown}");
    // The same address is not blocked on host B: it passes there with the right code.
    pamtester_with(None, service_b, &user.name, &enrolled.code(now), attacker).assert_success();
}

#[test]
fn a_dump_of_the_database_holds_no_secret_and_no_emergency_code() {
    let fleet = Fleet::start();
    let host_a = fleet.agent("host-a");
    let user = TestUser::new();
    let (enrolled, _) = host_a.enroll_active(&user.name, &[]);
    host_a
        .cli(&["set", &user.name, "--comment", "dump-check"])
        .ok();

    let dump = fleet.cluster.pg_dump().unwrap();
    let text = String::from_utf8_lossy(&dump);
    assert!(text.contains("dump-check"), "the dump lacks the profile");
    let secret = base32::decode(
        base32::Alphabet::Rfc4648 { padding: false },
        &enrolled.secret,
    )
    .unwrap();
    let secret_hex = hex::encode(&secret);
    assert!(
        !text.contains(&enrolled.secret),
        "the base32 secret is in the dump"
    );
    assert!(!text.contains(&secret_hex), "the hex secret is in the dump");
    assert!(
        !dump.windows(secret.len()).any(|w| w == secret.as_slice()),
        "the raw secret is in the dump"
    );
    // Emergency codes: neither the codes nor their salted SHA-256 (guessable offline).
    let stored = fleet
        .cluster
        .psql(&format!(
            "SELECT emergency_codes FROM profiles WHERE account = '{}'",
            user.name
        ))
        .unwrap();
    let entries: Vec<(&str, &str)> = stored
        .split(',')
        .map(|entry| entry.split_once(':').unwrap())
        .collect();
    assert_eq!(entries.len(), enrolled.emergency_codes.len());
    for code in &enrolled.emergency_codes {
        assert!(
            !text.contains(code.as_str()),
            "an emergency code is in the dump"
        );
        for (salt, _) in &entries {
            let mut hasher = Sha256::new();
            hasher.update(hex::decode(salt).unwrap());
            hasher.update(code.as_bytes());
            let salted = hex::encode(hasher.finalize());
            assert!(
                !text.contains(&salted),
                "an emergency code's salted hash is in the dump"
            );
        }
    }
    // And yet they work, through another host.
    let host_b = fleet.agent("host-b");
    let service_b = PamService::totp(&host_b.socket, "");
    pamtester(&service_b, &user.name, &enrolled.emergency_codes[0]).assert_success();
    pamtester(&service_b, &user.name, &enrolled.emergency_codes[0])
        .assert_failure(PAM_AUTH_ERR_TEXT);
}

#[test]
fn with_postgresql_stopped_logins_fail_closed_agents_start_and_all_recover_without_a_restart() {
    let fleet = Fleet::start();
    let host_a = fleet.agent("host-a");
    let user = TestUser::new();
    let (enrolled, now) = host_a.enroll_active(&user.name, &[]);
    let service = PamService::totp(&host_a.socket, "timeout=3");

    fleet.cluster.stop().unwrap();
    let out = pamtester(&service, &user.name, &enrolled.code(now));
    out.assert_failure(PAM_AUTHINFO_UNAVAIL_TEXT);
    host_a.cli(&["show", &user.name]).err(8, "unavailable");
    let status = host_a.cli(&["status"]);
    let error = status.err(8, "unavailable");
    assert!(
        error["message"].as_str().unwrap().contains("fleet store"),
        "status does not say why: {status}"
    );

    // An agent starting now starts all the same, and says why it cannot answer.
    let host_b = fleet.agent("host-b");
    host_b.cli(&["status"]).err(8, "unavailable");
    assert!(
        host_b.log_text().contains("starting anyway"),
        "{}",
        host_b.log_text()
    );

    fleet.cluster.restart_server().unwrap();
    pamtester(&service, &user.name, &enrolled.code(now)).assert_success();
    for agent in [&host_a, &host_b] {
        agent.cli(&["status"]).ok();
        assert_eq!(agent.show(&user.name)["verified"], true);
    }
}

#[test]
fn killing_the_postmaster_under_load_loses_nothing_acknowledged() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let fleet = Fleet::start();
    let host_a = fleet.agent("host-a");
    let host_b = fleet.agent("host-b");
    let users: Vec<TestUser> = (0..4).map(|_| TestUser::new()).collect();
    let enrolled: Vec<Enrolled> = users
        .iter()
        .map(|user| host_a.enroll_active(&user.name, &[]).0)
        .collect();
    let service_a = PamService::totp(&host_a.socket, "");
    let service_b = PamService::totp(&host_b.socket, "");

    // Each account logs in with its emergency codes one after another, alternating hosts;
    // the postmaster is killed once logins are under way, and started again at once.
    let acknowledged = AtomicUsize::new(0);
    let accepted: Vec<Vec<String>> = std::thread::scope(|scope| {
        let logins: Vec<_> = enrolled
            .iter()
            .zip(&users)
            .map(|(enrolled, user)| {
                let (acknowledged, service_a, service_b) = (&acknowledged, &service_a, &service_b);
                scope.spawn(move || {
                    let mut accepted = Vec::new();
                    for (turn, code) in enrolled.emergency_codes.iter().enumerate() {
                        let service = if turn % 2 == 0 { service_a } else { service_b };
                        if pamtester(service, &user.name, code).success {
                            accepted.push(code.clone());
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    accepted
                })
            })
            .collect();
        // Never waits forever: if the logins all end without two acknowledgements, the
        // assertion below says so.
        while acknowledged.load(Ordering::SeqCst) < 2
            && !logins.iter().all(|login| login.is_finished())
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        fleet.cluster.kill_postmaster().unwrap();
        fleet.cluster.restart_server().unwrap();
        logins.into_iter().map(|l| l.join().unwrap()).collect()
    });
    for ((user, enrolled), accepted) in users.iter().zip(&enrolled).zip(&accepted) {
        // Every acknowledged code stays used on both hosts (refused as wrong, or once the
        // replays have locked the account, as locked).
        for code in accepted {
            for service in [&service_a, &service_b] {
                let out = pamtester(service, &user.name, code);
                assert!(
                    !out.success
                        && (out.output.contains(PAM_AUTH_ERR_TEXT)
                            || out.output.contains(PAM_MAXTRIES_TEXT)),
                    "a used code: {out}"
                );
            }
        }
        // Nothing acknowledged was lost: each acknowledged code is gone from the store (the
        // one login in flight at the kill may have been used without an answer).
        let remaining = host_b.show(&user.name)["emergency_codes_remaining"]
            .as_u64()
            .unwrap() as usize;
        let left = enrolled.emergency_codes.len() - accepted.len();
        assert!(
            remaining == left || remaining + 1 == left,
            "{} codes acknowledged, {remaining} of {} remain",
            accepted.len(),
            enrolled.emergency_codes.len()
        );
    }
    assert!(
        accepted.iter().map(Vec::len).sum::<usize>() >= 2,
        "no login got through"
    );
}

#[test]
fn after_a_failover_to_a_standby_that_missed_the_last_login_its_code_is_refused() {
    let fleet = Fleet::start();
    let standby = fleet.cluster.standby().unwrap();
    let both = format!(
        "postgres://pamtotp@127.0.0.1:{},127.0.0.1:{}/pamtotp?sslmode=disable\
         &target_session_attrs=read-write",
        fleet.cluster.port(),
        standby.port()
    );
    let host_a = fleet.agent_on("host-a", &both, DEFAULT_CONFIG);
    let user = TestUser::new();
    let (enrolled, now) = host_a.enroll_active(&user.name, &[]);
    fleet.cluster.wait_caught_up(&standby).unwrap();
    // The standby goes away before the login, so it never receives it: the asynchronous
    // replication hole.
    standby.stop().unwrap();
    let service = PamService::totp(&host_a.socket, "");
    let code = enrolled.code(now);
    pamtester(&service, &user.name, &code).assert_success();

    fleet.cluster.kill_postmaster().unwrap();
    standby.restart_server().unwrap();
    standby.promote().unwrap();
    // The agent follows the URL to the promoted standby, which lacks the login.
    let missing = standby
        .psql(&format!(
            "SELECT count(*) FROM audit WHERE account = '{}' AND result = 'success' \
             AND op = 'authenticate'",
            user.name
        ))
        .unwrap();
    assert_eq!(
        missing, "0",
        "the standby has the login: the test proves nothing"
    );
    pamtester(&service, &user.name, &code).assert_failure(PAM_AUTH_ERR_TEXT);
    assert!(
        host_a.log_text().contains("fleet store is now server"),
        "{}",
        host_a.log_text()
    );
    // The store itself works on the new primary.
    host_a.show(&user.name);
}

#[test]
fn a_hosts_sqlite_profiles_migrate_into_the_fleet_idempotently() {
    let fleet = Fleet::start();
    // A host on SQLite: an active profile whose current code has been used.
    let single = Agent::start();
    let user = TestUser::new();
    let (enrolled, now) = single.enroll_active(&user.name, &[]);
    let used = enrolled.code(now);
    pamtester(&PamService::totp(&single.socket, ""), &user.name, &used).assert_success();
    let other = TestUser::new();
    single.enroll(&other.name, &[]);
    let sqlite_db = single.db.clone();
    let single_host = single.show(&user.name)["owner"]
        .as_str()
        .unwrap()
        .to_owned();

    let dir = tempfile::tempdir().unwrap();
    let config_lines = fleet.secret_files(dir.path());
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &config_lines).unwrap();
    let migrate = || {
        let mut command = Command::new(agent_bin());
        command
            .args(["migrate", "--from"])
            .arg(&sqlite_db)
            .args(["--store", &fleet.cluster.url(), "--config"])
            .arg(&config);
        run(&mut command, None, PROCESS_LIMIT)
    };
    let first = migrate();
    assert_eq!(first.code, 0, "{}", first.output());
    assert!(
        first.stdout.contains("2 copied, 0 already present"),
        "{}",
        first.output()
    );
    let again = migrate();
    assert_eq!(again.code, 0, "{}", again.output());
    assert!(
        again.stdout.contains("0 copied, 2 already present"),
        "{}",
        again.output()
    );

    let host_a = fleet.agent("host-a");
    let shown = host_a.show(&user.name);
    assert_eq!(shown["owner"], single_host.as_str(), "{shown}");
    assert_eq!(shown["verified"], true, "{shown}");
    assert_eq!(host_a.show(&other.name)["verified"], false);
    let service = PamService::totp(&host_a.socket, "");
    // The code used on the SQLite host stays used; the emergency codes moved (re-keyed).
    pamtester(&service, &user.name, &used).assert_failure(PAM_AUTH_ERR_TEXT);
    pamtester(&service, &user.name, &enrolled.emergency_codes[1]).assert_success();
    // The host's audit trail came along.
    assert!(
        log_hosts(&host_a, &user.name).contains(&single_host),
        "{:?}",
        log_hosts(&host_a, &user.name)
    );

    // A different secret for the same account in the fleet is a conflict, left alone.
    host_a.cli(&["remove", &other.name]).ok();
    host_a.enroll(&other.name, &[]);
    let conflict = migrate();
    assert_eq!(conflict.code, 1, "{}", conflict.output());
    assert!(
        conflict
            .stdout
            .contains(&format!("conflict {}", other.name)),
        "{}",
        conflict.output()
    );
}

#[test]
fn the_printed_schema_is_what_the_agent_runs_on() {
    let fleet = Fleet::start();
    let mut command = Command::new(agent_bin());
    command.arg("schema");
    let schema = run(&mut command, None, PROCESS_LIMIT);
    assert_eq!(schema.code, 0, "{}", schema.output());
    // A DBA applies it as the store's role, then an agent starts on it without migrating.
    let applied = Command::new(require_tool("psql"))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
        .arg(fleet.cluster.port().to_string())
        .args(["-U", "pamtotp", "-d", "pamtotp", "-c", &schema.stdout])
        .env("PGPASSWORD", fleet.cluster.password())
        .output()
        .unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let host_a = fleet.agent("host-a");
    let user = TestUser::new();
    host_a.enroll_active(&user.name, &[]);
    assert_eq!(
        fleet
            .cluster
            .psql("SELECT version FROM pam_totp_schema")
            .unwrap(),
        "2"
    );
}

#[test]
fn verify_full_tls_and_the_key_files_rules_are_enforced() {
    let fleet = Fleet::start_with(Options { tls: true });
    // The CA lies in the cluster's private directory: copy it where the agent reads it.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::copy(fleet.cluster.ca_cert().unwrap(), &ca).unwrap();
    let url = format!(
        "postgres://pamtotp@localhost:{}/pamtotp?sslmode=verify-full&sslrootcert={}",
        fleet.cluster.port(),
        ca.display()
    );
    let host_a = fleet.agent_on("host-a", &url, DEFAULT_CONFIG);
    let user = TestUser::new();
    host_a.enroll_active(&user.name, &[]);
    let ssl = fleet
        .cluster
        .psql(
            "SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
               WHERE application_name = 'pam-totp-agent'",
        )
        .unwrap();
    assert_eq!(ssl, "t", "the agent's connections are not encrypted");

    // Without sslrootcert, verify-full checks the system's CA store, which does not know
    // this cluster's CA: the agent refuses to start.
    let untrusted = format!(
        "postgres://pamtotp@localhost:{}/pamtotp?sslmode=verify-full",
        fleet.cluster.port()
    );
    let refused = start_failing_agent(&fleet, &untrusted, |_| {});
    assert!(refused.contains("certificate"), "{refused}");

    // A wrong password is no outage: the agent refuses to start and says so.
    let wrong_password = start_failing_agent(&fleet, &fleet.cluster.url(), |state| {
        std::fs::write(state.join("store-password"), "not-the-password\n").unwrap();
    });
    assert!(
        wrong_password.contains("password authentication failed"),
        "{wrong_password}"
    );

    // A key file other users can read is refused by name.
    let loose = start_failing_agent(&fleet, &fleet.cluster.url(), |state| {
        std::fs::set_permissions(
            state.join("fleet.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
    });
    assert!(
        loose.contains("fleet key") && loose.contains("0644"),
        "{loose}"
    );
}

/// Runs an agent that must refuse to start; returns what it printed.
fn start_failing_agent(fleet: &Fleet, url: &str, spoil: impl FnOnce(&std::path::Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let lines = fleet.secret_files(dir.path());
    spoil(dir.path());
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, format!("{lines}{DEFAULT_CONFIG}")).unwrap();
    let mut command = Command::new(agent_bin());
    command
        .arg("--socket")
        .arg(dir.path().join("agent.sock"))
        .args(["--store", url, "--host-name", "host-x", "--config"])
        .arg(&config);
    let out = run(&mut command, None, PROCESS_LIMIT);
    assert_ne!(out.code, 0, "the agent started: {}", out.output());
    out.output()
}
