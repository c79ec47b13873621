//! Storage behind one trait, in domain types only: SQLite today; a shared backend (e.g.
//! PostgreSQL for a fleet) is a new file that implements [`Store`] and passes the conformance
//! suite (`conformance.rs`), without touching the protocol, the service rules or the module.
//!
//! Keys: a profile is identified by its account name; its `id` is an opaque number the store
//! assigns when the profile is created (shown to clients, never used to find it).

#[cfg(test)]
mod conformance;
pub mod fleet_key;
pub mod postgres;
pub(crate) mod sqlite;

pub use postgres::{PgSettings, PgStore};
pub use sqlite::SqliteStore;

use pam_totp_proto::{Algorithm, AuditResult, ProfileKind};
use zeroize::Zeroizing;

/// A source's failures are forgotten a day after its last one, once it is not blocked:
/// enough to throttle an attacker, and it bounds the table when addresses rotate.
pub(crate) const SOURCE_RETENTION_SECONDS: i64 = 24 * 60 * 60;

/// A profile's stored columns besides `id`, in [`ProfileRecord`]'s field order: the one list
/// every backend builds its SELECT, INSERT and UPDATE statements and row mappings from.
pub(crate) const PROFILE_COLUMNS: [&str; 20] = [
    "account",
    "uid",
    "owner",
    "secret",
    "algorithm",
    "digits",
    "period",
    "issuer",
    "comment",
    "created_at",
    "changed_at",
    "verified_at",
    "last_used_at",
    "enabled",
    "last_step",
    "failed_attempts",
    "locked_until",
    "emergency_codes",
    "skew_window",
    "kind",
];

/// Everything the agent keeps about one profile. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRecord {
    /// Opaque, assigned by the store when the profile is created (0 until then).
    pub id: i64,
    pub account: String,
    pub uid: u32,
    /// The host name of the agent that created it (`None`: recorded before hosts were).
    pub owner: Option<String>,
    pub secret: Zeroizing<Vec<u8>>,
    pub algorithm: Algorithm,
    pub digits: u8,
    pub period: u32,
    pub issuer: String,
    pub comment: Option<String>,
    pub created_at: i64,
    pub changed_at: i64,
    pub verified_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub enabled: bool,
    /// TOTP: the last time step accepted (codes of this step or older are replays). HOTP:
    /// the last counter accepted (the next code is of a later one).
    pub last_step: Option<i64>,
    pub failed_attempts: u32,
    pub locked_until: Option<i64>,
    /// Unused emergency codes as `salt:sha256` (hex).
    pub emergency_codes: Vec<String>,
    /// TOTP only: steps accepted either side of now, when this profile has its own (an
    /// imported google-authenticator WINDOW_SIZE); else the agent's `window`. HOTP profiles
    /// always look ahead by the agent's `hotp_window`.
    pub window: Option<u32>,
    pub kind: ProfileKind,
}

/// How far codes are accepted beyond what was used, for marking them used when a store's
/// history may have been lost (a restored backup, a failover): TOTP steps either side of now
/// (a profile's own window wins), HOTP counters after the next expected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub totp: u32,
    pub hotp: u32,
}

/// How a profile's codes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeSettings {
    pub algorithm: Algorithm,
    pub digits: u8,
    pub period: u32,
}

impl ProfileRecord {
    /// A new, pending, enabled TOTP profile created at `now`, with nothing used, failed or set
    /// yet.
    pub fn new(
        account: &str,
        uid: u32,
        secret: Zeroizing<Vec<u8>>,
        settings: CodeSettings,
        issuer: &str,
        now: i64,
    ) -> Self {
        Self {
            id: 0,
            account: account.to_owned(),
            uid,
            owner: None,
            secret,
            algorithm: settings.algorithm,
            digits: settings.digits,
            period: settings.period,
            issuer: issuer.to_owned(),
            comment: None,
            created_at: now,
            changed_at: now,
            verified_at: None,
            last_used_at: None,
            enabled: true,
            last_step: None,
            failed_attempts: 0,
            locked_until: None,
            emergency_codes: Vec::new(),
            window: None,
            kind: ProfileKind::Totp,
        }
    }

    pub fn verified(&self) -> bool {
        self.verified_at.is_some()
    }

    /// HOTP: the counter of the next code expected (the one after the last accepted).
    pub fn next_counter(&self) -> i64 {
        self.last_step.map_or(0, |last| last.saturating_add(1))
    }

    /// HOTP: expect the code of counter `next` (and later ones) from now on.
    pub fn expect_counter(&mut self, next: u64) {
        // Counter 0 next: nothing accepted yet.
        self.last_step = i64::try_from(next)
            .ok()
            .filter(|next| *next > 0)
            .map(|next| next - 1);
    }
}

/// One row of the audit trail. Never holds a code or a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The row's place in the trail, as read back (ignored when appending).
    pub id: i64,
    pub at: i64,
    /// The agent that wrote it (`None`: recorded before hosts were).
    pub host: Option<String>,
    pub account: String,
    pub uid: Option<u32>,
    pub op: String,
    pub result: AuditResult,
    pub service: Option<String>,
    pub rhost: Option<String>,
    pub tty: Option<String>,
    pub ruser: Option<String>,
    pub caller_uid: u32,
    pub caller_pid: i32,
}

/// Where a login comes from; `None` fields match only `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginPlace<'a> {
    pub service: Option<&'a str>,
    pub rhost: Option<&'a str>,
    pub tty: Option<&'a str>,
    pub ruser: Option<&'a str>,
}

/// Which audit rows to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub account: Option<String>,
    pub since: Option<i64>,
    /// Only rows older than this id (the previous page's last).
    pub before: Option<i64>,
    pub limit: u32,
}

/// What a transaction leaves behind for the account.
#[derive(Debug)]
pub enum Change {
    Keep,
    /// A new profile (a new `id`), replacing any the account had; its sources are forgotten.
    Create(Box<ProfileRecord>),
    /// New values for the account's existing profile (its `id` is kept).
    Update(Box<ProfileRecord>),
    Delete,
}

impl Change {
    /// The profile this change stores, if any.
    pub fn record(&self) -> Option<&ProfileRecord> {
        match self {
            Self::Create(record) | Self::Update(record) => Some(record),
            Self::Keep | Self::Delete => None,
        }
    }
}

/// Failures of one account from one source (a remote host, or a local caller), counted apart
/// from the account's own counter so one attacker is throttled before the owner is locked out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceRecord {
    pub failures: u32,
    pub blocked_until: Option<i64>,
    pub last_failure_at: i64,
}

impl SourceRecord {
    /// A record with nothing to remember: stored as no row at all.
    pub fn is_clear(&self) -> bool {
        self.failures == 0 && self.blocked_until.is_none()
    }
}

/// Everything one transaction decides.
#[derive(Debug)]
pub struct Outcome {
    pub change: Change,
    /// The attempt's source afterwards (`None`: untouched).
    pub source: Option<SourceRecord>,
    /// Forget every source of the account (unlock).
    pub clear_sources: bool,
    pub audit: Option<AuditEvent>,
}

impl Outcome {
    pub fn new(change: Change, audit: Option<AuditEvent>) -> Self {
        Self {
            change,
            source: None,
            clear_sources: false,
            audit,
        }
    }
}

/// Why the store failed. The message says what could not be done ("cannot record state:
/// ...", "cannot read state: ..."); the kind says what the caller may do about it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// Not now: the disk is full or read-only, the database busy or unreachable. Nothing was
    /// changed; the same request may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// The store's server cannot be reached (a fleet store's PostgreSQL is down or cut off).
    /// Nothing was changed; requests answer "unavailable" until it is back.
    #[error("{0}")]
    Unreachable(String),
    /// The store refused the data (a constraint): retrying the same request will not help.
    #[error("{0}")]
    Invalid(String),
    /// Corrupt, of an unknown schema version, or a bug.
    #[error("{0}")]
    Internal(String),
}

/// Profiles by state (a locked profile also counts as active or disabled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProfileTally {
    pub pending: u64,
    pub active: u64,
    pub disabled: u64,
    pub locked: u64,
    /// TOTP profiles whose last used step is beyond now + their window (an HOTP counter has
    /// no clock to be ahead of).
    pub clock_ahead: u64,
    /// Sources blocked at now, over all accounts.
    pub blocked_sources: u64,
}

/// Login attempts in a span of time, from the audit trail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptTally {
    /// Audited as a login (`AuditResult::outcome() == Login`).
    pub logins: u64,
    /// Audited as a failure.
    pub failures: u64,
}

/// Decides a transaction from the account's profile and, when the transaction names a source,
/// that source's record (a clear one when it has none).
pub type Decision<'a> =
    dyn FnMut(Option<&ProfileRecord>, Option<&SourceRecord>) -> Outcome + Send + 'a;

/// Reads see only committed state, and never wait for a batch of writes to commit.
pub trait Store: Send + Sync {
    /// What kind of store this is, for `metrics` (e.g. "sqlite").
    fn kind(&self) -> &'static str;
    /// "host" when only this agent uses the store, "fleet" when many hosts share it (then
    /// uids recorded elsewhere mean nothing here: only this host's NSS decides who is who).
    fn scope(&self) -> &'static str {
        "host"
    }
    /// The stored form of an emergency code's salted SHA-256: itself, or keyed with a key the
    /// database never sees (a fleet store), so a dump is no dictionary to guess against.
    fn emergency_digest(&self, salted: &[u8]) -> Vec<u8> {
        salted.to_vec()
    }
    /// Adds the store's own metrics (e.g. commit batches) to the agent's.
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}
    fn get(&self, account: &str) -> Result<Option<ProfileRecord>, StoreError>;
    /// The account whose profile a request naming `account` is held to: `account` itself if
    /// it has a profile, else the profile of another name of the same `uid` (an alias, or a
    /// case variant NSS folds), else `account`.
    fn profile_account(&self, account: &str, uid: Option<u32>) -> Result<String, StoreError>;
    /// Sources of the account blocked at `now`, longest-blocked first, at most `limit`.
    fn blocked_sources(
        &self,
        account: &str,
        now: i64,
        limit: u32,
    ) -> Result<Vec<(String, SourceRecord)>, StoreError>;
    /// Up to `limit` profiles ordered by account, starting after `after`.
    fn list(&self, after: Option<&str>, limit: u32) -> Result<Vec<ProfileRecord>, StoreError>;
    /// Reads the account's record (and `source`'s, if given), lets `decide` choose the
    /// outcome, and applies all of it in one exclusive transaction: of any number of
    /// concurrent transactions on one account, each sees the others' results. Returns the
    /// profile as stored afterwards. Creating or deleting a profile forgets its sources.
    ///
    /// `decide` may be run more than once (a backend may retry a transaction that lost a
    /// serialization race): it must decide from its arguments alone and keep no effects
    /// outside what it returns, beyond overwriting what an earlier run wrote.
    fn transact(
        &self,
        account: &str,
        source: Option<&str>,
        decide: &mut Decision<'_>,
    ) -> Result<Option<ProfileRecord>, StoreError>;
    /// Several independent `transact`s (no source) committed together: for bulk imports,
    /// where a commit per profile would be needlessly slow. Returns each stored profile.
    fn transact_each(
        &self,
        jobs: &mut [(String, Box<Decision<'_>>)],
    ) -> Result<Vec<Option<ProfileRecord>>, StoreError>;
    /// Records an event outside any change (e.g. a refused request).
    fn audit(&self, event: &AuditEvent) -> Result<(), StoreError>;
    /// When the account last logged in with a code through a root caller (a PAM service, not
    /// a user's own client) from exactly this service, remote host, tty and remote user (for
    /// `grace`): derived from the audit trail, not kept twice.
    fn last_code_login(
        &self,
        account: &str,
        place: &LoginPlace<'_>,
    ) -> Result<Option<i64>, StoreError>;
    fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError>;
    /// Profiles by state at `now`; `window` is the agent's default TOTP skew window.
    fn profile_counts(&self, now: i64, window: u32) -> Result<ProfileTally, StoreError>;
    /// Login attempts (`authenticate`) audited since `since`.
    fn recent_attempts(&self, since: i64) -> Result<AttemptTally, StoreError>;
    /// Deletes audit rows older than `before`, and the oldest rows beyond the newest
    /// `keep_rows`; returns how many. Deletes in small batches, so logins interleave.
    fn prune_audit(&self, before: i64, keep_rows: u64) -> Result<usize, StoreError>;
}
