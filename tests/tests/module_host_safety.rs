//! The module inside its host program: su, polkit helpers and screen lockers load
//! pam_totp.so, and what goes wrong with the agent must fail the login, never the host.
//!
//! - An agent that hangs up before reading the request: the module's send meets a closed
//!   connection (EPIPE). pamtester, a C program, keeps SIGPIPE at its default action like
//!   those hosts, so a plain write(2) there kills it; the login must instead fail as
//!   PAM_AUTHINFO_UNAVAIL.
//! - A socket whose path passes the module's directory check but whose listening process is
//!   not root (the path was swapped between the check and the connect): the module must see
//!   the peer's uid and refuse, before a byte of the request (the code) is sent.
//! - A panic inside the module (none is reachable from its inputs, so one is provoked from
//!   below: the monotonic clock fails): the FFI edge catches it, with the unwinder the module
//!   carries itself (pam_totp/build.rs), and the login fails; the host is not aborted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::faults::{field, Background, SyslogCapture};
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The stand-in agent (tests/src/bin/fake-agent.rs).
fn fake_agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fake-agent"))
}

/// A directory in the temp dir owned by `owner`, mode 0755.
fn dir_of(owner: u32, prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(owner), Some(0)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Starts the fake agent (`command` runs it) and waits until it listens; returns it with the
/// uid it reported.
fn start_fake(command: &mut Command) -> (Background, u32) {
    let fake = Background::spawn(command);
    let ready = fake
        .wait_line("ready", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{} never said it was ready", fake.command));
    let uid = u32::try_from(field(&ready, "uid")).unwrap();
    (fake, uid)
}

/// The fake agent run by root, saying yes to every request, listening at `socket`.
fn root_fake_saying_yes(socket: &std::path::Path) -> Background {
    let mut command = Command::new(fake_agent_bin());
    command.arg("yes").arg(socket);
    let (fake, uid) = start_fake(&mut command);
    assert_eq!(uid, 0);
    fake
}

/// The CPUs this thread may run on (`Cpus_allowed_list` of /proc/thread-self/status).
fn allowed_cpus() -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .map(|list| list.trim().to_owned())
        .expect("no Cpus_allowed_list in /proc/thread-self/status")
}

/// The highest CPU number of a list like `0-3,6`.
fn last_cpu(list: &str) -> u32 {
    list.split([',', '-'])
        .filter_map(|n| n.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

/// Pins the calling thread (and so every process it starts from now on) to one CPU with
/// `taskset -p`; puts its CPU list back on drop.
struct Pinned {
    tid: String,
    before: String,
}

impl Pinned {
    fn to(cpu: u32) -> Self {
        let tid = nix::unistd::gettid().to_string();
        let before = allowed_cpus();
        let out = run(
            Command::new(require_tool("taskset"))
                .args(["-p", "-c"])
                .arg(cpu.to_string())
                .arg(&tid),
            None,
            PROCESS_LIMIT,
        );
        assert_eq!(out.code, 0, "taskset -p -c {cpu} {tid}: {}", out.output());
        Self { tid, before }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = Command::new(require_tool("taskset"))
            .args(["-p", "-c", &self.before, &self.tid])
            .output();
    }
}

/// How a pamtester run ended, from the shell's `$?` (128 + N: killed by signal N).
fn exit_status(output: &str) -> i32 {
    output
        .lines()
        .find_map(|line| line.strip_prefix("pamtester exit status "))
        .and_then(|status| status.trim().parse().ok())
        .unwrap_or_else(|| panic!("no exit status in:\n{output}"))
}

/// An agent that accepts every connection and closes it at once, unread: the module's send
/// of the request fails with EPIPE. The host process survives it, and the login fails as
/// PAM_AUTHINFO_UNAVAIL (the module says why in syslog).
///
/// To make the close come before the send every time (rather than race it), the double runs
/// with a real-time priority (`chrt -f`) on the CPU this test thread, and so pamtester, is
/// pinned to: the client's connect wakes the double, which preempts the client at once,
/// accepts and closes; only then does the client get to send.
#[test]
fn an_agent_that_hangs_up_does_not_kill_the_host_with_sigpipe() {
    setup();
    let taskset = require_tool("taskset");
    let chrt = require_tool("chrt");
    let user = TestUser::new();
    let dir = dir_of(0, "pamtotp-e2e-hangup-");
    let socket = dir.path().join("agent.sock");
    let cpu = last_cpu(&allowed_cpus());

    let realtime = Command::new(&chrt)
        .args(["-f", "50", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let mut command = Command::new(&taskset);
    command.arg("-c").arg(cpu.to_string());
    if realtime {
        command.arg(&chrt).args(["-f", "50"]);
    } else {
        eprintln!(
            "note: no real-time scheduling here (chrt -f fails): the double's close races the \
             module's send, which usually still loses"
        );
    }
    command.arg(fake_agent_bin()).arg("hangup").arg(&socket);
    let (_double, uid) = start_fake(&mut command);
    assert_eq!(uid, 0);
    let service = PamService::totp(&socket, "timeout=2");

    let _pinned = Pinned::to(cpu);
    for attempt in 1..=5 {
        // The shell reports how pamtester ended: 141 = 128 + SIGPIPE.
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(r#""$@"; echo "pamtester exit status $?""#)
            .arg("sh")
            .arg(require_tool("pamtester"))
            .args([&service.name, &user.name, "authenticate"]);
        let out = run(&mut command, Some("123456\n"), PROCESS_LIMIT);
        let output = out.output();
        let status = exit_status(&output);
        assert!(
            status < 128,
            "attempt {attempt}: pamtester was killed by signal {}{} when the agent hung up:\n\
             {output}",
            status - 128,
            if status == 128 + 13 { " (SIGPIPE)" } else { "" }
        );
        assert_ne!(
            status, 0,
            "attempt {attempt}: the login succeeded:\n{output}"
        );
        assert!(
            output.contains(PAM_AUTHINFO_UNAVAIL_TEXT),
            "attempt {attempt}: expected {PAM_AUTHINFO_UNAVAIL_TEXT:?}:\n{output}"
        );
    }

    // The module said why, and it was the send that failed (so the test still tests that).
    let capture = SyslogCapture::start();
    capture
        .pamtester(&service, &user.name, "123456")
        .assert_failure(PAM_AUTHINFO_UNAVAIL_TEXT);
    let lines = capture.lines();
    let line = lines
        .iter()
        .find(|l| l.contains("pam_totp") && l.contains(&user.name))
        .unwrap_or_else(|| panic!("no pam_totp line in the syslog capture:\n{lines:#?}"));
    assert!(
        line.contains("agent not reachable") || line.contains("closed the connection"),
        "{line}"
    );
    if realtime {
        assert!(line.contains("Broken pipe"), "not an EPIPE: {line}");
    }
}

/// A socket at a path that passes the module's directory check, but bound by a process that
/// is not root: the login is refused as PAM_AUTHINFO_UNAVAIL, the impostor receives nothing,
/// and the module's syslog line says whose socket it was.
///
/// The setup stands for the race between the module's check and its connect. The check judges
/// the directories of the path it resolves (here a root-owned 0755 directory, as trusted as
/// /run/pam-totp), but the connect resolves the path again and follows wherever it leads by
/// then: a symbolic link swapped in between (or a path through a link the check's resolution
/// never looked at) takes it to a socket another account bound. No ordinary user can swap a
/// link in a root-owned directory, so root does it here, between two logins: the link first
/// leads to a root-run impostor (which convinces the module: the refusal that follows is the
/// peer check, not a fake that fails to convince), then to the same impostor run by another
/// account, in that account's own directory.
#[test]
fn a_socket_another_account_bound_is_refused_where_the_path_checks_out() {
    setup();
    let victim = TestUser::new();
    let attacker = TestUser::new();
    let trusted = dir_of(0, "pamtotp-e2e-linked-");
    let link = trusted.path().join("agent.sock");
    let service = PamService::totp(&link, "timeout=2");
    let capture = SyslogCapture::start();

    // The control: a root-run impostor behind the link.
    let root_dir = dir_of(0, "pamtotp-e2e-rootfake-");
    let root_socket = root_dir.path().join("agent.sock");
    let root_fake = root_fake_saying_yes(&root_socket);
    std::os::unix::fs::symlink(&root_socket, &link).unwrap();
    capture
        .pamtester(&service, &victim.name, "000000")
        .assert_success();
    assert!(
        root_fake
            .wait_line("request", Duration::from_secs(5))
            .is_some(),
        "the root-run impostor answered without a request"
    );

    // The swap: the same link now leads to a socket the attacker bound, in its own directory
    // (the attacker runs its own copy of the impostor there).
    let attacker_dir = dir_of(attacker.uid, "pamtotp-e2e-impostor-");
    let program = attacker_dir.path().join("fake-agent");
    std::fs::copy(fake_agent_bin(), &program).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let attacker_socket = attacker_dir.path().join("agent.sock");
    let mut command = as_user(&attacker.name, &program);
    command.arg("yes").arg(&attacker_socket);
    let (attacker_fake, uid) = start_fake(&mut command);
    assert_eq!(uid, attacker.uid);
    let swapped = trusted.path().join("agent.sock.new");
    std::os::unix::fs::symlink(&attacker_socket, &swapped).unwrap();
    std::fs::rename(&swapped, &link).unwrap();
    assert_eq!(std::fs::read_link(&link).unwrap(), attacker_socket);

    let before = capture.lines().len();
    let out = capture.pamtester(&service, &victim.name, "000000");
    assert!(
        !out.success,
        "a login went through to a socket bound by uid {}: {out}",
        attacker.uid
    );
    out.assert_failure(PAM_AUTHINFO_UNAVAIL_TEXT);
    assert!(
        attacker_fake
            .wait_line("request", Duration::from_millis(500))
            .is_none(),
        "the module sent its request to the attacker's socket"
    );
    let lines = capture.lines();
    let reason = format!("peer is uid {}, not root", attacker.uid);
    assert!(
        lines[before..]
            .iter()
            .any(|l| l.contains("pam_totp") && l.contains(&reason)),
        "no pam_totp syslog line says {reason:?}:\n{:#?}",
        &lines[before..]
    );
}

/// A shared object for LD_PRELOAD that makes `clock_gettime(CLOCK_MONOTONIC)` fail. Rust's
/// `Instant::now` panics when the clock fails, and the module's client reads it before it
/// connects, so the panic happens inside `pam_sm_authenticate`. Other clocks work.
fn failing_monotonic_clock(dir: &std::path::Path) -> PathBuf {
    let source = dir.join("clock.c");
    std::fs::write(
        &source,
        r#"#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <time.h>
int clock_gettime(clockid_t clock, struct timespec *now) {
    if (clock == CLOCK_MONOTONIC) { errno = EINVAL; return -1; }
    int (*real)(clockid_t, struct timespec *) =
        (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    return real(clock, now);
}
"#,
    )
    .unwrap();
    let shim = dir.join("failing-clock.so");
    let out = run(
        Command::new(require_tool("gcc"))
            .args(["-shared", "-fPIC", "-o"])
            .arg(&shim)
            .arg(&source)
            .arg("-ldl"),
        None,
        PROCESS_LIMIT,
    );
    assert_eq!(out.code, 0, "gcc: {}", out.output());
    shim
}

/// A panic inside pam_sm_authenticate: pamtester (a C host, without libgcc_s loaded) lives,
/// libpam hears PAM_ABORT, the login fails, and the panic's place goes to syslog, not to the
/// host's stderr. Without a working unwinder in the module the panic would abort the host
/// (SIGABRT) before pamtester could print PAM_ABORT's text.
#[test]
fn a_panic_inside_the_module_fails_the_login_without_killing_the_host() {
    setup();
    let user = TestUser::new();
    let dir = dir_of(0, "pamtotp-e2e-panic-");
    let socket = dir.path().join("agent.sock");
    let fake = root_fake_saying_yes(&socket);
    let service = PamService::totp(&socket, "timeout=2");
    let shim = failing_monotonic_clock(dir.path());
    let capture = SyslogCapture::start();

    // The control: the same login, with a working clock, succeeds (the double says yes).
    capture
        .pamtester(&service, &user.name, "123456")
        .assert_success();
    assert!(fake.wait_line("request", Duration::from_secs(5)).is_some());

    let before = capture.lines().len();
    let out = capture.pamtester_with_env(
        &service,
        &user.name,
        "123456",
        &[("LD_PRELOAD", shim.as_path())],
    );
    // pamtester printed libpam's answer, so it was alive after the module returned.
    out.assert_failure("Critical error - immediate abort");
    assert!(
        !out.output.contains("panicked"),
        "the panic message went to the host's stderr:\n{out}"
    );
    let lines = capture.lines();
    let logged = &lines[before..];
    assert!(
        logged
            .iter()
            .any(|l| l.contains("pam_totp: internal error at ")
                && l.contains(".rs:")
                && l.contains("PAM_ABORT")),
        "no syslog line gives the panic's place:\n{logged:#?}"
    );
}
