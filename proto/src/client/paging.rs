//! Exchanges larger than one frame: `list` and `log` follow the agent's pages, and an import
//! is split into requests that each fit in one frame.
//!
//! Each takes the one-request call as a closure, so a caller can put its own transport (or a
//! double, in tests) behind it; [`crate::Client`] has methods that use its own.

use crate::client::{ClientError, Counter};
use crate::frame::MAX_FRAME_LEN;
use crate::message::{
    ImportProfile, LogPage, Reply, Request, RequestEnvelope, MAX_LIST_PAGE, MAX_LOG_PAGE,
};
use crate::profile::ProfileView;
use crate::validate::IMPORT_BATCH;
use serde::Serialize;
use std::ops::Range;

/// Every profile, page by page: one reply holds at most [`MAX_LIST_PAGE`] of them.
pub fn list_all(
    mut call: impl FnMut(Request) -> Result<Reply, ClientError>,
) -> Result<Vec<ProfileView>, ClientError> {
    let mut all: Vec<ProfileView> = Vec::new();
    loop {
        let after = all.last().map(|profile| profile.account.clone());
        let request = Request::List {
            after,
            limit: Some(MAX_LIST_PAGE),
        };
        match call(request)? {
            Reply::Profiles(page) => {
                let full = page.len() >= MAX_LIST_PAGE as usize;
                all.extend(page);
                if !full {
                    return Ok(all);
                }
            }
            other => return Err(unexpected(&other, "list")),
        }
    }
}

/// Up to `limit` audit entries, newest first, following the agent's pages (each at most
/// [`MAX_LOG_PAGE`]).
pub fn log_pages(
    mut call: impl FnMut(Request) -> Result<Reply, ClientError>,
    account: Option<String>,
    since: Option<i64>,
    limit: u32,
) -> Result<LogPage, ClientError> {
    let mut all = LogPage::default();
    let mut before = None;
    loop {
        let wanted = limit.saturating_sub(u32::try_from(all.entries.len()).unwrap_or(u32::MAX));
        let request = Request::Log {
            account: account.clone(),
            since,
            limit: wanted.min(MAX_LOG_PAGE),
            before,
        };
        match call(request)? {
            Reply::Log(page) => {
                all.entries.extend(page.entries);
                before = page.next;
                let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
                if before.is_none() || all.entries.len() >= wanted {
                    return Ok(all);
                }
            }
            other => return Err(unexpected(&other, "log")),
        }
    }
}

fn unexpected(reply: &Reply, op: &str) -> ClientError {
    ClientError::Protocol(format!("an unexpected '{}' reply to {op}", reply.kind()))
}

/// Splits `profiles` into the `import` requests to send, as ranges of `profiles`, in order:
/// each request holds at most [`IMPORT_BATCH`] profiles and, as serialized for the wire
/// (envelope included), at most [`MAX_FRAME_LEN`] bytes, measured rather than estimated. A
/// profile too large to fit even alone gets a range of its own (the call then fails as a
/// request over the limit, unsent).
///
/// The reply needs no measuring: a client reads replies of up to
/// [`crate::frame::MAX_REPLY_LEN`] (4 MiB), and one outcome per profile, each an account name
/// and at most a short error, keeps a reply to [`IMPORT_BATCH`] profiles far below that.
pub fn import_batches(profiles: &[ImportProfile], replace: bool) -> Vec<Range<usize>> {
    let empty = encoded_len(&RequestEnvelope::new(Request::Import {
        profiles: Vec::new(),
        replace,
    }));
    let mut batches = Vec::new();
    let mut start = 0;
    let mut size = empty;
    for (index, profile) in profiles.iter().enumerate() {
        let profile_len = encoded_len(profile);
        // Every profile after the first of its request follows a comma.
        let added = profile_len.saturating_add(usize::from(index > start));
        if index > start
            && (index - start >= IMPORT_BATCH || size.saturating_add(added) > MAX_FRAME_LEN)
        {
            batches.push(start..index);
            start = index;
            size = empty.saturating_add(profile_len);
        } else {
            size = size.saturating_add(added);
        }
    }
    if start < profiles.len() {
        batches.push(start..profiles.len());
    }
    batches
}

/// Bytes of `value` as JSON, counted without keeping them (a profile holds a secret).
fn encoded_len(value: &impl Serialize) -> usize {
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        // Cannot happen for these types; a request that cannot be encoded fits nowhere.
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::error::{ApiError, ErrorCode};
    use crate::message::{AuditEntry, ImportOutcome, Response};
    use crate::profile::Algorithm;
    use crate::secret::SecretString;

    fn profile(account: &str) -> ImportProfile {
        ImportProfile {
            account: account.to_owned(),
            kind: Default::default(),
            counter: None,
            secret: SecretString::from("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
            window: None,
            emergency_codes: Vec::new(),
            comment: Some("imported from pam_oath".into()),
        }
    }

    fn request_bytes(profiles: &[ImportProfile], replace: bool) -> usize {
        let request = Request::Import {
            profiles: profiles.to_vec(),
            replace,
        };
        serde_json::to_vec(&RequestEnvelope::new(request))
            .unwrap()
            .len()
    }

    /// Every profile once, in order.
    fn assert_covers(batches: &[Range<usize>], count: usize) {
        let mut next = 0;
        for batch in batches {
            assert_eq!(batch.start, next);
            assert!(batch.end > batch.start);
            next = batch.end;
        }
        assert_eq!(next, count);
    }

    #[test]
    fn batches_fit_in_a_frame_both_ways() {
        let short: Vec<ImportProfile> = (0..10_000).map(|i| profile(&format!("u{i}"))).collect();
        let batches = import_batches(&short, true);
        assert_covers(&batches, 10_000);
        assert!(batches.len() < 10_000 / 100, "{} batches", batches.len());
        for batch in &batches {
            let batch = &short[batch.clone()];
            assert!(batch.len() <= IMPORT_BATCH);
            assert!(request_bytes(batch, true) <= MAX_FRAME_LEN);
            // The reply if every profile is refused with the longest message the agent has.
            let reply = Response::Ok(Reply::Imported(
                batch
                    .iter()
                    .map(|p| ImportOutcome {
                        account: p.account.clone(),
                        error: Some(
                            ApiError::new(
                                ErrorCode::AlreadyExists,
                                format!(
                                    "account '{}' already has a TOTP profile: use --replace",
                                    p.account
                                ),
                            )
                            .with_target("account"),
                        ),
                    })
                    .collect(),
            ));
            assert!(serde_json::to_vec(&reply).unwrap().len() <= MAX_FRAME_LEN);
        }
        // Long names make smaller batches.
        let long: Vec<ImportProfile> = (0..1000)
            .map(|i| profile(&format!("{i}{}", "x".repeat(200))))
            .collect();
        let batches = import_batches(&long, false);
        assert_covers(&batches, 1000);
        for batch in batches {
            assert!(request_bytes(&long[batch], false) <= MAX_FRAME_LEN);
        }
    }

    #[test]
    fn batches_are_measured_not_guessed() {
        let profiles: Vec<ImportProfile> = (0..2000).map(|i| profile(&format!("u{i}"))).collect();
        let batches = import_batches(&profiles, false);
        assert_covers(&batches, profiles.len());
        // Each request but the last is full: one more profile would not fit.
        let (last, full) = batches.split_last().unwrap();
        for batch in full {
            let with_next = &profiles[batch.start..=batch.end];
            assert!(
                batch.len() == IMPORT_BATCH || request_bytes(with_next, false) > MAX_FRAME_LEN,
                "{batch:?}"
            );
        }
        assert!(request_bytes(&profiles[last.clone()], false) <= MAX_FRAME_LEN);
        // The count bounds a batch of small profiles.
        let tiny: Vec<ImportProfile> = (0..1200)
            .map(|i| ImportProfile {
                secret: SecretString::from("A"),
                comment: None,
                ..profile(&i.to_string())
            })
            .collect();
        let batches = import_batches(&tiny, false);
        assert_eq!(batches, [0..500, 500..1000, 1000..1200]);
        assert!(import_batches(&[], false).is_empty());
        // A profile too large for any frame is sent alone (and refused unsent by the client).
        let mut huge = profile("big");
        huge.comment = Some("x".repeat(MAX_FRAME_LEN));
        let batches = import_batches(&[profile("a"), huge, profile("b")], false);
        assert_eq!(batches, [0..1, 1..2, 2..3]);
    }

    fn page_of(accounts: std::ops::Range<u32>) -> Vec<ProfileView> {
        accounts
            .map(|i| {
                let mut view = sample();
                view.account = format!("u{i:05}");
                view
            })
            .collect()
    }

    /// A profile view built from its contract JSON.
    fn sample() -> ProfileView {
        serde_json::from_value(sample_json()).unwrap()
    }

    fn sample_json() -> serde_json::Value {
        serde_json::json!({
            "id": 1, "account": "a", "uid": 1000, "type": "totp", "owner": "h", "scope": "host",
            "verified": true, "enabled": true, "algorithm": "SHA1", "digits": 6, "period": 30,
            "sha_fingerprint": "ab", "comment": null, "created_at": "t", "changed_at": "t",
            "verified_at": null, "last_used_at": null, "failed_attempts": 0,
            "locked_until": null, "blocked_sources": [], "emergency_codes_remaining": 0,
            "can": []
        })
    }

    #[test]
    fn list_follows_full_pages() {
        let mut asked = Vec::new();
        let total = MAX_LIST_PAGE * 2 + 5;
        let all = list_all(|request| {
            let Request::List { after, limit } = request else {
                panic!("not list: {request:?}")
            };
            assert_eq!(limit, Some(MAX_LIST_PAGE));
            let start = after.map_or(0, |a| a[1..].parse::<u32>().unwrap() + 1);
            asked.push(start);
            Ok(Reply::Profiles(page_of(
                start..(start + MAX_LIST_PAGE).min(total),
            )))
        })
        .unwrap();
        assert_eq!(all.len(), total as usize);
        assert_eq!(asked, [0, MAX_LIST_PAGE, 2 * MAX_LIST_PAGE]);
        let error = list_all(|_| {
            Ok(Reply::Removed {
                account: "x".into(),
            })
        })
        .unwrap_err();
        assert!(
            matches!(&error, ClientError::Protocol(m) if m == "an unexpected 'removed' reply to list"),
            "{error:?}"
        );
    }

    fn entry(n: i64) -> AuditEntry {
        serde_json::from_value(serde_json::json!({
            "time": n.to_string(), "account": "alice", "op": "verify", "result": "success",
            "service": null, "rhost": null, "tty": null, "caller_uid": 0
        }))
        .unwrap()
    }

    #[test]
    fn log_follows_pages_up_to_the_limit() {
        // 1,200 entries, numbered newest first.
        let mut limits = Vec::new();
        let page = log_pages(
            |request| {
                let Request::Log { limit, before, .. } = request else {
                    panic!("not log: {request:?}")
                };
                limits.push(limit);
                let start = before.unwrap_or(0);
                let end = (start + i64::from(limit)).min(1200);
                Ok(Reply::Log(LogPage {
                    entries: (start..end).map(entry).collect(),
                    next: (end < 1200).then_some(end),
                }))
            },
            Some("alice".into()),
            None,
            1100,
        )
        .unwrap();
        assert_eq!(page.entries.len(), 1100);
        assert_eq!(limits, [MAX_LOG_PAGE, MAX_LOG_PAGE, 100]);
        assert_eq!(page.entries[1099].time, "1099");
        // Fewer entries than asked for: the pages end.
        let page = log_pages(
            |_| {
                Ok(Reply::Log(LogPage {
                    entries: vec![entry(0)],
                    next: None,
                }))
            },
            None,
            None,
            100,
        )
        .unwrap();
        assert_eq!(page.entries.len(), 1);
        let error = log_pages(|_| Ok(Reply::Profiles(vec![])), None, None, 5).unwrap_err();
        assert!(
            matches!(&error, ClientError::Protocol(m) if m == "an unexpected 'profiles' reply to log"),
            "{error:?}"
        );
    }
}
