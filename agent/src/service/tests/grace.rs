//! grace=: only for what it promises.

use super::*;

#[test]
fn grace_applies_only_to_the_same_place_within_the_window() {
    let h = harness();
    let enrolled = h.active_alice();
    let ssh = LoginContext {
        service: Some("sshd".into()),
        rhost: Some("192.0.2.7".into()),
        tty: Some("ssh".into()),
        ruser: None,
    };
    // No code login yet (verify is not a login): no grace.
    assert!(!probe_with_grace(&h, &ssh, 300));
    h.login(ROOT, "alice", &h.code(&enrolled, 0)).unwrap();
    h.clock.advance(100);
    assert!(probe_with_grace(&h, &ssh, 300));
    assert!(!probe_with_grace(&h, &ssh, 100), "window is exclusive");
    for other in [
        LoginContext {
            rhost: Some("192.0.2.8".into()),
            ..ssh.clone()
        },
        LoginContext {
            tty: Some("/dev/pts/1".into()),
            ..ssh.clone()
        },
        LoginContext {
            service: Some("sudo".into()),
            ..ssh.clone()
        },
        LoginContext {
            rhost: None,
            ..ssh.clone()
        },
    ] {
        assert!(!probe_with_grace(&h, &other, 300), "{other:?}");
    }
    // Grace passes are audited, and do not extend the window.
    assert_eq!(
        h.audit_results("alice").last().map(String::as_str),
        Some("authenticate:grace")
    );
    h.clock.advance(250);
    assert!(!probe_with_grace(&h, &ssh, 300));
}

#[test]
fn no_grace_when_locked_disabled_or_replaced() {
    // An account lock (not just one blocked source) takes grace away.
    let h = harness_with(Config {
        lockout: LockoutPolicy {
            threshold: 5,
            ..LockoutPolicy::default()
        },
        ..Config::default()
    });
    let enrolled = h.active_alice();
    let sudo = LoginContext {
        service: Some("sudo".into()),
        tty: Some("/dev/pts/3".into()),
        ..LoginContext::default()
    };
    h.call(
        ROOT,
        Request::Authenticate {
            account: "alice".into(),
            uid: None,
            code: h.code(&enrolled, 0).as_str().into(),
            context: sudo.clone(),
        },
    )
    .unwrap();
    assert!(probe_with_grace(&h, &sudo, 60));
    h.call(
        ROOT,
        Request::Disable {
            account: "alice".into(),
        },
    )
    .unwrap();
    assert!(!probe_with_grace(&h, &sudo, 60));
    h.call(
        ROOT,
        Request::Enable {
            account: "alice".into(),
        },
    )
    .unwrap();
    for _ in 0..5 {
        let _ = h.login(ROOT, "alice", "000000");
    }
    assert!(!probe_with_grace(&h, &sudo, 60), "locked");
    h.call(
        ROOT,
        Request::Unlock {
            account: "alice".into(),
        },
    )
    .unwrap();
    assert!(probe_with_grace(&h, &sudo, 60));
    h.clock.advance(1);
    let mut replace = enroll_request("alice");
    replace.replace = true;
    h.enroll(ROOT, replace).unwrap();
    assert!(!probe_with_grace(&h, &sudo, 60), "replaced profile");
}

#[test]
fn grace_counts_only_root_callers_logins_keyed_by_ruser_and_never_placeless_ones() {
    let h = harness();
    let enrolled = h.active_alice();
    let su = LoginContext {
        service: Some("su".into()),
        rhost: None,
        tty: Some("/dev/pts/4".into()),
        ruser: Some("bob".into()),
    };
    // Alice's own client forges sshd's items: that login earns no grace for sshd.
    let forged = LoginContext {
        service: Some("sshd".into()),
        rhost: Some("203.0.113.5".into()),
        tty: Some("ssh".into()),
        ruser: None,
    };
    assert!(login_with(&h, ALICE, &h.code(&enrolled, 0), &forged));
    h.clock.advance(5);
    assert!(!probe_with_grace(&h, &forged, 300));
    // Earned by ruser bob through root; carol (same service and tty) gets none.
    assert!(login_with(&h, ROOT, &h.code(&enrolled, 1), &su));
    h.clock.advance(5);
    assert!(probe_with_grace(&h, &su, 300));
    let carol = LoginContext {
        ruser: Some("carol".into()),
        ..su.clone()
    };
    assert!(!probe_with_grace(&h, &carol, 300));
    // Neither tty nor remote host: nothing tells one such login from another.
    h.clock.advance(30);
    let placeless = LoginContext {
        service: Some("cron".into()),
        ..LoginContext::default()
    };
    assert!(login_with(&h, ROOT, &h.code(&enrolled, 1), &placeless));
    assert!(!probe_with_grace(&h, &placeless, 300));
}
