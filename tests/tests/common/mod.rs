//! Harness for the end-to-end tests: the built `pam-totp-agent`, `pam-totp` and
//! `libpam_totp.so` driven through real libpam (`pamtester`), real accounts (`useradd`,
//! `runuser`) and independent codes (`oathtool`).
//!
//! Every resource a test creates is a guard that cleans up on drop: [`Agent`] (process, by
//! pid, and its temp dir), [`TestUser`] (`userdel`), [`PamService`] (the /etc/pam.d file),
//! [`sshd::Sshd`] (a private sshd, by pid) and [`sudo::SudoRule`] (an /etc/sudoers.d file).
//! [`dialog`] types answers on a terminal (`expect`) for ssh and multi-prompt stacks.
//! Names carry the test process id and a counter, so tests run in parallel threads safely,
//! and leftovers of a crashed run are removed by the next one ([`setup`]).
//!
//! The tests need root and the tools of `scripts/install-test-deps.sh`; without them they
//! fail with a message saying so, they never skip silently.

#![allow(dead_code)] // each test file uses a subset of the harness

pub mod dialog;
pub mod faults;
pub mod fleet;
pub mod race;
pub mod sshd;
pub mod sudo;

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};
use serde_json::Value;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// pam_strerror() texts that pamtester prints for the results the contract names.
pub const PAM_AUTH_ERR_TEXT: &str = "Authentication failure";
pub const PAM_MAXTRIES_TEXT: &str = "Have exhausted maximum number of retries for service";
pub const PAM_AUTHINFO_UNAVAIL_TEXT: &str =
    "Authentication service cannot retrieve authentication info";
/// The module's default prompt.
pub const DEFAULT_PROMPT: &str = "Verification code";

/// Every field of a profile object, exactly (CONTRACT.md).
pub const PROFILE_FIELDS: &[&str] = &[
    "id",
    "account",
    "uid",
    "type",
    "owner",
    "scope",
    "verified",
    "enabled",
    "algorithm",
    "digits",
    "period",
    "sha_fingerprint",
    "comment",
    "created_at",
    "changed_at",
    "verified_at",
    "last_used_at",
    "failed_attempts",
    "locked_until",
    "blocked_sources",
    "emergency_codes_remaining",
    "can",
];

/// Agent configuration used unless a test passes its own: the documented defaults, spelled
/// out so a host's /etc/pam-totp/agent.toml never leaks into a test.
pub const DEFAULT_CONFIG: &str = "\
# pam-totp end-to-end test agent
self_enroll = true
window = 1

[lockout]
threshold = 5
base_seconds = 30
max_seconds = 900
";

/// Longest any single child process may run before the test fails (and the process is killed).
pub const PROCESS_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Preconditions

/// Checks root, the tools, and removes leftovers of earlier crashed runs. Call first.
pub fn setup() {
    require_root();
    for tool in [
        "pamtester",
        "oathtool",
        "useradd",
        "userdel",
        "runuser",
        "sqlite3",
    ] {
        require_tool(tool);
    }
    static CLEANUP: Once = Once::new();
    CLEANUP.call_once(remove_stale_leftovers);
}

/// Panics unless the effective uid is 0.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "the pam-totp end-to-end tests must run as root (they create accounts, write \
             /etc/pam.d and switch uids): run `make test` or `cargo test` as root"
        );
    }
}

/// Panics unless `name` is an executable on PATH (or in the sbin directories).
pub fn require_tool(name: &str) -> PathBuf {
    static FOUND: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut found = FOUND.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, path)) = found.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let path = find_tool(name);
    found.push((name.to_owned(), path.clone()));
    path
}

fn find_tool(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path.split(':').filter(|d| !d.is_empty()).chain([
        "/usr/local/sbin",
        "/usr/sbin",
        "/sbin",
        "/usr/bin",
        "/bin",
    ]);
    for dir in dirs {
        let candidate = Path::new(dir).join(name);
        if let Ok(meta) = fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return candidate;
            }
        }
    }
    panic!(
        "required tool `{name}` is not installed: run `scripts/install-test-deps.sh` as root \
         (or `make test`, which runs it)"
    );
}

// ---------------------------------------------------------------------------------------------
// Built artifacts

/// `target/<profile>/`, found from this test executable (`target/<profile>/deps/<test>`).
/// `PAM_TOTP_E2E_BIN_DIR` overrides it (e.g. to test a release build).
pub fn build_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PAM_TOTP_E2E_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("cannot locate the running test executable");
    let parent = exe
        .parent()
        .expect("test executable has no parent directory");
    if parent.file_name().is_some_and(|n| n == "deps") {
        parent
            .parent()
            .expect("deps directory has no parent")
            .to_path_buf()
    } else {
        parent.to_path_buf()
    }
}

fn built(name: &str) -> PathBuf {
    let path = build_dir().join(name);
    if !path.is_file() {
        panic!(
            "{} is missing: run `cargo build --workspace` first (the end-to-end tests drive \
             the built binaries; `make test` builds them)",
            path.display()
        );
    }
    path
}

pub fn agent_bin() -> PathBuf {
    built("pam-totp-agent")
}

/// The CLI, at a path every local account can execute.
pub fn cli_bin() -> PathBuf {
    usable_by_everyone(&built("pam-totp"))
}

/// The PAM module, at a path every local account can load (pamtester under `runuser`).
pub fn module_path() -> PathBuf {
    usable_by_everyone(&built("libpam_totp.so"))
}

/// `path` itself when every account can reach and read it, otherwise a copy in a
/// world-readable directory of this test process (a clone under /root is not reachable).
fn usable_by_everyone(path: &Path) -> PathBuf {
    let reachable = path.ancestors().skip(1).all(|dir| {
        dir.as_os_str().is_empty()
            || fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    });
    let readable = fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o005 == 0o005);
    if reachable && readable {
        return path.to_path_buf();
    }
    static SHARED: OnceLock<PathBuf> = OnceLock::new();
    static COPY_LOCK: Mutex<()> = Mutex::new(());
    let dir = SHARED.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pamtotp-e2e-shared-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("cannot create the shared binaries directory");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .expect("cannot chmod the shared binaries directory");
        // SAFETY: registers a plain `extern "C" fn()` with no captured state; libc calls it
        // once, at process exit, after every test thread is done.
        unsafe {
            libc::atexit(remove_shared_dir);
        }
        dir
    });
    let _guard = lock(&COPY_LOCK);
    let file_name = path.file_name().expect("artifact has a file name");
    let copy = dir.join(file_name);
    if !copy.exists() {
        let partial = dir.join(format!(".{}.partial", file_name.to_string_lossy()));
        fs::copy(path, &partial).expect("cannot copy an artifact for non-root use");
        fs::set_permissions(&partial, fs::Permissions::from_mode(0o755))
            .expect("cannot chmod an artifact copy");
        fs::rename(&partial, &copy).expect("cannot move an artifact copy into place");
    }
    copy
}

extern "C" fn remove_shared_dir() {
    let dir = std::env::temp_dir().join(format!("pamtotp-e2e-shared-{}", std::process::id()));
    let _ = fs::remove_dir_all(dir);
}

fn lock(mutex: &Mutex<()>) -> MutexGuard<'_, ()> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn pid_alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

/// Removes accounts, PAM service files and directories left by test processes that died.
fn remove_stale_leftovers() {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let name = line.split(':').next().unwrap_or("");
        if let Some(pid) = stale_owner(name, "ptt", 'x') {
            if !pid_alive(&pid) {
                let _guard = lock(&ACCOUNTS_LOCK);
                let _ = Command::new(require_tool("userdel")).arg(name).output();
            }
        }
    }
    if let Ok(entries) = fs::read_dir("/etc/pam.d") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = stale_owner(&name, "pamtotp-", '-') {
                if !pid_alive(&pid) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
    if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("pamtotp-e2e-shared-") {
                if pid.bytes().all(|b| b.is_ascii_digit()) && !pid_alive(pid) {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
    }
}

/// For names made by this harness (`<prefix><pid><sep><n>`), the pid.
fn stale_owner(name: &str, prefix: &str, sep: char) -> Option<String> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, n) = rest.split_once(sep)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(n)).then(|| pid.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Running processes

/// What a finished child process did.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit status, or -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// stdout and stderr together (pamtester and libpam_misc mix them).
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `command` to completion with `stdin` as its input (or /dev/null), in its own process
/// group; kills the group and fails the test when it takes longer than `limit`.
pub fn run(command: &mut Command, stdin: Option<&str>, limit: Duration) -> Run {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let start = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // The child may exit without reading (EPIPE): that is its answer, not ours to judge.
        let _ = pipe.write_all(input.as_bytes());
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > limit => {
                let _ = kill(Pid::from_raw(-(child.id() as i32)), Signal::SIGKILL);
                let _ = child.wait();
                panic!("{command:?} did not finish within {limit:?}; killed it");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for {command:?}: {e}"),
        }
    };
    let elapsed = start.elapsed();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        elapsed,
    }
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A command run as `user` through `runuser -u USER --` (cwd /, so any account can run it).
pub fn as_user(user: &str, program: &Path) -> Command {
    let mut command = Command::new(require_tool("runuser"));
    command
        .arg("-u")
        .arg(user)
        .arg("--")
        .arg(program)
        .current_dir("/");
    command
}

// ---------------------------------------------------------------------------------------------
// The CLI

/// One `pam-totp` invocation.
#[derive(Debug, Clone)]
pub struct CliOut {
    /// The command line, for failure messages.
    pub command: String,
    pub code: i32,
    /// stdout parsed as JSON (`Value::Null` when it is not JSON).
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl CliOut {
    /// Asserts exit 0 and returns the JSON output.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.code, 0, "expected success from {self}");
        &self.json
    }

    /// Asserts the exit status and the JSON error code; returns the `error` object.
    #[track_caller]
    pub fn err(&self, exit: i32, code: &str) -> &Value {
        assert_eq!(self.code, exit, "expected exit {exit} ({code}) from {self}");
        let error = &self.json["error"];
        assert_eq!(
            error["code"].as_str(),
            Some(code),
            "expected JSON error code {code:?} from {self}"
        );
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| !m.trim().is_empty()),
            "error without a message from {self}"
        );
        assert!(
            error.get("target").is_some(),
            "error object lacks `target` (null or a field name) from {self}"
        );
        error
    }

    /// Asserts an `invalid_argument` error (exit 2) whose target is `field`.
    #[track_caller]
    pub fn invalid(&self, field: &str) {
        let error = self.err(2, "invalid_argument");
        assert_eq!(
            error["target"].as_str(),
            Some(field),
            "expected target {field:?} from {self}"
        );
    }
}

impl std::fmt::Display for CliOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`: exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `pam-totp --socket SOCKET [--json] ARGS...`, as root or as `user` (via runuser).
pub fn cli_at(socket: &Path, user: Option<&str>, json: bool, args: &[&str]) -> CliOut {
    let bin = cli_bin();
    let mut command = match user {
        Some(user) => as_user(user, &bin),
        None => Command::new(&bin),
    };
    command
        .env_remove("PAM_TOTP_SOCKET")
        .arg("--socket")
        .arg(socket);
    if json {
        command.arg("--json");
    }
    command.args(args);
    let shown = format!(
        "{}pam-totp --socket {}{} {}",
        user.map(|u| format!("runuser -u {u} -- "))
            .unwrap_or_default(),
        socket.display(),
        if json { " --json" } else { "" },
        args.iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let result = run(&mut command, None, PROCESS_LIMIT);
    CliOut {
        command: shown,
        code: result.code,
        json: serde_json::from_str(result.stdout.trim()).unwrap_or(Value::Null),
        stdout: result.stdout,
        stderr: result.stderr,
    }
}

fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,=/@:".contains(&b))
    {
        arg.to_owned()
    } else {
        format!("{arg:?}")
    }
}

// ---------------------------------------------------------------------------------------------
// The agent

/// A `pam-totp-agent` on a private socket and database; stopped (by pid) on drop.
///
/// Layout: `DIR/` (0755, so other accounts reach the 0666 socket), `DIR/agent.sock`,
/// `DIR/state/` (0700) holding the database, `DIR/agent.toml`, `DIR/agent.log` (0600, the
/// agent's stdout and stderr).
pub struct Agent {
    dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub db: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// A fleet agent: its config names the store, so no `--db`.
    fleet: bool,
    child: Option<Child>,
}

impl Agent {
    /// Starts an agent with [`DEFAULT_CONFIG`].
    pub fn start() -> Self {
        Self::with_config(DEFAULT_CONFIG)
    }

    /// Starts an agent with the given TOML configuration.
    pub fn with_config(config: &str) -> Self {
        let mut agent = Self::unstarted(config);
        agent.spawn();
        agent
    }

    /// An agent of a fleet store, configured as the README's fleet recipe does it: `store`
    /// and `host_name` in agent.toml, with `config` and the lines `extra` returns after
    /// writing files into the agent's private dir (the key and password files).
    pub fn with_store(
        config: &str,
        url: &str,
        host: &str,
        extra: impl FnOnce(&Path) -> String,
    ) -> Self {
        let mut agent = Self::unstarted(config);
        let lines = extra(&agent.dir.path().join("state"));
        let fleet = format!("store = {url:?}\nhost_name = {host:?}\n{lines}");
        fs::write(&agent.config, format!("{fleet}\n{config}"))
            .expect("cannot write the agent config");
        agent.fleet = true;
        agent.spawn();
        agent
    }

    /// The agent's files, not yet running.
    fn unstarted(config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pamtotp-e2e-")
            .tempdir()
            .expect("cannot create the agent's temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("cannot chmod the agent's temp dir");
        let state = dir.path().join("state");
        fs::create_dir(&state).expect("cannot create the state dir");
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700))
            .expect("cannot chmod the state dir");
        let config_path = dir.path().join("agent.toml");
        fs::write(&config_path, config).expect("cannot write the agent config");
        Self {
            socket: dir.path().join("agent.sock"),
            db: state.join("profiles.sqlite3"),
            config: config_path,
            log: dir.path().join("agent.log"),
            dir,
            fleet: false,
            child: None,
        }
    }

    /// The agent's private temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the agent process and waits until its socket accepts connections.
    fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.log)
            .expect("cannot open the agent log");
        let stdout = log.try_clone().expect("cannot clone the agent log handle");
        let mut command = Command::new(agent_bin());
        command.arg("--socket").arg(&self.socket);
        if !self.fleet {
            command.arg("--db").arg(&self.db);
        }
        let mut child = command
            .arg("--config")
            .arg(&self.config)
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("cannot start pam-totp-agent");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "pam-totp-agent exited during startup ({status}); its log:\n{}",
                    self.log_text()
                );
            }
            if UnixStream::connect(&self.socket).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                panic!(
                    "pam-totp-agent did not accept connections on {} within 20 s; its log:\n{}",
                    self.socket.display(),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM (SIGKILL after 10 s) and returns how the agent exited.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    let _ = kill(pid, Signal::SIGKILL);
                    return child.wait().ok();
                }
            }
        }
    }

    /// Stops the agent (SIGTERM) and starts it again on the same socket, database and config.
    /// Returns how the old process exited.
    pub fn restart(&mut self) -> Option<ExitStatus> {
        let status = self.stop();
        self.spawn();
        status
    }

    /// `pam-totp-agent backup --to TO --db DB` of this agent's database.
    pub fn backup(&self, to: &Path) -> Run {
        let mut command = Command::new(agent_bin());
        command
            .args(["backup", "--to"])
            .arg(to)
            .arg("--db")
            .arg(&self.db);
        run(&mut command, None, PROCESS_LIMIT)
    }

    /// Everything the agent wrote to stdout and stderr so far.
    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `pam-totp --json ...` as root.
    pub fn cli(&self, args: &[&str]) -> CliOut {
        cli_at(&self.socket, None, true, args)
    }

    /// `pam-totp --json ...` as `user`.
    pub fn cli_as(&self, user: &str, args: &[&str]) -> CliOut {
        cli_at(&self.socket, Some(user), true, args)
    }

    /// `pam-totp ...` (human output) as root.
    pub fn cli_human(&self, args: &[&str]) -> CliOut {
        cli_at(&self.socket, None, false, args)
    }

    /// `show --json` of `account`, asserting success.
    #[track_caller]
    pub fn show(&self, account: &str) -> Value {
        self.cli(&["show", account]).ok().clone()
    }

    /// Accounts listed by `list --json` (as root).
    #[track_caller]
    pub fn listed_accounts(&self) -> Vec<String> {
        let out = self.cli(&["list"]);
        let list = out.ok();
        list.as_array()
            .unwrap_or_else(|| panic!("list --json is not an array: {out}"))
            .iter()
            .map(|p| p["account"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// `enroll --json ACCOUNT EXTRA...` as root, asserting success and the reply's shape.
    #[track_caller]
    pub fn enroll(&self, account: &str, extra: &[&str]) -> Enrolled {
        let mut args = vec!["enroll", account];
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        Enrolled::from_reply(account, &out)
    }

    /// Enrolls `account` and makes it active with the code of the previous time step.
    /// Returns the enrollment and the time the codes were computed for (fresh in its step).
    #[track_caller]
    pub fn enroll_active(&self, account: &str, extra: &[&str]) -> (Enrolled, u64) {
        let enrolled = self.enroll(account, extra);
        let now = wait_for_fresh_step(enrolled.period);
        let code = enrolled.code(now - enrolled.period);
        self.cli(&["verify", account, &code]).ok();
        (enrolled, now)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The reply of a successful `enroll --json`.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub account: String,
    pub secret: String,
    pub uri: String,
    pub emergency_codes: Vec<String>,
    pub profile: Value,
    /// "sha1" | "sha256" | "sha512" (oathtool spelling).
    pub algorithm: String,
    pub digits: u32,
    /// 0 for an HOTP profile (its codes do not expire).
    pub period: u64,
}

impl Enrolled {
    #[track_caller]
    pub fn from_reply(account: &str, out: &CliOut) -> Self {
        let reply = out.ok();
        let text = |key: &str| {
            reply[key]
                .as_str()
                .unwrap_or_else(|| panic!("enroll --json has no string `{key}`: {out}"))
                .to_owned()
        };
        let profile = reply["profile"].clone();
        assert!(profile.is_object(), "enroll --json has no `profile`: {out}");
        let emergency_codes = reply["emergency_codes"]
            .as_array()
            .unwrap_or_else(|| panic!("enroll --json has no `emergency_codes` array: {out}"))
            .iter()
            .map(|c| c.as_str().unwrap_or_default().to_owned())
            .collect();
        Self {
            account: account.to_owned(),
            secret: text("secret"),
            uri: text("otpauth_uri"),
            emergency_codes,
            algorithm: profile["algorithm"]
                .as_str()
                .unwrap_or_else(|| panic!("profile has no `algorithm`: {out}"))
                .to_ascii_lowercase(),
            digits: profile["digits"]
                .as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .unwrap_or_else(|| panic!("profile has no `digits`: {out}")),
            period: match profile["type"].as_str() {
                Some("hotp") => 0,
                _ => profile["period"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("profile has no `period`: {out}")),
            },
            profile,
        }
    }

    /// The TOTP code of this profile for the step containing `unix_time`.
    pub fn code(&self, unix_time: u64) -> String {
        totp(
            &self.secret,
            &self.algorithm,
            self.digits,
            self.period,
            unix_time,
        )
    }

    /// The HOTP code of this profile for `counter`.
    pub fn hotp_code(&self, counter: u64) -> String {
        hotp(&self.secret, self.digits, counter)
    }

    /// `count` distinct codes of the right length that are not valid for any step near
    /// `unix_time` (and not emergency codes).
    pub fn wrong_codes(&self, unix_time: u64, count: usize) -> Vec<String> {
        let near: Vec<String> = (0..=6)
            .map(|i| self.code(unix_time + i * self.period - 3 * self.period))
            .collect();
        let width = self.digits as usize;
        (1u64..)
            .map(|n| format!("{:0width$}", (n * 1_234_567) % 10u64.pow(self.digits)))
            .filter(|c| !near.contains(c) && !self.emergency_codes.contains(c))
            .take(count)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Accounts

static ACCOUNTS_LOCK: Mutex<()> = Mutex::new(());

/// A local account made with `useradd` (no home, nologin shell); `userdel`'d on drop.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
}

impl TestUser {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ptt{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        assert!(name.len() <= 32);
        let _guard = lock(&ACCOUNTS_LOCK);
        let mut last = String::new();
        for _ in 0..50 {
            let out = Command::new(require_tool("useradd"))
                .args(["-M", "-s", "/usr/sbin/nologin", "-c", "pam-totp e2e test"])
                .arg(&name)
                .output()
                .expect("cannot run useradd");
            if out.status.success() {
                let uid = User::from_name(&name)
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| panic!("useradd made {name} but getpwnam cannot find it"))
                    .uid
                    .as_raw();
                return Self { name, uid };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.code() == Some(9) {
                // Left over from an earlier process with the same pid.
                let _ = Command::new(require_tool("userdel")).arg(&name).output();
            }
            // Otherwise most likely a busy /etc/passwd lock held by another process.
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("useradd {name} keeps failing: {last}");
    }
}

impl TestUser {
    /// Gives the account a login shell (e.g. /bin/bash, for ssh's remote command).
    pub fn set_shell(&self, shell: &str) {
        self.modify("usermod", &["-s", shell, &self.name], None);
    }

    /// Sets the account's home directory field (the directory itself is the caller's to
    /// make and remove).
    pub fn set_home(&self, dir: &Path) {
        let dir = dir.to_str().expect("home directory path is UTF-8");
        self.modify("usermod", &["-d", dir, &self.name], None);
    }

    /// Sets the account's password (pam_unix), through chpasswd.
    pub fn set_password(&self, password: &str) {
        self.modify(
            "chpasswd",
            &[],
            Some(&format!("{}:{password}\n", self.name)),
        );
    }

    /// Runs an account tool under the accounts lock, retrying while /etc/passwd or
    /// /etc/shadow is busy.
    fn modify(&self, tool: &str, args: &[&str], input: Option<&str>) {
        let _guard = lock(&ACCOUNTS_LOCK);
        let mut last = String::new();
        for _ in 0..50 {
            let out = run(
                Command::new(require_tool(tool)).args(args),
                input,
                PROCESS_LIMIT,
            );
            if out.code == 0 {
                return;
            }
            last = out.output();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{tool} for {} keeps failing: {last}", self.name);
    }
}

impl Default for TestUser {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        delete_account("userdel", &self.name);
    }
}

/// Runs `userdel`/`groupdel` NAME, retrying while another process holds the account files'
/// lock; exit 6 (no such user or group) counts as done. Only warns: it runs in `Drop`.
pub fn delete_account(tool: &str, name: &str) {
    let _guard = lock(&ACCOUNTS_LOCK);
    for _ in 0..50 {
        match Command::new(require_tool(tool)).arg(name).output() {
            Ok(out) if out.status.success() || out.status.code() == Some(6) => return,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    eprintln!("warning: could not {tool} {name}");
}

// ---------------------------------------------------------------------------------------------
// PAM services

/// A PAM service file /etc/pam.d/pamtotp-<pid>-<n>; removed on drop.
pub struct PamService {
    pub name: String,
    path: PathBuf,
}

impl PamService {
    /// A service whose file holds exactly `lines`.
    pub fn new(lines: &[String]) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pamtotp-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = Path::new("/etc/pam.d").join(&name);
        let mut text =
            String::from("# pam-totp end-to-end test service (removed after the test)\n");
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        Self { name, path }
    }

    /// `auth required pam_totp.so socket=SOCKET OPTIONS` alone.
    pub fn totp(socket: &Path, options: &str) -> Self {
        Self::new(&[totp_line(socket, options)])
    }

    /// `auth required pam_totp.so socket=SOCKET OPTIONS` then `auth required pam_permit.so`.
    pub fn totp_then_permit(socket: &Path, options: &str) -> Self {
        Self::new(&[
            totp_line(socket, options),
            "auth required pam_permit.so".to_owned(),
        ])
    }

    pub fn text(&self) -> String {
        fs::read_to_string(&self.path).unwrap_or_default()
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The module line of a stack, with the absolute module path.
pub fn totp_line(socket: &Path, options: &str) -> String {
    format!(
        "auth required {} socket={} {}",
        module_path().display(),
        socket.display(),
        options
    )
    .trim_end()
    .to_owned()
}

/// What pamtester reported.
#[derive(Debug, Clone)]
pub struct PamOut {
    pub success: bool,
    /// stdout and stderr: prompts, and the pam_strerror text of the result.
    pub output: String,
    pub elapsed: Duration,
    pub command: String,
}

impl std::fmt::Display for PamOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`: {} after {:?}\n--- output ---\n{}",
            self.command,
            if self.success { "success" } else { "failure" },
            self.elapsed,
            self.output
        )
    }
}

impl PamOut {
    #[track_caller]
    pub fn assert_success(&self) {
        assert!(
            self.success && self.output.contains("successfully authenticated"),
            "expected PAM success: {self}"
        );
    }

    /// Asserts failure with the given pam_strerror text.
    #[track_caller]
    pub fn assert_failure(&self, text: &str) {
        assert!(!self.success, "expected PAM failure ({text}): {self}");
        assert!(
            self.output.contains(text),
            "expected the PAM failure text {text:?}: {self}"
        );
    }
}

/// `pamtester SERVICE USER authenticate` as root, with `code` typed at the prompt.
pub fn pamtester(service: &PamService, user: &str, code: &str) -> PamOut {
    pamtester_with(None, service, user, code, &[])
}

/// The same, run as `caller` through runuser.
pub fn pamtester_as(caller: &str, service: &PamService, user: &str, code: &str) -> PamOut {
    pamtester_with(Some(caller), service, user, code, &[])
}

/// pamtester as `caller` (root when `None`), with PAM items set by `-I item=value`.
pub fn pamtester_with(
    caller: Option<&str>,
    service: &PamService,
    user: &str,
    code: &str,
    items: &[(&str, &str)],
) -> PamOut {
    let bin = require_tool("pamtester");
    let mut command = match caller {
        Some(caller) => as_user(caller, &bin),
        None => Command::new(&bin),
    };
    let mut shown_items = String::new();
    for (item, value) in items {
        command.arg("-I").arg(format!("{item}={value}"));
        shown_items.push_str(&format!("-I {item}={value} "));
    }
    command.args([&service.name, user, "authenticate"]);
    let shown = format!(
        "{}echo {code} | pamtester {shown_items}{} {user} authenticate",
        caller
            .map(|c| format!("runuser -u {c} -- "))
            .unwrap_or_default(),
        service.name
    );
    let result = run(&mut command, Some(&format!("{code}\n")), PROCESS_LIMIT);
    PamOut {
        success: result.code == 0,
        output: result.output(),
        elapsed: result.elapsed,
        command: shown,
    }
}

// ---------------------------------------------------------------------------------------------
// Codes and time

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs()
}

/// A TOTP code computed by oathtool (independent of the agent's implementation).
pub fn totp(secret: &str, algorithm: &str, digits: u32, period: u64, unix_time: u64) -> String {
    oathtool(
        &[
            format!("--totp={}", algorithm.to_ascii_lowercase()),
            format!("--digits={digits}"),
            format!("--time-step-size={period}s"),
            "--base32".into(),
            "-N".into(),
            format!("@{unix_time}"),
            secret.into(),
        ],
        digits,
    )
}

/// An HOTP code of a base32 secret for `counter`, computed by oathtool (independent of the
/// agent's implementation).
pub fn hotp(secret: &str, digits: u32, counter: u64) -> String {
    oathtool(
        &[
            "--hotp".into(),
            format!("--digits={digits}"),
            format!("--counter={counter}"),
            "--base32".into(),
            secret.into(),
        ],
        digits,
    )
}

/// The one code `oathtool ARGS` prints, checked to have `digits` digits.
fn oathtool(args: &[String], digits: u32) -> String {
    let out = Command::new(require_tool("oathtool"))
        .args(args)
        .output()
        .expect("cannot run oathtool");
    assert!(
        out.status.success(),
        "oathtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(code.len(), digits as usize, "oathtool printed {code:?}");
    code
}

/// Waits until at least 5 s of the current `period`-second step remain, so a sequence of
/// codes for steps now-1, now, now+1 is not split by a step boundary. Returns the time.
pub fn wait_for_fresh_step(period: u64) -> u64 {
    loop {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock before 1970");
        let into_step = since_epoch.as_secs_f64() % period as f64;
        let left = period as f64 - into_step;
        if left > 5.0 {
            return since_epoch.as_secs();
        }
        std::thread::sleep(Duration::from_secs_f64(left + 0.05));
    }
}

// ---------------------------------------------------------------------------------------------
// Small checks

/// The keys of a JSON object, sorted.
pub fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// The contract's profile fields, sorted.
pub fn profile_fields() -> Vec<String> {
    let mut fields: Vec<String> = PROFILE_FIELDS.iter().map(|s| (*s).to_owned()).collect();
    fields.sort();
    fields
}

/// RFC 3339 in UTC: `YYYY-MM-DDTHH:MM:SS[.frac](Z|+00:00)`.
pub fn is_rfc3339_utc(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digit = |i: usize| b[i].is_ascii_digit();
    let shape = (0..4).all(digit)
        && b[4] == b'-'
        && (5..7).all(digit)
        && b[7] == b'-'
        && (8..10).all(digit)
        && (b[10] == b'T' || b[10] == b't')
        && (11..13).all(digit)
        && b[13] == b':'
        && (14..16).all(digit)
        && b[16] == b':'
        && (17..19).all(digit);
    if !shape {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    matches!(rest, "Z" | "z" | "+00:00")
}

/// This machine's host name.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_owned()
}
