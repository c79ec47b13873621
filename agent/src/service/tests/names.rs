//! Which account a request acts on, and NSS lookups kept out of the write lock.

use super::*;

#[test]
fn every_name_of_an_enrolled_uid_is_held_to_its_profile() {
    let h = harness_on(directory_with_aliases(), Config::default());
    let enrolled = h.active_alice();
    for name in ["alicealias", "ALICE"] {
        // Not "not enrolled" (which nullok lets through): the alias needs alice's code.
        let Ok(Reply::Probe(reply)) = h.call(ROOT, probe(name, None)) else {
            panic!("probe {name} failed");
        };
        assert!(reply.needs_code, "{name}");
        assert_eq!(
            code_of(h.call(ROOT, authenticate(name, None, "000000"))),
            Some(ErrorCode::CodeRejected),
            "{name}"
        );
    }
    // The module's resolved uid is trusted from root: any name with alice's uid is alice.
    let code = h.code(&enrolled, 0);
    assert!(h
        .call(ROOT, authenticate("whatever", Some(1000), &code))
        .is_ok());
    // ... and that code is used up for every name of the account.
    for name in ["alice", "alicealias"] {
        assert_eq!(
            code_of(h.call(ROOT, authenticate(name, None, &code))),
            Some(ErrorCode::CodeRejected)
        );
    }
    // The audit trail names the profile's account.
    assert!(h.audit_results("alicealias").is_empty());
    // Management through an alias acts on the same profile; enrolling an alias is enrolling
    // the account (no second profile beside it).
    assert_eq!(
        code_of(h.enroll(ROOT, enroll_request("alicealias"))),
        Some(ErrorCode::AlreadyExists)
    );
    let Ok(Reply::Profile(view)) = h.call(
        ALICE,
        Request::Show {
            account: "alicealias".into(),
        },
    ) else {
        panic!("show through the alias failed");
    };
    assert_eq!(view.account, "alice");
}

#[test]
fn a_name_nss_does_not_know_is_refused_at_login_never_not_enrolled() {
    let h = harness();
    h.active_alice();
    for request in [probe("ghost", None), authenticate("ghost", None, "123456")] {
        let error = h.call(ROOT, request).unwrap_err();
        assert_eq!(error.code, ErrorCode::PermissionDenied);
        assert_eq!(error.target.as_deref(), Some("account"));
    }
    assert_eq!(h.audit_results("ghost"), ["authenticate:unknown_account"]);
}

#[test]
fn a_uid_claimed_by_a_non_root_caller_is_ignored() {
    let h = harness();
    let enrolled = h.active_alice();
    // Bob claims alice's uid for his own name: still bob, who is not enrolled.
    assert_eq!(
        code_of(h.call(BOB, authenticate("bob", Some(1000), &h.code(&enrolled, 0)))),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code_of(h.call(
            BOB,
            authenticate("alice", Some(1001), &h.code(&enrolled, 0))
        )),
        Some(ErrorCode::PermissionDenied)
    );
    // Alice's code was not consumed by either.
    assert!(h.login(ROOT, "alice", &h.code(&enrolled, 0)).is_ok());
}

#[test]
fn context_items_longer_than_the_limit_are_refused_naming_the_item() {
    let h = harness();
    let enrolled = h.active_alice();
    let long = "x".repeat(validate::MAX_CONTEXT_ITEM_BYTES + 1);
    for field in ["service", "rhost", "tty", "ruser"] {
        let mut context = LoginContext::default();
        *match field {
            "service" => &mut context.service,
            "rhost" => &mut context.rhost,
            "tty" => &mut context.tty,
            _ => &mut context.ruser,
        } = Some(long.clone());
        let request = Request::Authenticate {
            account: "alice".into(),
            uid: None,
            code: h.code(&enrolled, 0).as_str().into(),
            context,
        };
        let error = h.call(ALICE, request).unwrap_err();
        assert_eq!(
            (error.code, error.target.as_deref()),
            (ErrorCode::InvalidArgument, Some(field))
        );
    }
}

#[test]
fn a_slow_nss_lookup_for_one_user_never_holds_up_roots_logins() {
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let directory = SlowDirectory {
        inner: directory(1000),
        slow_uid: 1001,
        entered: std::sync::Mutex::new(Some(entered_tx)),
        release: std::sync::Mutex::new(release_rx),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profiles.sqlite3");
    let clock = ManualClock::at(T0);
    let service = std::sync::Arc::new(Service::new(
        Box::new(SqliteStore::open(&path).unwrap()),
        Box::new(directory),
        Box::new(clock.clone()),
        Config {
            admin_group: Some("totpadm".into()),
            ..Config::default()
        },
        "testhost".into(),
    ));
    let Ok(Reply::Enrolled(enrolled)) =
        service.handle(ROOT, Request::Enroll(enroll_request("alice")))
    else {
        panic!("enroll failed");
    };
    let secret = base32::decode(
        base32::Alphabet::Rfc4648 { padding: false },
        enrolled.secret.expose(),
    )
    .unwrap();
    let code_at = |offset: i64| {
        let params = TotpParams {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
        };
        totp::code_for_step(&secret, params, totp::step_at(clock.now(), 30) + offset).to_string()
    };
    assert!(service
        .handle(
            ROOT,
            Request::Verify {
                account: "alice".into(),
                code: code_at(-1).as_str().into(),
            }
        )
        .is_ok());
    // Bob's request is stuck in its admin-group lookup...
    let bob = {
        let service = std::sync::Arc::clone(&service);
        std::thread::spawn(move || {
            service.handle(
                BOB,
                Request::Verify {
                    account: "bob".into(),
                    code: "123456".into(),
                },
            )
        })
    };
    entered.recv().unwrap();
    // ...while root's login goes through (it would wait forever if Bob's lookup ran under
    // the store's write lock).
    let (done_tx, done) = std::sync::mpsc::channel();
    {
        let service = std::sync::Arc::clone(&service);
        let code = code_at(0);
        std::thread::spawn(move || {
            let _ = done_tx.send(service.handle(ROOT, authenticate("alice", Some(1000), &code)));
        });
    }
    let login = done.recv_timeout(std::time::Duration::from_secs(10));
    release.send(()).unwrap();
    assert!(
        matches!(login, Ok(Ok(Reply::Authenticated(_)))),
        "root's login waited for another user's NSS lookup: {login:?}"
    );
    assert_eq!(
        code_of(bob.join().unwrap()),
        Some(ErrorCode::NotFound),
        "bob has no profile"
    );
}

/// A login's name is tried as it is first, and resolved only when it has no profile of its
/// own: an unenrolled name is still refused once, audited once, counted once.
#[test]
fn a_login_of_a_name_without_a_profile_is_decided_and_audited_once() {
    let h = harness();
    h.active_alice();
    assert_eq!(
        code_of(h.call(ROOT, authenticate("bob", None, "123456"))),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(h.audit_results("bob"), ["authenticate:not_enrolled"]);
    let Ok(Reply::Probe(reply)) = h.call(ROOT, probe("bob", None)) else {
        panic!("probe bob failed");
    };
    assert!(!reply.needs_code);
    // An enrolled name is held to its own profile, whatever other names share its uid.
    let Ok(Reply::Probe(reply)) = h.call(ROOT, probe("alice", Some(1000))) else {
        panic!("probe alice failed");
    };
    assert!(reply.needs_code);
}
