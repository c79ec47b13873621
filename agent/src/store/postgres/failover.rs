//! No replay after a failover. With asynchronous replication a promoted standby can lack the
//! last steps the old primary accepted. Every new connection compares the server it reached
//! (PostgreSQL's system identifier and current timeline) with the one the fleet last recorded
//! in `meta`; on a different server, before the connection serves anything, every TOTP step
//! up to now + the window counts as used, and every HOTP counter a login could have accepted
//! (the next one and the look-ahead after it). The cost: after a failover each TOTP account
//! waits at most one window for its next code; each HOTP token is pressed up to the
//! look-ahead + 1 times past codes that are refused.

use super::Fail;
use crate::store::Windows;
use postgres::GenericClient;

/// The `meta` key naming the server the fleet writes to: "SYSTEM_ID/TIMELINE".
const SERVER_KEY: &str = "server";

/// The server this connection reached. The timeline is the one WAL is written on now (a
/// promotion starts a new one at once; `pg_control_checkpoint()` lags until a checkpoint).
fn server_identity(client: &mut impl GenericClient) -> Result<String, Fail> {
    let row = client.query_one(
        "SELECT (SELECT system_identifier FROM pg_control_system())::text || '/' || \
         substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
        &[],
    )?;
    Ok(row.try_get(0)?)
}

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Seen {
    /// The server the fleet last wrote to (or the first one: nothing to forget).
    Same,
    /// Another server: `profiles` were moved forward; `from` is what was recorded.
    Moved {
        from: String,
        to: String,
        profiles: u64,
    },
}

/// Checks the server and, when it changed, marks the steps used, all in one transaction
/// (concurrent agents take turns on the `meta` row; the second finds it done).
pub(super) fn check(
    client: &mut postgres::Client,
    now: i64,
    windows: Windows,
) -> Result<Seen, Fail> {
    let mut tx = client.transaction()?;
    let here = server_identity(&mut tx)?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        &[&SERVER_KEY, &here],
    )?;
    let recorded: String = tx
        .query_one(
            "SELECT value FROM meta WHERE key = $1 FOR UPDATE",
            &[&SERVER_KEY],
        )?
        .try_get(0)?;
    if recorded == here {
        tx.commit()?;
        return Ok(Seen::Same);
    }
    let (totp, hotp) = (i64::from(windows.totp), i64::from(windows.hotp));
    // As a restored SQLite backup (sqlite/backup.rs): HOTP counters move on by the
    // look-ahead, never to a time step.
    let moved = tx.execute(
        "UPDATE profiles SET last_step = CASE kind \
         WHEN 'hotp' THEN coalesce(last_step, -1) + 1 + $3::bigint \
         ELSE greatest(coalesce(last_step, -1), \
         $1::bigint / period + coalesce(skew_window, $2::bigint)) END",
        &[&now, &totp, &hotp],
    )?;
    tx.execute(
        "UPDATE meta SET value = $2 WHERE key = $1",
        &[&SERVER_KEY, &here],
    )?;
    tx.commit()?;
    Ok(Seen::Moved {
        from: recorded,
        to: here,
        profiles: moved,
    })
}
