//! The load generator of the agent and fleet layers: C concurrent clients speak the protocol
//! to one or more agents (client i to agent i mod n), each sending `authenticate` requests.
//! Each correct code is for an account not yet used in the current time step (so it must be
//! accepted); a share of requests carries a wrong code (which must be rejected), spread
//! round-robin over all accounts so no account nears its lockout threshold.

use crate::seed;
use crate::stats::{nanos, Latency};
use pam_totp_proto::{Client, ClientError, ErrorCode, LoginContext, Reply, Request, SecretString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Hands out accounts round-robin: an account is given out at most once per time step, so
/// its correct code is always fresh. Wrong codes are every (1 / share)-th request, counted
/// over the allocator's life, and shifted by one at every pass over the accounts: an account
/// that got a wrong code gets correct ones (which clear its failures) in the next passes, even
/// when the profile count is a multiple of 1 / share and runs span whole passes.
pub struct Allocator {
    profiles: usize,
    cursor: usize,
    last_step: Vec<i64>,
    step: i64,
    used_in_step: usize,
    /// Requests in this run, and the most it may have.
    issued: u64,
    limit: u64,
    /// Requests over the allocator's life, plus one per completed pass over the accounts.
    phase: u64,
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
    pub fn new(profiles: usize, wrong_share: f64) -> Self {
        Self {
            profiles,
            cursor: 0,
            last_step: vec![i64::MIN; profiles],
            step: i64::MIN,
            used_in_step: 0,
            issued: 0,
            limit: 0,
            phase: 0,
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
        self.issued += 1;
        let before = (self.phase as f64 * self.wrong_share).floor();
        self.phase += 1;
        let wrong = (self.phase as f64 * self.wrong_share).floor() > before;
        if self.cursor == 0 {
            self.phase += 1;
        }
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
pub fn wait_for_fresh_accounts(allocator: &Mutex<Allocator>, needed: usize) {
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

/// What one run of the load generator saw, from the clients' side.
#[derive(Debug, Default)]
pub struct Measured {
    pub requests: u64,
    /// Correct codes accepted.
    pub accepted: u64,
    /// Wrong codes rejected.
    pub rejected: u64,
    /// Connections an agent closed unanswered (its connection cap); retried.
    pub retried: u64,
    /// Anything else: a correct code refused, a wrong one accepted, a transport error.
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub elapsed_s: f64,
    pub latency: Latency,
    /// The load generator's own CPU (user + system) during the run.
    pub own_cpu: Duration,
    /// What ended the run: "duration", "count", or "accounts" (every account was used in
    /// this time step).
    pub ended_by: String,
}

/// How long and how much one run may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub duration: Duration,
    /// Most requests (also capped by the profiles: one login per account and time step).
    pub max_requests: usize,
}

/// One run: `clients` threads, client i sending to `sockets[i % sockets.len()]`, until the
/// duration, the request count or the fresh accounts run out. Waits for a fresh time step
/// first when too few accounts are unused in this one.
pub fn drive(
    sockets: &[PathBuf],
    allocator: &Arc<Mutex<Allocator>>,
    profiles: usize,
    clients: usize,
    limits: Limits,
) -> Measured {
    let needed = limits.max_requests.min(profiles);
    wait_for_fresh_accounts(allocator, needed);
    {
        let mut a = allocator.lock().unwrap_or_else(PoisonError::into_inner);
        a.issued = 0;
        a.limit = needed as u64;
    }
    let duration = limits.duration;
    let ended_by = Arc::new(Mutex::new(String::from("duration")));
    let stop = Arc::new(AtomicBool::new(false));
    let own_before = own_cpu_time();
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .filter_map(|i| sockets.get(i % sockets.len().max(1)))
        .map(|socket| {
            let allocator = Arc::clone(allocator);
            let stop = Arc::clone(&stop);
            let ended_by = Arc::clone(&ended_by);
            let client = Client::new(socket, Duration::from_secs(30));
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
    let elapsed_s = start.elapsed().as_secs_f64();
    let own_cpu = own_cpu_time().saturating_sub(own_before);
    let ended_by = ended_by
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Measured {
        requests: total.samples.len() as u64,
        accepted: total.accepted,
        rejected: total.rejected,
        retried: total.retried,
        errors: total.errors,
        error_samples: total.error_samples.into_iter().take(5).collect(),
        elapsed_s,
        latency: Latency::from_nanos(total.samples),
        own_cpu,
        ended_by,
    }
}

/// Microseconds of `cpu` per request (0 without requests).
pub fn per_request(cpu: Duration, requests: u64) -> f64 {
    if requests > 0 {
        cpu.as_secs_f64() * 1e6 / requests as f64
    } else {
        0.0
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

    #[test]
    fn no_account_gets_wrong_codes_in_consecutive_passes() {
        // 1000 accounts, every tenth request wrong, runs of one whole pass each.
        let mut allocator = Allocator::new(1000, 0.1);
        let mut wrong_in_last_pass = vec![false; 1000];
        for pass in 0..20 {
            allocator.issued = 0;
            allocator.limit = 1000;
            let mut wrong_now = vec![false; 1000];
            let mut wrong_count = 0;
            while let Take::Job(job) = allocator.take(100 + pass) {
                wrong_now[job.index] = job.wrong;
                wrong_count += usize::from(job.wrong);
            }
            assert!(
                (99..=101).contains(&wrong_count),
                "pass {pass}: {wrong_count}"
            );
            assert!(!wrong_now
                .iter()
                .zip(&wrong_in_last_pass)
                .any(|(a, b)| *a && *b));
            wrong_in_last_pass = wrong_now;
        }
    }
}
