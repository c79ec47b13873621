//! Turns a stored record into the contract's JSON view (never the secret).

use crate::authz::{self, Relation};
use crate::secret::fingerprint;
use crate::store::{ProfileRecord, SourceRecord};
use pam_totp_proto::{BlockedSource, ProfileKind, ProfileView};
use std::time::{Duration, UNIX_EPOCH};

/// RFC 3339 UTC, second precision.
pub fn rfc3339(unix: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

pub fn profile_view(
    record: &ProfileRecord,
    blocked: &[(String, SourceRecord)],
    host: &str,
    scope: &str,
    relation: Relation,
    self_enroll: bool,
    now: i64,
) -> ProfileView {
    ProfileView {
        id: record.id,
        account: record.account.clone(),
        uid: record.uid,
        kind: record.kind,
        counter: (record.kind == ProfileKind::Hotp)
            .then(|| u64::try_from(record.next_counter()).unwrap_or(0)),
        owner: record.owner.clone().unwrap_or_else(|| host.to_owned()),
        scope: scope.to_owned(),
        verified: record.verified(),
        enabled: record.enabled,
        algorithm: record.algorithm,
        digits: record.digits,
        // An HOTP profile's stored period means nothing: its codes do not expire.
        period: (record.kind == ProfileKind::Totp).then_some(record.period),
        sha_fingerprint: fingerprint(&record.secret),
        comment: record.comment.clone(),
        created_at: rfc3339(record.created_at),
        changed_at: rfc3339(record.changed_at),
        verified_at: record.verified_at.map(rfc3339),
        last_used_at: record.last_used_at.map(rfc3339),
        failed_attempts: record.failed_attempts,
        locked_until: record
            .locked_until
            .filter(|until| *until > now)
            .map(rfc3339),
        blocked_sources: blocked
            .iter()
            .filter_map(|(source, record)| {
                Some(BlockedSource {
                    source: source.clone(),
                    blocked_until: rfc3339(record.blocked_until.filter(|t| *t > now)?),
                    failed_attempts: record.failures,
                })
            })
            .collect(),
        emergency_codes_remaining: u32::try_from(record.emergency_codes.len()).unwrap_or(0),
        can: authz::can(relation, self_enroll),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
