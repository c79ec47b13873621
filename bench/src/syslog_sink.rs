//! A discarding syslog socket at /dev/log while the PAM layer runs, when the machine has
//! none: glibc's syslog() otherwise falls back to writing each message to /dev/console,
//! which on a serial console costs milliseconds and is not what a host with journald or
//! rsyslog pays.
//!
//! The sink is a separate process (this binary's hidden `syslog-sink` command), not a thread:
//! sshd and sudo are single-threaded, and a second thread in the login process makes every
//! setuid/setgid a module calls (google-authenticator drops privileges twice per login) signal
//! that thread and wait for it (glibc's set*id broadcast), a cost no real host pays.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const PATH: &str = "/dev/log";

/// The running sink; stopped and its socket removed when dropped.
pub struct SyslogSink {
    path: PathBuf,
    child: Child,
}

impl SyslogSink {
    /// `None` when the machine has its own /dev/log (or the sink cannot start).
    pub fn start() -> Option<Self> {
        let path = PathBuf::from(PATH);
        if std::fs::symlink_metadata(&path).is_ok() {
            // A socket nobody listens on (left by a bench that was killed) is replaced;
            // anything else is the system's.
            let probe = UnixDatagram::unbound().ok()?;
            match probe.connect(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(&path).ok()?;
                }
                _ => return None,
            }
        }
        let mut child = Command::new(std::env::current_exe().ok()?)
            .arg("syslog-sink")
            .arg("--path")
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        // The child says "ready" once its socket is bound.
        let mut line = String::new();
        let ready = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line).is_ok() && line == "ready\n")
            .unwrap_or(false);
        if !ready {
            // Its socket was never bound: nothing of ours to remove at /dev/log.
            drop(child.stdin.take());
            let _ = child.wait();
            return None;
        }
        Some(Self { path, child })
    }
}

impl Drop for SyslogSink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        // Closing its stdin stops the child.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The child's side: bind `path`, say "ready", discard datagrams until stdin closes (the
/// parent ended, or dropped the sink).
pub fn run(path: &Path) -> Result<(), String> {
    let socket = UnixDatagram::bind(path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
    println!("ready");
    std::io::stdout()
        .flush()
        .map_err(|e| format!("stdout: {e}"))?;
    let receiver = std::thread::spawn(move || {
        let mut buffer = vec![0u8; 8192];
        // Until the process ends, when stdin closes.
        while socket.recv(&mut buffer).is_ok() {}
    });
    // Blocks until the parent closes the pipe (or dies).
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    drop(receiver);
    Ok(())
}
