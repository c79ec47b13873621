//! `log` (the audit trail) and `status` (what the agent is and holds), plus audit retention.

use super::{Caller, Service};
use crate::authz::Op;
use crate::store::AuditQuery;
use crate::view::rfc3339;
use pam_totp_proto::{
    ApiError, AuditEntry, LogPage, LoginContext, MetricsReply, ProfileCounts, RecentAttempts,
    Reply, StatusReply, MAX_LOG_PAGE,
};

impl Service {
    /// One page of the audit trail, newest first. Administrators read any account or all;
    /// anyone else reads only their own (the default when they name none). At most
    /// [`MAX_LOG_PAGE`] rows are read, so memory per request stays bounded.
    pub(super) fn log(
        &self,
        caller: Caller,
        account: Option<String>,
        since: Option<i64>,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Reply, ApiError> {
        if !(1..=MAX_LOG_PAGE).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("limit must be 1 to {MAX_LOG_PAGE}"),
            ));
        }
        let name = match account {
            Some(account) => Some(account),
            None if caller.admin => None,
            None => Some(self.directory.name_of(caller.peer.uid).ok_or_else(|| {
                ApiError::permission_denied("your uid has no account name to read the log of")
            })?),
        };
        let account = match name {
            Some(name) => {
                let target = self.target(&name)?;
                // Admin, or the account itself by NSS: owners may read their own log.
                self.refuse_stranger(caller, &target, Op::Log, &LoginContext::default())?;
                Some(target.account)
            }
            None => None,
        };
        let query = AuditQuery {
            account,
            since,
            before,
            limit,
        };
        let events = self
            .store
            .audit_log(&query)
            .map_err(|e| self.store_failed(e))?;
        let next = events
            .last()
            .filter(|_| events.len() == usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|event| event.id);
        let entries = events
            .into_iter()
            .map(|event| AuditEntry {
                time: rfc3339(event.at),
                host: event.host,
                account: event.account,
                op: event.op,
                result: event.result,
                service: event.service,
                rhost: event.rhost,
                tty: event.tty,
                caller_uid: event.caller_uid,
            })
            .collect();
        Ok(Reply::Log(LogPage { entries, next }))
    }

    /// Version, uptime and paths for anyone (is the agent up?); counts for administrators.
    pub(super) fn status(&self, caller: Caller) -> Result<Reply, ApiError> {
        let now = self.clock.now();
        let (profiles, last_hour) = if caller.admin {
            let counts = self
                .store
                .profile_counts(now, self.config.window)
                .map_err(|e| self.store_failed(e))?;
            let recent = self
                .store
                .recent_attempts(now - 3600)
                .map_err(|e| self.store_failed(e))?;
            let counts = ProfileCounts {
                pending: counts.pending,
                active: counts.active,
                disabled: counts.disabled,
                locked: counts.locked,
                clock_ahead: counts.clock_ahead,
            };
            let recent = RecentAttempts {
                logins: recent.logins,
                failures: recent.failures,
            };
            (Some(counts), Some(recent))
        } else {
            (None, None)
        };
        Ok(Reply::Status(StatusReply {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: self.started.elapsed().as_secs(),
            socket: self.paths.socket.clone(),
            database: self.paths.database.clone(),
            store: self.store.kind().to_owned(),
            profiles,
            last_hour,
        }))
    }

    /// The metrics exposition; administrators only.
    pub(super) fn metrics(&self, caller: Caller) -> Result<Reply, ApiError> {
        if !caller.admin {
            return Err(ApiError::permission_denied(
                "permission denied: only administrators may read the metrics",
            ));
        }
        let tally = self
            .store
            .profile_counts(self.clock.now(), self.config.window)
            .map_err(|e| self.store_failed(e))
            .ok();
        let text = self.metrics.encode(tally, self.store.kind());
        Ok(Reply::Metrics(MetricsReply { text }))
    }

    /// Deletes audit rows past the configured retention (age and size); returns how many.
    pub fn prune_audit(&self) -> Result<usize, ApiError> {
        let days = self.config.audit_retention_days;
        let before = if days == 0 {
            i64::MIN
        } else {
            self.clock.now() - i64::from(days) * 24 * 60 * 60
        };
        self.store
            .prune_audit(before, self.config.audit_max_rows)
            .map_err(|e| self.store_failed(e))
    }
}
