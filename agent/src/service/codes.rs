//! Checking codes: TOTP steps, HOTP counters, replay, emergency codes, and the two failure
//! limits (the attempt's source, and the account).

use super::{denied, not_enrolled, Caller, Service, Target, Verdict};
use crate::authz::{Op, Peer, Relation};
use crate::secret;
use crate::store::{Change, ProfileRecord, SourceRecord};
use crate::totp::{self, TotpParams};
use pam_totp_proto::validate::{self, EMERGENCY_CODE_DIGITS};
use pam_totp_proto::{
    ApiError, AuditResult, AuthMethod, ErrorCode, LoginContext, ProfileKind, ProfileView,
    SecretString,
};

/// The result of checking a code (the records are updated to match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CodeCheck {
    Accepted(AuthMethod),
    /// A correct TOTP code of a step already used: refused, and not counted as a guess. (A
    /// used HOTP counter is behind the next one, where no code is looked for: `Wrong`.)
    Replayed,
    Wrong,
    /// The account is locked, or this source is blocked: the code was not looked at.
    Locked {
        retry_after: u64,
    },
}

impl CodeCheck {
    fn label(self) -> AuditResult {
        match self {
            Self::Accepted(AuthMethod::Totp) => AuditResult::Success,
            Self::Accepted(AuthMethod::EmergencyCode) => AuditResult::EmergencyCode,
            Self::Replayed => AuditResult::Replay,
            Self::Wrong => AuditResult::WrongCode,
            Self::Locked { .. } => AuditResult::Locked,
        }
    }

    fn into_result(self) -> Result<AuthMethod, ApiError> {
        match self {
            Self::Accepted(method) => Ok(method),
            Self::Replayed | Self::Wrong => Err(ApiError::code_rejected()),
            Self::Locked { retry_after } => Err(ApiError::rate_limited(retry_after)),
        }
    }
}

fn until(now: i64, seconds: u64) -> i64 {
    now.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX))
}

fn retry_after(until: i64, now: i64) -> u64 {
    u64::try_from(until - now).unwrap_or(1).max(1)
}

/// Where an attempt comes from. Only a root caller's PAM items are trusted (sshd, sudo and
/// su set them); any other caller could write anything there, so it is its own source.
pub(super) fn source_of(peer: Peer, context: &LoginContext) -> String {
    let item = |value: &Option<String>| {
        value
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    if peer.uid != 0 {
        return format!("uid:{}", peer.uid);
    }
    if let Some(rhost) = item(&context.rhost) {
        format!("rhost:{rhost}")
    } else if let Some(ruser) = item(&context.ruser) {
        format!("ruser:{ruser}")
    } else {
        "local".to_owned()
    }
}

/// The verdict of a finished check: the updated records are stored when the check changed
/// them (a success, a counted failure, a wrong guess while the account was locked); a replay
/// or a blocked source stores nothing.
fn verdict_of(
    check: CodeCheck,
    record: ProfileRecord,
    source: SourceRecord,
    before: (&ProfileRecord, &SourceRecord),
) -> Verdict<AuthMethod> {
    let stores = match check {
        CodeCheck::Accepted(_) | CodeCheck::Wrong => true,
        CodeCheck::Replayed => false,
        CodeCheck::Locked { .. } => {
            record.failed_attempts != before.0.failed_attempts || source != *before.1
        }
    };
    Verdict {
        result: check.into_result(),
        change: if stores {
            Change::Update(Box::new(record))
        } else {
            Change::Keep
        },
        source: stores.then_some(source),
        clear_sources: false,
        label: check.label(),
        audited: true,
    }
}

impl Service {
    /// Checks a code, updating the profile and the source in place. While this source is
    /// blocked the code is not even looked at. While the account is locked (by failures from
    /// elsewhere) only an emergency code can pass: it is the owner's way back in, and a wrong
    /// guess still counts against its source, which is soon blocked.
    pub(super) fn check_code(
        &self,
        record: &mut ProfileRecord,
        source: &mut SourceRecord,
        code: &str,
        now: i64,
    ) -> CodeCheck {
        let active = |until: Option<i64>| until.filter(|until| *until > now);
        if let Some(until) = active(source.blocked_until) {
            return CodeCheck::Locked {
                retry_after: retry_after(until, now),
            };
        }
        if let Some(until) = active(record.locked_until) {
            // Only what could be an emergency code is looked at, and only up to a cap of
            // failures: past it even many sources get no more guesses until the lock ends.
            let could_be_emergency = code.len() == EMERGENCY_CODE_DIGITS
                && record.failed_attempts < self.config.lockout.emergency_guess_cap();
            if !could_be_emergency {
                return CodeCheck::Locked {
                    retry_after: retry_after(until, now),
                };
            }
            if self.use_emergency_code(record, code) {
                return self.accept(record, source, AuthMethod::EmergencyCode, now);
            }
            self.count_failure(record, source, now);
            let until = [record.locked_until, source.blocked_until]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(until);
            return CodeCheck::Locked {
                retry_after: retry_after(until, now),
            };
        }
        let method = match self.matching_code(record, code, now) {
            Some(step) if record.last_step.is_some_and(|last| step <= last) => {
                return CodeCheck::Replayed
            }
            Some(step) => {
                record.last_step = Some(step);
                AuthMethod::Totp
            }
            None if self.use_emergency_code(record, code) => AuthMethod::EmergencyCode,
            None => {
                self.count_failure(record, source, now);
                return CodeCheck::Wrong;
            }
        };
        self.accept(record, source, method, now)
    }

    /// The time step (TOTP: now ± the window) or counter (HOTP: the next expected one and
    /// the look-ahead after it) whose code is `code`. Accepting it makes it the last step.
    fn matching_code(&self, record: &ProfileRecord, code: &str, now: i64) -> Option<i64> {
        let params = TotpParams {
            algorithm: record.algorithm,
            digits: record.digits,
            period: record.period,
        };
        match record.kind {
            ProfileKind::Totp => {
                let window = record.window.unwrap_or(self.config.window);
                totp::matching_step(&record.secret, params, code, now, window)
            }
            ProfileKind::Hotp => totp::matching_counter(
                &record.secret,
                params,
                code,
                record.next_counter(),
                self.config.hotp_window,
            ),
        }
    }

    /// Uses up the emergency code `code`, if it is one of the profile's (active profiles only).
    fn use_emergency_code(&self, record: &mut ProfileRecord, code: &str) -> bool {
        let found = (record.verified() && code.len() == EMERGENCY_CODE_DIGITS)
            .then(|| {
                secret::find_emergency_code(&record.emergency_codes, code, &|salted| {
                    self.store.emergency_digest(salted)
                })
            })
            .flatten();
        if let Some(index) = found {
            record.emergency_codes.remove(index);
        }
        found.is_some()
    }

    /// A passed check clears the account's failures and this source's.
    fn accept(
        &self,
        record: &mut ProfileRecord,
        source: &mut SourceRecord,
        method: AuthMethod,
        now: i64,
    ) -> CodeCheck {
        record.failed_attempts = 0;
        record.locked_until = None;
        record.last_used_at = Some(now);
        if record.verified_at.is_none() {
            record.verified_at = Some(now);
            record.changed_at = now;
        }
        *source = SourceRecord::default();
        CodeCheck::Accepted(method)
    }

    fn count_failure(&self, record: &mut ProfileRecord, source: &mut SourceRecord, now: i64) {
        let policy = &self.config.lockout;
        record.failed_attempts = record.failed_attempts.saturating_add(1);
        if let Some(seconds) = policy.lock_seconds(record.failed_attempts) {
            record.locked_until = Some(until(now, seconds));
        }
        source.failures = source.failures.saturating_add(1);
        source.last_failure_at = now;
        if let Some(seconds) = policy.block_seconds(source.failures) {
            source.blocked_until = Some(until(now, seconds));
        }
    }

    /// `authenticate` (PAM) and `verify` (CLI): check and consume a code.
    pub(super) fn check(
        &self,
        caller: Caller,
        op: Op,
        target: &Target,
        code: &SecretString,
        context: &LoginContext,
    ) -> Result<(AuthMethod, Option<ProfileView>), ApiError> {
        let now = self.clock.now();
        let source = source_of(caller.peer, context);
        let account = target.account.as_str();
        let mut untried = false;
        let done = self.transact(
            caller,
            target,
            op,
            context,
            Some(&source),
            &mut |relation, current, source_record| {
                untried = current.is_none() && !target.resolved;
                if untried {
                    return Verdict::untried(not_enrolled(account));
                }
                self.decide_check(
                    op,
                    relation,
                    account,
                    current,
                    source_record,
                    code.expose(),
                    now,
                )
            },
        );
        if untried {
            return self.check(caller, op, &self.resolved(target)?, code, context);
        }
        let done = done?;
        // A login needs no view (and no read of the store's sources for one).
        let view = match (op, done.stored.as_ref()) {
            (Op::Authenticate, _) => None,
            (_, Some(record)) => Some(self.view(record, done.relation)?),
            (_, None) => return Err(not_enrolled(account)),
        };
        Ok((done.value, view))
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_check(
        &self,
        op: Op,
        relation: Relation,
        account: &str,
        current: Option<&ProfileRecord>,
        source: Option<&SourceRecord>,
        code: &str,
        now: i64,
    ) -> Verdict<AuthMethod> {
        if !self.permits(relation, op) {
            return Verdict::refuse(denied(op), AuditResult::Denied);
        }
        if let Err(error) = validate::code(code) {
            return Verdict::refuse(error, AuditResult::MalformedCode);
        }
        let Some(current) = current else {
            return Verdict::refuse(not_enrolled(account), AuditResult::NotEnrolled);
        };
        if op == Op::Authenticate && !current.verified() {
            let error = ApiError::not_found(format!(
                "the profile of '{account}' is not verified yet: run 'pam-totp verify'"
            ));
            return Verdict::refuse(error, AuditResult::NotEnrolled);
        }
        if !current.enabled {
            let error = ApiError::new(
                ErrorCode::FailedPrecondition,
                format!("the profile of '{account}' is disabled"),
            );
            return Verdict::refuse(error, AuditResult::Disabled);
        }
        let mut record = current.clone();
        let before = source.copied().unwrap_or_default();
        let mut source = before;
        let check = self.check_code(&mut record, &mut source, code, now);
        verdict_of(check, record, source, (current, &before))
    }

    /// An owner's code check for remove, codes and replacing an active profile: the checked
    /// profile and source on success, else the refusal to store. Failures count like logins.
    pub(super) fn owner_code_check(
        &self,
        record: &ProfileRecord,
        source: Option<&SourceRecord>,
        code: Option<&SecretString>,
        op: Op,
        now: i64,
    ) -> Result<(ProfileRecord, SourceRecord), Box<Verdict<()>>> {
        let Some(code) = code else {
            let error = ApiError::permission_denied(format!(
                "to {} your own profile, give a current or emergency code with --code",
                op.as_str()
            ))
            .with_target("code");
            return Err(Box::new(Verdict::refuse(error, AuditResult::Denied)));
        };
        if let Err(error) = validate::code(code.expose()) {
            return Err(Box::new(Verdict::refuse(error, AuditResult::MalformedCode)));
        }
        if !record.enabled {
            let error = ApiError::new(
                ErrorCode::FailedPrecondition,
                "the profile is disabled: ask an administrator",
            );
            return Err(Box::new(Verdict::refuse(error, AuditResult::Disabled)));
        }
        let mut checked = record.clone();
        let before = source.copied().unwrap_or_default();
        let mut source = before;
        match self.check_code(&mut checked, &mut source, code.expose(), now) {
            CodeCheck::Accepted(_) => Ok((checked, source)),
            check => Err(Box::new(
                verdict_of(check, checked, source, (record, &before)).map(|_| ()),
            )),
        }
    }
}
