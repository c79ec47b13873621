//! Agent layer: C concurrent clients (`load.rs`) speak the protocol to the release agent
//! holding P profiles in its SQLite store, one agent per profile count.

use crate::agent_proc::AgentProcess;
use crate::load::{self, Allocator, Limits, Measured};
use crate::machine::Machine;
use crate::procstat::Usage;
use crate::seed;
use crate::stats::{us, Latency};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentConfig {
    pub profiles: Vec<usize>,
    pub clients: Vec<usize>,
    /// Longest run, seconds.
    pub duration_s: f64,
    /// Most requests in one run (also capped by the profiles: one login per account and step).
    pub max_requests: usize,
    pub wrong_share: f64,
    pub agent_binary: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResult {
    pub profiles: usize,
    pub clients: usize,
    pub requests: u64,
    /// Correct codes accepted.
    pub accepted: u64,
    /// Wrong codes rejected.
    pub rejected: u64,
    /// Connections the agent closed unanswered (its connection cap); retried.
    pub retried: u64,
    /// Anything else: a correct code refused, a wrong one accepted, a transport error.
    pub errors: u64,
    pub elapsed_s: f64,
    pub verifications_per_s: f64,
    pub latency: Latency,
    /// Agent CPU (user + system) per request, from /proc/PID/stat.
    pub agent_cpu_us_per_request: f64,
    /// The agent's context switches (all its threads) per request, from
    /// /proc/PID/task/*/status: the hand-offs between threads, unaffected by how busy the
    /// machine is otherwise.
    #[serde(default)]
    pub agent_switches_per_request: f64,
    /// The load generator's own CPU per request (it shares the machine's cores).
    pub client_cpu_us_per_request: f64,
    pub agent_rss_kib: u64,
    pub db_bytes: u64,
    /// What ended the run: "duration", "count", or "accounts" (every account was used in
    /// this time step).
    pub ended_by: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Session {
    pub profiles: usize,
    /// fsync latency where the database lives, just before this session's runs.
    pub fsync: Latency,
    pub seed_s: f64,
    pub db_bytes_seeded: u64,
    pub runs: Vec<RunResult>,
    pub agent_rss_kib_end: u64,
    pub db_bytes_end: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentReport {
    pub machine: Machine,
    pub config: AgentConfig,
    pub sessions: Vec<Session>,
    pub error_samples: Vec<String>,
}

fn run(
    agent: &AgentProcess,
    db: &Path,
    allocator: &Arc<Mutex<Allocator>>,
    profiles: usize,
    clients: usize,
    config: &AgentConfig,
    error_samples: &mut Vec<String>,
) -> RunResult {
    let limits = Limits {
        duration: Duration::from_secs_f64(config.duration_s),
        max_requests: config.max_requests,
    };
    let before = agent.usage();
    let mut measured = load::drive(
        std::slice::from_ref(&agent.socket),
        allocator,
        profiles,
        clients,
        limits,
    );
    let used = agent.usage().since(before);
    error_samples.append(&mut measured.error_samples);
    RunResult::new(
        profiles,
        clients,
        &measured,
        used,
        agent.rss_kib(),
        seed::db_bytes(db),
    )
}

impl RunResult {
    /// The result of one run: what the clients saw, and the agents' CPU (all of them) and
    /// memory, and the store's size, measured around it.
    pub fn new(
        profiles: usize,
        clients: usize,
        measured: &Measured,
        agent: Usage,
        agent_rss_kib: u64,
        db_bytes: u64,
    ) -> Self {
        let requests = measured.requests;
        Self {
            profiles,
            clients,
            requests,
            accepted: measured.accepted,
            rejected: measured.rejected,
            retried: measured.retried,
            errors: measured.errors,
            elapsed_s: measured.elapsed_s,
            verifications_per_s: if measured.elapsed_s > 0.0 {
                requests as f64 / measured.elapsed_s
            } else {
                0.0
            },
            latency: measured.latency,
            agent_cpu_us_per_request: load::per_request(agent.cpu, requests),
            agent_switches_per_request: if requests > 0 {
                agent.switches as f64 / requests as f64
            } else {
                0.0
            },
            client_cpu_us_per_request: load::per_request(measured.own_cpu, requests),
            agent_rss_kib,
            db_bytes,
            ended_by: measured.ended_by.clone(),
        }
    }
}

fn print_header() {
    println!(
        "{:>9} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>10} {:>8} {:>9} {:>8} {:>7} {:>6}",
        "profiles",
        "clients",
        "requests",
        "verif/s",
        "p50 us",
        "p99 us",
        "max us",
        "agent cpu",
        "agent cs",
        "bench cpu",
        "rss MiB",
        "db MiB",
        "ended",
        "refused",
        "errors"
    );
}

fn print_run(r: &RunResult) {
    println!(
        "{:>9} {:>7} {:>8} {:>9.0} {:>9} {:>9} {:>9} {:>10} {:>8.1} {:>10} {:>8.1} {:>9.1} {:>8} {:>7} {:>6}",
        r.profiles,
        r.clients,
        r.requests,
        r.verifications_per_s,
        us(r.latency.p50_us),
        us(r.latency.p99_us),
        us(r.latency.max_us),
        us(r.agent_cpu_us_per_request),
        r.agent_switches_per_request,
        us(r.client_cpu_us_per_request),
        r.agent_rss_kib as f64 / 1024.0,
        r.db_bytes as f64 / 1024.0 / 1024.0,
        r.ended_by,
        r.retried,
        r.errors
    );
}

/// Runs every profile count against every client count; returns the report (errors counted in
/// it: the caller fails on any).
pub fn bench(config: &AgentConfig, base: &Path) -> Result<AgentReport, String> {
    let mut machine = Machine::probe(base);
    eprintln!(
        "agent layer: 4 KiB + fdatasync here takes p50 {} us, p99 {} us appended, p50 {} us, \
         p99 {} us overwritten",
        us(machine.fsync.p50_us),
        us(machine.fsync.p99_us),
        us(machine.overwrite_sync.p50_us),
        us(machine.overwrite_sync.p99_us)
    );
    let mut sessions = Vec::new();
    let mut error_samples = Vec::new();
    println!(
        "\n== agent layer: verifications over the socket ({}, synchronous=FULL) ==",
        config.agent_binary.display()
    );
    // Every profile count gets its own agent, all seeded first; then the runs take turns
    // (each client count against each profile count in a row), so a disk that is slow for a
    // while (fsync latency here varies with other writers) weighs on every profile count alike.
    struct Live {
        _dir: tempfile::TempDir,
        db: PathBuf,
        agent: AgentProcess,
        allocator: Arc<Mutex<Allocator>>,
        session: Session,
    }
    let mut live: Vec<Live> = Vec::new();
    for &profiles in &config.profiles {
        if crate::interrupted() {
            break;
        }
        let dir = tempfile::Builder::new()
            .prefix("pam-totp-bench-agent.")
            .tempdir_in(base)
            .map_err(|e| format!("temp dir in {}: {e}", base.display()))?;
        let db_dir = dir.path().join("db");
        std::fs::create_dir(&db_dir).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&db_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        let db = db_dir.join("profiles.sqlite3");
        let seeded = seed::seed(&db, profiles)?;
        let fsync = crate::machine::fsync_latency(&db_dir, 50, crate::machine::Growth::Append);
        let agent = AgentProcess::start(&config.agent_binary, dir.path(), &db)?;
        eprintln!(
            "  seeded {profiles} profiles in {:.1} s ({:.1} MiB); fsync there: p50 {} us, p99 {} us; agent pid {}",
            seeded.as_secs_f64(),
            seed::db_bytes(&db) as f64 / 1048576.0,
            us(fsync.p50_us),
            us(fsync.p99_us),
            agent.pid()
        );
        live.push(Live {
            session: Session {
                profiles,
                fsync,
                seed_s: seeded.as_secs_f64(),
                db_bytes_seeded: seed::db_bytes(&db),
                ..Session::default()
            },
            _dir: dir,
            db,
            agent,
            allocator: Arc::new(Mutex::new(Allocator::new(profiles, config.wrong_share))),
        });
    }
    print_header();
    for &clients in &config.clients {
        for l in &mut live {
            if crate::interrupted() {
                break;
            }
            let result = run(
                &l.agent,
                &l.db,
                &l.allocator,
                l.session.profiles,
                clients,
                config,
                &mut error_samples,
            );
            print_run(&result);
            l.session.runs.push(result);
        }
    }
    for mut l in live {
        l.session.agent_rss_kib_end = l.agent.rss_kib();
        let internal = l.agent.internal_errors();
        if internal > 0 {
            error_samples.push(format!(
                "the agent logged {internal} internal errors: {}",
                l.agent.log_tail()
            ));
        }
        l.agent.stop()?;
        l.session.db_bytes_end = seed::db_bytes(&l.db);
        sessions.push(l.session);
    }
    machine.finish();
    Ok(AgentReport {
        machine,
        config: config.clone(),
        sessions,
        error_samples,
    })
}

impl AgentReport {
    pub fn errors(&self) -> u64 {
        let runs: u64 = self
            .sessions
            .iter()
            .flat_map(|s| &s.runs)
            .map(|r| r.errors)
            .sum();
        runs + u64::from(
            self.error_samples
                .iter()
                .any(|e| e.contains("internal errors")),
        )
    }
}
