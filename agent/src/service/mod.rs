//! The request rules: authorization, code checks, replay protection, lockout and audit.
//! Every decision that changes state is made inside one store transaction.

mod budget;
pub(crate) mod codes;
mod enroll;
mod import;
mod manage;
mod metrics;
mod probe;
mod report;

use crate::authz::{self, Op, Peer, Relation};
use crate::clock::Clock;
use crate::config::Config;
use crate::directory::Directory;
use crate::store::{AuditEvent, Change, Outcome, ProfileRecord, SourceRecord, Store, StoreError};
use crate::view::profile_view;
use budget::RequestBudget;
use metrics::Metrics;
use pam_totp_proto::validate::{self, MAX_BLOCKED_SOURCES_SHOWN};
use pam_totp_proto::{ApiError, AuditResult, AuthReply, LoginContext, ProfileView, Reply, Request};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub struct Service {
    store: Box<dyn Store>,
    directory: Box<dyn Directory>,
    clock: Box<dyn Clock>,
    config: Config,
    host: String,
    paths: Paths,
    started: Instant,
    budget: RequestBudget,
    metrics: Metrics,
}

/// Where the agent listens and keeps its state, as `status` reports them.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    pub socket: String,
    pub database: String,
}

/// The caller as the kernel and NSS describe it. Resolved once, before any transaction: no
/// NSS lookup (which may be a slow LDAP or SSSD call) ever runs under the store's write lock.
#[derive(Debug, Clone, Copy)]
struct Caller<'a> {
    peer: Peer,
    admin: bool,
    /// A non-root caller past its budget of requests: this request is not logged, nor
    /// audited if it is refused without changing anything (see `budget`).
    quiet: bool,
    /// Set once the request's login line is written: that line is then its only line. Atomic
    /// only because rules hold the caller and the store may run them on another thread.
    login_logged: &'a AtomicBool,
}

/// The account a request acts on: the profile it is held to, and the uid its name resolves
/// to (`None`: NSS does not know the name).
#[derive(Debug, Clone)]
struct Target {
    account: String,
    uid: Option<u32>,
    /// Whether `account` came from [`Service::held_to`]. A login's target starts as the name
    /// itself: a name with a profile of its own is held to that profile (what `held_to` would
    /// answer), so the store is asked which profile an alias is held to only when the name
    /// has none (one lookup saved on every login of an enrolled name).
    resolved: bool,
}

/// What a rule decided inside a transaction: the answer, what to store, the audit label.
struct Verdict<T> {
    result: Result<T, ApiError>,
    change: Change,
    /// The attempt's source afterwards, when a code was checked.
    source: Option<SourceRecord>,
    clear_sources: bool,
    label: AuditResult,
    /// `false` only for a trial that decided nothing (see [`Verdict::untried`]).
    audited: bool,
}

impl<T> Verdict<T> {
    fn refuse(error: ApiError, label: AuditResult) -> Self {
        Self {
            result: Err(error),
            change: Change::Keep,
            source: None,
            clear_sources: false,
            label,
            audited: true,
        }
    }

    fn accept(value: T, change: Change, label: AuditResult) -> Self {
        Self {
            result: Ok(value),
            change,
            source: None,
            clear_sources: false,
            label,
            audited: true,
        }
    }

    /// Nothing decided, stored, audited or logged: a login's name has no profile of its own,
    /// and the request is tried again once the name is resolved (see [`Target::resolved`]).
    fn untried(error: ApiError) -> Self {
        Self {
            audited: false,
            ..Self::refuse(error, AuditResult::NotEnrolled)
        }
    }

    fn map<U>(self, f: impl FnOnce(T) -> U) -> Verdict<U> {
        Verdict {
            result: self.result.map(f),
            change: self.change,
            source: self.source,
            clear_sources: self.clear_sources,
            label: self.label,
            audited: self.audited,
        }
    }

    /// Stores nothing at all (a refusal that changes no state).
    fn changes_nothing(&self) -> bool {
        matches!(self.change, Change::Keep) && self.source.is_none() && !self.clear_sources
    }
}

/// A rule decided inside a transaction, from how the caller stands to the account, its
/// profile, and the attempt's source.
type Rule<'a, T> =
    dyn FnMut(Relation, Option<&ProfileRecord>, Option<&SourceRecord>) -> Verdict<T> + Send + 'a;

/// A transaction's answer, the profile as stored afterwards, and how the caller stands to it.
struct Done<T> {
    value: T,
    stored: Option<ProfileRecord>,
    relation: Relation,
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
        let metrics = Metrics::new(store.as_ref());
        Self {
            metrics,
            store,
            directory,
            clock,
            config,
            host,
            paths: Paths::default(),
            started: Instant::now(),
            budget: RequestBudget::default(),
        }
    }

    /// Records the socket and database paths for `status`.
    pub fn with_paths(mut self, paths: Paths) -> Self {
        self.paths = paths;
        self
    }

    /// Answers one request and logs it (one line, unless the caller is quiet).
    pub fn handle(&self, peer: Peer, request: Request) -> Result<Reply, ApiError> {
        let login_logged = AtomicBool::new(false);
        let caller = Caller {
            peer,
            admin: self.is_admin(peer.uid),
            quiet: !self.admit(peer),
            login_logged: &login_logged,
        };
        let op = request.op();
        // `{:?}` escapes control characters, so an account name cannot forge log lines.
        let account = request
            .account()
            .map(|a| format!(" account={a:?}"))
            .unwrap_or_default();
        let started = Instant::now();
        let login = matches!(request, Request::Authenticate { .. });
        let result = self.dispatch(caller, request);
        if login {
            self.metrics.attempt_took(started.elapsed());
        }
        if caller.quiet || login_logged.load(Ordering::Relaxed) {
            return result;
        }
        if let Err(error) = &result {
            // Internal errors carry their cause (e.g. "cannot record state: database or disk
            // is full"); the agent writes those messages itself, and they never hold a code.
            let outcome = match error.code {
                pam_totp_proto::ErrorCode::Internal => format!("internal ({})", error.message),
                code => code.as_str().to_owned(),
            };
            log::log!(
                match error.code {
                    pam_totp_proto::ErrorCode::Internal => log::Level::Error,
                    _ => log::Level::Info,
                },
                "uid={} pid={} op={op}{account} result={outcome}",
                peer.uid,
                peer.pid
            );
        } else {
            log::info!(
                "uid={} pid={} op={op}{account} result=ok",
                peer.uid,
                peer.pid
            );
        }
        result
    }

    /// Whether a request of `peer` may be logged (root's always are): takes its place in
    /// the caller's budget, and logs the summary of a past window that overran it.
    fn admit(&self, peer: Peer) -> bool {
        if peer.uid == 0 {
            return true;
        }
        let admission = self.budget.admit(peer.uid, self.clock.now());
        if let Some(summary) = admission.summary {
            log::warn!("{summary}");
        }
        admission.audible
    }

    /// Logs a connection dropped before it made a request (garbage, a stalled peer), within
    /// the same budget as requests so a local user's flood cannot flood the journal.
    pub fn log_dropped(&self, peer: Peer, reason: &str) {
        if !self.admit(peer) {
            return;
        }
        log::info!(
            "uid={} pid={}: dropped connection: {reason}",
            peer.uid,
            peer.pid
        );
    }

    fn dispatch(&self, caller: Caller, request: Request) -> Result<Reply, ApiError> {
        match request {
            Request::Probe {
                account,
                uid,
                context,
                grace,
            } => {
                validate::login_context(&context)?;
                let target = self.login_target(caller, &account, uid, Op::Probe, &context)?;
                self.probe(caller, &target, &context, grace)
            }
            Request::Authenticate {
                account,
                uid,
                code,
                context,
            } => {
                validate::login_context(&context)?;
                let op = Op::Authenticate;
                let target = self.login_target(caller, &account, uid, op, &context)?;
                self.check(caller, op, &target, &code, &context)
                    .map(|(method, _)| Reply::Authenticated(AuthReply { method }))
            }
            Request::Verify { account, code } => {
                let target = self.target(&account)?;
                let context = LoginContext::default();
                let (_, view) = self.check(caller, Op::Verify, &target, &code, &context)?;
                view.map(Reply::Profile)
                    .ok_or_else(|| not_enrolled(&target.account))
            }
            Request::Enroll(enroll) => {
                let target = self.target(&enroll.account)?;
                self.enroll(caller, &target, enroll)
            }
            Request::Show { account } => self.show(caller, &self.target(&account)?),
            Request::List { after, limit } => self.list(caller, after.as_deref(), limit),
            Request::Disable { account } => {
                self.set_enabled(caller, &self.target(&account)?, false)
            }
            Request::Enable { account } => self.set_enabled(caller, &self.target(&account)?, true),
            Request::Remove { account, code } => {
                self.remove(caller, &self.target(&account)?, code.as_ref())
            }
            Request::Unlock { account } => self.unlock(caller, &self.target(&account)?),
            Request::RegenerateCodes { account, code } => {
                self.regenerate_codes(caller, &self.target(&account)?, code.as_ref())
            }
            Request::SetComment { account, comment } => {
                self.set_comment(caller, &self.target(&account)?, comment)
            }
            Request::Import { profiles, replace } => self.import(caller, profiles, replace),
            Request::Log {
                account,
                since,
                limit,
                before,
            } => self.log(caller, account, since, limit, before),
            Request::Status {} => self.status(caller),
            Request::Metrics {} => self.metrics(caller),
        }
    }

    /// A store failure as the caller sees it (`internal`, its message), counted.
    /// A store failure as the client sees it: "unavailable" (exit 8, like an agent that
    /// cannot be reached) when the store's server cannot be reached; else internal (a full
    /// or read-only disk, a bug), saying what could not be done.
    fn store_failed(&self, error: StoreError) -> ApiError {
        self.metrics.store_error();
        match error {
            StoreError::Unreachable(message) => {
                ApiError::new(pam_totp_proto::ErrorCode::Unavailable, message)
            }
            StoreError::Unavailable(message)
            | StoreError::Invalid(message)
            | StoreError::Internal(message) => ApiError::internal(message),
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

    /// The account a request names, resolved through NSS (outside any transaction), and the
    /// profile it is held to: a name of the same uid as an enrolled account is held to that
    /// account's profile.
    fn target(&self, name: &str) -> Result<Target, ApiError> {
        validate::account(name)?;
        let uid = self.directory.uid_of(name);
        self.held_to(name, uid)
    }

    fn held_to(&self, name: &str, uid: Option<u32>) -> Result<Target, ApiError> {
        let mut account = self
            .store
            .profile_account(name, uid)
            .map_err(|e| self.store_failed(e))?;
        // Another name's profile binds this one only if that name is the same account here
        // (a fleet store's uids were recorded on other hosts).
        if account != name && self.directory.uid_of(&account) != uid {
            name.clone_into(&mut account);
        }
        Ok(Target {
            account,
            uid,
            resolved: true,
        })
    }

    /// `target` with its name resolved (see [`Target::resolved`]).
    fn resolved(&self, target: &Target) -> Result<Target, ApiError> {
        self.held_to(&target.account, target.uid)
    }

    /// A login's account. The PAM module resolves the name in the process that is logging in
    /// (the NSS view pam_unix used) and sends the uid; only a root caller's uid is trusted,
    /// anyone else's name is looked up here. A name that resolves to nothing is refused:
    /// never "not enrolled", which `nullok` would let through. The target is the name itself,
    /// not yet resolved to another name's profile (see [`Target::resolved`]).
    fn login_target(
        &self,
        caller: Caller,
        name: &str,
        claimed_uid: Option<u32>,
        op: Op,
        context: &LoginContext,
    ) -> Result<Target, ApiError> {
        validate::account(name)?;
        let uid = match claimed_uid {
            Some(uid) if caller.peer.uid == 0 => Some(uid),
            _ => self.directory.uid_of(name),
        };
        let Some(uid) = uid else {
            if op == Op::Authenticate {
                self.audit_refusal(caller, name, None, op, context, AuditResult::UnknownAccount)?;
            }
            return Err(
                ApiError::permission_denied(format!("no such account: '{name}'"))
                    .with_target("account"),
            );
        };
        Ok(Target {
            account: name.to_owned(),
            uid: Some(uid),
            resolved: false,
        })
    }

    /// How the caller stands to the target and its profile: decided from what was resolved
    /// before the transaction, so it needs no lookup.
    fn relation(
        &self,
        caller: Caller,
        target: &Target,
        profile: Option<&ProfileRecord>,
    ) -> Relation {
        authz::relation(
            caller.admin,
            caller.peer.uid,
            target.uid,
            self.recorded_uid(profile),
        )
    }

    /// The uid a profile was recorded for, when it means something here: with a fleet store
    /// it was recorded on whichever host enrolled, so only this host's NSS decides.
    fn recorded_uid(&self, profile: Option<&ProfileRecord>) -> Option<u32> {
        profile
            .filter(|_| self.store.scope() == "host")
            .map(|p| p.uid)
    }

    fn permits(&self, relation: Relation, op: Op) -> bool {
        authz::permits(relation, op, self.config.self_enroll)
    }

    /// Refuses a caller who is nobody to the target (not an admin, not its owner by NSS)
    /// before any transaction: such a refusal needs no profile, and keeps the store's write
    /// lock out of reach of a local user's flood.
    fn refuse_stranger(
        &self,
        caller: Caller,
        target: &Target,
        op: Op,
        context: &LoginContext,
    ) -> Result<(), ApiError> {
        if caller.admin || target.uid == Some(caller.peer.uid) {
            return Ok(());
        }
        self.audit_refusal(
            caller,
            &target.account,
            target.uid,
            op,
            context,
            AuditResult::Denied,
        )?;
        Err(denied(op))
    }

    /// Audits a refusal decided outside a transaction (unless the caller is quiet).
    fn audit_refusal(
        &self,
        caller: Caller,
        account: &str,
        uid: Option<u32>,
        op: Op,
        context: &LoginContext,
        label: AuditResult,
    ) -> Result<(), ApiError> {
        if caller.quiet {
            return Ok(());
        }
        let mut event = self.event(caller.peer, account, op, context);
        event.uid = uid;
        event.result = label;
        self.store.audit(&event).map_err(|e| self.store_failed(e))?;
        self.log_attempt(caller, op, account, context, label);
        Ok(())
    }

    /// One line per login attempt, for fail2ban and the like (packaging/fail2ban/): the
    /// fields no caller chooses first (result, then the source the agent derived: a remote
    /// host only from a root caller), every value quoted with its quotes and backslashes
    /// escaped, so nothing a user sends can pose as another field. Never a code.
    fn log_attempt(
        &self,
        caller: Caller,
        op: Op,
        account: &str,
        context: &LoginContext,
        result: AuditResult,
    ) {
        if op != Op::Authenticate {
            return;
        }
        self.metrics.attempt(result);
        if caller.quiet {
            return;
        }
        fn item(value: &Option<String>) -> &str {
            value.as_deref().unwrap_or_default()
        }
        log::info!(
            "login result={result} source={:?} account={account:?} service={:?} rhost={:?} \
             tty={:?} ruser={:?} host={:?} uid={} pid={}",
            codes::source_of(caller.peer, context),
            item(&context.service),
            item(&context.rhost),
            item(&context.tty),
            item(&context.ruser),
            self.host,
            caller.peer.uid,
            caller.peer.pid,
        );
        caller.login_logged.store(true, Ordering::Relaxed);
    }

    fn view(&self, record: &ProfileRecord, relation: Relation) -> Result<ProfileView, ApiError> {
        let now = self.clock.now();
        let blocked = self
            .store
            .blocked_sources(&record.account, now, MAX_BLOCKED_SOURCES_SHOWN)
            .map_err(|e| self.store_failed(e))?;
        Ok(profile_view(
            record,
            &blocked,
            &self.host,
            self.store.scope(),
            relation,
            self.config.self_enroll,
            now,
        ))
    }

    fn event(&self, peer: Peer, account: &str, op: Op, context: &LoginContext) -> AuditEvent {
        AuditEvent {
            id: 0,
            at: self.clock.now(),
            account: account.to_owned(),
            uid: None,
            op: op.as_str().to_owned(),
            result: AuditResult::Other,
            service: context.service.clone(),
            rhost: context.rhost.clone(),
            tty: context.tty.clone(),
            ruser: context.ruser.clone(),
            caller_uid: peer.uid,
            caller_pid: peer.pid,
            host: Some(self.host.clone()),
        }
    }

    /// Runs `decide` in one store transaction on the target's profile (and `source`'s
    /// record, if any) and audits its verdict there too. `decide` may run more than once.
    fn transact<T: Send>(
        &self,
        caller: Caller,
        target: &Target,
        op: Op,
        context: &LoginContext,
        source: Option<&str>,
        decide: &mut Rule<'_, T>,
    ) -> Result<Done<T>, ApiError> {
        self.refuse_stranger(caller, target, op, context)?;
        let account = target.account.as_str();
        let mut result = None;
        let mut label = AuditResult::Other;
        let mut audited = true;
        let mut relation = Relation::Stranger;
        let stored = self
            .store
            .transact(account, source, &mut |current, source_record| {
                relation = self.relation(caller, target, current);
                let verdict = decide(relation, current, source_record);
                audited = verdict.audited;
                let audit = (audited && !(caller.quiet && verdict.changes_nothing())).then(|| {
                    let mut event = self.event(caller.peer, account, op, context);
                    event.uid = verdict.change.record().or(current).map(|record| record.uid);
                    event.result = verdict.label;
                    event
                });
                label = verdict.label;
                result = Some(verdict.result);
                Outcome {
                    change: verdict.change,
                    source: verdict.source,
                    clear_sources: verdict.clear_sources,
                    audit,
                }
            })
            .map_err(|e| self.store_failed(e))?;
        if audited {
            self.log_attempt(caller, op, account, context, label);
        }
        let value = result.unwrap_or_else(|| Err(ApiError::internal("no decision was made")))?;
        Ok(Done {
            value,
            stored,
            relation,
        })
    }
}

#[cfg(test)]
mod tests;
