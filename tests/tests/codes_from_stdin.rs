//! Codes never need to be on the command line (CONTRACT.md, "Command-line tool"): wherever a
//! command takes a CODE, `-` reads it from standard input, and `verify` without CODE reads one
//! line from standard input (or, on a terminal, prompts without echo).
//!
//! Every command here runs the built CLI as a real account (runuser) or root against a real
//! agent, with codes from `oathtool`. While the CLI waits for its input, every process's
//! command line (what `ps` shows) is checked not to hold the code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::dialog::{converse, PROMPTED_AGAIN};
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The prompt `verify` shows on a terminal (the PAM module's default prompt).
const PROMPT: &str = "Verification code: ";

/// Every process's command line, NUL-separated arguments joined by spaces.
fn command_lines() -> Vec<(u32, String)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let raw = fs::read(entry.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&raw).replace('\0', " ");
            Some((pid, text))
        })
        .collect()
}

/// Whether a process runs the CLI (argv[0]) against `socket`.
fn cli_is_running(cli: &Path, socket: &Path) -> bool {
    let cli = cli.to_string_lossy();
    let socket = socket.to_string_lossy();
    command_lines()
        .iter()
        .any(|(_, line)| line.starts_with(&format!("{cli} ")) && line.contains(&*socket))
}

/// `pam-totp --socket SOCKET --json ARGS...` as root or `user`, with `input` written to its
/// standard input (a pipe) only once the CLI process is running: by then every process's
/// command line is checked not to contain `code`.
fn cli_stdin(agent: &Agent, user: Option<&str>, args: &[&str], code: &str, input: &str) -> CliOut {
    assert!(
        !args.iter().any(|arg| arg.contains(code)),
        "the test itself put the code on the command line: {args:?}"
    );
    let bin = cli_bin();
    let mut command = match user {
        Some(user) => as_user(user, &bin),
        None => Command::new(&bin),
    };
    command
        .env_remove("PAM_TOTP_SOCKET")
        .arg("--socket")
        .arg(&agent.socket)
        .arg("--json")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let shown = format!(
        "echo <code> | {}pam-totp --socket {} --json {}",
        user.map(|u| format!("runuser -u {u} -- "))
            .unwrap_or_default(),
        agent.socket.display(),
        args.join(" ")
    );
    let start = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let pid = child.id() as i32;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || read_all(stdout));
    let err_reader = std::thread::spawn(move || read_all(stderr));

    // Wait for the CLI itself (under runuser: its child) while it waits for its input.
    while !cli_is_running(&bin, &agent.socket) {
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        if start.elapsed() > PROCESS_LIMIT {
            let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
            let _ = child.wait();
            panic!("{shown} did not start within {PROCESS_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for (other, line) in command_lines() {
        assert!(
            !line.contains(code),
            "process {other} shows the code on its command line: {line}"
        );
    }
    if let Some(mut pipe) = child.stdin.take() {
        // The CLI may have exited without reading (EPIPE): its output says why.
        let _ = pipe.write_all(input.as_bytes());
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > PROCESS_LIMIT => {
                let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
                let _ = child.wait();
                panic!("{shown} did not finish within {PROCESS_LIMIT:?}; killed it");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for {shown}: {e}"),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let out = CliOut {
        command: shown,
        code: status.code().unwrap_or(-1),
        json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        stdout,
        stderr,
    };
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(code), "the code was echoed: {out}");
    }
    out
}

fn read_all(pipe: Option<impl Read>) -> String {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The code as a line on standard input.
fn line(code: &str) -> String {
    format!("{code}\n")
}

#[test]
fn verify_without_code_reads_a_line_from_standard_input() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let enrolled = agent.enroll(&user.name, &[]);
    let now = wait_for_fresh_step(30);
    let wrong = enrolled.wrong_codes(now, 1).remove(0);

    // As the account itself, USER and CODE both left out.
    let out = cli_stdin(&agent, Some(&user.name), &["verify"], &wrong, &line(&wrong));
    assert_eq!(out.err(9, "code_rejected")["target"], "code", "{out}");
    assert_eq!(agent.show(&user.name)["verified"], false);

    let code = enrolled.code(now - 30);
    // A CRLF line end (a Windows clipboard) is taken off like a plain newline.
    let out = cli_stdin(
        &agent,
        Some(&user.name),
        &["verify"],
        &code,
        &format!("{code}\r\n"),
    );
    out.ok();
    assert_eq!(agent.show(&user.name)["verified"], true);

    // Consumed: the same code again is refused.
    let out = cli_stdin(&agent, Some(&user.name), &["verify"], &code, &line(&code));
    out.err(9, "code_rejected");
}

#[test]
fn verify_dash_reads_the_code_for_the_caller_or_for_user() {
    setup();
    let agent = Agent::start();
    let alice = TestUser::new();
    let bob = TestUser::new();
    let a = agent.enroll(&alice.name, &[]);
    let b = agent.enroll(&bob.name, &[]);
    let now = wait_for_fresh_step(30);

    // `verify -`: the caller's own account.
    let wrong = a.wrong_codes(now, 1).remove(0);
    cli_stdin(
        &agent,
        Some(&alice.name),
        &["verify", "-"],
        &wrong,
        &line(&wrong),
    )
    .err(9, "code_rejected");
    let code = a.code(now - 30);
    cli_stdin(
        &agent,
        Some(&alice.name),
        &["verify", "-"],
        &code,
        &line(&code),
    )
    .ok();
    assert_eq!(agent.show(&alice.name)["verified"], true);

    // `verify USER -`: as root for bob; and as alice, with her own name.
    let wrong = b.wrong_codes(now, 1).remove(0);
    cli_stdin(
        &agent,
        None,
        &["verify", &bob.name, "-"],
        &wrong,
        &line(&wrong),
    )
    .err(9, "code_rejected");
    let code = b.code(now - 30);
    // No newline at the end of the input.
    cli_stdin(&agent, None, &["verify", &bob.name, "-"], &code, &code).ok();
    assert_eq!(agent.show(&bob.name)["verified"], true);
    let code = a.code(now);
    cli_stdin(
        &agent,
        Some(&alice.name),
        &["verify", &alice.name, "-"],
        &code,
        &line(&code),
    )
    .ok();
}

#[test]
fn bad_or_missing_input_is_an_invalid_code_and_is_never_repeated() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    let code = enrolled.code(now);
    let run_as =
        |args: &[&str], input: &str| cli_stdin(&agent, Some(&user.name), args, &code, input);

    // Nothing at all, an empty line, letters, a code and more on the line.
    for input in ["", "\n", "\r\n", "12a456\n", "1234567890123\n"] {
        let out = run_as(&["verify"], input);
        out.invalid("code");
        let message = out.json["error"]["message"].as_str().unwrap_or_default();
        let typed = input.trim();
        assert!(
            typed.is_empty() || !message.contains(typed),
            "the message repeats the input: {out}"
        );
    }
    // A line far longer than any code is refused without being read to its end.
    let long = format!("{}\n", "9".repeat(100_000));
    run_as(&["verify", "-"], &long).invalid("code");
    run_as(&["remove", "--code", "-"], "").invalid("code");
    // None of this counted as a failed attempt, and the profile is still there.
    let shown = agent.show(&user.name);
    assert_eq!(shown["failed_attempts"], 0, "{shown}");
    // The code itself is still good.
    run_as(&["verify", "-"], &line(&code)).ok();
}

#[test]
fn remove_regenerate_and_replace_take_the_code_from_standard_input() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    let own =
        |args: &[&str], code: &str| cli_stdin(&agent, Some(&user.name), args, code, &line(code));

    // codes --regenerate --code -
    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    own(&["codes", "--regenerate", "--code", "-"], &wrong).err(9, "code_rejected");
    let out = own(
        &["codes", "--regenerate", "--code", "-"],
        &enrolled.emergency_codes[0],
    );
    let fresh: Vec<String> = out.ok()["emergency_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("no emergency_codes: {out}"))
        .iter()
        .map(|c| c.as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(fresh.len(), 10, "{out}");
    assert!(fresh.iter().all(|c| !enrolled.emergency_codes.contains(c)));

    // enroll --replace --code -
    let before = agent.show(&user.name);
    own(&["enroll", "--replace", "--code", "-"], &wrong).err(9, "code_rejected");
    assert_eq!(
        agent.show(&user.name)["sha_fingerprint"],
        before["sha_fingerprint"]
    );
    let out = own(&["enroll", "--replace", "--code", "-"], &enrolled.code(now));
    let replaced = Enrolled::from_reply(&user.name, &out);
    assert_ne!(replaced.secret, enrolled.secret);
    assert_eq!(agent.show(&user.name)["verified"], false);
    let code = replaced.code(now - 30);
    own(&["verify", "-"], &code).ok();

    // remove --code -
    let wrong = replaced.wrong_codes(now, 1).remove(0);
    own(&["remove", "--code", "-"], &wrong).err(9, "code_rejected");
    agent.show(&user.name);
    let out = own(&["remove", "--code", "-"], &replaced.emergency_codes[0]);
    assert_eq!(
        out.ok(),
        &serde_json::json!({ "removed": user.name }),
        "{out}"
    );
    agent.cli(&["show", &user.name]).err(4, "not_found");

    // Root, for another account, the same way.
    let other = TestUser::new();
    let (enrolled, now) = agent.enroll_active(&other.name, &[]);
    let code = enrolled.code(now);
    cli_stdin(
        &agent,
        None,
        &["remove", &other.name, "--code", "-"],
        &code,
        &line(&code),
    )
    .ok();
    agent.cli(&["show", &other.name]).err(4, "not_found");
}

/// `pam-totp --socket SOCKET ARGS...` as `user` on a terminal (expect), typing `answer` at
/// the prompt.
fn on_terminal(
    agent: &Agent,
    user: &str,
    args: &[&str],
    answer: &str,
) -> common::dialog::DialogOut {
    let mut argv: Vec<OsString> = vec!["-u".into(), user.into(), "--".into(), cli_bin().into()];
    argv.push("--socket".into());
    argv.push(agent.socket.clone().into());
    argv.extend(args.iter().map(OsString::from));
    converse(
        &require_tool("runuser"),
        &argv,
        &[(PROMPT, answer)],
        &[],
        &["PAM_TOTP_SOCKET"],
    )
}

#[test]
fn verify_on_a_terminal_prompts_without_echo() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let enrolled = agent.enroll(&user.name, &[]);
    let now = wait_for_fresh_step(30);

    // A wrong code first: refused, and not shown either.
    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    let out = on_terminal(&agent, &user.name, &["verify"], &wrong);
    assert_eq!(out.answered, 1, "no prompt: {out}");
    assert_eq!(out.code, 9, "{out}");
    assert!(!out.output.contains(&wrong), "the code was echoed: {out}");

    let code = enrolled.code(now - 30);
    let out = on_terminal(&agent, &user.name, &["verify"], &code);
    assert_ne!(out.code, PROMPTED_AGAIN, "prompted twice: {out}");
    assert_eq!(out.answered, 1, "no prompt: {out}");
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.output.matches(PROMPT).count(), 1, "{out}");
    assert!(!out.output.contains(&code), "the code was echoed: {out}");
    assert_eq!(agent.show(&user.name)["verified"], true);

    // The profile is active: a login with the next code succeeds.
    let service = PamService::totp(&agent.socket, "");
    pamtester(&service, &user.name, &enrolled.code(now)).assert_success();

    // `-` on a terminal prompts the same way.
    let code = enrolled.code(now + 30);
    let out = on_terminal(
        &agent,
        &user.name,
        &["--json", "remove", "--code", "-"],
        &code,
    );
    assert_eq!(out.answered, 1, "no prompt: {out}");
    assert_eq!(out.code, 0, "{out}");
    assert!(!out.output.contains(&code), "the code was echoed: {out}");
    agent.cli(&["show", &user.name]).err(4, "not_found");
}
