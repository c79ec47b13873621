//! Who may do what, bad input, imports.

use super::*;

#[test]
fn other_users_are_refused_even_with_a_valid_code() {
    let h = harness();
    let enrolled = h.active_alice();
    let code = h.code(&enrolled, 0);
    for request in [
        Request::Authenticate {
            account: "alice".into(),
            uid: None,
            code: code.as_str().into(),
            context: LoginContext::default(),
        },
        Request::Verify {
            account: "alice".into(),
            code: code.as_str().into(),
        },
        Request::Show {
            account: "alice".into(),
        },
        Request::Probe {
            account: "alice".into(),
            uid: None,
            context: LoginContext::default(),
            grace: None,
        },
        Request::List {
            after: None,
            limit: None,
        },
        Request::Disable {
            account: "alice".into(),
        },
        Request::Remove {
            account: "alice".into(),
            code: Some(code.as_str().into()),
        },
    ] {
        assert_eq!(
            code_of(h.call(BOB, request)),
            Some(ErrorCode::PermissionDenied)
        );
    }
    // The code was not consumed by bob's attempts: alice can still use it.
    assert!(h.login(ALICE, "alice", &code).is_ok());
    // The owner cannot administer herself.
    assert_eq!(
        code_of(h.call(
            ALICE,
            Request::Unlock {
                account: "alice".into()
            }
        )),
        Some(ErrorCode::PermissionDenied)
    );
    // A member of admin_group can.
    assert!(h
        .call(
            OPERATOR,
            Request::Disable {
                account: "alice".into()
            }
        )
        .is_ok());
    assert!(
        matches!(h.call(OPERATOR, Request::List { after: None, limit: None }), Ok(Reply::Profiles(ref l)) if l.len() == 1)
    );
}

#[test]
fn a_recycled_uid_does_not_inherit_the_profile() {
    let h = harness();
    h.active_alice();
    // NSS now maps "alice" to bob's uid (account deleted, name reused).
    let recycled = service_on(&h.path, &h.clock, Config::default(), 1001);
    assert_eq!(
        code_of(recycled.handle(
            BOB,
            Request::Show {
                account: "alice".into()
            }
        )),
        Some(ErrorCode::PermissionDenied)
    );
}

#[test]
fn self_enrollment_and_self_removal_rules() {
    let h = harness();
    let mine = h.enroll(ALICE, enroll_request("alice")).unwrap();
    assert_eq!(
        mine.profile.can,
        ["show", "verify", "enroll", "remove", "codes", "set"]
    );
    // Pending: may re-enroll with --replace and no code.
    let mut replace = enroll_request("alice");
    replace.replace = true;
    let mine = h.enroll(ALICE, replace.clone()).unwrap();
    assert_eq!(
        code_of(h.enroll(ALICE, enroll_request("alice"))),
        Some(ErrorCode::AlreadyExists)
    );
    h.verify(ALICE, "alice", &h.code(&mine, -1)).unwrap();
    // Active: replacing needs a code.
    assert_eq!(
        code_of(h.enroll(ALICE, replace.clone())),
        Some(ErrorCode::PermissionDenied)
    );
    replace.code = Some(h.code(&mine, 0).as_str().into());
    let replaced = h.enroll(ALICE, replace).unwrap();
    assert_ne!(replaced.profile.id, mine.profile.id);
    assert_ne!(
        replaced.profile.sha_fingerprint,
        mine.profile.sha_fingerprint
    );
    // Removal needs a code too; a wrong one counts as a failure.
    let remove = |code: Option<&str>| Request::Remove {
        account: "alice".into(),
        code: code.map(SecretString::from),
    };
    assert_eq!(
        code_of(h.call(ALICE, remove(None))),
        Some(ErrorCode::PermissionDenied)
    );
    assert_eq!(
        code_of(h.call(ALICE, remove(Some("123456")))),
        Some(ErrorCode::CodeRejected)
    );
    assert_eq!(h.show("alice").failed_attempts, 1);
    let code = h.code(&replaced, 0);
    assert!(matches!(
        h.call(ALICE, remove(Some(&code))),
        Ok(Reply::Removed { .. })
    ));
    assert_eq!(
        code_of(h.call(
            ROOT,
            Request::Show {
                account: "alice".into()
            }
        )),
        Some(ErrorCode::NotFound)
    );
}

#[test]
fn self_enrollment_can_be_switched_off() {
    let h = harness_with(Config {
        self_enroll: false,
        ..Config::default()
    });
    assert_eq!(
        code_of(h.enroll(ALICE, enroll_request("alice"))),
        Some(ErrorCode::PermissionDenied)
    );
    assert_eq!(
        code_of(h.enroll(BOB, enroll_request("alice"))),
        Some(ErrorCode::PermissionDenied)
    );
    assert!(h.enroll(ROOT, enroll_request("alice")).is_ok());
}

#[test]
fn disabled_profiles_do_not_log_in_and_probe_says_so() {
    let h = harness();
    let enrolled = h.active_alice();
    let probe = || {
        h.call(
            ROOT,
            Request::Probe {
                account: "alice".into(),
                uid: None,
                context: LoginContext::default(),
                grace: None,
            },
        )
    };
    assert!(matches!(
        probe(),
        Ok(Reply::Probe(ProbeReply {
            needs_code: true,
            digits: 6,
            grace: false
        }))
    ));
    h.call(
        ROOT,
        Request::Disable {
            account: "alice".into(),
        },
    )
    .unwrap();
    assert!(matches!(
        probe(),
        Ok(Reply::Probe(ProbeReply {
            needs_code: false,
            ..
        }))
    ));
    assert_eq!(
        code_of(h.login(ROOT, "alice", &h.code(&enrolled, 0))),
        Some(ErrorCode::FailedPrecondition)
    );
    h.call(
        ROOT,
        Request::Enable {
            account: "alice".into(),
        },
    )
    .unwrap();
    assert!(h.login(ROOT, "alice", &h.code(&enrolled, 0)).is_ok());
}

#[test]
fn bad_input_names_the_field_and_stores_nothing() {
    let h = harness();
    let cases: Vec<(EnrollRequest, &str)> = vec![
        (
            EnrollRequest {
                digits: 9,
                ..enroll_request("alice")
            },
            "digits",
        ),
        (
            EnrollRequest {
                digits: 5,
                ..enroll_request("alice")
            },
            "digits",
        ),
        (
            EnrollRequest {
                period: 0,
                ..enroll_request("alice")
            },
            "period",
        ),
        (
            EnrollRequest {
                comment: Some("x".repeat(257)),
                ..enroll_request("alice")
            },
            "comment",
        ),
        (enroll_request("al\u{1b}ice"), "account"),
        (enroll_request(&"a".repeat(300)), "account"),
        (enroll_request("nosuchuser"), "account"),
    ];
    for (request, field) in cases {
        let error = h.enroll(ROOT, request).err().unwrap();
        assert_eq!(error.target.as_deref(), Some(field));
    }
    assert!(
        matches!(h.call(ROOT, Request::List { after: None, limit: None }), Ok(Reply::Profiles(ref l)) if l.is_empty())
    );
    h.active_alice();
    let error = h.login(ROOT, "alice", "12ab56").unwrap_err();
    assert_eq!(
        (error.code, error.target.as_deref()),
        (ErrorCode::InvalidArgument, Some("code"))
    );
    assert_eq!(h.show("alice").failed_attempts, 0);
}

#[test]
fn comments_and_regenerated_codes() {
    let h = harness();
    let enrolled = h.active_alice();
    let set = h
        .call(
            ALICE,
            Request::SetComment {
                account: "alice".into(),
                comment: "phone".into(),
            },
        )
        .unwrap();
    assert!(matches!(set, Reply::Profile(ref v) if v.comment.as_deref() == Some("phone")));
    let regenerate = |code: Option<&str>| Request::RegenerateCodes {
        account: "alice".into(),
        code: code.map(SecretString::from),
    };
    assert_eq!(
        code_of(h.call(ALICE, regenerate(None))),
        Some(ErrorCode::PermissionDenied)
    );
    let code = h.code(&enrolled, 0);
    let Ok(Reply::Codes(codes)) = h.call(ALICE, regenerate(Some(&code))) else {
        panic!("regenerate failed");
    };
    assert_eq!(codes.emergency_codes.len(), 10);
    // The old codes are gone, the new ones work.
    assert!(h.login(ROOT, "alice", &enrolled.codes[0]).is_err());
    assert!(h
        .login(ROOT, "alice", codes.emergency_codes[0].expose())
        .is_ok());
}

#[test]
fn imports_are_active_at_once_with_their_window_and_codes() {
    let h = harness();
    let secret = b"imported-secret-0123".to_vec();
    let bad_secret = pam_totp_proto::ImportProfile {
        secret: "not base32!".into(),
        ..import_profile("bob", &secret)
    };
    let outcomes = import(
        &h,
        ROOT,
        vec![
            import_profile("alice", &secret),
            bad_secret,
            import_profile("nosuchuser", &secret),
        ],
        false,
    );
    assert_eq!(
        outcomes,
        [
            None,
            Some(ErrorCode::InvalidArgument),
            Some(ErrorCode::NotFound)
        ]
    );
    let view = h.show("alice");
    assert!(view.verified && view.enabled);
    assert_eq!(view.emergency_codes_remaining, 2);
    assert_eq!(view.comment.as_deref(), Some("from google-authenticator"));
    // The imported window (3 steps) accepts a code two steps ahead; the default would not.
    let params = TotpParams {
        algorithm: Algorithm::Sha1,
        digits: 6,
        period: 30,
    };
    let ahead = totp::code_for_step(&secret, params, totp::step_at(h.clock.now(), 30) + 2);
    assert!(h.login(ROOT, "alice", &ahead).is_ok());
    assert!(h.login(ROOT, "alice", "87654321").is_ok());
    assert_eq!(h.show("alice").emergency_codes_remaining, 1);
    // Again without --replace: kept, and said so.
    assert_eq!(
        import(&h, ROOT, vec![import_profile("alice", &secret)], false),
        [Some(ErrorCode::AlreadyExists)]
    );
    assert_eq!(h.audit_results("alice")[0], "import:imported");
}

#[test]
fn who_may_import() {
    let h = harness();
    let secret = b"imported-secret-0123".to_vec();
    // Another user's account: refused; one's own: allowed.
    assert_eq!(
        import(&h, BOB, vec![import_profile("alice", &secret)], false),
        [Some(ErrorCode::PermissionDenied)]
    );
    assert_eq!(
        import(&h, ALICE, vec![import_profile("alice", &secret)], false),
        [None]
    );
    // An owner cannot replace an active profile by import.
    assert_eq!(
        import(&h, ALICE, vec![import_profile("alice", &secret)], true),
        [Some(ErrorCode::PermissionDenied)]
    );
    assert_eq!(
        import(&h, ROOT, vec![import_profile("alice", &secret)], true),
        [None]
    );
}
