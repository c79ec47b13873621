//! The schema: ordered migrations, run at open; `PRAGMA user_version` counts how many ran.

use super::rows::Cached;
use super::{read_error, write_error};
use crate::store::StoreError;
use rusqlite::{Connection, TransactionBehavior};

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
    "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
",
    "
    ALTER TABLE profiles ADD COLUMN owner TEXT;
    ALTER TABLE audit ADD COLUMN host TEXT;
",
];

pub(super) fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
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
