//! How profiles, sources and audit rows map to the fleet store's tables. Secrets are sealed
//! with the fleet key on the way in and opened on the way out: no plaintext reaches a row.

use super::session::Session;
use super::Fail;
use crate::store::fleet_key::FleetKey;
use crate::store::{
    AuditEvent, ProfileRecord, SourceRecord, StoreError, PROFILE_COLUMNS, SOURCE_RETENTION_SECONDS,
};
use pam_totp_proto::{Algorithm, AuditResult, ProfileKind};
use postgres::types::ToSql;
use postgres::{GenericClient, Row};
use std::sync::OnceLock;

pub(super) struct ProfileSql {
    /// One profile, by account.
    by_account: String,
    /// The same, its row locked to the end of the transaction.
    by_account_locked: String,
    /// The same, with one source's record (`$2`) in the same round trip.
    with_source_locked: String,
    /// A page of profiles after an account (or from the first).
    pub(super) page: String,
    insert: String,
    update: String,
    /// The update and an audit row in one statement (`$20..$31`: [`AUDIT_COLUMNS`]).
    update_and_audit: String,
}

/// The audit columns an insert writes, in the order of [`AuditParams::values`].
const AUDIT_COLUMNS: [&str; 12] = [
    "at",
    "host",
    "account",
    "uid",
    "op",
    "result",
    "service",
    "rhost",
    "tty",
    "ruser",
    "caller_uid",
    "caller_pid",
];

/// An audit row's values as PostgreSQL takes them.
struct AuditParams<'a> {
    event: &'a AuditEvent,
    uid: Option<i64>,
    caller_uid: i64,
    result: &'static str,
}

impl<'a> AuditParams<'a> {
    fn new(event: &'a AuditEvent) -> Self {
        Self {
            event,
            uid: event.uid.map(i64::from),
            caller_uid: i64::from(event.caller_uid),
            result: event.result.as_str(),
        }
    }

    fn values(&self) -> [&(dyn ToSql + Sync); AUDIT_COLUMNS.len()] {
        let event = self.event;
        [
            &event.at,
            &event.host,
            &event.account,
            &self.uid,
            &event.op,
            &self.result,
            &event.service,
            &event.rhost,
            &event.tty,
            &event.ruser,
            &self.caller_uid,
            &event.caller_pid,
        ]
    }
}

/// `INSERT INTO audit (...) VALUES ($from, ...)`.
fn audit_insert(from: usize) -> String {
    let placeholders: Vec<String> = (from..from + AUDIT_COLUMNS.len())
        .map(|n| format!("${n}"))
        .collect();
    format!(
        "INSERT INTO audit ({}) VALUES ({})",
        AUDIT_COLUMNS.join(", "),
        placeholders.join(", ")
    )
}

pub(super) fn profile_sql() -> &'static ProfileSql {
    static SQL: OnceLock<ProfileSql> = OnceLock::new();
    SQL.get_or_init(|| {
        let columns = PROFILE_COLUMNS.join(", ");
        let numbered = (1..=PROFILE_COLUMNS.len()).map(|n| format!("${n}"));
        let placeholders: Vec<String> = numbered.clone().collect();
        let assignments: Vec<String> = PROFILE_COLUMNS
            .iter()
            .zip(numbered)
            .map(|(column, placeholder)| format!("{column} = {placeholder}"))
            .collect();
        let select = format!("SELECT id, {columns} FROM profiles");
        let prefixed: Vec<String> = PROFILE_COLUMNS.iter().map(|c| format!("p.{c}")).collect();
        ProfileSql {
            by_account: format!("{select} WHERE account = $1"),
            by_account_locked: format!("{select} WHERE account = $1 FOR UPDATE"),
            with_source_locked: format!(
                "SELECT p.id, {}, s.failures, s.blocked_until, s.last_failure_at \
                 FROM profiles p LEFT JOIN source_failures s \
                 ON s.account = p.account AND s.source = $2 \
                 WHERE p.account = $1 FOR UPDATE OF p",
                prefixed.join(", ")
            ),
            page: format!(
                "{select} WHERE ($1::text IS NULL OR account > $1) ORDER BY account LIMIT $2"
            ),
            insert: format!(
                "INSERT INTO profiles ({columns}) VALUES ({}) RETURNING id",
                placeholders.join(", ")
            ),
            // Keyed by the account (the first column), never by the id.
            update: format!(
                "UPDATE profiles SET {} WHERE account = $1",
                assignments.join(", ")
            ),
            update_and_audit: format!(
                "WITH updated AS (UPDATE profiles SET {} WHERE account = $1) {}",
                assignments.join(", "),
                audit_insert(PROFILE_COLUMNS.len() + 1)
            ),
        }
    })
}

fn to_u32(value: i64, column: &str) -> Result<u32, Fail> {
    u32::try_from(value).map_err(|_| {
        Fail::Store(StoreError::Internal(format!(
            "cannot read state: {column} {value} is out of range"
        )))
    })
}

/// A profile from a row of the profile statements, its secret opened with the fleet key.
pub(super) fn record_from_row(row: &Row, key: &FleetKey) -> Result<ProfileRecord, Fail> {
    let account: String = row.try_get(1)?;
    let sealed: Vec<u8> = row.try_get(4)?;
    let secret = key
        .open_secret(&account, &sealed)
        .map_err(|e| Fail::Store(StoreError::Internal(format!("cannot read state: {e}"))))?;
    let algorithm = parsed::<Algorithm>(row, 5)?;
    let digits: i32 = row.try_get(6)?;
    let period: i32 = row.try_get(7)?;
    let failed: i32 = row.try_get(16)?;
    let window: Option<i32> = row.try_get(19)?;
    Ok(ProfileRecord {
        id: row.try_get(0)?,
        uid: to_u32(row.try_get(2)?, "uid")?,
        owner: row.try_get(3)?,
        secret,
        algorithm,
        digits: u8::try_from(digits).unwrap_or(0),
        period: to_u32(period.into(), "period")?,
        issuer: row.try_get(8)?,
        comment: row.try_get(9)?,
        created_at: row.try_get(10)?,
        changed_at: row.try_get(11)?,
        verified_at: row.try_get(12)?,
        last_used_at: row.try_get(13)?,
        enabled: row.try_get(14)?,
        last_step: row.try_get(15)?,
        failed_attempts: to_u32(failed.into(), "failed_attempts")?,
        locked_until: row.try_get(17)?,
        emergency_codes: row
            .try_get::<_, String>(18)?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        window: window.map(|w| u32::try_from(w).unwrap_or(0)),
        kind: parsed::<ProfileKind>(row, 20)?,
        account,
    })
}

/// A text column parsed into its type (an algorithm, a kind).
fn parsed<T: std::str::FromStr<Err = String>>(row: &Row, column: usize) -> Result<T, Fail> {
    let text: String = row.try_get(column)?;
    text.parse::<T>()
        .map_err(|e| Fail::Store(StoreError::Internal(format!("cannot read state: {e}"))))
}

/// Writes the profile's columns with `sql` (insert or update); returns the first column of
/// the first row (the id, for an insert).
fn write_profile(
    s: &mut Session<'_, impl GenericClient>,
    sql: &'static str,
    record: &ProfileRecord,
    key: &FleetKey,
    audit: Option<&AuditEvent>,
) -> Result<Option<i64>, Fail> {
    let sealed = key
        .seal_secret(&record.account, &record.secret)
        .map_err(|e| Fail::Store(StoreError::Internal(format!("cannot record state: {e}"))))?;
    let uid = i64::from(record.uid);
    let algorithm = record.algorithm.as_str();
    let digits = i32::from(record.digits);
    let period = i32::try_from(record.period).unwrap_or(i32::MAX);
    let failed = i32::try_from(record.failed_attempts).unwrap_or(i32::MAX);
    let codes = record.emergency_codes.join(",");
    let window = record.window.map(|w| i32::try_from(w).unwrap_or(i32::MAX));
    let kind = record.kind.as_str();
    let values: [&(dyn ToSql + Sync); PROFILE_COLUMNS.len()] = [
        &record.account,
        &uid,
        &record.owner,
        &sealed,
        &algorithm,
        &digits,
        &period,
        &record.issuer,
        &record.comment,
        &record.created_at,
        &record.changed_at,
        &record.verified_at,
        &record.last_used_at,
        &record.enabled,
        &record.last_step,
        &failed,
        &record.locked_until,
        &codes,
        &window,
        &kind,
    ];
    let audit = audit.map(AuditParams::new);
    let audit_values = audit.as_ref().map(AuditParams::values);
    let all: Vec<&(dyn ToSql + Sync)> = values
        .into_iter()
        .chain(audit_values.into_iter().flatten())
        .collect();
    let rows = s.query(sql, &all)?;
    Ok(rows.first().map(|row| row.try_get(0)).transpose()?)
}

pub(super) fn load(
    s: &mut Session<'_, impl GenericClient>,
    account: &str,
    key: &FleetKey,
) -> Result<Option<ProfileRecord>, Fail> {
    s.query_opt(&profile_sql().by_account, &[&account])?
        .map(|row| record_from_row(&row, key))
        .transpose()
}

/// The account's profile, its row locked until the transaction ends (a concurrent writer
/// waits; this one then reads what that one committed).
pub(super) fn load_locked(
    s: &mut Session<'_, impl GenericClient>,
    account: &str,
    key: &FleetKey,
) -> Result<Option<ProfileRecord>, Fail> {
    s.query_opt(&profile_sql().by_account_locked, &[&account])?
        .map(|row| record_from_row(&row, key))
        .transpose()
}

/// The account's profile, locked as [`load_locked`] does, and `source`'s record (clear when
/// it has none), in one round trip; `None` when the account has no profile.
pub(super) fn load_locked_with_source(
    s: &mut Session<'_, impl GenericClient>,
    account: &str,
    source: &str,
    key: &FleetKey,
) -> Result<Option<(ProfileRecord, SourceRecord)>, Fail> {
    let Some(row) = s.query_opt(&profile_sql().with_source_locked, &[&account, &source])? else {
        return Ok(None);
    };
    let record = record_from_row(&row, key)?;
    let first = 1 + PROFILE_COLUMNS.len();
    let failures: Option<i32> = row.try_get(first)?;
    let source = match failures {
        Some(_) => source_from_row(&row, first)?,
        None => SourceRecord::default(),
    };
    Ok(Some((record, source)))
}

/// Stores a new profile for the account (replacing any it had); assigns its id.
pub(super) fn create(
    s: &mut Session<'_, impl GenericClient>,
    record: &mut ProfileRecord,
    key: &FleetKey,
) -> Result<(), Fail> {
    s.execute(
        "DELETE FROM profiles WHERE account = $1",
        &[&record.account],
    )?;
    record.id = write_profile(s, &profile_sql().insert, record, key, None)?.unwrap_or(0);
    Ok(())
}

pub(super) fn update(
    s: &mut Session<'_, impl GenericClient>,
    record: &ProfileRecord,
    key: &FleetKey,
) -> Result<(), Fail> {
    write_profile(s, &profile_sql().update, record, key, None)?;
    Ok(())
}

/// [`update`] and [`insert_audit`] in one round trip.
pub(super) fn update_with_audit(
    s: &mut Session<'_, impl GenericClient>,
    record: &ProfileRecord,
    key: &FleetKey,
    event: &AuditEvent,
) -> Result<(), Fail> {
    write_profile(s, &profile_sql().update_and_audit, record, key, Some(event))?;
    Ok(())
}

pub(super) fn source_from_row(row: &Row, first: usize) -> Result<SourceRecord, Fail> {
    let failures: i32 = row.try_get(first)?;
    Ok(SourceRecord {
        failures: to_u32(failures.into(), "failures")?,
        blocked_until: row.try_get(first + 1)?,
        last_failure_at: row.try_get(first + 2)?,
    })
}

pub(super) fn load_source(
    s: &mut Session<'_, impl GenericClient>,
    account: &str,
    source: &str,
) -> Result<SourceRecord, Fail> {
    s.query_opt(
        "SELECT failures, blocked_until, last_failure_at FROM source_failures \
             WHERE account = $1 AND source = $2",
        &[&account, &source],
    )?
    .map_or(Ok(SourceRecord::default()), |row| source_from_row(&row, 0))
}

pub(super) fn save_source(
    s: &mut Session<'_, impl GenericClient>,
    account: &str,
    source: &str,
    record: &SourceRecord,
) -> Result<(), Fail> {
    if record.is_clear() {
        s.execute(
            "DELETE FROM source_failures WHERE account = $1 AND source = $2",
            &[&account, &source],
        )?;
        return Ok(());
    }
    let failures = i32::try_from(record.failures).unwrap_or(i32::MAX);
    s.execute(
        "INSERT INTO source_failures (account, source, failures, blocked_until, last_failure_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account, source) DO UPDATE SET \
         failures = excluded.failures, blocked_until = excluded.blocked_until, \
         last_failure_at = excluded.last_failure_at",
        &[
            &account,
            &source,
            &failures,
            &record.blocked_until,
            &record.last_failure_at,
        ],
    )?;
    let horizon = record.last_failure_at - SOURCE_RETENTION_SECONDS;
    s.execute(
        "DELETE FROM source_failures WHERE account = $1 AND last_failure_at < $2 \
         AND (blocked_until IS NULL OR blocked_until < $3)",
        &[&account, &horizon, &record.last_failure_at],
    )?;
    Ok(())
}

pub(super) fn clear_sources(
    s: &mut Session<'_, impl GenericClient>,
    account: &str,
) -> Result<(), Fail> {
    s.execute(
        "DELETE FROM source_failures WHERE account = $1",
        &[&account],
    )?;
    Ok(())
}

pub(super) fn insert_audit(
    s: &mut Session<'_, impl GenericClient>,
    event: &AuditEvent,
) -> Result<(), Fail> {
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| audit_insert(1));
    s.execute(sql, &AuditParams::new(event).values())?;
    Ok(())
}

/// The audit columns [`audit_from_row`] reads, in order.
macro_rules! audit_select {
    () => {
        "SELECT id, at, host, account, uid, op, result, service, rhost, tty, ruser, caller_uid, \
         caller_pid FROM audit"
    };
}
pub(super) use audit_select;

pub(super) fn audit_from_row(row: &Row) -> Result<AuditEvent, Fail> {
    let uid: Option<i64> = row.try_get(4)?;
    let result: String = row.try_get(6)?;
    Ok(AuditEvent {
        id: row.try_get(0)?,
        at: row.try_get(1)?,
        host: row.try_get(2)?,
        account: row.try_get(3)?,
        uid: uid.map(|u| to_u32(u, "uid")).transpose()?,
        op: row.try_get(5)?,
        result: AuditResult::parse(&result),
        service: row.try_get(7)?,
        rhost: row.try_get(8)?,
        tty: row.try_get(9)?,
        ruser: row.try_get(10)?,
        caller_uid: to_u32(row.try_get(11)?, "caller_uid")?,
        caller_pid: row.try_get(12)?,
    })
}

/// A `count(*)` column (never negative) as u64.
pub(super) fn count(row: &Row, index: usize) -> Result<u64, Fail> {
    let value: i64 = row.try_get(index)?;
    Ok(u64::try_from(value).unwrap_or(0))
}
