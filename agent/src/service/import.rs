//! `import`: active profiles with known secrets, moved over from google-authenticator or
//! pam_oath. Each profile is decided on its own; all of one request commit together.

use super::{denied, Caller, Service};
use crate::authz::{self, Op, Relation};
use crate::config::MAX_WINDOW;
use crate::secret;
use crate::store::{Change, CodeSettings, Decision, Outcome, ProfileRecord};
use pam_totp_proto::validate::{
    self, EMERGENCY_CODE_DIGITS, MAX_IMPORT_BATCH, MAX_SECRET_BYTES, MIN_SECRET_BYTES,
};
use pam_totp_proto::{
    ApiError, AuditResult, ErrorCode, ImportOutcome, ImportProfile, LoginContext, ProfileKind,
    Reply,
};

impl Service {
    pub(super) fn import(
        &self,
        caller: Caller,
        profiles: Vec<ImportProfile>,
        replace: bool,
    ) -> Result<Reply, ApiError> {
        if profiles.len() > MAX_IMPORT_BATCH {
            return Err(ApiError::invalid(
                "profiles",
                format!("at most {MAX_IMPORT_BATCH} profiles per request"),
            ));
        }
        let now = self.clock.now();
        let (peer, is_admin) = (caller.peer, caller.admin);
        let names: Vec<&str> = profiles.iter().map(|p| p.account.as_str()).collect();
        let uids = self.directory.uids_of(&names);
        let prepared: Vec<(String, Result<ProfileRecord, ApiError>)> = profiles
            .into_iter()
            .map(|profile| {
                let uid = uids.get(&profile.account).copied();
                let name = profile.account.clone();
                // A name of a uid that already has a profile is held to that profile, as at
                // login: an alias must not plant a second profile beside the account's.
                let record = self
                    .prepare_import(profile, uid, now)
                    .and_then(|mut record| {
                        record.account = self.held_to(&name, uid)?.account;
                        Ok(record)
                    });
                let account = record.as_ref().map_or(name, |r| r.account.clone());
                (account, record)
            })
            .collect();
        let mut verdicts: Vec<Option<Result<(), ApiError>>> = vec![None; prepared.len()];
        let mut jobs: Vec<(String, Box<Decision<'_>>)> = Vec::new();
        for ((account, record), verdict) in prepared.iter().zip(verdicts.iter_mut()) {
            let record = match record {
                Ok(record) => record,
                Err(error) => {
                    *verdict = Some(Err(error.clone()));
                    continue;
                }
            };
            let decide = move |current: Option<&ProfileRecord>, _: Option<&_>| {
                // The uid was looked up before the transaction: no NSS call while it is open.
                let relation = authz::relation(
                    is_admin,
                    peer.uid,
                    Some(record.uid),
                    self.recorded_uid(current),
                );
                let (result, change, label) =
                    self.decide_import(relation, record, current, replace);
                *verdict = Some(result);
                let mut event = self.event(peer, account, Op::Import, &LoginContext::default());
                event.uid = Some(record.uid);
                event.result = label;
                Outcome::new(change, Some(event))
            };
            jobs.push((account.clone(), Box::new(decide)));
        }
        self.store
            .transact_each(&mut jobs)
            .map_err(|e| self.store_failed(e))?;
        drop(jobs);
        let outcomes = prepared
            .into_iter()
            .zip(verdicts)
            .map(|((account, _), verdict)| ImportOutcome {
                account,
                error: verdict
                    .unwrap_or_else(|| Err(ApiError::internal("no decision was made")))
                    .err(),
            })
            .collect();
        Ok(Reply::Imported(outcomes))
    }

    /// Checks one profile's fields and builds its record: active at once, since the other
    /// tool's secret is already in the user's app.
    fn prepare_import(
        &self,
        profile: ImportProfile,
        uid: Option<u32>,
        now: i64,
    ) -> Result<ProfileRecord, ApiError> {
        validate::account(&profile.account)?;
        validate::digits(profile.digits)?;
        validate::period(profile.period)?;
        validate::counter(profile.kind, profile.counter)?;
        if let Some(comment) = &profile.comment {
            validate::comment(comment)?;
        }
        if profile.kind == ProfileKind::Hotp && profile.window.is_some() {
            return Err(ApiError::invalid(
                "window",
                "a window is only for TOTP profiles: HOTP profiles look ahead by the agent's \
                 hotp_window",
            ));
        }
        if profile.window.is_some_and(|w| w > MAX_WINDOW) {
            return Err(ApiError::invalid(
                "window",
                format!("window must be 0 to {MAX_WINDOW} steps"),
            ));
        }
        let secret = secret::from_base32(profile.secret.expose())
            .filter(|s| (MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&s.len()))
            .ok_or_else(|| {
                ApiError::invalid(
                    "secret",
                    format!(
                        "secret must be base32 of {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes"
                    ),
                )
            })?;
        if let Some(bad) = profile.emergency_codes.iter().position(|code| {
            code.expose().len() != EMERGENCY_CODE_DIGITS
                || !code.expose().bytes().all(|b| b.is_ascii_digit())
        }) {
            return Err(ApiError::invalid(
                "emergency_codes",
                format!(
                    "emergency code #{} is not {EMERGENCY_CODE_DIGITS} digits",
                    bad + 1
                ),
            ));
        }
        let Some(uid) = uid else {
            return Err(
                ApiError::not_found(format!("no such account: '{}'", profile.account))
                    .with_target("account"),
            );
        };
        let emergency_codes = secret::hash_emergency_codes(&profile.emergency_codes, &|s| {
            self.store.emergency_digest(s)
        })
        .map_err(|e| ApiError::internal(e.to_string()))?;
        let settings = CodeSettings {
            algorithm: profile.algorithm,
            digits: profile.digits,
            period: profile.period,
        };
        let mut record = ProfileRecord {
            comment: profile.comment.filter(|c| !c.is_empty()),
            verified_at: Some(now),
            emergency_codes,
            window: profile.window,
            owner: Some(self.host.clone()),
            kind: profile.kind,
            ..ProfileRecord::new(&profile.account, uid, secret, settings, &self.host, now)
        };
        if profile.kind == ProfileKind::Hotp {
            record.expect_counter(profile.counter.unwrap_or(0));
        }
        Ok(record)
    }

    fn decide_import(
        &self,
        relation: Relation,
        record: &ProfileRecord,
        current: Option<&ProfileRecord>,
        replace: bool,
    ) -> (Result<(), ApiError>, Change, AuditResult) {
        if !self.permits(relation, Op::Import) {
            return (Err(denied(Op::Import)), Change::Keep, AuditResult::Denied);
        }
        let save = || Change::Create(Box::new(record.clone()));
        let Some(current) = current else {
            return (Ok(()), save(), AuditResult::Imported);
        };
        if !replace {
            let error = ApiError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "account '{}' already has a TOTP profile: use --replace",
                    record.account
                ),
            )
            .with_target("account");
            return (Err(error), Change::Keep, AuditResult::Exists);
        }
        if relation == Relation::Owner && current.verified() {
            let error = ApiError::permission_denied(
                "your active profile can only be replaced with 'pam-totp enroll --replace --code'",
            );
            return (Err(error), Change::Keep, AuditResult::Denied);
        }
        (Ok(()), save(), AuditResult::Replaced)
    }
}
