//! Failures per source and per account, and the way back in.

use super::*;

/// A harness whose account locks after `threshold` failures and whose sources are blocked
/// after `source_threshold`.
fn harness_locking_at(threshold: u32, source_threshold: u32) -> Harness {
    harness_with(Config {
        lockout: LockoutPolicy {
            threshold,
            source_threshold,
            ..LockoutPolicy::default()
        },
        ..Config::default()
    })
}

#[test]
fn a_source_is_blocked_for_growing_times_and_a_success_resets_it() {
    let h = harness();
    let enrolled = h.active_alice();
    for _ in 0..4 {
        assert_eq!(
            code_of(h.login(ROOT, "alice", "000000")),
            Some(ErrorCode::CodeRejected)
        );
    }
    // The fifth failure from this source blocks it for 30 s; the code is not even checked.
    assert_eq!(
        code_of(h.login(ROOT, "alice", "000001")),
        Some(ErrorCode::CodeRejected)
    );
    let blocked = h.login(ROOT, "alice", &h.code(&enrolled, 0)).unwrap_err();
    assert_eq!(blocked.code, ErrorCode::RateLimited);
    assert_eq!(blocked.retry_after, Some(30));
    // After it expires, one more failure blocks it for 60 s.
    h.clock.advance(31);
    assert_eq!(
        code_of(h.login(ROOT, "alice", "000002")),
        Some(ErrorCode::CodeRejected)
    );
    let blocked = h.login(ROOT, "alice", "000003").unwrap_err();
    assert_eq!(blocked.retry_after, Some(60));
    // The account counts every failure but is not locked yet (threshold 20).
    let view = h.show("alice");
    assert_eq!((view.failed_attempts, view.locked_until), (6, None));
    // Unlock (admin) clears the sources too; a success resets the account counter.
    assert!(h
        .call(
            ROOT,
            Request::Unlock {
                account: "alice".into()
            }
        )
        .is_ok());
    assert!(h.login(ROOT, "alice", &h.code(&enrolled, 0)).is_ok());
    assert_eq!(h.show("alice").failed_attempts, 0);
}

#[test]
fn one_blocked_source_does_not_lock_the_owner_out_elsewhere() {
    let h = harness();
    let enrolled = h.active_alice();
    for _ in 0..5 {
        let _ = login_from(&h, ROOT, "203.0.113.66", "000000");
    }
    let attacker = login_from(&h, ROOT, "203.0.113.66", &h.code(&enrolled, 0));
    assert_eq!(code_of(attacker), Some(ErrorCode::RateLimited));
    // The owner, elsewhere, gets in; the attacker's source stays blocked.
    assert!(login_from(&h, ROOT, "198.51.100.20", &h.code(&enrolled, 0)).is_ok());
    assert_eq!(
        code_of(login_from(&h, ROOT, "203.0.113.66", &h.code(&enrolled, 1))),
        Some(ErrorCode::RateLimited)
    );
    assert_eq!(h.show("alice").locked_until, None);
}

#[test]
fn failures_from_many_sources_lock_the_account_for_everyone() {
    let h = harness_locking_at(6, 3);
    let enrolled = h.active_alice();
    for rhost in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        for _ in 0..2 {
            assert_eq!(
                code_of(login_from(&h, ROOT, rhost, "000000")),
                Some(ErrorCode::CodeRejected)
            );
        }
    }
    let locked = login_from(&h, ROOT, "198.51.100.20", &h.code(&enrolled, 0)).unwrap_err();
    assert_eq!(
        (locked.code, locked.retry_after),
        (ErrorCode::RateLimited, Some(30))
    );
    assert!(h.show("alice").locked_until.is_some());
}

#[test]
fn a_local_caller_is_its_own_source_whatever_rhost_it_claims() {
    let h = harness();
    let enrolled = h.active_alice();
    for claimed in [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.4",
        "192.0.2.5",
    ] {
        assert_eq!(
            code_of(login_from(&h, ALICE, claimed, "000000")),
            Some(ErrorCode::CodeRejected)
        );
    }
    assert_eq!(
        code_of(login_from(&h, ALICE, "192.0.2.99", &h.code(&enrolled, 0))),
        Some(ErrorCode::RateLimited)
    );
    // Root's logins (sshd) from a real remote host are not affected.
    assert!(login_from(&h, ROOT, "192.0.2.99", &h.code(&enrolled, 0)).is_ok());
}

#[test]
fn source_identity() {
    let context = |rhost: Option<&str>, ruser: Option<&str>| LoginContext {
        rhost: rhost.map(str::to_owned),
        ruser: ruser.map(str::to_owned),
        ..LoginContext::default()
    };
    assert_eq!(
        codes::source_of(ROOT, &context(Some("h"), Some("u"))),
        "rhost:h"
    );
    assert_eq!(
        codes::source_of(ROOT, &context(Some(""), Some("u"))),
        "ruser:u"
    );
    assert_eq!(codes::source_of(ROOT, &context(None, None)), "local");
    assert_eq!(codes::source_of(BOB, &context(Some("h"), None)), "uid:1001");
}

#[test]
fn lockout_is_capped() {
    let h = harness_with(Config {
        lockout: LockoutPolicy {
            threshold: 1,
            base_seconds: 600,
            max_seconds: 900,
            ..LockoutPolicy::default()
        },
        ..Config::default()
    });
    h.active_alice();
    assert!(h.login(ROOT, "alice", "000000").is_err());
    h.clock.advance(601);
    assert!(h.login(ROOT, "alice", "000000").is_err());
    let locked = h.login(ROOT, "alice", "000000").unwrap_err();
    assert_eq!(locked.retry_after, Some(900));
}

#[test]
fn an_emergency_code_gets_the_owner_in_while_the_account_is_locked_elsewhere() {
    let h = harness_locking_at(6, 3);
    let enrolled = h.active_alice();
    for host in 1..=6 {
        let _ = login_from(&h, ROOT, &format!("203.0.113.{host}"), "000000");
    }
    assert!(h.show("alice").locked_until.is_some());
    // A TOTP code does not open a locked account...
    assert_eq!(
        code_of(login_from(&h, ROOT, "198.51.100.20", &h.code(&enrolled, 0))),
        Some(ErrorCode::RateLimited)
    );
    // ...an emergency code from a source that is not blocked does, and clears the lock.
    assert!(login_from(&h, ROOT, "198.51.100.21", &enrolled.codes[0]).is_ok());
    let view = h.show("alice");
    assert_eq!((view.locked_until, view.failed_attempts), (None, 0));
    // Never from a blocked source.
    for _ in 0..3 {
        let _ = login_from(&h, ROOT, "203.0.113.99", "000000");
    }
    assert_eq!(
        code_of(login_from(&h, ROOT, "203.0.113.99", &enrolled.codes[1])),
        Some(ErrorCode::RateLimited)
    );
    // Guesses while locked count against their source: it is soon blocked.
    for host in 7..=12 {
        let _ = login_from(&h, ROOT, &format!("203.0.113.{host}"), "000000");
    }
    for _ in 0..3 {
        let _ = login_from(&h, ROOT, "192.0.2.50", "11111111");
    }
    assert_eq!(
        code_of(login_from(&h, ROOT, "192.0.2.50", &enrolled.codes[2])),
        Some(ErrorCode::RateLimited),
        "a source guessing emergency codes during a lock is blocked"
    );
    // Many sources guessing 8 digits: past the cap (5 x the threshold of 6) even a fresh
    // source's emergency code waits for the lock to end; 6-digit guesses are not looked at.
    for host in 13..=60 {
        let _ = login_from(&h, ROOT, &format!("203.0.113.{host}"), "22222222");
    }
    assert!(h.show("alice").failed_attempts >= 30);
    assert_eq!(
        code_of(login_from(&h, ROOT, "198.51.100.30", &enrolled.codes[3])),
        Some(ErrorCode::RateLimited)
    );
    h.clock.advance(16 * 60);
    assert!(login_from(&h, ROOT, "198.51.100.31", &enrolled.codes[3]).is_ok());
}

#[test]
fn show_explains_blocked_sources_and_unlock_clears_them() {
    let h = harness();
    h.active_alice();
    for _ in 0..8 {
        let _ = login_from(&h, ROOT, "203.0.113.66", "000000");
    }
    let view = h.show("alice");
    assert_eq!(view.locked_until, None);
    assert_eq!(view.blocked_sources.len(), 1);
    let blocked = &view.blocked_sources[0];
    assert_eq!(blocked.source, "rhost:203.0.113.66");
    assert_eq!(
        blocked.failed_attempts, 5,
        "failures while blocked are not counted"
    );
    assert!(blocked.blocked_until.ends_with('Z'));
    h.call(
        ROOT,
        Request::Unlock {
            account: "alice".into(),
        },
    )
    .unwrap();
    assert!(h.show("alice").blocked_sources.is_empty());
}
