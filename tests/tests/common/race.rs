//! Logins racing on one code through real libpam: `RACERS` `pamtester` processes, each
//! waiting at the prompt until all are there, then all answer with the same code at once.

use super::*;
use std::sync::{Arc, Barrier};

pub const RACERS: usize = 32;

/// Starts `RACERS` logins of `user`, spread over `services` in turn (e.g. one per agent of a
/// fleet), waits until every one shows the prompt, then types `code` into all of them at
/// once. Returns what each reported.
pub fn race(services: &[&PamService], user: &str, code: &str) -> Vec<PamOut> {
    let barrier = Barrier::new(RACERS);
    std::thread::scope(|scope| {
        let racers: Vec<_> = (0..RACERS)
            .map(|index| {
                let service = services[index % services.len()];
                let barrier = &barrier;
                scope.spawn(move || racer(service, user, code, barrier))
            })
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

/// Exactly one login passed; the others were refused by the agent, not dropped.
#[track_caller]
pub fn exactly_one_success(outs: &[PamOut]) {
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
