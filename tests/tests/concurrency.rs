//! Logins racing on one code through real libpam: 32 `pamtester` processes, each waiting at
//! the prompt until all are there, then all answer with the same code at once. Exactly one
//! may pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const RACERS: usize = 32;

/// Starts `RACERS` logins of `user`, waits until every one shows the prompt, then types
/// `code` into all of them at once. Returns what each reported.
fn race(service: &PamService, user: &str, code: &str) -> Vec<PamOut> {
    let barrier = Barrier::new(RACERS);
    std::thread::scope(|scope| {
        let racers: Vec<_> = (0..RACERS)
            .map(|_| scope.spawn(|| racer(service, user, code, &barrier)))
            .collect();
        racers
            .into_iter()
            .map(|r| r.join().expect("a racer thread panicked"))
            .collect()
    })
}

fn racer(service: &PamService, user: &str, code: &str, barrier: &Barrier) -> PamOut {
    let start = Instant::now();
    let mut child = Command::new(require_tool("pamtester"))
        .args([&service.name, user, "authenticate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("cannot start pamtester");
    let pid = child.id();
    let output = Arc::new(Mutex::new(Vec::<u8>::new()));
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut pipe| {
        let output = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 256];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                output.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        })
    })
    .collect();
    let seen = |text: &str| String::from_utf8_lossy(&output.lock().unwrap()).contains(text);
    let deadline = Instant::now() + PROCESS_LIMIT;
    let mut prompted = true;
    while !seen(DEFAULT_PROMPT) {
        if Instant::now() > deadline || !matches!(child.try_wait(), Ok(None)) {
            prompted = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Everyone is at the prompt (or gave up): answer together. Every racer reaches the
    // barrier, so one failing racer cannot hang the others.
    barrier.wait();
    if !prompted {
        let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGKILL);
        let _ = child.wait();
        let output = String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
        panic!("pamtester showed no prompt within {PROCESS_LIMIT:?}:\n{output}");
    }
    let mut stdin = child.stdin.take().expect("piped stdin");
    let _ = stdin.write_all(format!("{code}\n").as_bytes());
    drop(stdin);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGKILL);
                let _ = child.wait();
                panic!("pamtester did not finish within {PROCESS_LIMIT:?}");
            }
        }
    };
    for reader in readers {
        let _ = reader.join();
    }
    let output = String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
    PamOut {
        success: status.success(),
        output,
        elapsed: start.elapsed(),
        command: format!(
            "echo {code} | pamtester {} {user} authenticate",
            service.name
        ),
    }
}

#[track_caller]
fn exactly_one_success(outs: &[PamOut]) {
    let winners = outs
        .iter()
        .filter(|o| o.success && o.output.contains("successfully authenticated"))
        .count();
    let report: String = outs.iter().map(|o| format!("{o}\n")).collect();
    assert_eq!(
        winners, 1,
        "{winners} of {RACERS} racing logins passed with one code:\n{report}"
    );
    // The losers were answered by the agent (refused), not dropped.
    for out in outs.iter().filter(|o| !o.success) {
        assert!(
            !out.output.contains(PAM_AUTHINFO_UNAVAIL_TEXT),
            "a racing login found the agent unavailable: {out}"
        );
    }
}

#[test]
fn thirty_two_logins_racing_on_one_code_let_exactly_one_in() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);

    let outs = race(&service, &user.name, &enrolled.code(now));
    exactly_one_success(&outs);
    // The others were replays: refused as wrong codes, and not counted.
    for out in outs.iter().filter(|o| !o.success) {
        out.assert_failure(PAM_AUTH_ERR_TEXT);
    }
    let shown = agent.show(&user.name);
    assert_eq!(shown["failed_attempts"], 0, "{shown}");
    assert!(shown["locked_until"].is_null(), "{shown}");

    // The next step's code still works once.
    pamtester(&service, &user.name, &enrolled.code(now + 30)).assert_success();
}

#[test]
fn thirty_two_logins_racing_on_one_emergency_code_let_exactly_one_in() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, _) = agent.enroll_active(&user.name, &[]);

    let outs = race(&service, &user.name, &enrolled.emergency_codes[0]);
    exactly_one_success(&outs);
    // A used emergency code is a wrong code: the losers may have run into the lock.
    for out in outs.iter().filter(|o| !o.success) {
        assert!(
            out.output.contains(PAM_AUTH_ERR_TEXT) || out.output.contains(PAM_MAXTRIES_TEXT),
            "{out}"
        );
    }
    assert_eq!(
        agent.show(&user.name)["emergency_codes_remaining"],
        9,
        "the race used the code more than once"
    );
}
