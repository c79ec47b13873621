//! `enroll`: a new pending profile (TOTP, or HOTP from a given counter) with a fresh secret
//! and emergency codes.

use super::codes::source_of;
use super::{denied, Caller, Service, Target, Verdict};
use crate::authz::{Op, Relation};
use crate::secret;
use crate::store::{Change, CodeSettings, ProfileRecord, SourceRecord};
use pam_totp_proto::validate;
use pam_totp_proto::AuditResult;
use pam_totp_proto::{
    ApiError, EnrollReply, EnrollRequest, ErrorCode, LoginContext, ProfileKind, Reply, SecretString,
};

impl Service {
    /// Enrolls the target: the account named, or the enrolled account of the same uid whose
    /// profile that name is held to (so an alias cannot add a second profile beside it).
    pub(super) fn enroll(
        &self,
        caller: Caller,
        target: &Target,
        request: EnrollRequest,
    ) -> Result<Reply, ApiError> {
        validate::digits(request.digits)?;
        validate::period(request.period)?;
        validate::counter(request.kind, request.counter)?;
        if let Some(comment) = &request.comment {
            validate::comment(comment)?;
        }
        if let Some(issuer) = &request.issuer {
            validate::issuer(issuer)?;
        }
        let account = target.account.as_str();
        let Some(uid) = target.uid else {
            return Err(
                ApiError::not_found(format!("no such account: '{account}'")).with_target("account")
            );
        };
        let secret = secret::generate_secret().map_err(|e| ApiError::internal(e.to_string()))?;
        let (codes, hashed_codes) =
            secret::generate_emergency_codes(&|s| self.store.emergency_digest(s))
                .map_err(|e| ApiError::internal(e.to_string()))?;
        let now = self.clock.now();
        let issuer = request.issuer.clone().unwrap_or_else(|| self.host.clone());
        let settings = CodeSettings {
            algorithm: request.algorithm,
            digits: request.digits,
            period: request.period,
        };
        let mut fresh = ProfileRecord {
            comment: request.comment.clone().filter(|c| !c.is_empty()),
            emergency_codes: hashed_codes,
            owner: Some(self.host.clone()),
            kind: request.kind,
            ..ProfileRecord::new(account, uid, secret.clone(), settings, &issuer, now)
        };
        if request.kind == ProfileKind::Hotp {
            fresh.expect_counter(request.counter.unwrap_or(0));
        }
        let context = LoginContext::default();
        let source = source_of(caller.peer, &context);
        let done = self.transact(
            caller,
            target,
            Op::Enroll,
            &context,
            Some(&source),
            &mut |relation, current, source_record| {
                self.decide_enroll(relation, &request, current, source_record, &fresh, now)
            },
        )?;
        let record = done
            .stored
            .ok_or_else(|| ApiError::internal("enrollment was not stored"))?;
        let secret_b32 = secret::to_base32(&secret);
        let uri = otpauth_uri(&issuer, account, &self.host, &secret_b32, &record);
        Ok(Reply::Enrolled(EnrollReply {
            secret: secret_b32,
            otpauth_uri: uri,
            emergency_codes: codes,
            profile: self.view(&record, done.relation)?,
        }))
    }

    fn decide_enroll(
        &self,
        relation: Relation,
        request: &EnrollRequest,
        current: Option<&ProfileRecord>,
        source: Option<&SourceRecord>,
        fresh: &ProfileRecord,
        now: i64,
    ) -> Verdict<()> {
        if !self.permits(relation, Op::Enroll) {
            let error = if relation == Relation::Owner {
                ApiError::permission_denied("self-enrollment is disabled by the administrator")
            } else {
                denied(Op::Enroll)
            };
            return Verdict::refuse(error, AuditResult::Denied);
        }
        let save_fresh = || Change::Create(Box::new(fresh.clone()));
        let Some(current) = current else {
            return Verdict::accept((), save_fresh(), AuditResult::Enrolled);
        };
        if !request.replace {
            let error = ApiError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "account '{}' already has a TOTP profile: use --replace",
                    current.account
                ),
            )
            .with_target("account");
            return Verdict::refuse(error, AuditResult::Exists);
        }
        if relation == Relation::Owner && current.verified() {
            let proof =
                self.owner_code_check(current, source, request.code.as_ref(), Op::Enroll, now);
            if let Err(refusal) = proof {
                return *refusal;
            }
        }
        Verdict::accept((), save_fresh(), AuditResult::Replaced)
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

/// The Key URI that authenticator apps scan: label `issuer:account@host`; a TOTP profile's
/// period, or the counter of an HOTP token's next code.
fn otpauth_uri(
    issuer: &str,
    account: &str,
    host: &str,
    secret: &SecretString,
    record: &ProfileRecord,
) -> SecretString {
    let moving = match record.kind {
        ProfileKind::Totp => format!("period={}", record.period),
        ProfileKind::Hotp => format!("counter={}", record.next_counter()),
    };
    SecretString::new(format!(
        "otpauth://{}/{}:{}?secret={}&issuer={}&algorithm={}&digits={}&{moving}",
        record.kind,
        percent_encode(issuer),
        percent_encode(&format!("{account}@{host}")),
        secret.expose(),
        percent_encode(issuer),
        record.algorithm,
        record.digits,
    ))
}
