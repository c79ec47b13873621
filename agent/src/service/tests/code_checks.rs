//! Codes: enrollment, replay, emergency codes, algorithms, a clock that jumped.

use super::*;

#[test]
fn enrollment_is_pending_until_verified_then_logins_work_once_per_step() {
    let h = harness();
    let enrolled = h.enroll(ROOT, enroll_request("alice")).unwrap();
    assert!(!enrolled.profile.verified);
    assert_eq!(enrolled.profile.emergency_codes_remaining, 10);
    assert_eq!(enrolled.profile.owner, "testhost");
    assert_eq!(enrolled.secret.len(), 20);

    // Pending: a correct code cannot log in.
    let code_now = h.code(&enrolled, 0);
    assert_eq!(
        code_of(h.login(ROOT, "alice", &code_now)),
        Some(ErrorCode::NotFound)
    );
    // Verify activates.
    let verified = h.verify(ROOT, "alice", &h.code(&enrolled, -1)).unwrap();
    assert!(matches!(verified, Reply::Profile(ref v) if v.verified && v.verified_at.is_some()));
    // Login with the next step, then the same code again is a replay.
    assert!(matches!(
        h.login(ROOT, "alice", &code_now),
        Ok(Reply::Authenticated(AuthReply {
            method: AuthMethod::Totp
        }))
    ));
    assert_eq!(
        code_of(h.login(ROOT, "alice", &code_now)),
        Some(ErrorCode::CodeRejected)
    );
    // The replay was not counted as a guess.
    assert_eq!(h.show("alice").failed_attempts, 0);
    assert!(h.show("alice").last_used_at.is_some());
    assert_eq!(
        h.audit_results("alice"),
        [
            "enroll:enrolled",
            "authenticate:not_enrolled",
            "verify:success",
            "authenticate:success",
            "authenticate:replay"
        ]
    );
}

#[test]
fn an_older_step_is_a_replay_even_when_the_clock_goes_back() {
    let h = harness();
    let enrolled = h.active_alice();
    let code_next = h.code(&enrolled, 1);
    assert!(h.login(ROOT, "alice", &code_next).is_ok());
    // Clock moves back two minutes: the earlier codes are all older than the last used step.
    h.clock.advance(-120);
    for offset in -1..=1 {
        let code = h.code(&enrolled, offset);
        assert_eq!(
            code_of(h.login(ROOT, "alice", &code)),
            Some(ErrorCode::CodeRejected),
            "offset {offset}"
        );
    }
}

#[test]
fn emergency_codes_work_once_and_only_when_verified() {
    let h = harness();
    let enrolled = h.enroll(ROOT, enroll_request("alice")).unwrap();
    let first = enrolled.codes[0].clone();
    // Pending profile: an emergency code does not verify it.
    assert_eq!(
        code_of(h.verify(ROOT, "alice", &first)),
        Some(ErrorCode::CodeRejected)
    );
    h.verify(ROOT, "alice", &h.code(&enrolled, 0)).unwrap();
    assert!(matches!(
        h.login(ROOT, "alice", &first),
        Ok(Reply::Authenticated(AuthReply {
            method: AuthMethod::EmergencyCode
        }))
    ));
    assert_eq!(
        code_of(h.login(ROOT, "alice", &first)),
        Some(ErrorCode::CodeRejected)
    );
    assert_eq!(h.show("alice").emergency_codes_remaining, 9);
    assert!(h.login(ROOT, "alice", &enrolled.codes[1]).is_ok());
}

#[test]
fn sha256_and_sha512_profiles_and_the_otpauth_uri() {
    let h = harness();
    let mut request = enroll_request("bob");
    request.algorithm = Algorithm::Sha512;
    request.digits = 7;
    request.period = 60;
    request.issuer = Some("ACME Corp".into());
    let reply = h.call(ROOT, Request::Enroll(request)).unwrap();
    let Reply::Enrolled(reply) = reply else {
        panic!("unexpected reply");
    };
    let uri = reply.otpauth_uri.expose();
    assert!(uri.starts_with("otpauth://totp/ACME%20Corp:bob%40testhost?secret="));
    assert!(uri.ends_with("&issuer=ACME%20Corp&algorithm=SHA512&digits=7&period=60"));
    assert!(uri.contains(reply.secret.expose()));
    let enrolled = h
        .enroll(
            ROOT,
            EnrollRequest {
                algorithm: Algorithm::Sha256,
                digits: 8,
                replace: true,
                ..enroll_request("bob")
            },
        )
        .unwrap();
    assert!(h.verify(ROOT, "bob", &h.code(&enrolled, 0)).is_ok());
}

#[test]
fn a_last_step_left_in_the_future_by_the_clock_is_reported_and_cleared_by_unlock() {
    let h = harness();
    let enrolled = h.active_alice();
    // The clock jumps a day ahead, a code of that time is used, and the clock is corrected.
    h.clock.advance(24 * 60 * 60);
    assert!(h.login(ROOT, "alice", &h.code(&enrolled, 0)).is_ok());
    h.clock.advance(-24 * 60 * 60);
    // Every code of real time is now a "replay"...
    assert_eq!(
        code_of(h.login(ROOT, "alice", &h.code(&enrolled, 1))),
        Some(ErrorCode::CodeRejected)
    );
    // ...which status reports...
    let Ok(Reply::Status(status)) = h.call(ROOT, Request::Status {}) else {
        panic!("status failed");
    };
    assert_eq!(status.profiles.map(|p| p.clock_ahead), Some(1));
    // ...and unlock clears, without reopening a code of real time already used.
    h.call(
        ROOT,
        Request::Unlock {
            account: "alice".into(),
        },
    )
    .unwrap();
    for offset in [0, 1] {
        assert_eq!(
            code_of(h.login(ROOT, "alice", &h.code(&enrolled, offset))),
            Some(ErrorCode::CodeRejected),
            "steps up to now + the window stay used"
        );
    }
    h.clock.advance(60);
    assert!(h.login(ROOT, "alice", &h.code(&enrolled, 0)).is_ok());
    let Ok(Reply::Status(status)) = h.call(ROOT, Request::Status {}) else {
        panic!("status failed");
    };
    assert_eq!(status.profiles.map(|p| p.clock_ahead), Some(0));
}

#[test]
fn unlock_never_reopens_a_code_of_a_step_ahead_within_the_window() {
    let h = harness();
    let enrolled = h.active_alice();
    // The code of the next step is accepted (clock skew within the window) ...
    let ahead = h.code(&enrolled, 1);
    assert!(h.login(ROOT, "alice", &ahead).is_ok());
    h.call(
        ROOT,
        Request::Unlock {
            account: "alice".into(),
        },
    )
    .unwrap();
    // ... and stays used after an unlock.
    assert_eq!(
        code_of(h.login(ROOT, "alice", &ahead)),
        Some(ErrorCode::CodeRejected)
    );
}
