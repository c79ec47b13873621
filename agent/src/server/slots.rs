//! Caps on open connections, in all and per non-root uid.

use super::Limits;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Counts open connections, in all and per non-root uid.
pub(super) struct Slots {
    limits: Limits,
    total: AtomicUsize,
    per_user: Mutex<HashMap<u32, usize>>,
}

/// One connection's place in [`Slots`], given back when the connection ends, however it ends
/// (answered, dropped, timed out), and on whichever thread that happens.
pub(super) struct Slot {
    slots: Arc<Slots>,
    uid: u32,
}

impl Slots {
    pub(super) fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            total: AtomicUsize::new(0),
            per_user: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn open(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    pub(super) fn take(self: &Arc<Self>, uid: u32) -> Option<Slot> {
        let mut per_user = self.per_user.lock().unwrap_or_else(PoisonError::into_inner);
        if self.open() >= self.limits.max_connections {
            return None;
        }
        if uid != 0 {
            let held = per_user.entry(uid).or_insert(0);
            if *held >= self.limits.max_per_user {
                return None;
            }
            *held += 1;
        }
        self.total.fetch_add(1, Ordering::SeqCst);
        Some(Slot {
            slots: Arc::clone(self),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.uid != 0 {
            let mut per_user = self
                .slots
                .per_user
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(held) = per_user.get_mut(&self.uid) {
                *held = held.saturating_sub(1);
                if *held == 0 {
                    per_user.remove(&self.uid);
                }
            }
        }
        self.slots.total.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(max_connections: usize, max_per_user: usize) -> Limits {
        Limits {
            max_connections,
            max_per_user,
            io_timeout: Duration::from_secs(1),
            workers: 1,
        }
    }

    #[test]
    fn a_non_root_uid_gets_only_its_share() {
        let slots = Slots::new(limits(10, 2));
        let held: Vec<_> = (0..2).filter_map(|_| slots.take(1000)).collect();
        assert_eq!(held.len(), 2);
        assert!(slots.take(1000).is_none(), "third connection of uid 1000");
        // Other users and root are not affected.
        assert!(slots.take(1001).is_some());
        let root: Vec<_> = (0..5).filter_map(|_| slots.take(0)).collect();
        assert_eq!(root.len(), 5);
        // A closed connection gives its place back.
        drop(held);
        assert!(slots.take(1000).is_some());
    }

    #[test]
    fn the_total_is_capped_for_everyone() {
        let slots = Slots::new(limits(3, 8));
        let held: Vec<_> = (0..5).filter_map(|_| slots.take(0)).collect();
        assert_eq!((held.len(), slots.open()), (3, 3));
        assert!(slots.take(1000).is_none());
        drop(held);
        assert_eq!(slots.open(), 0);
    }
}
