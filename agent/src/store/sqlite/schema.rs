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
    "
    ALTER TABLE profiles ADD COLUMN kind TEXT NOT NULL DEFAULT 'totp'
        CHECK (kind IN ('totp', 'hotp'));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn profiles_from_before_hotp_become_totp_profiles() {
        let mut connection = Connection::open_in_memory().unwrap();
        // A database as the agent left it before the `kind` column (the last migration).
        let before = MIGRATIONS.len() - 1;
        for sql in &MIGRATIONS[..before] {
            connection.execute_batch(sql).unwrap();
        }
        connection
            .pragma_update(None, "user_version", i64::try_from(before).unwrap())
            .unwrap();
        connection
            .execute_batch(
                "INSERT INTO profiles (account, uid, secret, algorithm, digits, period, issuer, \
                 created_at, changed_at, enabled, last_step) \
                 VALUES ('old', 1000, x'00', 'SHA1', 6, 30, 'h', 0, 0, 1, 56666666);",
            )
            .unwrap();
        migrate(&mut connection).unwrap();
        let kind: String = connection
            .query_row("SELECT kind FROM profiles WHERE account = 'old'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(kind, "totp");
        // Only the two kinds there are.
        assert!(connection
            .execute_batch("UPDATE profiles SET kind = 'motp'")
            .is_err());
    }
}
