//! PAM layer: real libpam, in process, several threads; N distinct accounts each log in once
//! per module. The modules run side by side in one invocation, on the same accounts and the
//! same secrets: pam_permit (libpam's own cost, the floor), pam_totp, pam_google_authenticator
//! (one secret file per account with DISALLOW_REUSE and RATE_LIMIT) and pam_oath (one
//! usersfile).
//!
//! The one-thread pass runs twice, on fresh setups: once with every module's shared object
//! kept loaded by the driver (the per-login work; the targets' figures), once with nothing kept
//! loaded, so libpam dlopens the stack's modules (and the `other` fallback stack's) at every
//! pam_start and dlcloses them at pam_end, which is what a process that logs in once (an sshd
//! session, a sudo run) pays. One difference remains: this driver is a Rust program, so
//! libgcc_s.so.1 is always loaded here, while C hosts (sshd, su, sudo) load it only for a
//! module that needs it.

use crate::accounts::BenchAccounts;
use crate::agent_proc::AgentProcess;
use crate::machine::Machine;
use crate::pam_ffi;
use crate::seed;
use crate::stats::{nanos, us, Latency};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub const MODULES: [&str; 4] = [
    "pam_permit",
    "pam_totp",
    "pam_google_authenticator",
    "pam_oath",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PamConfig {
    pub accounts: Vec<usize>,
    /// Login threads, one pass each. With 1 thread latency is the module's own cost (the
    /// figure the targets use); more threads show logins/s under concurrency.
    pub threads: Vec<usize>,
    pub agent_binary: PathBuf,
    pub pam_totp_module: PathBuf,
    /// Each module's PAM line, with this run's paths.
    pub stacks: Vec<String>,
    /// Where syslog() went: "system" (/dev/log existed) or "bench sink" (this run bound a
    /// discarding /dev/log, since without one glibc writes every message to the console).
    pub syslog: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModuleResult {
    pub module: String,
    pub accounts: usize,
    pub threads: usize,
    pub logins: usize,
    pub failures: usize,
    pub elapsed_s: f64,
    pub logins_per_s: f64,
    pub latency: Latency,
    /// Latency above pam_permit's (the floor) at the same percentile.
    pub cost_p50_us: f64,
    pub cost_p99_us: f64,
    pub cost_mean_us: f64,
    /// Size of the module's state (agent database, secret files, usersfile) after the run.
    pub state_bytes: u64,
    /// Whether failures count as errors: always for pam_permit and pam_totp; for the
    /// incumbents only with one thread (pam_oath refuses a login while another holds its
    /// lock file, which is its behaviour, not a bench error).
    pub failures_are_errors: bool,
}

/// dlopen + dlclose of a module's shared object: paid once per process that loads it (each
/// sshd session or sudo run), on top of the per-login cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadResult {
    pub module: String,
    pub path: PathBuf,
    pub latency: Latency,
}

/// One NSS lookup (getpwnam_r) of a bench account, timed for each account once: a cost
/// pam_totp.so and pam_google_authenticator share at every login, part of both modules' cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LookupResult {
    pub accounts: usize,
    pub latency: Latency,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PamReport {
    pub machine: Machine,
    pub config: PamConfig,
    /// The module-kept-loaded passes (the targets' figures).
    pub results: Vec<ModuleResult>,
    /// One thread, nothing kept loaded: libpam loads every module of the stack (and of the
    /// `other` fallback stack) at each pam_start and unloads it at pam_end, as in an sshd
    /// session or a sudo run. Cost is above pam_permit's in the same pass, whose latency
    /// includes loading the fallback stack.
    #[serde(default)]
    pub load_per_login: Vec<ModuleResult>,
    pub load: Vec<LoadResult>,
    #[serde(default)]
    pub nss_lookup: Vec<LookupResult>,
    pub error_samples: Vec<String>,
}

/// The distribution's PAM module directory (where pam_permit.so is).
fn module_dir() -> Result<PathBuf, String> {
    [
        "/lib/x86_64-linux-gnu/security",
        "/usr/lib/x86_64-linux-gnu/security",
        "/lib/aarch64-linux-gnu/security",
        "/usr/lib/aarch64-linux-gnu/security",
        "/usr/lib64/security",
        "/lib64/security",
        "/usr/lib/security",
        "/lib/security",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|dir| dir.join("pam_permit.so").exists())
    .ok_or_else(|| "cannot find the PAM module directory (pam_permit.so)".to_owned())
}

/// Modules libpam loads at every pam_start besides the service's own: it always reads
/// /etc/pam.d/other (and the files that includes) as the fallback stack.
fn fallback_modules(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<String> = vec!["pam_permit.so".into(), "pam_deny.so".into()];
    let files = std::fs::read_dir("/etc/pam.d")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n == "other" || n.starts_with("common-"))
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            for token in line.split_whitespace() {
                let name = token.rsplit('/').next().unwrap_or(token);
                if name.starts_with("pam_")
                    && name.ends_with(".so")
                    && !names.iter().any(|n| n == name)
                {
                    names.push(name.to_owned());
                }
            }
        }
    }
    names
        .into_iter()
        .map(|n| dir.join(n))
        .filter(|p| p.exists())
        .collect()
}

/// The shared object of each module in [`MODULES`], in that order.
fn module_paths(config: &PamConfig) -> Result<Vec<PathBuf>, String> {
    let dir = module_dir()?;
    let paths = vec![
        dir.join("pam_permit.so"),
        config.pam_totp_module.clone(),
        dir.join("pam_google_authenticator.so"),
        dir.join("pam_oath.so"),
    ];
    for path in &paths {
        if !path.exists() {
            return Err(format!(
                "{} is missing (scripts/bench.sh installs libpam-google-authenticator and \
                 libpam-oath, and builds pam_totp.so)",
                path.display()
            ));
        }
    }
    Ok(paths)
}

impl PamReport {
    pub fn errors(&self) -> usize {
        self.results
            .iter()
            .chain(&self.load_per_login)
            .filter(|r| r.failures_are_errors)
            .map(|r| r.failures)
            .sum()
    }
}

/// /etc/pam.d service files of this run, removed when dropped (also on errors).
struct Services {
    files: Vec<PathBuf>,
}

impl Services {
    fn create(&mut self, name: &str, line: &str) -> Result<CString, String> {
        let path = PathBuf::from("/etc/pam.d").join(name);
        // All four types, as sshd's and sudo's files have, so libpam reads no "other" file.
        let text = format!(
            "# pam-totp-bench (temporary)\n{line}\naccount required pam_permit.so\n\
             password required pam_deny.so\nsession required pam_permit.so\n"
        );
        std::fs::write(&path, text)
            .map_err(|e| format!("write {}: {e} (run as root)", path.display()))?;
        self.files.push(path);
        CString::new(name).map_err(|e| e.to_string())
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}

fn write_private(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The group of the bench accounts (`nogroup`, as `BenchAccounts` creates them).
const NOGROUP: u32 = 65534;

/// google-authenticator's per-account file: the base32 secret, then its options.
fn google_file(index: usize) -> String {
    let secret = base32::encode(
        base32::Alphabet::Rfc4648 { padding: false },
        &seed::secret(index),
    );
    format!("{secret}\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n")
}

/// pam_oath's usersfile: one `HOTP/T30 user - hexsecret` line per account.
fn oath_file(accounts: usize) -> String {
    let mut text = String::with_capacity(accounts * 64);
    for index in 0..accounts {
        let _ = writeln!(
            text,
            "HOTP/T30\t{}\t-\t{}",
            seed::account(index),
            hex::encode(seed::secret(index))
        );
    }
    text
}

/// One login of bench account `index` on `service`; returns its latency in nanoseconds and
/// counts (and samples) a failure.
fn login_once(
    service: &CString,
    index: usize,
    failures: &mut usize,
    errors: &Mutex<Vec<String>>,
) -> u64 {
    let Ok(user) = CString::new(seed::account(index)) else {
        *failures += 1;
        return 0;
    };
    let secret = seed::secret(index);
    let begin = Instant::now();
    let result = pam_ffi::login(service, &user, &secret);
    let elapsed = nanos(begin.elapsed());
    if let Err(message) = result {
        *failures += 1;
        let mut errors = errors.lock().unwrap_or_else(PoisonError::into_inner);
        if errors.len() < 10 {
            errors.push(format!(
                "{} {}: {message}",
                service.to_string_lossy(),
                seed::account(index)
            ));
        }
    }
    elapsed
}

/// Logs every account in once on `service`, from `threads` threads.
fn drive(
    service: &CString,
    accounts: usize,
    threads: usize,
    errors: &Arc<Mutex<Vec<String>>>,
) -> (Vec<u64>, usize, f64) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let next = Arc::clone(&next);
            let service = service.clone();
            let errors = Arc::clone(errors);
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                let mut failures = 0;
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= accounts || crate::interrupted() {
                        break;
                    }
                    samples.push(login_once(&service, index, &mut failures, &errors));
                }
                (samples, failures)
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(accounts);
    let mut failures = 0;
    for handle in handles {
        match handle.join() {
            Ok((s, f)) => {
                samples.extend(s);
                failures += f;
            }
            Err(_) => failures += 1,
        }
    }
    (samples, failures, start.elapsed().as_secs_f64())
}

fn print_header() {
    println!(
        "{:>8} {:>7} {:<25} {:>8} {:>9} {:>9} {:>9} {:>11} {:>11} {:>10} {:>8}",
        "accounts",
        "threads",
        "module",
        "logins/s",
        "p50 us",
        "p99 us",
        "mean us",
        "cost p50 us",
        "cost p99 us",
        "state KiB",
        "failures"
    );
}

fn print_result(r: &ModuleResult) {
    println!(
        "{:>8} {:>7} {:<25} {:>8.0} {:>9} {:>9} {:>9} {:>11} {:>11} {:>10.0} {:>8}",
        r.accounts,
        r.threads,
        r.module,
        r.logins_per_s,
        us(r.latency.p50_us),
        us(r.latency.p99_us),
        us(r.latency.mean_us),
        us(r.cost_p50_us),
        us(r.cost_p99_us),
        r.state_bytes as f64 / 1024.0,
        r.failures
    );
}

/// One account count's world: an agent seeded with the accounts, google-authenticator's
/// secret files, pam_oath's usersfile, and a PAM service per module. Removed when dropped.
struct Setup {
    accounts: usize,
    db: PathBuf,
    google_dir: PathBuf,
    oath: PathBuf,
    agent: Option<AgentProcess>,
    services: Services,
    /// Service names, in [`MODULES`] order.
    names: Vec<CString>,
    lines: Vec<String>,
    _dir: tempfile::TempDir,
    accounts_in_nss: BenchAccounts,
}

impl Setup {
    fn new(config: &PamConfig, base: &Path, accounts: usize, pass: &str) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("pam-totp-bench-pam.")
            .tempdir_in(base)
            .map_err(|e| format!("temp dir in {}: {e}", base.display()))?;
        let root = dir.path().to_owned();
        let bench_accounts = BenchAccounts::create(accounts)?;
        // pam_totp: the agent, seeded with the same accounts and secrets.
        let db_dir = root.join("db");
        std::fs::create_dir(&db_dir).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&db_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        let db = db_dir.join("profiles.sqlite3");
        seed::seed(&db, accounts)?;
        let agent = AgentProcess::start(&config.agent_binary, &root, &db)?;
        // google-authenticator as its README sets it up: each account's secret file owned by
        // the account (0400, in a 0700 directory of its own, where it writes the file's next
        // version), so the module looks the user up (getpwnam_r) and reads and writes as the
        // user, as pam_totp.so too must look the user up. (`user=root` would spare it the
        // lookup; the figures before 2026-12-07 were taken so.) Root's directories above are
        // 0711: traversable, not listable.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| e.to_string())?;
        let google_dir = root.join("google");
        std::fs::create_dir(&google_dir).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&google_dir, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| e.to_string())?;
        for index in 0..accounts {
            let home = google_dir.join(seed::account(index));
            std::fs::create_dir(&home).map_err(|e| e.to_string())?;
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| e.to_string())?;
            let file = home.join("secret");
            write_private(&file, &google_file(index), 0o400)?;
            for path in [&home, &file] {
                std::os::unix::fs::chown(path, Some(seed::uid(index)), Some(NOGROUP))
                    .map_err(|e| format!("chown {}: {e}", path.display()))?;
            }
        }
        // pam_oath: one usersfile.
        let oath = root.join("users.oath");
        write_private(&oath, &oath_file(accounts), 0o600)?;
        let lines = vec![
            "auth required pam_permit.so".to_owned(),
            format!(
                "auth required {} socket={}",
                config.pam_totp_module.display(),
                agent.socket.display()
            ),
            format!(
                "auth required pam_google_authenticator.so secret={}/${{USER}}/secret",
                google_dir.display()
            ),
            format!(
                "auth required pam_oath.so usersfile={} window=1 digits=6",
                oath.display()
            ),
        ];
        let mut services = Services { files: Vec::new() };
        let mut names = Vec::new();
        let tag = format!("pam-totp-bench-{}-{pass}-{accounts}", std::process::id());
        for (module, line) in MODULES.iter().zip(&lines) {
            names.push(services.create(&format!("{tag}-{module}"), line)?);
        }
        Ok(Self {
            accounts,
            db,
            google_dir,
            oath,
            agent: Some(agent),
            services,
            names,
            lines,
            _dir: dir,
            accounts_in_nss: bench_accounts,
        })
    }

    fn state_bytes(&self, module: &str) -> u64 {
        match module {
            "pam_totp" => seed::db_bytes(&self.db),
            "pam_google_authenticator" => std::fs::read_dir(&self.google_dir)
                .map(|homes| {
                    homes
                        .filter_map(Result::ok)
                        .map(|home| dir_bytes(&home.path()))
                        .sum()
                })
                .unwrap_or(0),
            "pam_oath" => std::fs::metadata(&self.oath).map(|m| m.len()).unwrap_or(0),
            _ => 0,
        }
    }

    /// Stops the agent (checking its log) and removes the PAM services.
    fn finish(mut self, errors: &Mutex<Vec<String>>) -> Result<(), String> {
        self.services.files.iter().for_each(|f| {
            let _ = std::fs::remove_file(f);
        });
        self.services.files.clear();
        if let Some(agent) = self.agent.take() {
            let internal = agent.internal_errors();
            if internal > 0 {
                errors
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(format!("the agent logged {internal} internal errors"));
            }
            agent.stop()?;
        }
        Ok(())
    }
}

/// Per module: latency samples (ns), failed logins, seconds spent.
type Measured = Vec<(Vec<u64>, usize, f64)>;

/// One thread: every account count and every module take turns, account by account (the
/// first module of each turn rotating), so a disk that is slow for a while (fsync latency
/// here varies with other writers) weighs on every module and every size alike. The shared
/// objects in `keep` stay loaded for the pass (libpam's own dlopen at each pam_start then only
/// takes a reference); with `keep` empty, libpam loads and unloads every module at each login.
fn measure_interleaved(
    setups: &[Setup],
    keep: &[PathBuf],
    errors: &Mutex<Vec<String>>,
) -> Result<Vec<Measured>, String> {
    single_threaded()?;
    let pinned = pam_ffi::Pinned::new(keep)?;
    let mut measured: Vec<Measured> = setups
        .iter()
        .map(|s| vec![(Vec::with_capacity(s.accounts), 0, 0.0); MODULES.len()])
        .collect();
    let most = setups.iter().map(|s| s.accounts).max().unwrap_or(0);
    for step in 0..most {
        if crate::interrupted() {
            break;
        }
        for (setup, per_module) in setups.iter().zip(measured.iter_mut()) {
            // Each size's accounts are spread evenly over the whole pass.
            let first = step * setup.accounts / most;
            let end = (step + 1) * setup.accounts / most;
            for index in first..end {
                for turn in 0..MODULES.len() {
                    let m = (index + turn) % MODULES.len();
                    let (samples, failures, elapsed) = &mut per_module[m];
                    let nanos = login_once(&setup.names[m], index, failures, errors);
                    *elapsed += nanos as f64 / 1e9;
                    samples.push(nanos);
                }
            }
        }
    }
    drop(pinned);
    Ok(measured)
}

/// The one-thread pass runs in a single-threaded process, as sshd and sudo do (why it matters:
/// `syslog_sink`'s module comment).
fn single_threaded() -> Result<(), String> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(|e| format!("read /proc/self/task: {e}"))?
        .count();
    if threads == 1 {
        Ok(())
    } else {
        Err(format!(
            "the one-thread PAM pass needs a single-threaded process, this one has {threads} threads"
        ))
    }
}

/// The one-thread pass over every account count: fresh setups (agent database, secret files,
/// usersfile), so no module refuses a code as already used in an earlier pass.
fn one_thread_pass(
    config: &PamConfig,
    base: &Path,
    keep: &[PathBuf],
    pass: &str,
    errors: &Mutex<Vec<String>>,
    stacks: &mut Vec<String>,
    lookups: &mut Vec<LookupResult>,
) -> Result<Vec<ModuleResult>, String> {
    let mut setups = Vec::new();
    for &accounts in &config.accounts {
        let setup = Setup::new(config, base, accounts, pass)?;
        lookups.push(LookupResult {
            accounts,
            latency: setup.accounts_in_nss.lookup_latency()?,
        });
        setups.push(setup);
    }
    let measured = measure_interleaved(&setups, keep, errors)?;
    let mut results = Vec::new();
    for (setup, m) in setups.into_iter().zip(measured) {
        results.extend(results_of(&setup, 1, m));
        if stacks.is_empty() {
            stacks.clone_from(&setup.lines);
        }
        setup.finish(errors)?;
    }
    Ok(results)
}

/// Several threads: one module after the other, each on every account.
fn measure_concurrent(
    setup: &Setup,
    threads: usize,
    paths: &[PathBuf],
    fallback: &[PathBuf],
    errors: &Arc<Mutex<Vec<String>>>,
) -> Result<Measured, String> {
    let mut measured = Vec::new();
    for (index, (module, path)) in MODULES.iter().zip(paths).enumerate() {
        let mut keep = fallback.to_vec();
        keep.push(path.clone());
        let pinned = pam_ffi::Pinned::new(&keep)?;
        let sink = if matches!(*module, "pam_permit" | "pam_totp") {
            Arc::clone(errors)
        } else {
            Arc::new(Mutex::new(Vec::new()))
        };
        measured.push(drive(&setup.names[index], setup.accounts, threads, &sink));
        drop(pinned);
        // Let the disk settle between modules, so one module's writeback is not billed to
        // the next.
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(measured)
}

fn results_of(setup: &Setup, threads: usize, measured: Measured) -> Vec<ModuleResult> {
    let mut results: Vec<ModuleResult> = Vec::new();
    for (module, (samples, failures, elapsed)) in MODULES.iter().zip(measured) {
        let logins = samples.len();
        let latency = Latency::from_nanos(samples);
        let floor = results.first().map(|r| r.latency).unwrap_or(latency);
        let result = ModuleResult {
            module: (*module).to_owned(),
            accounts: setup.accounts,
            threads,
            logins,
            failures,
            elapsed_s: elapsed,
            logins_per_s: if elapsed > 0.0 {
                logins.saturating_sub(failures) as f64 / elapsed
            } else {
                0.0
            },
            cost_p50_us: latency.p50_us - floor.p50_us,
            cost_p99_us: latency.p99_us - floor.p99_us,
            cost_mean_us: latency.mean_us - floor.mean_us,
            latency,
            state_bytes: setup.state_bytes(module),
            failures_are_errors: threads <= 1 || matches!(*module, "pam_permit" | "pam_totp"),
        };
        print_result(&result);
        results.push(result);
    }
    results
}

/// The one-thread cost at p50 of every module in both passes, and pam_totp's as a share of
/// google-authenticator's (issue 13: at most half, in both passes).
fn print_side_by_side(kept: &[ModuleResult], per_login: &[ModuleResult]) {
    let cost = |results: &[ModuleResult], accounts: usize, module: &str| {
        results
            .iter()
            .find(|r| r.threads == 1 && r.accounts == accounts && r.module == module)
            .map(|r| r.cost_p50_us)
    };
    println!(
        "\none thread, cost p50 us above pam_permit: modules kept loaded / loaded at every pam_start"
    );
    let mut accounts: Vec<usize> = per_login.iter().map(|r| r.accounts).collect();
    accounts.dedup();
    for n in accounts {
        let mut line = format!("{n:>8} accounts:");
        for module in &MODULES[1..] {
            let shown = |c: Option<f64>| c.map_or("-".to_owned(), us);
            let _ = write!(
                line,
                "  {module} {} / {}",
                shown(cost(kept, n, module)),
                shown(cost(per_login, n, module))
            );
        }
        let ratio = |results: &[ModuleResult]| match (
            cost(results, n, "pam_totp"),
            cost(results, n, "pam_google_authenticator"),
        ) {
            (Some(ours), Some(google)) if google > 0.0 => format!("{:.2}x", ours / google),
            _ => "-".to_owned(),
        };
        let _ = write!(
            line,
            "  | pam_totp/google {} / {}",
            ratio(kept),
            ratio(per_login)
        );
        println!("{line}");
    }
}

fn print_latencies(title: &str, rows: impl Iterator<Item = (String, Latency)>) {
    println!("\n{title}:");
    for (name, latency) in rows {
        println!(
            "  {name:<25} p50 {:>7} us  p99 {:>7} us",
            us(latency.p50_us),
            us(latency.p99_us)
        );
    }
}

pub fn bench(config: &PamConfig, base: &Path) -> Result<PamReport, String> {
    let mut machine = Machine::probe(base);
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut stacks = Vec::new();
    let mut results = Vec::new();
    let mut load_per_login = Vec::new();
    let mut nss_lookup = Vec::new();
    let paths = module_paths(config)?;
    let fallback = fallback_modules(&module_dir()?);
    let mut load = Vec::new();
    for (module, path) in MODULES.iter().zip(&paths) {
        let samples = pam_ffi::load_time(path, 50)?;
        load.push(LoadResult {
            module: (*module).to_owned(),
            path: path.clone(),
            latency: Latency::from_nanos(samples),
        });
    }
    let sink = crate::syslog_sink::SyslogSink::start();
    let syslog = if sink.is_some() {
        "bench sink, a separate process"
    } else {
        "system"
    };
    println!(
        "\n== PAM layer: pam_start + pam_authenticate + pam_end, each account once per module \
         (syslog: {syslog}) =="
    );
    print_header();
    for &threads in &config.threads {
        if crate::interrupted() {
            break;
        }
        if threads <= 1 {
            let mut keep = fallback.clone();
            keep.extend(paths.iter().cloned());
            println!("-- one thread, modules kept loaded --");
            results.extend(one_thread_pass(
                config,
                base,
                &keep,
                "t1",
                &errors,
                &mut stacks,
                &mut nss_lookup,
            )?);
            if crate::interrupted() {
                break;
            }
            println!("-- one thread, modules loaded by libpam at every pam_start --");
            load_per_login.extend(one_thread_pass(
                config,
                base,
                &[],
                "t1-load",
                &errors,
                &mut stacks,
                &mut Vec::new(),
            )?);
        } else {
            for &accounts in &config.accounts {
                if crate::interrupted() {
                    break;
                }
                let setup = Setup::new(config, base, accounts, &format!("t{threads}"))?;
                let m = measure_concurrent(&setup, threads, &paths, &fallback, &errors)?;
                results.extend(results_of(&setup, threads, m));
                if stacks.is_empty() {
                    stacks.clone_from(&setup.lines);
                }
                setup.finish(&errors)?;
            }
        }
    }
    drop(sink);
    print_side_by_side(&results, &load_per_login);
    print_latencies(
        "loading each module once (dlopen + dlclose, 50 times; paid once per process)",
        load.iter().map(|l| (l.module.clone(), l.latency)),
    );
    print_latencies(
        "one NSS lookup (getpwnam_r) of each account, made by pam_totp and \
         pam_google_authenticator alike at every login",
        nss_lookup
            .iter()
            .map(|l| (format!("{} accounts", l.accounts), l.latency)),
    );
    machine.finish();
    let error_samples = errors
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut config = config.clone();
    config.stacks = stacks;
    config.syslog = syslog.to_owned();
    Ok(PamReport {
        machine,
        config,
        results,
        load_per_login,
        load,
        nss_lookup,
        error_samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_thread_pass_refuses_a_process_with_a_second_thread() {
        let (stop, parked) = std::sync::mpsc::channel::<()>();
        let second = std::thread::spawn(move || parked.recv());
        let refused = single_threaded();
        drop(stop);
        let _ = second.join();
        let message = refused.err().unwrap_or_default();
        assert!(message.contains("single-threaded"), "{message}");
    }

    #[test]
    fn incumbent_files_hold_the_same_secret() {
        let google = google_file(3);
        let first = google.lines().next().unwrap_or_default();
        let decoded = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, first);
        assert_eq!(decoded.as_deref(), Some(&seed::secret(3)[..]));
        assert!(google.contains("\" DISALLOW_REUSE\n"));
        assert!(google.contains("\" RATE_LIMIT 3 30\n"));
        let oath = oath_file(5);
        assert_eq!(oath.lines().count(), 5);
        let line = oath.lines().nth(3).unwrap_or_default();
        assert_eq!(
            line,
            format!("HOTP/T30\ttb0000003\t-\t{}", hex::encode(seed::secret(3)))
        );
    }
}
