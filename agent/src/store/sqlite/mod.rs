//! The SQLite store: one row per profile, an audit table, WAL with full sync so an
//! acknowledged login or enrollment survives a crash; concurrent writes share commits
//! (`batch`), reads use their own connections (`readers`).

mod backup;
mod batch;
mod readers;
mod rows;
mod schema;

use super::{
    AttemptTally, AuditEvent, AuditQuery, Change, Decision, LoginPlace, ProfileRecord,
    ProfileTally, SourceRecord, Store, StoreError,
};
use batch::Batcher;
use pam_totp_proto::audit::Outcome;
use pam_totp_proto::AuditResult;
use readers::Readers;
use rows::*;
use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use std::path::Path;
use std::time::Duration;

/// Audit rows deleted per write job when pruning, so logins queue behind small batches.
const PRUNE_CHUNK: i64 = 2000;

pub struct SqliteStore {
    batches: Batcher,
    readers: Readers,
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

pub(crate) fn read_error(error: rusqlite::Error) -> StoreError {
    classify(&error)(format!("cannot read state: {error}"))
}

pub(crate) fn write_error(error: rusqlite::Error) -> StoreError {
    classify(&error)(format!("cannot record state: {error}"))
}

impl SqliteStore {
    /// Opens (creating if needed) the database and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut connection = open_connection(path)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
            .map_err(read_error)?;
        schema::migrate(&mut connection)?;
        connection.set_prepared_statement_cache_capacity(64);
        Ok(Self {
            batches: Batcher::new(connection),
            readers: Readers::new(path),
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

/// Opens a connection to the database as every connection of the store is set up.
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path).map_err(read_error)?;
    connection
        .busy_timeout(Duration::from_secs(5))
        .map_err(read_error)?;
    // The bundled SQLite is built with STAT4, which marks a statement expired whenever a
    // parameter its plan could depend on is re-bound: every cached statement was parsed and
    // planned again on each use (12% of the agent's CPU at 64 clients). The query planner
    // stability guarantee keeps each statement's plan, which is all these point queries need.
    connection
        .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(read_error)?;
    Ok(connection)
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
            update(connection, current.as_ref(), &record).map_err(write_error)?;
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
        // Unchanged (a login with no failures from it): nothing to write.
        if Some(&record) != source_record.as_ref() {
            save_source(connection, account, source, &record).map_err(write_error)?;
        }
    }
    if let Some(event) = outcome.audit {
        insert_audit(connection, &event).map_err(write_error)?;
    }
    Ok(stored)
}

impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.batches.register_metrics(registry);
    }

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
                     caller_uid, caller_pid, host FROM audit WHERE (?1 IS NULL OR account = ?1) \
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
                        host: row.get(12)?,
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
                     count(*) FILTER (WHERE kind = 'totp' \
                     AND last_step > ?1 / period + coalesce(skew_window, ?2)), \
                     (SELECT count(*) FROM source_failures WHERE blocked_until > ?1) \
                     FROM profiles",
                    params![now, window],
                    |row| {
                        Ok(ProfileTally {
                            pending: count(row, 0)?,
                            active: count(row, 1)?,
                            disabled: count(row, 2)?,
                            locked: count(row, 3)?,
                            clock_ahead: count(row, 4)?,
                            blocked_sources: count(row, 5)?,
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
    use pam_totp_proto::Algorithm;
    use zeroize::Zeroizing;

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
    fn an_update_writes_only_what_changed() {
        let (_dir, store) = open();
        let mut records = vec![record("erin")];
        store.insert_many(&mut records).unwrap();
        let stored = store.get("erin").unwrap().unwrap();
        let mut changed = stored.clone();
        changed.last_step = Some(12345);
        changed.uid = 1001;
        let writes = |next: &ProfileRecord| {
            store
                .batches
                .write(|connection| {
                    let before = connection.total_changes();
                    update(connection, Some(&stored), next).map_err(write_error)?;
                    Ok(connection.total_changes() - before)
                })
                .unwrap()
        };
        assert_eq!(writes(&stored), 0, "an unchanged profile is not written");
        assert_eq!(writes(&changed), 1);
        assert_eq!(store.get("erin").unwrap(), Some(changed.clone()));
        // The uid index followed the change.
        assert_eq!(store.profile_account("alias", Some(1001)).unwrap(), "erin");
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
