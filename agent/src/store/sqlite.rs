//! The SQLite store: one row per profile, an audit table, WAL with full sync so an
//! acknowledged login or enrollment survives a crash; concurrent writes share commits
//! (see `batch`).

use super::batch::Batcher;
use super::{
    AuditEvent, AuditQuery, Change, Decision, LoginPlace, ProfileRecord, SourceRecord, Store,
    StoreError,
};
use pam_totp_proto::Algorithm;
use pam_totp_proto::{ProfileCounts, RecentAttempts};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
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

/// Audit results that let a login in, and those that count as failed attempts.
const LOGIN_RESULTS: &str = "'success', 'emergency_code', 'grace'";
const FAILURE_RESULTS: &str = "'wrong_code', 'replay', 'malformed_code', 'locked'";

const PROFILE_COLUMNS: &str = "id, account, uid, secret, algorithm, digits, period, issuer, \
     comment, created_at, changed_at, verified_at, last_used_at, enabled, last_step, \
     failed_attempts, locked_until, emergency_codes, skew_window";

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

fn read_error(error: rusqlite::Error) -> StoreError {
    StoreError::Read(error.to_string())
}

fn write_error(error: rusqlite::Error) -> StoreError {
    StoreError::Write(error.to_string())
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
                record.id = 0;
                save(connection, record).map_err(write_error)?;
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
        return Err(StoreError::Schema(format!(
            "schema version {version} is newer than this agent knows ({known})"
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

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<ProfileRecord> {
    let algorithm: String = row.get("algorithm")?;
    let algorithm = algorithm.parse::<Algorithm>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, e.into())
    })?;
    let codes: String = row.get("emergency_codes")?;
    Ok(ProfileRecord {
        id: row.get("id")?,
        account: row.get("account")?,
        uid: row.get("uid")?,
        secret: Zeroizing::new(row.get("secret")?),
        algorithm,
        digits: row.get("digits")?,
        period: row.get("period")?,
        issuer: row.get("issuer")?,
        comment: row.get("comment")?,
        created_at: row.get("created_at")?,
        changed_at: row.get("changed_at")?,
        verified_at: row.get("verified_at")?,
        last_used_at: row.get("last_used_at")?,
        enabled: row.get("enabled")?,
        last_step: row.get("last_step")?,
        failed_attempts: row.get("failed_attempts")?,
        locked_until: row.get("locked_until")?,
        emergency_codes: codes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        window: row.get("skew_window")?,
    })
}

fn load(connection: &Connection, account: &str) -> Result<Option<ProfileRecord>, StoreError> {
    connection
        .one(
            &format!("SELECT {PROFILE_COLUMNS} FROM profiles WHERE account = ?1"),
            [account],
            record_from_row,
        )
        .optional()
        .map_err(read_error)
}

fn save(tx: &Connection, record: &mut ProfileRecord) -> rusqlite::Result<()> {
    let codes = record.emergency_codes.join(",");
    let values = params![
        record.account,
        record.uid,
        &record.secret[..],
        record.algorithm.as_str(),
        record.digits,
        record.period,
        record.issuer,
        record.comment,
        record.created_at,
        record.changed_at,
        record.verified_at,
        record.last_used_at,
        record.enabled,
        record.last_step,
        record.failed_attempts,
        record.locked_until,
        codes,
        record.window,
    ];
    if record.id == 0 {
        tx.run("DELETE FROM profiles WHERE account = ?1", [&record.account])?;
        tx.run(
            "INSERT INTO profiles (account, uid, secret, algorithm, digits, period, issuer, \
             comment, created_at, changed_at, verified_at, last_used_at, enabled, last_step, \
             failed_attempts, locked_until, emergency_codes, skew_window) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
             ?18)",
            values,
        )?;
        record.id = tx.last_insert_rowid();
    } else {
        let mut with_id = values.to_vec();
        with_id.push(&record.id);
        tx.run(
            "UPDATE profiles SET account = ?1, uid = ?2, secret = ?3, algorithm = ?4, \
             digits = ?5, period = ?6, issuer = ?7, comment = ?8, created_at = ?9, \
             changed_at = ?10, verified_at = ?11, last_used_at = ?12, enabled = ?13, \
             last_step = ?14, failed_attempts = ?15, locked_until = ?16, \
             emergency_codes = ?17, skew_window = ?18 WHERE id = ?19",
            with_id.as_slice(),
        )?;
    }
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
        Change::Save(mut record) => {
            forget_sources |= record.id == 0;
            save(connection, &mut record).map_err(write_error)?;
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
            event.result,
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
                    "SELECT {PROFILE_COLUMNS} FROM profiles WHERE (?1 IS NULL OR account > ?1) \
                     ORDER BY account LIMIT ?2"
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
                     AND result IN ('success', 'emergency_code') AND caller_uid = 0 \
                     AND service IS ?2 AND rhost IS ?3 AND tty IS ?4 AND ruser IS ?5",
                    params![account, place.service, place.rhost, place.tty, place.ruser],
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
                        result: row.get(5)?,
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

    fn profile_counts(&self, now: i64, window: u32) -> Result<ProfileCounts, StoreError> {
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
                        Ok(ProfileCounts {
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

    fn recent_attempts(&self, since: i64) -> Result<RecentAttempts, StoreError> {
        self.readers.read(|connection| {
            connection
                .one(
                    &format!(
                        "SELECT \
                         count(*) FILTER (WHERE result IN ({LOGIN_RESULTS})), \
                         count(*) FILTER (WHERE result IN ({FAILURE_RESULTS})) \
                         FROM audit WHERE at >= ?1 AND op = 'authenticate'"
                    ),
                    [since],
                    |row| {
                        Ok(RecentAttempts {
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
    use super::*;
    use crate::store::Outcome;

    fn record(account: &str) -> ProfileRecord {
        ProfileRecord {
            id: 0,
            account: account.into(),
            uid: 1000,
            secret: Zeroizing::new(vec![7; 20]),
            algorithm: Algorithm::Sha256,
            digits: 8,
            period: 30,
            issuer: "host".into(),
            comment: Some("laptop".into()),
            created_at: 100,
            changed_at: 100,
            verified_at: None,
            last_used_at: None,
            enabled: true,
            last_step: None,
            failed_attempts: 0,
            locked_until: None,
            emergency_codes: vec!["aa:bb".into(), "cc:dd".into()],
            window: Some(3),
        }
    }

    fn open() -> (tempfile::TempDir, SqliteStore) {
        let Ok(dir) = tempfile::tempdir() else {
            unreachable!("no temp dir");
        };
        let Ok(store) = SqliteStore::open(&dir.path().join("db.sqlite3")) else {
            unreachable!("cannot open store");
        };
        (dir, store)
    }

    fn save_record(store: &SqliteStore, rec: ProfileRecord) -> Option<ProfileRecord> {
        let account = rec.account.clone();
        let mut pending = Some(rec);
        store
            .transact(&account, None, &mut |_, _| {
                Outcome::new(
                    pending
                        .take()
                        .map_or(Change::Keep, |r| Change::Save(Box::new(r))),
                    None,
                )
            })
            .ok()
            .flatten()
    }

    #[test]
    fn records_round_trip_and_updates_keep_the_id() {
        let (_dir, store) = open();
        let Some(saved) = save_record(&store, record("alice")) else {
            unreachable!("save failed");
        };
        assert!(saved.id > 0);
        assert_eq!(store.get("alice").ok().flatten(), Some(saved.clone()));
        let mut changed = saved.clone();
        changed.last_step = Some(42);
        changed.emergency_codes.pop();
        let updated = save_record(&store, changed.clone());
        assert_eq!(updated.as_ref().map(|r| r.id), Some(saved.id));
        assert_eq!(store.get("alice").ok().flatten(), Some(changed));
    }

    #[test]
    fn insert_replaces_with_a_new_id_and_delete_removes() {
        let (_dir, store) = open();
        let first = save_record(&store, record("bob")).map(|r| r.id);
        let second = save_record(&store, record("bob")).map(|r| r.id);
        assert_ne!(first, second);
        assert_eq!(store.list(None, 10).map(|l| l.len()).ok(), Some(1));
        let gone = store.transact("bob", None, &mut |_, _| Outcome::new(Change::Delete, None));
        assert!(matches!(gone, Ok(None)));
        assert_eq!(store.get("bob").ok().flatten(), None);
    }

    #[test]
    fn audit_rows_commit_with_the_change() {
        let (dir, store) = open();
        let event = AuditEvent {
            at: 5,
            account: "carol".into(),
            op: "authenticate".into(),
            result: "not_enrolled".into(),
            ..AuditEvent::default()
        };
        let mut once = Some(event);
        assert!(store
            .transact("carol", None, &mut |_, _| Outcome::new(
                Change::Keep,
                once.take()
            ))
            .is_ok());
        drop(store);
        let Ok(connection) = Connection::open(dir.path().join("db.sqlite3")) else {
            unreachable!("reopen failed");
        };
        let count: Option<i64> = connection
            .query_row(
                "SELECT count(*) FROM audit WHERE account = 'carol'",
                [],
                |r| r.get(0),
            )
            .ok();
        assert_eq!(count, Some(1));
    }

    #[test]
    fn reopening_keeps_state_and_does_not_rerun_migrations() {
        let (dir, store) = open();
        assert!(save_record(&store, record("dave")).is_some());
        drop(store);
        let reopened = SqliteStore::open(&dir.path().join("db.sqlite3"));
        assert!(reopened
            .as_ref()
            .ok()
            .and_then(|s| s.get("dave").ok().flatten())
            .is_some());
        assert_eq!(
            reopened
                .ok()
                .and_then(|s| s.integrity_check().ok())
                .as_deref(),
            Some("ok")
        );
    }

    fn set_source(store: &SqliteStore, account: &str, source: &str, record: SourceRecord) {
        assert!(store
            .transact(account, Some(source), &mut |_, _| Outcome {
                source: Some(record),
                ..Outcome::new(Change::Keep, None)
            })
            .is_ok());
    }

    fn source_of(store: &SqliteStore, account: &str, source: &str) -> Option<SourceRecord> {
        let mut seen = None;
        let _ = store.transact(account, Some(source), &mut |_, record| {
            seen = record.copied();
            Outcome::new(Change::Keep, None)
        });
        seen
    }

    #[test]
    fn sources_are_kept_cleared_pruned_and_forgotten_with_the_profile() {
        let (_dir, store) = open();
        assert!(save_record(&store, record("erin")).is_some());
        let blocked = SourceRecord {
            failures: 5,
            blocked_until: Some(1_000_030),
            last_failure_at: 1_000_000,
        };
        set_source(&store, "erin", "rhost:198.51.100.7", blocked);
        assert_eq!(
            source_of(&store, "erin", "rhost:198.51.100.7"),
            Some(blocked)
        );
        // An unknown source reads as clear.
        assert_eq!(
            source_of(&store, "erin", "rhost:203.0.113.9"),
            Some(SourceRecord::default())
        );
        // A day later, another source's failure prunes the stale, unblocked one...
        let stale = SourceRecord {
            failures: 2,
            blocked_until: None,
            last_failure_at: 1_000_000,
        };
        set_source(&store, "erin", "uid:1000", stale);
        let later = SourceRecord {
            failures: 1,
            blocked_until: None,
            last_failure_at: 1_000_000 + SOURCE_RETENTION_SECONDS + 60,
        };
        set_source(&store, "erin", "local", later);
        assert_eq!(
            source_of(&store, "erin", "uid:1000"),
            Some(SourceRecord::default())
        );
        assert_eq!(source_of(&store, "erin", "local"), Some(later));
        // ... and a clear record deletes the row.
        set_source(&store, "erin", "local", SourceRecord::default());
        assert_eq!(
            source_of(&store, "erin", "local"),
            Some(SourceRecord::default())
        );
        // Replacing the profile forgets every source.
        set_source(&store, "erin", "local", later);
        assert!(save_record(&store, record("erin")).is_some());
        assert_eq!(
            source_of(&store, "erin", "local"),
            Some(SourceRecord::default())
        );
    }

    #[test]
    fn insert_many_stores_every_record_in_one_go() {
        let (_dir, store) = open();
        let mut records: Vec<ProfileRecord> =
            (0..50).map(|i| record(&format!("bulk{i}"))).collect();
        assert!(store.insert_many(&mut records).is_ok());
        assert!(records.iter().all(|r| r.id > 0));
        assert_eq!(store.list(None, 100).map(|l| l.len()).ok(), Some(50));
        // Pages follow each other in account order, without gaps or repeats.
        let first = store.list(None, 20).unwrap_or_default();
        let last_of_first = first.last().map(|r| r.account.clone());
        let second = store
            .list(last_of_first.as_deref(), 100)
            .unwrap_or_default();
        assert_eq!((first.len(), second.len()), (20, 30));
        assert!(first.iter().chain(&second).map(|r| &r.account).is_sorted());
        assert_eq!(store.get("bulk7").ok().flatten(), Some(records[7].clone()));
    }

    #[test]
    fn audit_queries_counts_and_pruning() {
        let (_dir, store) = open();
        let mut active = record("fay");
        active.verified_at = Some(100);
        active.locked_until = Some(10_000);
        let mut disabled = record("gus");
        disabled.enabled = false;
        assert!(store
            .insert_many(&mut [active, disabled, record("hal")])
            .is_ok());
        let counts = store.profile_counts(500, 1).ok();
        assert_eq!(
            counts,
            Some(ProfileCounts {
                pending: 2,
                active: 1,
                disabled: 1,
                locked: 1,
                clock_ahead: 0,
            })
        );
        for (at, account, result) in [
            (1_000, "fay", "success"),
            (2_000, "fay", "wrong_code"),
            (3_000, "gus", "grace"),
            (4_000, "fay", "replay"),
        ] {
            let event = AuditEvent {
                at,
                account: account.into(),
                op: "authenticate".into(),
                result: result.into(),
                ..AuditEvent::default()
            };
            assert!(store.audit(&event).is_ok());
        }
        let fay = AuditQuery {
            account: Some("fay".into()),
            since: Some(1_500),
            before: None,
            limit: 10,
        };
        let results: Vec<String> = store
            .audit_log(&fay)
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.result)
            .collect();
        assert_eq!(results, ["replay", "wrong_code"]);
        let all = AuditQuery {
            limit: 2,
            ..AuditQuery::default()
        };
        assert_eq!(store.audit_log(&all).map(|l| l.len()).ok(), Some(2));
        assert_eq!(
            store.recent_attempts(1_500).ok(),
            Some(RecentAttempts {
                logins: 1,
                failures: 2
            })
        );
        assert_eq!(store.prune_audit(2_500, u64::MAX).ok(), Some(2));
        assert_eq!(
            store
                .audit_log(&AuditQuery {
                    limit: 10,
                    ..AuditQuery::default()
                })
                .map(|l| l.len())
                .ok(),
            Some(2)
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let Ok(dir) = tempfile::tempdir() else {
            unreachable!("no temp dir");
        };
        let path = dir.path().join("db.sqlite3");
        if let Ok(connection) = Connection::open(&path) {
            let _ = connection.pragma_update(None, "user_version", 99);
        }
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::Schema(_))
        ));
    }

    /// Reads use their own connections: during an open batch they neither wait for it nor
    /// see its uncommitted changes.
    #[test]
    fn reads_see_committed_state_without_waiting_for_an_open_batch() {
        let (_dir, store) = open();
        let store = std::sync::Arc::new(store);
        let mut seen = None;
        let mut pending = Some(record("ivy"));
        let reader = std::sync::Arc::clone(&store);
        let mut jobs: Vec<(String, Box<Decision<'_>>)> = vec![
            (
                "ivy".into(),
                Box::new(move |_, _| {
                    Outcome::new(
                        pending
                            .take()
                            .map_or(Change::Keep, |r| Change::Save(Box::new(r))),
                        None,
                    )
                }),
            ),
            (
                "other".into(),
                Box::new(|_, _| {
                    // ivy is saved in this still-open batch; read it from another thread.
                    let reader = std::sync::Arc::clone(&reader);
                    let (tx, rx) = std::sync::mpsc::channel();
                    std::thread::spawn(move || {
                        let _ = tx.send(reader.get("ivy").map(|r| r.is_some()));
                    });
                    seen = Some(rx.recv_timeout(Duration::from_secs(5)));
                    Outcome::new(Change::Keep, None)
                }),
            ),
        ];
        assert!(store.transact_each(&mut jobs).is_ok());
        drop(jobs);
        assert!(
            matches!(seen, Some(Ok(Ok(false)))),
            "the read waited for, or saw, the open batch: {seen:?}"
        );
        assert!(store.get("ivy").ok().flatten().is_some());
    }
}
