//! No agent, a silent agent, a nonsense agent: logins fail closed with PAM_AUTHINFO_UNAVAIL
//! within the module's deadline, and the CLI exits 8 (`unavailable`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Generous bound for a `timeout=1` exchange, process start-up included.
const BOUND: Duration = Duration::from_secs(10);

/// A temp dir reachable by everyone, for fake sockets.
fn socket_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("pamtotp-e2e-fake-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A listener that accepts connections and then does `behaviour` with each (in a thread),
/// until dropped.
struct FakeAgent {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeAgent {
    fn start(path: &Path, behaviour: fn(&mut UnixStream)) -> Self {
        let listener = UnixListener::bind(path).unwrap();
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        behaviour(&mut stream);
                        held.push(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn silent(_: &mut UnixStream) {}

fn nonsense(stream: &mut UnixStream) {
    // A well-formed frame whose payload is not a response.
    let _ = stream.write_all(b"\x00\x00\x00\x0dHTTP/1.0 200 ");
}

fn huge_frame(stream: &mut UnixStream) {
    let _ = stream.write_all(b"\xff\xff\xff\xff{}");
}

#[track_caller]
fn assert_unavailable_login(socket: &Path, user: &TestUser, options: &str) {
    let service = PamService::totp_then_permit(socket, &format!("timeout=1 {options}"));
    let out = pamtester(&service, &user.name, "123456");
    out.assert_failure(PAM_AUTHINFO_UNAVAIL_TEXT);
    assert!(
        out.elapsed < BOUND,
        "the login took {:?} with timeout=1: {out}",
        out.elapsed
    );
}

#[track_caller]
fn assert_unavailable_cli(socket: &Path, user: &TestUser) {
    let out = cli_at(socket, None, true, &["show", &user.name]);
    out.err(8, "unavailable");
    let human = cli_at(socket, None, false, &["show", &user.name]);
    assert_eq!(human.code, 8, "{human}");
    assert!(
        !human.stderr.trim().is_empty(),
        "no message on stderr: {human}"
    );
}

#[test]
fn no_agent_on_the_socket() {
    setup();
    let user = TestUser::new();
    let dir = socket_dir();
    let socket: PathBuf = dir.path().join("agent.sock");
    assert_unavailable_login(&socket, &user, "");
    // nullok must not turn an unreachable agent into a pass.
    assert_unavailable_login(&socket, &user, "nullok");
    assert_unavailable_cli(&socket, &user);
}

#[test]
fn an_agent_that_stopped_leaves_logins_unavailable() {
    setup();
    let user = TestUser::new();
    let mut agent = Agent::start();
    let socket = agent.socket.clone();
    let stopped = agent.stop();
    assert!(
        stopped.is_some_and(|s| s.success()),
        "pam-totp-agent did not exit 0 on SIGTERM: {stopped:?}\n{}",
        agent.log_text()
    );
    assert_unavailable_login(&socket, &user, "");
    assert_unavailable_cli(&socket, &user);
}

#[test]
fn a_socket_that_never_answers() {
    setup();
    let user = TestUser::new();
    let dir = socket_dir();
    let socket = dir.path().join("agent.sock");
    let _fake = FakeAgent::start(&socket, silent);
    assert_unavailable_login(&socket, &user, "");
    assert_unavailable_login(&socket, &user, "nullok");
    let out = cli_at(&socket, None, true, &["show", &user.name]);
    out.err(8, "unavailable");
}

#[test]
fn a_socket_that_is_never_accepted() {
    setup();
    let user = TestUser::new();
    let dir = socket_dir();
    let socket = dir.path().join("agent.sock");
    // Bound but never accepting: connections wait in the backlog.
    let _listener = UnixListener::bind(&socket).unwrap();
    assert_unavailable_login(&socket, &user, "");
    cli_at(&socket, None, true, &["show", &user.name]).err(8, "unavailable");
}

#[test]
fn an_agent_that_answers_nonsense() {
    setup();
    let user = TestUser::new();
    let dir = socket_dir();
    for (name, behaviour) in [
        ("nonsense.sock", nonsense as fn(&mut UnixStream)),
        ("huge.sock", huge_frame),
    ] {
        let socket = dir.path().join(name);
        let _fake = FakeAgent::start(&socket, behaviour);
        assert_unavailable_login(&socket, &user, "");
        cli_at(&socket, None, true, &["show", &user.name]).err(8, "unavailable");
    }
}
