//! The agent's server over a real Unix socket in a temp dir, driven by the shared client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pam_totp_agent::clock::SystemClock;
use pam_totp_agent::config::Config;
use pam_totp_agent::directory::{Directory, Nss};
use pam_totp_agent::server::{serve, Limits};
use pam_totp_agent::service::Service;
use pam_totp_agent::store::SqliteStore;
use pam_totp_agent::totp::{self, TotpParams};
use pam_totp_proto::frame::{read_frame, write_frame, MAX_FRAME_LEN};
use pam_totp_proto::{
    Algorithm, Client, ClientError, EnrollRequest, ErrorCode, LoginContext, Reply, Request,
};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct Agent {
    dir: tempfile::TempDir,
    shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Agent {
    fn start_in(dir: tempfile::TempDir) -> Self {
        Self::start_in_with(dir, Duration::from_millis(500))
    }

    fn start_in_with(dir: tempfile::TempDir, io_timeout: Duration) -> Self {
        Self::start_with(dir, io_timeout, Box::new(Nss))
    }

    fn start_with(
        dir: tempfile::TempDir,
        io_timeout: Duration,
        directory: Box<dyn Directory>,
    ) -> Self {
        let socket = dir.path().join("agent.sock");
        let _ = std::fs::remove_file(&socket);
        let store = SqliteStore::open(&dir.path().join("profiles.sqlite3")).unwrap();
        let service = Service::new(
            Box::new(store),
            directory,
            Box::new(SystemClock),
            Config::default(),
            "testhost".into(),
        );
        let listener = UnixListener::bind(&socket).unwrap();
        let shutdown = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&shutdown);
        // The racing test opens 32 connections at once, as whatever uid runs the tests.
        let limits = Limits {
            max_connections: 64,
            max_per_user: 64,
            io_timeout,
            workers: 8,
        };
        let thread = std::thread::spawn(move || {
            serve(listener, Arc::new(service), &flag, limits).unwrap();
        });
        Self {
            dir,
            shutdown,
            thread: Some(thread),
        }
    }

    fn start() -> Self {
        Self::start_in(tempfile::tempdir().unwrap())
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    fn client(&self) -> Client {
        Client::new(self.socket(), Duration::from_secs(5))
    }

    fn stop(mut self) -> tempfile::TempDir {
        self.halt();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    fn halt(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.halt();
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Enrolls `account` (replacing any profile) and returns the decoded secret. First waits out
/// the last two seconds of a time step, so the codes a test derives stay in the window.
fn enroll(client: &Client, account: &str) -> Vec<u8> {
    while now().rem_euclid(30) >= 28 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let reply = client
        .call(Request::Enroll(EnrollRequest {
            account: account.into(),
            kind: Default::default(),
            counter: None,
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
            issuer: None,
            comment: None,
            replace: true,
            code: None,
        }))
        .unwrap();
    let Reply::Enrolled(reply) = reply else {
        panic!("unexpected {reply:?}");
    };
    base32::decode(
        base32::Alphabet::Rfc4648 { padding: false },
        reply.secret.expose(),
    )
    .unwrap()
}

fn code(secret: &[u8], offset: i64) -> String {
    let params = TotpParams {
        algorithm: Algorithm::Sha1,
        digits: 6,
        period: 30,
    };
    totp::code_for_step(secret, params, totp::step_at(now(), 30) + offset).to_string()
}

fn login(client: &Client, account: &str, code: &str) -> Result<Reply, ClientError> {
    client.call(Request::Authenticate {
        account: account.into(),
        uid: None,
        code: code.into(),
        context: LoginContext::default(),
    })
}

/// The account of the uid running the test: the agent authorizes it as the owner.
fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name
}

fn raw_exchange(socket: &Path, bytes: &[u8]) -> Vec<u8> {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

#[test]
fn concurrent_logins_racing_on_one_code_let_exactly_one_through() {
    let agent = Agent::start();
    let account = me();
    let secret = enroll(&agent.client(), &account);
    assert!(agent
        .client()
        .call(Request::Verify {
            account: account.clone(),
            code: code(&secret, -1).as_str().into(),
        })
        .is_ok());
    let shared = code(&secret, 0);
    let racers = 32;
    let barrier = Arc::new(Barrier::new(racers));
    let handles: Vec<_> = (0..racers)
        .map(|_| {
            let (client, account, shared, barrier) = (
                agent.client(),
                account.clone(),
                shared.clone(),
                Arc::clone(&barrier),
            );
            std::thread::spawn(move || {
                barrier.wait();
                login(&client, &account, &shared)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let passed = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(passed, 1, "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| e.code() == ErrorCode::CodeRejected));
}

#[test]
fn hostile_bytes_close_only_their_connection() {
    let agent = Agent::start();
    let socket = agent.socket();
    // A huge length prefix: closed without a reply, nothing allocated.
    assert!(raw_exchange(&socket, &[0xff, 0xff, 0xff, 0xff]).is_empty());
    // A truncated frame: closed when the deadline passes.
    assert!(raw_exchange(&socket, &[0, 0, 0, 50, b'{']).is_empty());
    // Random bytes in a well-formed frame: a typed error naming the request.
    let mut framed = Vec::new();
    write_frame(&mut framed, b"\x00\x01garbage{{{").unwrap();
    let reply = raw_exchange(&socket, &framed);
    let reply = read_frame(&mut reply.as_slice(), MAX_FRAME_LEN).unwrap();
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.contains("invalid_argument") && text.contains("\"request\""),
        "{text}"
    );
    // A wrong protocol version is refused by name.
    let mut framed = Vec::new();
    write_frame(&mut framed, br#"{"v":99,"request":{"op":"list"}}"#).unwrap();
    let reply = raw_exchange(&socket, &framed);
    let reply = read_frame(&mut reply.as_slice(), MAX_FRAME_LEN).unwrap();
    assert!(String::from_utf8_lossy(&reply).contains("\"v\""));
    // A malformed request never echoes its content (it may hold a code).
    let mut framed = Vec::new();
    write_frame(
        &mut framed,
        br#"{"v":1,"request":{"op":"verify","account":"x","code":987654}}"#,
    )
    .unwrap();
    let reply = raw_exchange(&socket, &framed);
    assert!(!String::from_utf8_lossy(&reply).contains("987654"));
    // A silent client holding a connection open does not block others.
    let _idle = UnixStream::connect(&socket).unwrap();
    assert!(agent
        .client()
        .call(Request::List {
            after: None,
            limit: None,
        })
        .is_ok());
}

/// NSS, plus the accounts `bulkN`, as many as a test needs without creating users.
struct WithBulkAccounts;

const BULK_UID: u32 = 3_000_000;

impl Directory for WithBulkAccounts {
    fn uid_of(&self, account: &str) -> Option<u32> {
        match account.strip_prefix("bulk").map(str::parse::<u32>) {
            Some(Ok(n)) => Some(BULK_UID + n),
            _ => Nss.uid_of(account),
        }
    }

    fn is_member(&self, uid: u32, group: &str) -> bool {
        Nss.is_member(uid, group)
    }

    fn name_of(&self, uid: u32) -> Option<String> {
        match uid.checked_sub(BULK_UID) {
            Some(n) => Some(format!("bulk{n}")),
            None => Nss.name_of(uid),
        }
    }
}

/// A reply larger than the socket can hold (a page of 1,000 profiles, some 300 KB against a
/// default send buffer of 208 KiB) is finished later, by whichever worker epoll wakes when the
/// client reads, while the client takes its time.
#[test]
fn a_reply_larger_than_the_socket_buffer_reaches_a_slow_reader_whole() {
    let agent = Agent::start_with(
        tempfile::tempdir().unwrap(),
        Duration::from_secs(10),
        Box::new(WithBulkAccounts),
    );
    let client = agent.client();
    for n in 0..1000 {
        enroll(&client, &format!("bulk{n}"));
    }
    let mut stream = UnixStream::connect(agent.socket()).unwrap();
    let mut framed = Vec::new();
    let request = serde_json::json!({"v": 1, "request": {"op": "list", "limit": 1000}});
    write_frame(&mut framed, request.to_string().as_bytes()).unwrap();
    stream.write_all(&framed).unwrap();
    // Not reading yet: the worker's send stops short and the rest waits on epoll.
    std::thread::sleep(Duration::from_millis(300));
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    assert!(bytes.len() > 256 * 1024, "reply of {} bytes", bytes.len());
    let reply = read_frame(&mut bytes.as_slice(), pam_totp_proto::frame::MAX_REPLY_LEN).unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    let profiles = reply["ok"]["body"].as_array();
    assert_eq!(
        profiles.map(Vec::len),
        Some(1000),
        "{}",
        &reply.to_string()[..200]
    );
}

/// SIGTERM (the shutdown flag) stops new connections, and the ones already accepted are
/// still answered: here a request that was still arriving when the flag was set.
#[test]
fn a_request_arriving_during_shutdown_is_still_answered() {
    // A deadline far longer than the pauses below: only the shutdown may end the exchange.
    let mut agent = Agent::start_in_with(tempfile::tempdir().unwrap(), Duration::from_secs(10));
    let mut stream = UnixStream::connect(agent.socket()).unwrap();
    let mut framed = Vec::new();
    write_frame(&mut framed, br#"{"v":1,"request":{"op":"status"}}"#).unwrap();
    stream.write_all(&framed[..3]).unwrap();
    // Accepted and part-read; then the flag, seen within the loop's 100 ms tick.
    std::thread::sleep(Duration::from_millis(200));
    agent.shutdown.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(&framed[3..]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let reply = read_frame(&mut stream, MAX_FRAME_LEN).unwrap();
    assert!(
        String::from_utf8_lossy(&reply).contains("version"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    // And then the agent stops (the drain ends once nothing is open).
    agent.halt();
}

#[test]
fn state_survives_a_restart() {
    let agent = Agent::start();
    let account = me();
    let secret = enroll(&agent.client(), &account);
    let client = agent.client();
    client
        .call(Request::Verify {
            account: account.clone(),
            code: code(&secret, -1).as_str().into(),
        })
        .unwrap();
    let used = code(&secret, 0);
    assert!(login(&client, &account, &used).is_ok());
    let dir = agent.stop();
    let agent = Agent::start_in(dir);
    // The code accepted before the restart is still refused after it.
    let replay = login(&agent.client(), &account, &used).unwrap_err();
    assert_eq!(replay.code(), ErrorCode::CodeRejected);
    assert!(login(&agent.client(), &account, &code(&secret, 1)).is_ok());
}
