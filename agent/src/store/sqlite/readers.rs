//! Connections that only read, apart from the writer (see `Readers`).

use super::read_error;
use crate::store::StoreError;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Read connections kept open; more readers at once wait for one. Reads are short.
const MAX_READERS: usize = 4;

/// Connections that only read. In WAL mode each sees the last committed state and never
/// waits for the writer, so `show`, `probe` and `log` do not queue behind a batch of logins
/// (nor see its uncommitted changes).
pub(super) struct Readers {
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
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            pool: Mutex::new(ReaderPool::default()),
            returned: Condvar::new(),
        }
    }

    pub(super) fn read<T>(
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
    let connection = super::open_connection(path)?;
    // query_only: this connection can never write, whatever a bug asks of it. A small page
    // cache per reader keeps memory flat.
    connection
        .execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -1024;")
        .map_err(read_error)?;
    connection.set_prepared_statement_cache_capacity(32);
    Ok(connection)
}
