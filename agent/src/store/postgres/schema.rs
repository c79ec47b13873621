//! The fleet store's schema: ordered migrations, run by whichever agent connects first (an
//! advisory lock makes agents that start together take turns); `pam-totp-agent schema`
//! prints the same SQL for DBAs who create it themselves.

use super::{pg_error, Failure};
use crate::store::StoreError;

/// Serializes migrations between agents (an arbitrary constant: "pamtotp" in ASCII).
const MIGRATION_LOCK: i64 = 0x0070_616d_746f_7470;

/// The bookkeeping table: one row, how many migrations have run.
const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS pam_totp_schema (
    version integer NOT NULL
);
INSERT INTO pam_totp_schema (version)
    SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM pam_totp_schema);
";

/// Ordered migrations; `pam_totp_schema.version` counts how many have run.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE profiles (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account text NOT NULL UNIQUE,
    uid bigint NOT NULL,
    owner text,
    -- XChaCha20-Poly1305 under the fleet key, bound to the account: never the secret.
    secret bytea NOT NULL,
    algorithm text NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits integer NOT NULL CHECK (digits BETWEEN 6 AND 8),
    period integer NOT NULL CHECK (period > 0),
    issuer text NOT NULL,
    comment text,
    created_at bigint NOT NULL,
    changed_at bigint NOT NULL,
    verified_at bigint,
    last_used_at bigint,
    enabled boolean NOT NULL,
    last_step bigint,
    failed_attempts integer NOT NULL DEFAULT 0,
    locked_until bigint,
    -- salt:HMAC(fleet key, SHA-256(salt || code)), comma-separated: never the codes.
    emergency_codes text NOT NULL DEFAULT '',
    skew_window integer
);
CREATE INDEX profiles_by_uid ON profiles (uid);
CREATE TABLE source_failures (
    account text NOT NULL,
    -- host/source: each host counts its own sources.
    source text NOT NULL,
    failures integer NOT NULL,
    blocked_until bigint,
    last_failure_at bigint NOT NULL,
    PRIMARY KEY (account, source)
);
CREATE INDEX sources_by_block ON source_failures (account, blocked_until);
CREATE TABLE audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at bigint NOT NULL,
    host text,
    account text NOT NULL,
    uid bigint,
    op text NOT NULL,
    result text NOT NULL,
    service text,
    rhost text,
    tty text,
    ruser text,
    caller_uid bigint NOT NULL,
    caller_pid integer NOT NULL
);
CREATE INDEX audit_by_account ON audit (account, id);
CREATE INDEX audit_by_time ON audit (at);
-- Which server the fleet last wrote to (system identifier and timeline): see failover.rs.
CREATE TABLE meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
",
    "
-- TOTP (time steps) or HOTP (counters): last_step holds a step or a counter accordingly.
ALTER TABLE profiles ADD COLUMN kind text NOT NULL DEFAULT 'totp'
    CHECK (kind IN ('totp', 'hotp'));
",
];

/// The whole schema as SQL, for `pam-totp-agent schema`.
pub fn sql() -> String {
    let mut out = String::from(
        "-- pam-totp fleet store schema. Run as the role named in the store URL (it must own\n\
         -- the tables), or let the agent create it: it does so itself when it connects.\n\
         BEGIN;\n",
    );
    out.push_str(VERSION_TABLE);
    for sql in MIGRATIONS {
        out.push_str(sql);
    }
    out.push_str(&format!(
        "UPDATE pam_totp_schema SET version = {};\nCOMMIT;\n",
        MIGRATIONS.len()
    ));
    out
}

/// Runs pending migrations in one transaction; agents starting together wait on the lock.
pub(super) fn migrate(client: &mut postgres::Client) -> Result<(), StoreError> {
    let write = |e| pg_error(Failure::Write, &e);
    let mut tx = client.transaction().map_err(write)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(write)?;
    tx.batch_execute(VERSION_TABLE).map_err(write)?;
    let version: i32 = tx
        .query_one("SELECT version FROM pam_totp_schema", &[])
        .and_then(|row| row.try_get(0))
        .map_err(|e| pg_error(Failure::Read, &e))?;
    let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    if version > known {
        return Err(StoreError::Internal(format!(
            "fleet store is from an unknown version: schema version {version} is newer than \
             this agent knows ({known})"
        )));
    }
    let pending = usize::try_from(version).unwrap_or(0);
    if pending == MIGRATIONS.len() {
        return Ok(());
    }
    for sql in &MIGRATIONS[pending..] {
        tx.batch_execute(sql).map_err(write)?;
    }
    tx.execute("UPDATE pam_totp_schema SET version = $1", &[&known])
        .map_err(write)?;
    tx.commit().map_err(write)
}
