//! log, status, list, and the bounds on what a local user can make the agent keep.

use super::*;

#[test]
fn log_reads_the_audit_trail_newest_first_for_whom_it_may() {
    let h = harness();
    let enrolled = h.active_alice();
    h.login(ROOT, "alice", "000000").unwrap_err();
    h.clock.advance(5);
    h.login(ROOT, "alice", &h.code(&enrolled, 0)).unwrap();
    let log = |peer: Peer, account: Option<&str>, limit: u32| {
        h.call(
            peer,
            Request::Log {
                account: account.map(str::to_owned),
                since: None,
                limit,
                before: None,
            },
        )
    };
    let Ok(Reply::Log(LogPage { entries, next })) = log(ROOT, Some("alice"), 2) else {
        panic!("log failed");
    };
    assert!(next.is_some(), "a full page points to the next");
    let results: Vec<&str> = entries.iter().map(|e| e.result.as_str()).collect();
    assert_eq!(results, ["success", "wrong_code"]);
    assert_eq!(entries[0].service.as_deref(), Some("sshd"));
    assert_eq!(entries[0].rhost.as_deref(), Some("192.0.2.7"));
    // Alice reads her own log by default; Bob may not read hers; limit must be sane.
    assert!(
        matches!(log(ALICE, None, 10), Ok(Reply::Log(ref p)) if p.entries.len() == 4 && p.next.is_none())
    );
    assert_eq!(
        code_of(log(BOB, Some("alice"), 10)),
        Some(ErrorCode::PermissionDenied)
    );
    assert_eq!(
        code_of(log(ROOT, None, 0)),
        Some(ErrorCode::InvalidArgument)
    );
}

#[test]
fn status_counts_for_admins_only_and_retention_prunes() {
    let h = harness();
    h.active_alice();
    h.enroll(ROOT, enroll_request("bob")).unwrap();
    let Ok(Reply::Status(status)) = h.call(ROOT, Request::Status {}) else {
        panic!("status failed");
    };
    let counts = status.profiles.unwrap();
    assert_eq!((counts.pending, counts.active), (1, 1));
    assert!(status.last_hour.is_some());
    let Ok(Reply::Status(status)) = h.call(BOB, Request::Status {}) else {
        panic!("status failed");
    };
    assert!(status.profiles.is_none() && status.last_hour.is_none());
    // A year and a day later, everything so far is past the default retention.
    h.clock.advance(366 * 24 * 60 * 60);
    assert!(h.service.prune_audit().unwrap() >= 3);
    assert!(h.audit_results("alice").is_empty());
}

#[test]
fn list_pages_in_account_order() {
    let h = harness();
    h.active_alice();
    h.enroll(ROOT, enroll_request("bob")).unwrap();
    h.enroll(ROOT, enroll_request("operator")).unwrap();
    let page = |after: Option<&str>, limit: Option<u32>| match h.call(
        ROOT,
        Request::List {
            after: after.map(str::to_owned),
            limit,
        },
    ) {
        Ok(Reply::Profiles(profiles)) => profiles
            .into_iter()
            .map(|p| p.account)
            .collect::<Vec<String>>(),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(page(None, Some(2)), ["alice", "bob"]);
    assert_eq!(page(Some("bob"), Some(2)), ["operator"]);
    assert_eq!(page(None, None).len(), 3);
    for bad in [0, pam_totp_proto::MAX_LIST_PAGE + 1] {
        let error = h
            .call(
                ROOT,
                Request::List {
                    after: None,
                    limit: Some(bad),
                },
            )
            .unwrap_err();
        assert_eq!(error.target.as_deref(), Some("limit"));
    }
}

#[test]
fn a_local_users_refusals_stop_growing_the_audit_trail_past_its_budget() {
    let h = harness();
    h.active_alice();
    let before = h.audit_results("alice").len();
    for _ in 0..200 {
        let _ = h.call(BOB, authenticate("alice", None, "123456"));
        let _ = h.call(
            BOB,
            Request::Show {
                account: "alice".into(),
            },
        );
    }
    let added = h.audit_results("alice").len() - before;
    assert_eq!(added, budget::PER_WINDOW as usize);
    // Root's refusals are always audited.
    for _ in 0..50 {
        let _ = h.call(ROOT, authenticate("alice", None, "1"));
    }
    assert_eq!(h.audit_results("alice").len() - before - added, 50);
    // A new window: audited again.
    h.clock.advance(budget::WINDOW_SECONDS);
    let _ = h.call(BOB, authenticate("alice", None, "123456"));
    assert_eq!(h.audit_results("alice").len() - before - added, 51);
}

#[test]
fn the_audit_trail_keeps_at_most_its_row_limit() {
    let h = harness_with(Config {
        audit_max_rows: 25,
        ..Config::default()
    });
    h.active_alice();
    for _ in 0..100 {
        let _ = h.login(ROOT, "alice", "1");
    }
    assert!(h.audit_results("alice").len() > 100);
    assert!(h.service.prune_audit().unwrap() > 75);
    let kept = h.audit_results("alice");
    assert_eq!(kept.len(), 25);
    assert!(kept.iter().all(|r| r == "authenticate:malformed_code"));
}

#[test]
fn log_pages_follow_each_other_without_gaps() {
    let h = harness();
    h.active_alice();
    for _ in 0..7 {
        let _ = h.login(ROOT, "alice", "1");
    }
    let mut before = None;
    let mut pages = Vec::new();
    loop {
        let Ok(Reply::Log(page)) = h.call(
            ROOT,
            Request::Log {
                account: Some("alice".into()),
                since: None,
                limit: 3,
                before,
            },
        ) else {
            panic!("log failed");
        };
        pages.push(page.entries.len());
        before = page.next;
        if before.is_none() {
            break;
        }
    }
    // enroll + verify + 7 attempts = 9 rows: 3 + 3 + 3 (+ an empty last page).
    assert_eq!(pages.iter().sum::<usize>(), 9);
    assert!(pages.iter().all(|n| *n <= 3));
    assert_eq!(
        code_of(h.call(
            ROOT,
            Request::Log {
                account: None,
                since: None,
                limit: pam_totp_proto::MAX_LOG_PAGE + 1,
                before: None,
            },
        )),
        Some(ErrorCode::InvalidArgument)
    );
}
