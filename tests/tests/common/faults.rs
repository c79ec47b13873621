//! Helpers of the security and fault-injection tests: PAM items for `pamtester -I`, an admin
//! group, the module's syslog captured through a private /dev/log, a tmpfs for the database,
//! and processes left running in the background (a slowloris client under another uid).
//!
//! Every resource is a guard that cleans up on drop; names carry the test process id like the
//! rest of the harness, and leftovers of a crashed run are removed by the next one.

use super::{
    as_user, lock, pid_alive, require_tool, run, stale_owner, usable_by_everyone, PamOut,
    PamService, TestUser, ACCOUNTS_LOCK, PROCESS_LIMIT,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// PAM items

/// `pamtester -I item=value ... SERVICE USER authenticate`, as root or as `caller` (runuser),
/// with `code` typed at the prompt. Items are e.g. `("rhost", "198.51.100.7")`, `("ruser", ..)`.
pub fn pamtester_items(
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

/// A login from the remote host `rhost`, as root (sshd's view).
pub fn pamtester_from(service: &PamService, user: &str, code: &str, rhost: &str) -> PamOut {
    pamtester_items(None, service, user, code, &[("rhost", rhost)])
}

// ---------------------------------------------------------------------------------------------
// Groups

/// A local group made with `groupadd` (`ptg<pid>x<n>`); `groupdel`'d on drop.
pub struct TestGroup {
    pub name: String,
}

impl TestGroup {
    pub fn new() -> Self {
        static CLEANUP: Once = Once::new();
        CLEANUP.call_once(remove_stale_groups);
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ptg{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        account_tool("groupadd", &[&name]);
        Self { name }
    }

    /// Makes `user` a (supplementary) member.
    pub fn add(&self, user: &TestUser) {
        account_tool("gpasswd", &["-a", &user.name, &self.name]);
    }

    /// Takes `user` out of the group again.
    pub fn remove(&self, user: &TestUser) {
        account_tool("gpasswd", &["-d", &user.name, &self.name]);
    }
}

impl Default for TestGroup {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        let _guard = lock(&ACCOUNTS_LOCK);
        for _ in 0..50 {
            match Command::new(require_tool("groupdel"))
                .arg(&self.name)
                .output()
            {
                // 6: no such group (already gone).
                Ok(out) if out.status.success() || out.status.code() == Some(6) => return,
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        eprintln!("warning: could not groupdel {}", self.name);
    }
}

/// Runs an account tool under the accounts lock, retrying while /etc/group is busy.
fn account_tool(tool: &str, args: &[&str]) {
    let _guard = lock(&ACCOUNTS_LOCK);
    let mut last = String::new();
    for _ in 0..50 {
        let out = run(
            Command::new(require_tool(tool)).args(args),
            None,
            PROCESS_LIMIT,
        );
        if out.code == 0 {
            return;
        }
        last = out.output();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{tool} {args:?} keeps failing: {last}");
}

fn remove_stale_groups() {
    let groups = fs::read_to_string("/etc/group").unwrap_or_default();
    for line in groups.lines() {
        let name = line.split(':').next().unwrap_or("");
        if let Some(pid) = stale_owner(name, "ptg", 'x') {
            if !pid_alive(&pid) {
                let _guard = lock(&ACCOUNTS_LOCK);
                let _ = Command::new(require_tool("groupdel")).arg(name).output();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Syslog

/// Serializes the captures of one test process (each may create the /dev/log placeholder).
static DEV_LOG: Mutex<()> = Mutex::new(());

/// Receives what PAM modules send to syslog, for logins run through [`Self::pamtester`]:
/// those run in a private mount namespace (`unshare --mount --propagation private`) in which
/// this capture's datagram socket is bind-mounted over /dev/log, so the host's syslog (if any)
/// neither sees nor loses anything.
///
/// A bind mount needs an existing target: when the host has no /dev/log at all, an empty
/// placeholder file is created there for the capture's lifetime and removed afterwards.
pub struct SyslogCapture {
    _serial: MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    socket: PathBuf,
    placeholder: bool,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl SyslogCapture {
    pub fn start() -> Self {
        require_tool("unshare");
        require_tool("mount");
        let serial = lock(&DEV_LOG);
        let dir = tempfile::Builder::new()
            .prefix("pamtotp-e2e-syslog-")
            .tempdir()
            .expect("cannot create the syslog capture dir");
        let socket = dir.path().join("log");
        let receiver = UnixDatagram::bind(&socket).expect("cannot bind the syslog capture socket");
        fs::set_permissions(&socket, fs::Permissions::from_mode(0o666))
            .expect("cannot chmod the syslog capture socket");
        receiver
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("cannot set a read timeout");
        let placeholder = match fs::symlink_metadata("/dev/log") {
            Ok(_) => false,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open("/dev/log")
                    .expect("cannot create the /dev/log placeholder");
                true
            }
            Err(e) => panic!("cannot look at /dev/log: {e}"),
        };
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let lines = Arc::clone(&lines);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut buffer = vec![0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(n) = receiver.recv(&mut buffer) {
                        let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
                        lines.lock().unwrap_or_else(|p| p.into_inner()).push(text);
                    }
                }
            })
        };
        Self {
            _serial: serial,
            dir,
            socket,
            placeholder,
            lines,
            stop,
            reader: Some(reader),
        }
    }

    /// Every datagram received so far, one entry per syslog message.
    pub fn lines(&self) -> Vec<String> {
        // Let datagrams already sent reach the reader.
        std::thread::sleep(Duration::from_millis(200));
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `pamtester SERVICE USER authenticate` as root with `code` typed, its syslog captured.
    pub fn pamtester(&self, service: &PamService, user: &str, code: &str) -> PamOut {
        let mut command = Command::new(require_tool("unshare"));
        command
            .args(["--mount", "--propagation", "private", "--"])
            .arg("/bin/sh")
            .arg("-c")
            .arg(r#"mount --bind "$1" /dev/log && shift && exec "$@""#)
            .arg("sh")
            .arg(&self.socket)
            .arg(require_tool("pamtester"))
            .args([&service.name, user, "authenticate"]);
        let result = run(&mut command, Some(&format!("{code}\n")), PROCESS_LIMIT);
        PamOut {
            success: result.code == 0,
            output: result.output(),
            elapsed: result.elapsed,
            command: format!(
                "echo {code} | unshare --mount (/dev/log captured) pamtester {} {user} authenticate",
                service.name
            ),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SyslogCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if self.placeholder {
            // Only our own empty placeholder: never a socket someone put there meanwhile.
            if fs::symlink_metadata("/dev/log").is_ok_and(|m| m.is_file() && m.len() == 0) {
                let _ = fs::remove_file("/dev/log");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tmpfs

/// Name of the file in each test tmpfs that records the owning test process.
const TMPFS_OWNER: &str = ".pamtotp-e2e-owner";

/// A size-limited tmpfs mounted over `dir` (mode 0700, root), unmounted on drop (lazily when
/// it is still busy).
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts `tmpfs -o size=SIZE,mode=0700` over `dir`.
    pub fn mount(dir: &Path, size: &str) -> Self {
        static CLEANUP: Once = Once::new();
        CLEANUP.call_once(remove_stale_mounts);
        let out = run(
            Command::new(require_tool("mount"))
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0700"))
                .arg("tmpfs")
                .arg(dir),
            None,
            PROCESS_LIMIT,
        );
        assert_eq!(
            out.code,
            0,
            "mount tmpfs on {}: {}",
            dir.display(),
            out.output()
        );
        let mounted = Self {
            dir: dir.to_path_buf(),
        };
        fs::write(dir.join(TMPFS_OWNER), std::process::id().to_string())
            .expect("cannot mark the tmpfs");
        mounted
    }

    /// Writes a file until the tmpfs is full (ENOSPC); returns its path.
    pub fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        let mut file = fs::File::create(&path).expect("cannot create the filler file");
        for chunk in [1 << 20, 64 << 10, 4 << 10, 512, 1] {
            let block = vec![0x5au8; chunk];
            loop {
                match file.write_all(&block) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("filling {}: {e}", path.display()),
                }
            }
        }
        let _ = file.sync_all();
        path
    }

    /// Bytes still free, as statvfs says.
    pub fn free_bytes(&self) -> u64 {
        let stat = nix::sys::statvfs::statvfs(&self.dir).expect("cannot statvfs the tmpfs");
        stat.blocks_available() * stat.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = require_tool("umount");
        let ok = Command::new(&umount)
            .arg(&self.dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            let _ = Command::new(&umount).arg("-l").arg(&self.dir).output();
        }
    }
}

/// Unmounts test tmpfs mounts whose test process is gone.
fn remove_stale_mounts() {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let temp = std::env::temp_dir();
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_), Some(target), Some(kind)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let target = PathBuf::from(target.replace("\\040", " "));
        if kind != "tmpfs" || !target.starts_with(&temp) {
            continue;
        }
        if let Ok(owner) = fs::read_to_string(target.join(TMPFS_OWNER)) {
            let owner = owner.trim();
            if owner.bytes().all(|b| b.is_ascii_digit()) && !pid_alive(owner) {
                let _ = Command::new(require_tool("umount"))
                    .arg("-l")
                    .arg(&target)
                    .output();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Background processes

/// The slowloris client (tests/src/bin/conn-holder.rs), at a path every account can run.
pub fn holder_bin() -> PathBuf {
    usable_by_everyone(Path::new(env!("CARGO_BIN_EXE_conn-holder")))
}

/// A process running in the background in its own process group, its stdout read line by
/// line; the group is killed (by its id) on drop.
pub struct Background {
    child: Child,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
    pub command: String,
}

impl Background {
    pub fn spawn(command: &mut Command) -> Self {
        let shown = format!("{command:?}");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            reader: Some(reader),
            command: shown,
        }
    }

    /// The next line of output that starts with `prefix`, waiting at most `limit`.
    pub fn wait_line(&self, prefix: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Waits (bounded) for the process to exit; returns its exit code (-1: signal).
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status.code().unwrap_or(-1)),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => return None,
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(-(self.child.id() as i32)), Signal::SIGKILL);
        }
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Sends SIGCONT to a process on drop, so a test that stopped it never leaves it stopped.
pub struct Resume(pub u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGCONT);
    }
}

/// Parses `key=value` words of a line (e.g. the holder's summary) into numbers.
pub fn fields(line: &str) -> Vec<(String, u64)> {
    line.split_whitespace()
        .filter_map(|word| {
            let (key, value) = word.split_once('=')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The number after `key=` in a line of `key=value` words.
#[track_caller]
pub fn field(line: &str, key: &str) -> u64 {
    fields(line)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}
