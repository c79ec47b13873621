//! `metrics`: the agent's counters for Prometheus (prometheus-client, OpenMetrics text). Login
//! attempts by result and method and the time each took are counted as they happen; profiles
//! by state, blocked sources and the store's health are read from the store at each scrape;
//! the store adds its own (the SQLite store: group-commit batch sizes and commit times).

use crate::store::{ProfileTally, Store};
use pam_totp_proto::audit::Outcome;
use pam_totp_proto::AuditResult;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    result: &'static str,
    /// How the login was let in (`totp`, `emergency_code`, `grace`), `none` when it was not.
    method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    kind: &'static str,
}

pub struct Metrics {
    /// Encoding reads the gauges set just before: one scrape at a time.
    registry: Mutex<Registry>,
    attempts: Family<AttemptLabels, Counter>,
    attempt_seconds: Histogram,
    store_errors: Counter,
    profiles: Family<StateLabels, Gauge>,
    blocked_sources: Gauge,
    clock_ahead: Gauge,
    store_up: Family<StoreLabels, Gauge>,
}

impl Metrics {
    pub fn new(store: &dyn Store) -> Self {
        let attempts = Family::<AttemptLabels, Counter>::default();
        // 100 us to ~3 s.
        let attempt_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let store_errors = Counter::default();
        let profiles = Family::<StateLabels, Gauge>::default();
        let blocked_sources = Gauge::default();
        let clock_ahead = Gauge::default();
        let store_up = Family::<StoreLabels, Gauge>::default();
        let mut registry = Registry::with_prefix("pam_totp");
        registry.register(
            "login_attempts",
            "Login attempts the agent decided, by audit result and method",
            attempts.clone(),
        );
        registry.register(
            "login_attempt_seconds",
            "Time the agent took to answer a login attempt",
            attempt_seconds.clone(),
        );
        registry.register(
            "store_errors",
            "Requests that failed because the store could not read or record state",
            store_errors.clone(),
        );
        registry.register("profiles", "Profiles by state", profiles.clone());
        registry.register(
            "blocked_sources",
            "Sources currently blocked from an account after repeated failures",
            blocked_sources.clone(),
        );
        registry.register(
            "clock_ahead_profiles",
            "Profiles whose last used time step is beyond now and the window",
            clock_ahead.clone(),
        );
        registry.register(
            "store_up",
            "Whether the store answered the last scrape (1) or not (0), by kind",
            store_up.clone(),
        );
        store.register_metrics(&mut registry);
        Self {
            registry: Mutex::new(registry),
            attempts,
            attempt_seconds,
            store_errors,
            profiles,
            blocked_sources,
            clock_ahead,
            store_up,
        }
    }

    /// One login attempt, as audited.
    pub fn attempt(&self, result: AuditResult) {
        let method = match result {
            AuditResult::Success => "totp",
            AuditResult::EmergencyCode => "emergency_code",
            AuditResult::Grace => "grace",
            _ => "none",
        };
        debug_assert!(method == "none" || result.outcome() == Outcome::Login);
        self.attempts
            .get_or_create(&AttemptLabels {
                result: result.as_str(),
                method,
            })
            .inc();
    }

    pub fn attempt_took(&self, elapsed: Duration) {
        self.attempt_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    /// The exposition, with the store's state as of now (`tally`: `None` when the store did
    /// not answer).
    pub fn encode(&self, tally: Option<ProfileTally>, kind: &'static str) -> String {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let up = i64::from(tally.is_some());
        self.store_up.get_or_create(&StoreLabels { kind }).set(up);
        if let Some(tally) = tally {
            let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            for (state, count) in [
                ("pending", tally.pending),
                ("active", tally.active),
                ("disabled", tally.disabled),
                ("locked", tally.locked),
            ] {
                self.profiles
                    .get_or_create(&StateLabels { state })
                    .set(gauge(count));
            }
            self.blocked_sources.set(gauge(tally.blocked_sources));
            self.clock_ahead.set(gauge(tally.clock_ahead));
        }
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            text.clear();
        }
        text
    }
}
