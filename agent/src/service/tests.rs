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

    fn audit_results(&self, account: &str) -> Vec<String> {
        let connection = rusqlite::Connection::open(&self.path).unwrap();
        let mut statement = connection
            .prepare("SELECT op || ':' || result FROM audit WHERE account = ?1 ORDER BY id")
            .unwrap();
        statement
            .query_map([account], |row| row.get(0))
            .unwrap()
            .collect::<Result<Vec<String>, _>>()
            .unwrap()
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
