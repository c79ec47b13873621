//! `pam-totp-agent migrate --from SQLITE_PATH`: a host's profiles into the fleet store, with
//! their secrets (sealed there with the fleet key), state (used steps, failures, locks),
//! emergency codes (re-keyed: HMAC of the stored salted hash) and audit trail. Idempotent: a
//! profile already in the fleet with the same secret is left as it is but for its used steps
//! (the later of the two counts, so nothing used on the host replays); another secret (or
//! the same one as TOTP on one side and HOTP on the other) is a conflict, reported and left
//! alone unless `replace`.

use crate::store::StoreError;
use crate::store::{AuditQuery, Change, Outcome, PgStore, ProfileRecord, SqliteStore, Store};
use subtle::ConstantTimeEq;

/// Profiles and audit rows read from SQLite at a time.
const PAGE: u32 = 500;

/// What became of each profile.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// New in the fleet.
    pub copied: Vec<String>,
    /// Already there with the same secret.
    pub present: Vec<String>,
    /// There with another secret (or type), overwritten (`replace`).
    pub replaced: Vec<String>,
    /// There with another secret (or type), left alone.
    pub conflicts: Vec<String>,
    /// Audit rows copied (those of copied and replaced profiles).
    pub audit_rows: u64,
}

/// The fleet's form of SQLite's `salt:hash` emergency codes: `salt:HMAC(hash)`.
fn rekey_codes(fleet: &PgStore, codes: &[String]) -> Vec<String> {
    codes
        .iter()
        .filter_map(|entry| {
            let (salt, hash) = entry.split_once(':')?;
            let hash = hex::decode(hash).ok()?;
            Some(format!(
                "{salt}:{}",
                hex::encode(fleet.emergency_digest(&hash))
            ))
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Copied,
    Present,
    Replaced,
    Conflict,
}

fn migrate_one(
    fleet: &PgStore,
    mut record: ProfileRecord,
    host: &str,
    replace: bool,
) -> Result<Fate, StoreError> {
    record.id = 0;
    record.owner = Some(record.owner.take().unwrap_or_else(|| host.to_owned()));
    record.emergency_codes = rekey_codes(fleet, &record.emergency_codes);
    let account = record.account.clone();
    let mut fate = Fate::Conflict;
    fleet.transact(&account, None, &mut |current, _| {
        let change = match current {
            None => {
                fate = Fate::Copied;
                Change::Create(Box::new(record.clone()))
            }
            // The same secret of the same kind: its last step is a step (or a counter) there
            // too, so the later one is kept.
            Some(there)
                if there.kind == record.kind && bool::from(there.secret.ct_eq(&record.secret)) =>
            {
                fate = Fate::Present;
                let mut merged = there.clone();
                merged.last_step = merged.last_step.max(record.last_step);
                if merged.last_step == there.last_step {
                    Change::Keep
                } else {
                    Change::Update(Box::new(merged))
                }
            }
            Some(_) if replace => {
                fate = Fate::Replaced;
                Change::Create(Box::new(record.clone()))
            }
            Some(_) => {
                fate = Fate::Conflict;
                Change::Keep
            }
        };
        Outcome::new(change, None)
    })?;
    Ok(fate)
}

/// Copies the account's audit rows, oldest first so the fleet's ids keep their order.
fn copy_audit(
    from: &SqliteStore,
    fleet: &PgStore,
    account: &str,
    host: &str,
) -> Result<u64, StoreError> {
    let mut rows = Vec::new();
    let mut before = None;
    loop {
        let page = from.audit_log(&AuditQuery {
            account: Some(account.to_owned()),
            since: None,
            before,
            limit: PAGE,
        })?;
        before = page.last().map(|event| event.id);
        let done = page.len() < PAGE as usize;
        rows.extend(page);
        if done {
            break;
        }
    }
    let mut copied = 0;
    for mut event in rows.into_iter().rev() {
        event.host = Some(event.host.unwrap_or_else(|| host.to_owned()));
        fleet.audit(&event)?;
        copied += 1;
    }
    Ok(copied)
}

/// Copies every profile of `from` into `fleet`.
pub fn migrate(
    from: &SqliteStore,
    fleet: &PgStore,
    host: &str,
    replace: bool,
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let mut after: Option<String> = None;
    loop {
        let page = from.list(after.as_deref(), PAGE)?;
        after = page.last().map(|record| record.account.clone());
        let done = page.len() < PAGE as usize;
        for record in page {
            let account = record.account.clone();
            let fate = migrate_one(fleet, record, host, replace)?;
            if matches!(fate, Fate::Copied | Fate::Replaced) {
                report.audit_rows += copy_audit(from, fleet, &account, host)?;
            }
            match fate {
                Fate::Copied => report.copied.push(account),
                Fate::Present => report.present.push(account),
                Fate::Replaced => report.replaced.push(account),
                Fate::Conflict => report.conflicts.push(account),
            }
        }
        if done {
            return Ok(report);
        }
    }
}
