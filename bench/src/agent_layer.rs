//! Agent layer: C concurrent clients speak the protocol to the release agent holding P
//! profiles. Each correct code is for an account not yet used in the current time step (so it
//! must be accepted); a share of requests carries a wrong code (which must be rejected), spread
//! round-robin over all accounts so no account nears its lockout threshold.

use crate::agent_proc::AgentProcess;
use crate::machine::Machine;
use crate::seed;
use crate::stats::{nanos, us, Latency};
use pam_totp_proto::{Client, ClientError, ErrorCode, LoginContext, Reply, Request, SecretString};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// Hands out accounts round-robin: an account is given out at most once per time step, so
/// its correct code is always fresh.
struct Allocator {
    profiles: usize,
    cursor: usize,
    last_step: Vec<i64>,
    step: i64,
    used_in_step: usize,
    issued: u64,
    limit: u64,
    wrong_share: f64,
}

struct Job {
    index: usize,
    step: i64,
    wrong: bool,
}

enum Take {
    Job(Job),
    Count,
    Accounts,
}

impl Allocator {
    fn new(profiles: usize, wrong_share: f64) -> Self {
        Self {
            profiles,
            cursor: 0,
            last_step: vec![i64::MIN; profiles],
            step: i64::MIN,
            used_in_step: 0,
            issued: 0,
            limit: 0,
            wrong_share,
        }
    }

    fn fresh(&self, step: i64) -> usize {
        if step != self.step {
            self.profiles
        } else {
            self.profiles - self.used_in_step
        }
    }

    fn take(&mut self, step: i64) -> Take {
        if self.issued >= self.limit {
            return Take::Count;
        }
        if step != self.step {
            self.step = step;
            self.used_in_step = 0;
        }
        let index = self.cursor;
        if self.profiles == 0 || self.last_step[index] >= step {
            return Take::Accounts;
        }
        self.last_step[index] = step;
        self.cursor = (index + 1) % self.profiles;
        self.used_in_step += 1;
        let before = (self.issued as f64 * self.wrong_share).floor();
        self.issued += 1;
        let wrong = (self.issued as f64 * self.wrong_share).floor() > before;
        Take::Job(Job { index, step, wrong })
    }
}

#[derive(Default)]
struct Tally {
    samples: Vec<u64>,
    accepted: u64,
    rejected: u64,
    retried: u64,
    errors: u64,
    error_samples: Vec<String>,
}

fn context() -> LoginContext {
    LoginContext {
        service: Some("pam-totp-bench".into()),
        ..LoginContext::default()
    }
}

/// The agent closed the connection before reading the request: its cap on open connections
/// (256) was reached. Nothing was decided, so the same request may be sent again.
fn refused(error: &ClientError) -> bool {
    match error {
        ClientError::Protocol(message) => message.contains("without a reply"),
        ClientError::Unavailable { reason, .. } => {
            reason.contains("reset by peer") || reason.contains("Broken pipe")
        }
        _ => false,
    }
}

/// One request, retried while the agent closes the connection unanswered (connection cap).
fn verify(client: &Client, job: &Job, tally: &mut Tally) {
    let secret = seed::secret(job.index);
    let account = seed::account(job.index);
    let code = if job.wrong {
        seed::wrong_code(&secret, job.step)
    } else {
        seed::code(&secret, job.step).to_string()
    };
    let mut attempts = 0;
    // Latency counts from the first attempt: a refused connection is part of the wait.
    let start = Instant::now();
    loop {
        let request = Request::Authenticate {
            account: account.clone(),
            uid: Some(seed::uid(job.index)),
            code: SecretString::new(code.clone()),
            context: context(),
        };
        let result = client.call(request);
        let elapsed = start.elapsed();
        let outcome = match (&result, job.wrong) {
            (Ok(Reply::Authenticated(_)), false) => Ok(true),
            (Err(ClientError::Api(e)), true) if e.code == ErrorCode::CodeRejected => Ok(false),
            (Err(e), _) if refused(e) && attempts < 1000 => {
                attempts += 1;
                tally.retried += 1;
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            (Ok(reply), _) => Err(format!("{account}: unexpected reply {}", reply.kind())),
            (Err(e), _) => Err(format!(
                "{account}: {} code got: {e}",
                if job.wrong { "wrong" } else { "correct" }
            )),
        };
        tally.samples.push(nanos(elapsed));
        match outcome {
            Ok(true) => tally.accepted += 1,
            Ok(false) => tally.rejected += 1,
            Err(message) => {
                tally.errors += 1;
                if tally.error_samples.len() < 5 {
                    tally.error_samples.push(message);
                }
            }
        }
        return;
    }
}

/// User + system CPU time of this process (all its threads) so far.
fn own_cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Sleeps into the next time step (plus a margin) when fewer fresh accounts are left in the
/// current one than a run may need.
fn wait_for_fresh_accounts(allocator: &Mutex<Allocator>, needed: usize) {
    let step = seed::current_step();
    let fresh = allocator
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .fresh(step);
    if fresh >= needed {
        return;
    }
    let next = (step + 1) * i64::from(seed::PERIOD);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let wait = (next as f64 - now).max(0.0) + 0.2;
    eprintln!(
        "  ({fresh} accounts unused in this time step, {needed} wanted: waiting {wait:.1} s for the next step)"
    );
    let until = Instant::now() + Duration::from_secs_f64(wait);
    while Instant::now() < until && !crate::interrupted() {
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let needed = config.max_requests.min(profiles);
    wait_for_fresh_accounts(allocator, needed);
    {
        let mut a = allocator.lock().unwrap_or_else(PoisonError::into_inner);
        a.issued = 0;
        a.limit = needed as u64;
    }
    let duration = Duration::from_secs_f64(config.duration_s);
    let ended_by = Arc::new(Mutex::new(String::from("duration")));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = agent.cpu_time();
    let own_before = own_cpu_time();
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let allocator = Arc::clone(allocator);
            let stop = Arc::clone(&stop);
            let ended_by = Arc::clone(&ended_by);
            let client = Client::new(&agent.socket, Duration::from_secs(30));
            std::thread::spawn(move || {
                let mut tally = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    if start.elapsed() >= duration || crate::interrupted() {
                        break;
                    }
                    let take = allocator
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take(seed::current_step());
                    let job = match take {
                        Take::Job(job) => job,
                        Take::Count | Take::Accounts => {
                            let why = if matches!(take, Take::Count) {
                                "count"
                            } else {
                                "accounts"
                            };
                            *ended_by.lock().unwrap_or_else(PoisonError::into_inner) =
                                why.to_owned();
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                    };
                    verify(&client, &job, &mut tally);
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for handle in handles {
        match handle.join() {
            Ok(t) => {
                total.samples.extend(t.samples);
                total.accepted += t.accepted;
                total.rejected += t.rejected;
                total.retried += t.retried;
                total.errors += t.errors;
                total.error_samples.extend(t.error_samples);
            }
            Err(_) => {
                total.errors += 1;
                total.error_samples.push("a client thread panicked".into());
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = agent.cpu_time().saturating_sub(cpu_before);
    let own = own_cpu_time().saturating_sub(own_before);
    let requests = total.samples.len() as u64;
    error_samples.extend(total.error_samples.into_iter().take(5));
    let ended_by = ended_by
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    RunResult {
        profiles,
        clients,
        requests,
        accepted: total.accepted,
        rejected: total.rejected,
        retried: total.retried,
        errors: total.errors,
        elapsed_s: elapsed,
        verifications_per_s: if elapsed > 0.0 {
            requests as f64 / elapsed
        } else {
            0.0
        },
        latency: Latency::from_nanos(total.samples),
        agent_cpu_us_per_request: if requests > 0 {
            cpu.as_secs_f64() * 1e6 / requests as f64
        } else {
            0.0
        },
        client_cpu_us_per_request: if requests > 0 {
            own.as_secs_f64() * 1e6 / requests as f64
        } else {
            0.0
        },
        agent_rss_kib: agent.rss_kib(),
        db_bytes: seed::db_bytes(db),
        ended_by,
    }
}

fn print_header() {
    println!(
        "{:>9} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8} {:>9} {:>8} {:>7} {:>6}",
        "profiles",
        "clients",
        "requests",
        "verif/s",
        "p50 us",
        "p99 us",
        "max us",
        "agent cpu",
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
        "{:>9} {:>7} {:>8} {:>9.0} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8.1} {:>9.1} {:>8} {:>7} {:>6}",
        r.profiles,
        r.clients,
        r.requests,
        r.verifications_per_s,
        us(r.latency.p50_us),
        us(r.latency.p99_us),
        us(r.latency.max_us),
        us(r.agent_cpu_us_per_request),
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
        "agent layer: fsync of 4 KiB here takes p50 {} us, p99 {} us",
        us(machine.fsync.p50_us),
        us(machine.fsync.p99_us)
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
        let fsync = crate::machine::fsync_latency(&db_dir, 50);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_given_once_per_step() {
        let mut allocator = Allocator::new(3, 0.5);
        allocator.limit = 10;
        let mut got = Vec::new();
        while let Take::Job(job) = allocator.take(7) {
            got.push((job.index, job.wrong));
        }
        assert_eq!(got, vec![(0, false), (1, true), (2, false)]);
        assert_eq!(allocator.fresh(7), 0);
        assert_eq!(allocator.fresh(8), 3);
        assert!(matches!(allocator.take(8), Take::Job(Job { index: 0, .. })));
        allocator.limit = allocator.issued;
        assert!(matches!(allocator.take(8), Take::Count));
    }
}
