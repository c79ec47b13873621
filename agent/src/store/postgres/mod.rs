//! The fleet store: PostgreSQL shared by many hosts' agents. Each login's check-and-update is
//! one transaction holding its account's advisory lock, so of any number of concurrent
//! logins on one code, from any hosts, exactly one wins. Secrets are sealed and emergency
//! codes keyed with the fleet key (`fleet_key.rs`), which the database never sees; each host
//! counts its own sources (`HOST/source`) and its own grace; failures count fleet-wide.

mod connect;
mod failover;
mod rows;
pub mod schema;
mod session;

use super::fleet_key::FleetKey;
use super::{
    AttemptTally, AuditEvent, AuditQuery, Change, Decision, LoginPlace, ProfileRecord,
    ProfileTally, SourceRecord, Store, StoreError, Windows,
};
pub use connect::StoreUrl;
use pam_totp_proto::audit::Outcome;
use pam_totp_proto::AuditResult;
use postgres::error::SqlState;
use postgres_openssl::MakeTlsConnector;
use rows::*;
use session::{Session, Statements};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Retries of a transaction that lost a race or its connection stop after this (the PAM
/// module's default deadline is 3 s).
const RETRY_BUDGET: Duration = Duration::from_millis(2000);
/// Audit rows deleted per statement when pruning, so logins interleave.
const PRUNE_CHUNK: i64 = 2000;

/// What the agent needs to open the fleet store.
pub struct PgSettings {
    pub url: StoreUrl,
    pub key: FleetKey,
    /// This agent's name in the fleet: audit rows, sources and grace are per host.
    pub host: String,
    /// The agent's windows, for marking codes used after a failover.
    pub windows: Windows,
}

/// A failure inside a transaction: the database's, or the store's own (a secret that does not
/// open, a value out of range).
#[derive(Debug)]
pub(crate) enum Fail {
    Pg(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for Fail {
    fn from(error: postgres::Error) -> Self {
        Self::Pg(error)
    }
}

/// Whether a failure was reading or recording, for the message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Failure {
    Read,
    Write,
}

/// Whether another try, on a fresh connection, may succeed.
fn retryable(error: &postgres::Error) -> bool {
    connection_lost(error)
        || matches!(
            error.code(),
            Some(&SqlState::T_R_SERIALIZATION_FAILURE | &SqlState::T_R_DEADLOCK_DETECTED)
        )
}

/// The connection is unusable: closed, broken (I/O, a timeout), or a server that went away
/// or became read-only (a demoted primary): drop it, so the next one finds the primary.
fn connection_lost(error: &postgres::Error) -> bool {
    use std::error::Error as _;
    match error.code() {
        None => {
            error.is_closed()
                || error
                    .source()
                    .is_some_and(|cause| cause.is::<std::io::Error>())
                || error.to_string().starts_with("timeout")
        }
        Some(code) => {
            code.code().starts_with("08")
                || code.code().starts_with("57P")
                || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        }
    }
}

/// What PostgreSQL's error means for the caller: "not now" (unreachable, shutting down, full,
/// timed out, busy), "not this" (a constraint or bad value), or broken.
pub(crate) fn pg_error(failure: Failure, error: &postgres::Error) -> StoreError {
    let what = match failure {
        Failure::Read => "cannot read state",
        Failure::Write => "cannot record state",
    };
    let message = match error.as_db_error() {
        Some(db) => format!("{what}: fleet store: {}", db.message()),
        // The cause says what went wrong (refused, certificate verify failed, ...).
        None => match std::error::Error::source(error) {
            Some(cause) => format!("{what}: fleet store: {error}: {cause}"),
            None => format!("{what}: fleet store: {error}"),
        },
    };
    let class = error.code().map(|c| &c.code()[..2]);
    if connection_lost(error) {
        return StoreError::Unreachable(message);
    }
    if retryable(error) {
        return StoreError::Unavailable(message);
    }
    if error.as_db_error().is_none() {
        // TLS or authentication refused: the configuration is wrong (retrying will not
        // help), and the message says why. Anything else (a value that does not convert) is
        // a bug.
        let text = error.to_string();
        return if text.contains("TLS") || text.contains("authentication") {
            StoreError::Invalid(message)
        } else {
            StoreError::Internal(message)
        };
    }
    match class {
        // Wrong password or role, no such database: the configuration is wrong.
        Some("28" | "3D") => StoreError::Invalid(message),
        // Insufficient resources, operator intervention, lock/timeout (55P03, 57014).
        Some("53" | "55" | "57") => StoreError::Unavailable(message),
        Some("23" | "22") => StoreError::Invalid(message),
        _ => StoreError::Internal(message),
    }
}

fn fail_to_store(failure: Failure, fail: Fail) -> StoreError {
    match fail {
        Fail::Pg(error) => pg_error(failure, &error),
        Fail::Store(error) => error,
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A pooled connection, and whether it must not be reused.
pub(crate) struct Connection {
    client: postgres::Client,
    statements: Statements,
    broken: bool,
}

/// Opens connections: the schema is brought up to date on the first, and every new one
/// checks for a failover before it serves anything.
struct Connector {
    config: postgres::Config,
    tls: MakeTlsConnector,
    windows: Windows,
    migrated: AtomicBool,
}

impl r2d2::ManageConnection for Connector {
    type Connection = Connection;
    type Error = StoreError;

    fn connect(&self) -> Result<Connection, StoreError> {
        let mut client = self
            .config
            .connect(self.tls.clone())
            .map_err(|e| pg_error(Failure::Read, &e))?;
        if !self.migrated.load(Ordering::Acquire) {
            schema::migrate(&mut client)?;
            self.migrated.store(true, Ordering::Release);
        }
        match failover::check(&mut client, unix_now(), self.windows)
            .map_err(|e| fail_to_store(Failure::Write, e))?
        {
            failover::Seen::Same => {}
            failover::Seen::Moved { from, to, profiles } => log::warn!(
                "fleet store is now server {to} (was {from}): a failover may have lost the \
                 last accepted codes, so every time step up to now + the window, and every \
                 HOTP counter up to the next one + the look-ahead, is treated as used \
                 ({profiles} profiles)"
            ),
        }
        Ok(Connection {
            client,
            statements: Statements::default(),
            broken: false,
        })
    }

    fn is_valid(&self, _connection: &mut Connection) -> Result<(), StoreError> {
        Ok(())
    }

    fn has_broken(&self, connection: &mut Connection) -> bool {
        connection.broken || connection.client.is_closed()
    }
}

/// Connection failures go to the agent's log (r2d2 would print them to stderr bare).
#[derive(Debug)]
struct LogErrors;

impl r2d2::HandleError<StoreError> for LogErrors {
    fn handle_error(&self, error: StoreError) {
        log::warn!("{error}");
    }
}

pub struct PgStore {
    pool: r2d2::Pool<Connector>,
    key: Arc<FleetKey>,
    host: String,
}

impl PgStore {
    /// Connects once (migrating the schema, checking for a failover) and returns the store.
    /// Fails on what retrying will not mend (a wrong password, database or certificate); a
    /// server that cannot be reached now is only logged: requests answer "unavailable" until
    /// it can (see `with_client`), and `status` says why.
    pub fn open(settings: PgSettings) -> Result<Self, StoreError> {
        let connector = Connector {
            config: settings.url.config.clone(),
            tls: settings.url.connector()?,
            windows: settings.windows,
            migrated: AtomicBool::new(false),
        };
        match r2d2::ManageConnection::connect(&connector) {
            Ok(_) => {}
            Err(StoreError::Unreachable(message)) => log::warn!(
                "{message}; starting anyway: requests fail as unavailable until it answers"
            ),
            Err(error) => return Err(error),
        }
        let pool = r2d2::Pool::builder()
            .max_size(connect::POOL_SIZE)
            .min_idle(Some(0))
            .connection_timeout(connect::CHECKOUT_TIMEOUT)
            // A dead connection shows as an error on use, which is retried on a fresh one;
            // a round trip to test each checkout would cost every login.
            .test_on_check_out(false)
            .error_handler(Box::new(LogErrors))
            .build_unchecked(connector);
        Ok(Self {
            pool,
            key: Arc::new(settings.key),
            host: settings.host,
        })
    }

    /// This host's name for a source, so each host counts its own.
    fn source_key(&self, source: &str) -> String {
        format!("{}/{source}", self.host)
    }

    /// Runs `work` on a pooled connection; on a lost connection or a lost race, again on a
    /// fresh one until [`RETRY_BUDGET`] is spent. `work` may therefore run more than once.
    fn with_client<T>(
        &self,
        failure: Failure,
        mut work: impl FnMut(&mut postgres::Client, &mut Statements) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + RETRY_BUDGET;
        loop {
            let mut connection = self
                .pool
                .get()
                .map_err(|e| StoreError::Unreachable(format!("fleet store unreachable: {e}")))?;
            let Connection {
                client, statements, ..
            } = &mut *connection;
            match work(client, statements) {
                Ok(value) => return Ok(value),
                Err(Fail::Pg(error)) => {
                    if connection_lost(&error) {
                        connection.broken = true;
                    }
                    drop(connection);
                    if !(retryable(&error) && Instant::now() < deadline) {
                        return Err(pg_error(failure, &error));
                    }
                    log::info!("fleet store: retrying after: {error}");
                }
                Err(Fail::Store(error)) => return Err(error),
            }
        }
    }

    /// Runs `work` outside a transaction: one statement (a read, or a write that needs no
    /// company: an audit row, a prune), with no BEGIN and COMMIT round trips.
    fn single<T>(
        &self,
        failure: Failure,
        mut work: impl FnMut(&mut Session<'_, postgres::Client>) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        self.with_client(failure, |client, statements| {
            work(&mut Session::new(client, statements))
        })
    }

    fn read<T>(
        &self,
        work: impl FnMut(&mut Session<'_, postgres::Client>) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        self.single(Failure::Read, work)
    }

    /// Runs `work` in one transaction, committed when it succeeds.
    fn write<T>(
        &self,
        mut work: impl FnMut(&mut Session<'_, postgres::Transaction<'_>>) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        self.with_client(Failure::Write, |client, statements| {
            let mut tx = client.transaction()?;
            let value = work(&mut Session::new(&mut tx, statements))?;
            tx.commit()?;
            Ok(value)
        })
    }

    /// One account's transaction body: lock, read, decide, write the outcome and its audit.
    fn apply(
        &self,
        tx: &mut Session<'_, postgres::Transaction<'_>>,
        account: &str,
        source: Option<&str>,
        decide: &mut Decision<'_>,
    ) -> Result<Option<ProfileRecord>, Fail> {
        // Transactions on one account take turns, fleet-wide, until commit: on its row's lock
        // when it has a profile (one round trip, every login), else on an advisory lock of
        // its name, which also orders two creations of a row that does not exist yet; the
        // row is then read again, locked, as the previous holder left it.
        let source_key = source.map(|s| self.source_key(s));
        let found = match &source_key {
            Some(key) => load_locked_with_source(tx, account, key, &self.key)?
                .map(|(record, source)| (record, Some(source))),
            None => load_locked(tx, account, &self.key)?.map(|record| (record, None)),
        };
        let (current, source_record) = match found {
            Some((record, source)) => (Some(record), source),
            None => {
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    &[&account],
                )?;
                let current = load_locked(tx, account, &self.key)?;
                let source_record = match &source_key {
                    Some(key) => Some(load_source(tx, account, key)?),
                    None => None,
                };
                (current, source_record)
            }
        };
        let mut outcome = decide(current.as_ref(), source_record.as_ref());
        let mut forget_sources = outcome.clear_sources;
        let stored = match outcome.change {
            Change::Keep => current,
            Change::Create(mut record) => {
                forget_sources = true;
                create(tx, &mut record, &self.key)?;
                Some(*record)
            }
            Change::Update(mut record) => {
                record.id = current.as_ref().map_or(0, |c| c.id);
                // A login's update and its audit row travel together.
                match outcome.audit.take() {
                    Some(event) => update_with_audit(tx, &record, &self.key, &event)?,
                    None => update(tx, &record, &self.key)?,
                }
                Some(*record)
            }
            Change::Delete => {
                forget_sources = true;
                tx.execute("DELETE FROM profiles WHERE account = $1", &[&account])?;
                None
            }
        };
        if forget_sources {
            clear_sources(tx, account)?;
        } else if let (Some(key), Some(record)) = (&source_key, outcome.source) {
            if Some(&record) != source_record.as_ref() {
                save_source(tx, account, key, &record)?;
            }
        }
        if let Some(event) = outcome.audit {
            insert_audit(tx, &event)?;
        }
        Ok(stored)
    }

    /// Inserts many new profiles (ids are assigned) in one transaction (benchmarks, migrate).
    pub fn insert_many(&self, records: &mut [ProfileRecord]) -> Result<(), StoreError> {
        self.write(|tx| {
            for record in records.iter_mut() {
                create(tx, record, &self.key)?;
            }
            Ok(())
        })
    }

    /// The fleet key, for `migrate` (which re-keys emergency codes).
    pub fn key(&self) -> &FleetKey {
        &self.key
    }
}

impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgresql"
    }

    fn scope(&self) -> &'static str {
        "fleet"
    }

    fn emergency_digest(&self, salted: &[u8]) -> Vec<u8> {
        self.key.emergency_digest(salted).to_vec()
    }

    fn get(&self, account: &str) -> Result<Option<ProfileRecord>, StoreError> {
        self.read(|client| load(client, account, &self.key))
    }

    fn profile_account(&self, account: &str, uid: Option<u32>) -> Result<String, StoreError> {
        let uid = uid.map(i64::from);
        let held: Option<String> = self.read(|client| {
            let row = client.query_opt(
                "SELECT account FROM profiles WHERE account = $1 OR uid = $2 \
                 ORDER BY account = $1 DESC, account LIMIT 1",
                &[&account, &uid],
            )?;
            Ok(row.map(|r| r.try_get(0)).transpose()?)
        })?;
        Ok(held.unwrap_or_else(|| account.to_owned()))
    }

    fn blocked_sources(
        &self,
        account: &str,
        now: i64,
        limit: u32,
    ) -> Result<Vec<(String, SourceRecord)>, StoreError> {
        let limit = i64::from(limit);
        self.read(|client| {
            client
                .query(
                    "SELECT source, failures, blocked_until, last_failure_at FROM source_failures \
                     WHERE account = $1 AND blocked_until > $2 \
                     ORDER BY blocked_until DESC, source LIMIT $3",
                    &[&account, &now, &limit],
                )?
                .iter()
                .map(|row| Ok((row.try_get(0)?, source_from_row(row, 1)?)))
                .collect()
        })
    }

    fn list(&self, after: Option<&str>, limit: u32) -> Result<Vec<ProfileRecord>, StoreError> {
        let limit = i64::from(limit);
        self.read(|client| {
            client
                .query(&profile_sql().page, &[&after, &limit])?
                .iter()
                .map(|row| record_from_row(row, &self.key))
                .collect()
        })
    }

    fn transact(
        &self,
        account: &str,
        source: Option<&str>,
        decide: &mut Decision<'_>,
    ) -> Result<Option<ProfileRecord>, StoreError> {
        self.write(|tx| self.apply(tx, account, source, decide))
    }

    fn transact_each(
        &self,
        jobs: &mut [(String, Box<Decision<'_>>)],
    ) -> Result<Vec<Option<ProfileRecord>>, StoreError> {
        self.write(|tx| {
            // Locks in account order, so two batches never wait on each other in a cycle.
            let mut order: Vec<usize> = (0..jobs.len()).collect();
            order.sort_by(|a, b| jobs[*a].0.cmp(&jobs[*b].0));
            let mut stored = vec![None; jobs.len()];
            for index in order {
                let (account, decide) = &mut jobs[index];
                stored[index] = self.apply(tx, account, None, decide.as_mut())?;
            }
            Ok(stored)
        })
    }

    fn audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.single(Failure::Write, |client| insert_audit(client, event))
    }

    fn last_code_login(
        &self,
        account: &str,
        place: &LoginPlace<'_>,
    ) -> Result<Option<i64>, StoreError> {
        // Grace is per host: a login on another host spares no code here.
        let (success, emergency) = (
            AuditResult::Success.as_str(),
            AuditResult::EmergencyCode.as_str(),
        );
        self.read(|client| {
            let row = client.query_one(
                "SELECT max(at) FROM audit WHERE account = $1 AND op = 'authenticate' \
                 AND result IN ($6, $7) AND caller_uid = 0 AND host IS NOT DISTINCT FROM $8 \
                 AND service IS NOT DISTINCT FROM $2 AND rhost IS NOT DISTINCT FROM $3 \
                 AND tty IS NOT DISTINCT FROM $4 AND ruser IS NOT DISTINCT FROM $5",
                &[
                    &account,
                    &place.service,
                    &place.rhost,
                    &place.tty,
                    &place.ruser,
                    &success,
                    &emergency,
                    &self.host,
                ],
            )?;
            Ok(row.try_get(0)?)
        })
    }

    fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let limit = i64::from(query.limit);
        const SQL: &str = concat!(
            audit_select!(),
            " WHERE ($1::text IS NULL OR account = $1) \
             AND ($2::bigint IS NULL OR at >= $2) AND ($3::bigint IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        );
        self.read(|client| {
            client
                .query(SQL, &[&query.account, &query.since, &query.before, &limit])?
                .iter()
                .map(audit_from_row)
                .collect()
        })
    }

    fn profile_counts(&self, now: i64, window: u32) -> Result<ProfileTally, StoreError> {
        let window = i64::from(window);
        self.read(|client| {
            let row = client.query_one(
                "SELECT \
                 count(*) FILTER (WHERE verified_at IS NULL), \
                 count(*) FILTER (WHERE verified_at IS NOT NULL AND enabled), \
                 count(*) FILTER (WHERE NOT enabled), \
                 count(*) FILTER (WHERE locked_until > $1), \
                 count(*) FILTER (WHERE kind = 'totp' AND last_step > $1::bigint / period \
                 + coalesce(skew_window, $2::bigint)), \
                 (SELECT count(*) FROM source_failures WHERE blocked_until > $1) \
                 FROM profiles",
                &[&now, &window],
            )?;
            Ok(ProfileTally {
                pending: count(&row, 0)?,
                active: count(&row, 1)?,
                disabled: count(&row, 2)?,
                locked: count(&row, 3)?,
                clock_ahead: count(&row, 4)?,
                blocked_sources: count(&row, 5)?,
            })
        })
    }

    fn recent_attempts(&self, since: i64) -> Result<AttemptTally, StoreError> {
        let results = |outcome: Outcome| -> Vec<&'static str> {
            AuditResult::ALL
                .iter()
                .filter(|result| result.outcome() == outcome)
                .map(|result| result.as_str())
                .collect()
        };
        let (logins, failures) = (results(Outcome::Login), results(Outcome::Failure));
        self.read(|client| {
            let row = client.query_one(
                "SELECT count(*) FILTER (WHERE result = ANY($2)), \
                 count(*) FILTER (WHERE result = ANY($3)) \
                 FROM audit WHERE at >= $1 AND op = 'authenticate'",
                &[&since, &logins, &failures],
            )?;
            Ok(AttemptTally {
                logins: count(&row, 0)?,
                failures: count(&row, 1)?,
            })
        })
    }

    fn prune_audit(&self, before: i64, keep_rows: u64) -> Result<usize, StoreError> {
        let keep = i64::try_from(keep_rows).unwrap_or(i64::MAX);
        let mut deleted = 0;
        loop {
            let chunk = self.single(Failure::Write, |client| {
                Ok(client.execute(
                    "DELETE FROM audit WHERE \
                     id IN (SELECT id FROM audit WHERE at < $1 LIMIT $3) OR \
                     id IN (SELECT id FROM audit WHERE id <= (SELECT max(id) FROM audit) - $2 \
                     ORDER BY id LIMIT $3)",
                    &[&before, &keep, &PRUNE_CHUNK],
                )?)
            })?;
            deleted += usize::try_from(chunk).unwrap_or(usize::MAX);
            if chunk == 0 {
                return Ok(deleted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings(cluster: &pam_totp_testpg::Cluster, host: &str) -> PgSettings {
        let password = zeroize::Zeroizing::new(cluster.password().to_owned());
        PgSettings {
            url: StoreUrl::parse(&cluster.url(), Some(&password)).unwrap(),
            key: FleetKey::from_bytes(&[3; 32]),
            host: host.into(),
            windows: Windows { totp: 1, hotp: 10 },
        }
    }

    #[test]
    fn agents_starting_together_migrate_the_schema_once() {
        let cluster = pam_totp_testpg::Cluster::start(Default::default()).unwrap();
        let stores: Vec<PgStore> = std::thread::scope(|scope| {
            let opening: Vec<_> = (0..6)
                .map(|n| {
                    let cluster = &cluster;
                    scope.spawn(move || PgStore::open(settings(cluster, &format!("h{n}"))))
                })
                .collect();
            opening
                .into_iter()
                .map(|o| o.join().unwrap().unwrap())
                .collect()
        });
        assert_eq!(stores.len(), 6);
        assert_eq!(
            cluster.psql("SELECT version FROM pam_totp_schema").unwrap(),
            "2"
        );
        assert_eq!(
            cluster
                .psql("SELECT count(*) FROM pam_totp_schema")
                .unwrap(),
            "1"
        );
    }

    #[test]
    fn a_new_server_marks_time_steps_and_hotp_counters_used_each_their_own_way() {
        let cluster = pam_totp_testpg::Cluster::start(Default::default()).unwrap();
        let store = PgStore::open(settings(&cluster, "h")).unwrap();
        let code_settings = crate::store::CodeSettings {
            algorithm: pam_totp_proto::Algorithm::Sha1,
            digits: 6,
            period: 30,
        };
        let profile = |account: &str, kind, last_step| ProfileRecord {
            kind,
            last_step,
            ..ProfileRecord::new(
                account,
                1000,
                zeroize::Zeroizing::new(vec![5; 20]),
                code_settings,
                "i",
                0,
            )
        };
        use pam_totp_proto::ProfileKind::{Hotp, Totp};
        let mut records = vec![
            profile("amy", Totp, Some(5)),
            profile("hal", Hotp, Some(7)),
            profile("hank", Hotp, None),
        ];
        store.insert_many(&mut records).unwrap();
        // As after a restore into the same cluster (the README's recipe) or a failover.
        cluster
            .psql("UPDATE meta SET value = 'restored' WHERE key = 'server'")
            .unwrap();
        let before = unix_now();
        let reconnected = PgStore::open(settings(&cluster, "h")).unwrap();
        let after = unix_now();
        let last_step = |account: &str| reconnected.get(account).unwrap().unwrap().last_step;
        let step = last_step("amy").unwrap();
        assert!((before / 30 + 1..=after / 30 + 1).contains(&step), "{step}");
        // HOTP (look-ahead 10): the next counter and the 10 after it, never a time step.
        assert_eq!(last_step("hal"), Some(18));
        assert_eq!(last_step("hank"), Some(10));
    }

    #[test]
    fn a_secret_sealed_for_one_account_does_not_open_for_another() {
        let cluster = pam_totp_testpg::Cluster::start(Default::default()).unwrap();
        let store = PgStore::open(settings(&cluster, "h")).unwrap();
        let settings_ = crate::store::CodeSettings {
            algorithm: pam_totp_proto::Algorithm::Sha1,
            digits: 6,
            period: 30,
        };
        let mut records: Vec<ProfileRecord> = ["amy", "bob"]
            .iter()
            .map(|name| {
                ProfileRecord::new(
                    name,
                    1000,
                    zeroize::Zeroizing::new(vec![5; 20]),
                    settings_,
                    "i",
                    0,
                )
            })
            .collect();
        store.insert_many(&mut records).unwrap();
        // Someone with write access to the database (but not the key) copies amy's row.
        cluster
            .psql(
                "UPDATE profiles SET secret = (SELECT secret FROM profiles WHERE account = 'amy') \
                 WHERE account = 'bob'",
            )
            .unwrap();
        assert!(store.get("amy").unwrap().is_some());
        let error = store.get("bob").unwrap_err();
        assert!(
            matches!(&error, StoreError::Internal(m) if m.contains("bob")),
            "{error:?}"
        );
    }
}
