//! A budget of logged requests per non-root uid, so a local user looping on requests
//! (someone else's account, a name that does not exist, a malformed code, or simply its own
//! `status`) cannot grow the audit trail or the journal without bound.
//!
//! Each request of a non-root uid takes one place of [`PER_WINDOW`] in the current window,
//! whatever its outcome. Past that the uid is *quiet* until the window ends: its requests are
//! not logged and its refusals that change nothing are not audited, only counted, and one
//! summary line says how many there were. What changes state (a wrong code counts towards the
//! lockout, a new profile) is still audited. Deciding and counting are one step under one
//! lock, so concurrent requests cannot overrun the budget. Memory is one small entry per
//! non-root uid seen in the last window.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Requests of one uid logged (and refusals audited) per window.
pub const PER_WINDOW: u32 = 30;
/// The window, in seconds.
pub const WINDOW_SECONDS: i64 = 60;

#[derive(Debug, Default)]
pub struct RequestBudget {
    windows: Mutex<HashMap<u32, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: i64,
    requests: u64,
}

impl Window {
    fn over(self) -> u64 {
        self.requests.saturating_sub(u64::from(PER_WINDOW))
    }
}

/// What the budget says about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Log it (and audit it if refused); false: quiet.
    pub audible: bool,
    /// The summary of the uid's previous window, when it went past its budget.
    pub summary: Option<String>,
}

impl RequestBudget {
    /// Takes a place for one request of `uid` at `now`.
    pub fn admit(&self, uid: u32, now: i64) -> Admission {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = Window {
            started: now,
            requests: 0,
        };
        let window = windows.entry(uid).or_insert(fresh);
        let mut ended = None;
        if now - window.started >= WINDOW_SECONDS || now < window.started {
            ended = Some(*window);
            *window = fresh;
        }
        window.requests = window.requests.saturating_add(1);
        let audible = window.requests <= u64::from(PER_WINDOW);
        // Forget uids whose windows ended long ago, so the map holds only recent callers.
        if windows.len() > 1024 {
            windows.retain(|_, w| now - w.started < WINDOW_SECONDS);
        }
        let summary = ended.filter(|w| w.over() > 0).map(|w| {
            format!(
                "uid={uid}: {} more requests in {WINDOW_SECONDS} s were not logged, \
                 nor audited when refused (more than {PER_WINDOW} a window)",
                w.over()
            )
        });
        Admission { audible, summary }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_goes_quiet_past_its_budget_and_is_summarized_later() {
        let budget = RequestBudget::default();
        let t = 1_000;
        for _ in 0..PER_WINDOW {
            assert_eq!(
                budget.admit(1000, t),
                Admission {
                    audible: true,
                    summary: None
                }
            );
        }
        for _ in 0..70 {
            assert!(!budget.admit(1000, t + 2).audible);
        }
        // Others are not affected.
        assert!(budget.admit(1001, t + 2).audible);
        // The window ends: audible again, with the summary of the last one.
        let next = budget.admit(1000, t + WINDOW_SECONDS);
        assert!(next.audible);
        let line = next.summary.unwrap_or_default();
        assert!(line.contains("uid=1000: 70 more requests"), "{line}");
        assert_eq!(budget.admit(1000, t + WINDOW_SECONDS).summary, None);
    }

    #[test]
    fn concurrent_requests_never_overrun_the_budget() {
        let budget = std::sync::Arc::new(RequestBudget::default());
        let audible = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        if budget.admit(1000, 5).audible {
                            audible.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(audible.into_inner(), PER_WINDOW);
    }
}
