//! Helpers of the security and fault-injection tests: PAM items for `pamtester -I`, an admin
//! group, the module's syslog captured through a private /dev/log, a tmpfs or an ext4 on a
//! loop device for the database, and processes left running in the background (a slowloris
//! client under another uid).
//!
//! Every resource is a guard that cleans up on drop; names carry the test process id like the
//! rest of the harness, and leftovers of a crashed run are removed by the next one.

use super::{
    lock, pid_alive, require_tool, run, stale_owner, usable_by_everyone, PamOut, PamService,
    TestUser, ACCOUNTS_LOCK, PROCESS_LIMIT,
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
    super::pamtester_with(caller, service, user, code, items)
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
        super::delete_account("groupdel", &self.name);
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
        self.pamtester_with_env(service, user, code, &[])
    }

    /// [`Self::pamtester`] with `env` added to pamtester's environment (LD_PRELOAD, say).
    pub fn pamtester_with_env(
        &self,
        service: &PamService,
        user: &str,
        code: &str,
        env: &[(&str, &Path)],
    ) -> PamOut {
        let mut command = Command::new(require_tool("unshare"));
        command.envs(env.iter().copied());
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
// ext4 on a loop device

/// Prefix of the directory (in the temp dir) that holds a test's ext4 image:
/// `pamtotp-e2e-ext4-<pid>x<n>/image`.
const EXT4_PREFIX: &str = "pamtotp-e2e-ext4-";

/// A small ext4 file system in a sparse image file, attached to a loop device and mounted
/// over `dir` (0700, root) with `errors=remount-ro`, so that [`Self::trigger_error`] makes the
/// kernel turn it read-only the way it does on a server after an I/O or metadata error.
///
/// On drop: unmount (lazily when still busy), detach the loop device, remove the image. The
/// owner of the mount must stop whatever holds files open there first.
pub struct Ext4Loop {
    pub dir: PathBuf,
    /// The directory holding the image file.
    image_dir: PathBuf,
    /// `/dev/loopN`, once attached.
    device: Option<PathBuf>,
    mounted: bool,
}

impl Ext4Loop {
    /// Makes a `size_mib` MiB ext4 image, attaches it and mounts it over `dir`.
    ///
    /// Fails the test, naming what is missing, without `mkfs.ext4`, `losetup`, loop devices,
    /// ext4, or the kernel's `/sys/fs/ext4/<dev>/trigger_fs_error`.
    pub fn mount(dir: &Path, size_mib: u64) -> Self {
        let mkfs = require_tool_of("mkfs.ext4", "e2fsprogs");
        let losetup = require_tool_of("losetup", "util-linux");
        let mount = require_tool_of("mount", "mount");
        require_tool_of("umount", "mount");
        static CLEANUP: Once = Once::new();
        CLEANUP.call_once(remove_stale_loops);
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let image_dir = std::env::temp_dir().join(format!(
            "{EXT4_PREFIX}{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // A directory of a dead process with the same pid was removed by the cleanup above.
        let _ = fs::remove_dir_all(&image_dir);
        fs::create_dir(&image_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", image_dir.display()));
        let mut this = Self {
            dir: dir.to_path_buf(),
            image_dir,
            device: None,
            mounted: false,
        };
        let image = this.image_dir.join("image");
        fs::File::create(&image)
            .and_then(|file| file.set_len(size_mib << 20))
            .unwrap_or_else(|e| panic!("cannot create the sparse image {}: {e}", image.display()));

        let out = run(
            Command::new(&mkfs).args(["-q", "-F"]).arg(&image),
            None,
            PROCESS_LIMIT,
        );
        assert_eq!(
            out.code,
            0,
            "mkfs.ext4 -q -F {}: {}",
            image.display(),
            out.output()
        );

        let out = run(
            Command::new(&losetup)
                .args(["--find", "--show"])
                .arg(&image),
            None,
            PROCESS_LIMIT,
        );
        let device = out.stdout.trim();
        assert!(
            out.code == 0 && device.starts_with("/dev/loop"),
            "losetup --find --show {} (are loop devices available here? /dev/loop-control): {}",
            image.display(),
            out.output()
        );
        this.device = Some(PathBuf::from(device));

        let out = run(
            Command::new(&mount)
                .args(["-t", "ext4", "-o", "errors=remount-ro"])
                .arg(this.device())
                .arg(dir),
            None,
            PROCESS_LIMIT,
        );
        assert_eq!(
            out.code,
            0,
            "mount -t ext4 -o errors=remount-ro {} {}: {}",
            this.device().display(),
            dir.display(),
            out.output()
        );
        this.mounted = true;
        // The agent requires its database directory to be 0700 and root's (mkfs makes 0755).
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|e| panic!("cannot chmod 0700 {}: {e}", dir.display()));

        let trigger = this.trigger_path();
        assert!(
            trigger.exists(),
            "{} does not exist: this kernel cannot be told to simulate an ext4 error, which \
             the read-only database test needs",
            trigger.display()
        );
        this
    }

    /// `/dev/loopN`.
    pub fn device(&self) -> &Path {
        self.device.as_deref().expect("the loop device is attached")
    }

    /// `/sys/fs/ext4/loopN/trigger_fs_error`.
    fn trigger_path(&self) -> PathBuf {
        let name = self
            .device()
            .file_name()
            .expect("the loop device has a name")
            .to_string_lossy()
            .into_owned();
        // Never anything but our own loop device: this file of the root file system's ext4
        // would turn the whole machine read-only.
        assert!(
            name.starts_with("loop") && name[4..].bytes().all(|b| b.is_ascii_digit()),
            "unexpected loop device name {name:?}"
        );
        Path::new("/sys/fs/ext4")
            .join(name)
            .join("trigger_fs_error")
    }

    /// Reports an ext4 error on the file system (`echo 1 > .../trigger_fs_error`): with
    /// `errors=remount-ro` the kernel aborts the journal and makes it read-only. Waits until a
    /// write there fails with EROFS. There is no way back short of unmounting and e2fsck.
    pub fn trigger_error(&self) {
        let trigger = self.trigger_path();
        fs::write(&trigger, "1")
            .unwrap_or_else(|e| panic!("cannot write 1 to {}: {e}", trigger.display()));
        let probe = self.dir.join(".pamtotp-e2e-probe");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match fs::write(&probe, "x") {
                Err(e) if e.raw_os_error() == Some(libc::EROFS) => return,
                Err(e) => panic!("probing {} after the ext4 error: {e}", probe.display()),
                Ok(()) => {
                    let _ = fs::remove_file(&probe);
                    assert!(
                        Instant::now() < deadline,
                        "{} is still writable 10 s after an ext4 error with errors=remount-ro",
                        self.dir.display()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

impl Drop for Ext4Loop {
    fn drop(&mut self) {
        if self.mounted {
            let umount = require_tool("umount");
            let ok = Command::new(&umount)
                .arg(&self.dir)
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                let _ = Command::new(&umount).arg("-l").arg(&self.dir).output();
            }
        }
        if let Some(device) = &self.device {
            // After a lazy unmount the device is still busy: the kernel then detaches it
            // (autoclear) once the file system is finally released.
            let _ = Command::new(require_tool("losetup"))
                .arg("-d")
                .arg(device)
                .output();
        }
        let _ = fs::remove_dir_all(&self.image_dir);
    }
}

/// Like [`require_tool`], but a missing tool's message names the Debian package providing it.
fn require_tool_of(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(name))
        .any(|c| fs::metadata(c).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0));
    if !found {
        panic!(
            "required tool `{name}` is not installed: install the Debian package `{package}` \
             as root (`apt-get install {package}`)"
        );
    }
    require_tool(name)
}

/// For test images of dead test processes: unmounts (lazily) what is mounted from their loop
/// devices, detaches the devices and removes the images.
fn remove_stale_loops() {
    let temp = std::env::temp_dir();
    let stale_dir = |dir: &Path| {
        dir.parent() == Some(temp.as_path())
            && dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .and_then(|n| stale_owner(&n, EXT4_PREFIX, 'x'))
                .is_some_and(|pid| !pid_alive(&pid))
    };
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if let Ok(entries) = fs::read_dir("/sys/block") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("loop") {
                continue;
            }
            let Ok(backing) = fs::read_to_string(entry.path().join("loop/backing_file")) else {
                continue;
            };
            let backing = backing.trim_end_matches('\n');
            let backing = Path::new(backing.strip_suffix(" (deleted)").unwrap_or(backing));
            if !backing.parent().is_some_and(stale_dir) {
                continue;
            }
            let device = format!("/dev/{name}");
            for line in mounts.lines() {
                let mut fields = line.split_whitespace();
                if let (Some(source), Some(target)) = (fields.next(), fields.next()) {
                    if source == device {
                        let _ = Command::new(require_tool("umount"))
                            .arg("-l")
                            .arg(target.replace("\\040", " "))
                            .output();
                    }
                }
            }
            let _ = Command::new(require_tool("losetup"))
                .arg("-d")
                .arg(&device)
                .output();
        }
    }
    if let Ok(entries) = fs::read_dir(&temp) {
        for entry in entries.flatten() {
            if stale_dir(&entry.path()) {
                let _ = fs::remove_dir_all(entry.path());
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
