//! Service rules on a real SQLite file, a fake NSS directory and a manual clock: the harness
//! here, the rules by topic in the files beside it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::clock::ManualClock;
use crate::config::LockoutPolicy;
use crate::store::SqliteStore;
use crate::totp::{self, TotpParams};
use pam_totp_proto::{Algorithm, ProfileKind};
use pam_totp_proto::{AuthMethod, EnrollRequest, ErrorCode, LogPage, ProbeReply, SecretString};
use std::collections::HashMap;

mod code_checks;
mod grace;
mod hotp;
mod lockout;
mod names;
mod reports;
mod who_may;

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
        kind: ProfileKind::Totp,
        counter: None,
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
            period: enrolled.profile.period.unwrap(),
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

fn import_profile(account: &str, secret: &[u8]) -> pam_totp_proto::ImportProfile {
    pam_totp_proto::ImportProfile {
        account: account.into(),
        kind: ProfileKind::Totp,
        counter: None,
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
