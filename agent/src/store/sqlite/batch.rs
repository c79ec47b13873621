//! Group commit. Concurrent write jobs share one SQLite transaction, so one fsync makes a whole
//! batch durable instead of one fsync per login. No job's caller hears back before its batch
//! has committed: `synchronous = FULL` durability is kept, only its cost is shared.
//!
//! Jobs are combined: a caller queues its job, and whichever thread holds the writer runs
//! every queued job, one at a time on the single connection, each inside its own SAVEPOINT,
//! and commits them together once the queue is empty. So the order of decisions is exactly as
//! if every job had its own transaction, a failing job rolls back only itself, and a caller
//! sleeps at most once per write (until its batch is settled), where waiting for the writer
//! and then for the batch cost two sleeps and two wake-ups.

use super::write_error;
use super::StoreError;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use rusqlite::Connection;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};
use std::thread::Thread;
use std::time::Instant;

/// A queued job's caller and its batch's fate: unset until the batch has ended, then whether
/// its COMMIT succeeded. Each caller holds its own ticket, so none can ever read another
/// batch's result, however far behind it falls.
struct Ticket {
    fate: OnceLock<Result<(), StoreError>>,
    caller: Thread,
    /// Set when a holder takes the job off the queue: from then on only that holder's
    /// settling wakes the caller, which sleeps rather than take the writer for nothing.
    taken: AtomicBool,
}

/// A write job waiting for the writer's holder to run it: the caller's closure, its lifetime
/// erased (see [`Batcher::write`] for why it stays valid).
struct Queued {
    job: *mut (dyn FnMut(&Connection) + Send + 'static),
    ticket: Arc<Ticket>,
}

// SAFETY: the closure `job` points to is `Send` (its type says so); only the raw pointer is
// not. It is dereferenced by one thread at a time, the writer's holder, while its caller waits.
unsafe impl Send for Queued {}

/// Aborts the process if dropped during an unwind (see [`Batcher::write`]).
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            std::process::abort();
        }
    }
}

pub struct Batcher {
    writer: Mutex<Connection>,
    /// Jobs waiting for the writer's holder to run them, in the order they came.
    queue: Mutex<VecDeque<Queued>>,
    /// Jobs per committed batch, and how long each COMMIT (with its fsync) took.
    batch_jobs: Histogram,
    commit_seconds: Histogram,
    /// Tests hold the caller on this thread here, after its batch has ended and before it
    /// reads the outcome.
    #[cfg(test)]
    before_wait: Mutex<Option<(std::thread::ThreadId, std::sync::mpsc::Receiver<()>)>>,
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

/// Runs `job` inside a SAVEPOINT: kept on success, undone on failure. A job that panics
/// (a bug) fails alone: it may run on another caller's thread, which must carry on.
fn in_savepoint<T>(
    connection: &Connection,
    job: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    control(connection, "SAVEPOINT job")?;
    let result = catch_unwind(AssertUnwindSafe(|| job(connection)))
        .unwrap_or_else(|_| Err(StoreError::Internal("a write job panicked".to_owned())))
        .and_then(|value| control(connection, "RELEASE job").map(|()| value));
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
            writer: Mutex::new(connection),
            queue: Mutex::new(VecDeque::new()),
            batch_jobs: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            // 50 us to ~1.6 s.
            commit_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            #[cfg(test)]
            before_wait: Mutex::new(None),
        }
    }

    /// Reads on the writer's connection, between batches: for reads that must see what the
    /// writer sees (tests, integrity checks); the store serves ordinary reads from its own
    /// read connections.
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // Declared first, so dropped after the writer's guard, even when `read` panics.
        let _wake_next = WakeNext(self);
        let writer = lock(&self.writer);
        read(&writer)
    }

    /// Runs `job` in the current batch and returns once that batch is durably committed. The
    /// job may run on another thread (the writer's holder) while this one waits.
    pub fn write<T: Send>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        let mut job = Some(job);
        let mut output = None;
        let mut run = |connection: &Connection| {
            if let Some(job) = job.take() {
                output = Some(in_savepoint(connection, job));
            }
        };
        let ticket = Arc::new(Ticket {
            fate: OnceLock::new(),
            caller: std::thread::current(),
            taken: AtomicBool::new(false),
        });
        let borrowed: *mut (dyn FnMut(&Connection) + Send + '_) = &mut run;
        // Should anything below unwind before the ticket is settled (nothing is meant to: the
        // jobs' panics are caught), the process aborts rather than free what the queue points to.
        let guard = AbortOnUnwind;
        // SAFETY: only the lifetime changes (the same pointer to the same closure). The
        // pointer is dereferenced only by the writer's holder, after it took the job from the
        // queue and before it settles the ticket; this function leaves only once the ticket
        // is settled (it has no early return, and `guard` aborts on an unwind), so `run` and
        // all it borrows outlive every use, and no one else touches them meanwhile.
        let erased = unsafe {
            std::mem::transmute::<
                *mut (dyn FnMut(&Connection) + Send + '_),
                *mut (dyn FnMut(&Connection) + Send + 'static),
            >(borrowed)
        };
        lock(&self.queue).push_back(Queued {
            job: erased,
            ticket: Arc::clone(&ticket),
        });
        let fate = loop {
            if let Some(fate) = ticket.fate.get() {
                break fate.clone();
            }
            if ticket.taken.load(Ordering::Acquire) {
                std::thread::park();
                continue;
            }
            match self.writer.try_lock() {
                Ok(writer) => self.combine(writer),
                Err(TryLockError::Poisoned(poisoned)) => self.combine(poisoned.into_inner()),
                // The holder runs this job, or wakes this thread to take over once it is done.
                Err(TryLockError::WouldBlock) => std::thread::park(),
            }
        };
        std::mem::forget(guard);
        #[cfg(test)]
        {
            let mut gate = lock(&self.before_wait);
            let held = gate.take_if(|(thread, _)| *thread == std::thread::current().id());
            drop(gate);
            if let Some((_, gate)) = held {
                let _ = gate.recv();
            }
        }
        fate?;
        output.unwrap_or_else(|| Err(StoreError::Internal("a write job never ran".to_owned())))
    }

    /// As the writer's holder: runs every queued job in one transaction, commits it, and
    /// settles the tickets of the jobs in it. With nothing queued (another holder took this
    /// caller's job meanwhile) it begins nothing.
    fn combine(&self, writer: MutexGuard<'_, Connection>) {
        let mut batch = Vec::new();
        // Unset until a first job is taken: an empty queue begins nothing.
        let mut fate = None;
        while let Some(queued) = self.take_next() {
            let batch_fate = fate.get_or_insert_with(|| begin(&writer));
            if batch_fate.is_ok() {
                // SAFETY: `queued.job` is valid while its ticket is unsettled (`write`), and
                // this thread, holding the writer, is the only one that took it off the queue.
                unsafe { (*queued.job)(&writer) };
                if writer.is_autocommit() {
                    // SQLite ended the whole transaction (a full disk, an I/O error): nothing
                    // of this batch is stored, and no later job may run outside it.
                    *batch_fate = Err(StoreError::Unavailable(
                        "cannot record state: the transaction was rolled back".to_owned(),
                    ));
                }
            }
            batch.push(queued.ticket);
        }
        let Some(fate) = fate else {
            drop(writer);
            self.wake_next();
            return;
        };
        let fate = fate.and_then(|()| {
            let commit_started = Instant::now();
            let committed = control(&writer, "COMMIT");
            self.commit_seconds
                .observe(commit_started.elapsed().as_secs_f64());
            committed
        });
        if !writer.is_autocommit() {
            // Nothing of this batch was stored: end the transaction.
            let _ = writer.execute_batch("ROLLBACK");
        }
        self.batch_jobs
            .observe(f64::from(u32::try_from(batch.len()).unwrap_or(u32::MAX)));
        drop(writer);
        // The next batch may begin while this one's callers are woken.
        self.wake_next();
        let holder = std::thread::current().id();
        for ticket in batch {
            let _ = ticket.fate.set(fate.clone());
            if ticket.caller.id() != holder {
                ticket.caller.unpark();
            }
        }
    }

    /// The next queued job, marked as taken. A statement of its own, so the queue's lock is
    /// released before the job runs.
    fn take_next(&self) -> Option<Queued> {
        let next = lock(&self.queue).pop_front();
        if let Some(queued) = &next {
            queued.ticket.taken.store(true, Ordering::Release);
        }
        next
    }

    /// After the writer is released: wakes the first queued caller to take it, so no job is
    /// left queued with the writer free and every caller asleep.
    fn wake_next(&self) {
        let next = lock(&self.queue)
            .front()
            .map(|queued| queued.ticket.caller.clone());
        if let Some(caller) = next {
            caller.unpark();
        }
    }
}

/// Wakes the next queued caller when dropped (see [`Batcher::wake_next`]).
struct WakeNext<'b>(&'b Batcher);

impl Drop for WakeNext<'_> {
    fn drop(&mut self) {
        self.0.wake_next();
    }
}

/// Begins a batch's transaction. A transaction left open (a ROLLBACK that failed) is ended
/// first, or every later batch would fail to begin.
fn begin(connection: &Connection) -> Result<(), StoreError> {
    if !connection.is_autocommit() {
        let _ = connection.execute_batch("ROLLBACK");
    }
    control(connection, "BEGIN IMMEDIATE")
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

    /// Inserts `v`: a job that succeeds.
    fn insert(c: &Connection, v: i64) -> Result<usize, StoreError> {
        c.execute("INSERT INTO t (v) VALUES (?1)", [v])
            .map_err(write_error)
    }

    /// The values stored, in order.
    fn values(batcher: &Batcher) -> Vec<i64> {
        batcher
            .read(|c| {
                let mut statement = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
                let rows = statement.query_map([], |r| r.get(0)).unwrap();
                Ok(rows.map(|r| r.unwrap()).collect())
            })
            .unwrap()
    }

    /// Inserts 2, then fails on a NOT NULL violation: a job that fails after a change.
    fn insert_then_fail(c: &Connection) -> Result<usize, StoreError> {
        insert(c, 2)?;
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
                    while lock(&batcher.queue).is_empty() {
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
        assert!(batcher.read(|c| Ok(c.is_autocommit())).unwrap());
    }

    /// A writer queued behind another's open batch has its job run by the writer's holder,
    /// in that batch, and still gets its own job's result back.
    #[test]
    fn a_queued_job_runs_on_the_holder_and_returns_its_own_result() {
        let (_dir, batcher) = batcher();
        let holder = hold_batch_open(&batcher, |c| {
            insert(c, 1)?;
            Ok((c.last_insert_rowid(), std::thread::current().id()))
        });
        let (rowid, ran_on) = batcher
            .write(|c| {
                insert(c, 2)?;
                Ok((c.last_insert_rowid(), std::thread::current().id()))
            })
            .unwrap();
        let holder_thread = holder.thread().id();
        let (holder_rowid, holder_ran_on) = holder.join().unwrap().unwrap();
        assert_eq!((holder_rowid, rowid), (1, 2));
        assert_eq!(holder_ran_on, holder_thread);
        assert_eq!(ran_on, holder_thread, "the queued job was not combined");
        assert_eq!(count(&batcher), 2);
    }

    /// A job that panics (a bug) runs on whichever thread holds the writer: it must fail
    /// alone, leaving that thread, the batch and the connection usable.
    #[test]
    fn a_job_that_panics_fails_alone() {
        let (_dir, batcher) = batcher();
        let holder = hold_batch_open(&batcher, |c| insert(c, 1));
        let (told, answer) = std::sync::mpsc::channel();
        {
            let batcher = Arc::clone(&batcher);
            std::thread::spawn(move || {
                #[allow(clippy::panic)]
                let panicked = batcher.write(|c| -> Result<(), StoreError> {
                    insert(c, 2)?;
                    panic!("a bug in a job");
                });
                told.send(panicked).unwrap();
            });
        }
        // Not a plain call: with the panic loose, this caller would wait forever.
        let panicked = answer.recv_timeout(std::time::Duration::from_secs(60));
        assert!(
            matches!(panicked, Ok(Err(StoreError::Internal(_)))),
            "{panicked:?}"
        );
        holder.join().unwrap().unwrap();
        batcher.write(|c| insert(c, 3)).unwrap();
        assert_eq!(values(&batcher), vec![1, 3]);
        assert!(batcher.read(|c| Ok(c.is_autocommit())).unwrap());
    }

    /// A writer that queued while a reader held the writer's connection is woken when the
    /// reader is done (or has panicked), though no other writer comes along to run its job.
    fn writer_queued_behind_a_reader(reader_panics: bool) {
        let (_dir, batcher) = batcher();
        let (reading, read_started) = std::sync::mpsc::channel();
        let reader = {
            let batcher = Arc::clone(&batcher);
            std::thread::spawn(move || {
                batcher.read(|_| {
                    reading.send(()).unwrap();
                    while lock(&batcher.queue).is_empty() {
                        std::thread::yield_now();
                    }
                    #[allow(clippy::panic)]
                    if reader_panics {
                        panic!("a bug in a read");
                    }
                    Ok(())
                })
            })
        };
        read_started.recv().unwrap();
        let (wrote, write_done) = std::sync::mpsc::channel();
        {
            let batcher = Arc::clone(&batcher);
            std::thread::spawn(move || {
                wrote.send(batcher.write(|c| insert(c, 1)).is_ok()).unwrap();
            });
        }
        assert_eq!(reader.join().is_err(), reader_panics);
        let written = write_done.recv_timeout(std::time::Duration::from_secs(60));
        assert_eq!(written, Ok(true), "the queued writer was never woken");
    }

    #[test]
    fn a_writer_queued_behind_a_reader_is_woken() {
        writer_queued_behind_a_reader(false);
    }

    #[test]
    fn a_writer_queued_behind_a_panicking_reader_is_woken() {
        writer_queued_behind_a_reader(true);
    }

    /// A job after which SQLite has ended the whole transaction (as it may on a full disk or
    /// an I/O error) fails its whole batch: a job queued behind it must neither run outside
    /// the transaction (its SAVEPOINT would begin one of its own, committed at RELEASE) nor
    /// be told it was stored.
    #[test]
    fn a_batch_whose_transaction_ended_fails_whole() {
        let (_dir, batcher) = batcher();
        let ended = hold_batch_open(&batcher, |c| {
            insert(c, 1)?;
            c.execute_batch("ROLLBACK").map_err(write_error)?;
            Ok(())
        });
        assert!(batcher.write(|c| insert(c, 2)).is_err());
        assert!(ended.join().unwrap().is_err());
        assert_eq!(values(&batcher), Vec::<i64>::new());
        // The next batch begins and commits as usual.
        batcher.write(|c| insert(c, 3)).unwrap();
        assert_eq!(values(&batcher), vec![3]);
    }

    /// Writers and readers of the writer's connection, all at once: every release of the
    /// writer must hand it to a queued job, or the queue stalls with everyone asleep.
    #[test]
    fn writers_and_readers_never_stall() {
        let (_dir, batcher) = batcher();
        let threads = 8;
        let (finished, all_finished) = std::sync::mpsc::channel();
        for i in 0..threads {
            let (batcher, finished) = (Arc::clone(&batcher), finished.clone());
            std::thread::spawn(move || {
                for j in 0..200 {
                    if (i + j) % 3 == 0 {
                        count(&batcher);
                    } else {
                        batcher
                            .write(|c| {
                                c.execute("INSERT INTO t (v) VALUES (?1)", [j])
                                    .map_err(write_error)
                            })
                            .unwrap();
                    }
                }
                finished.send(()).unwrap();
            });
        }
        for _ in 0..threads {
            let finished = all_finished.recv_timeout(std::time::Duration::from_secs(60));
            assert!(finished.is_ok(), "writers stalled");
        }
    }

    #[test]
    fn a_failing_job_rolls_back_only_itself() {
        let (_dir, batcher) = batcher();
        batcher.write(|c| insert(c, 1)).unwrap();
        assert!(batcher.write(insert_then_fail).is_err());
        assert_eq!(count(&batcher), 1);
    }

    /// A job that fails inside a batch others share takes back only its own changes: the
    /// job before it in the same transaction still commits.
    #[test]
    fn a_failing_job_in_a_shared_batch_rolls_back_only_itself() {
        let (_dir, batcher) = batcher();
        let first = hold_batch_open(&batcher, |c| insert(c, 1));
        assert!(batcher.write(insert_then_fail).is_err());
        first.join().unwrap().unwrap();
        assert_eq!(values(&batcher), vec![1]);
        assert!(batcher.read(|c| Ok(c.is_autocommit())).unwrap());
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
        // The waiter's job runs and holds its batch open for the writer queued behind it;
        // the waiter (which holds the writer) then commits both, and the COMMIT fails.
        let waiter = hold_batch_open(&batcher, dangling);
        let (release, gate) = std::sync::mpsc::channel();
        *lock(&batcher.before_wait) = Some((waiter.thread().id(), gate));
        assert!(batcher.write(|_| Ok(())).is_err());
        // While the waiter is held before it looks, many later batches fail, and many commit...
        for _ in 0..100 {
            assert!(batcher.write(dangling).is_err());
        }
        for _ in 0..100 {
            batcher.write(|_| Ok(())).unwrap();
        }
        // ...and when it finally looks, it is told its batch failed.
        release.send(()).unwrap();
        let outcome = waiter.join().unwrap();
        assert!(outcome.is_err(), "a failed batch was reported as committed");
    }
}
