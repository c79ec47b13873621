//! Reading and administering profiles: show, list, disable/enable, unlock, comments, removal
//! and new emergency codes.

use super::codes::source_of;
use super::{denied, not_enrolled, Caller, Done, Service, Target, Verdict};
use crate::authz::{Op, Relation};
use crate::secret;
use crate::store::{Change, ProfileRecord};
use pam_totp_proto::validate;
use pam_totp_proto::AuditResult;
use pam_totp_proto::{
    ApiError, CodesReply, LoginContext, ProfileKind, Reply, SecretString, MAX_LIST_PAGE,
};

/// What an owner must show to change their own profile (admins never need a code).
#[derive(Debug, Clone, Copy)]
enum OwnerProof<'a> {
    None,
    /// A current or emergency code, as given (`None`: not given).
    Code(Option<&'a SecretString>),
}

impl Service {
    pub(super) fn show(&self, caller: Caller, target: &Target) -> Result<Reply, ApiError> {
        self.refuse_stranger(caller, target, Op::Show, &LoginContext::default())?;
        let record = self
            .store
            .get(&target.account)
            .map_err(|e| self.store_failed(e))?;
        let relation = self.relation(caller, target, record.as_ref());
        if !self.permits(relation, Op::Show) {
            return Err(denied(Op::Show));
        }
        let record = record.ok_or_else(|| not_enrolled(&target.account))?;
        Ok(Reply::Profile(self.view(&record, relation)?))
    }

    pub(super) fn list(
        &self,
        caller: Caller,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Reply, ApiError> {
        if !caller.admin {
            return Err(ApiError::permission_denied(
                "permission denied: only administrators may list profiles",
            ));
        }
        let limit = limit.unwrap_or(MAX_LIST_PAGE);
        if !(1..=MAX_LIST_PAGE).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("limit must be 1 to {MAX_LIST_PAGE}"),
            ));
        }
        let records = self
            .store
            .list(after, limit)
            .map_err(|e| self.store_failed(e))?;
        let views = records
            .iter()
            .map(|record| self.view(record, Relation::Admin))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Reply::Profiles(views))
    }

    /// An administrative change to an existing profile, stamped with `changed_at`.
    fn modify(
        &self,
        caller: Caller,
        target: &Target,
        op: Op,
        clear_sources: bool,
        change: &(dyn Fn(&mut ProfileRecord) + Sync),
    ) -> Result<Reply, ApiError> {
        let now = self.clock.now();
        let done =
            self.change_profile(caller, target, op, OwnerProof::None, &mut |mut record| {
                change(&mut record);
                record.changed_at = now;
                (Change::Update(Box::new(record)), clear_sources)
            })?;
        let record = done.stored.ok_or_else(|| not_enrolled(&target.account))?;
        Ok(Reply::Profile(self.view(&record, done.relation)?))
    }

    pub(super) fn set_enabled(
        &self,
        caller: Caller,
        target: &Target,
        enabled: bool,
    ) -> Result<Reply, ApiError> {
        let op = if enabled { Op::Enable } else { Op::Disable };
        self.modify(caller, target, op, false, &|record| {
            record.enabled = enabled
        })
    }

    /// Clears the account's lock, every source's block, and a TOTP profile's last used step
    /// beyond the window ahead of the clock (left by a clock that was set back): until real
    /// time caught up every code would be a replay. Every step up to now + the window stays
    /// used, so no code that could be accepted now works a second time. (An HOTP counter has
    /// no clock to be ahead of: it is left alone.)
    pub(super) fn unlock(&self, caller: Caller, target: &Target) -> Result<Reply, ApiError> {
        let now = self.clock.now();
        self.modify(caller, target, Op::Unlock, true, &|record| {
            record.failed_attempts = 0;
            record.locked_until = None;
            if record.kind == ProfileKind::Hotp {
                return;
            }
            let window = i64::from(record.window.unwrap_or(self.config.window));
            let latest_acceptable = now / i64::from(record.period.max(1)) + window;
            if record
                .last_step
                .is_some_and(|last| last > latest_acceptable)
            {
                record.last_step = Some(latest_acceptable);
            }
        })
    }

    pub(super) fn set_comment(
        &self,
        caller: Caller,
        target: &Target,
        comment: String,
    ) -> Result<Reply, ApiError> {
        validate::comment(&comment)?;
        let comment = Some(comment).filter(|c| !c.is_empty());
        self.modify(caller, target, Op::Set, false, &|record| {
            record.comment.clone_from(&comment);
        })
    }

    /// Applies `apply` to an existing profile in one transaction, after authorization and,
    /// for owners where `proof` asks for it, a valid code. `apply` also says whether to
    /// forget the account's sources. Audited either way.
    fn change_profile(
        &self,
        caller: Caller,
        target: &Target,
        op: Op,
        proof: OwnerProof<'_>,
        apply: &mut (dyn FnMut(ProfileRecord) -> (Change, bool) + Send),
    ) -> Result<Done<()>, ApiError> {
        let now = self.clock.now();
        let context = LoginContext::default();
        let source = source_of(caller.peer, &context);
        let account = target.account.as_str();
        self.transact(
            caller,
            target,
            op,
            &context,
            Some(&source),
            &mut |relation, current, source_record| {
                if !self.permits(relation, op) {
                    return Verdict::refuse(denied(op), AuditResult::Denied);
                }
                let Some(current) = current else {
                    return Verdict::refuse(not_enrolled(account), AuditResult::NotEnrolled);
                };
                let (record, checked_source) = match (relation, proof) {
                    (Relation::Owner, OwnerProof::Code(code)) => {
                        match self.owner_code_check(current, source_record, code, op, now) {
                            Ok((record, source)) => (record, Some(source)),
                            Err(refusal) => return *refusal,
                        }
                    }
                    _ => (current.clone(), None),
                };
                let (change, clear_sources) = apply(record);
                Verdict {
                    source: checked_source,
                    clear_sources,
                    ..Verdict::accept((), change, AuditResult::Success)
                }
            },
        )
    }

    pub(super) fn remove(
        &self,
        caller: Caller,
        target: &Target,
        code: Option<&SecretString>,
    ) -> Result<Reply, ApiError> {
        let proof = OwnerProof::Code(code);
        self.change_profile(caller, target, Op::Remove, proof, &mut |_| {
            (Change::Delete, true)
        })?;
        Ok(Reply::Removed {
            account: target.account.clone(),
        })
    }

    pub(super) fn regenerate_codes(
        &self,
        caller: Caller,
        target: &Target,
        code: Option<&SecretString>,
    ) -> Result<Reply, ApiError> {
        let (plain, hashed) = secret::generate_emergency_codes(&|s| self.store.emergency_digest(s))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let now = self.clock.now();
        let proof = OwnerProof::Code(code);
        let done = self.change_profile(caller, target, Op::Codes, proof, &mut |mut record| {
            record.emergency_codes.clone_from(&hashed);
            record.changed_at = now;
            (Change::Update(Box::new(record)), false)
        })?;
        let record = done.stored.ok_or_else(|| not_enrolled(&target.account))?;
        Ok(Reply::Codes(CodesReply {
            emergency_codes: plain,
            profile: self.view(&record, done.relation)?,
        }))
    }
}
