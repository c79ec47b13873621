//! Bench accounts: deterministic names and secrets, codes for them, and bulk seeding of the
//! agent's database through `SqliteStore::insert_many` (one transaction per chunk), or of the
//! fleet store through `PgStore::insert_many` (chunks in parallel).

use pam_totp_agent::store::{CodeSettings, PgStore, ProfileRecord, SqliteStore};
use pam_totp_agent::totp::{code_for_step, step_at, TotpParams};
use pam_totp_proto::Algorithm;
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub const PERIOD: u32 = 30;
pub const DIGITS: u8 = 6;
pub const SECRET_BYTES: usize = 20;
const CHUNK: usize = 50_000;
/// Profiles per PostgreSQL transaction when seeding, and the connections seeding at once:
/// each row is a few round trips, so a few connections keep the server busy.
const PG_CHUNK: usize = 2_000;
const PG_SEEDERS: usize = 4;

pub const PARAMS: TotpParams = TotpParams {
    algorithm: Algorithm::Sha1,
    digits: DIGITS,
    period: PERIOD,
};

/// Name of bench account `index`.
pub fn account(index: usize) -> String {
    format!("tb{index:07}")
}

/// Uid of bench account `index`: what the PAM module resolves the name to, and what the agent
/// layer's requests claim (as root, like the module).
pub fn uid(index: usize) -> u32 {
    100_000 + u32::try_from(index).unwrap_or(0)
}

/// The secret of bench account `index`: the same in every module's store.
pub fn secret(index: usize) -> [u8; SECRET_BYTES] {
    let digest = Sha256::digest(format!("pam-totp-bench secret {index}").as_bytes());
    let mut secret = [0u8; SECRET_BYTES];
    secret.copy_from_slice(&digest[..SECRET_BYTES]);
    secret
}

pub fn now_unix() -> i64 {
    crate::machine::now_unix()
}

pub fn current_step() -> i64 {
    step_at(now_unix(), PERIOD)
}

pub fn code(secret: &[u8], step: i64) -> Zeroizing<String> {
    code_for_step(secret, PARAMS, step)
}

/// A code that no step from `step - 1` to `step + 2` accepts: a wrong code even if the step
/// changes while the request is in flight.
pub fn wrong_code(secret: &[u8], step: i64) -> String {
    let valid: Vec<u32> = (step - 1..=step + 2)
        .filter_map(|s| code(secret, s).parse().ok())
        .collect();
    let mut candidate = valid.first().map_or(0, |c| (c + 500_000) % 1_000_000);
    while valid.contains(&candidate) {
        candidate = (candidate + 1) % 1_000_000;
    }
    format!("{candidate:06}")
}

fn record(index: usize, now: i64) -> ProfileRecord {
    let settings = CodeSettings {
        algorithm: Algorithm::Sha1,
        digits: DIGITS,
        period: PERIOD,
    };
    ProfileRecord {
        verified_at: Some(now),
        ..ProfileRecord::new(
            &account(index),
            uid(index),
            Zeroizing::new(secret(index).to_vec()),
            settings,
            "bench",
            now,
        )
    }
}

/// Creates `db` (0600) with `profiles` active profiles; returns how long it took.
pub fn seed(db: &Path, profiles: usize) -> Result<Duration, String> {
    let start = Instant::now();
    let store = SqliteStore::open(db).map_err(|e| format!("open {}: {e}", db.display()))?;
    std::fs::set_permissions(db, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", db.display()))?;
    let now = now_unix();
    let mut next = 0;
    while next < profiles {
        let end = (next + CHUNK).min(profiles);
        let mut chunk: Vec<ProfileRecord> = (next..end).map(|i| record(i, now)).collect();
        store
            .insert_many(&mut chunk)
            .map_err(|e| format!("seeding {}: {e}", db.display()))?;
        next = end;
    }
    drop(store);
    Ok(start.elapsed())
}

/// Adds `profiles` active profiles to the (empty) fleet store; returns how long it took.
pub fn seed_postgres(store: &PgStore, profiles: usize) -> Result<Duration, String> {
    let start = Instant::now();
    let now = now_unix();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let seeder = || -> Result<(), String> {
        loop {
            let first = next.fetch_add(PG_CHUNK, std::sync::atomic::Ordering::Relaxed);
            if first >= profiles || crate::interrupted() {
                return Ok(());
            }
            let end = (first + PG_CHUNK).min(profiles);
            let mut chunk: Vec<ProfileRecord> = (first..end).map(|i| record(i, now)).collect();
            store
                .insert_many(&mut chunk)
                .map_err(|e| format!("seeding the fleet store: {e}"))?;
        }
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..PG_SEEDERS).map(|_| scope.spawn(seeder)).collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err("a seeding thread panicked".into()))
            })
            .collect::<Result<Vec<()>, String>>()
    })?;
    Ok(start.elapsed())
}

/// Bytes of the database with its WAL and shared-memory files.
pub fn db_bytes(db: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(&name).ok().map(|m| m.len())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_codes_are_wrong_and_secrets_differ() {
        for index in 0..200 {
            let s = secret(index);
            let step = 1_000 + i64::try_from(index).unwrap_or(0);
            let wrong = wrong_code(&s, step);
            for near in step - 1..=step + 2 {
                assert_ne!(code(&s, near).as_str(), wrong);
            }
            assert_eq!(wrong.len(), 6);
        }
        assert_ne!(secret(1), secret(2));
        assert_eq!(account(42), "tb0000042");
    }
}
