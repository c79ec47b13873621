//! `pam-totp-bench`: the benchmarks of issue 5.
//!
//! - `agent`: the release agent under C concurrent protocol clients with P profiles;
//! - `fleet`: the same workload through the PostgreSQL fleet store (one agent, two agents)
//!   beside the SQLite store (issue 12);
//! - `pam`: pam_totp.so beside pam_permit, pam_google_authenticator and pam_oath through
//!   real libpam, in process;
//! - `charts`: SVG charts from the JSON results of both.
//!
//! Each layer prints a table and writes JSON; any functional error (a correct code refused,
//! a wrong one accepted, a failed login) makes the command exit non-zero. No timing is
//! asserted. Run as root (the PAM layer writes /etc/pam.d service files and removes them).

mod accounts;
mod agent_layer;
mod agent_proc;
mod chart;
mod fleet_layer;
mod fleet_report;
mod load;
mod machine;
mod pam_ffi;
mod pam_layer;
mod pg_cluster;
mod procstat;
mod report;
mod seed;
mod stats;
mod syslog_sink;

use clap::{Parser, Subcommand};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "pam-totp-bench", about = "pam-totp benchmarks (issue 5)")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Agent layer: verifications/s and latency against profile count and clients.
    Agent {
        /// Profile counts to seed, one agent each.
        #[arg(long, value_delimiter = ',', default_value = "1000,100000,1000000")]
        profiles: Vec<usize>,
        /// Concurrent clients, one run each.
        #[arg(long, value_delimiter = ',', default_value = "1,8,64,256")]
        clients: Vec<usize>,
        /// Longest run, seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Most requests per run (also capped by the profile count).
        #[arg(long, default_value_t = 50_000)]
        max_requests: usize,
        /// Share of requests carrying a wrong code.
        #[arg(long, default_value_t = 0.1)]
        wrong_share: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Fleet layer: the agent layer's workload through the SQLite store (one agent), the
    /// PostgreSQL fleet store through one agent, and through two agents on the same cluster
    /// (clients split evenly), taking turns; writes OUT/fleet.json.
    Fleet {
        /// Profile counts, each seeded into its own SQLite database and its own throwaway
        /// PostgreSQL cluster.
        #[arg(long, value_delimiter = ',', default_value = "1000")]
        profiles: Vec<usize>,
        /// Concurrent clients, one run per store setup each.
        #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
        clients: Vec<usize>,
        /// Store setups, measured in this order for each client count.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "sqlite,postgres1,postgres2"
        )]
        stores: Vec<fleet_layer::Setup>,
        /// Longest run, seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Most requests per run (also capped by the profile count; the two PostgreSQL
        /// setups share their profiles, so both runs of a client count draw on one time
        /// step's accounts).
        #[arg(long, default_value_t = 50_000)]
        max_requests: usize,
        /// Share of requests carrying a wrong code.
        #[arg(long, default_value_t = 0.1)]
        wrong_share: f64,
        #[command(flatten)]
        common: Common,
    },
    /// PAM layer: pam_permit, pam_totp, pam_google_authenticator, pam_oath on the same accounts.
    Pam {
        /// Account counts (fresh accounts, agent, secret files and usersfile for each).
        #[arg(long, value_delimiter = ',', default_value = "200,2000")]
        accounts: Vec<usize>,
        /// Login threads, one pass each (1: the modules' own cost; more: logins/s under
        /// concurrency).
        #[arg(long, value_delimiter = ',', default_value = "1,4")]
        threads: Vec<usize>,
        /// pam_totp.so to load [default: libpam_totp.so next to this binary].
        #[arg(long)]
        module: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Markdown tables and the issues' targets from OUT/agent.json, OUT/fleet.json and
    /// OUT/pam.json (also written to OUT/report.md).
    Report {
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
    },
    /// Print the code of bench account N at a time (to cross-check with oathtool).
    Code {
        #[arg(long)]
        account: usize,
        /// Unix time [default: now].
        #[arg(long)]
        at: Option<i64>,
    },
    /// (Internal) the PAM layer's discarding /dev/log, run as its own process so the login
    /// process stays single-threaded, as sshd and sudo are.
    #[command(hide = true)]
    SyslogSink {
        #[arg(long)]
        path: PathBuf,
    },
    /// SVG charts from OUT/agent.json, OUT/fleet.json and OUT/pam.json.
    Charts {
        /// Where the JSON results are, and where the charts go.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
        /// Also copy the charts here (e.g. docs/bench).
        #[arg(long)]
        copy_to: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Directory for the JSON results.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Where temporary databases, sockets and files go (the database's disk matters: every
    /// acknowledged verification waits for its fsync).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
    /// The agent binary [default: pam-totp-agent next to this binary].
    #[arg(long)]
    agent: Option<PathBuf>,
}

impl Common {
    fn agent_binary(&self) -> PathBuf {
        self.agent
            .clone()
            .unwrap_or_else(|| agent_proc::default_binary("pam-totp-agent"))
    }
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether SIGINT or SIGTERM arrived: loops stop, and the temporary PAM services, the syslog
/// sink and the agents are cleaned up on the way out.
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed)
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn catch_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
    }
}

fn write_json(out: &Path, name: &str, value: &impl Serialize) -> Result<PathBuf, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let path = out.join(name);
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path)
}

fn report_errors(layer: &str, count: u64, samples: &[String]) -> Result<(), String> {
    if count == 0 && samples.is_empty() {
        return Ok(());
    }
    for sample in samples {
        eprintln!("pam-totp-bench: {layer}: {sample}");
    }
    Err(format!("{layer}: {count} functional error(s)"))
}

fn run(args: Args) -> Result<(), String> {
    catch_signals();
    match args.command {
        Command::Agent {
            profiles,
            clients,
            duration,
            max_requests,
            wrong_share,
            common,
        } => {
            let config = agent_layer::AgentConfig {
                profiles,
                clients,
                duration_s: duration,
                max_requests,
                wrong_share,
                agent_binary: common.agent_binary(),
            };
            let report = agent_layer::bench(&config, &common.work_dir)?;
            if interrupted() {
                return Err("interrupted".into());
            }
            let path = write_json(&common.out, "agent.json", &report)?;
            println!("results: {}", path.display());
            report_errors("agent layer", report.errors(), &report.error_samples)
        }
        Command::Fleet {
            profiles,
            clients,
            stores,
            duration,
            max_requests,
            wrong_share,
            common,
        } => {
            let config = fleet_layer::FleetConfig {
                profiles,
                clients,
                setups: stores,
                duration_s: duration,
                max_requests,
                wrong_share,
                agent_binary: common.agent_binary(),
            };
            let report = fleet_layer::bench(&config, &common.work_dir)?;
            if interrupted() {
                return Err("interrupted".into());
            }
            let path = write_json(&common.out, "fleet.json", &report)?;
            println!("results: {}", path.display());
            report_errors("fleet layer", report.errors(), &report.error_samples)
        }
        Command::Pam {
            accounts,
            threads,
            module,
            common,
        } => {
            let config = pam_layer::PamConfig {
                accounts,
                threads,
                agent_binary: common.agent_binary(),
                pam_totp_module: module
                    .unwrap_or_else(|| agent_proc::default_binary("libpam_totp.so")),
                stacks: Vec::new(),
                syslog: String::new(),
            };
            let report = pam_layer::bench(&config, &common.work_dir)?;
            if interrupted() {
                return Err("interrupted".into());
            }
            let path = write_json(&common.out, "pam.json", &report)?;
            println!("results: {}", path.display());
            report_errors(
                "PAM layer",
                u64::try_from(report.errors()).unwrap_or(u64::MAX),
                &report.error_samples,
            )
        }
        Command::Report { out } => {
            print!("{}", report::render(&out)?);
            Ok(())
        }
        Command::Code { account, at } => {
            let at = at.unwrap_or_else(seed::now_unix);
            let step = pam_totp_agent::totp::step_at(at, seed::PERIOD);
            println!("{}", seed::code(&seed::secret(account), step).as_str());
            Ok(())
        }
        Command::SyslogSink { path } => syslog_sink::run(&path),
        Command::Charts { out, copy_to } => {
            let written = chart::render(&out)?;
            for path in &written {
                println!("chart: {}", path.display());
                if let (Some(dir), Some(name)) = (&copy_to, path.file_name()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("create {}: {e}", dir.display()))?;
                    std::fs::copy(path, dir.join(name))
                        .map_err(|e| format!("copy to {}: {e}", dir.display()))?;
                }
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pam-totp-bench: error: {message}");
            ExitCode::FAILURE
        }
    }
}
