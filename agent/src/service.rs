//! The request rules: authorization, code checks, replay protection, lockout and audit.
//! Every decision that changes state is made inside one store transaction.

use crate::authz::{self, Op, Peer, Relation};
use crate::clock::Clock;
use crate::config::Config;
use crate::directory::Directory;
use crate::secret;
use crate::store::{AuditEvent, Change, LoginPlace, ProfileRecord, Store, StoreError};
use crate::totp::{self, TotpParams};
use crate::view::profile_view;
use pam_totp_proto::validate::{self, EMERGENCY_CODE_DIGITS};
use pam_totp_proto::{
    ApiError, AuthMethod, AuthReply, CodesReply, EnrollReply, EnrollRequest, ErrorCode,
    LoginContext, ProbeReply, ProfileView, Reply, Request, SecretString,
};

pub struct Service {
    store: Box<dyn Store>,
    directory: Box<dyn Directory>,
    clock: Box<dyn Clock>,
    config: Config,
    host: String,
}

/// The result of checking a code against a profile (the record is updated to match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CodeCheck {
    Accepted(AuthMethod),
    /// A correct code of a step already used: refused, and not counted as a guess.
    Replayed,
    Wrong,
    Locked {
        retry_after: u64,
    },
}

impl CodeCheck {
    fn label(self) -> &'static str {
        match self {
            Self::Accepted(AuthMethod::Totp) => "success",
            Self::Accepted(AuthMethod::EmergencyCode) => "emergency_code",
            Self::Replayed => "replay",
            Self::Wrong => "wrong_code",
            Self::Locked { .. } => "locked",
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

/// What an owner must show to change their own profile (admins never need a code).
#[derive(Debug, Clone, Copy)]
enum OwnerProof<'a> {
    None,
    /// A current or emergency code, as given (`None`: not given).
    Code(Option<&'a SecretString>),
}

/// Why an owner's code check refused: the error, what to store, the audit label.
type Refusal = Box<(ApiError, Change, &'static str)>;

fn store_error(error: StoreError) -> ApiError {
    ApiError::internal(error.to_string())
}

fn not_enrolled(account: &str) -> ApiError {
    ApiError::not_found(format!("no TOTP profile for account '{account}'")).with_target("account")
}

fn denied(op: Op) -> ApiError {
    ApiError::permission_denied(format!(
        "permission denied: you may not {} this account's profile",
        op.as_str()
    ))
}

impl Service {
    pub fn new(
        store: Box<dyn Store>,
        directory: Box<dyn Directory>,
        clock: Box<dyn Clock>,
        config: Config,
        host: String,
    ) -> Self {
        Self {
            store,
            directory,
            clock,
            config,
            host,
        }
    }

    pub fn handle(&self, peer: Peer, request: Request) -> Result<Reply, ApiError> {
        if let Some(account) = request.account() {
            validate::account(account)?;
        }
        match request {
            Request::Probe {
                account,
                context,
                grace,
            } => self.probe(peer, &account, &context, grace),
            Request::Authenticate {
                account,
                code,
                context,
            } => self
                .check(peer, Op::Authenticate, &account, &code, &context)
                .map(|(method, _)| Reply::Authenticated(AuthReply { method })),
            Request::Verify { account, code } => self
                .check(peer, Op::Verify, &account, &code, &LoginContext::default())
                .map(|(_, view)| Reply::Profile(view)),
            Request::Enroll(enroll) => self.enroll(peer, enroll),
            Request::Show { account } => self.show(peer, &account),
            Request::List {} => self.list(peer),
            Request::Disable { account } => self.set_enabled(peer, &account, false),
            Request::Enable { account } => self.set_enabled(peer, &account, true),
            Request::Remove { account, code } => self.remove(peer, &account, code.as_ref()),
            Request::Unlock { account } => self.unlock(peer, &account),
            Request::RegenerateCodes { account, code } => {
                self.regenerate_codes(peer, &account, code.as_ref())
            }
            Request::SetComment { account, comment } => self.set_comment(peer, &account, comment),
        }
    }

    fn is_admin(&self, uid: u32) -> bool {
        uid == 0
            || self
                .config
                .admin_group
                .as_deref()
                .is_some_and(|group| self.directory.is_member(uid, group))
    }

    fn relation(&self, peer: Peer, account: &str, profile: Option<&ProfileRecord>) -> Relation {
        authz::relation(
            self.is_admin(peer.uid),
            peer.uid,
            self.directory.uid_of(account),
            profile.map(|p| p.uid),
        )
    }

    fn permits(&self, relation: Relation, op: Op) -> bool {
        authz::permits(relation, op, self.config.self_enroll)
    }

    fn view(&self, record: &ProfileRecord, relation: Relation) -> ProfileView {
        profile_view(
            record,
            &self.host,
            relation,
            self.config.self_enroll,
            self.clock.now(),
        )
    }

    fn event(&self, peer: Peer, account: &str, op: Op, context: &LoginContext) -> AuditEvent {
        AuditEvent {
            at: self.clock.now(),
            account: account.to_owned(),
            uid: None,
            op: op.as_str().to_owned(),
            result: String::new(),
            service: context.service.clone(),
            rhost: context.rhost.clone(),
            tty: context.tty.clone(),
            caller_uid: peer.uid,
            caller_pid: peer.pid,
        }
    }

    /// Checks a code against the record, updating counters, lock, last step and emergency
    /// codes in place. While locked, the code is not even looked at.
    fn check_code(&self, record: &mut ProfileRecord, code: &str, now: i64) -> CodeCheck {
        if let Some(until) = record.locked_until.filter(|until| *until > now) {
            return CodeCheck::Locked {
                retry_after: u64::try_from(until - now).unwrap_or(1),
            };
        }
        let params = TotpParams {
            algorithm: record.algorithm,
            digits: record.digits,
            period: record.period,
        };
        let method =
            match totp::matching_step(&record.secret, params, code, now, self.config.window) {
                Some(step) if record.last_step.is_some_and(|last| step <= last) => {
                    return CodeCheck::Replayed
                }
                Some(step) => {
                    record.last_step = Some(step);
                    AuthMethod::Totp
                }
                None => {
                    let emergency = (record.verified() && code.len() == EMERGENCY_CODE_DIGITS)
                        .then(|| secret::find_emergency_code(&record.emergency_codes, code))
                        .flatten();
                    let Some(index) = emergency else {
                        record.failed_attempts = record.failed_attempts.saturating_add(1);
                        if let Some(seconds) =
                            self.config.lockout.lock_seconds(record.failed_attempts)
                        {
                            record.locked_until = Some(
                                now.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX)),
                            );
                        }
                        return CodeCheck::Wrong;
                    };
                    record.emergency_codes.remove(index);
                    AuthMethod::EmergencyCode
                }
            };
        record.failed_attempts = 0;
        record.locked_until = None;
        record.last_used_at = Some(now);
        if record.verified_at.is_none() {
            record.verified_at = Some(now);
            record.changed_at = now;
        }
        CodeCheck::Accepted(method)
    }

    fn probe(
        &self,
        peer: Peer,
        account: &str,
        context: &LoginContext,
        grace: Option<u32>,
    ) -> Result<Reply, ApiError> {
        let record = self.store.get(account).map_err(store_error)?;
        let relation = self.relation(peer, account, record.as_ref());
        if !self.permits(relation, Op::Probe) {
            return Err(denied(Op::Probe));
        }
        let active = record.as_ref().filter(|r| r.verified() && r.enabled);
        let grace = match (active, grace) {
            (Some(record), Some(seconds)) if seconds > 0 => {
                self.grace_applies(record, context, seconds)?
            }
            _ => false,
        };
        if grace {
            let mut event = self.event(peer, account, Op::Authenticate, context);
            event.uid = active.map(|r| r.uid);
            event.result = "grace".into();
            self.store.audit(&event).map_err(store_error)?;
        }
        Ok(Reply::Probe(ProbeReply {
            needs_code: active.is_some(),
            digits: active.map_or(validate::MIN_DIGITS, |r| r.digits),
            grace,
        }))
    }

    /// Grace: a code login of this profile, from exactly this service, remote host and tty,
    /// less than `seconds` ago. Never while locked; never for a login without a service.
    fn grace_applies(
        &self,
        record: &ProfileRecord,
        context: &LoginContext,
        seconds: u32,
    ) -> Result<bool, ApiError> {
        let now = self.clock.now();
        if context.service.is_none() || record.locked_until.is_some_and(|until| until > now) {
            return Ok(false);
        }
        let place = LoginPlace {
            service: context.service.as_deref(),
            rhost: context.rhost.as_deref(),
            tty: context.tty.as_deref(),
        };
        let last = self
            .store
            .last_code_login(&record.account, &place)
            .map_err(store_error)?;
        // Only logins with this profile count: not those of a profile it replaced.
        Ok(last.is_some_and(|at| {
            at >= record.created_at && now >= at && now - at < i64::from(seconds)
        }))
    }

    /// `authenticate` (PAM) and `verify` (CLI): check and consume a code.
    fn check(
        &self,
        peer: Peer,
        op: Op,
        account: &str,
        code: &SecretString,
        context: &LoginContext,
    ) -> Result<(AuthMethod, ProfileView), ApiError> {
        let now = self.clock.now();
        let mut outcome = Err(ApiError::internal("no decision"));
        let mut relation = Relation::Stranger;
        let stored = self
            .store
            .transact(account, &mut |current| {
                let mut event = self.event(peer, account, op, context);
                event.uid = current.map(|r| r.uid);
                relation = self.relation(peer, account, current);
                let (result, change, label) =
                    self.decide_check(op, relation, account, current, code.expose(), now);
                outcome = result;
                event.result = label.to_owned();
                (change, Some(event))
            })
            .map_err(store_error)?;
        let method = outcome?;
        let view = stored
            .as_ref()
            .map(|record| self.view(record, relation))
            .ok_or_else(|| not_enrolled(account))?;
        Ok((method, view))
    }

    fn decide_check(
        &self,
        op: Op,
        relation: Relation,
        account: &str,
        current: Option<&ProfileRecord>,
        code: &str,
        now: i64,
    ) -> (Result<AuthMethod, ApiError>, Change, &'static str) {
        if !self.permits(relation, op) {
            return (Err(denied(op)), Change::Keep, "denied");
        }
        if let Err(error) = validate::code(code) {
            return (Err(error), Change::Keep, "malformed_code");
        }
        let Some(current) = current else {
            return (Err(not_enrolled(account)), Change::Keep, "not_enrolled");
        };
        if op == Op::Authenticate && !current.verified() {
            let error = ApiError::not_found(format!(
                "the profile of '{account}' is not verified yet: run 'pam-totp verify'"
            ));
            return (Err(error), Change::Keep, "not_enrolled");
        }
        if !current.enabled {
            let error = ApiError::new(
                ErrorCode::FailedPrecondition,
                format!("the profile of '{account}' is disabled"),
            );
            return (Err(error), Change::Keep, "disabled");
        }
        let mut record = current.clone();
        let check = self.check_code(&mut record, code, now);
        let change = match check {
            CodeCheck::Replayed | CodeCheck::Locked { .. } => Change::Keep,
            CodeCheck::Accepted(_) | CodeCheck::Wrong => Change::Save(Box::new(record)),
        };
        (check.into_result(), change, check.label())
    }

    /// An owner's code check for remove, codes and replacing an active profile. Failures
    /// count toward the lockout like a login.
    fn owner_code_check(
        &self,
        record: &ProfileRecord,
        code: Option<&SecretString>,
        op: Op,
        now: i64,
    ) -> Result<ProfileRecord, Refusal> {
        let Some(code) = code else {
            let error = ApiError::permission_denied(format!(
                "to {} your own profile, give a current or emergency code with --code",
                op.as_str()
            ))
            .with_target("code");
            return Err(Box::new((error, Change::Keep, "denied")));
        };
        if let Err(error) = validate::code(code.expose()) {
            return Err(Box::new((error, Change::Keep, "malformed_code")));
        }
        if !record.enabled {
            let error = ApiError::new(
                ErrorCode::FailedPrecondition,
                "the profile is disabled: ask an administrator",
            );
            return Err(Box::new((error, Change::Keep, "disabled")));
        }
        let mut checked = record.clone();
        match self.check_code(&mut checked, code.expose(), now) {
            CodeCheck::Accepted(_) => Ok(checked),
            check @ CodeCheck::Wrong => Err(Box::new((
                ApiError::code_rejected(),
                Change::Save(Box::new(checked)),
                check.label(),
            ))),
            check => Err(Box::new((
                check
                    .into_result()
                    .err()
                    .unwrap_or_else(ApiError::code_rejected),
                Change::Keep,
                check.label(),
            ))),
        }
    }

    fn enroll(&self, peer: Peer, request: EnrollRequest) -> Result<Reply, ApiError> {
        validate::digits(request.digits)?;
        validate::period(request.period)?;
        if let Some(comment) = &request.comment {
            validate::comment(comment)?;
        }
        if let Some(issuer) = &request.issuer {
            validate::issuer(issuer)?;
        }
        let account = request.account.as_str();
        let Some(uid) = self.directory.uid_of(account) else {
            return Err(
                ApiError::not_found(format!("no such account: '{account}'")).with_target("account")
            );
        };
        let secret = secret::generate_secret().map_err(|e| ApiError::internal(e.to_string()))?;
        let (codes, hashed_codes) =
            secret::generate_emergency_codes().map_err(|e| ApiError::internal(e.to_string()))?;
        let now = self.clock.now();
        let issuer = request.issuer.clone().unwrap_or_else(|| self.host.clone());
        let fresh = ProfileRecord {
            id: 0,
            account: account.to_owned(),
            uid,
            secret: secret.clone(),
            algorithm: request.algorithm,
            digits: request.digits,
            period: request.period,
            issuer: issuer.clone(),
            comment: request.comment.clone().filter(|c| !c.is_empty()),
            created_at: now,
            changed_at: now,
            verified_at: None,
            last_used_at: None,
            enabled: true,
            last_step: None,
            failed_attempts: 0,
            locked_until: None,
            emergency_codes: hashed_codes,
        };
        let mut outcome = Err(ApiError::internal("no decision"));
        let mut relation = Relation::Stranger;
        let stored = self
            .store
            .transact(account, &mut |current| {
                let mut event = self.event(peer, account, Op::Enroll, &LoginContext::default());
                event.uid = Some(uid);
                relation = self.relation(peer, account, current);
                let (result, change, label) =
                    self.decide_enroll(relation, &request, current, &fresh, now);
                outcome = result;
                event.result = label.to_owned();
                (change, Some(event))
            })
            .map_err(store_error)?;
        outcome?;
        let record = stored.ok_or_else(|| ApiError::internal("enrollment was not stored"))?;
        let secret_b32 = secret::to_base32(&secret);
        let uri = otpauth_uri(&issuer, account, &self.host, &secret_b32, &record);
        Ok(Reply::Enrolled(EnrollReply {
            secret: secret_b32,
            otpauth_uri: uri,
            emergency_codes: codes,
            profile: self.view(&record, relation),
        }))
    }

    fn decide_enroll(
        &self,
        relation: Relation,
        request: &EnrollRequest,
        current: Option<&ProfileRecord>,
        fresh: &ProfileRecord,
        now: i64,
    ) -> (Result<(), ApiError>, Change, &'static str) {
        if !self.permits(relation, Op::Enroll) {
            let error = if relation == Relation::Owner {
                ApiError::permission_denied("self-enrollment is disabled by the administrator")
            } else {
                denied(Op::Enroll)
            };
            return (Err(error), Change::Keep, "denied");
        }
        let Some(current) = current else {
            return (Ok(()), Change::Save(Box::new(fresh.clone())), "enrolled");
        };
        if !request.replace {
            let error = ApiError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "account '{}' already has a TOTP profile: use --replace",
                    request.account
                ),
            )
            .with_target("account");
            return (Err(error), Change::Keep, "exists");
        }
        if relation == Relation::Owner && current.verified() {
            if let Err(refusal) =
                self.owner_code_check(current, request.code.as_ref(), Op::Enroll, now)
            {
                let (error, change, label) = *refusal;
                return (Err(error), change, label);
            }
        }
        (Ok(()), Change::Save(Box::new(fresh.clone())), "replaced")
    }

    fn show(&self, peer: Peer, account: &str) -> Result<Reply, ApiError> {
        let record = self.store.get(account).map_err(store_error)?;
        let relation = self.relation(peer, account, record.as_ref());
        if !self.permits(relation, Op::Show) {
            return Err(denied(Op::Show));
        }
        let record = record.ok_or_else(|| not_enrolled(account))?;
        Ok(Reply::Profile(self.view(&record, relation)))
    }

    fn list(&self, peer: Peer) -> Result<Reply, ApiError> {
        if !self.is_admin(peer.uid) {
            return Err(ApiError::permission_denied(
                "permission denied: only administrators may list profiles",
            ));
        }
        let records = self.store.list().map_err(store_error)?;
        Ok(Reply::Profiles(
            records
                .iter()
                .map(|record| self.view(record, Relation::Admin))
                .collect(),
        ))
    }

    /// An administrative change to an existing profile, stamped with `changed_at`.
    fn modify(
        &self,
        peer: Peer,
        account: &str,
        op: Op,
        change: &dyn Fn(&mut ProfileRecord),
    ) -> Result<Reply, ApiError> {
        let now = self.clock.now();
        let (stored, relation) =
            self.change_profile(peer, account, op, OwnerProof::None, &|mut record| {
                change(&mut record);
                record.changed_at = now;
                Change::Save(Box::new(record))
            })?;
        let record = stored.ok_or_else(|| not_enrolled(account))?;
        Ok(Reply::Profile(self.view(&record, relation)))
    }

    fn set_enabled(&self, peer: Peer, account: &str, enabled: bool) -> Result<Reply, ApiError> {
        let op = if enabled { Op::Enable } else { Op::Disable };
        self.modify(peer, account, op, &|record| record.enabled = enabled)
    }

    fn unlock(&self, peer: Peer, account: &str) -> Result<Reply, ApiError> {
        self.modify(peer, account, Op::Unlock, &|record| {
            record.failed_attempts = 0;
            record.locked_until = None;
        })
    }

    fn set_comment(&self, peer: Peer, account: &str, comment: String) -> Result<Reply, ApiError> {
        validate::comment(&comment)?;
        let comment = Some(comment).filter(|c| !c.is_empty());
        self.modify(peer, account, Op::Set, &|record| {
            record.comment.clone_from(&comment);
        })
    }

    /// Applies `apply` to an existing profile in one transaction, after authorization and,
    /// for owners where `proof` asks for it, a valid code. Audited either way.
    fn change_profile(
        &self,
        peer: Peer,
        account: &str,
        op: Op,
        proof: OwnerProof<'_>,
        apply: &dyn Fn(ProfileRecord) -> Change,
    ) -> Result<(Option<ProfileRecord>, Relation), ApiError> {
        let now = self.clock.now();
        let mut outcome = Ok(());
        let mut relation = Relation::Stranger;
        let stored = self
            .store
            .transact(account, &mut |current| {
                let mut event = self.event(peer, account, op, &LoginContext::default());
                event.uid = current.map(|r| r.uid);
                relation = self.relation(peer, account, current);
                if !self.permits(relation, op) {
                    outcome = Err(denied(op));
                    event.result = "denied".into();
                    return (Change::Keep, Some(event));
                }
                let Some(current) = current else {
                    outcome = Err(not_enrolled(account));
                    return (Change::Keep, None);
                };
                let record = if let (Relation::Owner, OwnerProof::Code(code)) = (relation, proof) {
                    match self.owner_code_check(current, code, op, now) {
                        Ok(checked) => checked,
                        Err(refusal) => {
                            let (error, change, label) = *refusal;
                            outcome = Err(error);
                            event.result = label.into();
                            return (change, Some(event));
                        }
                    }
                } else {
                    current.clone()
                };
                outcome = Ok(());
                event.result = "success".into();
                (apply(record), Some(event))
            })
            .map_err(store_error)?;
        outcome?;
        Ok((stored, relation))
    }

    fn remove(
        &self,
        peer: Peer,
        account: &str,
        code: Option<&SecretString>,
    ) -> Result<Reply, ApiError> {
        self.change_profile(peer, account, Op::Remove, OwnerProof::Code(code), &|_| {
            Change::Delete
        })?;
        Ok(Reply::Removed {
            account: account.to_owned(),
        })
    }

    fn regenerate_codes(
        &self,
        peer: Peer,
        account: &str,
        code: Option<&SecretString>,
    ) -> Result<Reply, ApiError> {
        let (plain, hashed) =
            secret::generate_emergency_codes().map_err(|e| ApiError::internal(e.to_string()))?;
        let now = self.clock.now();
        let proof = OwnerProof::Code(code);
        let (stored, relation) =
            self.change_profile(peer, account, Op::Codes, proof, &|mut record| {
                record.emergency_codes.clone_from(&hashed);
                record.changed_at = now;
                Change::Save(Box::new(record))
            })?;
        let record = stored.ok_or_else(|| not_enrolled(account))?;
        Ok(Reply::Codes(CodesReply {
            emergency_codes: plain,
            profile: self.view(&record, relation),
        }))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The Key URI that authenticator apps scan: label `issuer:account@host`.
fn otpauth_uri(
    issuer: &str,
    account: &str,
    host: &str,
    secret: &SecretString,
    record: &ProfileRecord,
) -> SecretString {
    SecretString::new(format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm={}&digits={}&period={}",
        percent_encode(issuer),
        percent_encode(&format!("{account}@{host}")),
        secret.expose(),
        percent_encode(issuer),
        record.algorithm,
        record.digits,
        record.period
    ))
}

#[cfg(test)]
mod tests;
