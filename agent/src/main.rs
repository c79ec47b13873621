//! `pam-totp-agent [--socket PATH] [--db PATH | --store URL] [--config PATH] [--host-name NAME]`,
//! or `pam-totp-agent backup --to FILE [--db PATH]`, `schema`, `migrate --from SQLITE_PATH`.

mod logging;

use clap::Parser;
use pam_totp_agent::args::{AgentCommand, Args};
use pam_totp_agent::clock::Clock;
use pam_totp_agent::clock::SystemClock;
use pam_totp_agent::config::{Config, DEFAULT_CONFIG};
use pam_totp_agent::directory::Nss;
use pam_totp_agent::server::{self, Limits};
use pam_totp_agent::service::{Paths, Service};
use pam_totp_agent::store::{PgStore, SqliteStore};
use pam_totp_agent::{listener, migrate, startup};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn main() -> ExitCode {
    let args = Args::parse();
    logging::init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Everything the agent creates is private unless it says otherwise (the socket).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    match &args.command {
        Some(AgentCommand::Backup { to }) => {
            SqliteStore::backup(&args.db, to, SystemClock.now())?;
            log::info!(
                "backup of {} written to {}",
                args.db.display(),
                to.display()
            );
            return Ok(());
        }
        Some(AgentCommand::Schema) => {
            print!("{}", pam_totp_agent::store::postgres::schema::sql());
            return Ok(());
        }
        _ => {}
    }
    let config = match &args.config {
        Some(path) => Config::load(path, true)?,
        None => Config::load(DEFAULT_CONFIG.as_ref(), false)?,
    };
    let host = startup::host_name(&args, &config)?;
    if let Some(AgentCommand::Migrate { from, replace }) = &args.command {
        return run_migrate(&args, &config, &host, from, *replace);
    }
    let opened = startup::open(&args, &config, &host, SystemClock.now())?;
    let (listener, created) = listener::open(&args.socket)?;
    let service = Arc::new(
        Service::new(
            opened.store,
            Box::new(Nss),
            Box::new(SystemClock),
            config,
            host.clone(),
        )
        .with_paths(Paths {
            socket: args.socket.display().to_string(),
            database: opened.location.clone(),
        }),
    );
    start_audit_pruning(Arc::clone(&service));
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&shutdown))?;
    }
    log::info!(
        "listening on {}, store {} as host {host} (version {})",
        created
            .as_deref()
            .map_or("the socket passed by systemd".into(), |p| p
                .display()
                .to_string()),
        opened.location,
        env!("CARGO_PKG_VERSION")
    );
    // Under systemd Type=notify this says we are ready; elsewhere it does nothing.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    server::serve(listener, service, &shutdown, Limits::default())?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if let Some(path) = created {
        let _ = std::fs::remove_file(path);
    }
    log::info!("stopped");
    Ok(())
}

/// `migrate --from SQLITE_PATH`: one line per profile that needs a look, then a summary;
/// fails when conflicts were left alone.
fn run_migrate(
    args: &Args,
    config: &Config,
    host: &str,
    from: &std::path::Path,
    replace: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let url = startup::fleet_url(args, config)
        .ok_or("migrate needs a fleet store: --store URL, or store in the config")?;
    if !from.is_file() {
        return Err(format!("{}: no such SQLite database", from.display()).into());
    }
    let source = SqliteStore::open(from)?;
    // A restored backup lacks the steps used since it was taken: mark them used before they
    // travel, as an agent opening it would.
    if let Some((taken, _)) =
        source.forget_history_if_restored(SystemClock.now(), config.windows())?
    {
        log::warn!(
            "{} is a restored backup (taken at Unix time {taken}): every time step up to now + \
             the window, and every HOTP counter up to the next one + the look-ahead, is \
             treated as used",
            from.display()
        );
    }
    let fleet = PgStore::open(startup::fleet_settings(url, config, host)?)?;
    let report = migrate::migrate(&source, &fleet, host, replace)?;
    for account in &report.replaced {
        println!("replaced {account}: the fleet's profile had another secret");
    }
    for account in &report.conflicts {
        println!(
            "conflict {account}: the fleet already holds another secret for it (left alone; \
             --replace overwrites it)"
        );
    }
    println!(
        "{} copied, {} already present, {} replaced, {} conflicts, {} audit rows copied",
        report.copied.len(),
        report.present.len(),
        report.replaced.len(),
        report.conflicts.len(),
        report.audit_rows
    );
    if report.conflicts.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} conflicting profiles were not migrated",
            report.conflicts.len()
        )
        .into())
    }
}

/// Deletes audit rows past the retention (age and size) now and then every minute, on a thread
/// of its own so no request waits for it (it deletes in small batches that logins interleave).
fn start_audit_pruning(service: Arc<Service>) {
    let spawned = std::thread::Builder::new()
        .name("audit-retention".into())
        .spawn(move || loop {
            match service.prune_audit() {
                Ok(0) => {}
                Ok(pruned) => log::info!("pruned {pruned} old audit rows"),
                Err(error) => log::warn!("audit pruning failed: {error}"),
            }
            std::thread::sleep(std::time::Duration::from_secs(60));
        });
    if let Err(error) = spawned {
        log::warn!("cannot start audit pruning: {error}");
    }
}
