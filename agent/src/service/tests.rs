//! Service rules on a real SQLite file, a fake NSS directory and a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::clock::ManualClock;
use crate::config::LockoutPolicy;
use crate::store::SqliteStore;
use crate::totp::{self, TotpParams};
use pam_totp_proto::Algorithm;
use pam_totp_proto::{AuthMethod, EnrollRequest, ErrorCode, LogPage, ProbeReply, SecretString};
use std::collections::HashMap;

const ROOT: Peer = Peer { uid: 0, pid: 1 };
const ALICE: Peer = Peer { uid: 1000, pid: 2 };
const BOB: Peer = Peer { uid: 1001, pid: 3 };
const OPERATOR: Peer = Peer { uid: 1500, pid: 4 };
const T0: i64 = 1_800_000_015;

struct FakeDirectory {
    users: HashMap<&'static str, u32>,
    admins: Vec<u32>,
}

impl Directory for FakeDirectory {
    fn uid_of(&self, account: &str) -> Option<u32> {
        self.users.get(account).copied()
    }
    fn is_member(&self, uid: u32, group: &str) -> bool {
        group == "totpadm" && self.admins.contains(&uid)
    }
    fn name_of(&self, uid: u32) -> Option<String> {
        self.users
            .iter()
            .find(|(_, u)| **u == uid)
            .map(|(name, _)| (*name).to_owned())
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: ManualClock,
    service: Service,
}

fn directory(alice_uid: u32) -> FakeDirectory {
    FakeDirectory {
        users: HashMap::from([("alice", alice_uid), ("bob", 1001), ("operator", 1500)]),
        admins: vec![1500],
    }
}

fn service_on(path: &std::path::Path, clock: &ManualClock, config: Config, alice: u32) -> Service {
    Service::new(
        Box::new(SqliteStore::open(path).unwrap()),
        Box::new(directory(alice)),
        Box::new(clock.clone()),
        config,
        "testhost".into(),
    )
}

fn harness_with(config: Config) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profiles.sqlite3");
    let clock = ManualClock::at(T0);
    let service = service_on(&path, &clock, config, 1000);
    Harness {
        _dir: dir,
        path,
        clock,
        service,
    }
}

fn harness() -> Harness {
    harness_with(Config {
        admin_group: Some("totpadm".into()),
        ..Config::default()
    })
}

fn enroll_request(account: &str) -> EnrollRequest {
    EnrollRequest {
        account: account.into(),
        algorithm: Algorithm::Sha1,
        digits: 6,
        period: 30,
        issuer: None,
        comment: None,
        replace: false,
        code: None,
    }
}

struct Enrolled {
    secret: Vec<u8>,
    codes: Vec<String>,
    profile: ProfileView,
}

impl Harness {
    fn call(&self, peer: Peer, request: Request) -> Result<Reply, ApiError> {
        self.service.handle(peer, request)
    }

    fn enroll(&self, peer: Peer, request: EnrollRequest) -> Result<Enrolled, ApiError> {
        match self.call(peer, Request::Enroll(request))? {
            Reply::Enrolled(reply) => Ok(Enrolled {
                secret: base32::decode(
                    base32::Alphabet::Rfc4648 { padding: false },
                    reply.secret.expose(),
                )
                .unwrap(),
                codes: reply
                    .emergency_codes
                    .iter()
                    .map(|c| c.expose().to_owned())
                    .collect(),
                profile: reply.profile,
            }),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    fn code(&self, enrolled: &Enrolled, step_offset: i64) -> String {
        let params = TotpParams {
            algorithm: enrolled.profile.algorithm,
            digits: enrolled.profile.digits,
            period: enrolled.profile.period,
        };
        let step = totp::step_at(self.clock.now(), params.period) + step_offset;
        totp::code_for_step(&enrolled.secret, params, step).to_string()
    }

    fn login(&self, peer: Peer, account: &str, code: &str) -> Result<Reply, ApiError> {
        self.call(
            peer,
            Request::Authenticate {
                account: account.into(),
                uid: None,
                code: code.into(),
                context: LoginContext {
                    service: Some("sshd".into()),
                    rhost: Some("192.0.2.7".into()),
                    tty: Some("ssh".into()),
                    ruser: None,
                },
            },
        )
    }

    fn verify(&self, peer: Peer, account: &str, code: &str) -> Result<Reply, ApiError> {
        self.call(
            peer,
            Request::Verify {
                account: account.into(),
                code: code.into(),
            },
        )
    }

    fn show(&self, account: &str) -> ProfileView {
        match self.call(
            ROOT,
            Request::Show {
                account: account.into(),
            },
        ) {
            Ok(Reply::Profile(view)) => view,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// An enrolled and verified alice, with the verification on step -1.
    fn active_alice(&self) -> Enrolled {
        let enrolled = self.enroll(ROOT, enroll_request("alice")).unwrap();
        self.verify(ROOT, "alice", &self.code(&enrolled, -1))
            .unwrap();
        enrolled
    }

    /// `op:result` of the account's audit rows, oldest first, read through the store.
    fn audit_results(&self, account: &str) -> Vec<String> {
        let store = SqliteStore::open(&self.path).unwrap();
        let query = crate::store::AuditQuery {
            account: Some(account.to_owned()),
            since: None,
            before: None,
            limit: u32::MAX,
        };
        let mut rows = store.audit_log(&query).unwrap();
        rows.reverse();
        rows.iter()
            .map(|event| format!("{}:{}", event.op, event.result))
            .collect()
    }
}

fn code_of<T>(result: Result<T, ApiError>) -> Option<ErrorCode> {
    result.err().map(|e| e.code)
}

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

fn login_from(h: &Harness, peer: Peer, rhost: &str, code: &str) -> Result<Reply, ApiError> {
    h.call(
        peer,
        Request::Authenticate {
            account: "alice".into(),
            uid: None,
            code: code.into(),
            context: LoginContext {
                service: Some("sshd".into()),
                rhost: Some(rhost.into()),
                tty: Some("ssh".into()),
                ruser: None,
            },
        },
    )
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
    let h = harness_with(Config {
        lockout: LockoutPolicy {
            threshold: 6,
            source_threshold: 3,
            ..LockoutPolicy::default()
        },
        ..Config::default()
    });
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

fn probe_with_grace(h: &Harness, context: &LoginContext, grace: u32) -> bool {
    match h.call(
        ROOT,
        Request::Probe {
            account: "alice".into(),
            uid: None,
            context: context.clone(),
            grace: Some(grace),
        },
    ) {
        Ok(Reply::Probe(reply)) => reply.grace,
        other => panic!("unexpected {other:?}"),
    }
}

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

fn import_profile(account: &str, secret: &[u8]) -> pam_totp_proto::ImportProfile {
    pam_totp_proto::ImportProfile {
        account: account.into(),
        secret: crate::secret::to_base32(secret),
        algorithm: Algorithm::Sha1,
        digits: 6,
        period: 30,
        window: Some(3),
        emergency_codes: vec!["12345678".into(), "87654321".into()],
        comment: Some("from google-authenticator".into()),
    }
}

fn import(
    h: &Harness,
    peer: Peer,
    profiles: Vec<pam_totp_proto::ImportProfile>,
    replace: bool,
) -> Vec<Option<ErrorCode>> {
    match h.call(peer, Request::Import { profiles, replace }) {
        Ok(Reply::Imported(outcomes)) => outcomes
            .into_iter()
            .map(|o| o.error.map(|e| e.code))
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
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

// ---- Issue 10: names, slow NSS, grace, lockout escape, clock, floods ----

/// A directory with aliases: `alicealias` shares alice's uid; `ALICE` is what a
/// case-insensitive NSS source (SSSD, AD) resolves to the same account.
fn directory_with_aliases() -> FakeDirectory {
    let mut directory = directory(1000);
    directory.users.insert("alicealias", 1000);
    directory.users.insert("ALICE", 1000);
    directory
}

fn harness_on(directory: FakeDirectory, config: Config) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profiles.sqlite3");
    let clock = ManualClock::at(T0);
    let service = Service::new(
        Box::new(SqliteStore::open(&path).unwrap()),
        Box::new(directory),
        Box::new(clock.clone()),
        config,
        "testhost".into(),
    );
    Harness {
        _dir: dir,
        path,
        clock,
        service,
    }
}

fn authenticate(account: &str, uid: Option<u32>, code: &str) -> Request {
    Request::Authenticate {
        account: account.into(),
        uid,
        code: code.into(),
        context: LoginContext {
            service: Some("sshd".into()),
            rhost: Some("192.0.2.7".into()),
            tty: Some("ssh".into()),
            ruser: None,
        },
    }
}

fn probe(account: &str, uid: Option<u32>) -> Request {
    Request::Probe {
        account: account.into(),
        uid,
        context: LoginContext::default(),
        grace: None,
    }
}

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

/// A directory whose group lookups for one uid hang until released: a slow LDAP server.
struct SlowDirectory {
    inner: FakeDirectory,
    slow_uid: u32,
    entered: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Directory for SlowDirectory {
    fn uid_of(&self, account: &str) -> Option<u32> {
        self.inner.uid_of(account)
    }
    fn is_member(&self, uid: u32, group: &str) -> bool {
        if uid == self.slow_uid {
            if let Some(entered) = self.entered.lock().unwrap().take() {
                entered.send(()).unwrap();
            }
            let _ = self.release.lock().unwrap().recv();
        }
        self.inner.is_member(uid, group)
    }
    fn name_of(&self, uid: u32) -> Option<String> {
        self.inner.name_of(uid)
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

fn login_with(h: &Harness, peer: Peer, code: &str, context: &LoginContext) -> bool {
    h.call(
        peer,
        Request::Authenticate {
            account: "alice".into(),
            uid: None,
            code: code.into(),
            context: context.clone(),
        },
    )
    .is_ok()
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

#[test]
fn an_emergency_code_gets_the_owner_in_while_the_account_is_locked_elsewhere() {
    let h = harness_with(Config {
        lockout: LockoutPolicy {
            threshold: 6,
            source_threshold: 3,
            ..LockoutPolicy::default()
        },
        ..Config::default()
    });
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
