//! Rows and statements: how profiles, sources and audit rows map to SQLite.

use super::read_error;
use crate::store::{
    AuditEvent, ProfileRecord, SourceRecord, StoreError, PROFILE_COLUMNS, SOURCE_RETENTION_SECONDS,
};
use pam_totp_proto::audit::Outcome;
use pam_totp_proto::{Algorithm, AuditResult, ProfileKind};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::sync::OnceLock;
use zeroize::Zeroizing;

/// The profile statements, built once from [`PROFILE_COLUMNS`].
pub(super) struct ProfileSql {
    pub(super) select: String,
    insert: String,
    update: String,
}

pub(super) fn profile_sql() -> &'static ProfileSql {
    static SQL: OnceLock<ProfileSql> = OnceLock::new();
    SQL.get_or_init(|| {
        let columns = PROFILE_COLUMNS.join(", ");
        let numbered = |from: usize| (from..from + PROFILE_COLUMNS.len()).map(|n| format!("?{n}"));
        let placeholders: Vec<String> = numbered(1).collect();
        let assignments: Vec<String> = PROFILE_COLUMNS
            .iter()
            .zip(numbered(1))
            .map(|(column, placeholder)| format!("{column} = {placeholder}"))
            .collect();
        ProfileSql {
            select: format!("SELECT id, {columns} FROM profiles"),
            insert: format!(
                "INSERT INTO profiles ({columns}) VALUES ({})",
                placeholders.join(", ")
            ),
            // Keyed by the account (the first column), never by the id.
            update: format!(
                "UPDATE profiles SET {} WHERE account = ?1",
                assignments.join(", ")
            ),
        }
    })
}

/// The results `status` counts as logins or as failures (from the one vocabulary), as SQL
/// lists.
pub(super) fn results_sql(outcome: Outcome) -> String {
    AuditResult::ALL
        .iter()
        .filter(|result| result.outcome() == outcome)
        .map(|result| format!("'{}'", result.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A profile from a row of `profile_sql().select`: `id`, then [`PROFILE_COLUMNS`] in order.
pub(super) fn record_from_row(row: &Row<'_>) -> rusqlite::Result<ProfileRecord> {
    let mut column = 0..;
    let mut next = || column.next().unwrap_or(usize::MAX);
    let id = row.get(next())?;
    let account = row.get(next())?;
    let uid = row.get(next())?;
    let owner = row.get(next())?;
    let secret = Zeroizing::new(row.get(next())?);
    let algorithm = parsed::<Algorithm>(row, next())?;
    Ok(ProfileRecord {
        id,
        account,
        uid,
        owner,
        secret,
        algorithm,
        digits: row.get(next())?,
        period: row.get(next())?,
        issuer: row.get(next())?,
        comment: row.get(next())?,
        created_at: row.get(next())?,
        changed_at: row.get(next())?,
        verified_at: row.get(next())?,
        last_used_at: row.get(next())?,
        enabled: row.get(next())?,
        last_step: row.get(next())?,
        failed_attempts: row.get(next())?,
        locked_until: row.get(next())?,
        emergency_codes: row
            .get::<_, String>(next())?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        window: row.get(next())?,
        kind: parsed::<ProfileKind>(row, next())?,
    })
}

/// A text column parsed into its type (an algorithm, a kind).
fn parsed<T: std::str::FromStr<Err = String>>(row: &Row<'_>, column: usize) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    text.parse::<T>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
    })
}

/// A profile's values for [`PROFILE_COLUMNS`], in order (the secret is not copied).
pub(super) fn profile_values(record: &ProfileRecord) -> [ToSqlOutput<'_>; PROFILE_COLUMNS.len()] {
    let owned = |value: Value| ToSqlOutput::Owned(value);
    let int = |value: i64| owned(Value::Integer(value));
    let opt = |value: Option<i64>| owned(value.map_or(Value::Null, Value::Integer));
    [
        ToSqlOutput::Borrowed(ValueRef::Text(record.account.as_bytes())),
        int(i64::from(record.uid)),
        record.owner.as_deref().map_or(owned(Value::Null), |o| {
            ToSqlOutput::Borrowed(ValueRef::Text(o.as_bytes()))
        }),
        ToSqlOutput::Borrowed(ValueRef::Blob(&record.secret)),
        ToSqlOutput::Borrowed(ValueRef::Text(record.algorithm.as_str().as_bytes())),
        int(i64::from(record.digits)),
        int(i64::from(record.period)),
        ToSqlOutput::Borrowed(ValueRef::Text(record.issuer.as_bytes())),
        record.comment.as_deref().map_or(owned(Value::Null), |c| {
            ToSqlOutput::Borrowed(ValueRef::Text(c.as_bytes()))
        }),
        int(record.created_at),
        int(record.changed_at),
        opt(record.verified_at),
        opt(record.last_used_at),
        int(i64::from(record.enabled)),
        opt(record.last_step),
        int(i64::from(record.failed_attempts)),
        opt(record.locked_until),
        owned(Value::Text(record.emergency_codes.join(","))),
        opt(record.window.map(i64::from)),
        ToSqlOutput::Borrowed(ValueRef::Text(record.kind.as_str().as_bytes())),
    ]
}

pub(super) fn load(
    connection: &Connection,
    account: &str,
) -> Result<Option<ProfileRecord>, StoreError> {
    connection
        .one(
            &format!("{} WHERE account = ?1", profile_sql().select),
            [account],
            record_from_row,
        )
        .optional()
        .map_err(read_error)
}

/// Stores a new profile for the account (replacing any it had); assigns its id.
pub(super) fn create(tx: &Connection, record: &mut ProfileRecord) -> rusqlite::Result<()> {
    tx.run("DELETE FROM profiles WHERE account = ?1", [&record.account])?;
    tx.run(
        &profile_sql().insert,
        rusqlite::params_from_iter(profile_values(record)),
    )?;
    record.id = tx.last_insert_rowid();
    Ok(())
}

/// Stores new values for the account's existing profile.
/// Writes `record` over the profile row it replaces (`stored`, as read in this transaction),
/// setting only the columns that changed: an index none of whose columns is set is left alone
/// (a login changes a few counters, never the account or its uid), and an unchanged row is
/// not written at all.
pub(super) fn update(
    tx: &Connection,
    stored: Option<&ProfileRecord>,
    record: &ProfileRecord,
) -> rusqlite::Result<()> {
    let Some(stored) = stored else {
        tx.run(
            &profile_sql().update,
            rusqlite::params_from_iter(profile_values(record)),
        )?;
        return Ok(());
    };
    let before = profile_values(stored);
    let after = profile_values(record);
    let changed: Vec<usize> = (0..PROFILE_COLUMNS.len())
        .filter(|&column| before.get(column) != after.get(column))
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let assignments: Vec<String> = changed
        .iter()
        .enumerate()
        .map(|(n, &column)| format!("{} = ?{}", PROFILE_COLUMNS[column], n + 2))
        .collect();
    let sql = format!(
        "UPDATE profiles SET {} WHERE account = ?1",
        assignments.join(", ")
    );
    let values = std::iter::once(ToSqlOutput::Borrowed(ValueRef::Text(
        stored.account.as_bytes(),
    )))
    .chain(
        after
            .into_iter()
            .enumerate()
            .filter(|(column, _)| changed.contains(column))
            .map(|(_, value)| value),
    );
    tx.run(&sql, rusqlite::params_from_iter(values))?;
    Ok(())
}

pub(super) fn load_source(
    connection: &Connection,
    account: &str,
    source: &str,
) -> Result<SourceRecord, StoreError> {
    connection
        .one(
            "SELECT failures, blocked_until, last_failure_at FROM source_failures \
             WHERE account = ?1 AND source = ?2",
            [account, source],
            |row| {
                Ok(SourceRecord {
                    failures: row.get(0)?,
                    blocked_until: row.get(1)?,
                    last_failure_at: row.get(2)?,
                })
            },
        )
        .optional()
        .map(Option::unwrap_or_default)
        .map_err(read_error)
}

pub(super) fn save_source(
    tx: &Connection,
    account: &str,
    source: &str,
    record: &SourceRecord,
) -> rusqlite::Result<()> {
    if record.is_clear() {
        tx.run(
            "DELETE FROM source_failures WHERE account = ?1 AND source = ?2",
            [account, source],
        )?;
        return Ok(());
    }
    tx.run(
        "INSERT INTO source_failures (account, source, failures, blocked_until, last_failure_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (account, source) DO UPDATE SET \
         failures = excluded.failures, blocked_until = excluded.blocked_until, \
         last_failure_at = excluded.last_failure_at",
        params![
            account,
            source,
            record.failures,
            record.blocked_until,
            record.last_failure_at
        ],
    )?;
    let horizon = record.last_failure_at - SOURCE_RETENTION_SECONDS;
    tx.run(
        "DELETE FROM source_failures WHERE account = ?1 AND last_failure_at < ?2 \
         AND (blocked_until IS NULL OR blocked_until < ?3)",
        params![account, horizon, record.last_failure_at],
    )?;
    Ok(())
}

pub(super) fn clear_sources(tx: &Connection, account: &str) -> rusqlite::Result<()> {
    tx.run("DELETE FROM source_failures WHERE account = ?1", [account])?;
    Ok(())
}

/// A `count(*)` column (never negative) as u64.
pub(super) fn count(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(index)?;
    Ok(u64::try_from(value).unwrap_or(0))
}

/// Statements are prepared once per connection and reused: parsing SQL text on every
/// login was a seventh of the agent's work.
pub(super) trait Cached {
    fn run<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn one<T, P, F>(&self, sql: &str, params: P, read: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn run<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn one<T, P, F>(&self, sql: &str, params: P, read: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, read)
    }
}

/// Appends an audit row.
pub(super) fn insert_audit(connection: &Connection, event: &AuditEvent) -> rusqlite::Result<()> {
    connection.run(
        "INSERT INTO audit (at, account, uid, op, result, service, rhost, tty, ruser, \
         caller_uid, caller_pid, host) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            event.at,
            event.account,
            event.uid,
            event.op,
            event.result.as_str(),
            event.service,
            event.rhost,
            event.tty,
            event.ruser,
            event.caller_uid,
            event.caller_pid,
            event.host,
        ],
    )?;
    Ok(())
}
