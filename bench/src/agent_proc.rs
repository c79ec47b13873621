//! The release agent as a child process on a private socket and store: its own SQLite
//! database, or the fleet store (PostgreSQL) shared with other agents.

use pam_totp_proto::{Client, ClientError, Request};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct AgentProcess {
    child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

/// The agent binary next to this bench binary (both in target/release).
pub fn default_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// What a fleet agent needs: the store's URL (without the password), its name in the fleet,
/// and the root-only files holding the fleet key and the role's password.
pub struct FleetAccess {
    pub url: String,
    pub host: String,
    pub key_file: PathBuf,
    pub password_file: PathBuf,
}

impl AgentProcess {
    /// Starts `binary` on `dir/agent.sock` with the SQLite store `db`, an empty config
    /// (defaults), and its log in `dir/agent.log`; returns once the agent answers.
    pub fn start(binary: &Path, dir: &Path, db: &Path) -> Result<Self, String> {
        let args = [OsString::from("--db"), db.as_os_str().to_owned()];
        Self::spawn(binary, dir, &args, "# pam-totp-bench: defaults\n")
    }

    /// As [`AgentProcess::start`], on the fleet store (PostgreSQL) named by `fleet`.
    pub fn start_fleet(binary: &Path, dir: &Path, fleet: &FleetAccess) -> Result<Self, String> {
        let args = [
            OsString::from("--store"),
            OsString::from(&fleet.url),
            OsString::from("--host-name"),
            OsString::from(&fleet.host),
        ];
        let config = format!(
            "# pam-totp-bench: defaults, on the fleet store\n\
             store_key_file = {}\n\
             store_password_file = {}\n",
            toml_string(&fleet.key_file),
            toml_string(&fleet.password_file)
        );
        Self::spawn(binary, dir, &args, &config)
    }

    fn spawn(
        binary: &Path,
        dir: &Path,
        store_args: &[OsString],
        config_text: &str,
    ) -> Result<Self, String> {
        let socket = dir.join("agent.sock");
        let config = dir.join("agent.toml");
        let log = dir.join("agent.log");
        std::fs::write(&config, config_text)
            .map_err(|e| format!("write {}: {e}", config.display()))?;
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let child = Command::new(binary)
            .arg("--socket")
            .arg(&socket)
            .args(store_args)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut agent = Self { child, socket, log };
        agent.wait_ready()?;
        Ok(agent)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = Client::new(&self.socket, Duration::from_secs(2));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the agent exited at start ({status}): {}",
                    self.log_tail()
                ));
            }
            if self.socket.exists() {
                // Any answer (here: not_found) means the agent serves requests.
                match client.call(Request::Show {
                    account: "tb-ready-probe".into(),
                }) {
                    Ok(_) | Err(ClientError::Api(_)) => return Ok(()),
                    Err(_) => {}
                }
            }
            if Instant::now() > deadline {
                return Err(format!("the agent did not answer: {}", self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `concurrency` requests at once, a few times over, that read the store and change
    /// nothing: a fleet agent opens its pooled PostgreSQL connections (TCP, SCRAM, failover
    /// check) on demand, and a long-running agent has them open already.
    pub fn warm_up(&self, concurrency: usize) {
        std::thread::scope(|scope| {
            for _ in 0..concurrency {
                scope.spawn(|| {
                    let client = Client::new(&self.socket, Duration::from_secs(10));
                    for _ in 0..3 {
                        let _ = client.call(Request::Show {
                            account: "tb-warm-up".into(),
                        });
                    }
                });
            }
        });
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// VmRSS in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// CPU time and context switches the agent has used so far.
    pub fn usage(&self) -> crate::procstat::Usage {
        crate::procstat::Usage::of(self.pid())
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Lines of the agent log reporting an internal error.
    pub fn internal_errors(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("result=internal") || l.contains("error"))
            .count()
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub fn stop(mut self) -> Result<(), String> {
        let pid = libc::pid_t::try_from(self.pid()).map_err(|e| e.to_string())?;
        // SAFETY: kill only sends a signal to our own child, which we have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("the agent exited with {status}")),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err("the agent did not stop on SIGTERM".into());
                }
            }
        }
    }
}

/// A TOML basic string holding a path (quotes and backslashes escaped).
fn toml_string(path: &Path) -> String {
    let text = path.display().to_string();
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
