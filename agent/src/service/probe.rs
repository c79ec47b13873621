//! `probe`: does a login need a code, how many digits, and does `grace` let it through?

use super::{denied, Caller, Service, Target};
use crate::authz::Op;
use crate::store::{LoginPlace, ProfileRecord};
use pam_totp_proto::validate;
use pam_totp_proto::{ApiError, AuditResult, LoginContext, ProbeReply, Reply};

impl Service {
    pub(super) fn probe(
        &self,
        caller: Caller,
        target: &Target,
        context: &LoginContext,
        grace: Option<u32>,
    ) -> Result<Reply, ApiError> {
        self.refuse_stranger(caller, target, Op::Probe, context)?;
        let record = self
            .store
            .get(&target.account)
            .map_err(|e| self.store_failed(e))?;
        if record.is_none() && !target.resolved {
            return self.probe(caller, &self.resolved(target)?, context, grace);
        }
        let relation = self.relation(caller, target, record.as_ref());
        if !self.permits(relation, Op::Probe) {
            return Err(denied(Op::Probe));
        }
        let active = record.as_ref().filter(|r| r.verified() && r.enabled);
        // Grace rests on PAM items, which only a root caller (sshd, sudo) vouches for.
        let grace = match (active, grace) {
            (Some(record), Some(seconds)) if seconds > 0 && caller.peer.uid == 0 => {
                self.grace_applies(record, context, seconds)?
            }
            _ => false,
        };
        if grace {
            let mut event = self.event(caller.peer, &target.account, Op::Authenticate, context);
            event.uid = active.map(|r| r.uid);
            event.result = AuditResult::Grace;
            self.store.audit(&event).map_err(|e| self.store_failed(e))?;
            self.log_attempt(
                caller,
                Op::Authenticate,
                &target.account,
                context,
                event.result,
            );
        }
        Ok(Reply::Probe(ProbeReply {
            needs_code: active.is_some(),
            digits: active.map_or(validate::MIN_DIGITS, |r| r.digits),
            grace,
        }))
    }

    /// Grace: a code login of this profile through a root caller, from exactly this service,
    /// remote host, tty and remote user, less than `seconds` ago. Never while locked; never
    /// for a login without a service, nor one with neither a tty nor a remote host (nothing
    /// would tell one such login from another).
    fn grace_applies(
        &self,
        record: &ProfileRecord,
        context: &LoginContext,
        seconds: u32,
    ) -> Result<bool, ApiError> {
        let now = self.clock.now();
        let given = |item: &Option<String>| item.as_ref().is_some_and(|v| !v.is_empty());
        let nowhere = !given(&context.tty) && !given(&context.rhost);
        let locked = record.locked_until.is_some_and(|until| until > now);
        if !given(&context.service) || nowhere || locked {
            return Ok(false);
        }
        let place = LoginPlace {
            service: context.service.as_deref(),
            rhost: context.rhost.as_deref(),
            tty: context.tty.as_deref(),
            ruser: context.ruser.as_deref(),
        };
        let last = self
            .store
            .last_code_login(&record.account, &place)
            .map_err(|e| self.store_failed(e))?;
        // Only logins with this profile count: not those of a profile it replaced.
        Ok(last.is_some_and(|at| {
            at >= record.created_at && now >= at && now - at < i64::from(seconds)
        }))
    }
}
