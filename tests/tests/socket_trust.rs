//! The module talks only to a socket whose directory is owned by root and writable by no one
//! else: where another account could have put its own socket, the login fails as
//! PAM_AUTHINFO_UNAVAIL without sending the code anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Sets a directory's mode and owner; puts back 0755 root:root on drop.
struct DirGuard(PathBuf);

impl DirGuard {
    fn set(&self, mode: u32, owner: u32) {
        std::os::unix::fs::chown(&self.0, Some(owner), Some(0)).unwrap();
        std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::os::unix::fs::chown(&self.0, Some(0), Some(0));
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

/// Modes that let someone other than root replace the socket.
const UNSAFE_MODES: &[u32] = &[0o777, 0o1777, 0o775, 0o757];

#[test]
fn a_socket_directory_others_can_write_is_not_trusted() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let other = TestUser::new();
    let service = PamService::totp(&agent.socket, "timeout=2");
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    let code = enrolled.code(now);
    let dir = DirGuard(agent.dir().to_path_buf());

    for &mode in UNSAFE_MODES {
        dir.set(mode, 0);
        let out = pamtester(&service, &user.name, &code);
        assert!(
            !out.success,
            "a login went through a socket in a {mode:o} directory: {out}"
        );
        out.assert_failure(PAM_AUTHINFO_UNAVAIL_TEXT);
        // The agent itself is fine: the CLI still gets answers.
        agent.cli(&["show", &user.name]).ok();
    }
    // From an unprivileged process (a screen locker) too.
    dir.set(0o777, 0);
    pamtester_as(&user.name, &service, &user.name, &code).assert_failure(PAM_AUTHINFO_UNAVAIL_TEXT);
    // A directory owned by another account, even 0755.
    dir.set(0o755, other.uid);
    pamtester(&service, &user.name, &code).assert_failure(PAM_AUTHINFO_UNAVAIL_TEXT);

    // Safe again: the same code works (none of the refused logins sent it).
    dir.set(0o755, 0);
    let shown = agent.show(&user.name);
    assert_eq!(shown["failed_attempts"], 0, "{shown}");
    pamtester(&service, &user.name, &code).assert_success();
}

/// A fake agent that says "authenticated" to every request, until dropped.
struct YesMan {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl YesMan {
    fn start(path: &Path) -> Self {
        let listener = UnixListener::bind(path).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut length = [0u8; 4];
                if stream.read_exact(&mut length).is_err() {
                    continue;
                }
                let mut request = vec![0u8; u32::from_be_bytes(length).min(65536) as usize];
                if stream.read_exact(&mut request).is_err() {
                    continue;
                }
                let reply = br#"{"ok":{"kind":"authenticated","body":{"method":"totp"}}}"#;
                let mut frame = (reply.len() as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(reply);
                let _ = stream.write_all(&frame);
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for YesMan {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_fake_agent_where_another_account_could_put_it_grants_nothing() {
    setup();
    let victim = TestUser::new();
    let attacker = TestUser::new();
    let dir = tempfile::Builder::new()
        .prefix("pamtotp-e2e-trust-")
        .tempdir()
        .unwrap();
    let guard = DirGuard(dir.path().to_path_buf());
    guard.set(0o755, 0);
    let socket = dir.path().join("agent.sock");
    let _fake = YesMan::start(&socket);
    let service = PamService::totp(&socket, "timeout=2");

    // Where only root could have put it, the module believes the socket (so the refusals
    // below are the directory check, not a fake that fails to convince).
    pamtester(&service, &victim.name, "000000").assert_success();

    // The attacker owns the directory: not trusted.
    guard.set(0o755, attacker.uid);
    let out = pamtester(&service, &victim.name, "000000");
    assert!(
        !out.success,
        "a socket in an attacker's directory let a login in: {out}"
    );
    out.assert_failure(PAM_AUTHINFO_UNAVAIL_TEXT);

    // A world-writable directory (like /tmp): not trusted either.
    for mode in [0o1777, 0o777] {
        guard.set(mode, 0);
        let out = pamtester(&service, &victim.name, "000000");
        assert!(
            !out.success,
            "a socket in a {mode:o} directory let a login in: {out}"
        );
        out.assert_failure(PAM_AUTHINFO_UNAVAIL_TEXT);
    }
}
