//! `log` (the audit trail) and `status` (what the agent is and holds), plus audit retention.

use super::{denied, store_error, Service};
use crate::authz::{Op, Peer, Relation};
use crate::store::AuditQuery;
use crate::view::rfc3339;
use pam_totp_proto::validate;
use pam_totp_proto::{ApiError, AuditEntry, RecentAttempts, Reply, StatusReply};

/// Most audit rows one `log` request returns.
pub const MAX_LOG_LIMIT: u32 = 10_000;

impl Service {
    /// The audit trail, newest first. Administrators read any account or all; anyone else
    /// reads only their own (the default when they name none).
    pub(super) fn log(
        &self,
        peer: Peer,
        account: Option<String>,
        since: Option<i64>,
        limit: u32,
    ) -> Result<Reply, ApiError> {
        if !(1..=MAX_LOG_LIMIT).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("limit must be 1 to {MAX_LOG_LIMIT}"),
            ));
        }
        let account = match account {
            Some(account) => Some(account),
            None if self.is_admin(peer.uid) => None,
            None => Some(self.directory.name_of(peer.uid).ok_or_else(|| {
                ApiError::permission_denied("your uid has no account name to read the log of")
            })?),
        };
        if let Some(account) = &account {
            validate::account(account)?;
            let relation = self.relation(peer, account, None);
            if !self.permits(relation, Op::Log) {
                return Err(denied(Op::Log));
            }
        }
        let query = AuditQuery {
            account,
            since,
            limit,
        };
        let events = self.store.audit_log(&query).map_err(store_error)?;
        Ok(Reply::Log(
            events
                .into_iter()
                .map(|event| AuditEntry {
                    time: rfc3339(event.at),
                    account: event.account,
                    op: event.op,
                    result: event.result,
                    service: event.service,
                    rhost: event.rhost,
                    tty: event.tty,
                    caller_uid: event.caller_uid,
                })
                .collect(),
        ))
    }

    /// Version, uptime and paths for anyone (is the agent up?); counts for administrators.
    pub(super) fn status(&self, peer: Peer) -> Result<Reply, ApiError> {
        let now = self.clock.now();
        let admin = self.relation(peer, "", None) == Relation::Admin;
        let (profiles, last_hour) = if admin {
            let counts = self.store.profile_counts(now).map_err(store_error)?;
            let recent: RecentAttempts = self
                .store
                .recent_attempts(now - 3600)
                .map_err(store_error)?;
            (Some(counts), Some(recent))
        } else {
            (None, None)
        };
        Ok(Reply::Status(StatusReply {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: self.started.elapsed().as_secs(),
            socket: self.paths.socket.clone(),
            database: self.paths.database.clone(),
            profiles,
            last_hour,
        }))
    }

    /// Deletes audit rows past the configured retention; returns how many.
    pub fn prune_audit(&self) -> Result<usize, ApiError> {
        let days = self.config.audit_retention_days;
        if days == 0 {
            return Ok(0);
        }
        let before = self.clock.now() - i64::from(days) * 24 * 60 * 60;
        self.store.prune_audit(before).map_err(store_error)
    }
}
