//! Real `sudo` logins: a sudoers drop-in per test account that sends its sudo through the
//! test's PAM service (`Defaults:USER pam_service=...`, a per-user setting, so tests running
//! in parallel threads do not touch each other's sudo).

use super::{lock, pid_alive, require_tool, run, stale_owner, totp_line, PamService};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

/// What the harness's sudo runs: prints the effective uid it ran with.
pub const SUDO_COMMAND: &[&str] = &["id", "-u"];

/// The PAM stack of a sudo service: the module line (`socket=`, `options`), then
/// pam_permit for account and session (sudo runs all three).
pub fn sudo_stack(socket: &Path, options: &str) -> Vec<String> {
    vec![
        totp_line(socket, options),
        "account required pam_permit.so".to_owned(),
        "session required pam_permit.so".to_owned(),
    ]
}

/// /etc/sudoers.d/pamtotp-<pid>-<n>: `USER ALL=(ALL:ALL) ALL` and the user's Defaults.
/// Removed on drop.
pub struct SudoRule {
    pub user: String,
    path: PathBuf,
}

static WRITE_LOCK: Mutex<()> = Mutex::new(());

impl SudoRule {
    /// Lets `user` run anything as anyone, authenticating through `service`.
    pub fn new(user: &str, service: &PamService) -> Self {
        require_tool("sudo");
        require_tool("visudo");
        static CLEANUP: Once = Once::new();
        CLEANUP.call_once(remove_stale_rules);
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pamtotp-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let rule = Self {
            user: user.to_owned(),
            path: Path::new("/etc/sudoers.d").join(name),
        };
        rule.use_service(service);
        rule
    }

    /// Rewrites the rule so `user`'s sudo authenticates through `service` from now on.
    pub fn use_service(&self, service: &PamService) {
        // No lecture, no cached credentials, one try, no mail to a missing MTA.
        let text = format!(
            "# pam-totp end-to-end test rule (removed after the test)\n\
             {user} ALL=(ALL:ALL) ALL\n\
             Defaults:{user} pam_service=\"{service}\", timestamp_timeout=0, !lecture, \
             passwd_tries=1, !mail_badpass, !mail_no_perms, !mail_no_user\n",
            user = self.user,
            service = service.name,
        );
        // sudo skips names containing a dot: write aside, check, then rename into place, so
        // a sudo running meanwhile in another test never reads half a file.
        let file_name = self
            .path
            .file_name()
            .expect("the rule has a file name")
            .to_string_lossy()
            .into_owned();
        let partial = self.path.with_file_name(format!(".{file_name}.partial"));
        let _guard = lock(&WRITE_LOCK);
        fs::write(&partial, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", partial.display()));
        fs::set_permissions(&partial, fs::Permissions::from_mode(0o440))
            .expect("cannot chmod the sudoers rule");
        let check = run(
            Command::new(require_tool("visudo"))
                .arg("-c")
                .arg("-f")
                .arg(&partial),
            None,
            super::PROCESS_LIMIT,
        );
        if check.code != 0 {
            let _ = fs::remove_file(&partial);
            panic!("visudo -cf rejects the test rule: {}", check.output());
        }
        fs::rename(&partial, &self.path).expect("cannot move the sudoers rule into place");
    }
}

impl Drop for SudoRule {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Rules left by test processes that died.
fn remove_stale_rules() {
    if let Ok(entries) = fs::read_dir("/etc/sudoers.d") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let base = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".partial"))
                .unwrap_or(&name);
            if let Some(pid) = stale_owner(base, "pamtotp-", '-') {
                if !pid_alive(&pid) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// One `runuser -u USER -- sudo -S -k id -u`.
#[derive(Debug, Clone)]
pub struct SudoOut {
    pub command: String,
    pub code: i32,
    pub stdout: String,
    /// sudo's prompt (with -S on stderr) and its complaints.
    pub stderr: String,
}

impl SudoOut {
    /// sudo ran the command as root.
    pub fn became_root(&self) -> bool {
        self.code == 0 && self.stdout.trim() == "0"
    }

    #[track_caller]
    pub fn assert_root(&self) {
        assert!(
            self.became_root(),
            "expected sudo to run `id -u` as root: {self}"
        );
    }

    #[track_caller]
    pub fn assert_refused(&self) {
        assert!(
            self.code != 0 && self.stdout.trim().is_empty(),
            "expected sudo to refuse: {self}"
        );
    }

    /// sudo showed the module's prompt.
    pub fn prompted(&self) -> bool {
        self.stderr.contains(super::DEFAULT_PROMPT)
    }
}

impl std::fmt::Display for SudoOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`: exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// `runuser -u USER -- sudo -S -k id -u`, with `input` on stdin (or /dev/null: nothing to
/// answer with), and no terminal: sudo sets no PAM_TTY.
pub fn sudo(user: &str, input: Option<&str>) -> SudoOut {
    let mut command = Command::new(require_tool("runuser"));
    command.args(["-u", user, "--"]);
    sudo_run(command, user, input, "")
}

/// The same, run on `tty` as an interactive sudo is: in a new session whose controlling
/// terminal is that pty, so sudo sets PAM_TTY (stdin and output stay pipes). Successive calls
/// on one `Pty` are logins from one terminal.
pub fn sudo_on_tty(tty: &Pty, user: &str, input: Option<&str>) -> SudoOut {
    let mut command = Command::new(require_tool("setsid"));
    // A session leader acquires the first terminal it opens: open it (and close the fd at
    // once: the session keeps it), then become runuser.
    command
        .args(["--fork", "--wait", "sh", "-c"])
        .arg("exec 3<>\"$1\" && exec 3>&- && u=\"$2\" && shift 2 && exec runuser -u \"$u\" -- \"$@\"")
        .args(["sh", &tty.slave, user]);
    sudo_run(command, user, input, &format!("(on {}) ", tty.slave))
}

/// A pseudo-terminal: its master side, closed on drop, and the /dev/pts path of its slave.
pub struct Pty {
    _master: std::os::fd::OwnedFd,
    slave: String,
}

impl Pty {
    pub fn open() -> Self {
        use std::os::fd::FromRawFd;
        // SAFETY: posix_openpt returns a new fd (or -1), which OwnedFd then owns.
        let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
        assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        // SAFETY: fd is a valid, open fd that nothing else owns.
        let master = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: fd is the master just opened; `name` is writable for its full length.
        let ok = unsafe {
            libc::grantpt(fd) == 0
                && libc::unlockpt(fd) == 0
                && libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) == 0
        };
        assert!(ok, "pty setup: {}", std::io::Error::last_os_error());
        // SAFETY: ptsname_r wrote a NUL-terminated path into `name`.
        let slave = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        // The test user's sudo opens it as its terminal.
        let _ = fs::set_permissions(&slave, fs::Permissions::from_mode(0o666));
        Self {
            _master: master,
            slave,
        }
    }
}

fn sudo_run(mut command: Command, user: &str, input: Option<&str>, note: &str) -> SudoOut {
    command
        .arg(require_tool("sudo"))
        .args(["-S", "-k"])
        .args(SUDO_COMMAND)
        .current_dir("/");
    let shown = format!(
        "{}{note}runuser -u {user} -- sudo -S -k {}",
        match input {
            Some(text) => format!("echo {} | ", text.trim_end()),
            None => "</dev/null ".to_owned(),
        },
        SUDO_COMMAND.join(" ")
    );
    let out = run(&mut command, input, Duration::from_secs(60));
    SudoOut {
        command: shown,
        code: out.code,
        stdout: out.stdout,
        stderr: out.stderr,
    }
}
