//! `pam-totp-agent [--socket PATH] [--db PATH] [--config PATH]`, or
//! `pam-totp-agent backup --to FILE [--db PATH]`

mod logging;

use clap::Parser;
use pam_totp_agent::args::{AgentCommand, Args};
use pam_totp_agent::clock::Clock;
use pam_totp_agent::clock::SystemClock;
use pam_totp_agent::config::{Config, DEFAULT_CONFIG};
use pam_totp_agent::directory::Nss;
use pam_totp_agent::server::{self, Limits};
use pam_totp_agent::service::{Paths, Service};
use pam_totp_agent::store::SqliteStore;
use pam_totp_agent::{fsperm, listener};
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
    if let Some(AgentCommand::Backup { to }) = &args.command {
        SqliteStore::backup(&args.db, to, SystemClock.now())?;
        log::info!(
            "backup of {} written to {}",
            args.db.display(),
            to.display()
        );
        return Ok(());
    }
    let config = match &args.config {
        Some(path) => Config::load(path, true)?,
        None => Config::load(DEFAULT_CONFIG.as_ref(), false)?,
    };
    fsperm::prepare_database(&args.db)?;
    let store = SqliteStore::open(&args.db)?;
    if let Some((taken, profiles)) =
        store.forget_history_if_restored(SystemClock.now(), config.window)?
    {
        log::warn!(
            "{} is a restored backup (taken at Unix time {taken}): codes used since then are \
             not recorded in it, so every time step up to now + the window is treated as used \
             ({profiles} profiles)",
            args.db.display()
        );
    }
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let (listener, created) = listener::open(&args.socket)?;
    let service = Arc::new(
        Service::new(
            Box::new(store),
            Box::new(Nss),
            Box::new(SystemClock),
            config,
            host,
        )
        .with_paths(Paths {
            socket: args.socket.display().to_string(),
            database: args.db.display().to_string(),
        }),
    );
    start_audit_pruning(Arc::clone(&service));
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&shutdown))?;
    }
    log::info!(
        "listening on {}, database {} (version {})",
        created
            .as_deref()
            .map_or("the socket passed by systemd".into(), |p| p
                .display()
                .to_string()),
        args.db.display(),
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
