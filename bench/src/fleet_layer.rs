//! Fleet layer: the agent layer's verify workload (`load.rs`) on the fleet store. For each
//! profile count, one SQLite agent (the single-host store, as in the agent layer) and a
//! PostgreSQL cluster with two agents on it (distinct `--host-name`s and sockets), seeded
//! with the same profiles. Each client count is measured through the SQLite agent, through
//! one agent on PostgreSQL, and through both (clients split evenly between them), taking
//! turns, so a noisy moment on the shared machine weighs on every store alike.

use crate::agent_layer::RunResult;
use crate::agent_proc::AgentProcess;
use crate::load::{self, Allocator, Limits};
use crate::machine::Machine;
use crate::pg_cluster::BenchCluster;
use crate::procstat::{self, Usage};
use crate::seed;
use crate::stats::us;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Concurrent requests that open a fleet agent's connections before it is measured (its pool
/// holds at most 16).
const WARM_UP_CLIENTS: usize = 32;

/// A store and how many agents the clients reach it through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Setup {
    /// One agent on its own SQLite database (the single-host store).
    Sqlite,
    /// One agent on PostgreSQL.
    Postgres1,
    /// Two agents on the same PostgreSQL, the clients split evenly between them.
    Postgres2,
}

impl Setup {
    pub fn store(self) -> &'static str {
        match self {
            Setup::Sqlite => "sqlite",
            Setup::Postgres1 | Setup::Postgres2 => "postgresql",
        }
    }

    pub fn agents(self) -> usize {
        match self {
            Setup::Sqlite | Setup::Postgres1 => 1,
            Setup::Postgres2 => 2,
        }
    }

    pub fn label(self) -> String {
        let agents = self.agents();
        let noun = if agents == 1 { "agent" } else { "agents" };
        format!("{}, {agents} {noun}", self.store())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetConfig {
    pub profiles: Vec<usize>,
    pub clients: Vec<usize>,
    pub setups: Vec<Setup>,
    /// Longest run, seconds.
    pub duration_s: f64,
    /// Most requests in one run (also capped by the profiles: one login per account and step).
    pub max_requests: usize,
    pub wrong_share: f64,
    pub agent_binary: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetRun {
    pub setup: Setup,
    pub store: String,
    pub agents: usize,
    /// The run as the agent layer reports it; agent CPU and RSS are summed over the agents,
    /// the database size is PostgreSQL's `pg_database_size` (without WAL) for PostgreSQL.
    #[serde(flatten)]
    pub run: RunResult,
    /// CPU of the PostgreSQL server processes per request (0 for SQLite).
    pub db_cpu_us_per_request: f64,
    /// Share of the machine's CPU time (all cores) that was busy during the run, from
    /// `/proc/stat`: near 1 means the run was CPU-bound.
    pub machine_busy: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FleetSession {
    pub profiles: usize,
    pub seed_sqlite_s: f64,
    pub seed_postgres_s: f64,
    pub postgres_bytes_seeded: u64,
    pub postgres_version: String,
    pub runs: Vec<FleetRun>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetReport {
    pub machine: Machine,
    pub config: FleetConfig,
    pub sessions: Vec<FleetSession>,
    pub error_samples: Vec<String>,
}

impl FleetReport {
    pub fn errors(&self) -> u64 {
        let runs: u64 = self
            .sessions
            .iter()
            .flat_map(|s| &s.runs)
            .map(|r| r.run.errors)
            .sum();
        runs + u64::from(
            self.error_samples
                .iter()
                .any(|e| e.contains("internal errors")),
        )
    }
}

/// One profile count's world: the SQLite agent, the cluster and its two agents, and the
/// account allocators (the PostgreSQL runs share one: both setups use the same profiles).
struct Deployment {
    session: FleetSession,
    sqlite: Option<(PathBuf, AgentProcess)>,
    // Dropped in this order: the agents, then the cluster they use, then the directory.
    fleet_agents: Vec<AgentProcess>,
    cluster: Option<BenchCluster>,
    sqlite_accounts: Arc<Mutex<Allocator>>,
    fleet_accounts: Arc<Mutex<Allocator>>,
    _dir: tempfile::TempDir,
}

fn private_dir(path: &Path) -> Result<(), String> {
    std::fs::create_dir(path).map_err(|e| format!("create {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

impl Deployment {
    fn new(config: &FleetConfig, base: &Path, profiles: usize) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("pam-totp-bench-fleet.")
            .tempdir_in(base)
            .map_err(|e| format!("temp dir in {}: {e}", base.display()))?;
        let mut session = FleetSession {
            profiles,
            ..FleetSession::default()
        };
        let sqlite = if config.setups.contains(&Setup::Sqlite) {
            let root = dir.path().join("sqlite");
            private_dir(&root)?;
            let db_dir = root.join("db");
            private_dir(&db_dir)?;
            let db = db_dir.join("profiles.sqlite3");
            session.seed_sqlite_s = seed::seed(&db, profiles)?.as_secs_f64();
            let agent = AgentProcess::start(&config.agent_binary, &root, &db)?;
            Some((db, agent))
        } else {
            None
        };
        let agents = config
            .setups
            .iter()
            .filter(|s| s.store() == "postgresql")
            .map(|s| s.agents())
            .max()
            .unwrap_or(0);
        let mut cluster = None;
        let mut fleet_agents = Vec::new();
        if agents > 0 {
            let secrets = dir.path().join("secrets");
            private_dir(&secrets)?;
            let pg = BenchCluster::start(base, &secrets)?;
            session.postgres_version = pg.version();
            session.seed_postgres_s = seed::seed_postgres(&pg.store()?, profiles)?.as_secs_f64();
            session.postgres_bytes_seeded = pg.db_bytes();
            for index in 0..agents {
                let host = format!("bench-host-{}", char::from(b'a' + index as u8));
                let root = dir.path().join(&host);
                private_dir(&root)?;
                let agent =
                    AgentProcess::start_fleet(&config.agent_binary, &root, &pg.access(&host))?;
                agent.warm_up(WARM_UP_CLIENTS);
                fleet_agents.push(agent);
            }
            cluster = Some(pg);
        }
        eprintln!(
            "  {profiles} profiles: seeded SQLite in {:.1} s, PostgreSQL {} in {:.1} s ({:.1} MiB)",
            session.seed_sqlite_s,
            session.postgres_version,
            session.seed_postgres_s,
            session.postgres_bytes_seeded as f64 / 1048576.0
        );
        Ok(Self {
            session,
            sqlite,
            cluster,
            fleet_agents,
            sqlite_accounts: Arc::new(Mutex::new(Allocator::new(profiles, config.wrong_share))),
            fleet_accounts: Arc::new(Mutex::new(Allocator::new(profiles, config.wrong_share))),
            _dir: dir,
        })
    }

    /// The agents a setup's clients reach, and the accounts it hands out.
    fn route(&self, setup: Setup) -> Option<(Vec<&AgentProcess>, &Arc<Mutex<Allocator>>)> {
        match setup {
            Setup::Sqlite => self
                .sqlite
                .as_ref()
                .map(|(_, agent)| (vec![agent], &self.sqlite_accounts)),
            Setup::Postgres1 | Setup::Postgres2 => {
                let agents: Vec<&AgentProcess> =
                    self.fleet_agents.iter().take(setup.agents()).collect();
                (agents.len() == setup.agents()).then_some((agents, &self.fleet_accounts))
            }
        }
    }

    fn run(
        &self,
        setup: Setup,
        clients: usize,
        limits: Limits,
        error_samples: &mut Vec<String>,
    ) -> Option<FleetRun> {
        let (agents, allocator) = self.route(setup)?;
        let sockets: Vec<PathBuf> = agents.iter().map(|a| a.socket.clone()).collect();
        let agent_usage = || agents.iter().map(|a| a.usage()).sum::<Usage>();
        let db_cpu = || {
            self.cluster
                .as_ref()
                .filter(|_| setup != Setup::Sqlite)
                .map_or(Duration::ZERO, BenchCluster::server_cpu)
        };
        let profiles = self.session.profiles;
        // The allocator may wait for a fresh time step: measure the machine after that.
        load::wait_for_fresh_accounts(allocator, limits.max_requests.min(profiles));
        let (agent_before, db_before, machine_before) =
            (agent_usage(), db_cpu(), procstat::machine_cpu());
        let mut measured = load::drive(&sockets, allocator, profiles, clients, limits);
        let machine_after = procstat::machine_cpu();
        let (agent_used, db_used) = (
            agent_usage().since(agent_before),
            db_cpu().saturating_sub(db_before),
        );
        error_samples.append(&mut measured.error_samples);
        let db_bytes = match (setup, &self.sqlite, &self.cluster) {
            (Setup::Sqlite, Some((db, _)), _) => seed::db_bytes(db),
            (_, _, Some(pg)) => pg.db_bytes(),
            _ => 0,
        };
        let rss = agents.iter().map(|a| a.rss_kib()).sum();
        let run = RunResult::new(profiles, clients, &measured, agent_used, rss, db_bytes);
        let all = machine_after.1.saturating_sub(machine_before.1);
        let busy = machine_after.0.saturating_sub(machine_before.0);
        Some(FleetRun {
            setup,
            store: setup.store().to_owned(),
            agents: setup.agents(),
            db_cpu_us_per_request: load::per_request(db_used, run.requests),
            machine_busy: if all > Duration::ZERO {
                busy.as_secs_f64() / all.as_secs_f64()
            } else {
                0.0
            },
            run,
        })
    }

    /// Stops the agents (reporting internal errors in their logs) and the cluster.
    fn finish(self, error_samples: &mut Vec<String>) -> Result<FleetSession, String> {
        let agents = self
            .sqlite
            .into_iter()
            .map(|(_, a)| a)
            .chain(self.fleet_agents);
        for agent in agents {
            let internal = agent.internal_errors();
            if internal > 0 {
                error_samples.push(format!(
                    "an agent logged {internal} internal errors: {}",
                    agent.log_tail()
                ));
            }
            agent.stop()?;
        }
        drop(self.cluster);
        Ok(self.session)
    }
}

fn print_header() {
    println!(
        "{:>9} {:>22} {:>7} {:>8} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>6} {:>8} {:>7} {:>6}",
        "profiles",
        "store",
        "clients",
        "requests",
        "logins/s",
        "p50 us",
        "p99 us",
        "agent cpu",
        "db cpu",
        "bench cpu",
        "busy",
        "ended",
        "refused",
        "errors"
    );
}

fn print_run(r: &FleetRun) {
    println!(
        "{:>9} {:>22} {:>7} {:>8} {:>9.0} {:>9} {:>9} {:>10} {:>10} {:>10} {:>5.0}% {:>8} {:>7} {:>6}",
        r.run.profiles,
        r.setup.label(),
        r.run.clients,
        r.run.requests,
        r.run.verifications_per_s,
        us(r.run.latency.p50_us),
        us(r.run.latency.p99_us),
        us(r.run.agent_cpu_us_per_request),
        us(r.db_cpu_us_per_request),
        us(r.run.client_cpu_us_per_request),
        r.machine_busy * 100.0,
        r.run.ended_by,
        r.run.retried,
        r.run.errors
    );
}

/// Runs every setup against every client count, for every profile count; returns the report
/// (errors counted in it: the caller fails on any).
pub fn bench(config: &FleetConfig, base: &Path) -> Result<FleetReport, String> {
    let mut machine = Machine::probe(base);
    println!(
        "\n== fleet layer: logins through the SQLite store and the PostgreSQL fleet store ({}) ==",
        config.agent_binary.display()
    );
    let limits = Limits {
        duration: Duration::from_secs_f64(config.duration_s),
        max_requests: config.max_requests,
    };
    let mut deployments = Vec::new();
    for &profiles in &config.profiles {
        if crate::interrupted() {
            break;
        }
        deployments.push(Deployment::new(config, base, profiles)?);
    }
    let mut error_samples = Vec::new();
    print_header();
    for &clients in &config.clients {
        for deployment in &mut deployments {
            for &setup in &config.setups {
                if crate::interrupted() {
                    break;
                }
                if let Some(run) = deployment.run(setup, clients, limits, &mut error_samples) {
                    print_run(&run);
                    deployment.session.runs.push(run);
                }
            }
        }
    }
    let mut sessions = Vec::new();
    for deployment in deployments {
        sessions.push(deployment.finish(&mut error_samples)?);
    }
    machine.finish();
    Ok(FleetReport {
        machine,
        config: config.clone(),
        sessions,
        error_samples,
    })
}
