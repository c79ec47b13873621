//! The request rules: authorization, code checks, replay protection, lockout and audit.
//! Every decision that changes state is made inside one store transaction.

pub(crate) mod codes;
mod enroll;
mod import;
mod manage;
mod probe;
mod report;

use crate::authz::{self, Op, Peer, Relation};
use crate::clock::Clock;
use crate::config::Config;
use crate::directory::Directory;
use crate::store::{AuditEvent, Change, Outcome, ProfileRecord, SourceRecord, Store, StoreError};
use crate::view::profile_view;
use pam_totp_proto::validate;
use pam_totp_proto::{ApiError, AuthReply, LoginContext, ProfileView, Reply, Request};
use std::time::Instant;

pub struct Service {
    store: Box<dyn Store>,
    directory: Box<dyn Directory>,
    clock: Box<dyn Clock>,
    config: Config,
    host: String,
    paths: Paths,
    started: Instant,
}

/// Where the agent listens and keeps its state, as `status` reports them.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    pub socket: String,
    pub database: String,
}

/// What a rule decided inside a transaction: the answer, what to store, the audit label.
struct Verdict<T> {
    result: Result<T, ApiError>,
    change: Change,
    /// The attempt's source afterwards, when a code was checked.
    source: Option<SourceRecord>,
    clear_sources: bool,
    label: &'static str,
}

impl<T> Verdict<T> {
    fn refuse(error: ApiError, label: &'static str) -> Self {
        Self {
            result: Err(error),
            change: Change::Keep,
            source: None,
            clear_sources: false,
            label,
        }
    }

    fn accept(value: T, change: Change, label: &'static str) -> Self {
        Self {
            result: Ok(value),
            change,
            source: None,
            clear_sources: false,
            label,
        }
    }

    fn map<U>(self, f: impl FnOnce(T) -> U) -> Verdict<U> {
        Verdict {
            result: self.result.map(f),
            change: self.change,
            source: self.source,
            clear_sources: self.clear_sources,
            label: self.label,
        }
    }
}

/// A rule decided inside a transaction, from how the caller stands to the account, its
/// profile, and the attempt's source.
type Rule<'a, T> =
    dyn FnMut(Relation, Option<&ProfileRecord>, Option<&SourceRecord>) -> Verdict<T> + 'a;

/// A transaction's answer, the profile as stored afterwards, and how the caller stands to it.
struct Done<T> {
    value: T,
    stored: Option<ProfileRecord>,
    relation: Relation,
}

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
            paths: Paths::default(),
            started: Instant::now(),
        }
    }

    /// Records the socket and database paths for `status`.
    pub fn with_paths(mut self, paths: Paths) -> Self {
        self.paths = paths;
        self
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
            Request::List { after, limit } => self.list(peer, after.as_deref(), limit),
            Request::Disable { account } => self.set_enabled(peer, &account, false),
            Request::Enable { account } => self.set_enabled(peer, &account, true),
            Request::Remove { account, code } => self.remove(peer, &account, code.as_ref()),
            Request::Unlock { account } => self.unlock(peer, &account),
            Request::RegenerateCodes { account, code } => {
                self.regenerate_codes(peer, &account, code.as_ref())
            }
            Request::SetComment { account, comment } => self.set_comment(peer, &account, comment),
            Request::Import { profiles, replace } => self.import(peer, profiles, replace),
            Request::Log {
                account,
                since,
                limit,
            } => self.log(peer, account, since, limit),
            Request::Status {} => self.status(peer),
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
        // Logins come from root (sshd, sudo): an admin needs no NSS lookup, and on the login
        // path that lookup was the agent's largest single cost.
        if self.is_admin(peer.uid) {
            return Relation::Admin;
        }
        authz::relation(
            false,
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

    /// Runs `decide` in one store transaction on the account (and `source`, if any) and
    /// audits its verdict there too.
    fn transact<T>(
        &self,
        peer: Peer,
        account: &str,
        op: Op,
        context: &LoginContext,
        source: Option<&str>,
        decide: &mut Rule<'_, T>,
    ) -> Result<Done<T>, ApiError> {
        let mut result = None;
        let mut relation = Relation::Stranger;
        let stored = self
            .store
            .transact(account, source, &mut |current, source_record| {
                relation = self.relation(peer, account, current);
                let verdict = decide(relation, current, source_record);
                let mut event = self.event(peer, account, op, context);
                event.uid = match &verdict.change {
                    Change::Save(record) => Some(record.uid),
                    _ => current.map(|r| r.uid),
                };
                event.result = verdict.label.to_owned();
                result = Some(verdict.result);
                Outcome {
                    change: verdict.change,
                    source: verdict.source,
                    clear_sources: verdict.clear_sources,
                    audit: Some(event),
                }
            })
            .map_err(store_error)?;
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
