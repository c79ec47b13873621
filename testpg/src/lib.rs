//! Throwaway, real PostgreSQL clusters for the pam-totp tests (never a mock).
//!
//! [`Cluster::start`] runs `initdb` in a fresh temporary directory, starts the server on a free
//! loopback port and creates the login role `pamtotp` (random SCRAM password) and the database
//! `pamtotp` it owns. Dropping the [`Cluster`] stops the server (`-m immediate`) and removes the
//! directory. Clusters are independent of each other (own directory, port and Unix socket
//! directory), so tests may start several at once, in several test binaries.
//!
//! The binaries come from the highest `/usr/lib/postgresql/<version>/bin` (the Debian package
//! `postgresql`; `PATH` is not consulted). PostgreSQL refuses to run as root, so when the tests
//! run as root every server-side program runs as the `postgres` system user (`runuser`) and the
//! temporary directory belongs to that user (mode 0700). Client programs (`psql`, `pg_dump`)
//! run as the current user and reach the superuser over the cluster's Unix socket (trust).
//!
//! Layout of a cluster's temporary directory: `data/` (the data directory), `sock/` (the Unix
//! socket directory), `server.log` (the server's log), `tls/` (certificates, with TLS only).

use std::fs;
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{chown, geteuid, Pid, User};

/// The login role the tests use (owner of [`DATABASE`]).
pub const ROLE: &str = "pamtotp";
/// The database the tests use.
pub const DATABASE: &str = "pamtotp";
/// The cluster's superuser; reachable only over the Unix socket (trust).
const SUPERUSER: &str = "postgres";
/// Where the Debian package `postgresql` puts its versioned binary directories.
const PG_ROOT: &str = "/usr/lib/postgresql";
/// The programs a usable `<version>/bin` must hold.
const TOOLS: [&str; 6] = [
    "initdb",
    "pg_ctl",
    "postgres",
    "psql",
    "pg_basebackup",
    "pg_dump",
];
/// The included settings file, written into the data directory (a standby rewrites its own).
const SETTINGS_FILE: &str = "testpg.conf";
/// Fresh ports tried when another process takes the chosen one first.
const START_ATTEMPTS: usize = 8;
/// Bound for every wait (server start/stop, replication, process exit).
const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable PostgreSQL installation.
    #[error(
        "PostgreSQL not found: no {PG_ROOT}/<version>/bin holding initdb, pg_ctl, postgres, psql, \
         pg_basebackup and pg_dump; install the Debian package `postgresql` \
         (scripts/install-test-deps.sh does)"
    )]
    PostgresMissing,
    /// A helper program is not installed.
    #[error("`{tool}` not found: install the Debian package `{package}`")]
    ToolMissing { tool: String, package: &'static str },
    /// Running as root without a `postgres` user to run the server as.
    #[error(
        "running as root, and PostgreSQL refuses to run as root, but there is no `postgres` \
         system user to run it as; install the Debian package `postgresql` (it creates the user)"
    )]
    NoPostgresUser,
    /// A file system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A system call made through `nix` failed.
    #[error("{context}: {source}")]
    Os {
        context: String,
        #[source]
        source: nix::Error,
    },
    /// A program exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    /// The server did not start; `log_tail` is the end of its log.
    #[error(
        "PostgreSQL did not start in {data_dir}: {reason}\n--- server log (tail) ---\n{log_tail}"
    )]
    StartFailed {
        data_dir: PathBuf,
        reason: String,
        log_tail: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    /// The server answered something unexpected.
    #[error("unexpected {what}: {detail}")]
    Unexpected { what: String, detail: String },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

fn os_error(context: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let context = context.into();
    move |source| Error::Os { context, source }
}

/// How to start a cluster.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Turn on TLS (`ssl = on`) with a server certificate for `127.0.0.1` and `localhost`
    /// signed by a throwaway CA ([`Cluster::ca_cert`]). Plain TCP connections stay allowed, so
    /// [`Cluster::url`] works either way; [`Cluster::url_tls`] gives a verifying URL.
    pub tls: bool,
}

/// Where the binaries are and whom the server runs as; the same for a primary and its standbys.
#[derive(Debug, Clone)]
struct Install {
    bin: PathBuf,
    /// `Some(postgres)` when running as root.
    run_as: Option<User>,
}

impl Install {
    fn detect() -> Result<Install, Error> {
        let bin = find_bin_dir()?;
        let run_as = if geteuid().is_root() {
            let user = User::from_name("postgres")
                .map_err(os_error("looking up the `postgres` user"))?
                .ok_or(Error::NoPostgresUser)?;
            Some(user)
        } else {
            None
        };
        Ok(Install { bin, run_as })
    }

    /// A server-side program (writes the data directory): run as the server's user.
    fn server_command(&self, tool: &str, cwd: &Path) -> Command {
        let program = self.bin.join(tool);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new(runuser());
                command.arg("-u").arg(&user.name).arg("--").arg(program);
                command
            }
            None => Command::new(program),
        };
        scrub(&mut command, cwd);
        command
    }

    /// A client program: run as the current user.
    fn client_command(&self, tool: &str, cwd: &Path) -> Command {
        let mut command = Command::new(self.bin.join(tool));
        scrub(&mut command, cwd);
        command
    }

    /// Hands a path to the server's user (no-op when not root).
    fn give(&self, path: &Path) -> Result<(), Error> {
        if let Some(user) = &self.run_as {
            chown(path, Some(user.uid), Some(user.gid))
                .map_err(os_error(format!("chown {} to postgres", path.display())))?;
        }
        Ok(())
    }
}

/// The highest `/usr/lib/postgresql/<version>/bin` holding all of [`TOOLS`].
fn find_bin_dir() -> Result<PathBuf, Error> {
    let entries = fs::read_dir(PG_ROOT).map_err(|_| Error::PostgresMissing)?;
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(version) = name
            .split('.')
            .map(|part| part.parse::<u32>().ok())
            .collect::<Option<Vec<u32>>>()
        else {
            continue;
        };
        let bin = entry.path().join("bin");
        if !TOOLS.iter().all(|tool| bin.join(tool).is_file()) {
            continue;
        }
        if best.as_ref().is_none_or(|(seen, _)| version > *seen) {
            best = Some((version, bin));
        }
    }
    best.map(|(_, bin)| bin).ok_or(Error::PostgresMissing)
}

fn runuser() -> &'static str {
    ["/usr/sbin/runuser", "/sbin/runuser"]
        .into_iter()
        .find(|path| Path::new(path).is_file())
        .unwrap_or("runuser")
}

/// A fixed working directory (the server's user may not enter the caller's) and no `PG*`
/// variables from the caller's environment.
fn scrub(command: &mut Command, cwd: &Path) {
    command.current_dir(cwd);
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"PG") {
            command.env_remove(name);
        }
    }
    command.env("PGCONNECT_TIMEOUT", "10");
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a program to completion (stdin fed from `input`); its stdout on success.
fn run(mut command: Command, input: Option<&[u8]>) -> Result<Vec<u8>, Error> {
    let described = describe(&command);
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            let tool = Path::new(command.get_program())
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let package = match tool.as_str() {
                "openssl" => "openssl",
                "runuser" => "util-linux",
                _ => "postgresql",
            };
            Error::ToolMissing { tool, package }
        } else {
            Error::Io {
                context: format!("starting `{described}`"),
                source,
            }
        }
    })?;
    let stdin = child.stdin.take();
    let output = std::thread::scope(|scope| {
        if let (Some(input), Some(mut stdin)) = (input, stdin) {
            // A write error (the program exited early) shows in its exit status.
            scope.spawn(move || {
                let _ = stdin.write_all(input);
            });
        }
        child.wait_with_output()
    })
    .map_err(io_error(format!("waiting for `{described}`")))?;
    if !output.status.success() {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }
        return Err(Error::CommandFailed {
            command: described,
            status: output.status.to_string(),
            stderr,
        });
    }
    Ok(output.stdout)
}

fn random_hex(bytes: usize) -> Result<String, Error> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|error| Error::Unexpected {
        what: "failure of the system random source".to_owned(),
        detail: error.to_string(),
    })?;
    Ok(hex::encode(buffer))
}

fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(io_error("binding 127.0.0.1:0 to find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_error("reading the port bound on 127.0.0.1"))?
        .port();
    Ok(port)
}

/// A quoted postgresql.conf string.
fn conf_string(value: &Path) -> String {
    format!("'{}'", value.to_string_lossy().replace('\'', "''"))
}

/// Polls `done` until it returns true, for at most [`WAIT`].
fn wait_until(what: &str, mut done: impl FnMut() -> Result<bool, Error>) -> Result<(), Error> {
    let deadline = Instant::now() + WAIT;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                seconds: WAIT.as_secs(),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// State letter and parent pid of a process, from `/proc/<pid>/stat`; `None` when gone.
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold anything, so split after its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Whether a process still runs (a zombie nobody reaped counts as gone).
fn alive(pid: i32) -> bool {
    matches!(proc_stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| matches!(proc_stat(*pid), Some((_, ppid)) if ppid == parent))
        .collect()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One running (or stopped) PostgreSQL cluster in its own temporary directory.
#[derive(Debug)]
pub struct Cluster {
    install: Install,
    dir: tempfile::TempDir,
    port: u16,
    password: String,
    tls: bool,
    ca_cert: Option<PathBuf>,
}

impl Cluster {
    /// Creates and starts a cluster: `initdb`; SCRAM for TCP (`127.0.0.1` only) and trust only
    /// for the superuser on the Unix socket (also for replication); a free loopback port; the
    /// socket directory inside the cluster's temporary directory; `fsync` on,
    /// `wal_level = replica`, WAL senders and `hot_standby` for [`Cluster::standby`]. Then
    /// creates the login role [`ROLE`] with a random password and the database [`DATABASE`]
    /// owned by it.
    pub fn start(options: Options) -> Result<Cluster, Error> {
        let install = Install::detect()?;
        let dir = make_temp_dir(&install)?;
        let password = random_hex(24)?;
        // Built before anything runs, so that Drop cleans up after a failure half-way.
        let mut cluster = Cluster {
            install,
            dir,
            port: 0,
            password,
            tls: options.tls,
            ca_cert: None,
        };
        cluster.make_socket_dir()?;
        cluster.initdb()?;
        if options.tls {
            cluster.ca_cert = Some(cluster.make_certificates()?);
        }
        cluster.start_on_free_port()?;
        cluster.superuser_sql(
            "postgres",
            &format!(
                "CREATE ROLE {ROLE} LOGIN PASSWORD '{}';\nCREATE DATABASE {DATABASE} OWNER {ROLE};\n",
                cluster.password
            ),
        )?;
        Ok(cluster)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password of [`ROLE`].
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgres://pamtotp@127.0.0.1:PORT/pamtotp?sslmode=disable`, without the password.
    pub fn url(&self) -> String {
        format!(
            "postgres://{ROLE}@127.0.0.1:{}/{DATABASE}?sslmode=disable",
            self.port
        )
    }

    /// [`Cluster::url`] with the password in it: `postgres://pamtotp:PASSWORD@...`.
    pub fn url_with_password(&self) -> String {
        format!(
            "postgres://{ROLE}:{}@127.0.0.1:{}/{DATABASE}?sslmode=disable",
            self.password, self.port
        )
    }

    /// With TLS: `postgres://pamtotp@localhost:PORT/pamtotp?sslmode=verify-full&sslrootcert=CA`
    /// (without the password); `None` without TLS.
    pub fn url_tls(&self) -> Option<String> {
        let ca = self.ca_cert.as_ref()?;
        Some(format!(
            "postgres://{ROLE}@localhost:{}/{DATABASE}?sslmode=verify-full&sslrootcert={}",
            self.port,
            ca.display()
        ))
    }

    /// With TLS: the CA certificate that signed the server's certificate (SAN `IP:127.0.0.1`,
    /// `DNS:localhost`). It lies in the cluster's directory, which only root and the server's
    /// user can enter when running as root.
    pub fn ca_cert(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Runs SQL (one or more statements, or psql meta-commands) as the superuser over the Unix
    /// socket on database [`DATABASE`] (`psql -X -A -t -q -v ON_ERROR_STOP=1`); stdout trimmed.
    pub fn psql(&self, sql: &str) -> Result<String, Error> {
        self.superuser_sql(DATABASE, sql)
    }

    /// Stops the server (`pg_ctl stop -m fast -w`).
    pub fn stop(&self) -> Result<(), Error> {
        self.pg_ctl(&["stop", "-m", "fast"]).map(drop)
    }

    /// Starts the server again (same port) after [`Cluster::stop`] or
    /// [`Cluster::kill_postmaster`] (then with crash recovery).
    pub fn restart_server(&self) -> Result<(), Error> {
        self.pg_ctl_start().map_err(|(error, _)| error)
    }

    /// SIGKILLs the postmaster (the pid in `postmaster.pid`) and waits, bounded, until it and
    /// the server processes it had forked are gone and the port no longer accepts connections.
    pub fn kill_postmaster(&self) -> Result<(), Error> {
        let pid_file = self.data_dir().join("postmaster.pid");
        let contents = fs::read_to_string(&pid_file)
            .map_err(io_error(format!("reading {}", pid_file.display())))?;
        let pid: i32 = contents
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| Error::Unexpected {
                what: format!("contents of {}", pid_file.display()),
                detail: contents.clone(),
            })?;
        let children = children_of(pid);
        kill(Pid::from_raw(pid), Signal::SIGKILL)
            .map_err(os_error(format!("SIGKILL to the postmaster (pid {pid})")))?;
        wait_until("the killed postmaster and its children to exit", || {
            Ok(!alive(pid) && !children.iter().any(|child| alive(*child)) && !self.accepts_tcp())
        })?;
        // The lock files are stale now. The server would ignore them once the dead pid is
        // reaped, but an unreaped zombie (PID 1 of some containers reaps late) still looks
        // alive to it and would block restart_server, so remove them.
        let socket_lock = self
            .socket_dir()
            .join(format!(".s.PGSQL.{}.lock", self.port));
        for lock in [pid_file, socket_lock] {
            match fs::remove_file(&lock) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => {
                    return Err(io_error(format!("removing {}", lock.display()))(error));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A hot standby of this cluster: `pg_basebackup -R -X stream` (over the superuser's Unix
    /// socket) into a new temporary directory, started on its own free port and socket
    /// directory, streaming when this returns. Being a copy, it has the same role, password,
    /// database and TLS setting.
    pub fn standby(&self) -> Result<Cluster, Error> {
        let dir = make_temp_dir(&self.install)?;
        let mut standby = Cluster {
            install: self.install.clone(),
            dir,
            port: 0,
            password: self.password.clone(),
            tls: self.tls,
            ca_cert: None,
        };
        standby.make_socket_dir()?;
        let mut command = self
            .install
            .server_command("pg_basebackup", standby.dir.path());
        command
            .arg("-D")
            .arg(standby.data_dir())
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync", "-w"])
            .arg("-h")
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER]);
        run(command, None)?;
        if let Some(ca) = &self.ca_cert {
            let copy = standby.dir.path().join("ca.crt");
            fs::copy(ca, &copy).map_err(io_error(format!("copying {}", ca.display())))?;
            standby.ca_cert = Some(copy);
        }
        standby.start_on_free_port()?;
        wait_until("the standby to stream from its primary", || {
            Ok(standby
                .psql("SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'")?
                == "1")
        })?;
        Ok(standby)
    }

    /// Promotes a standby to a primary (`pg_ctl promote -w`).
    pub fn promote(&self) -> Result<(), Error> {
        self.pg_ctl(&["promote"]).map(drop)
    }

    /// Waits, bounded, until `standby` has replayed all WAL this cluster had written at the
    /// time of the call (`pg_current_wal_lsn()` here against `pg_last_wal_replay_lsn()` there).
    pub fn wait_caught_up(&self, standby: &Cluster) -> Result<(), Error> {
        let lsn = self.psql("SELECT pg_current_wal_lsn()")?;
        if lsn.is_empty() || !lsn.chars().all(|c| c.is_ascii_hexdigit() || c == '/') {
            return Err(Error::Unexpected {
                what: "answer to pg_current_wal_lsn()".to_owned(),
                detail: lsn,
            });
        }
        let query = format!("SELECT coalesce(pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn, false)");
        wait_until(&format!("the standby to replay up to {lsn}"), || {
            Ok(standby.psql(&query)? == "t")
        })
    }

    /// `pg_dump` of database [`DATABASE`] as plain SQL.
    pub fn pg_dump(&self) -> Result<Vec<u8>, Error> {
        let mut command = self.install.client_command("pg_dump", self.dir.path());
        command
            .args(["--format=plain", "--no-password"])
            .arg("--host")
            .arg(self.socket_dir())
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--username", SUPERUSER, "--dbname", DATABASE]);
        run(command, None)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn make_socket_dir(&self) -> Result<(), Error> {
        let socket_dir = self.socket_dir();
        fs::create_dir(&socket_dir)
            .map_err(io_error(format!("creating {}", socket_dir.display())))?;
        self.install.give(&socket_dir)
    }

    fn superuser_sql(&self, database: &str, sql: &str) -> Result<String, Error> {
        let mut command = self.install.client_command("psql", self.dir.path());
        command
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-w",
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                "-",
            ])
            .arg("-h")
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", database]);
        let stdout = run(command, Some(sql.as_bytes()))?;
        Ok(String::from_utf8_lossy(&stdout).trim().to_owned())
    }

    fn initdb(&self) -> Result<(), Error> {
        let data = self.data_dir();
        let mut command = self.install.server_command("initdb", self.dir.path());
        command
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"]);
        run(command, None)?;
        let hba = format!(
            "# Written by pam-totp-testpg.\n\
             local all         {SUPERUSER} trust\n\
             local replication {SUPERUSER} trust\n\
             host  all         all         127.0.0.1/32 scram-sha-256\n\
             host  replication all         127.0.0.1/32 scram-sha-256\n"
        );
        // Files initdb made keep their owner (the server's user) when rewritten.
        let hba_path = data.join("pg_hba.conf");
        fs::write(&hba_path, hba).map_err(io_error(format!("writing {}", hba_path.display())))?;
        let conf_path = data.join("postgresql.conf");
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .map_err(io_error(format!("opening {}", conf_path.display())))?;
        writeln!(
            conf,
            "\n# Added by pam-totp-testpg.\ninclude '{SETTINGS_FILE}'"
        )
        .map_err(io_error(format!("appending to {}", conf_path.display())))
    }

    /// The settings that differ between a primary and its standbys (port, socket directory)
    /// and the fixed ones, in the data directory's included file.
    fn write_settings(&self) -> Result<(), Error> {
        let settings = format!(
            "# Written by pam-totp-testpg; included at the end of postgresql.conf.\n\
             port = {port}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = {socket_dir}\n\
             unix_socket_permissions = 0700\n\
             password_encryption = 'scram-sha-256'\n\
             fsync = on\n\
             wal_level = replica\n\
             max_wal_senders = 10\n\
             max_replication_slots = 10\n\
             wal_keep_size = '128MB'\n\
             hot_standby = on\n\
             shared_buffers = '16MB'\n\
             ssl = {ssl}\n\
             ssl_cert_file = 'server.crt'\n\
             ssl_key_file = 'server.key'\n",
            port = self.port,
            socket_dir = conf_string(&self.socket_dir()),
            ssl = if self.tls { "on" } else { "off" },
        );
        let path = self.data_dir().join(SETTINGS_FILE);
        fs::write(&path, settings).map_err(io_error(format!("writing {}", path.display())))?;
        self.install.give(&path)
    }

    /// A throwaway CA (returned) and a server certificate it signed, installed in the data
    /// directory as `server.crt` / `server.key` (which `pg_basebackup` copies to standbys).
    fn make_certificates(&self) -> Result<PathBuf, Error> {
        let tls = self.dir.path().join("tls");
        fs::create_dir(&tls).map_err(io_error(format!("creating {}", tls.display())))?;
        // Arguments split on spaces (none of them holds one).
        let openssl = |args: &str| {
            let mut command = Command::new("openssl");
            command.current_dir(&tls).args(args.split_whitespace());
            run(command, None)
        };
        let new_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        openssl(&format!(
            "req -x509 {new_key} -keyout ca.key -out ca.crt -days 2 -subj /CN=pam-totp-testpg-CA \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        ))?;
        openssl(&format!(
            "req -new {new_key} -keyout server.key -out server.csr -subj /CN=localhost"
        ))?;
        let extensions = tls.join("server.ext");
        fs::write(
            &extensions,
            "subjectAltName = IP:127.0.0.1, DNS:localhost\n\
             basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\n",
        )
        .map_err(io_error(format!("writing {}", extensions.display())))?;
        openssl(
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -CAserial ca.srl \
             -days 2 -out server.crt -extfile server.ext",
        )?;
        for (name, mode) in [("server.crt", 0o644), ("server.key", 0o600)] {
            let target = self.data_dir().join(name);
            fs::copy(tls.join(name), &target)
                .map_err(io_error(format!("copying {name} to {}", target.display())))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(io_error(format!("chmod {}", target.display())))?;
            self.install.give(&target)?;
        }
        Ok(tls.join("ca.crt"))
    }

    /// Starts on a fresh free port, retrying with another when a different process took it
    /// between our probe and the server's bind.
    fn start_on_free_port(&mut self) -> Result<(), Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = free_port()?;
            self.write_settings()?;
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err((_, true)) if attempt < START_ATTEMPTS => continue,
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// `pg_ctl start -w`; on failure also whether the port was taken.
    fn pg_ctl_start(&self) -> Result<(), (Error, bool)> {
        let log = self.log_path();
        let offset = fs::metadata(&log).map(|meta| meta.len()).unwrap_or(0);
        let mut command = self.install.server_command("pg_ctl", self.dir.path());
        command
            .arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", &WAIT.as_secs().to_string()]);
        let Err(error) = run(command, None) else {
            return Ok(());
        };
        let text = fs::read(&log).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(0).min(text.len());
        let this_start = String::from_utf8_lossy(&text[start..]).into_owned();
        let port_taken = this_start.contains("Address already in use");
        Err((
            Error::StartFailed {
                data_dir: self.data_dir(),
                reason: error.to_string(),
                log_tail: tail(&String::from_utf8_lossy(&text), 40),
            },
            port_taken,
        ))
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Vec<u8>, Error> {
        let mut command = self.install.server_command("pg_ctl", self.dir.path());
        command.args(args).arg("-D").arg(self.data_dir()).args([
            "-w",
            "-t",
            &WAIT.as_secs().to_string(),
        ]);
        run(command, None)
    }

    fn accepts_tcp(&self) -> bool {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
        }
        // The TempDir field removes the directory after this.
    }
}

/// A fresh directory under the system temporary directory, mode 0700, owned by the server's
/// user.
fn make_temp_dir(install: &Install) -> Result<tempfile::TempDir, Error> {
    let parent = std::env::temp_dir();
    let dir = tempfile::Builder::new()
        .prefix("pam-totp-testpg-")
        .tempdir_in(&parent)
        .map_err(io_error(format!(
            "creating a directory in {}",
            parent.display()
        )))?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
        .map_err(io_error(format!("chmod {}", dir.path().display())))?;
    install.give(dir.path())?;
    Ok(dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// `psql` over TCP as [`ROLE`] with `PGPASSWORD`; `conninfo` adds to/overrides the
    /// defaults (host 127.0.0.1, the cluster's port, no TLS).
    fn tcp_psql(
        cluster: &Cluster,
        password: &str,
        conninfo: &str,
        sql: &str,
    ) -> Result<String, Error> {
        let bin = find_bin_dir()?;
        let mut command = Command::new(bin.join("psql"));
        scrub(&mut command, Path::new("/"));
        command
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-w",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .arg(format!(
                "host=127.0.0.1 port={} user={ROLE} dbname={DATABASE} sslmode=disable {conninfo}",
                cluster.port()
            ));
        let stdout = run(command, None)?;
        Ok(String::from_utf8_lossy(&stdout).trim().to_owned())
    }

    fn select_one(cluster: &Cluster) -> Result<String, Error> {
        tcp_psql(cluster, cluster.password(), "", "SELECT 1")
    }

    #[test]
    fn start_connect_stop_restart() {
        let cluster = Cluster::start(Options::default()).unwrap();
        assert_eq!(select_one(&cluster).unwrap(), "1");
        assert!(tcp_psql(&cluster, "wrong", "", "SELECT 1").is_err());
        assert_eq!(
            cluster.url(),
            format!(
                "postgres://pamtotp@127.0.0.1:{}/pamtotp?sslmode=disable",
                cluster.port()
            )
        );
        assert!(!cluster.url().contains(cluster.password()));
        assert!(cluster
            .url_with_password()
            .contains(&format!(":{}@", cluster.password())));
        assert!(cluster.ca_cert().is_none());
        assert!(cluster.url_tls().is_none());
        // The role owns its database: it can create tables there.
        tcp_psql(
            &cluster,
            cluster.password(),
            "",
            "CREATE TABLE mine (x int)",
        )
        .unwrap();
        // TCP as the superuser needs a password it does not have.
        let superuser = format!("user={SUPERUSER}");
        assert!(tcp_psql(&cluster, "", &superuser, "SELECT 1").is_err());

        cluster.stop().unwrap();
        assert!(select_one(&cluster).is_err());
        cluster.restart_server().unwrap();
        assert_eq!(select_one(&cluster).unwrap(), "1");
    }

    #[test]
    fn kill_postmaster_then_restart_keeps_committed_data() {
        let cluster = Cluster::start(Options::default()).unwrap();
        cluster
            .psql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7), (8);")
            .unwrap();
        cluster.kill_postmaster().unwrap();
        assert!(select_one(&cluster).is_err());
        assert!(cluster.psql("SELECT 1").is_err());
        cluster.restart_server().unwrap();
        assert_eq!(cluster.psql("SELECT sum(x) FROM kept").unwrap(), "15");
        assert_eq!(select_one(&cluster).unwrap(), "1");
    }

    #[test]
    fn standby_replicates_and_promotes() {
        let primary = Cluster::start(Options::default()).unwrap();
        primary
            .psql(
                "CREATE TABLE t (x int); ALTER TABLE t OWNER TO pamtotp; INSERT INTO t VALUES (1);",
            )
            .unwrap();
        let standby = primary.standby().unwrap();
        assert_ne!(standby.port(), primary.port());
        assert_eq!(standby.password(), primary.password());
        assert_eq!(standby.psql("SELECT pg_is_in_recovery()").unwrap(), "t");

        primary.psql("INSERT INTO t VALUES (2)").unwrap();
        primary.wait_caught_up(&standby).unwrap();
        assert_eq!(standby.psql("SELECT sum(x) FROM t").unwrap(), "3");
        assert_eq!(
            tcp_psql(&standby, standby.password(), "", "SELECT count(*) FROM t").unwrap(),
            "2"
        );
        assert!(standby.psql("INSERT INTO t VALUES (100)").is_err());

        primary.kill_postmaster().unwrap();
        standby.promote().unwrap();
        assert_eq!(standby.psql("SELECT pg_is_in_recovery()").unwrap(), "f");
        standby.psql("INSERT INTO t VALUES (3)").unwrap();
        assert_eq!(standby.psql("SELECT sum(x) FROM t").unwrap(), "6");
    }

    #[test]
    fn tls_cluster_verifies_against_its_ca() {
        let cluster = Cluster::start(Options { tls: true }).unwrap();
        let ca = cluster.ca_cert().unwrap().to_owned();
        assert!(ca.is_file());
        let verified = format!(
            "host=localhost sslmode=verify-full sslrootcert={}",
            ca.display()
        );
        assert_eq!(
            tcp_psql(
                &cluster,
                cluster.password(),
                &verified,
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
            .unwrap(),
            "t"
        );
        // The certificate also names the address.
        let by_address = format!("sslmode=verify-full sslrootcert={}", ca.display());
        assert_eq!(
            tcp_psql(&cluster, cluster.password(), &by_address, "SELECT 1").unwrap(),
            "1"
        );
        assert!(cluster.url_tls().unwrap().contains("sslmode=verify-full"));
        // Plain TCP stays allowed (Cluster::url).
        assert_eq!(select_one(&cluster).unwrap(), "1");
    }

    #[test]
    fn pg_dump_holds_created_table() {
        let cluster = Cluster::start(Options::default()).unwrap();
        cluster
            .psql("CREATE TABLE dumped_table (id int PRIMARY KEY, name text); INSERT INTO dumped_table VALUES (1, 'alice');")
            .unwrap();
        let dump = String::from_utf8(cluster.pg_dump().unwrap()).unwrap();
        assert!(dump.contains("CREATE TABLE public.dumped_table"), "{dump}");
        assert!(dump.contains("alice"), "{dump}");
    }

    #[test]
    fn drop_stops_server_and_removes_directory() {
        let cluster = Cluster::start(Options::default()).unwrap();
        let dir = cluster.dir.path().to_owned();
        let port = cluster.port();
        drop(cluster);
        assert!(!dir.exists());
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert!(TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err());
    }
}
