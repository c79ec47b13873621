//! Online backups, and what a restore must not bring back: used time steps and counters.
//!
//! A backup is a consistent copy made with SQLite's backup API while the agent keeps writing,
//! then marked as a backup in its `meta` table. A database that carries the mark was restored
//! (or is being used where it was written): codes used since the backup are not recorded in
//! it, so before it answers the agent treats as used every TOTP step up to now + the window,
//! and every HOTP counter a login could have accepted (the next one and the look-ahead).

use super::{read_error, write_error, SqliteStore};
use crate::store::{StoreError, Windows};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// The `meta` key a backup carries: when it was taken (Unix seconds).
const BACKUP_MARK: &str = "backup_taken_at";

/// What a restore must not bring back. TOTP: every step up to now (?1) + the window (the
/// profile's own, else ?2) counts as used. HOTP: the counters a login could have accepted
/// since the backup (the next one and the ?3 after it) count as used, so the token must be
/// pressed past them: up to ?3 + 1 of its codes are refused (the cost of a restore). Each
/// further login since the backup could have moved the counter on by as much again; the
/// account's next login moves it past those.
const FORGET_HISTORY: &str = "UPDATE profiles SET last_step = CASE kind \
    WHEN 'hotp' THEN coalesce(last_step, -1) + 1 + ?3 \
    ELSE max(coalesce(last_step, -1), ?1 / period + coalesce(skew_window, ?2)) END";

impl SqliteStore {
    /// Writes a consistent copy of the database at `db` to `to`, created 0600 (never over an
    /// existing file), marked as a backup taken at `now`.
    pub fn backup(db: &Path, to: &Path, now: i64) -> Result<(), StoreError> {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)
            .map_err(|e| StoreError::Invalid(format!("cannot create {}: {e}", to.display())))?;
        let source = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(read_error)?;
        source
            .busy_timeout(Duration::from_secs(5))
            .map_err(read_error)?;
        let mut copy = Connection::open(to).map_err(write_error)?;
        rusqlite::backup::Backup::new(&source, &mut copy)
            .and_then(|backup| backup.run_to_completion(256, Duration::from_millis(5), None))
            .map_err(write_error)?;
        copy.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![BACKUP_MARK, now.to_string()],
        )
        .map_err(write_error)?;
        // Fold the copy's journal into the one file before anyone moves it.
        copy.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(write_error)?;
        Ok(())
    }

    /// When this database is a restored backup: marks codes used for every profile (see
    /// [`FORGET_HISTORY`]) and removes the mark, all in one transaction. Returns when the
    /// backup was taken and how many profiles moved forward; `None` when it is no backup.
    pub fn forget_history_if_restored(
        &self,
        now: i64,
        windows: Windows,
    ) -> Result<Option<(i64, usize)>, StoreError> {
        self.batches.write(|connection| {
            let taken: Option<String> = connection
                .query_row(
                    "SELECT value FROM meta WHERE key = ?1",
                    [BACKUP_MARK],
                    |row| row.get(0),
                )
                .optional()
                .map_err(read_error)?;
            let Some(taken) = taken else {
                return Ok(None);
            };
            let moved = connection
                .execute(FORGET_HISTORY, params![now, windows.totp, windows.hotp])
                .map_err(write_error)?;
            connection
                .execute("DELETE FROM meta WHERE key = ?1", [BACKUP_MARK])
                .map_err(write_error)?;
            Ok(Some((taken.parse().unwrap_or(0), moved)))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{Change, CodeSettings, Outcome, ProfileRecord, Store};
    use pam_totp_proto::{Algorithm, ProfileKind};
    use zeroize::Zeroizing;

    const WINDOWS: Windows = Windows { totp: 1, hotp: 10 };

    fn create(store: &SqliteStore, record: ProfileRecord) {
        let mut fresh = Some(record);
        store
            .transact(
                &fresh.as_ref().unwrap().account.clone(),
                None,
                &mut |_, _| {
                    let change = fresh
                        .take()
                        .map_or(Change::Keep, |r| Change::Create(Box::new(r)));
                    Outcome::new(change, None)
                },
            )
            .unwrap();
    }

    #[test]
    fn a_restored_backup_treats_every_step_to_now_plus_the_window_as_used() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("profiles.sqlite3");
        let store = SqliteStore::open(&db).unwrap();
        let settings = CodeSettings {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
        };
        let profile = |account: &str, kind: ProfileKind, last_step: Option<i64>| ProfileRecord {
            last_step,
            kind,
            ..ProfileRecord::new(account, 1000, Zeroizing::new(vec![1; 20]), settings, "h", 0)
        };
        create(&store, profile("amy", ProfileKind::Totp, Some(5)));
        // HOTP: one that accepted counter 7, one that accepted nothing yet.
        create(&store, profile("hal", ProfileKind::Hotp, Some(7)));
        create(&store, profile("hank", ProfileKind::Hotp, None));
        // The live database is no backup.
        assert_eq!(
            store.forget_history_if_restored(3000, WINDOWS).unwrap(),
            None
        );
        let copy = dir.path().join("backup.sqlite3");
        SqliteStore::backup(&db, &copy, 2000).unwrap();
        assert!(
            SqliteStore::backup(&db, &copy, 2000).is_err(),
            "never overwrites"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let restored = SqliteStore::open(&copy).unwrap();
        assert_eq!(
            restored.forget_history_if_restored(3000, WINDOWS).unwrap(),
            Some((2000, 3))
        );
        let last_step = |account: &str| restored.get(account).unwrap().unwrap().last_step;
        // TOTP: 3000 / 30 + 1.
        assert_eq!(last_step("amy"), Some(101));
        // HOTP: the next counter and the 10 after it count as used, whatever the clock says.
        assert_eq!(last_step("hal"), Some(18));
        assert_eq!(last_step("hank"), Some(10));
        // Once only.
        assert_eq!(
            restored.forget_history_if_restored(3000, WINDOWS).unwrap(),
            None
        );
        assert_eq!(last_step("hal"), Some(18));
    }
}
