//! A private OpenSSH server for real `ssh` logins through a PAM stack of the test's choosing.
//!
//! sshd names its PAM service after its program name, so the server is a copy of
//! /usr/sbin/sshd called like the test's [`PamService`] (`pamtotp-<pid>-<n>`), in a temp
//! dir, listening on a free loopback port with its own host key, config and authorized
//! keys. It is stopped by pid (SIGTERM, then SIGKILL) on drop, with its temp dir and PAM file.

use super::dialog::{converse, DialogOut};
use super::{require_tool, PamService};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::fs::{self, File};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `AuthenticationMethods` for a key and then the code.
pub const KEY_THEN_CODE: &str = "publickey,keyboard-interactive";
/// `AuthenticationMethods` for keyboard-interactive alone (e.g. "password+code").
pub const CODE_ONLY: &str = "keyboard-interactive";

/// How a login ended, judged from the client's terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The remote command ran as the account.
    LoggedIn,
    /// The server refused ("Permission denied", or the connection closed) with no command run.
    Refused,
    /// The client asked once more than planned (the server offered another try).
    PromptedAgain,
}

/// A running sshd; see the module docs.
pub struct Sshd {
    dir: tempfile::TempDir,
    pub port: u16,
    /// The PAM service (and the program name) of this server.
    pub service: PamService,
    pub log: PathBuf,
    /// The private key whose public half is authorized for every account.
    pub client_key: PathBuf,
    child: Option<Child>,
}

impl Sshd {
    /// Starts a server whose PAM stack is `pam_lines` and that demands `methods`
    /// (`AuthenticationMethods`, e.g. [`KEY_THEN_CODE`]).
    pub fn start(pam_lines: &[String], methods: &str) -> Self {
        let sshd = require_tool("sshd");
        let keygen = require_tool("ssh-keygen");
        require_tool("ssh");
        let service = PamService::new(pam_lines);
        let dir = tempfile::Builder::new()
            .prefix("pamtotp-e2e-sshd-")
            .tempdir()
            .expect("cannot create the sshd temp dir");
        // sshd reads the authorized keys as the logging-in account.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("cannot chmod the sshd temp dir");
        // The privilege-separation directory of Debian's sshd (normally made by systemd).
        fs::create_dir_all("/run/sshd").expect("cannot create /run/sshd");

        let program = dir.path().join(&service.name);
        fs::copy(&sshd, &program).expect("cannot copy sshd");
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755))
            .expect("cannot chmod the sshd copy");

        let host_key = dir.path().join("host_ed25519");
        let client_key = dir.path().join("client_ed25519");
        for key in [&host_key, &client_key] {
            let out = Command::new(&keygen)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "pam-totp-e2e", "-f"])
                .arg(key)
                .stdin(Stdio::null())
                .output()
                .expect("cannot run ssh-keygen");
            assert!(
                out.status.success(),
                "ssh-keygen failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let authorized = dir.path().join("authorized_keys");
        fs::copy(client_key.with_extension("pub"), &authorized)
            .expect("cannot write authorized_keys");
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644))
            .expect("cannot chmod authorized_keys");

        let log = dir.path().join("sshd.log");
        let mut server = Self {
            port: 0,
            service,
            log,
            client_key,
            child: None,
            dir,
        };
        server.spawn(&program, &host_key, &authorized, methods);
        server
    }

    /// Picks a free loopback port and starts sshd on it, trying another port when the one
    /// picked was taken in between.
    fn spawn(&mut self, program: &Path, host_key: &Path, authorized: &Path, methods: &str) {
        let config = self.dir.path().join("sshd_config");
        let mut last_log = String::new();
        for _ in 0..10 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("cannot pick a free loopback port")
                .port();
            let text = format!(
                "# pam-totp end-to-end test server (removed after the test)\n\
                 Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {host_key}\n\
                 PidFile {pid_file}\n\
                 UsePAM yes\n\
                 KbdInteractiveAuthentication yes\n\
                 PasswordAuthentication no\n\
                 PubkeyAuthentication yes\n\
                 AuthenticationMethods {methods}\n\
                 AuthorizedKeysFile {authorized}\n\
                 StrictModes no\n\
                 PermitRootLogin no\n\
                 MaxAuthTries 6\n\
                 LoginGraceTime 60\n\
                 PrintMotd no\n\
                 PrintLastLog no\n\
                 UseDNS no\n\
                 X11Forwarding no\n\
                 AllowTcpForwarding no\n\
                 LogLevel VERBOSE\n",
                host_key = host_key.display(),
                pid_file = self.dir.path().join("sshd.pid").display(),
                authorized = authorized.display(),
            );
            fs::write(&config, text).expect("cannot write sshd_config");
            let log = File::create(&self.log).expect("cannot create the sshd log");
            let mut child = Command::new(program)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("cannot clone the sshd log handle"))
                .stderr(log)
                .current_dir("/")
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
            let listening = format!("Server listening on 127.0.0.1 port {port}");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let text = fs::read_to_string(&self.log).unwrap_or_default();
                if text.contains(&listening) {
                    self.port = port;
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    last_log = text;
                    break;
                }
                if Instant::now() > deadline {
                    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                    let _ = child.wait();
                    panic!("sshd did not listen on port {port} within 20 s; its log:\n{text}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !last_log.contains("Address already in use") {
                panic!(
                    "sshd exited during startup; config:\n{}\nlog:\n{last_log}",
                    fs::read_to_string(&config).unwrap_or_default()
                );
            }
        }
        panic!("sshd could not bind a free loopback port in 10 tries; last log:\n{last_log}");
    }

    /// Everything sshd logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ssh USER@127.0.0.1 <command>` on a terminal, answering `steps` (prompt text, answer)
    /// in order. With `use_key` the client offers the authorized key first, otherwise it uses
    /// keyboard-interactive only. The remote command prints [`login_mark`] for `user`.
    pub fn ssh(&self, user: &str, use_key: bool, steps: &[(&str, &str)]) -> SshOut {
        // `-F /dev/null`: ignore root's ~/.ssh/config; only the given key is offered.
        let mut args: Vec<OsString> = vec!["-F".into(), "/dev/null".into()];
        let mut options = vec![
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "GlobalKnownHostsFile=/dev/null",
            "BatchMode=no",
            "IdentityAgent=none",
            "IdentitiesOnly=yes",
            "NumberOfPasswordPrompts=1",
            "ConnectTimeout=20",
        ];
        if use_key {
            options.push("PubkeyAuthentication=yes");
            options.push("PreferredAuthentications=publickey,keyboard-interactive");
        } else {
            options.push("PubkeyAuthentication=no");
            options.push("PreferredAuthentications=keyboard-interactive");
        }
        for option in options {
            args.push("-o".into());
            args.push(option.into());
        }
        if use_key {
            args.push("-i".into());
            args.push(self.client_key.clone().into());
        }
        args.push("-p".into());
        args.push(self.port.to_string().into());
        args.push(format!("{user}@127.0.0.1").into());
        // The shell computes the mark, so it appears only if the command really ran.
        args.push("echo \"LOGIN-OK-as-$(id -un)\"".into());
        let dialog = converse(
            &require_tool("ssh"),
            &args,
            steps,
            &[super::DEFAULT_PROMPT, "assword:"],
            &["SSH_AUTH_SOCK", "SSH_ASKPASS", "DISPLAY"],
        );
        SshOut {
            mark: login_mark(user),
            dialog,
            server_log: String::new(),
        }
        .with_log(self)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    _ => {
                        let _ = kill(pid, Signal::SIGKILL);
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

/// What the remote command prints when a login as `user` worked.
pub fn login_mark(user: &str) -> String {
    format!("LOGIN-OK-as-{user}")
}

/// One ssh login attempt.
#[derive(Debug, Clone)]
pub struct SshOut {
    pub dialog: DialogOut,
    mark: String,
    /// sshd's log at the end of the attempt, for failure messages.
    server_log: String,
}

impl SshOut {
    fn with_log(mut self, server: &Sshd) -> Self {
        self.server_log = server.log_text();
        self
    }

    pub fn outcome(&self) -> Outcome {
        let dialog = &self.dialog;
        if dialog.code == super::dialog::PROMPTED_AGAIN {
            Outcome::PromptedAgain
        } else if dialog.code == 0 && dialog.output.contains(&self.mark) {
            Outcome::LoggedIn
        } else {
            Outcome::Refused
        }
    }

    /// The client's terminal.
    pub fn output(&self) -> &str {
        &self.dialog.output
    }

    #[track_caller]
    pub fn assert_logged_in(&self) {
        assert_eq!(
            self.outcome(),
            Outcome::LoggedIn,
            "expected the ssh login to work: {self}"
        );
        assert_eq!(
            self.dialog.answered, 1,
            "expected exactly one prompt: {self}"
        );
    }

    /// Asserts the login was refused: no remote command, and either "Permission denied",
    /// a closed connection, or a second prompt (the server offering another try).
    #[track_caller]
    pub fn assert_refused(&self) {
        assert_ne!(
            self.outcome(),
            Outcome::LoggedIn,
            "expected the ssh login to be refused: {self}"
        );
        assert!(
            !self.dialog.output.contains(&self.mark),
            "the remote command ran: {self}"
        );
        assert!(
            matches!(self.dialog.code, 255 | super::dialog::PROMPTED_AGAIN),
            "expected ssh to fail (exit 255) or to ask again: {self}"
        );
    }
}

impl std::fmt::Display for SshOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n--- sshd log ---\n{}", self.dialog, self.server_log)
    }
}
