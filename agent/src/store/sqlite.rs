//! The SQLite store: one row per profile, an audit table, WAL with full sync so an
//! acknowledged login or enrollment survives a crash; concurrent writes share commits
//! (see `batch`).

use super::batch::Batcher;
use super::{
    AttemptTally, AuditEvent, AuditQuery, Change, Decision, LoginPlace, ProfileRecord,
    ProfileTally, SourceRecord, Store, StoreError,
};
use pam_totp_proto::audit::Outcome;
use pam_totp_proto::{Algorithm, AuditResult};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;
use zeroize::Zeroizing;

/// Ordered migrations; `PRAGMA user_version` counts how many have run.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE profiles (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL UNIQUE,
        uid INTEGER NOT NULL,
        secret BLOB NOT NULL,
        algorithm TEXT NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
        digits INTEGER NOT NULL CHECK (digits BETWEEN 6 AND 8),
        period INTEGER NOT NULL CHECK (period > 0),
        issuer TEXT NOT NULL,
        comment TEXT,
        created_at INTEGER NOT NULL,
        changed_at INTEGER NOT NULL,
        verified_at INTEGER,
        last_used_at INTEGER,
        enabled INTEGER NOT NULL,
        last_step INTEGER,
        failed_attempts INTEGER NOT NULL DEFAULT 0,
        locked_until INTEGER,
        emergency_codes TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        account TEXT NOT NULL,
        uid INTEGER,
        op TEXT NOT NULL,
        result TEXT NOT NULL,
        service TEXT,
        rhost TEXT,
        tty TEXT,
        caller_uid INTEGER NOT NULL,
        caller_pid INTEGER NOT NULL
    );
    CREATE INDEX audit_by_account ON audit (account, at);
    CREATE INDEX audit_by_time ON audit (at);
",
    "
    CREATE TABLE source_failures (
        account TEXT NOT NULL,
        source TEXT NOT NULL,
        failures INTEGER NOT NULL,
        blocked_until INTEGER,
        last_failure_at INTEGER NOT NULL,
        PRIMARY KEY (account, source)
    ) WITHOUT ROWID;
",
    "
    ALTER TABLE profiles ADD COLUMN skew_window INTEGER;
",
    "
    ALTER TABLE audit ADD COLUMN ruser TEXT;
    CREATE INDEX profiles_by_uid ON profiles (uid);
    CREATE INDEX sources_by_block ON source_failures (account, blocked_until);
",
];

/// Read connections kept open; more readers at once wait for one. Reads are short.
const MAX_READERS: usize = 4;
/// Audit rows deleted per write job when pruning, so logins queue behind small batches.
const PRUNE_CHUNK: i64 = 2000;

/// A source's failures are forgotten a day after its last one, once it is not blocked:
/// enough to throttle an attacker, and it bounds the table when addresses rotate.
const SOURCE_RETENTION_SECONDS: i64 = 24 * 60 * 60;

/// The profile table's columns besides `id`, in [`ProfileRecord`]'s field order: the one list
/// the SELECT, INSERT and UPDATE statements and both row mappings are built from.
const PROFILE_COLUMNS: [&str; 18] = [
    "account",
    "uid",
    "secret",
    "algorithm",
    "digits",
    "period",
    "issuer",
    "comment",
    "created_at",
    "changed_at",
    "verified_at",
    "last_used_at",
    "enabled",
    "last_step",
    "failed_attempts",
    "locked_until",
    "emergency_codes",
    "skew_window",
];

/// The profile statements, built once from [`PROFILE_COLUMNS`].
struct ProfileSql {
    select: String,
    insert: String,
    update: String,
}

fn profile_sql() -> &'static ProfileSql {
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
fn results_sql(outcome: Outcome) -> String {
    AuditResult::ALL
        .iter()
        .filter(|result| result.outcome() == outcome)
        .map(|result| format!("'{}'", result.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub struct SqliteStore {
    batches: Batcher,
    readers: Readers,
}

/// Connections that only read. In WAL mode each sees the last committed state and never
/// waits for the writer, so `show`, `probe` and `log` do not queue behind a batch of logins
/// (nor see its uncommitted changes).
struct Readers {
    path: PathBuf,
    pool: Mutex<ReaderPool>,
    returned: Condvar,
}

#[derive(Default)]
struct ReaderPool {
    idle: Vec<Connection>,
    /// Connections open, idle or lent out.
    open: usize,
}

impl Readers {
    fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let connection = self.take()?;
        let result = read(&connection);
        let mut pool = lock(&self.pool);
        pool.idle.push(connection);
        self.returned.notify_one();
        result
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let mut pool = lock(&self.pool);
        loop {
            if let Some(connection) = pool.idle.pop() {
                return Ok(connection);
            }
            if pool.open < MAX_READERS {
                pool.open += 1;
                drop(pool);
                let opened = open_reader(&self.path);
                if opened.is_err() {
                    lock(&self.pool).open -= 1;
                }
                return opened;
            }
            pool = self
                .returned
                .wait(pool)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The pool is a plain list: a panic elsewhere cannot leave it inconsistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path).map_err(read_error)?;
    connection
        .busy_timeout(Duration::from_secs(5))
        .map_err(read_error)?;
    // query_only: this connection can never write, whatever a bug asks of it. A small page
    // cache per reader keeps memory flat.
    connection
        .execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -1024;")
        .map_err(read_error)?;
    connection.set_prepared_statement_cache_capacity(32);
    Ok(connection)
}

/// What SQLite's error means for the caller: "not now" (full or read-only disk, busy, cannot
/// open), "not this" (a constraint), or broken.
fn classify(error: &rusqlite::Error) -> fn(String) -> StoreError {
    match error.sqlite_error_code() {
        Some(
            ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::ReadOnly
            | ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory
            | ErrorCode::FileLockingProtocolFailed,
        ) => StoreError::Unavailable,
        Some(ErrorCode::ConstraintViolation | ErrorCode::TooBig | ErrorCode::TypeMismatch) => {
            StoreError::Invalid
        }
        _ => StoreError::Internal,
    }
}

pub(super) fn read_error(error: rusqlite::Error) -> StoreError {
    classify(&error)(format!("cannot read state: {error}"))
}

pub(super) fn write_error(error: rusqlite::Error) -> StoreError {
    classify(&error)(format!("cannot record state: {error}"))
}

impl SqliteStore {
    /// Opens (creating if needed) the database and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut connection = Connection::open(path).map_err(read_error)?;
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(read_error)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
            .map_err(read_error)?;
        migrate(&mut connection)?;
        connection.set_prepared_statement_cache_capacity(64);
        Ok(Self {
            batches: Batcher::new(connection),
            readers: Readers {
                path: path.to_owned(),
                pool: Mutex::new(ReaderPool::default()),
                returned: Condvar::new(),
            },
        })
    }

    /// Inserts many new profiles (ids are assigned) in one transaction: for bulk imports and
    /// for seeding benchmarks, where one transaction per profile would be needlessly slow.
    pub fn insert_many(&self, records: &mut [ProfileRecord]) -> Result<(), StoreError> {
        self.batches.write(|connection| {
            for record in records.iter_mut() {
                create(connection, record).map_err(write_error)?;
            }
            Ok(())
        })
    }

    /// `PRAGMA integrity_check`, for tests and `status`.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.batches.read(|connection| {
            connection
                .one("PRAGMA integrity_check", [], |row| row.get(0))
                .map_err(read_error)
        })
    }
}

fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = connection
        .one("PRAGMA user_version", [], |row| row.get(0))
        .map_err(read_error)?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > known {
        return Err(StoreError::Internal(format!(
            "database is from an unknown version: schema version {version} is newer than \
             this agent knows ({known})"
        )));
    }
    let pending = usize::try_from(version).unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(pending) {
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(write_error)?;
        tx.execute_batch(sql).map_err(write_error)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(index + 1).unwrap_or(i64::MAX),
        )
        .map_err(write_error)?;
        tx.commit().map_err(write_error)?;
    }
    Ok(())
}

/// A profile from a row of `profile_sql().select`: `id`, then [`PROFILE_COLUMNS`] in order.
fn record_from_row(row: &Row<'_>) -> rusqlite::Result<ProfileRecord> {
    let mut column = 0..;
    let mut next = || column.next().unwrap_or(usize::MAX);
    let id = row.get(next())?;
    let account = row.get(next())?;
    let uid = row.get(next())?;
    let secret = Zeroizing::new(row.get(next())?);
    let algorithm_column = next();
    let algorithm: String = row.get(algorithm_column)?;
    let algorithm = algorithm.parse::<Algorithm>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            algorithm_column,
            rusqlite::types::Type::Text,
            e.into(),
        )
    })?;
    Ok(ProfileRecord {
        id,
        account,
        uid,
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
    })
}

/// A profile's values for [`PROFILE_COLUMNS`], in order (the secret is not copied).
fn profile_values(record: &ProfileRecord) -> [ToSqlOutput<'_>; PROFILE_COLUMNS.len()] {
    let owned = |value: Value| ToSqlOutput::Owned(value);
    let int = |value: i64| owned(Value::Integer(value));
    let opt = |value: Option<i64>| owned(value.map_or(Value::Null, Value::Integer));
    [
        ToSqlOutput::Borrowed(ValueRef::Text(record.account.as_bytes())),
        int(i64::from(record.uid)),
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
    ]
}

fn load(connection: &Connection, account: &str) -> Result<Option<ProfileRecord>, StoreError> {
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
fn create(tx: &Connection, record: &mut ProfileRecord) -> rusqlite::Result<()> {
    tx.run("DELETE FROM profiles WHERE account = ?1", [&record.account])?;
    tx.run(
        &profile_sql().insert,
        rusqlite::params_from_iter(profile_values(record)),
    )?;
    record.id = tx.last_insert_rowid();
    Ok(())
}

/// Stores new values for the account's existing profile.
fn update(tx: &Connection, record: &ProfileRecord) -> rusqlite::Result<()> {
    tx.run(
        &profile_sql().update,
        rusqlite::params_from_iter(profile_values(record)),
    )?;
    Ok(())
}

fn load_source(
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

fn save_source(
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

fn clear_sources(tx: &Connection, account: &str) -> rusqlite::Result<()> {
    tx.run("DELETE FROM source_failures WHERE account = ?1", [account])?;
    Ok(())
}

/// A `count(*)` column (never negative) as u64.
fn count(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(index)?;
    Ok(u64::try_from(value).unwrap_or(0))
}

/// Statements are prepared once per connection and reused: parsing SQL text on every
/// login was a seventh of the agent's work.
trait Cached {
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

/// One account's transaction body: read, decide, write the outcome and its audit row.
fn apply(
    connection: &Connection,
    account: &str,
    source: Option<&str>,
    decide: &mut Decision<'_>,
) -> Result<Option<ProfileRecord>, StoreError> {
    let current = load(connection, account)?;
    let source_record = match source {
        Some(source) => Some(load_source(connection, account, source)?),
        None => None,
    };
    let outcome = decide(current.as_ref(), source_record.as_ref());
    let mut forget_sources = outcome.clear_sources;
    let stored = match outcome.change {
        Change::Keep => current,
        Change::Create(mut record) => {
            forget_sources = true;
            create(connection, &mut record).map_err(write_error)?;
            Some(*record)
        }
        Change::Update(mut record) => {
            record.id = current.as_ref().map_or(0, |c| c.id);
            update(connection, &record).map_err(write_error)?;
            Some(*record)
        }
        Change::Delete => {
            forget_sources = true;
            connection
                .run("DELETE FROM profiles WHERE account = ?1", [account])
                .map_err(write_error)?;
            None
        }
    };
    if forget_sources {
        clear_sources(connection, account).map_err(write_error)?;
    } else if let (Some(source), Some(record)) = (source, outcome.source) {
        save_source(connection, account, source, &record).map_err(write_error)?;
    }
    if let Some(event) = outcome.audit {
        insert_audit(connection, &event).map_err(write_error)?;
    }
    Ok(stored)
}

fn insert_audit(connection: &Connection, event: &AuditEvent) -> rusqlite::Result<()> {
    connection.run(
        "INSERT INTO audit (at, account, uid, op, result, service, rhost, tty, ruser, \
         caller_uid, caller_pid) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
        ],
    )?;
    Ok(())
}

impl Store for SqliteStore {
    fn get(&self, account: &str) -> Result<Option<ProfileRecord>, StoreError> {
        self.readers.read(|connection| load(connection, account))
    }

    fn profile_account(&self, account: &str, uid: Option<u32>) -> Result<String, StoreError> {
        let held: Option<String> = self.readers.read(|connection| {
            connection
                .one(
                    "SELECT account FROM profiles WHERE account = ?1 OR uid = ?2 \
                     ORDER BY account = ?1 DESC, account LIMIT 1",
                    params![account, uid],
                    |row| row.get(0),
                )
                .optional()
                .map_err(read_error)
        })?;
        Ok(held.unwrap_or_else(|| account.to_owned()))
    }

    fn blocked_sources(
        &self,
        account: &str,
        now: i64,
        limit: u32,
    ) -> Result<Vec<(String, SourceRecord)>, StoreError> {
        self.readers.read(|connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT source, failures, blocked_until, last_failure_at FROM source_failures \
                     WHERE account = ?1 AND blocked_until > ?2 \
                     ORDER BY blocked_until DESC, source LIMIT ?3",
                )
                .map_err(read_error)?;
            let rows = statement
                .query_map(params![account, now, limit], |row| {
                    Ok((
                        row.get(0)?,
                        SourceRecord {
                            failures: row.get(1)?,
                            blocked_until: row.get(2)?,
                            last_failure_at: row.get(3)?,
                        },
                    ))
                })
                .map_err(read_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(read_error)
        })
    }

    fn list(&self, after: Option<&str>, limit: u32) -> Result<Vec<ProfileRecord>, StoreError> {
        self.readers.read(|connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "{} WHERE (?1 IS NULL OR account > ?1) ORDER BY account LIMIT ?2",
                    profile_sql().select
                ))
                .map_err(read_error)?;
            let rows = statement
                .query_map(params![after, limit], record_from_row)
                .map_err(read_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(read_error)
        })
    }

    fn transact(
        &self,
        account: &str,
        source: Option<&str>,
        decide: &mut Decision<'_>,
    ) -> Result<Option<ProfileRecord>, StoreError> {
        // The batch's transaction is BEGIN IMMEDIATE: it holds the write lock before anything
        // is read, so two agents (or a stray sqlite3 shell) on one file cannot both accept
        // the same code.
        self.batches
            .write(|connection| apply(connection, account, source, decide))
    }

    fn transact_each(
        &self,
        jobs: &mut [(String, Box<Decision<'_>>)],
    ) -> Result<Vec<Option<ProfileRecord>>, StoreError> {
        self.batches.write(|connection| {
            jobs.iter_mut()
                .map(|(account, decide)| apply(connection, account, None, decide.as_mut()))
                .collect()
        })
    }

    fn audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.batches
            .write(|connection| insert_audit(connection, event).map_err(write_error))
    }

    fn last_code_login(
        &self,
        account: &str,
        place: &LoginPlace<'_>,
    ) -> Result<Option<i64>, StoreError> {
        // `IS` compares NULLs as equal: a login without a tty matches only another without.
        self.readers.read(|connection| {
            connection
                .one(
                    "SELECT max(at) FROM audit WHERE account = ?1 AND op = 'authenticate' \
                     AND result IN (?6, ?7) AND caller_uid = 0 \
                     AND service IS ?2 AND rhost IS ?3 AND tty IS ?4 AND ruser IS ?5",
                    params![
                        account,
                        place.service,
                        place.rhost,
                        place.tty,
                        place.ruser,
                        AuditResult::Success.as_str(),
                        AuditResult::EmergencyCode.as_str()
                    ],
                    |row| row.get(0),
                )
                .map_err(read_error)
        })
    }

    fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        // Newest first by id: ids grow with every row, and `at` follows the clock, which can
        // step back.
        self.readers.read(|connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT id, at, account, uid, op, result, service, rhost, tty, ruser, \
                     caller_uid, caller_pid FROM audit WHERE (?1 IS NULL OR account = ?1) \
                     AND (?2 IS NULL OR at >= ?2) AND (?3 IS NULL OR id < ?3) \
                     ORDER BY id DESC LIMIT ?4",
                )
                .map_err(read_error)?;
            let values = params![query.account, query.since, query.before, query.limit];
            let rows = statement
                .query_map(values, |row| {
                    Ok(AuditEvent {
                        id: row.get(0)?,
                        at: row.get(1)?,
                        account: row.get(2)?,
                        uid: row.get(3)?,
                        op: row.get(4)?,
                        result: AuditResult::parse(&row.get::<_, String>(5)?),
                        service: row.get(6)?,
                        rhost: row.get(7)?,
                        tty: row.get(8)?,
                        ruser: row.get(9)?,
                        caller_uid: row.get(10)?,
                        caller_pid: row.get(11)?,
                    })
                })
                .map_err(read_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(read_error)
        })
    }

    fn profile_counts(&self, now: i64, window: u32) -> Result<ProfileTally, StoreError> {
        self.readers.read(|connection| {
            connection
                .one(
                    "SELECT \
                     count(*) FILTER (WHERE verified_at IS NULL), \
                     count(*) FILTER (WHERE verified_at IS NOT NULL AND enabled), \
                     count(*) FILTER (WHERE NOT enabled), \
                     count(*) FILTER (WHERE locked_until > ?1), \
                     count(*) FILTER (WHERE last_step > ?1 / period + coalesce(skew_window, ?2)) \
                     FROM profiles",
                    params![now, window],
                    |row| {
                        Ok(ProfileTally {
                            pending: count(row, 0)?,
                            active: count(row, 1)?,
                            disabled: count(row, 2)?,
                            locked: count(row, 3)?,
                            clock_ahead: count(row, 4)?,
                        })
                    },
                )
                .map_err(read_error)
        })
    }

    fn recent_attempts(&self, since: i64) -> Result<AttemptTally, StoreError> {
        self.readers.read(|connection| {
            connection
                .one(
                    &format!(
                        "SELECT \
                         count(*) FILTER (WHERE result IN ({})), \
                         count(*) FILTER (WHERE result IN ({})) \
                         FROM audit WHERE at >= ?1 AND op = 'authenticate'",
                        results_sql(Outcome::Login),
                        results_sql(Outcome::Failure)
                    ),
                    [since],
                    |row| {
                        Ok(AttemptTally {
                            logins: count(row, 0)?,
                            failures: count(row, 1)?,
                        })
                    },
                )
                .map_err(read_error)
        })
    }

    fn prune_audit(&self, before: i64, keep_rows: u64) -> Result<usize, StoreError> {
        // Ids only grow, so "beyond the newest keep_rows" is "id at or below max - keep_rows".
        let keep = i64::try_from(keep_rows).unwrap_or(i64::MAX);
        let mut deleted = 0;
        loop {
            let chunk = self.batches.write(|connection| {
                connection
                    .run(
                        // Two indexed look-ups (by time, by id): no scan of the table
                        // while the write lock is held.
                        "DELETE FROM audit WHERE \
                         id IN (SELECT id FROM audit WHERE at < ?1 LIMIT ?3) OR \
                         id IN (SELECT id FROM audit WHERE id <= (SELECT max(id) FROM audit) - ?2 \
                         ORDER BY id LIMIT ?3)",
                        params![before, keep, PRUNE_CHUNK],
                    )
                    .map_err(write_error)
            })?;
            deleted += chunk;
            if chunk == 0 {
                return Ok(deleted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! What is SQLite's own: files, migrations, bulk seeding. What every store does is in
    //! `conformance.rs`, which runs against this one too.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{CodeSettings, Outcome};

    fn record(account: &str) -> ProfileRecord {
        let settings = CodeSettings {
            algorithm: Algorithm::Sha256,
            digits: 8,
            period: 30,
        };
        ProfileRecord::new(
            account,
            1000,
            Zeroizing::new(vec![7; 20]),
            settings,
            "host",
            100,
        )
    }

    fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        (dir, store)
    }

    #[test]
    fn reopening_keeps_state_and_does_not_rerun_migrations() {
        let (dir, store) = open();
        let mut fresh = Some(record("dave"));
        store
            .transact("dave", None, &mut |_, _| {
                let change = fresh
                    .take()
                    .map_or(Change::Keep, |r| Change::Create(Box::new(r)));
                Outcome::new(change, None)
            })
            .unwrap();
        drop(store);
        let reopened = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        assert!(reopened.get("dave").unwrap().is_some());
        assert_eq!(reopened.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn insert_many_stores_every_record_in_one_go() {
        let (_dir, store) = open();
        let mut records: Vec<ProfileRecord> =
            (0..50).map(|i| record(&format!("bulk{i}"))).collect();
        store.insert_many(&mut records).unwrap();
        assert!(records.iter().all(|r| r.id > 0));
        assert_eq!(store.list(None, 100).unwrap().len(), 50);
        assert_eq!(store.get("bulk7").unwrap(), Some(records[7].clone()));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::Internal(_))
        ));
    }

    #[test]
    fn errors_say_whether_to_retry() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        assert!(
            matches!(write_error(busy), StoreError::Unavailable(m) if m.starts_with("cannot record state"))
        );
        let constraint = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
            None,
        );
        assert!(matches!(write_error(constraint), StoreError::Invalid(_)));
        let corrupt = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            None,
        );
        assert!(
            matches!(read_error(corrupt), StoreError::Internal(m) if m.starts_with("cannot read state"))
        );
    }
}
