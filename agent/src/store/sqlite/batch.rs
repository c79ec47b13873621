//! Group commit. Concurrent write jobs share one SQLite transaction, so one fsync makes a whole
//! batch durable instead of one fsync per login. No job's caller hears back before its batch
//! has committed: `synchronous = FULL` durability is kept, only its cost is shared.
//!
//! Jobs run one at a time on the single connection, each inside its own SAVEPOINT, so the
//! order of decisions is exactly as if every job had its own transaction, and a failing job
//! rolls back only itself. The thread that finishes a job with nobody else waiting to run one
//! commits the batch for everyone in it.

use super::write_error;
use super::StoreError;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use rusqlite::Connection;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::Instant;

/// The fate of one batch, shared by every job in it: unset until the batch has ended, then
/// whether its COMMIT succeeded. Each waiter holds its own batch's handle, so no waiter can
/// ever read another batch's result, however far behind it falls.
///
/// Waiters park one by one and are unparked one by one: a condition variable's wake-all would
/// have them all queue again on one mutex to read the result (a convoy of context switches
/// at every commit of a large batch).
#[derive(Default)]
struct BatchFate {
    result: OnceLock<Result<(), StoreError>>,
    waiters: Mutex<Vec<Thread>>,
}

impl BatchFate {
    fn settle(&self, result: Result<(), StoreError>) {
        let _ = self.result.set(result);
        for waiter in std::mem::take(&mut *lock(&self.waiters)) {
            waiter.unpark();
        }
    }

    fn wait(&self) -> Result<(), StoreError> {
        // Registered before looking: a settle after the look unparks this thread, and an
        // unpark before the park makes the park return at once.
        lock(&self.waiters).push(std::thread::current());
        loop {
            if let Some(result) = self.result.get() {
                return result.clone();
            }
            std::thread::park();
        }
    }
}

struct Writer {
    connection: Connection,
    /// The batch whose transaction is open, if one is.
    open: Option<Arc<BatchFate>>,
    /// Jobs run in the open batch.
    jobs: u32,
}

pub struct Batcher {
    writer: Mutex<Writer>,
    /// Jobs per committed batch, and how long each COMMIT (with its fsync) took.
    batch_jobs: Histogram,
    commit_seconds: Histogram,
    /// Threads queued to run a write job; while any are, the current batch stays open.
    queued: AtomicUsize,
    /// Tests hold a waiter here, between leaving its job and waiting for its batch.
    #[cfg(test)]
    before_wait: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every holder leaves the state consistent at each step (SQLite rolls back what it must),
    // so a lock poisoned by a panic elsewhere still guards usable state.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs one statement of the batch's own (BEGIN, COMMIT, savepoints) from the statement
/// cache: `execute_batch` would parse its text again on every job.
fn control(connection: &Connection, sql: &str) -> Result<(), StoreError> {
    connection
        .prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(|_| ())
        .map_err(write_error)
}

/// Runs `job` inside a SAVEPOINT: kept on success, undone on failure.
fn in_savepoint<T>(
    connection: &Connection,
    job: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    control(connection, "SAVEPOINT job")?;
    let result =
        job(connection).and_then(|value| control(connection, "RELEASE job").map(|()| value));
    if result.is_err() {
        let _ = control(connection, "ROLLBACK TO job");
        let _ = control(connection, "RELEASE job");
    }
    result
}

impl Batcher {
    /// Adds the group commit's histograms to `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "commit_batch_jobs",
            "Requests committed together by one group commit",
            self.batch_jobs.clone(),
        );
        registry.register(
            "commit_seconds",
            "Time one group commit (COMMIT with its fsync) took",
            self.commit_seconds.clone(),
        );
    }

    pub fn new(connection: Connection) -> Self {
        Self {
            writer: Mutex::new(Writer {
                connection,
                open: None,
                jobs: 0,
            }),
            batch_jobs: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            // 50 us to ~1.6 s.
            commit_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            queued: AtomicUsize::new(0),
            #[cfg(test)]
            before_wait: Mutex::new(None),
        }
    }

    /// Reads on the writer's connection. Inside an open batch this sees its not yet committed
    /// changes, as a transaction sees its own: for reads that must (tests, integrity checks);
    /// the store serves ordinary reads from its own read connections.
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
        let fate = match &writer.open {
            Some(fate) => Arc::clone(fate),
            None => {
                control(&writer.connection, "BEGIN IMMEDIATE")?;
                let fate = Arc::new(BatchFate::default());
                writer.open = Some(Arc::clone(&fate));
                fate
            }
        };
        writer.jobs += 1;
        let result = in_savepoint(&writer.connection, job);
        if self.queued.load(Ordering::SeqCst) > 0 {
            // Someone is queued behind us and will commit (or pass the duty on).
            drop(writer);
            #[cfg(test)]
            if let Some(gate) = lock(&self.before_wait).take() {
                let _ = gate.recv();
            }
            fate.wait()?;
            return result;
        }
        let commit_started = Instant::now();
        let committed = control(&writer.connection, "COMMIT");
        self.commit_seconds
            .observe(commit_started.elapsed().as_secs_f64());
        self.batch_jobs.observe(f64::from(writer.jobs));
        writer.jobs = 0;
        if committed.is_err() {
            // Nothing of this batch was stored: end the transaction and tell everyone in it.
            let _ = writer.connection.execute_batch("ROLLBACK");
        }
        writer.open = None;
        fate.settle(committed.clone());
        drop(writer);
        committed?;
        result
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
                    .map_err(crate::store::sqlite::read_error)
            })
            .unwrap()
    }

    /// Inserts 2, then fails on a NOT NULL violation: a job that fails after a change.
    fn insert_then_fail(c: &Connection) -> Result<usize, StoreError> {
        c.execute("INSERT INTO t (v) VALUES (2)", [])
            .map_err(write_error)?;
        c.execute("INSERT INTO t (v) VALUES (NULL)", [])
            .map_err(write_error)
    }

    /// Runs `job` in a write on a thread of its own, which then stays in its batch until
    /// another writer queues behind it, so that writer joins this batch rather than starting
    /// its own. Returns once `job` has run.
    fn hold_batch_open<T: Send + 'static>(
        batcher: &Arc<Batcher>,
        job: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> std::thread::JoinHandle<Result<T, StoreError>> {
        let (ran, job_ran) = std::sync::mpsc::channel();
        let holder = {
            let batcher = Arc::clone(batcher);
            std::thread::spawn(move || {
                batcher.write(|c| {
                    let result = job(c);
                    ran.send(()).unwrap();
                    while batcher.queued.load(Ordering::SeqCst) == 0 {
                        std::thread::yield_now();
                    }
                    result
                })
            })
        };
        job_ran.recv().unwrap();
        holder
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
        assert!(batcher.write(insert_then_fail).is_err());
        assert_eq!(count(&batcher), 1);
    }

    /// A job that fails inside a batch others share takes back only its own changes: the
    /// job before it in the same transaction still commits.
    #[test]
    fn a_failing_job_in_a_shared_batch_rolls_back_only_itself() {
        let (_dir, batcher) = batcher();
        let first = hold_batch_open(&batcher, |c| {
            c.execute("INSERT INTO t (v) VALUES (1)", [])
                .map_err(write_error)
        });
        assert!(batcher.write(insert_then_fail).is_err());
        first.join().unwrap().unwrap();
        let values: Vec<i64> = batcher
            .read(|c| {
                let mut statement = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
                let rows = statement.query_map([], |r| r.get(0)).unwrap();
                Ok(rows.map(|r| r.unwrap()).collect())
            })
            .unwrap();
        assert_eq!(values, vec![1]);
        assert!(lock(&batcher.writer).open.is_none());
    }

    /// A batch whose COMMIT fails (a deferred foreign key is checked only then) must be
    /// reported as failed to every job in it, however many failed batches follow before a
    /// waiter looks: an accepted code whose step was never stored could be replayed.
    #[test]
    fn a_waiter_never_sees_success_for_a_batch_that_failed() {
        let dir = tempfile::tempdir().unwrap();
        let connection = Connection::open(dir.path().join("db")).unwrap();
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;
                 CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE child (parent INTEGER REFERENCES parent (id)
                     DEFERRABLE INITIALLY DEFERRED);",
            )
            .unwrap();
        let batcher = Arc::new(Batcher::new(connection));
        let dangling = |c: &Connection| {
            c.execute("INSERT INTO child (parent) VALUES (42)", [])
                .map(|_| ())
                .map_err(write_error)
        };
        let (release, gate) = std::sync::mpsc::channel();
        *lock(&batcher.before_wait) = Some(gate);
        // The waiter's job runs; it then waits for its batch while the writer queued behind
        // it commits (and fails) that batch.
        let waiter = hold_batch_open(&batcher, dangling);
        // Queued behind the waiter: joins its batch, commits it, and the COMMIT fails.
        assert!(batcher.write(|_| Ok(())).is_err());
        // Many later batches fail too while the waiter is held...
        for _ in 0..100 {
            assert!(batcher.write(dangling).is_err());
        }
        // ...and when it finally looks, it is told its batch failed.
        release.send(()).unwrap();
        let outcome = waiter.join().unwrap();
        assert!(outcome.is_err(), "a failed batch was reported as committed");
    }
}
