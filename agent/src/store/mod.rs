//! Storage behind a narrow trait: SQLite today; a shared backend (e.g. PostgreSQL for a fleet)
//! can be added without touching the protocol, the service rules or the PAM module.

mod batch;
mod sqlite;

pub use sqlite::SqliteStore;

use pam_totp_proto::{Algorithm, ProfileCounts, RecentAttempts};
use zeroize::Zeroizing;

/// Everything the agent keeps about one profile. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRecord {
    /// 0 for a record not yet stored.
    pub id: i64,
    pub account: String,
    pub uid: u32,
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
    /// The last time step accepted: codes of this step or older are replays.
    pub last_step: Option<i64>,
    pub failed_attempts: u32,
    pub locked_until: Option<i64>,
    /// Unused emergency codes as `salt:sha256` (hex).
    pub emergency_codes: Vec<String>,
    /// Steps accepted either side of now, when this profile has its own (an imported
    /// google-authenticator WINDOW_SIZE); else the agent's `window`.
    pub window: Option<u32>,
}

impl ProfileRecord {
    pub fn verified(&self) -> bool {
        self.verified_at.is_some()
    }
}

/// One row of the audit trail. Never holds a code or a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEvent {
    /// The row's place in the trail, as read back (ignored when appending).
    pub id: i64,
    pub at: i64,
    pub account: String,
    pub uid: Option<u32>,
    pub op: String,
    pub result: String,
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
    /// Insert when `id == 0` (replacing any profile of the account), update otherwise.
    Save(Box<ProfileRecord>),
    Delete,
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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot record state: {0}")]
    Write(String),
    #[error("cannot read state: {0}")]
    Read(String),
    #[error("database is corrupt or from an unknown version: {0}")]
    Schema(String),
}

/// Decides a transaction from the account's profile and, when the transaction names a source,
/// that source's record (a clear one when it has none).
pub type Decision<'a> = dyn FnMut(Option<&ProfileRecord>, Option<&SourceRecord>) -> Outcome + 'a;

/// Reads see only committed state, and never wait for a batch of writes to commit.
pub trait Store: Send + Sync {
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
    /// outcome, and applies all of it in one exclusive transaction. Returns the profile as
    /// stored afterwards. Replacing or deleting a profile forgets its sources.
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
    /// Profiles by state at `now` (a locked profile also counts as active or disabled);
    /// `window` is the agent's default skew window, for `clock_ahead`.
    fn profile_counts(&self, now: i64, window: u32) -> Result<ProfileCounts, StoreError>;
    /// Logins and failures recorded since `since`.
    fn recent_attempts(&self, since: i64) -> Result<RecentAttempts, StoreError>;
    /// Deletes audit rows older than `before`, and the oldest rows beyond the newest
    /// `keep_rows`; returns how many. Deletes in small batches, so logins interleave.
    fn prune_audit(&self, before: i64, keep_rows: u64) -> Result<usize, StoreError>;
}
