//! A budget of refusals per non-root uid, so a local user looping on requests that are refused
//! (someone else's account, a name that does not exist, a malformed code) cannot grow the
//! audit trail or the journal without bound.
//!
//! Each uid may have [`REFUSALS_PER_WINDOW`] refusals audited and logged per window. Past that
//! it is *quiet* until the window ends: its refusals that change nothing are neither audited
//! nor logged, only counted, and one summary line says how many there were. Refusals that do
//! change state (a wrong code counts towards the lockout) are still audited. Memory is one
//! small entry per non-root uid that was refused in the last window.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Refusals of one uid audited and logged per window.
pub const REFUSALS_PER_WINDOW: u32 = 30;
/// The window, in seconds.
pub const WINDOW_SECONDS: i64 = 60;

#[derive(Debug, Default)]
pub struct RefusalBudget {
    windows: Mutex<HashMap<u32, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: i64,
    refused: u64,
}

impl Window {
    fn suppressed(self) -> u64 {
        self.refused.saturating_sub(u64::from(REFUSALS_PER_WINDOW))
    }
}

fn summary(uid: u32, window: Window) -> String {
    format!(
        "warning: uid={uid}: {} more refused requests in {WINDOW_SECONDS} s were not audited \
         or logged (more than {REFUSALS_PER_WINDOW} a window)",
        window.suppressed()
    )
}

impl RefusalBudget {
    /// Whether `uid` has used up its budget for the current window.
    pub fn is_quiet(&self, uid: u32, now: i64) -> bool {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.get(&uid).is_some_and(|window| {
            now - window.started < WINDOW_SECONDS
                && window.refused >= u64::from(REFUSALS_PER_WINDOW)
        })
    }

    /// Counts one refusal of `uid`. When this starts a new window and the previous one had
    /// refusals past the budget, returns the line that summarizes them.
    pub fn count(&self, uid: u32, now: i64) -> Option<String> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ended = None;
        let window = windows.entry(uid).or_insert(Window {
            started: now,
            refused: 0,
        });
        if now - window.started >= WINDOW_SECONDS || now < window.started {
            ended = Some(*window);
            *window = Window {
                started: now,
                refused: 0,
            };
        }
        window.refused = window.refused.saturating_add(1);
        // Forget uids whose windows ended long ago, so the map holds only recent refusers.
        if windows.len() > 1024 {
            windows.retain(|_, w| now - w.started < WINDOW_SECONDS);
        }
        ended
            .filter(|w| w.suppressed() > 0)
            .map(|w| summary(uid, w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_goes_quiet_past_its_budget_and_is_summarized_later() {
        let budget = RefusalBudget::default();
        let t = 1_000;
        for _ in 0..REFUSALS_PER_WINDOW {
            assert!(!budget.is_quiet(1000, t));
            assert_eq!(budget.count(1000, t), None);
        }
        assert!(budget.is_quiet(1000, t + 1));
        // Others are not affected.
        assert!(!budget.is_quiet(1001, t + 1));
        for _ in 0..70 {
            assert_eq!(budget.count(1000, t + 2), None);
        }
        // The window ends: audible again, and the next refusal brings the summary.
        assert!(!budget.is_quiet(1000, t + WINDOW_SECONDS));
        let line = budget.count(1000, t + WINDOW_SECONDS).unwrap_or_default();
        assert!(line.contains("uid=1000: 70 more refused"), "{line}");
        assert_eq!(budget.count(1000, t + WINDOW_SECONDS), None);
    }
}
