//! Group commit. Concurrent write jobs share one SQLite transaction, so one fsync makes a whole
//! batch durable instead of one fsync per login. No job's caller hears back before its batch
//! has committed: `synchronous = FULL` durability is kept, only its cost is shared.
//!
//! Jobs run one at a time on the single connection, each inside its own SAVEPOINT, so the
//! order of decisions is exactly as if every job had its own transaction, and a failing job
//! rolls back only itself. The thread that finishes a job with nobody else waiting to run one
//! commits the batch for everyone in it.

use super::StoreError;
use rusqlite::Connection;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Failed batches remembered for their waiters; a waiter is never this far behind.
const REMEMBERED_FAILURES: usize = 64;

struct Writer {
    connection: Connection,
    /// The number of the batch whose transaction is open, if one is.
    open: Option<u64>,
    last_started: u64,
}

#[derive(Default)]
struct Finished {
    /// Batches finish in order: every batch up to this one has committed or failed.
    through: u64,
    failures: VecDeque<(u64, String)>,
}

pub struct Batcher {
    writer: Mutex<Writer>,
    /// Threads queued to run a write job; while any are, the current batch stays open.
    queued: AtomicUsize,
    finished: Mutex<Finished>,
    batch_done: Condvar,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every holder leaves the state consistent at each step (SQLite rolls back what it must),
    // so a lock poisoned by a panic elsewhere still guards usable state.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn write_error(error: rusqlite::Error) -> StoreError {
    StoreError::Write(error.to_string())
}

/// Runs `job` inside a SAVEPOINT: kept on success, undone on failure.
fn in_savepoint<T>(
    connection: &Connection,
    job: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    connection
        .execute_batch("SAVEPOINT job")
        .map_err(write_error)?;
    let result = job(connection).and_then(|value| {
        connection
            .execute_batch("RELEASE job")
            .map(|()| value)
            .map_err(write_error)
    });
    if result.is_err() {
        let _ = connection.execute_batch("ROLLBACK TO job; RELEASE job");
    }
    result
}

impl Batcher {
    pub fn new(connection: Connection) -> Self {
        Self {
            writer: Mutex::new(Writer {
                connection,
                open: None,
                last_started: 0,
            }),
            queued: AtomicUsize::new(0),
            finished: Mutex::new(Finished::default()),
            batch_done: Condvar::new(),
        }
    }

    /// Reads on the connection. Inside an open batch this sees its not yet committed changes,
    /// as a transaction sees its own.
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        read(&lock(&self.writer).connection)
    }

    /// Runs `job` in the current batch and returns once that batch is durably committed.
    pub fn write<T>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let mut writer = lock(&self.writer);
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let batch = match writer.open {
            Some(batch) => batch,
            None => {
                writer
                    .connection
                    .execute_batch("BEGIN IMMEDIATE")
                    .map_err(write_error)?;
                writer.last_started += 1;
                writer.open = Some(writer.last_started);
                writer.last_started
            }
        };
        let result = in_savepoint(&writer.connection, job);
        if self.queued.load(Ordering::SeqCst) > 0 {
            // Someone is queued behind us and will commit (or pass the duty on).
            drop(writer);
            self.wait_for(batch)?;
            return result;
        }
        let committed = writer
            .connection
            .execute_batch("COMMIT")
            .map_err(|e| e.to_string());
        if committed.is_err() {
            // Nothing of this batch was stored: end the transaction and tell everyone in it.
            let _ = writer.connection.execute_batch("ROLLBACK");
        }
        writer.open = None;
        self.finish(batch, committed.clone());
        drop(writer);
        committed.map_err(|e| StoreError::Write(format!("cannot record state: {e}")))?;
        result
    }

    fn finish(&self, batch: u64, committed: Result<(), String>) {
        let mut finished = lock(&self.finished);
        finished.through = batch;
        if let Err(error) = committed {
            finished.failures.push_back((batch, error));
            if finished.failures.len() > REMEMBERED_FAILURES {
                finished.failures.pop_front();
            }
        }
        self.batch_done.notify_all();
    }

    fn wait_for(&self, batch: u64) -> Result<(), StoreError> {
        let mut finished = lock(&self.finished);
        while finished.through < batch {
            finished = self
                .batch_done
                .wait(finished)
                .unwrap_or_else(PoisonError::into_inner);
        }
        match finished
            .failures
            .iter()
            .find(|(failed, _)| *failed == batch)
        {
            Some((_, error)) => Err(StoreError::Write(format!("cannot record state: {error}"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Barrier};

    fn batcher() -> (tempfile::TempDir, Arc<Batcher>) {
        let dir = tempfile::tempdir().unwrap();
        let connection = Connection::open(dir.path().join("db")).unwrap();
        connection
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER NOT NULL);")
            .unwrap();
        (dir, Arc::new(Batcher::new(connection)))
    }

    fn count(batcher: &Batcher) -> i64 {
        batcher
            .read(|c| {
                c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                    .map_err(|e| StoreError::Read(e.to_string()))
            })
            .unwrap()
    }

    #[test]
    fn concurrent_jobs_all_commit() {
        let (_dir, batcher) = batcher();
        let threads = 16;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (batcher, barrier) = (Arc::clone(&batcher), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    for j in 0..20 {
                        batcher
                            .write(|c| {
                                c.execute(
                                    "INSERT INTO t (v) VALUES (?1)",
                                    [i64::try_from(i * 100 + j).unwrap_or(0)],
                                )
                                .map_err(write_error)
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(count(&batcher), 16 * 20);
        // Nothing is left open: a plain transaction can start.
        assert!(lock(&batcher.writer).open.is_none());
    }

    #[test]
    fn a_failing_job_rolls_back_only_itself() {
        let (_dir, batcher) = batcher();
        batcher
            .write(|c| {
                c.execute("INSERT INTO t (v) VALUES (1)", [])
                    .map_err(write_error)
            })
            .unwrap();
        let failed = batcher.write(|c| {
            c.execute("INSERT INTO t (v) VALUES (2)", [])
                .map_err(write_error)?;
            // NOT NULL violation: the job fails after a successful insert.
            c.execute("INSERT INTO t (v) VALUES (NULL)", [])
                .map_err(write_error)
        });
        assert!(failed.is_err());
        assert_eq!(count(&batcher), 1);
    }
}
