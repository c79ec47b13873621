//! Online backups, and what a restore must not bring back: used time steps.
//!
//! A backup is a consistent copy made with SQLite's backup API while the agent keeps writing,
//! then marked as a backup in its `meta` table. A database that carries the mark was restored
//! (or is being used where it was written): codes used since the backup are not recorded in
//! it, so the agent treats every step up to now + the window as used before it answers.

use super::{read_error, write_error, SqliteStore};
use crate::store::StoreError;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// The `meta` key a backup carries: when it was taken (Unix seconds).
const BACKUP_MARK: &str = "backup_taken_at";

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

    /// When this database is a restored backup: treats every time step up to `now` + the
    /// window (the profile's own, else `window`) as used for every profile and removes the
    /// mark, all in one transaction. Returns when the backup was taken and how many profiles
    /// moved forward; `None` when it is no backup.
    pub fn forget_history_if_restored(
        &self,
        now: i64,
        window: u32,
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
                .execute(
                    "UPDATE profiles SET last_step = \
                     max(coalesce(last_step, -1), ?1 / period + coalesce(skew_window, ?2))",
                    params![now, window],
                )
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
    use pam_totp_proto::Algorithm;
    use zeroize::Zeroizing;

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
        let mut fresh = Some(ProfileRecord {
            last_step: Some(5),
            ..ProfileRecord::new("amy", 1000, Zeroizing::new(vec![1; 20]), settings, "h", 0)
        });
        store
            .transact("amy", None, &mut |_, _| {
                let change = fresh
                    .take()
                    .map_or(Change::Keep, |r| Change::Create(Box::new(r)));
                Outcome::new(change, None)
            })
            .unwrap();
        // The live database is no backup.
        assert_eq!(store.forget_history_if_restored(3000, 1).unwrap(), None);
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
            restored.forget_history_if_restored(3000, 1).unwrap(),
            Some((2000, 1))
        );
        assert_eq!(restored.get("amy").unwrap().unwrap().last_step, Some(101));
        // Once only.
        assert_eq!(restored.forget_history_if_restored(3000, 1).unwrap(), None);
    }
}
