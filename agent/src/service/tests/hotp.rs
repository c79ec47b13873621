//! HOTP profiles: enrollment from a counter, the look-ahead, the counter moved past each
//! accepted code, and everything else (emergency codes, lockout, probe, unlock, import) as
//! for TOTP.

use super::*;
use crate::config::MAX_HOTP_WINDOW;
use pam_totp_proto::validate::MAX_COUNTER;

/// RFC 4226 Appendix D: the secret "12345678901234567890", counters 0 to 9.
const RFC_SECRET: &[u8] = b"12345678901234567890";
const RFC_CODES: [&str; 10] = [
    "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871",
    "520489",
];

fn hotp_request(account: &str, counter: Option<u64>) -> EnrollRequest {
    EnrollRequest {
        kind: ProfileKind::Hotp,
        counter,
        ..enroll_request(account)
    }
}

/// The code of `counter` for an enrolled profile (the period plays no part).
fn hotp_code(enrolled: &Enrolled, counter: i64) -> String {
    let params = TotpParams {
        algorithm: enrolled.profile.algorithm,
        digits: enrolled.profile.digits,
        period: 1,
    };
    totp::code_for_step(&enrolled.secret, params, counter).to_string()
}

fn enroll_uri(h: &Harness, request: EnrollRequest) -> (String, ProfileView) {
    match h.call(ROOT, Request::Enroll(request)) {
        Ok(Reply::Enrolled(reply)) => (reply.otpauth_uri.expose().to_owned(), reply.profile),
        other => panic!("unexpected {other:?}"),
    }
}

fn hotp_import(account: &str, counter: Option<u64>) -> pam_totp_proto::ImportProfile {
    pam_totp_proto::ImportProfile {
        kind: ProfileKind::Hotp,
        counter,
        window: None,
        ..import_profile(account, RFC_SECRET)
    }
}

#[test]
fn an_hotp_enrollment_starts_at_its_counter_and_verify_activates_it() {
    let h = harness();
    let (uri, profile) = enroll_uri(&h, hotp_request("bob", Some(5)));
    assert!(
        uri.starts_with("otpauth://hotp/testhost:bob%40testhost?secret="),
        "{uri}"
    );
    assert!(
        uri.ends_with("&issuer=testhost&algorithm=SHA1&digits=6&counter=5"),
        "{uri}"
    );
    assert!(!uri.contains("period"), "{uri}");
    assert_eq!(profile.kind, ProfileKind::Hotp);
    assert_eq!((profile.counter, profile.period), (Some(5), None));
    assert!(!profile.verified);

    let enrolled = h.enroll(ROOT, hotp_request("alice", Some(5))).unwrap();
    // Pending: even the right code cannot log in.
    assert_eq!(
        code_of(h.login(ROOT, "alice", &hotp_code(&enrolled, 5))),
        Some(ErrorCode::NotFound)
    );
    // A code behind the counter does not verify; counter 5's does, and moves it to 6.
    assert_eq!(
        code_of(h.verify(ROOT, "alice", &hotp_code(&enrolled, 4))),
        Some(ErrorCode::CodeRejected)
    );
    let verified = h.verify(ROOT, "alice", &hotp_code(&enrolled, 5)).unwrap();
    assert!(matches!(verified, Reply::Profile(ref v) if v.verified && v.counter == Some(6)));
    // A TOTP code of the same secret means nothing to it.
    assert_eq!(
        code_of(h.login(ROOT, "alice", &h.code(&enrolled_as_totp(&enrolled), 0))),
        Some(ErrorCode::CodeRejected)
    );
}

/// The same secret seen as a TOTP profile, for computing its time-based codes.
fn enrolled_as_totp(enrolled: &Enrolled) -> Enrolled {
    let mut profile = enrolled.profile.clone();
    profile.period = Some(30);
    Enrolled {
        secret: enrolled.secret.clone(),
        codes: Vec::new(),
        profile,
    }
}

#[test]
fn each_code_works_once_within_the_look_ahead_and_moves_the_counter_past_it() {
    let h = harness();
    let enrolled = h.enroll(ROOT, hotp_request("alice", None)).unwrap();
    assert_eq!(enrolled.profile.counter, Some(0));
    h.verify(ROOT, "alice", &hotp_code(&enrolled, 0)).unwrap();
    let authenticated = |code: &str| h.login(ROOT, "alice", code);
    assert!(matches!(
        authenticated(&hotp_code(&enrolled, 1)),
        Ok(Reply::Authenticated(AuthReply {
            method: AuthMethod::Totp
        }))
    ));
    assert_eq!(h.show("alice").counter, Some(2));
    // The same code again is behind the counter now: simply wrong (and counted).
    assert_eq!(
        code_of(authenticated(&hotp_code(&enrolled, 1))),
        Some(ErrorCode::CodeRejected)
    );
    assert_eq!(h.show("alice").failed_attempts, 1);
    // Presses never used: a code 3 ahead of the next one works and skips them ...
    assert!(authenticated(&hotp_code(&enrolled, 5)).is_ok());
    assert_eq!(h.show("alice").counter, Some(6));
    assert_eq!(h.show("alice").failed_attempts, 0);
    // ... and the skipped ones are behind the counter for good.
    assert_eq!(
        code_of(authenticated(&hotp_code(&enrolled, 3))),
        Some(ErrorCode::CodeRejected)
    );
    // The look-ahead is 10 (the default): 6 + 10 is the farthest code accepted.
    assert_eq!(
        code_of(authenticated(&hotp_code(&enrolled, 17))),
        Some(ErrorCode::CodeRejected)
    );
    assert!(authenticated(&hotp_code(&enrolled, 16)).is_ok());
    assert_eq!(h.show("alice").counter, Some(17));
    assert_eq!(
        h.audit_results("alice"),
        [
            "enroll:enrolled",
            "verify:success",
            "authenticate:success",
            "authenticate:wrong_code",
            "authenticate:success",
            "authenticate:wrong_code",
            "authenticate:wrong_code",
            "authenticate:success",
        ]
    );
}

#[test]
fn the_look_ahead_is_the_configured_hotp_window() {
    let h = harness_with(Config {
        hotp_window: 2,
        ..Config::default()
    });
    let enrolled = h.enroll(ROOT, hotp_request("alice", Some(0))).unwrap();
    h.verify(ROOT, "alice", &hotp_code(&enrolled, 0)).unwrap();
    assert_eq!(
        code_of(h.login(ROOT, "alice", &hotp_code(&enrolled, 4))),
        Some(ErrorCode::CodeRejected)
    );
    assert!(h.login(ROOT, "alice", &hotp_code(&enrolled, 3)).is_ok());
    // Without a look-ahead only the next code works.
    let h = harness_with(Config {
        hotp_window: 0,
        ..Config::default()
    });
    let enrolled = h.enroll(ROOT, hotp_request("alice", Some(7))).unwrap();
    assert_eq!(
        code_of(h.verify(ROOT, "alice", &hotp_code(&enrolled, 8))),
        Some(ErrorCode::CodeRejected)
    );
    assert!(h.verify(ROOT, "alice", &hotp_code(&enrolled, 7)).is_ok());
    assert!(Config::parse(&format!("hotp_window = {}", MAX_HOTP_WINDOW + 1)).is_err());
}

#[test]
fn counters_are_refused_for_totp_and_beyond_the_bound() {
    let h = harness();
    let cases = [
        (
            EnrollRequest {
                counter: Some(3),
                ..enroll_request("alice")
            },
            "counter",
        ),
        (hotp_request("alice", Some(MAX_COUNTER + 1)), "counter"),
    ];
    for (request, field) in cases {
        let error = h.enroll(ROOT, request).err().unwrap();
        assert_eq!(error.code, ErrorCode::InvalidArgument);
        assert_eq!(error.target.as_deref(), Some(field));
    }
    assert!(h
        .enroll(ROOT, hotp_request("alice", Some(MAX_COUNTER)))
        .is_ok());
}

#[test]
fn emergency_codes_lockout_and_probe_work_as_for_totp() {
    let h = harness();
    let enrolled = h
        .enroll(
            ROOT,
            EnrollRequest {
                digits: 8,
                ..hotp_request("alice", Some(100))
            },
        )
        .unwrap();
    h.verify(ROOT, "alice", &hotp_code(&enrolled, 100)).unwrap();
    // The module asks for as many digits as the token shows.
    match h.call(ROOT, probe("alice", None)) {
        Ok(Reply::Probe(ProbeReply {
            needs_code: true,
            digits: 8,
            ..
        })) => {}
        other => panic!("unexpected {other:?}"),
    }
    // An emergency code works once, and leaves the counter alone.
    assert!(matches!(
        h.login(ROOT, "alice", &enrolled.codes[0]),
        Ok(Reply::Authenticated(AuthReply {
            method: AuthMethod::EmergencyCode
        }))
    ));
    assert_eq!(h.show("alice").counter, Some(101));
    assert_eq!(
        code_of(h.login(ROOT, "alice", &enrolled.codes[0])),
        Some(ErrorCode::CodeRejected)
    );
    // Wrong codes from one source block it, even for the right code.
    for _ in 0..4 {
        assert_eq!(
            code_of(h.login(ROOT, "alice", "00000000")),
            Some(ErrorCode::CodeRejected)
        );
    }
    assert_eq!(
        code_of(h.login(ROOT, "alice", &hotp_code(&enrolled, 101))),
        Some(ErrorCode::RateLimited)
    );
    // Unlock clears the block and keeps the counter: no code used works again.
    h.call(
        ROOT,
        Request::Unlock {
            account: "alice".into(),
        },
    )
    .unwrap();
    assert_eq!(h.show("alice").counter, Some(101));
    assert!(h.login(ROOT, "alice", &hotp_code(&enrolled, 101)).is_ok());
}

#[test]
fn a_large_counter_is_never_counted_as_a_clock_ahead_and_unlock_keeps_it() {
    let h = harness();
    let far = 1u64 << 40;
    let enrolled = h.enroll(ROOT, hotp_request("alice", Some(far))).unwrap();
    h.verify(ROOT, "alice", &hotp_code(&enrolled, 1 << 40))
        .unwrap();
    match h.call(ROOT, Request::Status {}) {
        Ok(Reply::Status(status)) => {
            let counts = status.profiles.unwrap();
            assert_eq!((counts.active, counts.clock_ahead), (1, 0));
        }
        other => panic!("unexpected {other:?}"),
    }
    h.call(
        ROOT,
        Request::Unlock {
            account: "alice".into(),
        },
    )
    .unwrap();
    assert_eq!(h.show("alice").counter, Some(far + 1));
}

#[test]
fn imported_hotp_profiles_continue_from_their_counter() {
    let h = harness();
    let outcomes = import(
        &h,
        ROOT,
        vec![hotp_import("alice", Some(3)), hotp_import("bob", None)],
        false,
    );
    assert_eq!(outcomes, [None, None]);
    let shown = h.show("alice");
    assert_eq!(shown.kind, ProfileKind::Hotp);
    assert!(shown.verified);
    assert_eq!((shown.counter, shown.period), (Some(3), None));
    assert_eq!(h.show("bob").counter, Some(0));
    // RFC 4226's codes: counter 2 is behind the import's counter, 3 works once.
    assert_eq!(
        code_of(h.login(ROOT, "alice", RFC_CODES[2])),
        Some(ErrorCode::CodeRejected)
    );
    assert!(h.login(ROOT, "alice", RFC_CODES[3]).is_ok());
    assert_eq!(
        code_of(h.login(ROOT, "alice", RFC_CODES[3])),
        Some(ErrorCode::CodeRejected)
    );
    assert!(h.login(ROOT, "alice", RFC_CODES[9]).is_ok());
    assert!(h.login(ROOT, "bob", RFC_CODES[0]).is_ok());
    // A TOTP window or a counter where it makes no sense names the field.
    let with_window = pam_totp_proto::ImportProfile {
        window: Some(1),
        ..hotp_import("operator", Some(0))
    };
    let totp_with_counter = pam_totp_proto::ImportProfile {
        counter: Some(4),
        ..import_profile("operator", RFC_SECRET)
    };
    for (profile, field) in [(with_window, "window"), (totp_with_counter, "counter")] {
        match h.call(
            ROOT,
            Request::Import {
                profiles: vec![profile],
                replace: false,
            },
        ) {
            Ok(Reply::Imported(outcomes)) => {
                let error = outcomes[0].error.as_ref().unwrap();
                assert_eq!(error.target.as_deref(), Some(field), "{error:?}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn an_owner_replaces_a_totp_profile_with_an_hotp_one_with_a_code() {
    let h = harness();
    let totp = h.active_alice();
    let replaced = h
        .enroll(
            ALICE,
            EnrollRequest {
                replace: true,
                code: Some(SecretString::new(h.code(&totp, 0))),
                ..hotp_request("alice", Some(2))
            },
        )
        .unwrap();
    assert_eq!(replaced.profile.kind, ProfileKind::Hotp);
    assert!(h.verify(ALICE, "alice", &hotp_code(&replaced, 2)).is_ok());
    // And back, proving the HOTP profile with its next code.
    let back = h
        .enroll(
            ALICE,
            EnrollRequest {
                replace: true,
                code: Some(SecretString::new(hotp_code(&replaced, 3))),
                ..enroll_request("alice")
            },
        )
        .unwrap();
    assert_eq!(
        (back.profile.kind, back.profile.counter),
        (ProfileKind::Totp, None)
    );
}
