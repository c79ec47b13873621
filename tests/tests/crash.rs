//! The agent killed (-9) in the middle of enrollments and logins loses nothing it
//! acknowledged and forgets no used code; a stopped (SIGSTOP) agent leaves logins failing
//! closed within the module's deadline, not hanging.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::faults::Resume;
use common::*;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `sqlite3 DB 'PRAGMA integrity_check'` must print `ok`.
#[track_caller]
fn assert_integrity(db: &std::path::Path) {
    let out = run(
        Command::new(require_tool("sqlite3"))
            .arg(db)
            .arg("PRAGMA integrity_check"),
        None,
        PROCESS_LIMIT,
    );
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "ok"),
        "integrity_check of {}: {}",
        db.display(),
        out.output()
    );
}

/// A login that passed before the kill.
struct Passed {
    account: String,
    code: String,
    emergency: bool,
}

#[test]
fn kill_9_under_load_keeps_every_acknowledged_enrollment_and_used_code() {
    setup();
    let mut agent = Agent::start();
    let service = PamService::totp(&agent.socket, "");

    // Accounts that log in during the load (each with its ten emergency codes) ...
    let login_users: Vec<TestUser> = (0..3).map(|_| TestUser::new()).collect();
    let logins: Vec<Enrolled> = login_users
        .iter()
        .map(|u| agent.enroll_active(&u.name, &[]).0)
        .collect();
    // ... and accounts enrolled during it.
    let enroll_users: Vec<TestUser> = (0..40).map(|_| TestUser::new()).collect();
    let now = wait_for_fresh_step(30);

    let killed = AtomicBool::new(false);
    let enrolled: Mutex<Vec<(String, serde_json::Value)>> = Mutex::new(Vec::new());
    let passed: Mutex<Vec<Passed>> = Mutex::new(Vec::new());
    let unexpected: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let pid = agent.pid().expect("the agent runs");
    let agent_ref = &agent;
    std::thread::scope(|scope| {
        for half in enroll_users.chunks(enroll_users.len() / 2) {
            let (killed, enrolled, unexpected) = (&killed, &enrolled, &unexpected);
            scope.spawn(move || {
                for user in half {
                    let before_kill = !killed.load(Ordering::SeqCst);
                    let out = agent_ref.cli(&["enroll", &user.name]);
                    if out.code == 0 {
                        let fingerprint = out.json["profile"]["sha_fingerprint"].clone();
                        enrolled
                            .lock()
                            .unwrap()
                            .push((user.name.clone(), fingerprint));
                    } else if before_kill && !killed.load(Ordering::SeqCst) {
                        unexpected.lock().unwrap().push(out.to_string());
                    } else {
                        break;
                    }
                }
            });
        }
        for login in &logins {
            let (killed, passed, unexpected, service) = (&killed, &passed, &unexpected, &service);
            scope.spawn(move || {
                let totp = [login.code(now), login.code(now + 30)];
                let codes = totp
                    .iter()
                    .map(|c| (c.clone(), false))
                    .chain(login.emergency_codes.iter().map(|c| (c.clone(), true)));
                for (code, emergency) in codes {
                    let out = pamtester(service, &login.account, &code);
                    if out.success {
                        passed.lock().unwrap().push(Passed {
                            account: login.account.clone(),
                            code,
                            emergency,
                        });
                    } else if !killed.load(Ordering::SeqCst) {
                        unexpected.lock().unwrap().push(out.to_string());
                    } else {
                        break;
                    }
                }
            });
        }
        // Kill in the middle of it.
        let deadline = Instant::now() + Duration::from_secs(60);
        while (enrolled.lock().unwrap().len() < 5 || passed.lock().unwrap().len() < 6)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        killed.store(true, Ordering::SeqCst);
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("cannot SIGKILL the agent");
    });
    let unexpected = unexpected.into_inner().unwrap();
    assert!(
        unexpected.is_empty(),
        "requests failed before the kill:\n{}",
        unexpected.join("\n")
    );
    let enrolled = enrolled.into_inner().unwrap();
    let passed = passed.into_inner().unwrap();
    assert!(
        enrolled.len() >= 5 && passed.len() >= 6,
        "too little happened before the kill: {} enrollments, {} logins",
        enrolled.len(),
        passed.len()
    );
    eprintln!(
        "killed the agent after {} acknowledged enrollments and {} logins",
        enrolled.len(),
        passed.len()
    );

    // The database is consistent as the crash left it.
    assert_integrity(&agent.db);
    let status = agent.restart();
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "the agent was not killed by SIGKILL: {status:?}"
    );

    // Every acknowledged enrollment is there, with the secret that was handed out.
    for (account, fingerprint) in &enrolled {
        let shown = agent.show(account);
        assert_eq!(
            &shown["sha_fingerprint"], fingerprint,
            "{account} after the crash: {shown}"
        );
    }
    // Every code that let someone in before the kill is refused now. (A used emergency code
    // counts as a wrong guess: unlock after each, so the next check is not a lock.)
    for used in &passed {
        let out = pamtester(&service, &used.account, &used.code);
        assert!(
            !out.success,
            "a code used before the crash ({}) let {} in again: {out}",
            if used.emergency { "emergency" } else { "TOTP" },
            used.account
        );
        out.assert_failure(PAM_AUTH_ERR_TEXT);
        agent.cli(&["unlock", &used.account]).ok();
    }
    for login in &logins {
        let used = passed
            .iter()
            .filter(|p| p.account == login.account && p.emergency)
            .count();
        let shown = agent.show(&login.account);
        let remaining = shown["emergency_codes_remaining"].as_u64().unwrap_or(99);
        assert!(
            remaining as usize <= 10 - used,
            "{} emergency codes used before the crash, {remaining} remain: {shown}",
            used
        );
    }
    assert_integrity(&agent.db);
}

#[test]
fn a_stopped_agent_fails_logins_closed_within_the_deadline() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::totp(&agent.socket, "timeout=1");
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    let pid = agent.pid().expect("the agent runs");

    let resume = Resume(pid);
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).expect("cannot SIGSTOP the agent");
    let out = pamtester(&service, &user.name, &enrolled.code(now));
    out.assert_failure(PAM_AUTHINFO_UNAVAIL_TEXT);
    assert!(
        out.elapsed < Duration::from_secs(10),
        "the login took {:?} with timeout=1 against a stopped agent: {out}",
        out.elapsed
    );
    // The CLI gives up too (its own deadline), saying the agent is unavailable.
    let cli = agent.cli(&["show", &user.name]);
    cli.err(8, "unavailable");

    // Running again: logins work (the next step's code; the stalled request may still have
    // been answered late and used the first one).
    drop(resume);
    pamtester(&service, &user.name, &enrolled.code(now + 30)).assert_success();
    assert_eq!(agent.show(&user.name)["failed_attempts"], 0);
}
